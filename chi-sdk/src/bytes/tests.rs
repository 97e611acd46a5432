//! Buffers outside a runtime: saving, loading and copying through a
//! client-data segment registered in this process, and the borrow table.

use super::*;
use crate::shm::Segment;

/// A client-data segment and its allocator, registered for this test.
fn segment(name: &str, id: u16) -> (Segment, Allocator, registry::Registration) {
    let name = format!("chi_bytes_{}_{name}", std::process::id());
    let seg = Segment::create(&name, crate::shm::SegmentId(id), 1 << 20).unwrap();
    let alloc = Allocator::attach(&seg).unwrap();
    let reg = registry::register(&alloc);
    (seg, alloc, reg)
}

fn bytes_in(alloc: &Allocator, data: &[u8]) -> ClientBytes {
    let block = alloc.allocate(data.len()).unwrap();
    // SAFETY: a fresh block of `data.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), block.as_ptr(), data.len()) };
    ClientBytes {
        ptr: block.shm(),
        len: data.len() as u64,
    }
}

#[test]
fn bytes_travel_by_value_and_are_freed_once() {
    let (_seg, alloc, _reg) = segment("travel", 3001);
    let before = alloc.stats().live_blocks;
    let b = bytes_in(&alloc, b"hello, world");
    let mut out = Vec::new();
    b.save(&mut out).unwrap();
    // A loaded copy is a new block with the same bytes.
    let mut loaded = ClientBytes::EMPTY;
    loaded.load(&mut Reader::new(&out), &alloc).unwrap();
    assert_ne!(loaded.ptr, b.ptr);
    assert_eq!(loaded.len, 12);
    assert_eq!(saved(loaded.ptr, loaded.len).unwrap(), b"hello, world");
    let copy = b.deep_copy(&alloc).unwrap();
    assert_eq!(saved(copy.ptr, copy.len).unwrap(), b"hello, world");
    // Freed once: the field is emptied, a second free does nothing.
    for mut x in [b, loaded, copy] {
        x.free_shm(&alloc);
        assert_eq!(x, ClientBytes::EMPTY);
        x.free_shm(&alloc);
    }
    assert_eq!(alloc.stats().live_blocks, before);
}

#[test]
fn a_garbage_pointer_is_refused_when_saved() {
    let (_seg, alloc, _reg) = segment("garbage", 3002);
    let b = bytes_in(&alloc, &[7; 100]);
    // The middle of a block, a length past its end, another segment.
    let mid = ClientBytes {
        ptr: ShmPtr::new(b.ptr.segment(), b.ptr.offset() + 8),
        len: 8,
    };
    let long = ClientBytes {
        ptr: b.ptr,
        len: 1 << 20,
    };
    let elsewhere = ClientBytes {
        ptr: ShmPtr::new(crate::shm::SegmentId(3999), 4096),
        len: 8,
    };
    for bad in [mid, long, elsewhere] {
        let e = bad.save(&mut Vec::new()).unwrap_err();
        assert!(matches!(e, SerError::ClientData(_)), "{e}");
    }
    let mut b = b;
    b.free_shm(&alloc);
}

#[test]
fn text_that_is_not_utf8_is_refused_and_freed_on_load() {
    let (_seg, alloc, _reg) = segment("utf8", 3003);
    let before = alloc.stats().live_blocks;
    let b = bytes_in(&alloc, &[0xff, 0xfe, 0x41]);
    let mut out = Vec::new();
    b.save(&mut out).unwrap();
    let mut s = ClientStr::EMPTY;
    let e = s.load(&mut Reader::new(&out), &alloc).unwrap_err();
    assert!(matches!(e, SerError::InvalidUtf8 { .. }), "{e}");
    assert_eq!(s, ClientStr::EMPTY);
    let mut b = b;
    b.free_shm(&alloc);
    assert_eq!(alloc.stats().live_blocks, before);
}

#[test]
fn an_output_buffer_travels_as_its_written_bytes() {
    let (_seg, alloc, _reg) = segment("buf", 3004);
    let before = alloc.stats().live_blocks;
    let block = alloc.allocate(64).unwrap();
    // SAFETY: a fresh block of 64 bytes.
    unsafe { std::ptr::copy_nonoverlapping(b"abc".as_ptr(), block.as_ptr(), 3) };
    let buf = ClientBuf {
        ptr: block.shm(),
        cap: 64,
        len: 3,
    };
    let mut out = Vec::new();
    buf.save(&mut out).unwrap();
    assert_eq!(out.len(), 8 + 3, "the capacity does not travel");
    let mut back = ClientBuf::EMPTY;
    back.load(&mut Reader::new(&out), &alloc).unwrap();
    assert_eq!((back.capacity(), back.len()), (3, 3));
    assert_eq!(saved(back.ptr, 3).unwrap(), b"abc");
    // A length past the bytes sent is refused, allocating nothing.
    let mut bad = Vec::new();
    bad.extend_from_slice(&(1u64 << 40).to_le_bytes());
    bad.extend_from_slice(b"abc");
    let mut none = ClientBuf::EMPTY;
    assert!(none.load(&mut Reader::new(&bad), &alloc).is_err());
    for mut x in [buf, back] {
        x.free_shm(&alloc);
    }
    assert_eq!(alloc.stats().live_blocks, before);
}

#[test]
fn borrows_of_one_block_conflict_when_one_is_exclusive() {
    let p = ShmPtr::new(crate::shm::SegmentId(3005), 4096);
    access_borrow(p, false).unwrap();
    access_borrow(p, false).unwrap();
    assert!(access_borrow(p, true).is_err());
    access_release(p);
    access_release(p);
    access_borrow(p, true).unwrap();
    let e = access_borrow(p, false).unwrap_err();
    assert!(e.message.contains("in use"), "{}", e.message);
    access_release(p);
    access_borrow(p, false).unwrap();
    access_release(p);
}

fn access_borrow(p: ShmPtr, exclusive: bool) -> Result<(), crate::task::Failure> {
    access::borrow_for_test(p, exclusive)
}

fn access_release(p: ShmPtr) {
    access::release_for_test(p);
}

#[test]
fn a_borrowed_block_is_not_freed_with_its_task() {
    let (_seg, alloc, _reg) = segment("borrowed", 3006);
    let owned = bytes_in(&alloc, b"kept");
    let before = alloc.stats().live_blocks;
    let mut b = ClientBytes::borrow_block(owned.ptr, 4);
    assert_eq!((b.len(), b.is_owned()), (4, false));
    // It saves like an owned one; a loaded copy is owned.
    let mut out = Vec::new();
    b.save(&mut out).unwrap();
    let mut copy = ClientBytes::EMPTY;
    copy.load(&mut Reader::new(&out), &alloc).unwrap();
    assert!(copy.is_owned());
    copy.free_shm(&alloc);
    b.free_shm(&alloc);
    assert_eq!(
        alloc.stats().live_blocks,
        before,
        "the borrowed block stays"
    );
    let mut buf = ClientBuf::borrow_block(owned.ptr, 4);
    assert_eq!((buf.capacity(), buf.is_owned()), (4, false));
    buf.free_shm(&alloc);
    assert_eq!(alloc.stats().live_blocks, before);
    let mut owned = owned;
    owned.free_shm(&alloc);
    assert_eq!(alloc.stats().live_blocks, before - 1);
}
