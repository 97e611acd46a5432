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

use std::sync::{Arc, Weak};

use chi_sdk::abi::RunCtx;
use chi_sdk::admin::{
    CreatePoolTask, DestroyPoolTask, EchoTask, GetOrCreatePoolTask, StopRuntimeTask,
};
use chi_sdk::container::CreateCtx;
use chi_sdk::shm::ShmString;
use chi_sdk::task::{Failure, code};
use chi_sdk::types::PoolId;

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

    fn make_pool(
        &self,
        module: &ShmString,
        name: &ShmString,
        args: &ShmString,
        requested: PoolId,
        get_or_create: bool,
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
        shared
            .create_pool(&module, &name, &args, requested, get_or_create)
            .map_err(|e| Failure::new(code::CREATE_FAILED, format!("{e:#}")))
    }
}

#[chi_sdk::chimod(yaml = "../../chi-sdk/src/admin/chimaera_mod.yaml")]
impl Admin {
    /// kCreate: admin containers are built by the runtime's constructor
    /// ([`builtin`]), which gives them their node state; this table entry
    /// refuses.
    fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
        Err("the admin module can only be created by the runtime at start".to_owned())
    }

    /// kCreatePool.
    fn create_pool(&self, task: &mut CreatePoolTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        task.pool_id = self.make_pool(
            &task.module,
            &task.pool_name,
            &task.args,
            task.pool_id,
            false,
        )?;
        Ok(())
    }

    /// kGetOrCreatePool.
    fn get_or_create_pool(
        &self,
        task: &mut GetOrCreatePoolTask,
        _ctx: &mut RunCtx,
    ) -> Result<(), Failure> {
        task.pool_id = self.make_pool(
            &task.module,
            &task.pool_name,
            &task.args,
            PoolId::NULL,
            true,
        )?;
        Ok(())
    }

    /// kDestroyPool.
    fn destroy_pool(&self, task: &mut DestroyPoolTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        if task.pool_id == PoolId::ADMIN {
            return Err(Failure::new(
                code::FAILED,
                "the admin pool cannot be destroyed; stop the runtime instead",
            ));
        }
        self.runtime()?
            .pools
            .destroy(task.pool_id)
            .map_err(|e| Failure::new(code::NO_POOL, e.to_string()))
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
