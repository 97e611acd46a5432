//! `chi-bench`: the benchmark suite of the Chimaera runtime.
//!
//! Every invocation first measures the *physical floor* of this machine (a raw
//! shared-memory ping-pong of one atomic word and an SPSC ring between two
//! processes), then the workloads asked for against a real `chi-runtime` started
//! on a private port, and prints each result beside its ratio to that floor.
//!
//! ```text
//! chi-bench [OPTIONS] [COMMAND]
//!   floor | roundtrip | throughput | alloc | idle | startup | fire-and-forget
//!   md | subtasks | balance | remote | bdev | peer | all (the default)
//! ```
//!
//! `--quick` runs a few thousand iterations (seconds; CI), `--json FILE` writes
//! every result, `--plot DIR` writes SVG plots. Client processes, the floor's
//! partner process and the peer's server are this executable re-executed with a
//! hidden sub-command. See `docs/benchmarks.md`.

mod child;
mod client;
mod cluster;
mod floor;
mod plot;
mod progress;
mod report;
mod runtime;
mod stats;
mod workloads;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::progress::Progress;
use crate::report::Report;
use crate::runtime::SharedRuntime;

/// The benchmark suite of the Chimaera runtime: each result beside the
/// shared-memory floor measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "chi-bench", version)]
struct Cli {
    #[command(flatten)]
    opts: Opts,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

/// Options shared by every workload.
#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Few iterations and short idle windows: `all` finishes in seconds (CI).
    #[arg(long, global = true)]
    pub quick: bool,
    /// Base iteration count: round trips per sweep point and floor round trips
    /// (throughput and fire-and-forget run 2×, alloc 10×). Default 1 000 000,
    /// or 5 000 with --quick.
    #[arg(long, global = true, value_name = "N")]
    pub iters: Option<u64>,
    /// Client threads of one process to sweep: `N` (1..=N), `A..B` or a list `1,2,4`.
    #[arg(long, global = true, value_name = "SWEEP", default_value = "1..2")]
    pub threads: Sweep,
    /// Client processes (one thread each) to sweep, same syntax.
    #[arg(long, global = true, value_name = "SWEEP", default_value = "1..2")]
    pub procs: Sweep,
    /// Asynchronous tasks each client keeps in flight.
    #[arg(long, global = true, value_name = "N", default_value_t = 256)]
    pub window: usize,
    /// Low-latency workers of the runtime under test.
    #[arg(long, global = true, value_name = "N", default_value_t = 1)]
    pub workers: u32,
    /// Pin the runtime's low-latency workers to these CPUs
    /// (`workers.affinity.low_latency`: `1`, `0-1`, `2,3`); default: not pinned.
    #[arg(long, global = true, value_name = "CPUS")]
    pub worker_cpus: Option<CpuSpec>,
    /// Pin the `idle` workload's client thread (and the waiter of its floor)
    /// to these CPUs while it measures; default: not pinned.
    #[arg(long, global = true, value_name = "CPUS")]
    pub client_cpus: Option<CpuSpec>,
    /// The `chi-runtime` binary (default: `CHI_RUNTIME_BIN`, else the one next to
    /// this executable).
    #[arg(long, global = true, value_name = "FILE")]
    pub runtime: Option<PathBuf>,
    /// Write every result, with the machine and the command, as JSON.
    #[arg(long, global = true, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write SVG plots (round-trip latency CDF, throughput against clients) here.
    #[arg(long, global = true, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Never draw a progress bar.
    #[arg(long, global = true)]
    pub no_progress: bool,
}

impl Opts {
    /// The base iteration count.
    pub fn iters(&self) -> u64 {
        self.iters
            .unwrap_or(if self.quick { 5_000 } else { 1_000_000 })
            .max(100)
    }
}

/// A CPU list in the kernel's syntax (`1`, `0-1`, `2,4-5`), as given.
#[derive(Debug, Clone)]
pub struct CpuSpec {
    /// The text, for the runtime's configuration and the report.
    pub text: String,
    /// The CPUs.
    pub cpus: Vec<usize>,
}

impl CpuSpec {
    /// The kernel's set of these CPUs.
    pub fn cpu_set(&self) -> rustix::thread::CpuSet {
        let mut set = rustix::thread::CpuSet::new();
        for &c in &self.cpus {
            set.set(c);
        }
        set
    }
}

impl std::str::FromStr for CpuSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n < rustix::thread::CpuSet::MAX_CPU)
                .ok_or_else(|| format!("`{t}` is not a CPU number"))
        };
        let mut cpus = Vec::new();
        for piece in s.split(',') {
            match piece.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(format!("the range `{piece}` runs backwards"));
                    }
                    cpus.extend(a..=b);
                }
                None => cpus.push(num(piece)?),
            }
        }
        Ok(CpuSpec {
            text: s.trim().to_owned(),
            cpus,
        })
    }
}

/// A list of client counts to sweep.
#[derive(Debug, Clone)]
pub struct Sweep(pub Vec<usize>);

impl std::str::FromStr for Sweep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| (1..=64).contains(&n))
                .ok_or_else(|| format!("`{t}` is not a count from 1 to 64"))
        };
        let v = if let Some((a, b)) = s.split_once("..") {
            let (a, b) = (num(a)?, num(b.trim_start_matches('='))?);
            if a > b {
                return Err(format!("empty range {s}"));
            }
            (a..=b).collect()
        } else if s.contains(',') {
            s.split(',').map(num).collect::<Result<Vec<_>, _>>()?
        } else {
            (1..=num(s)?).collect()
        };
        Ok(Sweep(v))
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The physical floor only: shm ping-pong and SPSC ring between two processes.
    Floor,
    /// Synchronous empty echo tasks: median / p99 / p99.9, sweeping client
    /// threads and client processes.
    Roundtrip,
    /// Asynchronous echo tasks with a window in flight: tasks/s, one and several clients.
    Throughput,
    /// Task allocate + free through the client's allocator, one and several threads.
    Alloc,
    /// The idle runtime's CPU use, and the first task's latency after idle periods.
    Idle,
    /// Start to ready: spawn `chi-runtime start` until a client connects.
    Startup,
    /// Fire-and-forget echo tasks (freed by the worker), then one synchronous flush.
    FireAndForget,
    /// Subtask trees and chains inside the runtime (the upstream Md
    /// workload), beside a coroutine-switch + queue floor.
    Md,
    /// One task fanning out echo subtasks: subtasks/s on one worker.
    Subtasks,
    /// Echoes on a lane beside a lane of slow tasks, with the reinforcement
    /// thread moving lanes and without it.
    Balance,
    /// Tasks between runtimes of a local cluster on 127.0.0.x: round trip
    /// and pipelined throughput between two, a broadcast to three, beside a
    /// raw ZeroMQ round trip of the same message sizes.
    Remote,
    /// Block-device 4 KiB writes and reads through the bdev example module.
    Bdev,
    /// The sync echo through a loaded module against the built-in admin module.
    ModuleEcho,
    /// The same round trip through iceoryx2 request-response (feature `iceoryx2`).
    Peer,
    /// Mixed work from several client processes for minutes, one client
    /// killed and restarted every few seconds; memory, slots, lanes and rates
    /// every 10 s; fails if anything leaked or wedged.
    Soak(workloads::soak::SoakArgs),
    /// Everything available, in one run.
    All,
    #[command(name = "__floor-pong", hide = true)]
    FloorPong { segment: String },
    #[command(name = "__floor-task", hide = true)]
    FloorTask { segment: String },
    #[command(name = "__floor-ring", hide = true)]
    FloorRing { segment: String, count: u64 },
    #[command(name = "__client", hide = true)]
    Client(client::ChildArgs),
    #[command(name = "__soak-client", hide = true)]
    SoakClient(workloads::soak::SoakClientArgs),
    #[command(name = "__peer-server", hide = true)]
    PeerServer { service: String },
}

/// What every workload gets: the options, the report, the floor and the
/// runtime under test (started on first use).
#[derive(Debug)]
pub struct Ctx {
    /// Options.
    pub opts: Opts,
    /// Progress bars.
    pub progress: Progress,
    /// The results so far.
    pub report: Report,
    /// The runtime shared by the workloads that need one.
    runtime: Option<SharedRuntime>,
}

impl Ctx {
    /// The runtime under test, started on first use.
    pub fn runtime(&mut self) -> Result<&SharedRuntime> {
        if self.runtime.is_none() {
            self.runtime = Some(SharedRuntime::start(&self.opts)?);
        }
        Ok(self.runtime.as_ref().expect("started above"))
    }

    /// Stops the shared runtime (before workloads that start their own).
    pub fn stop_runtime(&mut self) {
        self.runtime = None;
    }
}

/// Prints why a workload is not available; success.
fn say(workload: &str, why: &str) -> Result<()> {
    println!("{workload}: {why}");
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let cmd = cli.cmd.unwrap_or(Cmd::All);
    // Hidden partner processes first: they print nothing but their protocol.
    match cmd {
        Cmd::FloorPong { segment } => return floor::pong_child(&segment),
        Cmd::FloorTask { segment } => return floor::task_child(&segment),
        Cmd::FloorRing { segment, count } => return floor::ring_child(&segment, count),
        Cmd::Client(args) => return client::child_main(&args),
        Cmd::PeerServer { service } => return workloads::peer::server_child(&service),
        Cmd::SoakClient(args) => return workloads::soak::client_main(&args),
        Cmd::Soak(args) => return workloads::soak::run(&args, cli.opts.runtime.as_deref()),
        _ => {}
    }
    // Sub-commands that cannot measure anything in this build say so at once.
    match cmd {
        #[cfg(not(feature = "iceoryx2"))]
        Cmd::Peer => return say("peer", workloads::peer::HOW),
        _ => {}
    }
    let opts = cli.opts;
    if opts.window == 0 {
        bail!("--window must be at least 1");
    }
    let progress =
        Progress::new(std::io::stdout().is_terminal() && !opts.quick && !opts.no_progress);
    let mut ctx = Ctx {
        report: Report::new(&opts),
        opts,
        progress,
        runtime: None,
    };
    // The floor of every ratio, measured first in every invocation.
    floor::measure(&mut ctx)?;
    match cmd {
        Cmd::Floor => {}
        Cmd::Roundtrip => workloads::roundtrip::run(&mut ctx)?,
        Cmd::Throughput => workloads::throughput::run(&mut ctx)?,
        Cmd::Alloc => workloads::alloc::run(&mut ctx)?,
        Cmd::Idle => workloads::idle::run(&mut ctx)?,
        Cmd::Startup => workloads::startup::run(&mut ctx)?,
        Cmd::FireAndForget => workloads::fire_and_forget::run(&mut ctx)?,
        Cmd::Md | Cmd::Subtasks => workloads::subtasks::run(&mut ctx)?,
        Cmd::Balance => workloads::balance::run(&mut ctx)?,
        Cmd::Remote => workloads::remote::run(&mut ctx)?,
        Cmd::Bdev => workloads::bdev::run(&mut ctx)?,
        Cmd::ModuleEcho => workloads::module_echo::run(&mut ctx)?,
        Cmd::Peer => workloads::peer::run(&mut ctx)?,
        Cmd::All => {
            workloads::roundtrip::run(&mut ctx)?;
            workloads::module_echo::run(&mut ctx)?;
            workloads::throughput::run(&mut ctx)?;
            workloads::fire_and_forget::run(&mut ctx)?;
            workloads::subtasks::run(&mut ctx)?;
            workloads::alloc::run(&mut ctx)?;
            workloads::idle::run(&mut ctx)?;
            ctx.stop_runtime();
            workloads::startup::run(&mut ctx)?;
            workloads::remote::run(&mut ctx)?;
            workloads::bdev::run(&mut ctx)?;
            workloads::balance::run(&mut ctx)?;
            workloads::peer::run(&mut ctx)?;
        }
        Cmd::FloorPong { .. }
        | Cmd::FloorTask { .. }
        | Cmd::FloorRing { .. }
        | Cmd::Client(_)
        | Cmd::SoakClient(_)
        | Cmd::Soak(_)
        | Cmd::PeerServer { .. } => {
            unreachable!("handled above")
        }
    }
    ctx.stop_runtime();
    ctx.report.print();
    if let Some(path) = &ctx.opts.json {
        ctx.report.write_json(path)?;
        println!("results written to {}", path.display());
    }
    if let Some(dir) = &ctx.opts.plot {
        for f in plot::write_all(&ctx.report, dir)? {
            println!("plot written to {}", f.display());
        }
    }
    Ok(())
}
