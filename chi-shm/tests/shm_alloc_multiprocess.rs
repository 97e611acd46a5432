//! The cross-process allocator: several processes x threads allocating and
//! freeing random sizes with content checks, blocks freed by another process
//! than their allocator's, accounting back to baseline, out of memory, bad frees,
//! and ownership of a dead child's blocks.
#![cfg(not(loom))]
// A client of the crate: its own atomics are the standard ones, which its
// shared-memory records hold (the facade rule of clippy.toml is for the library).
#![allow(clippy::disallowed_types)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chi_shm::shm::alloc::{MAX_ALIGN, MAX_OWNERS, MAX_SMALL_SIZE, PAGE_SIZE, SMALL_ALIGN};
use chi_shm::shm::{
    AllocError, Allocator, FreeError, FullPtr, OwnerId, Segment, SegmentId, ShmPtr,
};
use support::{Children, Rng, WATCHDOG, child_role, env_str, env_u64, fresh_id, new_segment};

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

// ---- content patterns -----------------------------------------------------------

/// Word `i` of the pattern of a block: its tag, its size, then a mix of both.
#[inline]
fn pattern_word(tag: u64, size: u64, i: usize) -> u64 {
    match i {
        0 => tag,
        1 => size,
        _ => (tag ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(23),
    }
}

/// Fills `size` bytes at `p` with the pattern of `tag`.
///
/// # Safety
/// `p` is 8-aligned and valid for writes of `size` bytes.
unsafe fn fill(p: *mut u8, size: usize, tag: u64) {
    let words = size / 8;
    let w = p.cast::<u64>();
    for i in 0..words {
        // SAFETY: word `i` is inside the `size` bytes; `p` is 8-aligned.
        unsafe { w.add(i).write(pattern_word(tag, size as u64, i)) };
    }
    let last = pattern_word(tag, size as u64, words).to_le_bytes();
    for (j, b) in last.iter().enumerate().take(size % 8) {
        // SAFETY: the tail bytes are inside the `size` bytes.
        unsafe { p.add(words * 8 + j).write(*b) };
    }
}

/// Checks the pattern of `tag` over `size` bytes at `p`.
///
/// # Safety
/// `p` is 8-aligned and valid for reads of `size` bytes.
unsafe fn check(p: *const u8, size: usize, tag: u64) -> Result<(), String> {
    let words = size / 8;
    let w = p.cast::<u64>();
    for i in 0..words {
        // SAFETY: word `i` is inside the `size` bytes; `p` is 8-aligned.
        let got = unsafe { w.add(i).read() };
        let want = pattern_word(tag, size as u64, i);
        if got != want {
            return Err(format!(
                "block of {size} bytes tagged {tag:#x}: word {i} is {got:#x}, expected {want:#x} \
                 (overwritten by {})",
                describe_tag(got)
            ));
        }
    }
    let last = pattern_word(tag, size as u64, words).to_le_bytes();
    for (j, b) in last.iter().enumerate().take(size % 8) {
        // SAFETY: the tail bytes are inside the `size` bytes.
        let got = unsafe { p.add(words * 8 + j).read() };
        if got != *b {
            return Err(format!("block tagged {tag:#x}: tail byte {j} differs"));
        }
    }
    Ok(())
}

/// Tag of allocation `seq` of thread `thread` of process `proc`.
fn tag_of(proc: u64, thread: u64, seq: u64) -> u64 {
    ((proc + 1) << 56) | ((thread + 1) << 48) | seq
}

fn describe_tag(word: u64) -> String {
    format!(
        "a word that would be process {}, thread {}, seq {} if it is a tag",
        (word >> 56) as i64 - 1,
        ((word >> 48) & 0xff) as i64 - 1,
        word & ((1 << 48) - 1)
    )
}

/// Checks a block whose tag and size are written in its first 16 bytes (a
/// block received through a mailbox), returning them.
fn check_self_describing(alloc: &Allocator, ptr: ShmPtr) -> (u64, usize) {
    let usable = alloc
        .usable_size(ptr)
        .unwrap_or_else(|e| panic!("mailbox held {ptr}, not a live block: {e}"));
    let head = ptr
        .resolve_slice::<u64>(2)
        .expect("resolve block header words");
    // SAFETY: a live block of at least 16 bytes (only such blocks are published);
    // its publisher no longer touches it.
    let (tag, size) = unsafe { (head.as_ptr().read(), head.as_ptr().add(1).read() as usize) };
    assert!(
        size >= 16 && size as u64 <= usable,
        "block {ptr}: recorded size {size} does not fit its usable size {usable} (tag {tag:#x})"
    );
    let p = ptr.resolve_slice::<u8>(size as u64).unwrap();
    // SAFETY: `size` bytes of a live block (checked against its usable size).
    unsafe { check(p.as_ptr(), size, tag) }.unwrap_or_else(|e| panic!("{ptr}: {e}"));
    (tag, size)
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

// ---- single-process error cases -----------------------------------------------------

#[test]
fn out_of_memory_is_an_error_not_a_panic() {
    let (_name, seg) = new_segment("alloc_oom", Segment::min_size() + 3 * PAGE_SIZE);
    let alloc = Allocator::attach(&seg).unwrap();
    let st = alloc.stats();
    let pages = st.heap_bytes / PAGE_SIZE;
    assert!(pages >= 2, "{st:?}");
    assert_eq!(st.free_pages, pages);
    let id = seg.id();
    let is_oom = |r: Result<FullPtr<u8>, AllocError>, requested: usize| match r {
        Err(AllocError::OutOfMemory {
            segment,
            requested: got,
            ..
        }) => {
            assert_eq!(segment, id);
            assert_eq!(got, requested);
        }
        other => panic!("allocate({requested}): expected OutOfMemory, got {other:?}"),
    };

    // Larger than the heap, and absurd sizes.
    is_oom(
        alloc.allocate(st.heap_bytes as usize),
        st.heap_bytes as usize,
    );
    is_oom(alloc.allocate(usize::MAX), usize::MAX);
    is_oom(alloc.allocate(usize::MAX - 8), usize::MAX - 8);
    is_oom(alloc.allocate_aligned(1 << 40, MAX_ALIGN), 1 << 40);
    let msg = alloc.allocate(usize::MAX).unwrap_err().to_string();
    assert!(msg.contains("out of shared memory"), "{msg}");
    // Unsupported alignments.
    for align in [0, 3, 24, MAX_ALIGN * 2] {
        assert_eq!(
            alloc.allocate_aligned(16, align).unwrap_err(),
            AllocError::UnsupportedAlign { align }
        );
    }

    // Fill the heap with one-page runs: the next one is refused, a freed one is reused.
    let one_page = PAGE_SIZE as usize - 16;
    let mut runs = Vec::new();
    loop {
        match alloc.allocate(one_page) {
            Ok(p) => runs.push(p),
            Err(AllocError::OutOfMemory { .. }) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(runs.len() as u64 <= pages, "more runs than pages");
    }
    assert_eq!(runs.len() as u64, pages);
    assert_eq!(alloc.stats().free_pages, 0);
    is_oom(alloc.allocate(16), 16);
    let freed = runs.pop().unwrap();
    alloc.free_full(freed).unwrap();
    let again = alloc.allocate(one_page).unwrap();
    assert_eq!(again.shm(), freed.shm(), "the freed run is reused");
    runs.push(again);
    for p in runs.drain(..) {
        alloc.free_full(p).unwrap();
    }
    assert_eq!(alloc.stats().free_pages, pages);

    // Fill the heap with small blocks of one class until it runs out.
    let mut small = Vec::new();
    loop {
        match alloc.allocate(1000) {
            Ok(p) => {
                // SAFETY: fresh allocation of 1000 bytes.
                unsafe { fill(p.as_ptr(), 1000, small.len() as u64) };
                small.push(p);
            }
            Err(AllocError::OutOfMemory { .. }) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(
            small.len() as u64 <= pages * PAGE_SIZE / 1000,
            "too many blocks"
        );
    }
    assert!(
        small.len() as u64 >= pages * (PAGE_SIZE / 1024),
        "{} blocks",
        small.len()
    );
    // Every page is carved: other classes and large sizes fail too.
    is_oom(alloc.allocate(40), 40);
    is_oom(alloc.allocate(100_000), 100_000);
    for (i, p) in small.iter().enumerate() {
        // SAFETY: our live allocations of 1000 bytes.
        unsafe { check(p.as_ptr(), 1000, i as u64) }.unwrap();
    }
    let n = small.len();
    for p in small.drain(..) {
        alloc.free_full(p).unwrap();
    }
    // Freed blocks serve the same class again.
    for _ in 0..n {
        small.push(alloc.allocate(1000).unwrap());
    }
    for p in small {
        alloc.free_full(p).unwrap();
    }
    let end = alloc.stats();
    assert_eq!(
        (end.used_bytes, end.live_blocks),
        (st.used_bytes, st.live_blocks)
    );
}

#[test]
fn owner_table_full_is_an_error() {
    let (_name, seg) = new_segment("alloc_owners", 4 << 20);
    let first = Allocator::attach(&seg).unwrap();
    let mut handles = vec![];
    loop {
        match Allocator::attach(&seg) {
            Ok(a) => handles.push(a),
            Err(AllocError::OwnerTableFull { segment }) => {
                assert_eq!(segment, seg.id());
                break;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(handles.len() < MAX_OWNERS, "more owners than slots");
    }
    assert_eq!(handles.len() + 1, MAX_OWNERS);
    // A slot given back is taken again.
    let freed_owner = handles.pop().unwrap().owner();
    let again = Allocator::attach(&seg).unwrap();
    assert_eq!(again.owner(), freed_owner);
    // Clones share the owner slot.
    assert_eq!(first.clone().owner(), first.owner());
}

#[test]
fn double_and_garbage_frees_are_refused_without_damage() {
    let (_name, seg) = new_segment("alloc_badfree", 8 << 20);
    let (_other_name, other) = new_segment("alloc_badfree_other", 4 << 20);
    let alloc = Allocator::attach(&seg).unwrap();
    let other_alloc = Allocator::attach(&other).unwrap();
    let small = alloc.allocate(100).unwrap();
    let large = alloc.allocate(3 * PAGE_SIZE as usize).unwrap();
    let aligned = alloc.allocate_aligned(5000, 4096).unwrap();
    assert!(aligned.shm().offset().is_multiple_of(4096));
    // A small block on a page carved after the large runs (not the heap's first page).
    let late = alloc.allocate(3000).unwrap();
    let late_page = late.shm().offset() & !(PAGE_SIZE - 1);
    assert!(late_page > small.shm().offset());
    // SAFETY: fresh allocations of (at least) these sizes.
    unsafe {
        fill(small.as_ptr(), 100, 1);
        fill(large.as_ptr(), 3 * PAGE_SIZE as usize, 2);
        fill(aligned.as_ptr(), 5000, 3);
    }
    let before = alloc.stats();
    let not_allocated = |p: ShmPtr| {
        assert_eq!(
            alloc.free(p),
            Err(FreeError::NotAllocated { ptr: p }),
            "free({p})"
        );
        assert_eq!(alloc.owner_of(p), Err(FreeError::NotAllocated { ptr: p }));
    };

    // Garbage inside the segment.
    let size = seg.size();
    for off in [
        0,
        8,
        16,
        4096,
        small.shm().offset() + 1,
        small.shm().offset() + 8,
        small.shm().offset() + 16,
        small.shm().offset() - 16,
        late_page,
        late.shm().offset() - 16,
        late.shm().offset() + 3000,
        large.shm().offset() + 16,
        large.shm().offset() + PAGE_SIZE,
        aligned.shm().offset() - 16,
        aligned.shm().offset() + 4096,
        size - 16,
        size,
        size + PAGE_SIZE,
        ShmPtr::MAX_OFFSET & !15,
        ShmPtr::MAX_OFFSET,
    ] {
        not_allocated(seg.ptr_at(off));
        assert!(
            alloc.usable_size(seg.ptr_at(off)).is_err(),
            "usable_size({off:#x})"
        );
    }
    // A free block in our thread cache (a neighbour of `late` on its fresh page).
    let neighbour = late.shm().byte_add(3072).unwrap();
    not_allocated(neighbour);
    // Pointers of another segment, or none.
    for p in [
        ShmPtr::NULL,
        other.ptr_at(small.shm().offset()),
        ShmPtr::new(fresh_id(), small.shm().offset()),
        ShmPtr::new(SegmentId::MAX, 4096),
    ] {
        assert_eq!(
            alloc.free(p),
            Err(FreeError::WrongSegment {
                ptr: p,
                segment: seg.id()
            })
        );
    }
    // A block of this segment freed through another segment's allocator.
    assert_eq!(
        other_alloc.free(small.shm()),
        Err(FreeError::WrongSegment {
            ptr: small.shm(),
            segment: other.id()
        })
    );
    // Nothing changed, nothing was overwritten.
    assert_eq!(alloc.stats(), before);
    // SAFETY: still our live allocations.
    unsafe {
        check(small.as_ptr(), 100, 1).unwrap();
        check(large.as_ptr(), 3 * PAGE_SIZE as usize, 2).unwrap();
        check(aligned.as_ptr(), 5000, 3).unwrap();
    }

    // Double frees, small and large.
    for p in [small, large, aligned] {
        alloc.free_full(p).unwrap();
        not_allocated(p.shm());
        assert_eq!(
            alloc.free(p.shm()),
            Err(FreeError::NotAllocated { ptr: p.shm() })
        );
    }
    let msg = alloc.free(small.shm()).unwrap_err().to_string();
    assert!(msg.contains("double free"), "{msg}");
    let end = alloc.stats();
    assert_eq!(end.live_blocks, before.live_blocks - 3);
    alloc.free_full(late).unwrap();
    // The allocator still works.
    let p = alloc.allocate(100).unwrap();
    alloc.free_full(p).unwrap();
    let end = alloc.stats();
    assert_eq!((end.used_bytes, end.live_blocks), (0, 0));
}
