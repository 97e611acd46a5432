//! What the generated [`BdevClient`] lacks, and [`BdevStats`].

use chi_sdk::bytes::{ClientBuf, ClientBytes};
use chi_sdk::client::{CallError, Client, ClientError, Pending};
use chi_sdk::shm::ShmPtr;

use crate::{AllocateBlocksTask, BdevClient, GetStatsTask, ReadTask, WriteTask};

/// A bdev pool's figures ([`BdevClient::get_stats`]; see [`GetStatsTask`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BdevStats {
    /// Bytes of the device.
    pub capacity: u64,
    /// Bytes of a block.
    pub block_size: u64,
    /// Blocks of the device.
    pub total_blocks: u64,
    /// Blocks allocated.
    pub used_blocks: u64,
    /// Blocks free.
    pub free_blocks: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Successful writes.
    pub writes: u64,
    /// Successful reads.
    pub reads: u64,
    /// Successful AllocateBlocks calls.
    pub allocations: u64,
    /// Successful FreeBlocks calls.
    pub frees: u64,
    /// Failed calls.
    pub failures: u64,
    /// Whether the backend is a file (else RAM).
    pub file_backend: bool,
}

impl From<&GetStatsTask> for BdevStats {
    fn from(t: &GetStatsTask) -> Self {
        BdevStats {
            capacity: t.capacity,
            block_size: t.block_size,
            total_blocks: t.total_blocks,
            used_blocks: t.used_blocks,
            free_blocks: t.free_blocks,
            bytes_written: t.bytes_written,
            bytes_read: t.bytes_read,
            writes: t.writes,
            reads: t.reads,
            allocations: t.allocations,
            frees: t.frees,
            failures: t.failures,
            file_backend: t.backend == 1,
        }
    }
}

/// Calls the generated [`BdevClient`] lacks: allocation in the three forms
/// callers want (blocks, bytes, one extent), reads into a buffer the call
/// allocates or one the caller keeps, writes from one the caller keeps, and
/// the figures as a struct. (`write` and `free_blocks` are generated.)
impl BdevClient {
    /// Submits AllocateBlocks: `blocks` blocks, or (with `blocks` 0) enough for
    /// `bytes` bytes, as one run if `contiguous`.
    pub fn async_allocate_blocks<'c>(
        &self,
        client: &'c Client,
        blocks: u64,
        bytes: u64,
        contiguous: bool,
    ) -> Result<Pending<'c, AllocateBlocksTask>, CallError> {
        client.submit(
            AllocateBlocksTask::new(self.pool, self.query, blocks, bytes, u64::from(contiguous)),
            self.priority,
        )
    }

    fn offsets_of(p: Pending<'_, AllocateBlocksTask>) -> Result<Vec<u64>, CallError> {
        p.wait_with(|t| t.offsets.as_slice().map(<[u64]>::to_vec))?
            .map_err(|e| CallError::Client(ClientError::Shm(e)))
    }

    /// Allocates `count` blocks; returns their byte offsets.
    pub fn allocate_blocks(&self, client: &Client, count: u64) -> Result<Vec<u64>, CallError> {
        Self::offsets_of(self.async_allocate_blocks(client, count, 0, false)?)
    }

    /// Allocates enough blocks for `bytes` bytes; returns their byte offsets.
    pub fn allocate_bytes(&self, client: &Client, bytes: u64) -> Result<Vec<u64>, CallError> {
        Self::offsets_of(self.async_allocate_blocks(client, 0, bytes, false)?)
    }

    /// Allocates one run of blocks holding `bytes` bytes; returns its offset.
    pub fn allocate_extent(&self, client: &Client, bytes: u64) -> Result<u64, CallError> {
        let offsets = Self::offsets_of(self.async_allocate_blocks(client, 0, bytes, true)?)?;
        offsets.first().copied().ok_or_else(|| {
            CallError::Client(ClientError::Protocol(
                "AllocateBlocks answered no offsets".into(),
            ))
        })
    }

    /// Submits a Write of `len` bytes of the client-data block `buf` at
    /// `offset`; the caller keeps the block (for reuse) and must not free it
    /// before the write completed.
    pub fn async_write_buffer<'c>(
        &self,
        client: &'c Client,
        offset: u64,
        buf: ShmPtr,
        len: u64,
    ) -> Result<Pending<'c, WriteTask>, CallError> {
        let data = ClientBytes::borrow_block(buf, len);
        client.submit(
            WriteTask::new(self.pool, self.query, offset, data),
            self.priority,
        )
    }

    /// Writes `len` bytes of the client-data block `buf` at `offset`; returns
    /// the bytes written.
    pub fn write_buffer(
        &self,
        client: &Client,
        offset: u64,
        buf: ShmPtr,
        len: u64,
    ) -> Result<u64, CallError> {
        self.async_write_buffer(client, offset, buf, len)?
            .wait_with(|t| t.written)
    }

    /// Submits a Read of `len` bytes at `offset` into the client-data block
    /// `buf` (which the caller keeps, as for
    /// [`async_write_buffer`](Self::async_write_buffer)).
    pub fn async_read_buffer<'c>(
        &self,
        client: &'c Client,
        offset: u64,
        buf: ShmPtr,
        len: u64,
    ) -> Result<Pending<'c, ReadTask>, CallError> {
        let data = ClientBuf::borrow_block(buf, len);
        client.submit(
            ReadTask::new(self.pool, self.query, offset, len, data),
            self.priority,
        )
    }

    /// Reads `len` bytes at `offset` into the client-data block `buf`; returns
    /// the bytes read.
    pub fn read_buffer(
        &self,
        client: &Client,
        offset: u64,
        buf: ShmPtr,
        len: u64,
    ) -> Result<u64, CallError> {
        self.async_read_buffer(client, offset, buf, len)?
            .wait_with(|t| t.read)
    }

    /// Submits a Read of `len` bytes at `offset` into a client-data block that
    /// the task owns; `wait_bytes(|t| &t.data)` copies them out.
    pub fn async_read<'c>(
        &self,
        client: &'c Client,
        offset: u64,
        len: usize,
    ) -> Result<Pending<'c, ReadTask>, CallError> {
        let data = ClientBuf::with_capacity(client, len)?;
        client.submit(
            ReadTask::new(self.pool, self.query, offset, len as u64, data),
            self.priority,
        )
    }

    /// Reads `len` bytes at `offset`.
    pub fn read(&self, client: &Client, offset: u64, len: usize) -> Result<Vec<u8>, CallError> {
        self.async_read(client, offset, len)?
            .wait_bytes(|t| &t.data)
    }

    /// Submits GetStats.
    pub fn async_get_stats<'c>(
        &self,
        client: &'c Client,
    ) -> Result<Pending<'c, GetStatsTask>, CallError> {
        client.submit(GetStatsTask::new(self.pool, self.query), self.priority)
    }

    /// The pool's figures.
    pub fn get_stats(&self, client: &Client) -> Result<BdevStats, CallError> {
        self.async_get_stats(client)?
            .wait_with(|t| BdevStats::from(t))
    }
}
