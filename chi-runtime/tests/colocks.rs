//! `chi_sdk::sync`'s CoMutex and CoRwLock in module code, on real runtimes
//! with the `mod_name` module loaded (its `kCoMutexTest` and `kCoRwLockTest`
//! methods), on one worker and on two:
//!
//! * eight tasks count to 100,000 under a CoMutex with a yield inside the
//!   critical section and lose no update; while they wait for the mutex,
//!   echoes on the same worker complete (waiting suspends the task, not the
//!   worker);
//! * the mutex goes to waiting tasks in the order they queued;
//! * a handler that holds a lock and waits for a subtask taking the same lock
//!   (same task graph) does not deadlock, and no other task graph gets in
//!   meanwhile;
//! * readers overlap (four readers inside at once), writers are alone (every
//!   section checks), a waiting writer goes before a reader that came after
//!   it.
//!
//! Nothing is timed: orderings come from the lock's queue length
//! (`MUTEX_STATUS`, `RW_STATUS`) and from holds released on request
//! (`MUTEX_OPEN`, `RW_OPEN`); every wait is bounded by the watchdog.

mod support;

use std::collections::BTreeSet;

use chi_sdk::client::{Client, Pending};
use chimaera_mod_name_runtime as mod_name;
use mod_name::{CoMutexReply, CoMutexTestTask, CoRwLockReply, CreateParams, ModNameClient};
use mod_name::{
    MUTEX_COUNT, MUTEX_HOLD, MUTEX_NESTED, MUTEX_OPEN, MUTEX_STATUS, RW_HOLD_READ, RW_HOLD_WRITE,
    RW_NESTED, RW_NESTED_UNDER_READ, RW_OPEN, RW_READ, RW_READ_TOGETHER, RW_STATUS, RW_WRITE,
};
use support::modules::module_dir;
use support::*;

/// A runtime with the module libraries on its path and `low` low-latency
/// workers (the processing lanes of a `mod_name` pool spread over them).
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

fn mutex_status(m: &ModNameClient, client: &Client) -> CoMutexReply {
    m.co_mutex_test(client, MUTEX_STATUS, 0, 0)
        .expect("CoMutexTest status")
}

fn rw_status(m: &ModNameClient, client: &Client) -> CoRwLockReply {
    m.co_rw_lock_test(client, RW_STATUS, 0, 0, 0)
        .expect("CoRwLockTest status")
}

/// Waits until `n` tasks wait for the pool's CoMutex.
fn until_mutex_queued(m: &ModNameClient, client: &Client, n: u32) {
    wait_until(
        WATCHDOG,
        &format!("{n} tasks waiting for the CoMutex"),
        || mutex_status(m, client).queued == n,
    );
}

/// Waits until `n` tasks wait for the pool's CoRwLock.
fn until_rw_queued(m: &ModNameClient, client: &Client, n: u32) {
    wait_until(
        WATCHDOG,
        &format!("{n} tasks waiting for the CoRwLock"),
        || rw_status(m, client).queued == n,
    );
}

#[test]
fn the_lock_methods_have_the_seeds_ids() {
    assert_eq!(mod_name::method::CO_MUTEX_TEST, 20);
    assert_eq!(mod_name::method::CO_RW_LOCK_TEST, 21);
}

/// Eight tasks of 12,500 iterations, each a read, a yield and a write inside
/// the critical section: 100,000 without a lost update. They first queue
/// behind a task that holds the mutex until told; meanwhile echoes complete on
/// the same worker(s).
fn count_to_100k(test: &str, low: u32) {
    const TASKS: u32 = 8;
    const ITERS: u32 = 12_500;
    let _wd = Watchdog::new(test, WATCHDOG);
    let s = setup(test, low);
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "count", &CreateParams::default()).expect("pool");

    let hold = m
        .async_co_mutex_test(&client, MUTEX_HOLD, 0, 0)
        .expect("submit the holder");
    wait_until(WATCHDOG, "the holder takes the CoMutex", || {
        mutex_status(&m, &client).locked
    });
    let counters: Vec<Pending<'_, CoMutexTestTask>> = (0..TASKS)
        .map(|i| {
            m.async_co_mutex_test(&client, MUTEX_COUNT, ITERS, i)
                .expect("submit a counter")
        })
        .collect();
    until_mutex_queued(&m, &client, TASKS);

    // Every counter is suspended in the mutex's queue (none can finish before
    // the holder lets go): the worker(s) still serve other tasks.
    for v in 0..200 {
        assert_eq!(m.echo(&client, v).expect("echo while tasks wait"), v);
    }
    assert!(counters.iter().all(|c| !c.is_complete()) && !hold.is_complete());
    assert_eq!(mutex_status(&m, &client).queued, TASKS);

    m.co_mutex_test(&client, MUTEX_OPEN, 0, 0).expect("open");
    assert_eq!(hold.wait_with(|t| t.value).expect("holder"), 0);

    // While they count, echoes go on too (how many fit is up to the machine).
    let mut echoes_meanwhile = 0;
    while counters.iter().any(|c| !c.is_complete()) {
        m.echo(&client, 1).expect("echo while tasks count");
        echoes_meanwhile += 1;
    }
    eprintln!("{echoes_meanwhile} echoes completed while the counters ran");

    let replies: Vec<CoMutexReply> = counters
        .into_iter()
        .map(|c| c.wait_with(CoMutexTestTask::reply).expect("counter"))
        .collect();
    let total = u64::from(TASKS * ITERS);
    let last = replies.iter().map(|r| r.value).max().expect("replies");
    assert_eq!(last, total, "lost updates: {replies:?}");
    // Each task's last increment is its own value of the counter.
    let distinct: BTreeSet<u64> = replies.iter().map(|r| r.value).collect();
    assert_eq!(distinct.len(), TASKS as usize, "{replies:?}");
    let workers: BTreeSet<u32> = replies.iter().map(|r| r.worker).collect();
    assert_eq!(
        workers.len(),
        low.min(2) as usize,
        "the counters ran on the processing lanes' workers: {replies:?}"
    );
    assert_eq!(
        m.co_mutex_test(&client, MUTEX_COUNT, 1, 0)
            .expect("one more")
            .value,
        total + 1
    );
    let st = mutex_status(&m, &client);
    assert!(!st.locked && st.queued == 0, "{st:?}");
    drop(client);
    rt.stop();
}

#[test]
fn eight_tasks_count_to_100k_under_a_comutex_on_one_worker() {
    count_to_100k("mutex_100k_1w", 1);
}

#[test]
fn eight_tasks_count_to_100k_under_a_comutex_on_two_workers() {
    count_to_100k("mutex_100k_2w", 2);
}

#[test]
fn the_comutex_goes_to_waiting_tasks_in_arrival_order() {
    let _wd = Watchdog::new("mutex_fifo", WATCHDOG);
    let s = setup("mutex_fifo", 2);
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "fifo", &CreateParams::default()).expect("pool");

    let hold = m
        .async_co_mutex_test(&client, MUTEX_HOLD, 0, 0)
        .expect("submit the holder");
    wait_until(WATCHDOG, "the holder takes the CoMutex", || {
        mutex_status(&m, &client).locked
    });
    // Six tasks on alternating lanes (workers), each queued before the next
    // is submitted.
    let mut waiting = Vec::new();
    for i in 0..6u32 {
        waiting.push(
            m.async_co_mutex_test(&client, MUTEX_COUNT, 1, i)
                .expect("submit"),
        );
        until_mutex_queued(&m, &client, i + 1);
    }
    m.co_mutex_test(&client, MUTEX_OPEN, 0, 0).expect("open");
    hold.wait_with(|_| ()).expect("holder");
    // The i-th to queue was the i-th in: its increment made the counter i + 1.
    let order: Vec<u64> = waiting
        .into_iter()
        .map(|p| p.wait_with(|t| t.value).expect("task"))
        .collect();
    assert_eq!(order, [1, 2, 3, 4, 5, 6]);
    drop(client);
    rt.stop();
}

/// A chain of subtasks, each taking the mutex its parent holds and waits
/// with, beside four counters of other task graphs contending for it.
fn nested_comutex(test: &str, low: u32) {
    let _wd = Watchdog::new(test, WATCHDOG);
    let s = setup(test, low);
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "nested", &CreateParams::default()).expect("pool");

    // Alone first.
    assert_eq!(
        m.co_mutex_test(&client, MUTEX_NESTED, 3, 0)
            .expect("nested, alone")
            .value,
        4
    );

    // Then with counters of other graphs around it.
    let counters: Vec<_> = (0..4u32)
        .map(|i| {
            m.async_co_mutex_test(&client, MUTEX_COUNT, 300, i)
                .expect("submit a counter")
        })
        .collect();
    let nested: Vec<_> = (0..2u32)
        .map(|i| {
            m.async_co_mutex_test(&client, MUTEX_NESTED, 5, i)
                .expect("submit nested")
        })
        .collect();
    for n in nested {
        // Six increments while the parent held it: its five nested subtasks
        // got in, no counter did.
        assert_eq!(n.wait_with(|t| t.value).expect("nested"), 6);
    }
    for c in counters {
        c.wait_with(|_| ()).expect("counter");
    }
    assert_eq!(
        m.co_mutex_test(&client, MUTEX_COUNT, 1, 0)
            .expect("one more")
            .value,
        4 + 4 * 300 + 2 * 6 + 1
    );
    drop(client);
    rt.stop();
}

#[test]
fn a_subtask_re_enters_the_comutex_its_parent_holds_on_one_worker() {
    nested_comutex("mutex_nested_1w", 1);
}

#[test]
fn a_subtask_re_enters_the_comutex_its_parent_holds_on_two_workers() {
    nested_comutex("mutex_nested_2w", 2);
}

/// Four readers inside at once; then readers and writers mixed, every
/// section checking whom it finds inside; then a writer holding the lock
/// while readers queue and echoes complete.
fn readers_and_writers(test: &str, low: u32) {
    let _wd = Watchdog::new(test, WATCHDOG);
    let s = setup(test, low);
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "rw", &CreateParams::default()).expect("pool");

    // Each stays inside until four readers are in: they overlap, or the
    // replies say how many came.
    let together: Vec<_> = (0..4u32)
        .map(|i| {
            m.async_co_rw_lock_test(&client, RW_READ_TOGETHER, 0, 4, i)
                .expect("submit a reader")
        })
        .collect();
    for r in together {
        let r = r.wait_with(|t| t.reply()).expect("reader");
        assert!(r.max_readers >= 4, "readers did not overlap: {r:?}");
    }

    let mut tasks = Vec::new();
    for i in 0..4u32 {
        tasks.push(
            m.async_co_rw_lock_test(&client, RW_WRITE, 150, 2, i)
                .expect("submit a writer"),
        );
        tasks.push(
            m.async_co_rw_lock_test(&client, RW_READ, 150, 2, i)
                .expect("submit a reader"),
        );
    }
    for t in tasks {
        let r = t.wait_with(|t| t.reply()).expect("reader or writer");
        assert_eq!(r.violations, 0, "{r:?}");
    }
    let r = m
        .co_rw_lock_test(&client, RW_READ, 1, 1, 0)
        .expect("a last read");
    assert_eq!((r.value, r.violations), (4 * 150, 0), "{r:?}");

    // A writer holds it: readers queue, the worker(s) serve echoes.
    let w = m
        .async_co_rw_lock_test(&client, RW_HOLD_WRITE, 0, 0, 0)
        .expect("submit the holder");
    wait_until(WATCHDOG, "the writer takes the CoRwLock", || {
        rw_status(&m, &client).locked
    });
    let readers: Vec<_> = (0..3u32)
        .map(|i| {
            m.async_co_rw_lock_test(&client, RW_READ, 1, 1, i)
                .expect("submit a reader")
        })
        .collect();
    until_rw_queued(&m, &client, 3);
    for v in 0..100 {
        assert_eq!(m.echo(&client, v).expect("echo while readers wait"), v);
    }
    assert!(readers.iter().all(|r| !r.is_complete()));
    m.co_rw_lock_test(&client, RW_OPEN, 0, 0, 0).expect("open");
    let w_seq = w.wait_with(|t| t.seq).expect("writer");
    for r in readers {
        let r = r.wait_with(|t| t.reply()).expect("reader");
        assert!(r.seq > w_seq && r.violations == 0, "{r:?}");
    }
    drop(client);
    rt.stop();
}

#[test]
fn corwlock_readers_overlap_and_writers_are_alone_on_one_worker() {
    readers_and_writers("rw_1w", 1);
}

#[test]
fn corwlock_readers_overlap_and_writers_are_alone_on_two_workers() {
    readers_and_writers("rw_2w", 2);
}

#[test]
fn a_waiting_writer_goes_before_readers_that_came_after_it() {
    let _wd = Watchdog::new("rw_writer_first", WATCHDOG);
    let s = setup("rw_writer_first", 2);
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "writer_first", &CreateParams::default()).expect("pool");

    let hold = m
        .async_co_rw_lock_test(&client, RW_HOLD_READ, 0, 0, 0)
        .expect("submit the reader that holds");
    wait_until(WATCHDOG, "the reader takes the CoRwLock", || {
        rw_status(&m, &client).locked
    });
    let writer = m
        .async_co_rw_lock_test(&client, RW_WRITE, 1, 1, 1)
        .expect("submit the writer");
    until_rw_queued(&m, &client, 1);
    // Only a reader holds the lock, yet a reader that comes now queues behind
    // the writer.
    let late = m
        .async_co_rw_lock_test(&client, RW_READ, 1, 1, 0)
        .expect("submit the late reader");
    until_rw_queued(&m, &client, 2);
    assert!(!late.is_complete() && !writer.is_complete());

    m.co_rw_lock_test(&client, RW_OPEN, 0, 0, 0).expect("open");
    let hold = hold.wait_with(|t| t.reply()).expect("holder");
    let writer = writer.wait_with(|t| t.reply()).expect("writer");
    let late = late.wait_with(|t| t.reply()).expect("late reader");
    assert!(
        hold.seq < writer.seq && writer.seq < late.seq,
        "order of entry: holder {}, writer {}, late reader {}",
        hold.seq,
        writer.seq,
        late.seq
    );
    assert_eq!(late.value, 1, "the late reader saw the write");
    assert_eq!(late.violations, 0);
    drop(client);
    rt.stop();
}

/// A writer whose subtasks take the write lock (and read under it), and a
/// reader whose subtask writes (an upgrade within the graph), beside
/// writers of other graphs.
fn nested_corwlock(test: &str, low: u32) {
    let _wd = Watchdog::new(test, WATCHDOG);
    let s = setup(test, low);
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "rw_nested", &CreateParams::default()).expect("pool");

    assert_eq!(
        m.co_rw_lock_test(&client, RW_NESTED, 3, 0, 0)
            .expect("nested writes")
            .value,
        4
    );
    assert_eq!(
        m.co_rw_lock_test(&client, RW_NESTED_UNDER_READ, 2, 0, 0)
            .expect("a write under the graph's read")
            .value,
        3
    );

    let writers: Vec<_> = (0..3u32)
        .map(|i| {
            m.async_co_rw_lock_test(&client, RW_WRITE, 100, 1, i)
                .expect("submit a writer")
        })
        .collect();
    let nested = m
        .async_co_rw_lock_test(&client, RW_NESTED, 4, 0, 1)
        .expect("submit nested");
    let under_read = m
        .async_co_rw_lock_test(&client, RW_NESTED_UNDER_READ, 2, 0, 0)
        .expect("submit nested under a read");
    assert_eq!(nested.wait_with(|t| t.value).expect("nested"), 5);
    assert_eq!(under_read.wait_with(|t| t.value).expect("under read"), 3);
    for w in writers {
        assert_eq!(w.wait_with(|t| t.violations).expect("writer"), 0);
    }
    let r = m
        .co_rw_lock_test(&client, RW_READ, 1, 1, 0)
        .expect("a last read");
    assert_eq!(r.value, 4 + 3 + 3 * 100 + 5 + 3);
    drop(client);
    rt.stop();
}

#[test]
fn a_subtask_re_enters_the_corwlock_its_parent_holds_on_one_worker() {
    nested_corwlock("rw_nested_1w", 1);
}

#[test]
fn a_subtask_re_enters_the_corwlock_its_parent_holds_on_two_workers() {
    nested_corwlock("rw_nested_2w", 2);
}
