//! The runtime's side of the boundary: the [`RuntimeServices`] table a
//! module library gets at `init` (logging, the running task, blocking and
//! waking tasks, subtasks, cancellation, the container being created), and
//! the segment list it carries.

use std::ffi::c_void;
use std::fmt;

use super::{AbiFingerprint, ErrorBuf, RunCtx};
use crate::task::TaskHeader;

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

/// What a runtime segment holds ([`SegmentInfo::kind`]).
pub mod segment_kind {
    /// Tasks and the process queue.
    pub const MAIN: u32 = 1;
    /// Buffers clients allocate for bulk data.
    pub const CLIENT_DATA: u32 = 2;
    /// The runtime's own data.
    pub const RUNTIME_DATA: u32 = 3;
}

/// A segment the runtime maps, for the module's own segment table.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SegmentInfo {
    /// What the segment is for: a [`segment_kind`].
    pub kind: u32,
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
    /// The most verbose [`level`] the runtime's log records (events above it
    /// are not worth formatting).
    pub max_log_level: u32,
    /// Adds a local queue of `lanes` lanes and priority `priority`
    /// ([`lane_priority`](super::lane_priority)) with id `queue_id` to the container being created
    /// (`runtime` is [`ContainerInfo::runtime`](super::ContainerInfo::runtime)); returns 0, or a result code
    /// after filling `err`.
    pub create_local_queue: unsafe extern "C" fn(
        runtime: *mut c_void,
        queue_id: u32,
        lanes: u32,
        priority: u32,
        err: *mut ErrorBuf,
    ) -> i32,
    /// This node's id.
    pub node_id: u32,
    /// Fills `out` with the task running on the calling thread; returns 0, or
    /// non-zero outside a task (then `out` is untouched).
    pub current: unsafe extern "C" fn(out: *mut CurrentTask) -> i32,
    /// Suspends the running task until [`wake`](Self::wake) names it, or
    /// for at most `timeout_ns` nanoseconds ([`u64::MAX`]: no limit).
    /// Wake-ups can be spurious: callers wait in a loop on their condition.
    /// Returns 0 after the task was suspended, or non-zero at once outside a
    /// task (nothing to suspend).
    pub block: unsafe extern "C" fn(timeout_ns: u64) -> i32,
    /// Makes the task of `token` (from [`current`](Self::current)) runnable
    /// if it is blocked; a stale or unknown token is ignored.
    pub wake: unsafe extern "C" fn(token: u32),
    /// Hands `task`, a task of the main segment the module allocated and
    /// filled, to the runtime as a subtask of the running task: the runtime
    /// stamps its task node under the running task's and runs it. Returns 0,
    /// or a result code after filling `err` (the task is then not queued).
    pub submit: unsafe extern "C" fn(task: *mut TaskHeader, err: *mut ErrorBuf) -> i32,
    /// Cancels `task`, a task of the main segment: marks it (see
    /// [`TaskHeader::cancel`]) and has the runtime's blocked tasks look at
    /// their condition again. Returns 0, or a result code after filling `err`.
    pub cancel: unsafe extern "C" fn(task: *mut TaskHeader, err: *mut ErrorBuf) -> i32,
    /// Sets the coroutine stack size of the tasks of the container being
    /// created (`runtime` is [`ContainerInfo::runtime`](super::ContainerInfo::runtime)) to `bytes`; returns
    /// 0, or a result code after filling `err`.
    pub set_stack_size:
        unsafe extern "C" fn(runtime: *mut c_void, bytes: usize, err: *mut ErrorBuf) -> i32,
    /// The running task is about to wait for `task`, a subtask it submitted
    /// (and nothing else, with no deadline): if the subtask has not started
    /// and the runtime can run it at once on the calling task's own stack,
    /// it does so and returns 1 (the subtask may have completed); otherwise
    /// it returns 0 and the caller blocks as usual.
    pub run_inline: unsafe extern "C" fn(task: *mut TaskHeader) -> i32,
}

/// The running task, as [`RuntimeServices::current`] describes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CurrentTask {
    /// The runtime's token of the task's coroutine: what
    /// [`RuntimeServices::wake`] takes (never 0 for a running task).
    pub token: u32,
    /// The task's place in the task graph.
    pub node: crate::types::TaskNode,
    /// The task's header (its address in this process).
    pub task: usize,
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
