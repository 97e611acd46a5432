//! The runtime: start, serve the loopback socket, stop.
//!
//! # Start
//! config → the per-user directory (created 0700, or refused if unsafe) and a
//! fresh key in memory → bind the loopback socket, which admits only peers
//! presenting the key (a second runtime on the same port stops here, before
//! touching any segment or key file) → write the key file → create the
//! segments, the process queue and the runtime block → module manager → admin
//! pool and the `compose` pools → spawn the workers → ready.
//!
//! # Serving
//! Only peers with the key get a request through (see [`chi_sdk::auth`]). A
//! request is one message of at most [`MAX_REQUEST_BYTES`]; a larger one, or
//! one that is not a well-formed [`Request`], gets a `Reply::Error`. Registered
//! clients are bounded (`control.max_clients`) and must be live processes.
//!
//! # Stop
//! (a `Stop` request, a StopRuntime task, SIGINT or SIGTERM) → the runtime block
//! says STOPPING (waiting clients notice) → the socket stops answering → the key
//! file is removed → workers finish parked tasks and fail what is queued with
//! `SHUTDOWN` → pools are destroyed → STOPPED → segments unlinked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::abi::AbiFingerprint;
use chi_sdk::auth::{ControlKey, KeyFile, RuntimeDir};
use chi_sdk::proto::{
    LaneStatus, PoolStatus, ReaperStatus, Registration, Reply, Request, StatusReport, WorkerStatus,
    runtime_state,
};
use chi_sdk::queue::Priority;
use chi_sdk::transport::{ControlServer, Incoming, MAX_REQUEST_BYTES, TransportError, ZmqServer};
use chi_sdk::types::PoolId;

use crate::clients::ClientRegistry;
use crate::config::Config;
use crate::ipc::Ipc;
use crate::module::{Builtin, MODULES, ModuleManager};
use crate::pool::PoolManager;
use crate::reaper::ReaperStats;
use crate::worker::{Worker, WorkerStats};

/// State shared by the runtime's threads.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// This node's id.
    pub node_id: u32,
    /// Shared memory.
    pub ipc: Ipc,
    /// Pools.
    pub pools: PoolManager,
    stop: AtomicBool,
    started: Instant,
    clients: ClientRegistry,
    workers: Mutex<Vec<Arc<WorkerStats>>>,
    /// What the process reaper did.
    pub reaper: ReaperStats,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl Shared {
    /// Whether a stop was requested.
    #[inline]
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Requests a stop (idempotent).
    pub fn request_stop(&self, by: &str) {
        if !self.stop.swap(true, Ordering::AcqRel) {
            tracing::info!(by, "stop requested");
            self.ipc.set_state(runtime_state::STOPPING);
        }
    }

    /// The workers' statistics (the supervisor's view of them).
    pub fn workers(&self) -> Vec<Arc<WorkerStats>> {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Adds a worker (one that took over a wedged worker's lanes).
    pub(crate) fn add_worker(&self, stats: Arc<WorkerStats>) {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stats);
    }

    /// Drops the registrations of client processes that are gone; returns how
    /// many it dropped.
    pub fn forget_dead_clients(&self) -> u64 {
        let mut n = 0;
        for (id, pid) in self.clients.dead() {
            if self.clients.forget(id).is_some() {
                tracing::info!(
                    client = id,
                    pid,
                    "client process is gone; registration dropped"
                );
                n += 1;
            }
        }
        n
    }

    /// Creates a pool of `module` (loading it if needed).
    pub fn create_pool(
        &self,
        module: &str,
        name: &str,
        args: &str,
        id: PoolId,
        goc: bool,
    ) -> Result<PoolId> {
        let modules = MODULES
            .get()
            .context("the module manager is not initialised")?;
        let m = modules.get(module)?;
        Ok(self.pools.create(m, name, args, id, goc)?)
    }

    /// The status report.
    pub fn status(&self) -> StatusReport {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let q = &self.ipc.queue;
        let low = q.lanes_of(Priority::LowLatency);
        StatusReport {
            node_id: self.node_id,
            pid: std::process::id(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            workers: workers
                .iter()
                .map(|w| WorkerStatus {
                    id: w.id,
                    kind: w.kind.into(),
                    lanes: w.lanes.clone(),
                    tasks_completed: w.completed.load(Ordering::Relaxed),
                    sleeping: w.sleeping.load(Ordering::Relaxed),
                    stalled: w.stalled.load(Ordering::Relaxed),
                    live_tasks: w.live.load(Ordering::Relaxed),
                    refused: w.refused.load(Ordering::Relaxed),
                    panics: w.panics.load(Ordering::Relaxed),
                    cells_skipped: w.cells_skipped.load(Ordering::Relaxed),
                    restarts: w.restarts.load(Ordering::Relaxed),
                    retired: w.phase.load(Ordering::Relaxed) == crate::worker::phase::RETIRED,
                })
                .collect(),
            lanes: (0..q.num_lanes())
                .map(|l| LaneStatus {
                    lane: l,
                    priority: if low.contains(&l) {
                        "low_latency"
                    } else {
                        "high_latency"
                    }
                    .into(),
                    len: q.lane_len(l),
                })
                .collect(),
            pools: self
                .pools
                .list()
                .iter()
                .map(|p| PoolStatus {
                    id: p.id.0,
                    name: p.name.clone(),
                    module: p.module_name().to_owned(),
                    containers: p.containers.iter().map(|c| c.id.0).collect(),
                })
                .collect(),
            tasks_completed: workers
                .iter()
                .map(|w| w.completed.load(Ordering::Relaxed))
                .sum(),
            clients: (self.clients.len() - self.clients.dead().len()) as u32,
            reaper: ReaperStatus {
                clients_reaped: self.reaper.clients_reaped.load(Ordering::Relaxed),
                blocks_freed: self.reaper.blocks_freed.load(Ordering::Relaxed),
                bytes_freed: self.reaper.bytes_freed.load(Ordering::Relaxed),
                tasks_handed_over: self.reaper.tasks_handed_over.load(Ordering::Relaxed),
                owners_cleared: self.reaper.owners_cleared.load(Ordering::Relaxed),
            },
            segments: self.ipc.usage(),
        }
    }

    /// The registered clients as `(client id, pid)`, sorted by id: what a
    /// process reaper checks for dead processes.
    pub fn registered_clients(&self) -> Vec<(u32, u32)> {
        self.clients.list()
    }

    /// Forgets client `client_id` (its process died, or it unregistered);
    /// returns its pid if it was registered.
    pub fn forget_client(&self, client_id: u32) -> Option<u32> {
        self.clients.forget(client_id)
    }

    /// Answers one control request (from a peer that presented the key).
    fn answer(&self, req: Request) -> Reply {
        match req {
            Request::Register { pid } => {
                let id = match self.clients.register(pid) {
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
                    node_id: self.node_id,
                    client_id: id,
                    runtime_pid: std::process::id(),
                    segments: self.ipc.describe(),
                    fingerprint: AbiFingerprint::current().to_string(),
                    wait_timeout_ms: self.config.client_wait_timeout.as_millis() as u64,
                    task_deadline_ms: self
                        .config
                        .task_deadline
                        .map_or(0, |d| d.as_millis() as u64),
                })
            }
            Request::Unregister { client_id } => {
                self.forget_client(client_id);
                Reply::Ok {
                    pid: std::process::id(),
                }
            }
            Request::Status => Reply::Status(self.status()),
            Request::Stop => {
                self.request_stop("a stop request");
                Reply::Ok {
                    pid: std::process::id(),
                }
            }
        }
    }
}

/// A started runtime.
pub struct Runtime {
    shared: Arc<Shared>,
    server: ZmqServer,
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

/// A worker thread: runs the worker and, should the worker's own code panic
/// past every guard (a bug), logs it and starts the worker again on the same
/// lanes, so they are never left without a consumer.
pub(crate) fn worker_thread(
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    consumer: chi_sdk::queue::Consumer,
    lanes: Vec<usize>,
) {
    let id = stats.id;
    let mut consumer = Some(consumer);
    loop {
        let c = match consumer.take() {
            Some(c) => c,
            None => match shared.ipc.queue.consumer(&lanes) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(worker = id, error = %e, "worker could not take its lanes back; stopping");
                    shared.request_stop("a worker that could not restart");
                    return;
                }
            },
        };
        let worker = match Worker::new(shared.clone(), stats.clone(), c) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(worker = id, error = %e, "worker could not start; stopping");
                shared.request_stop("a worker that could not start");
                return;
            }
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run())) {
            Ok(()) => return,
            Err(p) => {
                let what = crate::worker::panic_message(&*p);
                stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::error!(worker = id, panic = %what, "worker died; restarting it on its lanes");
                if shared.stopping() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Binds the first host of the list this machine can (node id = its index + 1),
/// admitting peers that present `key`.
fn bind(cfg: &Config, key: &ControlKey) -> Result<(ZmqServer, u32)> {
    let mut last = None;
    for (i, host) in cfg.hosts.iter().enumerate() {
        match ZmqServer::bind(host, cfg.port, key.clone()) {
            Ok(s) => return Ok((s, i as u32 + 1)),
            Err(e @ TransportError::AddressInUse { .. }) => {
                bail!("{e}; stop it with 'chi-runtime stop' or choose another port")
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => bail!(
            "cannot bind any host of the hostfile on port {}: {e}",
            cfg.port
        ),
        None => bail!("the host list is empty"),
    }
}

impl Runtime {
    /// Starts a runtime with `config`; returns once it is ready.
    pub fn start(config: Config) -> Result<Runtime> {
        config.check_resources()?;
        let t0 = Instant::now();
        let dir = RuntimeDir::ensure()?;
        let key = ControlKey::generate().context("reading random bytes for the runtime's key")?;
        let (server, node_id) = bind(&config, &key)?;
        // Only now that the port is ours: a stale key of this port is replaced.
        let key_file = key.write(&dir, config.port)?;
        tracing::debug!(path = %key_file.path().display(), "key written");
        let low_workers = config.workers.low_latency.max(1);
        let high_workers = config.workers.high_latency;
        let low_lanes = config.queue.lanes.max(1);
        let high_lanes = high_workers;
        let ipc = Ipc::create(&config, node_id, low_lanes, high_lanes)?;
        if MODULES
            .set(ModuleManager::new(
                &config.module_path,
                vec![Builtin {
                    name: chi_sdk::admin::ADMIN_LIB_NAME,
                    entry: crate::admin::CHIMOD_ENTRY,
                }],
                ipc.segment_infos(),
            ))
            .is_err()
        {
            tracing::debug!("module manager already set in this process; reusing it");
        }
        let clients = ClientRegistry::new(config.control.max_clients as usize);
        let shared = Arc::new(Shared {
            pools: PoolManager::new(chi_sdk::types::NodeId(node_id)),
            config,
            node_id,
            ipc,
            stop: AtomicBool::new(false),
            started: Instant::now(),
            clients,
            workers: Mutex::new(Vec::new()),
            reaper: ReaperStats::default(),
        });
        *crate::admin::CURRENT
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(&shared));
        shared
            .create_pool(
                chi_sdk::admin::ADMIN_LIB_NAME,
                "admin",
                "",
                PoolId::ADMIN,
                false,
            )
            .context("creating the admin pool")?;
        for p in &shared.config.compose.clone() {
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
        for (id, (kind, lanes)) in plan.into_iter().enumerate() {
            let stats = Arc::new(WorkerStats::new(id as u32, kind, lanes.clone()));
            let consumer = q.consumer(&lanes)?;
            shared
                .workers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(stats.clone());
            let sh = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("chi-worker-{id}"))
                    .spawn(move || worker_thread(sh, stats, consumer, lanes))?,
            );
        }
        let sh = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("chi-supervisor".into())
                .spawn(move || crate::reaper::run(sh))?,
        );
        let signal = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, signal.clone())?;
        }
        tracing::info!(
            node = node_id,
            endpoint = server.endpoint(),
            workers = threads.len(),
            ready_in_us = t0.elapsed().as_micros() as u64,
            "runtime ready"
        );
        Ok(Runtime {
            shared,
            server,
            key_file,
            threads,
            signal,
        })
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves the loopback socket until a stop is requested, then stops.
    pub fn serve(mut self) -> Result<()> {
        while !self.shared.stopping() {
            if self.signal.load(Ordering::Relaxed) {
                self.shared.request_stop("a signal");
                break;
            }
            let msg = match self.server.recv(Duration::from_millis(50)) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket error");
                    continue;
                }
            };
            let reply = match msg {
                Incoming::Request(bytes) => match serde_json::from_slice::<Request>(&bytes) {
                    Ok(req) => self.shared.answer(req),
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
            let bytes = serde_json::to_vec(&reply).unwrap_or_default();
            if let Err(e) = self.server.reply(&bytes) {
                tracing::warn!(error = %e, "could not reply on the control socket");
            }
        }
        self.shutdown();
        Ok(())
    }

    fn shutdown(self) {
        let Runtime {
            shared,
            server,
            key_file,
            threads,
            ..
        } = self;
        drop(server);
        drop(key_file);
        for t in threads {
            let _ = t.join();
        }
        shared.pools.clear();
        shared.ipc.set_state(runtime_state::STOPPED);
        *crate::admin::CURRENT
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        tracing::info!("runtime stopped");
        // Dropping the last Arc unmaps and unlinks the segments.
    }
}
