//! The runtime's services: the functions a module library calls back into.
//!
//! # Design
//!
//! A module library carries its own copy of chi-sdk and of every crate it uses
//! (see [`chi_sdk::abi`]), so it cannot reach the runtime's log, coroutines or
//! state through Rust. What it may ask of the runtime is this C table, a
//! [`RuntimeServices`] that the module manager builds ([`table`]) and hands to
//! each library's `init`:
//!
//! * `log`: an event of the module's `tracing`, into the runtime's log, under
//!   the module's target (`svc_log`);
//! * `yield_now`: suspends the calling task's coroutine, ready again at once
//!   (`svc_yield`, through `crate::coroutine::yield_current`);
//! * `current`, `block`, `wake`: the running task's token and task node,
//!   blocking it until a wake-up or a timeout, and waking a blocked task
//!   (what waits for subtasks, `CoMutex` and `RunCtx::sleep` are built on;
//!   see `crate::worker::sched`);
//! * `submit`: hands a subtask the module allocated to the worker running
//!   the calling task; `run_inline`: runs one the calling task is about to
//!   wait for at once, on its stack (`crate::worker::inline`);
//! * `create_local_queue`: adds a local queue to the container being created
//!   (`svc_create_local_queue`);
//! * `segments`: the runtime's segments, which the library maps as its own
//!   allocators.
//!
//! No service reaches the runtime's state through a global: a call gets what
//! it works on from its arguments — during a container's `create`, the
//! [`ContainerInfo::runtime`](chi_sdk::abi::ContainerInfo::runtime) handle,
//! which points to the `QueueBuilder` of that `create` call — or, for the
//! task services, from the worker whose thread calls (module code runs on
//! its worker's thread, inside the task's coroutine).
//!
//! A library keeps the table it was initialised with in process-wide state of
//! its own (its copy of chi-sdk), for as long as it stays loaded; so the table
//! is leaked (a few hundred bytes), and one process hosts one runtime in its
//! life (see [`crate::state`]).

use std::ffi::c_void;

use chi_sdk::abi::{
    AbiFingerprint, CurrentTask, ErrorBuf, LocalQueueInfo, RunCtx, RuntimeServices, SegmentInfo,
    level,
};
use chi_sdk::task::TaskHeader;

use crate::worker::sched;

/// The services table for the runtime of node `node_id` whose segments are
/// `segments`; it lives as long as the process (module libraries keep a
/// reference to it).
pub fn table(node_id: u32, segments: Vec<SegmentInfo>) -> &'static RuntimeServices {
    let segs: &'static [SegmentInfo] = Box::leak(segments.into_boxed_slice());
    Box::leak(Box::new(RuntimeServices {
        fingerprint: AbiFingerprint::current(),
        log: svc_log,
        yield_now: svc_yield,
        segments: segs.as_ptr(),
        num_segments: segs.len(),
        max_log_level: max_log_level(),
        create_local_queue: svc_create_local_queue,
        node_id,
        current: svc_current,
        block: svc_block,
        wake: svc_wake,
        submit: svc_submit,
        cancel: svc_cancel,
        set_stack_size: svc_set_stack_size,
        run_inline: svc_run_inline,
    }))
}

unsafe extern "C" fn svc_current(out: *mut CurrentTask) -> i32 {
    match sched::current() {
        Some(c) => {
            // SAFETY: `out` is the caller's (the contract of `current`).
            unsafe {
                out.write(CurrentTask {
                    token: c.token,
                    node: c.node,
                    task: c.task as usize,
                })
            };
            0
        }
        None => 1,
    }
}

unsafe extern "C" fn svc_block(timeout_ns: u64) -> i32 {
    let until = (timeout_ns != u64::MAX)
        .then(|| std::time::Instant::now() + std::time::Duration::from_nanos(timeout_ns));
    if sched::suspend(sched::Suspend::Block(until)) {
        0
    } else {
        1
    }
}

unsafe extern "C" fn svc_wake(token: u32) {
    sched::wake(token);
}

unsafe extern "C" fn svc_cancel(task: *mut TaskHeader, err: *mut ErrorBuf) -> i32 {
    match sched::cancel(task) {
        Ok(()) => 0,
        Err(msg) => {
            // SAFETY: `err` is the caller's buffer.
            unsafe { (*err).set(&msg) };
            chi_sdk::task::code::FAILED
        }
    }
}

unsafe extern "C" fn svc_run_inline(task: *mut TaskHeader) -> i32 {
    i32::from(sched::run_inline(task))
}

unsafe extern "C" fn svc_submit(task: *mut TaskHeader, err: *mut ErrorBuf) -> i32 {
    match sched::submit(task) {
        Ok(()) => 0,
        Err(msg) => {
            // SAFETY: `err` is the caller's buffer.
            unsafe { (*err).set(&msg) };
            chi_sdk::task::code::FAILED
        }
    }
}

unsafe extern "C" fn svc_log(
    lvl: u32,
    target: *const u8,
    target_len: usize,
    msg: *const u8,
    len: usize,
) {
    // SAFETY: the module passes pointers to `len` / `target_len` readable bytes
    // (the contract of `RuntimeServices::log`).
    let (target, msg) = unsafe {
        (
            std::slice::from_raw_parts(target, target_len),
            std::slice::from_raw_parts(msg, len),
        )
    };
    let target = String::from_utf8_lossy(target);
    let msg = String::from_utf8_lossy(msg);
    match lvl {
        level::ERROR => tracing::error!(module = %target, "{msg}"),
        level::WARN => tracing::warn!(module = %target, "{msg}"),
        level::INFO => tracing::info!(module = %target, "{msg}"),
        level::DEBUG => tracing::debug!(module = %target, "{msg}"),
        _ => tracing::trace!(module = %target, "{msg}"),
    }
}

unsafe extern "C" fn svc_yield(_ctx: *mut RunCtx) {
    crate::coroutine::yield_current();
}

/// What `create_local_queue` and `set_stack_size` fill while a container is
/// being created ([`chi_sdk::abi::ContainerInfo::runtime`] points to it).
#[derive(Debug, Default)]
pub(crate) struct QueueBuilder {
    pub(crate) queues: Vec<LocalQueueInfo>,
    /// The container's coroutine stack size (`None`: `coroutine.stack_size`).
    pub(crate) stack_size: Option<usize>,
}

unsafe extern "C" fn svc_set_stack_size(
    runtime: *mut c_void,
    bytes: usize,
    err: *mut ErrorBuf,
) -> i32 {
    use crate::config::{MAX_STACK_SIZE, MIN_STACK_SIZE, STACK_SIZE_GRANULE};
    // SAFETY: `err` is the caller's buffer.
    let err = unsafe { &mut *err };
    if runtime.is_null() {
        err.set("no container is being created");
        return chi_sdk::task::code::FAILED;
    }
    if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&bytes) {
        err.set(&format!(
            "a coroutine stack of {bytes} bytes is out of range; expected {MIN_STACK_SIZE} to \
             {MAX_STACK_SIZE} bytes"
        ));
        return chi_sdk::task::code::FAILED;
    }
    // SAFETY: `runtime` is the `QueueBuilder` the pool manager passed in the
    // ContainerInfo of the `create` call still running (checked non-null).
    let b = unsafe { &mut *(runtime as *mut QueueBuilder) };
    b.stack_size = Some(bytes.next_multiple_of(STACK_SIZE_GRANULE));
    0
}

unsafe extern "C" fn svc_create_local_queue(
    runtime: *mut c_void,
    queue_id: u32,
    lanes: u32,
    priority: u32,
    err: *mut ErrorBuf,
) -> i32 {
    // SAFETY: `err` is the caller's buffer.
    let err = unsafe { &mut *err };
    if runtime.is_null() {
        err.set("no container is being created");
        return chi_sdk::task::code::FAILED;
    }
    // SAFETY: `runtime` is the `QueueBuilder` the pool manager passed in the
    // ContainerInfo of the `create` call still running (checked non-null).
    let b = unsafe { &mut *(runtime as *mut QueueBuilder) };
    if lanes == 0 || lanes > u32::from(u16::MAX) || queue_id > u32::from(u16::MAX) {
        err.set(&format!("a local queue has 1..=65535 lanes and an id up to 65535 (got {lanes} lanes, id {queue_id})"));
        return chi_sdk::task::code::FAILED;
    }
    if priority > chi_sdk::abi::lane_priority::HIGH_LATENCY {
        err.set(&format!("unknown lane priority {priority}"));
        return chi_sdk::task::code::FAILED;
    }
    if b.queues.iter().any(|q| q.queue_id == queue_id) {
        err.set("a queue with this id exists; give each queue its own id");
        return chi_sdk::task::code::FAILED;
    }
    b.queues.push(LocalQueueInfo {
        queue_id,
        lanes,
        priority,
    });
    0
}

fn max_log_level() -> u32 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => level::ERROR,
        LevelFilter::WARN => level::WARN,
        LevelFilter::INFO => level::INFO,
        LevelFilter::DEBUG => level::DEBUG,
        _ => level::TRACE,
    }
}
