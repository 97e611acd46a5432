//! Doorbells: how a consumer sleeps on its lanes and a producer wakes it, with no
//! system call on the push path while the consumer is awake.
//!
//! A doorbell is one `u32` in shared memory, [`AWAKE`] or [`SLEEPING`]; each lane
//! names the doorbell of its consumer. The handshake is Dekker's:
//!
//! ```text
//! consumer (going to sleep)            producer (after publishing a value)
//! state = SLEEPING                     (store seq, Release)
//! fence(SeqCst)           <-- pairs -> fence(SeqCst)
//! if any lane tail != head: stay up    if state == SLEEPING:
//! else futex_wait(state, SLEEPING)         if swap(state, AWAKE) == SLEEPING: futex_wake
//! ```
//!
//! The two fences are ordered one way or the other: either the consumer sees the
//! producer's claim of a position (and does not sleep), or the producer sees
//! `SLEEPING` (and wakes it). A futex wait whose word no longer reads `SLEEPING`
//! returns at once, so a wake between the check and the wait is not lost either.
//! On x86-64 the producer's cost is one fence and one plain load.

use crate::sync::{AtomicU32, Ordering, fence};

/// The consumer is running (or about to check its lanes).
pub(crate) const AWAKE: u32 = 0;
/// The consumer is asleep on the futex, or about to be.
pub(crate) const SLEEPING: u32 = 1;

/// Producer side: after publishing, decide whether the consumer must be woken.
/// Returns `true` if this caller must issue the wake-up system call. (The
/// queue's pushes use [`needs_wake_fenced`]; the models below check this.)
#[cfg(test)]
#[inline]
pub(crate) fn needs_wake(state: &AtomicU32) -> bool {
    // SeqCst fence: pairs with the fence in `prepare_sleep` (see module doc).
    fence(Ordering::SeqCst);
    needs_wake_fenced(state)
}

/// `needs_wake` (test builds only) for a producer that issued the SeqCst fence itself, after
/// its publication (pairs with the fence in `prepare_sleep`): the queue's push
/// reads which doorbell its lane names after that fence too, so a lane that
/// moved to another consumer ([`super::Consumer::absorb`]) is either seen
/// with its new doorbell or its new consumer sees the push.
#[inline]
pub(crate) fn needs_wake_fenced(state: &AtomicU32) -> bool {
    if state.load(Ordering::Relaxed) != SLEEPING {
        return false;
    }
    // Only the producer that flips SLEEPING -> AWAKE issues the wake.
    state.swap(AWAKE, Ordering::Relaxed) == SLEEPING
}

/// Consumer side: announce the intent to sleep. After this returns, the caller
/// must check its lanes; if any is non-empty it calls [`cancel_sleep`], otherwise
/// it waits on the futex while the word reads `SLEEPING`.
#[inline]
pub(crate) fn prepare_sleep(state: &AtomicU32) {
    state.store(SLEEPING, Ordering::Relaxed);
    // SeqCst fence: pairs with the fence in `needs_wake`.
    fence(Ordering::SeqCst);
}

/// Consumer side: back to awake (after finding work, or after waking up).
#[inline]
pub(crate) fn cancel_sleep(state: &AtomicU32) {
    state.store(AWAKE, Ordering::Relaxed);
}

/// Blocks while `*state == SLEEPING`, up to `timeout`.
pub(crate) fn futex_wait(state: &AtomicU32, timeout: Option<std::time::Duration>) {
    state.futex_wait(SLEEPING, timeout);
}

/// Wakes the consumer blocked in [`futex_wait`] on `state`.
pub(crate) fn futex_wake(state: &AtomicU32) {
    state.futex_wake(1);
}

#[cfg(all(loom, test))]
mod loom_tests {
    use super::*;
    use crate::queue::ring::{Cell, Positions, Ring};
    use crate::sync::{AtomicU64, Padded};
    use loom::sync::Arc;
    use loom::thread;

    struct Lane {
        pos: Positions,
        cells: Vec<Cell>,
        bell: AtomicU32,
    }

    /// No lost wake-up: if the consumer decides to sleep, the producer that pushed
    /// concurrently must have decided to wake it.
    #[test]
    fn sleep_and_push_never_lose_a_wakeup() {
        loom::model(|| {
            let l = Arc::new(Lane {
                pos: Positions {
                    tail: Padded(AtomicU64::new(0)),
                    head: Padded(AtomicU64::new(0)),
                },
                cells: (0..2).map(Cell::new).collect(),
                bell: AtomicU32::new(AWAKE),
            });
            let lp = l.clone();
            let producer = thread::spawn(move || {
                Ring {
                    pos: &lp.pos,
                    cells: &lp.cells,
                }
                .push(7)
                .unwrap();
                needs_wake(&lp.bell)
            });
            prepare_sleep(&l.bell);
            let ring = Ring {
                pos: &l.pos,
                cells: &l.cells,
            };
            let sleeps = !ring.has_claimed();
            if !sleeps {
                cancel_sleep(&l.bell);
            }
            let woke = producer.join().unwrap();
            if sleeps {
                // The consumer would block on the futex: the producer must wake it.
                assert!(woke, "lost wake-up");
            }
        });
    }

    /// The consumer's whole loop (pop; else announce sleep, re-check, wait on the
    /// word, go back to awake), over several rounds, against `producers` threads
    /// pushing `per_producer` values each (never more than the depth, so pushes
    /// never fail and producers never spin).
    ///
    /// The futex is modelled by what it guarantees here: `futex_wait` returns once
    /// the word no longer reads `SLEEPING` (every waker swaps it to `AWAKE` before
    /// calling `futex_wake`). The real wait also has a timeout, which would turn a
    /// lost wake-up into latency; the model has none, so a lost wake-up is
    /// reported: all producers finished and the word still reads `SLEEPING`.
    fn consumer_loop_model(producers: u64, per_producer: u64) {
        loom::model(move || {
            let l = Arc::new(Lane {
                pos: Positions {
                    tail: Padded(AtomicU64::new(0)),
                    head: Padded(AtomicU64::new(0)),
                },
                cells: (0..4).map(Cell::new).collect(),
                bell: AtomicU32::new(AWAKE),
            });
            let finished = Arc::new(AtomicU32::new(0));
            let threads: Vec<_> = (0..producers)
                .map(|p| {
                    let (l, finished) = (l.clone(), finished.clone());
                    thread::spawn(move || {
                        let ring = Ring {
                            pos: &l.pos,
                            cells: &l.cells,
                        };
                        for i in 0..per_producer {
                            ring.push((p << 8) | (i + 1)).unwrap();
                            // `true` means: call futex_wake, which the model's
                            // waiter does not need (it watches the word).
                            let _ = needs_wake(&l.bell);
                        }
                        finished.fetch_add(1, Ordering::Release);
                    })
                })
                .collect();
            let ring = Ring {
                pos: &l.pos,
                cells: &l.cells,
            };
            let mut got = 0;
            while got < producers * per_producer {
                if ring.pop().is_some() {
                    got += 1;
                    continue;
                }
                prepare_sleep(&l.bell);
                if ring.has_claimed() {
                    cancel_sleep(&l.bell);
                    // A value is claimed but not yet published: let its producer run.
                    thread::yield_now();
                    continue;
                }
                // futex_wait(bell, SLEEPING)
                while l.bell.load(Ordering::Relaxed) == SLEEPING {
                    if finished.load(Ordering::Acquire) == producers as u32 {
                        // Every producer is done (and its swap, if any, happened
                        // before its Release increment): nobody will wake us.
                        assert_ne!(l.bell.load(Ordering::Relaxed), SLEEPING, "lost wake-up");
                    }
                    thread::yield_now();
                }
                cancel_sleep(&l.bell);
            }
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(ring.pop(), None);
        });
    }

    /// One producer, two values: the consumer may sleep and be woken twice.
    #[test]
    fn consumer_loop_one_producer_two_rounds() {
        consumer_loop_model(1, 2);
    }

    /// Two producers racing to wake the same sleeper.
    #[test]
    fn consumer_loop_two_producers() {
        consumer_loop_model(2, 1);
    }

    /// A lane that moves to another consumer (`Consumer::absorb`): the new
    /// consumer stores the lane's doorbell index, then announces its sleep and
    /// checks the lane; a producer publishes, fences, and only then reads the
    /// index (as `ring_doorbell` does). If the new consumer sleeps, the
    /// producer rang its doorbell, never the old one only.
    #[test]
    fn moved_lane_never_loses_a_wakeup() {
        loom::model(|| {
            let l = Arc::new(Lane {
                pos: Positions {
                    tail: Padded(AtomicU64::new(0)),
                    head: Padded(AtomicU64::new(0)),
                },
                cells: (0..2).map(Cell::new).collect(),
                bell: AtomicU32::new(AWAKE),
            });
            // The lane's doorbell index: 0 (the old consumer's), then 1.
            let index = Arc::new(AtomicU32::new(0));
            let (lp, ip) = (l.clone(), index.clone());
            let producer = thread::spawn(move || {
                Ring {
                    pos: &lp.pos,
                    cells: &lp.cells,
                }
                .push(7)
                .unwrap();
                fence(Ordering::SeqCst);
                // Only a wake of doorbell 1 (the new consumer's) counts.
                ip.load(Ordering::Relaxed) == 1 && needs_wake_fenced(&lp.bell)
            });
            index.store(1, Ordering::Relaxed);
            prepare_sleep(&l.bell);
            let sleeps = !Ring {
                pos: &l.pos,
                cells: &l.cells,
            }
            .has_claimed();
            if !sleeps {
                cancel_sleep(&l.bell);
            }
            let woke = producer.join().unwrap();
            if sleeps {
                assert!(woke, "lost wake-up of a moved lane's new consumer");
            }
        });
    }
}

/// The handshake with real threads, over a heap-allocated lane and doorbell: run
/// natively (with the real futex) and under Miri.
///
/// Under Miri the futex calls are replaced by what they guarantee here, because
/// rustix 1.1.6 (the latest release) passes the futex word to
/// `syscall(SYS_futex, ..)` as `*const AtomicU32`, which Miri rejects since it
/// type-checks c-variadic arguments (rust-lang/rust#161734, nightly 2026-09):
/// "incorrect c-variadic argument type ... expected `*mut u32`". Miri's futex
/// emulation itself would do; the call does not reach it.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::queue::ring::{Cell, Positions, Ring};
    use std::sync::Arc;
    use std::thread;
    #[cfg(not(miri))]
    use std::time::{Duration, Instant};

    const ITEMS: u64 = if cfg!(miri) { 100 } else { 20_000 };
    /// A wait this long means nobody woke the consumer: a lost wake-up.
    #[cfg(not(miri))]
    const TIMEOUT: Duration = Duration::from_secs(10);

    /// Sleeps while the doorbell reads `SLEEPING`; `false` if nobody woke us.
    #[cfg(not(miri))]
    fn sleep(bell: &AtomicU32) -> bool {
        let t = Instant::now();
        futex_wait(bell, Some(TIMEOUT));
        t.elapsed() < TIMEOUT
    }

    /// Under Miri: the futex's contract here (it returns once the word no longer
    /// reads `SLEEPING`; every waker swaps it to `AWAKE` before waking), with a
    /// bound on the spinning in place of the timeout.
    #[cfg(miri)]
    fn sleep(bell: &AtomicU32) -> bool {
        for _ in 0..100_000 {
            if bell.load(Ordering::Relaxed) != SLEEPING {
                return true;
            }
            thread::yield_now();
        }
        false
    }

    fn wake(bell: &AtomicU32) {
        if cfg!(not(miri)) {
            futex_wake(bell);
        }
    }

    struct Lane {
        pos: Positions,
        cells: Vec<Cell>,
        bell: AtomicU32,
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "rustix 1.1.6's futex call is rejected by Miri (see module doc)"
    )]
    fn wait_returns_at_once_when_awake() {
        let bell = AtomicU32::new(AWAKE);
        assert!(sleep(&bell));
        // A wake with no waiter is harmless.
        futex_wake(&bell);
    }

    /// One producer pushes `ITEMS` values, waking the consumer when it announced
    /// sleep; the consumer runs the real loop (pop, else announce sleep, re-check,
    /// wait). Every value arrives in order and no wait ever times out.
    #[test]
    fn producer_wakes_sleeping_consumer() {
        let l = Arc::new(Lane {
            pos: Positions::default(),
            cells: (0..4).map(Cell::new).collect(),
            bell: AtomicU32::new(AWAKE),
        });
        let lp = l.clone();
        let producer = thread::spawn(move || {
            let ring = Ring {
                pos: &lp.pos,
                cells: &lp.cells,
            };
            let mut wakes = 0u64;
            for i in 0..ITEMS {
                while ring.push(i).is_err() {
                    thread::yield_now();
                }
                if needs_wake(&lp.bell) {
                    wake(&lp.bell);
                    wakes += 1;
                }
                // Now and then, give the consumer time to fall asleep.
                if i % 7 == 0 {
                    thread::yield_now();
                }
            }
            wakes
        });
        let ring = Ring {
            pos: &l.pos,
            cells: &l.cells,
        };
        let (mut next, mut announced, mut slept) = (0, 0u64, 0u64);
        while next < ITEMS {
            if let Some(v) = ring.pop() {
                assert_eq!(v, next);
                next += 1;
                continue;
            }
            prepare_sleep(&l.bell);
            announced += 1;
            if ring.has_claimed() {
                cancel_sleep(&l.bell);
                thread::yield_now();
                continue;
            }
            assert!(sleep(&l.bell), "lost wake-up: nobody woke the consumer");
            cancel_sleep(&l.bell);
            slept += 1;
        }
        let wakes = producer.join().unwrap();
        // Only the producer that swaps SLEEPING -> AWAKE wakes, and only the
        // consumer stores SLEEPING: at most one wake per announcement.
        assert!(
            wakes <= announced,
            "wakes {wakes} > announcements {announced} (slept {slept})"
        );
    }
}
