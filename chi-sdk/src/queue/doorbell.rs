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
/// Returns `true` if this caller must issue the wake-up system call.
#[inline]
pub(crate) fn needs_wake(state: &AtomicU32) -> bool {
    // SeqCst fence: pairs with the fence in `prepare_sleep` (see module doc).
    fence(Ordering::SeqCst);
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
#[cfg(not(loom))]
pub(crate) fn futex_wait(
    state: &std::sync::atomic::AtomicU32,
    timeout: Option<std::time::Duration>,
) {
    crate::futex::wait(state, SLEEPING, timeout);
}

/// Wakes the consumer blocked in [`futex_wait`] on `state`.
#[cfg(not(loom))]
pub(crate) fn futex_wake(state: &std::sync::atomic::AtomicU32) {
    crate::futex::wake(state, 1);
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
}
