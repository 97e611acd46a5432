//! The admin module's tasks: create, find and destroy pools, stop the runtime,
//! and an echo for measuring the round trip. Every runtime has an admin pool,
//! [`PoolId::ADMIN`].

use crate::client::{CallError, Client, TaskPtr};
use crate::queue::Priority;
use crate::shm::{Allocator, ShmString};
use crate::task::{Task, TaskHeader};
use crate::types::{DomainQuery, PoolId};

/// The admin module's library name.
pub const ADMIN_LIB_NAME: &str = "chimaera_admin";

/// Method ids of the admin module (its `chimaera_mod.yaml`).
pub mod method {
    /// Creates the admin container itself.
    pub const CREATE: u32 = 0;
    /// Destroys the admin container.
    pub const DESTROY: u32 = 1;
    /// Creates a pool.
    pub const CREATE_POOL: u32 = 10;
    /// Destroys a pool.
    pub const DESTROY_POOL: u32 = 11;
    /// Stops the runtime.
    pub const STOP_RUNTIME: u32 = 12;
    /// Returns the pool of that name, creating it if needed.
    pub const GET_OR_CREATE_POOL: u32 = 13;
    /// Echoes a value (round-trip measurement).
    pub const ECHO: u32 = 14;
}

/// Implements [`Task`] for a `#[repr(C)]` struct whose first field is `header`.
macro_rules! admin_task {
    ($t:ty, $m:expr) => {
        // SAFETY: the struct is repr(C) with `header: TaskHeader` first, and its
        // fields are ShmSafe (checked by the ShmSafe impl below).
        unsafe impl Task for $t {
            const METHOD: u32 = $m;
            fn header(&self) -> &TaskHeader {
                &self.header
            }
            fn header_mut(&mut self) -> &mut TaskHeader {
                &mut self.header
            }
        }
    };
}

/// Creates a pool of a module (or, with `get_or_create`, returns the existing pool
/// of that name if it runs the same module).
#[repr(C)]
#[derive(Debug)]
pub struct CreatePoolTask {
    /// Header.
    pub header: TaskHeader,
    /// In: module library name (`chimod_lib_name`, e.g. `chimaera_echo`).
    pub module: ShmString,
    /// In: pool name, unique on the node.
    pub pool_name: ShmString,
    /// In: module-specific creation arguments.
    pub args: ShmString,
    /// In: requested id (0 = any). Out: the pool's id.
    pub pool_id: PoolId,
    /// In: non-zero for GetOrCreate semantics.
    pub get_or_create: u32,
    /// Reserved.
    pub _reserved: u32,
}

// SAFETY: repr(C) of ShmSafe fields.
unsafe impl crate::shm::ShmSafe for CreatePoolTask {}

// SAFETY: see `admin_task!`; the method is set per call by the constructor (the
// METHOD constant is the plain CreatePool).
unsafe impl Task for CreatePoolTask {
    const METHOD: u32 = method::CREATE_POOL;
    fn header(&self) -> &TaskHeader {
        &self.header
    }
    fn header_mut(&mut self) -> &mut TaskHeader {
        &mut self.header
    }
    fn free_fields(&mut self, alloc: &Allocator) {
        let _ = self.module.free(alloc);
        let _ = self.pool_name.free(alloc);
        let _ = self.args.free(alloc);
    }
}

impl CreatePoolTask {
    /// A CreatePool (or GetOrCreatePool) task for the admin pool.
    pub fn new(
        alloc: &Allocator,
        module: &str,
        pool_name: &str,
        args: &str,
        requested: PoolId,
        get_or_create: bool,
    ) -> Result<Self, crate::shm::AllocError> {
        let m = if get_or_create {
            method::GET_OR_CREATE_POOL
        } else {
            method::CREATE_POOL
        };
        Ok(CreatePoolTask {
            header: TaskHeader::new(PoolId::ADMIN, m, size_of::<Self>(), DomainQuery::local()),
            module: ShmString::from_str(alloc, module)?,
            pool_name: ShmString::from_str(alloc, pool_name)?,
            args: ShmString::from_str(alloc, args)?,
            pool_id: requested,
            get_or_create: get_or_create as u32,
            _reserved: 0,
        })
    }
}

/// Destroys a pool.
#[repr(C)]
#[derive(Debug)]
pub struct DestroyPoolTask {
    /// Header.
    pub header: TaskHeader,
    /// In: the pool.
    pub pool_id: PoolId,
}
// SAFETY: repr(C) of ShmSafe fields.
unsafe impl crate::shm::ShmSafe for DestroyPoolTask {}
admin_task!(DestroyPoolTask, method::DESTROY_POOL);

impl DestroyPoolTask {
    /// A DestroyPool task.
    pub fn new(pool_id: PoolId) -> Self {
        DestroyPoolTask {
            header: TaskHeader::new(
                PoolId::ADMIN,
                method::DESTROY_POOL,
                size_of::<Self>(),
                DomainQuery::local(),
            ),
            pool_id,
        }
    }
}

/// Stops the runtime (it completes the task first).
#[repr(C)]
#[derive(Debug)]
pub struct StopRuntimeTask {
    /// Header.
    pub header: TaskHeader,
}
// SAFETY: repr(C) of ShmSafe fields.
unsafe impl crate::shm::ShmSafe for StopRuntimeTask {}
admin_task!(StopRuntimeTask, method::STOP_RUNTIME);

impl StopRuntimeTask {
    /// A StopRuntime task.
    pub fn new() -> Self {
        StopRuntimeTask {
            header: TaskHeader::new(
                PoolId::ADMIN,
                method::STOP_RUNTIME,
                size_of::<Self>(),
                DomainQuery::local(),
            ),
        }
    }
}

impl Default for StopRuntimeTask {
    fn default() -> Self {
        Self::new()
    }
}

/// Echoes `value` into `reply` (the empty task of round-trip measurements).
#[repr(C)]
#[derive(Debug)]
pub struct EchoTask {
    /// Header.
    pub header: TaskHeader,
    /// In.
    pub value: u64,
    /// In: how long the handler takes before answering, in microseconds (0 for
    /// the empty task). The handler yields its coroutine while it waits, so the
    /// worker keeps running other tasks.
    pub delay_us: u64,
    /// Out: `value`.
    pub reply: u64,
}
// SAFETY: repr(C) of ShmSafe fields.
unsafe impl crate::shm::ShmSafe for EchoTask {}
admin_task!(EchoTask, method::ECHO);

impl EchoTask {
    /// An Echo task for `pool` (the admin pool, or any pool whose module echoes).
    pub fn new(pool: PoolId, value: u64) -> Self {
        EchoTask {
            header: TaskHeader::new(pool, method::ECHO, size_of::<Self>(), DomainQuery::local()),
            value,
            delay_us: 0,
            reply: 0,
        }
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

    fn create(
        &self,
        module: &str,
        name: &str,
        args: &str,
        id: PoolId,
        goc: bool,
    ) -> Result<PoolId, CallError> {
        let t = CreatePoolTask::new(self.client.main_allocator(), module, name, args, id, goc)?;
        let t = self.client.call(t, Priority::LowLatency)?;
        let id = t.get().pool_id;
        self.client.del_task(t);
        Ok(id)
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
        self.create(module, name, args, id, false)
    }

    /// Returns pool `name`, creating it from `module` if it does not exist; fails if
    /// it exists with another module.
    pub fn get_or_create_pool(
        &self,
        module: &str,
        name: &str,
        args: &str,
    ) -> Result<PoolId, CallError> {
        self.create(module, name, args, PoolId::NULL, true)
    }

    /// Destroys a pool.
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

    /// Submits an echo without waiting; `wait` it with the client, then read `reply`.
    pub fn async_echo(&self, pool: PoolId, value: u64) -> Result<TaskPtr<EchoTask>, CallError> {
        let t = self.client.new_task(EchoTask::new(pool, value))?;
        self.client.enqueue(&t, Priority::LowLatency)?;
        Ok(t)
    }
}
