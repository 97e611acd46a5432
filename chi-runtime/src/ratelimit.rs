//! Rate-limited logging: at most one message per period from one call site, with
//! a count of the ones held back.
//!
//! ```
//! use std::time::Duration;
//! use chi_runtime::ratelimit::RateLimit;
//!
//! static LANE_FULL: RateLimit = RateLimit::new(Duration::from_secs(1));
//!
//! if let Some(suppressed) = LANE_FULL.allow() {
//!     tracing::warn!(suppressed, "lane full; the task waits");
//! }
//! ```
//!
//! # Design
//!
//! Two atomic words: `next`, the monotonic time (ns) before which every call is
//! refused, and `suppressed`, the calls refused since the last allowed one. A call
//! at or after `next` tries to move `next` one period ahead with a CAS; the one
//! call that wins is allowed and takes the `suppressed` count (swap to 0), every
//! other call counts itself in `suppressed`. No lock, no system call (the clock is
//! the vDSO's `CLOCK_MONOTONIC`); a refused call costs one load and one
//! `fetch_add`, so a limiter may sit on a hot error path.
//!
//! A call refused while the winner is between its CAS and its swap is counted in
//! the winner's report rather than the next one: the counts add up, and a count
//! is never lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Allows one event per period; counts the others. `const`-constructible, so it
/// can be a `static` next to the message it limits. Thread-safe and lock-free.
#[derive(Debug)]
pub struct RateLimit {
    /// The period in nanoseconds (at least 1).
    period_ns: u64,
    /// Monotonic time (ns) from which the next call is allowed.
    next_ns: AtomicU64,
    /// Calls refused since the last allowed one.
    suppressed: AtomicU64,
}

impl RateLimit {
    /// A limiter allowing one call per `per` (the first call is allowed). A zero
    /// period allows every call.
    pub const fn new(per: Duration) -> RateLimit {
        let nanos = per.as_nanos();
        let period_ns = if nanos > u64::MAX as u128 {
            u64::MAX
        } else if nanos == 0 {
            1
        } else {
            nanos as u64
        };
        RateLimit {
            period_ns,
            next_ns: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// A limiter allowing one call per second.
    pub const fn per_second() -> RateLimit {
        RateLimit::new(Duration::from_secs(1))
    }

    /// The period.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns)
    }

    /// `Some(n)` when the caller may log now, `n` being the calls refused since
    /// the last allowed one; `None` (the call is counted) otherwise.
    #[inline]
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(monotonic_ns())
    }

    /// [`allow`](Self::allow) at the monotonic time `now_ns`.
    fn allow_at(&self, now_ns: u64) -> Option<u64> {
        // Relaxed throughout: the words only order calls of this limiter among
        // themselves; nothing else is published through them.
        let next = self.next_ns.load(Ordering::Relaxed);
        if now_ns < next
            || self
                .next_ns
                .compare_exchange(
                    next,
                    now_ns.saturating_add(self.period_ns),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// Nanoseconds of `CLOCK_MONOTONIC`.
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MS: u64 = 1_000_000;

    #[test]
    fn one_per_period_with_the_count_of_the_others() {
        let limit = RateLimit::new(Duration::from_millis(10));
        let t0 = 5 * MS;
        assert_eq!(limit.allow_at(t0), Some(0));
        assert_eq!(limit.allow_at(t0 + 1), None);
        assert_eq!(limit.allow_at(t0 + 9 * MS), None);
        assert_eq!(limit.allow_at(t0 + 10 * MS), Some(2));
        assert_eq!(limit.allow_at(t0 + 15 * MS), None);
        // A long quiet spell: allowed at once, one report for the one refused.
        assert_eq!(limit.allow_at(t0 + 1000 * MS), Some(1));
        assert_eq!(limit.allow_at(t0 + 1001 * MS), None);
    }

    #[test]
    fn zero_and_huge_periods() {
        let every = RateLimit::new(Duration::ZERO);
        assert_eq!(every.allow_at(1), Some(0));
        assert_eq!(every.allow_at(2), Some(0));
        let once = RateLimit::new(Duration::MAX);
        assert_eq!(once.period(), Duration::from_nanos(u64::MAX));
        assert_eq!(once.allow_at(1), Some(0));
        assert_eq!(once.allow_at(u64::MAX - 1), None);
    }

    #[test]
    fn real_clock() {
        static LIMIT: RateLimit = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(LIMIT.allow(), Some(0));
        assert_eq!(LIMIT.allow(), None);
        assert_eq!(LIMIT.allow(), None);
        let fast = RateLimit::new(Duration::from_millis(1));
        assert_eq!(fast.allow(), Some(0));
        std::thread::sleep(Duration::from_millis(2));
        assert!(fast.allow().is_some());
    }

    #[test]
    fn concurrent_calls_lose_no_count() {
        // Every thread calls at the same instants; per instant exactly one call is
        // allowed, and the counts reported plus the calls allowed add up to all.
        const THREADS: u64 = 4;
        const ROUNDS: u64 = 2000;
        let limit = Arc::new(RateLimit::new(Duration::from_nanos(10)));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let limit = limit.clone();
                std::thread::spawn(move || {
                    let (mut allowed, mut reported) = (0u64, 0u64);
                    for round in 0..ROUNDS {
                        if let Some(n) = limit.allow_at(1 + round * 10) {
                            allowed += 1;
                            reported += n;
                        }
                    }
                    (allowed, reported)
                })
            })
            .collect();
        let (mut allowed, mut reported) = (0, 0);
        for h in handles {
            let (a, r) = h.join().unwrap();
            allowed += a;
            reported += r;
        }
        let left = limit.suppressed.load(Ordering::Relaxed);
        assert_eq!(allowed + reported + left, THREADS * ROUNDS);
        // At most one allowed call per instant.
        assert!(allowed <= ROUNDS, "{allowed} allowed in {ROUNDS} periods");
        assert!(allowed >= 1);
    }
}
