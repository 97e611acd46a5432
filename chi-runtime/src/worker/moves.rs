//! Lanes that move between live workers of a kind, asked for by the
//! reinforcement thread ([`crate::reinforcement`]).
//!
//! # Design
//!
//! A lane has one consumer at a time (its claim word in shared memory), and a
//! worker pops only the lanes of its [`Consumer`]. A lane moves from worker A
//! to worker B in one of two ways, chosen by the claim hand-shake of
//! `WorkerStats::claim_in_task` (the asymmetric Dekker the supervisor uses to
//! retire a wedged worker):
//!
//! * **A is inside a task** (the usual case: a long task holds A while the
//!   lane's tasks wait behind it). The mover takes the lane over
//!   ([`chi_sdk::queue::MultiLaneQueue::take_over`]) while A's claim is
//!   pending, lists it in A's `taken` and posts the verdict [`claim::MOVED`].
//!   A, which pops nothing before it has read the verdict, forgets the lane
//!   when its step ends (`Worker::forget_taken`). So a task that never
//!   yields holds up only its own lane: the others leave within a few
//!   milliseconds.
//! * **A is between tasks** (or asleep). The mover asks: it lists the lane and
//!   B in A's `give` and rings A's doorbell. A splits the lane off its
//!   consumer at the top of its loop (`Worker::apply_moves`) and hands it to
//!   B.
//!
//! Either way the lane reaches B as a one-lane consumer in B's `incoming`,
//! and B absorbs it at the top of its loop (its claim word and doorbell then
//! name B). The lists of lanes each worker publishes change under the node's
//! lane-move lock (`NodeState::lane_moves`), which the supervisor holds when
//! it retires a worker, so a lane on its way to a worker that is retired
//! meanwhile is taken over with the rest of that worker's lanes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chi_sdk::queue::Consumer;

use super::Worker;
use super::supervision::{WorkerStats, claim, phase};
use crate::state::NodeState;

/// How [`move_lane`] moved a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moved {
    /// Taken while its worker was inside a task.
    Taken,
    /// Asked of its worker, which was between tasks.
    Asked,
    /// Not moved (a retired worker, or a lane its worker does not hold).
    No,
}

/// Moves `lane` from worker `from` to worker `to` (of the same kind); a
/// worker keeps one lane at least.
pub(crate) fn move_lane(
    node: &NodeState,
    from: &Arc<WorkerStats>,
    to: &Arc<WorkerStats>,
    lane: usize,
) -> Moved {
    let _moves = node.lane_moves.lock().unwrap_or_else(|e| e.into_inner());
    if Arc::ptr_eq(from, to)
        || [from, to]
            .iter()
            .any(|w| w.phase.load(Ordering::Relaxed) == phase::RETIRED)
        || !from.lanes().contains(&lane)
        || from.lanes().len() < 2
    {
        return Moved::No;
    }
    let queue = &node.ipc.queue;
    let _hs = from.handshake.lock().unwrap_or_else(|e| e.into_inner());
    if from.claim_in_task() {
        // SAFETY: `from` is inside a task with a pending claim: it pops nothing
        // before it has read the verdict stored below, and then forgets the
        // lane (`forget_taken`) before its next pop.
        let c = match unsafe { queue.take_over(&[lane]) } {
            Ok(c) => c,
            Err(e) => {
                // Release: pairs with the worker's Acquire load in `settle_claim`.
                from.claim.store(claim::NONE, Ordering::Release);
                tracing::error!(lane, error = %e, "could not take a lane over");
                return Moved::No;
            }
        };
        lock(&from.moves).taken.push(lane);
        // Release: pairs with the worker's Acquire load in `settle_claim` (it
        // sees the lane listed in `taken`).
        from.claim.store(claim::MOVED, Ordering::Release);
        hand_over(node, from, to, lane, c);
        return Moved::Taken;
    }
    lock(&from.moves).give.push((lane, to.clone()));
    // Release: pairs with the Acquire swap in `Worker::apply_moves`.
    from.moves_pending.store(true, Ordering::Release);
    from.ring(queue);
    Moved::Asked
}

/// Lists `lane` as `to`'s instead of `from`'s and posts its consumer `c` to
/// `to` (under the lane-move lock).
fn hand_over(node: &NodeState, from: &WorkerStats, to: &WorkerStats, lane: usize, c: Consumer) {
    from.set_lanes(|l| l.retain(|&x| x != lane));
    to.set_lanes(|l| l.push(lane));
    from.lanes_given.fetch_add(1, Ordering::Relaxed);
    lock(&to.moves).incoming.push(c);
    // Release: pairs with the Acquire swap in `Worker::apply_moves`.
    to.moves_pending.store(true, Ordering::Release);
    to.ring(&node.ipc.queue);
    tracing::debug!(lane, from = from.id, to = to.id, "lane moved");
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Drops the lanes posted to `w` and not yet absorbed, releasing their
/// claims (a worker restarted after a panic claims its listed lanes anew).
pub(crate) fn drop_incoming(w: &WorkerStats) {
    lock(&w.moves).incoming.clear();
}

impl Worker {
    /// Whether lane moves wait for this worker (checked on every loop).
    #[inline(always)]
    pub(super) fn moves_waiting(&self) -> bool {
        // Relaxed: a hint; `apply_moves` synchronises.
        self.lanes_dirty || self.stats.moves_pending.load(Ordering::Relaxed)
    }

    /// Applies the lane moves posted to this worker: hands away the lanes it
    /// was asked to give and absorbs those given to it. Its lane sets are
    /// rebuilt by the caller.
    #[cold]
    pub(super) fn apply_moves(&mut self) {
        self.lanes_dirty = false;
        // Acquire: pairs with the Release stores in `move_lane`/`hand_over`.
        if !self.stats.moves_pending.swap(false, Ordering::Acquire) {
            return;
        }
        let (give, incoming) = {
            let mut m = lock(&self.stats.moves);
            (std::mem::take(&mut m.give), std::mem::take(&mut m.incoming))
        };
        for c in incoming {
            let taken = self.consumer.absorb(c);
            tracing::debug!(worker = self.stats.id, lanes = ?taken, "lanes absorbed");
        }
        for (lane, to) in give {
            let node = self.shared.clone();
            let _moves = node.lane_moves.lock().unwrap_or_else(|e| e.into_inner());
            if to.phase.load(Ordering::Relaxed) == phase::RETIRED {
                continue;
            }
            // A worker keeps one lane at least (its consumer is never empty).
            if self.consumer.lanes().len() < 2 {
                continue;
            }
            if let Some(c) = self.consumer.split_off(lane) {
                hand_over(&node, &self.stats, &to, lane, c);
            }
        }
    }

    /// Marks the end of a task step; notices a retirement by the supervisor
    /// or lanes taken by the reinforcement thread meanwhile (the worker's
    /// side of the hand-shake: [`WorkerStats::leave_task`]).
    #[inline]
    pub(super) fn leave_task(&mut self) {
        let mut verdict = self.stats.leave_task();
        while verdict != claim::NONE {
            if verdict != claim::MOVED {
                self.retired = true;
                return;
            }
            verdict = self.forget_taken();
        }
    }

    /// After a [`claim::MOVED`] verdict: forgets the lanes taken from this
    /// worker while it was inside a task, before it pops again. Returns the
    /// verdict of a claim made meanwhile ([`claim::NONE`] if none).
    #[cold]
    pub(super) fn forget_taken(&mut self) -> u8 {
        let taken = std::mem::take(&mut lock(&self.stats.moves).taken);
        self.consumer.forget_lanes(&taken);
        self.lanes_dirty = true;
        tracing::debug!(worker = self.stats.id, lanes = ?taken, "lanes taken while in a task");
        self.stats.settle_moved().unwrap_or(claim::NONE)
    }
}
