//! `bdev`: 4 KiB writes and reads through the bdev example module
//! (`examples/bdev`, `libchimaera_bdev_runtime.so`), on its RAM and its file
//! backend: synchronous (each I/O timed: median, p99, IOPS) and asynchronous
//! with `--window` I/Os in flight (IOPS), each also as bytes per second.
//!
//! # The runtime
//!
//! The workload uses the shared runtime, which finds the bdev library in this
//! executable's directory (where `cargo build --release -p bdev` puts it
//! beside `chi-bench`) or in a directory of `CHI_MODULE_PATH`. Without the
//! library the workload is skipped with a note saying how to build it. The
//! task types are the bdev crate's own.
//!
//! # The floor
//!
//! Beside the usual floors (the ping-pong for synchronous latency, the ring
//! for rates), each backend's raw cost is measured in this process in the same
//! run: a 4 KiB `memcpy` for RAM, a 4 KiB `pwrite` / `pread` on a file in the
//! same directory for the file backend. The JSON details give each result's
//! ratio to it.
//!
//! # Method
//!
//! Each backend is a fresh pool whose every block is allocated first; I/O `i`
//! goes to block `i mod blocks` from client-data buffer `i mod window`, all
//! allocated beforehand (no allocation in the timed loop), and there are more
//! blocks than I/Os in flight, so no two of them touch the same block. Every
//! block is written once before the phases (the first write of a block pays
//! for its memory: a page fault, a page-cache page), and a few hundred untimed
//! I/Os warm up each phase. After the phases a block is written, read back and
//! compared: a wrong answer fails the run. The machine's other load shows in
//! the tails (p99) first: compare runs made on a quiet machine.

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::admin::AdminClient;
use chi_sdk::bytes::{ClientBuf, ClientBytes};
use chi_sdk::client::{Client, Pending};
use chi_sdk::queue::Priority;
use chi_sdk::shm::FullPtr;
use chi_sdk::types::{DomainQuery, PoolId};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::Ctx;
use crate::report::{Base, Unit};
use crate::stats::{self, Summary, ns_u32};

/// The module's library file.
const LIB: &str = "libchimaera_bdev_runtime.so";
/// The I/O size.
const IO: usize = 4096;

use chimaera_bdev_runtime::{AllocateBlocksTask, CHIMOD_LIB_NAME as MODULE, ReadTask, WriteTask};

/// One measured phase, for the JSON details.
#[derive(Debug, Serialize)]
struct Point {
    backend: &'static str,
    op: &'static str,
    /// I/Os in flight (1: synchronous).
    in_flight: usize,
    ios: u64,
    iops: f64,
    mb_per_sec: f64,
    /// Each I/O's latency (synchronous phases).
    latency_ns: Option<Summary>,
    /// IOPS of the same operation done directly in this process.
    local_iops: f64,
    /// `local_iops / iops`: how many times the direct operation's rate.
    vs_local: f64,
}

/// The directory holding the bdev library, if any.
fn module_dir() -> Option<PathBuf> {
    let from_env = std::env::var_os("CHI_MODULE_PATH")
        .map(|v| std::env::split_paths(&v).collect::<Vec<_>>())
        .unwrap_or_default();
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned));
    from_env
        .into_iter()
        .chain(beside)
        .find(|d| d.join(LIB).is_file())
}

/// A scratch directory, removed on drop.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the phases of one backend share.
struct Dev<'a> {
    client: &'a Client,
    pool: PoolId,
    offsets: Vec<u64>,
    /// Client-data buffers of [`IO`] bytes, one per I/O in flight.
    bufs: Vec<FullPtr<u8>>,
}

impl Dev<'_> {
    fn submit_write(&self, i: u64) -> Result<Pending<'_, WriteTask>> {
        let off = self.offsets[(i % self.offsets.len() as u64) as usize];
        let buf = self.bufs[(i % self.bufs.len() as u64) as usize].shm();
        Ok(self.client.submit(
            WriteTask::new(
                self.pool,
                DomainQuery::local(),
                off,
                ClientBytes::borrow_block(buf, IO as u64),
            ),
            Priority::LowLatency,
        )?)
    }

    fn submit_read(&self, i: u64) -> Result<Pending<'_, ReadTask>> {
        let off = self.offsets[(i % self.offsets.len() as u64) as usize];
        let buf = self.bufs[(i % self.bufs.len() as u64) as usize].shm();
        Ok(self.client.submit(
            ReadTask::new(
                self.pool,
                DomainQuery::local(),
                off,
                IO as u64,
                ClientBuf::borrow_block(buf, IO as u64),
            ),
            Priority::LowLatency,
        )?)
    }

    /// Runs I/O number `i` (`write` or read) to completion; checks the bytes moved.
    fn complete(&self, write: bool, i: u64) -> Result<()> {
        let moved = if write {
            self.submit_write(i)?.wait_with(|t| t.written)?
        } else {
            self.submit_read(i)?.wait_with(|t| t.read)?
        };
        if moved != IO as u64 {
            bail!("an I/O of {IO} bytes moved {moved}");
        }
        Ok(())
    }

    /// `n` synchronous I/Os, each timed; (elapsed, latencies).
    fn sync(&self, write: bool, n: u64, bar: &ProgressBar) -> Result<(Duration, Vec<u32>)> {
        for i in 0..n.min(500) {
            self.complete(write, i)?;
        }
        let mut samples = Vec::with_capacity(n as usize);
        let start = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            self.complete(write, i)?;
            samples.push(ns_u32(t.elapsed()));
            if i & 0xFFF == 0xFFF {
                bar.inc(0x1000);
            }
        }
        let elapsed = start.elapsed();
        bar.inc(n & 0xFFF);
        Ok((elapsed, samples))
    }

    /// Submits I/O number `i`.
    fn submit(&self, write: bool, i: u64) -> Result<InFlight<'_>> {
        Ok(if write {
            InFlight::Write(self.submit_write(i)?)
        } else {
            InFlight::Read(self.submit_read(i)?)
        })
    }

    /// `n` asynchronous I/Os with `bufs.len()` in flight; the elapsed time.
    fn pipelined(&self, write: bool, n: u64, bar: &ProgressBar) -> Result<Duration> {
        self.pipeline(write, n.min(500), None)?;
        let start = Instant::now();
        self.pipeline(write, n, Some(bar))?;
        let elapsed = start.elapsed();
        bar.inc(n & 0xFFF);
        Ok(elapsed)
    }

    /// I/Os `0..n`, `bufs.len()` in flight.
    fn pipeline(&self, write: bool, n: u64, bar: Option<&ProgressBar>) -> Result<()> {
        let window = self.bufs.len();
        let mut inflight: VecDeque<InFlight<'_>> = VecDeque::with_capacity(window);
        for i in 0..n {
            // I/O `i` reuses the buffer of I/O `i - window`: wait for it first.
            if inflight.len() == window {
                inflight.pop_front().context("window")?.wait()?;
            }
            inflight.push_back(self.submit(write, i)?);
            if i & 0xFFF == 0xFFF
                && let Some(b) = bar
            {
                b.inc(0x1000);
            }
        }
        inflight.into_iter().try_for_each(InFlight::wait)
    }
}

/// An I/O in flight.
enum InFlight<'c> {
    Write(Pending<'c, WriteTask>),
    Read(Pending<'c, ReadTask>),
}

impl InFlight<'_> {
    /// Waits for it; checks the bytes moved.
    fn wait(self) -> Result<()> {
        let moved = match self {
            InFlight::Write(p) => p.wait_with(|t| t.written)?,
            InFlight::Read(p) => p.wait_with(|t| t.read)?,
        };
        if moved != IO as u64 {
            bail!("an I/O of {IO} bytes moved {moved}");
        }
        Ok(())
    }
}

/// The same 4 KiB operation done directly in this process, `n` times: IOPS
/// (a `memcpy` between two buffers, or `pwrite` / `pread` on `file`).
fn local_iops(file: Option<&std::fs::File>, write: bool, n: u64, blocks: u64) -> Result<f64> {
    let mut src = vec![0x5au8; IO];
    let mut dst = vec![0u8; IO * 64];
    let start = Instant::now();
    for i in 0..n {
        let slot = (i % 64) as usize * IO;
        let off = (i % blocks) * IO as u64;
        match file {
            Some(f) if write => f.write_all_at(&src, off)?,
            Some(f) => f.read_exact_at(&mut dst[slot..slot + IO], off)?,
            None if write => dst[slot..slot + IO].copy_from_slice(&src),
            None => src.copy_from_slice(&dst[slot..slot + IO]),
        }
        // Keep the copies from being optimised away.
        std::hint::black_box((&mut src, &mut dst));
    }
    Ok(n as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// Fills `buf` ([`IO`] bytes) with a pattern of `seed` (no zero byte).
fn fill(buf: FullPtr<u8>, seed: u64) {
    for j in 0..IO {
        let v = (seed.wrapping_mul(131).wrapping_add(j as u64 * 7) % 255 + 1) as u8;
        // SAFETY: `buf` is a client-data buffer of IO bytes that no I/O in
        // flight uses, and `j < IO`.
        unsafe { buf.as_ptr().add(j).write(v) };
    }
}

/// The [`IO`] bytes of `buf`.
fn bytes(buf: FullPtr<u8>) -> Vec<u8> {
    // SAFETY: a client-data buffer of IO bytes that no I/O in flight uses.
    unsafe { std::slice::from_raw_parts(buf.as_ptr(), IO) }.to_vec()
}

/// Measures and records.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let Some(modules) = module_dir() else {
        ctx.report.note(
            "bdev",
            format!(
                "skipped: {LIB} is neither in a directory of CHI_MODULE_PATH nor beside \
                 chi-bench; build it with `cargo build --release -p bdev`"
            ),
        );
        return Ok(());
    };
    // I/Os per phase (4 phases per backend).
    let n = (ctx.opts.iters() / 2).max(100);
    let window = ctx.opts.window;
    // Enough blocks that no two I/Os in flight share one.
    let blocks = (if ctx.opts.quick { 2048 } else { 16384 }).max(window as u64);
    let scratch =
        Scratch(std::env::temp_dir().join(format!("chi_bench_bdev_{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)
        .with_context(|| format!("creating {}", scratch.0.display()))?;
    let bar = ctx.progress.bar(8 * n, "bdev: 4 KiB writes and reads");
    let rt = ctx.runtime()?;
    let client = &rt.client;
    let mut points = Vec::new();
    for file in [false, true] {
        let backend = if file { "file" } else { "ram" };
        let capacity = blocks * IO as u64;
        let args = if file {
            serde_json::json!({
                "backend": {"file": {"path": scratch.0.join("bdev.img")}},
                "capacity": capacity,
                "block_size": IO,
            })
        } else {
            serde_json::json!({"backend": "ram", "capacity": capacity, "block_size": IO})
        };
        let admin = AdminClient::new(client);
        let pool = admin
            .create_pool(
                MODULE,
                &format!("bench_{backend}"),
                &args.to_string(),
                PoolId::NULL,
            )
            .with_context(|| {
                format!("creating a {backend} bdev pool from {}", modules.display())
            })?;
        let (offsets, bs) = client
            .submit(
                AllocateBlocksTask::new(pool, DomainQuery::local(), blocks, 0, 0),
                Priority::LowLatency,
            )?
            .wait_with(|t| (t.offsets.as_slice().map(<[u64]>::to_vec), t.block_size))?;
        let offsets = offsets?;
        if bs != IO as u64 || offsets.len() as u64 != blocks {
            bail!(
                "AllocateBlocks answered {} blocks of {bs} bytes for {blocks} of {IO}",
                offsets.len()
            );
        }
        let mut bufs = Vec::with_capacity(window);
        for k in 0..window {
            let b = client.allocate_buffer(IO)?;
            fill(b, k as u64);
            bufs.push(b);
        }
        let dev = Dev {
            client,
            pool,
            offsets,
            bufs,
        };
        // Every block written once, untimed: the first write of a block pays
        // for its memory (a page fault on the RAM backend's mapping, a page
        // cache page of the fresh file), which is not the steady state.
        dev.pipeline(true, blocks, None)?;
        // The direct operation's file, beside the pool's, likewise written once.
        let local_file = if file {
            let path = scratch.0.join("local.img");
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.set_len(capacity)?;
            local_iops(Some(&f), true, blocks, blocks)?;
            Some(f)
        } else {
            None
        };
        for write in [true, false] {
            let op = if write { "write" } else { "read" };
            let local = local_iops(local_file.as_ref(), write, n, blocks)?;
            let (elapsed, mut samples) = dev.sync(write, n, &bar)?;
            let iops = n as f64 / elapsed.as_secs_f64().max(1e-9);
            points.push(Point {
                backend,
                op,
                in_flight: 1,
                ios: n,
                iops,
                mb_per_sec: iops * IO as f64 / 1e6,
                latency_ns: Some(stats::summarize(&mut samples)),
                local_iops: local,
                vs_local: local / iops,
            });
            let elapsed = dev.pipelined(write, n, &bar)?;
            let iops = n as f64 / elapsed.as_secs_f64().max(1e-9);
            points.push(Point {
                backend,
                op,
                in_flight: window,
                ios: n,
                iops,
                mb_per_sec: iops * IO as f64 / 1e6,
                latency_ns: None,
                local_iops: local,
                vs_local: local / iops,
            });
        }
        // What was written is what is read: I/O 0 moves buffer 0 to or from
        // block 0.
        let a = dev.bufs[0];
        fill(a, 0xB0DE);
        dev.complete(true, 0)?;
        let written = bytes(a);
        fill(a, 1);
        dev.complete(false, 0)?;
        if bytes(a) != written {
            bail!("{backend} backend: a block read back differs from what was written");
        }
        for b in &dev.bufs {
            let _ = client.free_buffer(b.shm());
        }
        admin.destroy_pool(pool)?;
    }
    bar.finish_and_clear();
    drop(scratch);
    record(ctx, window, points);
    Ok(())
}

fn record(ctx: &mut Ctx, window: usize, points: Vec<Point>) {
    let r = &mut ctx.report;
    let w = "bdev";
    for p in &points {
        let (backend, op) = (p.backend, p.op);
        if let Some(s) = &p.latency_ns {
            r.add(
                w,
                format!("{backend}, sync 4 KiB {op}: median"),
                s.p50,
                Unit::Ns,
                Some(Base::PingPong),
            );
            r.add(
                w,
                format!("{backend}, sync 4 KiB {op}: p99"),
                s.p99,
                Unit::Ns,
                Some(Base::PingPong),
            );
            r.add(
                w,
                format!("{backend}, sync 4 KiB {op}: IOPS"),
                p.iops,
                Unit::PerSec,
                Some(Base::PingPong),
            );
            let direct = match (backend, op) {
                ("file", "write") => "pwrite",
                ("file", _) => "pread",
                _ => "memcpy",
            };
            r.add(
                w,
                format!("floor: {backend} 4 KiB {op} as a {direct} in this process: IOPS"),
                p.local_iops,
                Unit::PerSec,
                None,
            );
        } else {
            r.add(
                w,
                format!("{backend}, 4 KiB {op}, {window} in flight: IOPS"),
                p.iops,
                Unit::PerSec,
                Some(Base::Ring),
            );
            r.add(
                w,
                format!("{backend}, 4 KiB {op}, {window} in flight: MB/s (as M/s)"),
                p.mb_per_sec * 1e6,
                Unit::PerSec,
                None,
            );
        }
    }
    r.detail("bdev", points);
}
