//! `startup`: start to ready — from spawning `chi-runtime start` (on a fresh
//! port and configuration) until a client has registered with it — the median of
//! several starts. Its floor, measured here too: spawning the same binary the
//! same way as `chi-runtime --help` until it exits (loading the executable and
//! its libraries, nothing else).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use rustix::process::Signal;

use crate::Ctx;
use crate::child::die_with_parent;
use crate::report::{Base, Target, Unit};
use crate::runtime::{RuntimeProc, runtime_exe};
use crate::stats;

#[derive(Debug, Serialize)]
struct Details {
    spawn_floor_ms: Vec<f64>,
    start_to_ready_ms: Vec<f64>,
}

/// Measures and records.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let exe = runtime_exe(ctx.opts.runtime.as_deref())?;
    let tries = if ctx.opts.quick { 3 } else { 10 };
    let bar = ctx
        .progress
        .bar(2 * tries as u64, "startup: start to ready");
    let mut spawn = Vec::new();
    for _ in 0..tries {
        let mut cmd = Command::new(&exe);
        cmd.arg("--help")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Started like the runtime (fork + prctl + exec), so the two compare.
        die_with_parent(&mut cmd, Signal::KILL);
        let t = Instant::now();
        let st = cmd
            .status()
            .with_context(|| format!("running {} --help", exe.display()))?;
        spawn.push(t.elapsed().as_secs_f64() * 1e3);
        if !st.success() {
            bail!("{} --help failed ({st})", exe.display());
        }
        bar.inc(1);
    }
    let mut ready = Vec::new();
    for _ in 0..tries {
        let mut rt = RuntimeProc::spawn(
            &exe,
            ctx.opts.workers.max(1),
            ctx.opts.worker_cpus.as_ref().map(|c| c.text.as_str()),
        )?;
        let client = rt.connect(Duration::from_micros(100))?;
        ready.push(rt.spawned.elapsed().as_secs_f64() * 1e3);
        drop(client);
        drop(rt);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let r = &mut ctx.report;
    r.floor.spawn_ms = Some(stats::median(&mut spawn.clone()));
    let w = "startup";
    r.add(
        w,
        format!("floor: spawn `chi-runtime --help` until exit (median of {tries})"),
        r.floor.spawn_ms.unwrap_or(f64::NAN),
        Unit::Ms,
        Some(Base::Spawn),
    );
    r.add(
        w,
        format!("start to ready: spawn until a client registered (median of {tries})"),
        stats::median(&mut ready.clone()),
        Unit::Ms,
        Some(Base::Spawn),
    )
    .target(Target::at_most(20.0));
    r.detail(
        "startup",
        Details {
            spawn_floor_ms: spawn,
            start_to_ready_ms: ready,
        },
    );
    Ok(())
}
