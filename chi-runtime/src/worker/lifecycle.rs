//! A worker thread's life around its loop: start and restart, panics of the
//! worker's own code, retirement, and the end at stop.
//!
//! # Design
//!
//! * **Start and restart** (`worker_thread`): the thread builds its
//!   [`Worker`] and runs it; should the worker's own code panic past every
//!   guard (a bug), the thread logs it and starts a new worker on the same
//!   lanes, so they are never left without a consumer.
//! * **Panics** of the worker's own code (a module's panics are caught on the
//!   module's side of the boundary) unwind to one `catch_unwind` around the
//!   loop in [`Worker::run`], not one per task, which would keep the task path
//!   from being inlined. The task being handled fails with `PANICKED` and the
//!   loop goes on.
//! * **Retirement**: a worker the supervisor retired (see
//!   [`super::supervision`]) finishes the suspended tasks it holds without
//!   touching a lane, and exits.
//! * **Stop**: the worker resumes its suspended tasks for a while, fails those
//!   that do not finish with `SHUTDOWN` (their coroutines are leaked, not
//!   unwound), and fails what is still queued on its lanes with `SHUTDOWN`, so
//!   no client waits forever.
//!
//! These are methods of [`Worker`] (a second `impl` block); the task path
//! itself is in the parent module.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chi_sdk::queue::Consumer;
use chi_sdk::shm::ShmPtr;
use chi_sdk::task::{TaskHeader, code};

use super::supervision::WorkerStats;
use super::validate::validate_task;
use super::{Parked, Worker};
use crate::state::NodeState;

/// A worker thread: runs the worker and, should the worker's own code panic
/// past every guard (a bug), logs it and starts the worker again on the same
/// lanes, so they are never left without a consumer.
pub(crate) fn worker_thread(shared: Arc<NodeState>, stats: Arc<WorkerStats>, consumer: Consumer) {
    let id = stats.id;
    let mut consumer = Some(consumer);
    loop {
        let c = match consumer.take() {
            Some(c) => c,
            None => {
                // Lanes posted to it and not absorbed are claimed anew with
                // the rest of its list.
                super::moves::drop_incoming(&stats);
                match shared.ipc.queue.consumer(&stats.lanes()) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(worker = id, error = %e, "worker could not take its lanes back; stopping");
                        shared.request_stop("a worker that could not restart");
                        return;
                    }
                }
            }
        };
        let worker = match Worker::new(shared.clone(), stats.clone(), c) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(worker = id, error = %e, "worker could not start; stopping");
                shared.request_stop("a worker that could not start");
                return;
            }
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run())) {
            Ok(()) => return,
            Err(p) => {
                let what = panic_message(&*p);
                stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::error!(worker = id, panic = %what, "worker died; restarting it on its lanes");
                if shared.stopping() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Worker {
    /// Runs until the runtime stops.
    ///
    /// A panic of the worker's own code unwinds to here (one `catch_unwind`
    /// around the loop, not one per task, which would keep the task path from
    /// being inlined): it is logged, the task being handled fails with
    /// `PANICKED`, and the loop goes on.
    pub fn run(mut self) {
        // The services reach this worker's `Local` while its tasks run.
        let _installed = self.local.install();
        loop {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve())) {
                Ok(()) => break,
                Err(payload) => {
                    let ptr = self.handling.take();
                    self.recover(&*payload, ptr);
                }
            }
        }
        if !self.retired {
            self.drain();
        }
        // The replies of tasks that ended in the drain leave too.
        self.flush_wire();
    }

    /// Looks for lanes held up by a claimed but unpublished cell and skips
    /// those whose producer is most likely dead
    /// ([`CellStalls::check`](super::stalls::CellStalls::check)). Returns
    /// whether some lane is still held up.
    pub(super) fn check_stalled_cells(&mut self) -> bool {
        let epoch = self.shared.reaper.epoch();
        self.stalls.check(&mut self.consumer, epoch, &self.stats)
    }

    /// Runs `f`, catching a panic of the worker's own code (a module's panics
    /// are caught on the module's side of the boundary): the panic is logged,
    /// counted, and the task of `ptr`, if it is a live task not yet complete, is
    /// failed with `PANICKED`; the worker goes on.
    fn guarded(&mut self, f: impl FnOnce(&mut Worker), ptr: Option<ShmPtr>) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        if let Err(payload) = r {
            self.recover(&*payload, ptr);
        }
    }

    /// After a caught panic: log and count it, and fail the task of `ptr` if it
    /// is a live task not yet complete.
    #[cold]
    fn recover(&mut self, payload: &(dyn std::any::Any + Send), ptr: Option<ShmPtr>) {
        let what = panic_message(payload);
        self.stats.panics.fetch_add(1, Ordering::Relaxed);
        self.leave_task();
        tracing::error!(
            worker = self.stats.id,
            task = ?ptr,
            panic = %what,
            "the worker caught a panic of its own code; the task fails and the worker goes on"
        );
        if let Some(ptr) = ptr
            && let Ok((task, generation)) = validate_task(&self.alloc, &self.runtime_owned, ptr)
            // SAFETY: validated just above; only read.
            && !unsafe { &*task }.is_complete()
        {
            self.finish(
                task,
                generation,
                code::PANICKED,
                Some(format!(
                    "the runtime failed while handling this task: {what}"
                )),
            );
        }
    }

    /// No coroutine stack could be allocated for `task`: it fails (and the
    /// log says what to lower).
    #[cold]
    pub(super) fn no_stack(&mut self, task: *mut TaskHeader, generation: u32, e: &std::io::Error) {
        static STACK_LOG: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::per_second();
        let live = self.live;
        if let Some(suppressed) = STACK_LOG.allow() {
            tracing::warn!(
                worker = self.stats.id,
                live,
                suppressed,
                error = %e,
                "cannot allocate a coroutine stack; lower coroutine.max_live or \
                 coroutine.stack_size"
            );
        }
        self.finish(
            task,
            generation,
            code::FAILED,
            Some(format!(
                "the runtime could not allocate a coroutine stack ({e}) with {live} tasks live \
                 on this worker; resubmit later"
            )),
        );
    }

    /// The supervisor took this worker's lanes over while it was wedged: run
    /// the tasks it holds to their end, touching no lane, then exit.
    pub(super) fn finish_retired(&mut self) {
        tracing::warn!(
            worker = self.stats.id,
            live = self.live,
            "retired worker finishes the tasks it holds; its lanes are served by another worker"
        );
        loop {
            self.collect_wakes();
            let sub = self.local.inbox.borrow_mut().pop_back();
            if let Some(sub) = sub {
                self.guarded(|w| w.dispatch_sub(sub), None);
            } else if self.shared.stopping() {
                break;
            } else if let Some(s) = self.slots.ready.pop_front() {
                self.guarded(|w| w.resume(s), None);
            } else if self.live == 0 {
                break;
            } else {
                // Blocked tasks wait for wake-ups from other workers; the
                // doorbell of the lanes is not this worker's any more.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.abandon_all();
        // The lanes belong to the new consumer: forget ours without releasing
        // their claim words (the new consumer's token is there now).
        self.stats.sleeping.store(false, Ordering::Relaxed);
    }

    /// Fails every parked task with `SHUTDOWN` at stop, without resuming them.
    fn abandon_all(&mut self) {
        for (slot, p) in self.slots.drain_parked() {
            let _ = slot;
            self.cleanup(p.task, Some(&p._container));
            let Parked {
                co,
                task,
                generation,
                from_lane,
                ..
            } = p;
            self.live -= 1;
            self.from_lanes -= u64::from(from_lane);
            self.stats.live.store(self.live, Ordering::Relaxed);
            self.finish(
                task,
                generation,
                code::SHUTDOWN,
                Some("the runtime stopped while the task was suspended".into()),
            );
            // Dropping a suspended coroutine force-unwinds its stack through the
            // module's entry point, which catches panics; corosensei then aborts
            // the process (segments left behind, other waiters never answered).
            // The process is exiting: leak the coroutine and its stack instead.
            // The task is complete, so nothing resumes it.
            std::mem::forget(co);
        }
        self.publish_blocked();
    }

    /// At stop: fail what is still queued, run the tasks held for up to
    /// `tasks.stop_drain` (their subtasks too), fail the rest.
    fn drain(&mut self) {
        let deadline = Instant::now() + self.shared.config.tasks.stop_drain;
        // Lanes posted to this worker are its to drain.
        self.apply_moves();
        self.fail_queued();
        // Blocked tasks look at their condition again: periodic ones end.
        self.slots.wake_all_blocked();
        loop {
            self.collect_wakes();
            let sub = self.local.inbox.borrow_mut().pop_back();
            if let Some((task, generation)) = sub {
                self.cleanup(task, None);
                self.finish(
                    task,
                    generation,
                    code::SHUTDOWN,
                    Some("the runtime stopped before running this subtask".into()),
                );
            } else if Instant::now() > deadline {
                break;
            } else if let Some(s) = self.slots.ready.pop_front() {
                self.guarded(|w| w.resume(s), None);
            } else if self.live == 0 {
                break;
            } else {
                // Blocked tasks wait for other workers (their subtasks fail
                // there); look again shortly.
                self.fail_queued();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.abandon_all();
        self.fail_queued();
    }

    /// Fails every task still queued on this worker's lanes with `SHUTDOWN`.
    fn fail_queued(&mut self) {
        while let Some((ptr, _)) = self.consumer.pop() {
            if let Ok((task, generation)) = validate_task(&self.alloc, &self.runtime_owned, ptr) {
                self.cleanup(task, None);
                self.finish(
                    task,
                    generation,
                    code::SHUTDOWN,
                    Some(
                        "the runtime stopped before running this task; start it again and resubmit"
                            .into(),
                    ),
                );
            }
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
