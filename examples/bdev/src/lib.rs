//! `bdev`: a block device as a module. A pool's container owns a store of
//! `capacity` bytes (RAM, or a file) cut into blocks of `block_size` bytes, and
//! a block allocator; clients allocate blocks, write and read them through
//! buffers in the client-data segment, and free them.
//!
//! Built as `libchimaera_bdev_runtime.so` (a `cdylib`) for the runtime to load
//! from its module path, and as an `rlib` for client programs ([`BdevClient`]).
//!
//! # Methods (see `chimaera_mod.yaml`)
//!
//! * `kAllocateBlocks` (10): [`AllocateBlocksTask`]: `blocks` blocks, or enough
//!   blocks for `bytes` bytes (exactly one of the two is non-zero), anywhere or
//!   (`contiguous = 1`) as one run. Answers their byte offsets, ascending within
//!   a run, and the block size.
//! * `kFreeBlocks` (11): [`FreeBlocksTask`]: frees the blocks at `offsets`; all
//!   of them, or none if one is misaligned, out of range, not allocated (a
//!   double free) or named twice.
//! * `kWrite` (12): [`WriteTask`]: writes `len` bytes of the client-data buffer
//!   `data` at byte `offset` of the device.
//! * `kRead` (13): [`ReadTask`]: reads `len` bytes at `offset` into the
//!   client-data buffer `data`.
//! * `kGetStats` (14): [`GetStatsTask`]: capacity, blocks used and free, bytes
//!   and operations counted since the pool was created.
//!
//! Failures carry a [`bdev_code`] and a message saying what was wrong.
//!
//! # What is checked (everything a client sends is untrusted)
//!
//! * I/O: `offset + len` must not overflow nor pass the capacity, and every
//!   block the range touches must be allocated (an I/O on a free block is a
//!   use-after-free in the client; it fails with [`bdev_code::NOT_ALLOCATED`]).
//! * Buffers: `data` must be the start of a live allocation of the client-data
//!   segment ([`Client::allocate_buffer`](chi_sdk::client::Client::allocate_buffer))
//!   of at least `len` bytes. A pointer into another segment (the main one,
//!   where tasks and queues live), into allocator metadata, into the middle of a
//!   block, or past a buffer's end is refused before any byte moves, so a bad
//!   pointer can neither corrupt the runtime nor read its memory.
//!   A buffer is the runtime's from submission to completion: a client must
//!   not touch it meanwhile.
//! * Lists: the offsets of a free are checked one by one before anything is
//!   freed.
//!
//! # Scheduling
//!
//! The container has two local queues, both low-latency: [`META_QUEUE`] (one
//! lane: allocations, frees and stats run one at a time, in order) and
//! [`IO_QUEUE`] (`io_lanes` lanes). The monitors route each Write and Read by
//! the index of its first block, so the I/Os that start on one block run on one
//! lane, in the order they were submitted; consecutive blocks spread over the
//! lanes. An I/O larger than [`IO_CHUNK`] is copied in chunks with a
//! `yield_now` between them, so a long transfer does not hold a worker; two
//! such transfers on the same lane may then interleave chunk by chunk.
//!
//! # Concurrency
//!
//! Handlers get `&self` on several workers at once. The allocation bitmap is
//! under a `Mutex` (held only for the bitmap update or check, never across a
//! yield); the RAM store is under a `RwLock` (reads share it), the file store
//! needs no lock (`pread` / `pwrite`); the counters are atomics.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chi_sdk::abi::{MonitorMode, QueueId, RunCtx};
use chi_sdk::container::CreateCtx;
use chi_sdk::queue::Priority;
use chi_sdk::shm::{FullPtr, ShmPtr, ShmVec};
use chi_sdk::task::{Failure, code};

mod blocks;
mod client;
mod storage;

use blocks::{BlockError, BlockMap};
pub use client::{BdevClient, BdevStats, PendingRead, PendingWrite};
use storage::Storage;

/// The result codes of this module's failures (from
/// [`code::MODULE_BASE`](chi_sdk::task::code::MODULE_BASE)); the runtime's own
/// codes ([`chi_sdk::task::code`]) may also occur.
pub mod bdev_code {
    use chi_sdk::task::code::MODULE_BASE;

    /// Not enough free blocks (or no free run long enough).
    pub const NO_SPACE: i32 = MODULE_BASE + 1;
    /// An offset or range outside the device.
    pub const OUT_OF_RANGE: i32 = MODULE_BASE + 2;
    /// A block that is not allocated: a double free, or I/O on a free block.
    pub const NOT_ALLOCATED: i32 = MODULE_BASE + 3;
    /// The client-data buffer of an I/O is not usable.
    pub const BAD_BUFFER: i32 = MODULE_BASE + 4;
    /// The backend failed (an error of the backing file).
    pub const IO_ERROR: i32 = MODULE_BASE + 5;
    /// An argument that makes no sense (a count of zero, a misaligned offset,
    /// an unknown flag).
    pub const BAD_ARGUMENT: i32 = MODULE_BASE + 6;
}

/// The local queue of allocations, frees and stats.
pub const META_QUEUE: QueueId = QueueId(0);
/// The local queue of writes and reads.
pub const IO_QUEUE: QueueId = QueueId(1);
/// An I/O moves at most this many bytes between two yields.
pub const IO_CHUNK: usize = 256 * 1024;

/// The default block size (4 KiB).
pub const DEFAULT_BLOCK_SIZE: u64 = 4096;
/// The default capacity (64 MiB).
pub const DEFAULT_CAPACITY: u64 = 64 << 20;
/// Smallest block size.
pub const MIN_BLOCK_SIZE: u64 = 512;
/// Largest block size.
pub const MAX_BLOCK_SIZE: u64 = 1 << 20;
/// Most blocks a device may have (1 TiB of 4 KiB blocks; the bitmap is then
/// 32 MiB).
pub const MAX_BLOCKS: u64 = 1 << 28;
/// Most lanes of [`IO_QUEUE`].
pub const MAX_IO_LANES: u32 = 64;

/// Where a device keeps its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Memory of the container (`"ram"`).
    #[default]
    Ram,
    /// A file (`{"file": {"path": "...", "keep": false}}`), created or truncated
    /// to the capacity when the pool is created.
    File {
        /// The file's path, as the runtime sees it.
        path: PathBuf,
        /// Keep the file when the pool is destroyed (default: remove it).
        #[serde(default)]
        keep: bool,
    },
}

/// The creation parameters of a bdev pool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CreateParams {
    /// The backend.
    pub backend: Backend,
    /// Bytes of the device: a non-zero multiple of `block_size`.
    pub capacity: u64,
    /// Bytes of a block: a power of two from [`MIN_BLOCK_SIZE`] to
    /// [`MAX_BLOCK_SIZE`] (default 4 KiB).
    pub block_size: u64,
    /// Lanes of [`IO_QUEUE`] (1 to [`MAX_IO_LANES`]).
    pub io_lanes: u32,
}

impl Default for CreateParams {
    fn default() -> Self {
        CreateParams {
            backend: Backend::Ram,
            capacity: DEFAULT_CAPACITY,
            block_size: DEFAULT_BLOCK_SIZE,
            io_lanes: 4,
        }
    }
}

impl CreateParams {
    /// A RAM device of `capacity` bytes in 4 KiB blocks.
    pub fn ram(capacity: u64) -> CreateParams {
        CreateParams {
            capacity,
            ..CreateParams::default()
        }
    }

    /// A device of `capacity` bytes in 4 KiB blocks backed by the file at
    /// `path`, removed when the pool is destroyed.
    pub fn file(path: impl Into<PathBuf>, capacity: u64) -> CreateParams {
        CreateParams {
            backend: Backend::File {
                path: path.into(),
                keep: false,
            },
            capacity,
            ..CreateParams::default()
        }
    }

    /// Checks the parameters; returns the number of blocks.
    fn validate(&self) -> Result<u64, String> {
        let bs = self.block_size;
        if !bs.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) {
            return Err(format!(
                "block_size {bs} is not a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}"
            ));
        }
        if self.capacity == 0 || !self.capacity.is_multiple_of(bs) {
            return Err(format!(
                "capacity {} is not a non-zero multiple of the block size {bs}",
                self.capacity
            ));
        }
        let blocks = self.capacity / bs;
        if blocks > MAX_BLOCKS {
            return Err(format!(
                "capacity {} makes {blocks} blocks of {bs} bytes; at most {MAX_BLOCKS} blocks",
                self.capacity
            ));
        }
        if !(1..=MAX_IO_LANES).contains(&self.io_lanes) {
            return Err(format!(
                "io_lanes {} is not in 1..={MAX_IO_LANES}",
                self.io_lanes
            ));
        }
        Ok(blocks)
    }
}

/// Allocates blocks (`kAllocateBlocks`).
#[chi_sdk::task(method = 10)]
#[derive(Debug)]
pub struct AllocateBlocksTask {
    /// Blocks wanted (or 0 to give `bytes`).
    pub blocks: u64,
    /// Bytes wanted, rounded up to whole blocks (or 0 to give `blocks`).
    pub bytes: u64,
    /// 1: one run of consecutive blocks; 0: any blocks.
    pub contiguous: u64,
    /// The byte offset of each block allocated.
    #[output]
    pub offsets: ShmVec<u64>,
    /// The device's block size.
    #[output]
    pub block_size: u64,
}

/// Frees blocks (`kFreeBlocks`).
#[chi_sdk::task(method = 11)]
#[derive(Debug)]
pub struct FreeBlocksTask {
    /// Byte offsets of the blocks (as `AllocateBlocks` answered them).
    pub offsets: ShmVec<u64>,
    /// Blocks freed.
    #[output]
    pub freed: u64,
}

/// Writes a client-data buffer to the device (`kWrite`).
#[chi_sdk::task(method = 12)]
#[derive(Debug)]
pub struct WriteTask {
    /// Byte offset on the device.
    pub offset: u64,
    /// The buffer: the start of a client-data allocation of at least `len` bytes.
    pub data: ShmPtr,
    /// Bytes to write.
    pub len: u64,
    /// Bytes written.
    #[output]
    pub written: u64,
}

/// Reads from the device into a client-data buffer (`kRead`).
#[chi_sdk::task(method = 13)]
#[derive(Debug)]
pub struct ReadTask {
    /// Byte offset on the device.
    pub offset: u64,
    /// The buffer: the start of a client-data allocation of at least `len` bytes.
    pub data: ShmPtr,
    /// Bytes to read.
    pub len: u64,
    /// Bytes read.
    #[output]
    pub read: u64,
}

/// The device's figures (`kGetStats`).
#[chi_sdk::task(method = 14)]
#[derive(Debug)]
pub struct GetStatsTask {
    /// Bytes of the device.
    #[output]
    pub capacity: u64,
    /// Bytes of a block.
    #[output]
    pub block_size: u64,
    /// Blocks of the device.
    #[output]
    pub total_blocks: u64,
    /// Blocks allocated.
    #[output]
    pub used_blocks: u64,
    /// Blocks free.
    #[output]
    pub free_blocks: u64,
    /// Bytes written by successful writes.
    #[output]
    pub bytes_written: u64,
    /// Bytes read by successful reads.
    #[output]
    pub bytes_read: u64,
    /// Successful writes.
    #[output]
    pub writes: u64,
    /// Successful reads.
    #[output]
    pub reads: u64,
    /// Successful AllocateBlocks calls.
    #[output]
    pub allocations: u64,
    /// Successful FreeBlocks calls.
    #[output]
    pub frees: u64,
    /// Calls of any method that failed.
    #[output]
    pub failures: u64,
    /// 0: RAM, 1: file.
    #[output]
    pub backend: u64,
}

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
    blocks: Mutex<BlockMap>,
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
            blocks: Mutex::new(map),
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
        self.io_monitor(mode, task.offset, task.len, ctx);
    }

    /// Reads run on the I/O lane of their first block.
    fn monitor_read(&self, mode: MonitorMode, task: &ReadTask, ctx: &mut RunCtx) {
        self.io_monitor(mode, task.offset, task.len, ctx);
    }
}

/// Routes a metadata task to the single lane of [`META_QUEUE`].
fn meta_monitor(mode: MonitorMode, ctx: &mut RunCtx) {
    match mode {
        MonitorMode::LocalSchedule => {
            if let Ok(lane) = ctx.lane(META_QUEUE, 0) {
                ctx.route(lane);
            }
        }
        MonitorMode::EstLoad => ctx.set_est_load_us(1.0),
        MonitorMode::GlobalSchedule | MonitorMode::Cleanup => {}
    }
}

impl BdevContainer {
    fn lock_blocks(&self) -> std::sync::MutexGuard<'_, BlockMap> {
        // The bitmap is updated only after every check passed, so a panic
        // cannot leave it half changed: a poisoned lock is still consistent.
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
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
                if let Ok(lane) = ctx.lane_by_hash(IO_QUEUE, offset / self.block_size) {
                    ctx.route(lane);
                }
            }
            // About 2 GB/s plus a fixed cost.
            MonitorMode::EstLoad => ctx.set_est_load_us(0.5 + len as f64 / 2000.0),
            MonitorMode::GlobalSchedule | MonitorMode::Cleanup => {}
        }
    }

    /// The failure of a bitmap operation, in byte offsets.
    fn block_failure(&self, e: BlockError) -> Failure {
        let bs = self.block_size;
        match e {
            BlockError::NoSpace {
                wanted,
                free,
                contiguous,
            } => fail(
                bdev_code::NO_SPACE,
                format!(
                    "bdev pool '{}': no room for {wanted} {}blocks of {bs} bytes ({free} of {} \
                     blocks free)",
                    self.pool_name,
                    if contiguous { "contiguous " } else { "" },
                    self.capacity / bs
                ),
            ),
            BlockError::OutOfRange { block } => self.out_of_range_block(block),
            BlockError::NotAllocated { block } => fail(
                bdev_code::NOT_ALLOCATED,
                format!(
                    "bdev pool '{}': the block at offset {} is not allocated (freed twice, or \
                     never allocated)",
                    self.pool_name,
                    block.saturating_mul(bs)
                ),
            ),
            BlockError::Repeated { block } => fail(
                bdev_code::BAD_ARGUMENT,
                format!(
                    "bdev pool '{}': the block at offset {} is listed twice; nothing was freed",
                    self.pool_name,
                    block.saturating_mul(bs)
                ),
            ),
        }
    }

    fn out_of_range_block(&self, block: u64) -> Failure {
        fail(
            bdev_code::OUT_OF_RANGE,
            format!(
                "bdev pool '{}': offset {} is past the end of the device ({} bytes)",
                self.pool_name,
                block.saturating_mul(self.block_size),
                self.capacity
            ),
        )
    }

    fn do_allocate(&self, task: &mut AllocateBlocksTask) -> Result<(), Failure> {
        let bs = self.block_size;
        let count = match (task.blocks, task.bytes) {
            (0, 0) => {
                return Err(fail(
                    bdev_code::BAD_ARGUMENT,
                    "AllocateBlocks needs a non-zero `blocks` or `bytes`".to_owned(),
                ));
            }
            (n, 0) => n,
            (0, bytes) => bytes.div_ceil(bs),
            (n, bytes) => {
                return Err(fail(
                    bdev_code::BAD_ARGUMENT,
                    format!(
                        "AllocateBlocks got both blocks = {n} and bytes = {bytes}; give one of them"
                    ),
                ));
            }
        };
        let contiguous = match task.contiguous {
            0 => false,
            1 => true,
            other => {
                return Err(fail(
                    bdev_code::BAD_ARGUMENT,
                    format!("AllocateBlocks: contiguous is {other}; use 0 or 1"),
                ));
            }
        };
        let total = self.capacity / bs;
        if count > total {
            return Err(self.block_failure(BlockError::NoSpace {
                wanted: count,
                free: total - self.lock_blocks().used(),
                contiguous,
            }));
        }
        let alloc =
            chi_sdk::container::main_allocator().map_err(|e| fail(code::FAILED, e.to_string()))?;
        // The answer's storage first, so that running out of shared memory
        // leaves the bitmap untouched.
        let mut offsets = ShmVec::<u64>::with_capacity(alloc, count as usize).map_err(|e| {
            fail(
                code::FAILED,
                format!("cannot allocate the list of {count} offsets: {e}"),
            )
        })?;
        let got = {
            let mut map = self.lock_blocks();
            if contiguous {
                map.allocate_run(count)
                    .map(|first| (first..first + count).collect())
            } else {
                map.allocate(count)
            }
        };
        let blocks: Vec<u64> = match got {
            Ok(b) => b,
            Err(e) => {
                let _ = offsets.free(alloc);
                return Err(self.block_failure(e));
            }
        };
        let list: Vec<u64> = blocks.iter().map(|b| b * bs).collect();
        if let Err(e) = offsets.extend_from_slice(alloc, &list) {
            let _ = offsets.free(alloc);
            let _ = self.lock_blocks().free(&blocks);
            return Err(fail(
                code::FAILED,
                format!("cannot fill the list of offsets: {e}"),
            ));
        }
        let mut old = std::mem::replace(&mut task.offsets, offsets);
        // Whatever the client left in the output is validated by `free`.
        let _ = old.free(alloc);
        task.block_size = bs;
        Ok(())
    }

    fn do_free(&self, task: &mut FreeBlocksTask) -> Result<(), Failure> {
        let bs = self.block_size;
        let offsets = task.offsets.as_slice().map_err(|e| {
            fail(
                bdev_code::BAD_ARGUMENT,
                format!("FreeBlocks: cannot read the list of offsets: {e}"),
            )
        })?;
        let mut blocks = Vec::with_capacity(offsets.len());
        for &off in offsets {
            if off >= self.capacity {
                return Err(self.out_of_range_block(off / bs));
            }
            if !off.is_multiple_of(bs) {
                return Err(fail(
                    bdev_code::BAD_ARGUMENT,
                    format!(
                        "bdev pool '{}': offset {off} is not a multiple of the block size {bs}; \
                         nothing was freed",
                        self.pool_name
                    ),
                ));
            }
            blocks.push(off / bs);
        }
        self.lock_blocks()
            .free(&blocks)
            .map_err(|e| self.block_failure(e))?;
        task.freed = blocks.len() as u64;
        Ok(())
    }

    /// Checks that `len` bytes at `offset` lie on the device, on allocated blocks.
    fn check_range(&self, what: &str, offset: u64, len: u64) -> Result<(), Failure> {
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= self.capacity)
            .ok_or_else(|| {
                fail(
                    bdev_code::OUT_OF_RANGE,
                    format!(
                        "bdev pool '{}': {what} of {len} bytes at offset {offset} runs past the end \
                         of the device ({} bytes)",
                        self.pool_name, self.capacity
                    ),
                )
            })?;
        if len == 0 {
            return Ok(());
        }
        let bs = self.block_size;
        self.lock_blocks()
            .check_allocated(offset / bs, (end - 1) / bs)
            .map_err(|e| match e {
                BlockError::NotAllocated { block } => fail(
                    bdev_code::NOT_ALLOCATED,
                    format!(
                        "bdev pool '{}': {what} of {len} bytes at offset {offset} touches the \
                         block at offset {}, which is not allocated",
                        self.pool_name,
                        block * bs
                    ),
                ),
                other => self.block_failure(other),
            })
    }

    /// The client's buffer of `len` bytes at `data` (see the crate doc for the
    /// checks).
    fn client_buffer(&self, what: &str, data: ShmPtr, len: u64) -> Result<FullPtr<u8>, Failure> {
        let bad = |why: String| {
            fail(
                bdev_code::BAD_BUFFER,
                format!(
                    "bdev pool '{}': {what} buffer {data}: {why}",
                    self.pool_name
                ),
            )
        };
        if data.is_null() {
            return Err(bad("the buffer is null".to_owned()));
        }
        let alloc = chi_sdk::container::client_data_allocator()
            .map_err(|e| fail(code::FAILED, e.to_string()))?;
        if data.segment() != alloc.segment_id() {
            return Err(bad(format!(
                "not in the client-data segment ({}); allocate I/O buffers with \
                 Client::allocate_buffer",
                alloc.segment_id()
            )));
        }
        alloc
            .owner_of(data)
            .map_err(|_| bad("not the start of a live client-data allocation".to_owned()))?;
        let size = alloc
            .usable_size(data)
            .map_err(|_| bad("not the start of a live client-data allocation".to_owned()))?;
        if len > size {
            return Err(bad(format!(
                "{len} bytes do not fit the buffer's {size} bytes"
            )));
        }
        data.resolve_slice::<u8>(len)
            .map_err(|e| bad(e.to_string()))
    }

    fn io_error(&self, what: &str, offset: u64, e: std::io::Error) -> Failure {
        fail(
            bdev_code::IO_ERROR,
            format!(
                "bdev pool '{}' ({} backend): {what} at offset {offset} failed: {e}",
                self.pool_name,
                self.storage.kind()
            ),
        )
    }

    fn do_write(&self, task: &mut WriteTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        let (offset, len) = (task.offset, task.len);
        self.check_range("write", offset, len)?;
        if len == 0 {
            task.written = 0;
            return Ok(());
        }
        let buf = self.client_buffer("write", task.data, len)?;
        let len = len as usize; // fits: the buffer holds `len` bytes
        let mut done = 0;
        while done < len {
            let n = (len - done).min(IO_CHUNK);
            // SAFETY: `client_buffer` checked that `len` bytes at `buf` are the
            // payload of a live client-data allocation mapped in this process;
            // the client hands the buffer over until the task completes, and
            // `done + n <= len`.
            let src = unsafe { std::slice::from_raw_parts(buf.as_ptr().add(done), n) };
            let at = offset + done as u64;
            self.storage
                .write_at(at, src)
                .map_err(|e| self.io_error("write", at, e))?;
            done += n;
            if done < len {
                ctx.yield_now();
            }
        }
        task.written = len as u64;
        Ok(())
    }

    fn do_read(&self, task: &mut ReadTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        let (offset, len) = (task.offset, task.len);
        self.check_range("read", offset, len)?;
        if len == 0 {
            task.read = 0;
            return Ok(());
        }
        let buf = self.client_buffer("read", task.data, len)?;
        let len = len as usize; // fits: the buffer holds `len` bytes
        let mut done = 0;
        while done < len {
            let n = (len - done).min(IO_CHUNK);
            // SAFETY: as in `do_write`; the client does not access the buffer
            // until the task completes, so this is the only reference to it.
            let dst = unsafe { std::slice::from_raw_parts_mut(buf.as_ptr().add(done), n) };
            let at = offset + done as u64;
            self.storage
                .read_at(at, dst)
                .map_err(|e| self.io_error("read", at, e))?;
            done += n;
            if done < len {
                ctx.yield_now();
            }
        }
        task.read = len as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip_as_json_and_are_validated() {
        let p = CreateParams::file("/tmp/x", 1 << 20);
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            json.contains(r#""file":{"path":"/tmp/x","keep":false}"#),
            "{json}"
        );
        let back: CreateParams = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        let ram: CreateParams = serde_json::from_str(r#"{"backend":"ram"}"#).unwrap();
        assert_eq!(ram, CreateParams::default());
        assert_eq!(CreateParams::ram(1 << 20).validate(), Ok(256));
        let bad = |f: fn(&mut CreateParams)| {
            let mut p = CreateParams::default();
            f(&mut p);
            p.validate().unwrap_err()
        };
        assert!(bad(|p| p.block_size = 3000).contains("power of two"));
        assert!(bad(|p| p.block_size = 256).contains("power of two"));
        assert!(bad(|p| p.capacity = 0).contains("non-zero multiple"));
        assert!(bad(|p| p.capacity = 4097).contains("non-zero multiple"));
        assert!(bad(|p| p.io_lanes = 0).contains("io_lanes"));
        assert!(bad(|p| p.capacity = 1 << 60).contains("at most"));
    }

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
