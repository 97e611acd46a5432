//! One lane: a bounded multi-producer / single-consumer ring of `u64` words.
//!
//! The algorithm is D. Vyukov's bounded queue with per-cell sequence numbers:
//!
//! * cell `i` starts with `seq = i`;
//! * a producer reads `tail = pos`, and if `cells[pos % depth].seq == pos` the cell
//!   is free for round `pos / depth`: it claims it by CAS-ing `tail` to `pos + 1`,
//!   writes the value, then stores `seq = pos + 1` (Release) to publish it;
//!   `seq < pos` means the consumer has not yet emptied the cell: the lane is full;
//! * the single consumer at `head = pos` waits for `seq == pos + 1` (Acquire),
//!   reads the value, stores `seq = pos + depth` (Release) to hand the cell to the
//!   producers of the next round, and advances `head`.
//!
//! A push never blocks and never overwrites: a full lane is reported to the caller.
//! Values are stored in an `AtomicU64` (Relaxed; ordered by the `seq` accesses), so
//! there is no non-atomic access at all, which keeps the code clean under loom and
//! Miri at no cost on x86-64.
//!
//! # Untrusted memory
//!
//! The lane lives in a segment every client can write, so nothing read from it
//! is trusted further than the ring needs: cell indices are masked with the
//! depth the handle was created with (never read back from the segment), the
//! consumer keeps its own `head` and only publishes a copy for monitoring
//! ([`Ring::pop_from`]), and a producer gives up after [`PUSH_RETRIES`] rounds of
//! a `tail` that keeps moving without a free cell (a scribbled position reads as
//! a full lane instead of a spin).
//!
//! # A producer that dies mid-push
//!
//! If a producer dies between its CAS on `tail` and its store of `seq`, the
//! consumer stops at that cell: the lane holds a *claimed* cell that will never
//! be published. [`Ring::stalled_at`] reports such a cell and [`Ring::skip`]
//! moves the consumer past it (handing the cell to the next round); the runtime
//! skips only when the cell has been stalled for long and a client died since
//! (its process reaper says so), because a live producer that was merely
//! descheduled publishes moments later.

use crate::sync::{AtomicU64, Ordering, Padded};

/// One slot of a lane.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Cell {
    seq: AtomicU64,
    value: AtomicU64,
}

impl Cell {
    /// A cell initialised for position `i` (for models and tests over the heap).
    #[cfg(test)]
    pub(crate) fn new(i: u64) -> Cell {
        Cell {
            seq: AtomicU64::new(i),
            value: AtomicU64::new(0),
        }
    }

    /// Initialises a cell in place for position `i` (two-phase init in shared memory).
    pub(crate) fn init(&self, i: u64) {
        self.value.store(0, Ordering::Relaxed);
        self.seq.store(i, Ordering::Relaxed);
    }
}

/// Producer and consumer positions of a lane, on separate line pairs.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Positions {
    /// Next position producers claim.
    pub tail: Padded<AtomicU64>,
    /// Next position the consumer reads.
    pub head: Padded<AtomicU64>,
}

/// Rounds a producer retries a moving `tail` without finding a free cell before
/// it reports the lane full (in a healthy lane a retry follows another
/// producer's successful claim, so this bound is never reached in practice).
pub(crate) const PUSH_RETRIES: u32 = 1 << 16;

/// The lane is full: the value was not pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// A lane: positions plus `depth` cells (`depth` a power of two).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ring<'a> {
    pub pos: &'a Positions,
    pub cells: &'a [Cell],
}

impl Ring<'_> {
    #[inline]
    fn mask(&self) -> u64 {
        self.cells.len() as u64 - 1
    }

    /// Pushes `value`; any number of producers may call this concurrently.
    #[inline]
    pub(crate) fn push(&self, value: u64) -> Result<(), Full> {
        let mut pos = self.pos.tail.0.load(Ordering::Relaxed);
        let mut retries = 0u32;
        loop {
            retries += 1;
            if retries > PUSH_RETRIES {
                return Err(Full);
            }
            let cell = &self.cells[(pos & self.mask()) as usize];
            // Acquire: pairs with the consumer's Release store of `seq` in `pop`, so
            // the consumer's read of the old value happened before we overwrite it.
            let seq = cell.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos) as i64;
            if diff == 0 {
                match self.pos.tail.0.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        cell.value.store(value, Ordering::Relaxed);
                        // Release: publishes `value` to the Acquire load of `seq` in `pop`.
                        cell.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(actual) => pos = actual,
                }
            } else if diff < 0 {
                return Err(Full);
            } else {
                pos = self.pos.tail.0.load(Ordering::Relaxed);
            }
        }
    }

    /// Pops the oldest value, if one is published (reading and writing the
    /// lane's shared `head`: for models and tests; the runtime's consumer keeps
    /// its own head, [`pop_from`](Self::pop_from)).
    ///
    /// Only one thread at a time may call this on a given lane (the lane's single
    /// consumer); [`crate::queue::Consumer`] enforces that.
    #[cfg(test)]
    #[inline]
    pub(crate) fn pop(&self) -> Option<u64> {
        let mut head = self.pos.head.0.load(Ordering::Relaxed);
        self.pop_from(&mut head)
    }

    /// Pops the value at the consumer's position `head` (its own copy, never read
    /// back from the segment), advancing it and publishing it to the lane's
    /// `head` word for monitoring.
    #[inline]
    pub(crate) fn pop_from(&self, head: &mut u64) -> Option<u64> {
        let pos = *head;
        let cell = &self.cells[(pos & self.mask()) as usize];
        // Acquire: pairs with the producer's Release store of `seq` in `push`.
        let seq = cell.seq.load(Ordering::Acquire);
        if seq != pos.wrapping_add(1) {
            return None;
        }
        let value = cell.value.load(Ordering::Relaxed);
        // Release: pairs with the Acquire load of `seq` in `push` of the next round.
        cell.seq
            .store(pos.wrapping_add(self.cells.len() as u64), Ordering::Release);
        *head = pos.wrapping_add(1);
        self.pos.head.0.store(*head, Ordering::Relaxed);
        Some(value)
    }

    /// The consumer at `head` is held up by a claimed but unpublished cell: a
    /// producer moved `tail` past `head` and has not (yet) stored the cell's
    /// `seq`. Returns `head` then.
    #[inline]
    pub(crate) fn stalled_at(&self, head: u64) -> Option<u64> {
        let tail = self.pos.tail.0.load(Ordering::Relaxed);
        if tail == head {
            return None;
        }
        let cell = &self.cells[(head & self.mask()) as usize];
        // Acquire: pairs with the producer's Release store of `seq` in `push`.
        (cell.seq.load(Ordering::Acquire) != head.wrapping_add(1)).then_some(head)
    }

    /// Moves the consumer at `head` past a cell that [`stalled_at`](Self::stalled_at)
    /// reported: the cell is handed to the producers of the next round as if it
    /// had been popped. Returns `false` (and changes nothing) if the cell was
    /// published meanwhile (pop it instead) or is not stalled. A producer that
    /// publishes into a skipped cell later loses that value: the caller skips
    /// only cells whose producer it believes dead.
    pub(crate) fn skip(&self, head: &mut u64) -> bool {
        let pos = *head;
        if self.stalled_at(pos).is_none() {
            return false;
        }
        let cell = &self.cells[(pos & self.mask()) as usize];
        // The cell's seq is `pos` when a producer claimed it and died before
        // publishing; anything else is a scribble, repaired the same way.
        let cur = cell.seq.load(Ordering::Acquire);
        if cur == pos.wrapping_add(1) {
            return false;
        }
        // Release: pairs with the Acquire load of `seq` in `push` of the next round,
        // exactly as a pop does; the CAS fails if the producer publishes now.
        if cell
            .seq
            .compare_exchange(
                cur,
                pos.wrapping_add(self.cells.len() as u64),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        *head = pos.wrapping_add(1);
        self.pos.head.0.store(*head, Ordering::Relaxed);
        true
    }

    /// Values pushed (or being pushed) and not yet popped: a monitoring figure.
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        let head = self.pos.head.0.load(Ordering::Relaxed);
        let tail = self.pos.tail.0.load(Ordering::Relaxed);
        tail.saturating_sub(head).min(self.cells.len() as u64)
    }

    /// Whether a producer has claimed a position the consumer has not read yet.
    /// Used by a consumer about to sleep, after its `SeqCst` fence.
    #[inline]
    #[cfg(test)]
    pub(crate) fn has_claimed(&self) -> bool {
        self.has_claimed_from(self.pos.head.0.load(Ordering::Relaxed))
    }

    /// `has_claimed` (test builds only) for a consumer at its own `head`.
    #[inline]
    pub(crate) fn has_claimed_from(&self, head: u64) -> bool {
        self.pos.tail.0.load(Ordering::Relaxed) != head
    }
}

#[cfg(all(loom, test))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    struct Lane {
        pos: Positions,
        cells: Vec<Cell>,
    }

    fn lane(depth: u64) -> Arc<Lane> {
        Arc::new(Lane {
            pos: Positions {
                tail: Padded(AtomicU64::new(0)),
                head: Padded(AtomicU64::new(0)),
            },
            cells: (0..depth).map(Cell::new).collect(),
        })
    }

    fn ring(l: &Lane) -> Ring<'_> {
        Ring {
            pos: &l.pos,
            cells: &l.cells,
        }
    }

    /// Two producers push two values each (a push that is refused is not retried)
    /// into a lane of `depth` while the consumer makes three pop attempts; then the
    /// lane is drained. Checks: every accepted value arrives exactly once, each
    /// producer's values in order, nothing of a refused push arrives; a refusal
    /// never happens before `depth` values were accepted (the lane really was
    /// full), so with `depth >= 4` no push may be refused at all.
    ///
    /// Neither side spins. With spinning producers *and* a spinning consumer, loom
    /// explores the unfair schedules in which two spinners yield to each other
    /// forever while the third thread, preempted between its claim of a cell and
    /// its publication, is never scheduled again: the model then exceeds loom's
    /// branch limit. That is a limit of the model checker (it has no fairness),
    /// not a property of the ring; a real scheduler runs the third thread.
    fn mpsc_model(depth: u64) {
        loom::model(move || {
            let l = lane(depth);
            let producers: Vec<_> = (0..2u64)
                .map(|p| {
                    let l = l.clone();
                    thread::spawn(move || {
                        let mut accepted = Vec::new();
                        for i in 0..2u64 {
                            let v = (p << 8) | (i + 1);
                            if ring(&l).push(v).is_ok() {
                                accepted.push(v);
                            }
                        }
                        accepted
                    })
                })
                .collect();
            let mut seen = Vec::new();
            for _ in 0..3 {
                if let Some(v) = ring(&l).pop() {
                    seen.push(v);
                }
            }
            let accepted: Vec<Vec<u64>> =
                producers.into_iter().map(|p| p.join().unwrap()).collect();
            while let Some(v) = ring(&l).pop() {
                seen.push(v);
            }
            assert_eq!(ring(&l).len(), 0);
            assert!(!ring(&l).has_claimed());
            let total: usize = accepted.iter().map(Vec::len).sum();
            if total < 4 {
                assert!(
                    total as u64 >= depth,
                    "push refused on a lane that was not full: {accepted:?}"
                );
            }
            assert_eq!(
                seen.len(),
                total,
                "lost or duplicated: {seen:?} vs {accepted:?}"
            );
            for (p, mine) in accepted.iter().enumerate() {
                let got: Vec<u64> = seen
                    .iter()
                    .copied()
                    .filter(|v| v >> 8 == p as u64)
                    .collect();
                assert_eq!(&got, mine, "producer {p}: order or content");
            }
        });
    }

    /// Depth 2: producers run into a full lane and into cells of the next round.
    #[test]
    fn mpsc_no_loss_no_dup_fifo_per_producer() {
        mpsc_model(2);
    }

    /// Depth 4: the lane always has room, so no push may be refused (a stale
    /// `tail` must lead to a retry, never to `Full`).
    #[test]
    fn mpsc_never_refuses_with_room() {
        mpsc_model(4);
    }

    /// A full lane refuses the push, and accepts it again once the consumer popped.
    #[test]
    fn full_is_reported_not_dropped() {
        loom::model(|| {
            let l = lane(2);
            assert!(ring(&l).push(1).is_ok());
            assert!(ring(&l).push(2).is_ok());
            let l2 = l.clone();
            let t = thread::spawn(move || ring(&l2).push(3));
            let first = ring(&l).pop();
            let pushed = t.join().unwrap();
            assert_eq!(first, Some(1));
            let mut rest = Vec::new();
            while let Some(v) = ring(&l).pop() {
                rest.push(v);
            }
            match pushed {
                Ok(()) => assert_eq!(rest, vec![2, 3]),
                Err(Full) => assert_eq!(rest, vec![2]),
            }
        });
    }
}

/// Ordinary tests over a heap-allocated lane, with real threads: run natively and
/// under Miri (`scripts/check-miri.sh`), which checks them for data races and
/// undefined behaviour under its own (randomised) scheduler and weak memory.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    /// Items per producer: small enough for Miri, which interprets every step.
    const ITEMS: u64 = if cfg!(miri) { 200 } else { 50_000 };

    struct Lane {
        pos: Positions,
        cells: Vec<Cell>,
    }

    fn lane(depth: u64) -> Arc<Lane> {
        let cells: Vec<Cell> = (0..depth)
            .map(|_| Cell {
                seq: AtomicU64::new(u64::MAX),
                value: AtomicU64::new(u64::MAX),
            })
            .collect();
        for (i, c) in cells.iter().enumerate() {
            c.init(i as u64);
        }
        Arc::new(Lane {
            pos: Positions::default(),
            cells,
        })
    }

    fn ring(l: &Lane) -> Ring<'_> {
        Ring {
            pos: &l.pos,
            cells: &l.cells,
        }
    }

    #[test]
    fn fifo_full_and_wraparound() {
        let l = lane(4);
        let r = ring(&l);
        assert_eq!(r.pop(), None);
        assert!(!r.has_claimed());
        let mut next_in = 0;
        let mut next_out = 0;
        for round in 0..5 {
            while r.push(next_in).is_ok() {
                next_in += 1;
            }
            assert_eq!(r.len(), 4, "round {round}");
            assert!(r.has_claimed());
            assert_eq!(r.push(999), Err(Full));
            // Pop some (not all), so later rounds start mid-ring.
            for _ in 0..3 {
                assert_eq!(r.pop(), Some(next_out));
                next_out += 1;
            }
            assert_eq!(r.len(), 1);
        }
        while let Some(v) = r.pop() {
            assert_eq!(v, next_out);
            next_out += 1;
        }
        assert_eq!(next_out, next_in);
        assert_eq!(r.len(), 0);
        assert!(!r.has_claimed());
    }

    /// Two producers and one consumer on a small lane (so that it is often full):
    /// every value arrives exactly once and each producer's values in order.
    #[test]
    fn two_producers_one_consumer() {
        let l = lane(8);
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let l = l.clone();
                thread::spawn(move || {
                    let mut full = 0u64;
                    for i in 0..ITEMS {
                        while ring(&l).push((p << 32) | i).is_err() {
                            full += 1;
                            thread::yield_now();
                        }
                    }
                    full
                })
            })
            .collect();
        let mut next = [0u64; 2];
        let mut received = 0;
        while received < 2 * ITEMS {
            match ring(&l).pop() {
                Some(v) => {
                    let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                    assert!(p < 2, "garbage value {v:#x}");
                    assert_eq!(i, next[p], "producer {p}: lost, duplicated or reordered");
                    next[p] += 1;
                    received += 1;
                }
                None => thread::yield_now(),
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(next, [ITEMS, ITEMS]);
        assert_eq!(ring(&l).pop(), None);
        assert!(!ring(&l).has_claimed());
    }
}
