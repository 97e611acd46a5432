//! The container of a bdev pool: the code the runtime runs.
//!
//! `create` checks the parameters, makes the store (`storage`) and the block
//! map (`blocks`) and sets up [`META_QUEUE`] and [`IO_QUEUE`]; each handler
//! counts its outcome and leaves the work to `meta` (allocations and frees) or
//! `io` (writes and reads: the range and buffer checks, the chunked copy). The
//! crate doc says what is checked and how tasks are scheduled.

mod io;
mod meta;

use std::sync::atomic::{AtomicU64, Ordering};

use chi_sdk::abi::{MonitorMode, QueueId, RunCtx};
use chi_sdk::container::CreateCtx;
use chi_sdk::queue::Priority;
use chi_sdk::sync::{CoMutex, CoMutexGuard};
use chi_sdk::task::Failure;

use crate::blocks::BlockMap;
use crate::storage::Storage;
use crate::tasks::*;

/// The local queue of allocations, frees and stats.
pub const META_QUEUE: QueueId = QueueId(0);
/// The local queue of writes and reads.
pub const IO_QUEUE: QueueId = QueueId(1);
/// An I/O moves at most this many bytes between two yields.
pub const IO_CHUNK: usize = 256 * 1024;

/// The container's counters.
#[derive(Debug, Default)]
struct Counters {
    bytes_written: AtomicU64,
    bytes_read: AtomicU64,
    writes: AtomicU64,
    reads: AtomicU64,
    allocations: AtomicU64,
    frees: AtomicU64,
    failures: AtomicU64,
}

/// The container of a `chimaera_bdev` pool.
#[derive(Debug)]
pub struct BdevContainer {
    pool_name: String,
    storage: Storage,
    capacity: u64,
    block_size: u64,
    blocks: CoMutex<BlockMap>,
    counters: Counters,
}

fn fail(code: i32, message: String) -> Failure {
    Failure::new(code, message)
}

#[chi_sdk::chimod]
impl BdevContainer {
    /// kCreate: checks the parameters, makes the store, sets up the queues.
    fn create(ctx: &mut CreateCtx<'_>, params: CreateParams) -> Result<Self, String> {
        let pool = ctx.pool_name().to_owned();
        let blocks = params
            .validate()
            .map_err(|e| format!("bdev pool '{pool}': {e}"))?;
        ctx.create_local_queue(META_QUEUE, 1, Priority::LowLatency)?;
        ctx.create_local_queue(IO_QUEUE, params.io_lanes, Priority::LowLatency)?;
        let map = BlockMap::new(blocks).map_err(|e| format!("bdev pool '{pool}': {e}"))?;
        let storage = match &params.backend {
            Backend::Ram => Storage::ram(params.capacity),
            Backend::File { path, keep } => Storage::file(path.clone(), params.capacity, *keep),
        }
        .map_err(|e| format!("bdev pool '{pool}': {e}"))?;
        chi_sdk::tracing::info!(
            pool = %pool,
            backend = storage.kind(),
            capacity = params.capacity,
            block_size = params.block_size,
            "bdev container created"
        );
        Ok(BdevContainer {
            pool_name: pool,
            storage,
            capacity: params.capacity,
            block_size: params.block_size,
            blocks: CoMutex::new(map),
            counters: Counters::default(),
        })
    }

    /// kAllocateBlocks.
    fn allocate_blocks(
        &self,
        task: &mut AllocateBlocksTask,
        _ctx: &mut RunCtx,
    ) -> Result<(), Failure> {
        let r = self.do_allocate(task);
        self.counted(r, &self.counters.allocations)
    }

    /// kFreeBlocks.
    fn free_blocks(&self, task: &mut FreeBlocksTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        let r = self.do_free(task);
        self.counted(r, &self.counters.frees)
    }

    /// kWrite.
    fn write(&self, task: &mut WriteTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        let r = self.do_write(task, ctx);
        if r.is_ok() {
            self.counters
                .bytes_written
                .fetch_add(task.written, Ordering::Relaxed);
        }
        self.counted(r, &self.counters.writes)
    }

    /// kRead.
    fn read(&self, task: &mut ReadTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        let r = self.do_read(task, ctx);
        if r.is_ok() {
            self.counters
                .bytes_read
                .fetch_add(task.read, Ordering::Relaxed);
        }
        self.counted(r, &self.counters.reads)
    }

    /// kGetStats.
    fn get_stats(&self, task: &mut GetStatsTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        let (total, used) = {
            let map = self.lock_blocks();
            (map.total(), map.used())
        };
        let c = &self.counters;
        task.capacity = self.capacity;
        task.block_size = self.block_size;
        task.total_blocks = total;
        task.used_blocks = used;
        task.free_blocks = total - used;
        task.bytes_written = c.bytes_written.load(Ordering::Relaxed);
        task.bytes_read = c.bytes_read.load(Ordering::Relaxed);
        task.writes = c.writes.load(Ordering::Relaxed);
        task.reads = c.reads.load(Ordering::Relaxed);
        task.allocations = c.allocations.load(Ordering::Relaxed);
        task.frees = c.frees.load(Ordering::Relaxed);
        task.failures = c.failures.load(Ordering::Relaxed);
        task.backend = match self.storage {
            Storage::Ram(_) => 0,
            Storage::File { .. } => 1,
        };
        Ok(())
    }

    /// Allocations run on the metadata lane.
    fn monitor_allocate_blocks(
        &self,
        mode: MonitorMode,
        _task: &AllocateBlocksTask,
        ctx: &mut RunCtx,
    ) {
        meta_monitor(mode, ctx);
    }

    /// Frees run on the metadata lane.
    fn monitor_free_blocks(&self, mode: MonitorMode, _task: &FreeBlocksTask, ctx: &mut RunCtx) {
        meta_monitor(mode, ctx);
    }

    /// Stats run on the metadata lane.
    fn monitor_get_stats(&self, mode: MonitorMode, _task: &GetStatsTask, ctx: &mut RunCtx) {
        meta_monitor(mode, ctx);
    }

    /// Writes run on the I/O lane of their first block.
    fn monitor_write(&self, mode: MonitorMode, task: &WriteTask, ctx: &mut RunCtx) {
        self.io_monitor(mode, task.offset, task.data.len(), ctx);
    }

    /// Reads run on the I/O lane of their first block.
    fn monitor_read(&self, mode: MonitorMode, task: &ReadTask, ctx: &mut RunCtx) {
        self.io_monitor(mode, task.offset, task.data.len(), ctx);
    }
}

/// Routes a metadata task to the single lane of [`META_QUEUE`].
fn meta_monitor(mode: MonitorMode, ctx: &mut RunCtx) {
    match mode {
        MonitorMode::LocalSchedule => {
            ctx.route_to(META_QUEUE, 0);
        }
        MonitorMode::EstLoad => ctx.set_est_load_us(1.0),
        MonitorMode::GlobalSchedule | MonitorMode::Cleanup => {}
    }
}

impl BdevContainer {
    /// The block map, under its lock (a task that waits for it suspends its
    /// coroutine, not the worker). The bitmap is updated only after every
    /// check passed, so a handler that panics while holding it cannot leave
    /// it half changed.
    fn lock_blocks(&self) -> CoMutexGuard<'_, BlockMap> {
        self.blocks.lock()
    }

    /// Counts a call's outcome: `ok` on success, `failures` otherwise.
    fn counted(&self, r: Result<(), Failure>, ok: &AtomicU64) -> Result<(), Failure> {
        match &r {
            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.failures.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    fn io_monitor(&self, mode: MonitorMode, offset: u64, len: u64, ctx: &mut RunCtx) {
        match mode {
            MonitorMode::LocalSchedule => {
                // A garbage offset still routes somewhere; the handler refuses it.
                ctx.route_by_hash(IO_QUEUE, offset / self.block_size);
            }
            // About 2 GB/s plus a fixed cost.
            MonitorMode::EstLoad => ctx.set_est_load_us(0.5 + len as f64 / 2000.0),
            MonitorMode::GlobalSchedule | MonitorMode::Cleanup => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_ids_follow_the_yaml() {
        assert_eq!(CHIMOD_LIB_NAME, "chimaera_bdev");
        assert_eq!(method::ALLOCATE_BLOCKS, 10);
        assert_eq!(method::FREE_BLOCKS, 11);
        assert_eq!(method::WRITE, 12);
        assert_eq!(method::READ, 13);
        assert_eq!(method::GET_STATS, 14);
    }
}
