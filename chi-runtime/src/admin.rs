//! The admin module, linked into the runtime and declared with `#[chimod]` like
//! any loadable module: the runtime registers it through the same
//! [`ModuleApi`](chi_sdk::abi::ModuleApi) table ([`CHIMOD_ENTRY`]).
//!
//! Methods (its `chimaera_mod.yaml` is `chi-sdk/src/admin/chimaera_mod.yaml`,
//! beside the task types in [`chi_sdk::admin`]): CreatePool, GetOrCreatePool,
//! DestroyPool, StopRuntime and Echo. Failures come back in the task's result
//! code and error message.
//!
//! # Design
//!
//! An admin container acts on the node state of the runtime that created it:
//! its constructor ([`Admin::new`]) is given a weak reference to it (weak: the
//! node state owns the module manager, which holds this constructor). The
//! runtime registers the module as a [`Builtin`] ([`builtin`]) whose
//! constructor builds every admin container with that reference, in place of
//! the table's `create`; so no process global says which runtime an admin
//! container serves. A task that finds the node state gone fails with
//! `SHUTDOWN`.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chi_sdk::abi::RunCtx;
use chi_sdk::admin::{
    CancelTask, CreatePoolTask, DestroyPoolTask, EchoTask, FlushTask, GetOrCreatePoolTask,
    StopRuntimeTask,
};
use chi_sdk::container::CreateCtx;
use chi_sdk::shm::ShmString;
use chi_sdk::task::{Failure, code};
use chi_sdk::types::PoolId;

use crate::cluster::pools::{GLOBAL_POOL_END, MAX_CONTAINERS, PoolAnswer, PoolAsk, PoolSpec};
use crate::module::Builtin;
use crate::state::NodeState;

/// The admin container's state.
#[derive(Debug)]
pub struct Admin {
    shared: Weak<NodeState>,
}

/// The admin module as the module manager of the node state `node` knows it:
/// its containers are built by [`Admin::new`] with `node`.
pub fn builtin(node: Weak<NodeState>) -> Builtin {
    Builtin {
        name: chi_sdk::admin::ADMIN_LIB_NAME,
        entry: CHIMOD_ENTRY,
        create: Some(Arc::new(move |info, args, err| {
            let node = node.clone();
            // SAFETY: `info` and `err` are references, valid for the call, and
            // `args` is `args.len()` bytes; this is the boxing `#[chimod]`'s own
            // `create` does, so the table's other functions take the state.
            unsafe {
                chi_sdk::__private::chimod::create::<Admin>(
                    info,
                    args.as_ptr(),
                    args.len(),
                    err,
                    |_ctx, _args| Ok(Admin::new(node)),
                )
            }
        })),
    }
}

/// A pool over a cluster of one: every container on this node (also the
/// `compose` pools with `query: global` of a runtime without peers).
pub(crate) fn alone(node: &NodeState, ask: PoolAsk) -> Result<PoolId, String> {
    if let Some(p) = node.pools.by_name(&ask.name) {
        if ask.get_or_create && p.module == ask.module && p.placement.is_some() {
            return Ok(p.id);
        }
        return Err(format!(
            "pool name '{}' is taken by a pool of module '{}'; choose another name",
            ask.name, p.module
        ));
    }
    if ask.containers > MAX_CONTAINERS {
        return Err(format!(
            "a pool over the cluster needs 1 to {MAX_CONTAINERS} containers (asked: {})",
            ask.containers
        ));
    }
    let id = node.pools.free_cluster_id();
    if id.0 >= GLOBAL_POOL_END {
        return Err("the cluster's pool ids are used up; restart the cluster".to_owned());
    }
    let spec = PoolSpec {
        id: id.0,
        module: ask.module,
        name: ask.name,
        args: ask.args,
        nodes: vec![node.node_id; ask.containers as usize],
    };
    node.create_share(&spec).map_err(|e| format!("{e:#}"))?;
    Ok(id)
}

/// The peer thread's answer on `answer`, waited for 1 ms at a time
/// (`RunCtx::sleep`: the worker runs other tasks meanwhile), at most
/// `limit`.
fn wait_answer(
    answer: &Receiver<PoolAnswer>,
    limit: Duration,
    ctx: &mut RunCtx,
) -> Result<PoolSpec, String> {
    let until = Instant::now() + limit;
    loop {
        match answer.try_recv() {
            Ok(a) => return a,
            Err(TryRecvError::Disconnected) => {
                return Err("the runtime is stopping; its peer link is closed".into());
            }
            Err(TryRecvError::Empty) if Instant::now() >= until => {
                return Err(format!(
                    "no answer from the peer link within {limit:?}; see the runtime's log"
                ));
            }
            Err(TryRecvError::Empty) => ctx.sleep(Duration::from_millis(1)),
        }
    }
}

/// How long an admin task waits for the peer thread: past the time it
/// takes to fail what waits on another node.
fn answer_limit(node: &NodeState) -> Duration {
    node.config.cluster.task_timeout * 2 + Duration::from_secs(1)
}

fn text(s: &ShmString, what: &str) -> Result<String, Failure> {
    s.to_str()
        .map(str::to_owned)
        .map_err(|e| Failure::new(code::BAD_TASK, format!("{what}: {e}")))
}

impl Admin {
    /// An admin container acting on the node state `node`.
    pub fn new(node: Weak<NodeState>) -> Admin {
        Admin { shared: node }
    }

    fn runtime(&self) -> Result<Arc<NodeState>, Failure> {
        self.shared
            .upgrade()
            .ok_or_else(|| Failure::new(code::SHUTDOWN, "the runtime is stopping"))
    }

    #[allow(clippy::too_many_arguments)]
    fn make_pool(
        &self,
        module: &ShmString,
        name: &ShmString,
        args: &ShmString,
        requested: PoolId,
        get_or_create: bool,
        containers: u32,
        ctx: &mut RunCtx,
    ) -> Result<PoolId, Failure> {
        let shared = self.runtime()?;
        let module = text(module, "module name")?;
        let name = text(name, "pool name")?;
        let args = text(args, "arguments")?;
        if name.is_empty() || module.is_empty() {
            return Err(Failure::new(
                code::BAD_TASK,
                "a pool needs a module name and a pool name",
            ));
        }
        if containers > 0 {
            drop(shared);
            let ask = PoolAsk {
                module,
                name,
                args,
                containers,
                get_or_create,
            };
            return self.cluster_pool(ask, ctx);
        }
        shared
            .create_pool(&module, &name, &args, requested, get_or_create)
            .map_err(|e| Failure::new(code::CREATE_FAILED, format!("{e:#}")))
    }

    /// A pool over the cluster ([`crate::cluster::pools`]): the peer thread
    /// agrees on it with the other nodes while this task sleeps, 1 ms at a
    /// time, without holding its worker. A runtime without peers makes it
    /// alone, all containers here.
    fn cluster_pool(&self, ask: PoolAsk, ctx: &mut RunCtx) -> Result<PoolId, Failure> {
        let failed = |m: String| Failure::new(code::CREATE_FAILED, m);
        let (asker, limit) = {
            let node = self.runtime()?;
            let Some(asker) = node.pool_asker.get().cloned() else {
                return alone(&node, ask).map_err(failed);
            };
            (asker, answer_limit(&node))
        };
        let answer = asker.ask(ask).map_err(failed)?;
        let spec = wait_answer(&answer, limit, ctx).map_err(failed)?;
        Ok(PoolId(spec.id))
    }
}

#[chi_sdk::chimod(yaml = "../../chi-sdk/src/admin/chimaera_mod.yaml", client = false)]
impl Admin {
    /// kCreate: admin containers are built by the runtime's constructor
    /// ([`builtin`]), which gives them their node state; this table entry
    /// refuses.
    fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
        Err("the admin module can only be created by the runtime at start".to_owned())
    }

    /// kCreatePool.
    fn create_pool(&self, task: &mut CreatePoolTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        task.pool_id = self.make_pool(
            &task.module,
            &task.pool_name,
            &task.args,
            task.pool_id,
            false,
            task.containers,
            ctx,
        )?;
        Ok(())
    }

    /// kGetOrCreatePool.
    fn get_or_create_pool(
        &self,
        task: &mut GetOrCreatePoolTask,
        ctx: &mut RunCtx,
    ) -> Result<(), Failure> {
        task.pool_id = self.make_pool(
            &task.module,
            &task.pool_name,
            &task.args,
            PoolId::NULL,
            true,
            task.containers,
            ctx,
        )?;
        Ok(())
    }

    /// kDestroyPool. A pool over the cluster (with a peer link) is
    /// destroyed on every node through the authority
    /// ([`crate::cluster::pools`]), this task sleeping meanwhile as for its
    /// creation.
    fn destroy_pool(&self, task: &mut DestroyPoolTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        if task.pool_id == PoolId::ADMIN {
            return Err(Failure::new(
                code::FAILED,
                "the admin pool cannot be destroyed; stop the runtime instead",
            ));
        }
        let node = self.runtime()?;
        // A pool of this node alone may have any id a client asked for.
        let local = node
            .pools
            .get(task.pool_id)
            .is_some_and(|p| p.placement.is_none());
        if task.pool_id.0 >= chi_sdk::admin::GLOBAL_POOL_BASE
            && !local
            && let Some(asker) = node.pool_asker.get().cloned()
        {
            let limit = answer_limit(&node);
            // No reference to the runtime is held while suspended.
            drop(node);
            let failed = |m: String| Failure::new(code::FAILED, m);
            let answer = asker.destroy(task.pool_id.0).map_err(failed)?;
            wait_answer(&answer, limit, ctx).map_err(failed)?;
            return Ok(());
        }
        node.destroy_pool(task.pool_id)
            .map_err(|e| Failure::new(code::NO_POOL, e.to_string()))
    }

    /// kCancel: blocked tasks look at their condition again (a client marked
    /// a task cancelled).
    fn cancel(&self, _task: &mut CancelTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        let node = self.runtime()?;
        crate::worker::sched::sweep_all(&node.workers(), &node.ipc.queue);
        Ok(())
    }

    /// kFlush: waits, without holding its worker, until no task but flushes
    /// and periodic tasks is queued or live, seen twice in a row 100 µs
    /// apart. Every task submitted before the flush is then complete; tasks
    /// submitted after it may delay it.
    fn flush(&self, task: &mut FlushTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        let start = std::time::Instant::now();
        self.runtime()?.flushes.fetch_add(1, Ordering::Relaxed);
        let mut quiet = 0;
        while quiet < 2 {
            // No reference to the runtime is held while suspended (see `echo`).
            let busy = {
                let node = self.runtime()?;
                // Relaxed, here and below: monitoring figures, read twice.
                let flushes = node.flushes.load(Ordering::Relaxed);
                let live: u64 = node
                    .workers()
                    .iter()
                    .map(|w| {
                        w.live
                            .load(Ordering::Relaxed)
                            .saturating_sub(w.periodic.load(Ordering::Relaxed))
                    })
                    .sum();
                let q = &node.ipc.queue;
                let queued: u64 = (0..q.num_lanes()).map(|l| q.lane_len(l)).sum();
                live > flushes || queued > 0
            };
            quiet = if busy { 0 } else { quiet + 1 };
            ctx.sleep(std::time::Duration::from_micros(100));
        }
        self.runtime()?.flushes.fetch_sub(1, Ordering::Relaxed);
        task.waited_us = start.elapsed().as_micros() as u64;
        Ok(())
    }

    /// kStopRuntime.
    fn stop_runtime(&self, _task: &mut StopRuntimeTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        self.runtime()?.request_stop("a StopRuntime task");
        Ok(())
    }

    /// kEcho: answers `value`, after `delay_us` spent yielding.
    fn echo(&self, task: &mut EchoTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        // No reference to the runtime is held while suspended: a task still
        // parked when the runtime stops is leaked (see `Worker::drain`), and its
        // frame must not keep the runtime's state, and so its segments, alive.
        if task.delay_us > 0 {
            let until = std::time::Instant::now()
                + std::time::Duration::from_micros(task.delay_us.min(60_000_000));
            while std::time::Instant::now() < until {
                ctx.yield_now();
            }
        }
        task.reply = task.value;
        Ok(())
    }
}
