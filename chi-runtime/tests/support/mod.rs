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
//! * [`Children`]: client processes. A test re-executes its own binary to run one
//!   `#[test]` function as a "child role" (`exe --exact <role> --nocapture
//!   --test-threads=1`) with the role and its parameters in environment
//!   variables; a role function returns at once without the variable, so it
//!   passes as a no-op in normal runs.
//! * [`run_cli`]: runs a command under a time limit.
//! * [`Watchdog`]: a per-test limit; if it fires it kills every process the test
//!   started, removes the segments of its ports and ends the test process.
//!
//! Tests never assert timings: every wait is bounded by a watchdog that fails
//! the test with the processes' output.

#![allow(dead_code)]

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chi_sdk::client::{Client, ClientOptions};

/// Environment variable naming the child role a re-executed test binary runs.
pub const ROLE_ENV: &str = "CHI_TEST_ROLE";
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

/// pids of processes this test process started and has not reaped, and ports
/// whose segments to remove if the watchdog fires.
struct Registry {
    pids: HashSet<u32>,
    ports: HashSet<u16>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn with_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let r = g.get_or_insert_with(|| Registry {
        pids: HashSet::new(),
        ports: HashSet::new(),
    });
    f(r)
}

fn register_pid(pid: u32) {
    with_registry(|r| r.pids.insert(pid));
}

fn register_port(port: u16) {
    with_registry(|r| r.ports.insert(port));
}

fn unregister_port(port: u16) {
    with_registry(|r| r.ports.remove(&port));
}

/// Reaps `child` if it exited; unregisters its pid in the same critical section,
/// so the watchdog never signals a pid that was reaped (and maybe reused).
fn try_reap(child: &mut Child) -> Option<ExitStatus> {
    with_registry(|r| match child.try_wait() {
        Ok(Some(st)) => {
            r.pids.remove(&child.id());
            Some(st)
        }
        Ok(None) => None,
        Err(_) => {
            r.pids.remove(&child.id());
            None
        }
    })
}

/// Sends SIGKILL to `pid`.
pub fn sigkill(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

/// Sends SIGTERM to `pid`.
pub fn sigterm(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    }
}

/// Makes the process `cmd` starts receive `sig` when the thread that started it
/// ends (in particular when the test process dies, even by SIGKILL), so nothing
/// outlives a test run that was killed.
fn die_with_parent(cmd: &mut Command, sig: rustix::process::Signal) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec; it only makes the
    // prctl system call, which is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(sig))
                .map_err(std::io::Error::from)
        });
    }
}

/// Whether `pid` is alive (exists and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    chi_sdk::shm::alloc::pid_alive(pid)
}

/// A time limit for the whole test. If it passes before the guard is dropped,
/// every process the test started is killed, the segments of its ports are
/// removed, and the test process exits with a failure.
#[derive(Debug)]
pub struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Arms a watchdog of `limit` for `test`.
    pub fn new(test: &str, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let test = test.to_owned();
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!(
                    "watchdog: test '{test}' did not finish within {limit:?}; killing what it started"
                );
                let (pids, ports) = with_registry(|r| {
                    (
                        r.pids.iter().copied().collect::<Vec<_>>(),
                        r.ports.iter().copied().collect::<Vec<_>>(),
                    )
                });
                for pid in pids {
                    eprintln!("watchdog: SIGKILL {pid}");
                    sigkill(pid);
                }
                std::thread::sleep(Duration::from_millis(200));
                for port in ports {
                    for s in remove_segments(port) {
                        eprintln!("watchdog: removed segment {s}");
                    }
                }
                std::process::exit(101);
            }
        });
        Watchdog {
            disarm: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.disarm.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------
// Ports, segments, scratch directories, configuration files.

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Segment files of the runtime on `port` in `/dev/shm`, sorted.
pub fn segments(port: u16) -> Vec<String> {
    let prefix = chi_runtime::ipc::segment_name(port, "");
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Removes the segments of `port`; returns the names removed.
pub fn remove_segments(port: u16) -> Vec<String> {
    let names = segments(port);
    for n in &names {
        let _ = std::fs::remove_file(Path::new("/dev/shm").join(n));
    }
    names
}

/// pids of live processes, other than `except`, whose command line mentions
/// `dir` (a test's scratch directory: its config, log and pid files are there,
/// so every runtime the test started names it).
pub fn processes_naming(dir: &Path, except: &[u32]) -> Vec<u32> {
    let needle = dir.display().to_string();
    let canon = std::fs::canonicalize(dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| needle.clone());
    let me = std::process::id();
    let mut v: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&pid| pid != me && !except.contains(&pid))
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                        let c = String::from_utf8_lossy(&c);
                        c.contains(&needle) || c.contains(&canon)
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Fails unless no process other than `except` names `dir` (waiting up to 10 s
/// for exiting ones).
pub fn assert_no_process_left(dir: &Path, except: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_naming(dir, except);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let cmds: Vec<String> = left
                .iter()
                .map(|p| {
                    let c = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    format!("{p}: {}", String::from_utf8_lossy(&c).replace('\0', " "))
                })
                .collect();
            panic!(
                "processes of this test are still running:\n{}",
                cmds.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A port free for this test: derived from the pid and a counter (so parallel
/// test processes pick distinct ports), below the ephemeral range, that can be
/// bound on 127.0.0.1 now and has no segments in `/dev/shm`.
pub fn free_port() -> u16 {
    const LO: u32 = 20_000;
    const SPAN: u32 = 12_000; // 20000..32000, below Linux's ephemeral ports
    let pid = std::process::id();
    for _ in 0..SPAN {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let port = (LO + (pid.wrapping_mul(7919).wrapping_add(n.wrapping_mul(31))) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && segments(port).is_empty() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

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
    /// More YAML lines (keys not set above).
    pub extra: String,
}

impl Default for ConfigOpts {
    fn default() -> Self {
        ConfigOpts {
            low_latency: 2,
            high_latency: 1,
            client_wait_timeout: "10s",
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
             workers:\n  low_latency: {}\n  high_latency: {}\n\
             client_wait_timeout: {}\n{}",
            o.low_latency, o.high_latency, o.client_wait_timeout, o.extra
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
// Running commands.

fn drain_into(mut from: impl Read + Send + 'static, to: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => to
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// What a command did.
#[derive(Debug)]
pub struct CliOutput {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl CliOutput {
    /// The exit code (-1 if killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout:\n{}--- stderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `exe args` with `env` set (and `CHI_SERVER_CONF` unset unless given),
/// failing the test if it does not finish within `limit`.
pub fn run_cli(exe: &str, args: &[&str], env: &[(&str, &str)], limit: Duration) -> CliOutput {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env_remove("CHI_SERVER_CONF")
        .env_remove("CHI_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    die_with_parent(&mut cmd, rustix::process::Signal::KILL);
    let mut child = with_registry(|r| {
        let c = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {exe}: {e}"));
        r.pids.insert(c.id());
        c
    });
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let r1 = drain_into(child.stdout.take().expect("stdout"), out.clone());
    let r2 = drain_into(child.stderr.take().expect("stderr"), err.clone());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = try_reap(&mut child) {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            with_registry(|r| r.pids.remove(&child.id()));
            let _ = (r1.join(), r2.join());
            panic!(
                "watchdog: `{exe} {}` did not finish within {limit:?}; killed it\n--- stdout:\n{}--- stderr:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.lock().unwrap()),
                String::from_utf8_lossy(&err.lock().unwrap()),
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // The pipes close when the command exits, unless it left a child holding them
    // (a daemon redirects its own output, so it does not).
    let _ = (r1.join(), r2.join());
    let stdout = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err.lock().unwrap()).into_owned();
    CliOutput {
        status,
        stdout,
        stderr,
    }
}

/// Waits until `cond` holds, failing the test if `limit` passes first.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "watchdog: {what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
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
        let child = with_registry(|r| {
            let c = cmd.spawn().expect("spawn chi-runtime start");
            r.pids.insert(c.id());
            c
        });
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

/// Whether this process is a child started to play `role`.
pub fn child_role(role: &str) -> bool {
    std::env::var(ROLE_ENV).is_ok_and(|r| r == role)
}

/// A parameter passed to a child.
pub fn env_str(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("child parameter {key} is missing"))
}

/// A numeric parameter passed to a child.
pub fn env_u64(key: &str) -> u64 {
    let v = env_str(key);
    v.parse()
        .unwrap_or_else(|_| panic!("child parameter {key}={v:?} is not a number"))
}

/// In a child: connects to the runtime whose port the parent passed.
pub fn child_connect() -> Client {
    let port = env_u64(PORT_ENV) as u16;
    Client::connect(client_opts(port))
        .unwrap_or_else(|e| panic!("child cannot connect to the runtime on port {port}: {e}"))
}

/// A small, fast, seedable PRNG (SplitMix64): deterministic per seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct Proc {
    label: String,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Proc {
    fn output(&mut self) -> String {
        // The readers end at EOF, i.e. once the child (and its pipe ends) are gone.
        if self.status.is_some() {
            for r in self.readers.drain(..) {
                let _ = r.join();
            }
        }
        let out = self.output.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&out).into_owned()
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
            with_registry(|r| r.pids.remove(&self.child.id()));
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// The client processes of one test. Dropping it kills and reaps every child
/// still running, so a failing test never leaves processes behind.
#[derive(Default)]
pub struct Children {
    procs: Vec<Proc>,
}

impl std::fmt::Debug for Children {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.procs.iter().map(|p| (&p.label, p.child.id())))
            .finish()
    }
}

impl Children {
    /// No children yet.
    pub fn new() -> Children {
        Children::default()
    }

    /// Starts this test binary again to run the `#[test]` function `role` (a
    /// top-level function of the test file) as a child, with `env` set. Returns
    /// the child's index.
    pub fn spawn(&mut self, role: &str, label: &str, env: &[(&str, String)]) -> usize {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", role, "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .env("RUST_BACKTRACE", "1")
            .env_remove("CHI_SERVER_CONF")
            .env_remove("CHI_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        die_with_parent(&mut cmd, rustix::process::Signal::KILL);
        let mut child = with_registry(|r| {
            let c = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start child {label}: {e}"));
            r.pids.insert(c.id());
            c
        });
        let output = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            drain_into(child.stdout.take().expect("stdout"), output.clone()),
            drain_into(child.stderr.take().expect("stderr"), output.clone()),
        ];
        self.procs.push(Proc {
            label: label.to_owned(),
            child,
            output,
            readers,
            status: None,
        });
        self.procs.len() - 1
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// pid of child `i`.
    pub fn pid(&self, i: usize) -> u32 {
        self.procs[i].child.id()
    }

    /// The output (stdout and stderr) child `i` produced so far.
    pub fn output(&mut self, i: usize) -> String {
        self.procs[i].output()
    }

    /// Reaps children that exited; fails the test (after killing the others) if
    /// one exited unsuccessfully.
    fn poll(&mut self) {
        let mut failed = None;
        for (i, p) in self.procs.iter_mut().enumerate() {
            if p.status.is_none()
                && let Some(st) = try_reap(&mut p.child)
            {
                p.status = Some(st);
                if !st.success() && failed.is_none() {
                    failed = Some(i);
                }
            }
        }
        if let Some(i) = failed {
            self.kill_all();
            let p = &mut self.procs[i];
            let out = p.output();
            let status = p
                .status
                .map_or("an unknown status".into(), |s| s.to_string());
            panic!(
                "child '{}' (pid {}) failed ({status}); its output:\n{out}",
                p.label,
                p.child.id(),
            );
        }
    }

    fn watchdog_fired(&mut self, timeout: Duration, what: &str) -> ! {
        let mut report = String::new();
        for p in &mut self.procs {
            if p.status.is_none() {
                report.push_str(&format!(
                    "  '{}' (pid {}) still running\n",
                    p.label,
                    p.child.id()
                ));
            }
        }
        self.kill_all();
        for p in &mut self.procs {
            let out = p.output();
            report.push_str(&format!("--- output of '{}':\n{out}\n", p.label));
        }
        panic!("watchdog: {what} did not happen within {timeout:?}; killed the children\n{report}");
    }

    /// Waits until every child `i` printed `marker`, failing the test if a child
    /// fails meanwhile or if `timeout` passes.
    pub fn wait_output_all(&mut self, marker: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let all = (0..self.procs.len()).all(|i| self.procs[i].output().contains(marker));
            if all {
                return;
            }
            self.poll();
            if Instant::now() >= deadline {
                self.watchdog_fired(timeout, &format!("'{marker}' from every child"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for child `i` to exit successfully, under the watchdog.
    pub fn wait_for(&mut self, i: usize, timeout: Duration) {
        let what = format!("exit of child '{}'", self.procs[i].label);
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            if self.procs[i].status.is_some() {
                return;
            }
            if Instant::now() >= deadline {
                self.watchdog_fired(timeout, &what);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for every child to exit successfully, under the watchdog.
    pub fn wait_all(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            if self.procs.iter().all(|p| p.status.is_some()) {
                return;
            }
            if Instant::now() >= deadline {
                self.watchdog_fired(timeout, "exit of every child");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Runs one child to completion and returns its output.
    pub fn run(
        &mut self,
        role: &str,
        label: &str,
        env: &[(&str, String)],
        timeout: Duration,
    ) -> String {
        let i = self.spawn(role, label, env);
        self.wait_for(i, timeout);
        self.output(i)
    }

    /// Kills and reaps every child still running.
    pub fn kill_all(&mut self) {
        for p in &mut self.procs {
            p.kill();
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill_all();
    }
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
