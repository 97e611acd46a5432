//! The seed's `MOD_NAME` module in Rust: a container declared with
//! [`#[chi_sdk::chimod]`](chi_sdk::chimod), its tasks declared with
//! [`#[chi_sdk::task]`](chi_sdk::task), and a small client API.
//!
//! Built as `libchimaera_mod_name_runtime.so` (a `cdylib`) for the runtime to
//! load from its module path, and as an `rlib` for client programs.
//!
//! Methods (see `chimaera_mod.yaml`):
//! * `kCustom` (10): [`CustomTask`]: `op` [`OP_UPPERCASE`] upper-cases `data` in
//!   place and returns its length; [`OP_COUNT`] returns how many Custom calls the
//!   container ran before this one; other ops fail with a message.
//! * `kPanic` (11): [`PanicTask`]: the handler panics (the runtime must report
//!   `code::PANICKED` and keep serving).

use std::sync::atomic::{AtomicU32, Ordering};

use chi_sdk::abi::{ContainerInfo, RunCtx};
use chi_sdk::client::{CallError, Client};
use chi_sdk::queue::Priority;
use chi_sdk::shm::ShmString;
use chi_sdk::types::{DomainQuery, PoolId};

/// `op` of [`CustomTask`]: upper-case `data`, result = its length in bytes.
pub const OP_UPPERCASE: u32 = 0;
/// `op` of [`CustomTask`]: result = the number of earlier Custom calls.
pub const OP_COUNT: u32 = 1;

/// The seed's `CustomTask`.
#[chi_sdk::task(method = 10)]
#[derive(Debug)]
pub struct CustomTask {
    /// The string to transform; transformed in place.
    #[inout]
    pub data: ShmString,
    /// What to do ([`OP_UPPERCASE`], [`OP_COUNT`]).
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

/// The container of a `chimaera_mod_name` pool.
#[derive(Debug)]
pub struct ModNameContainer {
    pool_name: String,
    args: String,
    calls: AtomicU32,
}

#[chi_sdk::chimod]
impl ModNameContainer {
    /// kCreate: `args` is kept (a module would parse its parameters from it).
    fn create(info: &ContainerInfo, args: &str) -> Result<Self, String> {
        if args == "fail" {
            return Err("asked to fail (args = \"fail\")".into());
        }
        Ok(ModNameContainer {
            pool_name: chi_sdk::abi::nul_str(&info.pool_name).to_owned(),
            args: args.to_owned(),
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
            other => Err(format!(
                "pool '{}' (args {:?}): unknown op {other}",
                self.pool_name, self.args
            )),
        }
    }

    /// kPanic.
    fn panic(&self, task: &mut PanicTask, _ctx: &mut RunCtx) -> Result<(), String> {
        panic!("kPanic asked to panic with value {}", task.value)
    }
}

/// Calls Custom on `pool`: returns the (transformed) data and the result.
pub fn custom(
    client: &Client,
    pool: PoolId,
    data: &str,
    op: u32,
) -> Result<(String, u32), CallError> {
    let data = ShmString::from_str(client.main_allocator(), data)?;
    let t = client.call(
        CustomTask::new(pool, DomainQuery::local(), data, op),
        Priority::LowLatency,
    )?;
    let out = t.get();
    let answer = (
        out.data
            .to_str()
            .map(str::to_owned)
            .unwrap_or_else(|e| format!("<{e}>")),
        out.result,
    );
    client.del_task(t);
    Ok(answer)
}

/// Calls Panic on `pool` (always fails with `code::PANICKED`).
pub fn panic(client: &Client, pool: PoolId, value: u32) -> Result<(), CallError> {
    let t = client.call(
        PanicTask::new(pool, DomainQuery::local(), value),
        Priority::LowLatency,
    )?;
    client.del_task(t);
    Ok(())
}

/// Sends a task of `method` with no parameters to `pool` (for testing how the
/// module answers methods it does not support).
pub fn call_method(client: &Client, pool: PoolId, method: u32) -> Result<(), CallError> {
    let mut task = PanicTask::new(pool, DomainQuery::local(), 0);
    task.header.method = method;
    let t = client.call(task, Priority::LowLatency)?;
    client.del_task(t);
    Ok(())
}
