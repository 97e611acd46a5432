//! The reinforcement thread: it learns the performance models and moves lanes
//! from overloaded workers to idle ones.
//!
//! # Design
//!
//! Every [`BUSY_TICK`] while some worker is awake (every [`IDLE_TICK`] while
//! all sleep), the thread:
//!
//! 1. hands the task steps the workers measured to the models
//!    ([`crate::models`]);
//! 2. estimates each worker's **load**: the work queued on its lanes (each
//!    lane's length times its learned cost per task) plus, if the worker has
//!    been inside one task step since the last tick, how long it has been
//!    there — a worker stuck in a long task serves none of its lanes;
//!    published as [`WorkerStats::load_ns`] for `status`;
//! 3. for each kind of worker (low and high latency), moves at most one lane
//!    per tick from the most loaded worker to the least loaded one
//!    (`pick`), if the first carries at least [`MIN_LOAD_NS`] of work and
//!    twice the second's:
//!    * from a worker stuck in a task, the lane with the most queued work
//!      other than the lane of the task it is stuck in (that lane stays: its
//!      tasks would only queue up behind the same kind of task elsewhere);
//!    * from a busy worker, the lane whose move leaves the two workers'
//!      larger load smallest (on a tie, the lane of the cheaper tasks: they
//!      are the ones waiting behind the others), if that improves on now;
//!    * a worker always keeps one lane, and a lane that moved stays where it
//!      went for [`COOLDOWN`] (no ping-pong).
//!
//! The move itself is the hand-shake of [`crate::worker::moves`]: taken at
//! once from a worker inside a task, asked of one between tasks. So a task
//! that never yields holds up its own lane only; the supervisor's
//! retirement (after `supervisor.stall_timeout`) still replaces a worker
//! wedged for good.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::models::DEFAULT_TASK_NS;
use crate::state::NodeState;
use crate::worker::moves::{Moved, move_lane};
use crate::worker::supervision::{WorkerStats, phase};

/// Period of the thread while some worker is awake.
pub const BUSY_TICK: Duration = Duration::from_millis(5);
/// Period while every worker sleeps.
pub const IDLE_TICK: Duration = Duration::from_millis(50);
/// Queued work under which a worker is not relieved of a lane, in ns.
pub const MIN_LOAD_NS: f64 = 500_000.0;
/// How long a lane that moved stays with its new worker.
pub const COOLDOWN: Duration = Duration::from_millis(200);

/// A worker as one tick sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    /// Queued work plus the time stuck in the current step, in ns.
    pub(crate) load: f64,
    /// Inside one task step since the last tick at least.
    pub(crate) stuck: bool,
    /// Its lanes: (lane, queued work in ns, cost per task in ns).
    pub(crate) lanes: Vec<(usize, f64, f64)>,
    /// The lane of the task it is stuck in, if known.
    pub(crate) stuck_lane: Option<usize>,
    /// Asleep on its doorbell.
    pub(crate) sleeping: bool,
    /// Its kind.
    pub(crate) kind: &'static str,
    /// Retired (never a donor or a receiver).
    pub(crate) retired: bool,
}

/// The beat a worker had when last seen moving.
struct Seen {
    beat: u64,
    since: Instant,
}

/// Runs the reinforcement thread until the runtime stops.
pub fn run(node: Arc<NodeState>) {
    let lanes = node.ipc.queue.num_lanes();
    let mut cooldown: Vec<Option<Instant>> = vec![None; lanes];
    let mut seen: Vec<Seen> = Vec::new();
    let mut samples = Vec::new();
    while !node.stopping() {
        let workers = node.workers();
        for w in &workers {
            samples.append(&mut w.samples.lock().unwrap_or_else(|e| e.into_inner()));
        }
        node.models.learn(&samples);
        samples.clear();
        let costs = node.models.lane_costs(lanes);
        let now = Instant::now();
        while seen.len() < workers.len() {
            seen.push(Seen {
                beat: u64::MAX,
                since: now,
            });
        }
        let views: Vec<View> = workers
            .iter()
            .zip(seen.iter_mut())
            .map(|(w, s)| view(&node, w, s, &costs, now))
            .collect();
        for (w, v) in workers.iter().zip(&views) {
            // Relaxed: a figure for `status`.
            w.load_ns.store(v.load as u64, Ordering::Relaxed);
        }
        for kind in ["low_latency", "high_latency"] {
            let Some((from, to, lane)) = pick(&views, kind, &cooldown, now) else {
                continue;
            };
            let how = move_lane(&node, &workers[from], &workers[to], lane);
            if how != Moved::No {
                cooldown[lane] = Some(now + COOLDOWN);
                tracing::info!(
                    lane,
                    from = workers[from].id,
                    to = workers[to].id,
                    from_load_us = views[from].load / 1e3,
                    to_load_us = views[to].load / 1e3,
                    taken_in_task = how == Moved::Taken,
                    "moved a lane to a less loaded worker"
                );
            }
        }
        let busy = views.iter().any(|v| !v.sleeping && !v.retired);
        std::thread::sleep(if busy { BUSY_TICK } else { IDLE_TICK });
    }
}

/// How worker `w` looks now (`s`: when its beat last moved).
fn view(node: &NodeState, w: &WorkerStats, s: &mut Seen, costs: &[f64], now: Instant) -> View {
    // Relaxed: samples of counters.
    let beat = w.beat.load(Ordering::Relaxed);
    let in_task = w.phase.load(Ordering::Relaxed) == phase::IN_TASK;
    let stuck = in_task && beat == s.beat;
    if beat != s.beat {
        s.beat = beat;
        s.since = now;
    }
    let q = &node.ipc.queue;
    let lanes: Vec<(usize, f64, f64)> = w
        .lanes()
        .into_iter()
        .map(|l| {
            let cost = costs.get(l).copied().unwrap_or(DEFAULT_TASK_NS);
            (l, q.lane_len(l) as f64 * cost, cost)
        })
        .collect();
    let mut load: f64 = lanes.iter().map(|&(_, x, _)| x).sum();
    if stuck {
        load += now.duration_since(s.since).as_nanos() as f64;
    }
    View {
        load,
        stuck,
        lanes,
        stuck_lane: if stuck { current_lane(w) } else { None },
        sleeping: w.sleeping.load(Ordering::Relaxed),
        kind: w.kind,
        retired: w.phase.load(Ordering::Relaxed) == phase::RETIRED,
    }
}

/// The lane the task worker `w` runs now was pushed onto, if it can tell.
fn current_lane(w: &WorkerStats) -> Option<usize> {
    let task = w.current_task()?;
    // SAFETY: `current_task` checked the block still holds the worker's task
    // in the mapped main segment; the lane word is an atomic.
    Some(unsafe { (*task).lane.load(Ordering::Relaxed) } as usize)
}

/// The lane move this tick makes among the workers of `kind`, if any:
/// (donor, receiver, lane), indices into `views` (see the module doc).
pub(crate) fn pick(
    views: &[View],
    kind: &str,
    cooldown: &[Option<Instant>],
    now: Instant,
) -> Option<(usize, usize, usize)> {
    let of_kind = || {
        views
            .iter()
            .enumerate()
            .filter(|(_, v)| v.kind == kind && !v.retired)
    };
    let (from, donor) = of_kind().max_by(|a, b| a.1.load.total_cmp(&b.1.load))?;
    let (to, receiver) = of_kind()
        .filter(|(i, v)| *i != from && !v.stuck)
        .min_by(|a, b| {
            a.1.load
                .total_cmp(&b.1.load)
                .then(b.1.sleeping.cmp(&a.1.sleeping))
        })?;
    if donor.load < MIN_LOAD_NS || receiver.load * 2.0 > donor.load || donor.lanes.len() < 2 {
        return None;
    }
    let cooling = |l: usize| cooldown.get(l).copied().flatten().is_some_and(|t| t > now);
    let movable = donor
        .lanes
        .iter()
        .filter(|&&(l, work, _)| work > 0.0 && !cooling(l) && Some(l) != donor.stuck_lane);
    let lane = if donor.stuck {
        // Everything queued on it waits for the task it is stuck in.
        movable.max_by(|a, b| a.1.total_cmp(&b.1))?.0
    } else {
        let now_max = donor.load.max(receiver.load);
        let after = |work: f64| (donor.load - work).max(receiver.load + work);
        movable
            .filter(|&&(_, work, _)| after(work) < now_max)
            .min_by(|a, b| after(a.1).total_cmp(&after(b.1)).then(a.2.total_cmp(&b.2)))?
            .0
    };
    Some((from, to, lane))
}

#[cfg(test)]
mod tests;
