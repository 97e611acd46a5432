//! The lanes a worker pops, sorted into active and cold ones.
//!
//! # Design
//!
//! A worker holds its process-queue lanes as a [`Consumer`] and keeps them in
//! two lists of indices into the consumer's lanes: *active* lanes, popped
//! round robin, and *cold* lanes, found empty `COLD_AFTER` times in a row.
//! A worker with many lanes and work on few of them so stops paying a failed
//! pop per empty lane per task. Cold lanes are looked at every `COLD_CHECK`
//! pops (and before the worker sleeps): one that holds work moves back to the
//! active list. Only the worker's own thread touches its lane sets.

use chi_sdk::queue::Consumer;
use chi_sdk::shm::ShmPtr;

/// Consecutive empty polls after which an active lane goes cold.
const COLD_AFTER: u32 = 256;
/// Iterations between looks at the cold lanes.
const COLD_CHECK: u32 = 64;

/// The worker's view of its lanes: indices into `Consumer::lanes()`.
pub(super) struct LaneSets {
    active: Vec<usize>,
    cold: Vec<usize>,
    misses: Vec<u32>,
    next: usize,
    tick: u32,
}

impl LaneSets {
    pub(super) fn new(n: usize) -> LaneSets {
        LaneSets {
            active: (0..n).collect(),
            cold: Vec::new(),
            misses: vec![0; n],
            next: 0,
            tick: 0,
        }
    }

    /// Pops the next task from the active lanes (round robin), warming cold lanes
    /// that have work every few calls.
    #[inline]
    pub(super) fn pop(&mut self, c: &mut Consumer) -> Option<ShmPtr> {
        self.tick = self.tick.wrapping_add(1);
        if self.tick.is_multiple_of(COLD_CHECK) || self.active.is_empty() {
            self.warm(c);
        }
        let n = self.active.len();
        for k in 0..n {
            let slot = (self.next + k) % n;
            let i = self.active[slot];
            if let Some(v) = c.pop_lane(i) {
                self.misses[i] = 0;
                self.next = (slot + 1) % n;
                return Some(v);
            }
            self.misses[i] += 1;
        }
        if n > 1 {
            let misses = &self.misses;
            let (hot, cold): (Vec<usize>, Vec<usize>) =
                self.active.iter().partition(|&&i| misses[i] < COLD_AFTER);
            if !cold.is_empty() {
                self.active = hot;
                self.cold.extend(cold);
                self.next = 0;
            }
        }
        None
    }

    /// Moves cold lanes that hold work back to the active list.
    pub(super) fn warm(&mut self, c: &Consumer) {
        let lanes = c.lanes();
        let q = c.queue();
        let mut k = 0;
        while k < self.cold.len() {
            let i = self.cold[k];
            if q.lane_len(lanes[i]) > 0 {
                self.misses[i] = 0;
                self.active.push(self.cold.swap_remove(k));
            } else {
                k += 1;
            }
        }
    }
}
