//! The `compress` example module (seed 000): compresses and decompresses
//! client-data buffers in the runtime with real codecs, LZ4 (`lz4_flex`) and
//! DEFLATE (`miniz_oxide`), both pure Rust.
//!
//! Built as `libchimaera_compress_runtime.so` (a `cdylib`) for the runtime to
//! load from its module path, and as an `rlib` for client programs, which use
//! [`CompressClient`].
//!
//! # Methods (see `chimaera_mod.yaml`)
//!
//! * `kCompress` (10), [`CompressTask`]: reads the `input` bytes, writes
//!   their [frame] (a 20-byte header with the algorithm, the original length
//!   and its CRC-32, then the payload) to the `output` buffer and sets
//!   `algorithm`. The codec is the task's `codec` ([`CODEC_LZ4`],
//!   [`CODEC_DEFLATE`]) or, if [`CODEC_POOL_DEFAULT`], the pool's
//!   ([`CreateParams`]). Data the codec does not shrink is stored as it is, so a
//!   frame is never longer than the data plus 20 bytes
//!   ([`frame::max_frame_len`]).
//! * `kDecompress` (11), [`DecompressTask`]: reads the frame in `input`, checks
//!   it and decodes it into `output`. A frame of any algorithm is accepted,
//!   whatever the pool's codec.
//!
//! # The buffers
//!
//! The data travels in the client-data segment, read and written in place:
//! the input is a [`ClientBytes`](chi_sdk::bytes::ClientBytes) field, the
//! output a [`ClientBuf`](chi_sdk::bytes::ClientBuf). The task owns both and
//! frees them when it is freed ([`chi_sdk::bytes`]). [`CompressClient`]
//! sizes the output from what it knows (a frame needs at most the data's
//! length plus 20 bytes; a frame's header states its original length); an
//! output that is too small anyway is grown by the handler.
//!
//! # Untrusted buffers
//!
//! A task's buffers come from another process: the handler reaches them only
//! through `ClientBytes::get` and `ClientBuf::get_mut`, which refuse a pointer
//! that is not the start of a live client-data block holding the length, and
//! an output that is the input, with [`code::BAD_TASK`](chi_sdk::task::code::BAD_TASK)
//! and a message naming the buffer. A frame that does not decode (not a
//! frame, corrupt payload, wrong length or checksum, or an original length no
//! codec could produce from it) fails with [`errcode::CORRUPT_DATA`]. The
//! runtime goes on serving either way.
//!
//! # Where the codecs run
//!
//! Handlers run on the runtime's coroutine stacks, 64 KiB by default. DEFLATE's
//! compressor holds a 64 KiB buffer inline (its decompressor about 11 KiB),
//! more than such a stack has to spare, so the container asks the runtime for
//! 1 MiB coroutine stacks in `create` ([`CODEC_STACK`],
//! `CreateCtx::set_stack_size`) and both codecs run on the task's coroutine.
//!
//! Monitor routes inputs of [`BULK_THRESHOLD`] bytes or more to the
//! high-latency [`BULK_QUEUE`] (two lanes, spread by buffer), and smaller ones
//! to the low-latency [`SMALL_QUEUE`], so that large jobs do not hold up small
//! ones.
//!
//! # Example
//!
//! ```no_run
//! use chi_sdk::client::Client;
//! use chimaera_compress_runtime::{CODEC_POOL_DEFAULT, Codec, CompressClient, CreateParams};
//!
//! let client = Client::init()?;
//! let params = CreateParams { codec: Codec::Deflate, level: 9 };
//! let pool = CompressClient::create(&client, "compress_deflate", &params)?;
//! let data = b"to be or not to be, that is the question; ".repeat(1000);
//! let (frame, _algorithm) = pool.compress(&client, &data, CODEC_POOL_DEFAULT)?;
//! assert!(frame.len() < data.len());
//! assert_eq!(pool.decompress(&client, &frame)?, data);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The client program `examples/compress_file.rs` compresses a file through a
//! running runtime and prints the ratio:
//!
//! ```sh
//! chi-runtime start -c my.yaml --daemon    # module_path must hold the .so
//! cargo run -p compress --example compress_file -- FILE [--codec lz4|deflate] [--level N]
//! ```
//!
//! # Layout
//!
//! As `cargo chimod new` lays out a module: [`tasks`] (the creation
//! parameters, the codec ids, the result codes and the two tasks),
//! [`runtime`] (the container, and what `#[chimod]` generates beside it: the
//! client [`CompressClient`], whose `compress` and `decompress` calls take
//! and return bytes); and the module's own parts: [`frame`] (the compressed
//! frame and its codecs).

pub mod frame;
pub mod runtime;
pub mod tasks;

pub use frame::{Codec, FrameError};
pub use runtime::*;
pub use tasks::*;
