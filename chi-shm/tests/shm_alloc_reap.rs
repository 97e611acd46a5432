//! Reclaiming what a SIGKILLed client held: its live blocks (small and large), the
//! blocks in its thread caches, its counters and its owner slot, many times over
//! with few free owner slots, and with blocks the runtime keeps.
#![cfg(not(loom))]
// A client of the crate: its own atomics are the standard ones, which its
// shared-memory records hold (the facade rule of clippy.toml is for the library).
#![allow(clippy::disallowed_types)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use chi_shm::shm::alloc::{MAX_OWNERS, MAX_SMALL_SIZE};
use chi_shm::shm::{Allocator, FullPtr, OwnerId, Segment, ShmPtr};
use support::pattern::{check, fill};
use support::{Children, Rng, WATCHDOG, child_role, env_str, env_u64, new_segment};

/// Report slots: [0] owner + 1 once ready, [1] pid, [2] number of live blocks,
/// then (pointer, size, tag) triples.
type Report = [AtomicU64; 256];
const MAX_BLOCKS: usize = 80;

/// A live block a victim reported.
type Reported = (ShmPtr, usize, u64);

fn report_at(seg: &Segment) -> &Report {
    let p = seg
        .root(1)
        .unwrap()
        .resolve::<Report>()
        .expect("resolve report");
    // SAFETY: an array of atomics the parent allocated and frees only after every
    // child is gone; `seg` outlives the borrow.
    unsafe { p.as_ref() }
}

fn tag(seed: u64, i: usize) -> u64 {
    (seed << 32) | i as u64
}

/// Allocates a mix of small and large blocks, fills them, frees some of them
/// into this thread's cache; returns the live ones.
fn allocate_mix(alloc: &Allocator, rng: &mut Rng, seed: u64, n: usize) -> Vec<Reported> {
    let mut live = Vec::new();
    for i in 0..n {
        let size = if i % 9 == 0 {
            rng.range(MAX_SMALL_SIZE as u64 + 1, 300_000) as usize
        } else {
            rng.range(1, 3000) as usize
        };
        let p = alloc.allocate(size).expect("allocate");
        // SAFETY: a fresh allocation of `size` bytes.
        unsafe { fill(p.as_ptr(), size, tag(seed, i)) };
        live.push((p.shm(), size, tag(seed, i)));
    }
    // Free every third one: small ones stay in this thread's cache.
    let mut kept = Vec::new();
    for (k, block) in live.into_iter().enumerate() {
        if k % 3 == 1 {
            alloc.free(block.0).expect("free");
        } else {
            kept.push(block);
        }
    }
    kept
}

/// Child role: two threads allocate, free some blocks into their caches, report
/// their live blocks, then wait to be SIGKILLed.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_reap_victim() {
    if !child_role("child_reap_victim") {
        return;
    }
    let seg = Segment::attach(&env_str("CHI_SEG")).expect("attach");
    let alloc = Allocator::attach(&seg).expect("allocator");
    let seed = env_u64("CHI_SEED");
    let report = report_at(&seg);
    // A second thread with its own cache, which is parked when the process dies.
    let (tx, rx) = std::sync::mpsc::channel();
    let other = alloc.clone();
    std::thread::spawn(move || {
        let mut rng = Rng::new(seed * 2 + 1);
        tx.send(allocate_mix(&other, &mut rng, seed * 2 + 1, 30))
            .unwrap();
        loop {
            std::thread::park();
        }
    });
    let mut rng = Rng::new(seed * 2);
    let mut live = allocate_mix(&alloc, &mut rng, seed * 2, 60);
    live.extend(rx.recv().expect("second thread"));
    assert!(live.len() <= MAX_BLOCKS);
    for (k, (ptr, size, tag)) in live.iter().enumerate() {
        report[3 + 3 * k].store(ptr.to_bits(), Ordering::Relaxed);
        report[4 + 3 * k].store(*size as u64, Ordering::Relaxed);
        report[5 + 3 * k].store(*tag, Ordering::Relaxed);
    }
    report[2].store(live.len() as u64, Ordering::Relaxed);
    report[1].store(std::process::id() as u64, Ordering::Relaxed);
    // Release: the slots above are visible to whoever sees the owner.
    report[0].store(alloc.owner().0 as u64 + 1, Ordering::Release);
    loop {
        std::thread::park();
    }
}

/// What a victim reported.
struct Victim {
    owner: OwnerId,
    pid: u32,
    blocks: Vec<Reported>,
}

/// Checks the contents the victim wrote into one of its blocks.
fn check_block(&(ptr, size, tag): &Reported) {
    let p = ptr.resolve_slice::<u8>(size as u64).unwrap();
    // SAFETY: a live block of at least `size` bytes that no live process uses.
    unsafe { check(p.as_ptr(), size, tag) }.unwrap_or_else(|e| panic!("{ptr}: {e}"));
}

/// Starts a victim, waits for its report, SIGKILLs it.
fn run_victim(name: &str, seg: &Segment, seed: u64) -> Victim {
    let report = report_at(seg);
    for r in report.iter() {
        r.store(0, Ordering::Relaxed);
    }
    let mut children = Children::new();
    let c = children.spawn(
        "child_reap_victim",
        &format!("victim {seed}"),
        &[("CHI_SEG", name.to_owned()), ("CHI_SEED", seed.to_string())],
    );
    children.wait_until(WATCHDOG, "the victim's report", || {
        report[0].load(Ordering::Acquire) != 0
    });
    let owner = OwnerId(report[0].load(Ordering::Acquire) as u32 - 1);
    let pid = report[1].load(Ordering::Relaxed) as u32;
    assert_eq!(pid, children.pid(c));
    let n = report[2].load(Ordering::Relaxed) as usize;
    let blocks = (0..n)
        .map(|k| {
            (
                ShmPtr::from_bits(report[3 + 3 * k].load(Ordering::Relaxed)),
                report[4 + 3 * k].load(Ordering::Relaxed) as usize,
                report[5 + 3 * k].load(Ordering::Relaxed),
            )
        })
        .collect();
    // SIGKILL and reap the process (a zombie counts as dead too).
    children.kill_all();
    Victim { owner, pid, blocks }
}

/// Reserves owner slots until only `free` are left, so that leaked slots would
/// make the next attach fail.
fn fill_owner_slots(seg: &Segment, free: usize) -> Vec<Allocator> {
    let mut held = Vec::new();
    while let Ok(a) = Allocator::attach(seg) {
        held.push(a);
    }
    assert!(held.len() > free, "{} slots", held.len());
    held.truncate(held.len() - free);
    held
}

#[test]
fn sigkilled_clients_are_reaped_and_their_slots_reused() {
    const CHILDREN: u64 = 50;
    const FREE_SLOTS: usize = 2;
    let (name, seg) = new_segment("alloc_reap", 32 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let empty = alloc.stats();
    let report_ptr: FullPtr<Report> = alloc
        .new_obj(std::array::from_fn(|_| AtomicU64::new(0)))
        .unwrap();
    seg.set_root(1, report_ptr.shm());
    let held = fill_owner_slots(&seg, FREE_SLOTS);
    assert_eq!(held.len() + 1 + FREE_SLOTS, MAX_OWNERS);
    let baseline = alloc.stats();

    let (mut freed, mut uncached) = (0, 0);
    for seed in 1..=CHILDREN {
        let v = run_victim(name.as_str(), &seg, seed);
        // The dead child still owns its blocks, and is listed as dead.
        assert!(
            alloc.dead_owners().contains(&(v.owner, v.pid)),
            "child {seed}: {:?} not in {:?}",
            (v.owner, v.pid),
            alloc.dead_owners()
        );
        let (mut live, cached) = alloc.blocks_of(v.owner);
        live.sort_by_key(|p| p.to_bits());
        let mut reported: Vec<ShmPtr> = v.blocks.iter().map(|b| b.0).collect();
        reported.sort_by_key(|p| p.to_bits());
        assert_eq!(live, reported, "child {seed}: blocks_of");
        assert!(cached > 0, "child {seed}: nothing in its thread caches");
        for b in &v.blocks {
            assert_eq!(alloc.owner_of(b.0), Ok(v.owner));
            check_block(b);
        }

        let r = alloc.reap_owner(v.owner, &|_| false).unwrap();
        assert_eq!((r.owner, r.pid), (v.owner, v.pid));
        assert_eq!(r.freed_blocks, v.blocks.len() as u64, "child {seed}");
        assert_eq!(r.uncached_blocks, cached, "child {seed}");
        assert_eq!((r.kept_blocks, r.possibly_leaked_bytes), (0, 0));
        assert!(r.slot_released);
        freed += r.freed_blocks;
        uncached += r.uncached_blocks;

        let st = alloc.stats();
        assert_eq!(
            (st.used_bytes, st.live_blocks),
            (baseline.used_bytes, baseline.live_blocks),
            "child {seed}: accounting after the reap"
        );
        assert_eq!(alloc.owner_pid(v.owner), Some(0));
        assert_eq!(alloc.owner_usage(v.owner), Some((0, 0)));
        assert_eq!(alloc.blocks_of(v.owner), (vec![], 0));
        assert!(alloc.dead_owners().is_empty());
        for &(ptr, _, _) in &v.blocks {
            assert!(alloc.owner_of(ptr).is_err(), "{ptr} still live");
        }
    }
    eprintln!("reaped {CHILDREN} children: {freed} live blocks freed, {uncached} cached returned");

    // The freed memory serves allocations again: all of it, once the report and
    // the held slots are gone.
    drop(held);
    alloc.free_full(report_ptr).unwrap();
    alloc.flush_thread_cache();
    let largest = (empty.heap_bytes - 16) as usize;
    let all = alloc
        .allocate(largest)
        .expect("the whole heap after the reaps");
    alloc.free_full(all).unwrap();
    alloc.flush_thread_cache();
    assert_eq!(alloc.stats(), empty);
}

#[test]
fn blocks_the_runtime_keeps_survive_the_reap_until_freed() {
    let (name, seg) = new_segment("alloc_reap_keep", 16 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let report_ptr: FullPtr<Report> = alloc
        .new_obj(std::array::from_fn(|_| AtomicU64::new(0)))
        .unwrap();
    seg.set_root(1, report_ptr.shm());
    let baseline = alloc.stats();
    let v = run_victim(name.as_str(), &seg, 7);
    // The runtime still runs the tasks in every fourth block, large ones included.
    let kept: Vec<Reported> = v.blocks.iter().copied().step_by(4).collect();
    assert!(kept.iter().any(|&(_, s, _)| s > MAX_SMALL_SIZE));
    let keep = |p: ShmPtr| kept.iter().any(|&(k, _, _)| k == p);
    let kept_bytes: u64 = kept
        .iter()
        .map(|&(p, _, _)| alloc.usable_size(p).unwrap())
        .sum();

    let r = alloc.reap_owner(v.owner, &keep).unwrap();
    assert_eq!(r.kept_blocks, kept.len() as u64);
    assert_eq!(r.kept_bytes, kept_bytes);
    assert_eq!(r.freed_blocks, (v.blocks.len() - kept.len()) as u64);
    assert!(!r.slot_released);
    // The slot is neither free nor alive: listed for a later reap, never handed out.
    assert_eq!(alloc.dead_owners(), vec![(v.owner, v.pid)]);
    assert_eq!(alloc.owner_pid(v.owner), Some(v.pid));
    assert_eq!(
        alloc.owner_usage(v.owner),
        Some((kept_bytes, kept.len() as u64))
    );
    let st = alloc.stats();
    assert_eq!(
        (st.used_bytes, st.live_blocks),
        (
            baseline.used_bytes + kept_bytes,
            baseline.live_blocks + kept.len() as u64
        )
    );
    let others: Vec<Allocator> = (0..4).map(|_| Allocator::attach(&seg).unwrap()).collect();
    assert!(others.iter().all(|a| a.owner() != v.owner));
    drop(others);

    // The kept blocks are intact and still the child's; the runtime frees them
    // when their tasks end.
    for b in &kept {
        assert_eq!(alloc.owner_of(b.0), Ok(v.owner));
        check_block(b);
        alloc.free(b.0).unwrap();
    }
    let r = alloc.reap_owner(v.owner, &keep).unwrap();
    assert_eq!((r.freed_blocks, r.kept_blocks), (0, 0));
    assert!(r.slot_released);
    assert!(alloc.dead_owners().is_empty());
    let st = alloc.stats();
    assert_eq!(
        (st.used_bytes, st.live_blocks),
        (baseline.used_bytes, baseline.live_blocks)
    );
    alloc.free_full(report_ptr).unwrap();
}
