//! Handles of tasks a client allocated: [`TaskPtr`] and the submitted [`Pending`].

use std::time::{Duration, Instant};

use crate::shm::{FullPtr, ShmPtr};
use crate::task::{Task, TaskHeader, code};

use super::{CallError, Client, TaskError};

/// A task allocated by a client in the main segment.
pub struct TaskPtr<T: Task> {
    pub(super) ptr: FullPtr<T>,
    /// The generation the task was allocated with (see [`TaskHeader::generation`]).
    pub(super) generation: u16,
}

impl<T: Task> std::fmt::Debug for TaskPtr<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskPtr({:?})", self.ptr.shm())
    }
}

impl<T: Task> TaskPtr<T> {
    /// The task. Outputs are final only once the task is complete.
    pub fn get(&self) -> &T {
        // SAFETY: the client allocated and initialised the task and keeps it until
        // `del_task`; the runtime writes only its atomics and outputs, which are
        // read after the Acquire load that observes COMPLETE.
        unsafe { self.ptr.as_ref() }
    }

    /// A second handle to the same task, for tests of stale frees.
    ///
    /// # Safety
    /// None for memory safety of this process beyond what the client API checks
    /// (frees through a stale handle are refused), but the two handles name one
    /// task: use only to test that the refusal works.
    #[doc(hidden)]
    pub unsafe fn duplicate(&self) -> TaskPtr<T> {
        TaskPtr {
            ptr: self.ptr,
            generation: self.generation,
        }
    }

    /// Where the task lives.
    pub fn shm(&self) -> ShmPtr {
        self.ptr.shm()
    }

    /// Whether the runtime completed the task.
    pub fn is_complete(&self) -> bool {
        self.get().header().is_complete()
    }

    /// The method's outcome, once complete.
    pub fn result(&self) -> Result<(), TaskError> {
        let h = self.get().header();
        match h.result() {
            code::OK => Ok(()),
            c => Err(TaskError {
                code: c,
                message: h
                    .error
                    .to_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|e| format!("<{e}>")),
            }),
        }
    }
}

std::thread_local! {
    /// [`Pending`] handles made on this thread and not dropped yet: a wait
    /// with others of its thread's tasks in flight is pipelined, and spins
    /// no longer on a remote task than on any other (`wait.rs`).
    static PENDING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// How many [`Pending`] handles this thread holds (made here, not dropped).
/// A handle moved to another thread stays counted on the thread that made
/// it and is counted off on the one that drops it (never below 0): a thread
/// that waits on handles made elsewhere counts as holding none, and spins
/// on each remote task as a synchronous caller would (`remote_spin`).
pub(super) fn pending_here() -> u32 {
    PENDING.with(std::cell::Cell::get)
}

/// A task submitted with [`Client::submit`], not yet waited for.
///
/// Dropping it without waiting frees the task and what it owns: at once if
/// the runtime completed it, else the runtime frees it when it completes it.
pub struct Pending<'c, T: Task> {
    pub(super) client: &'c Client,
    pub(super) task: Option<TaskPtr<T>>,
}

impl<T: Task> std::fmt::Debug for Pending<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("task", &self.task).finish()
    }
}

impl<'c, T: Task> Pending<'c, T> {
    /// The handle of `task`, submitted through `client`.
    #[inline]
    pub(super) fn new(client: &'c Client, task: TaskPtr<T>) -> Pending<'c, T> {
        PENDING.with(|n| n.set(n.get().saturating_add(1)));
        Pending {
            client,
            task: Some(task),
        }
    }

    /// Whether the runtime completed the task (wait does not block then).
    pub fn is_complete(&self) -> bool {
        self.task.as_ref().is_none_or(TaskPtr::is_complete)
    }

    /// The task in flight (outputs are final only once complete).
    pub fn task(&self) -> Option<&TaskPtr<T>> {
        self.task.as_ref()
    }

    /// Waits for the task. On success the caller reads the outputs and passes
    /// the task to [`Client::del_task`]; a failed task is freed and its error
    /// returned.
    pub fn wait(self) -> Result<TaskPtr<T>, CallError> {
        self.wait_until(None)
    }

    /// [`wait`](Self::wait), giving up after `timeout` with
    /// [`ClientError::Deadline`](super::ClientError::Deadline) (the task then stays allocated: the runtime may
    /// still write to it).
    pub fn wait_timeout(self, timeout: Duration) -> Result<TaskPtr<T>, CallError> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// [`wait`](Self::wait) with an optional deadline.
    pub fn wait_until(mut self, deadline: Option<Instant>) -> Result<TaskPtr<T>, CallError> {
        let t = self
            .task
            .take()
            .expect("a Pending holds its task until waited");
        // If the wait fails the runtime may still hold the task: it is not freed.
        if let Err(e) = self.client.wait_until(&t, deadline) {
            // Not freed: `TaskPtr` has no Drop, so letting it go leaves the block.
            return Err(e.into());
        }
        if let Err(e) = t.result() {
            self.client.del_task(t);
            return Err(e.into());
        }
        Ok(t)
    }

    /// Waits, reads the outputs with `read`, and frees the task.
    pub fn wait_with<R>(self, read: impl FnOnce(&T) -> R) -> Result<R, CallError> {
        let client = self.client;
        let t = self.wait()?;
        let r = read(t.get());
        client.del_task(t);
        Ok(r)
    }

    /// Waits and returns the task's outputs as its generated call returns
    /// them (see [`TaskOutputs`](super::TaskOutputs)), then frees the task and
    /// what it owns.
    pub fn output(self) -> Result<T::Outputs, CallError>
    where
        T: super::TaskOutputs,
    {
        let client = self.client;
        self.wait_with(|t| t.outputs(client))?
    }

    /// [`output`](Self::output), giving up after `timeout` (as
    /// [`wait_timeout`](Self::wait_timeout)).
    pub fn output_timeout(self, timeout: Duration) -> Result<T::Outputs, CallError>
    where
        T: super::TaskOutputs,
    {
        let client = self.client;
        let t = self.wait_timeout(timeout)?;
        let r = t.get().outputs(client);
        client.del_task(t);
        r
    }

    /// Waits and returns a copy of the bytes written to the output buffer
    /// `buf` picks, then frees the task and its buffers.
    pub fn wait_bytes(
        self,
        buf: impl FnOnce(&T) -> &crate::bytes::ClientBuf,
    ) -> Result<Vec<u8>, CallError> {
        let client = self.client;
        Ok(self.wait_with(|t| buf(t).to_vec(client))??)
    }
}

impl<T: Task> Drop for Pending<'_, T> {
    /// Frees the task (and the buffers it owns) if it completed; otherwise
    /// hands it to the runtime, which frees it when it completes it.
    fn drop(&mut self) {
        PENDING.with(|n| n.set(n.get().saturating_sub(1)));
        if let Some(t) = self.task.take()
            && (t.is_complete() || t.get().header().abandon())
        {
            self.client.del_task(t);
        }
    }
}

/// A submitted task one can wait for: a [`Pending`] or a [`TaskPtr`]; what
/// [`Client::wait_all`] and [`RunCtx::wait_all`](crate::abi::RunCtx::wait_all)
/// take, so tasks of different types are waited for together.
pub trait Waitable {
    /// The task's header (`None`: nothing left to wait for).
    fn header(&self) -> Option<&TaskHeader>;

    /// Where the task lives (for error messages).
    fn shm(&self) -> ShmPtr;

    /// Whether the task completed (or there is none).
    fn is_done(&self) -> bool {
        self.header().is_none_or(TaskHeader::is_complete)
    }
}

impl<T: Task> Waitable for TaskPtr<T> {
    fn header(&self) -> Option<&TaskHeader> {
        Some(self.get().header())
    }

    fn shm(&self) -> ShmPtr {
        self.ptr.shm()
    }
}

impl<T: Task> Waitable for Pending<'_, T> {
    fn header(&self) -> Option<&TaskHeader> {
        self.task.as_ref().map(|t| t.get().header())
    }

    fn shm(&self) -> ShmPtr {
        self.task.as_ref().map_or(ShmPtr::NULL, |t| t.ptr.shm())
    }
}
