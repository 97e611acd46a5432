//! The admin module, linked into the runtime and registered through the same
//! [`ModuleApi`] table as every loaded module.
//!
//! Methods: CreatePool, GetOrCreatePool, DestroyPool, StopRuntime and Echo (see
//! [`chi_sdk::admin::method`]). Failures come back in the task's result code and
//! error message. Every entry point catches panics, as generated module code does.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Weak};

use chi_sdk::abi::{
    AbiFingerprint, ContainerInfo, ErrorBuf, ModuleApi, RunCtx, RuntimeServices, fixed_str,
};
use chi_sdk::admin::{self, CreatePoolTask, DestroyPoolTask, EchoTask, method};
use chi_sdk::task::{Task, TaskHeader, code};
use chi_sdk::types::PoolId;

use crate::runtime::Shared;

/// The admin container's state.
struct Admin {
    shared: Weak<Shared>,
}

/// The runtime the next admin container belongs to (set by the runtime before it
/// creates the admin pool).
pub(crate) static CURRENT: std::sync::Mutex<Option<Weak<Shared>>> = std::sync::Mutex::new(None);

unsafe extern "C" fn init(_services: *const RuntimeServices) -> i32 {
    0
}

unsafe extern "C" fn create(
    _info: *const ContainerInfo,
    _args: *const u8,
    _len: usize,
    err: *mut ErrorBuf,
) -> *mut c_void {
    let cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match cur {
        Some(shared) => Box::into_raw(Box::new(Admin { shared })) as *mut c_void,
        None => {
            // SAFETY: `err` is the caller's buffer (ModuleApi::create contract).
            unsafe { (*err).set("the admin module can only be created by the runtime at start") };
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn destroy(container: *mut c_void) {
    // SAFETY: `container` came from `create` (Box::into_raw) and is destroyed once.
    drop(unsafe { Box::from_raw(container as *mut Admin) });
}

/// Reinterprets the validated task as `T` if its declared size is large enough.
///
/// # Safety
/// `task` points to a header whose `size` bytes were checked to lie in a segment.
unsafe fn cast<'a, T: Task>(task: *mut TaskHeader) -> Result<&'a mut T, (i32, String)> {
    // SAFETY: the caller checked `size` bytes are mapped; we check they cover T.
    let size = unsafe { (*task).size } as usize;
    if size < size_of::<T>() || !(task as usize).is_multiple_of(align_of::<T>()) {
        return Err((
            code::BAD_TASK,
            format!(
                "task of {size} bytes is too small for {}",
                std::any::type_name::<T>()
            ),
        ));
    }
    // SAFETY: in bounds and aligned (checked), T is ShmSafe (valid for any bytes),
    // and the worker gives this call exclusive use of the task while it runs.
    Ok(unsafe { &mut *(task as *mut T) })
}

fn run_admin(admin: &Admin, task: *mut TaskHeader, ctx: *mut RunCtx) -> Result<(), (i32, String)> {
    let shared: Arc<Shared> = admin
        .shared
        .upgrade()
        .ok_or((code::SHUTDOWN, "the runtime is stopping".to_owned()))?;
    // SAFETY: the worker validated the task's size against its segment.
    let m = unsafe { (*task).method };
    match m {
        method::CREATE_POOL | method::GET_OR_CREATE_POOL => {
            // SAFETY: validated by the worker; `cast` checks the size.
            let t: &mut CreatePoolTask = unsafe { cast(task)? };
            let text = |s: &chi_sdk::shm::ShmString, what: &str| {
                s.to_str()
                    .map(str::to_owned)
                    .map_err(|e| (code::BAD_TASK, format!("{what}: {e}")))
            };
            let module = text(&t.module, "module name")?;
            let name = text(&t.pool_name, "pool name")?;
            let args = text(&t.args, "arguments")?;
            if name.is_empty() || module.is_empty() {
                return Err((
                    code::BAD_TASK,
                    "a pool needs a module name and a pool name".into(),
                ));
            }
            let goc = m == method::GET_OR_CREATE_POOL || t.get_or_create != 0;
            let id = shared
                .create_pool(&module, &name, &args, t.pool_id, goc)
                .map_err(|e| (code::CREATE_FAILED, e.to_string()))?;
            t.pool_id = id;
            Ok(())
        }
        method::DESTROY_POOL => {
            // SAFETY: as above.
            let t: &mut DestroyPoolTask = unsafe { cast(task)? };
            if t.pool_id == PoolId::ADMIN {
                return Err((
                    code::FAILED,
                    "the admin pool cannot be destroyed; stop the runtime instead".into(),
                ));
            }
            shared
                .pools
                .destroy(t.pool_id)
                .map_err(|e| (code::NO_POOL, e.to_string()))
        }
        method::STOP_RUNTIME => {
            shared.request_stop("a StopRuntime task");
            Ok(())
        }
        method::ECHO => {
            // SAFETY: as above.
            let t: &mut EchoTask = unsafe { cast(task)? };
            // Hold no reference to the runtime while suspended: a task still
            // parked when the runtime stops is leaked (see `Worker::drain`), and
            // its frame must not keep the runtime's state, and so its segments,
            // alive.
            drop(shared);
            if t.delay_us > 0 {
                let until = std::time::Instant::now()
                    + std::time::Duration::from_micros(t.delay_us.min(60_000_000));
                while std::time::Instant::now() < until {
                    // SAFETY: `ctx` is the running task's context.
                    unsafe { crate::worker::yield_current(ctx) };
                }
            }
            t.reply = t.value;
            Ok(())
        }
        other => Err((
            code::UNSUPPORTED_METHOD,
            format!("the admin module has no method {other}"),
        )),
    }
}

unsafe extern "C" fn run(
    container: *mut c_void,
    task: *mut TaskHeader,
    ctx: *mut RunCtx,
    err: *mut ErrorBuf,
) -> i32 {
    // SAFETY: `container` is an `Admin` from `create`, alive while the pool is.
    let admin = unsafe { &*(container as *const Admin) };
    let outcome = catch_unwind(AssertUnwindSafe(|| run_admin(admin, task, ctx)));
    let (rc, msg) = match outcome {
        Ok(Ok(())) => return code::OK,
        Ok(Err(e)) => e,
        Err(p) => {
            let what = chi_sdk::__private::chimod::panic_text(&*p);
            (
                code::PANICKED,
                format!("the admin handler panicked: {what}"),
            )
        }
    };
    // SAFETY: `err` is the caller's buffer.
    unsafe { (*err).set(&msg) };
    rc
}

static API: ModuleApi = ModuleApi {
    fingerprint: AbiFingerprint::current(),
    name: fixed_str(admin::ADMIN_LIB_NAME),
    init,
    create,
    destroy,
    run,
    monitor: None,
    del: None,
    save_in: None,
    load_in: None,
    save_out: None,
    load_out: None,
    new_copy: None,
};

/// The admin module's entry (what a loaded library exports as `chimaera_module_entry`).
///
/// # Safety
/// Always safe to call; `unsafe` only to match [`chi_sdk::abi::EntryFn`].
pub unsafe extern "C" fn entry() -> *const ModuleApi {
    &API
}
