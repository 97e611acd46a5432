//! The end of a task: its outcome written, its state word completed, its
//! waiters woken (a client asleep on the word, a handler waiting for its
//! subtask), a fire-and-forget task freed. Methods of [`Worker`] (another
//! `impl` block, `#[inline]`: every task ends here); the parent module names
//! nothing of this one.

use std::ffi::c_void;
use std::sync::atomic::Ordering;

use chi_sdk::shm::{ShmPtr, ShmString};
use chi_sdk::task::{TaskHeader, code, flags};

use super::{REFUSED_LOG, Worker};

impl Worker {
    /// Writes the outcome, marks the task complete and wakes its waiter.
    pub(super) fn finish(
        &mut self,
        task: *mut TaskHeader,
        generation: u32,
        rc: i32,
        msg: Option<String>,
    ) {
        self.finish_with(task, generation, rc, msg, None);
    }

    /// [`finish`](Self::finish), with the module's `del` for a fire-and-forget
    /// task (which frees what the task's fields own, not only its block).
    ///
    /// Nothing is written if the task's block no longer holds the task the worker
    /// took (its generation changed: the client freed it while it ran, and the
    /// block may hold another task now).
    #[inline(always)]
    pub(super) fn finish_with(
        &mut self,
        task: *mut TaskHeader,
        generation: u32,
        rc: i32,
        msg: Option<String>,
        del: Option<(chi_sdk::abi::DelFn, *mut c_void)>,
    ) {
        // SAFETY: `task` was validated as a live block when taken; the block stays
        // mapped (the main segment lives as long as the runtime), so reading its
        // header is sound even if the client freed it meanwhile.
        let (magic, now) = unsafe { ((*task).magic, (*task).generation) };
        if magic != chi_sdk::task::TASK_MAGIC || u32::from(now) != generation {
            self.stats.completed.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = REFUSED_LOG.allow() {
                tracing::warn!(
                    worker = self.stats.id,
                    generation,
                    now,
                    suppressed,
                    "a task's block was freed while the runtime ran the task (its generation \
                     changed); the outcome is dropped, the block is left to its new owner"
                );
            }
            return;
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
        if let Some(msg) = msg.filter(|_| rc != code::OK && !fire_and_forget)
            && let Ok(s) = ShmString::from_str(&self.alloc, &msg)
        {
            // SAFETY: `task` was resolved in bounds; only the runtime writes the
            // error field, before completion; the client reads it after observing
            // COMPLETE (Release below). A fresh header's error is empty (nothing to free).
            unsafe { std::ptr::addr_of_mut!((*task).error).write(s) };
        }
        // SAFETY: as above; the rest is read through a shared reference.
        let h = unsafe { &*task };
        // Read before the completion: past it the waiter may free the task.
        let waiter = h.task_node.waiter;
        if h.complete(rc) {
            h.wake_waiters();
        }
        if waiter != 0 {
            self.wake(waiter);
        }
        self.stats.completed.fetch_add(1, Ordering::Relaxed);
        if fire_and_forget {
            // Nobody reads the error field: the runtime never wrote one, so what
            // is there came from the client; forget it rather than free a block
            // it may name (it is not ours to free).
            // SAFETY: the task is complete and ours to free; the field is plain data.
            unsafe { std::ptr::addr_of_mut!((*task).error).write(ShmString::new()) };
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
                    return;
                }
            }
            let main = &self.shared.ipc.main;
            let ptr = ShmPtr::new(main.id(), task as u64 - main.base() as u64);
            let _ = self.alloc.free(ptr);
        }
    }
}
