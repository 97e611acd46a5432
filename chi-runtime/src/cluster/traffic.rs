//! Counters of what the peer link moves, for `status` (`peer_traffic`).
//!
//! The peer thread and the workers write them (when they hand a frame to
//! the transport and when they decode one: the workers send their own
//! batches and take some of the frames received, `super::intake`); `status`
//! reads them from the control thread. They are statistics: Relaxed,
//! nothing is ordered by them; one add per count and frame, never per
//! task.

use std::sync::atomic::{AtomicU64, Ordering};

use chi_sdk::proto::PeerTraffic;

use super::frame::Kind;

/// The counters (see the module doc).
#[derive(Debug, Default)]
pub struct Traffic {
    frames_out: AtomicU64,
    frames_in: AtomicU64,
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
    batches_out: AtomicU64,
    batches_in: AtomicU64,
    batch_bytes_out: AtomicU64,
    batch_bytes_in: AtomicU64,
    tasks_out: AtomicU64,
    tasks_in: AtomicU64,
    replies_out: AtomicU64,
    replies_in: AtomicU64,
    batches_in_by_workers: AtomicU64,
}

/// Adds `n` to a counter.
fn add(c: &AtomicU64, n: u64) {
    // Relaxed: a statistic; `status` reads it with no ordering against
    // anything else.
    c.fetch_add(n, Ordering::Relaxed);
}

impl Traffic {
    /// Counts a frame of `kind` and `bytes` bytes sent, carrying `records`
    /// records (batches; 0 for the other kinds).
    pub fn sent(&self, kind: Kind, bytes: usize, records: usize) {
        add(&self.frames_out, 1);
        add(&self.bytes_out, bytes as u64);
        match kind {
            Kind::TaskBatch => {
                add(&self.batches_out, 1);
                add(&self.batch_bytes_out, bytes as u64);
                add(&self.tasks_out, records as u64);
            }
            Kind::ReplyBatch => {
                add(&self.batches_out, 1);
                add(&self.batch_bytes_out, bytes as u64);
                add(&self.replies_out, records as u64);
            }
            _ => {}
        }
    }

    /// Counts a frame received (decoded), as [`Traffic::sent`].
    pub fn received(&self, kind: Kind, bytes: usize, records: usize) {
        add(&self.frames_in, 1);
        add(&self.bytes_in, bytes as u64);
        match kind {
            Kind::TaskBatch => {
                add(&self.batches_in, 1);
                add(&self.batch_bytes_in, bytes as u64);
                add(&self.tasks_in, records as u64);
            }
            Kind::ReplyBatch => {
                add(&self.batches_in, 1);
                add(&self.batch_bytes_in, bytes as u64);
                add(&self.replies_in, records as u64);
            }
            _ => {}
        }
    }

    /// Counts a batch frame a worker took itself (also counted by
    /// [`Traffic::received`]).
    pub fn taken_by_worker(&self) {
        add(&self.batches_in_by_workers, 1);
    }

    /// The counters now.
    pub fn snapshot(&self) -> PeerTraffic {
        // Relaxed: statistics (see `add`).
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PeerTraffic {
            frames_out: g(&self.frames_out),
            frames_in: g(&self.frames_in),
            bytes_out: g(&self.bytes_out),
            bytes_in: g(&self.bytes_in),
            batches_out: g(&self.batches_out),
            batches_in: g(&self.batches_in),
            batch_bytes_out: g(&self.batch_bytes_out),
            batch_bytes_in: g(&self.batch_bytes_in),
            tasks_out: g(&self.tasks_out),
            tasks_in: g(&self.tasks_in),
            replies_out: g(&self.replies_out),
            replies_in: g(&self.replies_in),
            // Not the peer thread's: the membership adds it (the
            // authenticator's counter).
            connections_refused: 0,
            batches_in_by_workers: g(&self.batches_in_by_workers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_count_their_records_and_bytes() {
        let t = Traffic::default();
        t.sent(Kind::Heartbeat, 24, 0);
        t.sent(Kind::TaskBatch, 100, 3);
        t.sent(Kind::ReplyBatch, 60, 2);
        t.received(Kind::TaskBatch, 90, 1);
        t.received(Kind::Hello, 24, 0);
        let s = t.snapshot();
        assert_eq!((s.frames_out, s.bytes_out), (3, 184));
        assert_eq!((s.batches_out, s.batch_bytes_out), (2, 160));
        assert_eq!((s.tasks_out, s.replies_out), (3, 2));
        assert_eq!((s.frames_in, s.bytes_in), (2, 114));
        assert_eq!((s.batches_in, s.batch_bytes_in, s.tasks_in), (1, 90, 1));
        assert_eq!(s.replies_in, 0);
    }
}
