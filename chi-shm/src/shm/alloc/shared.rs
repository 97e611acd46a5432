//! What one allocator handle shares with the thread caches that serve it, and
//! reading the heap through it.
//!
//! # Design
//!
//! [`Shared`] holds the mapping (which keeps the segment mapped while a handle or
//! a thread cache uses it), the addresses of the allocator header and of the page
//! descriptors in this process, the heap's geometry and the handle's owner slot.
//! It is built once by [`Allocator::attach`](super::Allocator::attach), shared by
//! the handle's clones and its thread caches through an `Arc`, and gives the owner
//! slot back when the last of them drops it (unless blocks allocated under it are
//! still live: the reaper reclaims those).
//!
//! Reading the heap through it is bounded and checked, since clients can write
//! all of it: [`locate`](Shared::locate) maps a payload offset to its block by
//! the page descriptor and the class's block size (never by reading a header
//! first), and [`walk_blocks`](Shared::walk_blocks) visits every block of the
//! carved pages and every large run's head, skipping descriptors that do not make
//! sense. The owner's live counters ([`count_alloc`](Shared::count_alloc),
//! [`count_free`](Shared::count_free)) are statistics: Relaxed, summed by readers.

use std::sync::Arc;

use super::layout::{
    self, AllocHeader, BLOCK_HEADER, BlockHeader, Health, NUM_CLASSES, OwnerSlot, PAGE_SHIFT,
    PAGE_SIZE, SMALL_ALIGN, desc,
};
use super::{AllocError, FreeError, MAX_ALIGN};
use crate::shm::mapping::Mapping;
use crate::shm::{FullPtr, ShmPtr};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// What one handle shares with the thread caches that serve it.
pub(super) struct Shared {
    pub(super) map: Arc<Mapping>,
    pub(super) hdr: *const AllocHeader,
    pub(super) descs: *const AtomicU32,
    pub(super) n_pages: u64,
    pub(super) heap_offset: u64,
    pub(super) owner: u32,
    /// Process-unique key of this handle, used to find its thread caches.
    pub(super) key: u64,
    /// Live `Allocator` clones (thread caches hold `Shared` too, but are not handles).
    pub(super) handles: AtomicU64,
}

// SAFETY: the raw pointers point into the mapping kept alive by `map`, and all
// shared state behind them is accessed through atomics.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

/// One block found by [`Shared::walk_blocks`].
#[derive(Clone, Copy)]
pub(super) struct Walked {
    /// Offset of its header.
    pub(super) block: u64,
    /// Offset of its payload.
    pub(super) payload: u64,
    /// Usable bytes.
    pub(super) usable: u64,
    /// Size class; `None` for a large run.
    pub(super) class: Option<usize>,
}

impl Shared {
    #[inline]
    pub(super) fn hdr(&self) -> &AllocHeader {
        // SAFETY: validated at attach, inside the mapping kept alive by `self.map`.
        unsafe { &*self.hdr }
    }

    #[inline]
    pub(super) fn descs(&self) -> &[AtomicU32] {
        // SAFETY: `desc_offset + 4 * n_pages <= heap_offset <= size` (validated).
        unsafe { std::slice::from_raw_parts(self.descs, self.n_pages as usize) }
    }

    /// The header of the block at segment offset `block` (a heap offset validated by
    /// the caller, or one the allocator produced).
    #[inline]
    pub(super) fn block(&self, block: u64) -> &BlockHeader {
        debug_assert!(block >= self.heap_offset && block + BLOCK_HEADER <= self.map.size());
        // SAFETY: `block` is a 16-aligned offset inside the heap of the mapping.
        unsafe { &*(self.map.base().add(block as usize) as *const BlockHeader) }
    }

    #[inline]
    pub(super) fn page_start(&self, page: u64) -> u64 {
        self.heap_offset + (page << PAGE_SHIFT)
    }

    #[inline]
    pub(super) fn page_of(&self, offset: u64) -> u64 {
        (offset - self.heap_offset) >> PAGE_SHIFT
    }

    #[inline]
    pub(super) fn owner_slot(&self, owner: u32) -> Option<&OwnerSlot> {
        self.hdr().owners.get(owner as usize).map(|p| &p.0)
    }

    pub(super) fn health(&self) -> &Health {
        &self.hdr().health.0
    }

    pub(super) fn full(&self, offset: u64) -> FullPtr<u8> {
        let shm = ShmPtr::new(self.map.id(), offset);
        // SAFETY: `offset` is inside the mapping, so base + offset is its address here.
        unsafe {
            FullPtr::from_parts(
                shm,
                std::ptr::NonNull::new_unchecked(self.map.base().add(offset as usize)),
            )
        }
    }

    pub(super) fn free_pages(&self) -> u64 {
        let p = &self.hdr().pages.0;
        // Relaxed: statistics; wrapping, as scribbled counters must not panic.
        self.n_pages
            .wrapping_sub(p.small_pages.load(Ordering::Relaxed))
            .wrapping_sub(p.large_pages.load(Ordering::Relaxed))
    }

    pub(super) fn oom(&self, requested: usize) -> AllocError {
        AllocError::OutOfMemory {
            segment: self.map.id(),
            requested,
            free_pages: self.free_pages(),
        }
    }

    /// Finds the block a payload offset belongs to: `(block, Some(class))` for a
    /// small block, `(block, None)` for a large run's head, and its usable size.
    pub(super) fn locate(&self, ptr: ShmPtr) -> Result<(u64, Option<usize>, u64), FreeError> {
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
    pub(super) fn large_run(&self, page: u64, d: u32) -> Option<(u64, u64)> {
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
    pub(super) fn walk_blocks(&self, mut f: impl FnMut(Walked, u64)) {
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

    pub(super) fn count_alloc(&self, bytes: u64) {
        if let Some(s) = self.owner_slot(self.owner) {
            // Relaxed: counters, summed by readers; no data is published by them.
            s.live_bytes.fetch_add(bytes, Ordering::Relaxed);
            s.live_blocks.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn count_free(&self, owner: u32, bytes: u64) {
        if let Some(s) = self.owner_slot(owner) {
            // Relaxed: as in `count_alloc`.
            s.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
            s.live_blocks.fetch_sub(1, Ordering::Relaxed);
        }
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
