//! `chi-bench`: end-to-end measurements of a real runtime, each printed beside the
//! physical floor measured in the same run.
//!
//! It starts a `chi-runtime` (the binary next to this one) on a private port,
//! then measures, from this process as the client:
//!
//! * `floor`: a raw shared-memory ping-pong of one atomic word between this
//!   process and a child process, both spinning (the floor of any round trip);
//! * `roundtrip`: synchronous empty echo tasks (median, p99, p99.9);
//! * `throughput`: asynchronous echo tasks with a window in flight (tasks/s);
//! * `idle`: the runtime's CPU use while idle, and the latency of the first task
//!   after idle periods.
//!
//! `chi-bench [--quick]` runs all; `--quick` runs a few thousand iterations (CI).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::admin::AdminClient;
use chi_sdk::client::{Client, ClientOptions};
use chi_sdk::shm::{Allocator, Segment, SegmentId, ShmPtr};
use chi_sdk::types::PoolId;

struct RuntimeProc {
    child: Child,
    port: u16,
    cfg: std::path::PathBuf,
}

impl Drop for RuntimeProc {
    fn drop(&mut self) {
        let opts = ClientOptions {
            port: self.port,
            ..ClientOptions::default()
        };
        let _ = Client::request_stop(&opts);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.cfg);
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.cfg);
    }
}

fn free_port() -> u16 {
    let base = 30000 + (std::process::id() % 20000) as u16;
    (0..1000u16)
        .map(|i| base.wrapping_add(i * 7) % 30000 + 30000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap_or(base)
}

fn start_runtime() -> Result<(RuntimeProc, f64)> {
    let exe = std::env::current_exe()?.with_file_name("chi-runtime");
    let port = free_port();
    let cfg = std::env::temp_dir().join(format!("chi_bench_{}.yaml", std::process::id()));
    std::fs::write(
        &cfg,
        format!(
            "port: {port}\nsegments:\n  main: 256m\n  client_data: 64m\n  runtime_data: 64m\n\
             workers:\n  low_latency: 1\n  high_latency: 1\nlogging:\n  level: warn\n"
        ),
    )?;
    let t = Instant::now();
    let child = Command::new(&exe)
        .args(["start", "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let mut rt = RuntimeProc { child, port, cfg };
    let opts = ClientOptions {
        port,
        ..ClientOptions::default()
    };
    loop {
        if Client::status(&opts).is_ok() {
            break;
        }
        if let Some(s) = rt.child.try_wait()? {
            bail!("the runtime exited during start: {s}");
        }
        if t.elapsed() > Duration::from_secs(20) {
            bail!("the runtime did not become ready");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let ready_ms = t.elapsed().as_secs_f64() * 1e3;
    rt.port = port;
    Ok((rt, ready_ms))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Child side of the floor: echo the word back until told to stop.
fn floor_child(name: &str) -> Result<()> {
    let seg = Segment::attach(name)?;
    let word = seg.root(0).context("no word")?.resolve::<AtomicU64>()?;
    // SAFETY: the parent allocated and zeroed the word and keeps it alive.
    let w = unsafe { word.as_ref() };
    loop {
        let v = w.load(Ordering::Acquire);
        if v == u64::MAX {
            return Ok(());
        }
        if v % 2 == 1 {
            w.store(v + 1, Ordering::Release);
        }
        std::hint::spin_loop();
    }
}

/// Round trips of one atomic word between two processes (ns per round trip).
fn floor(iters: u64) -> Result<Vec<f64>> {
    let name = format!("chi_bench_floor_{}", std::process::id());
    let seg = Segment::create(&name, SegmentId(40), 4 << 20)?;
    let alloc = Allocator::attach(&seg)?;
    let word = alloc.new_obj(AtomicU64::new(0))?;
    seg.set_root(0, word.shm());
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--floor-child")
        .arg(&name)
        .spawn()?;
    // SAFETY: allocated above, alive until the end of this function.
    let w = unsafe { word.as_ref() };
    let mut samples = Vec::with_capacity(iters as usize / 100 + 1);
    let mut v = 0u64;
    let mut batch = Instant::now();
    for i in 0..iters {
        v += 1;
        w.store(v, Ordering::Release);
        let t = Instant::now();
        while w.load(Ordering::Acquire) != v + 1 {
            std::hint::spin_loop();
            if t.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                bail!("the floor child stopped answering");
            }
        }
        v += 1;
        if i % 100 == 99 {
            samples.push(batch.elapsed().as_nanos() as f64 / 100.0);
            batch = Instant::now();
        }
    }
    w.store(u64::MAX, Ordering::Release);
    child.wait()?;
    let _ = alloc.free(word.shm());
    let _ = ShmPtr::NULL;
    Ok(samples)
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--floor-child") {
        return floor_child(&args[2]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let n: u64 = if quick { 5_000 } else { 1_000_000 };

    let (rt, ready_ms) = start_runtime()?;
    let client = Client::connect(ClientOptions {
        port: rt.port,
        ..ClientOptions::default()
    })?;
    let admin = AdminClient::new(&client);

    let mut floor = floor(n)?;
    floor.sort_by(f64::total_cmp);
    let floor_med = percentile(&floor, 0.5);

    // Synchronous round trips, each timed.
    for i in 0..n.min(10_000) {
        admin.echo(PoolId::ADMIN, i)?;
    }
    let mut rtt = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        let r = admin.echo(PoolId::ADMIN, i)?;
        rtt.push(t.elapsed().as_nanos() as f64);
        if r != i {
            bail!("echo answered {r} for {i}");
        }
    }
    rtt.sort_by(f64::total_cmp);

    // Asynchronous throughput with a window in flight.
    let window = 256usize;
    let mut inflight = std::collections::VecDeque::with_capacity(window);
    let t = Instant::now();
    for i in 0..n {
        if inflight.len() == window {
            let task = inflight.pop_front().context("window")?;
            client.wait(&task)?;
            client.del_task(task);
        }
        inflight.push_back(admin.async_echo(PoolId::ADMIN, i)?);
    }
    for task in inflight {
        client.wait(&task)?;
        client.del_task(task);
    }
    let tput = n as f64 / t.elapsed().as_secs_f64();

    // Idle: CPU of the runtime over an idle second, then first-task latency.
    std::thread::sleep(Duration::from_millis(50));
    let hz = 100.0; // USER_HZ
    let idle_window = if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(3)
    };
    let c0 = cpu_ticks(client.runtime_pid()).unwrap_or(0);
    std::thread::sleep(idle_window);
    let c1 = cpu_ticks(client.runtime_pid()).unwrap_or(0);
    let idle_cpu = (c1 - c0) as f64 / hz / idle_window.as_secs_f64() * 100.0;
    let mut first = Vec::new();
    for idle in [1u64, 20, 200, 1000] {
        if quick && idle > 200 {
            continue;
        }
        std::thread::sleep(Duration::from_millis(idle));
        let t = Instant::now();
        admin.echo(PoolId::ADMIN, idle)?;
        first.push((idle, t.elapsed().as_secs_f64() * 1e6));
    }
    drop(client);
    drop(rt);

    let med = percentile(&rtt, 0.5);
    println!(
        "chi-bench ({} iterations; client and runtime are separate processes)",
        n
    );
    println!("{:<44} {:>12} {:>10}", "measurement", "value", "vs floor");
    println!(
        "{:<44} {:>9.0} ns {:>10}",
        "floor: shm ping-pong round trip (median)", floor_med, "1.00"
    );
    println!(
        "{:<44} {:>9.0} ns {:>9.2}x",
        "sync echo round trip, median",
        med,
        med / floor_med
    );
    println!(
        "{:<44} {:>9.0} ns {:>9.2}x",
        "sync echo round trip, p99",
        percentile(&rtt, 0.99),
        percentile(&rtt, 0.99) / floor_med
    );
    println!(
        "{:<44} {:>9.0} ns {:>9.2}x",
        "sync echo round trip, p99.9",
        percentile(&rtt, 0.999),
        percentile(&rtt, 0.999) / floor_med
    );
    println!(
        "{:<44} {:>9.2} M/s {:>9.2}x",
        format!("async echo throughput ({window} in flight)"),
        tput / 1e6,
        (1e9 / floor_med) / tput
    );
    println!("{:<44} {:>9.1} ms", "start to ready", ready_ms);
    println!(
        "{:<44} {:>9.2} %",
        format!("idle runtime CPU over {idle_window:?}"),
        idle_cpu
    );
    for (idle, us) in first {
        println!(
            "{:<44} {:>9.1} µs",
            format!("first task after {idle} ms idle"),
            us
        );
    }
    Ok(())
}
