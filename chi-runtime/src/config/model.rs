//! The typed configuration: what the runtime reads once the defaults and the
//! user's file are merged and every value is checked.
//!
//! Every field holds a checked value in the runtime's own units (bytes,
//! [`Duration`]s, counts). A [`Config`] also remembers, apart from its value,
//! where each key was set, so that checks made later (at start, against the
//! machine) still name the file, line and key.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::cpus::CpuList;
use super::error::KeyOrigins;

/// The runtime's configuration: the defaults with the user's file applied, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// TCP port of the runtime's server (never 0).
    pub port: u16,
    /// The hostfile, if any (relative paths resolved against the config file's directory).
    pub hostfile: Option<PathBuf>,
    /// The hosts of the cluster, in hostfile order (node id = index + 1);
    /// `["127.0.0.1"]` without a hostfile.
    pub hosts: Vec<String>,
    /// Sizes of the shared-memory segments.
    pub segments: SegmentSizes,
    /// Worker threads of each kind.
    pub workers: WorkerCounts,
    /// The CPUs each kind of thread may run on (`workers.affinity`).
    pub affinity: AffinityConfig,
    /// The process queue's shape.
    pub queue: QueueConfig,
    /// Coroutine settings.
    pub coroutine: CoroutineConfig,
    /// Directories searched for ChiMod runtime libraries, in order.
    pub module_path: Vec<PathBuf>,
    /// Log settings.
    pub logging: LoggingConfig,
    /// How workers go idle.
    pub idle: IdleConfig,
    /// How long a client waits for a stopped or dead runtime before erroring.
    pub client_wait_timeout: Duration,
    /// The process reaper.
    pub reaper: ReaperConfig,
    /// The worker supervisor.
    pub supervisor: SupervisorConfig,
    /// Subtasks and the end of tasks at stop.
    pub tasks: TasksConfig,
    /// The deadline a client's `wait` applies by default when the runtime is alive
    /// but the task makes no progress; `None`: wait without a deadline.
    pub task_deadline: Option<Duration>,
    /// The control socket.
    pub control: ControlConfig,
    /// The peer link between the runtimes of a cluster.
    pub cluster: ClusterConfig,
    /// Pools to create at start, in order.
    pub compose: Vec<PoolSpec>,
    /// The user's file the configuration came from (`None`: the defaults alone).
    pub source: Option<String>,
    /// Where the keys checked at start were set, for their errors.
    pub(super) origins: KeyOrigins,
}

/// Sizes in bytes of the three shared-memory segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSizes {
    /// Tasks shared by clients and the runtime.
    pub main: u64,
    /// Data that clients allocate and share with the runtime.
    pub client_data: u64,
    /// Data that the runtime allocates and shares with clients.
    pub runtime_data: u64,
}

/// Number of worker threads of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerCounts {
    /// Run the low-latency lanes, the process queue among them (at least 1).
    pub low_latency: u32,
    /// Run the high-latency lanes (at least 1).
    pub high_latency: u32,
    /// The reinforcement thread, which learns the ChiMods' performance models
    /// and moves lanes from overloaded workers to idle ones: 1 runs it, 0
    /// turns it off (see `crate::reinforcement`).
    pub reinforcement: u32,
    /// Reclaim what dead clients held: 0 (no reaper) or 1.
    pub process_reaper: u32,
}

impl WorkerCounts {
    /// Worker threads of all kinds.
    pub fn total(&self) -> u32 {
        self.low_latency + self.high_latency + self.reinforcement + self.process_reaper
    }
}

/// The CPUs each kind of runtime thread may run on (`workers.affinity`),
/// set when the thread starts; `None`: wherever the process may run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AffinityConfig {
    /// The low-latency workers.
    pub low_latency: Option<CpuList>,
    /// The high-latency workers.
    pub high_latency: Option<CpuList>,
    /// The reinforcement thread.
    pub reinforcement: Option<CpuList>,
    /// The supervisor thread, which watches the workers and runs the process
    /// reaper.
    pub process_reaper: Option<CpuList>,
}

impl AffinityConfig {
    /// The list of a kind of thread: `low_latency`, `high_latency`,
    /// `reinforcement` or `process_reaper` (the supervisor); `None` for no
    /// pinning or another name.
    pub fn of_kind(&self, kind: &str) -> Option<&CpuList> {
        match kind {
            "low_latency" => self.low_latency.as_ref(),
            "high_latency" => self.high_latency.as_ref(),
            "reinforcement" => self.reinforcement.as_ref(),
            "process_reaper" => self.process_reaper.as_ref(),
            _ => None,
        }
    }

    /// Every key with its list.
    pub fn keys(&self) -> [(&'static str, Option<&CpuList>); 4] {
        [
            ("workers.affinity.low_latency", self.low_latency.as_ref()),
            ("workers.affinity.high_latency", self.high_latency.as_ref()),
            (
                "workers.affinity.reinforcement",
                self.reinforcement.as_ref(),
            ),
            (
                "workers.affinity.process_reaper",
                self.process_reaper.as_ref(),
            ),
        ]
    }
}

/// The shape of the process queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Lanes per priority (default: one per low-latency worker).
    pub lanes: u32,
    /// Tasks one lane holds; a power of two, at least 2.
    pub depth: u32,
}

/// Coroutine settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoroutineConfig {
    /// Bytes of one coroutine stack; a multiple of
    /// [`STACK_SIZE_GRANULE`](super::STACK_SIZE_GRANULE).
    pub stack_size: usize,
    /// Live coroutines (running or suspended tasks) per worker at most; past it,
    /// tasks wait in their lanes. At least 1.
    pub max_live: u32,
}

/// Process reaper settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaperConfig {
    /// How often the reaper checks that registered clients are alive.
    pub interval: Duration,
}

/// Task settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TasksConfig {
    /// Deepest subtask below a client's task (the client's task is depth 0);
    /// a handler submitting past it gets an error.
    pub max_depth: u32,
    /// At stop, how long workers keep running the tasks they hold before
    /// failing the rest with `SHUTDOWN`.
    pub stop_drain: Duration,
}

/// Worker supervisor settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// A worker that has work but makes no progress for this long is reported as
    /// stalled, and its lanes are moved to other workers.
    pub stall_timeout: Duration,
}

/// Control socket settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlConfig {
    /// Registered clients at most. Each holds an allocator owner slot of the main
    /// segment, so this is at most
    /// [`footprint::max_clients_for`](super::footprint::max_clients_for) the workers.
    pub max_clients: u32,
}

/// The peer link between the runtimes of a cluster (`cluster` section; used
/// only with a hostfile of more than one host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// TCP port of the peer socket, on this node's hostfile address (the
    /// control port + 1 unless set); the same on every node.
    pub port: u16,
    /// The hostfile entry this runtime binds; `None`: the first it can.
    pub node: Option<String>,
    /// Between two heartbeats to each peer.
    pub heartbeat: Duration,
    /// A peer silent for longer is marked down.
    pub peer_timeout: Duration,
    /// Longest wait for another node's answer (a remote task, or a pool
    /// over the cluster being created); past it, or when the node goes down
    /// first, the task fails with an error naming the node.
    pub task_timeout: Duration,
    /// The file of the cluster key, which every node presents to the
    /// others' peer sockets (made if missing); `None`:
    /// `~/.chimaera/cluster.key` ([`chi_sdk::auth::default_cluster_key_file`]).
    pub key_file: Option<PathBuf>,
}

/// Log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// The most verbose level logged.
    pub level: LogLevel,
    /// File the log is appended to (`None`: standard error).
    pub file: Option<PathBuf>,
}

/// How workers go idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleConfig {
    /// How long a worker keeps polling after it last found work, before
    /// sleeping (three times as long after it sent remote records).
    pub busy_poll: Duration,
}

/// A log level, as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Informational messages and above.
    Info,
    /// Debug messages and above.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The level's name as written in the config (`"info"`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// The matching `tracing` level.
    pub fn to_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a `compose` pool's containers are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolQuery {
    /// On this node only.
    Local,
    /// On every node of the cluster.
    Global,
}

impl PoolQuery {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolQuery::Local => "local",
            PoolQuery::Global => "global",
        }
    }
}

impl fmt::Display for PoolQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pool to create when the runtime starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// ChiMod library name, e.g. `chimaera_bdev`.
    pub module: String,
    /// Pool name, unique among the `compose` entries.
    pub name: String,
    /// Where its containers are created.
    pub query: PoolQuery,
    /// A fixed pool id (never 0 or 1), or `None` to let the runtime choose
    /// (always `None` for a global pool: the cluster chooses).
    pub id: Option<u64>,
    /// A free-form string for the module's create method.
    pub args: Option<String>,
    /// Of a global pool: its containers over the cluster (1 to
    /// [`MAX_COMPOSE_CONTAINERS`](super::limits::MAX_COMPOSE_CONTAINERS));
    /// `None`: one per hostfile node. Always `None` for a local pool.
    pub containers: Option<u32>,
}
