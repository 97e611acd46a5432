//! The client of a `chimaera_compress` pool: buffers in the client-data segment
//! in, bytes out.

use chi_sdk::admin::{AdminClient, GetOrCreatePoolTask};
use chi_sdk::client::{CallError, Client, ClientError, Pending};
use chi_sdk::queue::Priority;
use chi_sdk::shm::{FullPtr, ShmPtr};
use chi_sdk::task::Task;
use chi_sdk::types::{DomainQuery, PoolId};

use crate::frame::{self, Codec};
use crate::{CODEC_POOL_DEFAULT, CompressTask, CreateParams, DecompressTask};

/// A task whose handler writes `output_len` bytes to the client's output
/// buffer ([`CompressTask`], [`DecompressTask`]).
pub trait BufferTask: Task {
    /// Bytes the handler wrote to the output buffer.
    fn output_len(&self) -> u64;
}

impl BufferTask for CompressTask {
    fn output_len(&self) -> u64 {
        self.output_len
    }
}

impl BufferTask for DecompressTask {
    fn output_len(&self) -> u64 {
        self.output_len
    }
}

/// A Compress or Decompress call in flight: the [`Pending`] task and the two
/// client-data buffers it uses. [`wait`](Self::wait) returns the output bytes
/// and frees both buffers and the task.
///
/// Dropped without waiting, it waits for the call to end and frees everything
/// (the result is lost). Only if the runtime died or stopped with the call in
/// hand do the buffers stay allocated, with a warning, as [`Pending`] leaves its
/// task.
pub struct PendingBuffer<'c, T: BufferTask> {
    client: &'c Client,
    pending: Option<Pending<'c, T>>,
    input: Option<ShmPtr>,
    output: Option<FullPtr<u8>>,
    output_cap: usize,
}

impl<T: BufferTask> std::fmt::Debug for PendingBuffer<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingBuffer")
            .field("pending", &self.pending)
            .field("input", &self.input)
            .field("output", &self.output.map(|p| p.shm()))
            .field("output_cap", &self.output_cap)
            .finish()
    }
}

impl<'c, T: BufferTask> PendingBuffer<'c, T> {
    /// Whether the runtime completed the call (`wait` does not block then).
    pub fn is_complete(&self) -> bool {
        self.pending.as_ref().is_none_or(Pending::is_complete)
    }

    /// The task in flight (its outputs are final only once complete).
    pub fn pending(&self) -> Option<&Pending<'c, T>> {
        self.pending.as_ref()
    }

    /// Waits for the call: the output bytes, or the task's error. Frees the
    /// buffers and the task, unless the wait itself failed (the runtime died or
    /// stopped with the task in hand: then they stay allocated).
    pub fn wait(mut self) -> Result<Vec<u8>, CallError> {
        let pending = self
            .pending
            .take()
            .expect("a PendingBuffer holds its task until waited");
        let result = match pending.wait() {
            Ok(t) => {
                let n = t.get().output_len();
                let r = match usize::try_from(n).ok().filter(|&n| n <= self.output_cap) {
                    Some(n) => Ok(self.read_output(n)),
                    None => Err(CallError::Client(ClientError::Protocol(format!(
                        "the module reported {n} output bytes in a buffer of {}",
                        self.output_cap
                    )))),
                };
                self.client.del_task(t);
                r
            }
            Err(e @ CallError::Task(_)) => Err(e),
            Err(e) => {
                // Not known to be complete: the runtime may still use the buffers.
                self.input = None;
                self.output = None;
                return Err(e);
            }
        };
        self.free_buffers();
        result
    }

    fn read_output(&self, n: usize) -> Vec<u8> {
        match self.output {
            // SAFETY: our allocation of `output_cap >= n` bytes in the mapped
            // client-data segment; the task completed (Acquire in the wait), so
            // the runtime wrote it and no longer touches it.
            Some(p) if n > 0 => unsafe { std::slice::from_raw_parts(p.as_ptr(), n) }.to_vec(),
            _ => Vec::new(),
        }
    }

    fn free_buffers(&mut self) {
        let out = self.output.take().map(|p| p.shm());
        for p in [self.input.take(), out].into_iter().flatten() {
            if let Err(e) = self.client.free_buffer(p) {
                chi_sdk::tracing::warn!(buffer = %p, error = %e, "could not free a client-data buffer");
            }
        }
    }
}

impl<T: BufferTask> Drop for PendingBuffer<'_, T> {
    fn drop(&mut self) {
        let Some(p) = self.pending.take() else {
            // Never submitted (or already waited for: then nothing is left).
            self.free_buffers();
            return;
        };
        // The runtime may be using the buffers: wait for the call to end (a wait
        // never hangs on a runtime that died or stopped) before freeing them.
        match p.wait() {
            Ok(t) => {
                self.client.del_task(t);
                self.free_buffers();
            }
            Err(CallError::Task(_)) => self.free_buffers(),
            Err(e) => chi_sdk::tracing::warn!(
                input = ?self.input,
                output = ?self.output.map(|p| p.shm()),
                error = %e,
                "a dropped compress call did not complete; its buffers stay allocated"
            ),
        }
    }
}

/// The client of a `chimaera_compress` pool: each method has a synchronous call
/// and an `async_` call returning a [`PendingBuffer`] to `wait()` for. The
/// calls allocate the client-data buffers, copy the input in and the output
/// out, and free them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressClient {
    /// The pool.
    pub pool: PoolId,
}

impl From<PoolId> for CompressClient {
    fn from(pool: PoolId) -> Self {
        CompressClient { pool }
    }
}

impl CompressClient {
    /// Creates (or finds) pool `pool_name` with `params`.
    pub fn create(
        client: &Client,
        pool_name: &str,
        params: &CreateParams,
    ) -> Result<CompressClient, CallError> {
        AdminClient::new(client)
            .get_or_create(pool_name, params)
            .map(CompressClient::from)
    }

    /// Submits the creation of pool `pool_name`; the pool id is the task's
    /// `pool_id` once complete.
    pub fn async_create<'c>(
        client: &'c Client,
        pool_name: &str,
        params: &CreateParams,
    ) -> Result<Pending<'c, GetOrCreatePoolTask>, CallError> {
        AdminClient::new(client).async_get_or_create(pool_name, params)
    }

    /// Compresses `data` with the pool's codec: returns its frame (see
    /// [`frame`]).
    pub fn compress(&self, client: &Client, data: &[u8]) -> Result<Vec<u8>, CallError> {
        self.async_compress(client, data)?.wait()
    }

    /// Compresses `data` with `codec` (DEFLATE at the pool's level).
    pub fn compress_with(
        &self,
        client: &Client,
        data: &[u8],
        codec: Codec,
    ) -> Result<Vec<u8>, CallError> {
        self.async_compress_with(client, data, codec)?.wait()
    }

    /// Submits the compression of `data` with the pool's codec.
    pub fn async_compress<'c>(
        &self,
        client: &'c Client,
        data: &[u8],
    ) -> Result<PendingBuffer<'c, CompressTask>, CallError> {
        self.submit_compress(client, data, CODEC_POOL_DEFAULT)
    }

    /// Submits the compression of `data` with `codec`.
    pub fn async_compress_with<'c>(
        &self,
        client: &'c Client,
        data: &[u8],
        codec: Codec,
    ) -> Result<PendingBuffer<'c, CompressTask>, CallError> {
        self.submit_compress(client, data, u32::from(codec.algorithm()))
    }

    fn submit_compress<'c>(
        &self,
        client: &'c Client,
        data: &[u8],
        codec: u32,
    ) -> Result<PendingBuffer<'c, CompressTask>, CallError> {
        let cap = frame::max_frame_len(data.len());
        self.submit(client, data, cap, |input, output| {
            CompressTask::new(
                self.pool,
                DomainQuery::local(),
                input,
                data.len() as u64,
                output,
                cap as u64,
                codec,
            )
        })
    }

    /// Decompresses `frame` (made by Compress): returns the original data.
    pub fn decompress(&self, client: &Client, frame: &[u8]) -> Result<Vec<u8>, CallError> {
        self.async_decompress(client, frame)?.wait()
    }

    /// Submits the decompression of `frame`. The output buffer is sized from the
    /// frame's header; a frame without a readable header is sent with no output
    /// buffer, for the module to say what is wrong with it.
    pub fn async_decompress<'c>(
        &self,
        client: &'c Client,
        frame: &[u8],
    ) -> Result<PendingBuffer<'c, DecompressTask>, CallError> {
        let cap = frame::header(frame)
            .ok()
            .and_then(|h| usize::try_from(h.original_len).ok())
            .unwrap_or(0);
        self.submit(client, frame, cap, |input, output| {
            DecompressTask::new(
                self.pool,
                DomainQuery::local(),
                input,
                frame.len() as u64,
                output,
                cap as u64,
            )
        })
    }

    /// Copies `data` into a new client-data buffer, allocates an output buffer
    /// of `cap` bytes, and submits the task `make` builds from the two.
    fn submit<'c, T: BufferTask>(
        &self,
        client: &'c Client,
        data: &[u8],
        cap: usize,
        make: impl FnOnce(ShmPtr, ShmPtr) -> T,
    ) -> Result<PendingBuffer<'c, T>, CallError> {
        let mut call = PendingBuffer {
            client,
            pending: None,
            input: None,
            output: None,
            output_cap: cap,
        };
        if !data.is_empty() {
            let buf = client.allocate_buffer(data.len())?;
            // SAFETY: a fresh allocation of `data.len()` bytes, ours alone.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf.as_ptr(), data.len()) };
            call.input = Some(buf.shm());
        }
        if cap > 0 {
            call.output = Some(client.allocate_buffer(cap)?);
        }
        let input = call.input.unwrap_or(ShmPtr::NULL);
        let output = call.output.map_or(ShmPtr::NULL, |p| p.shm());
        // On error `call` drops with no task: it frees the buffers.
        call.pending = Some(client.submit(make(input, output), Priority::LowLatency)?);
        Ok(call)
    }
}
