//! A runtime no client can break: the hostile client program
//! (`examples/hostile.rs`) against real runtimes, while well-behaved clients
//! run beside it. Every class of misbehaviour has a test: garbage and stale
//! words pushed onto the lanes, scribbles on what clients can write of the
//! runtime's structures, clients killed while holding tasks and buffers or in
//! the middle of a push, thousands of clients that connect and die, a flood of
//! slow tasks, stale frees, and a worker wedged by a handler that never yields.
//!
//! Each test checks the runtime afterwards through `status`: nothing stalled,
//! every byte and owner slot given back, the good clients served throughout.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use chi_sdk::admin::{AdminClient, EchoTask};
use chi_sdk::client::{Client, ClientError};
use chi_sdk::proto::StatusReport;
use chi_sdk::queue::Priority;
use chi_sdk::types::{DomainQuery, PoolId};
use chimaera_mod_name_runtime::{CreateParams, ModNameClient, SleepTask};
use support::*;

/// The hostile program, built once per test binary (same profile and target
/// directory as this test).
fn hostile_exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let profile_dir = support::modules::cargo_build(
            &["-p", "chi-runtime", "--example", "hostile"],
            "the hostile program",
        );
        let path = profile_dir.join("examples").join("hostile");
        assert!(path.exists(), "{} missing after the build", path.display());
        path
    })
}

fn env_of(setup: &Setup) -> Vec<(&'static str, String)> {
    vec![("CHI_PORT", setup.port.to_string())]
}

fn spawn(kids: &mut Children, setup: &Setup, args: &[&str], label: &str) -> usize {
    kids.spawn_program(hostile_exe(), args, label, &env_of(setup))
}

fn status(setup: &Setup) -> StatusReport {
    Client::status(&setup.opts()).expect("status")
}

fn setup_with(test: &str, extra: &str) -> Setup {
    let modules = support::modules::module_dir().display().to_string();
    let o = ConfigOpts {
        extra: format!("module_path: [{modules:?}]\nreaper:\n  interval: 50ms\n{extra}"),
        ..ConfigOpts::default()
    };
    Setup::with(test, o)
}

/// The figures that must come back to where they were once dead clients are reaped.
#[derive(Debug, PartialEq)]
struct Held {
    main_bytes: u64,
    main_owners: u32,
    data_bytes: u64,
    data_owners: u32,
    clients: u32,
}

fn held(s: &StatusReport) -> Held {
    let seg = |role: &str| {
        s.segments
            .iter()
            .find(|u| u.role == role)
            .unwrap_or_else(|| panic!("status has no {role} segment: {s:?}"))
    };
    Held {
        main_bytes: seg("main").used_bytes,
        main_owners: seg("main").owners,
        data_bytes: seg("client_data").used_bytes,
        data_owners: seg("client_data").owners,
        clients: s.clients,
    }
}

fn assert_healthy(s: &StatusReport) {
    for w in &s.workers {
        assert!(!w.stalled, "worker {} is stalled: {s:?}", w.id);
        assert_eq!(w.panics, 0, "worker {} caught panics: {s:?}", w.id);
        assert_eq!(w.restarts, 0, "worker {} was restarted: {s:?}", w.id);
    }
}

/// Every lane still serves: a pinned echo on each.
fn every_lane_serves(kids: &mut Children, setup: &Setup) {
    let lanes = status(setup).lanes.len();
    for lane in 0..lanes {
        let i = spawn(
            kids,
            setup,
            &["good-lane", &lane.to_string(), "20"],
            "good-lane",
        );
        kids.wait_for(i, WATCHDOG);
    }
}

#[test]
fn garbage_words_are_refused_while_good_clients_run() {
    let _w = Watchdog::new("garbage_words", Duration::from_secs(240));
    let setup = setup_with("garbage_words", "");
    let rt = RuntimeGuard::start(&setup);
    let mut kids = Children::new();
    let good: Vec<usize> = (0..2)
        .map(|i| spawn(&mut kids, &setup, &["good", "3000"], &format!("good{i}")))
        .collect();
    let bad: Vec<usize> = (0..4)
        .map(|i| {
            spawn(
                &mut kids,
                &setup,
                &["garbage", "3000", &(i + 1).to_string()],
                &format!("garbage{i}"),
            )
        })
        .collect();
    for i in good.into_iter().chain(bad) {
        kids.wait_for(i, WATCHDOG);
    }
    every_lane_serves(&mut kids, &setup);
    let s = status(&setup);
    assert_healthy(&s);
    let refused: u64 = s.workers.iter().map(|w| w.refused).sum();
    assert!(
        refused > 1000,
        "the workers refused only {refused} garbage words: {s:?}"
    );
    assert!(
        rt.log().contains("not a live task"),
        "the log names no refused word:\n{}",
        rt.log()
    );
}

#[test]
fn stale_pointers_and_scribbles_are_refused_or_out_of_reach() {
    let _w = Watchdog::new("stale_pointers", Duration::from_secs(180));
    let setup = setup_with("stale_pointers", "");
    let _rt = RuntimeGuard::start(&setup);
    let mut kids = Children::new();
    let good = spawn(&mut kids, &setup, &["good", "2000"], "good");
    let i = spawn(&mut kids, &setup, &["stale"], "stale");
    kids.wait_for(i, WATCHDOG);
    let i = spawn(&mut kids, &setup, &["scribble"], "scribble");
    kids.wait_for(i, WATCHDOG);
    kids.wait_for(good, WATCHDOG);
    // New clients still connect and every lane still serves.
    every_lane_serves(&mut kids, &setup);
    let s = status(&setup);
    assert_healthy(&s);
    assert!(
        s.workers.iter().map(|w| w.refused).sum::<u64>() >= 8,
        "{s:?}"
    );
}

#[test]
fn killed_clients_give_back_every_byte_slot_and_lane() {
    let _w = Watchdog::new("killed_clients", Duration::from_secs(400));
    let setup = setup_with("killed_clients", "");
    let _rt = RuntimeGuard::start(&setup);
    let mut kids = Children::new();
    // Create the sleepers' pool once, so that the baseline includes it.
    let i = spawn(&mut kids, &setup, &["flood", "1", "1"], "warm-up");
    kids.wait_for(i, WATCHDOG);
    let base = held(&status(&setup));
    // 80 rounds by default (every lane sees a claiming client die); a longer
    // soak: CHI_HOSTILE_ROUNDS=1000, or `chi-bench soak`.
    let rounds: usize = std::env::var("CHI_HOSTILE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80);
    let lanes = status(&setup).lanes.len();
    for r in 0..rounds {
        // A client holding tasks (some in flight), buffers and fire-and-forget
        // tasks, killed with SIGKILL.
        let h = spawn(&mut kids, &setup, &["hold", "40", "4"], &format!("hold{r}"));
        wait_ready(&mut kids, h);
        kids.kill(h);
        // A well-behaved client killed at a random moment of its pushes and waits.
        if r % 2 == 0 {
            let g = spawn(&mut kids, &setup, &["good", "5000"], &format!("good{r}"));
            std::thread::sleep(Duration::from_millis(20 + (r as u64 * 37) % 60));
            kids.kill(g);
        }
        // A client that dies between claiming a lane cell and publishing it.
        if r % 10 == 0 {
            let lane = (r / 10) % lanes;
            let c = spawn(&mut kids, &setup, &["claim", &lane.to_string()], "claim");
            let st = kids.expect_exit(c, WATCHDOG);
            assert!(st.is_some(), "the claiming client did not exit");
            assert!(kids.output(c).contains("READY"), "{}", kids.output(c));
        }
    }
    // Every lane moves again, and everything comes back.
    every_lane_serves(&mut kids, &setup);
    wait_until(
        Duration::from_secs(60),
        "the reaper giving everything back",
        || gave_back(&held(&status(&setup)), &base),
    );
    let s = status(&setup);
    assert_healthy(&s);
    assert!(s.reaper.clients_reaped >= rounds as u64, "{:?}", s.reaper);
    assert!(s.reaper.blocks_freed > 0, "{:?}", s.reaper);
    let skipped: u64 = s.workers.iter().map(|w| w.cells_skipped).sum();
    assert!(skipped >= 1, "no claimed cell was skipped: {s:?}");
}

/// Whether `now` is back at `base`: every byte and registration exactly; the
/// owner slots too, but for the runtime's own (a module attaches its
/// allocator handles on first use, on the workers that first call it).
fn gave_back(now: &Held, base: &Held) -> bool {
    now.main_bytes == base.main_bytes
        && now.data_bytes == base.data_bytes
        && now.clients == base.clients
        && now.main_owners <= base.main_owners + 4
        && now.data_owners <= base.data_owners + 4
}

/// Waits until child `i` printed READY (failing the test after the watchdog limit).
fn wait_ready(kids: &mut Children, i: usize) {
    let deadline = std::time::Instant::now() + WATCHDOG;
    while !kids.output(i).contains("READY") {
        assert!(
            std::time::Instant::now() < deadline,
            "no READY from child {i}:\n{}",
            kids.output(i)
        );
        if kids.expect_exit(i, Duration::ZERO).is_some() {
            panic!("child {i} exited before READY:\n{}", kids.output(i));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn two_thousand_clients_connect_and_die() {
    let _w = Watchdog::new("two_thousand_clients", Duration::from_secs(600));
    let setup = setup_with("two_thousand_clients", "");
    let _rt = RuntimeGuard::start(&setup);
    let base = held(&status(&setup));
    let total = 2000;
    let batch = 16;
    let mut done = 0;
    while done < total {
        let mut kids = Children::new();
        let ids: Vec<usize> = (0..batch)
            .map(|k| {
                spawn(
                    &mut kids,
                    &setup,
                    &["connect"],
                    &format!("connect{}", done + k),
                )
            })
            .collect();
        for i in ids {
            kids.wait_for(i, WATCHDOG);
        }
        done += batch;
    }
    // Owner slots never ran out (every connect above succeeded), and all of
    // them come back.
    wait_until(
        Duration::from_secs(60),
        "the reaper giving every slot back",
        || gave_back(&held(&status(&setup)), &base),
    );
    let mut kids = Children::new();
    let i = spawn(&mut kids, &setup, &["good", "200"], "good");
    kids.wait_for(i, WATCHDOG);
}

#[test]
fn a_flood_of_slow_tasks_waits_in_the_lanes_and_none_fails() {
    let _w = Watchdog::new("slow_flood", Duration::from_secs(300));
    let setup = setup_with("slow_flood", "coroutine:\n  max_live: 8\n");
    let rt = RuntimeGuard::start(&setup);
    let mut kids = Children::new();
    let floods: Vec<usize> = (0..3)
        .map(|i| {
            spawn(
                &mut kids,
                &setup,
                &["flood", "200", "20"],
                &format!("flood{i}"),
            )
        })
        .collect();
    let good = spawn(&mut kids, &setup, &["good", "2000"], "good");
    for i in floods.into_iter().chain([good]) {
        kids.wait_for(i, WATCHDOG);
    }
    let s = status(&setup);
    assert_healthy(&s);
    assert!(
        !rt.log().contains("coroutine stack"),
        "stacks ran out:\n{}",
        rt.log()
    );
}

#[test]
fn stale_frees_and_frees_in_flight_are_refused() {
    let _w = Watchdog::new("stale_frees", Duration::from_secs(120));
    let setup = setup_with("stale_frees", "");
    let rt = RuntimeGuard::start(&setup);
    let c = Client::connect(setup.opts()).expect("connect");
    let m = ModNameClient::create(&c, "sleepers", &CreateParams::default()).expect("pool");

    // A stale free: the block now holds another task.
    let t = c.new_task(EchoTask::new(PoolId::ADMIN, 1)).unwrap();
    // SAFETY: a second handle, used only to check that its free is refused.
    let stale = unsafe { t.duplicate() };
    c.try_del_task(t).expect("first free");
    let again = c.new_task(EchoTask::new(PoolId::ADMIN, 2)).unwrap();
    match c.try_del_task(stale) {
        Err(ClientError::BadFree(msg)) => assert!(msg.contains("stale"), "{msg}"),
        other => panic!("a stale free was not refused: {other:?}"),
    }
    assert_eq!(again.get().value, 2, "the stale free touched the new task");
    c.try_del_task(again).expect("free of the live task");

    // A free while the runtime runs the task.
    let slow = c
        .new_task(SleepTask::new(m.pool, DomainQuery::local(), 300, 0))
        .unwrap();
    c.enqueue(&slow, Priority::LowLatency).unwrap();
    // SAFETY: as above.
    let dup = unsafe { slow.duplicate() };
    match c.try_del_task(dup) {
        Err(ClientError::BadFree(msg)) => assert!(msg.contains("not completed"), "{msg}"),
        other => panic!("a free in flight was not refused: {other:?}"),
    }

    // A clumsy client frees a running task behind the API's back, and its
    // block is reused: the late completion must not touch the new task.
    c.main_allocator().free(slow.shm()).expect("raw free");
    let reused = c
        .new_task(SleepTask::new(m.pool, DomainQuery::local(), 1, 0))
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    if reused.shm() == slow.shm() {
        assert!(
            !reused.is_complete(),
            "the freed task's completion was written into the task that reused its block"
        );
        assert!(rt.log().contains("generation changed"), "{}", rt.log());
    }
    c.enqueue(&reused, Priority::LowLatency).unwrap();
    c.wait_timeout(&reused, Duration::from_secs(20)).unwrap();
    reused.result().unwrap();
    c.del_task(reused);
    assert_eq!(AdminClient::new(&c).echo(PoolId::ADMIN, 9).unwrap(), 9);
}

/// Waits until status reports a worker retired for being stalled.
fn wait_for_retired_worker(setup: &Setup) {
    wait_until(
        Duration::from_secs(10),
        "status reporting a retired worker",
        || status(setup).workers.iter().any(|w| w.retired && w.stalled),
    );
}

/// A task suspended on a worker that then wedges in another task is not
/// resumed by anyone: its waiter gets `NoProgress` after the task deadline
/// instead of waiting for ever.
#[test]
fn a_task_suspended_on_a_wedged_worker_ends_in_an_error() {
    let _w = Watchdog::new("suspended_on_wedged", Duration::from_secs(120));
    // One low-latency worker: the napping and the blocking task share it.
    let modules = support::modules::module_dir().display().to_string();
    let setup = Setup::with(
        "suspended_on_wedged",
        ConfigOpts {
            low_latency: 1,
            extra: format!(
                "module_path: [{modules:?}]\nreaper:\n  interval: 50ms\nsupervisor:\n  \
                 stall_timeout: 500ms\ntask_deadline: 2s\n"
            ),
            ..ConfigOpts::default()
        },
    );
    let rt = RuntimeGuard::start(&setup);
    let mut kids = Children::new();
    // Yields for ten minutes: suspended on the worker most of the time.
    let n = spawn(&mut kids, &setup, &["nap", "600000"], "nap");
    wait_ready(&mut kids, n);
    // Then a task holds that worker without yielding.
    let b = spawn(&mut kids, &setup, &["block", "600000"], "block");
    wait_ready(&mut kids, b);
    kids.wait_for(n, WATCHDOG);
    let out = kids.output(n);
    assert!(out.contains("DONE no-progress"), "{out}");
    kids.wait_for(b, WATCHDOG);
    let out = kids.output(b);
    assert!(out.contains("DONE no-progress"), "{out}");
    let log = rt.stop();
    assert!(log.contains("exits without them"), "{log}");
}

/// A handler that never returns or yields does not keep a stop from ending:
/// past the grace the runtime exits without the wedged worker and removes its
/// segments itself (`stop` checks exit code 0 and that no segment is left).
#[test]
fn a_stop_ends_even_with_a_wedged_worker() {
    let _w = Watchdog::new("stop_wedged", Duration::from_secs(120));
    let setup = setup_with("stop_wedged", "supervisor:\n  stall_timeout: 500ms\n");
    let rt = RuntimeGuard::start(&setup);
    let mut kids = Children::new();
    // The handler holds its worker for ten minutes without yielding.
    let b = spawn(&mut kids, &setup, &["block", "600000"], "block");
    wait_ready(&mut kids, b);
    wait_for_retired_worker(&setup);
    let log = rt.stop();
    assert!(log.contains("exits without them"), "{log}");
}

#[test]
fn a_wedged_worker_loses_its_lanes_and_its_waiter_gets_an_error() {
    let _w = Watchdog::new("wedged_worker", Duration::from_secs(120));
    // Workers pinned by kind: the replacement is pinned like the wedged one.
    let mine = chi_runtime::config::CpuList::of_current_thread().expect("sched_getaffinity");
    let (first, last) = (mine.cpus()[0], mine.cpus()[mine.cpus().len() - 1]);
    let modules = support::modules::module_dir().display().to_string();
    let setup = Setup::with(
        "wedged_worker",
        ConfigOpts {
            workers_extra: format!(
                "  affinity:\n    low_latency: {first}\n    high_latency: {last}\n"
            ),
            extra: format!(
                "module_path: [{modules:?}]\nreaper:\n  interval: 50ms\nsupervisor:\n  \
                 stall_timeout: 500ms\ntask_deadline: 2s\n"
            ),
            ..ConfigOpts::default()
        },
    );
    let rt = RuntimeGuard::start(&setup);
    let mut kids = Children::new();
    // The handler holds its worker for 10 s without yielding.
    let b = spawn(&mut kids, &setup, &["block", "10000"], "block");
    wait_ready(&mut kids, b);
    wait_for_retired_worker(&setup);
    // While the handler still blocks, every lane is served (the wedged
    // worker's by its replacement).
    every_lane_serves(&mut kids, &setup);
    kids.wait_for(b, WATCHDOG);
    let out = kids.output(b);
    assert!(out.contains("DONE no-progress"), "{out}");
    let log = rt.log();
    assert!(log.contains("no progress"), "{log}");
    assert!(log.contains("moved the wedged worker's lanes"), "{log}");
    let s = status(&setup);
    assert!(s.workers.len() > 3, "no replacement worker: {s:?}");
    for w in &s.workers {
        let want = if w.kind == "low_latency" { first } else { last };
        assert_eq!(w.cpus, want.to_string(), "{w:?}");
    }
    every_lane_serves(&mut kids, &setup);
}
