//! The client of a `chimaera_mod_name` pool: what the generated
//! [`ModNameClient`] lacks.
//!
//! `#[chimod]` generates `ModNameClient` with `create`, and a call and an
//! `async_` call for every method whose task does not say `client = false`
//! (`custom`, `panic`, `echo`, `recurse`). The tasks below keep hand-written
//! calls: their parameters are not all the caller's to give (a `bool` sent as
//! a `u32`, fields a handler sets for its subtasks) or their outputs read
//! better as a struct.

use chi_sdk::client::{CallError, Client, Pending};
use chi_sdk::types::PoolId;

use crate::ModNameClient;
use crate::tasks::*;

impl ModNameClient {
    /// Submits Sleep (`block`: hold the worker instead of yielding).
    pub fn async_sleep<'c>(
        &self,
        client: &'c Client,
        ms: u32,
        block: bool,
    ) -> Result<Pending<'c, SleepTask>, CallError> {
        client.submit(
            SleepTask::new(self.pool, self.query, ms, u32::from(block)),
            self.priority,
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
            FanOutTask::new(self.pool, self.query, target, target_kind, n, 0),
            self.priority,
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
            FanOutTask::new(self.pool, self.query, target, TARGET_MOD_NAME, n, ms),
            self.priority,
        )
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
            StackProbeTask::new(self.pool, self.query, depth, burn, sleep_ms, 0),
            self.priority,
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
            CoMutexTestTask::new(self.pool, self.query, op, iters, spread),
            self.priority,
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
            CoRwLockTestTask::new(self.pool, self.query, op, iters, arg, spread),
            self.priority,
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
        let mut task = PanicTask::new(self.pool, self.query, 0);
        task.header.method = method;
        client.submit(task, self.priority)?.wait_with(|_| ())
    }
}
