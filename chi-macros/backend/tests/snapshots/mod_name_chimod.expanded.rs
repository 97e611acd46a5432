// The expansion of #[chimod] on examples/mod_name's container, written by
// chi-macros/backend/tests/expand_snapshot.rs (UPDATE_SNAPSHOTS=1 rewrites it).
// Comments of the generated code (the SAFETY notes) are not tokens, so they
// do not appear here; see chi-macros/backend/src/chimod/generate.rs.

impl ModNameContainer {
    /// kCreate: sets up the local queues and keeps the parameters.
    fn create(ctx: &mut CreateCtx<'_>, params: CreateParams) -> Result<Self, String> {
        if params.fail {
            return Err(
                format!(
                    "asked to fail (fail = true, config_data {:?})", params.config_data
                ),
            );
        }
        if params.fail_on_node != 0 && ctx.node_id().0 == params.fail_on_node {
            return Err(
                format!("asked to fail on node {} (fail_on_node)", params.fail_on_node),
            );
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
                let alloc = chi_sdk::container::main_allocator()
                    .map_err(|e| e.to_string())?;
                let text = format!(
                    "{}:{}", task.data.to_str().map_err(| e | e.to_string()) ?, self
                    .pool_name
                );
                let grown = ShmString::from_str(alloc, &text)
                    .map_err(|e| e.to_string())?;
                let mut old = std::mem::replace(&mut task.data, grown);
                let _ = old.free(alloc);
                task.result = task.data.len() as u32;
                Ok(())
            }
            other => {
                Err(
                    format!(
                        "pool '{}' (config_data {:?}): unknown op {other}", self
                        .pool_name, self.params.config_data
                    ),
                )
            }
        }
    }
    /// Custom runs on the processing lanes, by the hash of its op.
    fn monitor_custom(&self, mode: MonitorMode, task: &CustomTask, ctx: &mut RunCtx) {
        match mode {
            MonitorMode::LocalSchedule => {
                match task.op {
                    OP_MONITOR_PANICS => panic!("monitor_custom asked to panic"),
                    OP_MONITOR_NO_QUEUE => ctx.route_to(QueueId(7), 0),
                    op => ctx.route_by_hash(PROCESSING_QUEUE, u64::from(op)),
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
    fn aggregate_tally(
        &self,
        task: &mut TallyTask,
        replica: &TallyTask,
    ) -> Result<(), String> {
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
                let waits: Vec<&dyn Waitable> = subs
                    .iter()
                    .map(|s| s as &dyn Waitable)
                    .collect();
                ctx.wait_all(&waits).map_err(|e| Failure::failed(e.to_string()))?;
                for s in subs {
                    s.result().map_err(|e| Failure::failed(e.to_string()))?;
                    sum += s.get().reply;
                    client.del_task(s);
                }
            }
            TARGET_MOD_NAME_ONE_BY_ONE => {
                let target = ModNameClient::from(task.target);
                for v in 1..=u64::from(task.n) {
                    sum
                        += target
                            .echo(client, v)
                            .map_err(|e| Failure::failed(e.to_string()))?;
                }
            }
            TARGET_MOD_NAME if task.sleep_ms > 0 => {
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
                            matches!(
                                r, Err(chi_sdk::client::CallError::Task(e)) if e.code ==
                                code::CANCELLED
                            )
                        })
                        .count();
                    return Err(
                        Failure::new(
                            code::CANCELLED,
                            format!(
                                "FanOut was cancelled; {cancelled} of its subtasks were cancelled"
                            ),
                        ),
                    );
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
            other => {
                return Err(Failure::bad_task(format!("unknown target_kind {other}")));
            }
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
                self
                    .own
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
    fn stack_probe(
        &self,
        task: &mut StackProbeTask,
        ctx: &mut RunCtx,
    ) -> Result<(), Failure> {
        let me = chi_sdk::container::current_task()
            .ok_or_else(|| Failure::failed("StackProbe runs in a runtime"))?;
        task.deepest = me.node.minor;
        let inline = task.parent_token != 0 && task.parent_token == me.token;
        task.inline_levels = u64::from(inline) << me.node.minor.min(63);
        if task.depth == 0 {
            if task.sleep_ms > 0 {
                ctx.sleep(Duration::from_millis(u64::from(task.sleep_ms)));
                if ctx.is_cancelled() {
                    return Err(
                        Failure::new(code::CANCELLED, "StackProbe was cancelled"),
                    );
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
        let (levels, deepest) = with_stack_used(
                task.burn,
                &mut || {
                    let child = child.take().expect("submitted once");
                    client
                        .submit(child, Priority::LowLatency)?
                        .wait_with(|t| (t.inline_levels, t.deepest))
                },
            )
            .map_err(|e| match e {
                chi_sdk::client::CallError::Task(t) => Failure::new(t.code, t.message),
                other => Failure::failed(other.to_string()),
            })?;
        task.inline_levels |= levels;
        task.deepest = deepest;
        Ok(())
    }
    /// kCoMutexTest: the ops of [`CoMutexTestTask`].
    fn co_mutex_test(
        &self,
        task: &mut CoMutexTestTask,
        ctx: &mut RunCtx,
    ) -> Result<(), Failure> {
        task.worker = ctx.worker_id;
        match task.op {
            MUTEX_COUNT => {
                for _ in 0..task.iters {
                    let mut n = self.counter.lock();
                    let v = *n;
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
                        return Err(
                            Failure::failed(
                                format!(
                                    "the subtasks of level {} added {grew}, not {}", task.iters,
                                    task.iters
                                ),
                            ),
                        );
                    }
                }
                task.value = *n - start;
            }
            other => {
                return Err(Failure::bad_task(format!("unknown CoMutexTest op {other}")));
            }
        }
        Ok(())
    }
    /// The lock tests run on the processing lanes, by the hash of `spread`.
    fn monitor_co_mutex_test(
        &self,
        mode: MonitorMode,
        task: &CoMutexTestTask,
        ctx: &mut RunCtx,
    ) {
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
                while rw.max_readers.load(Ordering::SeqCst) < task.arg
                    && Instant::now() < until
                {
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
                let r = rw.lock.read();
                task.value = *r - start;
            }
            RW_NESTED_UNDER_READ => {
                let v = rw.lock.read();
                let start = *v;
                self.rw_subtask(ctx, task.iters, task.spread)?;
                task.value = *v - start;
            }
            other => {
                return Err(
                    Failure::bad_task(format!("unknown CoRwLockTest op {other}")),
                );
            }
        }
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
/// Method ids of this module (from its `chimaera_mod.yaml`).
pub mod method {
    /// `kCensus` in chimaera_mod.yaml: Reports its node and container; a broadcast collects every container's (generated default)
    pub const CENSUS: u32 = 24u32;
    /// `kCoMutexTest` in chimaera_mod.yaml: CoMutex: counts under contention, holds it, re-enters it from subtasks
    pub const CO_MUTEX_TEST: u32 = 20u32;
    /// `kCoRwLockTest` in chimaera_mod.yaml: CoRwLock: readers overlap, writers exclude, re-entry from subtasks
    pub const CO_RW_LOCK_TEST: u32 = 21u32;
    /// `kCreate` in chimaera_mod.yaml: Container creation (required)
    pub const CREATE: u32 = 0u32;
    /// `kCustom` in chimaera_mod.yaml: Transforms a string
    pub const CUSTOM: u32 = 10u32;
    /// `kDestroy` in chimaera_mod.yaml: Container destruction (drops the container)
    pub const DESTROY: u32 = 1u32;
    /// `kEcho` in chimaera_mod.yaml: Echoes a value (round trip through a loaded module)
    pub const ECHO: u32 = 14u32;
    /// `kFanOut` in chimaera_mod.yaml: Submits n Echo subtasks to a pool (of any module) and sums the answers
    pub const FAN_OUT: u32 = 16u32;
    /// `kLocate` in chimaera_mod.yaml: Reports the node and the container (global id) that ran it; a Dynamic query goes by its key
    pub const LOCATE: u32 = 23u32;
    /// `kPanic` in chimaera_mod.yaml: Panics (tests that panics are contained)
    pub const PANIC: u32 = 11u32;
    /// `kRecurse` in chimaera_mod.yaml: Spawns a tree of subtasks of its own pool: `fanout` children a level, `depth` levels
    pub const RECURSE: u32 = 17u32;
    /// `kSleep` in chimaera_mod.yaml: Takes a while: sleeps `ms` milliseconds without holding its worker, or blocks it
    pub const SLEEP: u32 = 15u32;
    /// `kStackProbe` in chimaera_mod.yaml: A chain of subtasks that reports which levels ran on their parent's stack
    pub const STACK_PROBE: u32 = 22u32;
    /// `kTally` in chimaera_mod.yaml: Reports add + its container id; a broadcast sums them (aggregate_tally)
    pub const TALLY: u32 = 25u32;
    /// Every method key with its id (`-1` = unsupported).
    pub const ALL: &[(&str, i64)] = &[
        ("kCensus", 24i64),
        ("kCoMutexTest", 20i64),
        ("kCoRwLockTest", 21i64),
        ("kCreate", 0i64),
        ("kCustom", 10i64),
        ("kDestroy", 1i64),
        ("kEcho", 14i64),
        ("kFanOut", 16i64),
        ("kLocate", 23i64),
        ("kMigrate", -1i64),
        ("kNodeFailure", -1i64),
        ("kPanic", 11i64),
        ("kRecover", -1i64),
        ("kRecurse", 17i64),
        ("kSleep", 15i64),
        ("kStackProbe", 22i64),
        ("kTally", 25i64),
        ("kUnsupported", -1i64),
        ("kUpgrade", -1i64),
    ];
}
/// This module's library name (`{namespace}_{module_name}`): the runtime
/// loads `lib{CHIMOD_LIB_NAME}_runtime.so`.
pub const CHIMOD_LIB_NAME: &str = "chimaera_mod_name";
impl ::chi_sdk::__private::chimod::PoolParams for CreateParams {
    const CHIMOD_LIB_NAME: &'static str = "chimaera_mod_name";
}
const _: &[u8] = include_bytes!("$WORKSPACE/examples/mod_name/chimaera_mod.yaml");
const _: &[u8] = include_bytes!("$WORKSPACE/examples/chimaera_repo.yaml");
/// The module's C boundary, generated by `#[chimod]`.
#[doc(hidden)]
pub mod __chimod {
    #[allow(unused_imports)]
    use super::*;
    const _: () = ::core::assert!(
        < CensusTask as ::chi_sdk::__private::chimod::Task > ::METHOD == 24u32,
        "`census` handles `kCensus` (24 in chimaera_mod.yaml), but its task type `CensusTask` has another METHOD: take the `#[task(method = 24)]` type"
    );
    const _: () = ::core::assert!(
        < CoMutexTestTask as ::chi_sdk::__private::chimod::Task > ::METHOD == 20u32,
        "`co_mutex_test` handles `kCoMutexTest` (20 in chimaera_mod.yaml), but its task type `CoMutexTestTask` has another METHOD: take the `#[task(method = 20)]` type"
    );
    const _: () = ::core::assert!(
        < CoRwLockTestTask as ::chi_sdk::__private::chimod::Task > ::METHOD == 21u32,
        "`co_rw_lock_test` handles `kCoRwLockTest` (21 in chimaera_mod.yaml), but its task type `CoRwLockTestTask` has another METHOD: take the `#[task(method = 21)]` type"
    );
    const _: () = ::core::assert!(
        < CustomTask as ::chi_sdk::__private::chimod::Task > ::METHOD == 10u32,
        "`custom` handles `kCustom` (10 in chimaera_mod.yaml), but its task type `CustomTask` has another METHOD: take the `#[task(method = 10)]` type"
    );
    const _: () = ::core::assert!(
        < EchoTask as ::chi_sdk::__private::chimod::Task > ::METHOD == 14u32,
        "`echo` handles `kEcho` (14 in chimaera_mod.yaml), but its task type `EchoTask` has another METHOD: take the `#[task(method = 14)]` type"
    );
    const _: () = ::core::assert!(
        < FanOutTask as ::chi_sdk::__private::chimod::Task > ::METHOD == 16u32,
        "`fan_out` handles `kFanOut` (16 in chimaera_mod.yaml), but its task type `FanOutTask` has another METHOD: take the `#[task(method = 16)]` type"
    );
    const _: () = ::core::assert!(
        < LocateTask as ::chi_sdk::__private::chimod::Task > ::METHOD == 23u32,
        "`locate` handles `kLocate` (23 in chimaera_mod.yaml), but its task type `LocateTask` has another METHOD: take the `#[task(method = 23)]` type"
    );
    const _: () = ::core::assert!(
        < PanicTask as ::chi_sdk::__private::chimod::Task > ::METHOD == 11u32,
        "`panic` handles `kPanic` (11 in chimaera_mod.yaml), but its task type `PanicTask` has another METHOD: take the `#[task(method = 11)]` type"
    );
    const _: () = ::core::assert!(
        < RecurseTask as ::chi_sdk::__private::chimod::Task > ::METHOD == 17u32,
        "`recurse` handles `kRecurse` (17 in chimaera_mod.yaml), but its task type `RecurseTask` has another METHOD: take the `#[task(method = 17)]` type"
    );
    const _: () = ::core::assert!(
        < SleepTask as ::chi_sdk::__private::chimod::Task > ::METHOD == 15u32,
        "`sleep` handles `kSleep` (15 in chimaera_mod.yaml), but its task type `SleepTask` has another METHOD: take the `#[task(method = 15)]` type"
    );
    const _: () = ::core::assert!(
        < StackProbeTask as ::chi_sdk::__private::chimod::Task > ::METHOD == 22u32,
        "`stack_probe` handles `kStackProbe` (22 in chimaera_mod.yaml), but its task type `StackProbeTask` has another METHOD: take the `#[task(method = 22)]` type"
    );
    const _: () = ::core::assert!(
        < TallyTask as ::chi_sdk::__private::chimod::Task > ::METHOD == 25u32,
        "`tally` handles `kTally` (25 in chimaera_mod.yaml), but its task type `TallyTask` has another METHOD: take the `#[task(method = 25)]` type"
    );
    const _: fn() = ::chi_sdk::__private::chimod::assert_container::<ModNameContainer>;
    struct __Ret<R>(::core::option::Option<R>);
    trait __RetOk {
        fn __verdict(
            &mut self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure>;
    }
    impl<E: ::core::convert::Into<::chi_sdk::__private::chimod::Failure>> __RetOk
    for __Ret<::core::result::Result<(), E>> {
        fn __verdict(
            &mut self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
            match self.0.take() {
                ::core::option::Option::Some(r) => {
                    r.map_err(::chi_sdk::__private::chimod::failed)
                }
                ::core::option::Option::None => ::core::result::Result::Ok(()),
            }
        }
    }
    trait __RetOther<R> {
        fn __verdict(&mut self) -> R;
    }
    impl<R> __RetOther<R> for &mut __Ret<R> {
        fn __verdict(&mut self) -> R {
            match self.0.take() {
                ::core::option::Option::Some(r) => r,
                ::core::option::Option::None => ::core::unreachable!(),
            }
        }
    }
    #[diagnostic::on_unimplemented(
        message = "the handler `census` returns `Result<(), Failure>`, but `Failure` is not `Into<chi_sdk::task::Failure>`",
        label = "the return type of `census`",
        note = "return `Result<(), String>` (e.g. with `.map_err(|e| e.to_string())?`), or implement `From<Failure>` for `chi_sdk::task::Failure` if `Failure` is a type of this crate"
    )]
    trait __CensusReturns {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure>;
    }
    #[diagnostic::do_not_recommend]
    impl __CensusReturns
    for ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
            self
        }
    }
    #[diagnostic::on_unimplemented(
        message = "the handler `co_mutex_test` returns `Result<(), Failure>`, but `Failure` is not `Into<chi_sdk::task::Failure>`",
        label = "the return type of `co_mutex_test`",
        note = "return `Result<(), String>` (e.g. with `.map_err(|e| e.to_string())?`), or implement `From<Failure>` for `chi_sdk::task::Failure` if `Failure` is a type of this crate"
    )]
    trait __CoMutexTestReturns {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure>;
    }
    #[diagnostic::do_not_recommend]
    impl __CoMutexTestReturns
    for ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
            self
        }
    }
    #[diagnostic::on_unimplemented(
        message = "the handler `co_rw_lock_test` returns `Result<(), Failure>`, but `Failure` is not `Into<chi_sdk::task::Failure>`",
        label = "the return type of `co_rw_lock_test`",
        note = "return `Result<(), String>` (e.g. with `.map_err(|e| e.to_string())?`), or implement `From<Failure>` for `chi_sdk::task::Failure` if `Failure` is a type of this crate"
    )]
    trait __CoRwLockTestReturns {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure>;
    }
    #[diagnostic::do_not_recommend]
    impl __CoRwLockTestReturns
    for ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
            self
        }
    }
    #[diagnostic::on_unimplemented(
        message = "the handler `custom` returns `Result<(), String>`, but `String` is not `Into<chi_sdk::task::Failure>`",
        label = "the return type of `custom`",
        note = "return `Result<(), String>` (e.g. with `.map_err(|e| e.to_string())?`), or implement `From<String>` for `chi_sdk::task::Failure` if `String` is a type of this crate"
    )]
    trait __CustomReturns {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure>;
    }
    #[diagnostic::do_not_recommend]
    impl __CustomReturns
    for ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
            self
        }
    }
    #[diagnostic::on_unimplemented(
        message = "the handler `echo` returns `Result<(), String>`, but `String` is not `Into<chi_sdk::task::Failure>`",
        label = "the return type of `echo`",
        note = "return `Result<(), String>` (e.g. with `.map_err(|e| e.to_string())?`), or implement `From<String>` for `chi_sdk::task::Failure` if `String` is a type of this crate"
    )]
    trait __EchoReturns {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure>;
    }
    #[diagnostic::do_not_recommend]
    impl __EchoReturns
    for ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
            self
        }
    }
    #[diagnostic::on_unimplemented(
        message = "the handler `fan_out` returns `Result<(), Failure>`, but `Failure` is not `Into<chi_sdk::task::Failure>`",
        label = "the return type of `fan_out`",
        note = "return `Result<(), String>` (e.g. with `.map_err(|e| e.to_string())?`), or implement `From<Failure>` for `chi_sdk::task::Failure` if `Failure` is a type of this crate"
    )]
    trait __FanOutReturns {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure>;
    }
    #[diagnostic::do_not_recommend]
    impl __FanOutReturns
    for ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
            self
        }
    }
    #[diagnostic::on_unimplemented(
        message = "the handler `locate` returns `Result<(), String>`, but `String` is not `Into<chi_sdk::task::Failure>`",
        label = "the return type of `locate`",
        note = "return `Result<(), String>` (e.g. with `.map_err(|e| e.to_string())?`), or implement `From<String>` for `chi_sdk::task::Failure` if `String` is a type of this crate"
    )]
    trait __LocateReturns {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure>;
    }
    #[diagnostic::do_not_recommend]
    impl __LocateReturns
    for ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
            self
        }
    }
    #[diagnostic::on_unimplemented(
        message = "the handler `panic` returns `Result<(), String>`, but `String` is not `Into<chi_sdk::task::Failure>`",
        label = "the return type of `panic`",
        note = "return `Result<(), String>` (e.g. with `.map_err(|e| e.to_string())?`), or implement `From<String>` for `chi_sdk::task::Failure` if `String` is a type of this crate"
    )]
    trait __PanicReturns {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure>;
    }
    #[diagnostic::do_not_recommend]
    impl __PanicReturns
    for ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
            self
        }
    }
    #[diagnostic::on_unimplemented(
        message = "the handler `recurse` returns `Result<(), Failure>`, but `Failure` is not `Into<chi_sdk::task::Failure>`",
        label = "the return type of `recurse`",
        note = "return `Result<(), String>` (e.g. with `.map_err(|e| e.to_string())?`), or implement `From<Failure>` for `chi_sdk::task::Failure` if `Failure` is a type of this crate"
    )]
    trait __RecurseReturns {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure>;
    }
    #[diagnostic::do_not_recommend]
    impl __RecurseReturns
    for ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
            self
        }
    }
    #[diagnostic::on_unimplemented(
        message = "the handler `sleep` returns `Result<(), Failure>`, but `Failure` is not `Into<chi_sdk::task::Failure>`",
        label = "the return type of `sleep`",
        note = "return `Result<(), String>` (e.g. with `.map_err(|e| e.to_string())?`), or implement `From<Failure>` for `chi_sdk::task::Failure` if `Failure` is a type of this crate"
    )]
    trait __SleepReturns {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure>;
    }
    #[diagnostic::do_not_recommend]
    impl __SleepReturns
    for ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
            self
        }
    }
    #[diagnostic::on_unimplemented(
        message = "the handler `stack_probe` returns `Result<(), Failure>`, but `Failure` is not `Into<chi_sdk::task::Failure>`",
        label = "the return type of `stack_probe`",
        note = "return `Result<(), String>` (e.g. with `.map_err(|e| e.to_string())?`), or implement `From<Failure>` for `chi_sdk::task::Failure` if `Failure` is a type of this crate"
    )]
    trait __StackProbeReturns {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure>;
    }
    #[diagnostic::do_not_recommend]
    impl __StackProbeReturns
    for ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
            self
        }
    }
    #[diagnostic::on_unimplemented(
        message = "the handler `tally` returns `Result<(), String>`, but `String` is not `Into<chi_sdk::task::Failure>`",
        label = "the return type of `tally`",
        note = "return `Result<(), String>` (e.g. with `.map_err(|e| e.to_string())?`), or implement `From<String>` for `chi_sdk::task::Failure` if `String` is a type of this crate"
    )]
    trait __TallyReturns {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure>;
    }
    #[diagnostic::do_not_recommend]
    impl __TallyReturns
    for ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
        fn __done(
            self,
        ) -> ::core::result::Result<(), ::chi_sdk::__private::chimod::Failure> {
            self
        }
    }
    const NAMES: &[(&str, i64)] = &[
        ("kCensus", 24i64),
        ("kCoMutexTest", 20i64),
        ("kCoRwLockTest", 21i64),
        ("kCreate", 0i64),
        ("kCustom", 10i64),
        ("kDestroy", 1i64),
        ("kEcho", 14i64),
        ("kFanOut", 16i64),
        ("kLocate", 23i64),
        ("kMigrate", -1i64),
        ("kNodeFailure", -1i64),
        ("kPanic", 11i64),
        ("kRecover", -1i64),
        ("kRecurse", 17i64),
        ("kSleep", 15i64),
        ("kStackProbe", 22i64),
        ("kTally", 25i64),
        ("kUnsupported", -1i64),
        ("kUpgrade", -1i64),
    ];
    unsafe extern "C" fn __init(
        services: *const ::chi_sdk::__private::chimod::RuntimeServices,
    ) -> i32 {
        unsafe { ::chi_sdk::__private::chimod::init(services) }
    }
    unsafe extern "C" fn __create(
        info: *const ::chi_sdk::__private::chimod::ContainerInfo,
        args: *const u8,
        args_len: usize,
        err: *mut ::chi_sdk::__private::chimod::ErrorBuf,
    ) -> *mut ::core::ffi::c_void {
        unsafe {
            ::chi_sdk::__private::chimod::create::<
                ModNameContainer,
            >(
                info,
                args,
                args_len,
                err,
                |ctx, args| <ModNameContainer>::create(
                    ctx,
                    ::chi_sdk::__private::chimod::params::<CreateParams>(args)?,
                ),
            )
        }
    }
    unsafe extern "C" fn __destroy(container: *mut ::core::ffi::c_void) {
        unsafe { ::chi_sdk::__private::chimod::destroy::<ModNameContainer>(container) }
    }
    unsafe extern "C" fn __run(
        container: *mut ::core::ffi::c_void,
        task: *mut ::chi_sdk::__private::chimod::TaskHeader,
        ctx: *mut ::chi_sdk::__private::chimod::RunCtx,
        err: *mut ::chi_sdk::__private::chimod::ErrorBuf,
    ) -> i32 {
        unsafe {
            ::chi_sdk::__private::chimod::run::<
                ModNameContainer,
            >(
                container,
                task,
                ctx,
                err,
                |this, task, ctx| {
                    match unsafe { (*task).method } {
                        24u32 => {
                            let t = unsafe {
                                ::chi_sdk::__private::chimod::cast::<CensusTask>(task)?
                            };
                            __CensusReturns::__done(
                                (&mut __Ret(
                                    ::core::option::Option::Some(this.census(t, ctx)),
                                ))
                                    .__verdict(),
                            )
                        }
                        20u32 => {
                            let t = unsafe {
                                ::chi_sdk::__private::chimod::cast::<CoMutexTestTask>(task)?
                            };
                            __CoMutexTestReturns::__done(
                                (&mut __Ret(
                                    ::core::option::Option::Some(this.co_mutex_test(t, ctx)),
                                ))
                                    .__verdict(),
                            )
                        }
                        21u32 => {
                            let t = unsafe {
                                ::chi_sdk::__private::chimod::cast::<
                                    CoRwLockTestTask,
                                >(task)?
                            };
                            __CoRwLockTestReturns::__done(
                                (&mut __Ret(
                                    ::core::option::Option::Some(this.co_rw_lock_test(t, ctx)),
                                ))
                                    .__verdict(),
                            )
                        }
                        10u32 => {
                            let t = unsafe {
                                ::chi_sdk::__private::chimod::cast::<CustomTask>(task)?
                            };
                            __CustomReturns::__done(
                                (&mut __Ret(
                                    ::core::option::Option::Some(this.custom(t, ctx)),
                                ))
                                    .__verdict(),
                            )
                        }
                        14u32 => {
                            let t = unsafe {
                                ::chi_sdk::__private::chimod::cast::<EchoTask>(task)?
                            };
                            __EchoReturns::__done(
                                (&mut __Ret(
                                    ::core::option::Option::Some(this.echo(t, ctx)),
                                ))
                                    .__verdict(),
                            )
                        }
                        16u32 => {
                            let t = unsafe {
                                ::chi_sdk::__private::chimod::cast::<FanOutTask>(task)?
                            };
                            __FanOutReturns::__done(
                                (&mut __Ret(
                                    ::core::option::Option::Some(this.fan_out(t, ctx)),
                                ))
                                    .__verdict(),
                            )
                        }
                        23u32 => {
                            let t = unsafe {
                                ::chi_sdk::__private::chimod::cast::<LocateTask>(task)?
                            };
                            __LocateReturns::__done(
                                (&mut __Ret(
                                    ::core::option::Option::Some(this.locate(t, ctx)),
                                ))
                                    .__verdict(),
                            )
                        }
                        11u32 => {
                            let t = unsafe {
                                ::chi_sdk::__private::chimod::cast::<PanicTask>(task)?
                            };
                            __PanicReturns::__done(
                                (&mut __Ret(
                                    ::core::option::Option::Some(this.panic(t, ctx)),
                                ))
                                    .__verdict(),
                            )
                        }
                        17u32 => {
                            let t = unsafe {
                                ::chi_sdk::__private::chimod::cast::<RecurseTask>(task)?
                            };
                            __RecurseReturns::__done(
                                (&mut __Ret(
                                    ::core::option::Option::Some(this.recurse(t, ctx)),
                                ))
                                    .__verdict(),
                            )
                        }
                        15u32 => {
                            let t = unsafe {
                                ::chi_sdk::__private::chimod::cast::<SleepTask>(task)?
                            };
                            __SleepReturns::__done(
                                (&mut __Ret(
                                    ::core::option::Option::Some(this.sleep(t, ctx)),
                                ))
                                    .__verdict(),
                            )
                        }
                        22u32 => {
                            let t = unsafe {
                                ::chi_sdk::__private::chimod::cast::<StackProbeTask>(task)?
                            };
                            __StackProbeReturns::__done(
                                (&mut __Ret(
                                    ::core::option::Option::Some(this.stack_probe(t, ctx)),
                                ))
                                    .__verdict(),
                            )
                        }
                        25u32 => {
                            let t = unsafe {
                                ::chi_sdk::__private::chimod::cast::<TallyTask>(task)?
                            };
                            __TallyReturns::__done(
                                (&mut __Ret(
                                    ::core::option::Option::Some(this.tally(t, ctx)),
                                ))
                                    .__verdict(),
                            )
                        }
                        other => {
                            ::core::result::Result::Err(
                                ::chi_sdk::__private::chimod::unsupported(
                                    "chimaera_mod_name",
                                    other,
                                    NAMES,
                                ),
                            )
                        }
                    }
                },
            )
        }
    }
    unsafe extern "C" fn __del(
        _container: *mut ::core::ffi::c_void,
        task: *mut ::chi_sdk::__private::chimod::TaskHeader,
    ) -> i32 {
        ::chi_sdk::__private::chimod::hook(
            ::core::option::Option::None,
            || match unsafe { (*task).method } {
                24u32 => unsafe { ::chi_sdk::__private::chimod::del::<CensusTask>(task) }
                20u32 => {
                    unsafe { ::chi_sdk::__private::chimod::del::<CoMutexTestTask>(task) }
                }
                21u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::del::<CoRwLockTestTask>(task)
                    }
                }
                10u32 => unsafe { ::chi_sdk::__private::chimod::del::<CustomTask>(task) }
                14u32 => unsafe { ::chi_sdk::__private::chimod::del::<EchoTask>(task) }
                16u32 => unsafe { ::chi_sdk::__private::chimod::del::<FanOutTask>(task) }
                23u32 => unsafe { ::chi_sdk::__private::chimod::del::<LocateTask>(task) }
                11u32 => unsafe { ::chi_sdk::__private::chimod::del::<PanicTask>(task) }
                17u32 => {
                    unsafe { ::chi_sdk::__private::chimod::del::<RecurseTask>(task) }
                }
                15u32 => unsafe { ::chi_sdk::__private::chimod::del::<SleepTask>(task) }
                22u32 => {
                    unsafe { ::chi_sdk::__private::chimod::del::<StackProbeTask>(task) }
                }
                25u32 => unsafe { ::chi_sdk::__private::chimod::del::<TallyTask>(task) }
                other => {
                    ::core::result::Result::Err(
                        ::chi_sdk::__private::chimod::unsupported(
                            "chimaera_mod_name",
                            other,
                            NAMES,
                        ),
                    )
                }
            },
        )
    }
    unsafe extern "C" fn __save_in(
        _container: *mut ::core::ffi::c_void,
        task: *const ::chi_sdk::__private::chimod::TaskHeader,
        out: *mut ::chi_sdk::__private::chimod::ByteSink,
        err: *mut ::chi_sdk::__private::chimod::ErrorBuf,
    ) -> i32 {
        ::chi_sdk::__private::chimod::hook(
            unsafe { err.as_mut() },
            || match unsafe { (*task).method } {
                24u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<
                            CensusTask,
                        >(task, out, false)
                    }
                }
                20u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<
                            CoMutexTestTask,
                        >(task, out, false)
                    }
                }
                21u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<
                            CoRwLockTestTask,
                        >(task, out, false)
                    }
                }
                10u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<
                            CustomTask,
                        >(task, out, false)
                    }
                }
                14u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<EchoTask>(task, out, false)
                    }
                }
                16u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<
                            FanOutTask,
                        >(task, out, false)
                    }
                }
                23u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<
                            LocateTask,
                        >(task, out, false)
                    }
                }
                11u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<PanicTask>(task, out, false)
                    }
                }
                17u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<
                            RecurseTask,
                        >(task, out, false)
                    }
                }
                15u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<SleepTask>(task, out, false)
                    }
                }
                22u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<
                            StackProbeTask,
                        >(task, out, false)
                    }
                }
                25u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<TallyTask>(task, out, false)
                    }
                }
                other => {
                    ::core::result::Result::Err(
                        ::chi_sdk::__private::chimod::unsupported(
                            "chimaera_mod_name",
                            other,
                            NAMES,
                        ),
                    )
                }
            },
        )
    }
    unsafe extern "C" fn __save_out(
        _container: *mut ::core::ffi::c_void,
        task: *const ::chi_sdk::__private::chimod::TaskHeader,
        out: *mut ::chi_sdk::__private::chimod::ByteSink,
        err: *mut ::chi_sdk::__private::chimod::ErrorBuf,
    ) -> i32 {
        ::chi_sdk::__private::chimod::hook(
            unsafe { err.as_mut() },
            || match unsafe { (*task).method } {
                24u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<CensusTask>(task, out, true)
                    }
                }
                20u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<
                            CoMutexTestTask,
                        >(task, out, true)
                    }
                }
                21u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<
                            CoRwLockTestTask,
                        >(task, out, true)
                    }
                }
                10u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<CustomTask>(task, out, true)
                    }
                }
                14u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<EchoTask>(task, out, true)
                    }
                }
                16u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<FanOutTask>(task, out, true)
                    }
                }
                23u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<LocateTask>(task, out, true)
                    }
                }
                11u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<PanicTask>(task, out, true)
                    }
                }
                17u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<
                            RecurseTask,
                        >(task, out, true)
                    }
                }
                15u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<SleepTask>(task, out, true)
                    }
                }
                22u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<
                            StackProbeTask,
                        >(task, out, true)
                    }
                }
                25u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::save::<TallyTask>(task, out, true)
                    }
                }
                other => {
                    ::core::result::Result::Err(
                        ::chi_sdk::__private::chimod::unsupported(
                            "chimaera_mod_name",
                            other,
                            NAMES,
                        ),
                    )
                }
            },
        )
    }
    unsafe extern "C" fn __load_in(
        _container: *mut ::core::ffi::c_void,
        task: *mut ::chi_sdk::__private::chimod::TaskHeader,
        data: *const u8,
        len: usize,
        err: *mut ::chi_sdk::__private::chimod::ErrorBuf,
    ) -> i32 {
        ::chi_sdk::__private::chimod::hook(
            unsafe { err.as_mut() },
            || match unsafe { (*task).method } {
                24u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_in::<
                            CensusTask,
                        >(task, data, len, <CensusTask>::empty)
                    }
                }
                20u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_in::<
                            CoMutexTestTask,
                        >(task, data, len, <CoMutexTestTask>::empty)
                    }
                }
                21u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_in::<
                            CoRwLockTestTask,
                        >(task, data, len, <CoRwLockTestTask>::empty)
                    }
                }
                10u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_in::<
                            CustomTask,
                        >(task, data, len, <CustomTask>::empty)
                    }
                }
                14u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_in::<
                            EchoTask,
                        >(task, data, len, <EchoTask>::empty)
                    }
                }
                16u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_in::<
                            FanOutTask,
                        >(task, data, len, <FanOutTask>::empty)
                    }
                }
                23u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_in::<
                            LocateTask,
                        >(task, data, len, <LocateTask>::empty)
                    }
                }
                11u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_in::<
                            PanicTask,
                        >(task, data, len, <PanicTask>::empty)
                    }
                }
                17u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_in::<
                            RecurseTask,
                        >(task, data, len, <RecurseTask>::empty)
                    }
                }
                15u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_in::<
                            SleepTask,
                        >(task, data, len, <SleepTask>::empty)
                    }
                }
                22u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_in::<
                            StackProbeTask,
                        >(task, data, len, <StackProbeTask>::empty)
                    }
                }
                25u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_in::<
                            TallyTask,
                        >(task, data, len, <TallyTask>::empty)
                    }
                }
                other => {
                    ::core::result::Result::Err(
                        ::chi_sdk::__private::chimod::unsupported(
                            "chimaera_mod_name",
                            other,
                            NAMES,
                        ),
                    )
                }
            },
        )
    }
    unsafe extern "C" fn __load_out(
        _container: *mut ::core::ffi::c_void,
        task: *mut ::chi_sdk::__private::chimod::TaskHeader,
        data: *const u8,
        len: usize,
        err: *mut ::chi_sdk::__private::chimod::ErrorBuf,
    ) -> i32 {
        ::chi_sdk::__private::chimod::hook(
            unsafe { err.as_mut() },
            || match unsafe { (*task).method } {
                24u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_out::<
                            CensusTask,
                        >(task, data, len)
                    }
                }
                20u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_out::<
                            CoMutexTestTask,
                        >(task, data, len)
                    }
                }
                21u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_out::<
                            CoRwLockTestTask,
                        >(task, data, len)
                    }
                }
                10u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_out::<
                            CustomTask,
                        >(task, data, len)
                    }
                }
                14u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_out::<
                            EchoTask,
                        >(task, data, len)
                    }
                }
                16u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_out::<
                            FanOutTask,
                        >(task, data, len)
                    }
                }
                23u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_out::<
                            LocateTask,
                        >(task, data, len)
                    }
                }
                11u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_out::<
                            PanicTask,
                        >(task, data, len)
                    }
                }
                17u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_out::<
                            RecurseTask,
                        >(task, data, len)
                    }
                }
                15u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_out::<
                            SleepTask,
                        >(task, data, len)
                    }
                }
                22u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_out::<
                            StackProbeTask,
                        >(task, data, len)
                    }
                }
                25u32 => {
                    unsafe {
                        ::chi_sdk::__private::chimod::load_out::<
                            TallyTask,
                        >(task, data, len)
                    }
                }
                other => {
                    ::core::result::Result::Err(
                        ::chi_sdk::__private::chimod::unsupported(
                            "chimaera_mod_name",
                            other,
                            NAMES,
                        ),
                    )
                }
            },
        )
    }
    unsafe extern "C" fn __new_copy(
        _container: *mut ::core::ffi::c_void,
        task: *const ::chi_sdk::__private::chimod::TaskHeader,
        err: *mut ::chi_sdk::__private::chimod::ErrorBuf,
    ) -> *mut ::chi_sdk::__private::chimod::TaskHeader {
        let mut copy = ::core::ptr::null_mut();
        ::chi_sdk::__private::chimod::hook(
            unsafe { err.as_mut() },
            || {
                copy = match unsafe { (*task).method } {
                    24u32 => {
                        unsafe {
                            ::chi_sdk::__private::chimod::new_copy::<CensusTask>(task)
                        }
                    }
                    20u32 => {
                        unsafe {
                            ::chi_sdk::__private::chimod::new_copy::<
                                CoMutexTestTask,
                            >(task)
                        }
                    }
                    21u32 => {
                        unsafe {
                            ::chi_sdk::__private::chimod::new_copy::<
                                CoRwLockTestTask,
                            >(task)
                        }
                    }
                    10u32 => {
                        unsafe {
                            ::chi_sdk::__private::chimod::new_copy::<CustomTask>(task)
                        }
                    }
                    14u32 => {
                        unsafe {
                            ::chi_sdk::__private::chimod::new_copy::<EchoTask>(task)
                        }
                    }
                    16u32 => {
                        unsafe {
                            ::chi_sdk::__private::chimod::new_copy::<FanOutTask>(task)
                        }
                    }
                    23u32 => {
                        unsafe {
                            ::chi_sdk::__private::chimod::new_copy::<LocateTask>(task)
                        }
                    }
                    11u32 => {
                        unsafe {
                            ::chi_sdk::__private::chimod::new_copy::<PanicTask>(task)
                        }
                    }
                    17u32 => {
                        unsafe {
                            ::chi_sdk::__private::chimod::new_copy::<RecurseTask>(task)
                        }
                    }
                    15u32 => {
                        unsafe {
                            ::chi_sdk::__private::chimod::new_copy::<SleepTask>(task)
                        }
                    }
                    22u32 => {
                        unsafe {
                            ::chi_sdk::__private::chimod::new_copy::<
                                StackProbeTask,
                            >(task)
                        }
                    }
                    25u32 => {
                        unsafe {
                            ::chi_sdk::__private::chimod::new_copy::<TallyTask>(task)
                        }
                    }
                    other => {
                        ::core::result::Result::Err(
                            ::chi_sdk::__private::chimod::unsupported(
                                "chimaera_mod_name",
                                other,
                                NAMES,
                            ),
                        )
                    }
                }?;
                ::core::result::Result::Ok(())
            },
        );
        copy
    }
    unsafe extern "C" fn __task_size(method: u32) -> usize {
        match method {
            24u32 => ::core::mem::size_of::<CensusTask>(),
            20u32 => ::core::mem::size_of::<CoMutexTestTask>(),
            21u32 => ::core::mem::size_of::<CoRwLockTestTask>(),
            10u32 => ::core::mem::size_of::<CustomTask>(),
            14u32 => ::core::mem::size_of::<EchoTask>(),
            16u32 => ::core::mem::size_of::<FanOutTask>(),
            23u32 => ::core::mem::size_of::<LocateTask>(),
            11u32 => ::core::mem::size_of::<PanicTask>(),
            17u32 => ::core::mem::size_of::<RecurseTask>(),
            15u32 => ::core::mem::size_of::<SleepTask>(),
            22u32 => ::core::mem::size_of::<StackProbeTask>(),
            25u32 => ::core::mem::size_of::<TallyTask>(),
            _ => 0,
        }
    }
    static API: ::chi_sdk::__private::chimod::ModuleApi = ::chi_sdk::__private::chimod::ModuleApi {
        fingerprint: ::chi_sdk::__private::chimod::AbiFingerprint::current(),
        name: ::chi_sdk::__private::chimod::fixed_str("chimaera_mod_name"),
        init: __init,
        create: __create,
        destroy: __destroy,
        run: __run,
        monitor: {
            unsafe extern "C" fn __monitor(
                container: *mut ::core::ffi::c_void,
                mode: u32,
                task: *mut ::chi_sdk::__private::chimod::TaskHeader,
                ctx: *mut ::chi_sdk::__private::chimod::RunCtx,
            ) -> i32 {
                unsafe {
                    ::chi_sdk::__private::chimod::monitor::<
                        ModNameContainer,
                    >(
                        container,
                        mode,
                        task,
                        ctx,
                        |this, mode, task, ctx| {
                            match unsafe { (*task).method } {
                                20u32 => {
                                    let t = unsafe {
                                        ::chi_sdk::__private::chimod::cast::<CoMutexTestTask>(task)?
                                    };
                                    this.monitor_co_mutex_test(mode, t, ctx);
                                    ::core::result::Result::Ok(())
                                }
                                21u32 => {
                                    let t = unsafe {
                                        ::chi_sdk::__private::chimod::cast::<
                                            CoRwLockTestTask,
                                        >(task)?
                                    };
                                    this.monitor_co_rw_lock_test(mode, t, ctx);
                                    ::core::result::Result::Ok(())
                                }
                                10u32 => {
                                    let t = unsafe {
                                        ::chi_sdk::__private::chimod::cast::<CustomTask>(task)?
                                    };
                                    this.monitor_custom(mode, t, ctx);
                                    ::core::result::Result::Ok(())
                                }
                                23u32 => {
                                    let t = unsafe {
                                        ::chi_sdk::__private::chimod::cast::<LocateTask>(task)?
                                    };
                                    this.monitor_locate(mode, t, ctx);
                                    ::core::result::Result::Ok(())
                                }
                                15u32 => {
                                    let t = unsafe {
                                        ::chi_sdk::__private::chimod::cast::<SleepTask>(task)?
                                    };
                                    this.monitor_sleep(mode, t, ctx);
                                    ::core::result::Result::Ok(())
                                }
                                _ => {
                                    ::chi_sdk::__private::chimod::default_monitor(mode, ctx)
                                }
                            }
                        },
                    )
                }
            }
            ::core::option::Option::Some(
                __monitor as ::chi_sdk::__private::chimod::MonitorFn,
            )
        },
        del: ::core::option::Option::Some(__del),
        save_in: ::core::option::Option::Some(__save_in),
        load_in: ::core::option::Option::Some(__load_in),
        save_out: ::core::option::Option::Some(__save_out),
        load_out: ::core::option::Option::Some(__load_out),
        new_copy: ::core::option::Option::Some(__new_copy),
        task_size: ::core::option::Option::Some(__task_size),
        aggregate: {
            unsafe extern "C" fn __aggregate(
                container: *mut ::core::ffi::c_void,
                task: *mut ::chi_sdk::__private::chimod::TaskHeader,
                replica: *const ::chi_sdk::__private::chimod::TaskHeader,
                err: *mut ::chi_sdk::__private::chimod::ErrorBuf,
            ) -> i32 {
                unsafe {
                    ::chi_sdk::__private::chimod::aggregate::<
                        ModNameContainer,
                    >(
                        container,
                        task,
                        replica,
                        err,
                        |this, task, replica| {
                            let _ = this;
                            match unsafe { (*task).method } {
                                24u32 => {
                                    unsafe {
                                        ::chi_sdk::__private::chimod::collect::<
                                            CensusTask,
                                        >(task, replica)
                                    }
                                }
                                20u32 => {
                                    unsafe {
                                        ::chi_sdk::__private::chimod::collect::<
                                            CoMutexTestTask,
                                        >(task, replica)
                                    }
                                }
                                21u32 => {
                                    unsafe {
                                        ::chi_sdk::__private::chimod::collect::<
                                            CoRwLockTestTask,
                                        >(task, replica)
                                    }
                                }
                                10u32 => {
                                    unsafe {
                                        ::chi_sdk::__private::chimod::collect::<
                                            CustomTask,
                                        >(task, replica)
                                    }
                                }
                                14u32 => {
                                    unsafe {
                                        ::chi_sdk::__private::chimod::collect::<
                                            EchoTask,
                                        >(task, replica)
                                    }
                                }
                                16u32 => {
                                    unsafe {
                                        ::chi_sdk::__private::chimod::collect::<
                                            FanOutTask,
                                        >(task, replica)
                                    }
                                }
                                23u32 => {
                                    unsafe {
                                        ::chi_sdk::__private::chimod::collect::<
                                            LocateTask,
                                        >(task, replica)
                                    }
                                }
                                11u32 => {
                                    unsafe {
                                        ::chi_sdk::__private::chimod::collect::<
                                            PanicTask,
                                        >(task, replica)
                                    }
                                }
                                17u32 => {
                                    unsafe {
                                        ::chi_sdk::__private::chimod::collect::<
                                            RecurseTask,
                                        >(task, replica)
                                    }
                                }
                                15u32 => {
                                    unsafe {
                                        ::chi_sdk::__private::chimod::collect::<
                                            SleepTask,
                                        >(task, replica)
                                    }
                                }
                                22u32 => {
                                    unsafe {
                                        ::chi_sdk::__private::chimod::collect::<
                                            StackProbeTask,
                                        >(task, replica)
                                    }
                                }
                                25u32 => {
                                    let this = this
                                        .ok_or_else(|| ::chi_sdk::__private::chimod::aggregate_needs_container(
                                            "chimaera_mod_name",
                                            "aggregate_tally",
                                        ))?;
                                    let (t, r) = unsafe {
                                        (
                                            ::chi_sdk::__private::chimod::cast::<TallyTask>(task)?,
                                            &*::chi_sdk::__private::chimod::cast::<
                                                TallyTask,
                                            >(replica as *mut ::chi_sdk::__private::chimod::TaskHeader)?,
                                        )
                                    };
                                    this.aggregate_tally(t, r)
                                        .map_err(::chi_sdk::__private::chimod::failed)
                                }
                                other => {
                                    ::core::result::Result::Err(
                                        ::chi_sdk::__private::chimod::unsupported(
                                            "chimaera_mod_name",
                                            other,
                                            NAMES,
                                        ),
                                    )
                                }
                            }
                        },
                    )
                }
            }
            ::core::option::Option::Some(
                __aggregate as ::chi_sdk::__private::chimod::AggregateFn,
            )
        },
    };
    /// The module's entry: its function table.
    ///
    /// # Safety
    /// Always safe to call.
    #[unsafe(export_name = "chimaera_module_entry_chimaera_mod_name")]
    pub unsafe extern "C" fn entry() -> *const ::chi_sdk::__private::chimod::ModuleApi {
        &API
    }
}
/// The module's entry (exported as `chimaera_module_entry_{CHIMOD_LIB_NAME}`):
/// its function table. A runtime that links the module in registers it
/// with this.
pub const CHIMOD_ENTRY: ::chi_sdk::__private::chimod::EntryFn = __chimod::entry;
/** A pool of the module `chimaera_mod_name`, as a client program calls it (generated by `#[chimod]`).

 Make one with [`ModNameClient::create`] (which creates the pool, or finds it by name) or from a [`PoolId`](chi_sdk::types::PoolId) (`ModNameClient::from(pool)`). Each method of the module has a call that waits for its outputs and an `async_` call that returns the submitted task. Calls go to the containers [`query`](Self::query) selects (this node's by default) on the lanes of [`priority`](Self::priority) (low latency by default); [`with_query`](Self::with_query) and [`with_priority`](Self::with_priority) change them.*/
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModNameClient {
    /// The pool.
    pub pool: ::chi_sdk::__private::PoolId,
    /// Which of the pool's containers the calls go to.
    pub query: ::chi_sdk::__private::DomainQuery,
    /// The lanes the calls take.
    pub priority: ::chi_sdk::__private::Priority,
}
impl ::core::convert::From<::chi_sdk::__private::PoolId> for ModNameClient {
    fn from(pool: ::chi_sdk::__private::PoolId) -> Self {
        Self::new(pool)
    }
}
impl ModNameClient {
    /// The client of `pool`: calls go to this node's container, on
    /// low-latency lanes.
    pub const fn new(pool: ::chi_sdk::__private::PoolId) -> Self {
        Self {
            pool,
            query: ::chi_sdk::__private::DomainQuery::local(),
            priority: ::chi_sdk::__private::Priority::LowLatency,
        }
    }
    /// The same pool, its calls going to the containers `query` selects.
    #[must_use]
    pub const fn with_query(self, query: ::chi_sdk::__private::DomainQuery) -> Self {
        Self { query, ..self }
    }
    /// The same pool, its calls taking the lanes of `priority`.
    #[must_use]
    pub const fn with_priority(self, priority: ::chi_sdk::__private::Priority) -> Self {
        Self { priority, ..self }
    }
    /// Destroys the pool (every container of it).
    pub fn destroy(
        &self,
        client: &::chi_sdk::__private::Client,
    ) -> ::core::result::Result<(), ::chi_sdk::__private::CallError> {
        ::chi_sdk::__private::AdminClient::new(client).destroy_pool(self.pool)
    }
    /// Creates pool `pool_name` of this module with `params`, or finds
    /// it if it exists (then `params` are not used); fails if a pool of
    /// that name belongs to another module.
    pub fn create(
        client: &::chi_sdk::__private::Client,
        pool_name: &str,
        params: &CreateParams,
    ) -> ::core::result::Result<Self, ::chi_sdk::__private::CallError> {
        ::chi_sdk::__private::AdminClient::new(client)
            .get_or_create(pool_name, params)
            .map(Self::new)
    }
    /// Submits [`create`](Self::create): the pool's id is the task's
    /// `pool_id` once it completes.
    pub fn async_create<'c>(
        client: &'c ::chi_sdk::__private::Client,
        pool_name: &str,
        params: &CreateParams,
    ) -> ::core::result::Result<
        ::chi_sdk::__private::Pending<'c, ::chi_sdk::__private::GetOrCreatePoolTask>,
        ::chi_sdk::__private::CallError,
    > {
        ::chi_sdk::__private::AdminClient::new(client)
            .async_get_or_create(pool_name, params)
    }
}
__chi_calls_CensusTask!(CensusTask, ModNameClient, census, async_census);
__chi_calls_CoMutexTestTask!(
    CoMutexTestTask, ModNameClient, co_mutex_test, async_co_mutex_test
);
__chi_calls_CoRwLockTestTask!(
    CoRwLockTestTask, ModNameClient, co_rw_lock_test, async_co_rw_lock_test
);
__chi_calls_CustomTask!(CustomTask, ModNameClient, custom, async_custom);
__chi_calls_EchoTask!(EchoTask, ModNameClient, echo, async_echo);
__chi_calls_FanOutTask!(FanOutTask, ModNameClient, fan_out, async_fan_out);
__chi_calls_LocateTask!(LocateTask, ModNameClient, locate, async_locate);
__chi_calls_PanicTask!(PanicTask, ModNameClient, panic, async_panic);
__chi_calls_RecurseTask!(RecurseTask, ModNameClient, recurse, async_recurse);
__chi_calls_SleepTask!(SleepTask, ModNameClient, sleep, async_sleep);
__chi_calls_StackProbeTask!(
    StackProbeTask, ModNameClient, stack_probe, async_stack_probe
);
__chi_calls_TallyTask!(TallyTask, ModNameClient, tally, async_tally);
