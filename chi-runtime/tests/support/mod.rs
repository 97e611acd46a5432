//! Helpers shared by the runtime's integration tests, which run REAL processes:
//! the `chi-runtime` binary, and client processes that are this test binary run
//! again.
//!
//! * [`Setup`]: a unique port per test ([`free_port`]), a scratch directory and a
//!   small configuration file in it.
//! * [`RuntimeGuard`]: `chi-runtime start -c <cfg>` in the foreground as a child,
//!   its output in a log file, ready once it answers `status`. A thread reaps the
//!   child as soon as it exits (unless a test keeps the zombie on purpose).
//!   Dropping the guard stops the
//!   runtime, kills it if it does not exit, reaps it and removes leftover
//!   segments, also when the test fails; a failing test prints the runtime's log.
//! * [`Watchdog`]: a per-test limit; if it fires it kills every process the test
//!   started, removes the segments of its ports and ends the test process.
//! * `leftovers`: what runtimes leave on the machine (segments, per-user
//!   files, processes naming a scratch directory) and [`free_port`].
//! * [`cluster`]: several runtimes on 127.0.0.1..n forming a cluster.
//! * From `chi-testkit`: [`Children`] (client processes: a test re-executes its
//!   own binary to run one `#[test]` function as a "child role" with the role and
//!   its parameters in environment variables; a role function returns at once
//!   without the variable, so it passes as a no-op in normal runs), [`run_cli`]
//!   (runs a command under a time limit), [`wait_until`], [`Rng`], signals.
//!
//! Tests never assert timings: every wait is bounded by a watchdog that fails
//! the test with the processes' output.

#![allow(dead_code)]

pub mod cluster;
pub mod config_files;
mod leftovers;
pub mod modules;

pub use leftovers::{
    assert_no_process_left, free_port, processes_naming, remove_runtime_files, remove_segments,
    segments,
};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chi_sdk::client::{Client, ClientOptions};
// Each test binary uses a subset.
#[allow(unused_imports)]
pub use chi_testkit::{
    Children, Rng, child_role, env_str, env_u64, run_cli, sigkill, sigterm, wait_until,
};
use chi_testkit::{die_with_parent, spawn_registered, try_reap};

/// Environment variable with the runtime's port, for children.
pub const PORT_ENV: &str = "CHI_TEST_PORT";
/// Default limit for waits on children.
pub const WATCHDOG: Duration = Duration::from_secs(90);
/// How long a runtime gets to become ready.
pub const READY_LIMIT: Duration = Duration::from_secs(30);
/// How long a runtime gets to exit once asked to stop.
pub const EXIT_LIMIT: Duration = Duration::from_secs(30);

/// The runtime binary.
pub fn runtime_exe() -> &'static str {
    env!("CARGO_BIN_EXE_chi-runtime")
}

/// `chimaera_start_runtime` (= `chi-runtime start`).
pub fn start_exe() -> &'static str {
    env!("CARGO_BIN_EXE_chimaera_start_runtime")
}

/// `chimaera_stop_runtime` (= `chi-runtime stop`).
pub fn stop_exe() -> &'static str {
    env!("CARGO_BIN_EXE_chimaera_stop_runtime")
}

// ---------------------------------------------------------------------------------
// What the test started, for the watchdog.

/// Ports whose segments to remove if the watchdog fires (the processes the
/// test started are tracked by `chi-testkit`).
static PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn ports() -> std::sync::MutexGuard<'static, BTreeSet<u16>> {
    PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

fn register_port(port: u16) {
    ports().insert(port);
}

fn unregister_port(port: u16) {
    ports().remove(&port);
}

/// Whether `pid` is alive (exists and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    chi_sdk::shm::alloc::pid_alive(pid)
}

/// A time limit for the whole test ([`chi_testkit::Watchdog`]): if it passes
/// before the guard is dropped, every process the test started is killed, the
/// segments of its ports are removed, and the test process exits with a failure.
#[derive(Debug)]
pub struct Watchdog(chi_testkit::Watchdog);

impl Watchdog {
    /// Arms a watchdog of `limit` for `test`.
    pub fn new(test: &str, limit: Duration) -> Watchdog {
        Watchdog(chi_testkit::Watchdog::with_cleanup(test, limit, || {
            let ports: Vec<u16> = ports().iter().copied().collect();
            for port in ports {
                for s in remove_segments(port) {
                    eprintln!("watchdog: removed segment {s}");
                }
                remove_runtime_files(port);
            }
        }))
    }
}

// ---------------------------------------------------------------------------------
// Ports, segments, scratch directories, configuration files.

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A directory removed on drop.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh directory for `test`.
    pub fn new(test: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("chi-rt-test-{}-{n}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` in the directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write test file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One test's port, scratch directory and configuration file.
#[derive(Debug)]
pub struct Setup {
    /// The runtime's port.
    pub port: u16,
    /// The configuration file.
    pub config: PathBuf,
    /// Scratch directory (holds the config and the logs).
    pub dir: Scratch,
}

/// Knobs of a test configuration.
#[derive(Debug, Clone)]
pub struct ConfigOpts {
    /// Low-latency workers.
    pub low_latency: u32,
    /// High-latency workers.
    pub high_latency: u32,
    /// `client_wait_timeout`.
    pub client_wait_timeout: &'static str,
    /// More YAML lines of the `workers` section, indented (e.g. an
    /// `affinity` mapping).
    pub workers_extra: String,
    /// More YAML lines (keys not set above).
    pub extra: String,
}

impl Default for ConfigOpts {
    fn default() -> Self {
        ConfigOpts {
            low_latency: 2,
            high_latency: 1,
            client_wait_timeout: "10s",
            workers_extra: String::new(),
            extra: String::new(),
        }
    }
}

impl Setup {
    /// A setup for `test` with the default knobs.
    pub fn new(test: &str) -> Setup {
        Setup::with(test, ConfigOpts::default())
    }

    /// A setup for `test`: a free port and a config with small segments.
    pub fn with(test: &str, o: ConfigOpts) -> Setup {
        let dir = Scratch::new(test);
        let port = free_port();
        register_port(port);
        let text = format!(
            "port: {port}\n\
             segments:\n  main: 64m\n  client_data: 16m\n  runtime_data: 16m\n\
             workers:\n  low_latency: {}\n  high_latency: {}\n{}\
             client_wait_timeout: {}\n{}",
            o.low_latency, o.high_latency, o.workers_extra, o.client_wait_timeout, o.extra
        );
        let config = dir.write("chi.yaml", &text);
        Setup { port, config, dir }
    }

    /// Client options for this runtime.
    pub fn opts(&self) -> ClientOptions {
        client_opts(self.port)
    }

    /// The environment a child client needs.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        vec![(PORT_ENV, self.port.to_string())]
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Whatever happened, no process of this test outlives it (a daemon is not
        // our child: it is found by its command line).
        for pid in processes_naming(self.dir.path(), &[]) {
            eprintln!("test cleanup: killing leftover process {pid}");
            sigkill(pid);
        }
        // Whatever happened, no segment of this port outlives the test.
        for s in remove_segments(self.port) {
            eprintln!("test cleanup: removed leftover segment /dev/shm/{s}");
        }
        remove_runtime_files(self.port);
        unregister_port(self.port);
    }
}

/// Client options for the runtime on `port`.
pub fn client_opts(port: u16) -> ClientOptions {
    ClientOptions {
        port,
        connect_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

// ---------------------------------------------------------------------------------
// The runtime.

struct RtProc {
    child: Child,
    status: Option<ExitStatus>,
    /// Leave the exited child unreaped (a zombie).
    keep_zombie: bool,
}

/// A runtime started in the foreground as a child of the test (see the module
/// doc).
pub struct RuntimeGuard {
    port: u16,
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    pid: u32,
    proc: Arc<Mutex<RtProc>>,
    reaper: Option<JoinHandle<()>>,
    checked: bool,
}

impl std::fmt::Debug for RuntimeGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeGuard")
            .field("port", &self.port)
            .field("pid", &self.pid)
            .finish()
    }
}

impl RuntimeGuard {
    /// Starts `chi-runtime start -c <setup.config>` and waits until it answers.
    pub fn start(setup: &Setup) -> RuntimeGuard {
        Self::start_named(setup, "runtime.log")
    }

    /// As [`start`](Self::start), logging to `log_name` in the scratch directory.
    pub fn start_named(setup: &Setup, log_name: &str) -> RuntimeGuard {
        let log = setup.dir.path().join(log_name);
        let file = std::fs::File::create(&log).expect("create the runtime log");
        let config = setup.config.clone();
        let mut cmd = Command::new(runtime_exe());
        cmd.arg("start")
            .arg("-c")
            .arg(&config)
            .env_remove("CHI_SERVER_CONF")
            .env_remove("CHI_MODULE_PATH")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file);
        // SIGTERM: a runtime orphaned by a killed test still stops cleanly.
        die_with_parent(&mut cmd, rustix::process::Signal::TERM);
        let child = spawn_registered(&mut cmd).expect("spawn chi-runtime start");
        let pid = child.id();
        let proc = Arc::new(Mutex::new(RtProc {
            child,
            status: None,
            keep_zombie: false,
        }));
        let p2 = proc.clone();
        let reaper = std::thread::spawn(move || {
            loop {
                {
                    let mut g = p2.lock().unwrap_or_else(|e| e.into_inner());
                    if g.status.is_some() {
                        return;
                    }
                    if !g.keep_zombie
                        && let Some(st) = try_reap(&mut g.child)
                    {
                        g.status = Some(st);
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let rt = RuntimeGuard {
            port: setup.port,
            dir: setup.dir.path().to_owned(),
            config,
            log,
            pid,
            proc,
            reaper: Some(reaper),
            checked: false,
        };
        let opts = ClientOptions {
            connect_timeout: Duration::from_secs(2),
            ..client_opts(setup.port)
        };
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Some(st) = rt.exit_status() {
                panic!(
                    "the runtime exited during start ({st}); its log:\n{}",
                    rt.log()
                );
            }
            match Client::status(&opts) {
                Ok(s) if s.pid == pid => break,
                Ok(s) => panic!(
                    "another runtime (pid {}) answers on port {}",
                    s.pid, setup.port
                ),
                Err(_) => {}
            }
            if Instant::now() > deadline {
                panic!(
                    "watchdog: the runtime was not ready within {READY_LIMIT:?}; its log:\n{}",
                    rt.log()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        rt
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its configuration file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit status, once it exited (and was reaped).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.proc.lock().unwrap_or_else(|e| e.into_inner()).status
    }

    /// Waits until it exits, at most `limit`.
    pub fn wait_exit(&self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.exit_status() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGKILLs it (if it still runs) and waits until it is reaped.
    pub fn kill(&self) {
        {
            let mut g = self.proc.lock().unwrap_or_else(|e| e.into_inner());
            if g.status.is_none() {
                // Under the lock the reaper cannot reap it: the pid is still ours.
                let _ = g.child.kill();
            }
        }
        assert!(
            self.wait_exit(EXIT_LIMIT).is_some(),
            "the runtime (pid {}) survived SIGKILL",
            self.pid
        );
    }

    /// SIGKILLs it and leaves it a zombie (not reaped) until
    /// [`reap_zombie`](Self::reap_zombie) or drop: a dead runtime whose parent
    /// has not reaped it yet.
    pub fn kill_keep_zombie(&self) {
        {
            let mut g = self.proc.lock().unwrap_or_else(|e| e.into_inner());
            assert!(g.status.is_none(), "the runtime already exited");
            g.keep_zombie = true;
            let _ = g.child.kill();
        }
        let stat = format!("/proc/{}/stat", self.pid);
        wait_until(EXIT_LIMIT, "the killed runtime to become a zombie", || {
            std::fs::read_to_string(&stat).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        });
    }

    /// Lets the reaper reap a zombie kept by [`kill_keep_zombie`](Self::kill_keep_zombie).
    pub fn reap_zombie(&self) {
        self.proc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keep_zombie = false;
        assert!(
            self.wait_exit(EXIT_LIMIT).is_some(),
            "the zombie was not reaped"
        );
    }

    /// Sends it a signal (SIGTERM) if it still runs.
    pub fn terminate(&self) {
        let g = self.proc.lock().unwrap_or_else(|e| e.into_inner());
        if g.status.is_none() {
            sigterm(self.pid);
        }
    }

    /// Waits until it exits (it was asked to stop), then checks that it exited
    /// successfully and left no segment. Returns its log.
    pub fn expect_clean_exit(&mut self) -> String {
        let st = self.wait_exit(EXIT_LIMIT).unwrap_or_else(|| {
            panic!(
                "watchdog: the runtime (pid {}) did not exit within {EXIT_LIMIT:?} after a stop; its log:\n{}",
                self.pid,
                self.log()
            )
        });
        let log = self.log();
        assert!(
            st.success(),
            "the runtime exited with {st}; its log:\n{log}"
        );
        let left = segments(self.port);
        assert!(
            left.is_empty(),
            "the runtime left segments {left:?}; its log:\n{log}"
        );
        assert!(
            log.contains("runtime stopped"),
            "no 'runtime stopped' in the log:\n{log}"
        );
        assert_no_process_left(&self.dir, &[]);
        self.checked = true;
        log
    }

    /// Stops it with a Stop request and checks it exited cleanly; returns its log.
    pub fn stop(mut self) -> String {
        if self.exit_status().is_none() {
            let _ = Client::request_stop(&client_opts(self.port));
        }
        self.expect_clean_exit()
    }
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        self.proc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keep_zombie = false;
        if self.exit_status().is_none() {
            let opts = ClientOptions {
                connect_timeout: Duration::from_secs(2),
                ..client_opts(self.port)
            };
            let _ = Client::request_stop(&opts);
            if self.wait_exit(Duration::from_secs(15)).is_none() {
                eprintln!(
                    "test cleanup: the runtime (pid {}) did not stop; killing it",
                    self.pid
                );
                let mut g = self.proc.lock().unwrap_or_else(|e| e.into_inner());
                if g.status.is_none() {
                    let _ = g.child.kill();
                }
            }
        }
        let _ = self.wait_exit(EXIT_LIMIT);
        if let Some(r) = self.reaper.take() {
            let _ = r.join();
        }
        if std::thread::panicking() || !self.checked {
            let left = segments(self.port);
            if std::thread::panicking() {
                eprintln!(
                    "--- log of the runtime (pid {}, port {}):\n{}--- segments left: {left:?}",
                    self.pid,
                    self.port,
                    self.log()
                );
            }
        }
        for s in remove_segments(self.port) {
            eprintln!("test cleanup: removed leftover segment /dev/shm/{s}");
        }
    }
}

// ---------------------------------------------------------------------------------
// Client processes.

/// In a child: connects to the runtime whose port the parent passed.
pub fn child_connect() -> Client {
    let port = env_u64(PORT_ENV) as u16;
    Client::connect(client_opts(port))
        .unwrap_or_else(|e| panic!("child cannot connect to the runtime on port {port}: {e}"))
}

/// The value of `KEY=value` after the word `tag` on a line of `out` (a child's
/// output: the test harness may print `test <name> ... ` before it on the line).
pub fn field(out: &str, tag: &str, key: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let mut words = l.split_whitespace().skip_while(|w| *w != tag);
        words.next()?;
        words.find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_owned))
    })
}
