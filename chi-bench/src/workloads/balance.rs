//! `balance`: load-aware workers. Two low-latency workers over four lanes
//! (worker 0 starts with lanes 0 and 2); a client thread keeps lane 0 full of
//! Sleeps that hold their worker for 2 ms (`mod_name`'s blocking Sleep), and
//! another times synchronous echoes on lane 2, beside them. With the
//! reinforcement thread on, lane 2 moves to the idle worker and the echoes
//! keep the latency they have on an idle runtime; with it off
//! (`workers.reinforcement: 0`) each echo waits for the Sleep in front of it.
//! The idle runtime's echo is measured in the same run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chi_sdk::admin::AdminClient;
use chi_sdk::client::Client;
use chi_sdk::types::DomainQuery;
use chimaera_mod_name_runtime::{CHIMOD_LIB_NAME, EchoTask, ModNameClient, SleepTask};
use serde::Serialize;

use crate::Ctx;
use crate::report::{Target, Unit};
use crate::runtime::{RuntimeProc, runtime_exe};
use crate::stats::{self, Summary};

/// Sleeps kept queued on lane 0.
const BACKLOG: usize = 16;
/// How long one Sleep holds its worker, in ms.
const SLOW_MS: u32 = 2;

#[derive(Debug, Serialize)]
struct Details {
    idle_ns: Summary,
    balanced_ns: Summary,
    unbalanced_ns: Summary,
}

/// Echo latencies on lane 2 of a fresh runtime: alone if `slow` is false,
/// else beside a full lane 0 of Sleeps, with `reinforcement` threads.
fn echoes(ctx: &Ctx, reinforcement: u32, slow: bool, window: Duration) -> Result<Vec<u32>> {
    let exe = runtime_exe(ctx.opts.runtime.as_deref())?;
    let mut proc = RuntimeProc::spawn_full(
        &exe,
        2,
        &format!("  reinforcement: {reinforcement}\n"),
        "queue:\n  lanes: 4\n",
    )?;
    let client = proc.connect(Duration::from_millis(1))?;
    let pool = AdminClient::new(&client)
        .get_or_create_pool(CHIMOD_LIB_NAME, "bench_balance", "")
        .map(ModNameClient::from)
        .with_context(|| format!("creating a pool of {CHIMOD_LIB_NAME}"))?;
    let stop = AtomicBool::new(false);
    let mut lat = Vec::new();
    std::thread::scope(|s| -> Result<()> {
        let feeder = slow.then(|| s.spawn(|| feed(&client, &pool, &stop)));
        // Let the balancing settle (a move happens within ticks).
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        let mut v = 0u64;
        while t.elapsed() < window {
            let t0 = Instant::now();
            let r = client
                .submit_to_lane(EchoTask::new(pool.pool, DomainQuery::local(), v), 2)?
                .wait_with(|t| t.reply)?;
            lat.push(t0.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
            anyhow::ensure!(r == v, "echo answered {r} for {v}");
            v += 1;
        }
        stop.store(true, Ordering::Relaxed);
        if let Some(f) = feeder {
            f.join().expect("the feeder thread")?;
        }
        Ok(())
    })?;
    drop(client);
    drop(proc);
    Ok(lat)
}

/// Keeps [`BACKLOG`] blocking Sleeps queued on lane 0 until `stop`.
fn feed(client: &Client, pool: &ModNameClient, stop: &AtomicBool) -> Result<()> {
    let mut queued = std::collections::VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        while queued.len() < BACKLOG {
            queued.push_back(client.submit_to_lane(
                SleepTask::new(pool.pool, DomainQuery::local(), SLOW_MS, 1),
                0,
            )?);
        }
        queued.pop_front().expect("queued").wait()?;
    }
    for p in queued {
        p.wait()?;
    }
    Ok(())
}

/// Measures and records the workload (the shared runtime is stopped first:
/// this one needs runtimes of its own).
pub fn run(ctx: &mut Ctx) -> Result<()> {
    ctx.stop_runtime();
    let window = Duration::from_millis(if ctx.opts.quick { 300 } else { 3000 });
    let mut idle = echoes(ctx, 1, false, window)?;
    let mut on = echoes(ctx, 1, true, window)?;
    let mut off = echoes(ctx, 0, true, window)?;
    let (idle, on, off) = (
        stats::summarize(&mut idle),
        stats::summarize(&mut on),
        stats::summarize(&mut off),
    );
    let r = &mut ctx.report;
    r.add(
        "balance",
        "echo on lane 2, idle runtime: median",
        idle.p50,
        Unit::Ns,
        None,
    );
    r.add(
        "balance",
        format!("echo on lane 2 beside {SLOW_MS} ms tasks on lane 0, balancing on: median"),
        on.p50,
        Unit::Ns,
        None,
    );
    r.add(
        "balance",
        format!("echo on lane 2 beside {SLOW_MS} ms tasks on lane 0, balancing on: p99"),
        on.p99,
        Unit::Ns,
        None,
    );
    r.add(
        "balance",
        format!("echo on lane 2 beside {SLOW_MS} ms tasks on lane 0, balancing off: median"),
        off.p50,
        Unit::Ns,
        None,
    );
    r.add(
        "balance",
        "balanced echo median / idle echo median, in %",
        100.0 * on.p50 / idle.p50.max(1.0),
        Unit::Percent,
        None,
    )
    .target(Target::at_most(200.0));
    r.detail(
        "balance",
        Details {
            idle_ns: idle,
            balanced_ns: on,
            unbalanced_ns: off,
        },
    );
    Ok(())
}
