//! The subtasks running inline on a coroutine: a chain of `Frame`s, each
//! on the stack of the `run_inline` call that runs its subtask
//! ([`super::inline`]), innermost first. The chain's head is part of the
//! running task's `Current` (`super::sched`), which a suspending coroutine
//! keeps on its own stack and sets again when it is resumed; so each
//! coroutine has its own chain, whatever the worker runs in between.
//!
//! What the chain is for, while a subtask that runs inline blocks (and so
//! suspends its parent's coroutine with it):
//!
//! * **status**: the subtask is listed among the worker's suspended tasks
//!   (`WorkerStats::suspended`) and counted as parked (`Local::inline_parked`,
//!   in `WorkerStats::blocked`) as a subtask on a coroutine of its own would
//!   be, until it ends;
//! * **cancellation**: a parent that runs a subtask inline is not in its
//!   wait loop, which is where a cancelled parent cancels the subtasks it
//!   waits for; so after each resume the chain passes a cancellation down
//!   from each frame's parent to its subtask.

use std::cell::Cell;

use chi_sdk::task::TaskHeader;

use super::supervision::WorkerStats;

/// One subtask running inline (see the module doc).
pub(crate) struct Frame {
    /// The task that waits for it (the coroutine's task, or the subtask of
    /// the next frame out).
    pub(crate) parent: *mut TaskHeader,
    /// The subtask.
    pub(crate) task: *mut TaskHeader,
    /// The subtask's generation.
    pub(crate) generation: u32,
    /// Listed in `WorkerStats::suspended`.
    pub(crate) listed: Cell<bool>,
    /// The next frame out (null: none).
    pub(crate) outer: *const Frame,
}

/// The frames of the chain whose innermost frame is `head`.
///
/// # Safety
/// `head` is null or the head of a chain whose frames all live (each on the
/// stack of a `run_inline` call that has not returned).
unsafe fn chain<'a>(head: *const Frame) -> impl Iterator<Item = &'a Frame> {
    // SAFETY: per the contract, every non-null link names a live frame.
    std::iter::successors(unsafe { head.as_ref() }, |f| unsafe { f.outer.as_ref() })
}

/// Before the coroutine whose chain is `head` suspends: lists its inline
/// subtasks that are not listed yet; returns how many it listed.
///
/// # Safety
/// As for [`chain`].
pub(crate) unsafe fn before_suspend(head: *const Frame, stats: &WorkerStats) -> u64 {
    let mut n = 0;
    // SAFETY: per the contract.
    for f in unsafe { chain(head) } {
        if !f.listed.replace(true) {
            stats.list_suspended(f.task as u64, f.generation);
            n += 1;
        }
    }
    n
}

/// After the coroutine whose chain is `head` was resumed: a cancelled
/// parent cancels its inline subtask, outermost first (so a cancellation
/// goes all the way down).
///
/// # Safety
/// As for [`chain`]; the tasks of the frames are live tasks of the main
/// segment.
pub(crate) unsafe fn pass_cancel(head: *const Frame) {
    loop {
        let mut passed = false;
        // SAFETY: per the contract.
        for f in unsafe { chain(head) } {
            // SAFETY: per the contract; only the state words are touched,
            // atomically.
            let (parent, task) = unsafe { (&*f.parent, &*f.task) };
            if parent.is_cancelled() && !task.is_cancelled() && task.cancel() {
                passed = true;
            }
        }
        if !passed {
            return;
        }
    }
}
