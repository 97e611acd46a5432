//! Tasks that call tasks, on real runtimes with the `mod_name` module loaded:
//! a handler fans out subtasks to another module and sums the answers, a
//! recursive method goes 64 levels deep on a one-worker runtime (the parent
//! waits for a subtask that the same worker must run), the depth limit of
//! the configuration is reported by name, a client waits once for many
//! tasks, and subtasks' memory is freed exactly once.

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
