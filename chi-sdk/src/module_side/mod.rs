//! The module side of the C boundary: the state a module library keeps once
//! the runtime has loaded it.
//!
//! # Design
//!
//! A module `cdylib` carries its own copy of chi-sdk (see [`crate::abi`]), whose
//! statics are not the runtime's. When the runtime loads the library it calls
//! the library's generated `init` with its [`RuntimeServices`] table, and
//! [`init`] sets up, in this copy, for the life of the process:
//!
//! * `services`: the table itself, through which every call into the runtime
//!   goes (yielding a task's coroutine, creating a container's local queues,
//!   logging);
//! * `segments`: the runtime's segments, adopted, with their allocators (public
//!   as [`crate::container::main_allocator`] and its siblings);
//! * `log_bridge`: a `tracing` subscriber that forwards the library's events to
//!   the runtime's log, unless this copy is the runtime's own
//!   ([`mark_runtime_process`]: modules linked into the runtime, like the admin
//!   module, log through the runtime's `tracing` directly).
//!
//! # Layering
//!
//! [`crate::abi`] defines the tables; this module holds what they hand over;
//! [`crate::container`] is the public face of it for module code; the hidden
//! `__private` glue that `#[chimod]` generates calls into all of them, and
//! nothing calls into it.

mod log_bridge;
mod segments;
mod services;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::abi::{RuntimeServices, level};
use crate::task::{Failure, code};

pub use segments::{client_data_allocator, main_allocator, runtime_data_allocator};
pub(crate) use services::{
    block, cancel, current, current_cancelled, node_id, run_inline, services, submit, wake,
};

/// Why a container could not reach a runtime service.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Called outside a loaded module (no runtime services).
    #[error(
        "no runtime services: this function works in module code run by a runtime (inside \
         `create`, a handler or a monitor), not in a client program"
    )]
    NoRuntime,
    /// The runtime did not announce the segment.
    #[error("the runtime maps no {0} segment")]
    NoSegment(&'static str),
    /// The runtime's client could not be set up.
    #[error("cannot reach the runtime from module code: {0}")]
    Client(String),
    /// Attaching the segment's allocator failed.
    #[error("cannot use the runtime's {what} segment: {message}")]
    Segment {
        /// Which segment.
        what: &'static str,
        /// What failed.
        message: String,
    },
}

/// A handler that could not reach a runtime service fails with
/// [`code::FAILED`] and the reason.
impl From<ContainerError> for Failure {
    fn from(e: ContainerError) -> Failure {
        Failure::new(code::FAILED, e.to_string())
    }
}

/// Whether this copy of the library is the runtime's own (set by the runtime):
/// then module code linked into the runtime needs no log forwarding.
static IS_RUNTIME: AtomicBool = AtomicBool::new(false);

/// Marks this copy of chi-sdk as the runtime's (called by the runtime at start).
pub fn mark_runtime_process() {
    IS_RUNTIME.store(true, Ordering::Relaxed);
}

/// Sets up this copy of the library for the runtime that passed `services`:
/// keeps the table, adopts the segments, forwards the logs. A failure is
/// written to the runtime's log and returned.
pub(crate) fn init(services: &'static RuntimeServices) -> Result<(), String> {
    services::install(services);
    if let Err(msg) = segments::adopt(services) {
        services::log(services, level::ERROR, "chi_sdk::container", &msg);
        return Err(msg);
    }
    if !IS_RUNTIME.load(Ordering::Relaxed) {
        log_bridge::install(services);
    }
    Ok(())
}

/// The client module code submits subtasks with: the runtime's own, made on
/// first use from the adopted segments (see [`crate::client::Client`]'s
/// in-runtime form).
pub fn runtime_client() -> Result<&'static crate::client::Client, ContainerError> {
    static CLIENT: std::sync::OnceLock<crate::client::Client> = std::sync::OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let main = segments::segment(crate::abi::segment_kind::MAIN)?;
    let cdata = segments::segment(crate::abi::segment_kind::CLIENT_DATA)?;
    let node = node_id().ok_or(ContainerError::NoRuntime)?;
    let client = crate::client::Client::in_runtime(node, main, cdata)
        .map_err(|e| ContainerError::Client(e.to_string()))?;
    Ok(CLIENT.get_or_init(|| client))
}
