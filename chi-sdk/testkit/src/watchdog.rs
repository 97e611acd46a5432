//! Time limits.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::process::{registered_pids, sigkill};

/// Waits until `cond` holds, failing the test if `limit` passes first.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "watchdog: {what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Nanoseconds this process spent in finished [`exempt`] sections so far.
static EXEMPT_NANOS: AtomicU64 = AtomicU64::new(0);
/// [`exempt`] sections running now: no watchdog fires meanwhile.
static EXEMPT_ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` without counting its time against any armed [`Watchdog`]: for
/// building test artifacts (a `cargo build` on a loaded machine can take
/// minutes, and that says nothing about the code under test).
pub fn exempt<R>(f: impl FnOnce() -> R) -> R {
    // Relaxed (here and below): counters the watchdog thread polls; no data
    // hangs on them.
    EXEMPT_ACTIVE.fetch_add(1, Ordering::Relaxed);
    let start = Instant::now();
    let r = f();
    EXEMPT_NANOS.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    EXEMPT_ACTIVE.fetch_sub(1, Ordering::Relaxed);
    r
}

fn exempt_total() -> Duration {
    // Relaxed: see `exempt`.
    Duration::from_nanos(EXEMPT_NANOS.load(Ordering::Relaxed))
}

/// A time limit for the whole test (time spent in [`exempt`] does not count). If it passes before the guard is dropped,
/// every process the test started (through this crate, and not reaped yet) is
/// SIGKILLed, the cleanup given to [`with_cleanup`](Self::with_cleanup) runs,
/// and the test process exits with a failure (code 101).
#[derive(Debug)]
pub struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Arms a watchdog of `limit` for `test`.
    pub fn new(test: &str, limit: Duration) -> Watchdog {
        Watchdog::with_cleanup(test, limit, || {})
    }

    /// Arms a watchdog of `limit` for `test` that, when it fires, runs `cleanup`
    /// once the processes are killed (e.g. to remove what they left behind).
    pub fn with_cleanup(
        test: &str,
        limit: Duration,
        cleanup: impl FnOnce() + Send + 'static,
    ) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let test = test.to_owned();
        let thread = std::thread::spawn(move || {
            let armed = Instant::now();
            let exempt0 = exempt_total();
            let fired = loop {
                let deadline = armed + limit + (exempt_total() - exempt0);
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left.max(Duration::from_millis(50))) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        // The deadline moves by the time of exempt sections, and
                        // waits for one that is running.
                        if EXEMPT_ACTIVE.load(Ordering::Relaxed) == 0
                            && Instant::now() >= armed + limit + (exempt_total() - exempt0)
                        {
                            break true;
                        }
                    }
                    _ => break false,
                }
            };
            if fired {
                eprintln!(
                    "watchdog: test '{test}' did not finish within {limit:?}; killing what it started"
                );
                for pid in registered_pids() {
                    eprintln!("watchdog: SIGKILL {pid}");
                    sigkill(pid);
                }
                std::thread::sleep(Duration::from_millis(200));
                cleanup();
                std::process::exit(101);
            }
        });
        Watchdog {
            disarm: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.disarm.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // If the watchdog counted the exempt section, it would exit this test
    // process with code 101 and the test would fail.
    #[test]
    fn exempt_time_does_not_count() {
        let wd = Watchdog::new("exempt_time_does_not_count", Duration::from_millis(300));
        exempt(|| std::thread::sleep(Duration::from_millis(700)));
        std::thread::sleep(Duration::from_millis(100));
        drop(wd);
    }
}
