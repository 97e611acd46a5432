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
//!   del, the save/load/copy hooks the network uses, and how a broadcast's
//!   replica outputs combine).
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

mod ctx;
mod services;
pub use ctx::{LaneId, LocalQueueInfo, QueueId, RouteError, RunCtx, lane_priority};
pub use services::{CurrentTask, RuntimeServices, SegmentInfo, level, segment_kind};

/// Version of this boundary (tables, calling conventions). Bump on any change.
pub const ABI_VERSION: u32 = 7;

/// Prefix of the symbol a module library exports: the full name is the prefix
/// followed by the library's `chimod_lib_name` ([`entry_symbol`]), so that
/// several modules linked into one program (as `rlib`s, for their client APIs)
/// never clash.
pub const ENTRY_SYMBOL: &str = "chimaera_module_entry_";

/// The entry symbol of the module library named `lib_name`.
pub fn entry_symbol(lib_name: &str) -> String {
    format!("{ENTRY_SYMBOL}{lib_name}")
}

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
    /// Bytes of `buf` written by [`set`](Self::set).
    len: u32,
    /// UTF-8 text; only the first `len` bytes are initialised (a fresh buffer
    /// costs no 500-byte memset on every task).
    buf: [std::mem::MaybeUninit<u8>; 500],
}

impl Default for ErrorBuf {
    fn default() -> Self {
        ErrorBuf {
            len: 0,
            buf: [std::mem::MaybeUninit::uninit(); 500],
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
        for (d, &b) in self.buf[..n].iter_mut().zip(&msg.as_bytes()[..n]) {
            d.write(b);
        }
        self.len = n as u32;
    }

    /// The message.
    pub fn as_str(&self) -> &str {
        let n = (self.len as usize).min(self.buf.len());
        // SAFETY: `len` is private and only `set` writes it, after writing the
        // first `len` bytes; MaybeUninit<u8> has u8's layout.
        let bytes = unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), n) };
        nul_str(bytes)
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
    /// The runtime's handle of the container being created, for
    /// [`RuntimeServices::create_local_queue`]; valid only during `create`.
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
/// `container` is always a state made by [`CreateFn`] (never null).
pub type RunFn = unsafe extern "C" fn(
    container: *mut c_void,
    task: *mut TaskHeader,
    ctx: *mut RunCtx,
    err: *mut ErrorBuf,
) -> i32;
/// Monitor hook for `mode` (a [`MonitorMode`]); returns a result code.
/// The runtime calls it with a container state made by [`CreateFn`]; a
/// monitor handed a null `container` anyway must apply the default (the
/// glue `#[chimod]` generates does) and return OK.
pub type MonitorFn = unsafe extern "C" fn(
    container: *mut c_void,
    mode: u32,
    task: *mut TaskHeader,
    ctx: *mut RunCtx,
) -> i32;
/// Frees what a task of this module owns (its fields and the task itself).
///
/// # A null container
///
/// The task hooks — [`DelFn`], [`SaveFn`] (`save_in`, `save_out`), [`LoadFn`]
/// (`load_in`, `load_out`) and [`NewCopyFn`] — may be called with a **null**
/// `container`: a node that holds no container of a pool over the cluster
/// (fewer containers than nodes) still sends tasks to the pool, saving their
/// inputs, loading their outputs and freeing them through its module with
/// no container state. These hooks must not need the state; the ones
/// `#[chimod]` generates never read it.
pub type DelFn = unsafe extern "C" fn(container: *mut c_void, task: *mut TaskHeader) -> i32;
/// Where a module writes serialised bytes: the runtime's buffer and its append
/// function.
#[repr(C)]
#[derive(Debug)]
pub struct ByteSink {
    /// The runtime's buffer (opaque).
    pub buf: *mut c_void,
    /// Appends `len` bytes at `data` to `buf`.
    pub write: unsafe extern "C" fn(buf: *mut c_void, data: *const u8, len: usize),
}

impl ByteSink {
    /// A sink appending to `v`.
    pub fn for_vec(v: &mut Vec<u8>) -> ByteSink {
        unsafe extern "C" fn write(buf: *mut c_void, data: *const u8, len: usize) {
            // SAFETY: `buf` is the `Vec<u8>` of `for_vec`, borrowed mutably for the
            // life of the sink; `data` holds `len` readable bytes (the contract).
            unsafe {
                (*(buf as *mut Vec<u8>)).extend_from_slice(std::slice::from_raw_parts(data, len))
            }
        }
        ByteSink {
            buf: v as *mut Vec<u8> as *mut c_void,
            write,
        }
    }

    /// Appends `bytes`.
    ///
    /// # Safety
    /// The sink's buffer is still alive (as [`for_vec`](Self::for_vec) makes sure
    /// by borrowing it).
    pub unsafe fn put(&mut self, bytes: &[u8]) {
        // SAFETY: per the contract.
        unsafe { (self.write)(self.buf, bytes.as_ptr(), bytes.len()) }
    }
}

/// Serialises a task's inputs or outputs into `out`; returns a result code,
/// filling `err` on failure.
pub type SaveFn = unsafe extern "C" fn(
    container: *mut c_void,
    task: *const TaskHeader,
    out: *mut ByteSink,
    err: *mut ErrorBuf,
) -> i32;
/// Loads a task's inputs or outputs from `len` bytes at `data`, allocating what
/// its fields need from the main segment; returns a result code, filling `err`
/// on failure. For inputs, `task` is a task block of the method's size whose
/// header is zero: the load fills it all.
pub type LoadFn = unsafe extern "C" fn(
    container: *mut c_void,
    task: *mut TaskHeader,
    data: *const u8,
    len: usize,
    err: *mut ErrorBuf,
) -> i32;
/// Copies a task into a new block of the main segment (for replication);
/// returns the new task's header, or null after filling `err`.
pub type NewCopyFn = unsafe extern "C" fn(
    container: *mut c_void,
    task: *const TaskHeader,
    err: *mut ErrorBuf,
) -> *mut TaskHeader;
/// Combines the outputs of `replica`, a broadcast's replica that ran on
/// another container, into `task` (same method; the runtime calls it once
/// per replica, in container order, `task` holding container 0's outputs);
/// returns a result code, filling `err` on failure. `replica` is the
/// runtime's copy, freed through `del` afterwards.
///
/// `container` is null on a node that holds no container of the pool (see
/// [`DelFn`]): a default aggregation needs no state; a module's own
/// `aggregate_*` handler, a method of its container, cannot run there and
/// fails the broadcast with an error saying so.
pub type AggregateFn = unsafe extern "C" fn(
    container: *mut c_void,
    task: *mut TaskHeader,
    replica: *const TaskHeader,
    err: *mut ErrorBuf,
) -> i32;
/// The size in bytes of the task type of `method` (0 if the module has none).
pub type TaskSizeFn = unsafe extern "C" fn(method: u32) -> usize;

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
    /// Monitor hook; `None` applies the documented default (lane 0 of queue 0,
    /// no estimate, no container preference).
    pub monitor: Option<MonitorFn>,
    /// Deletes a task (its fields, its error message and its block); `None`
    /// frees the error message and the block only.
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
    /// The task size of a method (to allocate a block before `load_in`).
    pub task_size: Option<TaskSizeFn>,
    /// Combines a broadcast's replica outputs; `None` keeps container 0's
    /// outputs.
    pub aggregate: Option<AggregateFn>,
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
