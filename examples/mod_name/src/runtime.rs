//! The container of a `chimaera_mod_name` pool: the code the runtime runs.
//!
//! `create` sets up two local queues, [`METADATA_QUEUE`] and
//! [`PROCESSING_QUEUE`]; each handler serves the method of the same name; the
//! monitor of `kCustom` routes it by the hash of its op, so the calls of one op
//! stay in order on one lane.

use std::sync::atomic::{AtomicU32, Ordering};

use chi_sdk::abi::{MonitorMode, QueueId, RunCtx};
use chi_sdk::admin::AdminClient;
use chi_sdk::client::{PendingSet, Waitable};
use chi_sdk::container::CreateCtx;
use chi_sdk::queue::Priority;
use chi_sdk::shm::ShmString;
use chi_sdk::task::{Failure, code};

use crate::client::ModNameClient;
use crate::tasks::*;

/// The local queue for metadata operations.
pub const METADATA_QUEUE: QueueId = QueueId(0);
/// The local queue for processing.
pub const PROCESSING_QUEUE: QueueId = QueueId(1);

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
            MonitorMode::Cleanup => {
                chi_sdk::tracing::info!(op = task.op, "Custom task cleaned up");
            }
            MonitorMode::GlobalSchedule => {}
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

    /// kSleep: `block` holds the worker thread (to test what a task that
    /// never yields does to its lane); otherwise the task sleeps without
    /// costing its worker anything.
    fn sleep(&self, task: &mut SleepTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        let d = std::time::Duration::from_millis(u64::from(task.ms));
        if task.block != 0 {
            let until = std::time::Instant::now() + d;
            while std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        } else {
            ctx.sleep(d);
            if ctx.is_cancelled() {
                return Err(Failure::new(code::CANCELLED, "Sleep was cancelled"));
            }
        }
        Ok(())
    }

    /// kFanOut: `n` Echo subtasks to another pool, through that module's own
    /// client, waited for together.
    fn fan_out(&self, task: &mut FanOutTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        let client = ctx.client()?;
        let mut sum = 0;
        match task.target_kind {
            TARGET_ADMIN => {
                let admin = AdminClient::new(client);
                let subs = (1..=u64::from(task.n))
                    .map(|v| admin.async_echo(task.target, v))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Failure::failed(e.to_string()))?;
                let waits: Vec<&dyn Waitable> = subs.iter().map(|s| s as &dyn Waitable).collect();
                ctx.wait_all(&waits)
                    .map_err(|e| Failure::failed(e.to_string()))?;
                for s in subs {
                    s.result().map_err(|e| Failure::failed(e.to_string()))?;
                    sum += s.get().reply;
                    client.del_task(s);
                }
            }
            TARGET_MOD_NAME_ONE_BY_ONE => {
                let target = ModNameClient::from(task.target);
                for v in 1..=u64::from(task.n) {
                    sum += target
                        .echo(client, v)
                        .map_err(|e| Failure::failed(e.to_string()))?;
                }
            }
            TARGET_MOD_NAME if task.sleep_ms > 0 => {
                // Subtasks that take a while (to show cancellation).
                let target = ModNameClient::from(task.target);
                let mut set = PendingSet::new(client);
                for _ in 0..task.n {
                    set.push(
                        target
                            .async_sleep(client, task.sleep_ms, false)
                            .map_err(|e| Failure::failed(e.to_string()))?,
                    );
                }
                let results = set.wait_all_with(|_| ());
                if ctx.is_cancelled() {
                    let cancelled = results
                        .iter()
                        .filter(|r| {
                            matches!(r, Err(chi_sdk::client::CallError::Task(e)) if e.code == code::CANCELLED)
                        })
                        .count();
                    return Err(Failure::new(
                        code::CANCELLED,
                        format!("FanOut was cancelled; {cancelled} of its subtasks were cancelled"),
                    ));
                }
                for r in results {
                    r.map_err(|e| Failure::failed(e.to_string()))?;
                }
                sum = u64::from(task.n);
            }
            TARGET_MOD_NAME => {
                let target = ModNameClient::from(task.target);
                let mut set = PendingSet::new(client);
                for v in 1..=u64::from(task.n) {
                    set.push(
                        target
                            .async_echo(client, v)
                            .map_err(|e| Failure::failed(e.to_string()))?,
                    );
                }
                for r in set.wait_all_with(|t| t.reply) {
                    sum += r.map_err(|e| Failure::failed(e.to_string()))?;
                }
            }
            other => return Err(Failure::bad_task(format!("unknown target_kind {other}"))),
        }
        task.sum = sum;
        Ok(())
    }

    /// kRecurse: a tree of subtasks of this pool.
    fn recurse(&self, task: &mut RecurseTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        let here = ctx.task_node().map_or(0, |n| n.minor);
        task.tasks = 1;
        task.deepest = here;
        if task.depth == 0 {
            return Ok(());
        }
        let client = ctx.client()?;
        let mut set = PendingSet::new(client);
        for _ in 0..task.fanout.max(1) {
            set.push(
                self.own
                    .async_recurse(client, task.depth - 1, task.fanout)
                    .map_err(|e| Failure::failed(e.to_string()))?,
            );
        }
        for r in set.wait_all_with(|t| (t.tasks, t.deepest)) {
            let (tasks, deepest) = r.map_err(|e| Failure::failed(e.to_string()))?;
            task.tasks += tasks;
            task.deepest = task.deepest.max(deepest);
        }
        Ok(())
    }
}
