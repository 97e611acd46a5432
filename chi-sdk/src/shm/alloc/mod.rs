//! The cross-process allocator of a segment.
//!
//! # Design
//!
//! The heap is an array of 64 KiB pages, each described by one `AtomicU32` page
//! descriptor ([`layout::desc`]): free, carved into blocks of one size class, or
//! part of a large run. Every block starts with a 16-byte [`BlockHeader`] (free-list
//! link, state, owner) that only the allocator touches, so payloads are 16-byte
//! aligned and a block's owner and state can always be read.
//!
//! **Small sizes** (≤ 16 368 bytes, 35 classes) are the hot path and take no lock:
//!
//! 1. Each thread keeps, per allocator handle and class, a cache ("bin") of up to
//!    64 free blocks. `allocate` pops one; `free` pushes one. No atomic RMW on
//!    shared lines apart from the owner's counters.
//! 2. An empty bin refills with up to 32 blocks from the class's shared free list,
//!    a lock-free Treiber stack in the segment whose head carries a 24-bit tag
//!    against ABA ([`stack`]). A full bin returns 32 blocks as one chain (one CAS).
//! 3. An empty free list makes the refilling thread claim a fresh page (the only
//!    lock, [`pages`], once per page) and carve it into blocks.
//!
//! A block freed by any process goes into *that* process's cache and is reused
//! there or, after overflow, by anyone through the shared list.
//!
//! **Large sizes** (and alignments above 16) take a run of whole pages under the
//! page lock; freeing returns the run.
//!
//! **Ownership.** Each handle ([`Allocator::attach`]) takes an owner slot (pid +
//! live bytes/blocks counters) in the segment. A block's header names the owner
//! that allocated it (LIVE) or whose thread cache holds it (CACHED), so a dead
//! client's blocks can be found by walking the pages ([`Allocator::blocks_of`]).
//!
//! **Robustness.** `free` validates its argument: the segment, the page
//! descriptor, the block boundary and the header state (a CAS from LIVE), so a
//! garbage pointer or a double free is an error, not corruption. Running out of
//! pages is [`AllocError::OutOfMemory`].
//!
//! **Limits.** Pages carved for a size class stay with that class (they are not
//! returned to the page pool when all their blocks are free); blocks in a thread's
//! cache are available to other threads only after overflow or thread exit.

pub(crate) mod layout;
mod pages;
pub(crate) mod stack;

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use layout::{
    BLOCK_HEADER, BlockHeader, MAX_THREAD_SLOTS, NUM_CLASSES, OwnerSlot, PAGE_SHIFT, Padded,
    ThreadSlot, desc, state,
};
pub use layout::{MAX_OWNERS, MAX_SMALL_SIZE, PAGE_SIZE, SMALL_ALIGN};
use pages::PageState;
pub use pages::pid_alive;
use stack::{Links, TaggedStack};

use super::segment::Mapping;
use super::{FullPtr, Segment, SegmentId, ShmPtr, ShmSafe};

const ALLOC_MAGIC: u64 = u64::from_le_bytes(*b"CHIALLOC");
/// Blocks a thread keeps per class at most.
const BIN_CAP: usize = 64;
/// Blocks moved between a thread cache and a shared list at once.
const BATCH: usize = 32;
/// Largest alignment supported (large allocations; small ones are 16-aligned).
pub const MAX_ALIGN: usize = 4096;

/// The allocator metadata at `alloc_offset` in the segment.
#[repr(C)]
struct AllocHeader {
    magic: u64,
    page_size: u64,
    heap_offset: u64,
    n_pages: u64,
    desc_offset: u64,
    pages: Padded<PageState>,
    classes: [Padded<TaggedStack>; NUM_CLASSES],
    owners: [Padded<OwnerSlot>; MAX_OWNERS],
    threads: [Padded<ThreadSlot>; MAX_THREAD_SLOTS],
}

fn meta_size(n_pages: u64) -> u64 {
    (size_of::<AllocHeader>() as u64).next_multiple_of(64) + n_pages * 4
}

/// Offset of the first heap page for metadata at `alloc_offset` describing `n_pages`.
pub(crate) fn heap_offset_for(alloc_offset: u64, n_pages: u64) -> u64 {
    (alloc_offset + meta_size(n_pages)).next_multiple_of(PAGE_SIZE)
}

/// `(heap_offset, n_pages)` of a segment of `size` bytes with its allocator
/// metadata at `alloc_offset`.
pub(crate) fn geometry(size: u64, alloc_offset: u64) -> (u64, u64) {
    let upper = size / PAGE_SIZE;
    let heap_offset = heap_offset_for(alloc_offset, upper);
    let n_pages = size.saturating_sub(heap_offset) / PAGE_SIZE;
    (heap_offset, n_pages)
}

/// Lays out the allocator metadata of a fresh (zero-filled) segment.
///
/// # Safety
/// `base..base+size` is a fresh, zero-filled mapping no one else accesses, and
/// `alloc_offset` leaves room for the metadata (`size >= Segment::min_size()`).
pub(crate) unsafe fn format(base: *mut u8, size: u64, alloc_offset: u64) {
    let (heap_offset, n_pages) = geometry(size, alloc_offset);
    // SAFETY: per the contract, the header fits at `alloc_offset` and no one else
    // accesses the memory; zero is a valid initial value of every other field.
    unsafe {
        let h = base.add(alloc_offset as usize) as *mut AllocHeader;
        (*h).magic = ALLOC_MAGIC;
        (*h).page_size = PAGE_SIZE;
        (*h).heap_offset = heap_offset;
        (*h).n_pages = n_pages;
        (*h).desc_offset = alloc_offset + (size_of::<AllocHeader>() as u64).next_multiple_of(64);
    }
}

/// Checks the allocator metadata of an attached segment is consistent with its size.
///
/// # Safety
/// `base..base+size` is a mapping of a segment whose header was validated.
pub(crate) unsafe fn validate(
    base: *mut u8,
    size: u64,
    alloc_offset: u64,
) -> Result<(), &'static str> {
    if alloc_offset
        .checked_add(size_of::<AllocHeader>() as u64)
        .is_none_or(|end| end > size)
        || !alloc_offset.is_multiple_of(128)
    {
        return Err("allocator metadata out of bounds");
    }
    // SAFETY: in bounds (checked above) and aligned (alloc_offset % 128 == 0, base
    // page aligned); the plain fields were written before the magic was published.
    let h = unsafe { &*(base.add(alloc_offset as usize) as *const AllocHeader) };
    let (heap_offset, n_pages) = geometry(size, alloc_offset);
    if h.magic != ALLOC_MAGIC
        || h.page_size != PAGE_SIZE
        || h.heap_offset != heap_offset
        || h.n_pages != n_pages
        || h.desc_offset + n_pages * 4 > heap_offset
    {
        return Err("allocator metadata does not match the segment size");
    }
    Ok(())
}

/// Identifies an owner slot of a segment's allocator: one per attached handle.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct OwnerId(pub u32);

/// Why an allocation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// The segment has no room left for the request.
    #[error(
        "{segment}: out of shared memory allocating {requested} bytes ({free_pages} free pages of \
         64 KiB); raise the segment size in the runtime configuration"
    )]
    OutOfMemory {
        /// Segment.
        segment: SegmentId,
        /// Bytes asked for.
        requested: usize,
        /// Free pages left.
        free_pages: u64,
    },
    /// The alignment is not a power of two or is above [`MAX_ALIGN`].
    #[error("alignment {align} is not a power of two up to 4096")]
    UnsupportedAlign {
        /// Alignment asked for.
        align: usize,
    },
    /// Every owner slot of the segment is taken.
    #[error(
        "{segment}: all {MAX_OWNERS} owner slots are taken; too many attached processes, or dead \
         ones not yet reclaimed"
    )]
    OwnerTableFull {
        /// Segment.
        segment: SegmentId,
    },
}

/// Why a free (or an ownership query) was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FreeError {
    /// The pointer names another segment than this allocator's.
    #[error("{ptr} is not in this allocator's segment ({segment})")]
    WrongSegment {
        /// The pointer.
        ptr: ShmPtr,
        /// This allocator's segment.
        segment: SegmentId,
    },
    /// The pointer is not the start of a live allocation (garbage, or freed twice).
    #[error("{ptr} is not a live allocation (garbage pointer or double free)")]
    NotAllocated {
        /// The pointer.
        ptr: ShmPtr,
    },
}

/// Used and free figures of one segment's heap.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct AllocStats {
    /// Bytes of the heap (all pages).
    pub heap_bytes: u64,
    /// Usable bytes of live allocations (block payloads, rounded up to their class).
    pub used_bytes: u64,
    /// Number of live allocations.
    pub live_blocks: u64,
    /// Pages carved into size-class blocks.
    pub small_pages: u64,
    /// Pages in large allocations.
    pub large_pages: u64,
    /// Pages not in use.
    pub free_pages: u64,
}

/// What one handle shares with the thread caches that serve it.
struct Shared {
    map: Arc<Mapping>,
    hdr: *const AllocHeader,
    descs: *const AtomicU32,
    n_pages: u64,
    heap_offset: u64,
    owner: u32,
    /// Process-unique key of this handle, used to find its thread caches.
    key: u64,
    /// Live `Allocator` clones (thread caches hold `Shared` too, but are not handles).
    handles: AtomicU64,
}

// SAFETY: the raw pointers point into the mapping kept alive by `map`, and all
// shared state behind them is accessed through atomics.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Links for Shared {
    #[inline]
    fn next(&self, node: u64) -> &AtomicU64 {
        &self.block(node).next
    }
}

impl Shared {
    #[inline]
    fn hdr(&self) -> &AllocHeader {
        // SAFETY: validated at attach, inside the mapping kept alive by `self.map`.
        unsafe { &*self.hdr }
    }

    #[inline]
    fn descs(&self) -> &[AtomicU32] {
        // SAFETY: `desc_offset + 4 * n_pages <= heap_offset <= size` (validated).
        unsafe { std::slice::from_raw_parts(self.descs, self.n_pages as usize) }
    }

    /// The header of the block at segment offset `block` (a heap offset validated by
    /// the caller, or one the allocator produced).
    #[inline]
    fn block(&self, block: u64) -> &BlockHeader {
        debug_assert!(block >= self.heap_offset && block + BLOCK_HEADER <= self.map.size());
        // SAFETY: `block` is a 16-aligned offset inside the heap of the mapping.
        unsafe { &*(self.map.base().add(block as usize) as *const BlockHeader) }
    }

    #[inline]
    fn page_start(&self, page: u64) -> u64 {
        self.heap_offset + (page << PAGE_SHIFT)
    }

    #[inline]
    fn owner_slot(&self, owner: u32) -> Option<&OwnerSlot> {
        self.hdr().owners.get(owner as usize).map(|p| &p.0)
    }

    fn full(&self, offset: u64) -> FullPtr<u8> {
        let shm = ShmPtr::new(self.map.id(), offset);
        // SAFETY: `offset` is inside the mapping, so base + offset is its address here.
        unsafe {
            FullPtr::from_parts(
                shm,
                std::ptr::NonNull::new_unchecked(self.map.base().add(offset as usize)),
            )
        }
    }

    fn free_pages(&self) -> u64 {
        let p = &self.hdr().pages.0;
        self.n_pages - p.small_pages.load(Ordering::Relaxed) - p.large_pages.load(Ordering::Relaxed)
    }

    fn oom(&self, requested: usize) -> AllocError {
        AllocError::OutOfMemory {
            segment: self.map.id(),
            requested,
            free_pages: self.free_pages(),
        }
    }

    /// Moves up to `BATCH` blocks of `class` into `bin`, from the shared list or a
    /// fresh page.
    fn refill(&self, class: usize, bin: &mut Bin) -> Result<(), AllocError> {
        let list = &self.hdr().classes[class].0;
        while bin.len < BATCH {
            let Some(b) = list.pop(self) else { break };
            let h = self.block(b);
            h.owner.store(self.owner, Ordering::Relaxed);
            h.state.store(state::CACHED, Ordering::Relaxed);
            bin.push(b);
        }
        if bin.len > 0 {
            return Ok(());
        }
        let p = &self.hdr().pages.0;
        let page = pages::claim(p, self.descs(), 1, desc::RESERVED, 0)
            .ok_or_else(|| self.oom(layout::class_payload(class) as usize))?;
        p.small_pages.fetch_add(1, Ordering::Relaxed);
        let start = self.page_start(page);
        let bs = layout::CLASS_SIZES[class] as u64;
        let n = layout::blocks_per_page(class);
        let mut chain: Option<(u64, u64)> = None;
        for i in (0..n).rev() {
            let b = start + i * bs;
            let h = self.block(b);
            if bin.len < BATCH {
                h.owner.store(self.owner, Ordering::Relaxed);
                h.state.store(state::CACHED, Ordering::Relaxed);
                bin.push(b);
            } else {
                h.state.store(state::FREE, Ordering::Relaxed);
                h.next.store(chain.map_or(0, |c| c.0), Ordering::Relaxed);
                chain = Some((b, chain.map_or(b, |c| c.1)));
            }
        }
        // Release: the headers written above are visible to whoever validates a
        // block of this page through its descriptor (Acquire in `locate`).
        self.descs()[page as usize].store(desc::SMALL | class as u32, Ordering::Release);
        if let Some((first, last)) = chain {
            list.push_chain(self, first, last);
        }
        Ok(())
    }

    /// Returns the `BATCH` most recently cached blocks of `bin` to the shared list.
    fn spill(&self, class: usize, bin: &mut Bin) {
        let take = BATCH.min(bin.len);
        let mut first = 0;
        let mut last = 0;
        for _ in 0..take {
            let b = bin.pop().unwrap_or_default();
            let h = self.block(b);
            h.state.store(state::FREE, Ordering::Relaxed);
            h.next.store(first, Ordering::Relaxed);
            if last == 0 {
                last = b;
            }
            first = b;
        }
        if first != 0 {
            self.hdr().classes[class].0.push_chain(self, first, last);
        }
    }

    /// Finds the block a payload offset belongs to: `(block, Some(class))` for a
    /// small block, `(block, None)` for a large run's head.
    fn locate(&self, ptr: ShmPtr) -> Result<(u64, Option<usize>, u64), FreeError> {
        let bad = FreeError::NotAllocated { ptr };
        if ptr.segment() != self.map.id() {
            return Err(FreeError::WrongSegment {
                ptr,
                segment: self.map.id(),
            });
        }
        let off = ptr.offset();
        if off < self.heap_offset + BLOCK_HEADER || !off.is_multiple_of(SMALL_ALIGN as u64) {
            return Err(bad);
        }
        let page = (off - self.heap_offset) >> PAGE_SHIFT;
        if page >= self.n_pages {
            return Err(bad);
        }
        let start = self.page_start(page);
        // Acquire: pairs with the Release stores in `refill` / `pages::claim`.
        let d = self.descs()[page as usize].load(Ordering::Acquire);
        match d & desc::KIND_MASK {
            desc::SMALL => {
                let class = (d & desc::VALUE_MASK) as usize;
                if class >= NUM_CLASSES {
                    return Err(bad);
                }
                let bs = layout::CLASS_SIZES[class] as u64;
                // `off >= start`; a pointer into the first header of the page is not a
                // payload (and must not underflow).
                let Some(rel) = (off - start).checked_sub(BLOCK_HEADER) else {
                    return Err(bad);
                };
                if !rel.is_multiple_of(bs) || rel / bs >= layout::blocks_per_page(class) {
                    return Err(bad);
                }
                Ok((
                    off - BLOCK_HEADER,
                    Some(class),
                    layout::class_payload(class),
                ))
            }
            desc::LARGE_HEAD => {
                let n = (d & desc::VALUE_MASK) as u64;
                let delta = self.block(start).next.load(Ordering::Relaxed);
                if start.checked_add(delta) != Some(off) || page + n > self.n_pages {
                    return Err(bad);
                }
                Ok((start, None, (n << PAGE_SHIFT) - delta))
            }
            _ => Err(bad),
        }
    }

    fn count_alloc(&self, bytes: u64) {
        if let Some(s) = self.owner_slot(self.owner) {
            s.live_bytes.fetch_add(bytes, Ordering::Relaxed);
            s.live_blocks.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count_free(&self, owner: u32, bytes: u64) {
        if let Some(s) = self.owner_slot(owner) {
            s.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
            s.live_blocks.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn alloc_large(&self, size: usize, align: usize) -> Result<u64, AllocError> {
        let delta = (align.max(SMALL_ALIGN) as u64).max(BLOCK_HEADER);
        let total = (size as u64)
            .checked_add(delta)
            .ok_or_else(|| self.oom(size))?;
        let n = total.div_ceil(PAGE_SIZE);
        if n > desc::VALUE_MASK as u64 {
            return Err(self.oom(size));
        }
        let p = &self.hdr().pages.0;
        let page = pages::claim(p, self.descs(), n, desc::RESERVED, desc::LARGE_TAIL)
            .ok_or_else(|| self.oom(size))?;
        p.large_pages.fetch_add(n, Ordering::Relaxed);
        let start = self.page_start(page);
        let h = self.block(start);
        h.next.store(delta, Ordering::Relaxed);
        h.owner.store(self.owner, Ordering::Relaxed);
        h.state.store(state::LIVE, Ordering::Relaxed);
        self.descs()[page as usize].store(desc::LARGE_HEAD | n as u32, Ordering::Release);
        self.count_alloc((n << PAGE_SHIFT) - delta);
        Ok(start + delta)
    }

    fn free_large(&self, block: u64, ptr: ShmPtr) -> Result<(), FreeError> {
        let h = self.block(block);
        h.state
            .compare_exchange(
                state::LIVE,
                state::FREE,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .map_err(|_| FreeError::NotAllocated { ptr })?;
        let page = (block - self.heap_offset) >> PAGE_SHIFT;
        let d = self.descs()[page as usize].load(Ordering::Acquire);
        let n = (d & desc::VALUE_MASK) as u64;
        let delta = h.next.load(Ordering::Relaxed);
        self.count_free(h.owner.load(Ordering::Relaxed), (n << PAGE_SHIFT) - delta);
        let p = &self.hdr().pages.0;
        p.large_pages.fetch_sub(n, Ordering::Relaxed);
        pages::release(p, self.descs(), page, n);
        Ok(())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Give the owner slot back if nothing allocated under it is still live; a
        // slot with live blocks stays taken so the reaper can reclaim them.
        if let Some(s) = self.owner_slot(self.owner)
            && s.live_blocks.load(Ordering::Relaxed) == 0
        {
            s.pid.store(0, Ordering::Release);
        }
    }
}

/// A thread's cache of free blocks of one class.
#[derive(Clone, Copy)]
struct Bin {
    len: usize,
    items: [u64; BIN_CAP],
}

impl Bin {
    #[inline]
    fn pop(&mut self) -> Option<u64> {
        self.len = self.len.checked_sub(1)?;
        Some(self.items[self.len])
    }
    #[inline]
    fn push(&mut self, b: u64) {
        self.items[self.len] = b;
        self.len += 1;
    }
}

/// One thread's bins for one allocator handle.
struct ThreadCache {
    shared: Arc<Shared>,
    bins: Box<[Bin; NUM_CLASSES]>,
    /// This thread's counter slot, if one was free.
    slot: Option<usize>,
}

impl ThreadCache {
    fn new(shared: Arc<Shared>) -> ThreadCache {
        // Built on the heap directly: the array is ~18 KiB, too much for the
        // stack of a coroutine (where a module's first allocation on a worker
        // thread creates its cache).
        let empty = Bin {
            len: 0,
            items: [0; BIN_CAP],
        };
        let bins: Box<[Bin; NUM_CLASSES]> = vec![empty; NUM_CLASSES]
            .into_boxed_slice()
            .try_into()
            .unwrap_or_else(|_| unreachable!("the vector has NUM_CLASSES bins"));
        let slot = shared.hdr().threads.iter().position(|t| {
            // Acquire: pairs with the Release store of 0 in `ThreadCache::drop`.
            t.0.taken
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        });
        if let Some(i) = slot {
            let t = &shared.hdr().threads[i].0;
            t.owner.store(shared.owner, Ordering::Relaxed);
            t.live_bytes.store(0, Ordering::Relaxed);
            t.live_blocks.store(0, Ordering::Relaxed);
        }
        ThreadCache { shared, bins, slot }
    }

    /// Adds `bytes` (and one block) to this thread's net count for its own owner,
    /// without a locked instruction; falls back to the owner's atomic counters.
    #[inline]
    fn count(&self, bytes: u64, alloc: bool) {
        let Some(i) = self.slot else {
            if alloc {
                self.shared.count_alloc(bytes);
            } else {
                self.shared.count_free(self.shared.owner, bytes);
            }
            return;
        };
        let t = &self.shared.hdr().threads[i].0;
        let (db, dn) = if alloc {
            (bytes, 1u64)
        } else {
            (bytes.wrapping_neg(), 1u64.wrapping_neg())
        };
        // Single writer (this thread): load + store is exact; readers sum Relaxed loads.
        t.live_bytes.store(
            t.live_bytes.load(Ordering::Relaxed).wrapping_add(db),
            Ordering::Relaxed,
        );
        t.live_blocks.store(
            t.live_blocks.load(Ordering::Relaxed).wrapping_add(dn),
            Ordering::Relaxed,
        );
    }
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        for class in 0..NUM_CLASSES {
            while self.bins[class].len > 0 {
                self.shared.spill(class, &mut self.bins[class]);
            }
        }
        if let Some(i) = self.slot {
            // Fold this thread's counts into the owner's shared counters, then free
            // the slot.
            let t = &self.shared.hdr().threads[i].0;
            if let Some(o) = self.shared.owner_slot(self.shared.owner) {
                o.live_bytes
                    .fetch_add(t.live_bytes.swap(0, Ordering::Relaxed), Ordering::Relaxed);
                o.live_blocks
                    .fetch_add(t.live_blocks.swap(0, Ordering::Relaxed), Ordering::Relaxed);
            }
            t.taken.store(0, Ordering::Release);
        }
    }
}

thread_local! {
    static CACHES: RefCell<Vec<ThreadCache>> = const { RefCell::new(Vec::new()) };
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// A handle to the allocator of a segment, usable from any thread of this process.
/// Clones share the owner slot and the thread caches.
pub struct Allocator {
    shared: Arc<Shared>,
}

impl Clone for Allocator {
    fn clone(&self) -> Self {
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
        let pid = std::process::id();
        let owner = h
            .owners
            .iter()
            .position(|s| {
                // Acquire: pairs with the Release store of 0 in `Shared::drop`.
                s.0.pid
                    .compare_exchange(0, pid, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            })
            .ok_or(AllocError::OwnerTableFull { segment: map.id() })?;
        h.owners[owner].0.generation.fetch_add(1, Ordering::Relaxed);
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

    /// Runs `f` on this thread's cache for this handle, or returns `None` if the
    /// thread's cache is unavailable (thread teardown).
    #[inline]
    fn with_cache<R>(&self, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
        CACHES
            .try_with(|caches| {
                let mut caches = caches.try_borrow_mut().ok()?;
                let key = self.shared.key;
                let idx = match caches.iter().position(|c| c.shared.key == key) {
                    Some(i) => i,
                    None => {
                        caches.push(ThreadCache::new(self.shared.clone()));
                        caches.len() - 1
                    }
                };
                Some(f(&mut caches[idx]))
            })
            .ok()
            .flatten()
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
        let s = &*self.shared;
        let off = match layout::class_of(size).filter(|_| align <= SMALL_ALIGN) {
            Some(class) => {
                let payload = layout::class_payload(class);
                let block = self
                    .with_cache(|c| {
                        let b = match c.bins[class].pop() {
                            Some(b) => b,
                            None => {
                                s.refill(class, &mut c.bins[class])?;
                                c.bins[class].pop().unwrap_or_default()
                            }
                        };
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
                let h = s.block(block);
                h.owner.store(s.owner, Ordering::Relaxed);
                h.state.store(state::LIVE, Ordering::Relaxed);
                block + BLOCK_HEADER
            }
            None => s.alloc_large(size, align)?,
        };
        Ok(s.full(off))
    }

    /// Small allocation without a thread cache (during thread teardown).
    #[cold]
    fn alloc_uncached(&self, class: usize) -> Result<u64, AllocError> {
        let mut bin = Bin {
            len: 0,
            items: [0; BIN_CAP],
        };
        self.shared.refill(class, &mut bin)?;
        let b = bin.pop().unwrap_or_default();
        while bin.len > 0 {
            self.shared.spill(class, &mut bin);
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
        // Acquire: we take the block over; pairs with the Release by which the
        // pointer reached us (queue push, task completion).
        h.state
            .compare_exchange(
                state::LIVE,
                state::CACHED,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .map_err(|_| FreeError::NotAllocated { ptr })?;
        let prev = h.owner.load(Ordering::Relaxed);
        h.owner.store(s.owner, Ordering::Relaxed);
        let cached = self.with_cache(|c| {
            if prev == s.owner {
                c.count(payload, false);
            } else {
                s.count_free(prev, payload);
            }
            let bin = &mut c.bins[class];
            if bin.len == BIN_CAP {
                s.spill(class, bin);
            }
            bin.push(block);
        });
        if cached.is_none() {
            s.count_free(prev, payload);
            h.state.store(state::FREE, Ordering::Relaxed);
            s.hdr().classes[class].0.push(s, block);
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
        let h = s.block(block);
        if h.state.load(Ordering::Relaxed) != state::LIVE {
            return Err(FreeError::NotAllocated { ptr });
        }
        Ok(OwnerId(h.owner.load(Ordering::Relaxed)))
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
        if s.block(block).state.load(Ordering::Relaxed) != state::LIVE {
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

    /// pid holding `owner`'s slot (0 if free).
    pub fn owner_pid(&self, owner: OwnerId) -> Option<u32> {
        self.shared
            .owner_slot(owner.0)
            .map(|s| s.pid.load(Ordering::Acquire))
    }

    /// Live bytes and blocks allocated under `owner` (exact when no allocation or
    /// free is in progress).
    pub fn owner_usage(&self, owner: OwnerId) -> Option<(u64, u64)> {
        let s = &*self.shared;
        let o = s.owner_slot(owner.0)?;
        let mut bytes = o.live_bytes.load(Ordering::Relaxed);
        let mut blocks = o.live_blocks.load(Ordering::Relaxed);
        for t in &s.hdr().threads {
            let t = &t.0;
            if t.taken.load(Ordering::Acquire) == 1 && t.owner.load(Ordering::Relaxed) == owner.0 {
                bytes = bytes.wrapping_add(t.live_bytes.load(Ordering::Relaxed));
                blocks = blocks.wrapping_add(t.live_blocks.load(Ordering::Relaxed));
            }
        }
        Some((bytes, blocks))
    }

    /// Used and free figures of the heap (exact when no allocation or free is in
    /// progress).
    pub fn stats(&self) -> AllocStats {
        let s = &*self.shared;
        let mut st = AllocStats {
            heap_bytes: s.n_pages << PAGE_SHIFT,
            ..AllocStats::default()
        };
        let counters = s
            .hdr()
            .owners
            .iter()
            .map(|o| (&o.0.live_bytes, &o.0.live_blocks));
        let threads = s
            .hdr()
            .threads
            .iter()
            .map(|t| (&t.0.live_bytes, &t.0.live_blocks));
        for (b, n) in counters.chain(threads) {
            st.used_bytes = st.used_bytes.wrapping_add(b.load(Ordering::Relaxed));
            st.live_blocks = st.live_blocks.wrapping_add(n.load(Ordering::Relaxed));
        }
        let p = &s.hdr().pages.0;
        st.small_pages = p.small_pages.load(Ordering::Relaxed);
        st.large_pages = p.large_pages.load(Ordering::Relaxed);
        st.free_pages = s.free_pages();
        st
    }

    /// Every live allocation owned by `owner`, found by walking the pages (for the
    /// process reaper: what a dead client still holds), and the blocks its thread
    /// caches held.
    pub fn blocks_of(&self, owner: OwnerId) -> (Vec<ShmPtr>, u64) {
        let s = &*self.shared;
        let mut live = Vec::new();
        let mut cached = 0;
        let top = s.hdr().pages.0.top.load(Ordering::Relaxed).min(s.n_pages);
        for page in 0..top {
            let d = s.descs()[page as usize].load(Ordering::Acquire);
            let start = s.page_start(page);
            let mut visit = |b: u64, payload_at: u64| {
                let h = s.block(b);
                if h.owner.load(Ordering::Relaxed) != owner.0 {
                    return;
                }
                match h.state.load(Ordering::Relaxed) {
                    state::LIVE => live.push(ShmPtr::new(s.map.id(), payload_at)),
                    state::CACHED => cached += 1,
                    _ => {}
                }
            };
            match d & desc::KIND_MASK {
                desc::SMALL => {
                    let class = (d & desc::VALUE_MASK) as usize;
                    let bs = layout::CLASS_SIZES[class] as u64;
                    for i in 0..layout::blocks_per_page(class) {
                        let b = start + i * bs;
                        visit(b, b + BLOCK_HEADER);
                    }
                }
                desc::LARGE_HEAD => {
                    let delta = s.block(start).next.load(Ordering::Relaxed);
                    visit(start, start + delta);
                }
                _ => {}
            }
        }
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
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.flush_thread_cache();
        }
    }
}
