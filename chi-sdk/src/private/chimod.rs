//! What the code `#[chimod]` generates calls: the module side of the C
//! boundary, one function per entry of the module's table.
//!
//! Each takes the raw pointers the runtime passes (their contracts are
//! [`crate::abi`]'s), calls the generated dispatch inside `catch_unwind`, and
//! turns a [`Failure`] or a panic into the result code and error message the
//! runtime reads. The per-task-type hooks (`cast`, `del`, `save`, …) are
//! re-exported from `hooks`.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

pub use super::hooks::{cast, collect, del, hook, load_in, load_out, new_copy, save};
pub use crate::abi::{
    AbiFingerprint, AggregateFn, ByteSink, ContainerInfo, EntryFn, ErrorBuf, LaneId, ModuleApi,
    MonitorFn, MonitorMode, RunCtx, RuntimeServices, fixed_str,
};
pub use crate::admin::PoolParams;
pub use crate::container::CreateCtx;
pub use crate::task::{Failure, Task, TaskHeader};
pub use crate::types::PoolId;

use super::hooks::panic_text;
use crate::task::code;

/// Checks at compile time what a container type must be.
pub fn assert_container<T: Send + Sync + 'static>() {}

/// `init`: sets up this library for the runtime (see `module_side`): keeps
/// the services, adopts the runtime's segments and forwards this library's
/// logs to the runtime's. Returns 0, 1 for a null table, 2 on failure (which
/// went to the runtime's log).
///
/// # Safety
/// `services` is the runtime's table, valid for the life of the process.
pub unsafe fn init(services: *const RuntimeServices) -> i32 {
    if services.is_null() {
        return 1;
    }
    // SAFETY: per the contract.
    let s: &'static RuntimeServices = unsafe { &*services };
    match crate::module_side::init(s) {
        Ok(()) => 0,
        Err(_) => 2,
    }
}

/// `create`: builds the container with `make`, boxes it.
///
/// # Safety
/// The pointers follow [`crate::abi::CreateFn`]'s contract.
pub unsafe fn create<T>(
    info: *const ContainerInfo,
    args: *const u8,
    args_len: usize,
    err: *mut ErrorBuf,
    make: impl FnOnce(&mut CreateCtx<'_>, &str) -> Result<T, String>,
) -> *mut c_void {
    let out = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract.
        let info = unsafe { &*info };
        let bytes = if args.is_null() || args_len == 0 {
            &[][..]
        } else {
            // SAFETY: per the contract, `args_len` readable bytes.
            unsafe { std::slice::from_raw_parts(args, args_len) }
        };
        let args = std::str::from_utf8(bytes)
            .map_err(|e| format!("the pool's arguments are not UTF-8: {e}"))?;
        let mut ctx = CreateCtx::new(info);
        make(&mut ctx, args)
    }));
    let msg = match out {
        Ok(Ok(c)) => return Box::into_raw(Box::new(c)) as *mut c_void,
        Ok(Err(m)) => m,
        Err(p) => format!("create panicked: {}", panic_text(&*p)),
    };
    // SAFETY: the caller's buffer.
    unsafe { (*err).set(&msg) };
    std::ptr::null_mut()
}

/// Decodes typed create parameters.
pub fn params<P: PoolParams>(args: &str) -> Result<P, String> {
    P::from_args(args)
}

/// `destroy`: drops the container (panics in `Drop` are contained).
///
/// # Safety
/// `container` came from [`create`] with the same `T` and is destroyed once.
pub unsafe fn destroy<T>(container: *mut c_void) {
    // SAFETY: per the contract.
    let b = unsafe { Box::from_raw(container as *mut T) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
}

/// A handler's error as a failed call.
pub fn failed<E: Into<Failure>>(e: E) -> Failure {
    e.into()
}

/// The failure for a method this module does not handle.
pub fn unsupported(lib: &str, method: u32, names: &[(&str, i64)]) -> Failure {
    let inherited = [
        "kCreate",
        "kDestroy",
        "kNodeFailure",
        "kRecover",
        "kMigrate",
        "kUpgrade",
    ];
    let key = names
        .iter()
        .find(|(_, id)| *id == i64::from(method))
        .map(|(k, _)| *k)
        .or_else(|| inherited.get(method as usize).copied());
    Failure::unsupported_method(match key {
        Some(k @ ("kCreate" | "kDestroy")) => format!(
            "module {lib} does not run method {method} ({k}) as a task: pools are created and \
             destroyed through the admin pool"
        ),
        Some(k) => format!("module {lib} does not support method {method} ({k})"),
        None => format!("module {lib} has no method {method}"),
    })
}

/// `run`: calls `dispatch` on the container, containing panics and writing
/// failures to `err`.
///
/// # Safety
/// The pointers follow [`crate::abi::RunFn`]'s contract; `container` is a `T`
/// from [`create`].
pub unsafe fn run<T>(
    container: *mut c_void,
    task: *mut TaskHeader,
    ctx: *mut RunCtx,
    err: *mut ErrorBuf,
    dispatch: impl FnOnce(&T, *mut TaskHeader, &mut RunCtx) -> Result<(), Failure>,
) -> i32 {
    // SAFETY: per the contract.
    let (this, ctx) = unsafe { (&*(container as *const T), &mut *ctx) };
    let failure = match catch_unwind(AssertUnwindSafe(|| dispatch(this, task, ctx))) {
        Ok(Ok(())) => return code::OK,
        Ok(Err(e)) => e,
        Err(p) => Failure::panicked(format!("the handler panicked: {}", panic_text(&*p))),
    };
    // SAFETY: the caller's buffer.
    unsafe { (*err).set(&failure.message) };
    failure.code
}

/// `monitor`: calls `dispatch` with the mode, containing panics.
///
/// # Safety
/// As [`run`].
pub unsafe fn monitor<T>(
    container: *mut c_void,
    mode: u32,
    task: *mut TaskHeader,
    ctx: *mut RunCtx,
    dispatch: impl FnOnce(&T, MonitorMode, *mut TaskHeader, &mut RunCtx) -> Result<(), Failure>,
) -> i32 {
    if container.is_null() {
        // No container state (a node without a container of the pool): the
        // default, which needs none (see `abi::MonitorFn`).
        // SAFETY: per the contract, `ctx` is valid.
        return match unsafe { ctx.as_mut() } {
            Some(ctx) if mode == 0 => {
                ctx.route(LaneId::HERE);
                code::OK
            }
            _ => code::OK,
        };
    }
    let mode = match mode {
        0 => MonitorMode::LocalSchedule,
        1 => MonitorMode::GlobalSchedule,
        2 => MonitorMode::EstLoad,
        3 => MonitorMode::Cleanup,
        _ => return code::BAD_TASK,
    };
    // SAFETY: per the contract.
    let (this, ctx) = unsafe { (&*(container as *const T), &mut *ctx) };
    match catch_unwind(AssertUnwindSafe(|| dispatch(this, mode, task, ctx))) {
        Ok(Ok(())) => code::OK,
        Ok(Err(f)) => f.code,
        Err(_) => code::PANICKED,
    }
}

/// `aggregate`: calls `dispatch` with the container, the task and the
/// replica, containing panics and writing failures to `err`.
///
/// # Safety
/// The pointers follow [`crate::abi::AggregateFn`]'s contract; `container`
/// is a `T` from [`create`].
pub unsafe fn aggregate<T>(
    container: *mut c_void,
    task: *mut TaskHeader,
    replica: *const TaskHeader,
    err: *mut ErrorBuf,
    dispatch: impl FnOnce(Option<&T>, *mut TaskHeader, *const TaskHeader) -> Result<(), Failure>,
) -> i32 {
    // SAFETY: per the contract: null (no container on this node) or a `T`.
    let this = unsafe { (container as *const T).as_ref() };
    let failure = match catch_unwind(AssertUnwindSafe(|| dispatch(this, task, replica))) {
        Ok(Ok(())) => return code::OK,
        Ok(Err(e)) => e,
        Err(p) => Failure::panicked(format!("aggregate panicked: {}", panic_text(&*p))),
    };
    // SAFETY: the caller's buffer, or null.
    if let Some(err) = unsafe { err.as_mut() } {
        err.set(&failure.message);
    }
    failure.code
}

/// The failure of a module's `aggregate_*` handler on a node that holds no
/// container of the pool (see [`crate::abi::AggregateFn`]).
pub fn aggregate_needs_container(lib: &str, handler: &str) -> Failure {
    Failure::failed(format!(
        "module {lib}: `{handler}` combines a broadcast's replicas, but this node holds no \
         container of the pool to run it on; send the broadcast from a node that holds one"
    ))
}

/// The monitor of a method without `monitor_*` (the documented default):
/// LocalSchedule names no lane ([`LaneId::HERE`]: the task runs on the
/// worker that took it from the process queue); no estimate, no container
/// preference.
pub fn default_monitor(mode: MonitorMode, ctx: &mut RunCtx) -> Result<(), Failure> {
    if mode == MonitorMode::LocalSchedule {
        ctx.route(LaneId::HERE);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ContainerId, PoolId};

    fn ctx() -> RunCtx {
        RunCtx {
            worker_id: 0,
            route_lane: 7,
            est_load_us: 0.0,
            pool_id: PoolId(5),
            container_id: ContainerId(0),
            runtime: std::ptr::null_mut(),
            queues: std::ptr::null(),
            num_queues: 0,
            route_container: u32::MAX,
            pool_containers: 2,
        }
    }

    #[test]
    fn a_monitor_with_no_container_state_applies_the_default() {
        for mode in 0..4u32 {
            let mut c = ctx();
            // SAFETY: a null container (what the contract allows) and a
            // valid context; the dispatch is never called.
            let rc = unsafe {
                monitor::<u64>(
                    std::ptr::null_mut(),
                    mode,
                    std::ptr::null_mut(),
                    &mut c,
                    |_, _, _, _| panic!("the module's monitor ran without a container"),
                )
            };
            assert_eq!(rc, code::OK, "mode {mode}");
            let lane = if mode == 0 { LaneId::HERE.0 } else { 7 };
            assert_eq!(c.route_lane, lane, "mode {mode}");
            assert_eq!(c.route_container, u32::MAX, "no container chosen");
        }
    }
}
