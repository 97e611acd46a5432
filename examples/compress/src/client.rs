//! The client of a `chimaera_compress` pool: bytes in, bytes out. The tasks'
//! buffers are [`ClientBytes`] and [`ClientBuf`] fields, which the tasks own:
//! waiting for a call copies the output out and frees the task with its
//! buffers, and a call dropped or failed frees them too.

use chi_sdk::admin::{AdminClient, GetOrCreatePoolTask};
use chi_sdk::bytes::{ClientBuf, ClientBytes};
use chi_sdk::client::{CallError, Client, Pending};
use chi_sdk::queue::Priority;
use chi_sdk::types::{DomainQuery, PoolId};

use crate::frame::{self, Codec};
use crate::{CODEC_POOL_DEFAULT, CompressTask, CreateParams, DecompressTask};

/// The client of a `chimaera_compress` pool: each method has a synchronous call
/// and an `async_` call returning a [`Pending`] task, whose
/// [`wait_bytes`](Pending::wait_bytes) gives the output
/// (`|t| &t.output`).
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
        self.async_compress(client, data)?.wait_bytes(|t| &t.output)
    }

    /// Compresses `data` with `codec` (DEFLATE at the pool's level).
    pub fn compress_with(
        &self,
        client: &Client,
        data: &[u8],
        codec: Codec,
    ) -> Result<Vec<u8>, CallError> {
        self.async_compress_with(client, data, codec)?
            .wait_bytes(|t| &t.output)
    }

    /// Submits the compression of `data` with the pool's codec.
    pub fn async_compress<'c>(
        &self,
        client: &'c Client,
        data: &[u8],
    ) -> Result<Pending<'c, CompressTask>, CallError> {
        self.submit_compress(client, data, CODEC_POOL_DEFAULT)
    }

    /// Submits the compression of `data` with `codec`.
    pub fn async_compress_with<'c>(
        &self,
        client: &'c Client,
        data: &[u8],
        codec: Codec,
    ) -> Result<Pending<'c, CompressTask>, CallError> {
        self.submit_compress(client, data, u32::from(codec.algorithm()))
    }

    fn submit_compress<'c>(
        &self,
        client: &'c Client,
        data: &[u8],
        codec: u32,
    ) -> Result<Pending<'c, CompressTask>, CallError> {
        let input = ClientBytes::new(client, data)?;
        let mut task = CompressTask::new(
            self.pool,
            DomainQuery::local(),
            input,
            ClientBuf::EMPTY,
            codec,
        );
        // The task owns its buffers from here: an error frees them.
        match ClientBuf::with_capacity(client, frame::max_frame_len(data.len())) {
            Ok(b) => task.output = b,
            Err(e) => {
                client.discard(task);
                return Err(e.into());
            }
        }
        client.submit(task, Priority::LowLatency)
    }

    /// Decompresses `frame` (made by Compress): returns the original data.
    pub fn decompress(&self, client: &Client, frame: &[u8]) -> Result<Vec<u8>, CallError> {
        self.async_decompress(client, frame)?
            .wait_bytes(|t| &t.output)
    }

    /// Submits the decompression of `frame`. The output buffer is sized from the
    /// frame's header; a frame without a readable header is sent with none,
    /// for the module to say what is wrong with it.
    pub fn async_decompress<'c>(
        &self,
        client: &'c Client,
        frame: &[u8],
    ) -> Result<Pending<'c, DecompressTask>, CallError> {
        let cap = frame::header(frame)
            .ok()
            .and_then(|h| usize::try_from(h.original_len).ok())
            .filter(|&n| n as u64 <= frame.len() as u64 * crate::MAX_RATIO + 1024)
            .unwrap_or(0);
        let input = ClientBytes::new(client, frame)?;
        let mut task =
            DecompressTask::new(self.pool, DomainQuery::local(), input, ClientBuf::EMPTY);
        match ClientBuf::with_capacity(client, cap) {
            Ok(b) => task.output = b,
            Err(e) => {
                client.discard(task);
                return Err(e.into());
            }
        }
        client.submit(task, Priority::LowLatency)
    }
}
