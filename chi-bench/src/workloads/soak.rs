//! `soak`: a long run of mixed work from several client processes, one of
//! which is killed (SIGKILL) and restarted every few seconds, to show that the
//! runtime neither leaks nor wedges when clients die at any instruction.
//!
//! Each client process runs a mix for the whole run: synchronous echoes (the
//! built-in admin module and the loaded `mod_name` module), windows of
//! asynchronous echoes, fire-and-forget echoes followed by a synchronous flush,
//! client-data buffers allocated, written and freed, and short yielding tasks.
//! Every answer is checked; a client that sees a wrong answer or an error exits
//! with a failure, which fails the soak.
//!
//! Every 10 s the soak prints the main and client-data segments' use, the
//! owner slots taken, the registered clients, the lane depths, the task rate and
//! what the process reaper reclaimed. At the end the clients stop, and the
//! segments must come back to their use after warm-up (every byte, every
//! registration; owner slots up to the runtime's own): otherwise the soak fails.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::admin::{AdminClient, EchoTask};
use chi_sdk::client::Client;
use chi_sdk::proto::StatusReport;
use chi_sdk::queue::Priority;
use chi_sdk::task::flags;
use chi_sdk::types::PoolId;
use chimaera_mod_name_runtime::{CreateParams, ModNameClient};
use rustix::process::Signal;

use crate::runtime::{RuntimeProc, client_options, runtime_exe};

/// How long the soak runs, and with how many client processes.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Minutes to run (the closing run of the robustness work is 10).
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Seconds to run instead of minutes (CI runs 30).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Client processes that run the whole time.
    #[arg(long, default_value_t = 3)]
    pub clients: usize,
    /// Seconds between two kills of the victim client.
    #[arg(long, default_value_t = 3)]
    pub kill_every: u64,
}

/// Arguments of a soak client process.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakClientArgs {
    /// The runtime's port.
    #[arg(long)]
    pub port: u16,
    /// Seconds to run.
    #[arg(long)]
    pub seconds: u64,
    /// Seed of the mix.
    #[arg(long)]
    pub seed: u64,
}

fn spawn_client(port: u16, seconds: u64, seed: u64) -> Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "__soak-client",
        "--port",
        &port.to_string(),
        "--seconds",
        &seconds.to_string(),
        "--seed",
        &seed.to_string(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    crate::child::die_with_parent(&mut cmd, Signal::KILL);
    cmd.spawn().context("starting a soak client")
}

struct Usage {
    main: u64,
    data: u64,
    main_owners: u32,
    data_owners: u32,
    clients: u32,
}

fn usage(s: &StatusReport) -> Usage {
    let seg = |r: &str| {
        s.segments
            .iter()
            .find(|u| u.role == r)
            .cloned()
            .unwrap_or_default()
    };
    Usage {
        main: seg("main").used_bytes,
        data: seg("client_data").used_bytes,
        main_owners: seg("main").owners,
        data_owners: seg("client_data").owners,
        clients: s.clients,
    }
}

fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / (1 << 20) as f64)
}

/// Runs the soak; fails if a client failed or something leaked.
pub fn run(args: &SoakArgs, explicit_runtime: Option<&std::path::Path>) -> Result<()> {
    let total = Duration::from_secs(
        args.seconds
            .unwrap_or((args.minutes * 60.0).round().max(1.0) as u64),
    );
    let exe = runtime_exe(explicit_runtime)?;
    let mut rt = RuntimeProc::spawn(&exe, 2, None)?;
    let port = rt.port;
    let probe = rt.connect(Duration::from_millis(20))?;
    let opts = client_options(port);
    // Warm-up: the pools the clients use exist before the baseline is taken.
    ModNameClient::create(&probe, "soak", &CreateParams::default())
        .context("creating the soak's mod_name pool (build mod_name beside chi-bench)")?;
    let base = usage(&Client::status(&opts)?);
    println!(
        "soak: {} s, {} clients + 1 killed every {} s; baseline main {} client_data {}",
        total.as_secs(),
        args.clients,
        args.kill_every,
        mib(base.main),
        mib(base.data)
    );
    let start = Instant::now();
    let secs_left = || total.saturating_sub(start.elapsed()).as_secs().max(1);
    let mut steady: Vec<Child> = (0..args.clients)
        .map(|i| spawn_client(port, secs_left(), i as u64 + 1))
        .collect::<Result<_>>()?;
    let mut victim = spawn_client(port, secs_left(), 1000)?;
    let mut kills = 0u64;
    let mut last_kill = Instant::now();
    let mut last_print = Instant::now();
    let mut last_done = Client::status(&opts)?.tasks_completed;
    let mut failures = Vec::new();
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_millis(100));
        if last_kill.elapsed() >= Duration::from_secs(args.kill_every) {
            let _ = victim.kill();
            let _ = victim.wait();
            kills += 1;
            last_kill = Instant::now();
            if total.saturating_sub(start.elapsed()) > Duration::from_secs(1) {
                victim = spawn_client(port, secs_left(), 1000 + kills)?;
            }
        }
        for c in &mut steady {
            if let Some(st) = c.try_wait()?
                && !st.success()
            {
                failures.push(format!("client {} exited with {st}", c.id()));
            }
        }
        if !failures.is_empty() {
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            let s = Client::status(&opts)?;
            let u = usage(&s);
            let rate = (s.tasks_completed - last_done) as f64 / last_print.elapsed().as_secs_f64();
            last_done = s.tasks_completed;
            last_print = Instant::now();
            let depths: Vec<u64> = s.lanes.iter().map(|l| l.len).collect();
            println!(
                "{:>5} s  main {}  client_data {}  owners {}+{}  clients {}  lanes {:?}  {:.0} tasks/s  \
                 reaped {} clients, {} blocks ({})  kills {}",
                start.elapsed().as_secs(),
                mib(u.main),
                mib(u.data),
                u.main_owners,
                u.data_owners,
                u.clients,
                depths,
                rate,
                s.reaper.clients_reaped,
                s.reaper.blocks_freed,
                mib(s.reaper.bytes_freed),
                kills
            );
            let _ = std::io::stdout().flush();
        }
    }
    let _ = victim.kill();
    let _ = victim.wait();
    for mut c in steady {
        let st = c.wait()?;
        if !st.success() {
            failures.push(format!("client {} exited with {st}", c.id()));
        }
    }
    if !failures.is_empty() {
        bail!("soak failed: {}", failures.join("; "));
    }
    // Everything comes back once the reaper has seen the last victim die.
    let deadline = Instant::now() + Duration::from_secs(30);
    let end = loop {
        let s = Client::status(&opts)?;
        let u = usage(&s);
        let back = u.main == base.main
            && u.data == base.data
            && u.clients == base.clients
            && u.main_owners <= base.main_owners + 4
            && u.data_owners <= base.data_owners + 4;
        if back || Instant::now() > deadline {
            break (back, u, s);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (back, u, s) = end;
    let stalled = s.workers.iter().filter(|w| w.stalled).count();
    println!(
        "end: main {} (baseline {}), client_data {} (baseline {}), owners {}+{} (baseline {}+{}), \
         clients {} (baseline {}), {} tasks, {} kills, reaper: {} clients, {} blocks, {} in-flight \
         tasks handed over; {} stalled workers",
        mib(u.main),
        mib(base.main),
        mib(u.data),
        mib(base.data),
        u.main_owners,
        u.data_owners,
        base.main_owners,
        base.data_owners,
        u.clients,
        base.clients,
        s.tasks_completed,
        kills,
        s.reaper.clients_reaped,
        s.reaper.blocks_freed,
        s.reaper.tasks_handed_over,
        stalled
    );
    drop(probe);
    drop(rt);
    if !back || stalled > 0 {
        bail!(
            "soak failed: the runtime did not come back to its baseline (leak) or a worker stalled"
        );
    }
    println!("soak passed: nothing leaked");
    Ok(())
}

/// A soak client process: the mix until its time is up.
pub fn client_main(a: &SoakClientArgs) -> Result<()> {
    let c = Client::connect(client_options(a.port))?;
    let admin = AdminClient::new(&c);
    let m = ModNameClient::create(&c, "soak", &CreateParams::default())?;
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let mut x = a.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    while Instant::now() < end {
        let v = next();
        match v % 10 {
            0..=3 => {
                if admin.echo(PoolId::ADMIN, v)? != v {
                    bail!("admin echo answered wrong");
                }
            }
            4 => {
                let mut p = Vec::new();
                for i in 0..16 {
                    p.push((v + i, m.async_echo(&c, v + i)?));
                }
                for (want, p) in p {
                    let t = p.wait()?;
                    if t.get().reply != want {
                        bail!("async echo answered wrong");
                    }
                    c.del_task(t);
                }
            }
            5 => {
                for i in 0..8 {
                    let mut t = EchoTask::new(PoolId::ADMIN, v + i);
                    t.header.flags |= flags::FIRE_AND_FORGET;
                    let t = c.new_task(t)?;
                    c.enqueue(&t, Priority::LowLatency)?;
                }
                if admin.echo(PoolId::ADMIN, v)? != v {
                    bail!("flush echo answered wrong");
                }
            }
            6 => {
                let size = 4096 + (v % 60_000) as usize;
                let b = c.allocate_buffer(size)?;
                // SAFETY: a fresh buffer of `size` bytes, ours alone.
                unsafe { std::ptr::write_bytes(b.as_ptr(), v as u8, size) };
                c.free_buffer(b.shm())?;
            }
            7 => {
                if m.echo(&c, v)? != v {
                    bail!("module echo answered wrong");
                }
            }
            _ => m.sleep(&c, 1 + (v % 3) as u32, false)?,
        }
    }
    Ok(())
}
