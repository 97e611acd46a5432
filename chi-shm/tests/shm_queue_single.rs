//! The multi-lane queue in one process: a full lane reports full after a
//! bounded wait and drops nothing, sleeps return when work waits, priority
//! groups map hints to their lanes, bad configurations and garbage pointers
//! are refused.
#![cfg(not(loom))]
// A client of the crate: its own atomics are the standard ones.
#![allow(clippy::disallowed_types)]

mod support;

use std::time::{Duration, Instant};

use chi_shm::queue::{MultiLaneQueue, Priority, PushError, QueueConfig, QueueError};
use chi_shm::shm::{Allocator, Segment, ShmPtr};
use support::{WATCHDOG, new_segment, small_queue};

// ---- single-process properties ------------------------------------------------------

#[test]
fn full_lane_reports_full_after_bounded_wait_and_never_drops() {
    let (_name, seg) = new_segment("queue_full", 4 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    // Depth 3 rounds up to 4.
    let q = small_queue(&seg, &alloc, 1, 1, 3);
    assert_eq!(q.depth(), 4);
    let mut c = q.consumer(&[0, 1]).unwrap();
    let v = |i: u64| ShmPtr::from_bits(0xabc0_0000 + i);
    for i in 0..4 {
        assert_eq!(q.lane_len(0), i);
        q.try_push(0, v(i)).unwrap();
    }
    assert_eq!(q.lane_len(0), 4);
    assert_eq!(q.lane_len(1), 0);
    assert_eq!(
        q.try_push(0, v(4)),
        Err(PushError::Full { lane: 0, depth: 4 })
    );
    assert_eq!(
        q.push_to_lane(0, v(4), None),
        Err(PushError::Full { lane: 0, depth: 4 })
    );
    assert_eq!(
        q.push_to_lane(0, v(4), Some(Duration::ZERO)),
        Err(PushError::Full { lane: 0, depth: 4 })
    );
    let wait = Duration::from_millis(30);
    let t = Instant::now();
    assert_eq!(
        q.push_to_lane(0, v(4), Some(wait)),
        Err(PushError::Full { lane: 0, depth: 4 })
    );
    assert!(t.elapsed() >= wait, "gave up before the wait was over");
    assert_eq!(
        q.push(
            Priority::LowLatency,
            7,
            v(4),
            Some(Duration::from_millis(1))
        ),
        Err(PushError::Full { lane: 0, depth: 4 })
    );
    assert_eq!(q.lane_len(0), 4, "a failed push changed the lane");
    // The other lane is unaffected.
    assert_eq!(q.push(Priority::HighLatency, 0, v(100), None), Ok(1));
    assert_eq!(q.lane_len(1), 1);

    // A value popped makes room for exactly one more.
    assert_eq!(c.pop_lane(0), Some(v(0)));
    assert_eq!(q.lane_len(0), 3);
    q.push_to_lane(0, v(4), Some(Duration::from_millis(1)))
        .unwrap();
    assert_eq!(
        q.try_push(0, v(5)),
        Err(PushError::Full { lane: 0, depth: 4 })
    );
    let drained: Vec<ShmPtr> = std::iter::from_fn(|| c.pop_lane(0)).collect();
    assert_eq!(drained, (1..=4).map(v).collect::<Vec<_>>());
    assert_eq!(q.lane_len(0), 0);
    assert_eq!(c.pop(), Some((v(100), 1)));
    assert_eq!(c.pop(), None);

    // Wrap around the ring many times: order kept, lengths exact.
    for round in 0..100u64 {
        for i in 0..4 {
            q.try_push(0, v(round * 4 + i)).unwrap();
        }
        assert_eq!(q.lane_len(0), 4);
        for i in 0..4 {
            assert_eq!(c.pop_lane(0), Some(v(round * 4 + i)));
        }
    }
    assert_eq!(q.lane_len(0), 0);

    // Missing lanes.
    assert_eq!(
        q.try_push(2, v(0)),
        Err(PushError::NoLane { lane: 2, lanes: 2 })
    );
    assert_eq!(
        q.push_to_lane(9, v(0), Some(Duration::from_millis(1))),
        Err(PushError::NoLane { lane: 9, lanes: 2 })
    );
    assert_eq!(q.lane_len(2), 0);
    assert_eq!(c.pop_lane(5), None);
    assert!(
        PushError::Full { lane: 0, depth: 4 }
            .to_string()
            .contains("full")
    );
}

#[test]
fn sleep_returns_at_once_when_work_is_waiting_and_after_timeout_otherwise() {
    let (_name, seg) = new_segment("queue_sleep", 4 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let q = small_queue(&seg, &alloc, 2, 0, 8);
    let mut c = q.consumer(&[1, 0]).unwrap();
    // Empty: sleeps until the timeout.
    assert!(c.sleep(Some(Duration::from_millis(5))));
    // A value waiting on any of its lanes: no sleep.
    q.try_push(0, ShmPtr::from_bits(1)).unwrap();
    assert!(!c.sleep(Some(Duration::from_secs(60))));
    assert_eq!(c.pop(), Some((ShmPtr::from_bits(1), 0)));
    // Woken by a push from another thread. (Lost wake-ups across processes are
    // caught by `consumer_process_sleeps_on_doorbell_and_is_woken_by_push`, which
    // sleeps without a timeout under a watchdog.)
    let q2 = q.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        q2.try_push(1, ShmPtr::from_bits(2)).unwrap();
    });
    let deadline = Instant::now() + WATCHDOG;
    loop {
        c.sleep(Some(Duration::from_secs(5)));
        if c.pop() == Some((ShmPtr::from_bits(2), 1)) {
            break;
        }
        assert!(Instant::now() < deadline, "the pushed value never arrived");
    }
    t.join().unwrap();
}

#[test]
fn priority_groups_map_hints_to_their_lanes() {
    let (_name, seg) = new_segment("queue_prio", 4 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let q = small_queue(&seg, &alloc, 2, 3, 1);
    assert_eq!(q.depth(), 2, "depth 1 rounds up to 2");
    assert_eq!(q.num_lanes(), 5);
    assert_eq!(q.lanes_of(Priority::LowLatency), 0..2);
    assert_eq!(q.lanes_of(Priority::HighLatency), 2..5);
    for hint in 0..50u64 {
        assert_eq!(q.lane_for(Priority::LowLatency, hint), (hint % 2) as usize);
        assert_eq!(
            q.lane_for(Priority::HighLatency, hint),
            2 + (hint % 3) as usize
        );
    }
    assert_eq!(
        q.lane_for(Priority::HighLatency, u64::MAX),
        2 + (u64::MAX % 3) as usize
    );
    // push() uses lane_for and reports the lane.
    let mut c = q.consumer(&[0, 1, 2, 3, 4]).unwrap();
    assert_eq!(
        q.push(Priority::LowLatency, 3, ShmPtr::from_bits(10), None),
        Ok(1)
    );
    assert_eq!(
        q.push(Priority::HighLatency, 4, ShmPtr::from_bits(11), None),
        Ok(3)
    );
    assert_eq!(q.lane_len(1), 1);
    assert_eq!(q.lane_len(3), 1);
    let mut got = vec![c.pop().unwrap(), c.pop().unwrap()];
    got.sort_by_key(|(_, l)| *l);
    assert_eq!(
        got,
        vec![(ShmPtr::from_bits(10), 1), (ShmPtr::from_bits(11), 3)]
    );
    drop(c);

    // A group without lanes falls back to all lanes.
    let only_high = small_queue(&seg, &alloc, 0, 3, 4);
    assert_eq!(only_high.lanes_of(Priority::LowLatency), 0..0);
    assert_eq!(only_high.lanes_of(Priority::HighLatency), 0..3);
    assert_eq!(only_high.lane_for(Priority::LowLatency, 5), 2);
    let only_low = small_queue(&seg, &alloc, 4, 0, 4);
    assert_eq!(only_low.lanes_of(Priority::HighLatency), 4..4);
    assert_eq!(only_low.lane_for(Priority::HighLatency, 6), 2);
    assert_eq!(
        only_low.push(Priority::HighLatency, 7, ShmPtr::from_bits(1), None),
        Ok(3)
    );

    // Memory size agrees with the shape and grows with it.
    let cfg = |low, high, depth| QueueConfig {
        low_latency_lanes: low,
        high_latency_lanes: high,
        depth,
    };
    let small = MultiLaneQueue::memory_size(&cfg(1, 0, 4)).unwrap();
    assert!(MultiLaneQueue::memory_size(&cfg(1, 0, 5)).unwrap() > small);
    assert!(MultiLaneQueue::memory_size(&cfg(2, 0, 4)).unwrap() > small);
    assert_eq!(MultiLaneQueue::memory_size(&cfg(1, 0, 3)).unwrap(), small);
}

#[test]
fn bad_configurations_are_refused() {
    let (_name, seg) = new_segment("queue_badcfg", 4 << 20);
    let (_name2, other) = new_segment("queue_badcfg_other", 4 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let other_alloc = Allocator::attach(&other).unwrap();
    let cfg = |low, high, depth| QueueConfig {
        low_latency_lanes: low,
        high_latency_lanes: high,
        depth,
    };
    for bad in [
        cfg(0, 0, 4),
        cfg(1, 0, 0),
        cfg(1, 0, chi_shm::queue::MAX_DEPTH + 1),
        cfg(chi_shm::queue::MAX_LANES, 1, 2),
    ] {
        match MultiLaneQueue::create(&seg, &alloc, bad) {
            Err(QueueError::BadConfig(_)) => {}
            other => panic!("{bad:?}: expected BadConfig, got {other:?}"),
        }
    }
    match MultiLaneQueue::create(&seg, &other_alloc, cfg(1, 1, 4)) {
        Err(QueueError::BadConfig(msg)) => assert!(msg.contains("allocator")),
        other => panic!("foreign allocator: expected BadConfig, got {other:?}"),
    }
    // Too large for the segment: an allocation error, not a panic.
    match MultiLaneQueue::create(&seg, &alloc, cfg(64, 0, chi_shm::queue::MAX_DEPTH)) {
        Err(QueueError::Alloc(_)) => {}
        other => panic!("huge queue: expected Alloc error, got {other:?}"),
    }
}

// ---- attach validates the pointer -------------------------------------------------

/// Fields to overwrite in a copy of a queue header: (offset, bytes).
type Patch<'a> = &'a [(usize, &'a [u8])];

/// Byte offsets of the queue header fields (`#[repr(C)]`).
const H_VERSION: usize = 8;
const H_LOW: usize = 12;
const H_HIGH: usize = 16;
const H_DEPTH: usize = 24;
const H_TOTAL: usize = 32;

fn expect_bad_header(seg: &Segment, ptr: ShmPtr, what: &str, reason_part: &str) {
    match MultiLaneQueue::attach(seg, ptr) {
        Err(QueueError::BadHeader { ptr: p, reason }) => {
            assert_eq!(p, ptr, "{what}");
            assert!(reason.contains(reason_part), "{what}: reason {reason:?}");
        }
        other => panic!("{what}: expected BadHeader({reason_part}), got {other:?}"),
    }
}

#[test]
fn attach_rejects_garbage_pointers() {
    let (_name, seg) = new_segment("queue_attach", 4 << 20);
    let (_name2, other) = new_segment("queue_attach_other", 4 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let q = small_queue(&seg, &alloc, 1, 2, 8);
    let size = seg.size();

    // The real one attaches and shares the lanes.
    let q2 = MultiLaneQueue::attach(&seg, q.shm()).unwrap();
    assert_eq!((q2.num_lanes(), q2.depth(), q2.shm()), (3, 8, q.shm()));
    q2.try_push(2, ShmPtr::from_bits(77)).unwrap();
    assert_eq!(q.lane_len(2), 1);

    // Pointers outside the segment.
    expect_bad_header(&seg, ShmPtr::NULL, "null", "not inside");
    expect_bad_header(&seg, seg.ptr_at(size), "one past the end", "not inside");
    expect_bad_header(
        &seg,
        seg.ptr_at(ShmPtr::MAX_OFFSET),
        "max offset",
        "not inside",
    );
    expect_bad_header(
        &seg,
        other.ptr_at(q.shm().offset()),
        "other segment",
        "not inside",
    );
    // Misaligned.
    for delta in [1, 8, 16, 64] {
        let p = q.shm().byte_add(delta).unwrap();
        expect_bad_header(&seg, p, "misaligned", "misaligned");
    }
    // Near the end of the segment: the header does not fit.
    match MultiLaneQueue::attach(&seg, seg.ptr_at(size - 128)) {
        Err(QueueError::Shm(_)) | Err(QueueError::BadHeader { .. }) => {}
        other => panic!("header past the end: got {other:?}"),
    }
    // Zeroed memory, the segment header, and a random pattern: wrong magic.
    let zeros = alloc.allocate_aligned(4096, 128).unwrap();
    // SAFETY: fresh allocation of 4096 bytes.
    unsafe { std::ptr::write_bytes(zeros.as_ptr(), 0, 4096) };
    expect_bad_header(&seg, zeros.shm(), "zeroed block", "magic");
    expect_bad_header(&seg, seg.ptr_at(0), "segment header", "magic");
    let junk = alloc.allocate_aligned(4096, 128).unwrap();
    let mut rng = support::Rng::new(1);
    for i in 0..4096 {
        // SAFETY: inside the fresh 4096-byte allocation.
        unsafe { junk.as_ptr().add(i).write(rng.next_u64() as u8) };
    }
    expect_bad_header(&seg, junk.shm(), "random bytes", "magic");

    // A copy of a real header with one field corrupted at a time.
    let hdr_len = 64;
    let src = q.shm().resolve_slice::<u8>(hdr_len).unwrap();
    let copy = alloc.allocate_aligned(4096, 128).unwrap();
    let patch = |fields: Patch| {
        // SAFETY: `copy` is our 4096-byte allocation; `src` is the first 64 bytes of
        // the live queue, only read; every field lies inside those 64 bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), copy.as_ptr(), hdr_len as usize);
            for (at, bytes) in fields {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), copy.as_ptr().add(*at), bytes.len());
            }
        }
        copy.shm()
    };
    // An intact copy passes the header checks (the lanes behind it are garbage,
    // but in bounds; nothing here pops or pushes).
    assert!(MultiLaneQueue::attach(&seg, patch(&[])).is_ok());
    let cases: [(Patch, &str, &str); 8] = [
        (&[(0, b"CHIQUEUF")], "magic", "magic"),
        (&[(H_VERSION, &2u32.to_le_bytes())], "version", "version"),
        (
            &[(H_LOW, &0u32.to_le_bytes()), (H_HIGH, &0u32.to_le_bytes())],
            "no lanes",
            "lane count",
        ),
        (
            &[(H_HIGH, &u32::MAX.to_le_bytes())],
            "too many lanes",
            "lane count",
        ),
        (
            &[(H_DEPTH, &6u64.to_le_bytes())],
            "depth not a power of two",
            "depth",
        ),
        (&[(H_DEPTH, &1u64.to_le_bytes())], "depth 1", "depth"),
        (
            &[(H_DEPTH, &(1u64 << 40).to_le_bytes())],
            "huge depth",
            "depth",
        ),
        (&[(H_TOTAL, &12345u64.to_le_bytes())], "total size", "size"),
    ];
    for (fields, what, reason) in cases {
        let p = patch(fields);
        expect_bad_header(&seg, p, what, reason);
    }
    // A consistent but huge shape does not fit the segment: resolve error.
    let big_depth = 1u64 << 20;
    let total = MultiLaneQueue::memory_size(&QueueConfig {
        low_latency_lanes: 1,
        high_latency_lanes: 2,
        depth: big_depth,
    })
    .unwrap() as u64;
    patch(&[
        (H_DEPTH, &big_depth.to_le_bytes()),
        (H_TOTAL, &total.to_le_bytes()),
    ]);
    match MultiLaneQueue::attach(&seg, copy.shm()) {
        Err(QueueError::Shm(chi_shm::shm::ShmError::OutOfBounds { .. })) => {}
        other => panic!("queue running past the segment: got {other:?}"),
    }
    for p in [zeros, junk, copy] {
        alloc.free_full(p).unwrap();
    }
}
