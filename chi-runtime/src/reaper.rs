//! The process reaper: what dead clients held goes back to the runtime.
//!
//! # Design
//!
//! Clients are never trusted to leave cleanly: one killed with `kill -9`, by
//! the OOM killer or by a segfault, or one that exits without freeing, still
//! holds allocator owner slots, task and buffer blocks, a registration, and
//! perhaps a lane cell it claimed and never published. Every
//! `reaper.interval` the supervisor thread ([`crate::supervisor`]) runs a
//! [`Reaper::pass`], which
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
//!    once a death was seen after the cell stalled (see `worker/stalls.rs`).
//!
//! The reaper works on the registry and the allocators it is given; what it
//! did is counted in a [`ReaperStats`], which the node state keeps for
//! `status` and the workers read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chi_sdk::shm::{Allocator, OwnerId, ShmPtr};
use chi_sdk::task::{TASK_MAGIC, TaskHeader, flags};

use crate::clients::ClientRegistry;

/// How long the reaper waits for a dead client's in-flight tasks to finish
/// before it reclaims their blocks anyway.
pub const KEEP_LIMIT: Duration = Duration::from_secs(60);
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

/// The process reaper of one runtime (see the module doc).
pub struct Reaper<'a> {
    clients: &'a ClientRegistry,
    stats: &'a ReaperStats,
    main: Allocator,
    client_data: Allocator,
    /// (segment id, owner) → what we know of it.
    pending: HashMap<(u16, u32), Pending>,
}

impl std::fmt::Debug for Reaper<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<'a> Reaper<'a> {
    /// A reaper of the registrations in `clients` and of the owner slots of
    /// the allocators `main` and `client_data` (the runtime's handles on its
    /// main and client-data segments), counting what it does in `stats`.
    pub fn new(
        clients: &'a ClientRegistry,
        stats: &'a ReaperStats,
        main: Allocator,
        client_data: Allocator,
    ) -> Reaper<'a> {
        Reaper {
            clients,
            stats,
            main,
            client_data,
            pending: HashMap::new(),
        }
    }

    /// One pass: registrations, then the owner slots of both segments.
    pub fn pass(&mut self) {
        let mut found = self.clients.forget_dead();
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
            self.stats
                .clients_reaped
                .fetch_add(found, Ordering::Relaxed);
            // Release: pairs with the Acquire load in `ReaperStats::epoch`.
            self.stats.epoch.fetch_add(1, Ordering::Release);
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
        let st = self.stats;
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
        self.stats
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
