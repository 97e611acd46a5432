//! The container of a compress pool: the code the runtime runs.
//!
//! Each handler checks the task's buffers (`buffers`), then encodes or decodes
//! a [`frame`] between them on the task's coroutine; the container asks for
//! coroutine stacks of [`CODEC_STACK`] (DEFLATE's state does not fit the
//! runtime's default 64 KiB). The monitors route by the input's size. The
//! crate doc says who owns the buffers and what is checked.

use std::sync::atomic::{AtomicU64, Ordering};

use chi_sdk::abi::{MonitorMode, QueueId, RunCtx};
use chi_sdk::bytes::ClientBytes;
use chi_sdk::container::CreateCtx;
use chi_sdk::queue::Priority;
use chi_sdk::task::{Failure, code};

use crate::frame::{self, Codec, FrameError};
use crate::tasks::*;

/// The low-latency local queue (one lane) for inputs under [`BULK_THRESHOLD`].
pub const SMALL_QUEUE: QueueId = QueueId(0);
/// The high-latency local queue (two lanes) for larger inputs.
pub const BULK_QUEUE: QueueId = QueueId(1);
/// Inputs of this many bytes or more run on [`BULK_QUEUE`].
pub const BULK_THRESHOLD: u64 = 64 << 10;

/// Coroutine stack of the container's tasks (DEFLATE needs more than the
/// runtime's default).
pub const CODEC_STACK: usize = 1 << 20;

/// The most a frame's original length may exceed its size by (DEFLATE's
/// best ratio is about 1032 to 1; LZ4's about 255).
pub const MAX_RATIO: u64 = 1100;

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
        ctx.set_stack_size(CODEC_STACK)?;
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
        let input = task.input.get()?;
        let frame = frame::encode(&input, codec, self.params.level);
        let mut output = task.output.get_mut()?;
        output.set_len(0)?;
        output.write(&frame)?;
        task.algorithm = u32::from(frame[4]);
        self.count(input.len(), frame.len());
        Ok(())
    }

    fn monitor_compress(&self, mode: MonitorMode, task: &CompressTask, ctx: &mut RunCtx) {
        schedule(mode, &task.input, ctx);
    }

    /// kDecompress.
    fn decompress(&self, task: &mut DecompressTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        let corrupt = |e: FrameError| {
            Failure::new(
                errcode::CORRUPT_DATA,
                format!("pool '{}': {e}", self.pool_name),
            )
        };
        let input = task.input.get()?;
        let original_len = frame::header(&input).map_err(corrupt)?.original_len;
        // No codec expands data more than about a thousand times: a header
        // that says otherwise is not grown into (it would take memory for
        // nothing).
        let most = (input.len() as u64)
            .saturating_mul(MAX_RATIO)
            .saturating_add(1024);
        let needed = usize::try_from(original_len)
            .ok()
            .filter(|&n| n as u64 <= most)
            .ok_or_else(|| {
                Failure::new(
                    errcode::CORRUPT_DATA,
                    format!(
                        "pool '{}': corrupt frame: declares {original_len} bytes of data from a \
                         {}-byte frame",
                        self.pool_name,
                        input.len()
                    ),
                )
            })?;
        let mut output = task.output.get_mut()?;
        output.set_len(0)?;
        // A buffer too small grows (the client frees the new one with the task).
        output.reserve(needed)?;
        let n = frame::decode_into(&input, output.as_mut_slice()).map_err(corrupt)?;
        output.set_len(n)?;
        self.count(input.len(), n);
        Ok(())
    }

    fn monitor_decompress(&self, mode: MonitorMode, task: &DecompressTask, ctx: &mut RunCtx) {
        schedule(mode, &task.input, ctx);
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
fn schedule(mode: MonitorMode, input: &ClientBytes, ctx: &mut RunCtx) {
    let input_len = input.len();
    match mode {
        MonitorMode::LocalSchedule => {
            if input_len >= BULK_THRESHOLD {
                ctx.route_by_hash(BULK_QUEUE, input.ptr().to_bits() >> 4);
            } else {
                ctx.route_to(SMALL_QUEUE, 0);
            }
        }
        MonitorMode::EstLoad => ctx.set_est_load_us(1.0 + input_len as f64 / 200.0),
        MonitorMode::GlobalSchedule | MonitorMode::Cleanup => {}
    }
}
