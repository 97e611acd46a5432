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
//!
//! # Untrusted links
//!
//! The head and the links live in memory that clients can write, so `pop` checks
//! every node offset it reads before it dereferences it or installs it as the new
//! head ([`Links::is_node`]). A value that fails the check may just be stale (the
//! node was popped and reused meanwhile): the pop then tries to replace the head
//! it read, unchanged, by an empty list. If that CAS succeeds the head was not
//! stale, so the list really holds garbage: it is abandoned (its blocks leak) and
//! the pop reports [`PopError::Corrupt`]; if it fails the pop retries with the new
//! head. Every CAS loop is bounded ([`MAX_ATTEMPTS`]): a CAS fails only when
//! another update succeeded, so a loop that keeps failing means a word rewritten
//! without pause, and the operation gives up with [`Contended`] instead of
//! spinning forever.

use crate::sync::{AtomicU64, Ordering};

/// Bits of the head word that hold `offset >> 4`.
pub(crate) const NODE_BITS: u32 = 40;
/// Bits of the head word that hold the ABA tag.
pub(crate) const TAG_BITS: u32 = 64 - NODE_BITS;
const NODE_MASK: u64 = (1 << NODE_BITS) - 1;
const _: () = assert!(TAG_BITS == 24 && NODE_BITS + 4 <= 48);
/// Offsets must be below this (16 TiB) to be stored in a head word.
pub(crate) const MAX_NODE_OFFSET: u64 = NODE_MASK << 4;

/// Failed CAS attempts after which an operation gives up.
pub(crate) const MAX_ATTEMPTS: u32 = 1 << 20;

/// Where the `next` link of each node lives, and which offsets are nodes.
pub(crate) trait Links {
    /// The link word of the node at `node` (one [`is_node`](Links::is_node)
    /// accepted).
    fn next(&self, node: u64) -> &AtomicU64;

    /// Whether `node`, read from shared memory, may be a node of this list (at
    /// least: a non-zero multiple of 16 whose link can be read).
    fn is_node(&self, node: u64) -> bool;
}

/// Why a pop returned nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum PopError {
    /// The head or a link named `offset`, which is not a node of this list; the
    /// list was reset to empty (what it held is leaked).
    Corrupt {
        /// The offending value.
        offset: u64,
    },
    /// The head kept changing for [`MAX_ATTEMPTS`] attempts.
    Contended(Contended),
}

/// The head kept changing for [`MAX_ATTEMPTS`] CAS attempts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Contended;

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
    #[cfg(test)]
    pub(crate) fn new() -> TaggedStack {
        TaggedStack {
            head: AtomicU64::new(0),
        }
    }

    /// Pushes the chain `first ..= last`, already linked through `links` by the
    /// caller (who owns every node of it), with one successful CAS.
    pub(crate) fn push_chain<L: Links>(
        &self,
        links: &L,
        first: u64,
        last: u64,
    ) -> Result<(), Contended> {
        let mut head = self.head.load(Ordering::Relaxed);
        for _ in 0..MAX_ATTEMPTS {
            links.next(last).store(node_of(head), Ordering::Relaxed);
            let new = pack(first, tag_of(head).wrapping_add(1));
            // Release: publishes the chain's links (and whatever the caller wrote
            // into the blocks' headers) to the Acquire load/CAS in `pop`.
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => head = actual,
            }
        }
        Err(Contended)
    }

    /// Pushes one node the caller owns.
    #[cfg(test)]
    pub(crate) fn push<L: Links>(&self, links: &L, node: u64) -> Result<(), Contended> {
        self.push_chain(links, node, node)
    }

    /// Pops the top node, if any; the caller then owns it.
    pub(crate) fn pop<L: Links>(&self, links: &L) -> Result<Option<u64>, PopError> {
        // Acquire: pairs with the Release CAS in `push_chain`, so the link of the
        // node we read was written before we read it.
        let mut head = self.head.load(Ordering::Acquire);
        for _ in 0..MAX_ATTEMPTS {
            let node = node_of(head);
            if node == 0 {
                return Ok(None);
            }
            // `next` may be stale if `node` is popped concurrently; the tagged CAS
            // below then fails, so a stale value is never installed.
            let next = if links.is_node(node) {
                links.next(node).load(Ordering::Relaxed)
            } else {
                node
            };
            let bad = if next == node {
                Some(node)
            } else if next != 0 && !links.is_node(next) {
                Some(next)
            } else {
                None
            };
            if let Some(offset) = bad {
                // Garbage, or a stale read: abandon the list only if the head is
                // still the one we read. Relaxed on success: nothing is taken over;
                // Acquire on failure, as for the load above.
                match self.head.compare_exchange(
                    head,
                    pack(0, tag_of(head).wrapping_add(1)),
                    Ordering::Relaxed,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Err(PopError::Corrupt { offset }),
                    Err(actual) => {
                        head = actual;
                        continue;
                    }
                }
            }
            let new = pack(next, tag_of(head).wrapping_add(1));
            // Acquire on success: we take ownership of `node` and must see what
            // its previous owner wrote before pushing it (Release in push_chain).
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Ok(Some(node)),
                Err(actual) => head = actual,
            }
        }
        Err(PopError::Contended(Contended))
    }

    /// Detaches the whole list and returns its first node (0 if it was empty),
    /// unchecked: the caller walks it with [`Links::is_node`], and owns every node
    /// it reaches that way.
    pub(crate) fn take_all(&self) -> Result<u64, Contended> {
        let mut head = self.head.load(Ordering::Relaxed);
        for _ in 0..MAX_ATTEMPTS {
            // Acquire on success: pairs with the Release CAS in `push_chain`, so
            // the chain's links are visible to the walk.
            match self.head.compare_exchange_weak(
                head,
                pack(0, tag_of(head).wrapping_add(1)),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(node_of(head)),
                Err(actual) => head = actual,
            }
        }
        Err(Contended)
    }

    /// The head word, for tests that scribble on it.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn head_word(&self) -> &AtomicU64 {
        &self.head
    }

    /// Whether the list looked empty at the time of the call.
    #[cfg(test)]
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
        fn is_node(&self, node: u64) -> bool {
            node != 0 && node.is_multiple_of(16) && ((node / 16) as usize) < self.0.len()
        }
    }

    #[test]
    fn lifo_order_and_chains() {
        let arena = Arena((0..8).map(|_| AtomicU64::new(0)).collect());
        let s = TaggedStack::new();
        assert!(s.is_empty());
        s.push(&arena, 16).unwrap();
        s.push(&arena, 32).unwrap();
        // chain 48 -> 64 -> 80
        arena.next(48).store(64, Ordering::Relaxed);
        arena.next(64).store(80, Ordering::Relaxed);
        s.push_chain(&arena, 48, 80).unwrap();
        let popped: Vec<u64> = std::iter::from_fn(|| s.pop(&arena).unwrap()).collect();
        assert_eq!(popped, vec![48, 64, 80, 32, 16]);
        assert!(s.is_empty());
    }

    #[test]
    fn a_garbage_link_or_head_abandons_the_list() {
        let arena = Arena((0..8).map(|_| AtomicU64::new(0)).collect());
        let s = TaggedStack::new();
        s.push(&arena, 16).unwrap();
        s.push(&arena, 32).unwrap();
        s.push(&arena, 48).unwrap();
        // A client scribbles on the link of 32 (the second node).
        arena.next(32).store(0xdead_beef0, Ordering::Relaxed);
        assert_eq!(s.pop(&arena), Ok(Some(48)));
        assert_eq!(
            s.pop(&arena),
            Err(PopError::Corrupt {
                offset: 0xdead_beef0
            })
        );
        assert!(s.is_empty());
        assert_eq!(s.pop(&arena), Ok(None));
        // A garbage head word (a misaligned or out-of-range node).
        s.push(&arena, 16).unwrap();
        s.head.store(pack(4096, 7), Ordering::Relaxed);
        assert_eq!(s.pop(&arena), Err(PopError::Corrupt { offset: 4096 }));
        assert!(s.is_empty());
        // A node linked to itself (a cycle of one).
        s.push(&arena, 64).unwrap();
        arena.next(64).store(64, Ordering::Relaxed);
        assert_eq!(s.pop(&arena), Err(PopError::Corrupt { offset: 64 }));
        // The list works again.
        s.push(&arena, 80).unwrap();
        assert_eq!(s.pop(&arena), Ok(Some(80)));
        // take_all detaches everything.
        s.push(&arena, 16).unwrap();
        s.push(&arena, 32).unwrap();
        assert_eq!(s.take_all(), Ok(32));
        assert!(s.is_empty());
    }

    /// Threads pop nodes, write and read their (non-atomic) payload, and push them
    /// back, one at a time or two as a chain. Natively a stress test; under Miri
    /// its data-race detector checks that ownership is handed over with the
    /// Release/Acquire edges (a payload access racing with another owner's is
    /// reported as undefined behaviour).
    #[test]
    fn threads_pop_use_and_push_back() {
        use std::cell::UnsafeCell;
        use std::sync::Arc;

        const NODES: u64 = 4;
        const ROUNDS: u64 = if cfg!(miri) { 60 } else { 20_000 };

        struct Shared {
            arena: Arena,
            payload: Vec<UnsafeCell<u64>>,
            stack: TaggedStack,
        }
        // SAFETY: `payload[i]` is only accessed by the thread that popped node
        // `i` and has not pushed it back yet, which is what the stack guarantees
        // (and what this test checks).
        unsafe impl Sync for Shared {}

        impl Shared {
            fn use_node(&self, node: u64, who: u64) {
                let p = self.payload[(node / 16) as usize].get();
                // SAFETY: the caller owns `node` (see `impl Sync`).
                unsafe {
                    assert_eq!(*p % 16, 0, "payload of {node} torn");
                    *p = who << 4;
                    assert_eq!(*p, who << 4, "payload of {node} changed under its owner");
                }
            }
        }

        let sh = Arc::new(Shared {
            arena: Arena((0..=NODES).map(|_| AtomicU64::new(0)).collect()),
            payload: (0..=NODES).map(|_| UnsafeCell::new(0)).collect(),
            stack: TaggedStack::new(),
        });
        for n in 1..=NODES {
            sh.stack.push(&sh.arena, n * 16).unwrap();
        }
        let threads: Vec<_> = (1..=3u64)
            .map(|who| {
                let sh = sh.clone();
                std::thread::spawn(move || {
                    for round in 0..ROUNDS {
                        let Some(a) = sh.stack.pop(&sh.arena).unwrap() else {
                            std::thread::yield_now();
                            continue;
                        };
                        sh.use_node(a, who);
                        // Every other round, return two nodes as one chain.
                        if round % 2 == 0
                            && let Some(b) = sh.stack.pop(&sh.arena).unwrap()
                        {
                            sh.use_node(b, who);
                            sh.arena.next(a).store(b, Ordering::Relaxed);
                            sh.stack.push_chain(&sh.arena, a, b).unwrap();
                            continue;
                        }
                        sh.stack.push(&sh.arena, a).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut all: Vec<u64> = std::iter::from_fn(|| sh.stack.pop(&sh.arena).unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, (1..=NODES).map(|n| n * 16).collect::<Vec<_>>());
    }
}

#[cfg(all(loom, test))]
mod loom_tests {
    //! Model checks of the tagged Treiber stack over a small arena of loom atomics.
    //!
    //! Each node also carries a non-atomic payload (a loom `UnsafeCell`) that its
    //! owner writes after a pop and before a push, as the allocator's users write
    //! into blocks. Loom reports any two accesses to a payload that are not ordered
    //! by happens-before, so these tests check both that a node has one owner at a
    //! time and that the Release/Acquire orderings hand the block's contents over.
    //! At the end every node must be owned exactly once (held by a thread or still
    //! on the stack): none lost, none handed to two owners.

    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    const A: u64 = 16;
    const B: u64 = 32;
    const C: u64 = 48;

    /// Nodes at offsets 16, 32, ..., `16 * n`; index 0 is unused (offset 0 is
    /// never a node).
    struct Arena {
        links: Vec<AtomicU64>,
        payload: Vec<UnsafeCell<u64>>,
    }

    impl Arena {
        fn new(n: usize) -> Arena {
            Arena {
                links: (0..=n).map(|_| AtomicU64::new(0)).collect(),
                payload: (0..=n).map(|_| UnsafeCell::new(0)).collect(),
            }
        }

        /// What the owner of `node` does with it: writes and reads its payload.
        fn use_node(&self, node: u64, who: u64) {
            let cell = &self.payload[(node / 16) as usize];
            // SAFETY: the caller claims to own `node` (just popped it, or holds it
            // before pushing it); loom fails the model if another thread accesses
            // the payload without a happens-before edge, i.e. if the claim is false.
            cell.with_mut(|p| unsafe { *p = who });
            // SAFETY: as above.
            let back = cell.with(|p| unsafe { *p });
            assert_eq!(back, who, "payload of {node} changed under its owner");
        }
    }

    impl Links for Arena {
        fn next(&self, node: u64) -> &AtomicU64 {
            &self.links[(node / 16) as usize]
        }
        fn is_node(&self, node: u64) -> bool {
            node != 0 && node.is_multiple_of(16) && ((node / 16) as usize) < self.links.len()
        }
    }

    fn drain(s: &TaggedStack, a: &Arena) -> Vec<u64> {
        let out: Vec<u64> = std::iter::from_fn(|| s.pop(a).unwrap()).collect();
        assert!(s.is_empty());
        out
    }

    /// Every node of `all` appears exactly once in `owned`.
    fn assert_each_owned_once(mut owned: Vec<u64>, all: &[u64]) {
        owned.sort_unstable();
        assert_eq!(owned, all, "a node was lost or handed to two owners");
    }

    /// The ABA scenario. The stack is A -> B -> C. Thread 1 pops once; thread 2
    /// pops A, pops B and pushes A back. If thread 1 read `head = A` and
    /// `next(A) = B` before thread 2 ran, its CAS must fail (the tag moved on even
    /// though A is on top again): installing the stale B would hand B, which
    /// thread 2 holds, to a second owner.
    #[test]
    fn aba_pop_vs_pop_pop_push() {
        loom::model(|| {
            let a = Arc::new(Arena::new(3));
            let s = Arc::new(TaggedStack::new());
            for n in [C, B, A] {
                s.push(&*a, n).unwrap();
            }
            let (a1, s1) = (a.clone(), s.clone());
            let t1 = thread::spawn(move || {
                let n = s1.pop(&*a1).unwrap().expect("stack of 3 emptied by 3 pops");
                a1.use_node(n, 1);
                n
            });
            let (a2, s2) = (a.clone(), s.clone());
            let t2 = thread::spawn(move || {
                let x = s2.pop(&*a2).unwrap().expect("stack of 3 emptied by 3 pops");
                a2.use_node(x, 2);
                let y = s2.pop(&*a2).unwrap().expect("stack of 3 emptied by 3 pops");
                a2.use_node(y, 2);
                a2.use_node(x, 2);
                s2.push(&*a2, x).unwrap();
                y
            });
            let mut owned = vec![t1.join().unwrap(), t2.join().unwrap()];
            let rest = drain(&s, &a);
            for &n in &rest {
                a.use_node(n, 0);
            }
            owned.extend(rest);
            assert_each_owned_once(owned, &[A, B, C]);
        });
    }

    /// Three threads each pop a node, use it and push it back, on a stack of two:
    /// pops race with pops and pushes of the same nodes from every side. A pop
    /// may find the stack empty (both nodes held by the others), never anything
    /// else; at the end both nodes are on the stack, once each.
    #[test]
    fn three_threads_pop_and_push_back() {
        loom::model(|| {
            let a = Arc::new(Arena::new(2));
            let s = Arc::new(TaggedStack::new());
            s.push(&*a, B).unwrap();
            s.push(&*a, A).unwrap();
            let threads: Vec<_> = (1..=3u64)
                .map(|who| {
                    let (a, s) = (a.clone(), s.clone());
                    thread::spawn(move || {
                        if let Some(n) = s.pop(&*a).unwrap() {
                            a.use_node(n, who);
                            s.push(&*a, n).unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let rest = drain(&s, &a);
            for &n in &rest {
                a.use_node(n, 0);
            }
            assert_each_owned_once(rest, &[A, B]);
        });
    }

    /// `push_chain` of A -> B (one CAS) while another thread pops twice from a
    /// stack holding C. The chain's internal link, written by its owner before the
    /// push, must be seen by the popper (Release/Acquire), the chain must stay
    /// contiguous (B is only reachable through A), and every node ends up owned
    /// exactly once.
    #[test]
    fn push_chain_vs_pop() {
        loom::model(|| {
            let a = Arc::new(Arena::new(3));
            let s = Arc::new(TaggedStack::new());
            s.push(&*a, C).unwrap();
            let (a1, s1) = (a.clone(), s.clone());
            let pusher = thread::spawn(move || {
                a1.use_node(A, 1);
                a1.use_node(B, 1);
                a1.next(A).store(B, Ordering::Relaxed);
                s1.push_chain(&*a1, A, B).unwrap();
            });
            let (a2, s2) = (a.clone(), s.clone());
            let popper = thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..2 {
                    if let Some(n) = s2.pop(&*a2).unwrap() {
                        a2.use_node(n, 2);
                        got.push(n);
                    }
                }
                got
            });
            pusher.join().unwrap();
            let popped = popper.join().unwrap();
            let rest = drain(&s, &a);
            for &n in &rest {
                a.use_node(n, 0);
            }
            // B is only reachable after A was popped, by the same popper or later.
            if let Some(ib) = popped.iter().position(|&n| n == B) {
                assert!(popped[..ib].contains(&A), "B popped before A: {popped:?}");
            }
            if let (Some(ia), Some(ib)) = (
                rest.iter().position(|&n| n == A),
                rest.iter().position(|&n| n == B),
            ) {
                assert_eq!(ia + 1, ib, "chain split: {rest:?}");
            }
            let mut owned = popped;
            owned.extend(rest);
            assert_each_owned_once(owned, &[A, B, C]);
        });
    }
}
