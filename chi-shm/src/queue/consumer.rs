//! Consumers: claiming lanes, popping them, and sleeping on a doorbell.
//!
//! # Design
//!
//! * **One consumer per lane.** A lane's claim word (in the lane's info, in
//!   shared memory) holds `pid << 32 | claim number` of its consumer, 0 when it
//!   has none. [`MultiLaneQueue::consumer`] claims every lane it is given with a
//!   CAS, or none: a lane held by a live process fails the claim
//!   ([`QueueError::LaneBusy`]), a dead holder's claim is taken over.
//! * **A wedged consumer** (alive, but never popping again) is replaced with
//!   [`MultiLaneQueue::take_over`], which swaps the claim unconditionally: the
//!   caller guarantees by a handshake of its own that the old consumer is gone.
//! * **Positions.** A consumer starts at the `head` each lane's previous consumer
//!   published, then keeps its positions in this process and only publishes a
//!   copy, so a client that scribbles on the shared `head` cannot move it.
//! * **Sleeping.** All the lanes of a consumer name the doorbell of its first
//!   lane; [`Consumer::sleep`] announces the sleep, re-checks every lane and waits
//!   on the doorbell's futex (see [`doorbell`]).
//! * Dropping a [`Consumer`] releases its claims (a CAS from its own claim, so a
//!   claim taken over meanwhile stays with its new holder).
//! * **Moving lanes.** A consumer gives a lane up with [`Consumer::split_off`]
//!   and another takes it with [`Consumer::absorb`]: the claim word moves by a
//!   CAS, the lane's doorbell index is rewritten, and the position travels with
//!   the split-off consumer. A push reads the doorbell index after its SeqCst
//!   fence, so a consumer that absorbed a lane and then checks its lanes before
//!   sleeping either sees the push or is woken by it.

use std::sync::Arc;
use std::time::Duration;

use super::{MultiLaneQueue, QueueError, doorbell};
use crate::shm::ShmPtr;
use crate::sync::{Ordering, native};

impl MultiLaneQueue {
    /// A consumer's lanes must exist, and there must be at least one.
    fn check_consumer_lanes(&self, lanes: &[usize]) -> Result<(), QueueError> {
        let n = self.num_lanes();
        if let Some(&lane) = lanes.iter().find(|&&l| l >= n) {
            return Err(QueueError::NoLane { lane, lanes: n });
        }
        if lanes.is_empty() {
            return Err(QueueError::BadConfig(
                "a consumer needs at least one lane".into(),
            ));
        }
        Ok(())
    }

    /// Claims `lanes` for a new consumer, which will sleep on the doorbell of the
    /// first of them. Fails if a lane is out of range or held by a live consumer
    /// (a dead consumer's claim is taken over).
    pub fn consumer(&self, lanes: &[usize]) -> Result<Consumer, QueueError> {
        static CLAIMS: native::AtomicU64 = native::AtomicU64::new(1);
        self.check_consumer_lanes(lanes)?;
        let pid = std::process::id() as u64;
        let token = (pid << 32) | (CLAIMS.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff).max(1);
        let mut claimed = Vec::with_capacity(lanes.len());
        for &lane in lanes {
            let word = &self.inner.lane(lane).info.0.consumer;
            let mut cur = word.load(Ordering::Acquire);
            loop {
                if cur != 0 && crate::proc::pid_alive((cur >> 32) as u32) {
                    for &l in &claimed {
                        self.inner
                            .lane(l)
                            .info
                            .0
                            .consumer
                            .store(0, Ordering::Release);
                    }
                    return Err(QueueError::LaneBusy {
                        lane,
                        pid: (cur >> 32) as u32,
                    });
                }
                // Acquire: pairs with the Release store of 0 in `Consumer::drop`, so
                // the previous consumer's last pops are visible (its `head`).
                match word.compare_exchange(cur, token, Ordering::Acquire, Ordering::Acquire) {
                    Ok(_) => break,
                    Err(actual) => cur = actual,
                }
            }
            claimed.push(lane);
        }
        Ok(self.claimed_consumer(lanes, token))
    }

    /// The consumer of `lanes`, claimed with `token`: its doorbell is the first
    /// lane's, and its positions start where the previous consumer of each lane
    /// left them (published in the lane's `head`); from here on they are kept in
    /// this process, and the shared word is only a published copy.
    fn claimed_consumer(&self, lanes: &[usize], token: u64) -> Consumer {
        let bell = lanes[0];
        for &lane in lanes {
            self.inner
                .lane(lane)
                .info
                .0
                .doorbell
                .store(bell as u32, Ordering::Relaxed);
        }
        let heads = lanes
            .iter()
            // Acquire: pairs with the claim's hand-over (the previous consumer's
            // release of the lane, or the caller's hand-shake for a take-over).
            .map(|&l| self.inner.lane(l).pos.head.0.load(Ordering::Acquire))
            .collect();
        Consumer {
            queue: self.clone(),
            lanes: lanes.to_vec(),
            heads,
            bell,
            next: 0,
            token,
        }
    }

    /// Takes `lanes` over from their current consumer, which is alive but will
    /// never pop again (a worker wedged in what it popped): the new consumer starts
    /// at the positions the old one published.
    ///
    /// # Safety
    /// The previous consumer of these lanes must not pop, sleep on, or skip
    /// cells of them ever again (the runtime guarantees it with a handshake on
    /// the wedged worker's phase word before it calls this); two consumers of
    /// one lane break the queue.
    pub unsafe fn take_over(&self, lanes: &[usize]) -> Result<Consumer, QueueError> {
        static TAKEOVERS: native::AtomicU64 = native::AtomicU64::new(1);
        self.check_consumer_lanes(lanes)?;
        let pid = std::process::id() as u64;
        // Distinct from the tokens of `consumer` (their low word counts up from 1).
        let token = (pid << 32)
            | (0x8000_0000 | TAKEOVERS.fetch_add(1, Ordering::Relaxed) as u32 & 0x7fff_ffff) as u64;
        for &lane in lanes {
            // AcqRel: Acquire pairs with the Release by which the old consumer's
            // last pops were handed over (the caller's handshake); Release
            // publishes the new claim.
            self.inner
                .lane(lane)
                .info
                .0
                .consumer
                .swap(token, Ordering::AcqRel);
        }
        Ok(self.claimed_consumer(lanes, token))
    }
}

/// The single consumer of a set of lanes. Not `Clone`: one per lane at a time.
pub struct Consumer {
    queue: MultiLaneQueue,
    lanes: Vec<usize>,
    /// This consumer's position in each of its lanes (its own copy: a client
    /// that scribbles on the shared `head` word cannot move it).
    heads: Vec<u64>,
    bell: usize,
    next: usize,
    token: u64,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("lanes", &self.lanes)
            .field("doorbell", &self.bell)
            .finish()
    }
}

impl Consumer {
    /// The lanes this consumer holds.
    pub fn lanes(&self) -> &[usize] {
        &self.lanes
    }

    /// The queue.
    pub fn queue(&self) -> &MultiLaneQueue {
        &self.queue
    }

    /// The doorbell this consumer sleeps on ([`MultiLaneQueue::ring_bell`]
    /// wakes it): the first lane's at its creation, kept when lanes move.
    pub fn bell(&self) -> usize {
        self.bell
    }

    /// Gives lane `lane` up: it leaves this consumer, which never pops it
    /// again, and is returned as a consumer of its own, holding the claim and
    /// the position, meant to be [`absorb`](Self::absorb)ed by another consumer
    /// of the same queue (on another thread). Until then pushes onto the lane
    /// still ring this consumer's doorbell. `None` if this consumer does not
    /// hold `lane`.
    pub fn split_off(&mut self, lane: usize) -> Option<Consumer> {
        let i = self.lanes.iter().position(|&l| l == lane)?;
        self.lanes.remove(i);
        let head = self.heads.remove(i);
        if self.next >= self.lanes.len() {
            self.next = 0;
        }
        Some(Consumer {
            queue: self.queue.clone(),
            lanes: vec![lane],
            heads: vec![head],
            bell: self.bell,
            next: 0,
            token: self.token,
        })
    }

    /// Takes the lanes of `other` (from [`split_off`](Self::split_off) or a
    /// [`MultiLaneQueue::take_over`] of the same queue) into this consumer: their
    /// claim words name this consumer, their pushes ring its doorbell, and it
    /// pops them from where `other` stopped. A lane whose claim moved to a
    /// third consumer meanwhile (a take-over) is left out. Returns the lanes
    /// taken.
    pub fn absorb(&mut self, mut other: Consumer) -> Vec<usize> {
        let mut taken = Vec::with_capacity(other.lanes.len());
        if !Arc::ptr_eq(&self.queue.inner, &other.queue.inner) {
            return taken;
        }
        let q = &*self.queue.inner;
        for (&lane, &head) in other.lanes.iter().zip(&other.heads) {
            if self.lanes.contains(&lane) {
                continue;
            }
            // AcqRel: Acquire pairs with the Release of the consumer that
            // handed the lane over (its pops happen before ours); Release
            // publishes the new claim. Fails if a take-over swapped the claim.
            if q.lane(lane)
                .info
                .0
                .consumer
                .compare_exchange(other.token, self.token, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // Relaxed: ordered before this consumer's next sleep check by the
            // SeqCst fence of `prepare_sleep`, which pairs with the fence a
            // push issues before it reads the lane's doorbell: a push either
            // rings this doorbell or is seen by that check.
            q.lane(lane)
                .info
                .0
                .doorbell
                .store(self.bell as u32, Ordering::Relaxed);
            self.lanes.push(lane);
            self.heads.push(head);
            taken.push(lane);
        }
        other.lanes.clear();
        other.heads.clear();
        taken
    }

    /// Forgets `lanes` without touching them: another consumer took them over
    /// ([`MultiLaneQueue::take_over`]) while this one was not popping, and owns
    /// their claims and positions now.
    pub fn forget_lanes(&mut self, lanes: &[usize]) {
        let mut i = 0;
        while i < self.lanes.len() {
            if lanes.contains(&self.lanes[i]) {
                self.lanes.remove(i);
                self.heads.remove(i);
            } else {
                i += 1;
            }
        }
        if self.next >= self.lanes.len() {
            self.next = 0;
        }
    }

    /// Pops from one of this consumer's lanes (`i` indexes [`lanes`](Self::lanes)).
    #[inline]
    pub fn pop_lane(&mut self, i: usize) -> Option<ShmPtr> {
        let lane = *self.lanes.get(i)?;
        let head = &mut self.heads[i];
        self.queue
            .inner
            .ring(lane)
            .pop_from(head)
            .map(ShmPtr::from_bits)
    }

    /// Entries claimed by producers and not yet popped in lane `i` (an index
    /// into [`lanes`](Self::lanes)), counted from this consumer's own position.
    pub fn pending(&self, i: usize) -> u64 {
        let Some(&lane) = self.lanes.get(i) else {
            return 0;
        };
        let tail = self
            .queue
            .inner
            .lane(lane)
            .pos
            .tail
            .0
            .load(Ordering::Relaxed);
        tail.wrapping_sub(self.heads[i]).min(self.queue.depth())
    }

    /// If lane `i` is held up by a cell a producer claimed and has not published,
    /// the position of that cell (see [`skip_stalled`](Self::skip_stalled)).
    pub fn stalled_at(&self, i: usize) -> Option<u64> {
        let lane = *self.lanes.get(i)?;
        self.queue.inner.ring(lane).stalled_at(self.heads[i])
    }

    /// Moves past the claimed but unpublished cell at position `pos` of lane `i`
    /// (a producer that died between its claim and its publication). Returns
    /// whether it did; `false` if the lane moved or the cell was published
    /// meanwhile. The value of a producer that publishes into the skipped cell
    /// later is lost: call this only for a cell whose producer is believed dead.
    pub fn skip_stalled(&mut self, i: usize, pos: u64) -> bool {
        let Some(&lane) = self.lanes.get(i) else {
            return false;
        };
        if self.heads[i] != pos {
            return false;
        }
        let head = &mut self.heads[i];
        self.queue.inner.ring(lane).skip(head)
    }

    /// Pops from the next non-empty lane, round robin. Returns the value and its lane.
    #[inline]
    pub fn pop(&mut self) -> Option<(ShmPtr, usize)> {
        let n = self.lanes.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if let Some(v) = self.pop_lane(i) {
                self.next = (i + 1) % n;
                return Some((v, self.lanes[i]));
            }
        }
        None
    }

    /// Sleeps until a push onto one of this consumer's lanes, or `timeout`. Returns
    /// at once if a lane is not empty. Returns whether it actually slept.
    pub fn sleep(&mut self, timeout: Option<Duration>) -> bool {
        self.sleep_unless(timeout, || false)
    }

    /// [`sleep`](Self::sleep), unless `busy` says there is other work: it is
    /// called after the consumer announced its sleep (a SeqCst fence), so
    /// work published before a [`MultiLaneQueue::wake_consumer`] call is
    /// either seen by `busy` or wakes the consumer.
    pub fn sleep_unless(&mut self, timeout: Option<Duration>, busy: impl FnOnce() -> bool) -> bool {
        let q = &*self.queue.inner;
        let bell = q.bell(self.bell);
        doorbell::prepare_sleep(bell);
        if self
            .lanes
            .iter()
            .zip(&self.heads)
            .any(|(&l, &h)| q.ring(l).has_claimed_from(h))
            || busy()
        {
            doorbell::cancel_sleep(bell);
            return false;
        }
        doorbell::futex_wait(bell, timeout);
        doorbell::cancel_sleep(bell);
        true
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        for &lane in &self.lanes {
            let word = &self.queue.inner.lane(lane).info.0.consumer;
            // Release: pairs with the Acquire CAS of the next consumer's claim.
            let _ = word.compare_exchange(self.token, 0, Ordering::Release, Ordering::Relaxed);
        }
    }
}
