//! Lane cells that a producer claimed and never published.
//!
//! # Design
//!
//! A push claims a lane cell, then publishes the word into it; a client killed
//! between the two leaves a claimed cell that never fills, and the lane stops
//! behind it (the consumer pops in order). A worker cannot tell a dead producer
//! from a slow one, so it waits and then skips the cell
//! ([`Consumer::skip_stalled`]):
//!
//! * after `SKIP_AFTER_DEATH` if a client died since the cell was first seen
//!   stalled — the reaper's epoch ([`crate::reaper::ReaperStats::epoch`])
//!   moved — since then the producer is most likely dead;
//! * after `SKIP_ANYWAY` in any case.
//!
//! A cell unpublished for less than `HELD_AFTER` is a push in progress; one
//! held longer makes an idle worker nap instead of spin. The worker looks every
//! few thousand iterations while busy, and before it sleeps.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chi_sdk::queue::Consumer;

use super::supervision::WorkerStats;

/// A claimed but unpublished lane cell is skipped after this long if a client
/// died since it was first seen (the producer is then most likely dead)...
const SKIP_AFTER_DEATH: Duration = Duration::from_millis(500);
/// ...and after this long in any case (a producer preempted between its claim
/// and its publication for this long is gone or stopped).
const SKIP_ANYWAY: Duration = Duration::from_secs(30);

/// A claimed cell unpublished for this long holds its lane up (shorter: a push
/// in progress).
const HELD_AFTER: Duration = Duration::from_millis(2);
/// Per lane of a worker (index into its consumer's lanes): a claimed cell seen
/// unpublished at (position, since, reaper epoch then).
pub(super) struct CellStalls(Vec<Option<(u64, Instant, u64)>>);

impl CellStalls {
    /// Nothing seen yet on any of `lanes` lanes.
    pub(super) fn new(lanes: usize) -> CellStalls {
        CellStalls(vec![None; lanes])
    }

    /// Looks for lanes of `consumer` held up by a claimed but unpublished cell
    /// and skips those whose producer is most likely dead (see
    /// [`SKIP_AFTER_DEATH`]); `epoch` is the reaper's epoch now, `stats` the
    /// worker's. Returns whether some lane is still held up.
    pub(super) fn check(
        &mut self,
        consumer: &mut Consumer,
        epoch: u64,
        stats: &WorkerStats,
    ) -> bool {
        let mut held = false;
        for i in 0..consumer.lanes().len() {
            let Some(pos) = consumer.stalled_at(i) else {
                self.0[i] = None;
                continue;
            };
            let (at, since, epoch0) = match self.0[i] {
                Some(s) if s.0 == pos => s,
                _ => {
                    let s = (pos, Instant::now(), epoch);
                    self.0[i] = Some(s);
                    s
                }
            };
            let age = since.elapsed();
            if ((age >= SKIP_AFTER_DEATH && epoch > epoch0) || age >= SKIP_ANYWAY)
                && consumer.skip_stalled(i, at)
            {
                self.0[i] = None;
                stats.cells_skipped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    worker = stats.id,
                    lane = consumer.lanes()[i],
                    position = at,
                    stalled_ms = age.as_millis() as u64,
                    "skipped a lane cell that a client claimed and never filled (the client \
                     died in the middle of a push); the lane moves on"
                );
                continue;
            }
            // A cell claimed a moment ago is a push in progress, not a hold-up:
            // only one that stays unpublished makes the worker nap instead of spin.
            held |= age >= HELD_AFTER;
        }
        held
    }
}
