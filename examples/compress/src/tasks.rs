//! The parameters of a compress pool, the codec ids a task may name, the
//! module's result codes, and the tasks of its methods (`kCompress` 10,
//! `kDecompress` 11).

use chi_sdk::bytes::{ClientBuf, ClientBytes};

use crate::frame::{self, Codec};

/// The module's own result codes (from [`code::MODULE_BASE`](chi_sdk::task::code::MODULE_BASE)).
pub mod errcode {
    use chi_sdk::task::code::MODULE_BASE;

    /// The input is not a frame, or its payload does not decode to the declared
    /// length and checksum.
    pub const CORRUPT_DATA: i32 = MODULE_BASE;
}

/// `codec` of [`CompressTask`]: the pool's codec.
pub const CODEC_POOL_DEFAULT: u32 = 0;
/// `codec` of [`CompressTask`]: LZ4.
pub const CODEC_LZ4: u32 = frame::ALGO_LZ4 as u32;
/// `codec` of [`CompressTask`]: DEFLATE at the pool's level.
pub const CODEC_DEFLATE: u32 = frame::ALGO_DEFLATE as u32;

/// The module's creation parameters, given by the client that creates a pool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreateParams {
    /// The codec Compress uses when the task does not name one.
    pub codec: Codec,
    /// DEFLATE level, 0 (store) to 10 (smallest); 6 by default.
    pub level: u8,
}

impl Default for CreateParams {
    fn default() -> Self {
        CreateParams {
            codec: Codec::Lz4,
            level: 6,
        }
    }
}

/// Compresses bytes into a frame (method `kCompress`).
#[chi_sdk::task(method = 10)]
#[derive(Debug)]
pub struct CompressTask {
    /// The data.
    pub input: ClientBytes,
    /// The frame (the module allocates it in the client-data segment; the
    /// task frees it).
    #[output]
    pub output: ClientBuf,
    /// [`CODEC_POOL_DEFAULT`], [`CODEC_LZ4`] or [`CODEC_DEFLATE`].
    pub codec: u32,
    /// The frame's algorithm ([`frame::ALGO_STORED`] if the codec did not
    /// shrink the data).
    #[output]
    pub algorithm: u32,
}

/// Decompresses a frame (method `kDecompress`).
#[chi_sdk::task(method = 11)]
#[derive(Debug)]
pub struct DecompressTask {
    /// The frame.
    pub input: ClientBytes,
    /// The data (the module allocates it, sized from the frame's header).
    #[output]
    pub output: ClientBuf,
}
