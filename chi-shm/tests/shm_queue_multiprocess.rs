//! The multi-lane queue across processes: several producer processes into one
//! lane with a consumer process that checks per-producer order, no loss and no
//! duplicate; doorbell sleep/wake across processes; lane claims (what one
//! process can check: `shm_queue_single.rs`).
#![cfg(not(loom))]
// A client of the crate: its own atomics are the standard ones, which its
// shared-memory records hold (the facade rule of clippy.toml is for the library).
#![allow(clippy::disallowed_types)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chi_shm::queue::{MultiLaneQueue, Priority, PushError, QueueConfig, QueueError};
use chi_shm::shm::{Allocator, FullPtr, Segment, ShmPtr};
use support::{Children, WATCHDOG, child_role, env_str, env_u64, new_segment, small_queue};

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
