//! The parameters of a `chimaera_mod_name` pool and the tasks of its methods
//! (`kCustom` 10, `kPanic` 11, `kEcho` 14, `kSleep` 15, `kFanOut` 16,
//! `kRecurse` 17, `kCoMutexTest` 20, `kCoRwLockTest` 21, `kStackProbe` 22,
//! `kLocate` 23, `kCensus` 24, `kTally` 25),
//! with the ops of
//! [`CustomTask`], [`CoMutexTestTask`] and [`CoRwLockTestTask`].

use chi_sdk::bytes::ClientBuf;
use chi_sdk::shm::{ShmString, ShmVec};
use chi_sdk::types::PoolId;

/// `op` of [`CustomTask`]: upper-case `data`, result = its length in bytes.
pub const OP_UPPERCASE: u32 = 0;
/// `op` of [`CustomTask`]: result = the number of earlier Custom calls.
pub const OP_COUNT: u32 = 1;
/// `op` of [`CustomTask`]: append `:` and the pool name to `data`.
pub const OP_APPEND_POOL: u32 = 2;
/// `op` of [`CustomTask`]: result = the pool id of the container's own client
/// (made in `create` with `init_client`).
pub const OP_OWN_POOL: u32 = 3;
/// `op` of [`CustomTask`]: as [`OP_COUNT`], but the monitor panics in
/// LocalSchedule (to test that a monitor's failure is logged and the task
/// still runs).
pub const OP_MONITOR_PANICS: u32 = 90;
/// `op` of [`CustomTask`]: as [`OP_COUNT`], but the monitor routes the task
/// to a local queue `create` never made.
pub const OP_MONITOR_NO_QUEUE: u32 = 91;

/// The module's creation parameters (seed: `CreateParams`), given by the client
/// that creates a pool.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CreateParams {
    /// Kept by the container and quoted in its error messages.
    pub config_data: String,
    /// Makes `create` fail (to test how a failed create is reported).
    pub fail: bool,
    /// Makes `create` fail on this node only (0: on none), to test how a
    /// pool over the cluster one node cannot make is rolled back.
    pub fail_on_node: u32,
}

/// The seed's `CustomTask`.
#[chi_sdk::task(method = 10)]
#[derive(Debug)]
pub struct CustomTask {
    /// The string to transform; transformed in place.
    #[inout]
    pub data: ShmString,
    /// What to do ([`OP_UPPERCASE`], [`OP_COUNT`], [`OP_APPEND_POOL`]).
    pub op: u32,
    /// The answer.
    #[output]
    pub result: u32,
}

/// A task whose handler panics.
#[chi_sdk::task(method = 11)]
#[derive(Debug)]
pub struct PanicTask {
    /// Put into the panic message.
    pub value: u32,
}

/// Echoes `value` into `reply`.
#[chi_sdk::task(method = 14)]
#[derive(Debug)]
pub struct EchoTask {
    /// The value.
    pub value: u64,
    /// `value`.
    #[output]
    pub reply: u64,
}

/// A task that takes `ms` milliseconds.
#[chi_sdk::task(method = 15, client = false)]
#[derive(Debug)]
pub struct SleepTask {
    /// How long.
    pub ms: u32,
    /// 0: yield the coroutine while waiting; otherwise block the worker.
    pub block: u32,
}

/// [`FanOutTask::target_kind`]: the target is an admin pool (pool 1), whose
/// module is the runtime's own admin module.
pub const TARGET_ADMIN: u32 = 0;
/// [`FanOutTask::target_kind`]: the target is a `chimaera_mod_name` pool.
pub const TARGET_MOD_NAME: u32 = 1;
/// [`FanOutTask::target_kind`]: the target is a `chimaera_mod_name` pool,
/// and the echoes go one at a time: each is submitted once the one before
/// it answered (a subtask round trip each).
pub const TARGET_MOD_NAME_ONE_BY_ONE: u32 = 2;
/// [`FanOutTask::target_kind`]: the target is a `chimaera_mod_name` pool,
/// and echo `v` goes to the container of `DomainQuery::global_hash(v)`
/// (over a pool of the cluster: containers on other nodes too).
pub const TARGET_MOD_NAME_SPREAD: u32 = 3;

/// Submits `n` Echo subtasks, of values `1..=n`, to pool `target`, waits for
/// them all and sums their answers.
#[chi_sdk::task(method = 16, client = false)]
#[derive(Debug)]
pub struct FanOutTask {
    /// The pool the echoes go to.
    pub target: PoolId,
    /// Its module: [`TARGET_ADMIN`] or [`TARGET_MOD_NAME`].
    pub target_kind: u32,
    /// How many subtasks.
    pub n: u32,
    /// Non-zero (with [`TARGET_MOD_NAME`]): the subtasks are Sleeps of this
    /// many milliseconds instead of echoes, and `sum` is `n`.
    pub sleep_ms: u32,
    /// The sum of the answers (`n (n + 1) / 2` when all answered).
    #[output]
    pub sum: u64,
}

/// A tree of subtasks of the task's own pool: each task below `depth` 0
/// submits `fanout` children of depth `depth - 1` and waits for them.
#[chi_sdk::task(method = 17)]
#[derive(Debug)]
pub struct RecurseTask {
    /// Levels below this task.
    pub depth: u32,
    /// Children per task (1: a chain).
    pub fanout: u32,
    /// Tasks of the tree, this one included.
    #[output]
    pub tasks: u64,
    /// The deepest task node depth (`minor`) seen in the tree.
    #[output]
    pub deepest: u32,
}

/// A chain of subtasks of the task's own pool, `depth` levels below this
/// task, each waited for by its parent, that reports which levels ran on
/// their parent's coroutine (a subtask run inline has its parent's token).
#[chi_sdk::task(method = 22, client = false)]
#[derive(Debug)]
pub struct StackProbeTask {
    /// Levels below this task.
    pub depth: u32,
    /// Bytes of stack this task uses before it submits its child (to leave
    /// the child too little room to run inline).
    pub burn: u32,
    /// The deepest task sleeps this long (blocking where it runs).
    pub sleep_ms: u32,
    /// The token of the parent's coroutine (0: none).
    pub parent_token: u32,
    /// Bit `d` set: the task at task-node depth `d` ran inline.
    #[output]
    pub inline_levels: u64,
    /// The deepest task node depth (`minor`) of the chain.
    #[output]
    pub deepest: u32,
}

/// [`CoMutexTestTask::op`]: `iters` times, take the container's
/// [`CoMutex`](chi_sdk::sync::CoMutex), read its counter, yield inside the
/// critical section, write the counter + 1, release. `value`: the counter
/// after the task's last increment.
pub const MUTEX_COUNT: u32 = 0;
/// [`CoMutexTestTask::op`]: take the mutex and keep it, without holding the
/// worker, until a [`MUTEX_OPEN`] lets it go (one permit each). `value`: the
/// counter (unchanged).
pub const MUTEX_HOLD: u32 = 1;
/// [`CoMutexTestTask::op`]: give one [`MUTEX_HOLD`] task its leave (without
/// taking the mutex).
pub const MUTEX_OPEN: u32 = 2;
/// [`CoMutexTestTask::op`]: `queued` = tasks waiting for the mutex now,
/// `locked` = 1 if it is held (without taking it).
pub const MUTEX_STATUS: u32 = 3;
/// [`CoMutexTestTask::op`]: take the mutex, add 1 to the counter and, if
/// `iters` > 0, submit a `MUTEX_NESTED` subtask of `iters - 1` to the
/// container's own pool and wait for it — still holding the mutex, which the
/// subtask takes too. `value`: how much the counter grew while this task held
/// the mutex (`iters + 1` when every subtask got in and nobody else did).
pub const MUTEX_NESTED: u32 = 4;

/// Exercises the container's `CoMutex<u64>` counter (see the `MUTEX_` ops).
#[chi_sdk::task(method = 20, client = false)]
#[derive(Debug)]
pub struct CoMutexTestTask {
    /// What to do: a `MUTEX_` op.
    pub op: u32,
    /// Iterations ([`MUTEX_COUNT`]) or subtask levels ([`MUTEX_NESTED`]).
    pub iters: u32,
    /// The lane of the container's processing queue the task runs on, by
    /// hash (tasks of different `spread` run on different workers when there
    /// are several).
    pub spread: u32,
    /// See the op.
    #[output]
    pub value: u64,
    /// [`MUTEX_STATUS`]: tasks waiting for the mutex.
    #[output]
    pub queued: u32,
    /// [`MUTEX_STATUS`]: 1 if the mutex is held.
    #[output]
    pub locked: u32,
    /// The worker that ran the task.
    #[output]
    pub worker: u32,
}

/// The outputs of a [`CoMutexTestTask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoMutexReply {
    /// `value`.
    pub value: u64,
    /// `queued`.
    pub queued: u32,
    /// `locked`.
    pub locked: bool,
    /// `worker`.
    pub worker: u32,
}

impl CoMutexTestTask {
    /// The outputs.
    pub fn reply(&self) -> CoMutexReply {
        CoMutexReply {
            value: self.value,
            queued: self.queued,
            locked: self.locked != 0,
            worker: self.worker,
        }
    }
}

/// [`CoRwLockTestTask::op`]: `iters` times, take the container's
/// [`CoRwLock`](chi_sdk::sync::CoRwLock) to read, count itself among the
/// readers inside, yield `arg` times (at least once) inside, leave. Records
/// the most readers ever inside at once and any writer found inside.
/// `value`: the value read last.
pub const RW_READ: u32 = 0;
/// [`CoRwLockTestTask::op`]: `iters` times, take the lock to write, check
/// that no reader and no other writer is inside, read the value, yield `arg`
/// times (at least once), write it + 1. `value`: the value after the task's
/// last write.
pub const RW_WRITE: u32 = 1;
/// [`CoRwLockTestTask::op`]: take the lock to read and stay inside until `arg`
/// readers have been inside at once (`max_readers` reached `arg`; or 30 s
/// passed: then `max_readers` says how many came).
pub const RW_READ_TOGETHER: u32 = 2;
/// [`CoRwLockTestTask::op`]: take the lock to read and keep it until an
/// [`RW_OPEN`] lets it go.
pub const RW_HOLD_READ: u32 = 3;
/// [`CoRwLockTestTask::op`]: take the lock to write and keep it until an
/// [`RW_OPEN`] lets it go.
pub const RW_HOLD_WRITE: u32 = 4;
/// [`CoRwLockTestTask::op`]: give one `RW_HOLD_` task its leave.
pub const RW_OPEN: u32 = 5;
/// [`CoRwLockTestTask::op`]: `queued`, `locked`, `max_readers`, `violations`
/// now (without taking the lock).
pub const RW_STATUS: u32 = 6;
/// [`CoRwLockTestTask::op`]: take the lock to write, add 1 and, if `iters` >
/// 0, submit an `RW_NESTED` subtask of `iters - 1` to the container's own
/// pool and wait for it, still holding the lock; then read it under its own
/// write lock. `value`: how much it grew meanwhile (`iters + 1`).
pub const RW_NESTED: u32 = 7;
/// [`CoRwLockTestTask::op`]: take the lock to read and submit an
/// [`RW_NESTED`] subtask of `iters` (which writes: an upgrade within the task
/// graph) and wait for it, still reading. `value`: how much the value grew
/// meanwhile (`iters + 1`).
pub const RW_NESTED_UNDER_READ: u32 = 8;

/// Exercises the container's `CoRwLock<u64>` (see the `RW_` ops).
#[chi_sdk::task(method = 21, client = false)]
#[derive(Debug)]
pub struct CoRwLockTestTask {
    /// What to do: an `RW_` op.
    pub op: u32,
    /// Iterations, or subtask levels.
    pub iters: u32,
    /// Yields inside ([`RW_READ`], [`RW_WRITE`]), readers to wait for
    /// ([`RW_READ_TOGETHER`]).
    pub arg: u32,
    /// The lane of the container's processing queue the task runs on, by hash.
    pub spread: u32,
    /// See the op.
    #[output]
    pub value: u64,
    /// When the task (its last section) got in: a sequence shared by every
    /// section of the lock, from 1.
    #[output]
    pub seq: u64,
    /// The most readers seen inside at once so far.
    #[output]
    pub max_readers: u32,
    /// Sections so far that found another inside where none may be (a reader
    /// beside a writer, two writers).
    #[output]
    pub violations: u32,
    /// [`RW_STATUS`]: tasks waiting for the lock.
    #[output]
    pub queued: u32,
    /// [`RW_STATUS`]: 1 if the lock is held.
    #[output]
    pub locked: u32,
    /// The worker that ran the task.
    #[output]
    pub worker: u32,
}

/// The outputs of a [`CoRwLockTestTask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoRwLockReply {
    /// `value`.
    pub value: u64,
    /// `seq`.
    pub seq: u64,
    /// `max_readers`.
    pub max_readers: u32,
    /// `violations`.
    pub violations: u32,
    /// `queued`.
    pub queued: u32,
    /// `locked`.
    pub locked: bool,
    /// `worker`.
    pub worker: u32,
}

impl CoRwLockTestTask {
    /// The outputs.
    pub fn reply(&self) -> CoRwLockReply {
        CoRwLockReply {
            value: self.value,
            seq: self.seq,
            max_readers: self.max_readers,
            violations: self.violations,
            queued: self.queued,
            locked: self.locked != 0,
            worker: self.worker,
        }
    }
}

/// `key` of [`LocateTask`] sent with a `Dynamic` query: the monitor leaves
/// the choice to the runtime (round robin over the pool's containers).
pub const LOCATE_ANY: u64 = 0;
/// `key` of [`LocateTask`] sent with a `Dynamic` query: the monitor chooses
/// a container past the pool's (the task fails, naming the choice).
pub const LOCATE_PAST_END: u64 = u64::MAX;

/// Reports where it ran: the node and the container (its global id in a
/// pool over the cluster) whose handler served it. Sent with a `Dynamic`
/// query, its monitor (GlobalSchedule) routes it by `key`: container `key %
/// containers`, except [`LOCATE_ANY`] and [`LOCATE_PAST_END`].
#[chi_sdk::task(method = 23)]
#[derive(Debug)]
pub struct LocateTask {
    /// What the monitor routes a `Dynamic` query by.
    #[input]
    pub key: u64,
    /// The node that ran it.
    #[output]
    pub node_id: u32,
    /// The container that ran it.
    #[output]
    pub container_id: u32,
}

/// Reports the node and the container that ran it. Sent as a broadcast, the
/// generated default aggregation collects every container's answer, in
/// container order: the vectors, the string and the buffer append,
/// `first_node` and the `#[inout]` `tag` keep container 0's.
#[chi_sdk::task(method = 24)]
#[derive(Debug)]
pub struct CensusTask {
    /// In: any value; out: the value plus 100 times the container id.
    #[inout]
    pub tag: u32,
    /// The node that ran it.
    #[output]
    pub nodes: ShmVec<u32>,
    /// The container that ran it.
    #[output]
    pub containers: ShmVec<u32>,
    /// `c<container>@n<node>;`.
    #[output]
    pub trail: ShmString,
    /// The node that ran it, as a plain value.
    #[output]
    pub first_node: u32,
    /// `n<node>|`, in a client-data buffer the handler grows.
    #[output]
    pub note: ClientBuf,
}

/// Reports `add` plus the id of the container that ran it. Sent as a
/// broadcast, the module's `aggregate_tally` sums the replicas' answers.
#[chi_sdk::task(method = 25)]
#[derive(Debug)]
pub struct TallyTask {
    /// Added to the container's id.
    #[input]
    pub add: u64,
    /// `add` + the container id (a broadcast: the sum over the containers).
    #[output]
    pub total: u64,
    /// Replicas counted (1 per container).
    #[output]
    pub replicas: u32,
}
