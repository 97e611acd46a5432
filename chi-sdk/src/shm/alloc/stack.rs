//! A lock-free LIFO free list (Treiber stack) of blocks named by offset, with a
//! version tag against ABA.
//!
//! The head is one `u64`: the low [`NODE_BITS`] bits hold `offset / 16` of the top
//! block (0 = empty; offset 0 is never a block since the segment header lives
//! there), the high [`TAG_BITS`] bits a counter bumped by every successful update.
//! A pop that read `head = (A, t)` and `next(A) = B` only succeeds if the head is
//! still `(A, t)`; if A was popped and pushed back meanwhile, the tag moved on and
//! the stale `B` is never installed. The tag wraps after 2^24 updates, so ABA
//! would need one thread to stall across exactly a multiple of 16.7 M updates of
//! the same list and find the same block on top: accepted, as in every
//! tagged-pointer design.
//!
//! The links live in the blocks' headers (never in the payload the user writes),
//! always accessed atomically, so a stale reader racing with a reuse of the block
//! reads a stale but well-defined value. The algorithm is written against
//! [`Links`] so the loom tests can run it over an ordinary array.

use crate::sync::{AtomicU64, Ordering};

/// Bits of the head word that hold `offset >> 4`.
pub(crate) const NODE_BITS: u32 = 40;
/// Bits of the head word that hold the ABA tag.
pub(crate) const TAG_BITS: u32 = 64 - NODE_BITS;
const NODE_MASK: u64 = (1 << NODE_BITS) - 1;
const _: () = assert!(TAG_BITS == 24 && NODE_BITS + 4 <= 48);
/// Offsets must be below this (16 TiB) to be stored in a head word.
pub(crate) const MAX_NODE_OFFSET: u64 = NODE_MASK << 4;

/// Where the `next` link of each node lives.
pub(crate) trait Links {
    /// The link word of the node at `node` (a multiple of 16, non-zero).
    fn next(&self, node: u64) -> &AtomicU64;
}

#[inline]
fn pack(node: u64, tag: u64) -> u64 {
    debug_assert!(node & 15 == 0 && node <= MAX_NODE_OFFSET);
    (tag << NODE_BITS) | (node >> 4)
}

#[inline]
fn node_of(head: u64) -> u64 {
    (head & NODE_MASK) << 4
}

#[inline]
fn tag_of(head: u64) -> u64 {
    head >> NODE_BITS
}

/// The head of one free list; lives in shared memory.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct TaggedStack {
    head: AtomicU64,
}

impl TaggedStack {
    /// An empty stack.
    #[cfg(any(loom, test))]
    pub(crate) fn new() -> TaggedStack {
        TaggedStack {
            head: AtomicU64::new(0),
        }
    }

    /// Pushes the chain `first ..= last`, already linked through `links` by the
    /// caller (who owns every node of it), with one successful CAS.
    pub(crate) fn push_chain<L: Links>(&self, links: &L, first: u64, last: u64) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            links.next(last).store(node_of(head), Ordering::Relaxed);
            let new = pack(first, tag_of(head).wrapping_add(1));
            // Release: publishes the chain's links (and whatever the caller wrote
            // into the blocks' headers) to the Acquire load/CAS in `pop`.
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// Pushes one node the caller owns.
    #[inline]
    pub(crate) fn push<L: Links>(&self, links: &L, node: u64) {
        self.push_chain(links, node, node);
    }

    /// Pops the top node, if any; the caller then owns it.
    pub(crate) fn pop<L: Links>(&self, links: &L) -> Option<u64> {
        // Acquire: pairs with the Release CAS in `push_chain`, so the link of the
        // node we read was written before we read it.
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let node = node_of(head);
            if node == 0 {
                return None;
            }
            // May be stale if `node` is popped concurrently; the tagged CAS below
            // then fails, so a stale value is never installed.
            let next = links.next(node).load(Ordering::Relaxed);
            let new = (tag_of(head).wrapping_add(1) << NODE_BITS) | (next >> 4);
            // Acquire on success: we take ownership of `node` and must see what
            // its previous owner wrote before pushing it (Release in push_chain).
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Some(node),
                Err(actual) => head = actual,
            }
        }
    }

    /// Whether the list looked empty at the time of the call.
    #[cfg(any(loom, test))]
    pub(crate) fn is_empty(&self) -> bool {
        node_of(self.head.load(Ordering::Acquire)) == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct Arena(Vec<AtomicU64>);
    impl Links for Arena {
        fn next(&self, node: u64) -> &AtomicU64 {
            &self.0[(node / 16) as usize]
        }
    }

    #[test]
    fn lifo_order_and_chains() {
        let arena = Arena((0..8).map(|_| AtomicU64::new(0)).collect());
        let s = TaggedStack::new();
        assert!(s.is_empty());
        s.push(&arena, 16);
        s.push(&arena, 32);
        // chain 48 -> 64 -> 80
        arena.next(48).store(64, Ordering::Relaxed);
        arena.next(64).store(80, Ordering::Relaxed);
        s.push_chain(&arena, 48, 80);
        let popped: Vec<u64> = std::iter::from_fn(|| s.pop(&arena)).collect();
        assert_eq!(popped, vec![48, 64, 80, 32, 16]);
        assert!(s.is_empty());
    }
}
