//! What a worker shares with the supervisor: its statistics and the
//! retirement hand-shake.
//!
//! # Design
//!
//! Each worker publishes a [`WorkerStats`]: counters for `status`, a beat (its
//! loop counter) and the task it runs now. The node state keeps the list; the
//! supervisor samples it to tell a worker that moves from one that is wedged in
//! a task that neither returns nor yields.
//!
//! A wedged worker is *retired*: another worker takes its lanes, and the
//! wedged one must never touch them again. Two words decide it, the worker's
//! [`phase`] (outside a task, inside one, retired) and the supervisor's
//! [`claim`] (none, pending, taken), and both sides of the hand-shake are here:
//!
//! * the worker, after each task step, stores its phase and loads the claim
//!   ([`WorkerStats::leave_task`]) with no fence and no locked instruction —
//!   it is on the task path;
//! * the supervisor posts a claim, issues `membarrier(PRIVATE_EXPEDITED)` (a
//!   full fence on every thread of the process), and takes the lanes only if
//!   the worker is still inside its task ([`WorkerStats::retire`]).
//!
//! It is an asymmetric Dekker: the barrier stands in for the worker's fence,
//! so the two cannot both miss each other. If the supervisor sees the worker
//! still in its task, the worker sees the claim when it leaves the task, waits
//! for the verdict, and learns that it is retired. Without `membarrier` (an
//! old kernel, a sandbox) wedged workers are reported but never retired.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// What the status command shows of a worker.
#[derive(Debug)]
pub struct WorkerStats {
    /// Worker id.
    pub id: u32,
    /// `low_latency` or `high_latency`.
    pub kind: &'static str,
    /// Its lanes.
    pub lanes: Vec<usize>,
    /// Tasks completed.
    pub completed: AtomicU64,
    /// Asleep on its doorbell.
    pub sleeping: AtomicBool,
    /// Loop iterations: the supervisor reads it to tell a worker that moves
    /// from one that is wedged (inside a task that never returns or yields).
    pub beat: AtomicU64,
    /// [`phase`]: outside a task, inside one, or retired (its lanes were
    /// taken over while it was wedged inside a task).
    pub phase: AtomicU8,
    /// [`claim`]: the supervisor's side of the retirement hand-shake.
    pub claim: AtomicU8,
    /// Address of the task the worker runs now (for the supervisor).
    pub current: AtomicU64,
    /// Generation of that task.
    pub current_generation: AtomicU32,
    /// Set by the supervisor: the worker had work and made no progress for the
    /// configured stall timeout.
    pub stalled: AtomicBool,
    /// Live coroutines (running or suspended tasks).
    pub live: AtomicU64,
    /// Popped words that were not live tasks and were dropped untouched.
    pub refused: AtomicU64,
    /// Panics caught in the worker's own code (each failed its task).
    pub panics: AtomicU64,
    /// Lane cells claimed by a producer that never published them, skipped.
    pub cells_skipped: AtomicU64,
    /// Times the worker thread was restarted after it died.
    pub restarts: AtomicU64,
    /// The CPUs its thread may run on, in the list syntax (`0-3`), read back
    /// when the thread started and applied `workers.affinity`.
    pub cpus: std::sync::OnceLock<String>,
    /// Tasks suspended on this worker (address to generation), listed when a
    /// task first yields and unlisted when it ends (tasks that never yield
    /// never touch it): if the worker wedges, the supervisor marks them
    /// stalled too, so their waiters get an error instead of waiting for a
    /// worker that will not resume them.
    pub suspended: std::sync::Mutex<std::collections::HashMap<u64, u32>>,
    /// Tasks blocked on this worker (waiting for a subtask, a lock or a
    /// timer): they cost no CPU until woken.
    pub blocked: AtomicU64,
    /// Periodic tasks live on this worker.
    pub periodic: AtomicU64,
    /// Wake-ups posted by other workers' threads for this worker's slots
    /// ([`post`](Self::post)), drained between steps.
    mailbox: std::sync::Mutex<Vec<u32>>,
    /// Whether the mailbox may hold something (checked without the lock).
    mail: AtomicBool,
}

/// Values of [`WorkerStats::phase`].
pub mod phase {
    /// Not inside a task.
    pub const IDLE: u8 = 0;
    /// Inside a task's coroutine.
    pub const IN_TASK: u8 = 1;
    /// Retired by the supervisor while inside a task: the worker must never
    /// touch its lanes again (another worker consumes them now); it finishes
    /// the tasks it holds and exits.
    pub const RETIRED: u8 = 2;
}

/// Values of [`WorkerStats::claim`].
pub mod claim {
    /// No retirement under way.
    pub const NONE: u8 = 0;
    /// The supervisor is deciding; the worker waits at the end of its step.
    pub const PENDING: u8 = 1;
    /// The supervisor took the lanes: the worker is retired.
    pub const TAKEN: u8 = 2;
}

impl WorkerStats {
    /// Fresh statistics of worker `id`.
    pub fn new(id: u32, kind: &'static str, lanes: Vec<usize>) -> WorkerStats {
        WorkerStats {
            id,
            kind,
            lanes,
            completed: AtomicU64::new(0),
            sleeping: AtomicBool::new(false),
            beat: AtomicU64::new(0),
            phase: AtomicU8::new(phase::IDLE),
            claim: AtomicU8::new(claim::NONE),
            current: AtomicU64::new(0),
            current_generation: AtomicU32::new(0),
            stalled: AtomicBool::new(false),
            live: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            cells_skipped: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            cpus: std::sync::OnceLock::new(),
            suspended: std::sync::Mutex::new(std::collections::HashMap::new()),
            blocked: AtomicU64::new(0),
            periodic: AtomicU64::new(0),
            mailbox: std::sync::Mutex::new(Vec::new()),
            mail: AtomicBool::new(false),
        }
    }

    /// Posts a wake-up for slot `slot` of this worker (from another thread);
    /// the caller then rings the worker's doorbell.
    pub(crate) fn post(&self, slot: u32) {
        self.mailbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot);
        // Release: pairs with the Acquire swap in `take_mail` (the slot pushed
        // above is seen by the worker that sees the flag); the doorbell's
        // SeqCst fence orders it before the check of a worker going to sleep.
        self.mail.store(true, Ordering::Release);
    }

    /// Whether wake-ups may wait in the mailbox.
    #[inline]
    pub(crate) fn has_mail(&self) -> bool {
        // Relaxed: a hint; `take_mail` synchronises.
        self.mail.load(Ordering::Relaxed)
    }

    /// Takes the posted wake-ups into `out`.
    pub(crate) fn take_mail(&self, out: &mut Vec<u32>) {
        // Acquire: pairs with the Release store in `post`.
        if self.mail.swap(false, Ordering::Acquire) {
            let mut m = self.mailbox.lock().unwrap_or_else(|e| e.into_inner());
            out.append(&mut m);
        }
    }
}

impl WorkerStats {
    /// Lists a task that yielded (see [`suspended`](Self::suspended)); off the
    /// path of tasks that never yield.
    #[cold]
    pub(crate) fn list_suspended(&self, task: u64, generation: u32) {
        let mut s = self.suspended.lock().unwrap_or_else(|e| e.into_inner());
        s.insert(task, generation);
    }

    /// Unlists a task that had yielded, once it ends.
    #[cold]
    pub(crate) fn unlist_suspended(&self, task: u64) {
        let mut s = self.suspended.lock().unwrap_or_else(|e| e.into_inner());
        s.remove(&task);
    }

    /// The listed tasks (address, generation), for a retirement.
    pub(crate) fn suspended_tasks(&self) -> Vec<(u64, u32)> {
        let s = self.suspended.lock().unwrap_or_else(|e| e.into_inner());
        s.iter().map(|(&a, &g)| (a, g)).collect()
    }

    /// The worker's side of the hand-shake: marks the end of a task step and
    /// returns whether the supervisor retired the worker meanwhile.
    ///
    /// This side stores its phase and loads the supervisor's claim with no
    /// fence (no locked instruction on the task path); the supervisor, which
    /// stores the claim and then loads the phase, issues
    /// `membarrier(PRIVATE_EXPEDITED)` in between, which acts as a full fence on
    /// every thread of the process. So the two cannot both miss each other: if
    /// the supervisor sees this worker still in its task, this worker sees the
    /// claim here.
    #[inline]
    #[must_use]
    pub fn leave_task(&self) -> bool {
        // Relaxed + compiler fence: the supervisor's membarrier orders it.
        self.phase.store(phase::IDLE, Ordering::Relaxed);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        if self.claim.load(Ordering::Relaxed) != claim::NONE {
            return self.settle_claim();
        }
        false
    }

    /// The supervisor is deciding whether to take this worker's lanes: wait
    /// for its verdict (it comes within microseconds); returns whether the
    /// worker is retired.
    #[cold]
    fn settle_claim(&self) -> bool {
        loop {
            // Acquire: pairs with the supervisor's Release store of the verdict.
            match self.claim.load(Ordering::Acquire) {
                claim::PENDING => std::thread::yield_now(),
                claim::TAKEN => {
                    self.phase.store(phase::RETIRED, Ordering::Relaxed);
                    return true;
                }
                _ => return false,
            }
        }
    }

    /// The supervisor's side of the hand-shake: retires this worker if it is
    /// inside a task, and returns whether it did. Then the worker never
    /// touches its lanes again, and the caller may give them to another
    /// worker.
    pub fn retire(&self) -> bool {
        if !membarrier_ready() || self.phase.load(Ordering::Acquire) != phase::IN_TASK {
            return false;
        }
        // The asymmetric Dekker hand-shake (see `leave_task`): claim, full
        // barrier on every thread of the process, then look at the phase.
        self.claim.store(claim::PENDING, Ordering::Relaxed);
        if rustix::thread::membarrier(rustix::thread::MembarrierCommand::PrivateExpedited).is_err()
        {
            // Release: pairs with the worker's Acquire load in `settle_claim`.
            self.claim.store(claim::NONE, Ordering::Release);
            return false;
        }
        // Acquire: pairs with the worker's Release store of IN_TASK, so its pops
        // before the task happen before the take-over.
        if self.phase.load(Ordering::Acquire) != phase::IN_TASK {
            // Release: pairs with the worker's Acquire load in `settle_claim`.
            self.claim.store(claim::NONE, Ordering::Release);
            return false;
        }
        // Release: pairs with the worker's Acquire load in `settle_claim`.
        self.claim.store(claim::TAKEN, Ordering::Release);
        self.phase.store(phase::RETIRED, Ordering::Relaxed);
        true
    }
}

/// Whether this process is registered for `membarrier(PRIVATE_EXPEDITED)`,
/// which the retirement hand-shake needs (registered once; a kernel or a
/// sandbox without it leaves wedged workers reported but not replaced).
pub fn membarrier_ready() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        match rustix::thread::membarrier(
            rustix::thread::MembarrierCommand::RegisterPrivateExpedited,
        ) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "membarrier is not available: wedged workers are reported but their lanes \
                     are not moved"
                );
                false
            }
        }
    })
}
