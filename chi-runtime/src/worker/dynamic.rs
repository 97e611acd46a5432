//! GetDynamic: a task whose domain query is `Dynamic` runs on the container
//! its module's Monitor picks in `GlobalSchedule` mode, anywhere in the pool.
//!
//! # Design
//!
//! The worker's pool table (`PoolCache::container_of`, [`super::pools`])
//! answers `DYNAMIC` for such a task, and the worker asks the module (off
//! the fast path: only `Dynamic` tasks come here):
//!
//! 1. Monitor(GlobalSchedule) runs through the pool's first container on
//!    this node, with [`RunCtx::pool_containers`] set to the pool's container
//!    count (over the cluster, or on this node for a pool of one node). It
//!    names a global container id with `ctx.route_to_container(..)` or
//!    `ctx.route_to_container_by_hash(..)`, or nothing.
//! 2. Nothing chosen (no monitor, no container of the pool here — the
//!    monitor is only ever called with a container's state, see
//!    `chi_sdk::abi::MonitorFn` — a monitor that says nothing, fails or
//!    panics): the pool's containers round robin ([`Pool::dynamic_turn`],
//!    one counter per pool on this node).
//! 3. A choice past the pool's containers is a bug of the module: the task
//!    fails with an error naming the module, the method, the choice and the
//!    count, and the runtime logs it (at most once a second).
//! 4. The choice becomes the task's query (`GlobalId`), so that the task
//!    keeps it when Monitor(LocalSchedule) moves it to another worker's lane
//!    or it is sent to the container's node; it is then resolved like any
//!    `GlobalId` task: run here, or sent out (`worker/remote.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chi_sdk::abi::{MonitorMode, RunCtx};
use chi_sdk::task::{TaskHeader, code};
use chi_sdk::types::{DomainQuery, PoolId};

use super::{Worker, pools};
use crate::pool::{Container, Pool};

impl Worker {
    /// The container of the `Dynamic` task `task` (see the module doc):
    /// `Some` to run it here; `None` if it was sent to another node or
    /// failed.
    #[cold]
    pub(super) fn dispatch_dynamic(
        &mut self,
        task: *mut TaskHeader,
        generation: u32,
    ) -> Option<(PoolId, Arc<Container>)> {
        // SAFETY: validated by the caller; read here, and its query written
        // below while the worker holds the task (nobody else writes it).
        let h = unsafe { &*task };
        let pool = self.inline.pools.borrow().pool(h.pool_id)?;
        let count = pool
            .placement
            .as_ref()
            .map_or(pool.containers.len() as u32, |p| p.count());
        let chosen = match self.global_schedule(&pool, task, count) {
            Some(g) => g,
            // Relaxed: a turn counter; it publishes nothing.
            None => pool.dynamic_turn.fetch_add(1, Ordering::Relaxed) % count.max(1),
        };
        if chosen >= count {
            let msg = bad_choice(&pool, h, chosen, count);
            self.finish(task, generation, code::FAILED, Some(msg));
            return None;
        }
        // SAFETY: as above: the worker holds the task; a plain field store.
        unsafe { (*task).dom_query = DomainQuery::global_id(chosen) };
        match self.container_of(h) {
            Ok(found) => Some(found),
            Err((pools::REMOTE, _)) => {
                self.send_remote(task, generation);
                None
            }
            Err((rc, msg)) => {
                self.finish(task, generation, rc, Some(msg));
                None
            }
        }
    }

    /// What Monitor(GlobalSchedule) of the pool's first container here
    /// chose for `task` among `count` containers; `None` if it chose
    /// nothing (or there is no monitor or container to ask, or it failed:
    /// logged).
    fn global_schedule(&self, pool: &Pool, task: *mut TaskHeader, count: u32) -> Option<u32> {
        let c = pool.containers.first()?;
        let monitor = c.module.api.monitor?;
        let mut ctx: RunCtx = self.ctx(c, std::ptr::null_mut());
        ctx.pool_id = pool.id;
        ctx.pool_containers = count;
        ctx.route_container = u32::MAX;
        // SAFETY: the container's state and the validated task are live; the
        // monitor only reads the task and writes `ctx`.
        let rc = unsafe { monitor(c.state, MonitorMode::GlobalSchedule as u32, task, &mut ctx) };
        if rc != code::OK {
            // SAFETY: as above; only read.
            self.monitor_failed(c, unsafe { &*task }, MonitorMode::GlobalSchedule, rc);
            return None;
        }
        ctx.routed_container().map(|g| g.0)
    }
}

/// The error (and the log line) of a Monitor(GlobalSchedule) that chose
/// container `chosen` of a pool of `count`.
#[cold]
fn bad_choice(pool: &Pool, h: &TaskHeader, chosen: u32, count: u32) -> String {
    static LOG: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::per_second();
    let module = pool.module_name();
    let msg = format!(
        "Monitor(GlobalSchedule) of module {module} chose container {chosen} for method {} of \
         {}, which has {count} container(s) (global ids 0..{count}); the module's monitor must \
         choose below {count} (e.g. with ctx.route_to_container_by_hash)",
        h.method, pool.id
    );
    if let Some(suppressed) = LOG.allow() {
        tracing::error!(
            module,
            pool = pool.id.0,
            method = h.method,
            chosen,
            count,
            suppressed,
            "a Dynamic task failed: {msg}"
        );
    }
    msg
}
