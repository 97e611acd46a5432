//! `ShmPtr` / `FullPtr`: layout, validation of untrusted pointers (never an
//! access outside the segment), and one pointer naming the same bytes in two
//! processes.
#![cfg(not(loom))]
// A client of the crate: its own atomics are the standard ones, which its
// shared-memory records hold (the facade rule of clippy.toml is for the library).
#![allow(clippy::disallowed_types)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use chi_shm::shm::{Allocator, FullPtr, Segment, SegmentId, ShmError, ShmPtr};
use support::{Children, Rng, WATCHDOG, child_role, env_str, fresh_id, new_segment};

#[test]
fn shm_ptr_is_one_word() {
    assert_eq!(size_of::<ShmPtr>(), 8);
    assert_eq!(align_of::<ShmPtr>(), 8);
    assert_eq!(size_of::<Option<FullPtr<u8>>>(), 16);
    assert_eq!(ShmPtr::default(), ShmPtr::NULL);
    assert!(ShmPtr::NULL.is_null());
    assert_eq!(ShmPtr::NULL.to_bits(), 0);
    assert_eq!(ShmPtr::new(SegmentId::NULL, 0), ShmPtr::NULL);
    let p = ShmPtr::new(SegmentId(200), ShmPtr::MAX_OFFSET);
    assert_eq!((p.segment(), p.offset()), (SegmentId(200), (1 << 48) - 1));
    assert_eq!(p.to_bits(), (200 << 48) | ((1 << 48) - 1));
    assert_eq!(ShmPtr::from_bits(p.to_bits()), p);
    assert!(!ShmPtr::new(SegmentId(1), 0).is_null());
    assert!(!ShmPtr::new(SegmentId::NULL, 16).is_null());
    assert_eq!(format!("{}", ShmPtr::NULL), "ShmPtr(null)");
    assert_eq!(
        format!("{:?}", ShmPtr::new(SegmentId(3), 0x40)),
        "ShmPtr(3+0x40)"
    );
    // byte_add stays within 48 bits.
    let q = ShmPtr::new(SegmentId(1), ShmPtr::MAX_OFFSET - 16);
    assert_eq!(q.byte_add(16).unwrap().offset(), ShmPtr::MAX_OFFSET);
    assert!(matches!(q.byte_add(17), Err(ShmError::OutOfBounds { .. })));
    assert!(matches!(
        q.byte_add(u64::MAX),
        Err(ShmError::OutOfBounds { .. })
    ));
    assert_eq!(q.byte_add(0).unwrap(), q);
}

#[test]
fn garbage_pointers_are_rejected() {
    let (_name, seg) = new_segment("ptr_garbage", 1 << 20);
    let id = seg.id();
    let size = seg.size();
    let at = |off: u64| ShmPtr::new(id, off);
    let unknown = fresh_id(); // reserved for this test, never mapped

    // Null.
    assert!(matches!(ShmPtr::NULL.resolve::<u8>(), Err(ShmError::Null)));
    assert!(matches!(
        ShmPtr::NULL.resolve_slice::<u64>(4),
        Err(ShmError::Null)
    ));
    // Segments this process does not map.
    for p in [
        ShmPtr::new(unknown, 0),
        ShmPtr::new(unknown, 4096),
        ShmPtr::new(SegmentId::NULL, 64),
        // Ids past the segment table (it holds 256 slots), as a random word from
        // a client may carry: refused, not an index out of bounds.
        ShmPtr::new(SegmentId(256), 64),
        ShmPtr::new(SegmentId(u16::MAX), 0),
        ShmPtr::from_bits(u64::MAX),
    ] {
        match p.resolve::<u64>() {
            Err(ShmError::UnknownSegment { ptr }) => assert_eq!(ptr, p),
            other => panic!("{p}: expected UnknownSegment, got {other:?}"),
        }
        assert!(matches!(
            p.resolve_slice::<u8>(1),
            Err(ShmError::UnknownSegment { .. })
        ));
    }
    // Out of bounds.
    let oob = |r: Result<FullPtr<u8>, ShmError>, what: &str| {
        assert!(
            matches!(r, Err(ShmError::OutOfBounds { .. })),
            "{what}: expected OutOfBounds, got {r:?}"
        )
    };
    oob(at(size).resolve::<u8>(), "one past the end");
    oob(at(size + 4096).resolve::<u8>(), "beyond the end");
    oob(at(ShmPtr::MAX_OFFSET).resolve::<u8>(), "max offset");
    oob(
        at(size - 1).resolve::<u16>().map(|p| p.cast()),
        "u16 over the end",
    );
    oob(
        at(size - 7).resolve::<u64>().map(|p| p.cast()),
        "u64 over the end",
    );
    oob(
        at(size - 8).resolve_slice::<u64>(2).map(|p| p.cast()),
        "2 u64s over the end",
    );
    oob(
        at(0).resolve_slice::<u8>(size + 1),
        "slice one longer than the segment",
    );
    oob(at(1).resolve_slice::<u8>(size), "slice shifted by one");
    oob(
        at(8).resolve_slice::<u8>(u64::MAX),
        "offset + len overflows",
    );
    oob(
        at(ShmPtr::MAX_OFFSET).resolve_slice::<u8>(u64::MAX),
        "both huge",
    );
    oob(
        at(8).resolve_slice::<u64>(u64::MAX / 4).map(|p| p.cast()),
        "len * size overflows",
    );
    oob(
        at(8).resolve_slice::<[u8; 4096]>(1 << 60).map(|p| p.cast()),
        "len * size overflows",
    );
    match at(size).resolve::<u64>() {
        Err(ShmError::OutOfBounds { ptr, len }) => assert_eq!((ptr, len), (at(size), 8)),
        other => panic!("expected OutOfBounds, got {other:?}"),
    }
    // Misaligned.
    for (off, r) in [
        (1, at(1).resolve::<u64>().map(|_| ())),
        (4, at(4).resolve::<AtomicU64>().map(|_| ())),
        (2, at(2).resolve::<u32>().map(|_| ())),
        (12, at(12).resolve_slice::<u64>(3).map(|_| ())),
        (size - 9, at(size - 9).resolve::<u64>().map(|_| ())),
    ] {
        match r {
            Err(ShmError::Misaligned { ptr, align }) => {
                assert_eq!(ptr, at(off));
                assert!(align > 1);
            }
            other => panic!("offset {off}: expected Misaligned, got {other:?}"),
        }
    }
    // The edges that are valid.
    let base = seg.base() as usize;
    assert_eq!(at(0).resolve::<u64>().unwrap().as_ptr() as usize, base);
    assert_eq!(
        at(size - 1).resolve::<u8>().unwrap().as_ptr() as usize,
        base + size as usize - 1
    );
    assert_eq!(
        at(size - 8).resolve::<u64>().unwrap().as_ptr() as usize,
        base + size as usize - 8
    );
    assert!(at(0).resolve_slice::<u8>(size).is_ok());
    assert!(
        at(size).resolve_slice::<u8>(0).is_ok(),
        "an empty run at the end touches nothing"
    );

    // Once the segment is unmapped, its pointers name an unknown segment.
    let p = at(4096);
    assert!(p.resolve::<u64>().is_ok());
    drop(seg);
    assert!(matches!(
        p.resolve::<u64>(),
        Err(ShmError::UnknownSegment { .. })
    ));
}

#[test]
fn random_pointers_never_resolve_outside_the_segment() {
    let (_name, seg) = new_segment("ptr_fuzz", 1 << 20);
    let id = seg.id();
    let size = seg.size();
    let base = seg.base() as usize;
    let end = base + size as usize;
    let unknown = fresh_id();
    let mut rng = Rng::new(42);
    let (mut ok, mut refused) = (0u64, 0u64);
    for _ in 0..50_000 {
        let segment = match rng.next_u64() % 8 {
            0 => unknown,
            1 => SegmentId::NULL,
            2 => SegmentId(rng.range(256, u16::MAX as u64) as u16),
            _ => id,
        };
        let offset = match rng.next_u64() % 4 {
            0 => rng.next_u64() & ShmPtr::MAX_OFFSET,
            1 => rng.range(size.saturating_sub(64), size + 64),
            2 => rng.range(0, 64),
            _ => rng.range(0, size + 65536),
        };
        let len = match rng.next_u64() % 5 {
            0 => rng.range(0, 16),
            1 => rng.range(0, size),
            2 => rng.next_u64(),
            3 => u64::MAX - rng.range(0, 16),
            _ => rng.range(0, 4096),
        };
        let p = ShmPtr::new(segment, offset);
        // (address, bytes of the run, alignment) of three ways to resolve `p`.
        for (r, align) in [
            (
                p.resolve_slice::<u8>(len)
                    .map(|f| (f.as_ptr() as usize, len)),
                1,
            ),
            (
                p.resolve_slice::<u64>(len)
                    .map(|f| (f.as_ptr() as usize, len * 8)),
                8,
            ),
            (p.resolve::<u64>().map(|f| (f.as_ptr() as usize, 8)), 8),
        ] {
            let Ok((addr, bytes)) = r else {
                refused += 1;
                continue;
            };
            ok += 1;
            assert_eq!(segment, id, "{p} resolved in a segment that is not mapped");
            assert_eq!((addr - base) as u64, offset, "{p}: address does not match");
            assert!(addr.is_multiple_of(align), "{p}: misaligned address");
            assert!(
                offset + bytes <= size,
                "{p} + {bytes} bytes accepted beyond the segment's {size}"
            );
            if bytes > 0 {
                // SAFETY: checked above: the run lies inside this process's mapping.
                unsafe {
                    std::ptr::read_volatile(addr as *const u8);
                    std::ptr::read_volatile((addr + bytes as usize - 1) as *const u8);
                }
            }
            assert!(addr + bytes as usize <= end);
        }
    }
    assert!(ok > 1000 && refused > 1000, "ok {ok}, refused {refused}");
}

// ---- the same bytes in two processes -------------------------------------------------

const BLOCK: usize = 4096;

/// Child role: reads the parent's half of a block, writes its own half, and hands
/// back a block of its own; checks a garbage pointer is refused here too.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_pointer_peer() {
    if !child_role("child_pointer_peer") {
        return;
    }
    let seg = Segment::attach(&env_str("CHI_SEG")).expect("attach");
    let alloc = Allocator::attach(&seg).expect("allocator");
    let block = seg.root(0).unwrap();
    let report = seg.root(1).unwrap().resolve::<[AtomicU64; 8]>().unwrap();
    // SAFETY: an array of atomics the parent allocated and keeps until we exit.
    let report = unsafe { report.as_ref() };
    let bytes = block
        .resolve_slice::<u8>(BLOCK as u64)
        .expect("resolve block");
    // SAFETY: the parent wrote the first half before starting us and does not
    // touch the block until we exit; the second half is ours to write.
    let (first, second) = unsafe {
        (
            std::slice::from_raw_parts(bytes.as_ptr(), BLOCK / 2),
            std::slice::from_raw_parts_mut(bytes.as_ptr().add(BLOCK / 2), BLOCK / 2),
        )
    };
    for (i, b) in first.iter().enumerate() {
        assert_eq!(*b, (i * 7) as u8, "byte {i} written by the parent");
    }
    for (i, b) in second.iter_mut().enumerate() {
        *b = (i * 13 + 1) as u8;
    }
    // Our own block, for the parent to read.
    let mine = alloc.allocate(64).unwrap();
    // SAFETY: fresh allocation of 64 bytes.
    unsafe { std::ptr::write_bytes(mine.as_ptr(), 0x5A, 64) };
    report[0].store(bytes.as_ptr() as u64 - seg.base() as u64, Ordering::Relaxed);
    report[1].store(seg.base() as u64, Ordering::Relaxed);
    report[2].store(mine.shm().to_bits(), Ordering::Relaxed);
    // A garbage pointer from the parent is refused here as well.
    let garbage = seg.root(2).unwrap();
    assert!(matches!(
        garbage.resolve::<u64>(),
        Err(ShmError::OutOfBounds { .. })
    ));
    report[3].store(1, Ordering::Release);
}

#[test]
fn one_pointer_names_the_same_bytes_in_two_processes() {
    let (name, seg) = new_segment("ptr_two_procs", 4 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let block = alloc.allocate(BLOCK).unwrap();
    // SAFETY: fresh allocation of BLOCK bytes; the child touches only the second
    // half while it runs.
    unsafe {
        for i in 0..BLOCK / 2 {
            block.as_ptr().add(i).write((i * 7) as u8);
        }
    }
    let report = alloc
        .new_obj::<[AtomicU64; 8]>(std::array::from_fn(|_| AtomicU64::new(0)))
        .unwrap();
    seg.set_root(0, block.shm());
    seg.set_root(1, report.shm());
    seg.set_root(2, seg.ptr_at(seg.size() - 4));
    let mut children = Children::new();
    let child = children.spawn(
        "child_pointer_peer",
        "peer",
        &[("CHI_SEG", name.as_str().to_owned())],
    );
    children.wait_for(child, WATCHDOG);
    // SAFETY: our allocation; the child has exited.
    let report = unsafe { report.as_ref() };
    assert_eq!(report[3].load(Ordering::Acquire), 1);
    // The child resolved the pointer to base + offset in its own address space.
    assert_eq!(report[0].load(Ordering::Relaxed), block.shm().offset());
    let child_base = report[1].load(Ordering::Relaxed);
    eprintln!(
        "segment mapped at {:#x} here and {child_base:#x} in the child",
        seg.base() as usize
    );
    // SAFETY: our allocation of BLOCK bytes; the child has exited.
    let bytes = unsafe { std::slice::from_raw_parts(block.as_ptr(), BLOCK) };
    for (i, b) in bytes[BLOCK / 2..].iter().enumerate() {
        assert_eq!(*b, (i * 13 + 1) as u8, "byte {i} of the child's half");
    }
    // The child's own block, read through its ShmPtr.
    let theirs = ShmPtr::from_bits(report[2].load(Ordering::Relaxed));
    assert_eq!(theirs.segment(), seg.id());
    let p = theirs.resolve_slice::<u8>(64).unwrap();
    // SAFETY: 64 bytes the child allocated and wrote before exiting.
    let got = unsafe { std::slice::from_raw_parts(p.as_ptr(), 64) };
    assert!(got.iter().all(|&b| b == 0x5A));
    alloc.free(theirs).unwrap();
    alloc.free_full(block).unwrap();
}
