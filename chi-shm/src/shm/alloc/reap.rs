//! Reclaiming what a dead process held: the allocator's half of the runtime's
//! process reaper.
//!
//! # Design
//!
//! [`Allocator::dead_owners`] lists the owner slots whose process is gone;
//! [`Allocator::reap_owner`] reclaims one of them:
//!
//! 1. **Claim the slot**: CAS its pid from the dead pid to the reaper's own, so two
//!    reapers never work on one owner and `attach` cannot hand the slot out. If the
//!    reaper unwinds (a panicking `keep`) or stops on an error, the slot goes back
//!    to its previous value, and a later call starts over.
//! 2. **Dead threads' counter slots**: every [`ThreadSlot`](super::layout::ThreadSlot)
//!    taken by the owner is folded into the owner's counters and freed. Its
//!    `transit` word (the bytes that thread was moving between its cache and the
//!    shared structures when it died) is added to the leak count.
//! 3. **Walk the pages**
//!    ([`Shared::walk_blocks`](super::shared::Shared::walk_blocks)). A block
//!    whose header word says CACHED by the owner sat in a dead thread's cache:
//!    it goes back to its class's shared list. A LIVE block of the owner is freed unless `keep` says the runtime
//!    still uses it. Every change is a CAS from the exact word read, so a block
//!    another process frees concurrently is that process's, never freed twice.
//! 4. **Counters**: the owner's live counters are set, by difference, to what the
//!    walk kept, erasing whatever a thread killed in the middle of an update left.
//! 5. **Release**: with nothing kept, the slot's counters are zeroed and the slot
//!    freed; otherwise it is marked reaped (`OWNER_REAPED`): `attach` skips it,
//!    [`dead_owners`](Allocator::dead_owners) still lists it, and a later
//!    `reap_owner` (once the kept blocks are freed, or no longer kept) finishes.
//!
//! # A process killed in the middle of an operation
//!
//! State and owner of a block change in one atomic word, and the dead process
//! cannot act any more, so each window leaves something the walk handles, or a
//! leak bounded by the thread's `transit` word:
//!
//! | killed between | left behind | reap |
//! | --- | --- | --- |
//! | popping a block from its bin and marking it LIVE | CACHED, owner = dead | back to the list |
//! | the CAS LIVE→CACHED of a free and the counter update | CACHED; the allocating owner's counter too high | back to the list; the dead owner's counters are recomputed (a *live* allocating owner keeps the excess until it is reaped) |
//! | popping from a shared list and marking the block CACHED | FREE, on no list | leaked (≤ 1 block), counted from `transit` |
//! | marking a spilled chain FREE and pushing it | FREE, on no list | leaked (≤ 32 blocks), counted |
//! | claiming a page and describing it | RESERVED page | leaked (1 page or 1 large run), counted |
//! | describing a carved page and pushing its chain | FREE blocks on no list | leaked (< 1 page), counted |
//! | setting up a large run and counting it | LIVE run, not counted | freed; counters recomputed |
//! | the CAS LIVE→FREE of a large run and its release (under the page lock) | a FREE head under a LARGE_HEAD descriptor; the lock held by the dead process | the next locker takes the lock over, recomputes the page state and releases the run |
//! | releasing a large run and counting it | the owner's counter too high | the dead owner's counters are recomputed |
//!
//! A thread without a counter slot (more than 1024 threads) is not counted.
//!
//! # Contract for `keep`
//!
//! `keep(ptr)` must return true for every LIVE block of the owner that some live
//! thread may still free: the runtime frees those itself later. A block the
//! runtime frees concurrently with a reap that does not keep it is freed once
//! (by whichever CAS wins), but its counter update may land after the reap has
//! settled the slot.

use super::layout::{self, OWNER_REAPED, OwnerSlot, state, word};
use super::{Allocator, FreeError, MAX_OWNERS, OwnerId, SegmentId, ShmPtr};
use crate::proc::{current_pid, started_process_alive};
use crate::sync::Ordering;

/// What [`Allocator::reap_owner`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReapReport {
    /// The owner reaped.
    pub owner: OwnerId,
    /// The dead process that held it.
    pub pid: u32,
    /// LIVE blocks freed.
    pub freed_blocks: u64,
    /// Usable bytes of those blocks.
    pub freed_bytes: u64,
    /// Free blocks taken out of the dead process's thread caches and put back on
    /// the shared lists.
    pub uncached_blocks: u64,
    /// LIVE blocks left allocated because `keep` said so.
    pub kept_blocks: u64,
    /// Usable bytes of those blocks.
    pub kept_bytes: u64,
    /// Upper bound of the bytes the dead process's threads were moving when they
    /// died, which may be lost (also added to
    /// [`AllocStats::possibly_leaked_bytes`](super::AllocStats)).
    pub possibly_leaked_bytes: u64,
    /// Whether the owner slot was freed (nothing kept).
    pub slot_released: bool,
}

/// Why [`Allocator::reap_owner`] did not reap.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReapError {
    /// The owner id is past the owner table.
    #[error(
        "{segment}: there is no {owner} (the table has {MAX_OWNERS} slots); pass an owner from \
         dead_owners() or owner_of()"
    )]
    NoSuchOwner {
        /// Segment.
        segment: SegmentId,
        /// The id passed.
        owner: OwnerId,
    },
    /// The slot is free: nothing to reap (another reaper may have finished it).
    #[error("{segment}: {owner} is not attached to any process; there is nothing to reap")]
    NotAttached {
        /// Segment.
        segment: SegmentId,
        /// The owner.
        owner: OwnerId,
    },
    /// The slot's process is alive.
    #[error(
        "{segment}: {owner} belongs to process {pid}, which is alive; reap only the owners \
         dead_owners() lists, or use force_reap_owner() if process {pid} is known never to touch \
         the segment again (a reused pid)"
    )]
    OwnerAlive {
        /// Segment.
        segment: SegmentId,
        /// The owner.
        owner: OwnerId,
        /// Its live process.
        pid: u32,
    },
    /// The slot belongs to the calling process.
    #[error("{segment}: {owner} belongs to this process; free its blocks instead of reaping it")]
    OwnSlot {
        /// Segment.
        segment: SegmentId,
        /// The owner.
        owner: OwnerId,
    },
    /// The slot changed between the check and the claim.
    #[error(
        "{segment}: {owner} changed hands while being claimed (now pid {pid}): another reaper is \
         at it; call dead_owners() again"
    )]
    Busy {
        /// Segment.
        segment: SegmentId,
        /// The owner.
        owner: OwnerId,
        /// The pid now in the slot.
        pid: u32,
    },
    /// Freeing a large block needs the page lock, which a live process held for
    /// too long.
    #[error(
        "{segment}: reaping {owner} stopped: the allocator's page lock has been held by process \
         {holder} for over 2 s; kill that process if it is hung and call reap_owner() again (what \
         was reclaimed so far stays reclaimed)"
    )]
    PageLockTimeout {
        /// Segment.
        segment: SegmentId,
        /// The owner.
        owner: OwnerId,
        /// pid in the lock word.
        holder: u32,
    },
}

/// A claimed owner slot; gives it back to its previous value if the reap does not
/// finish.
struct SlotClaim<'a> {
    slot: &'a OwnerSlot,
    me: u32,
    previous: u32,
    done: bool,
}

impl SlotClaim<'_> {
    /// Sets the slot's pid from ours to `pid` (0: free; `OWNER_REAPED`).
    fn finish(mut self, pid: u32) {
        // Release: pairs with the Acquire CAS in `attach` (and in a later reap),
        // which then see the counters settled.
        let _ = self
            .slot
            .pid
            .compare_exchange(self.me, pid, Ordering::Release, Ordering::Relaxed);
        self.done = true;
    }
}

impl Drop for SlotClaim<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Release: as in `finish`.
            let _ = self.slot.pid.compare_exchange(
                self.me,
                self.previous,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }
    }
}

impl std::fmt::Display for OwnerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "owner #{}", self.0)
    }
}

impl Allocator {
    /// Owner slots whose process is dead, with that pid: the slots of processes
    /// that died attached (and still own blocks or cached ones), and those reaped
    /// while the runtime kept some of their blocks (until a later
    /// [`reap_owner`](Allocator::reap_owner) finishes them).
    pub fn dead_owners(&self) -> Vec<(OwnerId, u32)> {
        let s = &*self.shared;
        s.hdr()
            .owners
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                // Acquire: pairs with the Release stores of the slot's pid.
                let pid = match o.0.pid.load(Ordering::Acquire) {
                    0 => return None,
                    OWNER_REAPED => o.0.reaped_pid.load(Ordering::Relaxed),
                    pid if started_process_alive(pid, o.0.started.load(Ordering::Relaxed)) => {
                        return None;
                    }
                    pid => pid,
                };
                Some((OwnerId(i as u32), pid))
            })
            .collect()
    }

    /// Reclaims what the dead process of `owner` held (see *Ownership* in the
    /// [allocator's design](super)): frees each of its LIVE blocks for which `keep` returns false,
    /// puts the blocks its thread caches held back on the shared lists, settles
    /// its counters, and frees the slot, unless kept blocks remain (then a later
    /// call finishes). Refuses an owner whose process is alive.
    ///
    /// Walks every page of the heap: call it when a process died, or when blocks
    /// it kept are done with, not in a loop.
    pub fn reap_owner(
        &self,
        owner: OwnerId,
        keep: &dyn Fn(ShmPtr) -> bool,
    ) -> Result<ReapReport, ReapError> {
        self.reap(owner, keep, false)
    }

    /// [`reap_owner`](Allocator::reap_owner) without the liveness check: for an
    /// owner whose pid is alive but is known not to be the process that attached
    /// (a reused pid), or a process the runtime disconnected and killed. The caller
    /// guarantees that no thread of that owner uses the segment any more.
    pub fn force_reap_owner(
        &self,
        owner: OwnerId,
        keep: &dyn Fn(ShmPtr) -> bool,
    ) -> Result<ReapReport, ReapError> {
        self.reap(owner, keep, true)
    }

    fn reap(
        &self,
        owner: OwnerId,
        keep: &dyn Fn(ShmPtr) -> bool,
        force: bool,
    ) -> Result<ReapReport, ReapError> {
        let s = &*self.shared;
        let segment = s.map.id();
        let slot = s
            .owner_slot(owner.0)
            .ok_or(ReapError::NoSuchOwner { segment, owner })?;
        let me = current_pid();
        // Acquire: pairs with the Release stores of the slot's pid.
        let previous = slot.pid.load(Ordering::Acquire);
        let pid = match previous {
            0 => return Err(ReapError::NotAttached { segment, owner }),
            OWNER_REAPED => slot.reaped_pid.load(Ordering::Relaxed),
            p if p == me => return Err(ReapError::OwnSlot { segment, owner }),
            p if !force && started_process_alive(p, slot.started.load(Ordering::Relaxed)) => {
                return Err(ReapError::OwnerAlive {
                    segment,
                    owner,
                    pid: p,
                });
            }
            p => p,
        };
        // Acquire: as above; on success the slot is ours until `finish`.
        slot.pid
            .compare_exchange(previous, me, Ordering::Acquire, Ordering::Acquire)
            .map_err(|now| ReapError::Busy {
                segment,
                owner,
                pid: now,
            })?;
        let claim = SlotClaim {
            slot,
            me,
            previous,
            done: false,
        };
        let mut report = ReapReport {
            owner,
            pid,
            freed_blocks: 0,
            freed_bytes: 0,
            uncached_blocks: 0,
            kept_blocks: 0,
            kept_bytes: 0,
            possibly_leaked_bytes: 0,
            slot_released: false,
        };

        // 2. The dead threads' counter slots. Their last stores are visible: the
        // threads entered the kernel to die.
        let taken = owner.0.wrapping_add(1);
        for t in &s.hdr().threads {
            let t = &t.0;
            // Acquire: pairs with the Acquire CAS that took the slot (its zeroing
            // of the counters came after it, in program order of that thread).
            if t.taken.load(Ordering::Acquire) != taken {
                continue;
            }
            // Relaxed: counters; the dead thread writes them no more.
            slot.live_bytes
                .fetch_add(t.live_bytes.swap(0, Ordering::Relaxed), Ordering::Relaxed);
            slot.live_blocks
                .fetch_add(t.live_blocks.swap(0, Ordering::Relaxed), Ordering::Relaxed);
            report.possibly_leaked_bytes += t.transit.swap(0, Ordering::Relaxed);
            // Release: pairs with the Acquire CAS that takes the slot next.
            t.taken.store(0, Ordering::Release);
        }

        // 3. The pages. Large runs are freed after the walk (under the page lock).
        let mut large = Vec::new();
        s.walk_blocks(|b, w| {
            if layout::owner_of(w) != owner.0 {
                return;
            }
            let h = s.block(b.block);
            match (layout::state_of(w), b.class) {
                (state::LIVE, class) => {
                    let ptr = ShmPtr::new(segment, b.payload);
                    if keep(ptr) {
                        report.kept_blocks += 1;
                        report.kept_bytes += b.usable;
                        return;
                    }
                    let Some(class) = class else {
                        large.push((b.block, ptr, b.usable));
                        return;
                    };
                    // Acquire: we take the block over, as `free` does; a failed CAS
                    // means another process freed it meanwhile.
                    if h.word
                        .compare_exchange(
                            w,
                            word(state::FREE, owner.0),
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        s.count_free(owner.0, b.usable);
                        s.push_or_leak(class, b.block, b.block, b.usable + layout::BLOCK_HEADER);
                        report.freed_blocks += 1;
                        report.freed_bytes += b.usable;
                    }
                }
                // Acquire: we take the block over from the dead cache.
                (state::CACHED, Some(class))
                    if h.word
                        .compare_exchange(
                            w,
                            word(state::FREE, owner.0),
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_ok() =>
                {
                    s.push_or_leak(class, b.block, b.block, b.usable + layout::BLOCK_HEADER);
                    report.uncached_blocks += 1;
                }
                _ => {}
            }
        });
        for (block, ptr, usable) in large {
            match s.free_large(block, ptr) {
                Ok(()) => {
                    report.freed_blocks += 1;
                    report.freed_bytes += usable;
                }
                // Freed by another process meanwhile.
                Err(FreeError::NotAllocated { .. } | FreeError::WrongSegment { .. }) => {}
                Err(FreeError::PageLockTimeout { holder, .. }) => {
                    return Err(ReapError::PageLockTimeout {
                        segment,
                        owner,
                        holder,
                    });
                }
            }
        }

        // 4. The counters: by difference, so that a concurrent free of a kept block
        // is not lost.
        // Relaxed: counters.
        let bytes = slot.live_bytes.load(Ordering::Relaxed);
        let blocks = slot.live_blocks.load(Ordering::Relaxed);
        slot.live_bytes
            .fetch_sub(bytes.wrapping_sub(report.kept_bytes), Ordering::Relaxed);
        slot.live_blocks
            .fetch_sub(blocks.wrapping_sub(report.kept_blocks), Ordering::Relaxed);
        s.health()
            .possibly_leaked_bytes
            .fetch_add(report.possibly_leaked_bytes, Ordering::Relaxed);

        // 5. The slot.
        if report.kept_blocks == 0 {
            // Relaxed: published by the Release in `finish`.
            slot.live_bytes.store(0, Ordering::Relaxed);
            slot.live_blocks.store(0, Ordering::Relaxed);
            slot.reaped_pid.store(0, Ordering::Relaxed);
            claim.finish(0);
            report.slot_released = true;
        } else {
            // Relaxed: published by the Release in `finish`.
            slot.reaped_pid.store(pid, Ordering::Relaxed);
            claim.finish(OWNER_REAPED);
        }
        tracing::info!(
            segment = %segment,
            owner = owner.0,
            pid,
            freed_blocks = report.freed_blocks,
            freed_bytes = report.freed_bytes,
            uncached_blocks = report.uncached_blocks,
            kept_blocks = report.kept_blocks,
            possibly_leaked_bytes = report.possibly_leaked_bytes,
            slot_released = report.slot_released,
            "reclaimed the allocations of a dead process"
        );
        Ok(report)
    }
}
