//! The module ABI: the C boundary between the runtime and a module library.
//!
//! # Design
//!
//! Rust has no stable ABI, and a module `cdylib` carries its own copy of chi-sdk
//! and of every crate it uses (its statics and thread-locals are not the
//! runtime's). So the boundary is C:
//!
//! * The module exports one symbol, [`ENTRY_SYMBOL`], an [`EntryFn`] returning a
//!   `#[repr(C)]` [`ModuleApi`]: its [`AbiFingerprint`], its library name and
//!   `extern "C"` function pointers (create/destroy a container, run, monitor,
//!   del, and the save/load/copy hooks the network uses).
//! * At load time the runtime calls [`ModuleApi::init`] with a `#[repr(C)]`
//!   [`RuntimeServices`] table of its own functions (logging, yielding the
//!   current coroutine, the segments to resolve pointers in). A module never
//!   reaches runtime state any other way.
//! * Every function a module exports catches panics on its side and reports them
//!   as a failed call ([`code::PANICKED`](crate::task::code::PANICKED)), so
//!   an unwinding panic never crosses the boundary.
//! * The runtime compares the module's fingerprint with its own (ABI version,
//!   segment layout version, rustc version) and refuses a module that differs,
//!   naming both.
//!
//! The admin container, linked into the runtime, is registered through this same
//! table: there is no private shortcut.

use std::ffi::c_void;
use std::fmt;

use crate::task::TaskHeader;
use crate::types::{ContainerId, NodeId, PoolId};

/// Version of this boundary (tables, calling conventions). Bump on any change.
pub const ABI_VERSION: u32 = 1;

/// Name of the symbol every module library exports.
pub const ENTRY_SYMBOL: &str = "chimaera_module_entry";

/// What a module and the runtime must agree on to work together.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AbiFingerprint {
    /// [`ABI_VERSION`] of the chi-sdk the library was built with.
    pub abi_version: u32,
    /// [`LAYOUT_VERSION`](crate::shm::LAYOUT_VERSION) of its shared-memory layer.
    pub layout_version: u32,
    /// `rustc --version` of its compiler, NUL-padded.
    pub rustc: [u8; 64],
}

impl AbiFingerprint {
    /// The fingerprint of this build.
    pub const fn current() -> AbiFingerprint {
        AbiFingerprint {
            abi_version: ABI_VERSION,
            layout_version: crate::shm::LAYOUT_VERSION,
            rustc: fixed_str(env!("CHI_RUSTC_VERSION")),
        }
    }

    /// The compiler version as text.
    pub fn rustc(&self) -> &str {
        nul_str(&self.rustc)
    }
}

impl fmt::Display for AbiFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "abi v{}, layout v{}, {}",
            self.abi_version,
            self.layout_version,
            self.rustc()
        )
    }
}

impl fmt::Debug for AbiFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `s` in a NUL-padded array (truncated to fit).
pub const fn fixed_str<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < b.len() && i + 1 < N {
        out[i] = b[i];
        i += 1;
    }
    out
}

/// The text of a NUL-padded array (up to the first NUL or invalid UTF-8).
pub fn nul_str(b: &[u8]) -> &str {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    match std::str::from_utf8(&b[..end]) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
    }
}

/// A message buffer a module fills when a call fails.
#[repr(C)]
pub struct ErrorBuf {
    /// Bytes used.
    pub len: u32,
    /// UTF-8 text.
    pub buf: [u8; 500],
}

impl Default for ErrorBuf {
    fn default() -> Self {
        ErrorBuf {
            len: 0,
            buf: [0; 500],
        }
    }
}

impl fmt::Debug for ErrorBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorBuf {
    /// Stores `msg` (truncated at a character boundary to fit).
    pub fn set(&mut self, msg: &str) {
        let mut n = msg.len().min(self.buf.len());
        while !msg.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[..n].copy_from_slice(&msg.as_bytes()[..n]);
        self.len = n as u32;
    }

    /// The message.
    pub fn as_str(&self) -> &str {
        let n = (self.len as usize).min(self.buf.len());
        nul_str(&self.buf[..n])
    }
}

/// Monitor modes (seed: `MonitorModeId`).
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MonitorMode {
    /// Choose the lane of the container's local queue that runs the task: write it
    /// to [`RunCtx::route_lane`]. Never enqueue the task yourself.
    LocalSchedule = 0,
    /// Choose the containers of a `Dynamic` query.
    GlobalSchedule = 1,
    /// Estimate the run time: write it to [`RunCtx::est_load_us`].
    EstLoad = 2,
    /// The task is being discarded (runtime stopping, client dead).
    Cleanup = 3,
}

/// What a container is told about itself when created.
#[repr(C)]
#[derive(Debug)]
pub struct ContainerInfo {
    /// Its pool.
    pub pool_id: PoolId,
    /// Its id within the pool.
    pub container_id: ContainerId,
    /// This node.
    pub node_id: NodeId,
    /// The pool's name, NUL-padded.
    pub pool_name: [u8; 128],
}

/// Per-call context the runtime hands to `run` and `monitor`: the seed's
/// `RunContext`, as far as a module may see it.
#[repr(C)]
#[derive(Debug)]
pub struct RunCtx {
    /// Worker running the task.
    pub worker_id: u32,
    /// Monitor(LocalSchedule) output: the lane of the container's local queue.
    pub route_lane: u32,
    /// Monitor(EstLoad) output: estimated run time in microseconds.
    pub est_load_us: f64,
    /// The container's pool.
    pub pool_id: PoolId,
    /// The container.
    pub container_id: ContainerId,
    /// The runtime's private state for this task (opaque to modules).
    pub runtime: *mut c_void,
}

/// Creates a container for a pool; returns its state, or null after filling `err`.
pub type CreateFn = unsafe extern "C" fn(
    info: *const ContainerInfo,
    args: *const u8,
    args_len: usize,
    err: *mut ErrorBuf,
) -> *mut c_void;
/// Destroys a container made by [`CreateFn`].
pub type DestroyFn = unsafe extern "C" fn(container: *mut c_void);
/// Runs `task` (method in its header); returns a result code, filling `err` on failure.
pub type RunFn = unsafe extern "C" fn(
    container: *mut c_void,
    task: *mut TaskHeader,
    ctx: *mut RunCtx,
    err: *mut ErrorBuf,
) -> i32;
/// Monitor hook for `mode` (a [`MonitorMode`]); returns a result code.
pub type MonitorFn = unsafe extern "C" fn(
    container: *mut c_void,
    mode: u32,
    task: *mut TaskHeader,
    ctx: *mut RunCtx,
) -> i32;
/// Frees what a task of this module owns (its fields and the task itself).
pub type DelFn = unsafe extern "C" fn(container: *mut c_void, task: *mut TaskHeader) -> i32;
/// Serialises a task's inputs or outputs into `out` (a runtime buffer handle).
pub type SaveFn =
    unsafe extern "C" fn(container: *mut c_void, task: *mut TaskHeader, out: *mut c_void) -> i32;
/// Loads a task's inputs or outputs from `len` bytes at `data`.
pub type LoadFn = unsafe extern "C" fn(
    container: *mut c_void,
    task: *mut TaskHeader,
    data: *const u8,
    len: usize,
) -> i32;
/// Copies a task (for replication); returns the new task's header or null.
pub type NewCopyFn =
    unsafe extern "C" fn(container: *mut c_void, task: *const TaskHeader) -> *mut TaskHeader;

/// The function table a module exports.
#[repr(C)]
pub struct ModuleApi {
    /// Must equal the runtime's fingerprint.
    pub fingerprint: AbiFingerprint,
    /// `chimod_lib_name` (e.g. `chimaera_admin`), NUL-padded.
    pub name: [u8; 64],
    /// Called once after loading with the runtime's services; non-zero refuses the load.
    pub init: unsafe extern "C" fn(services: *const RuntimeServices) -> i32,
    /// Creates a container.
    pub create: CreateFn,
    /// Destroys a container.
    pub destroy: DestroyFn,
    /// Runs a task.
    pub run: RunFn,
    /// Monitor hook; `None` applies the documented default (lane 0, no estimate).
    pub monitor: Option<MonitorFn>,
    /// Deletes a task; `None` frees the task block only.
    pub del: Option<DelFn>,
    /// Saves inputs (network).
    pub save_in: Option<SaveFn>,
    /// Loads inputs (network).
    pub load_in: Option<LoadFn>,
    /// Saves outputs (network).
    pub save_out: Option<SaveFn>,
    /// Loads outputs (network).
    pub load_out: Option<LoadFn>,
    /// Copies a task.
    pub new_copy: Option<NewCopyFn>,
}

impl ModuleApi {
    /// The library name as text.
    pub fn name(&self) -> &str {
        nul_str(&self.name)
    }
}

impl fmt::Debug for ModuleApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleApi")
            .field("name", &self.name())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// The symbol a module exports under [`ENTRY_SYMBOL`].
pub type EntryFn = unsafe extern "C" fn() -> *const ModuleApi;

/// Log levels of [`RuntimeServices::log`].
pub mod level {
    /// Error.
    pub const ERROR: u32 = 1;
    /// Warning.
    pub const WARN: u32 = 2;
    /// Information.
    pub const INFO: u32 = 3;
    /// Debug.
    pub const DEBUG: u32 = 4;
    /// Trace.
    pub const TRACE: u32 = 5;
}

/// A segment the runtime maps, for the module's own segment table.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SegmentInfo {
    /// Segment id.
    pub id: u16,
    /// Base address in the runtime process.
    pub base: usize,
    /// Length in bytes.
    pub len: u64,
}

/// The services the runtime offers modules.
#[repr(C)]
pub struct RuntimeServices {
    /// The runtime's fingerprint.
    pub fingerprint: AbiFingerprint,
    /// Logs `msg` at `level` ([`level`]) under `target`, into the runtime's log.
    pub log: unsafe extern "C" fn(
        level: u32,
        target: *const u8,
        target_len: usize,
        msg: *const u8,
        len: usize,
    ),
    /// Suspends the coroutine of the task running on `ctx` until the worker resumes it.
    pub yield_now: unsafe extern "C" fn(ctx: *mut RunCtx),
    /// The segments mapped by the runtime.
    pub segments: *const SegmentInfo,
    /// Number of entries at `segments`.
    pub num_segments: usize,
}

// SAFETY: the table is immutable after the runtime builds it; its pointers name
// static, immutable data (function code and a leaked segment list).
unsafe impl Sync for RuntimeServices {}
// SAFETY: as above.
unsafe impl Send for RuntimeServices {}

impl fmt::Debug for RuntimeServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeServices")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}
