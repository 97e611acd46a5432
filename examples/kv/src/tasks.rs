//! The parameters of a kv pool, its result codes and the tasks of its methods.

use chi_sdk::bytes::{ClientBuf, ClientBytes};
use chi_sdk::shm::ShmVec;

/// The parameters of a pool.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CreateParams {
    /// Most bytes a value may hold (0: no limit).
    pub max_value: u64,
}

/// The module's result codes.
pub mod errcode {
    /// No such key.
    pub const NOT_FOUND: i32 = chi_sdk::task::code::MODULE_BASE;
    /// A value larger than the pool's `max_value`.
    pub const TOO_LARGE: i32 = chi_sdk::task::code::MODULE_BASE + 1;
}

/// `kPut`: stores `value` under `key`.
#[chi_sdk::task(method = 10)]
#[derive(Debug)]
pub struct PutTask {
    /// The key.
    pub key: ClientBytes,
    /// The value.
    pub value: ClientBytes,
    /// Whether the key held a value before (1) or not (0).
    #[output]
    pub replaced: u64,
}

/// `kGet`: the value of `key`; fails with [`errcode::NOT_FOUND`].
#[chi_sdk::task(method = 11)]
#[derive(Debug)]
pub struct GetTask {
    /// The key.
    pub key: ClientBytes,
    /// The value.
    #[output]
    pub value: ClientBuf,
}

/// `kDelete`: removes `key`; fails with [`errcode::NOT_FOUND`].
#[chi_sdk::task(method = 12)]
#[derive(Debug)]
pub struct DeleteTask {
    /// The key.
    pub key: ClientBytes,
    /// The bytes of the value removed.
    #[output]
    pub freed: u64,
}

/// `kScan`: the keys that start with `prefix`, in order.
#[chi_sdk::task(method = 13)]
#[derive(Debug)]
pub struct ScanTask {
    /// The prefix (empty: every key).
    pub prefix: ClientBytes,
    /// At most this many keys (0: all).
    pub limit: u64,
    /// The keys.
    #[output]
    pub keys: ShmVec<ShmVec<u8>>,
}

/// `kStats`: how many keys, and the bytes of their values.
#[chi_sdk::task(method = 14)]
#[derive(Debug)]
pub struct StatsTask {
    /// Keys stored.
    #[output]
    pub keys: u64,
    /// Bytes of the values stored.
    #[output]
    pub bytes: u64,
}
