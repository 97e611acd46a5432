//! Starting a runtime in the background (`start --daemon`) and the options
//! the command line's clients use.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::auth::{RuntimeDir, runtime_tag};
use chi_sdk::client::{Client, ClientOptions};

use crate::config::Config;
use crate::daemon_files::{PidFile, open_log};

/// The address the command line's clients use unless told: `CHI_ADDR`, else
/// 127.0.0.1.
pub(crate) fn default_addr() -> String {
    std::env::var("CHI_ADDR")
        .ok()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

/// Client options for the runtime of `cfg` at `addr`.
pub(crate) fn client_opts(cfg: &Config, addr: &str) -> ClientOptions {
    ClientOptions {
        addr: addr.to_owned(),
        port: cfg.port,
        connect_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

/// What a daemon is started with.
pub(crate) struct DaemonSpec<'a> {
    /// Its configuration (already with the command line's overrides).
    pub cfg: &'a Config,
    /// The configuration file to hand on, if any.
    pub config: &'a Option<PathBuf>,
    /// More arguments of its `start` (`--hostfile`, `--node`).
    pub extra: Vec<OsString>,
    /// The address it answers at once ready.
    pub addr: String,
    /// Log file (default: `{tag}.log` in the per-user directory).
    pub log: Option<PathBuf>,
    /// pid file (default: `{tag}.pid` in the per-user directory).
    pub pid: Option<PathBuf>,
}

/// A started daemon.
pub(crate) struct Started {
    pub pid: u32,
    pub log: PathBuf,
    pub pid_file: PathBuf,
}

/// Starts a daemon; returns once it answers at its address.
pub(crate) fn daemonize(spec: DaemonSpec<'_>) -> Result<Started> {
    let dir = RuntimeDir::ensure()?;
    let tag = runtime_tag(&spec.addr, spec.cfg.port);
    let log = spec
        .log
        .clone()
        .unwrap_or_else(|| dir.tagged_file(&tag, "log"));
    let pid = spec
        .pid
        .clone()
        .unwrap_or_else(|| dir.tagged_file(&tag, "pid"));
    // Both files are opened (and checked) before anything starts.
    let pid_file = PidFile::open(&pid)?;
    let out = match open_log(&log) {
        Ok(f) => f,
        Err(e) => {
            pid_file.discard();
            return Err(e);
        }
    };
    match spawn_daemon(&spec, &log, out) {
        Ok(daemon) => {
            let path = pid_file.path().to_owned();
            pid_file.write(daemon)?;
            Ok(Started {
                pid: daemon,
                log,
                pid_file: path,
            })
        }
        Err(e) => {
            pid_file.discard();
            Err(e)
        }
    }
}

/// Starts the daemon writing to `out` (the log file `log`); returns its pid once
/// it answers.
fn spawn_daemon(spec: &DaemonSpec<'_>, log: &Path, out: std::fs::File) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("start");
    if let Some(c) = spec.config {
        cmd.arg("--config")
            .arg(std::fs::canonicalize(c).unwrap_or_else(|_| c.clone()));
    }
    cmd.args(&spec.extra);
    cmd.stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // SAFETY: `setsid` is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().context("spawning the daemon")?;
    let opts = client_opts(spec.cfg, &spec.addr);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(10).collect();
            bail!(
                "the daemon exited during start ({status}); last lines of {}:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if let Ok(st) = Client::status(&opts) {
            if st.pid == child.id() {
                return Ok(st.pid);
            }
            // Ours cannot have the port. Do not leave it behind: if it has not
            // reached its bind yet it would take the port, unnoticed, once the
            // other runtime stops.
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "another runtime (pid {}) already answers on {}:{}",
                st.pid,
                spec.addr,
                spec.cfg.port
            );
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the daemon did not become ready within 30 s; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
