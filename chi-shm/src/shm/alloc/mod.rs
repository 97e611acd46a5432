//! The cross-process allocator of a segment.
//!
//! # Design
//!
//! The heap is an array of 64 KiB pages, each described by one `AtomicU32` page
//! descriptor (`layout::desc`): free, carved into blocks of one size class, or
//! part of a large run. Every block starts with a 16-byte `BlockHeader`
//! (free-list link, and one word holding state and owner) that only the allocator
//! touches, so payloads are 16-byte aligned and a block's owner and state can
//! always be read.
//!
//! **Small sizes** (≤ 16 368 bytes, 35 classes) are the hot path and take no lock:
//!
//! 1. Each thread keeps, per allocator handle and class, a cache ("bin") of up to
//!    64 free blocks. `allocate` pops one; `free` pushes one. No atomic RMW on
//!    shared lines apart from the owner's counters (module `cache`).
//! 2. An empty bin refills with up to 32 blocks from the class's shared free list,
//!    a lock-free Treiber stack in the segment whose head carries a 24-bit tag
//!    against ABA (module `stack`). A full bin returns 32 blocks as one chain (one CAS).
//! 3. An empty free list makes the refilling thread claim a fresh page (the only
//!    lock, module `pages`, once per page) and carve it into blocks.
//!
//! A block freed by any process goes into *that* process's cache and is reused
//! there or, after overflow, by anyone through the shared list.
//!
//! **Large sizes** (and alignments above 16) take a run of whole pages under the
//! page lock; freeing returns the run, which merges with the free pages next to
//! it at the top of the used range (module `pages`).
//!
//! **Pages go back.** When no run of pages is left for a request, the allocator
//! detaches the class free lists, gives every page whose blocks are all on them
//! back to the page pool, and tries again (module `trim`); before failing, the calling
//! thread also returns its own cached blocks. So pages carved for one size class
//! serve other classes and large runs once they are empty; blocks cached by other
//! threads keep their pages.
//!
//! **Ownership.** Each handle ([`Allocator::attach`]) takes an owner slot (pid +
//! live bytes/blocks counters) in the segment. A block's header names the owner
//! that allocated it (LIVE) or whose thread cache holds it (CACHED), and changes
//! state and owner in one atomic step, so a dead client's blocks can be found by
//! walking the pages ([`Allocator::blocks_of`]) and reclaimed
//! ([`Allocator::reap_owner`], see module `reap`).
//!
//! # Robustness
//!
//! Clients map the segment read-write: they are trusted not to be malicious,
//! never to be correct. They may die at any instruction, free garbage, or scribble
//! on the allocator's metadata. So:
//!
//! * `free` validates its argument: the segment, the page descriptor, the block
//!   boundary and the header state (a CAS from LIVE), so a garbage pointer or a
//!   double free is an error, not corruption.
//! * Every node offset read from a shared free list is checked (inside the heap,
//!   on a block boundary of a page carved for that class, marked FREE) before it
//!   is followed; a list found corrupt is abandoned (reset to empty, its blocks
//!   leaked and counted) and reported as [`AllocError::CorruptFreeList`].
//! * Every wait is bounded: the page lock is taken over from dead holders and
//!   gives up with [`AllocError::PageLockTimeout`] after `pages::LOCK_TIMEOUT`
//!   without progress; every CAS loop gives up after `stack::MAX_ATTEMPTS`
//!   failures; every walk of the pages or of a list is bounded by the heap's size.
//! * Page descriptors, `top` and header fields are range-checked before they index
//!   anything.
//!
//! Running out of pages is [`AllocError::OutOfMemory`].
//!
//! **Limits.** Blocks in a thread's cache are available to other threads only
//! after overflow, thread exit or an out-of-memory retry of that thread; a page
//! some of whose blocks are cached stays with its class. The free-list check
//! cannot tell a scribbled link that happens to name a valid free block of the
//! right class from a real one.
//!
//! # Files
//!
//! * `layout`: the metadata header, size classes, block headers, page
//!   descriptors and owner and thread slots as they lie in the segment;
//!   formatting a fresh segment's metadata and validating an attached one's.
//! * `error`, `stats`: [`AllocError`], [`FreeError`], and the figures
//!   ([`AllocStats`], [`Allocator::owner_usage`]).
//! * `central`: the class free lists and the page runs that every process shares
//!   (over `stack`, the lock-free list, and `pages`, the page runs under their
//!   lock), and large allocations; `trim`: giving empty class pages back.
//! * `cache`: the thread caches, the small-size hot path, and the moves of blocks
//!   between them and the class free lists.
//! * `shared`: what a handle shares with its thread caches, and reading the heap
//!   (locating a pointer's block, walking every block).
//! * `reap`: reclaiming what a dead process held.
//! * This file: [`Allocator`], the public API.

mod cache;
mod central;
mod error;
pub(crate) mod layout;
mod pages;
mod reap;
mod shared;
pub(crate) mod stack;
mod stats;
// Real segments, processes, files or sockets: not under Miri (see
// scripts/check-miri.sh) nor loom (see crate::sync); run natively.
#[cfg(all(test, not(miri), not(loom)))]
mod tests;
mod trim;

use std::sync::Arc;

use cache::{Bin, CACHES};
pub use error::{AllocError, FreeError};
use layout::{AllocHeader, BLOCK_HEADER, state, word};
pub use layout::{MAX_OWNERS, MAX_SMALL_SIZE, PAGE_SIZE, SMALL_ALIGN};
pub(crate) use layout::{format, geometry, heap_offset_for, validate};
pub use reap::{ReapError, ReapReport};
use shared::Shared;
pub use stats::AllocStats;

use super::{FullPtr, Segment, SegmentId, ShmPtr, ShmSafe};
/// Process liveness (see [`crate::proc`]), also reachable here.
pub use crate::proc::{pid_alive, process_start, started_process_alive};
use crate::sync::{AtomicU32, AtomicU64, Ordering, native};

/// Blocks a thread keeps per class at most.
const BIN_CAP: usize = 64;
/// Blocks moved between a thread cache and a shared list at once.
const BATCH: usize = 32;
/// Largest alignment supported (large allocations; small ones are 16-aligned).
pub const MAX_ALIGN: usize = 4096;

/// Identifies an owner slot of a segment's allocator: one per attached handle.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct OwnerId(pub u32);

static NEXT_KEY: native::AtomicU64 = native::AtomicU64::new(1);

/// A handle to the allocator of a segment, usable from any thread of this process.
/// Clones share the owner slot and the thread caches.
pub struct Allocator {
    shared: Arc<Shared>,
}

impl Clone for Allocator {
    fn clone(&self) -> Self {
        // Relaxed: a reference count; the Release/Acquire pair is in `drop`.
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        Allocator {
            shared: self.shared.clone(),
        }
    }
}

impl std::fmt::Debug for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allocator")
            .field("segment", &self.shared.map.name())
            .field("owner", &self.shared.owner)
            .finish()
    }
}

impl Allocator {
    /// Heap pages that one allocation of `size` bytes aligned to `align` takes in a
    /// segment with no free block of its size: one page for a small size (the page
    /// is carved into blocks of that size class), the whole run for a large one.
    /// For sizing segments ahead of time.
    pub fn pages_for(size: usize, align: usize) -> u64 {
        if layout::class_of(size).is_some() && align <= SMALL_ALIGN {
            return 1;
        }
        // As in `alloc_large`: the payload starts `delta` bytes into the run.
        let delta = (align.max(SMALL_ALIGN) as u64).max(BLOCK_HEADER);
        (size as u64).saturating_add(delta).div_ceil(PAGE_SIZE)
    }

    /// Attaches to the allocator of `segment`, taking an owner slot for this handle.
    pub fn attach(segment: &Segment) -> Result<Allocator, AllocError> {
        let map = segment.mapping().clone();
        let alloc_offset = map.header().alloc_offset;
        // SAFETY: the segment was formatted (create) or validated (attach), so the
        // allocator header lies at `alloc_offset` inside the mapping.
        let hdr = unsafe { map.base().add(alloc_offset as usize) as *const AllocHeader };
        // SAFETY: as above.
        let h = unsafe { &*hdr };
        let pid = crate::proc::current_pid();
        let owner = h
            .owners
            .iter()
            .position(|s| {
                // Acquire: pairs with the Release store of 0 in `Shared::drop` and
                // in the reaper, after which the slot's counters are settled.
                s.0.pid
                    .compare_exchange(0, pid, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            })
            .ok_or(AllocError::OwnerTableFull { segment: map.id() })?;
        let slot = &h.owners[owner].0;
        // Relaxed: the slot is ours now. The counters of a free slot are zero;
        // resetting them heals a scribbled one.
        slot.generation.fetch_add(1, Ordering::Relaxed);
        slot.live_bytes.store(0, Ordering::Relaxed);
        slot.live_blocks.store(0, Ordering::Relaxed);
        slot.reaped_pid.store(0, Ordering::Relaxed);
        slot.started
            .store(crate::proc::own_start(), Ordering::Relaxed);
        // SAFETY: validated: the descriptors lie between the header and the heap.
        let descs = unsafe { map.base().add(h.desc_offset as usize) as *const AtomicU32 };
        let shared = Shared {
            hdr,
            descs,
            n_pages: h.n_pages,
            heap_offset: h.heap_offset,
            owner: owner as u32,
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            handles: AtomicU64::new(1),
            map,
        };
        Ok(Allocator {
            shared: Arc::new(shared),
        })
    }

    /// Allocates `size` bytes aligned to 16. The memory is not zeroed.
    #[inline]
    pub fn allocate(&self, size: usize) -> Result<FullPtr<u8>, AllocError> {
        self.allocate_aligned(size, SMALL_ALIGN)
    }

    /// Allocates `size` bytes aligned to `align` (a power of two up to [`MAX_ALIGN`]).
    pub fn allocate_aligned(&self, size: usize, align: usize) -> Result<FullPtr<u8>, AllocError> {
        if !align.is_power_of_two() || align > MAX_ALIGN {
            return Err(AllocError::UnsupportedAlign { align });
        }
        let off = match self.try_allocate(size, align) {
            Err(AllocError::OutOfMemory { .. })
                if self.with_cache(|c| c.spill_all()).unwrap_or(0) > 0 =>
            {
                // This thread's cached blocks may be what keeps pages from going
                // back to the pool: return them and try once more.
                self.try_allocate(size, align)
            }
            other => other,
        }?;
        Ok(self.shared.full(off))
    }

    fn try_allocate(&self, size: usize, align: usize) -> Result<u64, AllocError> {
        let s = &*self.shared;
        let Some(class) = layout::class_of(size).filter(|_| align <= SMALL_ALIGN) else {
            return self
                .with_cache(|c| s.alloc_large(size, align, c.slot()))
                .unwrap_or_else(|| s.alloc_large(size, align, None));
        };
        let payload = layout::class_payload(class);
        let block = self
            .with_cache(|c| {
                let b = c.take(class)?;
                c.count(payload, true);
                Ok(b)
            })
            .unwrap_or_else(|| {
                let b = self.alloc_uncached(class)?;
                s.count_alloc(payload);
                Ok(b)
            })
            .map_err(|e| match e {
                // Report the size asked for, not the size class's.
                AllocError::OutOfMemory {
                    segment,
                    free_pages,
                    ..
                } => AllocError::OutOfMemory {
                    segment,
                    requested: size,
                    free_pages,
                },
                other => other,
            })?;
        // Relaxed: the block is ours; the pointer is published by the caller's
        // own Release (queue push), which covers this store.
        s.block(block)
            .word
            .store(word(state::LIVE, s.owner), Ordering::Relaxed);
        Ok(block + BLOCK_HEADER)
    }

    /// Small allocation without a thread cache (during thread teardown).
    #[cold]
    fn alloc_uncached(&self, class: usize) -> Result<u64, AllocError> {
        let mut bin = Bin::EMPTY;
        self.shared.refill(class, &mut bin, None)?;
        let b = bin.pop().unwrap_or_default();
        while bin.len > 0 {
            self.shared.spill(class, &mut bin, None);
        }
        Ok(b)
    }

    /// Allocates `size` zeroed bytes aligned to 16.
    pub fn allocate_zeroed(&self, size: usize) -> Result<FullPtr<u8>, AllocError> {
        let p = self.allocate(size)?;
        // SAFETY: the block was just allocated for us and holds at least `size` bytes.
        unsafe { std::ptr::write_bytes(p.as_ptr(), 0, size) };
        Ok(p)
    }

    /// Allocates room for `value` and moves it there.
    pub fn new_obj<T: ShmSafe>(&self, value: T) -> Result<FullPtr<T>, AllocError> {
        let p = self
            .allocate_aligned(size_of::<T>(), align_of::<T>())?
            .cast::<T>();
        // SAFETY: fresh block of at least size_of::<T>() bytes, aligned for T.
        unsafe { p.as_ptr().write(value) };
        Ok(p)
    }

    /// Frees an allocation of this segment, made by any process. A pointer that is
    /// not a live allocation's start is refused, and nothing is changed.
    pub fn free(&self, ptr: ShmPtr) -> Result<(), FreeError> {
        let s = &*self.shared;
        let (block, class, payload) = s.locate(ptr)?;
        let Some(class) = class else {
            return s.free_large(block, ptr);
        };
        let h = s.block(block);
        // Relaxed: the CAS below decides.
        let w = h.word.load(Ordering::Relaxed);
        if layout::state_of(w) != state::LIVE {
            return Err(FreeError::NotAllocated { ptr });
        }
        // Acquire: we take the block over; pairs with the Release by which the
        // pointer reached us (queue push, task completion). State and owner change
        // together, so a reaper never takes this block for the old owner's.
        h.word
            .compare_exchange(
                w,
                word(state::CACHED, s.owner),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .map_err(|_| FreeError::NotAllocated { ptr })?;
        let prev = layout::owner_of(w);
        let cached = self.with_cache(|c| {
            if prev == s.owner {
                c.count(payload, false);
            } else {
                s.count_free(prev, payload);
            }
            c.put(class, block);
        });
        if cached.is_none() {
            s.count_free(prev, payload);
            // Relaxed: published by the push's Release CAS.
            h.word.store(word(state::FREE, s.owner), Ordering::Relaxed);
            s.push_or_leak(class, block, block, payload + BLOCK_HEADER);
        }
        Ok(())
    }

    /// Frees `ptr` if it is not null.
    pub fn free_full<T>(&self, ptr: FullPtr<T>) -> Result<(), FreeError> {
        self.free(ptr.shm())
    }

    /// The owner that allocated the live allocation at `ptr`.
    pub fn owner_of(&self, ptr: ShmPtr) -> Result<OwnerId, FreeError> {
        let s = &*self.shared;
        let (block, _, _) = s.locate(ptr)?;
        // Relaxed: a query; the answer may be stale by the time it is used.
        let w = s.block(block).word.load(Ordering::Relaxed);
        if layout::state_of(w) != state::LIVE {
            return Err(FreeError::NotAllocated { ptr });
        }
        Ok(OwnerId(layout::owner_of(w)))
    }

    /// Usable bytes of the allocation at `ptr` if `ptr` is the start of a *live*
    /// allocation of this segment (not a block inside one, not a free or cached
    /// block): what the runtime checks before it trusts a pointer a client sent.
    #[inline]
    pub fn live_size(&self, ptr: ShmPtr) -> Result<u64, FreeError> {
        let s = &*self.shared;
        let (block, _, payload) = s.locate(ptr)?;
        // Relaxed: a check, not a hand-over (the pointer reached us through an
        // Acquire of its own: the queue cell or the task's state word).
        if layout::state_of(s.block(block).word.load(Ordering::Relaxed)) != state::LIVE {
            return Err(FreeError::NotAllocated { ptr });
        }
        Ok(payload)
    }

    /// Usable bytes of the live allocation at `ptr` (at least what was asked for).
    pub fn usable_size(&self, ptr: ShmPtr) -> Result<u64, FreeError> {
        let (_, _, payload) = self.shared.locate(ptr)?;
        Ok(payload)
    }

    /// This handle's owner id.
    pub fn owner(&self) -> OwnerId {
        OwnerId(self.shared.owner)
    }

    /// The segment this allocator serves.
    pub fn segment_id(&self) -> SegmentId {
        self.shared.map.id()
    }

    /// pid holding `owner`'s slot (0 if free). For a slot whose process was reaped
    /// while blocks were kept, the pid of that dead process.
    pub fn owner_pid(&self, owner: OwnerId) -> Option<u32> {
        self.shared.owner_slot(owner.0).map(|s| {
            // Acquire: pairs with the Release stores of the slot's pid.
            match s.pid.load(Ordering::Acquire) {
                layout::OWNER_REAPED => s.reaped_pid.load(Ordering::Relaxed),
                pid => pid,
            }
        })
    }

    /// Every live allocation owned by `owner`, found by walking the pages (for the
    /// process reaper: what a dead client still holds), and the number of blocks
    /// its thread caches held.
    pub fn blocks_of(&self, owner: OwnerId) -> (Vec<ShmPtr>, u64) {
        let s = &*self.shared;
        let mut live = Vec::new();
        let mut cached = 0;
        s.walk_blocks(|b, w| {
            if layout::owner_of(w) != owner.0 {
                return;
            }
            match layout::state_of(w) {
                state::LIVE => live.push(ShmPtr::new(s.map.id(), b.payload)),
                state::CACHED => cached += 1,
                _ => {}
            }
        });
        (live, cached)
    }

    /// Returns this thread's cached blocks of this handle to the shared lists.
    pub fn flush_thread_cache(&self) {
        let key = self.shared.key;
        let _ = CACHES.try_with(|caches| {
            if let Ok(mut caches) = caches.try_borrow_mut() {
                caches.retain(|c| c.shared.key != key);
            }
        });
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        // The last handle flushes this thread's cache; other threads flush theirs
        // when they exit (their caches keep the mapping alive until then).
        // AcqRel: orders this handle's use before the flush of whichever drop is
        // last (the usual reference-count pairing).
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.flush_thread_cache();
        }
    }
}
