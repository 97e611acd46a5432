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
//! writes the input, passes each buffer as a [`ShmPtr`] and a length (the
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
//! [`code::BAD_TASK`] and a message naming the
//! buffer and what is wrong. A frame that does not decode (not a frame, corrupt
//! payload, wrong length or checksum) fails with [`errcode::CORRUPT_DATA`]. The
//! runtime goes on serving either way.
//!
//! # Where the codecs run
//!
//! Handlers run on the runtime's coroutine stacks (64 KiB by default). LZ4
//! needs little stack and runs there; DEFLATE's compressor holds a 64 KiB
//! buffer inline (its decompressor about 11 KiB), more than such a stack has to
//! spare, so DEFLATE work runs on a short-lived helper thread with its own
//! 1 MiB stack while the handler waits for it.
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

use std::sync::atomic::{AtomicU64, Ordering};

use chi_sdk::abi::{MonitorMode, QueueId, RunCtx};
use chi_sdk::container::CreateCtx;
use chi_sdk::queue::Priority;
use chi_sdk::shm::{FullPtr, ShmPtr};
use chi_sdk::task::{Failure, code};

mod client;
pub mod frame;

pub use client::{BufferTask, CompressClient, PendingBuffer};
pub use frame::{Codec, FrameError};

/// The module's own result codes (from [`code::MODULE_BASE`]).
pub mod errcode {
    use chi_sdk::task::code::MODULE_BASE;

    /// The input is not a frame, or its payload does not decode to the declared
    /// length and checksum.
    pub const CORRUPT_DATA: i32 = MODULE_BASE;
    /// The output buffer is too small; the message names the size needed.
    pub const OUTPUT_TOO_SMALL: i32 = MODULE_BASE + 1;
}

/// `codec` of [`CompressTask`]: the pool's codec.
pub const CODEC_POOL_DEFAULT: u32 = 0;
/// `codec` of [`CompressTask`]: LZ4.
pub const CODEC_LZ4: u32 = frame::ALGO_LZ4 as u32;
/// `codec` of [`CompressTask`]: DEFLATE at the pool's level.
pub const CODEC_DEFLATE: u32 = frame::ALGO_DEFLATE as u32;

/// The low-latency local queue (one lane) for inputs under [`BULK_THRESHOLD`].
pub const SMALL_QUEUE: QueueId = QueueId(0);
/// The high-latency local queue (two lanes) for larger inputs.
pub const BULK_QUEUE: QueueId = QueueId(1);
/// Inputs of this many bytes or more run on [`BULK_QUEUE`].
pub const BULK_THRESHOLD: u64 = 64 << 10;

/// Stack of the helper thread DEFLATE runs on.
const CODEC_STACK: usize = 1 << 20;

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

/// Compresses a client-data buffer into another (method `kCompress`).
#[chi_sdk::task(method = 10)]
#[derive(Debug)]
pub struct CompressTask {
    /// The data: the start of a client-data allocation (ignored if
    /// `input_len` is 0).
    pub input: ShmPtr,
    /// Bytes of data.
    pub input_len: u64,
    /// Where the frame goes: the start of another client-data allocation
    /// (ignored if `output_cap` is 0).
    pub output: ShmPtr,
    /// Bytes `output` holds; [`frame::max_frame_len`] of `input_len` always
    /// suffices.
    pub output_cap: u64,
    /// [`CODEC_POOL_DEFAULT`], [`CODEC_LZ4`] or [`CODEC_DEFLATE`].
    pub codec: u32,
    /// Bytes of the frame written to `output`.
    #[output]
    pub output_len: u64,
    /// The frame's algorithm ([`frame::ALGO_STORED`] if the codec did not
    /// shrink the data).
    #[output]
    pub algorithm: u32,
}

/// Decompresses a frame in a client-data buffer into another (method
/// `kDecompress`).
#[chi_sdk::task(method = 11)]
#[derive(Debug)]
pub struct DecompressTask {
    /// The frame: the start of a client-data allocation.
    pub input: ShmPtr,
    /// Bytes of the frame.
    pub input_len: u64,
    /// Where the data goes: the start of another client-data allocation
    /// (ignored if `output_cap` is 0).
    pub output: ShmPtr,
    /// Bytes `output` holds; the frame's original length (bytes 8..16 of its
    /// header) suffices.
    pub output_cap: u64,
    /// Bytes of data written to `output`.
    #[output]
    pub output_len: u64,
}

/// The container of a `chimaera_compress` pool.
#[derive(Debug)]
pub struct CompressContainer {
    pool_name: String,
    params: CreateParams,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

#[chi_sdk::chimod]
impl CompressContainer {
    /// kCreate: checks the parameters and sets up the local queues.
    fn create(ctx: &mut CreateCtx<'_>, params: CreateParams) -> Result<Self, String> {
        if params.level > frame::MAX_LEVEL {
            return Err(format!(
                "level {} is out of range: DEFLATE levels are 0..={}",
                params.level,
                frame::MAX_LEVEL
            ));
        }
        ctx.create_local_queue(SMALL_QUEUE, 1, Priority::LowLatency)?;
        ctx.create_local_queue(BULK_QUEUE, 2, Priority::HighLatency)?;
        chi_sdk::tracing::info!(
            pool = ctx.pool_name(),
            codec = %params.codec,
            level = params.level,
            "compress container created"
        );
        Ok(CompressContainer {
            pool_name: ctx.pool_name().to_owned(),
            params,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        })
    }

    /// kCompress.
    fn compress(&self, task: &mut CompressTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        let codec = match task.codec {
            CODEC_POOL_DEFAULT => self.params.codec,
            id => u8::try_from(id)
                .ok()
                .and_then(Codec::from_algorithm)
                .ok_or_else(|| {
                    Failure::new(
                        code::BAD_TASK,
                        format!(
                            "unknown codec {id}: use {CODEC_POOL_DEFAULT} (the pool's, {}), \
                             {CODEC_LZ4} (lz4) or {CODEC_DEFLATE} (deflate)",
                            self.params.codec
                        ),
                    )
                })?,
        };
        let (input, output) = buffers(task.input, task.input_len, task.output, task.output_cap)?;
        let level = self.params.level;
        let frame = match codec {
            Codec::Lz4 => frame::encode(input, codec, level),
            Codec::Deflate => on_codec_thread(|| frame::encode(input, codec, level))?,
        };
        if frame.len() > output.len() {
            return Err(Failure::new(
                errcode::OUTPUT_TOO_SMALL,
                format!(
                    "pool '{}': the output buffer holds {} bytes; the compressed frame needs {} \
                     (input length + {} always suffices)",
                    self.pool_name,
                    output.len(),
                    frame.len(),
                    frame::HEADER_LEN
                ),
            ));
        }
        output[..frame.len()].copy_from_slice(&frame);
        task.output_len = frame.len() as u64;
        task.algorithm = u32::from(frame[4]);
        self.count(input.len(), frame.len());
        Ok(())
    }

    /// Compress runs on a lane chosen by its input's size.
    fn monitor_compress(&self, mode: MonitorMode, task: &CompressTask, ctx: &mut RunCtx) {
        schedule(mode, task.input, task.input_len, ctx);
    }

    /// kDecompress.
    fn decompress(&self, task: &mut DecompressTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        let (input, output) = buffers(task.input, task.input_len, task.output, task.output_cap)?;
        let corrupt = |e: FrameError| {
            let code = match e {
                FrameError::OutputTooSmall { .. } => errcode::OUTPUT_TOO_SMALL,
                _ => errcode::CORRUPT_DATA,
            };
            Failure::new(code, format!("pool '{}': {e}", self.pool_name))
        };
        let header = frame::header(input).map_err(corrupt)?;
        let n = if header.algorithm == frame::ALGO_DEFLATE {
            on_codec_thread(|| frame::decode_into(input, output))?
        } else {
            frame::decode_into(input, output)
        }
        .map_err(corrupt)?;
        task.output_len = n as u64;
        self.count(input.len(), n);
        Ok(())
    }

    /// Decompress runs on a lane chosen by its input's size.
    fn monitor_decompress(&self, mode: MonitorMode, task: &DecompressTask, ctx: &mut RunCtx) {
        schedule(mode, task.input, task.input_len, ctx);
    }
}

impl CompressContainer {
    /// Counts a call's bytes (logged when the container is destroyed).
    fn count(&self, read: usize, written: usize) {
        self.bytes_in.fetch_add(read as u64, Ordering::Relaxed);
        self.bytes_out.fetch_add(written as u64, Ordering::Relaxed);
    }
}

impl Drop for CompressContainer {
    fn drop(&mut self) {
        chi_sdk::tracing::info!(
            pool = %self.pool_name,
            bytes_in = self.bytes_in.load(Ordering::Relaxed),
            bytes_out = self.bytes_out.load(Ordering::Relaxed),
            "compress container destroyed"
        );
    }
}

/// Monitor of both methods: large inputs to the bulk lanes (spread by buffer),
/// small ones to the small lane; the load estimate assumes ~200 MB/s.
fn schedule(mode: MonitorMode, input: ShmPtr, input_len: u64, ctx: &mut RunCtx) {
    match mode {
        MonitorMode::LocalSchedule => {
            let lane = if input_len >= BULK_THRESHOLD {
                ctx.lane_by_hash(BULK_QUEUE, input.to_bits() >> 4)
            } else {
                ctx.lane(SMALL_QUEUE, 0)
            };
            if let Ok(lane) = lane {
                ctx.route(lane);
            }
        }
        MonitorMode::EstLoad => ctx.set_est_load_us(1.0 + input_len as f64 / 200.0),
        MonitorMode::GlobalSchedule | MonitorMode::Cleanup => {}
    }
}

/// Runs `f` on a helper thread with a [`CODEC_STACK`] stack (for DEFLATE,
/// whose state does not fit a coroutine stack) and waits for it.
fn on_codec_thread<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R, Failure> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("compress-codec".into())
            .stack_size(CODEC_STACK)
            .spawn_scoped(s, f)
            .map_err(|e| Failure::new(code::FAILED, format!("cannot start a codec thread: {e}")))?;
        handle.join().map_err(|payload| {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic".to_owned());
            Failure::new(code::PANICKED, format!("the codec panicked: {msg}"))
        })
    })
}

/// The input and output buffers of a task, checked (see [`client_buffer`]) and
/// disjoint.
fn buffers<'a>(
    input: ShmPtr,
    input_len: u64,
    output: ShmPtr,
    output_cap: u64,
) -> Result<(&'a [u8], &'a mut [u8]), Failure> {
    let inp = client_buffer("input", input, input_len)?;
    let out = client_buffer("output", output, output_cap)?;
    if let (Some(i), Some(o)) = (inp, out)
        && i.shm() == o.shm()
    {
        return Err(Failure::new(
            code::BAD_TASK,
            format!("the output buffer {output} is the input buffer: pass two allocations"),
        ));
    }
    let input: &[u8] = match inp {
        // SAFETY: `client_buffer` checked that `p` starts a live client-data
        // allocation of at least `input_len` bytes, inside the mapped segment;
        // any byte is a valid u8. The client does not write the input while the
        // task runs (the protocol; a client that does gets garbage, not UB in
        // this process's own memory, which it cannot reach).
        Some(p) => unsafe { std::slice::from_raw_parts(p.as_ptr(), input_len as usize) },
        None => &[],
    };
    let output: &mut [u8] = match out {
        // SAFETY: as for the input, for `output_cap` bytes; the two buffers are
        // distinct live allocations each at least as long as its length, so the
        // slices do not overlap, and the client does not touch the output until
        // the task completes.
        Some(p) => unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), output_cap as usize) },
        None => &mut [],
    };
    Ok((input, output))
}

/// Checks a buffer named by a task: `len` bytes at `ptr`, which must start a
/// live allocation of the client-data segment that holds at least `len` bytes.
/// `None` for an empty buffer (whose pointer is not looked at).
fn client_buffer(what: &str, ptr: ShmPtr, len: u64) -> Result<Option<FullPtr<u8>>, Failure> {
    if len == 0 {
        return Ok(None);
    }
    let bad = |msg: String| Failure::new(code::BAD_TASK, format!("{what} buffer: {msg}"));
    let alloc = chi_sdk::container::client_data_allocator()
        .map_err(|e| Failure::new(code::FAILED, format!("{what} buffer: {e}")))?;
    if ptr.is_null() {
        return Err(bad(format!("null pointer with length {len}")));
    }
    if ptr.segment() != alloc.segment_id() {
        return Err(bad(format!(
            "{ptr} is not in the client-data segment ({}): allocate buffers with \
             Client::allocate_buffer",
            alloc.segment_id()
        )));
    }
    alloc.owner_of(ptr).map_err(|e| {
        bad(format!(
            "{ptr} is not the start of a live client-data allocation ({e})"
        ))
    })?;
    let size = alloc
        .usable_size(ptr)
        .map_err(|e| bad(format!("{ptr}: {e}")))?;
    if len > size {
        return Err(bad(format!(
            "length {len} runs past the end of the allocation at {ptr} ({size} bytes)"
        )));
    }
    if usize::try_from(len).is_err() {
        return Err(bad(format!("length {len} does not fit this process")));
    }
    ptr.resolve_slice::<u8>(len)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}
