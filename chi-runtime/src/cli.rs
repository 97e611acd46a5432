//! The `chi-runtime` command line: `start [--daemon]`, `stop`, `status`,
//! `default-config`. `chimaera_start_runtime` and `chimaera_stop_runtime` are
//! the same commands under the seeds' names.
//!
//! `start --daemon` keeps its pid and log files (named by the runtime tag,
//! [`chi_sdk::auth::runtime_tag`]) in the per-user directory
//! ([`RuntimeDir`]: `$XDG_RUNTIME_DIR/chimaera` or `/tmp/chimaera-{uid}`, mode
//! 0700) unless told otherwise, and opens them without following symbolic links
//! ([`crate::daemon_files`]); `stop` removes the pid file there once the runtime
//! has exited.
//!
//! With a hostfile, `start --node H` picks this node's entry, `status` shows
//! the cluster (`--node N`: node N's own view, fetched through this runtime's
//! peer link) and `--addr` (or `CHI_ADDR`) picks which runtime of the machine
//! the commands talk to. `start --local-cluster N` starts N nodes on
//! 127.0.0.1..N and `stop --local-cluster` stops them ([`local_cluster`]).
//!
//! Exit codes: 0 success, 1 runtime error (including "no runtime running" for
//! `stop` and `status`), 2 configuration error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::auth::{RuntimeDir, current_uid, runtime_tag};
use chi_sdk::client::Client;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::daemon_files::{open_log, remove_pid_file};
use crate::runtime::Runtime;

mod daemon;
pub mod local_cluster;
mod report;

use daemon::{DaemonSpec, client_opts, daemonize, default_addr};
use report::write_report;

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
        /// $XDG_RUNTIME_DIR/chimaera or /tmp/chimaera-{uid}; 127.0.0.K-{port}.log
        /// for a node on 127.0.0.K, K > 1).
        #[arg(long)]
        log_file: Option<PathBuf>,
        /// pid file of a daemon (default: {port}.pid in the per-user directory;
        /// 127.0.0.K-{port}.pid for a node on 127.0.0.K, K > 1).
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// The hostfile (instead of the configuration's `hostfile`).
        #[arg(long)]
        hostfile: Option<PathBuf>,
        /// This node's hostfile entry (instead of `cluster.node`; default: the
        /// first entry this machine can bind).
        #[arg(long)]
        node: Option<String>,
        /// Start N runtimes on 127.0.0.1 to 127.0.0.N, as daemons, and return
        /// once they see each other (a development cluster).
        #[arg(long, value_name = "N", conflicts_with_all = ["daemon", "hostfile", "node", "log_file", "pid_file"])]
        local_cluster: Option<u32>,
        /// The local cluster's directory (hostfile, logs, pid files; default:
        /// cluster-{port} in the per-user directory).
        #[arg(long, requires = "local_cluster")]
        dir: Option<PathBuf>,
    },
    /// Stop the runtime and wait until it has exited.
    Stop {
        /// Server configuration file (for the port).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// How long to wait for the runtime to exit.
        #[arg(long, default_value = "30")]
        timeout_secs: u64,
        /// The runtime's address (default: $CHI_ADDR, else 127.0.0.1).
        #[arg(long)]
        addr: Option<String>,
        /// Stop every node of the local cluster (`start --local-cluster`).
        #[arg(long, conflicts_with = "addr")]
        local_cluster: bool,
        /// The local cluster's directory (default: cluster-{port} in the
        /// per-user directory).
        #[arg(long, requires = "local_cluster")]
        dir: Option<PathBuf>,
    },
    /// Show what the running runtime is doing.
    Status {
        /// Server configuration file (for the port).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The runtime's address (default: $CHI_ADDR, else 127.0.0.1).
        #[arg(long)]
        addr: Option<String>,
        /// Show node N of the cluster instead, as this runtime's peer link
        /// fetches it.
        #[arg(long, value_name = "N")]
        node: Option<u32>,
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

/// `start --daemon`: one runtime in the background.
fn start_daemon(
    cfg: &Config,
    config: &Option<PathBuf>,
    log: Option<PathBuf>,
    pid: Option<PathBuf>,
    hostfile: Option<PathBuf>,
    node: Option<String>,
) -> Result<()> {
    let mut extra = Vec::new();
    if let Some(h) = hostfile {
        let h = std::fs::canonicalize(&h).unwrap_or(h);
        extra.extend(["--hostfile".into(), h.into_os_string()]);
    }
    // Its node: the one named, else the first entry of the hostfile that can
    // be bound now (named to the daemon, so that the address it answers at,
    // and its pid and log files, are known here).
    let node = node.or_else(|| cfg.cluster.node.clone()).or_else(|| {
        (cfg.hosts.len() > 1)
            .then(|| {
                cfg.hosts.iter().find(|h| {
                    crate::cluster::hosts::resolve_one(h)
                        .is_ok_and(|ip| std::net::TcpListener::bind((ip, cfg.port)).is_ok())
                })
            })
            .flatten()
            .cloned()
    });
    // The address it answers at: its node's, or loopback.
    let addr = match node.as_deref() {
        Some(n) => crate::cluster::hosts::resolve_one(n)
            .map_err(|why| anyhow::anyhow!("cannot resolve --node '{n}': {why}"))?
            .to_string(),
        None => default_addr(),
    };
    if let Some(n) = node {
        extra.extend(["--node".into(), n.into()]);
    }
    let s = daemonize(DaemonSpec {
        cfg,
        config,
        extra,
        addr: addr.clone(),
        log,
        pid,
    })?;
    println!(
        "chi-runtime started: pid {}, {addr}:{}, log {}, pid file {}",
        s.pid,
        cfg.port,
        s.log.display(),
        s.pid_file.display()
    );
    Ok(())
}

fn stop(cfg: &Config, addr: &str, timeout: Duration) -> Result<()> {
    let o = client_opts(cfg, addr);
    let pid = Client::request_stop(&o)
        .with_context(|| format!("stopping the runtime at {addr}:{}", cfg.port))?;
    let start = Instant::now();
    while chi_sdk::shm::alloc::pid_alive(pid) {
        if start.elapsed() > timeout {
            bail!("the runtime (pid {pid}) did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The pid file `start --daemon` wrote by default, if it names this runtime.
    let tag = runtime_tag(addr, cfg.port);
    for dir in RuntimeDir::candidates(current_uid()) {
        remove_pid_file(&dir.join(format!("{tag}.pid")), pid);
    }
    println!("chi-runtime stopped (pid {pid})");
    Ok(())
}

fn status(cfg: &Config, addr: &str, node: Option<u32>, json: bool) -> Result<()> {
    let o = client_opts(cfg, addr);
    let st = match node {
        None => Client::status(&o)
            .with_context(|| format!("asking the runtime at {addr}:{}", cfg.port))?,
        Some(n) => Client::node_status(&o, n).with_context(|| {
            format!(
                "asking the runtime at {addr}:{} for the status of node {n}",
                cfg.port
            )
        })?,
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&st)?)?;
        return Ok(());
    }
    write_report(&mut out, &st)?;
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
    let mut cfg = match load_config(&config_arg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chi-runtime: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // The command line's hostfile and node, over the configuration's.
    if let Command::Start { hostfile, node, .. } = &cli.command {
        let r = match hostfile {
            Some(h) => cfg.with_hostfile(h),
            None => Ok(()),
        }
        .and_then(|()| match node {
            Some(n) => cfg.with_node(n),
            None => Ok(()),
        });
        if let Err(e) = r {
            eprintln!("chi-runtime: configuration error: {e}");
            return ExitCode::from(2);
        }
    }
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
            local_cluster: Some(n),
            dir,
            ..
        } => local_cluster::start(&cfg, &config_arg, n, dir),
        Command::Start {
            daemon: true,
            log_file,
            pid_file,
            hostfile,
            node,
            ..
        } => start_daemon(&cfg, &config_arg, log_file, pid_file, hostfile, node),
        Command::Start { .. } => {
            init_logging(&cfg);
            Runtime::start(cfg).and_then(Runtime::serve)
        }
        Command::Stop {
            timeout_secs,
            local_cluster: true,
            dir,
            ..
        } => local_cluster::stop(&cfg, dir, Duration::from_secs(timeout_secs)),
        Command::Stop {
            timeout_secs, addr, ..
        } => stop(
            &cfg,
            &addr.unwrap_or_else(default_addr),
            Duration::from_secs(timeout_secs),
        ),
        Command::Status {
            json, addr, node, ..
        } => status(&cfg, &addr.unwrap_or_else(default_addr), node, json),
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
