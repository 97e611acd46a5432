//! `roundtrip`: synchronous empty echo tasks, each round trip timed; median,
//! p99 and p99.9, sweeping client threads of this process and client processes.
//! Each sweep point runs the base iteration count in total, split over its
//! clients.

use anyhow::Result;
use serde::Serialize;

use super::clients_label;
use crate::Ctx;
use crate::client::{self, Merged, Work};
use crate::report::{Base, Series, Target, Unit};
use crate::stats::{self, Summary};

/// One sweep point, for the JSON details.
#[derive(Debug, Serialize)]
struct Point {
    clients: usize,
    processes: bool,
    round_trips: u64,
    per_sec: f64,
    latency_ns: Summary,
}

/// Runs the sweep and records it.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let n = ctx.opts.iters();
    let window = ctx.opts.window;
    let (threads, procs) = (ctx.opts.threads.0.clone(), ctx.opts.procs.0.clone());
    let bar = ctx.progress.bar(
        n * (threads.len() + procs.len()) as u64,
        "roundtrip: sync echo",
    );
    let rt = ctx.runtime()?;
    let mut results = Vec::new();
    for &t in &threads {
        let per = (n / t as u64).max(100);
        let outs =
            client::run_threads(&rt.client, Work::Roundtrip, t, per, window, || Ok(()), &bar)?;
        results.push((t, false, Merged::of(outs)));
    }
    for &p in &procs {
        let per = (n / p as u64).max(100);
        let m = client::run_procs(rt.port(), Work::Roundtrip, p, per, window)?;
        bar.inc(per * p as u64);
        results.push((p, true, m));
    }
    bar.finish_and_clear();
    record(ctx, results);
    Ok(())
}

fn record(ctx: &mut Ctx, results: Vec<(usize, bool, Merged)>) {
    let r = &mut ctx.report;
    let w = "roundtrip";
    let pp = Some(Base::PingPong);
    let mut details = Vec::new();
    let mut rate_threads = Vec::new();
    let mut rate_procs = Vec::new();
    for (clients, processes, mut m) in results {
        let s = stats::summarize(&mut m.samples);
        let label = clients_label(clients, processes);
        let row = r.add(
            w,
            format!("sync echo, {label}: median"),
            s.p50,
            Unit::Ns,
            pp,
        );
        if clients == 1 && !processes {
            row.target(Target::at_most(500.0));
        }
        r.add(w, format!("sync echo, {label}: p99"), s.p99, Unit::Ns, pp);
        r.add(
            w,
            format!("sync echo, {label}: p99.9"),
            s.p999,
            Unit::Ns,
            pp,
        );
        let rate = m.rate();
        r.add(
            w,
            format!("sync echo, {label}: round trips/s (all)"),
            rate,
            Unit::PerSec,
            pp,
        );
        r.latency_cdf.push(Series {
            label: format!("sync echo, {label}"),
            points: stats::cdf_points(&m.samples, 400),
        });
        if processes {
            rate_procs.push((clients as f64, rate));
        } else {
            rate_threads.push((clients as f64, rate));
        }
        details.push(Point {
            clients,
            processes,
            round_trips: m.ops,
            per_sec: rate,
            latency_ns: s,
        });
    }
    for (label, points) in [
        ("sync echo, client threads", rate_threads),
        ("sync echo, client processes", rate_procs),
    ] {
        if !points.is_empty() {
            r.rate_vs_clients.push(Series {
                label: label.into(),
                points,
            });
        }
    }
    r.detail("roundtrip", details);
}
