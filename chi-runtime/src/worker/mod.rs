//! Workers: pop tasks from their lanes, route them to a container and run each in
//! a stackful coroutine.
//!
//! # The loop
//!
//! A worker holds its process-queue lanes as a [`Consumer`] and sorts them into
//! an *active* list, popped round robin, and a *cold* list of lanes that were
//! found empty several times in a row ([`lanes`]). For each task pointer it:
//!
//! 1. resolves the header (the pointer is untrusted: bounds and alignment are
//!    checked, and the whole `size` the header claims must lie in the segment;
//!    see [`validate`]);
//! 2. looks the pool up in its own cache of the pool table (refreshed when the
//!    pool manager's generation moves);
//! 3. resolves the domain query to a container (one on another node: the task
//!    goes out, [`remote`]; `Dynamic`: the module picks, [`dynamic`]);
//! 4. asks the container's `Monitor(LocalSchedule)` for a lane;
//! 5. runs the module's `run` in a coroutine on a stack taken from the worker's
//!    pool (no `mmap` per task; see `crate::coroutine`); a task that yields is
//!    parked and resumed in turn; one that blocks (on a subtask, a lock, a
//!    timer) is parked until a wake-up names it ([`sched`]);
//! 6. writes the error message if any, marks the task complete and wakes its
//!    waiter (a futex wake only if the waiter sleeps); fire-and-forget tasks are
//!    freed here.
//!
//! Subtasks that handlers submit wait in the worker's inbox and are taken
//! before the lanes; ready tasks and lanes take turns. With nothing to do
//! the worker polls for the configured busy period (yielding the CPU between
//! polls after the first microseconds; longer after remote work, see
//! [`remote`]), then sleeps on its doorbell until a push, a wake-up
//! from another worker or its next timer. At stop it finishes
//! parked tasks and fails what is left in its lanes with `SHUTDOWN`, so no
//! client waits forever.
//!
//! # Files
//!
//! This file holds the loop and the task path (`serve`, `handle`, `dispatch`,
//! `start_task`, `step`, `finish_with`): the code every task runs, measured
//! per task in nanoseconds. Around it:
//!
//! * [`sched`]: ready, blocked and timed tasks, subtasks, wake-ups;
//! * [`inline`]: subtasks run on the stack of the handler that waits for
//!   them ([`frames`]), the worker's pool table ([`pools`]); [`outcome`]: a task's end;
//! * [`wakes`]: the worker's side of them between steps (methods of
//!   [`Worker`] in another `impl` block, `#[inline]` where the task path
//!   calls them);
//! * [`routing`]: the pool table, the container, Monitor's lane, the context
//!   handed to modules, Monitor(Cleanup) (methods of [`Worker`] too);
//! * [`periodic`]: what a periodic task does between its runs;
//! * [`validate`]: checking a popped word before anything is written;
//! * [`lanes`]: the active and cold lanes; [`moves`]: lanes moving to and
//!   from other workers; [`samples`]: measured steps for the models;
//! * [`idle`]: the idle worker's back-off (poll, poll yielding the CPU, sleep);
//! * [`supervision`]: what the worker publishes ([`WorkerStats`]) and the
//!   retirement hand-shake with the supervisor;
//! * [`stalls`]: lane cells a dead producer left claimed;
//! * [`lifecycle`]: the worker thread around the loop — restart, panics,
//!   retirement, stop (methods of [`Worker`] in another `impl` block).
//!
//! The children import nothing of this file except `lifecycle`, `wakes`,
//! `routing`, `moves` and `samples`, which extend [`Worker`]; this file
//! imports the others.

use std::ffi::c_void;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chi_sdk::abi::{ErrorBuf, LaneId, MonitorMode};
use chi_sdk::queue::Consumer;
use chi_sdk::shm::{Allocator, ShmPtr};
use chi_sdk::task::{TaskHeader, code};
use chi_sdk::types::PoolId;
use corosensei::stack::Stack;
use corosensei::{Coroutine, CoroutineResult};

use crate::coroutine::StackPool;
use crate::pool::Container;
use crate::state::NodeState;

pub mod complete;
pub mod dynamic;
pub mod frames;
pub mod idle;
pub mod inline;
pub mod lanes;
pub mod lifecycle;
pub mod moves;
pub mod outcome;
pub mod parked;
pub mod periodic;
pub mod pools;
pub mod remote;
pub mod routing;
pub mod samples;
pub mod sched;
pub mod stalls;
pub mod supervision;
pub mod timers;
pub mod validate;
pub mod wakes;

use idle::{Idle, IdleClock};
use inline::Inline;
use lanes::LaneSets;
use parked::Parked;
use periodic::{Periodic, periodic_of};
use sched::{Current, Local, Slots, Suspend, TaskYielder, Timers};
use stalls::CellStalls;
pub use supervision::{WorkerStats, claim, phase};
pub use validate::{Invalid, validate_task};

/// One worker thread's state.
#[allow(missing_debug_implementations)]
pub struct Worker {
    shared: Arc<NodeState>,
    stats: Arc<WorkerStats>,
    consumer: Consumer,
    alloc: Allocator,
    stacks: StackPool,
    /// Live coroutines between their steps ([`sched`]).
    slots: Slots<Parked>,
    /// Timers of blocked tasks.
    timers: Timers,
    /// What the services reach of this worker while its tasks run.
    local: Box<Local>,
    /// Wake-ups taken from the mailbox (kept to reuse its allocation).
    mail: Vec<u32>,
    /// Runs subtasks inline; holds the worker's copy of the pool table.
    inline: Rc<Inline>,
    /// (pool, lane) pairs already warned about (bad routes), to warn once.
    warned_lanes: Vec<(PoolId, u32)>,
    /// The runtime's own blocks of the main segment: never run as tasks.
    runtime_owned: [ShmPtr; 3],
    /// Live coroutines at most; past it, tasks wait in their lanes.
    max_live: usize,
    /// Lane cells seen claimed and unpublished ([`stalls`]).
    stalls: CellStalls,
    /// Loop iterations (published to `stats.beat`).
    beat: u64,
    /// The word being handled (failed with `PANICKED` if the handling panics).
    handling: Option<ShmPtr>,
    /// Live coroutines (published to `stats.live`: a plain store, no locked
    /// instruction on the task path).
    live: u64,
    /// Of those, tasks taken from the lanes (what `coroutine.max_live` bounds).
    from_lanes: u64,
    /// The supervisor moved this worker's lanes to another worker: it finishes
    /// the tasks it holds and exits without touching its lanes.
    retired: bool,
    /// Lanes were taken from this worker: its lane sets need rebuilding.
    lanes_dirty: bool,
    /// State of the random pick of the tasks measured ([`samples`]), and
    /// tasks started (saturating).
    sample_tick: u32,
    started: u32,
    /// Measured steps not yet handed to the reinforcement thread.
    samples: Vec<crate::models::Sample>,
    /// Remote tasks and replies this worker saved, not yet sent ([`remote`]).
    wire_out: crate::cluster::wire::WireBatch,
}

/// Live coroutines past which a worker resumes woken tasks before it starts
/// new subtasks (see `serve`).
const SUBTASK_SOFT_LIVE: u64 = 32;

/// Loop iterations between two looks for lanes held up by unpublished cells
/// while the worker is busy (an idle worker looks before it sleeps).
const STALL_CHECK_EVERY: u64 = 4096;
const _: () = assert!(STALL_CHECK_EVERY.is_multiple_of(idle::BUSY_LOOK_EVERY));

impl Worker {
    /// A worker consuming `consumer`'s lanes.
    pub fn new(
        shared: Arc<NodeState>,
        stats: Arc<WorkerStats>,
        consumer: Consumer,
    ) -> anyhow::Result<Worker> {
        let alloc = Allocator::attach(&shared.ipc.main)?;
        let runtime_owned = shared.ipc.runtime_owned();
        let max_live = shared.config.coroutine.max_live.max(1) as usize;
        let n = consumer.lanes().len();
        let seed = stats.id.wrapping_mul(0x9e37_79b9) | 1;
        let peers = {
            let node = Arc::downgrade(&shared);
            Box::new(move || node.upgrade().map(|n| n.workers()).unwrap_or_default())
        };
        let (inline, local) = Inline::with_local(&shared, stats.clone(), peers, alloc.clone());
        Ok(Worker {
            shared,
            stats,
            consumer,
            alloc,
            stacks: StackPool::new(),
            slots: Slots::new(),
            timers: Timers::default(),
            local,
            mail: Vec::new(),
            inline,
            warned_lanes: Vec::new(),
            runtime_owned,
            max_live,
            stalls: CellStalls::new(n),
            beat: 0,
            handling: None,
            live: 0,
            from_lanes: 0,
            retired: false,
            lanes_dirty: false,
            sample_tick: seed,
            started: 0,
            samples: Vec::new(),
            wire_out: Default::default(),
        })
    }

    /// The loop of [`run`](Self::run): returns at stop, or once retired.
    fn serve(&mut self) {
        let busy = self.shared.config.idle.busy_poll;
        let mut idle = IdleClock::default();
        let mut sets = LaneSets::new(self.consumer.lanes().len());
        let mut lane_turn = false;
        loop {
            self.beat = self.beat.wrapping_add(1);
            // Relaxed: a progress counter the supervisor samples.
            self.stats.beat.store(self.beat, Ordering::Relaxed);
            if self.retired {
                self.finish_retired();
                return;
            }
            if self.shared.stopping() {
                break;
            }
            if self.moves_waiting() {
                self.apply_moves();
                sets = LaneSets::new(self.consumer.lanes().len());
                self.stalls = CellStalls::new(self.consumer.lanes().len());
            }
            // A lane held up by a cell a dead client claimed must be noticed
            // even while other lanes and suspended tasks keep the worker
            // busy; so must the frames of remote work ([`remote`]).
            if self.beat.is_multiple_of(idle::BUSY_LOOK_EVERY) {
                self.busy_look();
                if self.beat.is_multiple_of(STALL_CHECK_EVERY) {
                    self.check_stalled_cells();
                }
            }
            self.collect_wakes();
            // A busy worker's remote records wait a bounded time ([`remote`]).
            self.flush_wire_if(self.wire_out.due());
            // Subtasks first: their parents wait for them (and keep their
            // coroutines) meanwhile, and a parent woken by each of its
            // subtasks resumes once, after the last. Newest first, so a tree
            // of subtasks runs depth first; and past SUBTASK_SOFT_LIVE live
            // coroutines woken tasks go before new subtasks, so a tree's
            // finished branches end (and give their stacks back) before more
            // of it starts.
            if self.live > SUBTASK_SOFT_LIVE
                && let Some(s) = self.slots.ready.pop_front()
            {
                self.resume(s);
                idle.stepped();
                continue;
            }
            let sub = self.local.inbox.borrow_mut().pop_back();
            if let Some(sub) = sub {
                self.dispatch_sub(sub);
                idle.worked();
                continue;
            }
            // Ready tasks and lanes take turns. Past `max_live` tasks taken from
            // the lanes, new ones wait there (back-pressure) while the live ones
            // go on; subtasks do not count (a parked tree of subtasks must not
            // hold up the lanes, which may carry what ends it).
            lane_turn = !lane_turn || self.slots.ready.is_empty();
            if lane_turn
                && (self.from_lanes as usize) < self.max_live
                && let Some(ptr) = sets.pop(&mut self.consumer)
            {
                self.handling = Some(ptr);
                self.handle(ptr);
                self.handling = None;
                idle.worked();
                continue;
            }
            // Nothing more queued now: the remote records leave.
            self.flush_wire_if(!self.wire_out.is_empty());
            if let Some(s) = self.slots.ready.pop_front() {
                self.resume(s);
                idle.stepped();
                continue;
            }
            match idle.empty_poll(self.wire_out.busy_period(busy)) {
                Idle::Poll => {
                    self.idle_poll();
                    continue;
                }
                // A client may be waiting for this CPU (see `idle`).
                Idle::Yield => {
                    self.idle_yield();
                    continue;
                }
                Idle::Sleep => self.remote_sleep(),
            }
            // Drop this worker's references to destroyed pools before sleeping, so
            // their containers go (and release what they hold) without waiting
            // for this worker's next task.
            self.refresh_pools();
            self.flush_samples();
            // `sleep` returns at once if any lane (cold ones too) holds work, which
            // the next `pop` then warms up, or a wake-up was posted; it ends at
            // the next timer of a blocked task at the latest.
            let mut nap = Duration::from_millis(250);
            if let Some(at) = self.timers.next() {
                nap = nap.min(at.saturating_duration_since(Instant::now()));
            }
            self.stats.sleeping.store(true, Ordering::Relaxed);
            let stats = &self.stats;
            let slept = self.consumer.sleep_unless(Some(nap), || stats.has_mail());
            self.stats.sleeping.store(false, Ordering::Relaxed);
            if !slept && self.check_stalled_cells() {
                // Only cells that a producer claimed and has not published: wait
                // for it (or for the reaper) without spinning a core.
                std::thread::sleep(Duration::from_millis(1));
            }
            sets.warm(&self.consumer);
            idle.worked();
        }
    }

    fn handle(&mut self, ptr: ShmPtr) {
        let (task, generation) = match validate_task(&self.alloc, &self.runtime_owned, ptr) {
            Ok(v) => v,
            Err(Invalid::Refuse(why)) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                return validate::log_refused(self.stats.id, ptr, &why);
            }
            Err(Invalid::Fail {
                task,
                generation,
                message,
            }) => {
                self.finish(task, generation, code::BAD_TASK, Some(message));
                return;
            }
        };
        self.dispatch(task, generation, ptr, true);
    }

    /// Runs (or routes) the validated task `task` of `generation`, which
    /// travels in queues as `ptr`; `from_lane`: popped from a lane (counted
    /// against `coroutine.max_live`), not a subtask from the inbox.
    fn dispatch(&mut self, task: *mut TaskHeader, generation: u32, ptr: ShmPtr, from_lane: bool) {
        // SAFETY: validated: the start of a live task block of at least `size`
        // bytes; fields are only read here (writes go through `finish` and atomics).
        let h = unsafe { &*task };
        if h.is_cancelled() {
            self.finish(
                task,
                generation,
                code::CANCELLED,
                Some("the task was cancelled before it ran".into()),
            );
            return;
        }
        // No RUNNING bit is set here: the waiting client spins on this word, and
        // every write to it while the task runs costs a cache-line transfer on
        // the round trip (the state goes from QUEUED to COMPLETE in one write).
        self.refresh_pools();
        let found = self.container_of(h);
        let (pool_id, container) = match found {
            Ok(found) => found,
            Err((pools::REMOTE, _)) => return self.send_remote(task, generation),
            Err((pools::DYNAMIC, _)) => match self.dispatch_dynamic(task, generation) {
                Some(found) => found,
                None => return,
            },
            Err((rc, msg)) => {
                self.finish(task, generation, rc, Some(msg));
                return;
            }
        };
        let routed = h.is_routed();
        if !routed
            && let Some(monitor) = container.module.api.monitor
            && !container.queues.is_empty()
        {
            let mut ctx = self.ctx(&container, std::ptr::null_mut());
            ctx.pool_id = pool_id;
            ctx.route_lane = LaneId::HERE.0;
            // SAFETY: the container's state and the validated task are live; the
            // monitor only writes `ctx` (routing is by returned lane, never by
            // enqueueing).
            let rc = unsafe {
                monitor(
                    container.state,
                    MonitorMode::LocalSchedule as u32,
                    task,
                    &mut ctx,
                )
            };
            if rc != code::OK {
                self.monitor_failed(&container, h, MonitorMode::LocalSchedule, rc);
                ctx.route_lane = LaneId::HERE.0;
            }
            if self.route(&container, pool_id, LaneId(ctx.route_lane), ptr, h) {
                return;
            }
        }
        self.start_task(container, task, generation, from_lane);
    }

    fn start_task(
        &mut self,
        container: Arc<Container>,
        task: *mut TaskHeader,
        generation: u32,
        from_lane: bool,
    ) {
        let Some(slot) = self.slots.alloc() else {
            self.finish(
                task,
                generation,
                code::FAILED,
                Some(format!(
                    "the worker holds {} live tasks, its most; resubmit later",
                    self.live
                )),
            );
            return;
        };
        let stack_size = container.stack_size;
        let default_size = self.shared.config.coroutine.stack_size;
        let stack = match self.stacks.take(stack_size, default_size) {
            Ok(s) => s,
            Err(e) => {
                self.slots.release(slot);
                self.no_stack(task, generation, &e);
                return;
            }
        };
        let stack_limit = stack.limit().get();
        let run = container.module.api.run;
        let state_ptr = container.state as usize;
        let task_addr = task as usize;
        let mut base = self.ctx(&container, std::ptr::null_mut());
        // SAFETY: `task` was validated by the caller; a plain read.
        base.pool_id = unsafe { (*task).pool_id };
        let periodic = periodic_of(task).map(|p| Periodic {
            period: p,
            container: container.clone(),
            node: self.shared.clone(),
        });
        let is_periodic = periodic.is_some();
        let co = Coroutine::with_stack(stack, move |yielder: &TaskYielder, ()| {
            let mut ctx = base;
            ctx.runtime = yielder as *const TaskYielder as *mut c_void;
            sched::started(yielder);
            let mut err = ErrorBuf::default();
            loop {
                // The clock is read for periodic tasks only (it costs the task
                // path some 20 ns).
                let started = periodic.as_ref().map(|_| Instant::now());
                // SAFETY: the container outlives the coroutine (held in `Parked` or
                // by the caller), the task was validated, and `ctx`/`err` live on
                // this stack.
                let rc = unsafe {
                    run(
                        state_ptr as *mut c_void,
                        task_addr as *mut TaskHeader,
                        &mut ctx,
                        &mut err,
                    )
                };
                let Some(p) = periodic.as_ref().filter(|_| rc == code::OK) else {
                    return (rc, (rc != code::OK).then(|| err.as_str().to_owned()));
                };
                // SAFETY: as above; only the state word is read.
                let h = unsafe { &*(task_addr as *const TaskHeader) };
                let next = started.map_or_else(Instant::now, |s| s + p.period);
                if let Some(end) = p.wait_next(h, next) {
                    return end;
                }
            }
        });
        self.live += 1;
        self.stats.live.store(self.live, Ordering::Relaxed);
        self.from_lanes += u64::from(from_lane);
        if is_periodic {
            self.stats.periodic.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: validated by the caller; a plain read of the header.
        let node = unsafe { (*task).task_node };
        let probe = self.probe(&container, task, from_lane);
        self.step(
            slot,
            Parked {
                co,
                task,
                generation,
                _container: container,
                listed: false,
                node,
                yielder: std::ptr::null(),
                periodic: is_periodic,
                stack_size,
                stack_limit,
                timer: None,
                from_lane,
            },
        );
        if let Some(p) = probe {
            self.record(p);
        }
    }

    fn step(&mut self, slot: u32, mut p: Parked) {
        // Relaxed: read by the supervisor, which checks the task's magic and
        // generation before it uses them.
        self.stats.current.store(p.task as u64, Ordering::Relaxed);
        self.stats
            .current_generation
            .store(p.generation, Ordering::Relaxed);
        if !self.retired {
            // Release: the pops before this step happen before a takeover of the
            // lanes (pairs with the supervisor's Acquire load of the phase).
            self.stats.phase.store(phase::IN_TASK, Ordering::Release);
        }
        self.local.set_current(Current {
            token: sched::token(self.stats.id, slot),
            node: p.node,
            task: p.task,
            yielder: p.yielder,
            stack_limit: p.stack_limit,
            inline: std::ptr::null(),
        });
        let r = p.co.resume(());
        p.yielder = self.local.current.get().yielder;
        self.local.clear_current();
        self.local.after_step();
        if !self.retired {
            self.leave_task();
        }
        match r {
            CoroutineResult::Yield(how) => {
                if !p.listed {
                    self.stats.list_suspended(p.task as u64, p.generation);
                    p.listed = true;
                }
                let blocked = match how {
                    Suspend::Ready => false,
                    Suspend::Block(at) => {
                        // A task that blocks again (after a spurious wake-up)
                        // keeps a pending timer that fires no later than the new
                        // one: it wakes then and blocks again with what is left,
                        // so a slot has one or two timers in the heap, not one per
                        // wake-up.
                        if let Some(at) = at
                            && p.timer.is_none_or(|t| t > at || t <= Instant::now())
                        {
                            self.timers.add(at, slot);
                            p.timer = Some(at);
                        }
                        true
                    }
                };
                self.slots.park(slot, p, blocked);
                self.publish_blocked();
            }
            CoroutineResult::Return((rc, msg)) => {
                self.slots.release(slot);
                if p.listed {
                    self.stats.unlist_suspended(p.task as u64);
                }
                self.live -= 1;
                self.stats.live.store(self.live, Ordering::Relaxed);
                self.from_lanes -= u64::from(p.from_lane);
                if p.periodic {
                    self.stats.periodic.fetch_sub(1, Ordering::Relaxed);
                }
                if p.periodic && rc != code::OK {
                    let c = p._container.clone();
                    self.cleanup(p.task, Some(&c));
                }
                let c = &p._container;
                let del = c.module.api.del.map(|d| (d, c.state));
                self.finish_with(p.task, p.generation, rc, msg, del);
                self.stacks.push(p.stack_size, p.co.into_stack());
            }
        }
    }
}
