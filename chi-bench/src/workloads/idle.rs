//! `idle`: the CPU the idle runtime uses once its workers backed off to sleep
//! (user + system time of the whole process, from `/proc/<pid>/stat`), and the
//! latency of the first echo after idle periods of 1 ms, 20 ms, 200 ms and 1 s
//! (the median of several tries; one with `--quick`).
//!
//! The first task is measured twice: with the default client, which spins
//! 50 µs and then sleeps on the task's futex (so a slow answer also pays the
//! client's own wake-up), and with a client that spins throughout (20 ms), which
//! leaves only the runtime's side: the worker's wake-up from its doorbell.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chi_sdk::admin::AdminClient;
use chi_sdk::client::{Client, ClientOptions};
use chi_sdk::types::PoolId;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::Ctx;
use crate::report::{Base, Target, Unit};
use crate::runtime::client_options;
use crate::stats;

/// The idle periods.
const IDLES_MS: [u64; 4] = [1, 20, 200, 1000];

/// Per idle period (ms): every try (µs).
type FirstTasks = Vec<(u64, Vec<f64>)>;

#[derive(Debug, Serialize)]
struct Details {
    settle_ms: u64,
    window_ms: u64,
    cpu_ticks: u64,
    ticks_per_second: u64,
    cpu_percent: f64,
    /// Default client.
    first_task_us: FirstTasks,
    /// A client spinning throughout.
    first_task_spinning_client_us: FirstTasks,
}

/// User + system CPU time of process `pid`, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let s = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name (which may hold spaces) in parentheses;
    // utime and stime are the 14th and 15th fields of the line.
    let rest = s
        .rfind(')')
        .and_then(|i| s.get(i + 2..))
        .with_context(|| format!("parsing {path}"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("parsing field {} of {path}", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// For each idle period, `tries` first-task latencies through `client`.
fn first_tasks(client: &Client, tries: u64, bar: &ProgressBar) -> Result<FirstTasks> {
    let admin = AdminClient::new(client);
    let mut first = Vec::new();
    for idle in IDLES_MS {
        let mut us = Vec::new();
        for _ in 0..tries {
            // A few tasks first, so the idle period starts from a busy worker.
            for i in 0..10 {
                admin.echo(PoolId::ADMIN, i)?;
            }
            std::thread::sleep(Duration::from_millis(idle));
            let t = Instant::now();
            admin.echo(PoolId::ADMIN, idle)?;
            us.push(t.elapsed().as_secs_f64() * 1e6);
            bar.inc(idle);
        }
        first.push((idle, us));
    }
    Ok(first)
}

/// Measures and records.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let quick = ctx.opts.quick;
    let (settle, window, tries) = if quick {
        (Duration::from_millis(100), Duration::from_millis(500), 1)
    } else {
        (Duration::from_secs(1), Duration::from_secs(3), 5)
    };
    let total = settle + window + Duration::from_millis(2 * IDLES_MS.iter().sum::<u64>() * tries);
    let bar = ctx
        .progress
        .bar(total.as_millis() as u64, "idle: CPU and first task");
    let rt = ctx.runtime()?;
    let pid = rt.proc.pid();
    let hz = rustix::param::clock_ticks_per_second();

    std::thread::sleep(settle);
    bar.inc(settle.as_millis() as u64);
    let c0 = cpu_ticks(pid)?;
    let t = Instant::now();
    std::thread::sleep(window);
    let c1 = cpu_ticks(pid)?;
    let measured = t.elapsed();
    bar.inc(window.as_millis() as u64);
    let ticks = c1.saturating_sub(c0);
    let cpu = ticks as f64 / hz as f64 / measured.as_secs_f64() * 100.0;

    let first = first_tasks(&rt.client, tries, &bar)?;
    let spinning = Client::connect(ClientOptions {
        spin: Duration::from_millis(20),
        ..client_options(rt.port())
    })?;
    let first_spinning = first_tasks(&spinning, tries, &bar)?;
    drop(spinning);
    bar.finish_and_clear();

    let r = &mut ctx.report;
    let w = "idle";
    r.add(
        w,
        format!(
            "idle runtime CPU over {:.1} s, % of one core",
            measured.as_secs_f64()
        ),
        cpu,
        Unit::Percent,
        None,
    )
    .target(Target::at_most(1.0));
    for (spin, results) in [(false, &first), (true, &first_spinning)] {
        for (idle, us) in results {
            let med = stats::median(&mut us.clone());
            let period = if *idle >= 1000 {
                format!("{} s", idle / 1000)
            } else {
                format!("{idle} ms")
            };
            let of = if us.len() > 1 {
                format!(" (median of {})", us.len())
            } else {
                String::new()
            };
            let who = if spin { ", client spinning" } else { "" };
            let row = r.add(
                w,
                format!("first task after {period} idle{who}{of}"),
                med,
                Unit::Us,
                Some(Base::PingPong),
            );
            if *idle == 1000 && !spin {
                row.target(Target::at_most(200.0));
            }
        }
    }
    r.detail(
        "idle",
        Details {
            settle_ms: settle.as_millis() as u64,
            window_ms: measured.as_millis() as u64,
            cpu_ticks: ticks,
            ticks_per_second: hz,
            cpu_percent: cpu,
            first_task_us: first,
            first_task_spinning_client_us: first_spinning,
        },
    );
    Ok(())
}
