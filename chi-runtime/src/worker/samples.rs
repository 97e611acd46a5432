//! Measured task steps, the input of the performance models
//! ([`crate::reinforcement`]).
//!
//! # Design
//!
//! Reading the clock costs the task path some 20 ns a read, so a worker
//! measures one task in `SAMPLE_EVERY` (all of its first `WARM_UP`),
//! picked at random (a fixed period would measure the same kind of task
//! every time when kinds alternate): the run time of its first step
//! (a task that blocks or yields is measured up to its first suspension),
//! and, if its container has a monitor, the estimate of Monitor(EstLoad) for
//! it. Samples gather in the worker's own buffer and move to the one the
//! reinforcement thread drains every `FLUSH_AT` samples, at once for a
//! step measured or estimated slower than `FLUSH_SLOWER_THAN_NS`, and
//! before the worker sleeps; at most `MAX_QUEUED` wait there (a reinforcement thread
//! that is off or late costs memory no further).

use std::sync::atomic::Ordering;
use std::time::Instant;

use chi_sdk::abi::MonitorMode;
use chi_sdk::task::{TaskHeader, code};

use super::Worker;
use crate::models::{NO_LANE, Sample};
use crate::pool::Container;

/// One task in this many is measured.
pub(crate) const SAMPLE_EVERY: u32 = 16;
/// Tasks a worker measures all before it measures one in [`SAMPLE_EVERY`].
const WARM_UP: u32 = 64;
/// Samples a worker gathers before it hands them over.
const FLUSH_AT: usize = 32;
/// A sample of a step this slow (in ns) is handed over at once.
const FLUSH_SLOWER_THAN_NS: u64 = 50_000;
/// Samples waiting for the reinforcement thread at most, per worker.
const MAX_QUEUED: usize = 4096;

/// A measurement under way: what is known before the step, and when it began.
pub(super) struct Probe {
    sample: Sample,
    started: Instant,
}

impl Worker {
    /// Starts measuring the task about to run if its turn came (one in
    /// [`SAMPLE_EVERY`]).
    #[inline(always)]
    pub(super) fn probe(
        &mut self,
        container: &Container,
        task: *mut TaskHeader,
        from_lane: bool,
    ) -> Option<Probe> {
        // A xorshift step, not a counter: a fixed period would measure the
        // same kind of task every time when kinds alternate.
        let mut x = self.sample_tick;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.sample_tick = x;
        // The first tasks of a worker are all measured: the models start
        // from something.
        self.started = self.started.saturating_add(1);
        if !x.is_multiple_of(SAMPLE_EVERY) && self.started > WARM_UP {
            return None;
        }
        Some(self.start_probe(container, task, from_lane))
    }

    #[cold]
    fn start_probe(
        &mut self,
        container: &Container,
        task: *mut TaskHeader,
        from_lane: bool,
    ) -> Probe {
        // SAFETY: the caller validated the task; plain reads of its header.
        let h = unsafe { &*task };
        let mut est_ns = 0;
        if let Some(monitor) = container.module.api.monitor {
            let mut ctx = self.ctx(container, std::ptr::null_mut());
            ctx.pool_id = h.pool_id;
            // SAFETY: the container's state and the validated task are live;
            // the monitor only writes `ctx`.
            let rc =
                unsafe { monitor(container.state, MonitorMode::EstLoad as u32, task, &mut ctx) };
            if rc != code::OK {
                self.monitor_failed(container, h, MonitorMode::EstLoad, rc);
            } else if ctx.est_load_us.is_finite() && ctx.est_load_us > 0.0 {
                est_ns = (ctx.est_load_us * 1e3).min(1e15) as u64;
            }
        }
        Probe {
            sample: Sample {
                pool: h.pool_id.0,
                method: h.method,
                // Relaxed: the lane the client pushed the task onto (a hint).
                lane: if from_lane {
                    h.lane.load(Ordering::Relaxed)
                } else {
                    NO_LANE
                },
                ns: 0,
                est_ns,
            },
            started: Instant::now(),
        }
    }

    /// Ends a measurement begun by [`probe`](Self::probe).
    #[cold]
    pub(super) fn record(&mut self, p: Probe) {
        let mut s = p.sample;
        s.ns = p.started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.samples.push(s);
        // A slow task is news (and rare enough that handing it over at once
        // costs nothing): the model learns it before the worker next sleeps.
        if self.samples.len() >= FLUSH_AT
            || s.ns >= FLUSH_SLOWER_THAN_NS
            || s.est_ns >= FLUSH_SLOWER_THAN_NS
        {
            self.flush_samples();
        }
    }

    /// Hands the gathered samples to the reinforcement thread.
    pub(super) fn flush_samples(&mut self) {
        if self.samples.is_empty() {
            return;
        }
        let mut q = self.stats.samples.lock().unwrap_or_else(|e| e.into_inner());
        let room = MAX_QUEUED.saturating_sub(q.len());
        let n = self.samples.len().min(room);
        q.extend(self.samples.drain(..n));
        self.samples.clear();
    }
}
