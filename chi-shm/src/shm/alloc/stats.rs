//! The allocator's figures: used and free bytes, pages and blocks of a heap
//! ([`Allocator::stats`]), and what one owner holds
//! ([`Allocator::owner_usage`]).
//!
//! Every counter is written with Relaxed atomics and summed by readers, so a
//! figure is exact only when no allocation or free is in progress. Live bytes
//! and blocks are the sum of the owner slots' counters and of the thread slots'
//! (each thread counts its own allocations and frees without a locked
//! instruction, see [`cache`](super::cache)).

use super::layout::PAGE_SHIFT;
use super::{Allocator, OwnerId};
use crate::sync::Ordering;

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

impl Allocator {
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
}
