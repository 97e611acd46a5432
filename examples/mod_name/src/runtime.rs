//! The container of a `chimaera_mod_name` pool: the code the runtime runs.
//!
//! `create` sets up two local queues, [`METADATA_QUEUE`] and
//! [`PROCESSING_QUEUE`]; each handler serves the method of the same name; the
//! monitor of `kCustom` routes it by the hash of its op, so the calls of one op
//! stay in order on one lane; the lock tests go by the hash of their `spread`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chi_sdk::abi::{LaneId, MonitorMode, QueueId, RunCtx};
use chi_sdk::admin::AdminClient;
use chi_sdk::client::{PendingSet, Waitable};
use chi_sdk::container::CreateCtx;
use chi_sdk::queue::Priority;
use chi_sdk::shm::ShmString;
use chi_sdk::sync::CoMutex;
use chi_sdk::task::{Failure, code};
use chi_sdk::types::ContainerId;

use crate::tasks::*;

mod census;
mod locks;

use locks::{Gate, RwTest};

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
    /// kCoMutexTest's counter, and the permits of its holders.
    counter: CoMutex<u64>,
    mutex_gate: Gate,
    /// kCoRwLockTest's lock and its bookkeeping.
    rw: RwTest,
    /// This container's node and id (kLocate).
    node_id: u32,
    container_id: u32,
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::failed(e.to_string())
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
        if params.fail_on_node != 0 && ctx.node_id().0 == params.fail_on_node {
            return Err(format!(
                "asked to fail on node {} (fail_on_node)",
                params.fail_on_node
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
            counter: CoMutex::new(0),
            mutex_gate: Gate::default(),
            rw: RwTest::default(),
            node_id: ctx.node_id().0,
            container_id: ctx.container_id().0,
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
            OP_COUNT | OP_MONITOR_PANICS | OP_MONITOR_NO_QUEUE => {
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
            MonitorMode::LocalSchedule => match task.op {
                OP_MONITOR_PANICS => panic!("monitor_custom asked to panic"),
                OP_MONITOR_NO_QUEUE => ctx.route_to(QueueId(7), 0),
                op => ctx.route_by_hash(PROCESSING_QUEUE, u64::from(op)),
            },
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

    /// kLocate.
    fn locate(&self, task: &mut LocateTask, _ctx: &mut RunCtx) -> Result<(), String> {
        task.node_id = self.node_id;
        task.container_id = self.container_id;
        Ok(())
    }

    /// A `Dynamic` Locate goes where its key says (see [`LocateTask`]).
    fn monitor_locate(&self, mode: MonitorMode, task: &LocateTask, ctx: &mut RunCtx) {
        match (mode, task.key) {
            (MonitorMode::GlobalSchedule, LOCATE_ANY) => {}
            (MonitorMode::GlobalSchedule, LOCATE_PAST_END) => {
                ctx.route_to_container(ContainerId(ctx.pool_containers() + 7));
            }
            (MonitorMode::GlobalSchedule, key) => ctx.route_to_container_by_hash(key),
            _ => {}
        }
    }

    /// kCensus: its node and container, collected by a broadcast.
    fn census(&self, task: &mut CensusTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        census::census(task, self.node_id, self.container_id)
    }

    /// kTally: `add` + the container id.
    fn tally(&self, task: &mut TallyTask, _ctx: &mut RunCtx) -> Result<(), String> {
        task.total = task.add + u64::from(self.container_id);
        task.replicas = 1;
        Ok(())
    }

    /// A broadcast's Tally sums its replicas' answers.
    fn aggregate_tally(&self, task: &mut TallyTask, replica: &TallyTask) -> Result<(), String> {
        task.total += replica.total;
        task.replicas += replica.replicas;
        Ok(())
    }

    /// kEcho.
    fn echo(&self, task: &mut EchoTask, _ctx: &mut RunCtx) -> Result<(), String> {
        task.reply = task.value;
        Ok(())
    }

    /// Sleep runs where it arrived; it tells the runtime what it will cost
    /// (its `ms`), which the runtime's load estimate uses.
    fn monitor_sleep(&self, mode: MonitorMode, task: &SleepTask, ctx: &mut RunCtx) {
        match mode {
            MonitorMode::LocalSchedule => ctx.route(LaneId::HERE),
            MonitorMode::EstLoad => ctx.set_est_load_us(f64::from(task.ms) * 1e3),
            MonitorMode::GlobalSchedule | MonitorMode::Cleanup => {}
        }
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
            TARGET_MOD_NAME_SPREAD => {
                let mut set = PendingSet::new(client);
                for v in 1..=u64::from(task.n) {
                    let mut target = ModNameClient::from(task.target);
                    target.query = chi_sdk::types::DomainQuery::global_hash(v as u32);
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

    /// kStackProbe: see [`StackProbeTask`].
    fn stack_probe(&self, task: &mut StackProbeTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        let me = chi_sdk::container::current_task()
            .ok_or_else(|| Failure::failed("StackProbe runs in a runtime"))?;
        task.deepest = me.node.minor;
        let inline = task.parent_token != 0 && task.parent_token == me.token;
        task.inline_levels = u64::from(inline) << me.node.minor.min(63);
        if task.depth == 0 {
            if task.sleep_ms > 0 {
                ctx.sleep(Duration::from_millis(u64::from(task.sleep_ms)));
                if ctx.is_cancelled() {
                    return Err(Failure::new(code::CANCELLED, "StackProbe was cancelled"));
                }
            }
            return Ok(());
        }
        let client = ctx.client()?;
        let child = StackProbeTask::new(
            self.own.pool,
            chi_sdk::types::DomainQuery::local(),
            task.depth - 1,
            0,
            task.sleep_ms,
            me.token,
        );
        let mut child = Some(child);
        let (levels, deepest) = with_stack_used(task.burn, &mut || {
            let child = child.take().expect("submitted once");
            client
                .submit(child, Priority::LowLatency)?
                .wait_with(|t| (t.inline_levels, t.deepest))
        })
        .map_err(|e| match e {
            chi_sdk::client::CallError::Task(t) => Failure::new(t.code, t.message),
            other => Failure::failed(other.to_string()),
        })?;
        task.inline_levels |= levels;
        task.deepest = deepest;
        Ok(())
    }

    /// kCoMutexTest: the ops of [`CoMutexTestTask`].
    fn co_mutex_test(&self, task: &mut CoMutexTestTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        task.worker = ctx.worker_id;
        match task.op {
            MUTEX_COUNT => {
                for _ in 0..task.iters {
                    let mut n = self.counter.lock();
                    let v = *n;
                    // Other tasks run meanwhile; those that want the mutex wait.
                    ctx.yield_now();
                    *n = v + 1;
                    task.value = *n;
                }
            }
            MUTEX_HOLD => {
                let n = self.counter.lock();
                self.mutex_gate.pass(ctx);
                task.value = *n;
            }
            MUTEX_OPEN => self.mutex_gate.open(),
            MUTEX_STATUS => {
                task.queued = self.counter.waiters() as u32;
                task.locked = u32::from(self.counter.is_locked());
            }
            MUTEX_NESTED => {
                let mut n = self.counter.lock();
                let start = *n;
                *n += 1;
                if task.iters > 0 {
                    // The subtask takes the mutex this task holds: it gets in
                    // (same task graph) while this task waits for it.
                    let client = ctx.client()?;
                    let grew = self
                        .own
                        .async_co_mutex_test(
                            client,
                            MUTEX_NESTED,
                            task.iters - 1,
                            task.spread.wrapping_add(1),
                        )
                        .map_err(failed)?
                        .wait_with(|t| t.value)
                        .map_err(failed)?;
                    if grew != u64::from(task.iters) {
                        return Err(Failure::failed(format!(
                            "the subtasks of level {} added {grew}, not {}",
                            task.iters, task.iters
                        )));
                    }
                }
                task.value = *n - start;
            }
            other => return Err(Failure::bad_task(format!("unknown CoMutexTest op {other}"))),
        }
        Ok(())
    }

    /// The lock tests run on the processing lanes, by the hash of `spread`.
    fn monitor_co_mutex_test(&self, mode: MonitorMode, task: &CoMutexTestTask, ctx: &mut RunCtx) {
        spread_monitor(mode, task.spread, ctx);
    }

    /// kCoRwLockTest: the ops of [`CoRwLockTestTask`].
    fn co_rw_lock_test(
        &self,
        task: &mut CoRwLockTestTask,
        ctx: &mut RunCtx,
    ) -> Result<(), Failure> {
        task.worker = ctx.worker_id;
        let rw = &self.rw;
        match task.op {
            RW_READ => {
                for _ in 0..task.iters {
                    let v = rw.lock.read();
                    task.seq = rw.enter_read();
                    for _ in 0..task.arg.max(1) {
                        ctx.yield_now();
                    }
                    task.value = *v;
                    rw.leave_read();
                }
            }
            RW_WRITE => {
                for _ in 0..task.iters {
                    let mut v = rw.lock.write();
                    task.seq = rw.enter_write();
                    let old = *v;
                    for _ in 0..task.arg.max(1) {
                        ctx.yield_now();
                    }
                    *v = old + 1;
                    task.value = *v;
                    rw.leave_write();
                }
            }
            RW_READ_TOGETHER => {
                let v = rw.lock.read();
                task.seq = rw.enter_read();
                let until = Instant::now() + Duration::from_secs(30);
                // SeqCst: see `RwTest`.
                while rw.max_readers.load(Ordering::SeqCst) < task.arg && Instant::now() < until {
                    ctx.sleep(Duration::from_millis(1));
                }
                task.value = *v;
                rw.leave_read();
            }
            RW_HOLD_READ => {
                let v = rw.lock.read();
                task.seq = rw.enter_read();
                rw.gate.pass(ctx);
                task.value = *v;
                rw.leave_read();
            }
            RW_HOLD_WRITE => {
                let v = rw.lock.write();
                task.seq = rw.enter_write();
                rw.gate.pass(ctx);
                task.value = *v;
                rw.leave_write();
            }
            RW_OPEN => rw.gate.open(),
            RW_STATUS => {
                task.queued = rw.lock.waiters() as u32;
                task.locked = u32::from(rw.lock.is_locked());
            }
            RW_NESTED => {
                let mut v = rw.lock.write();
                let start = *v;
                *v += 1;
                if task.iters > 0 {
                    self.rw_subtask(ctx, task.iters - 1, task.spread)?;
                }
                // A read under its own write lock gets in at once.
                let r = rw.lock.read();
                task.value = *r - start;
            }
            RW_NESTED_UNDER_READ => {
                let v = rw.lock.read();
                let start = *v;
                // The subtask writes while this task reads: an upgrade within
                // the task graph.
                self.rw_subtask(ctx, task.iters, task.spread)?;
                task.value = *v - start;
            }
            other => {
                return Err(Failure::bad_task(format!(
                    "unknown CoRwLockTest op {other}"
                )));
            }
        }
        // SeqCst: see `RwTest`.
        task.max_readers = rw.max_readers.load(Ordering::SeqCst);
        task.violations = rw.violations.load(Ordering::SeqCst);
        Ok(())
    }

    /// The lock tests run on the processing lanes, by the hash of `spread`.
    fn monitor_co_rw_lock_test(
        &self,
        mode: MonitorMode,
        task: &CoRwLockTestTask,
        ctx: &mut RunCtx,
    ) {
        spread_monitor(mode, task.spread, ctx);
    }
}

impl ModNameContainer {
    /// Runs an `RW_NESTED` subtask of `levels` on this pool and waits for it;
    /// checks it added `levels + 1`.
    fn rw_subtask(&self, ctx: &mut RunCtx, levels: u32, spread: u32) -> Result<(), Failure> {
        let client = ctx.client()?;
        let grew = self
            .own
            .async_co_rw_lock_test(client, RW_NESTED, levels, 0, spread.wrapping_add(1))
            .map_err(failed)?
            .wait_with(|t| t.value)
            .map_err(failed)?;
        if grew != u64::from(levels) + 1 {
            return Err(Failure::failed(format!(
                "an RW_NESTED subtask of {levels} levels added {grew}, not {}",
                levels + 1
            )));
        }
        Ok(())
    }
}

/// Routes a lock test to the processing lane `spread` hashes to.
fn spread_monitor(mode: MonitorMode, spread: u32, ctx: &mut RunCtx) {
    match mode {
        MonitorMode::LocalSchedule => {
            ctx.route_by_hash(PROCESSING_QUEUE, u64::from(spread));
        }
        MonitorMode::EstLoad => ctx.set_est_load_us(1.0),
        MonitorMode::GlobalSchedule | MonitorMode::Cleanup => {}
    }
}

/// Runs `f` with about `bytes` more of the stack in use (4 KiB a frame).
#[inline(never)]
fn with_stack_used<R>(bytes: u32, f: &mut dyn FnMut() -> R) -> R {
    if bytes < 4096 {
        return f();
    }
    let mut pad = [0u8; 4096];
    std::hint::black_box(&mut pad);
    let r = with_stack_used(bytes - 4096, f);
    std::hint::black_box(&mut pad);
    r
}
