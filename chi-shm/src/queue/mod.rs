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
//!   ([`ring`]); their producer and consumer positions sit on separate 128-byte
//!   line pairs. The first `low_latency` lanes form the [`Priority::LowLatency`]
//!   group, the rest the [`Priority::HighLatency`] group.
//! * **Producers** (clients, or the runtime itself) push with [`MultiLaneQueue::push`];
//!   a full lane is an error ([`PushError::Full`]) after an optional bounded wait,
//!   never a silent drop.
//! * **Consumers** claim lanes ([`MultiLaneQueue::consumer`]): each lane has at
//!   most one [`Consumer`] at a time (its claim word in shared memory holds the
//!   consumer's pid, and a dead consumer's claim can be taken over). A consumer
//!   pops its lanes and, when they are all empty, may sleep on its **doorbell**, a
//!   futex word woken by the next push ([`doorbell`] explains why no wake-up is
//!   lost and why a push costs no system call while the consumer is awake).
//! * **Untrusted.** A queue is found by a [`ShmPtr`] that may come from another
//!   process: [`MultiLaneQueue::attach`] validates every header field against the
//!   segment before use, and doorbell indices read from shared memory are
//!   bounds-checked on each use.

pub(crate) mod doorbell;
pub(crate) mod ring;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shm::{AllocError, Allocator, Segment, ShmError, ShmPtr};
use crate::sync::{AtomicU32, AtomicU64, Ordering, Padded, native};
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
    /// Short tasks that must start quickly; served by low-latency workers.
    LowLatency = 0,
    /// Long-running tasks; served by high-latency workers.
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

    /// Claims `lanes` for a new consumer, which will sleep on the doorbell of the
    /// first of them. Fails if a lane is out of range or held by a live consumer
    /// (a dead consumer's claim is taken over).
    pub fn consumer(&self, lanes: &[usize]) -> Result<Consumer, QueueError> {
        static CLAIMS: native::AtomicU64 = native::AtomicU64::new(1);
        let n = self.num_lanes();
        if let Some(&lane) = lanes.iter().find(|&&l| l >= n) {
            return Err(QueueError::NoLane { lane, lanes: n });
        }
        if lanes.is_empty() {
            return Err(QueueError::BadConfig(
                "a consumer needs at least one lane".into(),
            ));
        }
        let pid = std::process::id() as u64;
        let token = (pid << 32) | (CLAIMS.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff).max(1);
        let mut claimed = Vec::with_capacity(lanes.len());
        for &lane in lanes {
            let word = &self.inner.lane(lane).info.0.consumer;
            let mut cur = word.load(Ordering::Acquire);
            loop {
                if cur != 0 && crate::proc::pid_alive((cur >> 32) as u32) {
                    for &l in &claimed {
                        self.inner
                            .lane(l)
                            .info
                            .0
                            .consumer
                            .store(0, Ordering::Release);
                    }
                    return Err(QueueError::LaneBusy {
                        lane,
                        pid: (cur >> 32) as u32,
                    });
                }
                // Acquire: pairs with the Release store of 0 in `Consumer::drop`, so
                // the previous consumer's last pops are visible (its `head`).
                match word.compare_exchange(cur, token, Ordering::Acquire, Ordering::Acquire) {
                    Ok(_) => break,
                    Err(actual) => cur = actual,
                }
            }
            claimed.push(lane);
        }
        Ok(self.claimed_consumer(lanes, token))
    }

    /// The consumer of `lanes`, claimed with `token`: its doorbell is the first
    /// lane's, and its positions start where the previous consumer of each lane
    /// left them (published in the lane's `head`); from here on they are kept in
    /// this process, and the shared word is only a published copy.
    fn claimed_consumer(&self, lanes: &[usize], token: u64) -> Consumer {
        let bell = lanes[0];
        for &lane in lanes {
            self.inner
                .lane(lane)
                .info
                .0
                .doorbell
                .store(bell as u32, Ordering::Relaxed);
        }
        let heads = lanes
            .iter()
            // Acquire: pairs with the claim's hand-over (the previous consumer's
            // release of the lane, or the caller's hand-shake for a take-over).
            .map(|&l| self.inner.lane(l).pos.head.0.load(Ordering::Acquire))
            .collect();
        Consumer {
            queue: self.clone(),
            lanes: lanes.to_vec(),
            heads,
            bell,
            next: 0,
            token,
        }
    }
}

impl MultiLaneQueue {
    /// Takes `lanes` over from their current consumer, which is alive but will
    /// never pop again (a worker wedged inside a task): the new consumer starts
    /// at the positions the old one published.
    ///
    /// # Safety
    /// The previous consumer of these lanes must not pop, sleep on, or skip
    /// cells of them ever again (the runtime guarantees it with a handshake on
    /// the wedged worker's phase word before it calls this); two consumers of
    /// one lane break the queue.
    pub unsafe fn take_over(&self, lanes: &[usize]) -> Result<Consumer, QueueError> {
        static TAKEOVERS: native::AtomicU64 = native::AtomicU64::new(1);
        let n = self.num_lanes();
        if let Some(&lane) = lanes.iter().find(|&&l| l >= n) {
            return Err(QueueError::NoLane { lane, lanes: n });
        }
        if lanes.is_empty() {
            return Err(QueueError::BadConfig(
                "a consumer needs at least one lane".into(),
            ));
        }
        let pid = std::process::id() as u64;
        // Distinct from the tokens of `consumer` (their low word counts up from 1).
        let token = (pid << 32)
            | (0x8000_0000 | TAKEOVERS.fetch_add(1, Ordering::Relaxed) as u32 & 0x7fff_ffff) as u64;
        for &lane in lanes {
            // AcqRel: Acquire pairs with the Release by which the old consumer's
            // last pops were handed over (the caller's handshake); Release
            // publishes the new claim.
            self.inner
                .lane(lane)
                .info
                .0
                .consumer
                .swap(token, Ordering::AcqRel);
        }
        Ok(self.claimed_consumer(lanes, token))
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
        let b = self.lane(lane).info.0.doorbell.load(Ordering::Relaxed) as usize;
        if b >= self.low + self.high {
            return;
        }
        let bell = self.bell(b);
        if doorbell::needs_wake(bell) {
            doorbell::futex_wake(bell);
        }
    }
}

/// The single consumer of a set of lanes. Not `Clone`: one per lane at a time.
pub struct Consumer {
    queue: MultiLaneQueue,
    lanes: Vec<usize>,
    /// This consumer's position in each of its lanes (its own copy: a client
    /// that scribbles on the shared `head` word cannot move it).
    heads: Vec<u64>,
    bell: usize,
    next: usize,
    token: u64,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("lanes", &self.lanes)
            .field("doorbell", &self.bell)
            .finish()
    }
}

impl Consumer {
    /// The lanes this consumer holds.
    pub fn lanes(&self) -> &[usize] {
        &self.lanes
    }

    /// The queue.
    pub fn queue(&self) -> &MultiLaneQueue {
        &self.queue
    }

    /// Pops from one of this consumer's lanes (`i` indexes [`lanes`](Self::lanes)).
    #[inline]
    pub fn pop_lane(&mut self, i: usize) -> Option<ShmPtr> {
        let lane = *self.lanes.get(i)?;
        let head = &mut self.heads[i];
        self.queue
            .inner
            .ring(lane)
            .pop_from(head)
            .map(ShmPtr::from_bits)
    }

    /// Entries claimed by producers and not yet popped in lane `i` (an index
    /// into [`lanes`](Self::lanes)), counted from this consumer's own position.
    pub fn pending(&self, i: usize) -> u64 {
        let Some(&lane) = self.lanes.get(i) else {
            return 0;
        };
        let tail = self
            .queue
            .inner
            .lane(lane)
            .pos
            .tail
            .0
            .load(Ordering::Relaxed);
        tail.wrapping_sub(self.heads[i]).min(self.queue.depth())
    }

    /// If lane `i` is held up by a cell a producer claimed and has not published,
    /// the position of that cell (see [`skip_stalled`](Self::skip_stalled)).
    pub fn stalled_at(&self, i: usize) -> Option<u64> {
        let lane = *self.lanes.get(i)?;
        self.queue.inner.ring(lane).stalled_at(self.heads[i])
    }

    /// Moves past the claimed but unpublished cell at position `pos` of lane `i`
    /// (a producer that died between its claim and its publication). Returns
    /// whether it did; `false` if the lane moved or the cell was published
    /// meanwhile. The value of a producer that publishes into the skipped cell
    /// later is lost: call this only for a cell whose producer is believed dead.
    pub fn skip_stalled(&mut self, i: usize, pos: u64) -> bool {
        let Some(&lane) = self.lanes.get(i) else {
            return false;
        };
        if self.heads[i] != pos {
            return false;
        }
        let head = &mut self.heads[i];
        self.queue.inner.ring(lane).skip(head)
    }

    /// Pops from the next non-empty lane, round robin. Returns the value and its lane.
    #[inline]
    pub fn pop(&mut self) -> Option<(ShmPtr, usize)> {
        let n = self.lanes.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if let Some(v) = self.pop_lane(i) {
                self.next = (i + 1) % n;
                return Some((v, self.lanes[i]));
            }
        }
        None
    }

    /// Sleeps until a push onto one of this consumer's lanes, or `timeout`. Returns
    /// at once if a lane is not empty. Returns whether it actually slept.
    pub fn sleep(&mut self, timeout: Option<Duration>) -> bool {
        let q = &*self.queue.inner;
        let bell = q.bell(self.bell);
        doorbell::prepare_sleep(bell);
        if self
            .lanes
            .iter()
            .zip(&self.heads)
            .any(|(&l, &h)| q.ring(l).has_claimed_from(h))
        {
            doorbell::cancel_sleep(bell);
            return false;
        }
        doorbell::futex_wait(bell, timeout);
        doorbell::cancel_sleep(bell);
        true
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        for &lane in &self.lanes {
            let word = &self.queue.inner.lane(lane).info.0.consumer;
            // Release: pairs with the Acquire CAS of the next consumer's claim.
            let _ = word.compare_exchange(self.token, 0, Ordering::Release, Ordering::Relaxed);
        }
    }
}
