//! A local cluster for the `remote` workload: `n` runtimes on 127.0.0.1 to
//! 127.0.0.n of this machine (all of 127.0.0.0/8 is loopback on Linux), one
//! port free on every address (and the peer port next to it), a private
//! directory with the hostfile, the configuration and each node's log.
//!
//! Node `k` is `chi-runtime start -c <cfg> --node 127.0.0.k`; the cluster is
//! ready once every node sees every other one up. Dropping it stops every
//! node (asks, then kills after 10 s) and removes the directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::client::{Client, ClientOptions};
use rustix::process::Signal;

/// The address of node `k`.
pub fn node_addr(k: u32) -> String {
    format!("127.0.0.{k}")
}

/// Whether `addr:port` can be bound now.
fn bindable(addr: &str, port: u16) -> bool {
    std::net::TcpListener::bind((addr, port)).is_ok()
}

/// A port that is free, with the next one, on 127.0.0.1 to 127.0.0.n.
pub fn free_port_on(n: u32) -> Result<u16> {
    for _ in 0..200 {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
        let p = l.local_addr()?.port();
        drop(l);
        if p < u16::MAX - 1
            && (1..=n).all(|k| bindable(&node_addr(k), p) && bindable(&node_addr(k), p + 1))
        {
            return Ok(p);
        }
    }
    bail!("found no port free on 127.0.0.1 to 127.0.0.{n} (with the next one) in 200 tries")
}

/// A running local cluster (see the module doc).
#[derive(Debug)]
pub struct LocalCluster {
    /// The control port of every node.
    pub port: u16,
    nodes: Vec<Child>,
    dir: PathBuf,
}

impl LocalCluster {
    /// Starts `n` nodes with `workers` low-latency workers each, whose module
    /// path is `module_path` (a YAML list), and waits until all see each
    /// other up.
    pub fn start(exe: &Path, n: u32, workers: u32, module_path: &str) -> Result<LocalCluster> {
        let port = free_port_on(n)?;
        let dir =
            std::env::temp_dir().join(format!("chi_bench_cluster_{}_{port}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut cluster = LocalCluster {
            port,
            nodes: Vec::new(),
            dir,
        };
        let hostfile = cluster.dir.join("hostfile");
        std::fs::write(&hostfile, format!("127.0.0.[1-{n}]\n"))
            .with_context(|| format!("writing {}", hostfile.display()))?;
        let cfg = cluster.dir.join("chi.yaml");
        std::fs::write(
            &cfg,
            format!(
                "port: {port}\nhostfile: {:?}\n\
                 segments:\n  main: 128m\n  client_data: 32m\n  runtime_data: 32m\n\
                 workers:\n  low_latency: {workers}\n  high_latency: 1\n\
                 logging:\n  level: warn\nmodule_path: {module_path}\n\
                 cluster:\n  heartbeat: 100ms\n  peer_timeout: 2s\n  task_timeout: 10s\n",
                hostfile.display().to_string()
            ),
        )
        .with_context(|| format!("writing {}", cfg.display()))?;
        for k in 1..=n {
            let log = cluster.dir.join(format!("node-{k}.log"));
            let file = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let mut cmd = Command::new(exe);
            cmd.arg("start")
                .arg("-c")
                .arg(&cfg)
                .arg("--node")
                .arg(node_addr(k))
                .env_remove("CHI_SERVER_CONF")
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file);
            // SIGTERM: a node stops cleanly (removing its segments).
            crate::child::die_with_parent(&mut cmd, Signal::TERM);
            let child = cmd
                .spawn()
                .with_context(|| format!("starting node {k} ({})", exe.display()))?;
            cluster.nodes.push(child);
        }
        cluster.wait_all_up(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Client options of node `k`.
    pub fn opts(&self, k: u32) -> ClientOptions {
        ClientOptions {
            addr: node_addr(k),
            port: self.port,
            ..ClientOptions::default()
        }
    }

    /// A client of node `k`.
    pub fn client(&self, k: u32) -> Result<Client> {
        Client::connect(self.opts(k)).with_context(|| format!("connecting to node {k}"))
    }

    /// Node `k`'s status.
    pub fn status(&self, k: u32) -> Result<chi_sdk::proto::StatusReport> {
        Client::status(&self.opts(k)).with_context(|| format!("status of node {k}"))
    }

    /// The last lines of node `k`'s log.
    fn log_tail(&self, k: u32) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("node-{k}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn wait_all_up(&mut self, limit: Duration) -> Result<()> {
        let n = self.nodes.len() as u32;
        let t = Instant::now();
        loop {
            for (i, c) in self.nodes.iter_mut().enumerate() {
                if let Some(s) = c.try_wait()? {
                    let k = i as u32 + 1;
                    bail!(
                        "node {k} exited during its start ({s}); its log:\n{}",
                        self.log_tail(k)
                    );
                }
            }
            let up = (1..=n).all(|k| {
                Client::status(&self.opts(k)).is_ok_and(|st| {
                    st.cluster.len() == n as usize
                        && st
                            .cluster
                            .iter()
                            .all(|p| p.state == "up" || p.state == "self")
                })
            });
            if up {
                return Ok(());
            }
            if t.elapsed() > limit {
                bail!(
                    "the {n} nodes on 127.0.0.1..{n} did not all see each other up within \
                     {limit:?}; node 1's log:\n{}",
                    self.log_tail(1)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for k in 1..=self.nodes.len() as u32 {
            let _ = Client::request_stop(&ClientOptions {
                connect_timeout: Duration::from_secs(2),
                ..self.opts(k)
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &mut self.nodes {
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
