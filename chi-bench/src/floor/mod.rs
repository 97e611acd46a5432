//! The physical floor, measured in every invocation: what two processes of this
//! machine can do through shared memory with nothing else in the way.
//!
//! * **Ping-pong**: one atomic word in a shared segment; this process writes an
//!   odd value, the partner process answers with the next even one, both
//!   spinning. Timed per round trip exactly like the echo round trips (so the
//!   ratio compares like with like), and also in batches of 100 without a clock
//!   read inside (the pure figure).
//! * **SPSC ring**: 1024 slots of `u64` (the size of a task pointer, the depth of
//!   a process-queue lane) with cache-padded head and tail; this process
//!   produces, the partner consumes and checks every item. Items per second.
//! * **Task-shaped ping-pong** (reported beside the floor, not used as a base):
//!   what a synchronous empty task must move at least, with no runtime: this
//!   process writes a 112-byte message (the size of an echo task) and posts its
//!   sequence number in a separate slot word (the queue slot); the partner reads
//!   the whole message and writes an answer into the message's first word (the
//!   task's state), which this process waits for. Timed like the ping-pong.
//!
//! The floor of the `remote` workload, a ZeroMQ ROUTER/DEALER ping-pong with
//! the message sizes of a remote task's frames, is in [`zmq`] (measured by
//! that workload, beside its figures); the same ping-pong behind a
//! shared-memory hop, the shape of a remote task's path with none of the
//! runtime's work, in [`zmq_relay`].

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::shm::{Allocator, FullPtr, Segment, SegmentId, ShmSafe};
use indicatif::ProgressBar;

use crate::Ctx;
use crate::child::{self, ChildGuard};
use crate::report::{Base, Series, Unit};
use crate::stats::{self, ns_u32};

pub mod zmq;
pub mod zmq_relay;

/// Slots of the ring (a power of two).
const RING_SLOTS: usize = 1024;
/// Ring runs; the median is reported.
const RING_RUNS: usize = 3;
/// Id of the floor's segment in this process's segment table (the runtime's
/// segments use small ids).
const FLOOR_SEGMENT_ID: SegmentId = SegmentId(200);

/// One atomic word alone on its cache lines.
#[repr(C, align(128))]
struct Line(AtomicU64);

// SAFETY: repr(C) wrapper of one atomic integer (padding is never read).
unsafe impl ShmSafe for Line {}

/// Words of the task-shaped message: 112 bytes, an echo task's size.
const MSG_WORDS: usize = 14;

/// The task-shaped ping-pong's shared memory: the slot (a queue slot) on its own
/// lines, the message (a task) on the next two.
#[repr(C)]
struct TaskFloor {
    slot: Line,
    msg: Msg,
}

/// The message, aligned like a task block at the start of a cache line.
#[repr(C, align(128))]
struct Msg([AtomicU64; MSG_WORDS]);

// SAFETY: repr(C) of atomics, no pointers, any bits valid.
unsafe impl ShmSafe for TaskFloor {}

/// The ring shared by the producer (this process) and the consumer (the partner).
#[repr(C)]
struct Ring {
    /// Items consumed (written by the consumer).
    head: Line,
    /// Items produced (written by the producer).
    tail: Line,
    /// Items checked, written by the consumer at the end (`u64::MAX`: a wrong item).
    done: Line,
    /// Item `i` lives in slot `i % RING_SLOTS`.
    slots: [AtomicU64; RING_SLOTS],
}

// SAFETY: repr(C) of ShmSafe fields (atomics), no pointers, any bits valid.
unsafe impl ShmSafe for Ring {}

impl Ring {
    fn new() -> Ring {
        let z = || Line(AtomicU64::new(0));
        Ring {
            head: z(),
            tail: z(),
            done: z(),
            slots: [const { AtomicU64::new(0) }; RING_SLOTS],
        }
    }
}

/// Bails out of a spin loop after 5 s without progress, checking the clock only
/// every 64 Ki spins (so the loop itself stays a bare load).
struct Spin {
    n: u32,
    since: Option<Instant>,
}

impl Spin {
    fn new() -> Spin {
        Spin { n: 0, since: None }
    }

    #[inline]
    fn tick(&mut self, what: &str) -> Result<()> {
        std::hint::spin_loop();
        self.n = self.n.wrapping_add(1);
        if self.n & 0xFFFF == 0 {
            let since = *self.since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(5) {
                bail!("{what} stopped answering");
            }
        }
        Ok(())
    }
}

/// The floor's segment: a unique name, removed when dropped.
struct FloorShm {
    seg: Segment,
    alloc: Allocator,
}

impl FloorShm {
    fn new() -> Result<FloorShm> {
        static N: AtomicU32 = AtomicU32::new(0);
        // Relaxed: only uniqueness matters.
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("chi_bench_floor_{}_{n}", std::process::id());
        let seg = Segment::create(&name, FLOOR_SEGMENT_ID, 4 << 20)
            .with_context(|| format!("creating segment {name}"))?;
        let alloc = Allocator::attach(&seg)?;
        Ok(FloorShm { seg, alloc })
    }
}

/// Measures the floor and records it in the report (before any other row).
pub fn measure(ctx: &mut Ctx) -> Result<()> {
    let n = ctx.opts.iters();
    let ring_items = (10 * n).max(1_000_000);
    let bar = ctx.progress.bar(
        2 * n + (RING_RUNS as u64) * ring_items,
        "floor: shm ping-pong and ring",
    );
    let shm = FloorShm::new()?;
    let (mut each, batch) = ping_pong(&shm, n, &bar)?;
    let mut task_shaped = task_ping_pong(&shm, n.min(200_000))?;
    let mut rates = Vec::with_capacity(RING_RUNS);
    for _ in 0..RING_RUNS {
        rates.push(ring(&shm, ring_items)?);
        bar.inc(ring_items);
    }
    bar.finish_and_clear();
    drop(shm);
    let s = stats::summarize(&mut each);
    let r = &mut ctx.report;
    r.floor.ping_pong_ns = s.p50;
    r.floor.ping_pong_batch_ns = batch;
    r.floor.ring_per_sec = stats::median(&mut rates);
    let w = "floor";
    let pp = Some(Base::PingPong);
    r.add(
        w,
        "shm ping-pong round trip, 2 processes, median (each timed)",
        s.p50,
        Unit::Ns,
        pp,
    );
    r.add(w, "shm ping-pong round trip, p99", s.p99, Unit::Ns, pp);
    r.add(w, "shm ping-pong round trip, p99.9", s.p999, Unit::Ns, pp);
    r.add(
        w,
        "shm ping-pong round trip, mean of batches of 100",
        batch,
        Unit::Ns,
        pp,
    );
    let ts = stats::summarize(&mut task_shaped);
    r.add(
        w,
        "task-shaped ping-pong (112-byte message + slot word), median (each timed)",
        ts.p50,
        Unit::Ns,
        pp,
    );
    r.detail("floor_task_shaped_ping_pong", ts);
    r.add(
        w,
        format!("SPSC ring of u64, 2 processes, {RING_SLOTS} slots (items/s)"),
        r.floor.ring_per_sec,
        Unit::PerSec,
        Some(Base::Ring),
    );
    r.latency_cdf.push(Series {
        label: "floor: shm ping-pong".into(),
        points: stats::cdf_points(&each, 400),
    });
    r.detail("floor_ping_pong", s);
    r.detail("floor_ring_runs_per_sec", &rates);
    Ok(())
}

/// Ping-pong round trips: `n` each timed (ns), then `n` in batches of 100 (the
/// mean ns per round trip).
fn ping_pong(shm: &FloorShm, n: u64, bar: &ProgressBar) -> Result<(Vec<u32>, f64)> {
    let word = shm.alloc.new_obj(Line(AtomicU64::new(0)))?;
    shm.seg.set_root(0, word.shm());
    let result = (|| {
        let args = vec!["__floor-pong".to_owned(), shm.seg.name().to_owned()];
        let mut partner = ChildGuard::spawn_self(&args, "floor ping-pong partner")?;
        partner.wait_ready()?;
        // SAFETY: allocated above and freed only after the partner exited.
        let w = &unsafe { word.as_ref() }.0;
        let mut v = 0u64;
        let round_trip = |v: &mut u64| -> Result<()> {
            *v += 1;
            // Release: publishes the request; pairs with the partner's Acquire load.
            w.store(*v, Ordering::Release);
            *v += 1;
            let mut spin = Spin::new();
            // Acquire: pairs with the partner's Release store of the answer.
            while w.load(Ordering::Acquire) != *v {
                spin.tick("the floor ping-pong partner")?;
            }
            Ok(())
        };
        for _ in 0..n.min(10_000) {
            round_trip(&mut v)?;
        }
        let mut each = Vec::with_capacity(n as usize);
        for i in 0..n {
            let t = Instant::now();
            round_trip(&mut v)?;
            each.push(ns_u32(t.elapsed()));
            if i % 65_536 == 65_535 {
                bar.inc(65_536);
            }
        }
        let batches = (n / 100).max(1);
        let t = Instant::now();
        for _ in 0..batches * 100 {
            round_trip(&mut v)?;
        }
        let batch = t.elapsed().as_nanos() as f64 / (batches * 100) as f64;
        bar.inc(n % 65_536 + n);
        // Release: pairs with the partner's Acquire load; tells it to exit.
        w.store(u64::MAX, Ordering::Release);
        partner.finish(Duration::from_secs(5))?;
        Ok((each, batch))
    })();
    let _ = shm.alloc.free(word.shm());
    result
}

/// The task-shaped ping-pong: `n` round trips, each timed (ns).
fn task_ping_pong(shm: &FloorShm, n: u64) -> Result<Vec<u32>> {
    let tf = shm.alloc.new_obj(TaskFloor {
        slot: Line(AtomicU64::new(0)),
        msg: Msg([const { AtomicU64::new(0) }; MSG_WORDS]),
    })?;
    shm.seg.set_root(2, tf.shm());
    let result = (|| {
        let args = vec!["__floor-task".to_owned(), shm.seg.name().to_owned()];
        let mut partner = ChildGuard::spawn_self(&args, "floor task-shaped partner")?;
        partner.wait_ready()?;
        // SAFETY: allocated above and freed only after the partner exited.
        let t = unsafe { tf.as_ref() };
        let round_trip = |i: u64| -> Result<()> {
            for w in &t.msg.0[1..] {
                // Relaxed: published by the Release store of the slot below.
                w.store(i, Ordering::Relaxed);
            }
            // Relaxed: as above (the state word is reset before posting).
            t.msg.0[0].store(0, Ordering::Relaxed);
            // Release: publishes the message; pairs with the partner's Acquire load.
            t.slot.0.store(i, Ordering::Release);
            let want = i * (MSG_WORDS as u64 - 1);
            let mut spin = Spin::new();
            // Acquire: pairs with the partner's Release store of the answer.
            while t.msg.0[0].load(Ordering::Acquire) != want {
                spin.tick("the floor task-shaped partner")?;
            }
            Ok(())
        };
        for i in 1..=n.min(10_000) {
            round_trip(i)?;
        }
        let mut each = Vec::with_capacity(n as usize);
        for i in 0..n {
            let t0 = Instant::now();
            round_trip(20_000 + i)?;
            each.push(ns_u32(t0.elapsed()));
        }
        // Release: pairs with the partner's Acquire load; tells it to exit.
        t.slot.0.store(u64::MAX, Ordering::Release);
        partner.finish(Duration::from_secs(5))?;
        Ok(each)
    })();
    let _ = shm.alloc.free(tf.shm());
    result
}

/// In a partner: attaches the floor's segment `segment`, resolves its root
/// `root` (`missing`: the error if the parent set none) and says ready. The
/// segment is returned to keep it mapped while the object is used.
fn attach_partner<T>(
    segment: &str,
    root: usize,
    missing: &'static str,
) -> Result<(Segment, FullPtr<T>)> {
    let seg = Segment::attach(segment)?;
    let obj: FullPtr<T> = seg.root(root).context(missing)?.resolve()?;
    child::say_ready()?;
    Ok((seg, obj))
}

/// The partner of the task-shaped ping-pong: reads each posted message whole and
/// answers with the sum of its payload words in its first word.
pub fn task_child(segment: &str) -> Result<()> {
    let mut idle = child::Idle::new(0xFF_FFFF);
    let (_seg, tf) = attach_partner::<TaskFloor>(segment, 2, "no task floor")?;
    // SAFETY: the parent allocated and initialised it and frees it only after
    // this process exited.
    let t = unsafe { tf.as_ref() };
    let mut last = 0u64;
    loop {
        // Acquire: pairs with the parent's Release store of the slot.
        let v = t.slot.0.load(Ordering::Acquire);
        if v == u64::MAX {
            return Ok(());
        }
        if v != last {
            last = v;
            // Relaxed: ordered by the Acquire load of the slot above.
            let sum: u64 = t.msg.0[1..].iter().map(|w| w.load(Ordering::Relaxed)).sum();
            // Release: publishes the answer; pairs with the parent's Acquire load.
            t.msg.0[0].store(sum, Ordering::Release);
            idle.reset();
            continue;
        }
        idle.spin()?;
    }
}

/// The partner of the ping-pong: answers each odd value with the next one.
pub fn pong_child(segment: &str) -> Result<()> {
    let mut idle = child::Idle::new(0xFF_FFFF);
    let (_seg, word) = attach_partner::<Line>(segment, 0, "no ping-pong word")?;
    // SAFETY: the parent allocated and initialised the word and frees it only
    // after this process exited.
    let w = &unsafe { word.as_ref() }.0;
    loop {
        // Acquire: pairs with the parent's Release store of a request.
        let v = w.load(Ordering::Acquire);
        if v == u64::MAX {
            return Ok(());
        }
        if v % 2 == 1 {
            // Release: publishes the answer; pairs with the parent's Acquire load.
            w.store(v + 1, Ordering::Release);
            idle.reset();
            continue;
        }
        idle.spin()?;
    }
}

/// Pushes `count` items through a fresh ring to a partner process; items/s.
fn ring(shm: &FloorShm, count: u64) -> Result<f64> {
    let ring = shm.alloc.new_obj(Ring::new())?;
    shm.seg.set_root(1, ring.shm());
    let result = (|| {
        let args = vec![
            "__floor-ring".to_owned(),
            shm.seg.name().to_owned(),
            count.to_string(),
        ];
        let mut partner = ChildGuard::spawn_self(&args, "floor ring consumer")?;
        partner.wait_ready()?;
        // SAFETY: allocated and initialised above; freed only after the partner exited.
        let r = unsafe { ring.as_ref() };
        let t = Instant::now();
        let mut head = 0u64;
        for i in 0..count {
            let mut spin = Spin::new();
            while i - head >= RING_SLOTS as u64 {
                // Acquire: pairs with the consumer's Release store of `head`, so
                // its read of the slot happened before we overwrite it.
                head = r.head.0.load(Ordering::Acquire);
                spin.tick("the floor ring consumer")?;
            }
            // Relaxed: published by the Release store of `tail` below.
            r.slots[i as usize % RING_SLOTS].store(i, Ordering::Relaxed);
            // Release: pairs with the consumer's Acquire load of `tail`.
            r.tail.0.store(i + 1, Ordering::Release);
        }
        let mut spin = Spin::new();
        loop {
            // Acquire: pairs with the consumer's final Release store of `done`.
            match r.done.0.load(Ordering::Acquire) {
                0 => spin.tick("the floor ring consumer")?,
                d if d == count => break,
                _ => bail!("the floor ring consumer received a wrong item"),
            }
        }
        let rate = count as f64 / t.elapsed().as_secs_f64();
        partner.finish(Duration::from_secs(5))?;
        Ok(rate)
    })();
    let _ = shm.alloc.free(ring.shm());
    result
}

/// The consumer of the ring: takes `count` items, checking each.
pub fn ring_child(segment: &str, count: u64) -> Result<()> {
    let mut idle = child::Idle::new(0xFF_FFFF);
    let (_seg, ring) = attach_partner::<Ring>(segment, 1, "no ring")?;
    // SAFETY: the parent allocated and initialised the ring and frees it only
    // after this process exited.
    let r = unsafe { ring.as_ref() };
    let mut tail = 0u64;
    for i in 0..count {
        while tail <= i {
            // Acquire: pairs with the producer's Release store of `tail`, so the
            // slot's item is visible.
            tail = r.tail.0.load(Ordering::Acquire);
            idle.spin()?;
        }
        // Relaxed: ordered by the Acquire load of `tail` above.
        let v = r.slots[i as usize % RING_SLOTS].load(Ordering::Relaxed);
        if v != i {
            // Release: pairs with the producer's Acquire load of `done`.
            r.done.0.store(u64::MAX, Ordering::Release);
            bail!("ring item {i} read as {v}");
        }
        // Release: pairs with the producer's Acquire load of `head`: the slot was
        // read before the producer may reuse it.
        r.head.0.store(i + 1, Ordering::Release);
    }
    // Release: pairs with the producer's Acquire load of `done`.
    r.done.0.store(count, Ordering::Release);
    Ok(())
}
