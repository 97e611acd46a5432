//! The balancing policy on made-up views of workers.

use std::time::{Duration, Instant};

use super::{MIN_LOAD_NS, View, pick};

const MS: f64 = 1e6;
const US: f64 = 1e3;

/// A worker of `kind` with `lanes` of (lane, tasks queued, cost per task).
fn worker(kind: &'static str, lanes: &[(usize, u64, f64)]) -> View {
    let lanes: Vec<(usize, f64, f64)> = lanes
        .iter()
        .map(|&(l, n, c)| (l, n as f64 * c, c))
        .collect();
    View {
        load: lanes.iter().map(|l| l.1).sum(),
        lanes,
        kind,
        ..View::default()
    }
}

fn stuck(mut v: View, for_ns: f64, lane: Option<usize>) -> View {
    v.stuck = true;
    v.load += for_ns;
    v.stuck_lane = lane;
    v
}

fn no_cooldown() -> Vec<Option<Instant>> {
    vec![None; 16]
}

#[test]
fn a_busy_worker_gives_its_cheap_lane_to_an_idle_one() {
    // Worker 0: lane 0 carries 5 slow tasks (20 ms), lane 2 three echoes.
    let views = vec![
        worker("low_latency", &[(0, 5, 20.0 * MS), (2, 3, 1.0 * US)]),
        worker("low_latency", &[(1, 0, 1.0 * US), (3, 0, 1.0 * US)]),
    ];
    assert_eq!(
        pick(&views, "low_latency", &no_cooldown(), Instant::now()),
        Some((0, 1, 2))
    );
    // Nothing of the other kind moves.
    assert_eq!(
        pick(&views, "high_latency", &no_cooldown(), Instant::now()),
        None
    );
}

#[test]
fn a_worker_stuck_in_a_task_gives_every_other_lane_with_work() {
    let views = vec![
        stuck(
            worker(
                "low_latency",
                &[(0, 1, 20.0 * MS), (2, 4, 1.0 * US), (4, 9, 2.0 * US)],
            ),
            3.0 * MS,
            Some(0),
        ),
        worker("low_latency", &[(1, 0, 1.0 * US)]),
    ];
    // The lane with most work, not the one of the task it is stuck in.
    let now = Instant::now();
    assert_eq!(
        pick(&views, "low_latency", &no_cooldown(), now),
        Some((0, 1, 4))
    );
    // Lane 4 moved (cooling down): lane 2 next.
    let mut cooldown = no_cooldown();
    cooldown[4] = Some(now + Duration::from_millis(100));
    assert_eq!(pick(&views, "low_latency", &cooldown, now), Some((0, 1, 2)));
    // Cool-downs end.
    assert_eq!(
        pick(
            &views,
            "low_latency",
            &cooldown,
            now + Duration::from_millis(150)
        ),
        Some((0, 1, 4))
    );
}

#[test]
fn a_stuck_worker_keeps_its_own_lane_and_a_lone_lane() {
    // Only the stuck task's lane has work: nothing moves.
    let views = vec![
        stuck(
            worker("low_latency", &[(0, 8, 20.0 * MS), (2, 0, 1.0 * US)]),
            50.0 * MS,
            Some(0),
        ),
        worker("low_latency", &[(1, 0, 1.0 * US)]),
    ];
    assert_eq!(
        pick(&views, "low_latency", &no_cooldown(), Instant::now()),
        None
    );
    // One lane only: it stays.
    let views = vec![
        stuck(worker("low_latency", &[(0, 8, 20.0 * MS)]), 50.0 * MS, None),
        worker("low_latency", &[(1, 0, 1.0 * US)]),
    ];
    assert_eq!(
        pick(&views, "low_latency", &no_cooldown(), Instant::now()),
        None
    );
}

#[test]
fn small_or_even_loads_stay_where_they_are() {
    // Under the threshold.
    let small = (MIN_LOAD_NS / 2.0 / (1.0 * US)) as u64;
    let views = vec![
        worker("low_latency", &[(0, small, 1.0 * US), (2, 1, 1.0 * US)]),
        worker("low_latency", &[(1, 0, 1.0 * US)]),
    ];
    assert_eq!(
        pick(&views, "low_latency", &no_cooldown(), Instant::now()),
        None
    );
    // Even enough: the receiver has more than half the donor's load.
    let views = vec![
        worker("low_latency", &[(0, 10, 1.0 * MS), (2, 1, 1.0 * US)]),
        worker("low_latency", &[(1, 6, 1.0 * MS)]),
    ];
    assert_eq!(
        pick(&views, "low_latency", &no_cooldown(), Instant::now()),
        None
    );
    // A stuck worker never receives; a lone worker has nobody to give to.
    let views = vec![
        worker("low_latency", &[(0, 10, 1.0 * MS), (2, 5, 1.0 * MS)]),
        stuck(worker("low_latency", &[(1, 0, 1.0 * US)]), 1.0 * US, None),
    ];
    assert_eq!(
        pick(&views, "low_latency", &no_cooldown(), Instant::now()),
        None
    );
    let views = vec![worker(
        "low_latency",
        &[(0, 10, 1.0 * MS), (2, 5, 1.0 * MS)],
    )];
    assert_eq!(
        pick(&views, "low_latency", &no_cooldown(), Instant::now()),
        None
    );
}

#[test]
fn a_move_that_does_not_lower_the_larger_load_is_not_made() {
    // One huge lane and one tiny one against a receiver with some load:
    // moving the huge lane would only move the problem.
    let views = vec![
        worker("low_latency", &[(0, 1, 10.0 * MS), (2, 0, 1.0 * US)]),
        worker("low_latency", &[(1, 1, 1.0 * MS)]),
    ];
    assert_eq!(
        pick(&views, "low_latency", &no_cooldown(), Instant::now()),
        None
    );
    // Two big lanes: one goes.
    let views = vec![
        worker("low_latency", &[(0, 1, 10.0 * MS), (2, 1, 8.0 * MS)]),
        worker("low_latency", &[(1, 1, 1.0 * MS)]),
    ];
    assert_eq!(
        pick(&views, "low_latency", &no_cooldown(), Instant::now()),
        Some((0, 1, 2))
    );
}

#[test]
fn retired_workers_take_no_part() {
    let mut gone = worker("low_latency", &[(1, 0, 1.0 * US)]);
    gone.retired = true;
    let views = vec![
        worker("low_latency", &[(0, 5, 20.0 * MS), (2, 3, 1.0 * US)]),
        gone,
    ];
    assert_eq!(
        pick(&views, "low_latency", &no_cooldown(), Instant::now()),
        None
    );
}
