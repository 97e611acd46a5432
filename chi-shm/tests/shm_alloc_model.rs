//! Model-based tests of the allocator: random sequences of allocations (small
//! classes, large runs, sizes near the whole heap), frees and cache flushes,
//! checked after every step against a reference model of the live blocks; and
//! the same from several processes at once.
//!
//! The key property: whenever nothing is allocated, the largest request the
//! empty segment could serve at the start succeeds again (freed runs merge,
//! empty size-class pages go back to the page pool).
#![cfg(not(loom))]
// A client of the crate: its own atomics are the standard ones, which its
// shared-memory records hold (the facade rule of clippy.toml is for the library).
#![allow(clippy::disallowed_types)]

mod support;

use std::collections::BTreeMap;

use chi_shm::shm::alloc::{MAX_SMALL_SIZE, PAGE_SIZE, SMALL_ALIGN};
use chi_shm::shm::{AllocError, Allocator, FreeError, FullPtr, Segment, ShmPtr};
use proptest::prelude::*;
use support::pattern::{check, fill};
use support::{Children, Rng, WATCHDOG, child_role, env_str, env_u64, new_segment};

/// Header in front of every block (a large run's payload starts this far in).
const HEADER: u64 = 16;

/// A request size, resolved against the heap of the segment under test.
#[derive(Clone, Copy, Debug)]
enum Size {
    /// A size-class request.
    Small(usize),
    /// A run of pages.
    Large(usize),
    /// The whole heap less `pages` pages and `bytes` bytes.
    NearFull { pages: u64, bytes: usize },
}

impl Size {
    fn bytes(self, largest: usize) -> usize {
        match self {
            Size::Small(n) | Size::Large(n) => n,
            Size::NearFull { pages, bytes } => {
                largest.saturating_sub(pages as usize * PAGE_SIZE as usize + bytes)
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Alloc(Size),
    /// Frees the live block at this index (modulo their number).
    Free(usize),
    Flush,
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        6 => (1..=MAX_SMALL_SIZE).prop_map(Size::Small),
        3 => (1usize..=13).prop_flat_map(|bits| (1usize << bits)..(2usize << bits)).prop_map(|n| Size::Small(n.min(MAX_SMALL_SIZE))),
        2 => (MAX_SMALL_SIZE + 1..=700_000).prop_map(Size::Large),
        1 => (0u64..4, 0usize..64).prop_map(|(pages, bytes)| Size::NearFull { pages, bytes }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => size().prop_map(Op::Alloc),
        4 => any::<usize>().prop_map(Op::Free),
        1 => Just(Op::Flush),
    ]
}

struct Block {
    ptr: FullPtr<u8>,
    size: usize,
    usable: u64,
    tag: u64,
}

/// The reference model: what must be live, by offset.
struct Model<'a> {
    alloc: &'a Allocator,
    seg: &'a Segment,
    live: BTreeMap<u64, Block>,
    next_tag: u64,
    heap_pages: u64,
    largest: usize,
}

impl Model<'_> {
    fn allocate(&mut self, size: usize) -> Result<(), TestCaseError> {
        match self.alloc.allocate(size) {
            Ok(ptr) => {
                let off = ptr.shm().offset();
                prop_assert!(
                    self.seg.contains(ptr.shm()),
                    "{} outside the segment",
                    ptr.shm()
                );
                prop_assert!(
                    off.is_multiple_of(SMALL_ALIGN as u64),
                    "{} misaligned",
                    ptr.shm()
                );
                let usable = self.alloc.usable_size(ptr.shm()).unwrap();
                prop_assert!(usable >= size as u64, "usable {usable} < {size}");
                prop_assert!(off + usable <= self.seg.size());
                prop_assert_eq!(self.alloc.owner_of(ptr.shm()), Ok(self.alloc.owner()));
                // Distinct and non-overlapping: the neighbours end before / start after.
                if let Some((&o, b)) = self.live.range(..=off).next_back() {
                    prop_assert!(
                        o + b.usable <= off,
                        "{} overlaps the block at {o:#x}",
                        ptr.shm()
                    );
                }
                if let Some((&o, _)) = self.live.range(off..).next() {
                    prop_assert!(
                        off + usable <= o,
                        "{} overlaps the block at {o:#x}",
                        ptr.shm()
                    );
                }
                self.next_tag += 1;
                let tag = self.next_tag;
                // SAFETY: a fresh allocation of at least `size` bytes, 16-aligned.
                unsafe { fill(ptr.as_ptr(), size, tag) };
                self.live.insert(
                    off,
                    Block {
                        ptr,
                        size,
                        usable,
                        tag,
                    },
                );
                Ok(())
            }
            Err(AllocError::OutOfMemory { .. }) => {
                // The key property: an empty segment serves anything it could serve
                // at the start.
                prop_assert!(
                    !(self.live.is_empty() && size <= self.largest),
                    "allocate({size}) failed with nothing allocated (largest at start {})",
                    self.largest
                );
                Ok(())
            }
            Err(e) => Err(TestCaseError::fail(format!("allocate({size}): {e}"))),
        }
    }

    fn free(&mut self, i: usize) -> Result<(), TestCaseError> {
        if self.live.is_empty() {
            return Ok(());
        }
        let off = *self.live.keys().nth(i % self.live.len()).unwrap();
        let b = self.live.remove(&off).unwrap();
        // SAFETY: our live block of `size` bytes.
        unsafe { check(b.ptr.as_ptr(), b.size, b.tag) }.map_err(TestCaseError::fail)?;
        prop_assert_eq!(self.alloc.free(b.ptr.shm()), Ok(()));
        prop_assert_eq!(
            self.alloc.free(b.ptr.shm()),
            Err(FreeError::NotAllocated { ptr: b.ptr.shm() })
        );
        Ok(())
    }

    /// Stats and contents agree with the model.
    fn check(&self) -> Result<(), TestCaseError> {
        let st = self.alloc.stats();
        prop_assert_eq!(st.live_blocks, self.live.len() as u64);
        prop_assert_eq!(
            st.used_bytes,
            self.live.values().map(|b| b.usable).sum::<u64>()
        );
        let large: u64 = self
            .live
            .values()
            .filter(|b| b.size > MAX_SMALL_SIZE)
            .map(|b| (b.usable + HEADER).div_ceil(PAGE_SIZE))
            .sum();
        prop_assert_eq!(st.large_pages, large);
        prop_assert_eq!(
            st.small_pages + st.large_pages + st.free_pages,
            self.heap_pages
        );
        prop_assert_eq!((st.possibly_leaked_bytes, st.abandoned_lists), (0, 0));
        for b in self.live.values() {
            // SAFETY: our live block of `size` bytes.
            unsafe { check(b.ptr.as_ptr(), b.size, b.tag) }.map_err(TestCaseError::fail)?;
        }
        Ok(())
    }
}

/// One random sequence on a fresh 4 MiB segment.
fn run_model(ops: &[Op]) -> Result<(), TestCaseError> {
    let (_name, seg) = new_segment("alloc_model", 4 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let start = alloc.stats();
    // The largest request the empty segment serves: one run of every page. (Not
    // allocated up front: that would move the top of the used range to the end
    // of the heap and hide the merging of free runs into it.)
    let largest = (start.heap_bytes - HEADER) as usize;
    let mut m = Model {
        alloc: &alloc,
        seg: &seg,
        live: BTreeMap::new(),
        next_tag: 0,
        heap_pages: start.heap_bytes / PAGE_SIZE,
        largest,
    };
    for &op in ops {
        match op {
            Op::Alloc(s) => m.allocate(s.bytes(largest))?,
            Op::Free(i) => m.free(i)?,
            Op::Flush => alloc.flush_thread_cache(),
        }
        m.check()?;
    }
    while !m.live.is_empty() {
        m.free(0)?;
    }
    m.check()?;
    // After freeing everything, the whole heap is one run again.
    let all = alloc
        .allocate(largest)
        .map_err(|e| TestCaseError::fail(format!("the whole heap after freeing all: {e}")))?;
    alloc.free_full(all).unwrap();
    alloc.flush_thread_cache();
    let end = alloc.stats();
    prop_assert_eq!((end.used_bytes, end.live_blocks), (0, 0));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 40,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_sequences_match_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run_model(&ops)?;
    }
}

/// The two scenarios that used to fail, as fixed cases.
#[test]
fn known_sequences_match_the_model() {
    let mib = 1 << 20;
    // Freed runs below the top did not merge with the pages above it.
    run_model(&[
        Op::Alloc(Size::Large(mib)),
        Op::Alloc(Size::Large(2 * mib)),
        Op::Free(0),
        Op::Free(0),
        Op::Alloc(Size::NearFull { pages: 0, bytes: 0 }),
    ])
    .unwrap();
    // Pages carved for a size class never went back.
    run_model(&[
        Op::Alloc(Size::Small(5000)),
        Op::Alloc(Size::Small(24)),
        Op::Free(1),
        Op::Free(0),
        Op::Alloc(Size::NearFull { pages: 0, bytes: 0 }),
    ])
    .unwrap();
}

// ---- several processes ----------------------------------------------------------

const PROCS: u64 = 3;
const OPS: u64 = 4000;

/// Child role: random allocations (small, large, near the whole heap) and frees
/// with content checks, then frees everything and detaches.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_model_worker() {
    if !child_role("child_model_worker") {
        return;
    }
    let seg = Segment::attach(&env_str("CHI_SEG")).expect("attach");
    let alloc = Allocator::attach(&seg).expect("allocator");
    let largest = env_u64("CHI_LARGEST") as usize;
    let mut rng = Rng::new(env_u64("CHI_SEED"));
    let mut live: Vec<(ShmPtr, FullPtr<u8>, usize, u64)> = Vec::new();
    let (mut allocs, mut oom) = (0, 0);
    for op in 0..OPS {
        let r = rng.next_u64() % 100;
        if live.is_empty() || r < 50 {
            let size = match rng.next_u64() % 100 {
                0..3 => largest - rng.range(0, 3) as usize * PAGE_SIZE as usize,
                3..15 => rng.range(MAX_SMALL_SIZE as u64 + 1, 400_000) as usize,
                _ => rng.range(1, MAX_SMALL_SIZE as u64) as usize,
            };
            match alloc.allocate(size) {
                Ok(p) => {
                    let tag = (env_u64("CHI_SEED") << 32) | op;
                    // SAFETY: a fresh allocation of `size` bytes.
                    unsafe { fill(p.as_ptr(), size, tag) };
                    live.push((p.shm(), p, size, tag));
                    allocs += 1;
                }
                // Other processes hold the rest of the heap.
                Err(AllocError::OutOfMemory { .. }) => oom += 1,
                Err(e) => panic!("allocate({size}): {e}"),
            }
        } else {
            let i = rng.next_u64() as usize % live.len();
            let (shm, p, size, tag) = live.swap_remove(i);
            // SAFETY: our live block of `size` bytes.
            unsafe { check(p.as_ptr(), size, tag) }.unwrap_or_else(|e| panic!("{shm}: {e}"));
            alloc
                .free(shm)
                .unwrap_or_else(|e| panic!("free {shm}: {e}"));
        }
        if r == 99 {
            alloc.flush_thread_cache();
        }
    }
    for (shm, p, size, tag) in live {
        // SAFETY: our live block of `size` bytes.
        unsafe { check(p.as_ptr(), size, tag) }.unwrap_or_else(|e| panic!("{shm}: {e}"));
        alloc.free(shm).unwrap();
    }
    drop(alloc);
    println!("{allocs} allocations, {oom} out of memory");
}

#[test]
fn processes_allocate_and_free_at_random_and_leave_the_segment_whole() {
    let (name, seg) = new_segment("alloc_model_mp", 8 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let empty = alloc.stats();
    let largest = (empty.heap_bytes - HEADER) as usize;
    let mut children = Children::new();
    for p in 0..PROCS {
        children.spawn(
            "child_model_worker",
            &format!("model worker {p}"),
            &[
                ("CHI_SEG", name.as_str().to_owned()),
                ("CHI_SEED", (p + 1).to_string()),
                ("CHI_LARGEST", largest.to_string()),
            ],
        );
    }
    children.wait_all(WATCHDOG);
    for p in 0..PROCS as usize {
        eprintln!("worker {p}: {}", children.output(p).trim());
    }
    let st = alloc.stats();
    assert_eq!((st.used_bytes, st.live_blocks), (0, 0), "{st:?}");
    assert!(alloc.dead_owners().is_empty(), "every worker detached");
    let all = alloc
        .allocate(largest)
        .expect("the whole heap after every process freed everything");
    alloc.free_full(all).unwrap();
    alloc.flush_thread_cache();
    assert_eq!(alloc.stats(), empty);
}
