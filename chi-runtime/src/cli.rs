//! The `chi-runtime` command line: `start [--daemon]`, `stop`, `status`,
//! `default-config`. `chimaera_start_runtime` and `chimaera_stop_runtime` are
//! the same commands under the seeds' names.
//!
//! `start --daemon` keeps its pid and log files in the per-user directory
//! ([`RuntimeDir`]: `$XDG_RUNTIME_DIR/chimaera` or `/tmp/chimaera-{uid}`, mode
//! 0700) unless told otherwise, and opens them without following symbolic links
//! ([`crate::daemon_files`]); `stop` removes the pid file there once the runtime
//! has exited.
//!
//! Exit codes: 0 success, 1 runtime error (including "no runtime running" for
//! `stop` and `status`), 2 configuration error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::auth::{RuntimeDir, current_uid};
use chi_sdk::client::{Client, ClientOptions};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::daemon_files::{PidFile, open_log, remove_pid_file};
use crate::runtime::Runtime;

/// The Chimaera runtime daemon.
#[derive(Parser, Debug)]
#[command(name = "chi-runtime", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a runtime (in the foreground unless --daemon).
    Start {
        /// Server configuration file (default: $CHI_SERVER_CONF, else the built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Detach: run in the background, logging to --log-file; returns once ready.
        #[arg(long)]
        daemon: bool,
        /// Log file of a daemon (default: {port}.log in the per-user directory,
        /// $XDG_RUNTIME_DIR/chimaera or /tmp/chimaera-{uid}).
        #[arg(long)]
        log_file: Option<PathBuf>,
        /// pid file of a daemon (default: {port}.pid in the per-user directory).
        #[arg(long)]
        pid_file: Option<PathBuf>,
    },
    /// Stop the runtime and wait until it has exited.
    Stop {
        /// Server configuration file (for the port).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// How long to wait for the runtime to exit.
        #[arg(long, default_value = "30")]
        timeout_secs: u64,
    },
    /// Show what the running runtime is doing.
    Status {
        /// Server configuration file (for the port).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the built-in default configuration (a commented YAML file to copy).
    DefaultConfig,
}

fn load_config(path: &Option<PathBuf>) -> Result<Config, crate::config::ConfigError> {
    match path {
        Some(p) => Config::from_file(p),
        None => Config::load(),
    }
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHI_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cfg.logging.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let file = cfg.logging.file.as_ref().and_then(|p| match open_log(p) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("chi-runtime: {e:#}; logging to standard error instead");
            None
        }
    });
    let _ = match file {
        Some(f) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .try_init(),
        None => {
            use std::io::IsTerminal;
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .try_init()
        }
    };
}

fn opts(cfg: &Config) -> ClientOptions {
    ClientOptions {
        port: cfg.port,
        connect_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

fn daemonize(
    cfg: &Config,
    config: &Option<PathBuf>,
    log: Option<PathBuf>,
    pid: Option<PathBuf>,
) -> Result<()> {
    let dir = RuntimeDir::ensure()?;
    let log = log.unwrap_or_else(|| dir.log_file(cfg.port));
    let pid = pid.unwrap_or_else(|| dir.pid_file(cfg.port));
    // Both files are opened (and checked) before anything starts.
    let pid_file = PidFile::open(&pid)?;
    let out = match open_log(&log) {
        Ok(f) => f,
        Err(e) => {
            pid_file.discard();
            return Err(e);
        }
    };
    match spawn_daemon(cfg, config, &log, out) {
        Ok(daemon) => {
            let path = pid_file.path().to_owned();
            pid_file.write(daemon)?;
            println!(
                "chi-runtime started: pid {daemon}, port {}, log {}, pid file {}",
                cfg.port,
                log.display(),
                path.display()
            );
            Ok(())
        }
        Err(e) => {
            pid_file.discard();
            Err(e)
        }
    }
}

/// Starts the daemon writing to `out` (the log file `log`); returns its pid once
/// it answers.
fn spawn_daemon(
    cfg: &Config,
    config: &Option<PathBuf>,
    log: &std::path::Path,
    out: std::fs::File,
) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("start");
    if let Some(c) = config {
        cmd.arg("--config")
            .arg(std::fs::canonicalize(c).unwrap_or_else(|_| c.clone()));
    }
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
        if let Ok(st) = Client::status(&opts(cfg)) {
            if st.pid == child.id() {
                return Ok(st.pid);
            }
            // Ours cannot have the port. Do not leave it behind: if it has not
            // reached its bind yet it would take the port, unnoticed, once the
            // other runtime stops.
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "another runtime (pid {}) already answers on port {}",
                st.pid,
                cfg.port
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

fn stop(cfg: &Config, timeout: Duration) -> Result<()> {
    let o = opts(cfg);
    let pid = Client::request_stop(&o)
        .with_context(|| format!("stopping the runtime on port {}", cfg.port))?;
    let start = Instant::now();
    while chi_sdk::shm::alloc::pid_alive(pid) {
        if start.elapsed() > timeout {
            bail!("the runtime (pid {pid}) did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The pid file `start --daemon` wrote by default, if it names this runtime.
    for dir in RuntimeDir::candidates(current_uid()) {
        remove_pid_file(&dir.join(format!("{}.pid", cfg.port)), pid);
    }
    println!("chi-runtime stopped (pid {pid})");
    Ok(())
}

fn status(cfg: &Config, json: bool) -> Result<()> {
    let st = Client::status(&opts(cfg))
        .with_context(|| format!("asking the runtime on port {}", cfg.port))?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&st)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "node {}  pid {}  uptime {:.1} s  clients {}  tasks completed {}",
        st.node_id,
        st.pid,
        st.uptime_ms as f64 / 1e3,
        st.clients,
        st.tasks_completed
    )?;
    writeln!(out, "workers:")?;
    for w in &st.workers {
        let mut notes = String::new();
        if w.stalled {
            notes.push_str("  STALLED (a task runs without returning or yielding)");
        } else if w.sleeping {
            notes.push_str("  (sleeping)");
        }
        for (n, what) in [
            (w.live_tasks, "live tasks"),
            (w.parked_tasks, "parked"),
            (w.periodic_tasks, "periodic"),
            (w.refused, "refused words"),
            (w.cells_skipped, "dead clients' cells skipped"),
            (w.panics, "panics caught"),
            (w.restarts, "restarts"),
            (w.lanes_given, "lanes given away"),
        ] {
            if n > 0 {
                notes.push_str(&format!("  {what} {n}"));
            }
        }
        if w.load_us >= 1.0 {
            notes.push_str(&format!("  load {:.0} µs", w.load_us));
        }
        if let Some(r) = &w.running {
            notes.push_str(&format!("  running {r}"));
        }
        let cpus = if w.cpus.is_empty() {
            String::new()
        } else {
            format!("  cpus {}", w.cpus)
        };
        writeln!(
            out,
            "  #{:<3} {:<13} lanes {:?}{cpus}  completed {}{notes}",
            w.id, w.kind, w.lanes, w.tasks_completed,
        )?;
    }
    if !st.supervisor_cpus.is_empty() {
        writeln!(
            out,
            "supervisor (worker watch, process reaper): cpus {}",
            st.supervisor_cpus
        )?;
    }
    if !st.reinforcement_cpus.is_empty() {
        writeln!(
            out,
            "reinforcement (models, lane balancing): cpus {}",
            st.reinforcement_cpus
        )?;
    }
    if !st.models.is_empty() {
        writeln!(out, "performance models (cost of a task, learned):")?;
        for m in st.models.iter().take(16) {
            let est = if m.estimate_us > 0.0 {
                format!("  module's estimate {:.1} µs", m.estimate_us)
            } else {
                String::new()
            };
            writeln!(
                out,
                "  pool {:<6} method {:<4} {:>10.1} µs  ({} samples){est}",
                m.pool, m.method, m.cost_us, m.samples
            )?;
        }
    }
    writeln!(out, "queue lanes:")?;
    for l in &st.lanes {
        writeln!(
            out,
            "  lane {:<3} {:<13} depth in use {}",
            l.lane, l.priority, l.len
        )?;
    }
    writeln!(out, "segments:")?;
    for u in &st.segments {
        writeln!(
            out,
            "  {:<12} in use {} bytes in {} blocks  free pages {}  owner slots {}",
            u.role, u.used_bytes, u.live_blocks, u.free_pages, u.owners
        )?;
    }
    let r = &st.reaper;
    writeln!(
        out,
        "reaper: {} dead clients, {} blocks ({} bytes) reclaimed, {} in-flight tasks handed to \
         the workers, {} owner slots released",
        r.clients_reaped, r.blocks_freed, r.bytes_freed, r.tasks_handed_over, r.owners_cleared
    )?;
    writeln!(out, "pools:")?;
    for p in &st.pools {
        writeln!(
            out,
            "  {:<6} {:<20} module {:<24} containers {:?}",
            p.id, p.name, p.module, p.containers
        )?;
    }
    Ok(())
}

/// Runs the command line `args` (without the program name's effect on parsing).
pub fn main_with(cli: Cli) -> ExitCode {
    let config_arg = match &cli.command {
        Command::Start { config, .. }
        | Command::Stop { config, .. }
        | Command::Status { config, .. } => config.clone(),
        Command::DefaultConfig => {
            print!("{}", Config::default_yaml());
            return ExitCode::SUCCESS;
        }
    };
    let cfg = match load_config(&config_arg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chi-runtime: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Before a daemon is spawned or anything is created: a machine that cannot
    // hold the configuration is a configuration error too.
    if matches!(cli.command, Command::Start { .. })
        && let Err(e) = cfg.check_resources()
    {
        eprintln!("chi-runtime: configuration error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Start {
            daemon: true,
            log_file,
            pid_file,
            ..
        } => daemonize(&cfg, &config_arg, log_file, pid_file),
        Command::Start { .. } => {
            init_logging(&cfg);
            Runtime::start(cfg).and_then(Runtime::serve)
        }
        Command::Stop { timeout_secs, .. } => stop(&cfg, Duration::from_secs(timeout_secs)),
        Command::Status { json, .. } => status(&cfg, json),
        Command::DefaultConfig => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chi-runtime: {e:#}");
            ExitCode::FAILURE
        }
    }
}
