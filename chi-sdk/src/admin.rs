//! The admin module's tasks: create, find and destroy pools, stop the runtime,
//! and an echo for measuring the round trip. Every runtime has an admin pool,
//! [`PoolId::ADMIN`].

use crate::client::{CallError, Client, Pending, TaskError, TaskPtr};
use crate::queue::Priority;
use crate::shm::{Allocator, ShmString};
use crate::types::{DomainQuery, PoolId};

/// The admin module's library name.
pub const ADMIN_LIB_NAME: &str = "chimaera_admin";

/// Pools over the cluster have ids from here up (chosen by the cluster's
/// authority, node of lowest id that is up), so they never collide with the
/// ids each node gives its own pools.
pub const GLOBAL_POOL_BASE: u64 = 1 << 32;

/// Method ids of the admin module, generated from its `chimaera_mod.yaml`
/// (beside this file) as every module's are: one constant per supported method
/// (`CREATE_POOL` for `kCreatePool`…) and [`ALL`](method::ALL). The container,
/// linked into the runtime, is declared with `#[chimod]` on the same file.
pub mod method {
    chi_macros::method_ids!(yaml = "admin/chimaera_mod.yaml");
}

/// The creation parameters of a module's pools (seed: a module's
/// `CreateParams`): serialised into the pool's argument string (as JSON) by the
/// client, and handed to the container's `create` as a value.
///
/// `#[chimod]` implements this trait for the parameter type of the module's
/// `create`, with the module's library name from its YAML, so the name a client
/// asks for and the library the runtime loads cannot disagree.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the create parameters of a module: no `#[chimod]` impl block has a `create` taking it",
    label = "not the parameter type of a `#[chimod]` container's `create`",
    note = "`#[chi_sdk::chimod]` on the container's impl block implements `PoolParams` for the type its `fn create(ctx: &mut CreateCtx<'_>, params: {Self})` takes: add the attribute, or take `{Self}` in `create`"
)]
pub trait PoolParams: serde::Serialize + serde::de::DeserializeOwned {
    /// The module's library name (`{namespace}_{module_name}`).
    const CHIMOD_LIB_NAME: &'static str;

    /// The argument string of a pool created with these parameters.
    fn to_args(&self) -> Result<String, String> {
        serde_json::to_string(self).map_err(|e| {
            format!(
                "cannot serialise the parameters of {}: {e}",
                Self::CHIMOD_LIB_NAME
            )
        })
    }

    /// The parameters in a pool's argument string (an empty string reads as `{}`,
    /// then as `null`, so a type with all-default fields needs no arguments).
    fn from_args(args: &str) -> Result<Self, String> {
        let text = args.trim();
        let parsed = if text.is_empty() {
            serde_json::from_str("{}").or_else(|_| serde_json::from_str("null"))
        } else {
            serde_json::from_str(text)
        };
        parsed.map_err(|e| {
            format!(
                "the pool arguments {args:?} are not the JSON of {}'s create parameters ({}): {e}",
                Self::CHIMOD_LIB_NAME,
                std::any::type_name::<Self>()
            )
        })
    }
}

/// Creates a pool of a module; fails if the name is taken.
#[crate::task(method = 10, yaml = "admin/chimaera_mod.yaml", new = "emplace")]
#[derive(Debug)]
pub struct CreatePoolTask {
    /// Module library name (`chimod_lib_name`, e.g. `chimaera_mod_name`).
    #[input]
    pub module: ShmString,
    /// Pool name, unique on the node.
    #[input]
    pub pool_name: ShmString,
    /// Module-specific creation arguments ([`PoolParams::to_args`]).
    #[input]
    pub args: ShmString,
    /// In: the requested id (0 = any). Out: the pool's id.
    #[inout]
    pub pool_id: PoolId,
    /// 0: a pool of this node (one container, the id as requested). `n` ≥ 1:
    /// a pool over the cluster, `n` containers dealt round robin over the
    /// nodes that are up, with a cluster-wide id (the requested id is
    /// ignored; see [`GLOBAL_POOL_BASE`]).
    #[input]
    pub containers: u32,
}

/// `texts` in new strings of `alloc`; if one cannot be allocated, the ones
/// made before it are freed.
fn strings<const N: usize>(
    alloc: &Allocator,
    texts: [&str; N],
) -> Result<[ShmString; N], crate::shm::AllocError> {
    let mut made: [ShmString; N] = std::array::from_fn(|_| ShmString::new());
    for (i, t) in texts.iter().enumerate() {
        match ShmString::from_str(alloc, t) {
            Ok(s) => made[i] = s,
            Err(e) => {
                for s in &mut made[..i] {
                    let _ = s.free(alloc);
                }
                return Err(e);
            }
        }
    }
    Ok(made)
}

impl CreatePoolTask {
    /// A CreatePool task for the admin pool.
    pub fn new(
        alloc: &Allocator,
        module: &str,
        pool_name: &str,
        args: &str,
        requested: PoolId,
    ) -> Result<Self, crate::shm::AllocError> {
        let [module, pool_name, args] = strings(alloc, [module, pool_name, args])?;
        Ok(Self::emplace(
            PoolId::ADMIN,
            DomainQuery::local(),
            module,
            pool_name,
            args,
            requested,
            0,
        ))
    }
}

/// Returns the pool of a name, creating it if it does not exist (seed:
/// `GetOrCreatePoolTask<CreateParams>`; the parameter type is given to
/// [`with_params`](Self::with_params), which fills in the module's library
/// name and serialises the parameters).
#[crate::task(method = 13, yaml = "admin/chimaera_mod.yaml", new = "emplace")]
#[derive(Debug)]
pub struct GetOrCreatePoolTask {
    /// Module library name (`chimod_lib_name`).
    #[input]
    pub module: ShmString,
    /// Pool name, unique on the node.
    #[input]
    pub pool_name: ShmString,
    /// Module-specific creation arguments ([`PoolParams::to_args`]).
    #[input]
    pub args: ShmString,
    /// 0: a pool of this node; `n` ≥ 1: a pool of `n` containers over the
    /// cluster (as [`CreatePoolTask::containers`]).
    #[input]
    pub containers: u32,
    /// The pool's id.
    #[output]
    pub pool_id: PoolId,
}

impl GetOrCreatePoolTask {
    /// A GetOrCreatePool task with raw arguments.
    pub fn new(
        alloc: &Allocator,
        module: &str,
        pool_name: &str,
        args: &str,
    ) -> Result<Self, crate::shm::AllocError> {
        let [module, pool_name, args] = strings(alloc, [module, pool_name, args])?;
        Ok(Self::emplace(
            PoolId::ADMIN,
            DomainQuery::local(),
            module,
            pool_name,
            args,
            0,
        ))
    }

    /// A GetOrCreatePool task for a pool of the module whose parameters are `P`.
    pub fn with_params<P: PoolParams>(
        alloc: &Allocator,
        pool_name: &str,
        params: &P,
    ) -> Result<Self, CallError> {
        let args = params.to_args().map_err(|message| TaskError {
            code: crate::task::code::BAD_TASK,
            message,
        })?;
        Ok(Self::new(alloc, P::CHIMOD_LIB_NAME, pool_name, &args)?)
    }

    /// The parameters in the task, read as `P`.
    pub fn params<P: PoolParams>(&self) -> Result<P, String> {
        P::from_args(self.args.to_str().map_err(|e| e.to_string())?)
    }
}

/// Destroys a pool.
#[crate::task(method = 11, yaml = "admin/chimaera_mod.yaml", new = "emplace")]
#[derive(Debug)]
pub struct DestroyPoolTask {
    /// The pool.
    #[input]
    pub pool_id: PoolId,
}

impl DestroyPoolTask {
    /// A DestroyPool task.
    pub fn new(pool_id: PoolId) -> Self {
        Self::emplace(PoolId::ADMIN, DomainQuery::local(), pool_id)
    }
}

/// Stops the runtime (it completes the task first).
#[crate::task(method = 12, yaml = "admin/chimaera_mod.yaml", new = "emplace")]
#[derive(Debug)]
pub struct StopRuntimeTask;

impl StopRuntimeTask {
    /// A StopRuntime task.
    pub fn new() -> Self {
        Self::emplace(PoolId::ADMIN, DomainQuery::local())
    }
}

impl Default for StopRuntimeTask {
    fn default() -> Self {
        Self::new()
    }
}

/// Makes the cancellation of a task take effect: the client marked the task
/// cancelled ([`Client::cancel`]); this has the runtime's blocked tasks look
/// at their condition again, so a waiting or periodic task notices.
#[crate::task(method = 15, yaml = "admin/chimaera_mod.yaml", new = "emplace")]
#[derive(Debug)]
pub struct CancelTask;

impl CancelTask {
    /// A Cancel task.
    pub fn new() -> Self {
        Self::emplace(PoolId::ADMIN, DomainQuery::local())
    }
}

impl Default for CancelTask {
    fn default() -> Self {
        Self::new()
    }
}

/// Completes once every task submitted before it — fire-and-forget tasks and
/// subtasks included — has completed (periodic tasks excepted: they run
/// until cancelled). The runtime waits until no task but flushes and
/// periodic tasks is queued or live, seen twice in a row.
#[crate::task(method = 16, yaml = "admin/chimaera_mod.yaml", new = "emplace")]
#[derive(Debug)]
pub struct FlushTask {
    /// How long the flush waited, in microseconds.
    #[output]
    pub waited_us: u64,
}

impl FlushTask {
    /// A Flush task.
    pub fn new() -> Self {
        Self::emplace(PoolId::ADMIN, DomainQuery::local())
    }
}

impl Default for FlushTask {
    fn default() -> Self {
        Self::new()
    }
}

/// Echoes `value` into `reply` (the empty task of round-trip measurements).
#[crate::task(method = 14, yaml = "admin/chimaera_mod.yaml", new = "emplace")]
#[derive(Debug)]
pub struct EchoTask {
    /// The value.
    #[input]
    pub value: u64,
    /// How long the handler takes before answering, in microseconds (0 for the
    /// empty task). The handler yields its coroutine while it waits, so the
    /// worker keeps running other tasks.
    #[input]
    pub delay_us: u64,
    /// `value`.
    #[output]
    pub reply: u64,
}

impl EchoTask {
    /// An Echo task for `pool` (the admin pool, or any pool whose module echoes).
    pub fn new(pool: PoolId, value: u64) -> Self {
        Self::emplace(pool, DomainQuery::local(), value, 0)
    }
}

/// Calls of the admin pool, from a [`Client`].
#[derive(Debug, Clone, Copy)]
pub struct AdminClient<'a> {
    client: &'a Client,
}

impl<'a> AdminClient<'a> {
    /// Admin calls through `client`.
    pub fn new(client: &'a Client) -> Self {
        AdminClient { client }
    }

    /// Creates pool `name` of `module` (requested id 0 = any); fails if the name
    /// is taken.
    pub fn create_pool(
        &self,
        module: &str,
        name: &str,
        args: &str,
        id: PoolId,
    ) -> Result<PoolId, CallError> {
        self.create(module, name, args, id, 0)
    }

    /// Returns pool `name`, creating it from `module` if it does not exist; fails if
    /// it exists with another module.
    pub fn get_or_create_pool(
        &self,
        module: &str,
        name: &str,
        args: &str,
    ) -> Result<PoolId, CallError> {
        self.get_or_create_with(module, name, args, 0)
    }

    /// Returns pool `name` of the module whose parameters are `P`, creating it
    /// with `params` if it does not exist (seed: a module client's `Create`).
    pub fn get_or_create<P: PoolParams>(
        &self,
        name: &str,
        params: &P,
    ) -> Result<PoolId, CallError> {
        self.async_get_or_create(name, params)?
            .wait_with(|t| t.pool_id)
    }

    /// Submits a GetOrCreatePool of the module whose parameters are `P` (seed: a
    /// module client's `AsyncCreate`); read `pool_id` once it completes.
    pub fn async_get_or_create<P: PoolParams>(
        &self,
        name: &str,
        params: &P,
    ) -> Result<Pending<'a, GetOrCreatePoolTask>, CallError> {
        let t = GetOrCreatePoolTask::with_params(self.client.main_allocator(), name, params)?;
        self.client.submit(t, Priority::LowLatency)
    }

    /// Submits a CreatePool; read `pool_id` once it completes.
    pub fn async_create_pool(
        &self,
        module: &str,
        name: &str,
        args: &str,
        id: PoolId,
    ) -> Result<Pending<'a, CreatePoolTask>, CallError> {
        let t = CreatePoolTask::new(self.client.main_allocator(), module, name, args, id)?;
        self.client.submit(t, Priority::LowLatency)
    }

    /// Creates pool `name` of `module` over the cluster: `containers` (≥ 1)
    /// containers dealt round robin over the nodes that are up, with one
    /// cluster-wide id; fails if the name is taken anywhere in the cluster.
    pub fn create_cluster_pool(
        &self,
        module: &str,
        name: &str,
        args: &str,
        containers: u32,
    ) -> Result<PoolId, CallError> {
        self.create(module, name, args, PoolId::NULL, containers)
    }

    /// Returns pool `name` of the cluster, creating it from `module` with
    /// `containers` (≥ 1) containers over the nodes that are up if no node
    /// has created it: two nodes asking at once get the same pool.
    pub fn get_or_create_cluster_pool(
        &self,
        module: &str,
        name: &str,
        args: &str,
        containers: u32,
    ) -> Result<PoolId, CallError> {
        self.get_or_create_with(module, name, args, containers)
    }

    /// CreatePool of `containers` containers (0: a pool of this node).
    fn create(
        &self,
        module: &str,
        name: &str,
        args: &str,
        id: PoolId,
        containers: u32,
    ) -> Result<PoolId, CallError> {
        let mut t = CreatePoolTask::new(self.client.main_allocator(), module, name, args, id)?;
        t.containers = containers;
        self.client
            .submit(t, Priority::LowLatency)?
            .wait_with(|t| t.pool_id)
    }

    /// GetOrCreatePool of `containers` containers (0: a pool of this node).
    fn get_or_create_with(
        &self,
        module: &str,
        name: &str,
        args: &str,
        containers: u32,
    ) -> Result<PoolId, CallError> {
        let mut t = GetOrCreatePoolTask::new(self.client.main_allocator(), module, name, args)?;
        t.containers = containers;
        self.client
            .submit(t, Priority::LowLatency)?
            .wait_with(|t| t.pool_id)
    }

    /// Submits a DestroyPool.
    pub fn async_destroy_pool(
        &self,
        pool: PoolId,
    ) -> Result<Pending<'a, DestroyPoolTask>, CallError> {
        self.client
            .submit(DestroyPoolTask::new(pool), Priority::LowLatency)
    }

    /// Submits a StopRuntime.
    pub fn async_stop_runtime(&self) -> Result<Pending<'a, StopRuntimeTask>, CallError> {
        self.client
            .submit(StopRuntimeTask::new(), Priority::LowLatency)
    }

    /// Flush: returns once every task submitted before it has completed
    /// (see [`FlushTask`]), with how long that took.
    pub fn flush(&self) -> Result<std::time::Duration, CallError> {
        self.client
            .submit(FlushTask::new(), Priority::LowLatency)?
            .wait_with(|t| std::time::Duration::from_micros(t.waited_us))
    }

    /// Has the runtime's blocked tasks look at their condition again (after
    /// a task was marked cancelled).
    pub fn cancel_sweep(&self) -> Result<(), CallError> {
        self.client
            .submit(CancelTask::new(), Priority::LowLatency)?
            .wait_with(|_| ())
    }

    /// Destroys a pool. A pool over the cluster is destroyed on every node
    /// up (asked at any node); this returns once they all have dropped it.
    pub fn destroy_pool(&self, pool: PoolId) -> Result<(), CallError> {
        let t = self
            .client
            .call(DestroyPoolTask::new(pool), Priority::LowLatency)?;
        self.client.del_task(t);
        Ok(())
    }

    /// Stops the runtime (returns once the runtime accepted the request).
    pub fn stop_runtime(&self) -> Result<(), CallError> {
        let t = self
            .client
            .call(StopRuntimeTask::new(), Priority::LowLatency)?;
        self.client.del_task(t);
        Ok(())
    }

    /// Echoes `value` through `pool`'s Echo method (the admin pool answers it too).
    pub fn echo(&self, pool: PoolId, value: u64) -> Result<u64, CallError> {
        let t = self
            .client
            .call(EchoTask::new(pool, value), Priority::LowLatency)?;
        let reply = t.get().reply;
        self.client.del_task(t);
        Ok(reply)
    }

    /// Submits an echo without waiting; `wait` it with the client, then read
    /// `reply` (a bare [`TaskPtr`], the cheapest form, for measurements; the
    /// other `async_` calls return a [`Pending`]).
    pub fn async_echo(&self, pool: PoolId, value: u64) -> Result<TaskPtr<EchoTask>, CallError> {
        let t = self.client.new_task(EchoTask::new(pool, value))?;
        self.client.enqueue(&t, Priority::LowLatency)?;
        Ok(t)
    }
}
