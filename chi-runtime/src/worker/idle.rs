//! The idle worker's back-off: with nothing to do it polls its lanes, then
//! polls yielding the CPU between clock reads, and once `idle.busy_poll` has
//! passed since its last task it sleeps on its doorbell.
//!
//! # Why the poll yields
//!
//! The kernel may wake a worker on the CPU of the client that rang it (it
//! places a wakee next to its waker when it finds no idle CPU cheaply, even
//! with another CPU idle). Such a worker, polling for the rest of its busy
//! period after it answered, would hold the CPU its client needs to see the
//! answer: the first task after idleness then took the whole busy period
//! longer (`docs/benchmarks.md`, "The first task after idleness"). So past
//! [`YIELD_AFTER`] of idleness the worker yields the CPU once per clock read;
//! a sync round trip's gap between two tasks stays well within the window
//! that polls alone, and makes no system call. (After remote work the
//! worker also looks at the peer socket every few polls, and yields after
//! a look that found nothing: `worker/remote.rs`.)

use std::time::{Duration, Instant};

/// Empty polls between two clock reads of an idle worker: an idle poll
/// reacts to a push within a few nanoseconds instead of sitting in a clock
/// read.
pub const CLOCK_EVERY: u32 = 128;

/// How long an idle worker polls alone before it yields the CPU between
/// clock reads.
pub const YIELD_AFTER: Duration = Duration::from_micros(5);

/// Turns of a busy worker's loop between two looks at the peer socket while
/// it holds its claim from its busy window (`worker/remote.rs`); a power of
/// two dividing the loop's `STALL_CHECK_EVERY`, so the two checks share one
/// test of the turn count.
pub const BUSY_LOOK_EVERY: u64 = 256;

/// What an idle worker does after an empty poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    /// Poll again.
    Poll,
    /// Yield the CPU, then poll again.
    Yield,
    /// Sleep on the doorbell.
    Sleep,
}

impl Idle {
    /// What to do after `idle` without a task, with a busy period of `busy`.
    pub fn after(idle: Duration, busy: Duration) -> Idle {
        if idle >= busy {
            Idle::Sleep
        } else if idle >= YIELD_AFTER {
            Idle::Yield
        } else {
            Idle::Poll
        }
    }
}

/// The idle period of a worker's loop: since when it found nothing to do, and
/// its empty polls since the last clock read.
#[derive(Debug, Default)]
pub struct IdleClock {
    since: Option<Instant>,
    polls: u32,
}

impl IdleClock {
    /// The worker took work (or slept): the next empty poll starts a new
    /// idle period.
    #[inline]
    pub fn worked(&mut self) {
        self.since = None;
        self.polls = 0;
    }

    /// The worker resumed a task of its own: the clock is read again only
    /// after [`CLOCK_EVERY`] empty polls, but the idle period goes on.
    #[inline]
    pub fn stepped(&mut self) {
        self.polls = 0;
    }

    /// One empty poll, `busy` the busy period: what to do next. Reads the
    /// clock once every [`CLOCK_EVERY`] calls.
    #[inline]
    pub fn empty_poll(&mut self, busy: Duration) -> Idle {
        self.polls = self.polls.wrapping_add(1);
        if !self.polls.is_multiple_of(CLOCK_EVERY) {
            return Idle::Poll;
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        Idle::after(since.elapsed(), busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: fn(u64) -> Duration = Duration::from_micros;

    #[test]
    fn the_default_busy_period_polls_then_yields_then_sleeps() {
        let busy = US(100);
        assert_eq!(Idle::after(US(0), busy), Idle::Poll);
        assert_eq!(Idle::after(US(4), busy), Idle::Poll);
        assert_eq!(Idle::after(YIELD_AFTER, busy), Idle::Yield);
        assert_eq!(Idle::after(US(99), busy), Idle::Yield);
        assert_eq!(Idle::after(US(100), busy), Idle::Sleep);
    }

    #[test]
    fn a_short_busy_period_never_yields() {
        assert_eq!(Idle::after(US(2), US(3)), Idle::Poll);
        assert_eq!(Idle::after(US(3), US(3)), Idle::Sleep);
        assert_eq!(Idle::after(US(0), Duration::ZERO), Idle::Sleep);
    }

    #[test]
    fn the_clock_is_read_once_per_clock_every_polls() {
        let mut c = IdleClock::default();
        for _ in 1..CLOCK_EVERY {
            assert_eq!(c.empty_poll(Duration::ZERO), Idle::Poll);
            assert!(c.since.is_none(), "no clock read before CLOCK_EVERY polls");
        }
        // The CLOCK_EVERY-th poll reads the clock: with no busy period, sleep.
        assert_eq!(c.empty_poll(Duration::ZERO), Idle::Sleep);
        assert!(c.since.is_some());
    }

    #[test]
    fn work_restarts_the_idle_period_and_a_step_does_not() {
        let mut c = IdleClock::default();
        for _ in 0..CLOCK_EVERY {
            c.empty_poll(Duration::from_secs(60));
        }
        let since = c.since;
        assert!(since.is_some());
        c.stepped();
        assert_eq!((c.since, c.polls), (since, 0));
        c.worked();
        assert_eq!((c.since, c.polls), (None, 0));
    }
}
