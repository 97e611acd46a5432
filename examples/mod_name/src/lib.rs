//! The seed's `MOD_NAME` module in Rust: a container declared with
//! [`#[chi_sdk::chimod]`](chi_sdk::chimod), its tasks declared with
//! [`#[chi_sdk::task]`](chi_sdk::task), and its client, [`ModNameClient`].
//!
//! Built as `libchimaera_mod_name_runtime.so` (a `cdylib`) for the runtime to
//! load from its module path, and as an `rlib` for client programs.
//!
//! Methods (see `chimaera_mod.yaml`):
//! * `kCustom` (10): [`CustomTask`]: `op` [`OP_UPPERCASE`] upper-cases `data` in
//!   place and returns its length; [`OP_COUNT`] returns how many Custom calls the
//!   container ran before this one; [`OP_APPEND_POOL`] appends `:` and the pool's
//!   name to `data` (the output grows: the handler allocates it in the main
//!   segment); [`OP_OWN_POOL`] returns the pool id of the container's own client;
//!   other ops fail with a message.
//! * `kPanic` (11): [`PanicTask`]: the handler panics (the runtime must report
//!   `code::PANICKED` and keep serving).
//! * `kEcho` (14): [`EchoTask`]: answers `value`, like the admin pool's Echo
//!   (for measuring a loaded module's round trip against the built-in one).
//!
//! * `kSleep` (15): [`SleepTask`]: takes `ms` milliseconds, yielding its
//!   coroutine meanwhile, or (`block` ≠ 0) holding its worker without yielding
//!   (a misbehaving handler: for testing back-pressure and the supervisor).
//!
//! The container has two local queues: [`METADATA_QUEUE`] (one high-latency
//! lane) and [`PROCESSING_QUEUE`] (two low-latency lanes). Its monitor routes
//! Custom by the hash of `op`, so calls of one op stay in order on one lane.

use std::sync::atomic::{AtomicU32, Ordering};

use chi_sdk::abi::{MonitorMode, QueueId, RunCtx};
use chi_sdk::admin::AdminClient;
use chi_sdk::client::{CallError, Client, Pending};
use chi_sdk::container::CreateCtx;
use chi_sdk::queue::Priority;
use chi_sdk::shm::ShmString;
use chi_sdk::types::{DomainQuery, PoolId};

/// `op` of [`CustomTask`]: upper-case `data`, result = its length in bytes.
pub const OP_UPPERCASE: u32 = 0;
/// `op` of [`CustomTask`]: result = the number of earlier Custom calls.
pub const OP_COUNT: u32 = 1;
/// `op` of [`CustomTask`]: append `:` and the pool name to `data`.
pub const OP_APPEND_POOL: u32 = 2;
/// `op` of [`CustomTask`]: result = the pool id of the container's own client
/// (made in `create` with `init_client`).
pub const OP_OWN_POOL: u32 = 3;

/// The local queue for metadata operations.
pub const METADATA_QUEUE: QueueId = QueueId(0);
/// The local queue for processing.
pub const PROCESSING_QUEUE: QueueId = QueueId(1);

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

/// The container of a `chimaera_mod_name` pool.
#[derive(Debug)]
pub struct ModNameContainer {
    pool_name: String,
    /// A client of the container's own pool (seed: `InitClient`).
    own: ModNameClient,
    params: CreateParams,
    calls: AtomicU32,
}

/// kDestroy drops the container.
impl Drop for ModNameContainer {
    fn drop(&mut self) {
        chi_sdk::tracing::info!(pool = %self.pool_name, "mod_name container destroyed");
    }
}

#[chi_sdk::chimod]
impl ModNameContainer {
    /// kCreate: sets up the local queues and keeps the parameters.
    fn create(ctx: &mut CreateCtx<'_>, params: CreateParams) -> Result<Self, String> {
        if params.fail {
            return Err(format!(
                "asked to fail (fail = true, config_data {:?})",
                params.config_data
            ));
        }
        ctx.create_local_queue(METADATA_QUEUE, 1, Priority::HighLatency)?;
        ctx.create_local_queue(PROCESSING_QUEUE, 2, Priority::LowLatency)?;
        chi_sdk::tracing::info!(pool = ctx.pool_name(), "mod_name container created");
        Ok(ModNameContainer {
            pool_name: ctx.pool_name().to_owned(),
            own: ctx.init_client(),
            params,
            calls: AtomicU32::new(0),
        })
    }

    /// kCustom.
    fn custom(&self, task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
        let before = self.calls.fetch_add(1, Ordering::Relaxed);
        match task.op {
            OP_UPPERCASE => {
                task.data
                    .make_ascii_uppercase()
                    .map_err(|e| format!("cannot read data: {e}"))?;
                task.result = task.data.len() as u32;
                Ok(())
            }
            OP_COUNT => {
                task.result = before;
                Ok(())
            }
            OP_OWN_POOL => {
                task.result = self.own.pool.0 as u32;
                Ok(())
            }
            OP_APPEND_POOL => {
                let alloc = chi_sdk::container::main_allocator().map_err(|e| e.to_string())?;
                let text = format!(
                    "{}:{}",
                    task.data.to_str().map_err(|e| e.to_string())?,
                    self.pool_name
                );
                let grown = ShmString::from_str(alloc, &text).map_err(|e| e.to_string())?;
                let mut old = std::mem::replace(&mut task.data, grown);
                let _ = old.free(alloc);
                task.result = task.data.len() as u32;
                Ok(())
            }
            other => Err(format!(
                "pool '{}' (config_data {:?}): unknown op {other}",
                self.pool_name, self.params.config_data
            )),
        }
    }

    /// Custom runs on the processing lanes, by the hash of its op.
    fn monitor_custom(&self, mode: MonitorMode, task: &CustomTask, ctx: &mut RunCtx) {
        match mode {
            MonitorMode::LocalSchedule => {
                if let Ok(lane) = ctx.lane_by_hash(PROCESSING_QUEUE, u64::from(task.op)) {
                    ctx.route(lane);
                }
            }
            MonitorMode::EstLoad => ctx.set_est_load_us(1.0),
            MonitorMode::GlobalSchedule | MonitorMode::Cleanup => {}
        }
    }

    /// kPanic.
    fn panic(&self, task: &mut PanicTask, _ctx: &mut RunCtx) -> Result<(), String> {
        chi_sdk::tracing::warn!(value = task.value, "kPanic is about to panic");
        panic!("kPanic asked to panic with value {}", task.value)
    }

    /// kEcho.
    fn echo(&self, task: &mut EchoTask, _ctx: &mut RunCtx) -> Result<(), String> {
        task.reply = task.value;
        Ok(())
    }

    /// kSleep.
    fn sleep(&self, task: &mut SleepTask, ctx: &mut RunCtx) -> Result<(), String> {
        let until =
            std::time::Instant::now() + std::time::Duration::from_millis(u64::from(task.ms));
        while std::time::Instant::now() < until {
            if task.block != 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            } else {
                ctx.yield_now();
            }
        }
        Ok(())
    }
}

/// The client of a `chimaera_mod_name` pool (seed: `chimaera::MOD_NAME::Client`):
/// each method has a synchronous call and an `async_` call returning a
/// [`Pending`] task to `wait()` for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModNameClient {
    /// The pool.
    pub pool: PoolId,
}

impl From<PoolId> for ModNameClient {
    fn from(pool: PoolId) -> Self {
        ModNameClient { pool }
    }
}

impl ModNameClient {
    /// Creates (or finds) pool `pool_name` with `params` (seed: `Create`).
    pub fn create(
        client: &Client,
        pool_name: &str,
        params: &CreateParams,
    ) -> Result<ModNameClient, CallError> {
        AdminClient::new(client)
            .get_or_create(pool_name, params)
            .map(ModNameClient::from)
    }

    /// Submits the creation of pool `pool_name` (seed: `AsyncCreate`); the pool
    /// id is the task's `pool_id` once complete.
    pub fn async_create<'c>(
        client: &'c Client,
        pool_name: &str,
        params: &CreateParams,
    ) -> Result<Pending<'c, chi_sdk::admin::GetOrCreatePoolTask>, CallError> {
        AdminClient::new(client).async_get_or_create(pool_name, params)
    }

    /// Submits Custom.
    pub fn async_custom<'c>(
        &self,
        client: &'c Client,
        data: &str,
        op: u32,
    ) -> Result<Pending<'c, CustomTask>, CallError> {
        let data = ShmString::from_str(client.main_allocator(), data)?;
        client.submit(
            CustomTask::new(self.pool, DomainQuery::local(), data, op),
            Priority::LowLatency,
        )
    }

    /// Calls Custom: returns the (transformed) data and the result.
    pub fn custom(&self, client: &Client, data: &str, op: u32) -> Result<(String, u32), CallError> {
        self.async_custom(client, data, op)?.wait_with(|t| {
            let data = t
                .data
                .to_str()
                .map(str::to_owned)
                .unwrap_or_else(|e| format!("<{e}>"));
            (data, t.result)
        })
    }

    /// Submits Panic.
    pub fn async_panic<'c>(
        &self,
        client: &'c Client,
        value: u32,
    ) -> Result<Pending<'c, PanicTask>, CallError> {
        client.submit(
            PanicTask::new(self.pool, DomainQuery::local(), value),
            Priority::LowLatency,
        )
    }

    /// Calls Panic (always fails with `code::PANICKED`).
    pub fn panic(&self, client: &Client, value: u32) -> Result<(), CallError> {
        self.async_panic(client, value)?.wait_with(|_| ())
    }

    /// Submits Echo.
    pub fn async_echo<'c>(
        &self,
        client: &'c Client,
        value: u64,
    ) -> Result<Pending<'c, EchoTask>, CallError> {
        client.submit(
            EchoTask::new(self.pool, DomainQuery::local(), value),
            Priority::LowLatency,
        )
    }

    /// Calls Echo: returns `value`.
    pub fn echo(&self, client: &Client, value: u64) -> Result<u64, CallError> {
        self.async_echo(client, value)?.wait_with(|t| t.reply)
    }

    /// Submits Sleep (`block`: hold the worker instead of yielding).
    pub fn async_sleep<'c>(
        &self,
        client: &'c Client,
        ms: u32,
        block: bool,
    ) -> Result<Pending<'c, SleepTask>, CallError> {
        client.submit(
            SleepTask::new(self.pool, DomainQuery::local(), ms, u32::from(block)),
            Priority::LowLatency,
        )
    }

    /// Calls Sleep.
    pub fn sleep(&self, client: &Client, ms: u32, block: bool) -> Result<(), CallError> {
        self.async_sleep(client, ms, block)?.wait_with(|_| ())
    }

    /// Sends a task of `method` with no parameters (for testing how the module
    /// answers methods it does not support).
    pub fn call_method(&self, client: &Client, method: u32) -> Result<(), CallError> {
        let mut task = PanicTask::new(self.pool, DomainQuery::local(), 0);
        task.header.method = method;
        client.submit(task, Priority::LowLatency)?.wait_with(|_| ())
    }
}
