//! Benchmarks of the coroutine switch, the way the workers use `corosensei`: each
//! task runs in a `Coroutine` built on a `DefaultStack` taken from the worker's
//! pool and given back with `into_stack` when the task returns.
//!
//! * `coroutine/resume_suspend`: one `resume` of a suspended coroutine that
//!   suspends again at once (a switch in and a switch out: the cost of running a
//!   parked task one step).
//! * `coroutine/start_finish_pooled_stack`: a task's whole coroutine life on a
//!   pooled stack: build, run to its return, take the stack back.
//! * `coroutine/start_yield_finish_pooled_stack`: the same for a task that yields
//!   once (waiting on something) before it returns.
//! * `coroutine/start_finish_fresh_stack`: a fresh 64 KiB stack each time
//!   (`mmap` + `munmap`), what pooling saves.
//!
//! Run: `cargo bench -p chi-runtime --bench coroutine`, or with `-- --test` to run
//! each benchmark once.

use std::hint::black_box;
use std::time::Duration;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use criterion::{Criterion, Throughput};

/// The runtime's default coroutine stack (`coroutine.stack_size`).
const STACK_SIZE: usize = 64 << 10;

fn main() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_coroutine(&mut c);
    c.final_summary();
}

fn bench_coroutine(c: &mut Criterion) {
    let mut g = c.benchmark_group("coroutine");
    g.throughput(Throughput::Elements(1));

    g.bench_function("resume_suspend", |b| {
        let stack = DefaultStack::new(STACK_SIZE).expect("stack");
        let mut co = Coroutine::with_stack(stack, |y: &Yielder<u64, u64>, mut v: u64| {
            loop {
                v = y.suspend(v.wrapping_add(1));
            }
        });
        let mut v = 0u64;
        b.iter(|| match co.resume(black_box(v)) {
            CoroutineResult::Yield(r) => v = r,
            CoroutineResult::Return(()) => unreachable!("the coroutine never returns"),
        });
        // A suspended coroutine is unwound when dropped (the loop has no state).
        drop(co);
    });

    g.bench_function("start_finish_pooled_stack", |b| {
        let mut pool = vec![DefaultStack::new(STACK_SIZE).expect("stack")];
        b.iter(|| {
            let stack = pool.pop().expect("pooled stack");
            let task = black_box(7u64);
            let mut co =
                Coroutine::with_stack(stack, move |_: &Yielder<(), ()>, ()| task.wrapping_mul(3));
            match co.resume(()) {
                CoroutineResult::Return(r) => {
                    black_box(r);
                }
                CoroutineResult::Yield(()) => unreachable!("the task does not yield"),
            }
            pool.push(co.into_stack());
        });
    });

    g.bench_function("start_yield_finish_pooled_stack", |b| {
        let mut pool = vec![DefaultStack::new(STACK_SIZE).expect("stack")];
        b.iter(|| {
            let stack = pool.pop().expect("pooled stack");
            let mut co = Coroutine::with_stack(stack, |y: &Yielder<(), ()>, ()| {
                y.suspend(());
                black_box(1u64)
            });
            let mut steps = 0;
            while let CoroutineResult::Yield(()) = co.resume(()) {
                steps += 1;
            }
            assert_eq!(steps, 1);
            pool.push(co.into_stack());
        });
    });

    g.bench_function("start_finish_fresh_stack", |b| {
        b.iter(|| {
            let stack = DefaultStack::new(STACK_SIZE).expect("stack");
            let mut co = Coroutine::with_stack(stack, |_: &Yielder<(), ()>, ()| black_box(1u64));
            match co.resume(()) {
                CoroutineResult::Return(r) => {
                    black_box(r);
                }
                CoroutineResult::Yield(()) => unreachable!("the task does not yield"),
            }
        });
    });
    g.finish();
}
