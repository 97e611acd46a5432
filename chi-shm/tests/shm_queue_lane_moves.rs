//! Lanes that move between consumers while producers push: `split_off` on one
//! consumer thread, `absorb` on another, back and forth, thousands of times.
//! Every value arrives exactly once and in each producer's order; a consumer
//! that sleeps on its doorbell after absorbing a lane is woken by pushes onto
//! it; a take-over of a lane is absorbed the same way, and a consumer that
//! forgets a lane never pops it again.
#![cfg(not(loom))]
#![allow(clippy::disallowed_types)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use chi_shm::queue::{Consumer, MultiLaneQueue, QueueConfig};
use chi_shm::shm::{Allocator, ShmPtr};
use support::new_segment;

const SEQ_BITS: u32 = 40;

fn queue(test: &str, lanes: u32) -> (chi_shm::shm::Segment, MultiLaneQueue) {
    let (_name, seg) = new_segment(test, 8 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let q = MultiLaneQueue::create(
        &seg,
        &alloc,
        QueueConfig {
            low_latency_lanes: lanes,
            high_latency_lanes: 0,
            depth: 64,
        },
    )
    .unwrap();
    (seg, q)
}

/// Per (producer, lane), the sequence numbers received in order.
type Received = Mutex<Vec<Vec<Vec<u64>>>>;

/// One consumer thread: pops its lanes, records what it gets, and after every
/// few pops of lane `MOVING` hands that lane to the other consumer through
/// `outbox` (ringing the other's doorbell); absorbs what arrives in `inbox`.
fn consumer_thread(
    mut me: Consumer,
    other_bell: usize,
    inbox: mpsc::Receiver<Consumer>,
    outbox: mpsc::Sender<Consumer>,
    shared: Arc<(Received, AtomicU64, AtomicBool, AtomicU64)>,
    expected: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (received, total, done, moves) = &*shared;
        let q = me.queue().clone();
        let mut since_move = 0u32;
        while !done.load(Ordering::Acquire) {
            while let Ok(lane) = inbox.try_recv() {
                assert_eq!(
                    me.absorb(lane),
                    vec![MOVING],
                    "the moved lane is taken whole"
                );
            }
            let Some((v, lane)) = me.pop() else {
                me.sleep(Some(Duration::from_millis(50)));
                continue;
            };
            let v = v.to_bits();
            let (p, seq) = (v >> SEQ_BITS, v & ((1 << SEQ_BITS) - 1));
            received.lock().unwrap()[p as usize][lane].push(seq);
            if total.fetch_add(1, Ordering::AcqRel) + 1 == expected {
                done.store(true, Ordering::Release);
                q.ring_bell(other_bell);
            }
            if lane == MOVING {
                since_move += 1;
                if since_move >= 7 {
                    since_move = 0;
                    let l = me.split_off(MOVING).expect("holds the moving lane");
                    assert!(!me.lanes().contains(&MOVING));
                    moves.fetch_add(1, Ordering::Relaxed);
                    outbox.send(l).unwrap();
                    q.ring_bell(other_bell);
                }
            }
        }
    })
}

const MOVING: usize = 2;

/// Producers push `(producer, seq)` words round robin onto three lanes; lane
/// 2 passes between two consumer threads after every seven of its pops.
#[test]
fn a_lane_passed_between_consumers_loses_and_repeats_nothing() {
    const PRODUCERS: u64 = 2;
    const ITEMS: u64 = 60_000;
    let (_seg, q) = queue("lane_moves", 3);
    let a = q.consumer(&[0, MOVING]).unwrap();
    let b = q.consumer(&[1]).unwrap();
    assert!(
        q.consumer(&[MOVING]).is_err(),
        "a lane with a live consumer is not claimed twice"
    );
    let (a_bell, b_bell) = (a.bell(), b.bell());
    assert_ne!(a_bell, b_bell);
    let shared = Arc::new((
        Mutex::new(vec![vec![Vec::new(); 3]; PRODUCERS as usize]),
        AtomicU64::new(0),
        AtomicBool::new(false),
        AtomicU64::new(0),
    ));
    let (to_a, a_inbox) = mpsc::channel();
    let (to_b, b_inbox) = mpsc::channel();
    let expected = PRODUCERS * ITEMS;
    let ta = consumer_thread(a, b_bell, a_inbox, to_b, shared.clone(), expected);
    let tb = consumer_thread(b, a_bell, b_inbox, to_a, shared.clone(), expected);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            std::thread::spawn(move || {
                for seq in 0..ITEMS {
                    q.push_to_lane(
                        (seq % 3) as usize,
                        ShmPtr::from_bits((p << SEQ_BITS) | seq),
                        Some(Duration::from_secs(30)),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    ta.join().unwrap();
    tb.join().unwrap();
    let received = shared.0.lock().unwrap();
    for (p, lanes) in received.iter().enumerate() {
        for (lane, got) in lanes.iter().enumerate() {
            let want: Vec<u64> = (0..ITEMS).filter(|s| (s % 3) as usize == lane).collect();
            assert_eq!(
                got, &want,
                "producer {p}, lane {lane}: every value once, in order"
            );
        }
    }
    assert!(
        shared.3.load(Ordering::Relaxed) > 1000,
        "the lane moved many times"
    );
}

/// A take-over of one lane (the runtime's forced move while the holder is
/// inside a task) is absorbed like a split-off lane; the old holder forgets
/// the lane and never pops it again, and keeps its other lane.
#[test]
fn a_taken_over_lane_is_absorbed_and_forgotten_by_its_old_holder() {
    let (_seg, q) = queue("lane_takeover", 3);
    let mut a = q.consumer(&[0, 1]).unwrap();
    let mut b = q.consumer(&[2]).unwrap();
    for v in 1..=4u64 {
        q.push_to_lane(1, ShmPtr::from_bits(v), None).unwrap();
    }
    assert_eq!(a.pop_lane(1).map(ShmPtr::to_bits), Some(1));
    // SAFETY: `a` does not pop lane 1 again: it forgets it below before it
    // pops anything.
    let moved = unsafe { q.take_over(&[1]) }.unwrap();
    assert_eq!(b.absorb(moved), vec![1]);
    a.forget_lanes(&[1]);
    assert_eq!(a.lanes(), &[0]);
    let got: Vec<u64> = std::iter::from_fn(|| b.pop().map(|(v, _)| v.to_bits())).collect();
    assert_eq!(got, vec![2, 3, 4], "b goes on where a stopped");
    // Pushes onto the moved lane ring b's doorbell now: b sleeping is woken.
    let waker = {
        let q = q.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            q.push_to_lane(1, ShmPtr::from_bits(9), None).unwrap();
        })
    };
    let t = std::time::Instant::now();
    while b.pop().is_none() {
        assert!(b.sleep(Some(Duration::from_secs(20))) || t.elapsed() < Duration::from_secs(20));
        assert!(t.elapsed() < Duration::from_secs(20), "b was not woken");
    }
    waker.join().unwrap();
    // A split-off lane dropped without being absorbed is released: a new
    // consumer may claim it.
    drop(b.split_off(1).unwrap());
    let c = q.consumer(&[1]).unwrap();
    assert_eq!(c.lanes(), &[1]);
    // Absorbing a lane of another queue takes nothing.
    let (_seg2, q2) = queue("lane_other_queue", 1);
    let foreign = q2.consumer(&[0]).unwrap();
    assert!(a.absorb(foreign).is_empty());
}
