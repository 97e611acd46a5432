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
//! * `kWrite` (12): [`WriteTask`]: writes the bytes of `data` (a
//!   [`ClientBytes`](chi_sdk::bytes::ClientBytes)) at byte `offset` of the
//!   device.
//! * `kRead` (13): [`ReadTask`]: reads `len` bytes at `offset` into `data` (a
//!   [`ClientBuf`](chi_sdk::bytes::ClientBuf), grown if it holds fewer).
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
//! * Buffers: `data` is checked by the SDK ([`chi_sdk::bytes`]) before any
//!   byte moves: it must be the start of a live block of the client-data
//!   segment holding its length, not in use by another buffer of a running
//!   task. A pointer into another segment (the main one, where tasks and
//!   queues live), into allocator metadata, into the middle of a block, or
//!   past a block's end fails with [`bdev_code::BAD_BUFFER`], so a bad pointer
//!   can neither corrupt the runtime nor read its memory. A buffer is the
//!   runtime's from submission to completion: a client must not touch it
//!   meanwhile. The task owns the buffers `write`/`read` make and frees them
//!   with itself; `write_buffer`/`read_buffer` name blocks the caller keeps
//!   (and reuses).
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
//! under a [`CoMutex`](chi_sdk::sync::CoMutex) (held only for the bitmap
//! update or check, never across a yield); the RAM store is under a
//! [`CoRwLock`](chi_sdk::sync::CoRwLock) (reads share it, held for one chunk's
//! copy); a handler that waits for either suspends its coroutine and leaves
//! its worker to other tasks. The file store needs no lock (`pread` /
//! `pwrite`); the counters are atomics.
//!
//! # Layout
//!
//! As `cargo chimod new` lays out a module: [`tasks`] (the creation parameters,
//! the result codes and one task per method), [`runtime`] (the container, and
//! what `#[chimod]` generates beside it), [`client`] ([`BdevClient`]); and the
//! container's own parts: `blocks` (the block allocator) and `storage` (the
//! RAM and file backends).

mod blocks;
pub mod client;
pub mod runtime;
mod storage;
pub mod tasks;

pub use client::BdevStats;
pub use runtime::*;
pub use tasks::*;
