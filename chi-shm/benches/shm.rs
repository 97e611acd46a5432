//! Benchmarks of the shared-memory layer: the allocator, the multi-lane queue, and
//! the physical floor they are compared to.
//!
//! * `alloc/alloc_free_{64,256,4096,1MiB}`: one allocate + free pair from one
//!   thread (1 MiB takes the large, page-run path).
//! * `alloc/alloc_free_2threads_64`: two threads of one process, sharing one
//!   allocator handle, each doing pairs concurrently (time per pair per thread;
//!   throughput counts the pairs of both).
//! * `queue/push_pop_same_thread`: one push and one pop on one lane, one thread.
//! * `queue/ping_pong_threads`: round trip between two threads through two lanes,
//!   both busy-polling.
//! * `queue/ping_pong_processes`: the same between this process and a child.
//! * `queue/throughput_threads`: one producer thread, one consumer thread, batches
//!   of `THROUGHPUT_BATCH` items.
//! * `floor/shm_ping_pong_processes`: round trip of one `AtomicU64` in a shared
//!   segment between two spinning processes: the floor of every queue ping-pong.
//!
//! Run: `cargo bench -p chi-shm --bench shm` (about a minute), or
//! `cargo bench -p chi-shm --bench shm -- --test` to run each benchmark once.
//! Child processes are this executable re-executed with `CHI_BENCH_CHILD` set.

// A client of the crate: its own atomics are the standard ones, which its
// shared-memory records hold (the facade rule of clippy.toml is for the library).
#![allow(clippy::disallowed_types)]

mod support;

use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chi_shm::queue::{Consumer, MultiLaneQueue, PushError};
use chi_shm::shm::{FullPtr, ShmPtr};
use criterion::{Bencher, Criterion, SamplingMode, Throughput};
use support::{Control, Echo, REQ_LANE, RESP_LANE, Shm, spin_until};

/// Items per iteration of `queue/throughput_threads`.
const THROUGHPUT_BATCH: u64 = 4096;
/// Lane depth of the throughput benchmark (smaller than a batch, so the producer
/// also meets a full lane).
const THROUGHPUT_DEPTH: u64 = 1024;
/// Lane depth of the ping-pong benchmarks (one value in flight).
const PING_PONG_DEPTH: u64 = 64;

fn main() {
    if let Ok(name) = std::env::var(support::CHILD_ENV) {
        std::process::exit(support::child_main(&name));
    }
    support::unlink_stale_segments();
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_alloc(&mut c);
    bench_queue(&mut c);
    bench_floor(&mut c);
    c.final_summary();
}

fn bench_alloc(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc");
    // Created on first use, so that filtered-out benchmarks cost nothing.
    let mut shm: Option<Shm> = None;
    g.throughput(Throughput::Elements(1));
    for (name, size) in [
        ("alloc_free_64", 64),
        ("alloc_free_256", 256),
        ("alloc_free_4096", 4096),
        ("alloc_free_1MiB", 1 << 20),
    ] {
        g.bench_function(name, |b| {
            let a = &shm.get_or_insert_with(Shm::new).alloc;
            b.iter(|| {
                let p = a.allocate(black_box(size)).expect("allocate");
                a.free(black_box(p.shm())).expect("free");
            })
        });
    }
    // Both threads' pairs: criterion reports the aggregate rate.
    g.throughput(Throughput::Elements(2));
    g.bench_function("alloc_free_2threads_64", |b| {
        let a = &shm.get_or_insert_with(Shm::new).alloc;
        b.iter_custom(|iters| {
            let barrier = Barrier::new(2);
            let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        s.spawn(|| {
                            // Warm this thread's cache before the clock starts.
                            let p = a.allocate(64).expect("allocate");
                            a.free(p.shm()).expect("free");
                            barrier.wait();
                            let t0 = Instant::now();
                            for _ in 0..iters {
                                let p = a.allocate(black_box(64)).expect("allocate");
                                a.free(black_box(p.shm())).expect("free");
                            }
                            (t0, Instant::now())
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().expect("alloc thread"))
                    .collect()
            });
            let start = spans.iter().map(|s| s.0).min().expect("two spans");
            let end = spans.iter().map(|s| s.1).max().expect("two spans");
            end - start
        })
    });
    g.finish();
}

/// A queue with a driver-side consumer of [`RESP_LANE`] and an echo peer on
/// [`REQ_LANE`]. Fields drop in order: the consumer, then the echo (stopped and
/// reaped), then the queue, then the segment (unlinked).
struct PingPong {
    consumer: Consumer,
    echo: Echo,
    queue: MultiLaneQueue,
    _shm: Shm,
    seq: u64,
}

impl PingPong {
    fn new(process: bool) -> PingPong {
        let shm = Shm::new();
        let queue = shm.queue(PING_PONG_DEPTH);
        let echo = if process {
            Echo::queue_process(&shm)
        } else {
            Echo::queue_thread(&shm, &queue)
        };
        let consumer = queue.consumer(&[RESP_LANE]).expect("consumer");
        PingPong {
            consumer,
            echo,
            queue,
            _shm: shm,
            seq: 0,
        }
    }

    /// `iters` round trips; returns the time they took.
    fn run(&mut self, iters: u64) -> Duration {
        let t0 = Instant::now();
        for _ in 0..iters {
            self.seq += 1;
            let v = ShmPtr::from_bits(self.seq);
            self.queue.try_push(REQ_LANE, v).expect("push request");
            let consumer = &mut self.consumer;
            let back = spin_until(|| consumer.pop_lane(0), &mut self.echo);
            assert_eq!(back, v, "echo returned another value");
        }
        t0.elapsed()
    }
}

fn ping_pong(b: &mut Bencher, pp: &mut Option<PingPong>, process: bool) {
    let pp = pp.get_or_insert_with(|| PingPong::new(process));
    b.iter_custom(|iters| pp.run(iters));
}

/// One producer thread pushes `iters * THROUGHPUT_BATCH` values, this thread
/// pops them; returns the time from the start signal to the last pop.
fn throughput(queue: &MultiLaneQueue, consumer: &mut Consumer, iters: u64) -> Duration {
    let total = iters * THROUGHPUT_BATCH;
    let barrier = Barrier::new(2);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Tells the consumer if this thread dies before pushing everything.
            struct Flag<'a>(&'a AtomicBool, bool);
            impl Drop for Flag<'_> {
                fn drop(&mut self) {
                    if !self.1 {
                        self.0.store(true, Ordering::Release);
                    }
                }
            }
            let mut flag = Flag(&failed, false);
            barrier.wait();
            for i in 1..=total {
                let v = ShmPtr::from_bits(i);
                // A full lane: spin (and yield now and then) until the consumer
                // catches up.
                spin_until(
                    || match queue.try_push(REQ_LANE, v) {
                        Ok(()) => Some(()),
                        Err(PushError::Full { .. }) => None,
                        Err(e) => panic!("push: {e}"),
                    },
                    &mut || {},
                );
            }
            flag.1 = true;
        });
        let mut producer_alive = || {
            assert!(
                !failed.load(Ordering::Acquire),
                "producer thread ended early"
            );
        };
        barrier.wait();
        let t0 = Instant::now();
        for i in 1..=total {
            let v = spin_until(|| consumer.pop_lane(0), &mut producer_alive);
            assert_eq!(v.to_bits(), i, "values out of order");
        }
        t0.elapsed()
    })
}

fn bench_queue(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");

    let mut same: Option<(Consumer, MultiLaneQueue, Shm)> = None;
    g.bench_function("push_pop_same_thread", |b| {
        let (consumer, queue, _) = same.get_or_insert_with(|| {
            let shm = Shm::new();
            let queue = shm.queue(PING_PONG_DEPTH);
            let consumer = queue.consumer(&[REQ_LANE]).expect("consumer");
            (consumer, queue, shm)
        });
        let v = ShmPtr::from_bits(42);
        b.iter(|| {
            queue.try_push(REQ_LANE, black_box(v)).expect("push");
            black_box(consumer.pop_lane(0))
        })
    });
    drop(same);

    let mut pp = None;
    g.bench_function("ping_pong_threads", |b| ping_pong(b, &mut pp, false));
    drop(pp);

    let mut pp = None;
    g.bench_function("ping_pong_processes", |b| ping_pong(b, &mut pp, true));
    drop(pp);

    let mut tp: Option<(Consumer, MultiLaneQueue, Shm)> = None;
    g.throughput(Throughput::Elements(THROUGHPUT_BATCH));
    // A batch takes tens of microseconds or more: same iteration count per sample.
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("throughput_threads", |b| {
        let (consumer, queue, _) = tp.get_or_insert_with(|| {
            let shm = Shm::new();
            let queue = shm.queue(THROUGHPUT_DEPTH);
            let consumer = queue.consumer(&[REQ_LANE]).expect("consumer");
            (consumer, queue, shm)
        });
        b.iter_custom(|iters| throughput(queue, consumer, iters))
    });
    drop(tp);
    g.finish();
}

/// The floor: one word bounced between this process and a spinning child.
struct Floor {
    ctl: FullPtr<Control>,
    echo: Echo,
    _shm: Shm,
    seq: u64,
}

impl Floor {
    fn new() -> Floor {
        let shm = Shm::new();
        let echo = Echo::floor_process(&shm);
        Floor {
            ctl: echo.control_ptr(),
            echo,
            _shm: shm,
            seq: 0,
        }
    }

    /// `iters` round trips of the word; returns the time they took.
    fn run(&mut self, iters: u64) -> Duration {
        // SAFETY: the control block was initialised by `new_obj`, is only accessed
        // through atomics and stays mapped while `self._shm` lives (longer than
        // this borrow).
        let word = unsafe { &self.ctl.as_ref().word.0 };
        let t0 = Instant::now();
        for _ in 0..iters {
            self.seq += 2;
            let want = self.seq;
            word.store(want - 1, Ordering::Release);
            spin_until(
                || (word.load(Ordering::Acquire) == want).then_some(()),
                &mut self.echo,
            );
        }
        t0.elapsed()
    }
}

fn bench_floor(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    let mut floor: Option<Floor> = None;
    g.bench_function("shm_ping_pong_processes", |b| {
        let f = floor.get_or_insert_with(Floor::new);
        b.iter_custom(|iters| f.run(iters))
    });
    drop(floor);
    g.finish();
}
