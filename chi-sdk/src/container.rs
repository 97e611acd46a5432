//! What a module's container sees of the runtime that hosts it.
//!
//! # Design
//!
//! A module library carries its own copy of chi-sdk (see [`crate::abi`]), so
//! everything here works across that boundary through the runtime's
//! [`RuntimeServices`] table, handed to the library once when it is loaded:
//!
//! * [`CreateCtx`] is what `create` (method `kCreate`) receives: the pool's id,
//!   name and the container's id, and [`CreateCtx::create_local_queue`], which
//!   asks the runtime for the container's lanes. Monitor then routes each task
//!   by naming one of those lanes ([`RunCtx::lane`](crate::abi::RunCtx::lane),
//!   [`RunCtx::lane_by_hash`](crate::abi::RunCtx::lane_by_hash)), never by
//!   enqueueing it.
//! * [`main_allocator`], [`client_data_allocator`] and
//!   [`runtime_data_allocator`] hand out allocators of the runtime's segments,
//!   for handlers that produce data (a string output that grows, a buffer read
//!   from a device). Outputs stored in a task's fields come from the main
//!   segment, which the client frees them from with the task.
//! * The library's `tracing` events go to the runtime's log: at load time a
//!   subscriber is installed in the library's copy of `tracing` that forwards
//!   every enabled event through [`RuntimeServices::log`], with the library's
//!   module path as its target. Module code logs with the ordinary `tracing`
//!   macros (re-exported as [`chi_sdk::tracing`](crate::tracing)).

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::abi::{ContainerInfo, ErrorBuf, RuntimeServices, lane_priority, nul_str, segment_kind};
pub use crate::abi::{LaneId, LocalQueueInfo, QueueId, RouteError, RunCtx};
use crate::queue::Priority;
use crate::shm::{Allocator, Segment, SegmentId};
use crate::types::{ContainerId, NodeId, PoolId};

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
    /// Attaching the segment's allocator failed.
    #[error("cannot use the runtime's {what} segment: {message}")]
    Segment {
        /// Which segment.
        what: &'static str,
        /// What failed.
        message: String,
    },
}

/// What `create` receives: the container's identity and the runtime's services
/// for setting it up.
#[derive(Debug)]
pub struct CreateCtx<'a> {
    info: &'a ContainerInfo,
    queues: Vec<LocalQueueInfo>,
}

impl<'a> CreateCtx<'a> {
    /// The context of the container `info` describes (called by generated code).
    #[doc(hidden)]
    pub fn new(info: &'a ContainerInfo) -> CreateCtx<'a> {
        CreateCtx {
            info,
            queues: Vec::new(),
        }
    }

    /// The pool the container belongs to.
    pub fn pool_id(&self) -> PoolId {
        self.info.pool_id
    }

    /// The pool's name.
    pub fn pool_name(&self) -> &str {
        nul_str(&self.info.pool_name)
    }

    /// The container's id within its pool.
    pub fn container_id(&self) -> ContainerId {
        self.info.container_id
    }

    /// The node the container runs on.
    pub fn node_id(&self) -> NodeId {
        self.info.node_id
    }

    /// Adds local queue `id` with `lanes` lanes of `priority` (seed:
    /// `CreateLocalQueue`). Tasks Monitor routes to a lane run on a worker of
    /// that priority, one lane always on the same worker, so the tasks of a lane
    /// start in the order they were routed. Without any local queue a container
    /// has one low-latency lane, [`QueueId`] 0 lane 0, where every task goes.
    pub fn create_local_queue(
        &mut self,
        id: QueueId,
        lanes: u32,
        priority: Priority,
    ) -> Result<(), String> {
        if lanes == 0 || lanes > u32::from(u16::MAX) {
            return Err(format!(
                "{id}: {lanes} lanes; a local queue has 1..={} lanes",
                u16::MAX
            ));
        }
        if self.queues.iter().any(|q| q.queue_id == u32::from(id.0)) {
            return Err(format!(
                "{id} was already created; give each queue its own id"
            ));
        }
        let priority = match priority {
            Priority::LowLatency => lane_priority::LOW_LATENCY,
            Priority::HighLatency => lane_priority::HIGH_LATENCY,
        };
        let services = crate::__private::chimod::services().ok_or_else(|| {
            "create_local_queue needs the runtime's services: call it from a module's create"
                .to_owned()
        })?;
        let mut err = ErrorBuf::default();
        // SAFETY: `runtime` is the handle the runtime passed for this `create` call,
        // still running; `err` is ours.
        let rc = unsafe {
            (services.create_local_queue)(
                self.info.runtime,
                u32::from(id.0),
                lanes,
                priority,
                &mut err,
            )
        };
        if rc != 0 {
            return Err(format!("{id}: {}", err.as_str()));
        }
        self.queues.push(LocalQueueInfo {
            queue_id: u32::from(id.0),
            lanes,
            priority,
        });
        Ok(())
    }

    /// The local queues created so far.
    pub fn local_queues(&self) -> &[LocalQueueInfo] {
        &self.queues
    }

    /// A client of this container's own pool (seed: `InitClient`), for a
    /// container that calls its own methods: any client type built from a pool
    /// id.
    pub fn init_client<C: From<PoolId>>(&self) -> C {
        C::from(self.pool_id())
    }
}

/// An allocator attached on first use (or why it could not be).
type LazyAllocator = std::sync::OnceLock<Result<Allocator, String>>;

/// The runtime's segments as this copy of the library sees them: kind, handle
/// and allocator.
struct Segments {
    list: Vec<(u32, Segment, LazyAllocator)>,
}

static SEGMENTS: RwLock<Option<&'static Segments>> = RwLock::new(None);

/// Whether this copy of the library is the runtime's own (set by the runtime):
/// then module code linked into the runtime needs no log forwarding.
static IS_RUNTIME: AtomicBool = AtomicBool::new(false);

/// Marks this copy of chi-sdk as the runtime's (called by the runtime at start).
#[doc(hidden)]
pub fn mark_runtime_process() {
    IS_RUNTIME.store(true, Ordering::Relaxed);
}

/// Called by the generated `init` of a module: adopts the runtime's segments and
/// forwards this library's logs. Returns a message on failure.
pub(crate) fn init(services: &'static RuntimeServices) -> Result<(), String> {
    let infos: &[crate::abi::SegmentInfo] = if services.segments.is_null() {
        &[]
    } else {
        // SAFETY: the runtime's leaked list of `num_segments` entries.
        unsafe { std::slice::from_raw_parts(services.segments, services.num_segments) }
    };
    let mut list = Vec::new();
    for s in infos {
        // SAFETY: the runtime keeps its segments mapped while it runs modules.
        let seg = unsafe { Segment::adopt_external(SegmentId(s.id), s.base, s.len) }
            .map_err(|e| e.to_string())?;
        list.push((s.kind, seg, std::sync::OnceLock::new()));
    }
    let segs: &'static Segments = Box::leak(Box::new(Segments { list }));
    *SEGMENTS.write().unwrap_or_else(|e| e.into_inner()) = Some(segs);
    if !IS_RUNTIME.load(Ordering::Relaxed) {
        crate::__private::logbridge::install(services);
    }
    Ok(())
}

fn allocator(kind: u32, what: &'static str) -> Result<&'static Allocator, ContainerError> {
    let segs = SEGMENTS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .ok_or(ContainerError::NoRuntime)?;
    let (_, seg, cell) = segs
        .list
        .iter()
        .find(|(k, _, _)| *k == kind)
        .ok_or(ContainerError::NoSegment(what))?;
    cell.get_or_init(|| Allocator::attach(seg).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|message| ContainerError::Segment {
            what,
            message: message.clone(),
        })
}

/// The allocator of the runtime's main segment: tasks, and what their fields
/// own. Use it for outputs stored in a task.
pub fn main_allocator() -> Result<&'static Allocator, ContainerError> {
    allocator(segment_kind::MAIN, "main")
}

/// The allocator of the client-data segment, where clients put bulk data.
pub fn client_data_allocator() -> Result<&'static Allocator, ContainerError> {
    allocator(segment_kind::CLIENT_DATA, "client_data")
}

/// The allocator of the runtime-data segment, for a container's own shared data.
pub fn runtime_data_allocator() -> Result<&'static Allocator, ContainerError> {
    allocator(segment_kind::RUNTIME_DATA, "runtime_data")
}
