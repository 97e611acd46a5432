//! Load-aware workers on real runtimes with the `mod_name` module: the
//! reinforcement thread learns what a method costs from measured run times,
//! and moves lanes away from a worker held by slow tasks, so echoes on a lane
//! beside slow tasks keep being answered. No timing is asserted: the checks
//! are of order (echoes answered while a slow task still runs) and of what
//! `status` reports.

mod support;

use std::time::{Duration, Instant};

use chi_sdk::client::{Client, Pending};
use chi_sdk::proto::StatusReport;
use chi_sdk::task::Task;
use chi_sdk::types::DomainQuery;
use chimaera_mod_name_runtime as mod_name;
use mod_name::{CreateParams, EchoTask, ModNameClient, SleepTask};
use support::modules::module_dir;
use support::*;

/// A runtime with two low-latency workers over four lanes (worker 0 serves
/// lanes 0 and 2, worker 1 lanes 1 and 3) and `workers` lines.
fn setup(test: &str, workers: &str) -> Setup {
    Setup::with(
        test,
        ConfigOpts {
            low_latency: 2,
            workers_extra: workers.into(),
            extra: format!(
                "module_path: [{:?}]\nqueue:\n  lanes: 4\n",
                module_dir().display().to_string()
            ),
            ..ConfigOpts::default()
        },
    )
}

fn status(s: &Setup) -> StatusReport {
    Client::status(&s.opts()).expect("status")
}

/// The lanes of worker `id`.
fn lanes_of(st: &StatusReport, id: u32) -> Vec<usize> {
    let mut l = st
        .workers
        .iter()
        .find(|w| w.id == id)
        .map(|w| w.lanes.clone())
        .unwrap_or_default();
    l.sort_unstable();
    l
}

/// A blocking Sleep (it holds its worker) of `ms` on `lane`.
fn slow<'c>(client: &'c Client, m: &ModNameClient, lane: usize, ms: u32) -> Pending<'c, SleepTask> {
    client
        .submit_to_lane(SleepTask::new(m.pool, DomainQuery::local(), ms, 1), lane)
        .expect("submit Sleep")
}

fn echo_on(client: &Client, m: &ModNameClient, lane: usize, v: u64) -> u64 {
    client
        .submit_to_lane(EchoTask::new(m.pool, DomainQuery::local(), v), lane)
        .expect("submit Echo")
        .wait_with(|t| t.reply)
        .expect("Echo")
}

#[test]
fn echoes_beside_a_lane_of_slow_tasks_are_answered_while_the_slow_task_runs() {
    let _wd = Watchdog::new("balance_stuck", WATCHDOG);
    let s = setup("balance_stuck", "");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "bal", &CreateParams::default()).expect("pool");
    let st = status(&s);
    assert_eq!(
        (lanes_of(&st, 0), lanes_of(&st, 1)),
        (vec![0, 2], vec![1, 3])
    );
    assert!(
        !st.reinforcement_cpus.is_empty(),
        "the reinforcement thread runs"
    );

    // The model learns what a Sleep of 4 ms costs (one task in 16 is measured).
    let learn: Vec<_> = (0..48).map(|_| slow(&client, &m, 0, 4)).collect();
    for p in learn {
        p.wait().expect("Sleep");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let model = loop {
        let st = status(&s);
        if let Some(model) = st
            .models
            .iter()
            .find(|x| x.pool == m.pool.0 && x.method == <SleepTask as Task>::METHOD)
        {
            break model.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no model of Sleep: {:?}",
            st.models
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // A blocking Sleep of 4 ms takes 4 ms at least.
    assert!(model.cost_us >= 4_000.0, "{model:?}");
    assert!(model.samples >= 1, "{model:?}");

    // Worker 0 is held by a Sleep of 4 s on lane 0; echoes go to lane 2,
    // which worker 0 served when the Sleep began.
    let held = slow(&client, &m, 0, 4_000);
    let behind = slow(&client, &m, 0, 4);
    std::thread::sleep(Duration::from_millis(20));
    for v in 0..200u64 {
        assert_eq!(echo_on(&client, &m, 2, v), v);
    }
    assert!(
        !held.is_complete(),
        "200 echoes on lane 2 were answered while worker 0 was still held by the slow task on \
         lane 0: lane 2 moved to worker 1"
    );
    let st = status(&s);
    assert!(
        lanes_of(&st, 1).contains(&2),
        "lane 2 is worker 1's now: {:?}",
        st.workers
    );
    assert!(
        lanes_of(&st, 0).contains(&0),
        "the slow task's lane stays: {:?}",
        st.workers
    );
    let w0 = st.workers.iter().find(|w| w.id == 0).unwrap();
    assert!(w0.lanes_given >= 1, "{w0:?}");
    assert!(w0.load_us > 0.0, "a held worker has a load: {w0:?}");
    // Worker 0 was inside the Sleep: the lane was taken over at once.
    assert!(rt.log().contains("taken_in_task=true"), "{}", rt.log());
    held.wait().expect("the long Sleep");
    behind.wait().expect("the Sleep behind it");
    // Everything still works, on every lane.
    for lane in 0..4 {
        assert_eq!(echo_on(&client, &m, lane, 7), 7);
    }
    drop(client);
    rt.stop();
}

#[test]
fn a_worker_busy_with_short_slow_tasks_hands_the_echo_lane_over_and_nothing_is_lost() {
    let _wd = Watchdog::new("balance_busy", WATCHDOG);
    let s = setup("balance_busy", "");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "bal", &CreateParams::default()).expect("pool");
    // 400 Sleeps of 2 ms on lane 0 (0.8 s of work for worker 0), with echoes
    // on lane 2 meanwhile.
    let slow: Vec<_> = (0..400).map(|_| slow(&client, &m, 0, 2)).collect();
    let mut echoes = 0u64;
    while !slow.last().unwrap().is_complete() {
        assert_eq!(echo_on(&client, &m, 2, echoes), echoes);
        echoes += 1;
    }
    for p in slow {
        p.wait().expect("every Sleep completes");
    }
    let st = status(&s);
    assert!(
        lanes_of(&st, 1).contains(&2),
        "lane 2 moved to the idle worker: {:?}",
        st.workers
    );
    // Nothing was lost or run twice: a Flush returns, every lane answers.
    chi_sdk::admin::AdminClient::new(&client)
        .flush()
        .expect("Flush");
    for lane in 0..4 {
        assert_eq!(echo_on(&client, &m, lane, 9), 9);
    }
    drop(client);
    rt.stop();
}

#[test]
fn a_worker_at_its_live_task_limit_is_asked_for_a_lane_and_hands_it_over() {
    let _wd = Watchdog::new("balance_asked", WATCHDOG);
    // Worker 0 holds two yielding Sleeps at most (coroutine.max_live), so
    // the tasks of its lanes wait there while it is between tasks: it is
    // asked for a lane, and splits it off itself.
    let s = Setup::with(
        "balance_asked",
        ConfigOpts {
            low_latency: 2,
            extra: format!(
                "module_path: [{:?}]\nqueue:\n  lanes: 4\ncoroutine:\n  max_live: 2",
                module_dir().display().to_string()
            ),
            ..ConfigOpts::default()
        },
    );
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "bal", &CreateParams::default()).expect("pool");
    // 16 yielding Sleeps of 300 ms on lane 0: two run, the others wait. The
    // module says what a Sleep costs (Monitor(EstLoad)), so the lane's
    // queued work is known before any Sleep ends.
    let sleeps: Vec<_> = (0..16)
        .map(|_| {
            client
                .submit_to_lane(SleepTask::new(m.pool, DomainQuery::local(), 300, 0), 0)
                .expect("submit Sleep")
        })
        .collect();
    // Once worker 0 holds its two, an echo on lane 2 waits for a move (or
    // for the first Sleeps to end).
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&s).workers[0].parked_tasks < 2 {
        assert!(Instant::now() < deadline, "worker 0 never held two Sleeps");
        std::thread::sleep(Duration::from_millis(2));
    }
    let answered = echo_on(&client, &m, 2, 5);
    assert_eq!(answered, 5);
    let last_done = sleeps.last().unwrap().is_complete();
    assert!(
        !last_done,
        "the echo on lane 2 was answered while the Sleeps of lane 0 still waited"
    );
    let st = status(&s);
    assert!(
        lanes_of(&st, 1).contains(&2),
        "lane 2 moved: {:?}\n{}",
        st.workers,
        rt.log()
    );
    // Worker 0 was between tasks: it was asked, and split the lane off itself.
    assert!(rt.log().contains("taken_in_task=false"), "{}", rt.log());
    for p in sleeps {
        p.wait().expect("Sleep");
    }
    // The module's estimate is in the model.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = status(&s);
        if let Some(x) = st
            .models
            .iter()
            .find(|x| x.method == <SleepTask as Task>::METHOD && x.estimate_us > 0.0)
        {
            assert_eq!(x.estimate_us, 300_000.0, "{x:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", st.models);
        // More Sleeps, to be measured (one in 16).
        let more: Vec<_> = (0..16)
            .map(|_| m.async_sleep(&client, 1, false).unwrap())
            .collect();
        for p in more {
            p.wait().expect("Sleep");
        }
    }
    // The text of `status` shows loads and models.
    let out = std::process::Command::new(runtime_exe())
        .args(["status", "-c"])
        .arg(rt.config())
        .output()
        .expect("chi-runtime status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("performance models"), "{text}");
    assert!(text.contains("lanes given away 1"), "{text}");
    drop(client);
    rt.stop();
}

#[test]
fn a_worker_wedged_after_its_lanes_moved_is_still_retired_and_its_own_lane_goes_on() {
    let _wd = Watchdog::new("balance_wedged", WATCHDOG);
    let s = Setup::with(
        "balance_wedged",
        ConfigOpts {
            low_latency: 2,
            extra: format!(
                "module_path: [{:?}]\nqueue:\n  lanes: 4\nsupervisor:\n  stall_timeout: 1s\n",
                module_dir().display().to_string()
            ),
            ..ConfigOpts::default()
        },
    );
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "bal", &CreateParams::default()).expect("pool");
    // Worker 0 is held for 6 s by a task that never yields.
    let held = slow(&client, &m, 0, 6_000);
    std::thread::sleep(Duration::from_millis(20));
    // Lane 2 leaves it within ticks (taken while it is inside the task)...
    assert_eq!(echo_on(&client, &m, 2, 1), 1);
    // ...and after the stall timeout the supervisor retires it, with the
    // verdict of that move not yet applied: a new worker serves lane 0.
    assert_eq!(echo_on(&client, &m, 0, 2), 2);
    assert!(
        !held.is_complete(),
        "lane 0 was served while its wedged task still ran"
    );
    let st = status(&s);
    assert!(
        st.workers.iter().any(|w| w.id == 0 && w.retired),
        "{:?}",
        st.workers
    );
    held.wait().expect("the retired worker finishes its task");
    for lane in 0..4 {
        assert_eq!(echo_on(&client, &m, lane, 3), 3);
    }
    drop(client);
    rt.stop();
}

#[test]
fn without_the_reinforcement_thread_lanes_stay_and_nothing_is_learned() {
    let _wd = Watchdog::new("balance_off", WATCHDOG);
    let s = setup("balance_off", "  reinforcement: 0\n");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "bal", &CreateParams::default()).expect("pool");
    let slow: Vec<_> = (0..50).map(|_| slow(&client, &m, 0, 2)).collect();
    for v in 0..20 {
        assert_eq!(echo_on(&client, &m, 2, v), v);
    }
    for p in slow {
        p.wait().expect("Sleep");
    }
    let st = status(&s);
    assert_eq!(
        (lanes_of(&st, 0), lanes_of(&st, 1)),
        (vec![0, 2], vec![1, 3])
    );
    assert!(st.models.is_empty(), "{:?}", st.models);
    assert!(st.reinforcement_cpus.is_empty());
    drop(client);
    rt.stop();
}
