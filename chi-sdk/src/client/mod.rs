//! The client side of IPC (the seed's `CHIMAERA_CLIENT_INIT` and IPC manager):
//! register with the node's runtime, map its segments, allocate tasks, enqueue
//! them, wait for them, free them.
//!
//! # Waiting
//!
//! [`Client::wait`] spins on the task's state word for a short while (a task
//! usually completes within microseconds; past [`SPIN_YIELD_AFTER`] the spin
//! yields the CPU between polls), then sets the `WAITER` bit and sleeps on the
//! word as a futex in slices of 10 ms. Between slices it checks that the
//! runtime is alive and not stopping: a runtime that died is reported at once; one
//! that is stopping gets the configured `client_wait_timeout` to complete the task
//! before the wait fails. A wait never hangs on a runtime that went away.
//!
//! # Files
//!
//! `options.rs` says how to find the runtime, `error.rs` what can go wrong,
//! `task_ptr.rs` holds the handles of submitted tasks ([`TaskPtr`], [`Pending`]),
//! `wait.rs` the wait for completion; this file connects, submits and frees.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::abi::AbiFingerprint;
use crate::auth::{AuthError, ControlKey};
use crate::proto::{self, Registration, Reply, Request, RuntimeBlock};
use crate::queue::{MultiLaneQueue, Priority};
use crate::shm::{Allocator, FullPtr, Segment, ShmPtr};
use crate::task::Task;
use crate::transport::{self, ControlClient, ZmqClient};
use crate::types::{NodeId, TaskNode};

pub(crate) mod call;
mod error;
mod options;
mod set;
mod task_ptr;
mod wait;

pub use call::{CallArg, CallOutput, PlainValue, TaskOutputs};
pub use error::{CallError, ClientError, TaskError};
pub use options::ClientOptions;
pub use set::{Completed, Completions, PendingSet};
pub use task_ptr::{Pending, TaskPtr, Waitable};
pub use wait::SPIN_YIELD_AFTER;

/// A process's connection to its node's runtime.
pub struct Client {
    opts: ClientOptions,
    reg: Registration,
    _segments: Vec<Segment>,
    main_alloc: Allocator,
    cdata_alloc: Allocator,
    queue: MultiLaneQueue,
    runtime: FullPtr<RuntimeBlock>,
    /// This process's key for this client (thread-local id blocks are tagged
    /// with it).
    key: u64,
    lane_hint: AtomicU64,
    /// The runtime's own client, used by module code inside a handler
    /// ([`Client::in_runtime`]): tasks go to the runtime as subtasks of the
    /// running task, and waits suspend the task's coroutine.
    in_runtime: bool,
    /// Its client-data allocator, registered for the buffers of tasks
    /// ([`crate::bytes::registry`]); none inside the runtime.
    _cdata_reg: Option<crate::bytes::registry::Registration>,
}

/// Task-node majors a thread takes from the runtime at a time: threads of one
/// client share no counter on the task path, and majors stay unique across all
/// clients of the runtime.
const MAJOR_BLOCK: u64 = 4096;

/// Keys of the clients of this process.
static NEXT_CLIENT_KEY: AtomicU64 = AtomicU64::new(1);

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("node_id", &self.reg.node_id)
            .field("client_id", &self.reg.client_id)
            .field("runtime_pid", &self.reg.runtime_pid)
            .finish()
    }
}

/// The key of the runtime at `opts` ([`ControlKey::find`]); without one, says
/// first whether anything listens there at all.
fn control_key(opts: &ClientOptions) -> Result<ControlKey, ClientError> {
    match ControlKey::find(&opts.addr, opts.port) {
        Ok(k) => Ok(k),
        Err(e @ AuthError::NoKey { .. }) => {
            transport::probe(&opts.addr, opts.port, opts.connect_timeout)?;
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

fn request(opts: &ClientOptions, req: &Request) -> Result<Reply, ClientError> {
    let msg = serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let key = control_key(opts)?;
    let raw = ZmqClient::new(&opts.addr, opts.port, key).request(&msg, opts.connect_timeout)?;
    serde_json::from_slice(&raw).map_err(|e| ClientError::Protocol(e.to_string()))
}

impl Client {
    /// Connects using [`ClientOptions::from_env`] (the seed's `CHIMAERA_CLIENT_INIT`).
    pub fn init() -> Result<Client, ClientError> {
        Self::connect(ClientOptions::from_env())
    }

    /// Registers with the runtime at `opts` and maps its segments. Fails at once,
    /// saying to start a runtime, if none listens.
    pub fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
        let reg = match request(
            &opts,
            &Request::Register {
                pid: std::process::id(),
            },
        )? {
            Reply::Registered(r) => r,
            Reply::Error { message } => return Err(ClientError::Refused(message)),
            other => return Err(ClientError::Protocol(format!("{other:?}"))),
        };
        let ours = AbiFingerprint::current().to_string();
        if reg.fingerprint != ours {
            return Err(ClientError::AbiMismatch {
                runtime: reg.fingerprint,
                client: ours,
            });
        }
        let mut segments = Vec::new();
        let mut main = None;
        let mut cdata = None;
        for s in &reg.segments {
            let seg = Segment::attach_expecting(&s.name, s.size)?;
            match s.role.as_str() {
                "main" => main = Some(seg.clone()),
                "client_data" => cdata = Some(seg.clone()),
                _ => {}
            }
            segments.push(seg);
        }
        let (Some(main), Some(cdata)) = (main, cdata) else {
            return Err(ClientError::Protocol(
                "registration lacks the main or client_data segment".into(),
            ));
        };
        let main_alloc = Allocator::attach(&main)?;
        let cdata_alloc = Allocator::attach(&cdata)?;
        let qptr = main.root(proto::ROOT_QUEUE).unwrap_or(ShmPtr::NULL);
        let queue = MultiLaneQueue::attach(&main, qptr)?;
        let runtime = main
            .root(proto::ROOT_RUNTIME)
            .unwrap_or(ShmPtr::NULL)
            .resolve::<RuntimeBlock>()?;
        // SAFETY: resolved in bounds and aligned; RuntimeBlock is valid for any bytes.
        let rb = unsafe { runtime.as_ref() };
        if rb.magic != proto::RUNTIME_MAGIC {
            return Err(ClientError::Protocol(
                "the runtime block in the main segment is not initialised".into(),
            ));
        }
        Ok(Client {
            opts,
            reg,
            _segments: segments,
            main_alloc,
            _cdata_reg: Some(crate::bytes::registry::register(&cdata_alloc)),
            cdata_alloc,
            queue,
            runtime,
            // Relaxed: only uniqueness matters.
            key: NEXT_CLIENT_KEY.fetch_add(1, Ordering::Relaxed),
            lane_hint: AtomicU64::new(0),
            in_runtime: false,
        })
    }

    /// The client module code uses inside the runtime of node `node`, on the
    /// runtime's segments `main` and `cdata` (what
    /// [`RunCtx::client`](crate::abi::RunCtx::client) hands out). It is the
    /// same API as a client program's, with two differences: a task it
    /// enqueues becomes a *subtask* of the handler's task (the runtime stamps
    /// its [`TaskNode`] under the handler's and routes it through its
    /// container's Monitor, whatever lane was asked for), and a wait suspends
    /// the handler's coroutine instead of a thread, so the worker runs other
    /// tasks, the subtask among them, meanwhile.
    pub(crate) fn in_runtime(
        node: u32,
        main: Segment,
        cdata: Segment,
    ) -> Result<Client, ClientError> {
        let main_alloc = Allocator::attach(&main)?;
        let cdata_alloc = Allocator::attach(&cdata)?;
        let qptr = main.root(proto::ROOT_QUEUE).unwrap_or(ShmPtr::NULL);
        let queue = MultiLaneQueue::attach(&main, qptr)?;
        let runtime = main
            .root(proto::ROOT_RUNTIME)
            .unwrap_or(ShmPtr::NULL)
            .resolve::<RuntimeBlock>()?;
        Ok(Client {
            opts: ClientOptions::default(),
            reg: Registration {
                node_id: node,
                client_id: 0,
                runtime_pid: std::process::id(),
                segments: Vec::new(),
                fingerprint: AbiFingerprint::current().to_string(),
                wait_timeout_ms: 0,
                task_deadline_ms: 0,
            },
            _segments: vec![main, cdata],
            main_alloc,
            cdata_alloc,
            queue,
            runtime,
            // Relaxed: only uniqueness matters.
            key: NEXT_CLIENT_KEY.fetch_add(1, Ordering::Relaxed),
            lane_hint: AtomicU64::new(0),
            in_runtime: true,
            _cdata_reg: None,
        })
    }

    /// Whether this is the runtime's own client of module code (the one
    /// [`RunCtx::client`](crate::abi::RunCtx::client) hands out).
    pub fn is_in_runtime(&self) -> bool {
        self.in_runtime
    }

    /// This node.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.reg.node_id)
    }

    /// This client's id.
    pub fn client_id(&self) -> u32 {
        self.reg.client_id
    }

    /// The runtime's pid.
    pub fn runtime_pid(&self) -> u32 {
        self.reg.runtime_pid
    }

    /// The allocator of the main segment (tasks).
    pub fn main_allocator(&self) -> &Allocator {
        &self.main_alloc
    }

    /// The process queue.
    pub fn queue(&self) -> &MultiLaneQueue {
        &self.queue
    }

    /// A fresh root task-graph node.
    pub fn new_task_node(&self) -> TaskNode {
        // (client key, next major, end of the block) of this thread.
        thread_local!(static BLOCK: std::cell::Cell<(u64, u64, u64)> =
            const { std::cell::Cell::new((0, 0, 0)) });
        BLOCK.with(|b| {
            let (key, next, end) = b.get();
            let (next, end) = if key == self.key && next < end {
                (next, end)
            } else {
                // SAFETY: the runtime block was validated at connect and stays
                // mapped while the client lives.
                let rb = unsafe { self.runtime.as_ref() };
                // Relaxed: only uniqueness matters (the runtime starts it at 1).
                let start = rb
                    .next_major
                    .fetch_add(MAJOR_BLOCK, Ordering::Relaxed)
                    .max(1);
                (start, start + MAJOR_BLOCK)
            };
            b.set((self.key, next + 1, end));
            TaskNode::root(next)
        })
    }

    /// Moves `task` into the main segment, stamping its size, client id and (if
    /// unset) a fresh task node. If the segment is full, what the task's
    /// fields own is freed with the error.
    pub fn new_task<T: Task>(&self, mut task: T) -> Result<TaskPtr<T>, ClientError> {
        let h = task.header_mut();
        h.size = size_of::<T>() as u32;
        h.client_id = self.reg.client_id;
        // The runtime stamps a subtask's node under its parent's.
        if h.task_node.major == 0 && !self.in_runtime {
            h.task_node = self.new_task_node();
        }
        let generation = h.generation;
        let block = match self
            .main_alloc
            .allocate_aligned(size_of::<T>(), align_of::<T>())
        {
            Ok(b) => b.cast::<T>(),
            Err(e) => {
                // What the fields own would be lost with the value.
                self.discard(task);
                return Err(e.into());
            }
        };
        // SAFETY: a fresh block of at least size_of::<T>() bytes, aligned for T.
        unsafe { block.as_ptr().write(task) };
        Ok(TaskPtr {
            ptr: block,
            generation,
        })
    }

    /// Hands `task` to the runtime on a lane of `prio` (lanes taken round robin).
    /// Fails if the lane stays full for the connect timeout.
    #[inline]
    pub fn enqueue<T: Task>(&self, task: &TaskPtr<T>, prio: Priority) -> Result<(), ClientError> {
        if self.in_runtime {
            return self.submit_subtask(task);
        }
        // One lane per client thread: a thread's tasks stay in order on one worker,
        // and threads spread over the lanes.
        thread_local!(static HINT: std::cell::Cell<u64> = const { std::cell::Cell::new(u64::MAX) });
        let hint = HINT.with(|h| {
            if h.get() == u64::MAX {
                h.set(self.lane_hint.fetch_add(1, Ordering::Relaxed) + self.reg.client_id as u64);
            }
            h.get()
        });
        self.enqueue_to_lane(task, self.queue.lane_for(prio, hint))
    }

    /// Hands `task` to the runtime on process-queue lane `lane` (pinning it to
    /// the worker that serves that lane). Fails if the lane does not exist or
    /// stays full for the connect timeout.
    #[inline]
    pub fn enqueue_to_lane<T: Task>(
        &self,
        task: &TaskPtr<T>,
        lane: usize,
    ) -> Result<(), ClientError> {
        if self.in_runtime {
            return self.submit_subtask(task);
        }
        let h = task.get().header();
        // Relaxed: published to the worker by the push (Release on the cell).
        h.lane.store(lane as u32, Ordering::Relaxed);
        h.mark_queued();
        let word = crate::task::task_word(task.shm(), u32::from(task.generation));
        self.queue
            .push_to_lane(lane, word, Some(self.opts.connect_timeout))?;
        Ok(())
    }

    /// Hands `task` to the runtime as a subtask of the running handler's task.
    #[cold]
    fn submit_subtask<T: Task>(&self, task: &TaskPtr<T>) -> Result<(), ClientError> {
        let h = task.ptr.as_ptr().cast::<crate::task::TaskHeader>();
        // SAFETY: the task was allocated and filled by `new_task`, is ours and
        // not queued yet.
        unsafe { crate::module_side::submit(h) }.map_err(ClientError::Refused)
    }

    /// Frees what a task value that was never submitted owns (its strings,
    /// vectors and client-data buffers).
    pub fn discard<T: Task>(&self, mut task: T) {
        task.free_fields(&self.main_alloc);
    }

    /// Frees `task` (and what its fields own) from the main segment; a refusal
    /// (see [`try_del_task`](Self::try_del_task)) is logged and the task is left
    /// allocated.
    #[inline]
    pub fn del_task<T: Task>(&self, task: TaskPtr<T>) {
        if let Err(e) = self.try_del_task(task) {
            tracing::error!(error = %e, "a task was not freed");
        }
    }

    /// Frees `task` (and what its fields own) from the main segment. Refused,
    /// with nothing changed, if the task was handed to the runtime and has not
    /// completed (the runtime still uses it), or if its block no longer holds
    /// the task this pointer was made for (a stale pointer: another task lives
    /// there now).
    #[inline]
    pub fn try_del_task<T: Task>(&self, task: TaskPtr<T>) -> Result<(), ClientError> {
        let mut ptr = task.ptr;
        let h = task.get().header();
        if h.magic != crate::task::TASK_MAGIC || h.generation != task.generation {
            return Err(bad_free(format_args!(
                "task {} was not freed: its block holds another task now (generation {:#x}, \
                 this pointer was made for {:#x}); the pointer is stale — it was freed before",
                ptr.shm(),
                h.generation,
                task.generation
            )));
        }
        if h.is_in_flight() {
            return Err(bad_free(format_args!(
                "task {} was not freed: the runtime has not completed it and may still write \
                 to it; wait for it first",
                ptr.shm()
            )));
        }
        // SAFETY: the task is ours again (complete, or never enqueued) and is freed
        // right after; nobody else refers to it.
        let t = unsafe { ptr.as_mut() };
        t.free_fields(&self.main_alloc);
        let _ = t.header_mut().error.free(&self.main_alloc);
        // A freed block's generation is 0, so a second free through a copy of
        // this pointer is recognised as stale even before the block is reused.
        t.header_mut().generation = 0;
        self.main_alloc
            .free(ptr.shm())
            .map_err(|e| bad_free(format_args!("task {} was not freed: {e}", ptr.shm())))
    }

    /// Submits `task`, waits for it, and returns it (the caller reads the outputs,
    /// then passes it to [`del_task`](Self::del_task)).
    pub fn call<T: Task>(&self, task: T, prio: Priority) -> Result<TaskPtr<T>, CallError> {
        self.submit(task, prio)?.wait()
    }

    /// Submits `task` without waiting (seed: the `Async…` calls): the returned
    /// [`Pending`] is waited for with [`Pending::wait`].
    pub fn submit<T: Task>(&self, task: T, prio: Priority) -> Result<Pending<'_, T>, CallError> {
        let t = self.new_task(task)?;
        if let Err(e) = self.enqueue(&t, prio) {
            self.del_task(t);
            return Err(e.into());
        }
        Ok(Pending::new(self, t))
    }

    /// How many [`Pending`] handles the calling thread holds: made on it by
    /// a submit and not dropped yet (a handle dropped on another thread is
    /// counted off there). A wait on a task sent to another node spins
    /// longer only while this is at most 1 (see [`ClientOptions::remote_spin`]).
    pub fn pending_on_this_thread() -> u32 {
        task_ptr::pending_here()
    }

    /// [`submit`](Self::submit) onto process-queue lane `lane` (see
    /// `chi-runtime status` for the lanes and the workers serving them): tasks
    /// of one lane run in order on the worker that serves it. Fails if the
    /// lane does not exist.
    pub fn submit_to_lane<T: Task>(
        &self,
        task: T,
        lane: usize,
    ) -> Result<Pending<'_, T>, CallError> {
        let t = self.new_task(task)?;
        if let Err(e) = self.enqueue_to_lane(&t, lane) {
            self.del_task(t);
            return Err(e.into());
        }
        Ok(Pending::new(self, t))
    }

    /// Submits `task` as a periodic task (seed: `TASK_PERIODIC`): the runtime
    /// runs its method every `period` on its container's lane until it is
    /// cancelled ([`cancel`](Self::cancel)), its pool destroyed or the runtime
    /// stopped; a run that overruns the period is followed by the next at
    /// once, without catching up. The task completes then (with
    /// [`code::CANCELLED`](crate::task::code::CANCELLED),
    /// [`code::NO_POOL`](crate::task::code::NO_POOL) or
    /// [`code::SHUTDOWN`](crate::task::code::SHUTDOWN)), or as soon as a run
    /// fails.
    pub fn submit_periodic<T: Task>(
        &self,
        mut task: T,
        period: Duration,
        prio: Priority,
    ) -> Result<Pending<'_, T>, CallError> {
        let h = task.header_mut();
        h.flags |= crate::task::flags::PERIODIC;
        h.period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.submit(task, prio)
    }

    /// The allocator of the client_data segment.
    pub fn cdata_allocator(&self) -> &Allocator {
        &self.cdata_alloc
    }

    /// Allocates a buffer of `size` bytes in the client_data segment.
    pub fn allocate_buffer(&self, size: usize) -> Result<FullPtr<u8>, ClientError> {
        Ok(self.cdata_alloc.allocate(size)?)
    }

    /// Frees a buffer from [`allocate_buffer`](Self::allocate_buffer).
    pub fn free_buffer(&self, ptr: ShmPtr) -> Result<(), crate::shm::FreeError> {
        self.cdata_alloc.free(ptr)
    }

    /// Asks the runtime at `opts` for its status (no registration needed).
    pub fn status(opts: &ClientOptions) -> Result<proto::StatusReport, ClientError> {
        match request(opts, &Request::Status)? {
            Reply::Status(s) => Ok(s),
            Reply::Error { message } => Err(ClientError::Refused(message)),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }

    /// Asks the runtime at `opts` for the status of node `node` of its
    /// cluster, which it fetches over its peer link (its own status if `node`
    /// is its own id). A node that is down, or not in the cluster, is a
    /// [`ClientError::Refused`] saying so.
    pub fn node_status(
        opts: &ClientOptions,
        node: u32,
    ) -> Result<proto::StatusReport, ClientError> {
        match request(opts, &Request::NodeStatus { node })? {
            Reply::Status(s) => Ok(s),
            Reply::Error { message } => Err(ClientError::Refused(message)),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }

    /// Asks the runtime at `opts` to stop; returns its pid.
    pub fn request_stop(opts: &ClientOptions) -> Result<u32, ClientError> {
        match request(opts, &Request::Stop)? {
            Reply::Ok { pid } => Ok(pid),
            Reply::Error { message } => Err(ClientError::Refused(message)),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }
}

/// A refused free, built off the task path.
#[cold]
#[inline(never)]
fn bad_free(why: std::fmt::Arguments<'_>) -> ClientError {
    ClientError::BadFree(why.to_string())
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.in_runtime {
            return;
        }
        let mut opts = self.opts.clone();
        opts.connect_timeout = Duration::from_millis(200);
        let _ = request(
            &opts,
            &Request::Unregister {
                client_id: self.reg.client_id,
            },
        );
    }
}
