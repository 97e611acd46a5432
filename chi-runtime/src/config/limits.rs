//! The bounds of a configuration's values: what parsing accepts.
//!
//! Each bound keeps a value from asking the runtime for more than it can give
//! (segments, threads, lanes, stacks) or from making a typo costly; a value
//! past one is a [`ConfigError`](super::ConfigError) naming the key and the
//! bound.

use std::time::Duration;

/// Largest accepted shared-memory segment. (The smallest: [`Segment::min_size`](chi_sdk::shm::Segment::min_size)
/// for `client_data` and `runtime_data`, [`MainSegmentNeeds::min_size`](super::footprint::MainSegmentNeeds::min_size) for `main`.)
pub const MAX_SEGMENT_SIZE: u64 = 1 << 40;
/// Most worker threads of one kind.
pub const MAX_WORKERS: u32 = MAX_WORKER_THREADS;
/// Most worker threads of all kinds together. Each holds an allocator owner slot
/// of the main segment (there are [`MAX_OWNERS`](chi_sdk::shm::alloc::MAX_OWNERS)), and far more threads than
/// cores only adds switching.
pub const MAX_WORKER_THREADS: u32 = 256;
/// Worker threads per available CPU at most, checked at start
/// ([`Config::check_resources`](super::Config::check_resources)).
pub const WORKER_THREADS_PER_CPU: u32 = 64;
/// Most lanes per priority of the process queue.
pub const MAX_LANES: u32 = 1024;
/// Smallest lane depth.
pub const MIN_QUEUE_DEPTH: u32 = 2;
/// Largest lane depth.
pub const MAX_QUEUE_DEPTH: u32 = 1 << 24;
/// Smallest coroutine stack.
pub const MIN_STACK_SIZE: usize = 16 << 10;
/// Largest coroutine stack.
pub const MAX_STACK_SIZE: usize = 64 << 20;
/// Coroutine stacks are rounded up to a multiple of this.
pub const STACK_SIZE_GRANULE: usize = 4 << 10;
/// Most live coroutines per worker.
pub const MAX_LIVE_COROUTINES: u32 = 1 << 16;
/// Longest accepted busy-poll period.
pub const MAX_BUSY_POLL: Duration = Duration::from_secs(1);
/// Accepted `reaper.interval`s.
pub const REAPER_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(60));
/// Accepted `tasks.stop_drain`s.
pub const STOP_DRAIN_RANGE: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(3600));
/// Deepest accepted `tasks.max_depth` (a task graph that deep holds that many
/// coroutine stacks).
pub const MAX_TASK_DEPTH: u32 = 65_536;
/// Accepted `supervisor.stall_timeout`s.
pub const STALL_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(24 * 3600));
/// Pool ids a `compose` entry may not take: the null pool (0) and the admin pool (1).
pub const RESERVED_POOL_IDS: [u64; 2] = [0, 1];
/// Most containers a global `compose` pool may ask for (as many as a pool
/// over the cluster may have).
pub const MAX_COMPOSE_CONTAINERS: u32 = 1 << 16;
/// Accepted `cluster.heartbeat`s.
pub const HEARTBEAT_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(60));
/// Accepted `cluster.task_timeout`s.
pub const TASK_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(24 * 3600));
/// Accepted `cluster.peer_timeout`s (and at least twice the heartbeat).
pub const PEER_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(50), Duration::from_secs(3600));
