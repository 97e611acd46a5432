//! Workers: pop tasks from their lanes, route them to a container and run each in
//! a stackful coroutine.
//!
//! # The loop
//!
//! A worker holds its process-queue lanes as a [`Consumer`] and sorts them into
//! an *active* list, popped round robin, and a *cold* list of lanes that were
//! found empty several times in a row; cold lanes are looked at every
//! [`COLD_CHECK`] iterations (and before sleeping) and move back to the active
//! list when they hold work. For each task pointer it:
//!
//! 1. resolves the header (the pointer is untrusted: bounds and alignment are
//!    checked, and the whole `size` the header claims must lie in the segment);
//! 2. looks the pool up in its own cache of the pool table (refreshed when the
//!    pool manager's generation moves);
//! 3. resolves the domain query to a container (all local for now, but a real
//!    step: an unknown query kind or container id fails the task);
//! 4. asks the container's `Monitor(LocalSchedule)` for a lane;
//! 5. runs the module's `run` in a coroutine on a stack taken from the worker's
//!    pool (no `mmap` per task); a task that yields is parked and resumed on later
//!    iterations;
//! 6. writes the error message if any, marks the task complete and wakes its
//!    waiter (a futex wake only if the waiter sleeps); fire-and-forget tasks are
//!    freed here.
//!
//! With nothing to do the worker polls for the configured busy period, then
//! sleeps on its doorbell; a push wakes it. At stop it finishes parked tasks and
//! fails what is left in its lanes with `SHUTDOWN`, so no client waits forever.

use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chi_sdk::abi::{ErrorBuf, LaneId, MonitorMode, RunCtx};
use chi_sdk::queue::Consumer;
use chi_sdk::shm::{Allocator, ShmPtr, ShmString};
use chi_sdk::task::{TaskHeader, code, flags};
use chi_sdk::types::{PoolId, QueryKind};
use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::pool::{Container, Pool};
use crate::runtime::Shared;

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
        }
    }
}

/// Why a popped word is not run.
#[derive(Debug)]
pub enum Invalid {
    /// Not a live task block of the main segment: dropped without a write.
    Refuse(String),
    /// A live task block with a bad header: completed with `BAD_TASK`.
    Fail {
        /// The task.
        task: *mut TaskHeader,
        /// Its generation.
        generation: u32,
        /// Why.
        message: String,
    },
}

/// Checks that `word`, popped from a lane, names the start of a live task
/// block of the main segment that is not one of the runtime's own structures
/// (`runtime_owned`), and that the size its header claims fits the block.
/// Returns the header and the generation the task has now (the runtime writes
/// to the task only while the generation stays this one).
///
/// Nothing is written: the pointer is untrusted until this returns `Ok`.
pub fn validate_task(
    alloc: &Allocator,
    runtime_owned: &[ShmPtr],
    word: ShmPtr,
) -> Result<(*mut TaskHeader, u32), Invalid> {
    let (ptr, tag) = chi_sdk::task::split_task_word(word);
    if ptr.segment() != alloc.segment_id() {
        return Err(Invalid::Refuse(format!(
            "{ptr} is not in the main segment ({})",
            alloc.segment_id()
        )));
    }
    if runtime_owned.contains(&ptr) {
        return Err(Invalid::Refuse(format!(
            "{ptr} names one of the runtime's own structures, not a task"
        )));
    }
    let usable = alloc
        .live_size(ptr)
        .map_err(|e| Invalid::Refuse(format!("{ptr} is not a live allocation: {e}")))?;
    if usable < size_of::<TaskHeader>() as u64 {
        return Err(Invalid::Refuse(format!(
            "{ptr} is a block of {usable} bytes, too small for a task"
        )));
    }
    let h = ptr
        .resolve::<TaskHeader>()
        .map_err(|e| Invalid::Refuse(format!("{ptr} does not resolve: {e}")))?;
    let task = h.as_ptr();
    // SAFETY: resolved in bounds and aligned inside a live block of at least a
    // header's size; TaskHeader is valid for any bytes; only read here.
    let hdr = unsafe { &*task };
    if hdr.magic != chi_sdk::task::TASK_MAGIC {
        return Err(Invalid::Refuse(format!(
            "{ptr} is a live block but not a task (magic {:#x})",
            hdr.magic
        )));
    }
    let generation = u32::from(hdr.generation);
    if tag != 0 && tag != chi_sdk::task::generation_tag(generation) {
        return Err(Invalid::Refuse(format!(
            "{ptr} is stale: its block holds another task now (generation changed since the \
             pointer was pushed; the client freed the task before the runtime took it)"
        )));
    }
    let size = u64::from(hdr.size);
    if size < size_of::<TaskHeader>() as u64 || size > usable {
        return Err(Invalid::Fail {
            task,
            generation,
            message: format!(
                "task at {ptr} claims {size} bytes, but its block holds {usable} (and a task \
                 is at least its {}-byte header)",
                size_of::<TaskHeader>()
            ),
        });
    }
    Ok((task, generation))
}

type TaskCoroutine = Coroutine<(), (), (i32, Option<String>), DefaultStack>;

struct Parked {
    co: TaskCoroutine,
    task: *mut TaskHeader,
    generation: u32,
    _container: Arc<Container>,
}

/// The hasher of a worker's pool table: pool ids are small integers chosen by
/// the runtime, so a multiplicative hash is enough (and costs a multiply, where
/// the default hasher costs tens of nanoseconds per task).
#[derive(Default, Debug)]
pub struct PoolIdHasher(u64);

impl std::hash::Hasher for PoolIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// One worker thread's state.
#[allow(missing_debug_implementations)]
pub struct Worker {
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    consumer: Consumer,
    alloc: Allocator,
    stacks: Vec<DefaultStack>,
    parked: VecDeque<Parked>,
    pools: HashMap<PoolId, Arc<Pool>, BuildHasherDefault<PoolIdHasher>>,
    pools_gen: u64,
    /// (pool, lane) pairs already warned about (bad routes), to warn once.
    warned_lanes: Vec<(PoolId, u32)>,
    /// The runtime's own blocks of the main segment: never run as tasks.
    runtime_owned: [ShmPtr; 3],
    /// Live coroutines at most; past it, tasks wait in their lanes.
    max_live: usize,
    /// Per lane (index into the consumer's lanes): a claimed cell seen
    /// unpublished at (position, since, reaper epoch then).
    stalls: Vec<Option<(u64, Instant, u64)>>,
    /// Loop iterations (published to `stats.beat`).
    beat: u64,
    /// The word being handled (failed with `PANICKED` if the handling panics).
    handling: Option<ShmPtr>,
    /// Live coroutines (published to `stats.live`: a plain store, no locked
    /// instruction on the task path).
    live: u64,
    /// The supervisor moved this worker's lanes to another worker: it finishes
    /// the tasks it holds and exits without touching its lanes.
    retired: bool,
}

/// A claimed but unpublished lane cell is skipped after this long if a client
/// died since it was first seen (the producer is then most likely dead)...
const SKIP_AFTER_DEATH: Duration = Duration::from_millis(500);
/// ...and after this long in any case (a producer preempted between its claim
/// and its publication for this long is gone or stopped).
const SKIP_ANYWAY: Duration = Duration::from_secs(30);

/// A claimed cell unpublished for this long holds its lane up (shorter: a push
/// in progress).
const HELD_AFTER: Duration = Duration::from_millis(2);

/// Loop iterations between two looks for lanes held up by unpublished cells
/// while the worker is busy (an idle worker looks before it sleeps).
const STALL_CHECK_EVERY: u64 = 4096;

/// Rate limits of the worker's warnings about refused words and failures.
static REFUSED_LOG: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::per_second();
static STACK_LOG: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::per_second();

/// Suspends the coroutine of the task whose context is `ctx`.
///
/// # Safety
/// `ctx` must be the [`RunCtx`] the worker passed to a running task.
pub(crate) unsafe fn yield_current(ctx: *mut RunCtx) {
    // SAFETY: per the contract, `runtime` points to the running coroutine's
    // yielder, set by `Worker::start_task` and valid while the task runs.
    unsafe {
        let y = (*ctx).runtime as *const Yielder<(), ()>;
        if !y.is_null() {
            (*y).suspend(());
        }
    }
}

const MAX_POOLED_STACKS: usize = 64;
/// Empty polls between two clock reads of an idle worker.
const CLOCK_EVERY: u32 = 128;
/// Consecutive empty polls after which an active lane goes cold.
const COLD_AFTER: u32 = 256;
/// Iterations between looks at the cold lanes.
const COLD_CHECK: u32 = 64;

/// The worker's view of its lanes: indices into `Consumer::lanes()`.
struct LaneSets {
    active: Vec<usize>,
    cold: Vec<usize>,
    misses: Vec<u32>,
    next: usize,
    tick: u32,
}

impl LaneSets {
    fn new(n: usize) -> LaneSets {
        LaneSets {
            active: (0..n).collect(),
            cold: Vec::new(),
            misses: vec![0; n],
            next: 0,
            tick: 0,
        }
    }

    /// Pops the next task from the active lanes (round robin), warming cold lanes
    /// that have work every few calls.
    fn pop(&mut self, c: &mut Consumer) -> Option<ShmPtr> {
        self.tick = self.tick.wrapping_add(1);
        if self.tick.is_multiple_of(COLD_CHECK) || self.active.is_empty() {
            self.warm(c);
        }
        let n = self.active.len();
        for k in 0..n {
            let slot = (self.next + k) % n;
            let i = self.active[slot];
            if let Some(v) = c.pop_lane(i) {
                self.misses[i] = 0;
                self.next = (slot + 1) % n;
                return Some(v);
            }
            self.misses[i] += 1;
        }
        if n > 1 {
            let misses = &self.misses;
            let (hot, cold): (Vec<usize>, Vec<usize>) =
                self.active.iter().partition(|&&i| misses[i] < COLD_AFTER);
            if !cold.is_empty() {
                self.active = hot;
                self.cold.extend(cold);
                self.next = 0;
            }
        }
        None
    }

    /// Moves cold lanes that hold work back to the active list.
    fn warm(&mut self, c: &Consumer) {
        let lanes = c.lanes();
        let q = c.queue();
        let mut k = 0;
        while k < self.cold.len() {
            let i = self.cold[k];
            if q.lane_len(lanes[i]) > 0 {
                self.misses[i] = 0;
                self.active.push(self.cold.swap_remove(k));
            } else {
                k += 1;
            }
        }
    }
}

impl Worker {
    /// A worker consuming `consumer`'s lanes.
    pub fn new(
        shared: Arc<Shared>,
        stats: Arc<WorkerStats>,
        consumer: Consumer,
    ) -> anyhow::Result<Worker> {
        let alloc = Allocator::attach(&shared.ipc.main)?;
        let runtime_owned = shared.ipc.runtime_owned();
        let max_live = shared.config.coroutine.max_live.max(1) as usize;
        let n = consumer.lanes().len();
        Ok(Worker {
            shared,
            stats,
            consumer,
            alloc,
            stacks: Vec::new(),
            parked: VecDeque::new(),
            pools: HashMap::default(),
            pools_gen: 0,
            warned_lanes: Vec::new(),
            runtime_owned,
            max_live,
            stalls: vec![None; n],
            beat: 0,
            handling: None,
            live: 0,
            retired: false,
        })
    }

    /// Runs until the runtime stops.
    ///
    /// A panic of the worker's own code unwinds to here (one `catch_unwind`
    /// around the loop, not one per task, which would keep the task path from
    /// being inlined): it is logged, the task being handled fails with
    /// `PANICKED`, and the loop goes on.
    pub fn run(mut self) {
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
    }

    /// The loop of [`run`](Self::run): returns at stop, or once retired.
    fn serve(&mut self) {
        let busy = self.shared.config.idle.busy_poll;
        let mut idle_since: Option<Instant> = None;
        // Empty polls since the last task: the clock is read only every
        // CLOCK_EVERY of them, so that an idle spin reacts to a push within a
        // few nanoseconds instead of sitting in a clock read.
        let mut idle_polls: u32 = 0;
        let mut sets = LaneSets::new(self.consumer.lanes().len());
        loop {
            self.beat = self.beat.wrapping_add(1);
            // Relaxed: a progress counter the supervisor samples.
            self.stats.beat.store(self.beat, Ordering::Relaxed);
            if self.retired {
                self.finish_retired();
                return;
            }
            if self.shared.stopping() {
                break;
            }
            // A lane held up by a cell a dead client claimed must be noticed
            // even while other lanes and suspended tasks keep the worker busy.
            if self.beat.is_multiple_of(STALL_CHECK_EVERY) {
                self.check_stalled_cells();
            }
            // Past `max_live` coroutines, new tasks wait in their lanes
            // (back-pressure) while the suspended ones are resumed.
            if self.parked.len() < self.max_live
                && let Some(ptr) = sets.pop(&mut self.consumer)
            {
                self.handling = Some(ptr);
                self.handle(ptr);
                self.handling = None;
                idle_since = None;
                idle_polls = 0;
                continue;
            }
            if let Some(p) = self.parked.pop_front() {
                self.resume(p);
                continue;
            }
            idle_polls = idle_polls.wrapping_add(1);
            if !idle_polls.is_multiple_of(CLOCK_EVERY) {
                std::hint::spin_loop();
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < busy {
                std::hint::spin_loop();
                continue;
            }
            // Drop this worker's references to destroyed pools before sleeping, so
            // their containers go (and release what they hold) without waiting
            // for this worker's next task.
            self.refresh_pools();
            // `sleep` returns at once if any lane (cold ones too) holds work, which
            // the next `pop` then warms up.
            self.stats.sleeping.store(true, Ordering::Relaxed);
            let slept = self.consumer.sleep(Some(Duration::from_millis(250)));
            self.stats.sleeping.store(false, Ordering::Relaxed);
            if !slept && self.check_stalled_cells() {
                // Only cells that a producer claimed and has not published: wait
                // for it (or for the reaper) without spinning a core.
                std::thread::sleep(Duration::from_millis(1));
            }
            sets.warm(&self.consumer);
            idle_since = None;
        }
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

    /// The supervisor took this worker's lanes over while it was wedged: run
    /// the suspended tasks it holds to their end, touching no lane, then exit.
    fn finish_retired(&mut self) {
        tracing::warn!(
            worker = self.stats.id,
            parked = self.parked.len(),
            "retired worker finishes the tasks it holds; its lanes are served by another worker"
        );
        while let Some(p) = self.parked.pop_front() {
            if self.shared.stopping() {
                self.abandon(p);
                continue;
            }
            self.guarded(|w| w.resume(p), None);
        }
        // The lanes belong to the new consumer: forget ours without releasing
        // their claim words (the new consumer's token is there now).
        self.stats.sleeping.store(false, Ordering::Relaxed);
    }

    /// Marks the end of a task step; notices a retirement by the supervisor.
    ///
    /// The hand-shake is an asymmetric Dekker: this side stores its phase and
    /// loads the supervisor's claim with no fence (no locked instruction on the
    /// task path); the supervisor, which stores the claim and then loads the
    /// phase, issues `membarrier(PRIVATE_EXPEDITED)` in between, which acts as a
    /// full fence on every thread of the process. So the two cannot both miss
    /// each other: if the supervisor sees this worker still in its task, this
    /// worker sees the claim here.
    #[inline]
    fn leave_task(&mut self) {
        // Relaxed + compiler fence: the supervisor's membarrier orders it.
        self.stats.phase.store(phase::IDLE, Ordering::Relaxed);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        if self.stats.claim.load(Ordering::Relaxed) != claim::NONE {
            self.settle_claim();
        }
    }

    /// The supervisor is deciding whether to take this worker's lanes: wait
    /// for its verdict (it comes within microseconds).
    #[cold]
    fn settle_claim(&mut self) {
        loop {
            // Acquire: pairs with the supervisor's Release store of the verdict.
            match self.stats.claim.load(Ordering::Acquire) {
                claim::PENDING => std::thread::yield_now(),
                claim::TAKEN => {
                    self.retired = true;
                    self.stats.phase.store(phase::RETIRED, Ordering::Relaxed);
                    return;
                }
                _ => return,
            }
        }
    }

    /// Looks for lanes held up by a claimed but unpublished cell and skips those
    /// whose producer is most likely dead (see [`SKIP_AFTER_DEATH`]). Returns
    /// whether some lane is still held up.
    fn check_stalled_cells(&mut self) -> bool {
        let epoch = self.shared.reaper.epoch();
        let mut held = false;
        for i in 0..self.consumer.lanes().len() {
            let Some(pos) = self.consumer.stalled_at(i) else {
                self.stalls[i] = None;
                continue;
            };
            let (at, since, epoch0) = match self.stalls[i] {
                Some(s) if s.0 == pos => s,
                _ => {
                    let s = (pos, Instant::now(), epoch);
                    self.stalls[i] = Some(s);
                    s
                }
            };
            let age = since.elapsed();
            if ((age >= SKIP_AFTER_DEATH && epoch > epoch0) || age >= SKIP_ANYWAY)
                && self.consumer.skip_stalled(i, at)
            {
                self.stalls[i] = None;
                self.stats.cells_skipped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    worker = self.stats.id,
                    lane = self.consumer.lanes()[i],
                    position = at,
                    stalled_ms = age.as_millis() as u64,
                    "skipped a lane cell that a client claimed and never filled (the client \
                     died in the middle of a push); the lane moves on"
                );
                continue;
            }
            // A cell claimed a moment ago is a push in progress, not a hold-up:
            // only one that stays unpublished makes the worker nap instead of spin.
            held |= age >= HELD_AFTER;
        }
        held
    }

    /// Fails suspended task `p` with `SHUTDOWN` at stop, without resuming it.
    fn abandon(&mut self, p: Parked) {
        let Parked {
            co,
            task,
            generation,
            ..
        } = p;
        self.live -= 1;
        self.stats.live.store(self.live, Ordering::Relaxed);
        self.finish(
            task,
            generation,
            code::SHUTDOWN,
            Some("the runtime stopped while the task was suspended".into()),
        );
        // Dropping a suspended coroutine force-unwinds its stack through the
        // module's entry point, which catches panics; corosensei then aborts the
        // process (segments left behind, other waiters never answered). The
        // process is exiting: leak the coroutine and its stack instead. The task
        // is complete, so nothing resumes it.
        std::mem::forget(co);
    }

    /// At stop: finish parked tasks, fail what is still queued.
    fn drain(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(p) = self.parked.pop_front() {
            if Instant::now() > deadline {
                self.abandon(p);
                continue;
            }
            self.resume(p);
        }
        while let Some((ptr, _)) = self.consumer.pop() {
            if let Ok((task, generation)) = validate_task(&self.alloc, &self.runtime_owned, ptr) {
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

    fn refresh_pools(&mut self) {
        let g = self.shared.pools.generation();
        if g != self.pools_gen {
            self.pools = self.shared.pools.snapshot().into_iter().collect();
            self.pools_gen = g;
        }
    }

    fn handle(&mut self, ptr: ShmPtr) {
        let (task, generation) = match validate_task(&self.alloc, &self.runtime_owned, ptr) {
            Ok(v) => v,
            Err(Invalid::Refuse(why)) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = REFUSED_LOG.allow() {
                    tracing::warn!(
                        worker = self.stats.id,
                        word = format_args!("{:#018x}", ptr.to_bits()),
                        suppressed,
                        "dropped a word from a lane that is not a live task ({why}); a client \
                         pushed a stale or garbage pointer"
                    );
                }
                return;
            }
            Err(Invalid::Fail {
                task,
                generation,
                message,
            }) => {
                self.finish(task, generation, code::BAD_TASK, Some(message));
                return;
            }
        };
        // SAFETY: validated: the start of a live task block of at least `size`
        // bytes; fields are only read here (writes go through `finish` and atomics).
        let h = unsafe { &*task };
        // No RUNNING bit is set here: the waiting client spins on this word, and
        // every write to it while the task runs costs a cache-line transfer on
        // the round trip (the state goes from QUEUED to COMPLETE in one write).
        self.refresh_pools();
        // The container, borrowed from this worker's pool table: only the
        // container's Arc is cloned (it stays alive while the task runs).
        let found = match self.pools.get(&h.pool_id) {
            None => Err((
                code::NO_POOL,
                format!("no {} on this node; create it first", h.pool_id),
            )),
            Some(pool) => {
                let n = pool.containers.len() as u32;
                let q = h.dom_query;
                match q.kind() {
                    Some(QueryKind::LocalId | QueryKind::GlobalId) if q.value < n => Ok(q.value),
                    Some(QueryKind::LocalId | QueryKind::GlobalId) => Err((
                        code::BAD_TASK,
                        format!("{} has no container {}", pool.id, q.value),
                    )),
                    Some(QueryKind::LocalHash | QueryKind::GlobalHash) => Ok(q.value % n.max(1)),
                    Some(QueryKind::GlobalBcast | QueryKind::Dynamic) => Ok(0),
                    None => Err((
                        code::BAD_TASK,
                        format!("unknown domain query kind {}", q.kind),
                    )),
                }
                .and_then(|idx| {
                    pool.containers
                        .get(idx as usize)
                        .map(|c| (pool.id, c.clone()))
                        .ok_or_else(|| (code::NO_POOL, format!("{} has no containers", pool.id)))
                })
            }
        };
        let (pool_id, container) = match found {
            Ok(found) => found,
            Err((rc, msg)) => {
                self.finish(task, generation, rc, Some(msg));
                return;
            }
        };
        let routed = h.is_routed();
        if !routed
            && let Some(monitor) = container.module.api.monitor
            && !container.queues.is_empty()
        {
            let mut ctx = self.ctx(&container, std::ptr::null_mut());
            ctx.pool_id = pool_id;
            ctx.route_lane = LaneId::HERE.0;
            // SAFETY: the container's state and the validated task are live; the
            // monitor only writes `ctx` (routing is by returned lane, never by
            // enqueueing).
            unsafe {
                monitor(
                    container.state,
                    MonitorMode::LocalSchedule as u32,
                    task,
                    &mut ctx,
                )
            };
            if self.route(&container, pool_id, LaneId(ctx.route_lane), ptr, h) {
                return;
            }
        }
        self.start_task(container, task, generation);
    }

    /// Moves the task to the worker of `lane` if that is another worker;
    /// returns whether it did. A lane the container does not have, or a full
    /// target lane, leaves the task here (it is never left unrouted).
    fn route(
        &mut self,
        container: &Container,
        pool: PoolId,
        lane: LaneId,
        ptr: ShmPtr,
        h: &TaskHeader,
    ) -> bool {
        if lane == LaneId::HERE {
            return false;
        }
        let q = self.consumer.queue();
        let low = q.lanes_of(chi_sdk::queue::Priority::LowLatency);
        let high = q.lanes_of(chi_sdk::queue::Priority::HighLatency);
        let Some(target) = container.process_lane(pool, lane, &low, &high) else {
            if !self.warned_lanes.contains(&(pool, lane.0)) {
                self.warned_lanes.push((pool, lane.0));
                tracing::warn!(
                    %pool,
                    queue = lane.queue(),
                    lane = lane.lane(),
                    "Monitor routed a task to a lane the container did not create; running it \
                     where it arrived (create the queue in `create` with create_local_queue)"
                );
            }
            return false;
        };
        if self.consumer.lanes().contains(&target) {
            return false;
        }
        h.mark_routed();
        // Relaxed: the lane a waiting client watches; published by the push.
        let from = h.lane.swap(target as u32, Ordering::Relaxed);
        match q.try_push(target, ptr) {
            Ok(()) => true,
            Err(_) => {
                h.lane.store(from, Ordering::Relaxed);
                h.unmark_routed();
                false
            }
        }
    }

    fn ctx(&self, c: &Container, runtime: *mut c_void) -> RunCtx {
        RunCtx {
            worker_id: self.stats.id,
            route_lane: 0,
            est_load_us: 0.0,
            pool_id: PoolId::NULL,
            container_id: c.id,
            runtime,
            queues: c.queues.as_ptr(),
            num_queues: c.queues.len() as u32,
            route_container: u32::MAX,
        }
    }

    fn start_task(&mut self, container: Arc<Container>, task: *mut TaskHeader, generation: u32) {
        let stack = match self.stacks.pop() {
            Some(s) => s,
            None => match DefaultStack::new(self.shared.config.coroutine.stack_size) {
                Ok(s) => s,
                Err(e) => {
                    let live = self.parked.len();
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
                            "the runtime could not allocate a coroutine stack ({e}) with {live} \
                             tasks suspended on this worker; resubmit later"
                        )),
                    );
                    return;
                }
            },
        };
        let run = container.module.api.run;
        let state_ptr = container.state as usize;
        let task_addr = task as usize;
        let mut base = self.ctx(&container, std::ptr::null_mut());
        base.pool_id = container_pool(task);
        let co = Coroutine::with_stack(stack, move |yielder: &Yielder<(), ()>, ()| {
            let mut ctx = base;
            ctx.runtime = yielder as *const Yielder<(), ()> as *mut c_void;
            let mut err = ErrorBuf::default();
            // SAFETY: the container outlives the coroutine (held in `Parked` or by
            // the caller), the task was validated, and `ctx`/`err` live on this stack.
            let rc = unsafe {
                run(
                    state_ptr as *mut c_void,
                    task_addr as *mut TaskHeader,
                    &mut ctx,
                    &mut err,
                )
            };
            (rc, (rc != code::OK).then(|| err.as_str().to_owned()))
        });
        self.live += 1;
        self.stats.live.store(self.live, Ordering::Relaxed);
        self.step(Parked {
            co,
            task,
            generation,
            _container: container,
        });
    }

    fn resume(&mut self, p: Parked) {
        self.step(p);
    }

    fn step(&mut self, mut p: Parked) {
        // Relaxed: read by the supervisor, which checks the task's magic and
        // generation before it uses them.
        self.stats.current.store(p.task as u64, Ordering::Relaxed);
        self.stats
            .current_generation
            .store(p.generation, Ordering::Relaxed);
        if !self.retired {
            // Release: the pops before this step happen before a takeover of the
            // lanes (pairs with the supervisor's Acquire load of the phase).
            self.stats.phase.store(phase::IN_TASK, Ordering::Release);
        }
        let r = p.co.resume(());
        if !self.retired {
            self.leave_task();
        }
        match r {
            CoroutineResult::Yield(()) => self.parked.push_back(p),
            CoroutineResult::Return((rc, msg)) => {
                self.live -= 1;
                self.stats.live.store(self.live, Ordering::Relaxed);
                let c = &p._container;
                let del = c.module.api.del.map(|d| (d, c.state));
                self.finish_with(p.task, p.generation, rc, msg, del);
                if self.stacks.len() < MAX_POOLED_STACKS {
                    self.stacks.push(p.co.into_stack());
                }
            }
        }
    }

    /// Writes the outcome, marks the task complete and wakes its waiter.
    fn finish(&mut self, task: *mut TaskHeader, generation: u32, rc: i32, msg: Option<String>) {
        self.finish_with(task, generation, rc, msg, None);
    }

    /// [`finish`](Self::finish), with the module's `del` for a fire-and-forget
    /// task (which frees what the task's fields own, not only its block).
    ///
    /// Nothing is written if the task's block no longer holds the task the worker
    /// took (its generation changed: the client freed it while it ran, and the
    /// block may hold another task now).
    fn finish_with(
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
            tracing::warn!(code = rc, error = %m, "a fire-and-forget task failed");
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
        if h.complete(rc) {
            h.wake_waiters();
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

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

fn container_pool(task: *mut TaskHeader) -> PoolId {
    // SAFETY: `task` was validated by the caller.
    unsafe { (*task).pool_id }
}
