//! The multi-lane queue across processes: several producer processes into one
//! lane with a consumer process that checks per-producer order, no loss and no
//! duplicate; full lanes; doorbell sleep/wake across processes; priority groups;
//! lane claims; validation of queue pointers.
#![cfg(not(loom))]
// A client of the crate: its own atomics are the standard ones, which its
// shared-memory records hold (the facade rule of clippy.toml is for the library).
#![allow(clippy::disallowed_types)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chi_shm::queue::{MultiLaneQueue, Priority, PushError, QueueConfig, QueueError};
use chi_shm::shm::{Allocator, FullPtr, Segment, ShmPtr};
use support::{Children, WATCHDOG, child_role, env_str, env_u64, new_segment};

/// A block of counters in the segment, shared by the parent and its children.
type Control = [AtomicU64; 32];

fn new_control(alloc: &Allocator) -> FullPtr<Control> {
    alloc
        .new_obj(std::array::from_fn(|_| AtomicU64::new(0)))
        .expect("allocate control block")
}

fn control_at(ptr: ShmPtr) -> &'static Control {
    let p = ptr.resolve::<Control>().expect("resolve control block");
    // SAFETY: the control block is an array of atomics allocated by the parent,
    // which keeps it (and the segment) alive until every child has exited; the
    // caller keeps its Segment handle for the whole child run.
    unsafe { p.as_ref() }
}

/// Attaches the segment and queue (root 0) and control block (root 1) a parent set up.
fn attach_child() -> (Segment, MultiLaneQueue, &'static Control) {
    let seg = Segment::attach(&env_str("CHI_SEG")).expect("attach segment");
    let q = MultiLaneQueue::attach(&seg, seg.root(0).expect("root 0")).expect("attach queue");
    let ctl = control_at(seg.root(1).expect("root 1"));
    (seg, q, ctl)
}

/// Polls `cond` with short sleeps (the parent's watchdog bounds the wait).
fn spin_until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---- 3 producer processes x 1,000,000 items into one lane ---------------------

const PRODUCERS: u64 = 3;
const ITEMS_PER_PRODUCER: u64 = 1_000_000;
const SEQ_BITS: u32 = 40;

// Control block slots of the stress test.
const C_ATTEMPTS: usize = 0; // consumer: times it found the lane empty and went to sleep
const C_GO: usize = 1; // parent: producers may start
const C_SLEPT: usize = 2; // consumer: sleeps that really waited on the doorbell
const C_RECEIVED: usize = 3; // consumer: items received
const C_STALLS: usize = 4; // consumer: times it let the lane fill up
const C_FULL: usize = 8; // + producer: PushError::Full seen by that producer

/// Child role: one producer process pushing `CHI_ITEMS` values into lane 0.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_queue_producer() {
    if !child_role("child_queue_producer") {
        return;
    }
    let (_seg, q, ctl) = attach_child();
    let p = env_u64("CHI_PRODUCER");
    let items = env_u64("CHI_ITEMS");
    spin_until(|| ctl[C_GO].load(Ordering::Acquire) == 1);
    let mut full = 0u64;
    for seq in 0..items {
        let v = ShmPtr::from_bits((p << SEQ_BITS) | seq);
        loop {
            match q.push_to_lane(0, v, Some(Duration::from_millis(2))) {
                Ok(()) => break,
                Err(PushError::Full { lane: 0, depth }) => {
                    assert_eq!(depth, q.depth());
                    full += 1;
                }
                Err(e) => panic!("producer {p}: unexpected push error {e}"),
            }
        }
    }
    ctl[C_FULL + p as usize].store(full, Ordering::Release);
    println!("producer {p}: pushed {items} items, saw Full {full} times");
}

/// Child role: the single consumer of lane 0; checks every producer's sequence.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_queue_consumer() {
    if !child_role("child_queue_consumer") {
        return;
    }
    let (_seg, q, ctl) = attach_child();
    let producers = env_u64("CHI_PRODUCERS");
    let items = env_u64("CHI_ITEMS");
    let total = producers * items;
    let mut consumer = q.consumer(&[0]).expect("claim lane 0");
    let mut next = vec![0u64; producers as usize];
    let mut received = 0u64;
    let mut slept = 0u64;
    let stall_points = [total / 4, total / 2, 3 * total / 4];
    while received < total {
        let Some((v, lane)) = consumer.pop() else {
            ctl[C_ATTEMPTS].fetch_add(1, Ordering::Release);
            // No timeout: a lost wake-up hangs here and the parent's watchdog fails
            // the test.
            if consumer.sleep(None) {
                slept += 1;
            }
            continue;
        };
        assert_eq!(lane, 0);
        let bits = v.to_bits();
        let p = bits >> SEQ_BITS;
        let seq = bits & ((1 << SEQ_BITS) - 1);
        assert!(p < producers, "value {bits:#x} names no producer");
        assert_eq!(
            seq, next[p as usize],
            "producer {p}: got sequence number {seq}, expected {} (lost, duplicated or reordered)",
            next[p as usize]
        );
        next[p as usize] += 1;
        received += 1;
        if received.is_multiple_of(4096) {
            ctl[C_RECEIVED].store(received, Ordering::Relaxed);
        }
        if stall_points.contains(&received) {
            // Let the lane fill up so the producers run into PushError::Full.
            spin_until(|| q.lane_len(0) == q.depth());
            std::thread::sleep(Duration::from_millis(20));
            ctl[C_STALLS].fetch_add(1, Ordering::Relaxed);
        }
    }
    assert_eq!(next, vec![items; producers as usize]);
    assert_eq!(consumer.pop(), None, "more values than were pushed");
    assert_eq!(q.lane_len(0), 0);
    ctl[C_RECEIVED].store(received, Ordering::Relaxed);
    ctl[C_SLEPT].store(slept, Ordering::Release);
    println!("consumer: received {received} items, slept {slept} times");
}

#[test]
fn three_producer_processes_one_lane_order_no_loss_no_dup() {
    let start = Instant::now();
    let (name, seg) = new_segment("queue_3p", 8 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let q = MultiLaneQueue::create(
        &seg,
        &alloc,
        QueueConfig {
            low_latency_lanes: 1,
            high_latency_lanes: 0,
            depth: 1024,
        },
    )
    .unwrap();
    let ctl_ptr = new_control(&alloc);
    seg.set_root(0, q.shm());
    seg.set_root(1, ctl_ptr.shm());
    // SAFETY: the control block lives until the end of this test (freed below,
    // after every child exited).
    let ctl = unsafe { ctl_ptr.as_ref() };

    let mut children = Children::new();
    let env = |extra: Vec<(&'static str, String)>| {
        let mut e = vec![
            ("CHI_SEG", name.as_str().to_owned()),
            ("CHI_ITEMS", ITEMS_PER_PRODUCER.to_string()),
            ("CHI_PRODUCERS", PRODUCERS.to_string()),
        ];
        e.extend(extra);
        e
    };
    children.spawn("child_queue_consumer", "consumer", &env(vec![]));
    for p in 0..PRODUCERS {
        children.spawn(
            "child_queue_producer",
            &format!("producer {p}"),
            &env(vec![("CHI_PRODUCER", p.to_string())]),
        );
    }
    // Let the consumer find the lane empty and go to sleep before anyone pushes,
    // so the first push has to wake it through the doorbell.
    children.wait_until(WATCHDOG, "consumer going to sleep", || {
        ctl[C_ATTEMPTS].load(Ordering::Acquire) >= 1
    });
    std::thread::sleep(Duration::from_millis(50));
    ctl[C_GO].store(1, Ordering::Release);
    children.wait_all(Duration::from_secs(300));

    let received = ctl[C_RECEIVED].load(Ordering::Acquire);
    let slept = ctl[C_SLEPT].load(Ordering::Acquire);
    let fulls: Vec<u64> = (0..PRODUCERS as usize)
        .map(|p| ctl[C_FULL + p].load(Ordering::Acquire))
        .collect();
    assert_eq!(received, PRODUCERS * ITEMS_PER_PRODUCER);
    assert_eq!(ctl[C_STALLS].load(Ordering::Relaxed), 3);
    assert!(slept >= 1, "the consumer never slept on its doorbell");
    assert!(
        fulls.iter().sum::<u64>() >= 1,
        "no producer ever found the lane full: {fulls:?}"
    );
    assert_eq!(q.lane_len(0), 0);
    eprintln!(
        "{received} items from {PRODUCERS} processes in {:?}; consumer slept {slept} times, \
         producers saw Full {fulls:?} times",
        start.elapsed()
    );
    alloc.free_full(ctl_ptr).unwrap();
}

// ---- doorbell ping-pong across processes -----------------------------------------

const ROUNDS: u64 = 200;

/// Child role: consumes `ROUNDS` values one by one, sleeping (no timeout) in between.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_queue_sleeper() {
    if !child_role("child_queue_sleeper") {
        return;
    }
    let (_seg, q, ctl) = attach_child();
    let lane = env_u64("CHI_LANE") as usize;
    let mut consumer = q.consumer(&[lane]).expect("claim lane");
    let mut next = 0u64;
    let mut slept = 0u64;
    while next < ROUNDS {
        match consumer.pop() {
            Some((v, l)) => {
                assert_eq!(l, lane);
                assert_eq!(v.to_bits(), next + 1);
                next += 1;
                ctl[C_RECEIVED].store(next, Ordering::Release);
            }
            None => {
                ctl[C_ATTEMPTS].fetch_add(1, Ordering::Release);
                if consumer.sleep(None) {
                    slept += 1;
                }
            }
        }
    }
    ctl[C_SLEPT].store(slept, Ordering::Release);
}

#[test]
fn consumer_process_sleeps_on_doorbell_and_is_woken_by_push() {
    let (name, seg) = new_segment("queue_pingpong", 4 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let q = MultiLaneQueue::create(
        &seg,
        &alloc,
        QueueConfig {
            low_latency_lanes: 2,
            high_latency_lanes: 2,
            depth: 16,
        },
    )
    .unwrap();
    let ctl_ptr = new_control(&alloc);
    seg.set_root(0, q.shm());
    seg.set_root(1, ctl_ptr.shm());
    // SAFETY: freed only after the child exited.
    let ctl = unsafe { ctl_ptr.as_ref() };
    let lane = q.lane_for(Priority::HighLatency, 1);
    assert_eq!(lane, 3);

    let mut children = Children::new();
    children.spawn(
        "child_queue_sleeper",
        "sleeper",
        &[
            ("CHI_SEG", name.as_str().to_owned()),
            ("CHI_LANE", lane.to_string()),
        ],
    );
    for r in 0..ROUNDS {
        // Wait until the child consumed the previous value and is going to sleep.
        children.wait_until(WATCHDOG, "consumer going to sleep", || {
            ctl[C_RECEIVED].load(Ordering::Acquire) == r
                && ctl[C_ATTEMPTS].load(Ordering::Acquire) > r
        });
        std::thread::sleep(Duration::from_micros(500));
        q.push_to_lane(lane, ShmPtr::from_bits(r + 1), None)
            .unwrap();
    }
    children.wait_all(WATCHDOG);
    let slept = ctl[C_SLEPT].load(Ordering::Acquire);
    assert!(slept >= 1, "the consumer never slept");
    eprintln!("{ROUNDS} wake-ups across processes; the consumer slept {slept} times");
    alloc.free_full(ctl_ptr).unwrap();
}

// ---- single-process properties ------------------------------------------------------

fn small_queue(
    seg: &Segment,
    alloc: &Allocator,
    low: u32,
    high: u32,
    depth: u64,
) -> MultiLaneQueue {
    MultiLaneQueue::create(
        seg,
        alloc,
        QueueConfig {
            low_latency_lanes: low,
            high_latency_lanes: high,
            depth,
        },
    )
    .unwrap()
}

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

// ---- lane claims --------------------------------------------------------------------

const C_HELD: usize = 0;
const C_RELEASE: usize = 1;
const C_RELEASED: usize = 2;
const C_PHASE2: usize = 3;

/// Child role: claims lane 0, holds it until told, releases it, then claims it
/// again and exits without releasing (a dead consumer).
#[test]
#[ignore = "child role: run by its parent test"]
fn child_queue_lane_holder() {
    if !child_role("child_queue_lane_holder") {
        return;
    }
    let (_seg, q, ctl) = attach_child();
    let c = q.consumer(&[0]).expect("claim lane 0");
    ctl[C_HELD].store(1, Ordering::Release);
    spin_until(|| ctl[C_RELEASE].load(Ordering::Acquire) == 1);
    drop(c);
    ctl[C_RELEASED].store(1, Ordering::Release);
    spin_until(|| ctl[C_PHASE2].load(Ordering::Acquire) == 1);
    let c = q.consumer(&[0]).expect("claim lane 0 again");
    // Exit while holding the claim, as a crashed consumer would.
    std::mem::forget(c);
}

#[test]
fn a_lane_has_one_live_consumer_at_a_time() {
    let (name, seg) = new_segment("queue_claims", 4 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let q = small_queue(&seg, &alloc, 2, 2, 4);
    let me = std::process::id();

    // Within one process.
    let c1 = q.consumer(&[0, 1]).unwrap();
    assert_eq!(c1.lanes(), &[0, 1]);
    match q.consumer(&[1]) {
        Err(QueueError::LaneBusy { lane: 1, pid }) => assert_eq!(pid, me),
        other => panic!("expected LaneBusy, got {other:?}"),
    }
    // A refused claim gives back the lanes it had already taken (lane 2 here).
    assert!(matches!(
        q.consumer(&[2, 0]),
        Err(QueueError::LaneBusy { lane: 0, .. })
    ));
    let c2 = q.consumer(&[2]).expect("lane 2 was given back");
    drop(c2);
    match q.consumer(&[4]) {
        Err(QueueError::NoLane { lane: 4, lanes: 4 }) => {}
        other => panic!("expected NoLane, got {other:?}"),
    }
    assert!(matches!(q.consumer(&[]), Err(QueueError::BadConfig(_))));
    drop(c1);
    let c1 = q
        .consumer(&[1, 0])
        .expect("free after the first consumer was dropped");
    drop(c1);

    // Across processes: a live consumer in another process holds the lane.
    let ctl_ptr = new_control(&alloc);
    seg.set_root(0, q.shm());
    seg.set_root(1, ctl_ptr.shm());
    // SAFETY: freed only after the child exited.
    let ctl = unsafe { ctl_ptr.as_ref() };
    let mut children = Children::new();
    let child = children.spawn(
        "child_queue_lane_holder",
        "lane holder",
        &[("CHI_SEG", name.as_str().to_owned())],
    );
    children.wait_until(WATCHDOG, "child claiming lane 0", || {
        ctl[C_HELD].load(Ordering::Acquire) == 1
    });
    match q.consumer(&[0]) {
        Err(QueueError::LaneBusy { lane: 0, pid }) => assert_eq!(pid, children.pid(child)),
        other => panic!("expected LaneBusy from the child, got {other:?}"),
    }
    let c = q.consumer(&[1]).expect("other lanes are free");
    drop(c);
    ctl[C_RELEASE].store(1, Ordering::Release);
    children.wait_until(WATCHDOG, "child releasing lane 0", || {
        ctl[C_RELEASED].load(Ordering::Acquire) == 1
    });
    let c = q
        .consumer(&[0])
        .expect("lane 0 free after the child's consumer was dropped");
    drop(c);
    // The child claims again and dies holding the claim: it is taken over.
    ctl[C_PHASE2].store(1, Ordering::Release);
    children.wait_for(child, WATCHDOG);
    let mut c = q
        .consumer(&[0])
        .expect("a dead consumer's claim is taken over");
    q.try_push(0, ShmPtr::from_bits(5)).unwrap();
    assert_eq!(c.pop(), Some((ShmPtr::from_bits(5), 0)));
    drop(c);
    alloc.free_full(ctl_ptr).unwrap();
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
