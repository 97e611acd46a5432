//! `chi-runtime start --local-cluster N` and `stop --local-cluster`: N
//! runtimes on one machine, for development and tests.
//!
//! The nodes are 127.0.0.1 to 127.0.0.N (the whole 127.0.0.0/8 block is
//! loopback on Linux), all on the configuration's port. The launcher writes
//! `hostfile` (`127.0.0.[1-N]`) in the cluster's directory (by default
//! `cluster-{port}` in the per-user runtime directory), starts node k as a
//! daemon with `--hostfile <dir>/hostfile --node 127.0.0.k`, its log and pid
//! files `node-k.log` and `node-k.pid` in the same directory, and returns once
//! every node answers and sees every other node up. `stop --local-cluster`
//! reads the same hostfile and stops each node.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::auth::RuntimeDir;
use chi_sdk::client::{Client, ClientError};
use chi_sdk::transport::TransportError;

use super::daemon::{DaemonSpec, client_opts, daemonize};
use crate::config::{Config, load_hostfile};

/// Most nodes of a local cluster (127.0.0.1 to 127.0.0.254).
pub const MAX_LOCAL_NODES: u32 = 254;

/// The cluster's directory: `dir`, or `cluster-{port}` in the per-user
/// runtime directory.
fn cluster_dir(cfg: &Config, dir: Option<PathBuf>) -> Result<PathBuf> {
    match dir {
        Some(d) => Ok(d),
        None => Ok(RuntimeDir::ensure()?
            .path()
            .join(format!("cluster-{}", cfg.port))),
    }
}

/// Starts `n` nodes; see the module doc.
pub(crate) fn start(
    cfg: &Config,
    config: &Option<PathBuf>,
    n: u32,
    dir: Option<PathBuf>,
) -> Result<()> {
    if !(1..=MAX_LOCAL_NODES).contains(&n) {
        bail!(
            "--local-cluster {n}: a local cluster has 1 to {MAX_LOCAL_NODES} nodes (127.0.0.1 to 127.0.0.{MAX_LOCAL_NODES})"
        );
    }
    let dir = cluster_dir(cfg, dir)?;
    // Refused before anything is written or started: a failed start stops
    // every node of the directory, which must not be another cluster's.
    for k in 1..=n {
        let addr = format!("127.0.0.{k}");
        if let Ok(st) = Client::status(&client_opts(cfg, &addr)) {
            bail!(
                "a runtime (pid {}) already answers on {addr}:{}: stop it first ('chi-runtime \
                 stop --local-cluster' for a local cluster, 'chi-runtime stop --addr {addr}' \
                 otherwise), or choose another port",
                st.pid,
                cfg.port
            );
        }
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating the cluster directory {}", dir.display()))?;
    }
    let hostfile = dir.join("hostfile");
    std::fs::write(&hostfile, format!("127.0.0.[1-{n}]\n"))
        .with_context(|| format!("writing {}", hostfile.display()))?;
    let mut started = Vec::new();
    for k in 1..=n {
        let addr = format!("127.0.0.{k}");
        let r = node_config(cfg, &hostfile, &addr).and_then(|node_cfg| {
            daemonize(DaemonSpec {
                cfg: &node_cfg,
                config,
                extra: vec![
                    OsString::from("--hostfile"),
                    hostfile.clone().into_os_string(),
                    OsString::from("--node"),
                    OsString::from(&addr),
                ],
                addr: addr.clone(),
                log: Some(dir.join(format!("node-{k}.log"))),
                pid: Some(dir.join(format!("node-{k}.pid"))),
            })
        });
        match r {
            Ok(s) => started.push((k, addr, s)),
            Err(e) => {
                let _ = stop_nodes(cfg, &dir, Duration::from_secs(30));
                return Err(e.context(format!("starting node {k} ({addr}) of the local cluster")));
            }
        }
    }
    // Ready once every node sees every other up.
    let limit = Duration::from_secs(30) + cfg.cluster.peer_timeout;
    let t0 = Instant::now();
    for (k, addr, _) in &started {
        loop {
            let up = Client::status(&client_opts(cfg, addr))
                .map(|st| st.cluster.iter().filter(|p| p.state == "up").count())
                .unwrap_or(0);
            if up + 1 == n as usize {
                break;
            }
            if t0.elapsed() > limit {
                let _ = stop_nodes(cfg, &dir, Duration::from_secs(30));
                bail!(
                    "node {k} ({addr}) did not see the other nodes within {limit:?}; see the logs in {}",
                    dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    println!(
        "local cluster of {n} node(s) on port {} (peer port {}), hostfile {}",
        cfg.port,
        cfg.cluster.port,
        hostfile.display()
    );
    for (k, addr, s) in &started {
        println!(
            "  node {k}: {addr}:{}  pid {}  log {}",
            cfg.port,
            s.pid,
            s.log.display()
        );
    }
    println!(
        "clients select a node with CHI_ADDR=127.0.0.k (and CHI_PORT={}); stop all with \
         'chi-runtime stop --local-cluster{}'",
        cfg.port,
        port_hint(cfg, config)
    );
    Ok(())
}

fn port_hint(cfg: &Config, config: &Option<PathBuf>) -> String {
    match config {
        Some(c) => format!(" --config {}", c.display()),
        None if cfg.port != chi_sdk::proto::DEFAULT_PORT => {
            format!(" (with the same config, port {})", cfg.port)
        }
        None => String::new(),
    }
}

/// The configuration of node `addr`: `cfg` with the cluster's hostfile.
fn node_config(cfg: &Config, hostfile: &Path, addr: &str) -> Result<Config> {
    let mut c = cfg.clone();
    c.with_hostfile(hostfile)?;
    c.with_node(addr)?;
    Ok(c)
}

/// Stops every node of the local cluster in `dir` (or the default one).
pub(crate) fn stop(cfg: &Config, dir: Option<PathBuf>, timeout: Duration) -> Result<()> {
    let dir = cluster_dir(cfg, dir)?;
    let stopped = stop_nodes(cfg, &dir, timeout)?;
    println!(
        "local cluster in {} stopped ({stopped} node(s) were running)",
        dir.display()
    );
    Ok(())
}

/// Stops the nodes of `dir`'s hostfile that run; returns how many did.
fn stop_nodes(cfg: &Config, dir: &Path, timeout: Duration) -> Result<usize> {
    let hostfile = dir.join("hostfile");
    let hosts = load_hostfile(&hostfile).with_context(|| {
        format!(
            "no local cluster in {}: start one with 'chi-runtime start --local-cluster N'",
            dir.display()
        )
    })?;
    let mut pids = Vec::new();
    let mut failed = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        match Client::request_stop(&client_opts(cfg, host)) {
            Ok(pid) => pids.push((i + 1, pid)),
            Err(ClientError::Transport(TransportError::NoRuntime { .. })) => {}
            Err(e) => failed.push(format!("node {} ({host}): {e}", i + 1)),
        }
    }
    let t0 = Instant::now();
    for &(k, pid) in &pids {
        while chi_sdk::shm::alloc::pid_alive(pid) {
            if t0.elapsed() > timeout {
                failed.push(format!(
                    "node {k} (pid {pid}) did not exit within {timeout:?}"
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        crate::daemon_files::remove_pid_file(&dir.join(format!("node-{k}.pid")), pid);
    }
    if !failed.is_empty() {
        bail!("stopping the local cluster: {}", failed.join("; "));
    }
    Ok(pids.len())
}
