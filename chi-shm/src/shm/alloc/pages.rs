//! Page runs: the allocator's slow path, shared by the refill of size classes (one
//! page at a time), large allocations (runs of pages) and the return of empty
//! size-class pages.
//!
//! # Design
//!
//! Pages `top..` have never been handed out, or were given back and merged into
//! that untouched range; pages below `top` are in use, or FREE (counted in
//! `free_below_top`). All of it changes only under [`PageLock`].
//!
//! * **Claim** of `n` pages: first fit among the FREE pages below `top`; failing
//!   that, the FREE pages just below `top` together with the pages above it, so
//!   that a run can span both (then `top` moves past the run).
//! * **Release** of a run: its pages become FREE; if the FREE pages around it
//!   reach `top`, `top` comes down over them. So the page just below `top` is never
//!   FREE after a release, and free space next to the untouched range merges with
//!   it: freeing everything brings `top` back to 0.
//! * `free_below_top` is exact: every change of a descriptor to or from FREE below
//!   `top`, and every move of `top`, adjusts it under the lock. So are the counts
//!   of small and large pages, which change only in claims and releases.
//! * A claimed page is RESERVED until its claimer describes it (SMALL | class, or
//!   LARGE_HEAD | count): the RESERVED descriptor of a large run carries its count,
//!   so the counts can be recomputed from the descriptors alone.
//!
//! # The lock
//!
//! [`PageLock`] is a spin lock in the segment whose word holds the pid of its
//! holder. Clients may die at any instruction or scribble on the word, so a waiter
//! never waits forever:
//!
//! * a holder that is dead, or a word that is not a plausible pid, is taken over
//!   after a short grace period;
//! * a holder that stays the same for [`LOCK_TIMEOUT`] (and does not bump the
//!   lock's heartbeat, as long operations under the lock do) is taken over if it is a
//!   live process that is not attached to the segment (a scribbled word naming
//!   some unrelated process); otherwise the waiter gives up with
//!   [`LockTimeout`], which the allocator reports as an error naming the pid.
//!
//! A lock taken over may leave the state half-updated (a run half-released, a
//! counter not yet adjusted), so the new holder first [repairs](Pages::repair)
//! what the lock protects: `top`, `free_below_top` and the page counts are
//! recomputed from the descriptors (and the allocator releases a large run whose
//! free was cut short). A page left RESERVED by a dead claimer stays reserved (leaked):
//! nothing tells a dead claimer's page from a live one's.
//!
//! The lock is never taken on the small-size hot path (only when a size class
//! needs a fresh page, once per up to 2048 blocks).

use std::time::{Duration, Instant};

use super::layout::desc;
use crate::proc::{current_pid, pid_alive};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// How long a waiter waits for a holder that makes no progress before giving up
/// (or taking over, if the holder cannot be a real holder).
pub(crate) const LOCK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a waiter waits before it checks whether the holder is dead.
const DEAD_HOLDER_GRACE: Duration = Duration::from_millis(10);

/// A cross-process spin lock whose word holds the holder's pid (0 = free).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct PageLock {
    holder: AtomicU32,
    /// Bumped by a holder in long operations, so that waiters see progress.
    beat: AtomicU32,
}

/// Proof that the [`PageLock`] is held; releases it on drop.
#[derive(Debug)]
pub(crate) struct PageGuard<'a> {
    lock: &'a PageLock,
    pid: u32,
    /// The lock was taken over from a holder that could not finish.
    taken_over: bool,
}

/// The page lock stayed with one live, attached holder for [`LOCK_TIMEOUT`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct LockTimeout {
    /// The pid in the lock word.
    pub holder: u32,
    /// How long the waiter waited.
    pub waited: Duration,
}

impl PageLock {
    /// The holder word, for tests that play a hung or dead holder.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn holder_word(&self) -> &AtomicU32 {
        &self.holder
    }

    /// Takes the lock: spins, then yields, then sleeps briefly between tries. Takes
    /// it over from a holder that is dead or not a pid (after
    /// [`DEAD_HOLDER_GRACE`]), or from a live holder that is not `attached` to the
    /// segment (after `timeout`). Gives up after `timeout` without progress (the
    /// holder word unchanged) otherwise.
    pub(crate) fn lock(
        &self,
        timeout: Duration,
        attached: &dyn Fn(u32) -> bool,
    ) -> Result<PageGuard<'_>, LockTimeout> {
        let pid = current_pid();
        let mut tries = 0u32;
        // The holder (and its heartbeat) we are timing, and since when.
        let mut seen = (0u32, 0u32);
        let mut since = Instant::now();
        loop {
            // Acquire: pairs with the Release CAS in `PageGuard::drop` (and in a
            // take-over below), so the previous holder's writes are visible.
            let holder = match self.holder.compare_exchange_weak(
                0,
                pid,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Ok(PageGuard {
                        lock: self,
                        pid,
                        taken_over: false,
                    });
                }
                Err(holder) => holder,
            };
            // Relaxed: only compared with the previous value.
            let now = (holder, self.beat.load(Ordering::Relaxed));
            if now != seen {
                // Progress: the lock changed hands (or was free), or its holder
                // reported progress, since we looked.
                seen = now;
                since = Instant::now();
                tries = 0;
            }
            tries += 1;
            if holder == 0 || tries < 64 {
                std::hint::spin_loop();
                continue;
            }
            let waited = since.elapsed();
            if waited < DEAD_HOLDER_GRACE {
                std::thread::yield_now();
                continue;
            }
            let dead = !pid_alive(holder);
            let stale = waited >= timeout && !attached(holder);
            if dead || stale {
                // Acquire: as above; the CAS fails if the holder released it or
                // someone else took it over meanwhile.
                if self
                    .holder
                    .compare_exchange(holder, pid, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    tracing::warn!(
                        holder,
                        dead,
                        "taking over the allocator's page lock from a holder that cannot release it"
                    );
                    return Ok(PageGuard {
                        lock: self,
                        pid,
                        taken_over: true,
                    });
                }
                continue;
            }
            if waited >= timeout {
                return Err(LockTimeout { holder, waited });
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

impl Drop for PageGuard<'_> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire CAS in `lock`. A CAS, not a store: if the
        // lock was taken over from us (we stalled past the timeout), it is not ours
        // to release.
        let _ =
            self.lock
                .holder
                .compare_exchange(self.pid, 0, Ordering::Release, Ordering::Relaxed);
    }
}

/// The page-run state in the allocator header.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct PageState {
    pub lock: PageLock,
    /// First page of the range never handed out (or merged back into it).
    pub top: AtomicU64,
    /// FREE pages below `top`.
    pub free_below_top: AtomicU64,
    /// Pages carved into size-class blocks (or claimed for that).
    pub small_pages: AtomicU64,
    /// Pages in large runs (or claimed for one).
    pub large_pages: AtomicU64,
}

/// The page runs, with the lock held.
#[derive(Debug)]
pub(crate) struct Pages<'a> {
    st: &'a PageState,
    descs: &'a [AtomicU32],
    guard: PageGuard<'a>,
}

impl PageState {
    /// Takes the page lock (see [`PageLock::lock`]); repairs the state first if
    /// the lock was taken over.
    pub(crate) fn lock<'a>(
        &'a self,
        descs: &'a [AtomicU32],
        timeout: Duration,
        attached: &dyn Fn(u32) -> bool,
    ) -> Result<Pages<'a>, LockTimeout> {
        let guard = self.lock.lock(timeout, attached)?;
        let pages = Pages {
            st: self,
            descs,
            guard,
        };
        if pages.taken_over() {
            pages.repair();
        }
        Ok(pages)
    }
}

impl Pages<'_> {
    /// Whether the lock was taken over from a holder that could not finish (the
    /// caller may have more to repair than [`repair`](Self::repair) does).
    pub(crate) fn taken_over(&self) -> bool {
        self.guard.taken_over
    }

    /// Tells waiters that this holder is making progress (call it now and then in
    /// long operations, so they do not give up after [`LOCK_TIMEOUT`]).
    pub(crate) fn beat(&self) {
        // Relaxed: waiters only compare it with what they saw before.
        self.guard.lock.beat.fetch_add(1, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.descs.len() as u64
    }

    fn is_free(&self, page: u64) -> bool {
        // Relaxed: descriptors change to and from FREE only under the lock we hold.
        self.descs[page as usize].load(Ordering::Relaxed) == desc::FREE
    }

    /// `top`, clamped to the heap (a scribbled value must not index past it).
    fn top(&self) -> u64 {
        // Relaxed: written only under the lock we hold.
        self.st.top.load(Ordering::Relaxed).min(self.total())
    }

    /// Lowers `top` over the FREE pages just below it; returns the new `top` and
    /// how many FREE pages it moved over.
    fn lower_top(&self, top: u64) -> (u64, u64) {
        let mut t = top;
        while t > 0 && self.is_free(t - 1) {
            t -= 1;
        }
        (t, top - t)
    }

    /// Claims one page for a size class (RESERVED until the caller describes it).
    pub(crate) fn claim_small(&self) -> Option<u64> {
        let page = self.claim(1, desc::RESERVED, desc::FREE)?;
        add(&self.st.small_pages, 1);
        Some(page)
    }

    /// Claims a run of `n` pages (`1..=VALUE_MASK`) for a large allocation: the
    /// head RESERVED (with the count) until the caller describes it, the others
    /// LARGE_TAIL.
    pub(crate) fn claim_large(&self, n: u64) -> Option<u64> {
        if n > desc::VALUE_MASK as u64 {
            return None;
        }
        let page = self.claim(n, desc::RESERVED | n as u32, desc::LARGE_TAIL)?;
        add(&self.st.large_pages, n);
        Some(page)
    }

    /// Gives an empty size-class page back.
    pub(crate) fn release_small(&self, page: u64) {
        self.release(page, 1);
        add(&self.st.small_pages, 1u64.wrapping_neg());
    }

    /// Gives a large run of `n` pages back.
    pub(crate) fn release_large(&self, first: u64, n: u64) {
        self.release(first, n);
        add(&self.st.large_pages, n.wrapping_neg());
    }

    /// Claims `n` consecutive pages and sets their descriptors to `head` (first
    /// page) and `tail` (the others). Returns the first page index, or `None` if no
    /// run of `n` free pages exists.
    fn claim(&self, n: u64, head: u32, tail: u32) -> Option<u64> {
        let total = self.total();
        if n == 0 || n > total {
            return None;
        }
        let top = self.top();
        let mut free_below = self.st.free_below_top.load(Ordering::Relaxed);
        let mut new_top = top;
        let mut first = None;
        if free_below >= n {
            let mut run = 0;
            for i in 0..top {
                if self.is_free(i) {
                    run += 1;
                    if run == n {
                        first = Some(i + 1 - n);
                        break;
                    }
                } else {
                    run = 0;
                }
            }
            if first.is_some() {
                free_below = free_below.saturating_sub(n);
            }
        }
        if first.is_none() {
            // The FREE pages just below `top` and the untouched ones above it.
            let (start, below) = self.lower_top(top);
            if start + n <= total {
                first = Some(start);
                new_top = top.max(start + n);
                // Of the run, `below` pages were FREE below `top` (all of them if
                // the run ends below `top`).
                free_below = free_below.saturating_sub(below.min(n));
            }
        }
        let first = first?;
        self.st.free_below_top.store(free_below, Ordering::Relaxed);
        self.st.top.store(new_top, Ordering::Relaxed);
        // Release: pairs with the Acquire descriptor loads of `free` and of the
        // reaper's walk, which then see the block headers written before the
        // descriptor changes to its final kind.
        self.descs[first as usize].store(head, Ordering::Release);
        for d in &self.descs[first as usize + 1..(first + n) as usize] {
            d.store(tail, Ordering::Release);
        }
        Some(first)
    }

    /// Returns the run of `n` pages at `first` to the free pages, merging it into
    /// the untouched range if the free pages around it reach `top`.
    fn release(&self, first: u64, n: u64) {
        let end = first.saturating_add(n).min(self.total());
        let top = self.top();
        let mut newly_free = 0;
        for page in first..end {
            if !self.is_free(page) && page < top {
                newly_free += 1;
            }
            // Release: pairs with the Acquire loads in `locate`, so a stale pointer
            // into the run is refused once the run is gone.
            self.descs[page as usize].store(desc::FREE, Ordering::Release);
        }
        let free_below = self.st.free_below_top.load(Ordering::Relaxed) + newly_free;
        let (top, merged) = self.lower_top(top);
        self.st
            .free_below_top
            .store(free_below.saturating_sub(merged), Ordering::Relaxed);
        self.st.top.store(top, Ordering::Relaxed);
    }

    /// Recomputes `top`, `free_below_top` and the page counts from the
    /// descriptors, after the lock was taken over from a holder that may have
    /// stopped half-way.
    pub(crate) fn repair(&self) {
        let (top, _) = self.lower_top(self.top());
        let free = (0..top).filter(|&p| self.is_free(p)).count() as u64;
        let (mut small, mut large) = (0, 0);
        for d in self.descs {
            // Relaxed: descriptors of claimed runs change only under the lock, or
            // from RESERVED to their final kind (same count either way).
            let d = d.load(Ordering::Relaxed);
            match d & desc::KIND_MASK {
                desc::SMALL => small += 1,
                desc::RESERVED if d & desc::VALUE_MASK == 0 => small += 1,
                desc::RESERVED | desc::LARGE_HEAD => large += (d & desc::VALUE_MASK) as u64,
                _ => {}
            }
        }
        // Relaxed: written only under the lock we hold.
        self.st.top.store(top, Ordering::Relaxed);
        self.st.free_below_top.store(free, Ordering::Relaxed);
        self.st.small_pages.store(small, Ordering::Relaxed);
        self.st.large_pages.store(large, Ordering::Relaxed);
    }

    /// `(top, free_below_top)`, for tests.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn bounds(&self) -> (u64, u64) {
        (self.top(), self.st.free_below_top.load(Ordering::Relaxed))
    }
}

/// Adds `delta` (two's complement) to a counter written only under the lock.
fn add(counter: &AtomicU64, delta: u64) {
    // Relaxed: the lock orders the writers; readers take a statistic.
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(delta),
        Ordering::Relaxed,
    );
}

// Real segments, processes, files or sockets: not under Miri (see
// scripts/check-miri.sh) nor loom (see crate::sync); run natively.
#[cfg(all(test, not(miri), not(loom)))]
mod tests {
    use super::*;

    fn state() -> PageState {
        PageState {
            lock: PageLock {
                holder: AtomicU32::new(0),
                beat: AtomicU32::new(0),
            },
            top: AtomicU64::new(0),
            free_below_top: AtomicU64::new(0),
            small_pages: AtomicU64::new(0),
            large_pages: AtomicU64::new(0),
        }
    }

    fn descs(n: usize) -> Vec<AtomicU32> {
        (0..n).map(|_| AtomicU32::new(desc::FREE)).collect()
    }

    const RUN: u32 = desc::LARGE_TAIL;

    #[test]
    fn freed_runs_merge_with_the_untouched_pages() {
        let st = state();
        let d = descs(16);
        let p = st.lock(&d, LOCK_TIMEOUT, &|_| true).unwrap();
        let a = p.claim(1, RUN, RUN).unwrap();
        let b = p.claim(4, RUN, RUN).unwrap();
        let c = p.claim(8, RUN, RUN).unwrap();
        assert_eq!((a, b, c), (0, 1, 5));
        assert_eq!(p.bounds(), (13, 0));
        p.release(a, 1);
        assert_eq!(p.bounds(), (13, 1));
        p.release(b, 4);
        assert_eq!(p.bounds(), (13, 5));
        p.release(c, 8);
        assert_eq!(p.bounds(), (0, 0), "everything merged back");
        assert_eq!(p.claim(16, RUN, RUN), Some(0));
        assert_eq!(p.claim(1, RUN, RUN), None);
    }

    #[test]
    fn a_run_spans_free_pages_below_top_and_pages_above() {
        let st = state();
        let d = descs(10);
        let p = st.lock(&d, LOCK_TIMEOUT, &|_| true).unwrap();
        p.claim(2, RUN, RUN).unwrap();
        p.claim(3, RUN, RUN).unwrap();
        // Pages 2..5 FREE below top = 5 without the merge (as a holder that died
        // half-way through a release would leave them).
        for d in &d[2..5] {
            d.store(desc::FREE, Ordering::Relaxed);
        }
        st.free_below_top.store(3, Ordering::Relaxed);
        assert_eq!(p.claim(7, RUN, RUN), Some(2));
        assert_eq!(p.bounds(), (9, 0));
        assert_eq!(p.claim(2, RUN, RUN), None);
        assert_eq!(p.claim(1, RUN, RUN), Some(9));
    }

    #[test]
    fn release_in_the_middle_keeps_the_count_exact() {
        let st = state();
        let d = descs(8);
        let p = st.lock(&d, LOCK_TIMEOUT, &|_| true).unwrap();
        for _ in 0..4 {
            p.claim(2, RUN, RUN).unwrap();
        }
        p.release(2, 2);
        p.release(4, 2);
        assert_eq!(p.bounds(), (8, 4));
        assert_eq!(p.claim(3, RUN, RUN), Some(2));
        assert_eq!(p.bounds(), (8, 1));
        p.release(6, 2);
        // Page 5 was free: top comes down to 5.
        assert_eq!(p.bounds(), (5, 0));
        p.release(0, 2);
        assert_eq!(p.bounds(), (5, 2));
        p.release(2, 3);
        assert_eq!(p.bounds(), (0, 0));
    }

    #[test]
    fn repair_recomputes_from_the_descriptors() {
        let st = state();
        let d = descs(8);
        let p = st.lock(&d, LOCK_TIMEOUT, &|_| true).unwrap();
        p.claim(6, RUN, RUN).unwrap();
        for (i, d) in d.iter().enumerate().take(6).skip(1) {
            d.store(if i == 3 { RUN } else { desc::FREE }, Ordering::Relaxed);
        }
        st.top.store(1 << 40, Ordering::Relaxed);
        st.free_below_top.store(12345, Ordering::Relaxed);
        p.repair();
        assert_eq!(p.bounds(), (4, 2));
    }

    #[test]
    fn page_counts_follow_claims_and_releases() {
        let st = state();
        let d = descs(8);
        let p = st.lock(&d, LOCK_TIMEOUT, &|_| true).unwrap();
        let s = p.claim_small().unwrap();
        let l = p.claim_large(3).unwrap();
        let counts = || {
            (
                st.small_pages.load(Ordering::Relaxed),
                st.large_pages.load(Ordering::Relaxed),
            )
        };
        assert_eq!(counts(), (1, 3));
        // A claimer that died before describing its pages: repair counts the same.
        st.small_pages.store(99, Ordering::Relaxed);
        p.repair();
        assert_eq!(counts(), (1, 3));
        d[s as usize].store(desc::SMALL | 4, Ordering::Relaxed);
        d[l as usize].store(desc::LARGE_HEAD | 3, Ordering::Relaxed);
        p.repair();
        assert_eq!(counts(), (1, 3));
        p.release_large(l, 3);
        p.release_small(s);
        assert_eq!(counts(), (0, 0));
        assert_eq!(p.bounds(), (0, 0));
        assert_eq!(p.claim_large(u64::from(desc::VALUE_MASK) + 1), None);
    }

    #[test]
    fn a_lock_word_that_is_not_a_pid_is_taken_over() {
        let st = state();
        st.lock.holder.store(u32::MAX - 3, Ordering::Relaxed);
        let g = st.lock.lock(LOCK_TIMEOUT, &|_| true).unwrap();
        assert!(g.taken_over);
        drop(g);
        assert_eq!(st.lock.holder.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_holder_that_reports_progress_is_waited_for() {
        let st = state();
        let d = descs(4);
        let short = Duration::from_millis(100);
        std::thread::scope(|s| {
            let p = st.lock(&d, short, &|_| true).unwrap();
            let waiter = s.spawn(|| st.lock.lock(short, &|_| true).map(|g| g.taken_over));
            for _ in 0..6 {
                std::thread::sleep(Duration::from_millis(50));
                p.beat();
            }
            drop(p);
            assert_eq!(waiter.join().unwrap(), Ok(false));
        });
    }

    #[test]
    fn a_live_attached_holder_times_out_and_an_unattached_one_is_taken_over() {
        let st = state();
        let me = current_pid();
        st.lock.holder.store(me, Ordering::Relaxed);
        let short = Duration::from_millis(50);
        let err = st.lock.lock(short, &|pid| pid == me).unwrap_err();
        assert_eq!(err.holder, me);
        assert!(err.waited >= short);
        // The same live pid, not attached to the segment: a scribbled word.
        let g = st.lock.lock(short, &|_| false).unwrap();
        assert!(g.taken_over);
    }
}
