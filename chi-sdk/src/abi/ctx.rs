//! What a module's `run` and `monitor` see of the runtime: [`RunCtx`] (the
//! seed's `RunContext`) and the names of a container's local queues and lanes
//! that Monitor routes by.
//!
//! # Design
//!
//! `RunCtx` is `#[repr(C)]` and crosses the module boundary by pointer: the
//! runtime fills its inputs (worker, pool, container, local queues, the
//! pool's container count) and reads back what Monitor wrote (a lane in
//! `LocalSchedule`, a container in `GlobalSchedule`, an estimate in
//! `EstLoad`). Routing is only ever by naming: a module never enqueues.

use std::fmt;

use crate::types::{ContainerId, PoolId};
use std::ffi::c_void;

/// Lane priorities of a container's local queues (seed: `kLowLatency`,
/// `kHighLatency`): low-latency lanes run on the low-latency workers,
/// high-latency lanes on the workers meant for long tasks.
pub mod lane_priority {
    /// Short tasks.
    pub const LOW_LATENCY: u32 = 0;
    /// Long tasks.
    pub const HIGH_LATENCY: u32 = 1;
}

/// A local queue of a container, as the runtime reports it to Monitor.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalQueueInfo {
    /// The container's id for the queue.
    pub queue_id: u32,
    /// Number of lanes.
    pub lanes: u32,
    /// A [`lane_priority`].
    pub priority: u32,
}

/// A lane of a container's local queue, as Monitor(LocalSchedule) returns it in
/// [`RunCtx::route_lane`]: the queue id in the high 16 bits, the lane index in
/// the low 16.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LaneId(pub u32);

impl LaneId {
    /// No lane: the task runs on the worker that took it from the process queue
    /// (what the runtime assumes when Monitor names no lane).
    pub const HERE: LaneId = LaneId(u32::MAX);

    /// Lane `lane` of queue `queue`.
    pub const fn new(queue: u16, lane: u16) -> LaneId {
        LaneId(((queue as u32) << 16) | lane as u32)
    }

    /// The queue id.
    pub const fn queue(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The lane index within the queue.
    pub const fn lane(self) -> u16 {
        self.0 as u16
    }
}

/// Per-call context the runtime hands to `run` and `monitor`: the seed's
/// `RunContext`, as far as a module may see it. (Its one call into the
/// runtime, [`RunCtx::yield_now`], is defined beside the services table it goes
/// through, in the crate's `module_side`.)
#[repr(C)]
#[derive(Debug)]
pub struct RunCtx {
    /// Worker running the task.
    pub worker_id: u32,
    /// Monitor(LocalSchedule) output: the [`LaneId`] bits of the lane of the
    /// container's local queue that runs the task (see [`RunCtx::route`]).
    pub route_lane: u32,
    /// Monitor(EstLoad) output: estimated run time in microseconds.
    pub est_load_us: f64,
    /// The container's pool.
    pub pool_id: PoolId,
    /// The container.
    pub container_id: ContainerId,
    /// The runtime's private state for this task (opaque to modules).
    pub runtime: *mut c_void,
    /// The container's local queues (for Monitor), `num_queues` entries.
    pub queues: *const LocalQueueInfo,
    /// Number of entries at `queues`.
    pub num_queues: u32,
    /// Monitor(GlobalSchedule) output: the global id of the container the
    /// task should run on (`u32::MAX` = no preference: the runtime takes the
    /// pool's containers round robin).
    pub route_container: u32,
    /// Monitor(GlobalSchedule) input: how many containers the pool has over
    /// the cluster (global ids `0..pool_containers`); 0 in other modes.
    pub pool_containers: u32,
}

/// A container's id for one of its local queues. Give queues names
/// (`const METADATA: QueueId = QueueId(0);`): a bare integer is not a `QueueId`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u16);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue {}", self.0)
    }
}

/// Why Monitor could not name a lane.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The container has no queue of that id.
    #[error("the container has no {0}; create it in `create` with `ctx.create_local_queue`")]
    NoQueue(QueueId),
    /// The lane index is past the queue's lanes.
    #[error("{queue} has {lanes} lanes, so it has no lane {lane}")]
    NoLane {
        /// The queue.
        queue: QueueId,
        /// Its number of lanes.
        lanes: u32,
        /// The lane asked for.
        lane: u32,
    },
}

impl RunCtx {
    /// The container's local queues (empty outside Monitor, or if the container
    /// created none: then every task runs on the default lane).
    pub fn queues(&self) -> &[LocalQueueInfo] {
        if self.queues.is_null() || self.num_queues == 0 {
            return &[];
        }
        // SAFETY: the runtime sets `queues` to its table of `num_queues` entries,
        // which lives as long as the container, for the duration of the call.
        unsafe { std::slice::from_raw_parts(self.queues, self.num_queues as usize) }
    }

    fn queue(&self, queue: QueueId) -> Result<LocalQueueInfo, RouteError> {
        self.queues()
            .iter()
            .find(|q| q.queue_id == u32::from(queue.0))
            .copied()
            .ok_or(RouteError::NoQueue(queue))
    }

    /// Lane `lane` of local queue `queue` (seed: `GetLaneFullPtr`).
    pub fn lane(&self, queue: QueueId, lane: u32) -> Result<LaneId, RouteError> {
        let q = self.queue(queue)?;
        if lane >= q.lanes {
            return Err(RouteError::NoLane {
                queue,
                lanes: q.lanes,
                lane,
            });
        }
        Ok(LaneId::new(queue.0, lane as u16))
    }

    /// The lane of local queue `queue` that `hash` selects (seed:
    /// `GetLaneFullPtrByHash`): equal hashes always select the same lane.
    pub fn lane_by_hash(&self, queue: QueueId, hash: u64) -> Result<LaneId, RouteError> {
        let q = self.queue(queue)?;
        Ok(LaneId::new(
            queue.0,
            (hash % u64::from(q.lanes.max(1))) as u16,
        ))
    }

    /// Monitor(LocalSchedule): run the task on `lane`. Routing is only ever by
    /// naming a lane: the runtime moves the task there.
    pub fn route(&mut self, lane: LaneId) {
        self.route_lane = lane.0;
    }

    /// Monitor(LocalSchedule): run the task on lane `lane` of local queue
    /// `queue`. A queue or lane that does not exist is a bug of the module:
    /// it is logged (once per queue) and the task runs where it arrived.
    pub fn route_to(&mut self, queue: QueueId, lane: u32) {
        let r = self.lane(queue, lane);
        self.route_or_log(r);
    }

    /// Monitor(LocalSchedule): run the task on the lane of local queue `queue`
    /// that `hash` selects; errors as for [`route_to`](Self::route_to).
    pub fn route_by_hash(&mut self, queue: QueueId, hash: u64) {
        let r = self.lane_by_hash(queue, hash);
        self.route_or_log(r);
    }

    fn route_or_log(&mut self, r: Result<LaneId, RouteError>) {
        match r {
            Ok(lane) => self.route(lane),
            Err(e) => {
                static WARNED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
                let queue = match &e {
                    RouteError::NoQueue(q) | RouteError::NoLane { queue: q, .. } => q.0,
                };
                let mut w = WARNED.lock().unwrap_or_else(|e| e.into_inner());
                if !w.contains(&queue) {
                    w.push(queue);
                    tracing::error!(
                        pool = self.pool_id.0,
                        error = %e,
                        "Monitor(LocalSchedule) routed a task to a lane that does not exist; \
                         the task runs where it arrived (logged once per queue)"
                    );
                }
                self.route(LaneId::HERE);
            }
        }
    }

    /// The lane chosen so far.
    pub fn routed_lane(&self) -> LaneId {
        LaneId(self.route_lane)
    }

    /// Monitor(EstLoad): the estimated run time of the task.
    pub fn set_est_load_us(&mut self, us: f64) {
        self.est_load_us = us;
    }

    /// Monitor(GlobalSchedule): run the task on container `container` (a
    /// global id below [`pool_containers`](Self::pool_containers), wherever
    /// it lives). An id past the pool's containers fails the task with an
    /// error naming both.
    pub fn route_to_container(&mut self, container: ContainerId) {
        self.route_container = container.0;
    }

    /// Monitor(GlobalSchedule): run the task on the container `hash` selects
    /// among the pool's (`hash % pool_containers`): equal hashes always
    /// select the same container of a pool.
    pub fn route_to_container_by_hash(&mut self, hash: u64) {
        let n = u64::from(self.pool_containers.max(1));
        self.route_container = (hash % n) as u32;
    }

    /// Monitor(GlobalSchedule): the number of containers of the pool over
    /// the cluster (global ids `0..n`).
    pub fn pool_containers(&self) -> u32 {
        self.pool_containers
    }

    /// The container Monitor(GlobalSchedule) chose so far, if any.
    pub fn routed_container(&self) -> Option<ContainerId> {
        (self.route_container != u32::MAX).then_some(ContainerId(self.route_container))
    }
}
