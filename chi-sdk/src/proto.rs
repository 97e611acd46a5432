//! What a client and the runtime say to each other outside the queues: the
//! control protocol over the loopback socket (JSON messages), and the runtime
//! block the runtime publishes in its main segment.

use serde::{Deserialize, Serialize};

use crate::shm::ShmSafe;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// Root slot of the main segment holding the process queue.
pub const ROOT_QUEUE: usize = 0;
/// Root slot of the main segment holding the [`RuntimeBlock`].
pub const ROOT_RUNTIME: usize = 1;

/// Default port of the runtime's loopback socket.
pub const DEFAULT_PORT: u16 = 9513;

/// States of [`RuntimeBlock::state`].
pub mod runtime_state {
    /// Accepting and running tasks.
    pub const RUNNING: u32 = 1;
    /// Stopping: in-flight tasks are finished or failed; no new ones are taken.
    pub const STOPPING: u32 = 2;
    /// Stopped.
    pub const STOPPED: u32 = 3;
}

/// Facts about the runtime that clients read from shared memory.
#[repr(C)]
#[derive(Debug)]
pub struct RuntimeBlock {
    /// `b"CHIRUNTM"`.
    pub magic: u64,
    /// pid of the runtime process.
    pub pid: u32,
    /// One of [`runtime_state`]; also a futex word.
    pub state: AtomicU32,
    /// This node's id.
    pub node_id: u32,
    /// Entries of the `lane_beats` array (the process queue's lanes).
    pub num_lanes: u32,
    /// Start time, nanoseconds since the Unix epoch.
    pub started_unix_ns: u64,
    /// Next task-graph major id to hand out (clients take ranges).
    pub next_major: AtomicU64,
    /// An array of `num_lanes` [`AtomicU64`]s: for each process-queue lane, the
    /// `CLOCK_MONOTONIC` time in milliseconds ([`monotonic_ms`]) at which the
    /// runtime's supervisor last saw the worker serving that lane make progress
    /// (or idle with nothing to do). A waiting client whose task's lane has not
    /// moved for its deadline reports the task as stuck instead of waiting on.
    pub lane_beats: crate::shm::ShmPtr,
}

/// `CLOCK_MONOTONIC` in milliseconds: one clock for every process of the machine,
/// so the runtime's lane beats and a client's wait can be compared.
pub fn monotonic_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// Magic of [`RuntimeBlock`].
pub const RUNTIME_MAGIC: u64 = u64::from_le_bytes(*b"CHIRUNTM");

// SAFETY: repr(C) of integers and atomic integers; every bit pattern is valid.
unsafe impl ShmSafe for RuntimeBlock {}

/// A request on the loopback socket.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// A client process announces itself.
    Register {
        /// Its pid.
        pid: u32,
    },
    /// A client process leaves.
    Unregister {
        /// Its client id.
        client_id: u32,
    },
    /// What the runtime is doing.
    Status,
    /// Stop the runtime.
    Stop,
    /// The status of node `node` of the cluster, asked through this runtime's
    /// peer link (this node's own status if it is this node).
    NodeStatus {
        /// The node id (hostfile offset + 1).
        node: u32,
    },
}

/// One segment in a [`Registration`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SegmentDesc {
    /// `main`, `client_data` or `runtime_data`.
    pub role: String,
    /// Name in `/dev/shm`.
    pub name: String,
    /// Segment id.
    pub id: u16,
    /// Size in bytes.
    pub size: u64,
}

/// What a registering client learns.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Registration {
    /// This node.
    pub node_id: u32,
    /// The client's id.
    pub client_id: u32,
    /// The runtime's pid.
    pub runtime_pid: u32,
    /// The segments to map.
    pub segments: Vec<SegmentDesc>,
    /// The runtime's ABI fingerprint, as text.
    pub fingerprint: String,
    /// How long a client keeps waiting for a task once the runtime is stopping.
    pub wait_timeout_ms: u64,
    /// How long a client keeps waiting for a task whose lane makes no progress
    /// (a wedged or dead worker) before it reports an error; 0 = for ever.
    #[serde(default)]
    pub task_deadline_ms: u64,
}

/// One worker in a [`StatusReport`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct WorkerStatus {
    /// Worker id.
    pub id: u32,
    /// `low_latency` or `high_latency`.
    pub kind: String,
    /// Process-queue lanes it serves.
    pub lanes: Vec<usize>,
    /// Tasks it completed.
    pub tasks_completed: u64,
    /// Whether it is asleep on its doorbell.
    pub sleeping: bool,
    /// Whether the supervisor found it making no progress.
    #[serde(default)]
    pub stalled: bool,
    /// Live coroutines (running or suspended tasks).
    #[serde(default)]
    pub live_tasks: u64,
    /// Of those, tasks parked until a wake-up (waiting for subtasks, a lock
    /// or a timer): they cost no CPU.
    #[serde(default)]
    pub parked_tasks: u64,
    /// Of those, periodic tasks.
    #[serde(default)]
    pub periodic_tasks: u64,
    /// The task it runs now, if it is inside one: its task node (major and
    /// depth), pool and method.
    #[serde(default)]
    pub running: Option<String>,
    /// Words popped from its lanes that were not live tasks (dropped untouched).
    #[serde(default)]
    pub refused: u64,
    /// Panics of the runtime's own code caught on this worker.
    #[serde(default)]
    pub panics: u64,
    /// Lane cells claimed by a client that died before filling them, skipped.
    #[serde(default)]
    pub cells_skipped: u64,
    /// Times the worker thread was restarted.
    #[serde(default)]
    pub restarts: u64,
    /// Retired by the supervisor: it was wedged inside a task and another
    /// worker serves its lanes now.
    #[serde(default)]
    pub retired: bool,
    /// The CPUs its thread may run on (`0-3,8`; the configuration's
    /// `workers.affinity` applied); empty if unknown.
    #[serde(default)]
    pub cpus: String,
    /// Its load as the reinforcement thread estimated it last: the work
    /// queued on its lanes (their lengths times their learned cost per task)
    /// plus the time it has been inside its current task step, in µs.
    #[serde(default)]
    pub load_us: f64,
    /// Lanes the reinforcement thread moved away from it.
    #[serde(default)]
    pub lanes_given: u64,
}

/// What the runtime learned of one method, in a [`StatusReport`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ModelStatus {
    /// The pool.
    pub pool: u64,
    /// The method.
    pub method: u32,
    /// Learned cost of a task (a moving average of measured run times), in µs.
    pub cost_us: f64,
    /// Average of the module's Monitor(EstLoad) estimates, in µs (0: none).
    pub estimate_us: f64,
    /// Measurements learned from.
    pub samples: u64,
}

/// How much of a segment is in use, in a [`StatusReport`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct SegmentUsage {
    /// `main` or `client_data`.
    pub role: String,
    /// Usable bytes of live allocations.
    pub used_bytes: u64,
    /// Live allocations.
    pub live_blocks: u64,
    /// Free 64 KiB pages.
    pub free_pages: u64,
    /// Allocator owner slots taken (one per attached allocator handle).
    pub owners: u32,
}

/// What the process reaper reclaimed, in a [`StatusReport`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ReaperStatus {
    /// Dead client processes noticed.
    pub clients_reaped: u64,
    /// Blocks freed.
    pub blocks_freed: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// In-flight tasks of dead clients handed to the workers to free.
    pub tasks_handed_over: u64,
    /// Owner slots of dead processes cleared.
    pub owners_cleared: u64,
}

/// One lane in a [`StatusReport`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LaneStatus {
    /// Lane index.
    pub lane: usize,
    /// `low_latency` or `high_latency`.
    pub priority: String,
    /// Entries waiting.
    pub len: u64,
}

/// One pool in a [`StatusReport`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PoolStatus {
    /// Pool id.
    pub id: u64,
    /// Pool name.
    pub name: String,
    /// Module library name.
    pub module: String,
    /// Ids of this node's containers.
    pub containers: Vec<u32>,
}

/// The answer to [`Request::Status`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// This node.
    pub node_id: u32,
    /// The runtime's pid.
    pub pid: u32,
    /// Milliseconds since start.
    pub uptime_ms: u64,
    /// Workers.
    pub workers: Vec<WorkerStatus>,
    /// Process-queue lanes.
    pub lanes: Vec<LaneStatus>,
    /// Pools.
    pub pools: Vec<PoolStatus>,
    /// Tasks completed by all workers.
    pub tasks_completed: u64,
    /// Registered clients whose process is alive.
    pub clients: u32,
    /// What the process reaper reclaimed.
    #[serde(default)]
    pub reaper: ReaperStatus,
    /// Use of the main and client-data segments.
    #[serde(default)]
    pub segments: Vec<SegmentUsage>,
    /// The CPUs the supervisor thread (worker watch and process reaper) may
    /// run on (`0-3`); empty if unknown.
    #[serde(default)]
    pub supervisor_cpus: String,
    /// The performance models (per pool and method), most measured first;
    /// empty when `workers.reinforcement` is 0.
    #[serde(default)]
    pub models: Vec<ModelStatus>,
    /// The CPUs the reinforcement thread may run on; empty if it does not
    /// run.
    #[serde(default)]
    pub reinforcement_cpus: String,
    /// The nodes of the cluster as this runtime sees them, itself included
    /// (one entry without a hostfile).
    #[serde(default)]
    pub cluster: Vec<PeerStatus>,
    /// Frames from the peer port refused as malformed or not from a peer.
    #[serde(default)]
    pub peer_frames_refused: u64,
    /// What the peer link moved since the start (zero without peers;
    /// boxed: the report travels in an enum beside small replies).
    #[serde(default)]
    pub peer_traffic: Box<PeerTraffic>,
}

/// Counters of the peer link in a [`StatusReport`]: frames (every kind) and
/// their bytes, the batch frames among them and their bytes, and the
/// records they carried (requests: tasks and pool agreement's control
/// requests; replies).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerTraffic {
    /// Frames sent (handed to the transport).
    pub frames_out: u64,
    /// Frames received and decoded.
    pub frames_in: u64,
    /// Bytes of the frames sent.
    pub bytes_out: u64,
    /// Bytes of the frames received.
    pub bytes_in: u64,
    /// Batch frames (`TaskBatch`, `ReplyBatch`) sent.
    pub batches_out: u64,
    /// Batch frames received.
    pub batches_in: u64,
    /// Bytes of the batch frames sent.
    pub batch_bytes_out: u64,
    /// Bytes of the batch frames received.
    pub batch_bytes_in: u64,
    /// Request records sent.
    pub tasks_out: u64,
    /// Request records received.
    pub tasks_in: u64,
    /// Reply records sent.
    pub replies_out: u64,
    /// Reply records received.
    pub replies_in: u64,
    /// Connections to the peer port refused for not presenting the cluster
    /// key.
    #[serde(default)]
    pub connections_refused: u64,
    /// Of the batch frames received, those a worker waiting on remote work
    /// took itself, without the peer thread.
    #[serde(default)]
    pub batches_in_by_workers: u64,
}

/// One node of the cluster in a [`StatusReport`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Its node id (hostfile offset + 1).
    pub node_id: u32,
    /// Its hostfile entry.
    pub host: String,
    /// The address it was resolved to.
    pub address: String,
    /// `self`, `up`, `down` or `unknown` (never heard from).
    pub state: String,
    /// Its incarnation (start time in µs since the Unix epoch); 0 if unknown.
    pub incarnation: u64,
    /// Milliseconds since its last frame; none if never heard from (or self).
    pub last_heartbeat_ms: Option<u64>,
}

/// A reply on the loopback socket.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Answer to `Register`.
    Registered(Registration),
    /// Answer to `Status`.
    Status(StatusReport),
    /// Answer to `Stop` and `Unregister`.
    Ok {
        /// The runtime's pid.
        pid: u32,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}
