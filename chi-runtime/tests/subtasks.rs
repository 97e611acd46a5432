//! Tasks that call tasks, on real runtimes with the `mod_name` module loaded:
//! a handler fans out subtasks to another module and sums the answers, a
//! recursive method goes 64 levels deep on a one-worker runtime (the parent
//! waits for a subtask that the same worker must run), the depth limit of
//! the configuration is reported by name, a client waits once for many
//! tasks, and subtasks' memory is freed exactly once; a Dynamic task failed
//! at stop still reaches the module's Monitor(Cleanup).

mod support;

use chi_sdk::client::{CallError, Client, PendingSet, TaskError};
use chi_sdk::types::PoolId;
use chimaera_mod_name_runtime as mod_name;
use mod_name::{CreateParams, ModNameClient};
use support::modules::module_dir;
use support::*;

/// A runtime with the module libraries on its path, `low` low-latency
/// workers and `extra` YAML lines.
fn setup(test: &str, low: u32, extra: &str) -> Setup {
    Setup::with(
        test,
        ConfigOpts {
            low_latency: low,
            extra: format!(
                "module_path: [{:?}]\n{extra}",
                module_dir().display().to_string()
            ),
            ..ConfigOpts::default()
        },
    )
}

#[test]
fn a_handler_fans_out_to_another_module_and_sums_the_answers() {
    let _wd = Watchdog::new("fan_out", WATCHDOG);
    let s = setup("fan_out", 2, "");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "fan", &CreateParams::default()).expect("pool");
    let blocks_before = client.main_allocator().stats().live_blocks;

    // 100 echoes to the admin pool (the runtime's admin module), summed.
    let sum = m
        .fan_out(&client, PoolId::ADMIN, mod_name::TARGET_ADMIN, 100)
        .expect("FanOut to the admin pool");
    assert_eq!(sum, 5050);
    // And to a pool of the module itself, through its own typed client.
    let other = ModNameClient::create(&client, "fan_target", &CreateParams::default())
        .expect("second pool");
    let sum = m
        .fan_out(&client, other.pool, mod_name::TARGET_MOD_NAME, 100)
        .expect("FanOut to another mod_name pool");
    assert_eq!(sum, 5050);
    // Repeat: every subtask's block is freed once, so nothing accumulates.
    for _ in 0..20 {
        assert_eq!(
            m.fan_out(&client, PoolId::ADMIN, mod_name::TARGET_ADMIN, 100)
                .expect("FanOut"),
            5050
        );
    }
    // Every subtask's block was freed, and none twice (a second free would
    // be refused, or take a block that is not the subtask's).
    let blocks_after = client.main_allocator().stats().live_blocks;
    assert!(
        blocks_after >= blocks_before && blocks_after <= blocks_before + 4,
        "live blocks of the main segment: {blocks_before} before, {blocks_after} after 2,200 \
         subtasks"
    );
    drop(client);
    rt.stop();
}

#[test]
fn a_recursive_method_goes_64_deep_on_one_worker() {
    let _wd = Watchdog::new("recurse_64", WATCHDOG);
    let s = setup("recurse_64", 1, "");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "deep", &CreateParams::default()).expect("pool");
    // A chain: every parent waits for a child that only this worker can run.
    let (tasks, deepest) = m.recurse(&client, 64, 1).expect("Recurse 64 deep");
    assert_eq!((tasks, deepest), (65, 64));
    // A tree: 1 + 3 + 9 + 27 + 81 tasks.
    let (tasks, deepest) = m.recurse(&client, 4, 3).expect("Recurse, a tree");
    assert_eq!((tasks, deepest), (121, 4));
    drop(client);
    rt.stop();
}

#[test]
fn a_subtask_past_the_depth_limit_fails_naming_the_key() {
    let _wd = Watchdog::new("depth_limit", WATCHDOG);
    let s = setup("depth_limit", 1, "tasks:\n  max_depth: 8\n");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "deep", &CreateParams::default()).expect("pool");
    assert_eq!(m.recurse(&client, 8, 1).expect("8 levels fit"), (9, 8));
    match m.recurse(&client, 9, 1) {
        Err(CallError::Task(TaskError { message, .. })) => {
            assert!(
                message.contains("tasks.max_depth = 8") && message.contains("depth 9"),
                "the error names the key and the depth: {message}"
            );
        }
        other => panic!("a 9-deep recursion with max_depth 8 must fail, got {other:?}"),
    }
    // The runtime goes on.
    assert_eq!(m.echo(&client, 7).expect("echo after the failure"), 7);
    drop(client);
    rt.stop();
}

#[test]
fn a_client_waits_once_for_ten_thousand_tasks() {
    let _wd = Watchdog::new("wait_all", WATCHDOG);
    let s = setup("wait_all", 2, "");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "many", &CreateParams::default()).expect("pool");

    let mut set = PendingSet::new(&client);
    for v in 0..10_000u64 {
        set.push(m.async_echo(&client, v).expect("submit"));
    }
    assert_eq!(set.remaining(), 10_000);
    let replies = set.wait_all_with(|t| t.reply);
    for (v, r) in replies.into_iter().enumerate() {
        assert_eq!(r.expect("echo"), v as u64);
    }

    // The completion-order form hands back every task once.
    let mut set = PendingSet::new(&client);
    for v in 0..1000u64 {
        set.push(m.async_echo(&client, v).expect("submit"));
    }
    let mut seen = vec![false; 1000];
    for (i, r) in set.completions() {
        let t = r.expect("echo");
        assert_eq!(t.get().reply, i as u64);
        assert!(!seen[i], "task {i} handed back twice");
        seen[i] = true;
        client.del_task(t);
    }
    assert!(seen.iter().all(|&b| b));

    // Client::wait_all on tasks of different types.
    let a = m.async_echo(&client, 1).expect("submit");
    let b = m
        .async_custom(&client, "x", mod_name::OP_UPPERCASE)
        .expect("submit");
    client.wait_all(&[&a, &b]).expect("wait_all");
    assert!(a.is_complete() && b.is_complete());
    drop((a, b));
    drop(client);
    rt.stop();
}

/// The status of the runtime of `s`: (parked, periodic, live) summed over
/// the workers.
fn parked_periodic_live(s: &Setup) -> (u64, u64, u64) {
    let st = Client::status(&s.opts()).expect("status");
    st.workers.iter().fold((0, 0, 0), |(p, q, l), w| {
        (p + w.parked_tasks, q + w.periodic_tasks, l + w.live_tasks)
    })
}

#[test]
fn a_periodic_task_runs_each_period_until_cancelled() {
    let _wd = Watchdog::new("periodic", WATCHDOG);
    let s = setup("periodic", 2, "");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "ticks", &CreateParams::default()).expect("pool");

    // Custom(OP_COUNT) counts the calls of the container: each run is one.
    let data = chi_sdk::shm::ShmString::from_str(client.main_allocator(), "").expect("data");
    let task = mod_name::CustomTask::new(
        m.pool,
        chi_sdk::types::DomainQuery::local(),
        data,
        mod_name::OP_COUNT,
    );
    let period = std::time::Duration::from_millis(20);
    let start = std::time::Instant::now();
    let pending = client
        .submit_periodic(task, period, chi_sdk::queue::Priority::LowLatency)
        .expect("submit a periodic task");
    std::thread::sleep(period * 10);
    assert_eq!(
        parked_periodic_live(&s).1,
        1,
        "status shows the periodic task"
    );
    client.cancel(&pending).expect("cancel");
    let elapsed = start.elapsed();
    match pending.wait() {
        Err(CallError::Task(TaskError { code, .. })) => {
            assert_eq!(code, chi_sdk::task::code::CANCELLED)
        }
        other => panic!("a cancelled periodic task ends CANCELLED, got {other:?}"),
    }
    // Runs happened every period, never more often (no catch-up bursts).
    let (_, runs) = m.custom(&client, "", mod_name::OP_COUNT).expect("count");
    let most = (elapsed.as_millis() / period.as_millis()) as u32 + 1;
    assert!(
        (2..=most).contains(&runs),
        "{runs} runs in {elapsed:?} with a period of {period:?} (at most {most})"
    );
    // Gone from status.
    let (_, periodic, _) = parked_periodic_live(&s);
    assert_eq!(
        periodic, 0,
        "the cancelled periodic task is gone from status"
    );

    // Destroying the pool ends a periodic task too.
    let data = chi_sdk::shm::ShmString::from_str(client.main_allocator(), "").expect("data");
    let task = mod_name::CustomTask::new(
        m.pool,
        chi_sdk::types::DomainQuery::local(),
        data,
        mod_name::OP_COUNT,
    );
    let pending = client
        .submit_periodic(task, period, chi_sdk::queue::Priority::LowLatency)
        .expect("submit");
    std::thread::sleep(period * 3);
    chi_sdk::admin::AdminClient::new(&client)
        .destroy_pool(m.pool)
        .expect("destroy the pool");
    match pending.wait() {
        Err(CallError::Task(TaskError { code, .. })) => {
            assert_eq!(code, chi_sdk::task::code::NO_POOL)
        }
        other => panic!("a periodic task of a destroyed pool ends NO_POOL, got {other:?}"),
    }
    // The module's Monitor(Cleanup) ran for it (mod_name logs it).
    let mut cleaned = false;
    for _ in 0..200 {
        if rt.log().contains("Custom task cleaned up") {
            cleaned = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(cleaned, "Monitor(Cleanup) did not run:\n{}", rt.log());
    drop(client);
    rt.stop();
}

#[test]
fn cancelling_a_parent_cancels_its_subtasks() {
    let _wd = Watchdog::new("cancel_parent", WATCHDOG);
    let s = setup("cancel_parent", 2, "");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "parent", &CreateParams::default()).expect("pool");
    let leaves = ModNameClient::create(&client, "leaves", &CreateParams::default()).expect("pool");

    // Four subtasks that would sleep for ten minutes.
    let pending = m
        .async_fan_out_sleeps(&client, leaves.pool, 4, 600_000)
        .expect("submit");
    // Wait until the parent and its four subtasks are parked.
    while parked_periodic_live(&s).0 < 5 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    client.cancel(&pending).expect("cancel");
    match pending.wait() {
        Err(CallError::Task(TaskError { code, message })) => {
            assert_eq!(code, chi_sdk::task::code::CANCELLED, "{message}");
            assert!(
                message.contains("4 of its subtasks were cancelled"),
                "every subtask was cancelled: {message}"
            );
        }
        other => panic!("the cancelled parent ends CANCELLED, got {other:?}"),
    }
    // Nothing is left parked or live.
    let (parked, _, live) = parked_periodic_live(&s);
    assert_eq!((parked, live), (0, 0));
    // A thousand of them too.
    let pending = m
        .async_fan_out_sleeps(&client, leaves.pool, 1000, 600_000)
        .expect("submit");
    while parked_periodic_live(&s).0 < 1001 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    client.cancel(&pending).expect("cancel");
    assert!(pending.wait().is_err());
    assert_eq!(parked_periodic_live(&s).2, 0);
    // A task cancelled before it runs never runs.
    let p = m.async_sleep(&client, 600_000, false).expect("submit");
    client.cancel(&p).expect("cancel");
    assert!(p.wait().is_err());
    drop(client);
    rt.stop();
}

#[test]
fn flush_returns_only_when_every_earlier_task_ran() {
    let _wd = Watchdog::new("flush", WATCHDOG);
    let s = setup("flush", 2, "");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "counted", &CreateParams::default()).expect("pool");
    let n: u32 = 1_000_000;
    // Fire-and-forget Custom(OP_COUNT) tasks: the container counts them; its
    // Monitor routes them to the worker of a processing lane, another lane
    // than the one they are submitted on.
    for _ in 0..n {
        let data = chi_sdk::shm::ShmString::new();
        let mut task = mod_name::CustomTask::new(
            m.pool,
            chi_sdk::types::DomainQuery::local(),
            data,
            mod_name::OP_COUNT,
        );
        task.header.flags |= chi_sdk::task::flags::FIRE_AND_FORGET;
        let t = client.new_task(task).expect("task");
        client
            .enqueue(&t, chi_sdk::queue::Priority::LowLatency)
            .expect("enqueue");
    }
    chi_sdk::admin::AdminClient::new(&client)
        .flush()
        .expect("flush");
    let (_, before) = m.custom(&client, "", mod_name::OP_COUNT).expect("count");
    assert_eq!(
        before, n,
        "every fire-and-forget task ran before the flush returned"
    );
    drop(client);
    rt.stop();
}

#[test]
fn a_thousand_parked_tasks_leave_the_workers_asleep() {
    let _wd = Watchdog::new("parked_idle", WATCHDOG);
    // All the sleeps run on one worker (the default lane of the container).
    let s = setup(
        "parked_idle",
        2,
        "coroutine:\n  max_live: 2048\ntasks:\n  stop_drain: 100ms\n",
    );
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "sleepers", &CreateParams::default()).expect("pool");
    let mut set = PendingSet::new(&client);
    for _ in 0..1000 {
        set.push(m.async_sleep(&client, 600_000, false).expect("submit"));
    }
    while parked_periodic_live(&s).0 < 1000 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Parked tasks cost nothing: the workers go to sleep on their doorbells.
    let mut asleep = false;
    for _ in 0..400 {
        let st = Client::status(&s.opts()).expect("status");
        if st.workers.iter().all(|w| w.sleeping || w.lanes.is_empty()) {
            asleep = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(asleep, "the workers never slept with only parked tasks");
    // The stop ends them (SHUTDOWN), without waiting for their ten minutes.
    std::mem::forget(set);
    drop(client);
    rt.stop();
}

#[test]
fn status_names_the_task_a_worker_runs() {
    let _wd = Watchdog::new("status_running", WATCHDOG);
    let s = setup("status_running", 2, "");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "busy", &CreateParams::default()).expect("pool");
    // Sleep(block) holds its worker: the worker is inside the task meanwhile.
    let p = m.async_sleep(&client, 1500, true).expect("submit");
    let node = p.task().expect("task").get().header.task_node;
    let want = format!(
        "task {}.0 (major.depth) of {}, method 15",
        node.major, m.pool
    );
    let mut seen = None;
    for _ in 0..300 {
        let st = Client::status(&s.opts()).expect("status");
        if let Some(r) = st.workers.iter().find_map(|w| w.running.clone()) {
            seen = Some(r);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(seen.as_deref(), Some(want.as_str()));
    p.wait().expect("sleep");
    drop(client);
    rt.stop();
}

/// A Dynamic task discarded at stop before its monitor chose a container
/// still reaches the module's Monitor(Cleanup), through the pool's first
/// container (mod_name logs it for Custom).
#[test]
fn a_dynamic_task_failed_at_stop_is_cleaned_up() {
    let _wd = Watchdog::new("dynamic_cleanup", WATCHDOG);
    let s = setup("dynamic_cleanup", 1, "");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "dyn", &CreateParams::default()).expect("pool");
    // The one low-latency worker is held by a blocking Sleep; the Dynamic
    // Custom waits behind it on the lanes until the stop fails it.
    let sleeping = m.async_sleep(&client, 800, true).expect("submit Sleep");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let dynamic = m
        .with_query(chi_sdk::types::DomainQuery::dynamic())
        .async_custom(&client, "x", mod_name::OP_COUNT)
        .expect("submit a Dynamic Custom");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let _ = Client::request_stop(&s.opts());
    match dynamic.wait() {
        Err(CallError::Task(TaskError { code, .. })) => {
            assert_eq!(code, chi_sdk::task::code::SHUTDOWN)
        }
        other => panic!("the Dynamic task fails SHUTDOWN at stop, got {other:?}"),
    }
    drop(sleeping);
    drop(client);
    let log = rt.stop();
    assert!(
        log.contains("Custom task cleaned up"),
        "Monitor(Cleanup) did not run for the Dynamic task:\n{log}"
    );
}
