//! What a module's container sees of the runtime that hosts it.
//!
//! # Design
//!
//! A module library carries its own copy of chi-sdk (see [`crate::abi`]), so
//! everything here works across that boundary through the runtime's
//! [`RuntimeServices`](crate::abi::RuntimeServices) table, handed to the library once when it is loaded:
//!
//! * [`CreateCtx`] is what `create` (method `kCreate`) receives: the pool's id,
//!   name and the container's id, and [`CreateCtx::create_local_queue`], which
//!   asks the runtime for the container's lanes. Monitor then routes each task
//!   by naming one of those lanes ([`RunCtx::lane`](crate::abi::RunCtx::lane),
//!   [`RunCtx::lane_by_hash`](crate::abi::RunCtx::lane_by_hash)), never by
//!   enqueueing it.
//! * [`main_allocator`], [`client_data_allocator`] and
//!   [`runtime_data_allocator`] hand out allocators of the runtime's segments,
//!   for handlers that produce data (a string output that grows, a buffer read
//!   from a device). Outputs stored in a task's fields come from the main
//!   segment, which the client frees them from with the task.
//! * The library's `tracing` events go to the runtime's log: at load time a
//!   subscriber is installed in the library's copy of `tracing` that forwards
//!   every enabled event through
//!   [`RuntimeServices::log`](crate::abi::RuntimeServices::log), with the
//!   library's module path as its target. Module code logs with the ordinary
//!   `tracing` macros (re-exported as [`chi_sdk::tracing`](crate::tracing)).
//!
//! The state behind these (the services table, the adopted segments, the log
//! bridge) is kept by the crate's `module_side` module, set up once when the
//! runtime initialises the library; this module is its public face.

pub use crate::abi::CurrentTask;
use crate::abi::{ContainerInfo, ErrorBuf, lane_priority, nul_str};
pub use crate::abi::{LaneId, LocalQueueInfo, QueueId, RouteError, RunCtx};
pub use crate::module_side::{
    ContainerError, client_data_allocator, main_allocator, runtime_client, runtime_data_allocator,
};
use crate::queue::Priority;
use crate::types::{ContainerId, NodeId, PoolId};

/// What `create` receives: the container's identity and the runtime's services
/// for setting it up.
#[derive(Debug)]
pub struct CreateCtx<'a> {
    info: &'a ContainerInfo,
    queues: Vec<LocalQueueInfo>,
}

impl<'a> CreateCtx<'a> {
    /// The context of the container `info` describes (called by generated code).
    #[doc(hidden)]
    pub fn new(info: &'a ContainerInfo) -> CreateCtx<'a> {
        CreateCtx {
            info,
            queues: Vec::new(),
        }
    }

    /// The pool the container belongs to.
    pub fn pool_id(&self) -> PoolId {
        self.info.pool_id
    }

    /// The pool's name.
    pub fn pool_name(&self) -> &str {
        nul_str(&self.info.pool_name)
    }

    /// The container's id within its pool.
    pub fn container_id(&self) -> ContainerId {
        self.info.container_id
    }

    /// The node the container runs on.
    pub fn node_id(&self) -> NodeId {
        self.info.node_id
    }

    /// Adds local queue `id` with `lanes` lanes of `priority` (seed:
    /// `CreateLocalQueue`). Tasks Monitor routes to a lane run on a worker of
    /// that priority, one lane always on the same worker, so the tasks of a lane
    /// start in the order they were routed. Without any local queue a container
    /// has one low-latency lane, [`QueueId`] 0 lane 0, where every task goes.
    pub fn create_local_queue(
        &mut self,
        id: QueueId,
        lanes: u32,
        priority: Priority,
    ) -> Result<(), String> {
        if lanes == 0 || lanes > u32::from(u16::MAX) {
            return Err(format!(
                "{id}: {lanes} lanes; a local queue has 1..={} lanes",
                u16::MAX
            ));
        }
        if self.queues.iter().any(|q| q.queue_id == u32::from(id.0)) {
            return Err(format!(
                "{id} was already created; give each queue its own id"
            ));
        }
        let priority = match priority {
            Priority::LowLatency => lane_priority::LOW_LATENCY,
            Priority::HighLatency => lane_priority::HIGH_LATENCY,
        };
        let services = crate::module_side::services().ok_or_else(|| {
            "create_local_queue needs the runtime's services: call it from a module's create"
                .to_owned()
        })?;
        let mut err = ErrorBuf::default();
        // SAFETY: `runtime` is the handle the runtime passed for this `create` call,
        // still running; `err` is ours.
        let rc = unsafe {
            (services.create_local_queue)(
                self.info.runtime,
                u32::from(id.0),
                lanes,
                priority,
                &mut err,
            )
        };
        if rc != 0 {
            return Err(format!("{id}: {}", err.as_str()));
        }
        self.queues.push(LocalQueueInfo {
            queue_id: u32::from(id.0),
            lanes,
            priority,
        });
        Ok(())
    }

    /// Runs the container's tasks on coroutine stacks of `bytes` (seed: a
    /// module's own stack size), instead of the runtime's
    /// `coroutine.stack_size` (64 KiB by default): for handlers whose frames
    /// are large (a codec's state, deep recursion). From 16 KiB to 64 MiB,
    /// rounded up to 4 KiB. The worker keeps a few stacks of each size for
    /// reuse.
    pub fn set_stack_size(&mut self, bytes: usize) -> Result<(), String> {
        let services = crate::module_side::services().ok_or_else(|| {
            "set_stack_size needs the runtime's services: call it from a module's create".to_owned()
        })?;
        let mut err = ErrorBuf::default();
        // SAFETY: `runtime` is the handle the runtime passed for this `create`
        // call, still running; `err` is ours.
        let rc = unsafe { (services.set_stack_size)(self.info.runtime, bytes, &mut err) };
        if rc != 0 {
            return Err(err.as_str().to_owned());
        }
        Ok(())
    }

    /// The local queues created so far.
    pub fn local_queues(&self) -> &[LocalQueueInfo] {
        &self.queues
    }

    /// A client of this container's own pool (seed: `InitClient`), for a
    /// container that calls its own methods: any client type built from a pool
    /// id.
    pub fn init_client<C: From<PoolId>>(&self) -> C {
        C::from(self.pool_id())
    }
}

/// Marks this copy of chi-sdk as the runtime's (called by the runtime at start):
/// module code linked into the runtime logs through the runtime's `tracing`, so
/// no log bridge is installed for it.
#[doc(hidden)]
pub fn mark_runtime_process() {
    crate::module_side::mark_runtime_process();
}

/// The task running on this thread: its token (for [`wake_task`]) and task
/// node; `None` outside a handler run by a runtime. With [`block_current`]
/// and [`wake_task`] it is what coroutine-aware primitives are built on (see
/// [`crate::sync`]).
pub fn current_task() -> Option<CurrentTask> {
    crate::module_side::current()
}

/// Suspends the running task until [`wake_task`] names it or `timeout`
/// passes; the worker runs other tasks meanwhile. Wake-ups can be spurious:
/// wait in a loop on your condition. Returns `false` at once (without
/// waiting) outside a task.
pub fn block_current(timeout: Option<std::time::Duration>) -> bool {
    crate::module_side::block(timeout)
}

/// Makes the task of `token` (from [`current_task`]) runnable if it is
/// blocked; a stale token costs at most a spurious wake-up.
pub fn wake_task(token: u32) {
    crate::module_side::wake(token);
}
