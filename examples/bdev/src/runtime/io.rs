//! Writes and reads: the range and buffer checks, and the copy in chunks of
//! [`IO_CHUNK`] bytes with a yield between them.

use chi_sdk::abi::RunCtx;
use chi_sdk::shm::{FullPtr, ShmPtr};
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

    pub(super) fn do_write(&self, task: &mut WriteTask, ctx: &mut RunCtx) -> Result<(), Failure> {
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

    pub(super) fn do_read(&self, task: &mut ReadTask, ctx: &mut RunCtx) -> Result<(), Failure> {
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
