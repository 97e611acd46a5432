//! The supervisor thread: the seed's *process reaper* and the watch over the
//! workers.
//!
//! # Process reaper
//!
//! Clients are never trusted to leave cleanly: one killed with `kill -9`, by
//! the OOM killer or by a segfault, or one that exits without freeing, still
//! holds allocator owner slots, task and buffer blocks, a registration, and
//! perhaps a lane cell it claimed and never published. Every
//! `reaper.interval` the reaper
//!
//! 1. drops the registrations of processes that are gone (pid liveness, zombies
//!    count as gone);
//! 2. finds the allocator owner slots of the main and client-data segments
//!    whose process is gone and reclaims what they hold: every live block is
//!    freed, except the dead client's tasks the runtime still has to run or is
//!    running (queued and not complete): those are turned into
//!    fire-and-forget tasks, so the worker frees them when they finish, and the
//!    client's buffers stay while such a task lives (the task may read them).
//!    A slot whose blocks are all gone is released, so slots never run out.
//!    An owner whose in-flight tasks never finish is reclaimed in full after
//!    [`KEEP_LIMIT`]: the generation check of the workers then keeps a late
//!    completion from touching the block's next owner;
//! 3. advances the *reap epoch* ([`ReaperStats::epoch`]), which tells workers
//!    that a client died: a lane cell claimed and never published is skipped
//!    once a death was seen after the cell stalled (see `worker.rs`).
//!
//! # Worker watch
//!
//! Every [`TICK`] the supervisor samples each worker's beat (its loop
//! counter). A worker whose beat moved, or that sleeps on its doorbell for lack
//! of work, is healthy: the supervisor stamps the beats of its lanes in the
//! main segment ([`crate::ipc::Ipc::beat_lane`]), which waiting clients read to
//! tell a slow task from a wedged worker. A worker whose beat has not moved for
//! `supervisor.stall_timeout` is reported stalled in the log and in `status`.
//! If it is inside a task (a handler that neither returns nor yields), the
//! supervisor *retires* it — an asymmetric hand-shake: the supervisor posts a
//! claim, forces a barrier on every thread with `membarrier`, and takes the
//! lanes only if the worker is still inside its task; the worker, which pays no
//! locked instruction for this, checks the claim after each step — and gives its lanes to a new
//! worker thread ([`chi_sdk::queue::MultiLaneQueue::take_over`]), so the other
//! tasks of those lanes go on. The wedged task's lane word is set to
//! `LANE_STALLED`, so its waiting client gets an error after its task deadline.
//! The retired worker, if its task ever returns, finishes the suspended tasks it
//! holds without touching a lane, and exits. A worker thread that dies is
//! restarted by its own thread wrapper (see `runtime.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chi_sdk::proto::monotonic_ms;
use chi_sdk::shm::{Allocator, OwnerId, ShmPtr};
use chi_sdk::task::{TASK_MAGIC, TaskHeader, flags};

use crate::runtime::Shared;
use crate::worker::{WorkerStats, claim, phase};

/// How long the reaper waits for a dead client's in-flight tasks to finish
/// before it reclaims their blocks anyway.
pub const KEEP_LIMIT: Duration = Duration::from_secs(60);
/// Period of the worker watch.
pub const TICK: Duration = Duration::from_millis(50);

/// What the reaper did, for `status` and the log.
#[derive(Debug, Default)]
pub struct ReaperStats {
    epoch: AtomicU64,
    /// Dead client processes noticed.
    pub clients_reaped: AtomicU64,
    /// Blocks freed (both segments).
    pub blocks_freed: AtomicU64,
    /// Bytes freed (both segments).
    pub bytes_freed: AtomicU64,
    /// In-flight tasks of dead clients handed to the workers to free.
    pub tasks_handed_over: AtomicU64,
    /// Owner slots of dead processes whose blocks are all gone.
    pub owners_cleared: AtomicU64,
}

impl ReaperStats {
    /// The reap epoch: the number of passes that found a dead client. A value
    /// that moved since some moment means a client died after it.
    #[inline]
    pub fn epoch(&self) -> u64 {
        // Acquire: pairs with the Release increment in `Reaper::pass`.
        self.epoch.load(Ordering::Acquire)
    }
}

/// A dead owner whose blocks are not all reclaimed yet.
struct Pending {
    since: Instant,
}

struct Reaper {
    shared: Arc<Shared>,
    main: Allocator,
    client_data: Allocator,
    /// (segment id, owner) → what we know of it.
    pending: HashMap<(u16, u32), Pending>,
}

/// Per-worker sample of the watch.
struct Watch {
    beat: u64,
    since: Instant,
}

/// Runs the supervisor until the runtime stops.
pub fn run(shared: Arc<Shared>) {
    membarrier_ready();
    let reaper = match (
        Allocator::attach(&shared.ipc.main),
        Allocator::attach(&shared.ipc.client_data),
    ) {
        (Ok(main), Ok(client_data)) => Some(Reaper {
            shared: shared.clone(),
            main,
            client_data,
            pending: HashMap::new(),
        }),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "the process reaper cannot attach the allocators; dead clients will not be reclaimed");
            None
        }
    };
    let mut reaper = reaper.filter(|_| shared.config.workers.process_reaper > 0);
    let interval = shared.config.reaper.interval;
    let stall = shared.config.supervisor.stall_timeout;
    let mut watch: Vec<Watch> = Vec::new();
    let mut replacements = Vec::new();
    let mut last_reap = Instant::now();
    while !shared.stopping() {
        let now = monotonic_ms();
        let workers = shared.workers();
        while watch.len() < workers.len() {
            watch.push(Watch {
                beat: u64::MAX,
                since: Instant::now(),
            });
        }
        for (w, seen) in workers.iter().zip(watch.iter_mut()) {
            if w.phase.load(Ordering::Relaxed) == phase::RETIRED {
                continue;
            }
            // Relaxed: samples of counters; a stale value delays a verdict by a tick.
            let beat = w.beat.load(Ordering::Relaxed);
            let sleeping = w.sleeping.load(Ordering::Relaxed);
            if beat != seen.beat || sleeping {
                seen.beat = beat;
                seen.since = Instant::now();
                if w.stalled.swap(false, Ordering::Relaxed) {
                    tracing::info!(worker = w.id, "worker moves again");
                }
                for &lane in &w.lanes {
                    shared.ipc.beat_lane(lane, now);
                }
            } else if seen.since.elapsed() >= stall && !w.stalled.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    worker = w.id,
                    lanes = ?w.lanes,
                    stalled_s = seen.since.elapsed().as_secs(),
                    "worker makes no progress: a task runs without returning or yielding"
                );
                if let Some(h) = take_over(&shared, w) {
                    replacements.push(h);
                }
            }
        }
        if let Some(r) = reaper.as_mut()
            && last_reap.elapsed() >= interval
        {
            last_reap = Instant::now();
            r.pass();
        }
        std::thread::sleep(TICK.min(interval));
    }
    for h in replacements {
        let _ = h.join();
    }
}

/// Whether this process is registered for `membarrier(PRIVATE_EXPEDITED)`,
/// which the retirement hand-shake needs (registered once; a kernel or a
/// sandbox without it leaves wedged workers reported but not replaced).
fn membarrier_ready() -> bool {
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

/// Retires wedged worker `w` (if it is inside a task: the handshake on its
/// phase word) and starts a new worker on its lanes. The wedged task's waiting
/// client learns that its task makes no progress (its lane is marked
/// [`LANE_STALLED`]). Returns the new worker's thread.
fn take_over(shared: &Arc<Shared>, w: &Arc<WorkerStats>) -> Option<std::thread::JoinHandle<()>> {
    if !membarrier_ready() || w.phase.load(Ordering::Acquire) != phase::IN_TASK {
        return None;
    }
    // The asymmetric Dekker hand-shake (see `Worker::leave_task`): claim, full
    // barrier on every thread of the process, then look at the phase.
    w.claim.store(claim::PENDING, Ordering::Relaxed);
    if rustix::thread::membarrier(rustix::thread::MembarrierCommand::PrivateExpedited).is_err() {
        // Release: pairs with the worker's Acquire load in `settle_claim`.
        w.claim.store(claim::NONE, Ordering::Release);
        return None;
    }
    // Acquire: pairs with the worker's Release store of IN_TASK, so its pops
    // before the task happen before the take-over.
    if w.phase.load(Ordering::Acquire) != phase::IN_TASK {
        // Release: pairs with the worker's Acquire load in `settle_claim`.
        w.claim.store(claim::NONE, Ordering::Release);
        return None;
    }
    // Release: pairs with the worker's Acquire load in `settle_claim`.
    w.claim.store(claim::TAKEN, Ordering::Release);
    w.phase.store(phase::RETIRED, Ordering::Relaxed);
    let task = w.current.load(Ordering::Relaxed) as *mut TaskHeader;
    let generation = w.current_generation.load(Ordering::Relaxed);
    if !task.is_null() {
        // SAFETY: the worker validated this task block when it took it; the
        // main segment stays mapped; magic and generation are checked before
        // the lane word (an atomic) is written.
        unsafe {
            if (*task).magic == TASK_MAGIC && u32::from((*task).generation) == generation {
                (*task)
                    .lane
                    .store(chi_sdk::task::LANE_STALLED, Ordering::Relaxed);
            }
        }
    }
    // SAFETY: the wedged worker is RETIRED (the CAS above won while it was
    // inside a task): it never touches these lanes again.
    let consumer = match unsafe { shared.ipc.queue.take_over(&w.lanes) } {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(worker = w.id, error = %e, "could not take the wedged worker's lanes over");
            return None;
        }
    };
    let id = shared.workers().len() as u32;
    let stats = Arc::new(WorkerStats::new(id, w.kind, w.lanes.clone()));
    shared.add_worker(stats.clone());
    let lanes = w.lanes.clone();
    let sh = shared.clone();
    tracing::warn!(
        wedged = w.id,
        worker = id,
        lanes = ?lanes,
        "moved the wedged worker's lanes to a new worker; the wedged one finishes what it holds and exits"
    );
    std::thread::Builder::new()
        .name(format!("chi-worker-{id}"))
        .spawn(move || crate::runtime::worker_thread(sh, stats, consumer, lanes))
        .map_err(|e| tracing::error!(error = %e, "could not start the replacement worker"))
        .ok()
}

impl Reaper {
    /// One pass: registrations, then the owner slots of both segments.
    fn pass(&mut self) {
        let mut found = self.shared.forget_dead_clients();
        let main_dead = self.main.dead_owners();
        let data_dead = self.client_data.dead_owners();
        let (main_id, data_id) = (self.main.segment_id().0, self.client_data.segment_id().0);
        // Forget owners that are not dead any more (their slot was released).
        self.pending.retain(|k, _| {
            (k.0 == main_id && main_dead.iter().any(|(o, _)| o.0 == k.1))
                || (k.0 == data_id && data_dead.iter().any(|(o, _)| o.0 == k.1))
        });
        let mut new_pids = Vec::new();
        for (seg, dead) in [(main_id, &main_dead), (data_id, &data_dead)] {
            for &(owner, pid) in dead {
                if let std::collections::hash_map::Entry::Vacant(e) =
                    self.pending.entry((seg, owner.0))
                {
                    tracing::info!(
                        pid,
                        segment = seg,
                        owner = owner.0,
                        "reclaiming what a dead client held"
                    );
                    e.insert(Pending {
                        since: Instant::now(),
                    });
                    if !new_pids.contains(&pid) {
                        new_pids.push(pid);
                    }
                }
            }
        }
        // A client counts once, by its registration or else by its slots.
        found = found.max(new_pids.len() as u64);
        if found > 0 {
            self.shared
                .reaper
                .clients_reaped
                .fetch_add(found, Ordering::Relaxed);
            // Release: pairs with the Acquire load in `ReaperStats::epoch`.
            self.shared.reaper.epoch.fetch_add(1, Ordering::Release);
        }
        // Main segment first: whether a dead client still has tasks in flight
        // decides whether its buffers may go.
        let mut in_flight_pids = Vec::new();
        for &(owner, pid) in &main_dead {
            let force = self
                .pending
                .get(&(main_id, owner.0))
                .is_some_and(|p| p.since.elapsed() >= KEEP_LIMIT);
            if !self.reap_main(owner, force) {
                in_flight_pids.push(pid);
            }
        }
        for &(owner, pid) in &data_dead {
            let waited = self
                .pending
                .get(&(data_id, owner.0))
                .is_some_and(|p| p.since.elapsed() >= KEEP_LIMIT);
            if in_flight_pids.contains(&pid) && !waited {
                continue;
            }
            match self.client_data.reap_owner(owner, &|_| false) {
                Ok(r) => self.count(&r),
                Err(e) => self.failed(&e),
            }
        }
    }

    fn count(&self, r: &chi_sdk::shm::alloc::ReapReport) {
        let st = &self.shared.reaper;
        st.blocks_freed.fetch_add(r.freed_blocks, Ordering::Relaxed);
        st.bytes_freed.fetch_add(r.freed_bytes, Ordering::Relaxed);
        if r.slot_released {
            st.owners_cleared.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn failed(&self, e: &dyn std::fmt::Display) {
        static LOG: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::per_second();
        if let Some(suppressed) = LOG.allow() {
            tracing::warn!(
                error = %e,
                suppressed,
                "the process reaper could not reclaim a dead client's slot; it retries"
            );
        }
    }

    /// Reclaims the main-segment blocks of dead `owner`, keeping (and handing
    /// to the workers to free) its tasks still in flight unless `force`.
    /// Returns whether the owner is fully reclaimed.
    fn reap_main(&self, owner: OwnerId, force: bool) -> bool {
        let handed = std::cell::Cell::new(0u64);
        let main = &self.main;
        let keep = |ptr: ShmPtr| {
            if force {
                return false;
            }
            let Some(t) = in_flight_task(main, ptr) else {
                return false;
            };
            // SAFETY: `in_flight_task` checked a live task block; `flags` is a
            // plain u32 inside it, naturally aligned, also read by the worker.
            let f = unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*t).flags)) };
            // Relaxed: the worker reads the flag when it completes the task; if
            // it read it before this store, a later pass finds the task complete
            // and frees it.
            if f.fetch_or(flags::FIRE_AND_FORGET, Ordering::Relaxed) & flags::FIRE_AND_FORGET == 0 {
                handed.set(handed.get() + 1);
            }
            true
        };
        let r = if force {
            main.force_reap_owner(owner, &keep)
        } else {
            main.reap_owner(owner, &keep)
        };
        self.shared
            .reaper
            .tasks_handed_over
            .fetch_add(handed.get(), Ordering::Relaxed);
        match r {
            Ok(r) => {
                self.count(&r);
                r.slot_released
            }
            Err(e) => {
                self.failed(&e);
                false
            }
        }
    }
}

/// `ptr` as a task the runtime still has to run or is running: a live task
/// block (magic) that was queued and is not complete.
fn in_flight_task(alloc: &Allocator, ptr: ShmPtr) -> Option<*mut TaskHeader> {
    let size = alloc.live_size(ptr).ok()?;
    if size < size_of::<TaskHeader>() as u64 {
        return None;
    }
    let t = ptr.resolve::<TaskHeader>().ok()?.as_ptr();
    // SAFETY: a live block of at least a header's size, resolved and aligned;
    // the header is valid for any bytes; read only.
    let h = unsafe { &*t };
    // Acquire: pairs with the worker's Release fetch_or(COMPLETE).
    (h.magic == TASK_MAGIC && h.is_in_flight()).then_some(t)
}
