//! Thread caches: the small-size hot path, and the moves of blocks between a
//! thread's cache and the shared free lists (refill, spill, carving a fresh page).
//!
//! A thread keeps, per allocator handle and class, a bin of up to [`BIN_CAP`] free
//! blocks marked CACHED with the handle's owner. Its allocation counters live in a
//! [`ThreadSlot`] of the segment (one writer, no locked instruction) so that the
//! reaper can fold them into the owner's counters if the process dies.
//!
//! Every move between a bin and the shared structures first writes the bytes in
//! flight to the thread slot's `transit` word and clears it afterwards: a thread
//! killed in the middle leaves blocks that are on no list and in no bin (leaked),
//! and `transit` is the upper bound the reaper counts for them.

use std::cell::RefCell;
use std::sync::Arc;

use super::layout::{self, NUM_CLASSES, ThreadSlot, desc, state, word};
use super::shared::Shared;
use super::stack::PopError;
use super::{AllocError, Allocator, BATCH, BIN_CAP};
use crate::sync::{AtomicU64, Ordering};

/// A thread's cache of free blocks of one class.
#[derive(Clone, Copy)]
pub(super) struct Bin {
    pub len: usize,
    items: [u64; BIN_CAP],
}

impl Bin {
    pub const EMPTY: Bin = Bin {
        len: 0,
        items: [0; BIN_CAP],
    };

    #[inline]
    pub fn pop(&mut self) -> Option<u64> {
        self.len = self.len.checked_sub(1)?;
        Some(self.items[self.len])
    }

    #[inline]
    pub fn push(&mut self, b: u64) {
        self.items[self.len] = b;
        self.len += 1;
    }
}

/// Writes the bytes a thread has in flight to its slot's `transit` word on
/// creation and clears it on drop.
struct Transit<'a>(Option<&'a ThreadSlot>);

impl<'a> Transit<'a> {
    fn new(slot: Option<&'a ThreadSlot>, bytes: u64) -> Transit<'a> {
        if let Some(t) = slot {
            // Relaxed: only the reaper reads it, after this process died.
            t.transit.store(bytes, Ordering::Relaxed);
        }
        Transit(slot)
    }
}

impl Drop for Transit<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // Relaxed: as in `new`.
            t.transit.store(0, Ordering::Relaxed);
        }
    }
}

impl Shared {
    /// Moves up to `BATCH` blocks of `class` into `bin`, from the shared list or a
    /// fresh page. `slot` is the calling thread's counter slot, if it has one.
    pub(super) fn refill(
        &self,
        class: usize,
        bin: &mut Bin,
        slot: Option<&ThreadSlot>,
    ) -> Result<(), AllocError> {
        let list = &self.hdr().classes[class].0;
        let links = self.class_links(class);
        let bs = layout::CLASS_SIZES[class] as u64;
        {
            // One block is in flight between its pop and its CACHED mark.
            let _transit = Transit::new(slot, bs);
            while bin.len < BATCH {
                match list.pop(&links) {
                    Ok(Some(b)) => {
                        // Relaxed: the block is ours (the pop's Acquire); others
                        // read this word only to refuse frees of a non-LIVE block.
                        self.block(b)
                            .word
                            .store(word(state::CACHED, self.owner), Ordering::Relaxed);
                        bin.push(b);
                    }
                    Ok(None) | Err(PopError::Contended(_)) => break,
                    Err(PopError::Corrupt { offset }) => {
                        return Err(self.corrupt_list(class, offset));
                    }
                }
            }
        }
        if bin.len > 0 {
            return Ok(());
        }
        let _transit = Transit::new(slot, layout::PAGE_SIZE);
        let page = self.claim_pages(None, layout::class_payload(class))?;
        let start = self.page_start(page);
        let n = layout::blocks_per_page(class);
        let mut chain: Option<(u64, u64)> = None;
        for i in (0..n).rev() {
            let b = start + i * bs;
            let h = self.block(b);
            if bin.len < BATCH {
                h.word
                    .store(word(state::CACHED, self.owner), Ordering::Relaxed);
                bin.push(b);
            } else {
                h.word
                    .store(word(state::FREE, self.owner), Ordering::Relaxed);
                h.next.store(chain.map_or(0, |c| c.0), Ordering::Relaxed);
                chain = Some((b, chain.map_or(b, |c| c.1)));
            }
        }
        // Release: the headers written above are visible to whoever validates a
        // block of this page through its descriptor (Acquire in `locate` and
        // `is_list_node`).
        self.descs()[page as usize].store(desc::SMALL | class as u32, Ordering::Release);
        if let Some((first, last)) = chain {
            let count = (n - BATCH as u64) * bs;
            self.push_or_leak(class, first, last, count);
        }
        Ok(())
    }

    /// Returns the `BATCH` most recently cached blocks of `bin` to the shared list.
    pub(super) fn spill(&self, class: usize, bin: &mut Bin, slot: Option<&ThreadSlot>) {
        let take = BATCH.min(bin.len);
        let bs = layout::CLASS_SIZES[class] as u64;
        let _transit = Transit::new(slot, take as u64 * bs);
        let mut first = 0;
        let mut last = 0;
        for _ in 0..take {
            let b = bin.pop().unwrap_or_default();
            let h = self.block(b);
            h.word
                .store(word(state::FREE, self.owner), Ordering::Relaxed);
            h.next.store(first, Ordering::Relaxed);
            if last == 0 {
                last = b;
            }
            first = b;
        }
        if first != 0 {
            self.push_or_leak(class, first, last, take as u64 * bs);
        }
    }
}

/// One thread's bins for one allocator handle.
pub(super) struct ThreadCache {
    pub shared: Arc<Shared>,
    pub bins: Box<[Bin; NUM_CLASSES]>,
    /// This thread's counter slot, if one was free.
    slot: Option<usize>,
}

impl ThreadCache {
    pub fn new(shared: Arc<Shared>) -> ThreadCache {
        // Built on the heap directly: the array is ~18 KiB, too much for the
        // stack of a coroutine (where a module's first allocation on a worker
        // thread creates its cache).
        let bins: Box<[Bin; NUM_CLASSES]> = vec![Bin::EMPTY; NUM_CLASSES]
            .into_boxed_slice()
            .try_into()
            .unwrap_or_else(|_| unreachable!("the vector has NUM_CLASSES bins"));
        let taken = shared.owner + 1;
        let slot = shared.hdr().threads.iter().position(|t| {
            // Acquire: pairs with the Release store of 0 in `ThreadCache::drop` (or
            // in the reaper), after which the previous user's counters are folded.
            t.0.taken
                .compare_exchange(0, taken, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        });
        if let Some(i) = slot {
            let t = &shared.hdr().threads[i].0;
            // Relaxed: this thread is the slot's only writer from now on.
            t.live_bytes.store(0, Ordering::Relaxed);
            t.live_blocks.store(0, Ordering::Relaxed);
            t.transit.store(0, Ordering::Relaxed);
        }
        ThreadCache { shared, bins, slot }
    }

    /// This thread's counter slot.
    pub fn slot(&self) -> Option<&ThreadSlot> {
        self.slot.map(|i| &self.shared.hdr().threads[i].0)
    }

    /// Pops a block of `class`, refilling the bin if it is empty.
    #[inline]
    pub fn take(&mut self, class: usize) -> Result<u64, AllocError> {
        if let Some(b) = self.bins[class].pop() {
            return Ok(b);
        }
        let slot = self.slot.map(|i| &self.shared.hdr().threads[i].0);
        self.shared.refill(class, &mut self.bins[class], slot)?;
        Ok(self.bins[class].pop().unwrap_or_default())
    }

    /// Caches a block of `class` (CACHED, owned by this handle's owner).
    #[inline]
    pub fn put(&mut self, class: usize, block: u64) {
        if self.bins[class].len == BIN_CAP {
            let slot = self.slot.map(|i| &self.shared.hdr().threads[i].0);
            self.shared.spill(class, &mut self.bins[class], slot);
        }
        self.bins[class].push(block);
    }

    /// Returns every cached block to the shared lists; returns how many.
    pub fn spill_all(&mut self) -> usize {
        let slot = self.slot.map(|i| &self.shared.hdr().threads[i].0);
        let mut n = 0;
        for class in 0..NUM_CLASSES {
            while self.bins[class].len > 0 {
                n += self.bins[class].len.min(BATCH);
                self.shared.spill(class, &mut self.bins[class], slot);
            }
        }
        n
    }

    /// Adds `bytes` (and one block) to this thread's net count for its own owner,
    /// without a locked instruction; falls back to the owner's atomic counters.
    #[inline]
    pub fn count(&self, bytes: u64, alloc: bool) {
        let Some(t) = self.slot() else {
            if alloc {
                self.shared.count_alloc(bytes);
            } else {
                self.shared.count_free(self.shared.owner, bytes);
            }
            return;
        };
        let (db, dn) = if alloc {
            (bytes, 1u64)
        } else {
            (bytes.wrapping_neg(), 1u64.wrapping_neg())
        };
        // Single writer (this thread): load + store is exact; readers sum Relaxed
        // loads.
        add(&t.live_bytes, db);
        add(&t.live_blocks, dn);
    }
}

#[inline]
fn add(counter: &AtomicU64, delta: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(delta),
        Ordering::Relaxed,
    );
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        self.spill_all();
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
            // Release: pairs with the Acquire CAS that takes the slot next, which
            // then sees the counters zeroed.
            t.taken.store(0, Ordering::Release);
        }
    }
}

impl Allocator {
    /// Runs `f` on this thread's cache for this handle, or returns `None` if the
    /// thread's cache is unavailable (thread teardown).
    #[inline]
    pub(super) fn with_cache<R>(&self, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
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
}

thread_local! {
    pub(super) static CACHES: RefCell<Vec<ThreadCache>> = const { RefCell::new(Vec::new()) };
}
