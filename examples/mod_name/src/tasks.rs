//! The parameters of a `chimaera_mod_name` pool and the tasks of its methods
//! (`kCustom` 10, `kPanic` 11, `kEcho` 14, `kSleep` 15, `kFanOut` 16,
//! `kRecurse` 17), with the ops of [`CustomTask`].

use chi_sdk::shm::ShmString;
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

/// The module's creation parameters (seed: `CreateParams`), given by the client
/// that creates a pool.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CreateParams {
    /// Kept by the container and quoted in its error messages.
    pub config_data: String,
    /// Makes `create` fail (to test how a failed create is reported).
    pub fail: bool,
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
#[chi_sdk::task(method = 15)]
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

/// Submits `n` Echo subtasks, of values `1..=n`, to pool `target`, waits for
/// them all and sums their answers.
#[chi_sdk::task(method = 16)]
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
