//! A task's outcome written and its state word completed: the part of a
//! task's end that the worker (`Worker::finish_with`, in `complete.rs`) and
//! a subtask run inline on its parent's stack ([`super::inline`]) share.
//! It names nothing of the worker: what it works on comes in an
//! `Outcome`.

use std::ffi::c_void;
use std::sync::atomic::Ordering;

use chi_sdk::shm::{Allocator, Segment, ShmPtr, ShmString};
use chi_sdk::task::{TaskHeader, code, flags, state};

use super::supervision::WorkerStats;

/// Rate limit of the warning about a task freed while it ran.
static STALE_LOG: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::per_second();

/// What ending a task works on: the worker's allocator handle, its published
/// figures and the main segment.
pub(crate) struct Outcome<'a> {
    pub(crate) alloc: &'a Allocator,
    /// `None`: a task completed off the workers (a remote task's reply, on
    /// the peer thread), counted by nobody's figures.
    pub(crate) stats: Option<&'a WorkerStats>,
    pub(crate) main: &'a Segment,
}

impl Outcome<'_> {
    /// Counts a completed task.
    #[inline(always)]
    fn count_completed(&self) {
        // Relaxed: a figure `status` reads. Only the worker that owns the
        // stats writes it (on its own thread), so a load and a store do, with
        // no locked instruction on the task path.
        if let Some(s) = self.stats {
            let c = &s.completed;
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// Writes the outcome, marks the task complete and wakes a client asleep
    /// on its state word; a fire-and-forget task is freed (through the
    /// module's `del` when it has one). Returns the token of the task's
    /// waiter (0: none), read before the completion: the caller wakes it.
    ///
    /// Nothing is written if the task's block no longer holds the task the
    /// worker took (its generation changed: the client freed it while it ran,
    /// and the block may hold another task now).
    #[inline(always)]
    pub(crate) fn complete(
        &self,
        task: *mut TaskHeader,
        generation: u32,
        rc: i32,
        msg: Option<String>,
        del: Option<(chi_sdk::abi::DelFn, *mut c_void)>,
    ) -> u32 {
        // SAFETY: `task` was validated as a live block when taken; the block stays
        // mapped (the main segment lives as long as the runtime), so reading its
        // header is sound even if the client freed it meanwhile.
        let (magic, now) = unsafe { ((*task).magic, (*task).generation) };
        if magic != chi_sdk::task::TASK_MAGIC || u32::from(now) != generation {
            self.count_completed();
            if let Some(suppressed) = STALE_LOG.allow() {
                tracing::warn!(
                    worker = self.stats.map_or(u32::MAX, |s| s.id),
                    generation,
                    now,
                    suppressed,
                    "a task's block was freed while the runtime ran the task (its generation \
                     changed); the outcome is dropped, the block is left to its new owner"
                );
            }
            return 0;
        }
        // SAFETY: as above; `flags` is only read.
        let fire_and_forget = unsafe { (*task).flags } & flags::FIRE_AND_FORGET != 0;
        if fire_and_forget && let Some(m) = msg.as_ref().filter(|_| rc != code::OK) {
            // Nobody will read the error message: log it instead.
            // SAFETY: as above; plain reads.
            let (node, method) = unsafe { ((*task).task_node, (*task).method) };
            tracing::warn!(
                code = rc,
                error = %m,
                major = node.major,
                depth = node.minor,
                method,
                "a fire-and-forget task failed"
            );
        }
        let mut wrote_error = false;
        if let Some(msg) = msg.filter(|_| rc != code::OK && !fire_and_forget)
            && let Ok(s) = ShmString::from_str(self.alloc, &msg)
        {
            // SAFETY: `task` was resolved in bounds; only the runtime writes the
            // error field, before completion; the client reads it after observing
            // COMPLETE (Release below). A fresh header's error is empty (nothing to free).
            unsafe { std::ptr::addr_of_mut!((*task).error).write(s) };
            wrote_error = true;
        }
        // SAFETY: as above; the rest is read through a shared reference.
        let h = unsafe { &*task };
        // Read before the completion: past it the waiter may free the task.
        let mut waiter = h.task_node.waiter;
        let before = h.complete(rc);
        if before & state::WAITER != 0 {
            h.wake_waiters();
        }
        self.count_completed();
        // Abandoned before it completed: nobody waits, the task is ours to free.
        let abandoned = before & state::ABANDONED != 0;
        if abandoned {
            waiter = 0;
            if let Some(m) = msg_for_log(wrote_error, h) {
                tracing::debug!(code = rc, error = %m, "an abandoned task failed");
            }
        }
        if fire_and_forget || abandoned {
            if !wrote_error {
                // Nobody reads the error field and the runtime wrote none, so
                // what is there came from the client; forget it rather than
                // free a block it may name (it is not ours to free).
                // SAFETY: the task is complete and ours to free; the field is
                // plain data.
                unsafe { std::ptr::addr_of_mut!((*task).error).write(ShmString::new()) };
            } else if del.is_none() {
                // SAFETY: complete and ours; the message is the runtime's own
                // block, written above.
                let _ = unsafe { (*task).error.free(self.alloc) };
            }
            // Nobody waits: the runtime frees the task, through the module's
            // `del` when it has one (fields, error message and block).
            // A freed task has generation 0: a stale free or completion through a
            // copy of its pointer is recognised even before the block is reused.
            // SAFETY: as above.
            unsafe { (*task).generation = 0 };
            if let Some((del, state)) = del {
                // SAFETY: the task is complete and nobody else refers to it; the
                // container's state is alive (the caller holds the container).
                if unsafe { del(state, task) } == code::OK {
                    return waiter;
                }
            }
            let ptr = ShmPtr::new(self.main.id(), task as u64 - self.main.base() as u64);
            let _ = self.alloc.free(ptr);
        }
        waiter
    }
}

/// The error message the runtime wrote into `h`, for a log line.
fn msg_for_log(wrote_error: bool, h: &TaskHeader) -> Option<&str> {
    wrote_error.then(|| h.error.to_str().ok()).flatten()
}
