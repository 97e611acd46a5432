//! What a configuration asks of shared memory and of the process, computed from
//! its values alone, so that the checks at parse time and at start agree with
//! what the runtime really does:
//!
//! * **The main segment** holds its header and allocator metadata, the process
//!   queue (every lane's cells), the runtime block, and the tasks clients
//!   allocate. [`MainSegmentNeeds`] adds these up in the allocator's own units
//!   (64 KiB heap pages: the queue takes a run of pages, the runtime block the
//!   first page of its size class), plus [`TASK_ROOM_PAGES`] so that tasks of a
//!   few size classes fit. A segment of [`MainSegmentNeeds::min_size`] starts and
//!   runs tasks (`tests/config_errors.rs` runs pools and tasks in one). Without
//!   the room for tasks the runtime starts (448 KiB with the default queue) but
//!   no client can allocate a task; without the runtime block's page it fails
//!   at start.
//! * **Allocator owner slots**: every handle on the main segment's allocator takes
//!   one of its [`MAX_OWNERS`] slots — the runtime, each worker thread, each
//!   module library, each registered client. [`max_clients_for`] is what is left
//!   for clients.
//! * **Coroutine stacks**: each live coroutine owns a stack mapping plus a guard
//!   page, two entries of the process's memory map ([`CoroutineNeeds`]).

use chi_sdk::proto::RuntimeBlock;
use chi_sdk::queue::{MultiLaneQueue, QueueConfig as LaneShape};
use chi_sdk::shm::alloc::{MAX_OWNERS, PAGE_SIZE};
use chi_sdk::shm::{Allocator, Segment};

/// Heap pages of the main segment kept for tasks beyond the queue and the runtime
/// block: 1 MiB. Each size class of task in use takes a page of its own: with no
/// room at all the runtime starts but no client can submit a task, and creating
/// a pool, echoing through it and destroying it (strings and three task types)
/// already takes 4 pages. 16 leave room for a few modules' task types.
pub const TASK_ROOM_PAGES: u64 = 16;

/// Allocator owner slots of the main segment kept for module libraries: each
/// library that allocates in the runtime holds one (it has its own copy of the
/// allocator handle).
pub const OWNER_SLOTS_FOR_MODULES: u32 = 32;

/// Memory-map entries of one coroutine stack: the stack and its guard page.
pub const MAPPINGS_PER_STACK: u64 = 2;

/// What the main segment must hold for a process queue of `lanes` × `depth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MainSegmentNeeds {
    /// Header and allocator metadata, in bytes.
    pub metadata: u64,
    /// Heap bytes of the process queue (whole pages).
    pub queue: u64,
    /// Heap bytes of the runtime block (a page of its size class).
    pub runtime_block: u64,
    /// Heap bytes kept for tasks ([`TASK_ROOM_PAGES`]).
    pub tasks: u64,
    /// The smallest segment size that holds all of it.
    pub min_size: u64,
}

impl MainSegmentNeeds {
    /// The needs of a main segment whose process queue has `low` + `high` lanes of
    /// `depth` tasks; `None` if the queue's size overflows.
    pub fn of(low: u32, high: u32, depth: u32) -> Option<MainSegmentNeeds> {
        let queue_pages = MultiLaneQueue::heap_pages(&LaneShape {
            low_latency_lanes: low,
            high_latency_lanes: high,
            depth: u64::from(depth),
        })?;
        let block_pages =
            Allocator::pages_for(size_of::<RuntimeBlock>(), align_of::<RuntimeBlock>());
        let pages = queue_pages
            .checked_add(block_pages)?
            .checked_add(TASK_ROOM_PAGES)?;
        let min_size = Segment::size_for_heap_pages(pages);
        Some(MainSegmentNeeds {
            metadata: min_size.checked_sub(pages.checked_mul(PAGE_SIZE)?)?,
            queue: queue_pages * PAGE_SIZE,
            runtime_block: block_pages * PAGE_SIZE,
            tasks: TASK_ROOM_PAGES * PAGE_SIZE,
            min_size: min_size.checked_next_multiple_of(PAGE_SIZE)?,
        })
    }
}

/// The most clients that can register when `worker_threads` workers run: the
/// main segment's owner slots less the runtime's own, one per worker and
/// [`OWNER_SLOTS_FOR_MODULES`].
pub fn max_clients_for(worker_threads: u32) -> u32 {
    let taken = worker_threads.saturating_add(1 + OWNER_SLOTS_FOR_MODULES);
    (MAX_OWNERS as u32).saturating_sub(taken)
}

/// What the coroutine stacks take when every task-running worker has its
/// maximum of live coroutines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoroutineNeeds {
    /// Stacks at most.
    pub stacks: u64,
    /// Address space of the stacks, guard pages included, in bytes.
    pub bytes: u64,
    /// Memory-map entries.
    pub mappings: u64,
}

impl CoroutineNeeds {
    /// `workers` task-running workers with `max_live` coroutines of `stack_size`.
    pub fn of(workers: u32, max_live: u32, stack_size: usize) -> CoroutineNeeds {
        let page = rustix::param::page_size() as u64;
        let stacks = u64::from(workers) * u64::from(max_live);
        let each = (stack_size as u64).next_multiple_of(page) + page;
        CoroutineNeeds {
            stacks,
            bytes: stacks.saturating_mul(each),
            mappings: stacks.saturating_mul(MAPPINGS_PER_STACK),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_needs_add_up() {
        let n = MainSegmentNeeds::of(2, 1, 1024).unwrap();
        assert_eq!(n.queue, PAGE_SIZE);
        assert_eq!(n.runtime_block, PAGE_SIZE);
        assert_eq!(n.tasks, TASK_ROOM_PAGES * PAGE_SIZE);
        assert_eq!(n.metadata + n.queue + n.runtime_block + n.tasks, n.min_size);
        assert!(Segment::heap_pages(n.min_size) >= 2 + TASK_ROOM_PAGES);
        // A deep queue takes pages of its own: 1024 lanes of 2^16 16-byte cells.
        let big = MainSegmentNeeds::of(1024, 0, 1 << 16).unwrap();
        assert!(big.queue >= 1024 << 20, "{big:?}");
        assert!(big.min_size > big.queue + big.metadata, "{big:?}");
    }

    #[test]
    fn owner_slots_and_stacks() {
        assert_eq!(
            max_clients_for(3),
            MAX_OWNERS as u32 - 4 - OWNER_SLOTS_FOR_MODULES
        );
        assert_eq!(max_clients_for(u32::MAX - 5), 0);
        let page = rustix::param::page_size() as u64;
        let c = CoroutineNeeds::of(3, 256, 64 << 10);
        assert_eq!(c.stacks, 768);
        assert_eq!(c.mappings, 1536);
        assert_eq!(c.bytes, 768 * ((64 << 10) + page));
    }
}
