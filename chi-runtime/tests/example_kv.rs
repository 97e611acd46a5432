//! The `kv` example module (`libchimaera_kv_runtime.so`, written with the
//! public SDK only and called through its generated client) in a real
//! runtime: 10,000 puts and gets from two threads with every value checked,
//! deletes, prefix scans and stats; a missing key's error; a pointer outside
//! the client-data segment refused with the runtime still serving; and every
//! client-data block freed. The `echo` example module, the smallest there is,
//! answers too. A last test holds both to their size: at most 150 lines of
//! author code for kv, 40 for echo.
//!
//! The test builds the module libraries itself (see `support::modules`).

mod support;

use chi_sdk::bytes::ClientBytes;
use chi_sdk::client::{CallError, Client, TaskError};
use chi_sdk::queue::Priority;
use chi_sdk::shm::{Allocator, Segment};
use chi_sdk::task::code;
use chimaera_kv_runtime::{CreateParams, GetTask, KvClient, errcode};
use support::modules::module_setup;
use support::*;

/// The call failed with `want`; returns its message.
fn task_err<T: std::fmt::Debug>(r: Result<T, CallError>, want: i32, what: &str) -> String {
    match r {
        Err(CallError::Task(TaskError { code, message })) if code == want => message,
        other => panic!("{what}: expected a task error with code {want}, got {other:?}"),
    }
}

/// The value thread `t` stores under key `i`: its length varies with `i`.
fn value(t: u32, i: u32) -> Vec<u8> {
    let seed = format!("thread {t} value {i};");
    seed.as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(seed.len() * (1 + (i % 7) as usize))
        .collect()
}

/// The key of entry `i` of thread `t`.
fn key(t: u32, i: u32) -> Vec<u8> {
    format!("t{t}/k{i:05}").into_bytes()
}

/// The live blocks of the runtime's client-data segment.
fn live_cdata_blocks(port: u16) -> u64 {
    let seg = Segment::attach(&chi_runtime::ipc::segment_name(port, "client_data"))
        .expect("attach the client-data segment");
    Allocator::attach(&seg)
        .expect("client-data allocator")
        .stats()
        .live_blocks
}

#[test]
fn puts_gets_scans_and_errors_through_the_generated_client() {
    let _wd = Watchdog::new("kv puts_gets_scans", WATCHDOG);
    let s = module_setup("kv_puts_gets");
    let _rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let baseline = live_cdata_blocks(s.port);
    let kv = KvClient::create(&client, "kv", &CreateParams::default()).expect("kv pool");

    // 10,000 puts and gets from two threads, each value read back and checked.
    const PER_THREAD: u32 = 5_000;
    std::thread::scope(|sc| {
        for t in 0..2 {
            let client = &client;
            sc.spawn(move || {
                for i in 0..PER_THREAD {
                    let replaced = kv.put(client, &key(t, i), &value(t, i)).expect("put");
                    assert_eq!(replaced, 0, "thread {t} key {i} was new");
                }
                for i in 0..PER_THREAD {
                    let got = kv.get(client, &key(t, i)).expect("get");
                    assert!(got == value(t, i), "thread {t} key {i}: wrong value");
                }
            });
        }
    });
    let (keys, bytes) = kv.stats(&client).expect("stats");
    assert_eq!(keys, 2 * u64::from(PER_THREAD));
    let expected: u64 = (0..2)
        .flat_map(|t| (0..PER_THREAD).map(move |i| value(t, i).len() as u64))
        .sum();
    assert_eq!(bytes, expected);

    // Overwrite, delete, scan by prefix (in order, with a limit).
    assert_eq!(kv.put(&client, &key(0, 1), b"new").expect("overwrite"), 1);
    assert_eq!(kv.get(&client, &key(0, 1)).expect("get"), b"new");
    assert_eq!(kv.delete(&client, &key(0, 1)).expect("delete"), 3);
    let scan = kv.scan(&client, b"t1/k0000", 0).expect("scan");
    let want: Vec<Vec<u8>> = (0..10).map(|i| key(1, i)).collect();
    assert_eq!(scan, want);
    assert_eq!(kv.scan(&client, b"t1/", 3).expect("scan").len(), 3);
    assert!(kv.scan(&client, b"nothing", 0).expect("scan").is_empty());
    assert_eq!(kv.scan(&client, b"", 0).expect("scan all").len(), 9_999);

    // A missing key: the module's error, naming the key.
    let msg = task_err(
        kv.get(&client, b"no such key"),
        errcode::NOT_FOUND,
        "missing key",
    );
    assert!(msg.contains("no such key"), "{msg}");
    task_err(
        kv.delete(&client, &key(0, 1)),
        errcode::NOT_FOUND,
        "deleted key",
    );
    // The async form waits to the same result.
    let pending = kv.async_get(&client, &key(1, 42)).expect("submit");
    assert!(pending.output().expect("async get") == value(1, 42));

    // A key naming memory outside the client-data segment (the main segment,
    // a made-up offset): refused before the handler sees it; the runtime
    // keeps serving.
    let main_block = client.main_allocator().allocate(64).expect("main block");
    for (what, bad) in [
        (
            "a main-segment block",
            ClientBytes::borrow_block(main_block.shm(), 8),
        ),
        (
            "a made-up pointer",
            ClientBytes::borrow_block(chi_sdk::shm::ShmPtr::from_bits(0xdead_beef_0000), 8),
        ),
    ] {
        let r = client
            .submit(GetTask::new(kv.pool, kv.query, bad), Priority::LowLatency)
            .and_then(|p| p.output());
        let msg = task_err(r, code::BAD_TASK, what);
        assert!(msg.contains("client-data"), "{what}: {msg}");
    }
    client
        .main_allocator()
        .free(main_block.shm())
        .expect("free the main block");
    assert_eq!(
        kv.get(&client, &key(1, 7)).expect("still serving"),
        value(1, 7)
    );

    // Calls dropped before they complete: the runtime frees each task and
    // its buffers when it completes it (a drop after completion frees at once).
    let main_before = client.main_allocator().stats().live_blocks;
    for i in 0..200 {
        drop(
            kv.async_put(&client, &key(2, i), &value(2, i))
                .expect("submit"),
        );
    }
    chi_sdk::admin::AdminClient::new(&client)
        .flush()
        .expect("flush");
    assert_eq!(kv.scan(&client, b"t2/", 0).expect("scan").len(), 200);
    assert_eq!(
        client.main_allocator().stats().live_blocks,
        main_before,
        "dropped calls leaked their tasks"
    );

    // Every buffer the calls allocated was freed with its task.
    assert_eq!(
        live_cdata_blocks(s.port),
        baseline,
        "client-data blocks leaked"
    );
    kv.destroy(&client).expect("destroy the pool");
}

#[test]
fn values_over_the_pools_limit_are_refused() {
    let _wd = Watchdog::new("kv limit", WATCHDOG);
    let s = module_setup("kv_limit");
    let _rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let kv = KvClient::create(&client, "small", &CreateParams { max_value: 16 }).expect("pool");
    kv.put(&client, b"k", &[7; 16]).expect("16 bytes fit");
    let msg = task_err(
        kv.put(&client, b"k", &[7; 17]),
        errcode::TOO_LARGE,
        "17 bytes",
    );
    assert!(msg.contains("at most 16"), "{msg}");
    assert_eq!(kv.get(&client, b"k").expect("the old value stays"), [7; 16]);
}

#[test]
fn the_smallest_module_answers() {
    let _wd = Watchdog::new("echo", WATCHDOG);
    let s = module_setup("echo_answers");
    let _rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let pool = chimaera_echo_runtime::EchoClient::create(&client, "echo", &Default::default())
        .expect("echo pool");
    assert_eq!(pool.echo(&client, 42).expect("echo"), 42);
    let pending: Vec<_> = (0..100)
        .map(|v| pool.async_echo(&client, v).expect("submit"))
        .collect();
    for (v, p) in pending.into_iter().enumerate() {
        assert_eq!(p.output().expect("echo"), v as u64);
    }
}

/// Lines of code in the `src/*.rs` of example module `name`, blank and
/// comment lines not counted.
fn author_lines(name: &str) -> usize {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
        .join("src");
    let mut lines = 0;
    for entry in std::fs::read_dir(&src).expect("the module's src") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        lines += text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .count();
    }
    lines
}

/// The modules' author code stays within the size that shows the SDK does
/// the rest.
#[test]
fn the_modules_are_small() {
    let kv = author_lines("kv");
    assert!(
        kv <= 150,
        "examples/kv has {kv} lines of code (at most 150)"
    );
    let echo = author_lines("echo");
    assert!(
        echo <= 40,
        "examples/echo has {echo} lines of code (at most 40)"
    );
}
