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
//! * `kCompress` (10), [`CompressTask`]: reads `input_len` bytes at `input`,
//!   writes their [frame] (a 20-byte header with the algorithm, the
//!   original length and its CRC-32, then the payload) to `output` and sets
//!   `output_len` and `algorithm`. The codec is the task's `codec` ([`CODEC_LZ4`],
//!   [`CODEC_DEFLATE`]) or, if [`CODEC_POOL_DEFAULT`], the pool's
//!   ([`CreateParams`]). Data the codec does not shrink is stored as it is, so a
//!   frame is never longer than the data plus 20 bytes
//!   ([`frame::max_frame_len`]).
//! * `kDecompress` (11), [`DecompressTask`]: reads the frame at `input`, checks
//!   it, decodes it into `output` and sets `output_len` to the original length.
//!   A frame of any algorithm is accepted, whatever the pool's codec.
//!
//! # Who owns the buffers
//!
//! **The client owns both buffers, input and output.** It allocates them in the
//! client-data segment ([`Client::allocate_buffer`](chi_sdk::client::Client::allocate_buffer)),
//! writes the input, passes each buffer as a [`ShmPtr`](chi_sdk::shm::ShmPtr) and a length (the
//! output's is its capacity), and frees both once the task completed. The
//! handler only reads the input and writes the output; it never allocates in
//! the client-data segment. Why this way rather than the handler allocating the
//! output:
//!
//! * every byte of a call is allocated under the client's own owner id, so
//!   whatever reclaims a dead client's memory reclaims it too, and the runtime
//!   never holds memory that a client may forget to collect;
//! * the sizes are known up front: a compressed frame needs at most the data's
//!   length plus 20 bytes, and a frame's header states its original length, so
//!   the client sizes the output without a second round trip.
//!
//! An output that is too small fails the task with [`errcode::OUTPUT_TOO_SMALL`]
//! and a message naming the size needed; [`CompressClient`] always sizes it
//! right, and hides all of this behind `compress(&[u8]) -> Vec<u8>`.
//!
//! # Untrusted pointers
//!
//! A task's pointers and lengths come from another process. Before touching a
//! byte the handler checks that each buffer is in the client-data segment, is
//! the start of a live allocation there, and holds the length given, and that
//! the output is not the input; otherwise the task fails with
//! [`code::BAD_TASK`](chi_sdk::task::code::BAD_TASK) and a message naming the
//! buffer and what is wrong. A frame that does not decode (not a frame, corrupt
//! payload, wrong length or checksum) fails with [`errcode::CORRUPT_DATA`]. The
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
//! use chimaera_compress_runtime::{Codec, CompressClient, CreateParams};
//!
//! let client = Client::init()?;
//! let params = CreateParams { codec: Codec::Deflate, level: 9 };
//! let pool = CompressClient::create(&client, "compress_deflate", &params)?;
//! let data = b"to be or not to be, that is the question; ".repeat(1000);
//! let frame = pool.compress(&client, &data)?;
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
//! [`runtime`] (the container, and what `#[chimod]` generates beside it),
//! [`client`] ([`CompressClient`]); and the module's own parts: [`frame`] (the
//! compressed frame and its codecs) and the runtime's checks of the buffers a
//! task names (`runtime::buffers`).

pub mod client;
pub mod frame;
pub mod runtime;
pub mod tasks;

pub use client::{BufferTask, CompressClient, PendingBuffer};
pub use frame::{Codec, FrameError};
pub use runtime::*;
pub use tasks::*;
