//! Subtasks run inline on the stack of the handler that waits for them, on
//! real runtimes with the `mod_name` module loaded (its StackProbe method
//! reports which levels of a chain ran on their parent's coroutine): a
//! waited-for subtask of the same worker runs inline, a handler with too
//! little stack left falls back to a coroutine of the subtask's own, a
//! subtask that blocks while inline blocks its parent with it (listed as
//! parked, woken through its parent's coroutine, cancelled with it).

mod support;

use chi_sdk::client::{CallError, Client, TaskError};
use chimaera_mod_name_runtime as mod_name;
use mod_name::{CreateParams, ModNameClient};
use support::modules::module_dir;
use support::*;

/// A runtime with the module libraries on its path and `low` low-latency
/// workers.
fn setup(test: &str, low: u32) -> Setup {
    Setup::with(
        test,
        ConfigOpts {
            low_latency: low,
            extra: format!("module_path: [{:?}]\n", module_dir().display().to_string()),
            ..ConfigOpts::default()
        },
    )
}

/// Parked tasks summed over the workers.
fn parked(s: &Setup) -> u64 {
    let st = Client::status(&s.opts()).expect("status");
    st.workers.iter().map(|w| w.parked_tasks).sum()
}

/// Bits 1..=depth.
fn levels(depth: u32) -> u64 {
    ((1u64 << depth) - 1) << 1
}

#[test]
fn a_subtask_waited_for_on_its_worker_runs_inline() {
    let _wd = Watchdog::new("inline_taken", WATCHDOG);
    let s = setup("inline_taken", 1);
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "probe", &CreateParams::default()).expect("pool");
    // Every level of a short chain runs on the top task's coroutine, with
    // its own task node (depth + 1 each level).
    assert_eq!(
        m.stack_probe(&client, 3, 0, 0).expect("StackProbe"),
        (levels(3), 3)
    );
    // Nothing is left live or parked.
    assert_eq!(parked(&s), 0);
    drop(client);
    rt.stop();
}

#[test]
fn a_subtask_runs_on_its_own_coroutine_when_the_stack_is_low() {
    let _wd = Watchdog::new("inline_low_stack", WATCHDOG);
    let s = setup("inline_low_stack", 1);
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "probe", &CreateParams::default()).expect("pool");
    // The top task uses 56 KiB of its 64 KiB stack before it submits: its
    // child gets a coroutine of its own (and runs its own child inline).
    let (inline, deepest) = m.stack_probe(&client, 2, 56 << 10, 0).expect("StackProbe");
    assert_eq!(deepest, 2);
    assert_eq!(
        inline & 0b10,
        0,
        "depth 1 ran inline on a nearly full stack"
    );
    assert_eq!(
        inline, 0b100,
        "depth 2 runs inline on depth 1's fresh stack"
    );
    // A long chain runs inline until the stack is used down to its limit,
    // then goes on on new coroutines: some levels are not inline, and the
    // chain completes.
    let (inline, deepest) = m.stack_probe(&client, 200, 0, 0).expect("StackProbe");
    assert_eq!(deepest, 200);
    assert!(
        inline.count_ones() >= 8 && inline & levels(62) != levels(62),
        "levels run inline (bit d: depth d, 63: 63 and deeper): {inline:#x}"
    );
    drop(client);
    rt.stop();
}

#[test]
fn a_subtask_that_blocks_inline_blocks_its_parent_until_it_is_woken() {
    let _wd = Watchdog::new("inline_blocks", WATCHDOG);
    let s = setup("inline_blocks", 1);
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "probe", &CreateParams::default()).expect("pool");
    // The deepest of three inline levels sleeps (a timer of the top task's
    // coroutine): the whole chain waits, and ends when the timer fires.
    let p = m
        .async_stack_probe(&client, 3, 0, 300)
        .expect("submit StackProbe");
    // Meanwhile the top task and its three inline subtasks are parked.
    while parked(&s) < 4 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        p.wait_with(|t| (t.inline_levels, t.deepest))
            .expect("StackProbe"),
        (levels(3), 3)
    );
    assert_eq!(parked(&s), 0, "the inline subtasks are unlisted");

    // Cancelling the top task cancels the sleeping subtask through the
    // inline levels between them.
    let p = m
        .async_stack_probe(&client, 3, 0, 600_000)
        .expect("submit StackProbe");
    while parked(&s) < 4 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    client.cancel(&p).expect("cancel");
    match p.wait() {
        Err(CallError::Task(TaskError { code, message })) => {
            assert_eq!(code, chi_sdk::task::code::CANCELLED, "{message}")
        }
        other => panic!("the cancelled chain ends CANCELLED, got {other:?}"),
    }
    assert_eq!(parked(&s), 0);
    // The runtime goes on.
    assert_eq!(m.echo(&client, 7).expect("echo"), 7);
    drop(client);
    rt.stop();
}
