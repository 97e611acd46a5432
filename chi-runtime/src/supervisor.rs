//! The supervisor thread: the watch over the workers, and the process reaper's
//! passes.
//!
//! # Worker watch
//!
//! Every [`TICK`] the supervisor samples each worker's beat (its loop
//! counter). A worker whose beat moved, or that sleeps on its doorbell for lack
//! of work, is healthy: the supervisor stamps the beats of its lanes in the
//! main segment ([`crate::ipc::Ipc::beat_lane`]), which waiting clients read to
//! tell a slow task from a wedged worker. A worker whose beat has not moved for
//! `supervisor.stall_timeout` is reported stalled in the log and in `status`.
//! If it is inside a task (a handler that neither returns nor yields), the
//! supervisor *retires* it — an asymmetric hand-shake: the supervisor posts a
//! claim, forces a barrier on every thread with `membarrier`, and takes the
//! lanes only if the worker is still inside its task; the worker, which pays no
//! locked instruction for this, checks the claim after each step (both sides:
//! [`crate::worker::supervision`]) — and gives its lanes to a new
//! worker thread ([`chi_sdk::queue::MultiLaneQueue::take_over`]), so the other
//! tasks of those lanes go on. The wedged task's lane word is set to
//! `LANE_STALLED`, and so is that of every task suspended on the worker (which
//! only the wedged worker could resume), so their waiting clients get an error
//! after their task deadline.
//! The retired worker, if its task ever returns, finishes the suspended tasks it
//! holds without touching a lane, and exits. A worker thread that dies is
//! restarted by its own thread wrapper (see `worker/lifecycle.rs`).
//!
//! # Process reaper
//!
//! Every `reaper.interval` (when `workers.process_reaper` is on) the
//! supervisor runs a pass of the process reaper ([`crate::reaper`]), which
//! reclaims what dead clients held.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chi_sdk::proto::monotonic_ms;
use chi_sdk::shm::Allocator;
use chi_sdk::task::{TASK_MAGIC, TaskHeader};

use crate::reaper::Reaper;
use crate::state::NodeState;
use crate::threads::spawn_worker;
use crate::worker::supervision::{WorkerStats, membarrier_ready, phase};

/// Period of the worker watch.
pub const TICK: Duration = Duration::from_millis(50);

/// Per-worker sample of the watch.
struct Watch {
    beat: u64,
    since: Instant,
}

/// Runs the supervisor until the runtime stops.
pub fn run(shared: Arc<NodeState>) {
    membarrier_ready();
    let reaper = match (
        Allocator::attach(&shared.ipc.main),
        Allocator::attach(&shared.ipc.client_data),
    ) {
        (Ok(main), Ok(client_data)) => Some(Reaper::new(
            &shared.clients,
            &shared.reaper,
            main,
            client_data,
        )),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "the process reaper cannot attach the allocators; dead clients will not be reclaimed");
            None
        }
    };
    let mut reaper = reaper.filter(|_| shared.config.workers.process_reaper > 0);
    let interval = shared.config.reaper.interval;
    let stall = shared.config.supervisor.stall_timeout;
    let mut watch: Vec<Watch> = Vec::new();
    let mut replacements = Vec::new();
    let mut last_reap = Instant::now();
    while !shared.stopping() {
        let now = monotonic_ms();
        let workers = shared.workers();
        while watch.len() < workers.len() {
            watch.push(Watch {
                beat: u64::MAX,
                since: Instant::now(),
            });
        }
        for (w, seen) in workers.iter().zip(watch.iter_mut()) {
            if w.phase.load(Ordering::Relaxed) == phase::RETIRED {
                continue;
            }
            // Relaxed: samples of counters; a stale value delays a verdict by a tick.
            let beat = w.beat.load(Ordering::Relaxed);
            let sleeping = w.sleeping.load(Ordering::Relaxed);
            if beat != seen.beat || sleeping {
                seen.beat = beat;
                seen.since = Instant::now();
                if w.stalled.swap(false, Ordering::Relaxed) {
                    tracing::info!(worker = w.id, "worker moves again");
                }
                for lane in w.lanes() {
                    shared.ipc.beat_lane(lane, now);
                }
            } else if seen.since.elapsed() >= stall && !w.stalled.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    worker = w.id,
                    lanes = ?w.lanes(),
                    stalled_s = seen.since.elapsed().as_secs(),
                    "worker makes no progress: a task runs without returning or yielding"
                );
                if let Some(h) = take_over(&shared, w) {
                    replacements.push(h);
                }
            }
        }
        if let Some(r) = reaper.as_mut()
            && last_reap.elapsed() >= interval
        {
            last_reap = Instant::now();
            r.pass();
        }
        std::thread::sleep(TICK.min(interval));
    }
    for h in replacements {
        let _ = h.join();
    }
}

/// Retires wedged worker `w` (if it is inside a task: the handshake on its
/// phase word) and starts a new worker on its lanes. The wedged task's waiting
/// client learns that its task makes no progress (its lane is marked
/// [`LANE_STALLED`](chi_sdk::task::LANE_STALLED)). Returns the new worker's thread.
fn take_over(shared: &Arc<NodeState>, w: &Arc<WorkerStats>) -> Option<std::thread::JoinHandle<()>> {
    // Lanes do not move between workers meanwhile (`worker::moves`).
    let _moves = shared.lane_moves.lock().unwrap_or_else(|e| e.into_inner());
    // The hand-shake on the worker's phase word (see `worker::supervision`).
    if !w.retire() {
        return None;
    }
    let lanes = w.lanes();
    if lanes.is_empty() {
        tracing::warn!(worker = w.id, "retired a wedged worker that held no lanes");
        return None;
    }
    let task = w.current.load(Ordering::Relaxed) as *mut TaskHeader;
    let generation = w.current_generation.load(Ordering::Relaxed);
    // The wedged task and the tasks suspended on the worker: none of them
    // runs again unless the wedged task returns.
    for (task, generation) in std::iter::once((task as u64, generation)).chain(w.suspended_tasks())
    {
        let task = task as *mut TaskHeader;
        if task.is_null() {
            continue;
        }
        // SAFETY: the worker validated this task block when it took it; the
        // main segment stays mapped; magic and generation are checked before
        // the lane word (an atomic) is written.
        unsafe {
            if (*task).magic == TASK_MAGIC && u32::from((*task).generation) == generation {
                (*task)
                    .lane
                    .store(chi_sdk::task::LANE_STALLED, Ordering::Relaxed);
            }
        }
    }
    // SAFETY: the wedged worker is RETIRED (the CAS above won while it was
    // inside a task): it never touches these lanes again.
    let consumer = match unsafe { shared.ipc.queue.take_over(&lanes) } {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(worker = w.id, error = %e, "could not take the wedged worker's lanes over");
            return None;
        }
    };
    let id = shared.workers().len() as u32;
    let stats = Arc::new(WorkerStats::new(id, w.kind, lanes.clone()));
    shared.add_worker(stats.clone());
    tracing::warn!(
        wedged = w.id,
        worker = id,
        lanes = ?lanes,
        "moved the wedged worker's lanes to a new worker; the wedged one finishes what it holds and exits"
    );
    spawn_worker(shared, stats, consumer)
        .map_err(|e| tracing::error!(error = %e, "could not start the replacement worker"))
        .ok()
}
