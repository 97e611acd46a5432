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
    /// Its lanes now (they move between workers of its kind: see
    /// [`crate::worker::moves`]); changed only under the node's lane-move lock.
    lanes: std::sync::Mutex<Vec<usize>>,
    /// The doorbell its thread sleeps on (its first lane's at start; it stays
    /// when lanes move).
    pub bell: usize,
    /// Lane moves under way to and from this worker ([`crate::worker::moves`]).
    pub(crate) moves: std::sync::Mutex<LaneMoves>,
    /// Whether [`moves`](Self::moves) may hold something for the worker to do
    /// (checked on its loop without the lock).
    pub(crate) moves_pending: AtomicBool,
    /// Serialises the claim hand-shakes (retirement, lane moves) on this worker.
    pub(crate) handshake: std::sync::Mutex<()>,
    /// The work queued on its lanes plus the time its current step has run,
    /// in ns, as the reinforcement thread estimated it last
    /// ([`crate::reinforcement`]).
    pub load_ns: AtomicU64,
    /// Lanes moved away from this worker by the reinforcement thread.
    pub lanes_given: AtomicU64,
    /// Measured task steps waiting for the reinforcement thread.
    pub(crate) samples: std::sync::Mutex<Vec<crate::models::Sample>>,
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

/// What moves to and from one worker (see [`crate::worker::moves`]).
#[derive(Default)]
pub(crate) struct LaneMoves {
    /// Lanes to hand to other workers (asked while it was between tasks).
    pub(crate) give: Vec<(usize, std::sync::Arc<WorkerStats>)>,
    /// Lanes handed to it, to absorb.
    pub(crate) incoming: Vec<chi_sdk::queue::Consumer>,
    /// Lanes taken from it while it was inside a task, to forget.
    pub(crate) taken: Vec<usize>,
}

impl std::fmt::Debug for LaneMoves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneMoves")
            .field(
                "give",
                &self
                    .give
                    .iter()
                    .map(|(l, w)| (*l, w.id))
                    .collect::<Vec<_>>(),
            )
            .field("incoming", &self.incoming.len())
            .field("taken", &self.taken)
            .finish()
    }
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
    /// The reinforcement thread took some lanes (listed in the worker's
    /// lane moves) while the worker was inside a task: it forgets them and
    /// goes on with the others.
    pub const MOVED: u8 = 3;
}

impl WorkerStats {
    /// Fresh statistics of worker `id`.
    pub fn new(id: u32, kind: &'static str, lanes: Vec<usize>) -> WorkerStats {
        WorkerStats {
            id,
            kind,
            bell: lanes.first().copied().unwrap_or(0),
            lanes: std::sync::Mutex::new(lanes),
            moves: std::sync::Mutex::default(),
            moves_pending: AtomicBool::new(false),
            handshake: std::sync::Mutex::new(()),
            load_ns: AtomicU64::new(0),
            lanes_given: AtomicU64::new(0),
            samples: std::sync::Mutex::new(Vec::new()),
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

    /// The header of the task the worker runs now, if its block still holds
    /// that task (magic and generation read as volatile words: a client may
    /// rewrite them, and the worker may finish the task meanwhile). Read its
    /// fields with volatile reads or atomics only.
    pub(crate) fn current_task(&self) -> Option<*const chi_sdk::task::TaskHeader> {
        use chi_sdk::task::{TASK_MAGIC, TaskHeader};
        // Relaxed: monitoring reads of what the worker publishes per step.
        let task = self.current.load(Ordering::Relaxed) as *const TaskHeader;
        let generation = self.current_generation.load(Ordering::Relaxed);
        if task.is_null() {
            return None;
        }
        // SAFETY: the worker validated this block of the main segment when it
        // took the task, and the segment stays mapped while the runtime runs;
        // only volatile reads of plain words.
        let (magic, g) = unsafe {
            (
                std::ptr::read_volatile(std::ptr::addr_of!((*task).magic)),
                std::ptr::read_volatile(std::ptr::addr_of!((*task).generation)),
            )
        };
        (magic == TASK_MAGIC && u32::from(g) == generation).then_some(task)
    }

    /// Its lanes now.
    pub fn lanes(&self) -> Vec<usize> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes its lane list (under the node's lane-move lock).
    pub(crate) fn set_lanes(&self, f: impl FnOnce(&mut Vec<usize>)) {
        f(&mut self.lanes.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Rings the worker's doorbell (after posting it something).
    pub(crate) fn ring(&self, queue: &chi_sdk::queue::MultiLaneQueue) {
        queue.ring_bell(self.bell);
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
    /// returns the verdict of a claim made meanwhile: [`claim::NONE`],
    /// [`claim::TAKEN`] (the supervisor retired the worker) or
    /// [`claim::MOVED`] (the reinforcement thread took some of its lanes).
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
    pub fn leave_task(&self) -> u8 {
        // Relaxed + compiler fence: the supervisor's membarrier orders it.
        self.phase.store(phase::IDLE, Ordering::Relaxed);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        if self.claim.load(Ordering::Relaxed) != claim::NONE {
            return self.settle_claim();
        }
        claim::NONE
    }

    /// A claim is being decided: wait for its verdict (it comes within
    /// microseconds) and return it.
    #[cold]
    fn settle_claim(&self) -> u8 {
        loop {
            // Acquire: pairs with the claimer's Release store of the verdict.
            match self.claim.load(Ordering::Acquire) {
                claim::PENDING => std::thread::yield_now(),
                claim::TAKEN => {
                    self.phase.store(phase::RETIRED, Ordering::Relaxed);
                    return claim::TAKEN;
                }
                v => return v,
            }
        }
    }

    /// The claimer's side of the hand-shake: posts a claim, forces a barrier
    /// on every thread, and returns whether the worker is inside a task (then
    /// the claim stays PENDING and the caller must store its verdict with
    /// Release); if not, the claim is withdrawn. Call it holding
    /// [`handshake`](Self::handshake); it fails while an earlier verdict is
    /// not yet settled by the worker.
    ///
    /// A [`claim::MOVED`] verdict the worker has not applied yet (it is still
    /// in the same task) may be claimed over: a withdrawn claim puts it back,
    /// and the worker applies it later; a retirement makes it moot.
    pub(crate) fn claim_in_task(&self) -> bool {
        if !membarrier_ready() || self.phase.load(Ordering::Acquire) != phase::IN_TASK {
            return false;
        }
        // Acquire: pairs with the worker's Release CAS in `settle_moved`.
        let prev = self.claim.load(Ordering::Acquire);
        if !matches!(prev, claim::NONE | claim::MOVED) {
            return false;
        }
        // The asymmetric Dekker hand-shake (see `leave_task`): claim, full
        // barrier on every thread of the process, then look at the phase. A
        // CAS: the worker may settle a MOVED verdict meanwhile (then the
        // claim waits for the next tick).
        if self
            .claim
            .compare_exchange(prev, claim::PENDING, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let barrier =
            rustix::thread::membarrier(rustix::thread::MembarrierCommand::PrivateExpedited);
        // Acquire: pairs with the worker's Release store of IN_TASK, so its pops
        // before the task happen before the take-over.
        if barrier.is_err() || self.phase.load(Ordering::Acquire) != phase::IN_TASK {
            // Release: pairs with the worker's Acquire load in `settle_claim`;
            // a MOVED verdict not yet applied is put back.
            self.claim.store(prev, Ordering::Release);
            return false;
        }
        true
    }

    /// The worker applied a [`claim::MOVED`] verdict (it forgot the lanes
    /// taken): the claim is free again, unless a new claim came meanwhile,
    /// whose verdict this returns once decided.
    pub(crate) fn settle_moved(&self) -> Option<u8> {
        // Release: pairs with the Acquire load in `claim_in_task` (the lanes
        // forgotten before this happen before the next claim).
        match self.claim.compare_exchange(
            claim::MOVED,
            claim::NONE,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => None,
            Err(_) => Some(self.settle_claim()),
        }
    }

    /// The supervisor's side of the hand-shake: retires this worker if it is
    /// inside a task, and returns whether it did. Then the worker never
    /// touches its lanes again, and the caller may give them to another
    /// worker.
    pub fn retire(&self) -> bool {
        let _hs = self.handshake.lock().unwrap_or_else(|e| e.into_inner());
        if !self.claim_in_task() {
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
