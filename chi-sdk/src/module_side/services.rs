//! The runtime's services table, as this copy of the library holds it.
//!
//! Set once by [`install`] when the runtime initialises the library (the
//! generated `init`); read by every call into the runtime: yielding a task's
//! coroutine ([`RunCtx::yield_now`], defined here, beside the table it goes
//! through), blocking and waking tasks, submitting subtasks, creating a
//! container's local queues, logging.

use std::sync::atomic::{AtomicPtr, Ordering};

use crate::abi::{CurrentTask, ErrorBuf, RunCtx, RuntimeServices};
use crate::task::TaskHeader;

/// The runtime's services, as handed to this library's `init`; null before.
static SERVICES: AtomicPtr<RuntimeServices> = AtomicPtr::new(std::ptr::null_mut());

/// Keeps `services` for the life of the process.
pub(crate) fn install(services: &'static RuntimeServices) {
    SERVICES.store(
        services as *const RuntimeServices as *mut RuntimeServices,
        Ordering::Release,
    );
}

/// The runtime's services, once `init` ran (in a module library).
pub(crate) fn services() -> Option<&'static RuntimeServices> {
    // Synchronizes with the Release store in `install`.
    let p = SERVICES.load(Ordering::Acquire);
    // SAFETY: set once from the runtime's table, which lives for the process
    // (`install` takes a `&'static`).
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Writes `message` to the runtime's log at `level` (one of
/// [`crate::abi::level`]), with `target` as its source.
pub(crate) fn log(services: &RuntimeServices, level: u32, target: &str, message: &str) {
    // SAFETY: the runtime's log function, called with two live strings.
    unsafe {
        (services.log)(
            level,
            target.as_ptr(),
            target.len(),
            message.as_ptr(),
            message.len(),
        )
    };
}

impl RunCtx {
    /// Suspends the running task's coroutine; the worker resumes it after
    /// running other work. Use it inside long loops and while waiting.
    pub fn yield_now(&mut self) {
        if let Some(s) = services() {
            // SAFETY: `self` is the context the runtime passed to the running task.
            unsafe { (s.yield_now)(self) }
        }
    }

    /// The client a handler submits subtasks with: pass it to any module's
    /// typed client (`EchoClient::from(pool).echo(ctx.client()?, 5)`) as a
    /// client program passes its own. Tasks it submits are subtasks of this
    /// task (same task-graph major, one level deeper), and waiting for them
    /// suspends this task's coroutine: the worker runs other tasks, the
    /// subtasks among them, meanwhile.
    pub fn client(&self) -> Result<&'static crate::client::Client, super::ContainerError> {
        super::runtime_client()
    }

    /// Waits for a subtask this handler submitted; the task's coroutine
    /// sleeps until the subtask completes.
    pub fn wait(
        &mut self,
        task: &dyn crate::client::Waitable,
    ) -> Result<(), crate::client::ClientError> {
        self.wait_all(&[task])
    }

    /// Waits for every subtask of `tasks` (submitted by this handler); the
    /// task's coroutine sleeps until the last one completes.
    pub fn wait_all(
        &mut self,
        tasks: &[&dyn crate::client::Waitable],
    ) -> Result<(), crate::client::ClientError> {
        super::runtime_client()
            .map_err(|e| crate::client::ClientError::Refused(e.to_string()))?
            .wait_all(tasks)
    }

    /// Suspends the task for `duration` without holding its worker: the
    /// worker runs other tasks (or sleeps) meanwhile. Ends early if the task
    /// is cancelled (see [`is_cancelled`](Self::is_cancelled)).
    pub fn sleep(&mut self, duration: std::time::Duration) {
        let until = std::time::Instant::now() + duration;
        loop {
            let now = std::time::Instant::now();
            if now >= until || current_cancelled() {
                return;
            }
            if !block(Some(until - now)) {
                std::thread::sleep(until - now);
            }
        }
    }

    /// Whether this task was cancelled: a long handler checks it and ends
    /// early (returning an error); waits for subtasks end by themselves and
    /// pass the cancellation on to the subtasks.
    pub fn is_cancelled(&self) -> bool {
        current_cancelled()
    }

    /// The task's place in the task graph (`None` outside a runtime).
    pub fn task_node(&self) -> Option<crate::types::TaskNode> {
        current().map(|c| c.node)
    }
}

/// The task running on this thread (`None` outside a task of a runtime).
pub(crate) fn current() -> Option<CurrentTask> {
    let s = services()?;
    let mut out = CurrentTask::default();
    // SAFETY: the runtime's function, writing only `out`.
    (unsafe { (s.current)(&mut out) } == 0).then_some(out)
}

/// Suspends the running task until woken or `timeout` passes (see
/// [`RuntimeServices::block`]); returns `false` at once outside a task.
pub(crate) fn block(timeout: Option<std::time::Duration>) -> bool {
    let Some(s) = services() else { return false };
    let ns = timeout.map_or(u64::MAX, |t| {
        u64::try_from(t.as_nanos()).unwrap_or(u64::MAX - 1)
    });
    // SAFETY: the runtime's function; it returns at once outside a task.
    unsafe { (s.block)(ns) == 0 }
}

/// Makes the task of `token` runnable (see [`RuntimeServices::wake`]).
pub(crate) fn wake(token: u32) {
    if let Some(s) = services() {
        // SAFETY: the runtime's function; any token is accepted.
        unsafe { (s.wake)(token) }
    }
}

/// Hands `task` to the runtime as a subtask of the running task.
///
/// # Safety
/// `task` is a filled task of the main segment, owned by the caller and not
/// queued.
pub(crate) unsafe fn submit(task: *mut TaskHeader) -> Result<(), String> {
    let s = services().ok_or_else(|| {
        "no runtime services: subtasks are submitted from a handler run by a runtime".to_owned()
    })?;
    let mut err = ErrorBuf::default();
    // SAFETY: per the contract; `err` is ours.
    match unsafe { (s.submit)(task, &mut err) } {
        0 => Ok(()),
        _ => Err(err.as_str().to_owned()),
    }
}

/// Asks the runtime to run `task`, a subtask the running task waits for, at
/// once on the running task's stack (see [`RuntimeServices::run_inline`]);
/// `false` when it did not (the caller blocks as usual).
#[inline]
pub(crate) fn run_inline(task: &TaskHeader) -> bool {
    let Some(s) = services() else { return false };
    // SAFETY: the runtime's function; it checks the pointer against its inbox
    // before it touches the task.
    unsafe { (s.run_inline)(task as *const TaskHeader as *mut TaskHeader) == 1 }
}

/// Cancels `task` through the runtime (see [`RuntimeServices::cancel`]).
pub(crate) fn cancel(task: &TaskHeader) -> Result<(), String> {
    let s = services().ok_or_else(|| "no runtime services".to_owned())?;
    let mut err = ErrorBuf::default();
    // SAFETY: the runtime's function; it checks the pointer and changes only
    // the state word, atomically.
    match unsafe { (s.cancel)(task as *const TaskHeader as *mut TaskHeader, &mut err) } {
        0 => Ok(()),
        _ => Err(err.as_str().to_owned()),
    }
}

/// Whether the task running on this thread was cancelled.
pub(crate) fn current_cancelled() -> bool {
    current().is_some_and(|c| {
        // SAFETY: the runtime's address of the running task's header, live
        // while the task runs; only its state word is read.
        c.task != 0 && unsafe { &*(c.task as *const TaskHeader) }.is_cancelled()
    })
}

/// This node's id, as the runtime that loaded the library announced it.
pub(crate) fn node_id() -> Option<u32> {
    services().map(|s| s.node_id)
}
