//! The client side of IPC (the seed's `CHIMAERA_CLIENT_INIT` and IPC manager):
//! register with the node's runtime, map its segments, allocate tasks, enqueue
//! them, wait for them, free them.
//!
//! # Waiting
//!
//! [`Client::wait`] spins on the task's state word for a short while (a task
//! usually completes within microseconds), then sets the `WAITER` bit and sleeps
//! on the word as a futex in slices of 10 ms. Between slices it checks that the
//! runtime is alive and not stopping: a runtime that died is reported at once; one
//! that is stopping gets the configured `client_wait_timeout` to complete the task
//! before the wait fails. A wait never hangs on a runtime that went away.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::abi::AbiFingerprint;
use crate::auth::{AuthError, ControlKey};
use crate::proto::{self, Registration, Reply, Request, RuntimeBlock, runtime_state};
use crate::queue::{MultiLaneQueue, Priority, PushError, QueueError};
use crate::shm::{AllocError, Allocator, FullPtr, Segment, ShmError, ShmPtr};
use crate::task::{Task, TaskHeader, code, state};
use crate::transport::{self, ControlClient, TransportError, ZmqClient};
use crate::types::{NodeId, TaskNode};

/// How to find the runtime.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Address of the runtime's loopback socket.
    pub addr: String,
    /// Its port.
    pub port: u16,
    /// How long to wait for the registration reply.
    pub connect_timeout: Duration,
    /// How long to spin on a task before sleeping.
    pub spin: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            addr: "127.0.0.1".into(),
            port: proto::DEFAULT_PORT,
            connect_timeout: Duration::from_secs(5),
            spin: Duration::from_micros(50),
        }
    }
}

impl ClientOptions {
    /// Options from the environment: `CHI_PORT` and `CHI_ADDR` if set, otherwise
    /// the `port` key of the file named by `CHI_SERVER_CONF`, otherwise defaults.
    pub fn from_env() -> ClientOptions {
        let mut o = ClientOptions::default();
        if let Some(port) = std::env::var("CHI_PORT")
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            o.port = port;
        } else if let Some(port) = std::env::var("CHI_SERVER_CONF")
            .ok()
            .and_then(|f| port_from_config(&f))
        {
            o.port = port;
        }
        if let Ok(addr) = std::env::var("CHI_ADDR") {
            o.addr = addr;
        }
        o
    }
}

/// The top-level `port:` key of a server config file, if readable.
fn port_from_config(path: &str) -> Option<u16> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("port:")?;
        rest.split('#').next()?.trim().parse().ok()
    })
}

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

/// A task allocated by a client in the main segment.
pub struct TaskPtr<T: Task> {
    ptr: FullPtr<T>,
    /// The generation the task was allocated with (see [`TaskHeader::generation`]).
    generation: u16,
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

/// A task submitted with [`Client::submit`], not yet waited for.
///
/// Dropping it without waiting frees the task if the runtime completed it, and
/// otherwise leaves it allocated (the runtime still writes to it) with a warning.
pub struct Pending<'c, T: Task> {
    client: &'c Client,
    task: Option<TaskPtr<T>>,
}

impl<T: Task> std::fmt::Debug for Pending<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("task", &self.task).finish()
    }
}

impl<'c, T: Task> Pending<'c, T> {
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
    /// [`ClientError::Deadline`] (the task then stays allocated: the runtime may
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
}

impl<T: Task> Drop for Pending<'_, T> {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            if t.is_complete() {
                self.client.del_task(t);
            } else {
                tracing::warn!(
                    task = %t.shm(),
                    "a submitted task was dropped before it completed; it stays allocated"
                );
            }
        }
    }
}

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
            cdata_alloc,
            queue,
            runtime,
            // Relaxed: only uniqueness matters.
            key: NEXT_CLIENT_KEY.fetch_add(1, Ordering::Relaxed),
            lane_hint: AtomicU64::new(0),
        })
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
    /// unset) a fresh task node.
    pub fn new_task<T: Task>(&self, mut task: T) -> Result<TaskPtr<T>, ClientError> {
        let h = task.header_mut();
        h.size = size_of::<T>() as u32;
        h.client_id = self.reg.client_id;
        if h.task_node.major == 0 {
            h.task_node = self.new_task_node();
        }
        let generation = h.generation;
        let ptr = self.main_alloc.new_obj(task)?;
        Ok(TaskPtr { ptr, generation })
    }

    /// Hands `task` to the runtime on a lane of `prio` (lanes taken round robin).
    /// Fails if the lane stays full for the connect timeout.
    pub fn enqueue<T: Task>(&self, task: &TaskPtr<T>, prio: Priority) -> Result<(), ClientError> {
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
    pub fn enqueue_to_lane<T: Task>(
        &self,
        task: &TaskPtr<T>,
        lane: usize,
    ) -> Result<(), ClientError> {
        let h = task.get().header();
        // Relaxed: published to the worker by the push (Release on the cell).
        h.lane.store(lane as u32, Ordering::Relaxed);
        h.mark_queued();
        let word = crate::task::task_word(task.shm(), u32::from(task.generation));
        self.queue
            .push_to_lane(lane, word, Some(self.opts.connect_timeout))?;
        Ok(())
    }

    /// Waits until `task` completes (see the module doc for how). `Ok` means the
    /// runtime answered; the method's own outcome is [`TaskPtr::result`]. Fails
    /// if the runtime dies, stops, or makes no progress on the task's lane for the
    /// configured task deadline.
    #[inline]
    pub fn wait<T: Task>(&self, task: &TaskPtr<T>) -> Result<(), ClientError> {
        self.wait_until(task, None)
    }

    /// [`wait`](Self::wait), giving up with [`ClientError::Deadline`] after `timeout`.
    pub fn wait_timeout<T: Task>(
        &self,
        task: &TaskPtr<T>,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        self.wait_until(task, Some(Instant::now() + timeout))
    }

    /// [`wait`](Self::wait), giving up with [`ClientError::Deadline`] at `deadline`
    /// (`None`: only the runtime's own checks end the wait).
    pub fn wait_until<T: Task>(
        &self,
        task: &TaskPtr<T>,
        deadline: Option<Instant>,
    ) -> Result<(), ClientError> {
        let h = task.get().header();
        if h.is_complete() {
            return Ok(());
        }
        let start = Instant::now();
        while start.elapsed() < self.opts.spin {
            for _ in 0..64 {
                if h.is_complete() {
                    return Ok(());
                }
                std::hint::spin_loop();
            }
        }
        self.wait_slow(task.shm(), h, start, deadline)
    }

    #[cold]
    fn wait_slow(
        &self,
        ptr: ShmPtr,
        h: &TaskHeader,
        start: Instant,
        deadline: Option<Instant>,
    ) -> Result<(), ClientError> {
        let mut stopping_since = None::<Instant>;
        let limit = Duration::from_millis(self.reg.wait_timeout_ms);
        let no_progress = Duration::from_millis(self.reg.task_deadline_ms);
        loop {
            let cur = h.announce_waiter();
            if cur & state::COMPLETE != 0 {
                return Ok(());
            }
            let slice = match deadline {
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(10)),
                None => Duration::from_millis(10),
            };
            h.sleep_until_changed(cur, Some(slice));
            if h.is_complete() {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ClientError::Deadline {
                    task: ptr,
                    waited: start.elapsed(),
                });
            }
            // SAFETY: the runtime block was validated at connect; it stays mapped
            // while the client lives.
            let rb = unsafe { self.runtime.as_ref() };
            let pid = self.reg.runtime_pid;
            if !crate::shm::alloc::pid_alive(pid) {
                return Err(ClientError::RuntimeDied { pid });
            }
            if rb.state.load(Ordering::Acquire) != runtime_state::RUNNING {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= limit {
                    return Err(ClientError::RuntimeStopped {
                        pid,
                        waited: since.elapsed(),
                    });
                }
            } else if !no_progress.is_zero()
                && start.elapsed() >= no_progress
                && let Some(stalled) = match h.lane.load(Ordering::Relaxed) {
                    crate::task::LANE_STALLED => Some(start.elapsed()),
                    lane => self.lane_stalled_for(lane),
                }
                && stalled >= no_progress
            {
                return Err(ClientError::NoProgress {
                    task: ptr,
                    lane: h.lane.load(Ordering::Relaxed),
                    stalled,
                    pid,
                });
            }
        }
    }

    /// How long the runtime's supervisor has not seen the worker of `lane` make
    /// progress (`None` if the runtime publishes no beat for that lane).
    fn lane_stalled_for(&self, lane: u32) -> Option<Duration> {
        // SAFETY: validated at connect; mapped while the client lives.
        let rb = unsafe { self.runtime.as_ref() };
        if lane >= rb.num_lanes {
            return None;
        }
        let beats = rb
            .lane_beats
            .resolve_slice::<std::sync::atomic::AtomicU64>(u64::from(rb.num_lanes))
            .ok()?;
        // SAFETY: resolved in bounds and aligned; atomics are valid for any bytes.
        let beat = unsafe { &*beats.as_ptr().add(lane as usize) };
        // Relaxed: a monitoring figure; a stale read only delays the verdict.
        let at = beat.load(Ordering::Relaxed);
        if at == 0 {
            return None;
        }
        Some(Duration::from_millis(
            proto::monotonic_ms().saturating_sub(at),
        ))
    }

    /// Frees `task` (and what its fields own) from the main segment; a refusal
    /// (see [`try_del_task`](Self::try_del_task)) is logged and the task is left
    /// allocated.
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
    pub fn try_del_task<T: Task>(&self, task: TaskPtr<T>) -> Result<(), ClientError> {
        let mut ptr = task.ptr;
        let h = task.get().header();
        if h.magic != crate::task::TASK_MAGIC || h.generation != task.generation {
            return Err(ClientError::BadFree(format!(
                "task {} was not freed: its block holds another task now (generation {:#x}, \
                 this pointer was made for {:#x}); the pointer is stale — it was freed before",
                ptr.shm(),
                h.generation,
                task.generation
            )));
        }
        if h.is_in_flight() {
            return Err(ClientError::BadFree(format!(
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
            .map_err(|e| ClientError::BadFree(format!("task {} was not freed: {e}", ptr.shm())))
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
        Ok(Pending {
            client: self,
            task: Some(t),
        })
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

    /// Asks the runtime at `opts` to stop; returns its pid.
    pub fn request_stop(opts: &ClientOptions) -> Result<u32, ClientError> {
        match request(opts, &Request::Stop)? {
            Reply::Ok { pid } => Ok(pid),
            Reply::Error { message } => Err(ClientError::Refused(message)),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
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
