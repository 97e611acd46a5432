//! `module-echo`: the synchronous empty echo through a module library the
//! runtime loaded (the `mod_name` example's Echo, `libchimaera_mod_name_runtime.so`)
//! against the built-in admin module's Echo, on the same runtime, in one run:
//! what the module boundary costs.
//!
//! Both go through the same client path (`Client::call` + `del_task`) and the
//! same worker; the two are interleaved in blocks of 1000 calls so that the
//! machine's drift affects both alike. The library is found through the shared
//! runtime's `module_path` (this executable's directory and `CHI_MODULE_PATH`;
//! `cargo build --release -p mod_name` puts it beside `chi-bench`); without it
//! the workload is skipped with a note.

use std::time::Instant;

use anyhow::{Context, Result};
use chi_sdk::admin::{AdminClient, EchoTask as AdminEcho};
use chi_sdk::client::Client;
use chi_sdk::queue::Priority;
use chi_sdk::task::Task;
use chi_sdk::types::{DomainQuery, PoolId};
use chimaera_mod_name_runtime::{CHIMOD_LIB_NAME, EchoTask as ModuleEcho};
use serde::Serialize;

use crate::Ctx;
use crate::report::{Base, Unit};
use crate::stats::{self, Summary, ns_u32};

const BLOCK: u64 = 1000;

#[derive(Debug, Serialize)]
struct Details {
    builtin_ns: Summary,
    module_ns: Summary,
    module_over_builtin_median: f64,
}

/// One timed synchronous call of `task`.
fn timed<T: Task>(client: &Client, task: T) -> Result<u32> {
    let t0 = Instant::now();
    let t = client.call(task, Priority::LowLatency)?;
    let ns = ns_u32(t0.elapsed());
    client.del_task(t);
    Ok(ns)
}

/// Measures and records.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let n = ctx.opts.iters();
    let bar = ctx.progress.bar(2 * n, "module-echo: loaded vs built-in");
    let rt = ctx.runtime()?;
    let client = &rt.client;
    let pool =
        match AdminClient::new(client).get_or_create_pool(CHIMOD_LIB_NAME, "bench_mod_name", "") {
            Ok(p) => p,
            Err(e) => {
                bar.finish_and_clear();
                ctx.report.note(
                    "module-echo",
                    format!(
                        "skipped: cannot create a pool of {CHIMOD_LIB_NAME} ({e}); build it with \
                     `cargo build --release -p mod_name`"
                    ),
                );
                return Ok(());
            }
        };
    let (mut builtin, mut module) = (Vec::new(), Vec::new());
    // Warm-up of both paths (module loaded, caches, stacks).
    for i in 0..BLOCK {
        timed(client, AdminEcho::new(PoolId::ADMIN, i))?;
        timed(client, ModuleEcho::new(pool, DomainQuery::local(), i))?;
    }
    let mut done = 0;
    while done < n {
        let k = BLOCK.min(n - done);
        for i in 0..k {
            builtin.push(timed(client, AdminEcho::new(PoolId::ADMIN, i)).context("admin Echo")?);
        }
        for i in 0..k {
            module.push(
                timed(client, ModuleEcho::new(pool, DomainQuery::local(), i))
                    .context("module Echo")?,
            );
        }
        done += k;
        bar.inc(2 * k);
    }
    bar.finish_and_clear();
    let _ = AdminClient::new(client).destroy_pool(pool);
    let b = stats::summarize(&mut builtin);
    let m = stats::summarize(&mut module);
    let r = &mut ctx.report;
    let w = "module-echo";
    r.add(
        w,
        "sync echo, built-in admin module: median",
        b.p50,
        Unit::Ns,
        Some(Base::PingPong),
    );
    r.add(
        w,
        format!("sync echo, loaded module {CHIMOD_LIB_NAME}: median"),
        m.p50,
        Unit::Ns,
        Some(Base::PingPong),
    );
    r.add(
        w,
        format!("sync echo, loaded module {CHIMOD_LIB_NAME}: p99"),
        m.p99,
        Unit::Ns,
        Some(Base::PingPong),
    );
    r.note(
        w,
        format!(
            "loaded module / built-in, median: {:.2}× ({} calls each, interleaved in blocks of {BLOCK})",
            m.p50 / b.p50,
            b.n
        ),
    );
    r.detail(
        w,
        Details {
            builtin_ns: b,
            module_ns: m,
            module_over_builtin_median: m.p50 / b.p50,
        },
    );
    Ok(())
}
