//! Segments: every way attaching or creating can fail is a typed error naming the
//! segment; stale segments are replaced; who unlinks; file mode.
#![cfg(not(loom))]
// A client of the crate: its own atomics are the standard ones, which its
// shared-memory records hold (the facade rule of clippy.toml is for the library).
#![allow(clippy::disallowed_types)]

mod support;

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};

use chi_shm::shm::{
    LAYOUT_VERSION, NUM_ROOTS, SEGMENT_MAGIC, Segment, SegmentId, ShmError, ShmPtr,
};
use support::{Children, ShmName, WATCHDOG, child_role, env_str, env_u64, fresh_id, shm_file};

const SIZE: u64 = 1 << 20;

// Byte offsets of the `#[repr(C)]` segment header fields.
const OFF_MAGIC: u64 = 0;
const OFF_VERSION: u64 = 8;
const OFF_ID: u64 = 12;
const OFF_SIZE: u64 = 16;
const OFF_ALLOC: u64 = 32;

/// Creates a segment and leaves it behind unmapped (as a creator that died
/// would), so that the next `attach` in this process maps and validates it afresh.
fn create_and_abandon(name: &ShmName) -> (SegmentId, u64) {
    let mut seg = Segment::create(name.as_str(), fresh_id(), SIZE).unwrap();
    seg.disown();
    (seg.id(), seg.size())
}

/// Overwrites bytes of the segment's file.
fn patch_file(name: &ShmName, at: u64, bytes: &[u8]) {
    let f = OpenOptions::new()
        .write(true)
        .open(shm_file(name.as_str()))
        .unwrap();
    f.write_all_at(bytes, at).unwrap();
}

fn set_file_len(name: &ShmName, len: u64) {
    let f = OpenOptions::new()
        .write(true)
        .open(shm_file(name.as_str()))
        .unwrap();
    f.set_len(len).unwrap();
}

/// Checks that the error's message names the segment.
fn names(e: &ShmError, name: &str) {
    let msg = e.to_string();
    assert!(
        msg.contains(name),
        "error message does not name {name}: {msg}"
    );
}

#[test]
fn missing_segment_is_not_found() {
    let name = ShmName::new("seg_missing");
    assert!(!Segment::exists(name.as_str()));
    for r in [
        Segment::attach(name.as_str()),
        Segment::attach_expecting(name.as_str(), SIZE),
    ] {
        match r {
            Err(e @ ShmError::NotFound { .. }) => {
                let ShmError::NotFound { name: n } = &e else {
                    unreachable!()
                };
                assert_eq!(n, name.as_str());
                names(&e, name.as_str());
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    assert!(!Segment::unlink(name.as_str()).unwrap());
}

#[test]
fn foreign_file_is_wrong_magic() {
    let name = ShmName::new("seg_foreign");
    let mut garbage = vec![0u8; 64 << 10];
    let mut rng = support::Rng::new(3);
    for b in &mut garbage {
        *b = rng.next_u64() as u8;
    }
    std::fs::write(shm_file(name.as_str()), &garbage).unwrap();
    let found = u64::from_le_bytes(garbage[..8].try_into().unwrap());
    match Segment::attach(name.as_str()) {
        Err(e @ ShmError::WrongMagic { .. }) => {
            names(&e, name.as_str());
            let ShmError::WrongMagic {
                found: f,
                expected,
                name: n,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(
                (f, expected, n.as_str()),
                (found, SEGMENT_MAGIC, name.as_str())
            );
        }
        other => panic!("expected WrongMagic, got {other:?}"),
    }
    // A zero-filled file (a segment still being created) is not a segment yet.
    std::fs::write(shm_file(name.as_str()), vec![0u8; 8192]).unwrap();
    assert!(matches!(
        Segment::attach(name.as_str()),
        Err(ShmError::WrongMagic { found: 0, .. })
    ));
    // Shorter than a header: a size error, not a read past the end.
    for len in [0usize, 8, 100, 4095] {
        std::fs::write(shm_file(name.as_str()), &garbage[..len]).unwrap();
        match Segment::attach(name.as_str()) {
            Err(e @ ShmError::SizeMismatch { .. }) => {
                names(&e, name.as_str());
                assert!(matches!(e, ShmError::SizeMismatch { actual, .. } if actual == len as u64));
            }
            other => panic!("{len}-byte file: expected SizeMismatch, got {other:?}"),
        }
    }
    // The file is still there: attach never unlinks.
    assert!(Segment::exists(name.as_str()));
}

#[test]
fn wrong_layout_version_is_refused() {
    let name = ShmName::new("seg_version");
    let mut seg = Segment::create(name.as_str(), fresh_id(), SIZE).unwrap();
    // SAFETY: the header is #[repr(C)] with `layout_version: u32` at offset 8, inside
    // the mapping; nobody else maps the segment.
    unsafe {
        seg.base()
            .add(OFF_VERSION as usize)
            .cast::<u32>()
            .write_volatile(LAYOUT_VERSION + 1)
    };
    seg.disown();
    drop(seg);
    match Segment::attach(name.as_str()) {
        Err(e @ ShmError::WrongVersion { .. }) => {
            names(&e, name.as_str());
            let ShmError::WrongVersion {
                found, expected, ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!((found, expected), (LAYOUT_VERSION + 1, LAYOUT_VERSION));
        }
        other => panic!("expected WrongVersion, got {other:?}"),
    }
    // Restored, it attaches again.
    patch_file(&name, OFF_VERSION, &LAYOUT_VERSION.to_le_bytes());
    let seg = Segment::attach(name.as_str()).unwrap();
    assert!(!seg.owns_name());
}

#[test]
fn corrupted_header_fields_are_refused() {
    let name = ShmName::new("seg_header");
    let (id, size) = create_and_abandon(&name);
    let restore = || {
        patch_file(&name, OFF_MAGIC, &SEGMENT_MAGIC.to_le_bytes());
        patch_file(&name, OFF_ID, &id.0.to_le_bytes());
        patch_file(&name, OFF_SIZE, &size.to_le_bytes());
        patch_file(&name, OFF_ALLOC, &4096u64.to_le_bytes());
    };
    // Magic.
    patch_file(&name, OFF_MAGIC, b"CHIMSEG2");
    assert!(matches!(
        Segment::attach(name.as_str()),
        Err(ShmError::WrongMagic { .. })
    ));
    restore();
    // Size field disagrees with the file.
    patch_file(&name, OFF_SIZE, &(size * 2).to_le_bytes());
    match Segment::attach(name.as_str()) {
        Err(ShmError::SizeMismatch {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (size * 2, size)),
        other => panic!("expected SizeMismatch, got {other:?}"),
    }
    restore();
    // Allocator metadata out of place: refused, naming the segment and the reason.
    for bad in [0u64, 4097, size, u64::MAX - 8] {
        patch_file(&name, OFF_ALLOC, &bad.to_le_bytes());
        match Segment::attach(name.as_str()) {
            Err(e @ ShmError::WrongMagic { .. }) => {
                names(&e, name.as_str());
                assert!(e.to_string().contains("allocator"), "{e}");
            }
            other => panic!("alloc_offset {bad}: expected an error, got {other:?}"),
        }
    }
    restore();
    // An id out of range in the header.
    for bad in [0u16, SegmentId::MAX.0 + 1, u16::MAX] {
        patch_file(&name, OFF_ID, &bad.to_le_bytes());
        match Segment::attach(name.as_str()) {
            Err(e @ ShmError::InvalidId { .. }) => {
                names(&e, name.as_str());
                assert!(
                    matches!(e, ShmError::InvalidId { id, max: 4095, .. } if id == bad),
                    "{e:?}"
                );
            }
            other => panic!("id {bad}: expected InvalidId, got {other:?}"),
        }
    }
    restore();
    let seg = Segment::attach(name.as_str()).unwrap();
    assert_eq!((seg.id(), seg.size()), (id, size));
}

#[test]
fn size_mismatch_is_refused() {
    let name = ShmName::new("seg_size");
    let seg = Segment::create(name.as_str(), fresh_id(), SIZE).unwrap();
    assert_eq!(seg.size(), SIZE);
    // Through this process's existing mapping.
    assert_eq!(
        Segment::attach_expecting(name.as_str(), SIZE)
            .unwrap()
            .size(),
        SIZE
    );
    match Segment::attach_expecting(name.as_str(), SIZE + 4096) {
        Err(e @ ShmError::SizeMismatch { .. }) => {
            names(&e, name.as_str());
            assert!(matches!(
                e,
                ShmError::SizeMismatch { expected, actual, .. } if expected == SIZE + 4096 && actual == SIZE
            ));
        }
        other => panic!("expected SizeMismatch, got {other:?}"),
    }
    let mut seg = seg;
    seg.disown();
    drop(seg);
    // Through a fresh mapping.
    match Segment::attach_expecting(name.as_str(), SIZE / 2) {
        Err(ShmError::SizeMismatch {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (SIZE / 2, SIZE)),
        other => panic!("expected SizeMismatch, got {other:?}"),
    }
    // The file was truncated or extended after creation.
    for len in [SIZE / 2, SIZE - 4096, SIZE + 4096, SIZE * 3] {
        set_file_len(&name, len);
        match Segment::attach(name.as_str()) {
            Err(e @ ShmError::SizeMismatch { .. }) => {
                names(&e, name.as_str());
                assert!(matches!(
                    e,
                    ShmError::SizeMismatch { expected, actual, .. } if expected == SIZE && actual == len
                ));
            }
            other => panic!("file of {len} bytes: expected SizeMismatch, got {other:?}"),
        }
    }
    set_file_len(&name, SIZE);
    let seg = Segment::attach_expecting(name.as_str(), SIZE).unwrap();
    assert_eq!(seg.size(), SIZE);
    drop(seg);
    // Truncated to its header page and extended again: the allocator metadata is
    // gone (zeros), which is refused too.
    set_file_len(&name, 4096);
    assert!(matches!(
        Segment::attach(name.as_str()),
        Err(ShmError::SizeMismatch {
            expected: SIZE,
            actual: 4096,
            ..
        })
    ));
    set_file_len(&name, SIZE);
    match Segment::attach(name.as_str()) {
        Err(e @ ShmError::WrongMagic { .. }) => {
            names(&e, name.as_str());
            assert!(e.to_string().contains("allocator"), "{e}");
        }
        other => panic!("expected an error about the allocator metadata, got {other:?}"),
    }
}

#[test]
fn invalid_names_are_refused() {
    let too_long = "n".repeat(128);
    for bad in [
        "",
        "a/b",
        "/leading",
        "trailing/",
        "nul\0byte",
        too_long.as_str(),
    ] {
        let check = |r: Result<Segment, ShmError>, op: &str| match r {
            Err(e @ ShmError::InvalidName { .. }) => {
                let ShmError::InvalidName { name, reason } = &e else {
                    unreachable!()
                };
                assert_eq!(name, bad, "{op}");
                assert!(!reason.is_empty());
                assert!(e.to_string().contains(bad), "{op}: {e}");
            }
            other => panic!("{op}({bad:?}): expected InvalidName, got {other:?}"),
        };
        check(Segment::create(bad, fresh_id(), SIZE), "create");
        check(Segment::attach(bad), "attach");
        check(Segment::attach_expecting(bad, SIZE), "attach_expecting");
        assert!(matches!(
            Segment::unlink(bad),
            Err(ShmError::InvalidName { .. })
        ));
        assert!(!Segment::exists(bad));
    }
    // 127 bytes is the longest name.
    let mut longest = support::unique_name("seg_longest");
    while longest.len() < 127 {
        longest.push('x');
    }
    let guard = ShmName(longest.clone());
    let seg = Segment::create(&longest, fresh_id(), SIZE).unwrap();
    assert_eq!(seg.name(), longest);
    assert!(shm_file(&longest).exists());
    drop(seg);
    assert!(!Segment::exists(guard.as_str()));
}

#[test]
fn invalid_ids_and_sizes_are_refused() {
    let name = ShmName::new("seg_ids");
    for bad in [
        SegmentId::NULL,
        SegmentId(SegmentId::MAX.0 + 1),
        SegmentId(u16::MAX),
    ] {
        match Segment::create(name.as_str(), bad, SIZE) {
            Err(e @ ShmError::InvalidId { .. }) => {
                names(&e, name.as_str());
                assert!(matches!(
                    e,
                    ShmError::InvalidId { id, max, .. } if id == bad.0 && max == SegmentId::MAX.0
                ));
            }
            other => panic!("id {bad:?}: expected InvalidId, got {other:?}"),
        }
        assert!(
            !Segment::exists(name.as_str()),
            "a refused create left a file"
        );
    }
    let min = Segment::min_size();
    for bad in [
        0,
        1,
        min - 4097,
        Segment::max_size() + 4096,
        u64::MAX - 100,
        u64::MAX,
    ] {
        match Segment::create(name.as_str(), fresh_id(), bad) {
            Err(e @ ShmError::BadSize { .. }) => {
                names(&e, name.as_str());
                assert!(matches!(
                    e,
                    ShmError::BadSize { min: m, max, .. } if m == min && max == Segment::max_size()
                ));
            }
            other => panic!("size {bad}: expected BadSize, got {other:?}"),
        }
        assert!(
            !Segment::exists(name.as_str()),
            "a refused create left a file"
        );
    }
    // The smallest size works, and is rounded up to whole 4 KiB pages.
    let seg = Segment::create(name.as_str(), fresh_id(), min - 100).unwrap();
    assert_eq!(seg.size(), min);
}

#[test]
fn an_id_maps_one_segment_per_process() {
    let a_name = ShmName::new("seg_id_a");
    let b_name = ShmName::new("seg_id_b");
    let id = fresh_id();
    let a = Segment::create(a_name.as_str(), id, SIZE).unwrap();
    match Segment::create(b_name.as_str(), id, SIZE) {
        Err(e @ ShmError::IdInUse { .. }) => {
            names(&e, b_name.as_str());
            assert!(matches!(&e, ShmError::IdInUse { id: i, .. } if *i == id.0));
            // The error names the segment that holds the id.
            assert!(e.to_string().contains(a_name.as_str()), "{e}");
        }
        other => panic!("expected IdInUse, got {other:?}"),
    }
    assert!(
        !Segment::exists(b_name.as_str()),
        "the refused segment was left behind"
    );
    // Attaching a segment whose id this process already maps for another one.
    let c_name = ShmName::new("seg_id_c");
    let c_id = fresh_id();
    let mut c = Segment::create(c_name.as_str(), c_id, SIZE).unwrap();
    c.disown();
    drop(c);
    let d_name = ShmName::new("seg_id_d");
    let d = Segment::create(d_name.as_str(), c_id, SIZE).unwrap();
    match Segment::attach(c_name.as_str()) {
        Err(e @ ShmError::IdInUse { .. }) => names(&e, c_name.as_str()),
        other => panic!("expected IdInUse, got {other:?}"),
    }
    // Once the other mapping is gone, the id is free again.
    drop(d);
    let c = Segment::attach(c_name.as_str()).unwrap();
    assert_eq!(c.id(), c_id);
    drop(a);
    let b = Segment::create(b_name.as_str(), id, SIZE).unwrap();
    assert_eq!(b.id(), id);
}

#[test]
fn create_replaces_a_stale_segment() {
    let name = ShmName::new("seg_stale");
    // A stale file that is not a segment at all.
    std::fs::write(shm_file(name.as_str()), vec![0xA5u8; 12345]).unwrap();
    let seg = Segment::create(name.as_str(), fresh_id(), SIZE).unwrap();
    assert_eq!(
        std::fs::metadata(shm_file(name.as_str())).unwrap().len(),
        SIZE
    );
    assert_eq!(seg.root(0), Some(ShmPtr::NULL));
    drop(seg);
    assert!(!Segment::exists(name.as_str()));

    // A segment whose creator died: replaced by a fresh one.
    let mut old = Segment::create(name.as_str(), fresh_id(), SIZE).unwrap();
    old.set_root(0, old.ptr_at(4096));
    old.disown();
    let old_ino = std::fs::metadata(shm_file(name.as_str())).unwrap().ino();
    drop(old);
    assert!(Segment::exists(name.as_str()));
    let new_id = fresh_id();
    let new = Segment::create(name.as_str(), new_id, 2 * SIZE).unwrap();
    assert_ne!(
        std::fs::metadata(shm_file(name.as_str())).unwrap().ino(),
        old_ino
    );
    assert_eq!((new.id(), new.size()), (new_id, 2 * SIZE));
    assert_eq!(
        new.root(0),
        Some(ShmPtr::NULL),
        "the new segment starts empty"
    );
    assert!(new.owns_name());
}

#[test]
fn creator_unlinks_on_drop_attachers_do_not() {
    let name = ShmName::new("seg_unlink");
    let seg = Segment::create(name.as_str(), fresh_id(), SIZE).unwrap();
    assert!(seg.owns_name());
    assert_eq!(seg.creator_pid(), std::process::id());
    let attached = Segment::attach(name.as_str()).unwrap();
    assert!(!attached.owns_name());
    assert_eq!(attached.base(), seg.base(), "one mapping per process");
    let clone = seg.clone();
    assert!(!clone.owns_name());
    drop(attached);
    drop(clone);
    assert!(Segment::exists(name.as_str()));
    drop(seg);
    assert!(!Segment::exists(name.as_str()));
    assert!(!shm_file(name.as_str()).exists());

    // Disowned: the name stays until unlinked by hand.
    let mut seg = Segment::create(name.as_str(), fresh_id(), SIZE).unwrap();
    seg.disown();
    assert!(!seg.owns_name());
    drop(seg);
    assert!(Segment::exists(name.as_str()));
    assert!(Segment::unlink(name.as_str()).unwrap());
    assert!(!Segment::unlink(name.as_str()).unwrap());

    // A creator whose name now names a newer segment leaves the newer one alone.
    let first = Segment::create(name.as_str(), fresh_id(), SIZE).unwrap();
    let second = Segment::create(name.as_str(), fresh_id(), SIZE).unwrap();
    drop(first);
    assert!(
        Segment::exists(name.as_str()),
        "the older creator unlinked the newer segment"
    );
    drop(second);
    assert!(!Segment::exists(name.as_str()));
}

/// Child role: attaches, checks what the parent said, writes an answer, detaches.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_segment_attacher() {
    if !child_role("child_segment_attacher") {
        return;
    }
    let seg = Segment::attach(&env_str("CHI_SEG")).expect("attach");
    assert!(!seg.owns_name());
    assert_eq!(seg.creator_pid() as u64, env_u64("CHI_PARENT_PID"));
    assert_eq!(seg.id().0 as u64, env_u64("CHI_SEG_ID"));
    assert_eq!(seg.root(0).unwrap().to_bits(), env_u64("CHI_ROOT"));
    seg.set_root(1, ShmPtr::from_bits(std::process::id() as u64));
    drop(seg);
}

#[test]
fn an_attaching_process_does_not_unlink() {
    let name = ShmName::new("seg_child_attach");
    let seg = Segment::create(name.as_str(), fresh_id(), SIZE).unwrap();
    let root = seg.ptr_at(8192);
    seg.set_root(0, root);
    let mut children = Children::new();
    let child = children.spawn(
        "child_segment_attacher",
        "attacher",
        &[
            ("CHI_SEG", name.as_str().to_owned()),
            ("CHI_PARENT_PID", std::process::id().to_string()),
            ("CHI_SEG_ID", seg.id().0.to_string()),
            ("CHI_ROOT", root.to_bits().to_string()),
        ],
    );
    children.wait_for(child, WATCHDOG);
    assert!(
        Segment::exists(name.as_str()),
        "the attacher unlinked the segment"
    );
    assert_eq!(
        seg.root(1).unwrap().to_bits(),
        children.pid(child) as u64,
        "the child's write is visible here"
    );
    assert_eq!(seg.root(NUM_ROOTS), None);
    drop(seg);
    assert!(!Segment::exists(name.as_str()));
}

#[test]
fn segment_file_mode_is_0600() {
    let name = ShmName::new("seg_mode");
    let seg = Segment::create(name.as_str(), fresh_id(), SIZE).unwrap();
    let meta = std::fs::metadata(shm_file(name.as_str())).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), seg.size());
    assert_eq!(meta.uid(), rustix::process::getuid().as_raw());
}
