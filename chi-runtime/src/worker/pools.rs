//! A worker's copy of the pool table, and its key's hasher.
//!
//! The copy is taken again when the pool manager's generation moves; it
//! lives in the worker's `Local` (see [`super::sched`]), so that both the
//! worker's loop and a subtask run inline on a handler's stack
//! ([`super::inline`]) find containers in it.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use chi_sdk::task::{TaskHeader, code};
use chi_sdk::types::{NodeId, PoolId, QueryKind};

use crate::placement::Target;
use crate::pool::{Container, Pool, PoolManager};

/// The code [`PoolCache::container_of`] gives a task whose container is on
/// another node: the worker sends it out (`Worker::send_remote`); no client
/// ever sees it.
pub(crate) const REMOTE: i32 = i32::MIN + 14;

/// The code [`PoolCache::container_of`] gives a task with a `Dynamic`
/// query: the module's Monitor(GlobalSchedule) picks its container
/// (`Worker::dispatch_dynamic`, `worker/dynamic.rs`); no client ever sees it.
pub(crate) const DYNAMIC: i32 = i32::MIN + 15;

/// The hasher of a worker's pool table: pool ids are small integers chosen by
/// the runtime, so a multiplicative hash is enough (and costs a multiply, where
/// the default hasher costs tens of nanoseconds per task).
#[derive(Default, Debug)]
pub struct PoolIdHasher(u64);

impl std::hash::Hasher for PoolIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A worker's snapshot of the pool table.
#[derive(Default)]
pub(crate) struct PoolCache {
    pools: HashMap<PoolId, Arc<Pool>, BuildHasherDefault<PoolIdHasher>>,
    generation: u64,
    /// This node (where a pool over the cluster is resolved from).
    here: NodeId,
}

impl PoolCache {
    /// Takes the table again if `manager`'s generation moved (dropping this
    /// copy's references to destroyed pools).
    #[inline]
    pub(crate) fn refresh(&mut self, manager: &PoolManager) {
        let g = manager.generation();
        if g != self.generation {
            self.pools = manager.snapshot().into_iter().collect();
            self.generation = g;
            self.here = manager.node();
        }
    }

    /// The pool `id`.
    pub(crate) fn pool(&self, id: PoolId) -> Option<Arc<Pool>> {
        self.pools.get(&id).cloned()
    }

    /// This node.
    pub(crate) fn here(&self) -> NodeId {
        self.here
    }

    /// The pool and container of task `h`: only the container's Arc is
    /// cloned (it stays alive while the task runs).
    #[inline(always)]
    pub(crate) fn container_of(
        &self,
        h: &TaskHeader,
    ) -> Result<(PoolId, Arc<Container>), (i32, String)> {
        match self.pools.get(&h.pool_id) {
            None => Err((
                code::NO_POOL,
                format!("no {} on this node; create it first", h.pool_id),
            )),
            Some(pool) if pool.placement.is_some() => cluster_container(pool, h, self.here),
            Some(pool) => {
                let n = pool.containers.len() as u32;
                let q = h.dom_query;
                match q.kind() {
                    Some(QueryKind::LocalId | QueryKind::GlobalId) if q.value < n => Ok(q.value),
                    Some(QueryKind::LocalId | QueryKind::GlobalId) => Err((
                        code::BAD_TASK,
                        format!("{} has no container {}", pool.id, q.value),
                    )),
                    Some(QueryKind::LocalHash | QueryKind::GlobalHash) => Ok(q.value % n.max(1)),
                    Some(QueryKind::GlobalBcast) => Ok(0),
                    Some(QueryKind::Dynamic) => Err((DYNAMIC, String::new())),
                    None => Err((
                        code::BAD_TASK,
                        format!("unknown domain query kind {}", q.kind),
                    )),
                }
                .and_then(|idx| {
                    pool.containers
                        .get(idx as usize)
                        .map(|c| (pool.id, c.clone()))
                        .ok_or_else(|| (code::NO_POOL, format!("{} has no containers", pool.id)))
                })
            }
        }
    }
}

/// The container of task `h` in `pool`, a pool over the cluster: its
/// placement resolves the domain query from node `here` (off the fast path:
/// only pools over the cluster come here). A container on another node is
/// [`REMOTE`]: the worker sends the task there.
#[cold]
fn cluster_container(
    pool: &Pool,
    h: &TaskHeader,
    here: NodeId,
) -> Result<(PoolId, Arc<Container>), (i32, String)> {
    let Some(placement) = pool.placement.as_ref() else {
        return Err((code::NO_POOL, format!("{} has no placement", pool.id)));
    };
    let located = match placement.resolve(h.dom_query, here) {
        Ok(Target::One(l)) => l,
        // Monitor(GlobalSchedule) picks the container (`worker/dynamic.rs`).
        Ok(Target::Dynamic) => return Err((DYNAMIC, String::new())),
        // A broadcast: every container, through the peer thread.
        Ok(Target::All(_)) => return Err((REMOTE, format!("a broadcast to {}", pool.id))),
        Err(e) => return Err((code::BAD_TASK, e.to_string())),
    };
    if located.node != here {
        return Err((
            REMOTE,
            format!(
                "container {} of {} lives on node {} (this is node {})",
                located.container.0, pool.id, located.node.0, here.0
            ),
        ));
    }
    pool.containers
        .iter()
        .find(|c| c.id == located.container)
        .map(|c| (pool.id, c.clone()))
        .ok_or_else(|| {
            (
                code::NO_POOL,
                format!(
                    "container {} of {} should be on this node ({}) but is not",
                    located.container.0, pool.id, here.0
                ),
            )
        })
}
