//! `#[task]`: a task declared with the macro, saved and loaded into fresh tasks
//! in a real segment, deep-copied, freed, and fed malformed buffers.

mod support;

use std::sync::atomic::Ordering;

use chi_sdk::ser::{Reader, SerError, TaskSer};
use chi_sdk::shm::{Allocator, Segment, ShmPtr, ShmString, ShmVec};
use chi_sdk::task::{Task, TaskHeader, code, flags};
use chi_sdk::types::{DomainQuery, PoolId, TaskNode};
use support::ShmName;

/// The seed's `CustomTask`, with a vector and an array added.
#[chi_sdk::task(method = 10, yaml = "task_macro.yaml")]
#[derive(Debug)]
pub struct CustomTask {
    /// In and out.
    #[inout]
    pub data: ShmString,
    /// In (unmarked).
    pub operation_id: u32,
    /// In.
    #[input]
    pub keys: ShmVec<ShmString>,
    /// In.
    pub weights: [u16; 3],
    /// Out.
    #[output]
    pub result_code: u32,
    /// Out.
    #[output]
    pub values: ShmVec<u64>,
}

/// A key other than the struct's name, and a field named like a constructor
/// parameter.
#[chi_sdk::task(method = 11, name = "kPut", yaml = "task_macro.yaml")]
pub struct InsertTask {
    pub pool: PoolId,
    #[output]
    pub ptr: ShmPtr,
}

/// No parameters.
#[chi_sdk::task(method = 12, yaml = "task_macro.yaml")]
pub struct EmptyTask;

/// Segment ids of this test binary (200+: unused by the other tests).
static NEXT_ID: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(200);

fn segment(test: &str) -> (ShmName, Segment, Allocator) {
    let name = ShmName::new(test);
    let id = chi_sdk::shm::SegmentId(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let seg = Segment::create(name.as_str(), id, 8 << 20).expect("segment");
    let alloc = Allocator::attach(&seg).expect("allocator");
    (name, seg, alloc)
}

fn s(alloc: &Allocator, v: &str) -> ShmString {
    ShmString::from_str(alloc, v).unwrap()
}

fn strings(v: &ShmVec<ShmString>) -> Vec<String> {
    v.as_slice()
        .unwrap()
        .iter()
        .map(|s| s.to_str().unwrap().to_owned())
        .collect()
}

fn custom(alloc: &Allocator) -> CustomTask {
    let mut keys = ShmVec::new();
    for k in ["alpha", "βeta", ""] {
        keys.push(alloc, s(alloc, k)).unwrap();
    }
    CustomTask::new(
        PoolId(42),
        DomainQuery::global_hash(7),
        s(alloc, "payload ✓"),
        99,
        keys,
        [1, 2, 3],
    )
}

fn used(alloc: &Allocator) -> (u64, u64) {
    alloc.flush_thread_cache();
    let st = alloc.stats();
    (st.used_bytes, st.live_blocks)
}

#[test]
fn layout_and_constructors() {
    assert_eq!(<CustomTask as Task>::METHOD, 10);
    assert_eq!(<InsertTask as Task>::METHOD, 11);
    assert_eq!(std::mem::offset_of!(CustomTask, header), 0);
    assert_eq!(std::mem::offset_of!(EmptyTask, header), 0);
    assert_eq!(size_of::<EmptyTask>(), size_of::<TaskHeader>());

    let (_name, _seg, alloc) = segment("layout");
    let mut t = custom(&alloc);
    let h = t.header();
    assert_eq!(h.method, 10);
    assert_eq!(h.pool_id, PoolId(42));
    assert_eq!(h.dom_query, DomainQuery::global_hash(7));
    assert_eq!(h.size as usize, size_of::<CustomTask>());
    assert_eq!(t.operation_id, 99);
    assert_eq!(t.result_code, 0);
    assert!(t.values.is_empty());
    t.free_fields(&alloc);

    let e = CustomTask::empty(PoolId(3));
    assert_eq!(e.header.pool_id, PoolId(3));
    assert_eq!(e.header.dom_query, DomainQuery::local());
    assert!(e.data.is_empty() && e.keys.is_empty() && e.weights == [0; 3]);

    // `pool` is a field, so the constructor's parameter is `_pool`.
    let i = InsertTask::new(PoolId(1), DomainQuery::local(), PoolId(77));
    assert_eq!((i.header.pool_id, i.pool), (PoolId(1), PoolId(77)));
    assert!(i.ptr.is_null());
}

#[test]
fn inputs_and_outputs_round_trip_through_fresh_tasks() {
    let (_name, _seg, alloc) = segment("round_trip");
    let baseline = used(&alloc);
    let mut sent = custom(&alloc);
    sent.header.flags = flags::PERIODIC;
    sent.header.period_ns = 1_000;
    sent.header.task_node = TaskNode::root(5).child();
    sent.header.client_id = 17;

    // Client side → remote runtime.
    let mut buf = Vec::new();
    sent.save_in(&mut buf).unwrap();
    let mut remote = CustomTask::empty(PoolId::NULL);
    let mut r = Reader::new(&buf);
    remote.load_in(&mut r, &alloc).unwrap();
    r.finish().unwrap();
    assert_eq!(remote.header.method, 10);
    assert_eq!(remote.header.pool_id, PoolId(42));
    assert_eq!(remote.header.dom_query, DomainQuery::global_hash(7));
    assert_eq!(remote.header.flags, flags::PERIODIC);
    assert_eq!(remote.header.period_ns, 1_000);
    assert_eq!(remote.header.task_node, TaskNode::root(5).child());
    assert_eq!(remote.header.client_id, 17);
    assert_eq!(remote.data.to_str().unwrap(), "payload ✓");
    assert_eq!(remote.operation_id, 99);
    assert_eq!(strings(&remote.keys), ["alpha", "βeta", ""]);
    assert_eq!(remote.weights, [1, 2, 3]);
    // Outputs do not travel in.
    assert_eq!(remote.result_code, 0);

    // The remote runtime runs it…
    remote.data.set(&alloc, "changed by the method").unwrap();
    remote.result_code = 7;
    for v in [10, 20, 30] {
        remote.values.push(&alloc, v).unwrap();
    }
    remote
        .header
        .result
        .store(code::MODULE_BASE + 1, Ordering::Relaxed);
    remote.header.error.set(&alloc, "partial failure").unwrap();
    let mut out = Vec::new();
    remote.save_out(&mut out).unwrap();

    // …and the outputs come back into the original.
    let mut r = Reader::new(&out);
    sent.load_out(&mut r, &alloc).unwrap();
    r.finish().unwrap();
    assert_eq!(sent.data.to_str().unwrap(), "changed by the method");
    assert_eq!(sent.result_code, 7);
    assert_eq!(sent.values.as_slice().unwrap(), [10, 20, 30]);
    assert_eq!(sent.header.result(), code::MODULE_BASE + 1);
    assert_eq!(sent.header.error.to_str().unwrap(), "partial failure");
    // Inputs are not outputs: untouched.
    assert_eq!(strings(&sent.keys), ["alpha", "βeta", ""]);

    for t in [&mut sent, &mut remote] {
        t.free_fields(&alloc);
        let _ = t.header.error.free(&alloc);
    }
    assert_eq!(used(&alloc), baseline);
}

#[test]
fn new_copy_is_deep_and_free_fields_returns_everything() {
    let (_name, _seg, alloc) = segment("new_copy");
    let baseline = used(&alloc);
    let mut orig = custom(&alloc);
    orig.values.push(&alloc, 5).unwrap();
    let _ = orig.header.complete(chi_sdk::task::code::OK);
    orig.header.client_id = 3;
    let mut copy = orig.new_copy(&alloc).unwrap();

    // Same contents, distinct storage.
    assert_eq!(copy.data.to_str().unwrap(), "payload ✓");
    assert_ne!(copy.data.data(), orig.data.data());
    assert_eq!(strings(&copy.keys), strings(&orig.keys));
    assert_ne!(copy.keys.data(), orig.keys.data());
    assert_ne!(
        copy.keys.as_slice().unwrap()[0].data(),
        orig.keys.as_slice().unwrap()[0].data()
    );
    assert_eq!(copy.values.as_slice().unwrap(), [5]);
    // A fresh header with the routing fields.
    assert_eq!(copy.header.state_bits(), 0);
    assert_eq!(copy.header.client_id, 3);
    assert_eq!(copy.header.pool_id, PoolId(42));

    // Changing the copy leaves the original alone.
    copy.data.set(&alloc, "copy").unwrap();
    copy.keys.as_mut_slice().unwrap()[0]
        .set(&alloc, "x")
        .unwrap();
    assert_eq!(orig.data.to_str().unwrap(), "payload ✓");
    assert_eq!(strings(&orig.keys)[0], "alpha");

    copy.free_fields(&alloc);
    assert!(copy.data.is_empty() && copy.keys.is_empty());
    orig.free_fields(&alloc);
    assert_eq!(used(&alloc), baseline);
}

#[test]
fn malformed_buffers_are_errors() {
    let (_name, _seg, alloc) = segment("malformed");
    let baseline = used(&alloc);
    let mut sent = custom(&alloc);
    let mut buf = Vec::new();
    sent.save_in(&mut buf).unwrap();

    // Every truncation is an error, never a panic, and frees cleanly.
    for cut in 0..buf.len() {
        let mut t = CustomTask::empty(PoolId::NULL);
        let err = t
            .load_in(&mut Reader::new(&buf[..cut]), &alloc)
            .unwrap_err();
        assert!(
            matches!(err, SerError::Truncated { .. }),
            "cut {cut}: {err}"
        );
        t.free_fields(&alloc);
    }

    // Trailing bytes are reported by `finish`.
    let mut long = buf.clone();
    long.push(0);
    let mut t = CustomTask::empty(PoolId::NULL);
    let mut r = Reader::new(&long);
    t.load_in(&mut r, &alloc).unwrap();
    assert!(matches!(
        r.finish(),
        Err(SerError::TrailingBytes { extra: 1, .. })
    ));
    t.free_fields(&alloc);

    // A huge length is refused before allocating.
    let header_len = {
        let mut h = Vec::new();
        chi_sdk::__private::save_header_in(&sent.header, &mut h).unwrap();
        h.len()
    };
    let mut bad = buf.clone();
    bad[header_len..header_len + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut t = CustomTask::empty(PoolId::NULL);
    let err = t.load_in(&mut Reader::new(&bad), &alloc).unwrap_err();
    assert!(matches!(err, SerError::Truncated { .. }), "{err}");

    // Invalid UTF-8 in a string.
    let mut bad = buf.clone();
    bad[header_len + 8] = 0xff;
    let err = t.load_in(&mut Reader::new(&bad), &alloc).unwrap_err();
    assert!(matches!(err, SerError::InvalidUtf8 { .. }), "{err}");
    t.free_fields(&alloc);

    // Garbage written into a field by another process: saving and copying fail.
    let mut broken = CustomTask::empty(PoolId(1));
    // SAFETY: a ShmString is three plain words; any bytes are a valid (if
    // garbage) value, which is what this test simulates.
    unsafe {
        let p = std::ptr::addr_of_mut!(broken.data).cast::<u64>();
        p.write(ShmPtr::new(chi_sdk::shm::SegmentId(250), 64).to_bits());
        p.add(1).write(10);
        p.add(2).write(10);
    }
    assert!(matches!(
        broken.save_in(&mut Vec::new()),
        Err(SerError::Shm(_))
    ));
    assert!(matches!(broken.new_copy(&alloc), Err(SerError::Shm(_))));

    sent.free_fields(&alloc);
    assert_eq!(used(&alloc), baseline);
}

#[test]
fn a_create_task_that_cannot_be_made_leaves_nothing_allocated() {
    let (_name, _seg, alloc) = segment("admin_strings");
    let baseline = used(&alloc);
    let too_big = "x".repeat(16 << 20);
    assert!(chi_sdk::admin::CreatePoolTask::new(&alloc, "m", "p", &too_big, PoolId::NULL).is_err());
    assert!(chi_sdk::admin::GetOrCreatePoolTask::new(&alloc, "m", &too_big, "{}").is_err());
    assert_eq!(used(&alloc), baseline, "the strings made first were freed");
}
