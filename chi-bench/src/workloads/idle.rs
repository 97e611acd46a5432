//! `idle`: the CPU the idle runtime uses once its workers backed off to sleep
//! (user + system time of the whole process, from `/proc/<pid>/stat`), and the
//! latency of the first echo after idle periods of 1 ms, 20 ms, 200 ms and 1 s
//! (the median of several tries; one with `--quick`), each beside its floor.
//!
//! The first task is measured with two clients: the default one, which spins
//! 50 µs and then sleeps on the task's futex (so a late answer also pays the
//! client's own wake-up), and one that spins throughout (20 ms), which leaves
//! only the runtime's side: the worker's wake-up from its doorbell.
//!
//! **The floor** of each: a thread of this process asleep on a futex for the
//! same idle period, woken by this thread, which then waits for its answer (a
//! word the woken thread sets, with a futex wake if the waiter sleeps) exactly
//! as the client waits for a task — spinning, yielding the CPU between polls
//! after 5 µs, for 50 µs or 20 ms, then sleeping (the policy of
//! `chi_sdk::client::Client::wait_until`, mirrored in [`wait_like_a_client`]).
//! What the runtime adds to that floor is its own work: the push, the worker's
//! dispatch, and whatever keeps the worker or the client off a CPU.
//!
//! The floor's threads are placed like the runtime's: the woken thread on the
//! CPUs of the low-latency workers (`--worker-cpus`), the waiter where the
//! client measures (`--client-cpus` pins it, for this workload only); without
//! the options neither is pinned, and the kernel places both.
//!
//! The four measurements of each idle period are interleaved try by try, so
//! that a drift of the machine hits them alike. The targets (1 s idle): the
//! spinning client no slower than the sleeping one, each within 1.2× its floor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::admin::AdminClient;
use chi_sdk::client::{Client, ClientOptions, SPIN_YIELD_AFTER};
use chi_sdk::futex;
use chi_sdk::types::PoolId;
use rustix::thread::{sched_getaffinity, sched_setaffinity};
use serde::Serialize;

use crate::report::{Base, Report, Target, Unit};
use crate::runtime::client_options;
use crate::stats;
use crate::{CpuSpec, Ctx};

/// The idle periods.
const IDLES_MS: [u64; 4] = [1, 20, 200, 1000];
/// How long the default client spins before it sleeps (`ClientOptions::default`).
const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// How long the spinning client spins before it would sleep.
const LONG_SPIN: Duration = Duration::from_millis(20);
/// The targets: each first task after 1 s within this many times its floor.
const FLOOR_FACTOR: f64 = 1.2;

/// Per idle period (ms): every try (µs).
type Tries = Vec<(u64, Vec<f64>)>;

#[derive(Debug, Default, Serialize)]
struct Details {
    settle_ms: u64,
    window_ms: u64,
    cpu_ticks: u64,
    ticks_per_second: u64,
    cpu_percent: f64,
    /// Default client (spins 50 µs, then sleeps).
    first_task_us: Tries,
    /// A client spinning throughout.
    first_task_spinning_client_us: Tries,
    /// The floor of the default client: a futex wake, its answer awaited the same way.
    futex_wake_sleeping_waiter_us: Tries,
    /// The floor of the spinning client.
    futex_wake_spinning_waiter_us: Tries,
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

/// The first echo after `idle` through `client`, in µs.
fn first_task(client: &Client, idle: Duration) -> Result<f64> {
    let admin = AdminClient::new(client);
    // A few tasks first, so the idle period starts from a busy worker.
    for i in 0..10 {
        admin.echo(PoolId::ADMIN, i)?;
    }
    std::thread::sleep(idle);
    let t = Instant::now();
    admin.echo(PoolId::ADMIN, 7)?;
    Ok(t.elapsed().as_secs_f64() * 1e6)
}

/// The floor's words: the bell the sleeper waits on and the answer it gives.
#[derive(Default)]
struct Bell {
    /// 0: nothing to do; 1: rung; 2: exit.
    ring: AtomicU32,
    /// 0: no answer yet; 1: answered; 2: no answer yet and the waiter sleeps
    /// (as a task's state word with a waiter announced).
    answer: AtomicU32,
}

/// Answered the bell.
const ANSWERED: u32 = 1;
/// The waiter sleeps on the answer word.
const WAITER_ASLEEP: u32 = 2;

/// The floor's sleeper: waits on the bell without a timeout, answers each ring
/// (waking the waiter only if it sleeps, as a worker completes a task).
fn sleeper(bell: &Bell) {
    loop {
        // Acquire: pairs with the Release store of the ring.
        match bell.ring.swap(0, Ordering::Acquire) {
            0 => futex::wait(&bell.ring, 0, None),
            2 => return,
            _ => {
                // Release: pairs with the waiter's Acquire loads.
                if bell.answer.swap(ANSWERED, Ordering::Release) == WAITER_ASLEEP {
                    futex::wake(&bell.answer, 1);
                }
            }
        }
    }
}

/// Waits until `answer` reads [`ANSWERED`] the way `Client::wait_until` waits
/// for a task: polls, yielding the CPU between batches after
/// [`SPIN_YIELD_AFTER`], for `spin`; then announces itself and sleeps on the
/// word in 10 ms slices.
fn wait_like_a_client(answer: &AtomicU32, spin: Duration) {
    // Acquire: pairs with the sleeper's Release swap.
    let answered = || answer.load(Ordering::Acquire) == ANSWERED;
    let start = Instant::now();
    while start.elapsed() < spin {
        for _ in 0..64 {
            if answered() {
                return;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= SPIN_YIELD_AFTER {
            std::thread::yield_now();
        }
    }
    loop {
        // Acquire: as above.
        match answer.compare_exchange(0, WAITER_ASLEEP, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) | Err(WAITER_ASLEEP) => {
                futex::wait(answer, WAITER_ASLEEP, Some(Duration::from_millis(10)))
            }
            Err(_) => return,
        }
        if answered() {
            return;
        }
    }
}

/// The floor: the sleeper's answer after `idle` of sleep, awaited with `spin`, in µs.
fn futex_wake(bell: &Bell, idle: Duration, spin: Duration) -> f64 {
    let round = |spin: Duration| {
        // Relaxed: the sleeper has answered the previous ring; the Release
        // store of the ring below publishes this reset.
        bell.answer.store(0, Ordering::Relaxed);
        let t = Instant::now();
        // Release: pairs with the sleeper's Acquire swap.
        bell.ring.store(1, Ordering::Release);
        futex::wake(&bell.ring, 1);
        wait_like_a_client(&bell.answer, spin);
        t.elapsed().as_secs_f64() * 1e6
    };
    // A few rounds first, as the echoes before a first task.
    for _ in 0..10 {
        round(spin);
    }
    std::thread::sleep(idle);
    round(spin)
}

/// Measures and records.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let quick = ctx.opts.quick;
    let (worker_cpus, client_cpus) = (ctx.opts.worker_cpus.clone(), ctx.opts.client_cpus.clone());
    let (settle, window, tries) = if quick {
        (Duration::from_millis(100), Duration::from_millis(500), 1)
    } else {
        (Duration::from_secs(1), Duration::from_secs(3), 5)
    };
    let total = settle + window + Duration::from_millis(4 * IDLES_MS.iter().sum::<u64>() * tries);
    let bar = ctx.progress.bar(
        total.as_millis() as u64,
        "idle: CPU, first task and its floor",
    );
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

    let spinning = Client::connect(ClientOptions {
        spin: LONG_SPIN,
        ..client_options(rt.port())
    })?;
    // The floor's sleeper on the workers' CPUs (or wherever this process may
    // run), this thread on the client's while it measures.
    let unpinned = sched_getaffinity(None).context("sched_getaffinity")?;
    let sleeper_cpus = worker_cpus.as_ref().map_or(unpinned, CpuSpec::cpu_set);
    let bell = Arc::new(Bell::default());
    let b = bell.clone();
    let sleeper = std::thread::Builder::new()
        .name("floor-sleeper".into())
        .spawn(move || {
            let pinned = sched_setaffinity(None, &sleeper_cpus);
            sleeper(&b);
            pinned
        })?;
    if let Some(cpus) = &client_cpus {
        sched_setaffinity(None, &cpus.cpu_set())
            .with_context(|| format!("pinning the client thread to CPUs {}", cpus.text))?;
    }
    let mut d = Details::default();
    let measured_all = (|| -> Result<()> {
        for idle_ms in IDLES_MS {
            let idle = Duration::from_millis(idle_ms);
            let (mut sleep, mut spin) = (Vec::new(), Vec::new());
            let (mut floor_sleep, mut floor_spin) = (Vec::new(), Vec::new());
            for _ in 0..tries {
                floor_sleep.push(futex_wake(&bell, idle, DEFAULT_SPIN));
                sleep.push(first_task(&rt.client, idle)?);
                floor_spin.push(futex_wake(&bell, idle, LONG_SPIN));
                spin.push(first_task(&spinning, idle)?);
                bar.inc(4 * idle_ms);
            }
            d.first_task_us.push((idle_ms, sleep));
            d.first_task_spinning_client_us.push((idle_ms, spin));
            d.futex_wake_sleeping_waiter_us.push((idle_ms, floor_sleep));
            d.futex_wake_spinning_waiter_us.push((idle_ms, floor_spin));
        }
        Ok(())
    })();
    // Release: pairs with the sleeper's Acquire swap.
    bell.ring.store(2, Ordering::Release);
    futex::wake(&bell.ring, 1);
    let sleeper_pinned = sleeper.join();
    drop(spinning);
    sched_setaffinity(None, &unpinned).context("unpinning the client thread")?;
    bar.finish_and_clear();
    measured_all?;
    match sleeper_pinned {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("pinning the floor's sleeper to the workers' CPUs: {e}"),
        Err(_) => bail!("the floor's sleeper panicked"),
    }

    d.settle_ms = settle.as_millis() as u64;
    d.window_ms = measured.as_millis() as u64;
    d.cpu_ticks = ticks;
    d.ticks_per_second = hz;
    d.cpu_percent = cpu;
    record(&mut ctx.report, d);
    Ok(())
}

/// The rows of what [`run`] measured, and its details.
fn record(r: &mut Report, d: Details) {
    let w = "idle";
    r.add(
        w,
        format!(
            "idle runtime CPU over {:.1} s, % of one core",
            d.window_ms as f64 / 1e3
        ),
        d.cpu_percent,
        Unit::Percent,
        None,
    )
    .target(Target::at_most(1.0));
    let med = |v: &Vec<f64>| stats::median(&mut v.clone());
    let mut at_1s = None;
    for (i, &idle) in IDLES_MS.iter().enumerate() {
        let period = if idle >= 1000 {
            format!("{} s", idle / 1000)
        } else {
            format!("{idle} ms")
        };
        let n = d.first_task_us[i].1.len();
        let of = if n > 1 {
            format!(" (median of {n})")
        } else {
            String::new()
        };
        let floor_sleep = med(&d.futex_wake_sleeping_waiter_us[i].1);
        let floor_spin = med(&d.futex_wake_spinning_waiter_us[i].1);
        let sleep = med(&d.first_task_us[i].1);
        let spin = med(&d.first_task_spinning_client_us[i].1);
        r.add(
            w,
            format!("floor: futex wake after {period} idle, waiter spins 50 µs then sleeps{of}"),
            floor_sleep,
            Unit::Us,
            Some(Base::PingPong),
        );
        let row = r.add(
            w,
            format!("first task after {period} idle, client spins 50 µs then sleeps{of}"),
            sleep,
            Unit::Us,
            None,
        );
        row.versus(Base::WakeSleeping, floor_sleep);
        if idle == 1000 {
            row.target(Target::at_most(200.0));
        }
        r.add(
            w,
            format!("floor: futex wake after {period} idle, waiter spinning{of}"),
            floor_spin,
            Unit::Us,
            Some(Base::PingPong),
        );
        r.add(
            w,
            format!("first task after {period} idle, client spinning{of}"),
            spin,
            Unit::Us,
            None,
        )
        .versus(Base::WakeSpinning, floor_spin);
        if idle == 1000 {
            at_1s = Some((sleep, spin, floor_sleep, floor_spin));
        }
    }
    if let Some((sleep, spin, floor_sleep, floor_spin)) = at_1s {
        r.add(
            w,
            "first task after 1 s idle, client spinning / client sleeping",
            spin / sleep,
            Unit::Times,
            None,
        )
        .target(Target::at_most(1.0));
        r.add(
            w,
            "first task after 1 s idle, client sleeping / its floor",
            sleep / floor_sleep,
            Unit::Times,
            None,
        )
        .target(Target::at_most(FLOOR_FACTOR));
        r.add(
            w,
            "first task after 1 s idle, client spinning / its floor",
            spin / floor_spin,
            Unit::Times,
            None,
        )
        .target(Target::at_most(FLOOR_FACTOR));
    }
    r.detail("idle", d);
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// Tries of every idle period, all `us`.
    fn tries(us: f64) -> Tries {
        IDLES_MS.iter().map(|&ms| (ms, vec![us; 3])).collect()
    }

    /// Every period has its floor rows beside the first task's, compared with
    /// them, and the 1 s targets are rows of their own, in the JSON too.
    #[test]
    fn every_first_task_has_its_floor_row() {
        let opts = crate::Cli::parse_from(["chi-bench", "--quick", "idle"]).opts;
        let mut r = Report::new(&opts);
        record(
            &mut r,
            Details {
                window_ms: 500,
                first_task_us: tries(60.0),
                first_task_spinning_client_us: tries(45.0),
                futex_wake_sleeping_waiter_us: tries(50.0),
                futex_wake_spinning_waiter_us: tries(50.0),
                ..Details::default()
            },
        );
        let row = |name: &str| {
            r.rows
                .iter()
                .find(|row| row.name.starts_with(name))
                .unwrap_or_else(|| panic!("no row `{name}`"))
        };
        for period in ["1 ms", "20 ms", "200 ms", "1 s"] {
            row(&format!(
                "floor: futex wake after {period} idle, waiter spins 50 µs"
            ));
            row(&format!(
                "floor: futex wake after {period} idle, waiter spinning"
            ));
            let sleeping = row(&format!(
                "first task after {period} idle, client spins 50 µs"
            ));
            assert_eq!(sleeping.vs, Some(Base::WakeSleeping));
            assert_eq!(sleeping.ratio, Some(60.0 / 50.0));
            let spinning = row(&format!(
                "first task after {period} idle, client spinning ("
            ));
            assert_eq!(spinning.vs, Some(Base::WakeSpinning));
            assert_eq!(spinning.ratio, Some(45.0 / 50.0));
        }
        let vs_sleeping = row("first task after 1 s idle, client spinning / client sleeping");
        assert_eq!((vs_sleeping.value, vs_sleeping.met), (0.75, Some(true)));
        let sleeping = row("first task after 1 s idle, client sleeping / its floor");
        assert_eq!((sleeping.value, sleeping.met), (1.2, Some(true)));
        let spinning = row("first task after 1 s idle, client spinning / its floor");
        assert_eq!((spinning.value, spinning.met), (0.9, Some(true)));

        let json = serde_json::to_value(&r).expect("the report serializes");
        let names: Vec<&str> = json["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .filter_map(|row| row["name"].as_str())
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("floor: futex wake after 1 s idle")),
            "{names:?}"
        );
        assert_eq!(
            json["details"]["idle"]["futex_wake_spinning_waiter_us"][3][0],
            1000
        );
    }
}
