//! A task between its steps: its coroutine and what the worker keeps of it.

use std::sync::Arc;
use std::time::Instant;

use chi_sdk::task::TaskHeader;
use chi_sdk::types::TaskNode;

use super::sched::TaskYielder;
use crate::coroutine::TaskCoroutine;
use crate::pool::Container;

/// A suspended task: its coroutine, and the container it runs in (kept alive
/// while the task lives).
pub(crate) struct Parked {
    pub(crate) co: TaskCoroutine,
    pub(crate) task: *mut TaskHeader,
    pub(crate) generation: u32,
    pub(crate) _container: Arc<Container>,
    /// In `WorkerStats::suspended` (the task yielded at least once).
    pub(crate) listed: bool,
    /// Its task node (what its subtasks descend from).
    pub(crate) node: TaskNode,
    /// Its coroutine's yielder (null until the first step returns).
    pub(crate) yielder: *const TaskYielder,
    /// A periodic task (counted in `WorkerStats::periodic`).
    pub(crate) periodic: bool,
    /// Its container's stack size (0: the configured one).
    pub(crate) stack_size: usize,
    /// The lowest usable address of its coroutine's stack.
    pub(crate) stack_limit: usize,
    /// The instant of its last timer, if any.
    pub(crate) timer: Option<Instant>,
    /// Started from a lane (counted in `Worker::from_lanes`).
    pub(crate) from_lane: bool,
}
