//! The runtime: start, serve the loopback socket, stop.
//!
//! # Start
//! config → the per-user directory (created 0700, or refused if unsafe) and a
//! fresh key in memory → resolve the hostfile ([`crate::cluster::hosts`]) →
//! bind the control socket on the first hostfile address it can (or the one
//! `cluster.node` names; an address in use by another runtime is skipped),
//! whose offset + 1 is the node id, and on 127.0.0.1 too if that address is
//! not a loopback one; it admits only peers presenting the key (a second
//! runtime on the same address and port stops here, before touching any
//! segment or key file) → with more than one host, bind the peer socket on
//! the same address at `cluster.port` ([`crate::cluster`]) → write the key
//! file (named by the runtime tag, [`chi_sdk::auth::runtime_tag`]) → create the
//! segments, the process queue and the runtime block → the node state
//! ([`crate::state`]) with its module manager → admin pool and the local
//! `compose` pools → spawn the workers and the supervisor, each pinned to the
//! CPUs of its kind (`workers.affinity`, `crate::threads`) → start the peer
//! thread (heartbeats to the other nodes) → the global `compose` pools: a
//! thread that makes them over the cluster once it is formed
//! ([`crate::compose`]), or at once on a runtime without peers → ready.
//!
//! A process hosts one runtime in its life: a second [`Runtime::start`] is
//! refused before anything is created ([`crate::state::ProcessTaken`] says why
//! and what to do).
//!
//! # Serving
//! Only peers with the key get a request through (see [`chi_sdk::auth`]). A
//! request is one message of at most [`MAX_REQUEST_BYTES`]; a larger one, or
//! one that is not a well-formed [`Request`], gets a `Reply::Error`. Registered
//! clients are bounded (`control.max_clients`) and must be live processes.
//!
//! A `NodeStatus` request for another node is forwarded over the peer link
//! and waits for its answer (at most [`NODE_STATUS_TIMEOUT`]); a node known
//! to be down is answered at once with an error.
//!
//! # Stop
//! (a `Stop` request, a StopRuntime task, SIGINT or SIGTERM) → the runtime block
//! says STOPPING (waiting clients notice) → the peer thread says goodbye to the
//! other nodes and ends → the socket stops answering → the key
//! file is removed → workers finish parked tasks and fail what is queued with
//! `SHUTDOWN` → pools are destroyed → STOPPED → segments unlinked.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::abi::AbiFingerprint;
use chi_sdk::auth::{ControlKey, KeyFile, RuntimeDir, runtime_tag};
use chi_sdk::proto::{Registration, Reply, Request, StatusReport, runtime_state};
use chi_sdk::queue::Priority;
use chi_sdk::transport::{
    Caller, ControlServer, Incoming, MAX_REQUEST_BYTES, TransportError, ZmqServer,
};
use chi_sdk::types::PoolId;

use crate::cluster::hosts::resolve;
use crate::cluster::membership::Membership;
use crate::cluster::peer::{Cluster, NodeStatusError, PeerSettings, StatusAnswer};
use crate::cluster::zmq_peer::ZmqPeers;
use crate::config::{Config, PoolQuery};
use crate::ipc::{Ipc, SegmentFamily};
use crate::state::{NodeState, ProcessClaim};
use crate::threads::{enter, spawn_worker};
use crate::worker::WorkerStats;

/// How long a stopping runtime waits for its threads (after the workers'
/// own 5 s for suspended tasks) before it exits without a wedged one.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Longest wait for another node's status (`status --node N`); the control
/// socket answers the other requests meanwhile.
pub const NODE_STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// A started runtime.
pub struct Runtime {
    shared: Arc<NodeState>,
    server: ZmqServer,
    cluster: Option<Cluster>,
    key_file: KeyFile,
    threads: Vec<std::thread::JoinHandle<()>>,
    signal: Arc<AtomicBool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("server", &self.server)
            .finish()
    }
}

/// Answers one control request (from a peer that presented the key).
fn answer(state: &NodeState, cluster: Option<&Cluster>, req: Request) -> Reply {
    match req {
        Request::Register { pid } => {
            let id = match state.clients.register(pid) {
                Ok(id) => id,
                Err(e) => {
                    tracing::warn!(pid, error = %e, "registration refused");
                    return Reply::Error {
                        message: format!("registration refused: {e}"),
                    };
                }
            };
            tracing::debug!(client = id, pid, "client registered");
            Reply::Registered(Registration {
                node_id: state.node_id,
                client_id: id,
                runtime_pid: std::process::id(),
                segments: state.ipc.describe(),
                fingerprint: AbiFingerprint::current().to_string(),
                wait_timeout_ms: state.config.client_wait_timeout.as_millis() as u64,
                task_deadline_ms: state
                    .config
                    .task_deadline
                    .map_or(0, |d| d.as_millis() as u64),
            })
        }
        Request::Unregister { client_id } => {
            state.forget_client(client_id);
            Reply::Ok {
                pid: std::process::id(),
            }
        }
        Request::Status => Reply::Status(state.status()),
        Request::NodeStatus { node } if node == state.node_id => Reply::Status(state.status()),
        // Asked without waiting (`Runtime::serve`); here only if called
        // directly.
        Request::NodeStatus { node } => match node_status_later(state, cluster, node) {
            Ok(answer) => node_status_reply(
                node,
                answer
                    .recv_timeout(NODE_STATUS_TIMEOUT * 2)
                    .unwrap_or_else(|e| match e {
                        std::sync::mpsc::RecvTimeoutError::Timeout => {
                            Err(NodeStatusError::Timeout {
                                node,
                                timeout: NODE_STATUS_TIMEOUT * 2,
                            })
                        }
                        std::sync::mpsc::RecvTimeoutError::Disconnected => {
                            Err(NodeStatusError::Stopped)
                        }
                    }),
            ),
            Err(message) => Reply::Error { message },
        },
        Request::Stop => {
            state.request_stop("a stop request");
            Reply::Ok {
                pid: std::process::id(),
            }
        }
    }
}

/// Asks another node's status through the peer link, without waiting:
/// the answer comes on the receiver (at most `NODE_STATUS_TIMEOUT` later),
/// or why not at once (the message of an error reply).
fn node_status_later(
    state: &NodeState,
    cluster: Option<&Cluster>,
    node: u32,
) -> Result<Receiver<StatusAnswer>, String> {
    let Some(cluster) = cluster else {
        return Err(format!(
            "node {node} is not in the cluster: this runtime (node {}) runs alone, without a \
             hostfile of more than one host",
            state.node_id
        ));
    };
    let timeout = state.config.cluster.peer_timeout.min(NODE_STATUS_TIMEOUT);
    cluster
        .node_status_later(node, timeout)
        .map_err(|e| e.to_string())
}

/// The reply to `status --node N` once its answer came.
fn node_status_reply(node: u32, answer: StatusAnswer) -> Reply {
    match answer {
        Ok(bytes) => match serde_json::from_slice::<StatusReport>(&bytes) {
            Ok(r) => Reply::Status(r),
            Err(e) => Reply::Error {
                message: format!("node {node} sent a malformed status report: {e}"),
            },
        },
        Err(e) => Reply::Error {
            message: e.to_string(),
        },
    }
}

/// A `status --node N` waiting for the other node's answer, while the
/// control socket serves the other requests.
struct Later {
    caller: Caller,
    node: u32,
    answer: Receiver<StatusAnswer>,
    /// Past it, the request fails (the peer thread answers before).
    deadline: Instant,
}

/// Binds the first host of the list this machine can, or the one
/// `cluster.node` names (node id = its index + 1), admitting peers that
/// present `key`; a host whose address is taken (another runtime of this
/// machine) is skipped. A runtime on a non-loopback address also listens on
/// 127.0.0.1, for the clients of its node.
fn bind(cfg: &Config, hosts: &[(String, IpAddr)], key: &ControlKey) -> Result<(ZmqServer, u32)> {
    let mut last = None;
    let mut in_use = None;
    for (i, (host, ip)) in hosts.iter().enumerate() {
        if cfg.cluster.node.as_ref().is_some_and(|n| n != host) {
            continue;
        }
        match ZmqServer::bind(&ip.to_string(), cfg.port, key.clone()) {
            Ok(mut s) => {
                if !ip.is_loopback() {
                    s.bind_also("127.0.0.1", cfg.port).with_context(|| {
                        format!(
                            "listening for this node's clients on 127.0.0.1:{} besides {ip}; \
                             stop the runtime that holds it ('chi-runtime stop') or choose \
                             another port",
                            cfg.port
                        )
                    })?;
                }
                return Ok((s, i as u32 + 1));
            }
            Err(e @ TransportError::AddressInUse { .. }) => in_use = Some(e),
            Err(e) => last = Some(e),
        }
    }
    match (in_use, last) {
        (Some(e), _) => {
            bail!("{e}; stop it with 'chi-runtime stop' or choose another port")
        }
        (None, Some(e)) => bail!(
            "cannot bind any host of the hostfile on port {}: {e}; this machine has none of \
             the hostfile's addresses (check the hostfile, or `cluster.node`)",
            cfg.port
        ),
        (None, None) => bail!("the host list is empty"),
    }
}

/// This runtime's incarnation: its start time in µs since the Unix epoch
/// (a restarted runtime has a larger one).
fn incarnation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
        .max(1)
}

impl Runtime {
    /// Starts a runtime with `config`; returns once it is ready.
    pub fn start(config: Config) -> Result<Runtime> {
        // Before anything is created: one runtime per process (given back if
        // the start fails before the node state is built).
        let claim = ProcessClaim::take(config.port)?;
        config.check_resources()?;
        let t0 = Instant::now();
        let dir = RuntimeDir::ensure()?;
        let key = ControlKey::generate().context("reading random bytes for the runtime's key")?;
        let hosts = resolve(&config.hosts)?;
        let (server, node_id) = bind(&config, &hosts, &key)?;
        let my_ip = hosts[node_id as usize - 1].1;
        let tag = runtime_tag(&my_ip.to_string(), config.port);
        // With peers: the peer socket, before anything is created.
        let link = if hosts.len() > 1 {
            let membership = Arc::new(Membership::new(
                node_id,
                incarnation(),
                &hosts,
                config.cluster.peer_timeout,
            ));
            let allowed = hosts.iter().map(|(_, ip)| *ip).collect();
            let cluster_key =
                crate::cluster::key::cluster_key(config.cluster.key_file.as_deref(), dir.path())?;
            let peers = ZmqPeers::bind(
                node_id,
                my_ip,
                config.cluster.port,
                &membership.peers(),
                allowed,
                &cluster_key,
            )
            .context("binding the peer socket")?;
            tracing::debug!(endpoint = peers.endpoint(), "peer socket bound");
            membership.count_refused_connections(peers.refusal_counter());
            Some((membership, peers))
        } else {
            None
        };
        // Only now that the address is ours: a stale key of it is replaced.
        let key_file = key.write(&dir, &tag)?;
        tracing::debug!(path = %key_file.path().display(), "key written");
        let low_workers = config.workers.low_latency.max(1);
        let high_workers = config.workers.high_latency;
        let low_lanes = config.queue.lanes.max(1);
        let high_lanes = high_workers;
        let family = SegmentFamily::claim(dir.path()).context("choosing the segments' ids")?;
        let ipc = Ipc::create(&config, &tag, node_id, low_lanes, high_lanes, family)?;
        let shared = NodeState::new(config, node_id, ipc, claim, |node| {
            vec![crate::admin::builtin(node.clone())]
        });
        shared
            .create_pool(
                chi_sdk::admin::ADMIN_LIB_NAME,
                "admin",
                "",
                PoolId::ADMIN,
                false,
            )
            .context("creating the admin pool")?;
        // Global entries: see `compose` (a thread, once the peer link runs).
        for p in shared
            .config
            .compose
            .clone()
            .iter()
            .filter(|p| p.query == PoolQuery::Local)
        {
            let id = PoolId(p.id.unwrap_or(0));
            shared
                .create_pool(
                    &p.module,
                    &p.name,
                    p.args.as_deref().unwrap_or(""),
                    id,
                    false,
                )
                .with_context(|| {
                    format!("creating pool '{}' of the config's compose list", p.name)
                })?;
        }
        if link.is_none() {
            crate::compose::make_alone(&shared)?;
        }
        let mut threads = Vec::new();
        let q = shared.ipc.queue.clone();
        let mut plan: Vec<(&'static str, Vec<usize>)> = Vec::new();
        for (kind, prio, n) in [
            ("low_latency", Priority::LowLatency, low_workers),
            ("high_latency", Priority::HighLatency, high_workers),
        ] {
            let lanes: Vec<usize> = q.lanes_of(prio).collect();
            for w in 0..n as usize {
                let mine: Vec<usize> = lanes.iter().copied().skip(w).step_by(n as usize).collect();
                if !mine.is_empty() {
                    plan.push((kind, mine));
                }
            }
        }
        // Each thread pins itself to the CPUs of its kind (`workers.affinity`)
        // before anything else.
        for (id, (kind, lanes)) in plan.into_iter().enumerate() {
            let stats = Arc::new(WorkerStats::new(id as u32, kind, lanes.clone()));
            let consumer = q.consumer(&lanes)?;
            shared.add_worker(stats.clone());
            threads.push(spawn_worker(&shared, stats, consumer)?);
        }
        let sh = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("chi-supervisor".into())
                .spawn(move || {
                    let cpus = enter("process_reaper", sh.config.affinity.process_reaper.as_ref());
                    let _ = sh.supervisor_cpus.set(cpus);
                    crate::supervisor::run(sh)
                })?,
        );
        if shared.config.workers.reinforcement > 0 {
            let sh = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("chi-reinforcement".into())
                    .spawn(move || {
                        let cpus =
                            enter("reinforcement", sh.config.affinity.reinforcement.as_ref());
                        let _ = sh.reinforcement_cpus.set(cpus);
                        crate::reinforcement::run(sh)
                    })?,
            );
        }
        let cluster = match link {
            Some((membership, peers)) => {
                let _ = shared.membership.set(membership.clone());
                let weak = Arc::downgrade(&shared);
                let report = Box::new(move || {
                    weak.upgrade()
                        .and_then(|s| serde_json::to_vec(&s.status()).ok())
                        .unwrap_or_default()
                });
                let settings = PeerSettings {
                    heartbeat: shared.config.cluster.heartbeat,
                    task_timeout: shared.config.cluster.task_timeout,
                };
                let host = Box::new(crate::remote_host::ShareHost::new(&shared)?);
                let c =
                    Cluster::start_with_pools(Box::new(peers), membership, settings, report, host)?;
                let _ = shared.pool_asker.set(c.pool_asker());
                let _ = shared.wire.set(c.wire().clone());
                let _ = shared.intake.set(c.intake().clone());
                Some(c)
            }
            None => None,
        };
        if cluster.is_some() {
            threads.extend(crate::compose::spawn(&shared)?);
        }
        let signal = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, signal.clone())?;
        }
        tracing::info!(
            node = node_id,
            nodes = hosts.len(),
            endpoint = server.endpoint(),
            workers = threads.len(),
            ready_in_us = t0.elapsed().as_micros() as u64,
            "runtime ready"
        );
        Ok(Runtime {
            shared,
            server,
            cluster,
            key_file,
            threads,
            signal,
        })
    }

    /// Replies to the node statuses that came (or are past their time).
    fn answer_later(&mut self, later: &mut Vec<Later>) {
        if later.is_empty() {
            return;
        }
        let now = Instant::now();
        for l in std::mem::take(later) {
            let answer = match l.answer.try_recv() {
                Ok(a) => a,
                Err(TryRecvError::Empty) if now < l.deadline => {
                    later.push(l);
                    continue;
                }
                // The peer thread answers a timeout itself; this is the
                // backstop, past twice its time.
                Err(TryRecvError::Empty) => Err(NodeStatusError::Timeout {
                    node: l.node,
                    timeout: NODE_STATUS_TIMEOUT * 2,
                }),
                Err(TryRecvError::Disconnected) => Err(NodeStatusError::Stopped),
            };
            let reply = node_status_reply(l.node, answer);
            self.send_reply(&l.caller, &reply);
        }
    }

    fn send_reply(&mut self, to: &Caller, reply: &Reply) {
        let bytes = serde_json::to_vec(reply).unwrap_or_default();
        if let Err(e) = self.server.reply(to, &bytes) {
            tracing::warn!(error = %e, "could not reply on the control socket");
        }
    }

    /// The node state.
    pub fn state(&self) -> &Arc<NodeState> {
        &self.shared
    }

    /// Serves the loopback socket until a stop is requested, then stops.
    /// A `status --node N` does not hold up the requests after it: its
    /// answer is awaited beside them (`Later`).
    pub fn serve(mut self) -> Result<()> {
        let mut later: Vec<Later> = Vec::new();
        while !self.shared.stopping() {
            if self.signal.load(Ordering::Relaxed) {
                self.shared.request_stop("a signal");
                break;
            }
            let wait = if later.is_empty() {
                Duration::from_millis(50)
            } else {
                Duration::from_millis(2)
            };
            let got = self.server.recv(wait);
            self.answer_later(&mut later);
            let (caller, msg) = match got {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket error");
                    continue;
                }
            };
            let reply = match msg {
                Incoming::Request(bytes) => match serde_json::from_slice::<Request>(&bytes) {
                    Ok(Request::NodeStatus { node }) if node != self.shared.node_id => {
                        match node_status_later(&self.shared, self.cluster.as_ref(), node) {
                            Ok(answer) => {
                                later.push(Later {
                                    caller,
                                    node,
                                    answer,
                                    deadline: Instant::now() + NODE_STATUS_TIMEOUT * 2,
                                });
                                continue;
                            }
                            Err(message) => Reply::Error { message },
                        }
                    }
                    Ok(req) => answer(&self.shared, self.cluster.as_ref(), req),
                    Err(e) => Reply::Error {
                        message: format!("malformed request: {e}"),
                    },
                },
                Incoming::Rejected { size, parts } => {
                    tracing::warn!(size, parts, "refused an oversized control request");
                    Reply::Error {
                        message: format!(
                            "request refused: {size} bytes in {parts} part(s); a request is one message of at most {MAX_REQUEST_BYTES} bytes"
                        ),
                    }
                }
            };
            self.send_reply(&caller, &reply);
        }
        for l in later {
            let reply = Reply::Error {
                message: format!(
                    "this runtime is stopping; the status of node {} did not come",
                    l.node
                ),
            };
            self.send_reply(&l.caller, &reply);
        }
        self.shutdown();
        Ok(())
    }

    /// Stops the runtime's threads; see [`SHUTDOWN_GRACE`].
    fn shutdown(self) {
        let Runtime {
            shared,
            server,
            cluster,
            key_file,
            threads,
            ..
        } = self;
        if let Some(c) = cluster {
            c.stop();
        }
        drop(server);
        drop(key_file);
        // A worker wedged inside a handler that never returns or yields cannot
        // be joined: past the grace the runtime exits without it (process exit
        // ends the thread) and removes its segments itself, since the wedged
        // thread's reference keeps the node state from dropping.
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let mut wedged = Vec::new();
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                wedged.push(t.thread().name().unwrap_or("unnamed").to_owned());
            }
        }
        if !wedged.is_empty() {
            tracing::error!(
                threads = ?wedged,
                grace = ?SHUTDOWN_GRACE,
                "threads still inside a task after the stop's grace (a handler that never \
                 returns or yields); the runtime exits without them and removes its segments"
            );
            shared.ipc.unlink_segments();
        }
        shared.pools.clear();
        shared.ipc.set_state(runtime_state::STOPPED);
        tracing::info!("runtime stopped");
        // Dropping the last Arc unmaps and unlinks the segments.
    }
}
