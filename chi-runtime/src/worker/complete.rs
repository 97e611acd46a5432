//! The end of a task: its outcome written, its state word completed, its
//! waiters woken (a client asleep on the word, a handler waiting for its
//! subtask; the peer thread, for a task of another node), a fire-and-forget
//! task freed. Methods of [`Worker`] (another
//! `impl` block, `#[inline]`: every task ends here) around
//! `Outcome::complete`; the parent module names nothing of this one.

use std::ffi::c_void;

use chi_sdk::task::TaskHeader;

use super::outcome::Outcome;
use super::{Worker, sched};

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
    /// task (which frees what the task's fields own, not only its block); see
    /// [`Outcome::complete`].
    #[inline(always)]
    pub(super) fn finish_with(
        &mut self,
        task: *mut TaskHeader,
        generation: u32,
        rc: i32,
        msg: Option<String>,
        del: Option<(chi_sdk::abi::DelFn, *mut c_void)>,
    ) {
        let waiter = Outcome {
            alloc: &self.alloc,
            stats: Some(&self.stats),
            main: &self.shared.ipc.main,
        }
        .complete(task, generation, rc, msg, del);
        if waiter != 0 {
            if waiter == sched::PEER_WAITER {
                self.served(task);
            } else {
                self.wake(waiter);
            }
        }
    }

    /// A task of another node completed here: its reply is saved and
    /// queued on this worker's batch ([`crate::remote::serving`]); the
    /// replica of a broadcast of this node goes to the peer thread, which
    /// holds the broadcast.
    #[cold]
    fn served(&mut self, task: *mut TaskHeader) {
        let t = task as usize;
        if let Some(wire) = self.shared.wire.get()
            && let Some((to, reply)) = self.shared.serving.finish_from_other(
                t,
                wire.me(),
                &self.alloc,
                &self.shared.ipc.main,
            )
        {
            self.wire_out.reply(to, &reply);
            return;
        }
        if let Some(link) = self.shared.pool_asker.get() {
            link.served(t);
        }
    }
}
