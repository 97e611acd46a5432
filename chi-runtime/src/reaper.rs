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
//! `supervisor.stall_timeout` is reported stalled in the log and in `status`;
//! its lanes' beats stop, so the clients waiting on them get an error after
//! their task deadline instead of waiting for ever. A worker thread that dies
//! is restarted by its own thread wrapper (see `runtime.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chi_sdk::proto::monotonic_ms;
use chi_sdk::shm::alloc::pid_alive;
use chi_sdk::shm::{Allocator, OwnerId, ShmPtr};
use chi_sdk::task::{TASK_MAGIC, TaskHeader, flags, state};

use crate::runtime::Shared;
use crate::worker::WorkerStats;

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
    pid: u32,
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
pub fn run(shared: Arc<Shared>, workers: Vec<Arc<WorkerStats>>) {
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
    let mut watch: Vec<Watch> = workers
        .iter()
        .map(|_| Watch {
            beat: u64::MAX,
            since: Instant::now(),
        })
        .collect();
    let mut last_reap = Instant::now();
    while !shared.stopping() {
        let now = monotonic_ms();
        for (w, seen) in workers.iter().zip(watch.iter_mut()) {
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
                    in_task = w.in_task.load(Ordering::Relaxed),
                    stalled_s = seen.since.elapsed().as_secs(),
                    "worker makes no progress: a task runs without returning or yielding; the \
                     clients waiting on its lanes get an error after their task deadline"
                );
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
}

impl Reaper {
    /// One pass: registrations, then the owner slots of both segments.
    fn pass(&mut self) {
        let mut found = self.shared.forget_dead_clients();
        let mut new_pids = Vec::new();
        for alloc in [&self.main, &self.client_data] {
            for (owner, pid) in dead_owners(alloc) {
                let key = (alloc.segment_id().0, owner.0);
                if let std::collections::hash_map::Entry::Vacant(e) = self.pending.entry(key) {
                    tracing::info!(
                        pid,
                        segment = %alloc.segment_id(),
                        owner = owner.0,
                        "reclaiming what a dead client held"
                    );
                    e.insert(Pending {
                        pid,
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
        if self.pending.is_empty() {
            return;
        }
        // Main segment first: whether a dead client still has tasks in flight
        // decides whether its buffers may go.
        let main_id = self.main.segment_id().0;
        let keys: Vec<(u16, u32)> = self.pending.keys().copied().collect();
        let mut in_flight_pids = Vec::new();
        for key in keys.iter().filter(|k| k.0 == main_id) {
            let p = &self.pending[key];
            let force = p.since.elapsed() >= KEEP_LIMIT;
            let kept = self.reap_main(OwnerId(key.1), force);
            if kept == 0 {
                self.clear(*key);
            } else {
                in_flight_pids.push(p.pid);
            }
        }
        for key in keys.iter().filter(|k| k.0 != main_id) {
            let p = &self.pending[key];
            if in_flight_pids.contains(&p.pid) && p.since.elapsed() < KEEP_LIMIT {
                continue;
            }
            let (blocks, bytes) = free_all(&self.client_data, OwnerId(key.1), |_| false);
            self.count(blocks, bytes);
            self.clear(*key);
        }
    }

    fn clear(&mut self, key: (u16, u32)) {
        if self.pending.remove(&key).is_some() {
            self.shared
                .reaper
                .owners_cleared
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count(&self, blocks: u64, bytes: u64) {
        let r = &self.shared.reaper;
        r.blocks_freed.fetch_add(blocks, Ordering::Relaxed);
        r.bytes_freed.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Reclaims the main-segment blocks of dead `owner`; returns how many of its
    /// tasks are still in flight (kept, and handed to the workers to free).
    fn reap_main(&self, owner: OwnerId, force: bool) -> u64 {
        let mut kept = 0u64;
        let mut handed = 0u64;
        let (blocks, bytes) = free_all(&self.main, owner, |ptr| {
            if force {
                return false;
            }
            let Some(t) = in_flight_task(&self.main, ptr) else {
                return false;
            };
            kept += 1;
            // SAFETY: `in_flight_task` checked a live task block; `flags` is a
            // plain u32 inside it, naturally aligned, also read by the worker.
            let f = unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*t).flags)) };
            // Relaxed: the worker reads the flag when it completes the task;
            // if it read it before this store, the next pass finds the task
            // complete and frees it.
            if f.fetch_or(flags::FIRE_AND_FORGET, Ordering::Relaxed) & flags::FIRE_AND_FORGET == 0 {
                handed += 1;
            }
            true
        });
        self.count(blocks, bytes);
        self.shared
            .reaper
            .tasks_handed_over
            .fetch_add(handed, Ordering::Relaxed);
        kept
    }
}

/// The owner slots of `alloc`'s segment held by processes that are gone.
fn dead_owners(alloc: &Allocator) -> Vec<(OwnerId, u32)> {
    (0..chi_sdk::shm::alloc::MAX_OWNERS as u32)
        .map(OwnerId)
        .filter_map(|o| {
            let pid = alloc.owner_pid(o)?;
            (pid != 0 && !pid_alive(pid)).then_some((o, pid))
        })
        .collect()
}

/// Frees every live block of `owner` for which `keep` is false; returns the
/// blocks and bytes freed.
fn free_all(alloc: &Allocator, owner: OwnerId, mut keep: impl FnMut(ShmPtr) -> bool) -> (u64, u64) {
    let (live, _cached) = alloc.blocks_of(owner);
    let (mut blocks, mut bytes) = (0, 0);
    for ptr in live {
        if keep(ptr) {
            continue;
        }
        let size = alloc.live_size(ptr).unwrap_or(0);
        if alloc.free(ptr).is_ok() {
            blocks += 1;
            bytes += size;
        }
    }
    (blocks, bytes)
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
    let st = h.state.load(Ordering::Acquire);
    (h.magic == TASK_MAGIC && st & state::QUEUED != 0 && st & state::COMPLETE == 0).then_some(t)
}
