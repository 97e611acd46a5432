//! A tour of the shared-memory layer across two processes.
//!
//! The parent creates a segment and a two-lane queue, then starts a copy of
//! itself as a "worker" process. For each request the parent allocates a small
//! record in shared memory holding a string, pushes its `ShmPtr` onto the queue,
//! and the worker (which mapped the segment at another address) resolves the
//! pointer, reads the string, writes back its length and a checksum, and marks the
//! record done. The parent prints the answers and the allocator's figures.
//!
//! Run: `cargo run --release -p chi-shm --example shm_demo`

// A client of the crate: its own atomics are the standard ones, which its
// shared-memory records hold (the facade rule of clippy.toml is for the library).
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chi_shm::queue::{MultiLaneQueue, Priority, QueueConfig};
use chi_shm::shm::{Allocator, Segment, SegmentId, ShmPtr, ShmSafe, ShmString};

/// One request/answer record in shared memory.
#[repr(C)]
struct Request {
    text: ShmString,
    len: AtomicU64,
    checksum: AtomicU64,
    done: AtomicU32,
}

// SAFETY: repr(C) of ShmSafe fields only (a ShmString and atomic integers).
unsafe impl ShmSafe for Request {}

const STOP: u64 = u64::MAX;

fn worker(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let seg = Segment::attach(name)?;
    let queue = MultiLaneQueue::attach(&seg, seg.root(0).ok_or("no queue root")?)?;
    let lanes: Vec<usize> = (0..queue.num_lanes()).collect();
    let mut consumer = queue.consumer(&lanes)?;
    loop {
        let Some((ptr, _lane)) = consumer.pop() else {
            consumer.sleep(Some(Duration::from_millis(100)));
            continue;
        };
        if ptr.to_bits() == STOP {
            return Ok(());
        }
        let req = ptr.resolve::<Request>()?;
        // SAFETY: the parent initialised the record before pushing it and does not
        // touch it until `done` is set; fields written here are atomics.
        let req = unsafe { req.as_ref() };
        let text = req.text.to_str()?;
        let sum = text
            .bytes()
            .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
        req.len.store(text.len() as u64, Ordering::Relaxed);
        req.checksum.store(sum, Ordering::Relaxed);
        req.done.store(1, Ordering::Release);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(name) = std::env::var("CHI_DEMO_WORKER") {
        return worker(&name);
    }
    let name = format!("chi_demo_{}", std::process::id());
    let seg = Segment::create(&name, SegmentId(1), 32 << 20)?;
    let alloc = Allocator::attach(&seg)?;
    let cfg = QueueConfig {
        low_latency_lanes: 1,
        high_latency_lanes: 1,
        depth: 64,
    };
    let queue = MultiLaneQueue::create(&seg, &alloc, cfg)?;
    seg.set_root(0, queue.shm());
    println!(
        "segment /dev/shm/{name}: {} MiB, queue of {} lanes",
        seg.size() >> 20,
        queue.num_lanes()
    );

    let mut child = std::process::Command::new(std::env::current_exe()?)
        .env("CHI_DEMO_WORKER", &name)
        .spawn()?;
    let before = alloc.stats();
    let words = ["hello", "shared memory", "offset pointers", "chimaera"];
    let start = Instant::now();
    for (i, w) in words.iter().enumerate() {
        let req = alloc.new_obj(Request {
            text: ShmString::from_str(&alloc, w)?,
            len: AtomicU64::new(0),
            checksum: AtomicU64::new(0),
            done: AtomicU32::new(0),
        })?;
        let prio = if i % 2 == 0 {
            Priority::LowLatency
        } else {
            Priority::HighLatency
        };
        let lane = queue.push(prio, i as u64, req.shm(), Some(Duration::from_secs(1)))?;
        // SAFETY: the record stays allocated until we free it below; the worker
        // only writes its atomics.
        let r = unsafe { req.as_ref() };
        while r.done.load(Ordering::Acquire) == 0 {
            if child.try_wait()?.is_some() {
                return Err("worker exited early".into());
            }
            std::hint::spin_loop();
        }
        println!(
            "{w:>16} -> len {:>2}, checksum {:#018x} (lane {lane}, {:?})",
            r.len.load(Ordering::Relaxed),
            r.checksum.load(Ordering::Relaxed),
            prio
        );
        // SAFETY: the worker is done with the record; we own it again.
        let mut text = unsafe { std::ptr::read(&r.text) };
        text.free(&alloc)?;
        alloc.free(req.shm())?;
    }
    println!("{} round trips in {:?}", words.len(), start.elapsed());
    queue.push(
        Priority::LowLatency,
        0,
        ShmPtr::from_bits(STOP),
        Some(Duration::from_secs(1)),
    )?;
    child.wait()?;
    let after = alloc.stats();
    println!(
        "allocator: {} bytes used before, {} after; {} small pages, {} free pages",
        before.used_bytes, after.used_bytes, after.small_pages, after.free_pages
    );
    Ok(())
}
