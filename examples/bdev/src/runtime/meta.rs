//! Allocations and frees: the block map under its lock, failures in byte
//! offsets.

use chi_sdk::shm::ShmVec;
use chi_sdk::task::{Failure, code};

use super::{BdevContainer, fail};
use crate::blocks::BlockError;
use crate::tasks::*;

impl BdevContainer {
    /// The failure of a bitmap operation, in byte offsets.
    pub(super) fn block_failure(&self, e: BlockError) -> Failure {
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

    pub(super) fn do_allocate(&self, task: &mut AllocateBlocksTask) -> Result<(), Failure> {
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

    pub(super) fn do_free(&self, task: &mut FreeBlocksTask) -> Result<(), Failure> {
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
}
