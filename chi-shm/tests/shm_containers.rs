//! `ShmString` / `ShmVec`: shared between processes, growth, freeing, and
//! validation of what another process may have written (invalid UTF-8,
//! garbage lengths and pointers).
#![cfg(not(loom))]
// A client of the crate: its own atomics are the standard ones, which its
// shared-memory records hold (the facade rule of clippy.toml is for the library).
#![allow(clippy::disallowed_types)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use chi_shm::shm::{
    AllocError, Allocator, FreeError, FullPtr, Segment, SegmentId, ShmError, ShmPtr, ShmSafe,
    ShmString, ShmVec,
};
use support::{Children, WATCHDOG, child_role, env_str, fresh_id, new_segment};

const TEXT: &str = "héllo, wörld ✓ — ｓｈａｒｅｄ";
const N_PARENT: u64 = 10_000;
const N_CHILD: u64 = 5_000;
const N_ITEMS: usize = 100;

/// The containers the parent shares with the child, at root 0 of the segment.
#[repr(C)]
struct Shared {
    text: ShmString,
    numbers: ShmVec<u64>,
    items: ShmVec<ShmString>,
    corrupt_me: ShmVec<u32>,
    child_done: AtomicU64,
}

// SAFETY: repr(C) of ShmSafe fields only.
unsafe impl ShmSafe for Shared {}

/// Child role: reads everything the parent wrote, then grows and changes it with
/// its own allocator, and writes garbage into one vector's fields.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_container_peer() {
    if !child_role("child_container_peer") {
        return;
    }
    let seg = Segment::attach(&env_str("CHI_SEG")).expect("attach");
    let alloc = Allocator::attach(&seg).expect("allocator");
    let mut shared = seg.root(0).unwrap().resolve::<Shared>().unwrap();
    // SAFETY: the parent initialised the object before starting us and does not
    // touch it until we exit.
    let shared = unsafe { shared.as_mut() };

    assert_eq!(shared.text.to_str().unwrap(), TEXT);
    assert_eq!(shared.text.len(), TEXT.len());
    let numbers = shared.numbers.as_slice().unwrap();
    assert_eq!(numbers.len() as u64, N_PARENT);
    assert!(numbers.iter().enumerate().all(|(i, &n)| n == i as u64 * 3));
    let items = shared.items.as_slice().unwrap();
    assert_eq!(items.len(), N_ITEMS);
    for (i, s) in items.iter().enumerate() {
        assert_eq!(s.to_str().unwrap(), format!("item {i}"));
    }

    // Grow and change, allocating (and freeing the parent's old storage) here.
    for i in N_PARENT..N_PARENT + N_CHILD {
        shared.numbers.push(&alloc, i * 3).unwrap();
    }
    let longer = format!("{TEXT} / changed by process {}", std::process::id());
    shared.text.set(&alloc, &longer).unwrap();
    let extra = ShmString::from_str(&alloc, "added by the child").unwrap();
    shared.items.push(&alloc, extra).unwrap();
    // Garbage in a vector's fields: data in no segment, a huge length.
    // SAFETY: ShmVec is repr(C) { data: ShmPtr, len: u64, cap: u64 }; we write
    // plain words into our exclusive borrow.
    unsafe {
        let words = (&mut shared.corrupt_me as *mut ShmVec<u32>).cast::<u64>();
        words.write(ShmPtr::new(SegmentId(SegmentId::MAX.0), 64).to_bits());
        words.add(1).write(1 << 40);
    }
    shared.child_done.store(1, Ordering::Release);
}

#[test]
fn containers_are_shared_grown_and_freed_across_processes() {
    let (name, seg) = new_segment("containers_two_procs", 16 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let baseline = alloc.stats();

    let mut numbers = ShmVec::new();
    for i in 0..N_PARENT {
        numbers.push(&alloc, i * 3).unwrap();
    }
    let mut items = ShmVec::with_capacity(&alloc, 4).unwrap();
    for i in 0..N_ITEMS {
        items
            .push(
                &alloc,
                ShmString::from_str(&alloc, &format!("item {i}")).unwrap(),
            )
            .unwrap();
    }
    let corrupt_me = ShmVec::from_slice(&alloc, &[1u32, 2, 3]).unwrap();
    let corrupt_storage = corrupt_me.data();
    let mut shared = alloc
        .new_obj(Shared {
            text: ShmString::from_str(&alloc, TEXT).unwrap(),
            numbers,
            items,
            corrupt_me,
            child_done: AtomicU64::new(0),
        })
        .unwrap();
    seg.set_root(0, shared.shm());

    let mut children = Children::new();
    let child = children.spawn(
        "child_container_peer",
        "peer",
        &[("CHI_SEG", name.as_str().to_owned())],
    );
    children.wait_for(child, WATCHDOG);
    // SAFETY: our allocation; the child has exited.
    let s = unsafe { shared.as_mut() };
    assert_eq!(s.child_done.load(Ordering::Acquire), 1);

    // What the child wrote is visible here.
    let text = s.text.to_str().unwrap();
    assert!(
        text.starts_with(TEXT) && text.contains("changed by process"),
        "{text}"
    );
    let numbers = s.numbers.as_slice().unwrap();
    assert_eq!(numbers.len() as u64, N_PARENT + N_CHILD);
    assert!(numbers.iter().enumerate().all(|(i, &n)| n == i as u64 * 3));
    assert!(s.numbers.capacity() >= numbers.len());
    assert_eq!(s.items.len(), N_ITEMS + 1);
    assert_eq!(
        s.items.get(N_ITEMS).unwrap().unwrap().to_str().unwrap(),
        "added by the child"
    );
    // The garbage the child wrote is an error here, not a crash.
    assert_eq!(s.corrupt_me.len() as u64, 1 << 40);
    assert!(matches!(
        s.corrupt_me.as_slice(),
        Err(ShmError::UnknownSegment { .. })
    ));
    assert!(s.corrupt_me.get(0).is_err());

    // Free everything, including what the child allocated: back to the baseline.
    for item in s.items.as_mut_slice().unwrap() {
        item.free(&alloc).unwrap();
    }
    s.items.free(&alloc).unwrap();
    s.numbers.free(&alloc).unwrap();
    s.text.free(&alloc).unwrap();
    assert!(matches!(
        s.corrupt_me.free(&alloc),
        Err(FreeError::WrongSegment { .. })
    ));
    assert!(s.corrupt_me.is_empty() && s.corrupt_me.data().is_null());
    alloc.free(corrupt_storage).unwrap();
    alloc.free_full(shared).unwrap();
    let end = alloc.stats();
    assert_eq!(
        (end.used_bytes, end.live_blocks),
        (baseline.used_bytes, baseline.live_blocks),
        "memory not returned: {end:?} vs {baseline:?}"
    );
}

#[test]
fn vectors_grow_and_free_returns_memory() {
    let (_name, seg) = new_segment("containers_growth", 16 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let baseline = alloc.stats();

    let mut v: ShmVec<u64> = ShmVec::new();
    assert!(v.is_empty() && v.data().is_null() && v.capacity() == 0);
    assert_eq!(v.as_slice().unwrap(), &[] as &[u64]);
    assert_eq!(v.get(0).unwrap(), None);
    let mut reallocations = 0;
    let mut last_data = v.data();
    // 100,000 u64s: grows from small blocks into large page runs.
    for i in 0..100_000u64 {
        v.push(&alloc, i).unwrap();
        if v.data() != last_data {
            reallocations += 1;
            last_data = v.data();
        }
        assert!(v.capacity() >= v.len());
    }
    assert!(
        reallocations <= 20,
        "{reallocations} reallocations: growth is not geometric"
    );
    assert_eq!(v.len(), 100_000);
    assert!(
        v.as_slice()
            .unwrap()
            .iter()
            .enumerate()
            .all(|(i, &x)| x == i as u64)
    );
    assert_eq!(v.get(99_999).unwrap(), Some(&99_999));
    assert_eq!(v.get(100_000).unwrap(), None);
    // One live block for the storage, whatever the growth did.
    assert_eq!(alloc.stats().live_blocks, baseline.live_blocks + 1);
    for x in v.as_mut_slice().unwrap() {
        *x *= 2;
    }
    assert_eq!(v.get(7).unwrap(), Some(&14));
    v.extend_from_slice(&alloc, &[1, 2, 3]).unwrap();
    assert_eq!(&v.as_slice().unwrap()[100_000..], &[1, 2, 3]);
    // clear keeps the storage; reserve within capacity does not move it.
    let (data, cap) = (v.data(), v.capacity());
    v.clear();
    assert!(v.is_empty());
    assert_eq!((v.data(), v.capacity()), (data, cap));
    v.reserve(&alloc, cap).unwrap();
    assert_eq!(v.data(), data);
    v.reserve(&alloc, cap + 1).unwrap();
    assert_ne!(v.data(), data);
    assert!(v.capacity() > cap);
    v.free(&alloc).unwrap();
    assert!(v.is_empty() && v.data().is_null() && v.capacity() == 0);
    v.free(&alloc).unwrap(); // freeing an empty vector is a no-op
    assert_eq!(alloc.stats().used_bytes, baseline.used_bytes);

    // Strings: set reuses storage that is large enough, grows otherwise.
    let mut s = ShmString::from_str(&alloc, "0123456789abcdef").unwrap();
    let data = s.data();
    s.set(&alloc, "short").unwrap();
    assert_eq!((s.to_str().unwrap(), s.data()), ("short", data));
    s.set(&alloc, &"long ".repeat(1000)).unwrap();
    assert_eq!(s.len(), 5000);
    assert_ne!(s.data(), data);
    assert_eq!(format!("{s:?}").len(), 5000 + "ShmString(\"\")".len());
    s.free(&alloc).unwrap();
    let empty = ShmString::from_str(&alloc, "").unwrap();
    assert!(empty.is_empty() && empty.data().is_null());
    assert_eq!(empty.to_str().unwrap(), "");
    assert_eq!(ShmString::new().to_str().unwrap(), "");

    // Vectors of other element types, including zero-sized ones.
    let mut bytes = ShmVec::from_slice(&alloc, b"abc").unwrap();
    bytes.extend_from_slice(&alloc, &[]).unwrap();
    assert_eq!(bytes.as_slice().unwrap(), b"abc");
    let mut units: ShmVec<()> = ShmVec::new();
    for _ in 0..10 {
        units.push(&alloc, ()).unwrap();
    }
    assert_eq!(units.as_slice().unwrap().len(), 10);
    let mut wide = ShmVec::with_capacity(&alloc, 3).unwrap();
    wide.push(&alloc, [7u128; 3]).unwrap();
    assert!(wide.data().offset().is_multiple_of(16));
    bytes.free(&alloc).unwrap();
    units.free(&alloc).unwrap();
    wide.free(&alloc).unwrap();

    // Out of memory while growing is an error, and the vector is unchanged.
    let mut huge: ShmVec<u64> = ShmVec::from_slice(&alloc, &[1, 2, 3]).unwrap();
    assert!(matches!(
        huge.reserve(&alloc, 1 << 40),
        Err(AllocError::OutOfMemory { .. })
    ));
    assert!(matches!(
        huge.reserve(&alloc, usize::MAX),
        Err(AllocError::OutOfMemory { .. })
    ));
    assert_eq!(huge.as_slice().unwrap(), &[1, 2, 3]);
    huge.free(&alloc).unwrap();

    let end = alloc.stats();
    assert_eq!(
        (end.used_bytes, end.live_blocks),
        (baseline.used_bytes, baseline.live_blocks)
    );
}

/// Writes `data`, `len` and `cap` into the fields of the vector at `v`.
fn set_fields<T: ShmSafe>(v: FullPtr<ShmVec<T>>, data: ShmPtr, len: u64, cap: u64) {
    // SAFETY: ShmVec is repr(C) { data: ShmPtr, len: u64, cap: u64 }, and the test
    // holds no reference to it while writing.
    unsafe {
        let w = v.as_ptr().cast::<u64>();
        w.write(data.to_bits());
        w.add(1).write(len);
        w.add(2).write(cap);
    }
}

#[test]
fn invalid_utf8_is_detected() {
    let (_name, seg) = new_segment("containers_utf8", 4 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let mut s = alloc
        .new_obj(ShmString::from_str(&alloc, "valid é").unwrap())
        .unwrap();
    let data = {
        // SAFETY: our string, not shared.
        let s = unsafe { s.as_ref() };
        assert_eq!(s.to_str().unwrap(), "valid é");
        s.data()
    };
    let bytes = data.resolve_slice::<u8>(8).unwrap();
    // SAFETY: the string's 8 bytes of storage; no reference to them is alive.
    unsafe { bytes.as_ptr().add(1).write(0xFF) };
    {
        // SAFETY: our string.
        let s = unsafe { s.as_ref() };
        match s.to_str() {
            Err(ShmError::InvalidUtf8 { ptr }) => assert_eq!(ptr, data),
            other => panic!("expected InvalidUtf8, got {other:?}"),
        }
        assert_eq!(s.as_bytes().unwrap()[1], 0xFF);
        assert!(format!("{s:?}").contains("UTF-8"));
    }
    // SAFETY: as above.
    unsafe { bytes.as_ptr().add(1).write(b'a') };
    // A length that cuts "é" in half.
    set_fields(s.cast::<ShmVec<u8>>(), data, 7, 8);
    // SAFETY: our string; no reference to it is alive.
    let cut = unsafe { s.as_ref() };
    assert!(matches!(cut.to_str(), Err(ShmError::InvalidUtf8 { .. })));
    set_fields(s.cast::<ShmVec<u8>>(), data, 8, 8);
    // SAFETY: our string.
    assert_eq!(unsafe { s.as_ref() }.to_str().unwrap(), "valid é");
    // SAFETY: our string.
    unsafe { s.as_mut() }.free(&alloc).unwrap();
    alloc.free_full(s).unwrap();
    assert_eq!(alloc.stats().live_blocks, 0);
}

#[test]
fn corrupted_fields_give_errors_not_crashes() {
    let (_name, seg) = new_segment("containers_corrupt", 4 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let size = seg.size();
    let real = ShmVec::from_slice(&alloc, &[10u64, 20, 30, 40]).unwrap();
    let data = real.data();
    let v = alloc.new_obj(real).unwrap();
    let s = alloc
        .new_obj(ShmString::from_str(&alloc, "text").unwrap())
        .unwrap();
    let s_data = {
        // SAFETY: our string.
        unsafe { s.as_ref() }.data()
    };
    let unknown = fresh_id();

    // (what, data, len, whether it is also wrong for a string's bytes)
    let cases: Vec<(&str, ShmPtr, u64, bool)> = vec![
        ("huge len", data, u64::MAX, true),
        ("len past the segment", data, size / 8, true),
        ("len * 8 overflows", data, (1 << 61) + 1, true),
        ("null data", ShmPtr::NULL, 5, true),
        (
            "unmapped segment",
            ShmPtr::new(unknown, data.offset()),
            4,
            true,
        ),
        ("misaligned data", data.byte_add(4).unwrap(), 2, false),
        ("data past the end", seg.ptr_at(size + 64), 1, true),
        ("data at the end", seg.ptr_at(size - 8), 2, true),
        (
            "data at max offset",
            seg.ptr_at(ShmPtr::MAX_OFFSET & !7),
            1,
            true,
        ),
    ];
    for (what, d, len, string_too) in cases {
        set_fields(v, d, len, len);
        // SAFETY: our vector; any field values are a valid ShmVec (ShmSafe).
        let vec = unsafe { v.as_ref() };
        assert!(vec.as_slice().is_err(), "{what}: as_slice accepted it");
        assert!(vec.get(0).is_err(), "{what}: get accepted it");
        assert!(!format!("{vec:?}").is_empty());
        if !string_too {
            continue;
        }
        set_fields(s.cast::<ShmVec<u8>>(), d, len.saturating_mul(8), len);
        // SAFETY: our string; any field values are a valid ShmString (ShmSafe).
        let st = unsafe { s.as_ref() };
        assert!(st.to_str().is_err(), "{what}: to_str accepted it");
        assert!(st.as_bytes().is_err(), "{what}: as_bytes accepted it");
        assert!(format!("{st:?}").contains('<'), "{what}: {st:?}");
    }

    // Growing a corrupted vector is an error (or stays inside the segment), never a
    // panic; data pointing elsewhere is never written through an overflowed index.
    for (what, len, cap) in [
        ("len and cap at the maximum", u64::MAX, u64::MAX),
        ("len * 8 overflows, cap claims room", 1 << 62, u64::MAX),
        ("len past the segment, cap claims room", size, u64::MAX),
        ("len above cap", 1 << 40, 4),
    ] {
        set_fields(v, data, len, cap);
        let mut vp = v;
        // SAFETY: our vector, no other reference alive.
        let vec = unsafe { vp.as_mut() };
        assert!(vec.push(&alloc, 1).is_err(), "{what}: push");
        set_fields(v, data, len, cap);
        // SAFETY: as above.
        let vec = unsafe { vp.as_mut() };
        assert!(
            vec.extend_from_slice(&alloc, &[1, 2]).is_err(),
            "{what}: extend"
        );
    }

    // Freeing a vector whose data is garbage is refused, not a crash.
    for (d, expect_wrong_segment) in [
        (ShmPtr::new(unknown, 64), true),
        (seg.ptr_at(8), false),
        (data.byte_add(16).unwrap(), false),
    ] {
        set_fields(v, d, 1, 1);
        let mut vp = v;
        // SAFETY: our vector.
        let r = unsafe { vp.as_mut() }.free(&alloc);
        match r {
            Err(FreeError::WrongSegment { .. }) if expect_wrong_segment => {}
            Err(FreeError::NotAllocated { .. }) if !expect_wrong_segment => {}
            other => panic!("free with data {d}: got {other:?}"),
        }
    }
    // The real storage is intact and still ours to free.
    let p = data.resolve_slice::<u64>(4).unwrap();
    // SAFETY: the vector's original storage of 4 u64s, still allocated.
    let got = unsafe { std::slice::from_raw_parts(p.as_ptr(), 4) };
    assert_eq!(got, &[10, 20, 30, 40]);
    alloc.free(data).unwrap();
    alloc.free(s_data).unwrap();
    alloc.free_full(v).unwrap();
    alloc.free_full(s).unwrap();
    assert_eq!(alloc.stats().live_blocks, 0);
}
