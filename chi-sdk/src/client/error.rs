//! What can go wrong between a client and its runtime.

use std::time::Duration;

use crate::auth::AuthError;
use crate::queue::{PushError, QueueError};
use crate::shm::{AllocError, ShmError, ShmPtr};
use crate::transport::TransportError;

/// Why the client could not deliver a task or get its answer (as opposed to the
/// method reporting an error, which is a [`TaskError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Talking to the runtime's socket failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The runtime's key could not be read: not this user's runtime, or its key
    /// file is missing or unsafe.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The runtime answered something unexpected.
    #[error("unexpected answer from the runtime: {0}")]
    Protocol(String),
    /// The runtime refused the request, saying why.
    #[error("the runtime refused the request: {0}")]
    Refused(String),
    /// The runtime was built against another ABI.
    #[error(
        "the runtime's ABI ({runtime}) differs from this client's ({client}); rebuild the client against the runtime's chi-sdk"
    )]
    AbiMismatch {
        /// Runtime's fingerprint.
        runtime: String,
        /// Ours.
        client: String,
    },
    /// Mapping a segment failed.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// Shared memory ran out.
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// The process queue is unusable.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The task could not be enqueued.
    #[error(transparent)]
    Push(#[from] PushError),
    /// The runtime process is gone.
    #[error(
        "the runtime (pid {pid}) exited while this client waited for a task; restart it and resubmit"
    )]
    RuntimeDied {
        /// Its pid.
        pid: u32,
    },
    /// The caller's deadline passed before the task completed.
    #[error(
        "task {task} did not complete within the {waited:?} the caller allowed; it is still queued or \
         running and stays allocated (wait again, or let it go: the runtime frees nothing of it)"
    )]
    Deadline {
        /// The task.
        task: ShmPtr,
        /// How long we waited.
        waited: Duration,
    },
    /// The runtime lives, but the worker serving the task's lane made no progress
    /// for the configured task deadline.
    #[error(
        "task {task} made no progress for {stalled:?}: the runtime (pid {pid}) is alive but the \
         worker serving lane {lane} is wedged or dead (see 'chi-runtime status'); the task stays \
         allocated"
    )]
    NoProgress {
        /// The task.
        task: ShmPtr,
        /// Its lane.
        lane: u32,
        /// How long the lane has not moved.
        stalled: Duration,
        /// The runtime's pid.
        pid: u32,
    },
    /// A task was freed while the runtime may still use it, or through a
    /// pointer whose block now holds another task.
    #[error("{0}")]
    BadFree(String),
    /// The runtime stopped without completing the task.
    #[error(
        "the runtime (pid {pid}) stopped before completing the task (waited {waited:?} after it began stopping)"
    )]
    RuntimeStopped {
        /// Its pid.
        pid: u32,
        /// How long we waited.
        waited: Duration,
    },
}

/// The method failed: its result code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task failed with code {code}: {message}")]
pub struct TaskError {
    /// Result code ([`crate::task::code`]).
    pub code: i32,
    /// Message from the runtime or the module.
    pub message: String,
}

/// Either failure of a synchronous call.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Not delivered or not answered.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Answered with an error.
    #[error(transparent)]
    Task(#[from] TaskError),
}

impl From<AllocError> for CallError {
    fn from(e: AllocError) -> Self {
        CallError::Client(e.into())
    }
}
