//! The allocator's errors in one process: out of memory, a full owner table,
//! double and garbage frees — each an error, none a panic or damage.
#![cfg(not(loom))]
// A client of the crate: its own atomics are the standard ones.
#![allow(clippy::disallowed_types)]

mod support;

use chi_shm::shm::alloc::{MAX_ALIGN, MAX_OWNERS, PAGE_SIZE};
use chi_shm::shm::{AllocError, Allocator, FreeError, FullPtr, Segment, SegmentId, ShmPtr};
use support::patterns::*;
use support::{fresh_id, new_segment};

// ---- single-process error cases -----------------------------------------------------

#[test]
fn out_of_memory_is_an_error_not_a_panic() {
    let (_name, seg) = new_segment("alloc_oom", Segment::min_size() + 3 * PAGE_SIZE);
    let alloc = Allocator::attach(&seg).unwrap();
    let st = alloc.stats();
    let pages = st.heap_bytes / PAGE_SIZE;
    assert!(pages >= 2, "{st:?}");
    assert_eq!(st.free_pages, pages);
    let id = seg.id();
    let is_oom = |r: Result<FullPtr<u8>, AllocError>, requested: usize| match r {
        Err(AllocError::OutOfMemory {
            segment,
            requested: got,
            ..
        }) => {
            assert_eq!(segment, id);
            assert_eq!(got, requested);
        }
        other => panic!("allocate({requested}): expected OutOfMemory, got {other:?}"),
    };

    // Larger than the heap, and absurd sizes.
    is_oom(
        alloc.allocate(st.heap_bytes as usize),
        st.heap_bytes as usize,
    );
    is_oom(alloc.allocate(usize::MAX), usize::MAX);
    is_oom(alloc.allocate(usize::MAX - 8), usize::MAX - 8);
    is_oom(alloc.allocate_aligned(1 << 40, MAX_ALIGN), 1 << 40);
    let msg = alloc.allocate(usize::MAX).unwrap_err().to_string();
    assert!(msg.contains("out of shared memory"), "{msg}");
    // Unsupported alignments.
    for align in [0, 3, 24, MAX_ALIGN * 2] {
        assert_eq!(
            alloc.allocate_aligned(16, align).unwrap_err(),
            AllocError::UnsupportedAlign { align }
        );
    }

    // Fill the heap with one-page runs: the next one is refused, a freed one is reused.
    let one_page = PAGE_SIZE as usize - 16;
    let mut runs = Vec::new();
    loop {
        match alloc.allocate(one_page) {
            Ok(p) => runs.push(p),
            Err(AllocError::OutOfMemory { .. }) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(runs.len() as u64 <= pages, "more runs than pages");
    }
    assert_eq!(runs.len() as u64, pages);
    assert_eq!(alloc.stats().free_pages, 0);
    is_oom(alloc.allocate(16), 16);
    let freed = runs.pop().unwrap();
    alloc.free_full(freed).unwrap();
    let again = alloc.allocate(one_page).unwrap();
    assert_eq!(again.shm(), freed.shm(), "the freed run is reused");
    runs.push(again);
    for p in runs.drain(..) {
        alloc.free_full(p).unwrap();
    }
    assert_eq!(alloc.stats().free_pages, pages);

    // Fill the heap with small blocks of one class until it runs out.
    let mut small = Vec::new();
    loop {
        match alloc.allocate(1000) {
            Ok(p) => {
                // SAFETY: fresh allocation of 1000 bytes.
                unsafe { fill(p.as_ptr(), 1000, small.len() as u64) };
                small.push(p);
            }
            Err(AllocError::OutOfMemory { .. }) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(
            small.len() as u64 <= pages * PAGE_SIZE / 1000,
            "too many blocks"
        );
    }
    assert!(
        small.len() as u64 >= pages * (PAGE_SIZE / 1024),
        "{} blocks",
        small.len()
    );
    // Every page is carved: other classes and large sizes fail too.
    is_oom(alloc.allocate(40), 40);
    is_oom(alloc.allocate(100_000), 100_000);
    for (i, p) in small.iter().enumerate() {
        // SAFETY: our live allocations of 1000 bytes.
        unsafe { check(p.as_ptr(), 1000, i as u64) }.unwrap();
    }
    let n = small.len();
    for p in small.drain(..) {
        alloc.free_full(p).unwrap();
    }
    // Freed blocks serve the same class again.
    for _ in 0..n {
        small.push(alloc.allocate(1000).unwrap());
    }
    for p in small {
        alloc.free_full(p).unwrap();
    }
    let end = alloc.stats();
    assert_eq!(
        (end.used_bytes, end.live_blocks),
        (st.used_bytes, st.live_blocks)
    );
}

#[test]
fn owner_table_full_is_an_error() {
    let (_name, seg) = new_segment("alloc_owners", 4 << 20);
    let first = Allocator::attach(&seg).unwrap();
    let mut handles = vec![];
    loop {
        match Allocator::attach(&seg) {
            Ok(a) => handles.push(a),
            Err(AllocError::OwnerTableFull { segment }) => {
                assert_eq!(segment, seg.id());
                break;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(handles.len() < MAX_OWNERS, "more owners than slots");
    }
    assert_eq!(handles.len() + 1, MAX_OWNERS);
    // A slot given back is taken again.
    let freed_owner = handles.pop().unwrap().owner();
    let again = Allocator::attach(&seg).unwrap();
    assert_eq!(again.owner(), freed_owner);
    // Clones share the owner slot.
    assert_eq!(first.clone().owner(), first.owner());
}

#[test]
fn double_and_garbage_frees_are_refused_without_damage() {
    let (_name, seg) = new_segment("alloc_badfree", 8 << 20);
    let (_other_name, other) = new_segment("alloc_badfree_other", 4 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let other_alloc = Allocator::attach(&other).unwrap();
    let small = alloc.allocate(100).unwrap();
    let large = alloc.allocate(3 * PAGE_SIZE as usize).unwrap();
    let aligned = alloc.allocate_aligned(5000, 4096).unwrap();
    assert!(aligned.shm().offset().is_multiple_of(4096));
    // A small block on a page carved after the large runs (not the heap's first page).
    let late = alloc.allocate(3000).unwrap();
    let late_page = late.shm().offset() & !(PAGE_SIZE - 1);
    assert!(late_page > small.shm().offset());
    // SAFETY: fresh allocations of (at least) these sizes.
    unsafe {
        fill(small.as_ptr(), 100, 1);
        fill(large.as_ptr(), 3 * PAGE_SIZE as usize, 2);
        fill(aligned.as_ptr(), 5000, 3);
    }
    let before = alloc.stats();
    let not_allocated = |p: ShmPtr| {
        assert_eq!(
            alloc.free(p),
            Err(FreeError::NotAllocated { ptr: p }),
            "free({p})"
        );
        assert_eq!(alloc.owner_of(p), Err(FreeError::NotAllocated { ptr: p }));
    };

    // Garbage inside the segment.
    let size = seg.size();
    for off in [
        0,
        8,
        16,
        4096,
        small.shm().offset() + 1,
        small.shm().offset() + 8,
        small.shm().offset() + 16,
        small.shm().offset() - 16,
        late_page,
        late.shm().offset() - 16,
        late.shm().offset() + 3000,
        large.shm().offset() + 16,
        large.shm().offset() + PAGE_SIZE,
        aligned.shm().offset() - 16,
        aligned.shm().offset() + 4096,
        size - 16,
        size,
        size + PAGE_SIZE,
        ShmPtr::MAX_OFFSET & !15,
        ShmPtr::MAX_OFFSET,
    ] {
        not_allocated(seg.ptr_at(off));
        assert!(
            alloc.usable_size(seg.ptr_at(off)).is_err(),
            "usable_size({off:#x})"
        );
    }
    // A free block in our thread cache (a neighbour of `late` on its fresh page).
    let neighbour = late.shm().byte_add(3072).unwrap();
    not_allocated(neighbour);
    // Pointers of another segment, or none.
    for p in [
        ShmPtr::NULL,
        other.ptr_at(small.shm().offset()),
        ShmPtr::new(fresh_id(), small.shm().offset()),
        ShmPtr::new(SegmentId::MAX, 4096),
    ] {
        assert_eq!(
            alloc.free(p),
            Err(FreeError::WrongSegment {
                ptr: p,
                segment: seg.id()
            })
        );
    }
    // A block of this segment freed through another segment's allocator.
    assert_eq!(
        other_alloc.free(small.shm()),
        Err(FreeError::WrongSegment {
            ptr: small.shm(),
            segment: other.id()
        })
    );
    // Nothing changed, nothing was overwritten.
    assert_eq!(alloc.stats(), before);
    // SAFETY: still our live allocations.
    unsafe {
        check(small.as_ptr(), 100, 1).unwrap();
        check(large.as_ptr(), 3 * PAGE_SIZE as usize, 2).unwrap();
        check(aligned.as_ptr(), 5000, 3).unwrap();
    }

    // Double frees, small and large.
    for p in [small, large, aligned] {
        alloc.free_full(p).unwrap();
        not_allocated(p.shm());
        assert_eq!(
            alloc.free(p.shm()),
            Err(FreeError::NotAllocated { ptr: p.shm() })
        );
    }
    let msg = alloc.free(small.shm()).unwrap_err().to_string();
    assert!(msg.contains("double free"), "{msg}");
    let end = alloc.stats();
    assert_eq!(end.live_blocks, before.live_blocks - 3);
    alloc.free_full(late).unwrap();
    // The allocator still works.
    let p = alloc.allocate(100).unwrap();
    alloc.free_full(p).unwrap();
    let end = alloc.stats();
    assert_eq!((end.used_bytes, end.live_blocks), (0, 0));
}
