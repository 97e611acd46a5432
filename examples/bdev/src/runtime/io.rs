//! Writes and reads: the range and buffer checks, and the copy in chunks of
//! [`IO_CHUNK`] bytes with a yield between them.

use chi_sdk::abi::RunCtx;

use chi_sdk::task::{Failure, code};

use super::{BdevContainer, IO_CHUNK, fail};
use crate::blocks::BlockError;
use crate::tasks::*;

impl BdevContainer {
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

    /// A failure of the SDK's check of a task's buffer, as this module's
    /// [`bdev_code::BAD_BUFFER`].
    fn bad_buffer(&self, f: Failure) -> Failure {
        if f.code == code::BAD_TASK {
            fail(
                bdev_code::BAD_BUFFER,
                format!("bdev pool '{}': {}", self.pool_name, f.message),
            )
        } else {
            f
        }
    }

    pub(super) fn do_write(&self, task: &mut WriteTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        let (offset, len) = (task.offset, task.data.len());
        self.check_range("write", offset, len)?;
        if len == 0 {
            task.written = 0;
            return Ok(());
        }
        let buf = task.data.get().map_err(|f| self.bad_buffer(f))?;
        let mut done = 0;
        for src in buf.chunks(IO_CHUNK) {
            let at = offset + done as u64;
            self.storage
                .write_at(at, src)
                .map_err(|e| self.io_error("write", at, e))?;
            done += src.len();
            if done < buf.len() {
                ctx.yield_now();
            }
        }
        task.written = len;
        Ok(())
    }

    pub(super) fn do_read(&self, task: &mut ReadTask, ctx: &mut RunCtx) -> Result<(), Failure> {
        let (offset, len) = (task.offset, task.len);
        self.check_range("read", offset, len)?;
        if len == 0 {
            task.read = 0;
            return Ok(());
        }
        let mut out = task.data.get_mut().map_err(|f| self.bad_buffer(f))?;
        // Fits: `check_range` bounds it by the device's capacity.
        let len = len as usize;
        out.set_len(0)?;
        out.reserve(len).map_err(|f| self.bad_buffer(f))?;
        let buf = &mut out.as_mut_slice()[..len];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(IO_CHUNK);
            let at = offset + done as u64;
            self.storage
                .read_at(at, &mut buf[done..done + n])
                .map_err(|e| self.io_error("read", at, e))?;
            done += n;
            if done < len {
                ctx.yield_now();
            }
        }
        out.set_len(len)?;
        task.read = len as u64;
        Ok(())
    }
}
