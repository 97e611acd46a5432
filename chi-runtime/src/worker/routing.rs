//! Finding a task's container and lane: the worker's copy of the pool
//! table, the domain query, Monitor's lane and the move to another worker's
//! lane, the context handed to a module, and Monitor(Cleanup) for a task
//! being discarded. Methods of [`Worker`] (another `impl` block); the parent
//! module names nothing of this one.

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chi_sdk::abi::{LaneId, MonitorMode, RunCtx};
use chi_sdk::shm::ShmPtr;
use chi_sdk::task::{TaskHeader, code};
use chi_sdk::types::PoolId;

use super::Worker;
use crate::pool::Container;

impl Worker {
    #[inline]
    pub(super) fn refresh_pools(&mut self) {
        self.inline.pools.borrow_mut().refresh(&self.shared.pools);
    }

    /// The pool and container of task `h`, from this worker's pool table.
    #[inline(always)]
    pub(super) fn container_of(
        &self,
        h: &TaskHeader,
    ) -> Result<(PoolId, Arc<Container>), (i32, String)> {
        self.inline.pools.borrow().container_of(h)
    }

    /// Monitor(Cleanup) of `task`'s container: the task is being discarded
    /// (failed at stop without running, abandoned, or a periodic task that
    /// ended), so the module frees what it attached to it.
    pub(super) fn cleanup(&mut self, task: *mut TaskHeader, container: Option<&Arc<Container>>) {
        self.refresh_pools();
        // SAFETY: `task` was validated by the caller; only read.
        let h = unsafe { &*task };
        let found = match container {
            Some(c) => Some(c.clone()),
            None => match self.container_of(h) {
                Ok((_, c)) => Some(c),
                // A Dynamic task discarded before its monitor chose: the
                // module hears of it through the pool's first container here.
                Err((super::pools::DYNAMIC, _)) => self
                    .inline
                    .pools
                    .borrow()
                    .pool(h.pool_id)
                    .and_then(|p| p.containers.first().cloned()),
                Err(_) => None,
            },
        };
        let Some(c) = found else { return };
        if let Some(monitor) = c.module.api.monitor {
            let mut ctx = self.ctx(&c, std::ptr::null_mut());
            ctx.pool_id = h.pool_id;
            // SAFETY: the container's state and the task are live; the monitor
            // only reads the task and writes `ctx`.
            let rc = unsafe { monitor(c.state, MonitorMode::Cleanup as u32, task, &mut ctx) };
            if rc != code::OK {
                log_monitor_failed(&c, h, MonitorMode::Cleanup, rc);
            }
        }
    }

    /// A monitor returned a failure code or panicked (see
    /// [`log_monitor_failed`]).
    #[cold]
    pub(super) fn monitor_failed(&self, c: &Container, h: &TaskHeader, mode: MonitorMode, rc: i32) {
        log_monitor_failed(c, h, mode, rc);
    }

    /// Moves the task to the worker of `lane` if that is another worker;
    /// returns whether it did. A lane the container does not have, or a full
    /// target lane, leaves the task here (it is never left unrouted).
    #[inline]
    pub(super) fn route(
        &mut self,
        container: &Container,
        pool: PoolId,
        lane: LaneId,
        ptr: ShmPtr,
        h: &TaskHeader,
    ) -> bool {
        if lane == LaneId::HERE {
            return false;
        }
        let q = self.consumer.queue();
        let low = q.lanes_of(chi_sdk::queue::Priority::LowLatency);
        let high = q.lanes_of(chi_sdk::queue::Priority::HighLatency);
        let Some(target) = container.process_lane(pool, lane, &low, &high) else {
            if !self.warned_lanes.contains(&(pool, lane.0)) {
                self.warned_lanes.push((pool, lane.0));
                tracing::warn!(
                    %pool,
                    queue = lane.queue(),
                    lane = lane.lane(),
                    "Monitor routed a task to a lane the container did not create; running it \
                     where it arrived (create the queue in `create` with create_local_queue)"
                );
            }
            return false;
        };
        if self.consumer.lanes().contains(&target) {
            return false;
        }
        h.mark_routed();
        // Relaxed: the lane a waiting client watches; published by the push.
        let from = h.lane.swap(target as u32, Ordering::Relaxed);
        match q.try_push(target, ptr) {
            Ok(()) => true,
            Err(_) => {
                h.lane.store(from, Ordering::Relaxed);
                h.unmark_routed();
                false
            }
        }
    }

    #[inline]
    pub(super) fn ctx(&self, c: &Container, runtime: *mut c_void) -> RunCtx {
        super::inline::run_ctx(self.stats.id, c, PoolId::NULL, runtime)
    }
}

/// A monitor returned a failure code or panicked: logged (at most once a
/// second), naming the pool, the method and the mode; the caller goes on as
/// if the monitor had said nothing (a task runs where it arrived).
#[cold]
fn log_monitor_failed(c: &Container, h: &TaskHeader, mode: MonitorMode, rc: i32) {
    static LOG: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::per_second();
    if let Some(suppressed) = LOG.allow() {
        let what = if rc == code::PANICKED {
            "panicked"
        } else {
            "failed"
        };
        tracing::error!(
            module = %c.module.name,
            pool = h.pool_id.0,
            method = h.method,
            ?mode,
            code = rc,
            suppressed,
            "Monitor({mode:?}) {what}; the task goes on as if it had said nothing (it runs where \
             it arrived); fix the module's monitor"
        );
    }
}
