//! The cross-process allocator of a segment.
//!
//! # Design
//!
//! The heap is an array of 64 KiB pages, each described by one `AtomicU32` page
//! descriptor ([`layout::desc`]): free, carved into blocks of one size class, or
//! part of a large run. Every block starts with a 16-byte [`BlockHeader`]
//! (free-list link, and one word holding state and owner) that only the allocator
//! touches, so payloads are 16-byte aligned and a block's owner and state can
//! always be read.
//!
//! **Small sizes** (≤ 16 368 bytes, 35 classes) are the hot path and take no lock:
//!
//! 1. Each thread keeps, per allocator handle and class, a cache ("bin") of up to
//!    64 free blocks. `allocate` pops one; `free` pushes one. No atomic RMW on
//!    shared lines apart from the owner's counters ([`cache`]).
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
//! page lock; freeing returns the run, which merges with the free pages next to
//! it at the top of the used range ([`pages`]).
//!
//! **Pages go back.** When no run of pages is left for a request, the allocator
//! detaches the class free lists, gives every page whose blocks are all on them
//! back to the page pool, and tries again ([`trim`]); before failing, the calling
//! thread also returns its own cached blocks. So pages carved for one size class
//! serve other classes and large runs once they are empty; blocks cached by other
//! threads keep their pages.
//!
//! **Ownership.** Each handle ([`Allocator::attach`]) takes an owner slot (pid +
//! live bytes/blocks counters) in the segment. A block's header names the owner
//! that allocated it (LIVE) or whose thread cache holds it (CACHED), and changes
//! state and owner in one atomic step, so a dead client's blocks can be found by
//! walking the pages ([`Allocator::blocks_of`]) and reclaimed
//! ([`Allocator::reap_owner`], see [`reap`]).
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
//!   gives up with [`AllocError::PageLockTimeout`] after [`pages::LOCK_TIMEOUT`]
//!   without progress; every CAS loop gives up after [`stack::MAX_ATTEMPTS`]
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

mod cache;
pub(crate) mod layout;
mod pages;
mod reap;
pub(crate) mod stack;
// Real segments, processes, files or sockets: not under Miri (see
// scripts/check-miri.sh) nor loom (see crate::sync); run natively.
#[cfg(all(test, not(miri), not(loom)))]
mod tests;
mod trim;

use std::sync::Arc;

/// Process liveness (see [`crate::proc`]), also reachable here.
pub use crate::proc::{pid_alive, process_start, started_process_alive};
use cache::{Bin, CACHES, ThreadCache};
use layout::{
    BLOCK_HEADER, BlockHeader, Health, MAX_THREAD_SLOTS, NUM_CLASSES, OwnerSlot, PAGE_SHIFT,
    Padded, ThreadSlot, desc, state, word,
};
pub use layout::{MAX_OWNERS, MAX_SMALL_SIZE, PAGE_SIZE, SMALL_ALIGN};
use pages::{PageState, Pages};
pub use reap::{ReapError, ReapReport};
use stack::{Links, TaggedStack};

use super::segment::Mapping;
use super::{FullPtr, Segment, SegmentId, ShmPtr, ShmSafe};
use crate::sync::{AtomicU32, AtomicU64, Ordering, native};

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
    health: Padded<Health>,
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
    /// A shared free list held an offset that is not a free block of its class.
    /// The list was abandoned (its blocks are lost until the segment is
    /// recreated); the next allocation of that class carves a fresh page.
    #[error(
        "free list of class {class} in {segment} is corrupt at offset {offset:#x}; the segment \
         was scribbled on by a client: the list was abandoned (its blocks are lost), so restart \
         the runtime to recover them and look for a client writing out of bounds"
    )]
    CorruptFreeList {
        /// Segment.
        segment: SegmentId,
        /// Size class of the list.
        class: u32,
        /// The offending offset.
        offset: u64,
    },
    /// The page lock stayed with one live, attached process for
    /// [`pages::LOCK_TIMEOUT`] (2 s) without progress.
    #[error(
        "{segment}: the allocator's page lock has been held by process {holder} for {waited_ms} \
         ms; if that process is hung, kill it (the lock of a dead process is taken over) and \
         retry"
    )]
    PageLockTimeout {
        /// Segment.
        segment: SegmentId,
        /// pid in the lock word.
        holder: u32,
        /// How long this call waited, in milliseconds.
        waited_ms: u64,
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
    /// Freeing a large block needs the page lock, which stayed with one live,
    /// attached process for [`pages::LOCK_TIMEOUT`]. The block is still allocated.
    #[error(
        "{ptr}: not freed, the allocator's page lock has been held by process {holder} for over \
         2 s; if that process is hung, kill it and free the block again"
    )]
    PageLockTimeout {
        /// The pointer (still allocated).
        ptr: ShmPtr,
        /// pid in the lock word.
        holder: u32,
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
    /// Upper bound of the bytes lost by client threads killed while moving blocks
    /// between their cache and the shared lists (counted when they are reaped).
    pub possibly_leaked_bytes: u64,
    /// Free lists found corrupt and abandoned (their blocks are lost).
    pub abandoned_lists: u64,
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

/// The links of one class's free list, with the check of its nodes.
struct ClassLinks<'a> {
    shared: &'a Shared,
    class: usize,
}

impl Links for ClassLinks<'_> {
    #[inline]
    fn next(&self, node: u64) -> &AtomicU64 {
        &self.shared.block(node).next
    }

    #[inline]
    fn is_node(&self, node: u64) -> bool {
        self.shared.is_list_node(self.class, node)
    }
}

/// One block found by [`Shared::walk_blocks`].
#[derive(Clone, Copy)]
struct Walked {
    /// Offset of its header.
    block: u64,
    /// Offset of its payload.
    payload: u64,
    /// Usable bytes.
    usable: u64,
    /// Size class; `None` for a large run.
    class: Option<usize>,
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
    fn page_of(&self, offset: u64) -> u64 {
        (offset - self.heap_offset) >> PAGE_SHIFT
    }

    #[inline]
    fn owner_slot(&self, owner: u32) -> Option<&OwnerSlot> {
        self.hdr().owners.get(owner as usize).map(|p| &p.0)
    }

    fn health(&self) -> &Health {
        &self.hdr().health.0
    }

    fn class_links(&self, class: usize) -> ClassLinks<'_> {
        ClassLinks {
            shared: self,
            class,
        }
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
        // Relaxed: statistics; wrapping, as scribbled counters must not panic.
        self.n_pages
            .wrapping_sub(p.small_pages.load(Ordering::Relaxed))
            .wrapping_sub(p.large_pages.load(Ordering::Relaxed))
    }

    fn oom(&self, requested: usize) -> AllocError {
        AllocError::OutOfMemory {
            segment: self.map.id(),
            requested,
            free_pages: self.free_pages(),
        }
    }

    /// Whether `node`, read from the shared free list of `class`, is a free block
    /// of that class: inside the heap, on a block boundary of a page carved for
    /// the class, marked FREE.
    fn is_list_node(&self, class: usize, node: u64) -> bool {
        if node < self.heap_offset || !node.is_multiple_of(SMALL_ALIGN as u64) {
            return false;
        }
        let page = self.page_of(node);
        if page >= self.n_pages {
            return false;
        }
        // Acquire: pairs with the Release store of the descriptor in `refill`, so
        // the headers written before it are visible.
        if self.descs()[page as usize].load(Ordering::Acquire) != desc::SMALL | class as u32 {
            return false;
        }
        let bs = layout::CLASS_SIZES[class] as u64;
        let rel = node - self.page_start(page);
        if !rel.is_multiple_of(bs) || rel / bs >= layout::blocks_per_page(class) {
            return false;
        }
        // Relaxed: a check only; a stale value is caught by the pop's CAS.
        layout::state_of(self.block(node).word.load(Ordering::Relaxed)) == state::FREE
    }

    /// Abandons nothing more (the caller already reset the list): logs, counts and
    /// builds the error for a corrupt free list.
    #[cold]
    fn corrupt_list(&self, class: usize, offset: u64) -> AllocError {
        self.health()
            .abandoned_lists
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            segment = %self.map.id(),
            class,
            offset,
            "a free list of the shared-memory allocator was corrupt and was abandoned"
        );
        AllocError::CorruptFreeList {
            segment: self.map.id(),
            class: class as u32,
            offset,
        }
    }

    /// Pushes the chain `first ..= last` of `class` (linked, marked FREE) to the
    /// shared list; if the list head keeps changing for too long, the chain is
    /// leaked and its `bytes` counted.
    fn push_or_leak(&self, class: usize, first: u64, last: u64, bytes: u64) {
        if self.hdr().classes[class]
            .0
            .push_chain(&self.class_links(class), first, last)
            .is_err()
        {
            self.health()
                .possibly_leaked_bytes
                .fetch_add(bytes, Ordering::Relaxed);
            tracing::error!(
                segment = %self.map.id(),
                class,
                bytes,
                "a free list's head kept changing; blocks returned to it were leaked"
            );
        }
    }

    /// Whether some owner slot names process `pid`.
    fn is_attached(&self, pid: u32) -> bool {
        // Relaxed: a snapshot is all the page lock's take-over decision needs.
        self.hdr()
            .owners
            .iter()
            .any(|o| o.0.pid.load(Ordering::Relaxed) == pid)
    }

    /// Takes the page lock. If it was taken over from a holder that died in the
    /// middle of freeing a large run (its header FREE, its pages not yet given
    /// back), finishes that release.
    fn lock_pages(&self) -> Result<Pages<'_>, pages::LockTimeout> {
        let pages = self
            .hdr()
            .pages
            .0
            .lock(self.descs(), pages::LOCK_TIMEOUT, &|pid| {
                self.is_attached(pid)
            })?;
        if pages.taken_over() {
            for page in 0..self.n_pages {
                // Acquire: pairs with the Release store of the descriptor in
                // `alloc_large`.
                let d = self.descs()[page as usize].load(Ordering::Acquire);
                if d & desc::KIND_MASK != desc::LARGE_HEAD {
                    continue;
                }
                let Some((_, n)) = self.large_run(page, d) else {
                    continue;
                };
                // Relaxed: a FREE large head only exists inside a free that holds
                // the lock, which is now ours.
                let w = self
                    .block(self.page_start(page))
                    .word
                    .load(Ordering::Relaxed);
                if layout::state_of(w) == state::FREE {
                    tracing::warn!(
                        segment = %self.map.id(),
                        page,
                        pages = n,
                        "releasing a large run whose free was cut short"
                    );
                    pages.release_large(page, n);
                }
            }
        }
        Ok(pages)
    }

    fn lock_error(&self, e: pages::LockTimeout) -> AllocError {
        tracing::warn!(
            segment = %self.map.id(),
            holder = e.holder,
            "gave up waiting for the allocator's page lock"
        );
        AllocError::PageLockTimeout {
            segment: self.map.id(),
            holder: e.holder,
            waited_ms: e.waited.as_millis() as u64,
        }
    }

    /// Claims one page for a size class (`large == None`) or a run of `n` pages
    /// for a large allocation; if no run is free, gives the empty pages of the size
    /// classes back ([`trim`]) and tries again.
    fn claim_pages(&self, large: Option<u64>, requested: u64) -> Result<u64, AllocError> {
        let pages = self.lock_pages().map_err(|e| self.lock_error(e))?;
        let claim = |pages: &Pages<'_>| match large {
            None => pages.claim_small(),
            Some(n) => pages.claim_large(n),
        };
        if let Some(first) = claim(&pages) {
            return Ok(first);
        }
        if self.trim(&pages) > 0
            && let Some(first) = claim(&pages)
        {
            return Ok(first);
        }
        Err(self.oom(usize::try_from(requested).unwrap_or(usize::MAX)))
    }

    /// Finds the block a payload offset belongs to: `(block, Some(class))` for a
    /// small block, `(block, None)` for a large run's head, and its usable size.
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
        // Acquire: pairs with the Release stores in `refill` / `Pages::claim`.
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
                // One 32-bit remainder (`rel` < PAGE_SIZE): this check runs for
                // every task the runtime takes. A block boundary whose block ends
                // inside the page is one of the page's blocks.
                if !(rel as u32).is_multiple_of(bs as u32) || rel + bs > PAGE_SIZE {
                    return Err(bad);
                }
                Ok((
                    off - BLOCK_HEADER,
                    Some(class),
                    layout::class_payload(class),
                ))
            }
            desc::LARGE_HEAD => {
                let (delta, n) = self.large_run(page, d).ok_or(bad)?;
                if start + delta != off {
                    return Err(bad);
                }
                Ok((start, None, (n << PAGE_SHIFT) - delta))
            }
            _ => Err(bad),
        }
    }

    /// The payload offset within the run and the page count of the large run
    /// whose head page `page` has descriptor `d`, if they are consistent.
    fn large_run(&self, page: u64, d: u32) -> Option<(u64, u64)> {
        let n = (d & desc::VALUE_MASK) as u64;
        // Relaxed: written before the descriptor's Release store, which the
        // caller's Acquire load of `d` saw.
        let delta = self
            .block(self.page_start(page))
            .next
            .load(Ordering::Relaxed);
        let ok = n >= 1
            && page + n <= self.n_pages
            && (BLOCK_HEADER..=MAX_ALIGN as u64).contains(&delta)
            && delta.is_multiple_of(SMALL_ALIGN as u64)
            && delta < n << PAGE_SHIFT;
        ok.then_some((delta, n))
    }

    /// Calls `f` on every block of the carved pages and the head of every large
    /// run, with its header word (Acquire). Bounded by the heap's page count;
    /// descriptors that do not make sense are skipped.
    fn walk_blocks(&self, mut f: impl FnMut(Walked, u64)) {
        for page in 0..self.n_pages {
            // Acquire: pairs with the Release stores of the descriptors in `refill`
            // and `alloc_large`, so the headers written before them are visible.
            let d = self.descs()[page as usize].load(Ordering::Acquire);
            let start = self.page_start(page);
            match d & desc::KIND_MASK {
                desc::SMALL => {
                    let class = (d & desc::VALUE_MASK) as usize;
                    if class >= NUM_CLASSES {
                        continue;
                    }
                    let bs = layout::CLASS_SIZES[class] as u64;
                    for i in 0..layout::blocks_per_page(class) {
                        let b = start + i * bs;
                        // Acquire: pairs with the Release by which a block's
                        // previous holder handed it over.
                        let w = self.block(b).word.load(Ordering::Acquire);
                        let walked = Walked {
                            block: b,
                            payload: b + BLOCK_HEADER,
                            usable: layout::class_payload(class),
                            class: Some(class),
                        };
                        f(walked, w);
                    }
                }
                desc::LARGE_HEAD => {
                    let Some((delta, n)) = self.large_run(page, d) else {
                        continue;
                    };
                    // Acquire: as above.
                    let w = self.block(start).word.load(Ordering::Acquire);
                    let walked = Walked {
                        block: start,
                        payload: start + delta,
                        usable: (n << PAGE_SHIFT) - delta,
                        class: None,
                    };
                    f(walked, w);
                }
                _ => {}
            }
        }
    }

    fn count_alloc(&self, bytes: u64) {
        if let Some(s) = self.owner_slot(self.owner) {
            // Relaxed: counters, summed by readers; no data is published by them.
            s.live_bytes.fetch_add(bytes, Ordering::Relaxed);
            s.live_blocks.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count_free(&self, owner: u32, bytes: u64) {
        if let Some(s) = self.owner_slot(owner) {
            // Relaxed: as in `count_alloc`.
            s.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
            s.live_blocks.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn alloc_large(
        &self,
        size: usize,
        align: usize,
        slot: Option<&ThreadSlot>,
    ) -> Result<u64, AllocError> {
        let delta = (align.max(SMALL_ALIGN) as u64).max(BLOCK_HEADER);
        let total = (size as u64)
            .checked_add(delta)
            .ok_or_else(|| self.oom(size))?;
        let n = total.div_ceil(PAGE_SIZE);
        if n > self.n_pages || n > desc::VALUE_MASK as u64 {
            return Err(self.oom(size));
        }
        // The run is RESERVED from the claim to the descriptor store: if this
        // thread is killed in between, it is leaked.
        if let Some(t) = slot {
            // Relaxed: read by the reaper only after this process died.
            t.transit.store(n << PAGE_SHIFT, Ordering::Relaxed);
        }
        let claimed = self.claim_pages(Some(n), size as u64);
        let result = claimed.map(|page| {
            let start = self.page_start(page);
            let h = self.block(start);
            // Relaxed: published by the Release store of the descriptor below.
            h.next.store(delta, Ordering::Relaxed);
            h.word
                .store(word(state::LIVE, self.owner), Ordering::Relaxed);
            // Release: pairs with the Acquire loads of the descriptor in `locate`
            // and `walk_blocks`, which then see the header.
            self.descs()[page as usize].store(desc::LARGE_HEAD | n as u32, Ordering::Release);
            self.count_alloc((n << PAGE_SHIFT) - delta);
            start + delta
        });
        if let Some(t) = slot {
            // Relaxed: as above.
            t.transit.store(0, Ordering::Relaxed);
        }
        result
    }

    /// Frees the large run whose head block is `block` (validated by `locate`),
    /// if it is LIVE; counts it against its owner.
    fn free_large(&self, block: u64, ptr: ShmPtr) -> Result<(), FreeError> {
        // The lock first: if it times out, the block is still allocated and the
        // caller can try again.
        let pages = self.lock_pages().map_err(|e| FreeError::PageLockTimeout {
            ptr,
            holder: e.holder,
        })?;
        let page = self.page_of(block);
        // Acquire: pairs with the Release store of the descriptor in `alloc_large`.
        let d = self.descs()[page as usize].load(Ordering::Acquire);
        let (delta, n) = match d & desc::KIND_MASK {
            desc::LARGE_HEAD => self.large_run(page, d),
            _ => None,
        }
        .ok_or(FreeError::NotAllocated { ptr })?;
        let h = self.block(block);
        // Relaxed: the CAS below decides.
        let w = h.word.load(Ordering::Relaxed);
        if layout::state_of(w) != state::LIVE {
            return Err(FreeError::NotAllocated { ptr });
        }
        // Acquire: we take the run over; pairs with the Release by which the pointer
        // reached us (queue push, task completion).
        h.word
            .compare_exchange(
                w,
                word(state::FREE, layout::owner_of(w)),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .map_err(|_| FreeError::NotAllocated { ptr })?;
        // Released before it is counted: a holder killed in between leaves a FREE
        // head under a LARGE_HEAD descriptor, which the next locker releases.
        pages.release_large(page, n);
        self.count_free(layout::owner_of(w), (n << PAGE_SHIFT) - delta);
        Ok(())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Give the owner slot back if nothing allocated under it is still live; a
        // slot with live blocks stays taken so the reaper can reclaim them.
        if let Some(s) = self.owner_slot(self.owner)
            // Relaxed: every thread cache of this handle folded its counts into
            // the slot before it dropped its reference to us.
            && s.live_blocks.load(Ordering::Relaxed) == 0
        {
            // Release: pairs with the Acquire CAS in `attach`. A CAS: a slot a
            // reaper took (forced) is not ours any more.
            let _ = s.pid.compare_exchange(
                crate::proc::current_pid(),
                0,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }
    }
}

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

    /// Live bytes and blocks allocated under `owner` (exact when no allocation or
    /// free is in progress).
    pub fn owner_usage(&self, owner: OwnerId) -> Option<(u64, u64)> {
        let s = &*self.shared;
        let o = s.owner_slot(owner.0)?;
        // Relaxed: statistics.
        let mut bytes = o.live_bytes.load(Ordering::Relaxed);
        let mut blocks = o.live_blocks.load(Ordering::Relaxed);
        for t in &s.hdr().threads {
            let t = &t.0;
            // Acquire: pairs with the Release store of `taken` when a cache frees
            // its slot (its counters are then folded and zeroed).
            if t.taken.load(Ordering::Acquire) == owner.0.wrapping_add(1) {
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
        // Relaxed, here and below: statistics.
        for (b, n) in counters.chain(threads) {
            st.used_bytes = st.used_bytes.wrapping_add(b.load(Ordering::Relaxed));
            st.live_blocks = st.live_blocks.wrapping_add(n.load(Ordering::Relaxed));
        }
        let p = &s.hdr().pages.0;
        st.small_pages = p.small_pages.load(Ordering::Relaxed);
        st.large_pages = p.large_pages.load(Ordering::Relaxed);
        st.free_pages = s.free_pages();
        st.possibly_leaked_bytes = s.health().possibly_leaked_bytes.load(Ordering::Relaxed);
        st.abandoned_lists = s.health().abandoned_lists.load(Ordering::Relaxed);
        st
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
