//! `fire-and-forget`: echo tasks flagged `FIRE_AND_FORGET` (nobody waits; the
//! worker frees each one), then the admin Flush, which returns once every
//! earlier task has completed. Tasks per second, flush included.

use std::time::{Duration, Instant};

use anyhow::Result;
use chi_sdk::admin::{AdminClient, EchoTask};
use chi_sdk::client::Client;
use chi_sdk::queue::Priority;
use chi_sdk::task::flags;
use chi_sdk::types::PoolId;
use serde::Serialize;

use crate::Ctx;
use crate::report::{Base, Unit};

#[derive(Debug, Serialize)]
struct Details {
    tasks: u64,
    elapsed_ns: u64,
    per_sec: f64,
    live_blocks_before: u64,
    live_blocks_after: u64,
}

/// Submits `n` fire-and-forget echoes and flushes.
fn burst(client: &Client, n: u64) -> Result<()> {
    for i in 0..n {
        let mut task = EchoTask::new(PoolId::ADMIN, i);
        task.header.flags |= flags::FIRE_AND_FORGET;
        let t = client.new_task(task)?;
        // On success the task belongs to the runtime, which frees it.
        client.enqueue(&t, Priority::LowLatency)?;
    }
    AdminClient::new(client).flush()?;
    Ok(())
}

/// Measures and records.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let n = 2 * ctx.opts.iters();
    let bar = ctx.progress.bar(1, "fire-and-forget: echo + flush");
    let rt = ctx.runtime()?;
    let client = &rt.client;
    burst(client, (n / 10).clamp(100, 10_000))?;
    let before = client.main_allocator().stats().live_blocks;
    let t = Instant::now();
    burst(client, n)?;
    let elapsed = t.elapsed();
    // The worker frees each task after completing it; give the last one a moment.
    std::thread::sleep(Duration::from_millis(20));
    let after = client.main_allocator().stats().live_blocks;
    bar.finish_and_clear();
    let rate = n as f64 / elapsed.as_secs_f64();
    let r = &mut ctx.report;
    r.add(
        "fire-and-forget",
        "fire-and-forget echo + one flush, 1 client thread: tasks/s",
        rate,
        Unit::PerSec,
        Some(Base::Ring),
    );
    if after > before {
        r.note(
            "fire-and-forget",
            format!(
                "{} task blocks were still allocated after the flush",
                after - before
            ),
        );
    }
    r.detail(
        "fire_and_forget",
        Details {
            tasks: n,
            elapsed_ns: elapsed.as_nanos() as u64,
            per_sec: rate,
            live_blocks_before: before,
            live_blocks_after: after,
        },
    );
    Ok(())
}
