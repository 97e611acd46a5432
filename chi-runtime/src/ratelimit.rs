//! Rate-limited logging: at most one message per period from one call site, with
//! the number of messages suppressed since the last one.
//!
//! A hostile or broken client can make the runtime refuse thousands of words a
//! second; logging each would bury the log (and cost more than refusing). A
//! call site keeps a `static` [`RateLimit`] and logs only when
//! [`allow`](RateLimit::allow) says so, reporting what it suppressed:
//!
//! ```
//! use chi_runtime::ratelimit::RateLimit;
//! static LIMIT: RateLimit = RateLimit::per_second();
//! if let Some(suppressed) = LIMIT.allow() {
//!     tracing::warn!(suppressed, "something happened");
//! }
//! ```
//!
//! Lock-free: one load of the clock word, a CAS when the period is over, and a
//! counter increment when it is not.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One message per `period`, counting the suppressed ones.
#[derive(Debug)]
pub struct RateLimit {
    period_ns: u64,
    /// Nanoseconds since [`epoch`] at which the next message may pass (0: now).
    next_ns: AtomicU64,
    suppressed: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl RateLimit {
    /// A limit of one message per `period`.
    pub const fn new(period: Duration) -> RateLimit {
        RateLimit {
            period_ns: period.as_nanos() as u64,
            next_ns: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// One message per second.
    pub const fn per_second() -> RateLimit {
        RateLimit::new(Duration::from_secs(1))
    }

    /// `Some(n)` if a message may be logged now (`n` were suppressed since the
    /// last one), `None` if it must be suppressed.
    pub fn allow(&self) -> Option<u64> {
        let now = epoch().elapsed().as_nanos() as u64;
        // Relaxed: the clock word orders nothing else; the CAS below decides.
        let next = self.next_ns.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ns
                .compare_exchange(
                    next,
                    now + self.period_ns.max(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            // Relaxed: a counter; losing a race only shifts a count to the next message.
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_period_with_the_count_of_the_rest() {
        let l = RateLimit::new(Duration::from_millis(200));
        assert_eq!(l.allow(), Some(0));
        for _ in 0..10 {
            assert_eq!(l.allow(), None);
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(l.allow(), Some(10));
        assert_eq!(l.allow(), None);
    }

    #[test]
    fn threads_share_one_budget() {
        let l = std::sync::Arc::new(RateLimit::new(Duration::from_secs(60)));
        let passed: u64 = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || (0..1000).filter(|_| l.allow().is_some()).count() as u64)
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(passed, 1);
    }
}
