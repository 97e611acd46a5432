//! `alloc`: task allocate + free through the client's allocator of the main
//! segment, from one thread and from several threads of one process sharing the
//! client: `new_task` + `del_task` of an empty echo task (the full path of a
//! task's memory, as a client uses it), and the bare allocator's
//! `allocate` + `free` of the same size. Ten times the base iteration count per
//! thread.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

use anyhow::{Result, bail};
use chi_sdk::admin::EchoTask;
use chi_sdk::client::Client;
use chi_sdk::types::PoolId;
use serde::Serialize;

use crate::Ctx;
use crate::report::{Base, Target, Unit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    /// `new_task` + `del_task`.
    Task,
    /// `allocate` + `free`.
    Raw,
}

#[derive(Debug, Serialize)]
struct Point {
    kind: Kind,
    threads: usize,
    pairs: u64,
    per_sec: f64,
    ns_per_pair_per_thread: f64,
}

fn pairs(client: &Client, kind: Kind, n: u64) -> Result<()> {
    match kind {
        Kind::Task => {
            for i in 0..n {
                let t = client.new_task(EchoTask::new(PoolId::ADMIN, i))?;
                client.del_task(black_box(t));
            }
        }
        Kind::Raw => {
            let a = client.main_allocator();
            for _ in 0..n {
                let p = a.allocate(black_box(size_of::<EchoTask>()))?;
                a.free(black_box(p.shm()))?;
            }
        }
    }
    Ok(())
}

/// `threads` threads doing `n` pairs each, started together; pairs/s of all.
fn measure(client: &Client, kind: Kind, threads: usize, n: u64) -> Result<f64> {
    let start = Barrier::new(threads);
    let elapsed = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<f64> {
                    pairs(client, kind, (n / 10).clamp(100, 100_000))?;
                    start.wait();
                    let t = Instant::now();
                    pairs(client, kind, n)?;
                    Ok(t.elapsed().as_secs_f64())
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("an alloc thread panicked"))
            })
            .collect::<Result<Vec<f64>>>()
    })?;
    let longest = elapsed.into_iter().fold(0.0, f64::max);
    Ok((n * threads as u64) as f64 / longest)
}

/// Measures and records.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let n = 10 * ctx.opts.iters();
    let threads = ctx.opts.threads.0.clone();
    let bar = ctx
        .progress
        .bar(2 * threads.len() as u64, "alloc: task allocate + free");
    let rt = ctx.runtime()?;
    let mut points = Vec::new();
    for kind in [Kind::Task, Kind::Raw] {
        for &t in &threads {
            let rate = measure(&rt.client, kind, t, n)?;
            points.push(Point {
                kind,
                threads: t,
                pairs: n * t as u64,
                per_sec: rate,
                ns_per_pair_per_thread: 1e9 * t as f64 / rate,
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let size = size_of::<EchoTask>();
    let r = &mut ctx.report;
    for p in &points {
        let what = match p.kind {
            Kind::Task => format!("new_task + del_task ({size} B echo task)"),
            Kind::Raw => format!("allocate + free ({size} B)"),
        };
        let th = if p.threads == 1 { "thread" } else { "threads" };
        let row = r.add(
            "alloc",
            format!("{what}, {} {th}: pairs/s", p.threads),
            p.per_sec,
            Unit::PerSec,
            Some(Base::Ring),
        );
        if p.kind == Kind::Task && p.threads == 1 {
            row.target(Target::at_least(20e6));
        }
    }
    r.detail("alloc", points);
    Ok(())
}
