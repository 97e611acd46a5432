//! The multi-lane queue: seed 003's process queue, in shared memory.
//!
//! # Design
//!
//! A queue is one allocation in a segment:
//!
//! ```text
//! | header | lane 0 .. lane N-1 | doorbell 0 .. N-1 | cells of lane 0 | ... | cells of lane N-1 |
//! ```
//!
//! * **Lanes** are bounded multi-producer / single-consumer rings of [`ShmPtr`]
//!   (module `ring`); their producer and consumer positions sit on separate 128-byte
//!   line pairs. The first `low_latency` lanes form the [`Priority::LowLatency`]
//!   group, the rest the [`Priority::HighLatency`] group.
//! * **Producers** (clients, or the runtime itself) push with [`MultiLaneQueue::push`];
//!   a full lane is an error ([`PushError::Full`]) after an optional bounded wait,
//!   never a silent drop.
//! * **Consumers** claim lanes ([`MultiLaneQueue::consumer`]): each lane has at
//!   most one [`Consumer`] at a time (its claim word in shared memory holds the
//!   consumer's pid, and a dead consumer's claim can be taken over). A consumer
//!   pops its lanes and, when they are all empty, may sleep on its **doorbell**, a
//!   futex word woken by the next push (module `doorbell` explains why no wake-up is
//!   lost and why a push costs no system call while the consumer is awake).
//! * **Untrusted.** A queue is found by a [`ShmPtr`] that may come from another
//!   process: [`MultiLaneQueue::attach`] validates every header field against the
//!   segment before use, and doorbell indices read from shared memory are
//!   bounds-checked on each use.

mod consumer;
pub(crate) mod doorbell;
pub(crate) mod ring;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shm::{AllocError, Allocator, Segment, ShmError, ShmPtr};
use crate::sync::{AtomicU32, AtomicU64, Ordering, Padded};
pub use consumer::Consumer;
use ring::{Cell, Positions, Ring};

const QUEUE_MAGIC: u64 = u64::from_le_bytes(*b"CHIQUEUE");
const QUEUE_VERSION: u32 = 1;
/// Alignment of a queue's allocation (its lanes' line pairs are 128 bytes).
const QUEUE_ALIGN: usize = 128;
/// Largest depth of a lane.
pub const MAX_DEPTH: u64 = 1 << 24;
/// Largest number of lanes of a queue.
pub const MAX_LANES: u32 = 4096;

/// The two priority groups of a queue's lanes.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Priority {
    /// Entries that must be served quickly (the runtime's short tasks); served
    /// by low-latency consumers.
    LowLatency = 0,
    /// Entries that may wait (the runtime's long-running tasks); served by
    /// high-latency consumers.
    HighLatency = 1,
}

/// The shape of a queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueueConfig {
    /// Lanes of the [`Priority::LowLatency`] group.
    pub low_latency_lanes: u32,
    /// Lanes of the [`Priority::HighLatency`] group.
    pub high_latency_lanes: u32,
    /// Capacity of each lane; rounded up to a power of two (at least 2).
    pub depth: u64,
}

/// Why a queue could not be created or attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The configuration is out of range.
    #[error("invalid queue configuration: {0}")]
    BadConfig(String),
    /// The queue's memory could not be allocated.
    #[error("cannot allocate the queue: {0}")]
    Alloc(#[from] AllocError),
    /// A pointer could not be resolved.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The memory at the pointer is not a valid queue.
    #[error("{ptr} is not a valid queue: {reason}")]
    BadHeader {
        /// Where the queue was expected.
        ptr: ShmPtr,
        /// What is wrong.
        reason: &'static str,
    },
    /// A lane index is out of range.
    #[error("lane {lane} does not exist (the queue has {lanes} lanes)")]
    NoLane {
        /// Lane asked for.
        lane: usize,
        /// Lanes of the queue.
        lanes: usize,
    },
    /// Another live consumer holds the lane.
    #[error("lane {lane} already has a consumer (pid {pid}); a lane has one consumer at a time")]
    LaneBusy {
        /// Lane.
        lane: usize,
        /// pid of its consumer.
        pid: u32,
    },
}

/// Why a push failed; the value was not enqueued.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The lane stayed full for the whole wait.
    #[error(
        "lane {lane} is full ({depth} entries): the runtime is not keeping up; retry later or raise the queue depth"
    )]
    Full {
        /// Lane.
        lane: usize,
        /// Its depth.
        depth: u64,
    },
    /// The lane does not exist.
    #[error("lane {lane} does not exist (the queue has {lanes} lanes)")]
    NoLane {
        /// Lane asked for.
        lane: usize,
        /// Lanes of the queue.
        lanes: usize,
    },
}

#[repr(C)]
struct QueueHeader {
    magic: u64,
    version: u32,
    low: u32,
    high: u32,
    _pad: u32,
    depth: u64,
    total_size: u64,
}

#[repr(C)]
struct LaneInfo {
    /// Index of the doorbell of this lane's consumer.
    doorbell: AtomicU32,
    _pad: u32,
    /// `pid << 32 | claim number` of the consumer holding the lane; 0 = none.
    consumer: AtomicU64,
}

#[repr(C)]
struct Lane {
    pos: Positions,
    info: Padded<LaneInfo>,
}

struct Geometry {
    lanes_at: usize,
    bells_at: usize,
    cells_at: usize,
    total: usize,
}

fn geometry(lanes: usize, depth: u64) -> Option<Geometry> {
    let lanes_at = size_of::<Padded<QueueHeader>>();
    let bells_at = lanes_at.checked_add(lanes.checked_mul(size_of::<Lane>())?)?;
    let cells_at = bells_at.checked_add(lanes.checked_mul(size_of::<Padded<AtomicU32>>())?)?;
    let cells = lanes
        .checked_mul(usize::try_from(depth).ok()?)?
        .checked_mul(size_of::<Cell>())?;
    Some(Geometry {
        lanes_at,
        bells_at,
        cells_at,
        total: cells_at.checked_add(cells)?,
    })
}

struct Inner {
    _segment: Segment,
    shm: ShmPtr,
    base: *mut u8,
    low: usize,
    high: usize,
    depth: u64,
    geo: Geometry,
}

// SAFETY: `base` points into the mapping kept alive by `_segment`; everything
// behind it is accessed through atomics.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

/// A handle to a multi-lane queue in shared memory. Cheap to clone.
#[derive(Clone)]
pub struct MultiLaneQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MultiLaneQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiLaneQueue")
            .field("shm", &self.inner.shm)
            .field("low_latency_lanes", &self.inner.low)
            .field("high_latency_lanes", &self.inner.high)
            .field("depth", &self.inner.depth)
            .finish()
    }
}

impl MultiLaneQueue {
    /// Bytes a queue of this shape occupies.
    pub fn memory_size(cfg: &QueueConfig) -> Option<usize> {
        let lanes = cfg.low_latency_lanes as usize + cfg.high_latency_lanes as usize;
        geometry(lanes, cfg.depth.max(2).checked_next_power_of_two()?).map(|g| g.total)
    }

    /// Heap pages of its segment that a queue of this shape takes (see
    /// [`Allocator::pages_for`]); `None` if its size overflows.
    pub fn heap_pages(cfg: &QueueConfig) -> Option<u64> {
        Self::memory_size(cfg).map(|bytes| Allocator::pages_for(bytes, QUEUE_ALIGN))
    }

    /// Allocates and initialises a queue in `segment` (through `alloc`, an
    /// allocator of that segment).
    pub fn create(
        segment: &Segment,
        alloc: &Allocator,
        cfg: QueueConfig,
    ) -> Result<Self, QueueError> {
        let lanes = cfg.low_latency_lanes as u64 + cfg.high_latency_lanes as u64;
        if lanes == 0 || lanes > MAX_LANES as u64 {
            return Err(QueueError::BadConfig(format!(
                "{lanes} lanes; a queue needs 1..={MAX_LANES} lanes in all"
            )));
        }
        if cfg.depth == 0 || cfg.depth > MAX_DEPTH {
            return Err(QueueError::BadConfig(format!(
                "depth {}; a lane holds 1..={MAX_DEPTH} entries",
                cfg.depth
            )));
        }
        if alloc.segment_id() != segment.id() {
            return Err(QueueError::BadConfig(
                "the allocator does not serve this segment".into(),
            ));
        }
        let depth = cfg.depth.max(2).next_power_of_two();
        let geo = geometry(lanes as usize, depth)
            .ok_or_else(|| QueueError::BadConfig("queue too large".into()))?;
        let mem = alloc.allocate_aligned(geo.total, QUEUE_ALIGN)?;
        let base = mem.as_ptr();
        // SAFETY: `mem` is a fresh allocation of `geo.total` bytes aligned to 128
        // that nobody else knows yet; every part is initialised before the pointer is
        // returned (two-phase init: size, then init in place).
        unsafe {
            std::ptr::write_bytes(base, 0, geo.total);
            let h = base as *mut QueueHeader;
            (*h).magic = QUEUE_MAGIC;
            (*h).version = QUEUE_VERSION;
            (*h).low = cfg.low_latency_lanes;
            (*h).high = cfg.high_latency_lanes;
            (*h).depth = depth;
            (*h).total_size = geo.total as u64;
        }
        let q = Inner {
            _segment: segment.clone(),
            shm: mem.shm(),
            base,
            low: cfg.low_latency_lanes as usize,
            high: cfg.high_latency_lanes as usize,
            depth,
            geo,
        };
        for l in 0..lanes as usize {
            q.lane(l).info.0.doorbell.store(l as u32, Ordering::Relaxed);
            for (i, c) in q.cells(l).iter().enumerate() {
                c.init(i as u64);
            }
        }
        Ok(MultiLaneQueue { inner: Arc::new(q) })
    }

    /// Opens the queue at `ptr` in `segment`, validating its header.
    pub fn attach(segment: &Segment, ptr: ShmPtr) -> Result<Self, QueueError> {
        let bad = |reason| QueueError::BadHeader { ptr, reason };
        if !segment.contains(ptr) {
            return Err(bad("the pointer is not inside the queue's segment"));
        }
        if !ptr.offset().is_multiple_of(QUEUE_ALIGN as u64) {
            return Err(bad("misaligned"));
        }
        let h = ptr.resolve::<QueueHeader>()?;
        // SAFETY: `resolve` checked bounds and alignment; QueueHeader is plain
        // integers, valid for any bytes.
        let h = unsafe { h.as_ptr().read() };
        if h.magic != QUEUE_MAGIC {
            return Err(bad("wrong magic"));
        }
        if h.version != QUEUE_VERSION {
            return Err(bad("wrong layout version"));
        }
        let lanes = h.low as u64 + h.high as u64;
        if lanes == 0 || lanes > MAX_LANES as u64 {
            return Err(bad("lane count out of range"));
        }
        if !h.depth.is_power_of_two() || h.depth < 2 || h.depth > MAX_DEPTH {
            return Err(bad("depth out of range"));
        }
        let geo = geometry(lanes as usize, h.depth).ok_or(bad("size overflow"))?;
        if geo.total as u64 != h.total_size {
            return Err(bad("size disagrees with shape"));
        }
        let mem = ptr.resolve_slice::<u8>(h.total_size)?;
        Ok(MultiLaneQueue {
            inner: Arc::new(Inner {
                _segment: segment.clone(),
                shm: ptr,
                base: mem.as_ptr(),
                low: h.low as usize,
                high: h.high as usize,
                depth: h.depth,
                geo,
            }),
        })
    }

    /// Where the queue lives (publish this for other processes).
    pub fn shm(&self) -> ShmPtr {
        self.inner.shm
    }

    /// Total number of lanes.
    pub fn num_lanes(&self) -> usize {
        self.inner.low + self.inner.high
    }

    /// The lanes of a priority group.
    pub fn lanes_of(&self, prio: Priority) -> std::ops::Range<usize> {
        match prio {
            Priority::LowLatency => 0..self.inner.low,
            Priority::HighLatency => self.inner.low..self.inner.low + self.inner.high,
        }
    }

    /// Capacity of each lane.
    pub fn depth(&self) -> u64 {
        self.inner.depth
    }

    /// The lane of group `prio` that `hint` maps to (`hint % lanes`); if the group
    /// has no lanes, the other group's.
    #[inline]
    pub fn lane_for(&self, prio: Priority, hint: u64) -> usize {
        let mut r = self.lanes_of(prio);
        if r.is_empty() {
            r = 0..self.num_lanes();
        }
        r.start + (hint % r.len() as u64) as usize
    }

    /// Entries waiting in `lane` (a monitoring figure; 0 for a missing lane).
    pub fn lane_len(&self, lane: usize) -> u64 {
        if lane >= self.num_lanes() {
            return 0;
        }
        self.inner.ring(lane).len()
    }

    /// Pushes `value` onto `lane` once; fails at once if the lane is full.
    #[inline]
    pub fn try_push(&self, lane: usize, value: ShmPtr) -> Result<(), PushError> {
        let q = &*self.inner;
        if lane >= self.num_lanes() {
            return Err(PushError::NoLane {
                lane,
                lanes: self.num_lanes(),
            });
        }
        q.ring(lane)
            .push(value.to_bits())
            .map_err(|_| PushError::Full {
                lane,
                depth: q.depth,
            })?;
        q.ring_doorbell(lane);
        Ok(())
    }

    /// Wakes the consumer of `lane` if it sleeps, as a push onto the lane
    /// would, without pushing: for a producer that handed the consumer work
    /// some other way, which the consumer's [`Consumer::sleep_unless`] check
    /// sees. Call it after publishing that work.
    pub fn wake_consumer(&self, lane: usize) {
        if lane < self.num_lanes() {
            self.inner.ring_doorbell(lane);
        }
    }

    /// Wakes the consumer that sleeps on doorbell `bell` ([`Consumer::bell`]),
    /// as [`wake_consumer`](Self::wake_consumer) does for a lane's consumer:
    /// for a consumer whose lanes move, its doorbell stays the same.
    pub fn ring_bell(&self, bell: usize) {
        // SeqCst fence: pairs with the fence in `doorbell::prepare_sleep`
        // (work published before this call is seen by the consumer's check,
        // or the consumer is seen asleep).
        crate::sync::fence(Ordering::SeqCst);
        self.inner.ring_bell_fenced(bell);
    }

    /// Fault injection for tests of the runtime's robustness: claims the next
    /// cell of `lane` as a producer does and never publishes it, as a producer
    /// killed between the two steps would. Returns the claimed position, or
    /// `None` if the lane is full. Never call this outside such a test.
    #[doc(hidden)]
    pub fn claim_without_publishing(&self, lane: usize) -> Option<u64> {
        if lane >= self.num_lanes() {
            return None;
        }
        let pos = &self.inner.lane(lane).pos.tail.0;
        let p = pos.load(Ordering::Relaxed);
        // Relaxed: as the claim in `Ring::push`; nothing is published.
        pos.compare_exchange(p, p.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed)
            .ok()
    }

    /// Fault injection for tests of the runtime's robustness: overwrites the
    /// `head` word that the consumer of `lane` publishes, as a scribbling client
    /// could. Never call this outside such a test.
    #[doc(hidden)]
    pub fn scribble_head(&self, lane: usize, value: u64) {
        if lane < self.num_lanes() {
            self.inner
                .lane(lane)
                .pos
                .head
                .0
                .store(value, Ordering::Relaxed);
        }
    }

    /// Pushes `value` onto `lane`, waiting up to `wait` (spinning, then yielding)
    /// while the lane is full.
    pub fn push_to_lane(
        &self,
        lane: usize,
        value: ShmPtr,
        wait: Option<Duration>,
    ) -> Result<(), PushError> {
        match self.try_push(lane, value) {
            Err(PushError::Full { .. }) if wait.is_some_and(|w| !w.is_zero()) => {}
            other => return other,
        }
        let deadline = Instant::now() + wait.unwrap_or_default();
        let mut spins = 0u32;
        loop {
            if spins < 100 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
            match self.try_push(lane, value) {
                Err(PushError::Full { .. }) if Instant::now() < deadline => continue,
                other => return other,
            }
        }
    }

    /// Pushes `value` onto the lane of group `prio` chosen by `hint`, waiting up to
    /// `wait` while it is full. Returns the lane used.
    #[inline]
    pub fn push(
        &self,
        prio: Priority,
        hint: u64,
        value: ShmPtr,
        wait: Option<Duration>,
    ) -> Result<usize, PushError> {
        let lane = self.lane_for(prio, hint);
        self.push_to_lane(lane, value, wait).map(|()| lane)
    }
}

impl Inner {
    #[inline]
    fn lane(&self, l: usize) -> &Lane {
        debug_assert!(l < self.low + self.high);
        // SAFETY: `l` is in range (checked by callers), so the lane lies inside the
        // queue's memory, aligned to 128 (the queue is 128-aligned and every part's
        // size is a multiple of 128).
        unsafe { &*(self.base.add(self.geo.lanes_at + l * size_of::<Lane>()) as *const Lane) }
    }

    #[inline]
    fn bell(&self, b: usize) -> &AtomicU32 {
        // SAFETY: `b < lanes` (callers check), inside the doorbell array.
        unsafe {
            &(*(self
                .base
                .add(self.geo.bells_at + b * size_of::<Padded<AtomicU32>>())
                as *const Padded<AtomicU32>))
                .0
        }
    }

    #[inline]
    fn cells(&self, l: usize) -> &[Cell] {
        let depth = self.depth as usize;
        // SAFETY: lane `l`'s `depth` cells lie inside the queue's memory (geometry),
        // 16-aligned; Cell is two atomics, valid for any bytes.
        unsafe {
            std::slice::from_raw_parts(
                self.base
                    .add(self.geo.cells_at + l * depth * size_of::<Cell>())
                    as *const Cell,
                depth,
            )
        }
    }

    #[inline]
    fn ring(&self, l: usize) -> Ring<'_> {
        Ring {
            pos: &self.lane(l).pos,
            cells: self.cells(l),
        }
    }

    #[inline]
    fn ring_doorbell(&self, lane: usize) {
        // SeqCst fence: pairs with the fence in `doorbell::prepare_sleep`; it
        // comes before the read of the lane's doorbell, which a consumer that
        // absorbs the lane stores before its next sleep (see
        // `Consumer::absorb`).
        crate::sync::fence(Ordering::SeqCst);
        let b = self.lane(lane).info.0.doorbell.load(Ordering::Relaxed) as usize;
        self.ring_bell_fenced(b);
    }

    /// Wakes the consumer sleeping on doorbell `b`, if any; the caller issued
    /// the SeqCst fence after publishing what the consumer must see.
    #[inline]
    fn ring_bell_fenced(&self, b: usize) {
        if b >= self.low + self.high {
            return;
        }
        let bell = self.bell(b);
        if doorbell::needs_wake_fenced(bell) {
            doorbell::futex_wake(bell);
        }
    }
}
