//! The container of a compress pool: the code the runtime runs.
//!
//! Each handler checks the task's buffers (`buffers`), then encodes or decodes
//! a [`frame`] between them on the task's coroutine; the container asks for
//! coroutine stacks of [`CODEC_STACK`] (DEFLATE's state does not fit the
//! runtime's default 64 KiB). The monitors route by the input's size. The
//! crate doc says who owns the buffers and what is checked.

mod buffers;

use std::sync::atomic::{AtomicU64, Ordering};

use chi_sdk::abi::{MonitorMode, QueueId, RunCtx};
use chi_sdk::container::CreateCtx;
use chi_sdk::queue::Priority;
use chi_sdk::shm::ShmPtr;
use chi_sdk::task::{Failure, code};

use crate::frame::{self, Codec, FrameError};
use crate::tasks::*;
use buffers::buffers;

/// The low-latency local queue (one lane) for inputs under [`BULK_THRESHOLD`].
pub const SMALL_QUEUE: QueueId = QueueId(0);
/// The high-latency local queue (two lanes) for larger inputs.
pub const BULK_QUEUE: QueueId = QueueId(1);
/// Inputs of this many bytes or more run on [`BULK_QUEUE`].
pub const BULK_THRESHOLD: u64 = 64 << 10;

/// Coroutine stack of the container's tasks (DEFLATE needs more than the
/// runtime's default).
pub const CODEC_STACK: usize = 1 << 20;

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
        let (input, output) = buffers(task.input, task.input_len, task.output, task.output_cap)?;
        let level = self.params.level;
        let frame = frame::encode(input, codec, level);
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
        let n = frame::decode_into(input, output).map_err(corrupt)?;
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
