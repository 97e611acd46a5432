//! The runtime's services table, as this copy of the library holds it.
//!
//! Set once by [`install`] when the runtime initialises the library (the
//! generated `init`); read by every call into the runtime: yielding a task's
//! coroutine ([`RunCtx::yield_now`], defined here, beside the table it goes
//! through), creating a container's local queues, logging.

use std::sync::atomic::{AtomicPtr, Ordering};

use crate::abi::{RunCtx, RuntimeServices};

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
}
