//! Waiting for a task: spin (yielding the CPU between polls after the first
//! microseconds), then sleep on its state word in slices, checking between
//! slices that the runtime lives and the task's lane moves.
//!
//! # Why the spin yields
//!
//! The kernel may wake the worker that answers on the very CPU this thread
//! spins on (it places a wakee next to its waker when it finds no idle CPU
//! cheaply, even with another CPU idle), and that worker then waits for this
//! thread's time slice to end: milliseconds (`docs/benchmarks.md`, "The first
//! task after idleness"). So a wait polls alone for [`SPIN_YIELD_AFTER`] (a warm
//! round trip completes well within it, without a system call), then yields
//! the CPU between batches of polls until [`ClientOptions::spin`] has passed
//! ([`SpinPhase`]), then sleeps.
//!
//! A task the runtime sent to another node ([`TaskHeader::is_remote`]) is
//! spun on for [`ClientOptions::remote_spin`] instead: its answer comes a
//! network round trip (tens of microseconds or more) later, and the futex
//! wake-up of a client that slept meanwhile would add to every such round
//! trip (about 20 µs on the development machine: `docs/benchmarks.md`,
//! "The client's wait on a remote task"). Only while the waiting thread has
//! no other task in flight (one [`Pending`](super::Pending) of its own at
//! most): a thread that keeps many tasks in flight gets completions either
//! way, and the CPU its longer spin would take is the runtime's (pipelined
//! remote tasks lost a tenth of their rate to it beside other load).
//!
//! A thread whose last wait past the first poll ended on a remote task sent
//! by a worker on this thread's own CPU ([`TaskHeader::remote_cpu`]) does
//! not poll alone at the start of its next wait: that task most likely goes
//! the same way, and its worker, sharing the CPU, could not even take it
//! until the alone poll ended (about 6 µs of each remote round trip beside
//! other load on the development machine). A worker on another CPU takes
//! the task meanwhile, so the alone poll stays (skipping it always cost
//! about 20 µs there: `docs/benchmarks.md`). Like the longer spin, only
//! for a thread with no other task in flight.
//!
//! [`ClientOptions::spin`]: super::ClientOptions::spin
//! [`ClientOptions::remote_spin`]: super::ClientOptions::remote_spin

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::proto::{self, runtime_state};
use crate::shm::ShmPtr;
use crate::task::{Task, TaskHeader, state};

use super::{Client, ClientError, ClientOptions, TaskPtr, Waitable};

/// How long a wait polls the state word alone before it yields the CPU
/// between polls (if [`ClientOptions::spin`](super::ClientOptions::spin) is
/// longer): well past a warm round trip (under a microsecond), so those never
/// make a system call.
pub const SPIN_YIELD_AFTER: Duration = Duration::from_micros(5);

/// What a wait does after it has waited `waited` with a spin of `spin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SpinPhase {
    /// Poll the state word (the inlined loop of `wait_header`).
    Poll,
    /// Poll it in batches, yielding the CPU between them.
    PollAndYield,
    /// Announce the waiter and sleep on the word.
    Sleep,
}

impl SpinPhase {
    /// The phase after `waited` of a wait whose spin is `spin`.
    pub(super) fn at(waited: Duration, spin: Duration) -> SpinPhase {
        if waited >= spin {
            SpinPhase::Sleep
        } else if waited >= SPIN_YIELD_AFTER {
            SpinPhase::PollAndYield
        } else {
            SpinPhase::Poll
        }
    }

    /// How long a wait polls alone before its slow path: [`Self::poll_for`],
    /// or nothing when the last remote task's worker shared this thread's
    /// CPU (`worker_shared_cpu`; see the module doc).
    #[inline]
    pub(super) fn first_poll(spin: Duration, worker_shared_cpu: bool) -> Duration {
        if worker_shared_cpu {
            Duration::ZERO
        } else {
            Self::poll_for(spin)
        }
    }

    /// How long [`SpinPhase::Poll`] lasts for a spin of `spin`.
    #[inline]
    pub(super) fn poll_for(spin: Duration) -> Duration {
        if spin < SPIN_YIELD_AFTER {
            spin
        } else {
            SPIN_YIELD_AFTER
        }
    }
}

std::thread_local! {
    /// Whether this thread's last wait that got past the first poll
    /// ([`Client::wait_slow`]) ended on a remote task whose sending worker
    /// ran on this thread's CPU (see the module doc).
    static WORKER_SHARED_CPU: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a thread on CPU `cpu`, with no other task in flight (`alone`),
/// that just finished waiting on the task whose header is `h` skips the
/// alone poll of its next wait: `h` went to another node from a worker on
/// `cpu` (see the module doc).
fn sent_from_here(h: &TaskHeader, cpu: usize, alone: bool) -> bool {
    alone && h.is_remote() && h.remote_cpu() == Some(cpu)
}

/// How long a client with `opts` spins on the task whose header is `h`
/// before sleeping: `remote_spin` for a task sent to another node, if
/// longer than `spin`, when the waiting thread has no other task in flight
/// (`alone`; see the module doc).
fn spin_of(opts: &ClientOptions, h: Option<&TaskHeader>, alone: bool) -> Duration {
    if alone && h.is_some_and(TaskHeader::is_remote) {
        opts.spin.max(opts.remote_spin)
    } else {
        opts.spin
    }
}

impl Client {
    /// Waits until `task` completes (see the module doc for how). `Ok` means the
    /// runtime answered; the method's own outcome is [`TaskPtr::result`]. Fails
    /// if the runtime dies, stops, or makes no progress on the task's lane for the
    /// configured task deadline.
    #[inline]
    pub fn wait<T: Task>(&self, task: &TaskPtr<T>) -> Result<(), ClientError> {
        self.wait_until(task, None)
    }

    /// [`wait`](Self::wait), giving up with [`ClientError::Deadline`] after `timeout`.
    pub fn wait_timeout<T: Task>(
        &self,
        task: &TaskPtr<T>,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        self.wait_until(task, Some(Instant::now() + timeout))
    }

    /// [`wait`](Self::wait), giving up with [`ClientError::Deadline`] at `deadline`
    /// (`None`: only the runtime's own checks end the wait).
    pub fn wait_until<T: Task>(
        &self,
        task: &TaskPtr<T>,
        deadline: Option<Instant>,
    ) -> Result<(), ClientError> {
        self.wait_header(task.get().header(), task.shm(), deadline)
    }

    /// Waits until every task of `tasks` completes (seed: `Wait` on many):
    /// one call for N submitted tasks. In module code (the runtime's own
    /// client) the handler's coroutine sleeps until the last one completes;
    /// each completion wakes it once.
    pub fn wait_all(&self, tasks: &[&dyn Waitable]) -> Result<(), ClientError> {
        self.wait_all_until(tasks, None)
    }

    /// [`wait_all`](Self::wait_all), giving up with [`ClientError::Deadline`]
    /// at `deadline`.
    pub fn wait_all_until(
        &self,
        tasks: &[&dyn Waitable],
        deadline: Option<Instant>,
    ) -> Result<(), ClientError> {
        if self.in_runtime {
            let start = Instant::now();
            // Once done, a task stays done: the first not done is looked for
            // from the last one found.
            let mut i = 0;
            while let Some(k) = tasks[i..].iter().position(|t| !t.is_done()) {
                i += k;
                let t = tasks[i];
                // Run inline, the subtask is done (or the runtime passed this
                // task's cancellation on to it, and the worker ends it).
                if deadline.is_none() && t.header().is_some_and(crate::module_side::run_inline) {
                    continue;
                }
                self.pass_cancel(tasks.iter().filter_map(|t| t.header()));
                self.block_until(t.shm(), start, deadline)?;
            }
            return Ok(());
        }
        for t in tasks {
            if let Some(h) = t.header() {
                self.wait_header(h, t.shm(), deadline)?;
            }
        }
        Ok(())
    }

    /// Cancels a submitted task: it does not start if it has not, a periodic
    /// task does not run again, and waits of its handler end and cancel the
    /// subtasks they wait for; it completes with
    /// [`code::CANCELLED`](crate::task::code::CANCELLED) unless it finished
    /// first. Wait for it as usual afterwards.
    pub fn cancel(&self, task: &dyn Waitable) -> Result<(), ClientError> {
        let Some(h) = task.header() else {
            return Ok(());
        };
        if self.in_runtime {
            return crate::module_side::cancel(h).map_err(ClientError::Refused);
        }
        if h.cancel() {
            // Blocked tasks (a waiting parent, a periodic task between runs)
            // look at their condition again.
            crate::admin::AdminClient::new(self)
                .cancel_sweep()
                .map_err(|e| ClientError::Refused(e.to_string()))?;
        }
        Ok(())
    }

    /// In module code: if the running task was cancelled, passes the
    /// cancellation on to the subtasks it waits for.
    pub(super) fn pass_cancel<'t>(&self, waited: impl IntoIterator<Item = &'t TaskHeader>) {
        if crate::module_side::current_cancelled() {
            for h in waited {
                if !h.is_cancelled() && !h.is_complete() {
                    let _ = crate::module_side::cancel(h);
                }
            }
        }
    }

    /// Suspends the running handler's task until a wake-up (a subtask's
    /// completion) or `deadline`.
    pub(super) fn block_until(
        &self,
        task: ShmPtr,
        start: Instant,
        deadline: Option<Instant>,
    ) -> Result<(), ClientError> {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Err(ClientError::Deadline {
                        task,
                        waited: start.elapsed(),
                    });
                }
                Some(d - now)
            }
        };
        if !crate::module_side::block(timeout) {
            // Module code outside a task (no coroutine to suspend): the
            // thread waits.
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    }

    /// How long to spin on the task whose header is `h` before sleeping
    /// (see the module doc).
    pub(super) fn spin_for(&self, h: Option<&TaskHeader>) -> Duration {
        spin_of(&self.opts, h, super::task_ptr::pending_here() <= 1)
    }

    /// Waits for the task whose header is `h` (at `ptr`).
    #[inline]
    pub(super) fn wait_header(
        &self,
        h: &TaskHeader,
        ptr: ShmPtr,
        deadline: Option<Instant>,
    ) -> Result<(), ClientError> {
        if h.is_complete() {
            return Ok(());
        }
        if self.in_runtime {
            return self.wait_in_runtime(h, ptr, deadline);
        }
        let start = Instant::now();
        // Polls alone for the first microseconds only (not at all when the
        // last remote task's worker shared this CPU: see the module doc);
        // the rest of the spin yields, off this inlined path (`wait_slow`).
        let poll_for =
            SpinPhase::first_poll(self.opts.spin, WORKER_SHARED_CPU.with(std::cell::Cell::get));
        while start.elapsed() < poll_for {
            for _ in 0..64 {
                if h.is_complete() {
                    return Ok(());
                }
                std::hint::spin_loop();
            }
        }
        self.wait_slow(ptr, h, start, deadline)
    }

    /// [`wait_header`](Self::wait_header) in module code: a subtask that has
    /// not started runs at once on this handler's stack if the runtime can
    /// (no deadline); otherwise the handler's coroutine sleeps until the
    /// task completes (its completion wakes it).
    #[inline(never)]
    fn wait_in_runtime(
        &self,
        h: &TaskHeader,
        ptr: ShmPtr,
        deadline: Option<Instant>,
    ) -> Result<(), ClientError> {
        // The runtime passes a cancellation of this task on to `h` itself
        // when it is asked to run `h` inline.
        if deadline.is_none() && crate::module_side::run_inline(h) && h.is_complete() {
            return Ok(());
        }
        let start = Instant::now();
        while !h.is_complete() {
            self.pass_cancel([h]);
            self.block_until(ptr, start, deadline)?;
        }
        Ok(())
    }

    #[cold]
    fn wait_slow(
        &self,
        ptr: ShmPtr,
        h: &TaskHeader,
        start: Instant,
        deadline: Option<Instant>,
    ) -> Result<(), ClientError> {
        // The thread's other tasks in flight do not change while it waits.
        let alone = super::task_ptr::pending_here() <= 1;
        let r = self.spin_then_sleep(ptr, h, start, deadline, alone);
        if r.is_ok() {
            let shared = sent_from_here(h, rustix::thread::sched_getcpu(), alone);
            WORKER_SHARED_CPU.with(|c| c.set(shared));
        }
        r
    }

    /// The rest of a wait past its first poll (see the module doc); `alone`:
    /// the thread has no other task in flight.
    fn spin_then_sleep(
        &self,
        ptr: ShmPtr,
        h: &TaskHeader,
        start: Instant,
        deadline: Option<Instant>,
        alone: bool,
    ) -> Result<(), ClientError> {
        // The rest of the spin gives the CPU up between polls: the worker that
        // answers may be queued on this very CPU (see the module doc). (With
        // a spin shorter than the alone poll, a remote task's longer spin
        // starts here in the `Poll` phase: it yields too.)
        // (The spin is read again each turn: the worker may mark the task
        // remote after the wait began.)
        while SpinPhase::at(start.elapsed(), spin_of(&self.opts, Some(h), alone))
            != SpinPhase::Sleep
        {
            for _ in 0..64 {
                if h.is_complete() {
                    return Ok(());
                }
                std::hint::spin_loop();
            }
            std::thread::yield_now();
        }
        let mut stopping_since = None::<Instant>;
        let limit = Duration::from_millis(self.reg.wait_timeout_ms);
        let no_progress = Duration::from_millis(self.reg.task_deadline_ms);
        loop {
            let cur = h.announce_waiter();
            if cur & state::COMPLETE != 0 {
                return Ok(());
            }
            let slice = match deadline {
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(10)),
                None => Duration::from_millis(10),
            };
            h.sleep_until_changed(cur, Some(slice));
            if h.is_complete() {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ClientError::Deadline {
                    task: ptr,
                    waited: start.elapsed(),
                });
            }
            // SAFETY: the runtime block was validated at connect; it stays mapped
            // while the client lives.
            let rb = unsafe { self.runtime.as_ref() };
            let pid = self.reg.runtime_pid;
            if !crate::shm::alloc::pid_alive(pid) {
                return Err(ClientError::RuntimeDied { pid });
            }
            if rb.state.load(Ordering::Acquire) != runtime_state::RUNNING {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= limit {
                    return Err(ClientError::RuntimeStopped {
                        pid,
                        waited: since.elapsed(),
                    });
                }
            } else if !no_progress.is_zero()
                && start.elapsed() >= no_progress
                && let Some(stalled) = match h.lane.load(Ordering::Relaxed) {
                    crate::task::LANE_STALLED => Some(start.elapsed()),
                    lane => self.lane_stalled_for(lane),
                }
                && stalled >= no_progress
            {
                return Err(ClientError::NoProgress {
                    task: ptr,
                    lane: h.lane.load(Ordering::Relaxed),
                    stalled,
                    pid,
                });
            }
        }
    }

    /// How long the runtime's supervisor has not seen the worker of `lane` make
    /// progress (`None` if the runtime publishes no beat for that lane).
    fn lane_stalled_for(&self, lane: u32) -> Option<Duration> {
        // SAFETY: validated at connect; mapped while the client lives.
        let rb = unsafe { self.runtime.as_ref() };
        if lane >= rb.num_lanes {
            return None;
        }
        let beats = rb
            .lane_beats
            .resolve_slice::<std::sync::atomic::AtomicU64>(u64::from(rb.num_lanes))
            .ok()?;
        // SAFETY: resolved in bounds and aligned; atomics are valid for any bytes.
        let beat = unsafe { &*beats.as_ptr().add(lane as usize) };
        // Relaxed: a monitoring figure; a stale read only delays the verdict.
        let at = beat.load(Ordering::Relaxed);
        if at == 0 {
            return None;
        }
        Some(Duration::from_millis(
            proto::monotonic_ms().saturating_sub(at),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: fn(u64) -> Duration = Duration::from_micros;

    #[test]
    fn the_default_spin_polls_then_yields_then_sleeps() {
        let spin = US(50);
        assert_eq!(SpinPhase::at(US(0), spin), SpinPhase::Poll);
        assert_eq!(SpinPhase::at(US(4), spin), SpinPhase::Poll);
        assert_eq!(
            SpinPhase::at(SPIN_YIELD_AFTER, spin),
            SpinPhase::PollAndYield
        );
        assert_eq!(SpinPhase::at(US(49), spin), SpinPhase::PollAndYield);
        assert_eq!(SpinPhase::at(US(50), spin), SpinPhase::Sleep);
        assert_eq!(SpinPhase::poll_for(spin), SPIN_YIELD_AFTER);
    }

    #[test]
    fn a_spin_shorter_than_the_poll_window_never_yields() {
        let spin = US(3);
        assert_eq!(SpinPhase::poll_for(spin), spin);
        assert_eq!(SpinPhase::at(US(2), spin), SpinPhase::Poll);
        assert_eq!(SpinPhase::at(US(3), spin), SpinPhase::Sleep);
        assert_eq!(SpinPhase::at(US(4), spin), SpinPhase::Sleep);
    }

    #[test]
    fn no_spin_sleeps_at_once() {
        assert_eq!(SpinPhase::poll_for(Duration::ZERO), Duration::ZERO);
        assert_eq!(
            SpinPhase::at(Duration::ZERO, Duration::ZERO),
            SpinPhase::Sleep
        );
    }

    #[test]
    fn a_long_spin_yields_until_its_end() {
        let spin = Duration::from_millis(20);
        assert_eq!(SpinPhase::poll_for(spin), SPIN_YIELD_AFTER);
        assert_eq!(SpinPhase::at(US(19_999), spin), SpinPhase::PollAndYield);
        assert_eq!(SpinPhase::at(US(20_000), spin), SpinPhase::Sleep);
    }

    #[test]
    fn a_task_sent_to_another_node_is_spun_on_longer() {
        use crate::task::TaskHeader;
        use crate::types::{DomainQuery, PoolId};

        let opts = ClientOptions::default();
        let h = TaskHeader::new(PoolId(1), 0, 64, DomainQuery::local());
        assert_eq!(spin_of(&opts, Some(&h), true), opts.spin);
        assert_eq!(spin_of(&opts, None, true), opts.spin);
        h.mark_remote(Some(3));
        assert_eq!(h.remote_cpu(), Some(3));
        assert!(opts.remote_spin > opts.spin);
        assert_eq!(spin_of(&opts, Some(&h), true), opts.remote_spin);
        assert_eq!(
            SpinPhase::at(opts.spin, spin_of(&opts, Some(&h), true)),
            SpinPhase::PollAndYield,
            "still spinning where a local task's wait sleeps"
        );
        // A remote spin shorter than the spin never shortens it.
        let short = ClientOptions {
            remote_spin: US(1),
            ..ClientOptions::default()
        };
        assert_eq!(spin_of(&short, Some(&h), true), short.spin);
        // With a spin shorter than the alone poll, the slow path starts in
        // the `Poll` phase of the remote spin, and keeps spinning there.
        let tiny = ClientOptions {
            spin: US(2),
            ..ClientOptions::default()
        };
        assert_ne!(
            SpinPhase::at(US(2), spin_of(&tiny, Some(&h), true)),
            SpinPhase::Sleep
        );
        // A thread with other tasks in flight spins as on any task.
        assert_eq!(spin_of(&opts, Some(&h), false), opts.spin);
        // The bit survives the completion (a later wait on the same task).
        let _ = h.complete(0);
        assert!(h.is_remote() && h.is_complete());
    }

    #[test]
    fn after_a_remote_task_from_this_cpu_the_next_wait_does_not_poll_alone() {
        use crate::task::TaskHeader;
        use crate::types::{DomainQuery, PoolId};

        let spin = ClientOptions::default().spin;
        assert_eq!(SpinPhase::first_poll(spin, false), SPIN_YIELD_AFTER);
        assert_eq!(SpinPhase::first_poll(spin, true), Duration::ZERO);
        let local = TaskHeader::new(PoolId(1), 0, 64, DomainQuery::local());
        assert!(!sent_from_here(&local, 0, true), "a local task");
        let remote = TaskHeader::new(PoolId(1), 0, 64, DomainQuery::local());
        remote.mark_remote(Some(1));
        assert!(sent_from_here(&remote, 1, true), "sent from this CPU");
        assert!(!sent_from_here(&remote, 0, true), "sent from another CPU");
        assert!(!sent_from_here(&remote, 1, false), "others in flight");
        let unknown = TaskHeader::new(PoolId(1), 0, 64, DomainQuery::local());
        unknown.mark_remote(None);
        assert!(!sent_from_here(&unknown, 0, true), "CPU unknown");
    }

    #[test]
    fn the_sending_cpu_is_kept_beside_the_other_bits() {
        use crate::task::{TaskHeader, state};
        use crate::types::{DomainQuery, PoolId};

        let h = TaskHeader::new(PoolId(1), 0, 64, DomainQuery::local());
        assert_eq!(h.remote_cpu(), None);
        h.mark_remote(Some(0));
        assert_eq!(h.remote_cpu(), Some(0));
        assert_eq!(h.state_bits() & !state::REMOTE_CPU, state::REMOTE);
        let _ = h.complete(0);
        assert!(h.is_complete() && h.remote_cpu() == Some(0));
        // A CPU past the field is unknown.
        let h = TaskHeader::new(PoolId(1), 0, 64, DomainQuery::local());
        h.mark_remote(Some(255));
        assert!(h.is_remote());
        assert_eq!(h.remote_cpu(), None);
        let h = TaskHeader::new(PoolId(1), 0, 64, DomainQuery::local());
        h.mark_remote(None);
        assert_eq!((h.is_remote(), h.remote_cpu()), (true, None));
    }

    /// The inlined loop ends where `at` leaves `Poll`.
    #[test]
    fn the_poll_window_ends_where_polling_alone_ends() {
        for spin in [0, 1, 4, 5, 6, 50, 20_000].map(US) {
            let end = SpinPhase::poll_for(spin);
            assert!(end <= spin);
            assert_ne!(SpinPhase::at(end, spin), SpinPhase::Poll, "spin {spin:?}");
            if !end.is_zero() {
                assert_eq!(
                    SpinPhase::at(end - Duration::from_nanos(1), spin),
                    SpinPhase::Poll
                );
            }
        }
    }
}
