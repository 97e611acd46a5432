//! The client of a `chimaera_mod_name` pool: what a client program calls.

use chi_sdk::admin::AdminClient;
use chi_sdk::client::{CallError, Client, Pending};
use chi_sdk::queue::Priority;
use chi_sdk::shm::ShmString;
use chi_sdk::types::{DomainQuery, PoolId};

use crate::tasks::*;

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

    /// Submits FanOut: `n` echoes to `target` (of module `target_kind`, see
    /// [`TARGET_ADMIN`]), summed.
    pub fn async_fan_out<'c>(
        &self,
        client: &'c Client,
        target: PoolId,
        target_kind: u32,
        n: u32,
    ) -> Result<Pending<'c, FanOutTask>, CallError> {
        client.submit(
            FanOutTask::new(self.pool, DomainQuery::local(), target, target_kind, n, 0),
            Priority::LowLatency,
        )
    }

    /// Calls FanOut: returns the sum of the echoes.
    pub fn fan_out(
        &self,
        client: &Client,
        target: PoolId,
        target_kind: u32,
        n: u32,
    ) -> Result<u64, CallError> {
        self.async_fan_out(client, target, target_kind, n)?
            .wait_with(|t| t.sum)
    }

    /// Submits FanOut of `n` Sleeps of `ms` to pool `target` (a mod_name
    /// pool), waited for together.
    pub fn async_fan_out_sleeps<'c>(
        &self,
        client: &'c Client,
        target: PoolId,
        n: u32,
        ms: u32,
    ) -> Result<Pending<'c, FanOutTask>, CallError> {
        client.submit(
            FanOutTask::new(
                self.pool,
                DomainQuery::local(),
                target,
                TARGET_MOD_NAME,
                n,
                ms,
            ),
            Priority::LowLatency,
        )
    }

    /// Submits Recurse: a tree `depth` levels deep, `fanout` children a task.
    pub fn async_recurse<'c>(
        &self,
        client: &'c Client,
        depth: u32,
        fanout: u32,
    ) -> Result<Pending<'c, RecurseTask>, CallError> {
        client.submit(
            RecurseTask::new(self.pool, DomainQuery::local(), depth, fanout),
            Priority::LowLatency,
        )
    }

    /// Calls Recurse: returns the tasks of the tree and the deepest task-node
    /// depth it reached.
    pub fn recurse(
        &self,
        client: &Client,
        depth: u32,
        fanout: u32,
    ) -> Result<(u64, u32), CallError> {
        self.async_recurse(client, depth, fanout)?
            .wait_with(|t| (t.tasks, t.deepest))
    }

    /// Submits StackProbe: a chain `depth` levels deep below a task that uses
    /// `burn` bytes of stack first; the deepest sleeps `sleep_ms`.
    pub fn async_stack_probe<'c>(
        &self,
        client: &'c Client,
        depth: u32,
        burn: u32,
        sleep_ms: u32,
    ) -> Result<Pending<'c, StackProbeTask>, CallError> {
        client.submit(
            StackProbeTask::new(self.pool, DomainQuery::local(), depth, burn, sleep_ms, 0),
            Priority::LowLatency,
        )
    }

    /// Calls StackProbe: returns the depths that ran inline (bit `d`: depth
    /// `d`) and the deepest task-node depth.
    pub fn stack_probe(
        &self,
        client: &Client,
        depth: u32,
        burn: u32,
        sleep_ms: u32,
    ) -> Result<(u64, u32), CallError> {
        self.async_stack_probe(client, depth, burn, sleep_ms)?
            .wait_with(|t| (t.inline_levels, t.deepest))
    }

    /// Submits CoMutexTest: `op` (a `MUTEX_` op) with `iters`, on the
    /// processing lane `spread` hashes to.
    pub fn async_co_mutex_test<'c>(
        &self,
        client: &'c Client,
        op: u32,
        iters: u32,
        spread: u32,
    ) -> Result<Pending<'c, CoMutexTestTask>, CallError> {
        client.submit(
            CoMutexTestTask::new(self.pool, DomainQuery::local(), op, iters, spread),
            Priority::LowLatency,
        )
    }

    /// Calls CoMutexTest: returns its outputs.
    pub fn co_mutex_test(
        &self,
        client: &Client,
        op: u32,
        iters: u32,
        spread: u32,
    ) -> Result<CoMutexReply, CallError> {
        self.async_co_mutex_test(client, op, iters, spread)?
            .wait_with(CoMutexTestTask::reply)
    }

    /// Submits CoRwLockTest: `op` (an `RW_` op) with `iters` and `arg`, on
    /// the processing lane `spread` hashes to.
    pub fn async_co_rw_lock_test<'c>(
        &self,
        client: &'c Client,
        op: u32,
        iters: u32,
        arg: u32,
        spread: u32,
    ) -> Result<Pending<'c, CoRwLockTestTask>, CallError> {
        client.submit(
            CoRwLockTestTask::new(self.pool, DomainQuery::local(), op, iters, arg, spread),
            Priority::LowLatency,
        )
    }

    /// Calls CoRwLockTest: returns its outputs.
    pub fn co_rw_lock_test(
        &self,
        client: &Client,
        op: u32,
        iters: u32,
        arg: u32,
        spread: u32,
    ) -> Result<CoRwLockReply, CallError> {
        self.async_co_rw_lock_test(client, op, iters, arg, spread)?
            .wait_with(CoRwLockTestTask::reply)
    }

    /// Sends a task of `method` with no parameters (for testing how the module
    /// answers methods it does not support).
    pub fn call_method(&self, client: &Client, method: u32) -> Result<(), CallError> {
        let mut task = PanicTask::new(self.pool, DomainQuery::local(), 0);
        task.header.method = method;
        client.submit(task, Priority::LowLatency)?.wait_with(|_| ())
    }
}
