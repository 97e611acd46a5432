//! The state of the lock tests (kCoMutexTest's gate, kCoRwLockTest's
//! counters), kept apart from the handlers.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use chi_sdk::abi::RunCtx;
use chi_sdk::sync::CoRwLock;

/// Permits that let `HOLD` tasks go, one each.
#[derive(Debug, Default)]
pub(super) struct Gate(AtomicU32);

impl Gate {
    pub(super) fn open(&self) {
        // Relaxed: a permit carries no data (the lock orders the holder's
        // writes); pairs with nothing.
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits for a permit and takes it; the worker runs other tasks meanwhile.
    pub(super) fn pass(&self, ctx: &mut RunCtx) {
        loop {
            // Relaxed: see `open`.
            let p = self.0.load(Ordering::Relaxed);
            if p > 0 {
                if self
                    .0
                    .compare_exchange(p, p - 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            ctx.sleep(Duration::from_millis(1));
        }
    }
}

/// kCoRwLockTest's state: the value under the lock, and counters (outside
/// it) of the sections inside it, which every section checks.
#[derive(Debug, Default)]
pub(super) struct RwTest {
    pub(super) lock: CoRwLock<u64>,
    pub(super) readers: AtomicU32,
    pub(super) writers: AtomicU32,
    pub(super) max_readers: AtomicU32,
    pub(super) violations: AtomicU32,
    pub(super) seq: AtomicU64,
    pub(super) gate: Gate,
}

// The counters use SeqCst: a section announces itself, then reads the other
// counters, and one that left announced it before releasing the lock; their
// operations pair with one another through the single SeqCst order. The
// lock's hand-off is what orders sections, these only observe it (a broken
// lock shows up as a violation rather than being hidden by a weak ordering).
impl RwTest {
    /// A reader got in: counts it, checks no writer is inside; returns its
    /// sequence number.
    pub(super) fn enter_read(&self) -> u64 {
        let inside = self.readers.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_readers.fetch_max(inside, Ordering::SeqCst);
        if self.writers.load(Ordering::SeqCst) != 0 {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(super) fn leave_read(&self) {
        self.readers.fetch_sub(1, Ordering::SeqCst);
    }

    /// A writer got in: checks it is alone; returns its sequence number.
    pub(super) fn enter_write(&self) -> u64 {
        if self.writers.fetch_add(1, Ordering::SeqCst) != 0
            || self.readers.load(Ordering::SeqCst) != 0
        {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(super) fn leave_write(&self) {
        self.writers.fetch_sub(1, Ordering::SeqCst);
    }
}
