//! The client side of the round-trip and throughput workloads, run by threads of
//! this process or of client processes (this executable re-executed as
//! `__client`), which start in step: every thread warms up, then all wait for
//! one go.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::admin::{AdminClient, EchoTask};
use chi_sdk::client::{Client, TaskPtr};
use chi_sdk::types::PoolId;
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::child::{self, ChildGuard};
use crate::runtime::client_options;
use crate::stats::ns_u32;

/// What a client thread does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Work {
    /// Synchronous echo tasks, each round trip timed.
    Roundtrip,
    /// Asynchronous echo tasks, `window` in flight.
    Throughput,
}

/// The hidden `__client` sub-command.
#[derive(Debug, Clone, Args)]
pub struct ChildArgs {
    /// The runtime's port.
    #[arg(long)]
    port: u16,
    /// The workload.
    #[arg(long, value_enum)]
    work: Work,
    /// Client threads.
    #[arg(long, default_value_t = 1)]
    nthreads: usize,
    /// Tasks per thread.
    #[arg(long)]
    count: u64,
    /// Tasks in flight per thread (throughput).
    #[arg(long, default_value_t = 256)]
    inflight: usize,
}

/// What one client thread measured.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ThreadOut {
    /// Tasks completed.
    pub ops: u64,
    /// From the common go to its last task (ns).
    pub elapsed_ns: u64,
    /// Round-trip latencies (ns; round trips only).
    pub samples: Vec<u32>,
}

/// The results of all clients of one sweep point.
#[derive(Debug, Default)]
pub struct Merged {
    /// Tasks completed by all.
    pub ops: u64,
    /// The longest client's elapsed time (ns).
    pub elapsed_ns: u64,
    /// All latencies.
    pub samples: Vec<u32>,
}

impl Merged {
    /// Merges the threads' results.
    pub fn of(outs: Vec<ThreadOut>) -> Merged {
        let mut m = Merged::default();
        for o in outs {
            m.ops += o.ops;
            m.elapsed_ns = m.elapsed_ns.max(o.elapsed_ns);
            m.samples.extend_from_slice(&o.samples);
        }
        m
    }

    /// Tasks per second of all clients together.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / (self.elapsed_ns.max(1) as f64 / 1e9)
    }
}

/// Runs `work` on `threads` threads of `client`, `iters` tasks each: all warm up,
/// then `gate` runs (the cross-process go), then all measure together.
pub fn run_threads(
    client: &Client,
    work: Work,
    threads: usize,
    iters: u64,
    window: usize,
    gate: impl FnOnce() -> Result<()>,
    bar: &ProgressBar,
) -> Result<Vec<ThreadOut>> {
    let warm = Barrier::new(threads + 1);
    let go = Barrier::new(threads + 1);
    // Relaxed: read after the `go` barrier, which orders it.
    let abort = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let (warm, go, abort) = (&warm, &go, &abort);
                s.spawn(move || -> Result<ThreadOut> {
                    // Values are unique per thread (checked in every answer).
                    let base = (k as u64) << 40;
                    let warmup = (iters / 10).clamp(100, 10_000);
                    let w = match work {
                        Work::Roundtrip => roundtrip(client, base, warmup, None),
                        Work::Throughput => throughput(client, base, warmup, window, None),
                    };
                    warm.wait();
                    go.wait();
                    w?;
                    if abort.load(Ordering::Relaxed) {
                        bail!("aborted before the start");
                    }
                    let t = Instant::now();
                    let base = base | 1 << 39;
                    let mut out = match work {
                        Work::Roundtrip => roundtrip(client, base, iters, Some(bar))?,
                        Work::Throughput => throughput(client, base, iters, window, Some(bar))?,
                    };
                    out.elapsed_ns = t.elapsed().as_nanos() as u64;
                    Ok(out)
                })
            })
            .collect();
        warm.wait();
        let g = gate();
        if g.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        go.wait();
        let outs = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a client thread panicked"))
            })
            .collect::<Result<Vec<_>>>();
        g?;
        outs
    })
}

/// Synchronous echo round trips, each timed.
fn roundtrip(client: &Client, base: u64, n: u64, bar: Option<&ProgressBar>) -> Result<ThreadOut> {
    let admin = AdminClient::new(client);
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..n {
        let v = base + i;
        let t = Instant::now();
        let r = admin.echo(PoolId::ADMIN, v)?;
        samples.push(ns_u32(t.elapsed()));
        if r != v {
            bail!("echo answered {r} for {v}");
        }
        if i & 0x3FFF == 0x3FFF
            && let Some(b) = bar
        {
            b.inc(0x4000);
        }
    }
    if let Some(b) = bar {
        b.inc(n & 0x3FFF);
    }
    Ok(ThreadOut {
        ops: n,
        elapsed_ns: 0,
        samples,
    })
}

/// Asynchronous echoes with `window` in flight; every answer checked.
fn throughput(
    client: &Client,
    base: u64,
    n: u64,
    window: usize,
    bar: Option<&ProgressBar>,
) -> Result<ThreadOut> {
    let admin = AdminClient::new(client);
    let mut inflight = VecDeque::with_capacity(window);
    let complete = |(v, task): (u64, TaskPtr<EchoTask>)| -> Result<()> {
        client.wait(&task)?;
        let r = task.result().map(|()| task.get().reply);
        client.del_task(task);
        let r = r?;
        if r != v {
            bail!("echo answered {r} for {v}");
        }
        Ok(())
    };
    for i in 0..n {
        if inflight.len() == window {
            complete(inflight.pop_front().context("window")?)?;
        }
        let v = base + i;
        inflight.push_back((v, admin.async_echo(PoolId::ADMIN, v)?));
        if i & 0xFFFF == 0xFFFF
            && let Some(b) = bar
        {
            b.inc(0x10000);
        }
    }
    for t in inflight {
        complete(t)?;
    }
    if let Some(b) = bar {
        b.inc(n & 0xFFFF);
    }
    Ok(ThreadOut {
        ops: n,
        elapsed_ns: 0,
        samples: Vec::new(),
    })
}

/// Runs `work` in `procs` client processes (one thread each) of the runtime on
/// `port`, started in step.
pub fn run_procs(port: u16, work: Work, procs: usize, iters: u64, window: usize) -> Result<Merged> {
    let work_arg = match work {
        Work::Roundtrip => "roundtrip",
        Work::Throughput => "throughput",
    };
    let args = vec![
        "__client".to_owned(),
        format!("--port={port}"),
        format!("--work={work_arg}"),
        "--nthreads=1".to_owned(),
        format!("--count={iters}"),
        format!("--inflight={window}"),
    ];
    let mut kids = (0..procs)
        .map(|_| ChildGuard::spawn_self(&args, "client"))
        .collect::<Result<Vec<_>>>()?;
    for k in &mut kids {
        k.wait_ready()?;
    }
    for k in &mut kids {
        k.go()?;
    }
    let mut outs = Vec::new();
    for k in &mut kids {
        let line = k.read_line()?;
        let o: Vec<ThreadOut> =
            serde_json::from_str(&line).context("reading a client process's results")?;
        outs.extend(o);
    }
    for k in kids {
        k.finish(Duration::from_secs(30))?;
    }
    Ok(Merged::of(outs))
}

/// The `__client` process: connect, warm up, say ready, wait for go, measure,
/// print the results as one JSON line.
pub fn child_main(a: &ChildArgs) -> Result<()> {
    let client = Client::connect(client_options(a.port))?;
    let outs = run_threads(
        &client,
        a.work,
        a.nthreads.max(1),
        a.count,
        a.inflight.max(1),
        child::ready_and_wait_go,
        &ProgressBar::hidden(),
    )?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &outs)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}
