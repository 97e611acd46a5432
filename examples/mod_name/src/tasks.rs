//! The parameters of a `chimaera_mod_name` pool and the tasks of its methods
//! (`kCustom` 10, `kPanic` 11, `kEcho` 14, `kSleep` 15), with the ops of
//! [`CustomTask`].

use chi_sdk::shm::ShmString;

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
