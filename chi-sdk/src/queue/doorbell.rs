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

/// Blocks while `*state == SLEEPING`, up to `timeout`. Shared (not private)
/// futex: the word is in memory mapped by several processes.
#[cfg(not(loom))]
pub(crate) fn futex_wait(
    state: &std::sync::atomic::AtomicU32,
    timeout: Option<std::time::Duration>,
) {
    use rustix::thread::futex;
    let ts = timeout.map(|d| rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    // EAGAIN (word changed), EINTR and ETIMEDOUT all mean "go and look again".
    let _ = futex::wait(state, futex::Flags::empty(), SLEEPING, ts.as_ref());
}

/// Wakes one thread blocked in [`futex_wait`] on `state`.
#[cfg(not(loom))]
pub(crate) fn futex_wake(state: &std::sync::atomic::AtomicU32) {
    use rustix::thread::futex;
    let _ = futex::wake(state, futex::Flags::empty(), 1);
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
}
