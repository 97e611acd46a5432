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
use chi_sdk::types::{PoolId, QueryKind};

use crate::pool::{Container, Pool, PoolManager};

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
        }
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
                    Some(QueryKind::GlobalBcast | QueryKind::Dynamic) => Ok(0),
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
