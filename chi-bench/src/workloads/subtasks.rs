//! `md` and `subtasks`: tasks that call tasks inside the runtime, through the
//! `mod_name` example module (`libchimaera_mod_name_runtime.so`).
//!
//! * `md` (the upstream "Md" workload): Recurse trees — every task below the
//!   leaves submits `fanout` subtasks of its own pool and waits for them —
//!   and a chain (`fanout` 1); and the subtask round trip inside the
//!   runtime: one handler submits echoes one at a time, each once the one
//!   before answered (allocate, submit, wait — the runtime runs the waited-for
//!   subtask inline on the handler's stack when it can, else suspends the
//!   parent, runs the child on its own coroutine and wakes the parent —,
//!   complete, free). All of it runs on the one worker of the container's
//!   lane. A chain's levels cost more than a round trip: each level keeps its
//!   frames on the stack, and a 200-deep chain goes on on a new coroutine
//!   whenever the stack it runs on is used down to its limit.
//! * `subtasks`: FanOut — one task submits N echo subtasks to a pool and
//!   waits for them all; subtasks per second on one worker.
//!
//! Beside them, a floor measured in the same run: one coroutine switch there
//! and back (`resume` + `suspend`) plus one push and pop of a task word in a
//! queue, the parts a subtask round trip cannot do without.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::{Context, Result};
use chi_sdk::admin::AdminClient;
use chimaera_mod_name_runtime::{
    CHIMOD_LIB_NAME, ModNameClient, TARGET_MOD_NAME, TARGET_MOD_NAME_ONE_BY_ONE,
};
use serde::Serialize;

use crate::Ctx;
use crate::report::Target;
use crate::report::Unit;
use crate::stats::{self, Summary};

#[derive(Debug, Serialize)]
struct Details {
    floor_switch_queue_ns: f64,
    chain_levels: u32,
    chain_per_level_ns: Summary,
    round_trip_ns: Summary,
    tree: (u32, u32),
    tree_tasks_per_sec: Summary,
    fan_out: u32,
    fan_out_subtasks_per_sec: Summary,
    parked_cpu_percent: f64,
}

/// Median of `rounds` timings of `batch` coroutine switches (there and back)
/// with a queue push and pop each, per switch, in ns.
fn floor_switch_queue(rounds: usize, batch: u64) -> f64 {
    use corosensei::{Coroutine, CoroutineResult};
    let mut q: VecDeque<u64> = VecDeque::with_capacity(64);
    let mut co = Coroutine::new(|y: &corosensei::Yielder<u64, u64>, mut v: u64| {
        loop {
            v = y.suspend(v.wrapping_add(1));
        }
    });
    let mut per = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let mut x = 0u64;
        for i in 0..batch {
            q.push_back(std::hint::black_box(i));
            let w = q.pop_front().unwrap_or_default();
            let CoroutineResult::Yield(r) = co.resume(w);
            x = x.wrapping_add(r);
        }
        std::hint::black_box(x);
        per.push(t.elapsed().as_nanos() as f64 / batch as f64);
    }
    per.sort_by(f64::total_cmp);
    per[per.len() / 2]
}

/// Measures and records both workloads.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let quick = ctx.opts.quick;
    let rt = ctx.runtime()?;
    let client = &rt.client;
    let pool = match AdminClient::new(client).get_or_create_pool(CHIMOD_LIB_NAME, "bench_md", "") {
        Ok(p) => ModNameClient::from(p),
        Err(e) => {
            ctx.report.note(
                "md",
                format!(
                    "skipped: cannot create a pool of {CHIMOD_LIB_NAME} ({e}); build it with \
                     `cargo build --release -p mod_name`"
                ),
            );
            return Ok(());
        }
    };
    let rounds = if quick { 5 } else { 31 };
    let levels: u32 = 200;
    let (depth, fanout): (u32, u32) = (10, 2);
    let fan: u32 = if quick { 1000 } else { 10_000 };
    // Warm-up: stacks, caches, the module loaded.
    pool.recurse(client, levels, 1).context("Recurse chain")?;
    pool.fan_out(client, pool.pool, TARGET_MOD_NAME, fan)
        .context("FanOut")?;

    let (mut chain, mut tree, mut fans, mut trips) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let sum = pool
            .fan_out(client, pool.pool, TARGET_MOD_NAME_ONE_BY_ONE, fan)
            .context("FanOut one by one")?;
        anyhow::ensure!(
            sum == u64::from(fan) * (u64::from(fan) + 1) / 2,
            "FanOut summed {sum}"
        );
        trips.push((t.elapsed().as_nanos() as u64 / u64::from(fan)) as u32);

        let t = Instant::now();
        let (n, _) = pool.recurse(client, levels, 1).context("Recurse chain")?;
        anyhow::ensure!(n == u64::from(levels) + 1, "the chain ran {n} tasks");
        chain.push((t.elapsed().as_nanos() as u64 / u64::from(levels)) as u32);

        let t = Instant::now();
        let (n, _) = pool
            .recurse(client, depth, fanout)
            .context("Recurse tree")?;
        tree.push((n as f64 / t.elapsed().as_secs_f64()) as u32);

        let t = Instant::now();
        let sum = pool
            .fan_out(client, pool.pool, TARGET_MOD_NAME, fan)
            .context("FanOut")?;
        anyhow::ensure!(
            sum == u64::from(fan) * (u64::from(fan) + 1) / 2,
            "FanOut summed {sum}"
        );
        fans.push((f64::from(fan) / t.elapsed().as_secs_f64()) as u32);
    }
    // 1,000 parked tasks: Sleep subtasks of one FanOut (subtasks are not
    // held back by coroutine.max_live), then the runtime's CPU over a second.
    let parked = 1000;
    let fan_sleeps = pool
        .async_fan_out_sleeps(client, pool.pool, parked, 600_000)
        .context("FanOut of sleeps")?;
    let pid = client.runtime_pid();
    let settle = Instant::now();
    while settle.elapsed() < std::time::Duration::from_secs(2) {
        let st = chi_sdk::client::Client::status(&crate::runtime::client_options(rt.port()))?;
        if st.workers.iter().map(|w| w.parked_tasks).sum::<u64>() > u64::from(parked) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let hz = rustix::param::clock_ticks_per_second();
    let c0 = super::idle::cpu_ticks(pid)?;
    let t = Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(if quick { 1 } else { 5 }));
    let c1 = super::idle::cpu_ticks(pid)?;
    let parked_cpu = c1.saturating_sub(c0) as f64 / hz as f64 / t.elapsed().as_secs_f64() * 100.0;
    client.cancel(&fan_sleeps).context("cancel the sleeps")?;
    let _ = fan_sleeps.wait();
    let _ = AdminClient::new(client).destroy_pool(pool.pool);
    let floor = floor_switch_queue(rounds, 100_000);
    let chain = stats::summarize(&mut chain);
    let trips = stats::summarize(&mut trips);
    let tree_s = stats::summarize(&mut tree);
    let fans_s = stats::summarize(&mut fans);

    let r = &mut ctx.report;
    r.add(
        "md",
        "floor: coroutine switch there and back + queue push/pop",
        floor,
        Unit::Ns,
        None,
    );
    r.add(
        "md",
        format!("subtask round trip inside the runtime ({fan} echoes one by one): median"),
        trips.p50,
        Unit::Ns,
        None,
    );
    r.add(
        "md",
        "subtask round trip / (switch + push/pop floor), in %",
        100.0 * trips.p50 / floor,
        Unit::Percent,
        None,
    )
    .target(Target::at_most(300.0));
    r.add(
        "md",
        format!("Recurse chain of {levels} levels, one worker: time per level, median"),
        chain.p50,
        Unit::Ns,
        None,
    );
    r.add(
        "md",
        format!("Recurse tree depth {depth} fanout {fanout}, one worker: tasks/s, median"),
        tree_s.p50,
        Unit::PerSec,
        None,
    )
    .target(Target::at_least(2e6));
    r.add(
        "md",
        format!("runtime CPU with {parked} parked tasks, % of one core"),
        parked_cpu,
        Unit::Percent,
        None,
    )
    .target(Target::at_most(1.0));
    r.add(
        "subtasks",
        format!("FanOut of {fan} echo subtasks, one worker: subtasks/s, median"),
        fans_s.p50,
        Unit::PerSec,
        None,
    )
    .target(Target::at_least(2e6));
    r.detail(
        "subtasks",
        Details {
            floor_switch_queue_ns: floor,
            chain_levels: levels,
            chain_per_level_ns: chain,
            round_trip_ns: trips,
            tree: (depth, fanout),
            tree_tasks_per_sec: tree_s,
            fan_out: fan,
            fan_out_subtasks_per_sec: fans_s,
            parked_cpu_percent: parked_cpu,
        },
    );
    Ok(())
}
