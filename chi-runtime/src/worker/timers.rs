//! Timers of blocked tasks (a sleep, a wait with a deadline, a periodic
//! task between its runs): when to wake which slot of the worker.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Timers of blocked tasks: when to wake which slot.
#[derive(Default)]
pub(crate) struct Timers(BinaryHeap<Reverse<(Instant, u32)>>);

impl Timers {
    /// Wakes slot `s` at `at`.
    pub(crate) fn add(&mut self, at: Instant, s: u32) {
        self.0.push(Reverse((at, s)));
    }

    /// Calls `wake` with the slots whose timer passed.
    pub(crate) fn fire(&mut self, now: Instant, mut wake: impl FnMut(u32)) {
        while let Some(Reverse((at, s))) = self.0.peek().copied() {
            if at > now {
                break;
            }
            self.0.pop();
            wake(s);
        }
    }

    /// The next timer.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.0.peek().map(|Reverse((at, _))| *at)
    }

    /// Whether no timer is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
