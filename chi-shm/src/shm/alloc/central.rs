//! The central lists: what the processes' allocations share beyond their thread
//! caches, the class free lists and the page runs.
//!
//! # Design
//!
//! * **Class free lists.** One lock-free [`TaggedStack`](super::stack::TaggedStack) per size class in the
//!   allocator header. Its nodes are checked through [`ClassLinks`] before they
//!   are followed (inside the heap, on a block boundary of a page carved for the
//!   class, marked FREE); a list found corrupt is abandoned and counted
//!   ([`Shared::corrupt_list`]). A chain that cannot be pushed because the head
//!   keeps changing is leaked and counted, never retried forever
//!   ([`Shared::push_or_leak`]).
//! * **Page runs.** Pages are claimed and released under the page lock
//!   ([`Pages`], see [`pages`]): one page at a time for a class
//!   that needs a fresh page, a run for a large allocation. A claim that finds no
//!   free run first gives the empty pages of the classes back
//!   ([`trim`](super::trim)) and tries again ([`Shared::claim_pages`]). Taking
//!   the lock over from a holder that died finishes a large free it cut short
//!   ([`Shared::lock_pages`]).
//! * **Large allocations** take a run of whole pages: the run's head page
//!   carries the block header (the payload's offset in the run in its `next`
//!   word), the descriptor is stored last (Release), and a free CASes the header
//!   from LIVE to FREE before it releases the run under the lock
//!   ([`Shared::alloc_large`], [`Shared::free_large`]).

use super::layout::{
    self, BLOCK_HEADER, PAGE_SHIFT, PAGE_SIZE, SMALL_ALIGN, ThreadSlot, desc, state, word,
};
use super::pages::{self, Pages};
use super::shared::Shared;
use super::stack::Links;
use super::{AllocError, FreeError};
use crate::shm::ShmPtr;
use crate::sync::{AtomicU64, Ordering};

/// The links of one class's free list, with the check of its nodes.
pub(super) struct ClassLinks<'a> {
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

impl Shared {
    pub(super) fn class_links(&self, class: usize) -> ClassLinks<'_> {
        ClassLinks {
            shared: self,
            class,
        }
    }

    /// Whether `node`, read from the shared free list of `class`, is a free block
    /// of that class: inside the heap, on a block boundary of a page carved for
    /// the class, marked FREE.
    pub(super) fn is_list_node(&self, class: usize, node: u64) -> bool {
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
    pub(super) fn corrupt_list(&self, class: usize, offset: u64) -> AllocError {
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
    pub(super) fn push_or_leak(&self, class: usize, first: u64, last: u64, bytes: u64) {
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
    pub(super) fn is_attached(&self, pid: u32) -> bool {
        // Relaxed: a snapshot is all the page lock's take-over decision needs.
        self.hdr()
            .owners
            .iter()
            .any(|o| o.0.pid.load(Ordering::Relaxed) == pid)
    }

    /// Takes the page lock. If it was taken over from a holder that died in the
    /// middle of freeing a large run (its header FREE, its pages not yet given
    /// back), finishes that release.
    pub(super) fn lock_pages(&self) -> Result<Pages<'_>, pages::LockTimeout> {
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

    pub(super) fn lock_error(&self, e: pages::LockTimeout) -> AllocError {
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
    /// classes back ([`trim`](super::trim)) and tries again.
    pub(super) fn claim_pages(
        &self,
        large: Option<u64>,
        requested: u64,
    ) -> Result<u64, AllocError> {
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

    pub(super) fn alloc_large(
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
    pub(super) fn free_large(&self, block: u64, ptr: ShmPtr) -> Result<(), FreeError> {
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
