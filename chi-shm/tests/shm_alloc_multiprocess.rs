//! The cross-process allocator: several processes x threads allocating and
//! freeing random sizes with content checks, blocks freed by another process
//! than their allocator's, accounting back to baseline, and ownership of a
//! dead child's blocks (the errors of one process: `shm_alloc_errors.rs`).
#![cfg(not(loom))]
// A client of the crate: its own atomics are the standard ones, which its
// shared-memory records hold (the facade rule of clippy.toml is for the library).
#![allow(clippy::disallowed_types)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chi_shm::shm::alloc::{MAX_OWNERS, MAX_SMALL_SIZE, SMALL_ALIGN};
use chi_shm::shm::{Allocator, FreeError, FullPtr, OwnerId, Segment, ShmPtr};
use support::patterns::*;
use support::{Children, Rng, WATCHDOG, child_role, env_str, env_u64, new_segment};

/// Counters shared by the parent and its children.
type Control = [AtomicU64; 64];
/// Slots through which blocks pass from one process to another (0 = empty).
const MAILBOX_SLOTS: usize = 256;
type Mailbox = [AtomicU64; MAILBOX_SLOTS];

fn zeroed_atomics<const N: usize>(alloc: &Allocator) -> FullPtr<[AtomicU64; N]> {
    alloc
        .new_obj(std::array::from_fn(|_| AtomicU64::new(0)))
        .expect("allocate shared counters")
}

fn atomics_at<const N: usize>(ptr: ShmPtr) -> &'static [AtomicU64; N] {
    let p = ptr
        .resolve::<[AtomicU64; N]>()
        .expect("resolve shared counters");
    // SAFETY: an array of atomics allocated by the parent, which frees it only
    // after every child exited; the caller keeps its Segment handle while using it.
    unsafe { p.as_ref() }
}

// ---- multi-process stress ---------------------------------------------------------

const PROCS: u64 = 2;
const THREADS: u64 = 2;
const OPS_PER_THREAD: u64 = 50_000;
const MAX_LIVE: usize = 160;
const MAX_LIVE_LARGE: usize = 3;
const LARGE_MAX: usize = 300 * 1024;

// Control slots.
const A_HALF: usize = 0; // threads that reached the half-way barrier
const A_FOREIGN: usize = 1; // blocks freed by a process other than their allocator's
const A_REUSED: usize = 2; // of those, re-allocated at once by the freeing thread
const A_ALLOCS: usize = 3; // allocations
const A_LARGE: usize = 4; // large allocations
const A_OWNER: usize = 8; // + process: owner id + 1 of that child's allocator

/// Sizes: mostly small (log-uniform over 1..=MAX_SMALL_SIZE, plus the class
/// edges), some large up to 300 KiB.
fn pick_size(rng: &mut Rng, large_ok: bool) -> usize {
    const EDGES: [usize; 8] = [1, 15, 16, 17, 112, 113, MAX_SMALL_SIZE - 1, MAX_SMALL_SIZE];
    let r = rng.next_u64() % 100;
    if r < 3 && large_ok {
        rng.range(MAX_SMALL_SIZE as u64 + 1, LARGE_MAX as u64) as usize
    } else if r < 8 {
        EDGES[rng.range(0, EDGES.len() as u64 - 1) as usize]
    } else {
        let bits = rng.range(0, 13);
        (rng.range(1 << bits, 2 << bits) as usize).min(MAX_SMALL_SIZE)
    }
}

struct Live {
    ptr: ShmPtr,
    size: usize,
    tag: u64,
}

struct Worker<'a> {
    alloc: &'a Allocator,
    ctl: &'a Control,
    mine: &'a Mailbox,
    theirs: Vec<&'a Mailbox>,
    owners: Vec<OwnerId>,
    proc: u64,
    thread: u64,
    rng: Rng,
    seq: u64,
    live: Vec<Live>,
}

impl Worker<'_> {
    fn allocate(&mut self, size: usize) -> Live {
        let p = self
            .alloc
            .allocate(size)
            .unwrap_or_else(|e| panic!("allocate({size}): {e}"));
        let ptr = p.shm();
        assert_eq!(ptr.segment(), self.alloc.segment_id());
        assert!(
            ptr.offset().is_multiple_of(SMALL_ALIGN as u64),
            "{ptr} misaligned"
        );
        let usable = self.alloc.usable_size(ptr).unwrap();
        assert!(usable >= size as u64, "{ptr}: usable {usable} < {size}");
        assert_eq!(self.alloc.owner_of(ptr), Ok(self.alloc.owner()));
        self.seq += 1;
        let tag = tag_of(self.proc, self.thread, self.seq);
        // SAFETY: a fresh allocation of at least `size` bytes, 16-aligned.
        unsafe { fill(p.as_ptr(), size, tag) };
        self.ctl[A_ALLOCS].fetch_add(1, Ordering::Relaxed);
        if size > MAX_SMALL_SIZE {
            self.ctl[A_LARGE].fetch_add(1, Ordering::Relaxed);
        }
        Live { ptr, size, tag }
    }

    fn verify(&self, b: &Live) {
        let p = b.ptr.resolve_slice::<u8>(b.size as u64).unwrap();
        // SAFETY: our live allocation of `size` bytes.
        if let Err(e) = unsafe { check(p.as_ptr(), b.size, b.tag) } {
            panic!(
                "process {} thread {}: {}: {e}",
                self.proc, self.thread, b.ptr
            );
        }
    }

    fn free(&self, b: Live) {
        self.verify(&b);
        self.alloc
            .free(b.ptr)
            .unwrap_or_else(|e| panic!("free {}: {e}", b.ptr));
    }

    /// Hands a live block to the other processes through this process's mailbox.
    fn publish(&mut self, i: usize) {
        if self.live[i].size < 16 {
            return;
        }
        let b = self.live.swap_remove(i);
        self.verify(&b);
        let start = self.rng.next_u64() as usize;
        for k in 0..8 {
            let slot = &self.mine[(start + k) % MAILBOX_SLOTS];
            // Release: the block's contents are visible to whoever takes it.
            if slot
                .compare_exchange(0, b.ptr.to_bits(), Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
        self.free(b);
    }

    /// Takes a block another process allocated, checks it and frees it here, then
    /// allocates the same size again: the freed block is reused at once.
    fn take_foreign(&mut self) {
        let which = self.rng.next_u64() as usize % self.theirs.len();
        let mailbox = self.theirs[which];
        let start = self.rng.next_u64() as usize;
        for k in 0..MAILBOX_SLOTS {
            let slot = &mailbox[(start + k) % MAILBOX_SLOTS];
            if slot.load(Ordering::Relaxed) == 0 {
                continue;
            }
            // Acquire: pairs with the Release CAS of the publisher.
            let bits = slot.swap(0, Ordering::Acquire);
            if bits == 0 {
                continue;
            }
            let ptr = ShmPtr::from_bits(bits);
            let (tag, size) = check_self_describing(self.alloc, ptr);
            let from = (tag >> 56) - 1;
            assert_ne!(from, self.proc, "{ptr} came from our own process");
            assert_eq!(
                self.alloc.owner_of(ptr),
                Ok(self.owners[from as usize]),
                "{ptr}: owner is not the allocating process's"
            );
            self.alloc
                .free(ptr)
                .unwrap_or_else(|e| panic!("free foreign {ptr}: {e}"));
            self.ctl[A_FOREIGN].fetch_add(1, Ordering::Relaxed);
            let again = self.allocate(size);
            if again.ptr == ptr {
                self.ctl[A_REUSED].fetch_add(1, Ordering::Relaxed);
            }
            self.live.push(again);
            return;
        }
    }

    fn run(&mut self, ops: u64, threads_total: u64) {
        for op in 0..ops {
            if op == ops / 2 {
                // Every thread of every process has published blocks before any
                // goes on: the second half is sure to find foreign blocks.
                self.ctl[A_HALF].fetch_add(1, Ordering::AcqRel);
                while self.ctl[A_HALF].load(Ordering::Acquire) < threads_total {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let r = self.rng.next_u64() % 100;
            if self.live.len() < 8 || (r < 50 && self.live.len() < MAX_LIVE) {
                let large = self.live.iter().filter(|b| b.size > MAX_SMALL_SIZE).count();
                let size = pick_size(&mut self.rng, large < MAX_LIVE_LARGE);
                let b = self.allocate(size);
                self.live.push(b);
            } else if r < 60 {
                let i = self.rng.next_u64() as usize % self.live.len();
                self.publish(i);
            } else if r < 70 {
                self.take_foreign();
            } else {
                let i = self.rng.next_u64() as usize % self.live.len();
                let b = self.live.swap_remove(i);
                self.free(b);
            }
            if op % 2000 == 0 {
                for b in &self.live {
                    self.verify(b);
                }
            }
        }
        for b in std::mem::take(&mut self.live) {
            self.free(b);
        }
    }
}

/// Child role: `THREADS` threads allocating, checking, exchanging and freeing.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_alloc_stress() {
    if !child_role("child_alloc_stress") {
        return;
    }
    let seg = Segment::attach(&env_str("CHI_SEG")).expect("attach");
    let proc = env_u64("CHI_PROC");
    let procs = env_u64("CHI_PROCS");
    let threads = env_u64("CHI_THREADS");
    let ops = env_u64("CHI_OPS");
    let alloc = Allocator::attach(&seg).expect("allocator");
    let ctl: &Control = atomics_at(seg.root(1).unwrap());
    let boxes: Vec<&Mailbox> = (0..procs as usize)
        .map(|p| atomics_at(seg.root(2 + p).unwrap()))
        .collect();
    ctl[A_OWNER + proc as usize].store(alloc.owner().0 as u64 + 1, Ordering::Release);
    // Wait for every process's owner id (to check foreign blocks' owners).
    let owners: Vec<OwnerId> = (0..procs as usize)
        .map(|p| {
            loop {
                match ctl[A_OWNER + p].load(Ordering::Acquire) {
                    0 => std::thread::sleep(Duration::from_millis(1)),
                    o => break OwnerId(o as u32 - 1),
                }
            }
        })
        .collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (alloc, boxes, owners) = (&alloc, &boxes, &owners);
                s.spawn(move || {
                    let mut w = Worker {
                        alloc,
                        ctl,
                        mine: boxes[proc as usize],
                        theirs: (0..procs)
                            .filter(|&p| p != proc)
                            .map(|p| boxes[p as usize])
                            .collect(),
                        owners: owners.clone(),
                        proc,
                        thread: t,
                        rng: Rng::new((proc << 8) | t),
                        seq: 0,
                        live: Vec::new(),
                    };
                    w.run(ops, procs * threads);
                })
            })
            .collect();
        // Join explicitly: the end of a scope does not wait for the threads'
        // thread-local destructors, which flush their allocator caches.
        for w in workers {
            w.join().expect("worker thread panicked");
        }
    });
    println!("process {proc}: done");
}

#[test]
fn processes_and_threads_allocate_check_exchange_and_free() {
    let start = Instant::now();
    let (name, seg) = new_segment("alloc_stress", 96 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let empty = alloc.stats();
    let ctl_ptr = zeroed_atomics::<64>(&alloc);
    seg.set_root(1, ctl_ptr.shm());
    let boxes: Vec<FullPtr<Mailbox>> = (0..PROCS as usize)
        .map(|p| {
            let b = zeroed_atomics::<MAILBOX_SLOTS>(&alloc);
            seg.set_root(2 + p, b.shm());
            b
        })
        .collect();
    // SAFETY: freed at the end, after every child exited.
    let ctl = unsafe { ctl_ptr.as_ref() };
    let baseline = alloc.stats();
    assert_eq!(baseline.live_blocks, empty.live_blocks + 1 + PROCS);

    let mut children = Children::new();
    for p in 0..PROCS {
        children.spawn(
            "child_alloc_stress",
            &format!("allocator process {p}"),
            &[
                ("CHI_SEG", name.as_str().to_owned()),
                ("CHI_PROC", p.to_string()),
                ("CHI_PROCS", PROCS.to_string()),
                ("CHI_THREADS", THREADS.to_string()),
                ("CHI_OPS", OPS_PER_THREAD.to_string()),
            ],
        );
    }
    children.wait_all(Duration::from_secs(300));

    // Blocks still in the mailboxes: allocated by a child, freed here (a third
    // process).
    let mut drained = 0;
    for b in &boxes {
        // SAFETY: our allocation; the children are gone.
        for slot in unsafe { b.as_ref() } {
            let bits = slot.swap(0, Ordering::Acquire);
            if bits != 0 {
                let ptr = ShmPtr::from_bits(bits);
                check_self_describing(&alloc, ptr);
                alloc.free(ptr).unwrap();
                drained += 1;
            }
        }
    }
    let after = alloc.stats();
    assert_eq!(
        (after.used_bytes, after.live_blocks),
        (baseline.used_bytes, baseline.live_blocks),
        "allocator accounting did not return to the baseline: {after:?} vs {baseline:?}"
    );
    for p in 0..PROCS as usize {
        let owner = OwnerId(ctl[A_OWNER + p].load(Ordering::Acquire) as u32 - 1);
        assert_eq!(
            alloc.owner_usage(owner),
            Some((0, 0)),
            "owner of process {p}"
        );
        let (live, cached) = alloc.blocks_of(owner);
        assert!(live.is_empty(), "process {p} left live blocks {live:?}");
        assert_eq!(
            cached, 0,
            "process {p}'s thread caches were not flushed at exit"
        );
    }
    let foreign = ctl[A_FOREIGN].load(Ordering::Relaxed);
    let reused = ctl[A_REUSED].load(Ordering::Relaxed);
    let allocs = ctl[A_ALLOCS].load(Ordering::Relaxed);
    let large = ctl[A_LARGE].load(Ordering::Relaxed);
    assert!(foreign > 0, "no block was freed by another process");
    assert!(reused > 0, "no block freed by another process was reused");
    assert!(large > 0, "no large allocation");
    eprintln!(
        "{allocs} allocations ({large} large) by {PROCS} processes x {THREADS} threads, \
         {foreign} freed by another process ({reused} reused at once), {drained} freed by the \
         parent, in {:?}; heap: {after:?}",
        start.elapsed()
    );

    for b in boxes {
        alloc.free_full(b).unwrap();
    }
    alloc.free_full(ctl_ptr).unwrap();
    let end = alloc.stats();
    assert_eq!(
        (end.used_bytes, end.live_blocks),
        (empty.used_bytes, empty.live_blocks)
    );
}

// ---- ownership of a dead child's blocks --------------------------------------------

const LEAKED: usize = 40;
const FREED_BY_CHILD: usize = 10;

/// Child role: a thread allocates blocks, frees some, reports the rest and the
/// owner id in shared memory, and the process exits while that thread still
/// runs, as a crashing client would: nothing is freed and the thread's cache is
/// not flushed.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_alloc_leaker() {
    if !child_role("child_alloc_leaker") {
        return;
    }
    let seg = Segment::attach(&env_str("CHI_SEG")).expect("attach");
    let alloc = Allocator::attach(&seg).expect("allocator");
    let report: &[AtomicU64; 64] = atomics_at(seg.root(1).unwrap());
    let done = std::sync::mpsc::channel::<()>();
    let worker_alloc = alloc.clone();
    std::thread::spawn(move || {
        let alloc = worker_alloc;
        let mut rng = Rng::new(99);
        let mut blocks = Vec::new();
        for i in 0..LEAKED + FREED_BY_CHILD {
            let size = if i % 7 == 0 {
                rng.range(MAX_SMALL_SIZE as u64 + 1, 200_000) as usize
            } else {
                pick_size(&mut rng, false)
            };
            let p = alloc.allocate(size).expect("allocate");
            // SAFETY: fresh allocation of `size` bytes.
            unsafe { fill(p.as_ptr(), size, tag_of(7, 0, i as u64)) };
            blocks.push(p.shm());
        }
        for p in blocks.drain(LEAKED..) {
            alloc.free(p).expect("free");
        }
        for (i, p) in blocks.iter().enumerate() {
            report[2 + i].store(p.to_bits(), Ordering::Relaxed);
        }
        report[1].store(std::process::id() as u64, Ordering::Relaxed);
        report[0].store(alloc.owner().0 as u64 + 1, Ordering::Release);
        done.0.send(()).unwrap();
        loop {
            std::thread::park();
        }
    });
    done.1.recv().expect("worker thread died");
    std::process::exit(0);
}

#[test]
fn blocks_of_a_dead_child_are_attributed_to_its_owner() {
    let (name, seg) = new_segment("alloc_owner", 16 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let empty = alloc.stats();
    let report_ptr = zeroed_atomics::<64>(&alloc);
    seg.set_root(1, report_ptr.shm());
    // SAFETY: freed at the end of the test.
    let report = unsafe { report_ptr.as_ref() };
    let mine: Vec<ShmPtr> = [24, 5000, 100_000]
        .iter()
        .map(|&s| alloc.allocate(s).unwrap().shm())
        .collect();
    let baseline = alloc.stats();

    let mut children = Children::new();
    let child = children.spawn(
        "child_alloc_leaker",
        "leaker",
        &[("CHI_SEG", name.as_str().to_owned())],
    );
    children.wait_for(child, WATCHDOG);
    let owner = match report[0].load(Ordering::Acquire) {
        0 => panic!("the child did not report its owner id"),
        o => OwnerId(o as u32 - 1),
    };
    assert_ne!(owner, alloc.owner());
    let pid = report[1].load(Ordering::Relaxed) as u32;
    assert_eq!(pid, children.pid(child));
    let mut leaked: Vec<ShmPtr> = (0..LEAKED)
        .map(|i| ShmPtr::from_bits(report[2 + i].load(Ordering::Relaxed)))
        .collect();
    leaked.sort_by_key(|p| p.to_bits());

    // The dead child's slot is kept (it still owns blocks) and names it.
    assert_eq!(alloc.owner_pid(owner), Some(pid));
    let (mut found, cached) = alloc.blocks_of(owner);
    found.sort_by_key(|p| p.to_bits());
    assert_eq!(
        found, leaked,
        "blocks_of(child) is not exactly what the child leaked"
    );
    assert!(
        cached >= FREED_BY_CHILD as u64,
        "the {FREED_BY_CHILD} blocks the child freed sit in its unflushed cache, found {cached}"
    );
    let mut bytes = 0;
    for &p in &leaked {
        assert_eq!(alloc.owner_of(p), Ok(owner));
        bytes += alloc.usable_size(p).unwrap();
    }
    assert_eq!(alloc.owner_usage(owner), Some((bytes, LEAKED as u64)));
    let stats = alloc.stats();
    assert_eq!(stats.live_blocks, baseline.live_blocks + LEAKED as u64);
    assert_eq!(stats.used_bytes, baseline.used_bytes + bytes);

    // Our own blocks are ours, and only ours.
    let (mut own, _) = alloc.blocks_of(alloc.owner());
    own.sort_by_key(|p| p.to_bits());
    let mut expect_own = mine.clone();
    expect_own.push(report_ptr.shm());
    expect_own.sort_by_key(|p| p.to_bits());
    assert_eq!(own, expect_own);
    for &p in &mine {
        assert_eq!(alloc.owner_of(p), Ok(alloc.owner()));
    }
    // An owner that never allocated owns nothing.
    assert_eq!(alloc.blocks_of(OwnerId(MAX_OWNERS as u32 - 1)), (vec![], 0));
    assert_eq!(alloc.owner_pid(OwnerId(MAX_OWNERS as u32)), None);
    assert_eq!(alloc.owner_usage(OwnerId(u32::MAX)), None);

    // Reclaim: free the dead child's blocks from here.
    for &p in &leaked {
        alloc.free(p).unwrap();
        assert_eq!(alloc.owner_of(p), Err(FreeError::NotAllocated { ptr: p }));
    }
    assert_eq!(alloc.owner_usage(owner), Some((0, 0)));
    assert!(alloc.blocks_of(owner).0.is_empty());
    let after = alloc.stats();
    assert_eq!(
        (after.used_bytes, after.live_blocks),
        (baseline.used_bytes, baseline.live_blocks)
    );
    for p in mine {
        alloc.free(p).unwrap();
    }
    alloc.free_full(report_ptr).unwrap();
    let end = alloc.stats();
    assert_eq!(
        (end.used_bytes, end.live_blocks),
        (empty.used_bytes, empty.live_blocks)
    );
}
