//! Starting the runtime under test: the `chi-runtime` binary on a free port with
//! a private configuration file, always stopped (or killed) again by a guard.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::client::{Client, ClientOptions};
use rustix::process::Signal;

use crate::Opts;

/// The `chi-runtime` binary: `--runtime`, else `CHI_RUNTIME_BIN`, else the one
/// next to this executable (both are built into the same target directory).
pub fn runtime_exe(explicit: Option<&Path>) -> Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_owned(),
        None => match std::env::var_os("CHI_RUNTIME_BIN") {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe()?.with_file_name("chi-runtime"),
        },
    };
    if !path.is_file() {
        bail!(
            "no runtime binary at {}: build it beside chi-bench with \
             `cargo build --release -p chi-runtime -p chi-bench`, or name it with \
             --runtime / CHI_RUNTIME_BIN",
            path.display()
        );
    }
    Ok(path)
}

/// A free TCP port on the loopback interface (the runtime's segments are named
/// after its port, so a fresh port also means fresh segment names).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The module directories of the runtimes the bench starts, as a YAML list:
/// this executable's directory (where `cargo build --release -p mod_name`
/// puts the example modules beside `chi-bench`). The runtime also searches
/// `CHI_MODULE_PATH`, which it inherits.
pub fn module_path_yaml() -> String {
    let dirs: Vec<String> = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| format!("{:?}", d.display().to_string())))
        .into_iter()
        .collect();
    format!("[{}]", dirs.join(", "))
}

/// Client options for a runtime on `port`.
pub fn client_options(port: u16) -> ClientOptions {
    ClientOptions {
        port,
        ..ClientOptions::default()
    }
}

/// A running `chi-runtime start`; dropping it stops the runtime (asks, then
/// kills after 10 s) and removes its configuration file.
#[derive(Debug)]
pub struct RuntimeProc {
    child: Child,
    /// Its port.
    pub port: u16,
    cfg: PathBuf,
    /// Just before the process was spawned.
    pub spawned: Instant,
}

impl RuntimeProc {
    /// Spawns `exe start` on a free port with `workers` low-latency workers,
    /// pinned to `worker_cpus` if given (`workers.affinity.low_latency`); does
    /// not wait for it to be ready.
    pub fn spawn(exe: &Path, workers: u32, worker_cpus: Option<&str>) -> Result<RuntimeProc> {
        let affinity = worker_cpus
            .map(|cpus| format!("  affinity:\n    low_latency: {cpus:?}\n"))
            .unwrap_or_default();
        RuntimeProc::spawn_full(exe, workers, &affinity, "")
    }

    /// [`spawn`](Self::spawn) with more `workers` lines (`workers_extra`,
    /// indented by two spaces) and `extra` top-level YAML lines (keys other
    /// than `port`, `segments`, `workers`, `logging` and `module_path`).
    pub fn spawn_full(
        exe: &Path,
        workers: u32,
        workers_extra: &str,
        extra: &str,
    ) -> Result<RuntimeProc> {
        static N: AtomicU32 = AtomicU32::new(0);
        let port = free_port()?;
        let cfg = std::env::temp_dir().join(format!(
            "chi_bench_{}_{}.yaml",
            std::process::id(),
            // Relaxed: only uniqueness matters.
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(
            &cfg,
            format!(
                "port: {port}\nsegments:\n  main: 256m\n  client_data: 64m\n  runtime_data: 64m\n\
                 workers:\n  low_latency: {workers}\n  high_latency: 1\n{workers_extra}\
                 logging:\n  level: warn\nmodule_path: {}\n{extra}",
                module_path_yaml()
            ),
        )
        .with_context(|| format!("writing {}", cfg.display()))?;
        let spawned = Instant::now();
        let mut cmd = Command::new(exe);
        cmd.args(["start", "-c"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SIGTERM: the runtime stops cleanly (removing its segments).
        crate::child::die_with_parent(&mut cmd, Signal::TERM);
        let child = cmd.spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&cfg);
                return Err(e).with_context(|| format!("starting {}", exe.display()));
            }
        };
        Ok(RuntimeProc {
            child,
            port,
            cfg,
            spawned,
        })
    }

    /// Polls until a client can connect (or the runtime exits, or 20 s pass).
    pub fn connect(&mut self, poll: Duration) -> Result<Client> {
        let t = Instant::now();
        loop {
            if let Ok(c) = Client::connect(client_options(self.port)) {
                // The runtime has read its configuration: nothing is left behind
                // even if this process is killed later.
                let _ = std::fs::remove_file(&self.cfg);
                return Ok(c);
            }
            if let Some(s) = self.child.try_wait()? {
                bail!("the runtime exited during its start: {s}");
            }
            if t.elapsed() > Duration::from_secs(20) {
                bail!("the runtime did not become ready within 20 s");
            }
            std::thread::sleep(poll);
        }
    }

    /// The runtime's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RuntimeProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Client::request_stop(&client_options(self.port));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        let _ = std::fs::remove_file(&self.cfg);
    }
}

/// The runtime the workloads share, with this process's client of it.
#[derive(Debug)]
pub struct SharedRuntime {
    // Declared first: dropped (unregistered) before the runtime stops.
    /// This process's client.
    pub client: Client,
    /// The runtime process.
    pub proc: RuntimeProc,
}

impl SharedRuntime {
    /// Starts a runtime for `opts` and connects to it.
    pub fn start(opts: &Opts) -> Result<SharedRuntime> {
        let exe = runtime_exe(opts.runtime.as_deref())?;
        let cpus = opts.worker_cpus.as_ref().map(|c| c.text.as_str());
        let mut proc = RuntimeProc::spawn(&exe, opts.workers.max(1), cpus)?;
        let client = proc.connect(Duration::from_millis(1))?;
        Ok(SharedRuntime { client, proc })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.proc.port
    }
}
