//! The node state: what one runtime is made of, shared by its threads.
//!
//! # Design
//!
//! A runtime's state is one [`NodeState`], built at start and held through an
//! `Arc` by everything that works for the runtime: the control loop
//! ([`crate::runtime`]), the workers, the supervisor. It owns the
//! configuration, the shared memory ([`Ipc`]), the pool table, the module
//! manager, the client registry and the statistics of the workers and the
//! reaper. Nothing of a runtime lives in a process global: a module manager,
//! its services table and its built-in modules belong to one node state, and
//! the built-in admin module reaches the node state through the weak
//! reference its constructor was given ([`NodeState::new`]), not through a
//! global. The state is dropped when the last thread working for the runtime
//! is gone; dropping it unmaps and unlinks the segments.
//!
//! # One runtime per process
//!
//! A module library is loaded once per process, whoever loads it, and keeps
//! the services table and the segments of the runtime that initialised it in
//! process-wide state of its own (its copy of chi-sdk, the built-in admin
//! module's being the runtime's own): the services pointer, the adopted
//! segments (which keep their segment ids taken in that copy's table of
//! mapped segments) and their allocators. Two runtimes of one process would
//! share every library, each re-pointing it at its own segments: tasks of one
//! would allocate in the other's memory. Nor can a library be handed to a
//! later runtime once the first has stopped: the segments it adopted are never
//! released, and the next runtime's segments, which take the same ids, cannot
//! be adopted next to them.
//!
//! So a process hosts one runtime in its life. [`ProcessClaim::take`], the
//! first step of a start, refuses a second one with a [`ProcessTaken`] error
//! that says why and what to do (run it in a process of its own). A start
//! that fails before it builds its node state gives the claim back; from the
//! node state on, module libraries may hold the runtime's services, and the
//! claim is kept until the process exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use anyhow::Result;
use chi_sdk::proto::{
    LaneStatus, ModelStatus, PeerStatus, PeerTraffic, PoolStatus, ReaperStatus, StatusReport,
    WorkerStatus, runtime_state,
};
use chi_sdk::queue::Priority;
use chi_sdk::types::{NodeId, PoolId};

use crate::clients::ClientRegistry;
use crate::cluster::membership::Membership;
use crate::cluster::pools::PoolSpec;
use crate::config::Config;
use crate::ipc::Ipc;
use crate::module::{Builtin, ModuleManager};
use crate::pool::PoolManager;
use crate::reaper::ReaperStats;
use crate::worker::supervision::{WorkerStats, phase};

/// The port of the runtime this process hosts, once one is starting.
static HOSTED: Mutex<Option<u16>> = Mutex::new(None);

/// A runtime was started in a process that hosts one already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot start a runtime on port {port}: this process already hosts the runtime of port \
     {hosted}. A module library keeps the services and segments of the runtime that loaded it \
     in process-wide state for the life of the process, so a process hosts one runtime in its \
     life; start this runtime in a process of its own ('chi-runtime start')"
)]
pub struct ProcessTaken {
    /// The port of the runtime the process hosts (running or stopped).
    pub hosted: u16,
    /// The port of the runtime refused.
    pub port: u16,
}

/// This process's right to host a runtime (see the module doc): taken at the
/// start of a start, before anything is created. Dropped before the node state
/// is built (the start failed), it is given back; once a node state holds it,
/// it is kept for the life of the process.
#[derive(Debug)]
pub struct ProcessClaim {
    /// Module libraries may hold this runtime's services: never give it back.
    spent: bool,
}

impl ProcessClaim {
    /// Claims this process for the runtime of `port`, unless it hosts one.
    pub fn take(port: u16) -> Result<ProcessClaim, ProcessTaken> {
        let mut hosted = HOSTED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hosted) = *hosted {
            return Err(ProcessTaken { hosted, port });
        }
        *hosted = Some(port);
        Ok(ProcessClaim { spent: false })
    }
}

impl Drop for ProcessClaim {
    fn drop(&mut self) {
        if !self.spent {
            *HOSTED.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// The state of this node's runtime, shared by its threads (see the module
/// doc).
pub struct NodeState {
    /// The configuration.
    pub config: Config,
    /// This node's id.
    pub node_id: u32,
    /// Pools (declared before `ipc`: dropped first, their containers may
    /// still use the segments).
    pub pools: PoolManager,
    /// The module libraries this runtime loaded.
    pub modules: ModuleManager,
    /// Shared memory.
    pub ipc: Ipc,
    stop: AtomicBool,
    started: Instant,
    /// Registered client processes.
    pub(crate) clients: ClientRegistry,
    workers: Mutex<Vec<Arc<WorkerStats>>>,
    /// What the process reaper did.
    pub reaper: ReaperStats,
    /// Flush tasks running now (they wait for every other task).
    pub(crate) flushes: std::sync::atomic::AtomicU64,
    /// The CPUs the supervisor thread may run on (`0-3`), once it started.
    pub(crate) supervisor_cpus: std::sync::OnceLock<String>,
    /// Held while lanes change workers (moves, retirements): see
    /// [`crate::worker::moves`].
    pub(crate) lane_moves: Mutex<()>,
    /// The performance models the reinforcement thread learns.
    pub models: crate::models::Models,
    /// The CPUs the reinforcement thread may run on, once it started.
    pub(crate) reinforcement_cpus: std::sync::OnceLock<String>,
    /// The membership table of the cluster, set once the peer link runs (see
    /// [`crate::cluster`]): what `status` shows of the other nodes, and where
    /// code that works with other nodes subscribes to their
    /// [`PeerEvent`](crate::cluster::membership::PeerEvent)s. Unset without a
    /// hostfile of more than one host: the report lists this node alone.
    pub membership: std::sync::OnceLock<Arc<Membership>>,
    /// Asks the peer thread for pools over the cluster; unset without a
    /// peer link (a runtime alone makes such pools by itself).
    pub pool_asker: std::sync::OnceLock<crate::cluster::peer::PoolAsker>,
    /// What the workers share with the peer thread to send remote tasks
    /// and replies themselves ([`crate::cluster::wire`]); unset without a
    /// peer link.
    pub wire: std::sync::OnceLock<Arc<crate::cluster::wire::Wire>>,
    /// The peer socket's receiving side, which a worker waiting on remote
    /// work reads too ([`crate::cluster::intake`]); unset without a peer
    /// link.
    pub intake: std::sync::OnceLock<Arc<crate::cluster::intake::Intake>>,
    /// The tasks of other nodes running here ([`crate::remote::serving`]).
    pub serving: Arc<crate::remote::serving::ServingTable>,
    /// The process's claim, spent: no other runtime starts in this process.
    _claim: ProcessClaim,
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState")
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl NodeState {
    /// The state of node `node_id` (its runtime holds `claim`), with its
    /// configuration, its shared memory, an empty pool table and a module
    /// manager knowing the built-in modules `builtins` makes; they are given
    /// the node state they serve (as a weak reference: the state owns the
    /// modules).
    pub fn new(
        config: Config,
        node_id: u32,
        ipc: Ipc,
        claim: ProcessClaim,
        builtins: impl FnOnce(&Weak<NodeState>) -> Vec<Builtin>,
    ) -> Arc<NodeState> {
        // From here on, module libraries may be initialised with this
        // runtime's services.
        let mut claim = claim;
        claim.spent = true;
        Arc::new_cyclic(|node| NodeState {
            modules: ModuleManager::new(
                &config.module_path,
                builtins(node),
                node_id,
                ipc.segment_infos(),
            ),
            pools: PoolManager::new(NodeId(node_id)),
            clients: ClientRegistry::new(config.control.max_clients as usize),
            config,
            node_id,
            ipc,
            stop: AtomicBool::new(false),
            started: Instant::now(),
            workers: Mutex::new(Vec::new()),
            reaper: ReaperStats::default(),
            flushes: std::sync::atomic::AtomicU64::new(0),
            lane_moves: Mutex::new(()),
            models: crate::models::Models::default(),
            reinforcement_cpus: std::sync::OnceLock::new(),
            supervisor_cpus: std::sync::OnceLock::new(),
            membership: std::sync::OnceLock::new(),
            pool_asker: std::sync::OnceLock::new(),
            wire: std::sync::OnceLock::new(),
            intake: std::sync::OnceLock::new(),
            serving: Arc::default(),
            _claim: claim,
        })
    }

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

    /// Adds a worker (at start, and one that took over a wedged worker's lanes).
    pub(crate) fn add_worker(&self, stats: Arc<WorkerStats>) {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stats);
    }

    /// Drops the registrations of client processes that are gone; returns how
    /// many it dropped.
    pub fn forget_dead_clients(&self) -> u64 {
        self.clients.forget_dead()
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
        let m = self.modules.get(module)?;
        Ok(self.pools.create(m, name, args, id, goc)?)
    }

    /// Creates this node's share of the pool over the cluster `spec`
    /// (idempotent; see [`crate::cluster::pools`]).
    pub fn create_share(&self, spec: &PoolSpec) -> Result<()> {
        let m = self.modules.get(&spec.module)?;
        let placement = spec.placement().map_err(anyhow::Error::msg)?;
        Ok(self
            .pools
            .create_share(m, PoolId(spec.id), &spec.name, &spec.args, placement)?)
    }

    /// Destroys pool `id` of this node (its containers end once no task
    /// holds them; periodic tasks of them end).
    pub fn destroy_pool(&self, id: PoolId) -> Result<(), crate::pool::PoolError> {
        self.pools.destroy(id)?;
        crate::worker::sched::sweep_all(&self.workers(), &self.ipc.queue);
        Ok(())
    }

    /// Destroys this node's share of pool `id` over the cluster;
    /// `Ok(false)` if no pool over the cluster has that id here (a pool of
    /// this node alone is never destroyed by another node).
    pub fn destroy_share(&self, id: PoolId) -> Result<bool, String> {
        match self.pools.get(id) {
            Some(p) if p.placement.is_some() => {}
            _ => return Ok(false),
        }
        match self.destroy_pool(id) {
            Ok(()) => Ok(true),
            // Destroyed meanwhile by this node's own admin.
            Err(crate::pool::PoolError::NoPool(_)) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The status report.
    pub fn status(&self) -> StatusReport {
        let (cluster, peer_frames_refused, peer_traffic) = match self.membership.get() {
            Some(m) => {
                let traffic = PeerTraffic {
                    connections_refused: m.connections_refused(),
                    ..m.traffic().snapshot()
                };
                (m.snapshot(), m.refused(), Box::new(traffic))
            }
            None => (
                vec![PeerStatus {
                    node_id: self.node_id,
                    host: self.config.hosts.first().cloned().unwrap_or_default(),
                    address: self.config.hosts.first().cloned().unwrap_or_default(),
                    state: "self".into(),
                    incarnation: 0,
                    last_heartbeat_ms: None,
                }],
                0,
                Default::default(),
            ),
        };
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
                    lanes: w.lanes(),
                    tasks_completed: w.completed.load(Ordering::Relaxed),
                    sleeping: w.sleeping.load(Ordering::Relaxed),
                    stalled: w.stalled.load(Ordering::Relaxed),
                    live_tasks: w.live.load(Ordering::Relaxed),
                    parked_tasks: w.blocked.load(Ordering::Relaxed),
                    periodic_tasks: w.periodic.load(Ordering::Relaxed),
                    running: running_task(w),
                    refused: w.refused.load(Ordering::Relaxed),
                    panics: w.panics.load(Ordering::Relaxed),
                    cells_skipped: w.cells_skipped.load(Ordering::Relaxed),
                    restarts: w.restarts.load(Ordering::Relaxed),
                    retired: w.phase.load(Ordering::Relaxed) == phase::RETIRED,
                    cpus: w.cpus.get().cloned().unwrap_or_default(),
                    load_us: w.load_ns.load(Ordering::Relaxed) as f64 / 1e3,
                    lanes_given: w.lanes_given.load(Ordering::Relaxed),
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
            supervisor_cpus: self.supervisor_cpus.get().cloned().unwrap_or_default(),
            models: self
                .models
                .methods()
                .into_iter()
                .map(|((pool, method), m)| ModelStatus {
                    pool,
                    method,
                    cost_us: m.cost_ns / 1e3,
                    estimate_us: m.est_ns / 1e3,
                    samples: m.samples,
                })
                .collect(),
            reinforcement_cpus: self.reinforcement_cpus.get().cloned().unwrap_or_default(),
            cluster,
            peer_frames_refused,
            peer_traffic,
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
}

/// What worker `w` runs now, if it is inside a task: its task node, pool and
/// method, read from the task's header (checked by magic and generation, as
/// the supervisor does, since the worker may finish it meanwhile).
fn running_task(w: &WorkerStats) -> Option<String> {
    // Relaxed: monitoring figures.
    if w.phase.load(Ordering::Relaxed) != phase::IN_TASK {
        return None;
    }
    let task = w.current_task()?;
    // SAFETY: `current_task` checked that the block of the mapped main segment
    // still holds the worker's task; plain fields read with volatile reads.
    let (node, pool, method) = unsafe {
        (
            std::ptr::read_volatile(std::ptr::addr_of!((*task).task_node)),
            std::ptr::read_volatile(std::ptr::addr_of!((*task).pool_id)),
            std::ptr::read_volatile(std::ptr::addr_of!((*task).method)),
        )
    };
    Some(format!(
        "task {}.{} (major.depth) of {pool}, method {method}",
        node.major, node.minor
    ))
}
