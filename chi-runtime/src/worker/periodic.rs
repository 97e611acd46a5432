//! Periodic tasks: a task flagged `PERIODIC` with a period runs its method
//! again every period on its coroutine, which blocks on a timer in between.
//! It ends when it is cancelled, its pool is destroyed, the runtime stops or a
//! run fails; a run that overruns its period is followed by the next at once,
//! without catching up the missed ones.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chi_sdk::task::{TaskHeader, code, flags};

use super::sched::{self, Suspend};
use crate::pool::Container;
use crate::state::NodeState;

/// What a periodic task's coroutine needs between its runs.
pub(crate) struct Periodic {
    pub(crate) period: Duration,
    pub(crate) container: Arc<Container>,
    pub(crate) node: Arc<NodeState>,
}

impl Periodic {
    /// Blocks the task until `next` (its next run); returns how it ends
    /// instead if it was cancelled, its pool destroyed or the runtime is
    /// stopping. A run that overran its period is followed by the next at
    /// once, without catching up the missed ones.
    pub(crate) fn wait_next(&self, h: &TaskHeader, next: Instant) -> Option<(i32, Option<String>)> {
        loop {
            if h.is_cancelled() {
                return Some((
                    code::CANCELLED,
                    Some("the periodic task was cancelled".into()),
                ));
            }
            if self.node.stopping() {
                return Some((code::SHUTDOWN, Some("the runtime stopped".into())));
            }
            // Relaxed: set by the pool's destruction, which then wakes the task.
            if self.container.retired.load(Ordering::Relaxed) {
                return Some((
                    code::NO_POOL,
                    Some("the pool of the periodic task was destroyed".into()),
                ));
            }
            if Instant::now() >= next {
                return None;
            }
            sched::suspend(Suspend::Block(Some(next)));
        }
    }
}

/// The period of a periodic task (`None`: runs once; a period of 0 too).
pub(crate) fn periodic_of(task: *mut TaskHeader) -> Option<Duration> {
    // SAFETY: `task` was validated by the caller; plain reads.
    let (f, ns) = unsafe { ((*task).flags, (*task).period_ns) };
    (f & flags::PERIODIC != 0 && ns > 0).then(|| Duration::from_nanos(ns))
}
