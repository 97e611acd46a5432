//! Helpers for tests of several runtimes forming a cluster on one machine:
//! node k runs on 127.0.0.k, all on one port.
//!
//! * [`ClusterSetup`]: a port free on every node address (and the peer port
//!   next to it), a scratch directory with the hostfile `127.0.0.[1-n]` and a
//!   configuration with fast heartbeats ([`HEARTBEAT`], [`PEER_TIMEOUT`],
//!   [`TASK_TIMEOUT`]); [`ClusterSetup::with_modules`] adds the example
//!   modules to the module path.
//!   Dropping it kills whatever process still names the directory and removes
//!   every node's segments and files.
//! * [`Node`]: `chi-runtime start -c <cfg> --node 127.0.0.k` as a child, ready
//!   once it answers at its address; [`Node::kill9`] kills it, dropping it
//!   stops it (or kills it) and reaps it, printing its log if the test failed.
//! * [`ClusterSetup::start_all`]: every node started and seeing the others
//!   up; [`ClusterSetup::clients`]: a client of each.
//! * [`echo`] and [`locate`]: one task of the `mod_name` example to a pool,
//!   its reply or the error's text (for assertions on either).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chi_sdk::client::{Client, ClientOptions};
use chi_sdk::proto::StatusReport;
use chi_sdk::queue::Priority;
use chi_sdk::types::{DomainQuery, PoolId};
use chi_testkit::{die_with_parent, spawn_registered, try_reap};
use chimaera_mod_name_runtime::{EchoTask, LocateTask};

use super::{
    READY_LIMIT, Scratch, free_port, processes_naming, register_port, remove_runtime_files,
    remove_segments, runtime_exe, sigkill, unregister_port,
};

/// The heartbeat of test clusters.
pub const HEARTBEAT: &str = "100ms";
/// The peer timeout of test clusters.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// The task timeout of test clusters (`cluster.task_timeout`).
#[allow(dead_code)]
pub const TASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The address of node `k`.
pub fn node_addr(k: u32) -> String {
    format!("127.0.0.{k}")
}

/// A cluster of `n` nodes on 127.0.0.1..n (see the module doc).
#[derive(Debug)]
pub struct ClusterSetup {
    /// Control port of every node.
    pub port: u16,
    /// Peer port (`port + 1`).
    pub peer_port: u16,
    /// Nodes.
    pub n: u32,
    /// The configuration file.
    pub config: PathBuf,
    /// The hostfile.
    pub hostfile: PathBuf,
    /// Scratch directory.
    pub dir: Scratch,
}

fn bindable(addr: &str, port: u16) -> bool {
    std::net::TcpListener::bind((addr, port)).is_ok()
}

impl ClusterSetup {
    /// A setup of `n` nodes for `test`.
    pub fn new(test: &str, n: u32) -> ClusterSetup {
        ClusterSetup::with_extra(test, n, "")
    }

    /// A setup of `n` nodes for `test` whose module path holds the example
    /// modules ([`super::modules::module_dir`], built first if need be).
    #[allow(dead_code)]
    pub fn with_modules(test: &str, n: u32) -> ClusterSetup {
        ClusterSetup::with_modules_and(test, n, "")
    }

    /// As [`ClusterSetup::with_modules`], with `extra` configuration text
    /// (whole top-level sections, e.g. `compose`).
    #[allow(dead_code)]
    pub fn with_modules_and(test: &str, n: u32, extra: &str) -> ClusterSetup {
        let dir = super::modules::module_dir();
        let extra = format!("module_path: [{:?}]\n{extra}", dir.display().to_string());
        ClusterSetup::with_extra(test, n, &extra)
    }

    /// A setup of `n` nodes for `test`, with `extra` configuration text
    /// (whole top-level sections) after the common one.
    pub fn with_extra(test: &str, n: u32, extra: &str) -> ClusterSetup {
        let port = loop {
            let p = free_port();
            if p < u16::MAX
                && (1..=n).all(|k| bindable(&node_addr(k), p) && bindable(&node_addr(k), p + 1))
            {
                break p;
            }
        };
        register_port(port);
        let dir = Scratch::new(test);
        let hostfile = dir.write("hostfile", &format!("127.0.0.[1-{n}]\n"));
        // The cluster's own key, made in the scratch directory.
        chi_sdk::auth::ControlKey::load_or_create(&dir.path().join("cluster.key"))
            .expect("a cluster key");
        let config = dir.write(
            "chi.yaml",
            &format!(
                "port: {port}\nhostfile: hostfile\n\
                 segments:\n  main: 64m\n  client_data: 16m\n  runtime_data: 16m\n\
                 workers:\n  low_latency: 1\n  high_latency: 1\n\
                 cluster:\n  heartbeat: {HEARTBEAT}\n  peer_timeout: {}ms\n  task_timeout: {}ms\n  \
                 key_file: cluster.key\n{extra}",
                PEER_TIMEOUT.as_millis(),
                TASK_TIMEOUT.as_millis()
            ),
        );
        ClusterSetup {
            port,
            peer_port: port + 1,
            n,
            config,
            hostfile,
            dir,
        }
    }

    /// The same setup with a client-data segment of `size` (a size as the
    /// configuration writes it, `64m`) on every node.
    #[allow(dead_code)]
    pub fn with_client_data(self, size: &str) -> ClusterSetup {
        let text = std::fs::read_to_string(&self.config).expect("read the configuration");
        let text = text.replace("client_data: 16m", &format!("client_data: {size}"));
        std::fs::write(&self.config, text).expect("write the configuration");
        self
    }

    /// The cluster key every node of this setup presents.
    #[allow(dead_code)]
    pub fn cluster_key(&self) -> chi_sdk::auth::ControlKey {
        chi_sdk::auth::ControlKey::load_or_create(&self.dir.path().join("cluster.key"))
            .expect("the cluster key")
            .0
    }

    /// A copy of the configuration whose module path is empty (its nodes
    /// find no example module).
    pub fn config_without_modules(&self) -> PathBuf {
        let text = std::fs::read_to_string(&self.config).expect("read the configuration");
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("module_path:"))
            .collect();
        self.dir
            .write("chi-no-modules.yaml", &(kept.join("\n") + "\n"))
    }

    /// Client options for node `k`.
    pub fn opts(&self, k: u32) -> ClientOptions {
        ClientOptions {
            addr: node_addr(k),
            port: self.port,
            connect_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        }
    }

    /// Node `k`'s status.
    pub fn status(&self, k: u32) -> StatusReport {
        Client::status(&self.opts(k)).unwrap_or_else(|e| panic!("status of node {k}: {e}"))
    }

    /// Whether every node shows every other node up.
    pub fn all_up(&self) -> bool {
        (1..=self.n).all(|v| self.sees_all_up(v))
    }

    /// Whether node `viewer` shows every other node up (and itself as
    /// `self`).
    #[allow(dead_code)]
    pub fn sees_all_up(&self, viewer: u32) -> bool {
        (1..=self.n).all(|of| {
            self.state_seen(viewer, of)
                .is_some_and(|(s, _)| s == "up" || (of == viewer && s == "self"))
        })
    }

    /// The containers node `k` shows for pool `id` (`None`: it does not
    /// list the pool, or does not answer).
    pub fn share(&self, k: u32, id: PoolId) -> Option<Vec<u32>> {
        share_in(Client::status(&self.opts(k)).ok()?, id)
    }

    /// The containers node `k` shows for pool `id` (`None`: it does not
    /// list the pool); panics if node `k` does not answer.
    #[allow(dead_code)]
    pub fn listed_share(&self, k: u32, id: PoolId) -> Option<Vec<u32>> {
        share_in(self.status(k), id)
    }

    /// Starts every node and waits (at most `limit`) until all see each
    /// other up.
    #[allow(dead_code)]
    pub fn start_all(&self, limit: Duration) -> Vec<Node> {
        let nodes: Vec<Node> = (1..=self.n).map(|k| Node::start(self, k)).collect();
        super::wait_until(limit, "every node shows all the others up", || {
            self.all_up()
        });
        nodes
    }

    /// A client of each node, in node order.
    #[allow(dead_code)]
    pub fn clients(&self) -> Vec<Client> {
        (1..=self.n)
            .map(|k| {
                Client::connect(self.opts(k)).unwrap_or_else(|e| panic!("a client of {k}: {e}"))
            })
            .collect()
    }

    /// Node `k`'s (main, client-data) live blocks.
    #[allow(dead_code)]
    pub fn live_blocks(&self, k: u32) -> (u64, u64) {
        let segs = self.status(k).segments;
        let of = |role: &str| {
            segs.iter().find(|s| s.role == role).map_or_else(
                || panic!("node {k} reports no {role} segment"),
                |s| s.live_blocks,
            )
        };
        (of("main"), of("client_data"))
    }

    /// The state node `viewer` shows for node `of` (`self`, `up`, `down`,
    /// `unknown`), and the incarnation it knows; `None` if it does not answer.
    pub fn state_seen(&self, viewer: u32, of: u32) -> Option<(String, u64)> {
        let st = Client::status(&self.opts(viewer)).ok()?;
        st.cluster
            .iter()
            .find(|p| p.node_id == of)
            .map(|p| (p.state.clone(), p.incarnation))
    }
}

impl Drop for ClusterSetup {
    fn drop(&mut self) {
        for pid in processes_naming(self.dir.path(), &[]) {
            eprintln!("test cleanup: killing leftover process {pid}");
            sigkill(pid);
        }
        for s in remove_segments(self.port) {
            eprintln!("test cleanup: removed leftover segment /dev/shm/{s}");
        }
        remove_runtime_files(self.port);
        unregister_port(self.port);
    }
}

/// The containers a status lists for pool `id`.
fn share_in(status: StatusReport, id: PoolId) -> Option<Vec<u32>> {
    status
        .pools
        .into_iter()
        .find(|p| p.id == id.0)
        .map(|p| p.containers)
}

/// An Echo of `v` through `c` to pool `pool` with query `q`: its reply, or
/// the error's text.
#[allow(dead_code)]
pub fn echo(c: &Client, pool: PoolId, q: DomainQuery, v: u64) -> Result<u64, String> {
    c.submit(EchoTask::new(pool, q, v), Priority::LowLatency)
        .map_err(|e| e.to_string())?
        .wait_with(|t| t.reply)
        .map_err(|e| e.to_string())
}

/// The node and container that ran a Locate task sent through `c` to pool
/// `pool` with query `q`, or the error's text.
#[allow(dead_code)]
pub fn locate(c: &Client, pool: PoolId, q: DomainQuery) -> Result<(u32, u32), String> {
    locate_key(c, pool, q, 0)
}

/// As [`locate`], for a Locate task with `key` (what its monitor routes a
/// dynamic query by).
#[allow(dead_code)]
pub fn locate_key(
    c: &Client,
    pool: PoolId,
    q: DomainQuery,
    key: u64,
) -> Result<(u32, u32), String> {
    c.submit(LocateTask::new(pool, q, key), Priority::LowLatency)
        .map_err(|e| e.to_string())?
        .wait_with(|t| (t.node_id, t.container_id))
        .map_err(|e| e.to_string())
}

/// One node's runtime process (see the module doc).
#[derive(Debug)]
pub struct Node {
    /// Its node id.
    pub k: u32,
    /// Its pid.
    pub pid: u32,
    opts: ClientOptions,
    child: Child,
    log: PathBuf,
    exited: bool,
}

impl Node {
    /// Starts node `k` of `setup` and waits until it answers.
    pub fn start(setup: &ClusterSetup, k: u32) -> Node {
        Node::start_config(setup, k, &setup.config)
    }

    /// Starts node `k` of `setup` with the configuration file `config`
    /// (e.g. [`ClusterSetup::config_without_modules`]).
    pub fn start_config(setup: &ClusterSetup, k: u32, config: &std::path::Path) -> Node {
        // A restarted node logs to a file of its own.
        static STARTS: AtomicU32 = AtomicU32::new(0);
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let log = setup.dir.path().join(format!("node-{k}-start-{n}.log"));
        let file = std::fs::File::create(&log).expect("create the node's log");
        let mut cmd = Command::new(runtime_exe());
        cmd.arg("start")
            .arg("-c")
            .arg(config)
            .arg("--node")
            .arg(node_addr(k))
            .env_remove("CHI_SERVER_CONF")
            .env_remove("CHI_MODULE_PATH")
            .env("CHI_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file);
        die_with_parent(&mut cmd, rustix::process::Signal::TERM);
        let child = spawn_registered(&mut cmd).expect("spawn chi-runtime start");
        let mut node = Node {
            k,
            pid: child.id(),
            opts: setup.opts(k),
            child,
            log,
            exited: false,
        };
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Some(st) = try_reap(&mut node.child) {
                node.exited = true;
                panic!(
                    "node {k} exited during start ({st}); its log:\n{}",
                    node.log()
                );
            }
            if let Ok(s) = Client::status(&node.opts)
                && s.pid == node.pid
            {
                return node;
            }
            if Instant::now() > deadline {
                panic!(
                    "node {k} was not ready within {READY_LIMIT:?}; its log:\n{}",
                    node.log()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.exited = true;
    }

    /// Stops it with SIGSTOP: to its peers it falls silent, as a node cut
    /// off the network would ([`Node::resume`] lets it go on).
    pub fn pause(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.pid as i32).expect("a pid"),
            rustix::process::Signal::STOP,
        );
    }

    /// Lets a paused node go on (SIGCONT).
    pub fn resume(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.pid as i32).expect("a pid"),
            rustix::process::Signal::CONT,
        );
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        if !self.exited && try_reap(&mut self.child).is_some() {
            self.exited = true;
        }
        !self.exited
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.running() {
            // A paused node would not stop.
            self.resume();
            let _ = Client::request_stop(&ClientOptions {
                connect_timeout: Duration::from_secs(2),
                ..self.opts.clone()
            });
            let deadline = Instant::now() + Duration::from_secs(15);
            while self.running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if self.running() {
                eprintln!(
                    "test cleanup: node {} (pid {}) did not stop; killing it",
                    self.k, self.pid
                );
                self.kill9();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- log of node {} (pid {}):\n{}",
                self.k,
                self.pid,
                self.log()
            );
        }
    }
}
