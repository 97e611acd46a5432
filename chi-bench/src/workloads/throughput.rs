//! `throughput`: asynchronous empty echo tasks, each client keeping `--window`
//! in flight; tasks per second of all clients together, sweeping client threads
//! of this process and client processes. Each sweep point runs twice the base
//! iteration count in total, split over its clients.

use anyhow::Result;
use serde::Serialize;

use super::clients_label;
use crate::Ctx;
use crate::client::{self, Merged, Work};
use crate::report::{Base, Series, Target, Unit};

/// One sweep point, for the JSON details.
#[derive(Debug, Serialize)]
struct Point {
    clients: usize,
    processes: bool,
    window: usize,
    tasks: u64,
    per_sec: f64,
}

/// Runs the sweep and records it.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let n = 2 * ctx.opts.iters();
    let window = ctx.opts.window;
    let (threads, procs) = (ctx.opts.threads.0.clone(), ctx.opts.procs.0.clone());
    let bar = ctx.progress.bar(
        n * (threads.len() + procs.len()) as u64,
        "throughput: async echo",
    );
    let rt = ctx.runtime()?;
    let mut results = Vec::new();
    for &t in &threads {
        let per = (n / t as u64).max(100);
        let outs = client::run_threads(
            &rt.client,
            Work::Throughput,
            t,
            per,
            window,
            || Ok(()),
            &bar,
        )?;
        results.push((t, false, Merged::of(outs)));
    }
    for &p in &procs {
        let per = (n / p as u64).max(100);
        let m = client::run_procs(rt.port(), Work::Throughput, p, per, window)?;
        bar.inc(per * p as u64);
        results.push((p, true, m));
    }
    bar.finish_and_clear();

    let r = &mut ctx.report;
    let w = "throughput";
    let mut details = Vec::new();
    let mut by_threads = Vec::new();
    let mut by_procs = Vec::new();
    for (clients, processes, m) in results {
        let label = clients_label(clients, processes);
        let rate = m.rate();
        let row = r.add(
            w,
            format!("async echo, {window} in flight each, {label}: tasks/s"),
            rate,
            Unit::PerSec,
            Some(Base::Ring),
        );
        if clients == 1 && !processes {
            row.target(Target::at_least(5e6));
        }
        if processes {
            by_procs.push((clients as f64, rate));
        } else {
            by_threads.push((clients as f64, rate));
        }
        details.push(Point {
            clients,
            processes,
            window,
            tasks: m.ops,
            per_sec: rate,
        });
    }
    for (label, points) in [
        ("async echo, client threads", by_threads),
        ("async echo, client processes", by_procs),
    ] {
        if !points.is_empty() {
            r.rate_vs_clients.push(Series {
                label: label.into(),
                points,
            });
        }
    }
    r.detail("throughput", details);
    Ok(())
}
