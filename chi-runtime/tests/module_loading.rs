//! Loading a module library built with `#[chimod]` into a real runtime: the
//! example `mod_name` (`libchimaera_mod_name_runtime.so`) found through the
//! configured `module_path`, its methods called by a client, a panicking handler
//! contained, unsupported methods reported, and a library with another ABI
//! fingerprint refused with both fingerprints named.
//!
//! The test builds the libraries itself (`cargo build -p mod_name -p
//! chi-test-bad-abi`, same profile and target directory as this test), so it
//! works from a clean checkout.

mod support;

use chi_sdk::abi::AbiFingerprint;
use chi_sdk::admin::AdminClient;
use chi_sdk::client::{CallError, Client, TaskError};
use chi_sdk::task::code;
use chi_sdk::types::PoolId;
use chimaera_mod_name_runtime as mod_name;
use mod_name::{CreateParams, CustomTask, ModNameClient};
use support::modules::{module_dir, module_setup};
use support::*;

/// A runtime whose module path is the module libraries' directory.
fn setup(test: &str) -> Setup {
    module_setup(test)
}

/// The call failed with `want`; returns its message.
fn task_err<T: std::fmt::Debug>(r: Result<T, CallError>, want: i32, what: &str) -> String {
    match r {
        Err(CallError::Task(TaskError { code, message })) if code == want => message,
        other => panic!("{what}: expected a task error with code {want}, got {other:?}"),
    }
}

#[test]
fn generated_constants() {
    assert_eq!(mod_name::CHIMOD_LIB_NAME, "chimaera_mod_name");
    assert_eq!(mod_name::method::CUSTOM, 10);
    assert_eq!(mod_name::method::PANIC, 11);
    assert_eq!(mod_name::method::ECHO, 14);
    assert_eq!(
        <CreateParams as chi_sdk::admin::PoolParams>::CHIMOD_LIB_NAME,
        "chimaera_mod_name"
    );
    assert!(mod_name::method::ALL.contains(&("kUnsupported", -1)));
    assert!(mod_name::method::ALL.contains(&("kNodeFailure", -1)));
}

#[test]
fn a_chimod_library_is_loaded_and_serves_its_methods() {
    let _wd = Watchdog::new("a_chimod_library_is_loaded", WATCHDOG);
    let s = setup("chimod_load");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let admin = AdminClient::new(&client);

    // Typed creation parameters (GetOrCreatePool with the module's CreateParams);
    // the library name comes from the module's YAML through PoolParams.
    let params = CreateParams {
        config_data: "some config".into(),
        fail: false,
        fail_on_node: 0,
    };
    let m = ModNameClient::create(&client, "mod_pool", &params).expect("create a pool");
    // GetOrCreate returns the same pool the second time (here asynchronously).
    let again = ModNameClient::async_create(&client, "mod_pool", &params)
        .expect("submit")
        .wait_with(|t| t.pool_id)
        .expect("get the pool again");
    assert_eq!(again, m.pool);

    // Custom: in-place upper-casing, and state kept by the container.
    let (data, n) = m
        .custom(&client, "hello, chimaera", mod_name::OP_UPPERCASE)
        .expect("Custom");
    assert_eq!((data.as_str(), n), ("HELLO, CHIMAERA", 15));
    let (data, n) = m.custom(&client, "x", mod_name::OP_COUNT).expect("Custom");
    assert_eq!((data.as_str(), n), ("x", 1));
    // An output that grows: the handler allocates it in the main segment.
    let (data, n) = m
        .custom(&client, "abc", mod_name::OP_APPEND_POOL)
        .expect("Custom append");
    assert_eq!((data.as_str(), n), ("abc:mod_pool", 12));
    // The container's own client (init_client in create) names its pool.
    let (_, own) = m
        .custom(&client, "", mod_name::OP_OWN_POOL)
        .expect("Custom own pool");
    assert_eq!(u64::from(own), m.pool.0);

    // Asynchronous calls: many in flight over both processing lanes (the
    // monitor routes by op), all answered correctly.
    let pending: Vec<_> = (0..64)
        .map(|i| {
            let op = if i % 2 == 0 {
                mod_name::OP_UPPERCASE
            } else {
                mod_name::OP_APPEND_POOL
            };
            (
                i,
                op,
                m.async_custom(&client, &format!("v{i}"), op)
                    .expect("submit"),
            )
        })
        .collect();
    for (i, op, p) in pending {
        let (data, _) = p
            .wait_with(|t| (t.data.to_str().unwrap().to_owned(), t.result))
            .expect("async Custom");
        let want = if op == mod_name::OP_UPPERCASE {
            format!("V{i}")
        } else {
            format!("v{i}:mod_pool")
        };
        assert_eq!(data, want);
    }
    assert_eq!(m.echo(&client, 4242).expect("Echo"), 4242);

    // A handler's Err is FAILED with its message.
    let msg = task_err(m.custom(&client, "x", 77), code::FAILED, "unknown op");
    assert!(
        msg.contains("unknown op 77") && msg.contains("mod_pool") && msg.contains("some config"),
        "{msg}"
    );

    // A panicking handler is contained and reported with its message.
    let msg = task_err(m.panic(&client, 42), code::PANICKED, "kPanic");
    assert!(msg.contains("kPanic asked to panic with value 42"), "{msg}");
    // …and the runtime (and the container) still answer.
    let (_, n) = m
        .custom(&client, "y", mod_name::OP_COUNT)
        .expect("after panic");
    assert_eq!(n, 69);
    assert_eq!(
        m.custom(&client, "abc", mod_name::OP_UPPERCASE)
            .expect("after panic")
            .0,
        "ABC"
    );

    // Unsupported and unknown methods name the method.
    let msg = task_err(
        m.call_method(&client, 2),
        code::UNSUPPORTED_METHOD,
        "kNodeFailure",
    );
    assert!(
        msg.contains("chimaera_mod_name") && msg.contains("method 2 (kNodeFailure)"),
        "{msg}"
    );
    let msg = task_err(
        m.call_method(&client, 99),
        code::UNSUPPORTED_METHOD,
        "method 99",
    );
    assert!(msg.contains("has no method 99"), "{msg}");

    // A create that fails reports the module's message; bad parameters too.
    let e = ModNameClient::create(
        &client,
        "bad_pool",
        &CreateParams {
            config_data: "cfg".into(),
            fail: true,
            fail_on_node: 0,
        },
    )
    .expect_err("create with fail = true");
    assert!(e.to_string().contains("asked to fail"), "{e}");
    let e = admin
        .create_pool(
            mod_name::CHIMOD_LIB_NAME,
            "bad_args",
            "not json",
            PoolId::NULL,
        )
        .expect_err("create with unreadable parameters");
    assert!(
        e.to_string()
            .contains("not the JSON of chimaera_mod_name's create parameters"),
        "{e}"
    );

    // The admin pool's asynchronous calls.
    let p2 = admin
        .async_create_pool(mod_name::CHIMOD_LIB_NAME, "async_pool", "", PoolId::NULL)
        .expect("submit CreatePool")
        .wait_with(|t| t.pool_id)
        .expect("CreatePool");
    assert_ne!(p2, m.pool);
    admin
        .async_destroy_pool(p2)
        .expect("submit DestroyPool")
        .wait_with(|_| ())
        .expect("DestroyPool");

    admin.destroy_pool(m.pool).expect("destroy the pool");
    // kDestroy drops the container once no worker refers to it: idle workers
    // let go of destroyed pools before they sleep, so no further task is needed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !rt
        .log()
        .contains("mod_name container destroyed pool=mod_pool")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the destroyed pool's container was not dropped: {}",
            rt.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(client);
    let log = rt.stop();
    assert!(log.contains("module loaded"), "{log}");
    // The module's own tracing events reached the runtime's log.
    assert!(log.contains("mod_name container created"), "{log}");
    assert!(log.contains("kPanic is about to panic"), "{log}");
}

/// The task hooks `#[chimod]` generates (`save_in`/`load_in`, `save_out`/
/// `load_out`, `new_copy`, `task_size`, `del`), called through the C table of
/// the real library, on tasks in a real segment.
#[test]
fn the_generated_task_hooks_round_trip_tasks() {
    use chi_sdk::abi::{SegmentInfo, segment_kind};
    use chi_sdk::shm::{Allocator, Segment, SegmentId};

    let name = format!("chi_test_hooks_{}", std::process::id());
    let seg = Segment::create(&name, SegmentId(1), 8 << 20).expect("segment");
    let alloc = Allocator::attach(&seg).expect("allocator");
    let mm = chi_runtime::module::ModuleManager::new(
        &[module_dir().to_owned()],
        Vec::new(),
        1,
        vec![SegmentInfo {
            kind: segment_kind::MAIN,
            id: seg.id().0,
            base: seg.base() as usize,
            len: seg.size(),
        }],
    );
    let m = mm.get(mod_name::CHIMOD_LIB_NAME).expect("load the module");
    let api = m.api;
    let baseline = alloc.stats().live_blocks;
    // The module's allocator caches blocks per thread until the thread exits:
    // run it on a thread that ends before the segment is unmapped.
    std::thread::scope(|sc| sc.spawn(|| call_hooks(api, &alloc)).join().unwrap());
    assert_eq!(alloc.stats().live_blocks, baseline, "del leaked blocks");
}

/// The generated default aggregation (`TaskSer::collect_outputs`) of
/// mod_name's Census: output vectors and strings append the replica's,
/// an output value and an `#[inout]` field keep the task's; nothing leaks.
#[test]
fn the_generated_collect_appends_collections_and_keeps_values() {
    use chi_sdk::ser::TaskSer;
    use chi_sdk::shm::{Allocator, Segment, SegmentId};
    use chi_sdk::task::Task;
    use chi_sdk::types::DomainQuery;
    use mod_name::CensusTask;

    let name = format!("chi_test_collect_{}", std::process::id());
    let seg = Segment::create(&name, SegmentId(1), 4 << 20).expect("segment");
    let alloc = Allocator::attach(&seg).expect("allocator");
    let baseline = alloc.stats().live_blocks;
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let replica = |node: u32, container: u32| {
                let mut t =
                    CensusTask::new(PoolId(9), DomainQuery::global_bcast(), 100 * container);
                t.nodes.push(&alloc, node).unwrap();
                t.containers.push(&alloc, container).unwrap();
                t.trail.set(&alloc, &format!("c{container};")).unwrap();
                t.first_node = node;
                t
            };
            let mut task = replica(1, 0);
            for (node, g) in [(2, 1), (3, 2)] {
                let mut r = replica(node, g);
                task.collect_outputs(&r, &alloc).expect("collect");
                r.free_fields(&alloc);
            }
            assert_eq!(task.nodes.as_slice().unwrap(), &[1, 2, 3]);
            assert_eq!(task.containers.as_slice().unwrap(), &[0, 1, 2]);
            assert_eq!(task.trail.to_str().unwrap(), "c0;c1;c2;");
            assert_eq!(
                (task.first_node, task.tag),
                (1, 0),
                "values keep the task's"
            );
            task.free_fields(&alloc);
        })
        .join()
        .unwrap()
    });
    assert_eq!(alloc.stats().live_blocks, baseline, "collect leaked blocks");
}

fn call_hooks(api: &chi_sdk::abi::ModuleApi, alloc: &chi_sdk::shm::Allocator) {
    use chi_sdk::abi::{ByteSink, ErrorBuf};
    use chi_sdk::shm::ShmString;
    use chi_sdk::task::TaskHeader;
    use chi_sdk::types::DomainQuery;
    let alloc = alloc.clone();

    let data = ShmString::from_str(&alloc, "payload").unwrap();
    let mut task = CustomTask::new(PoolId(77), DomainQuery::local(), data, mod_name::OP_COUNT);
    task.result = 5;
    let t = alloc.new_obj(task).expect("task");
    let th = t.as_ptr() as *mut TaskHeader;
    let mut err = ErrorBuf::default();
    let null = std::ptr::null_mut();

    // save_in → load_in into a fresh block of task_size bytes.
    let mut bytes = Vec::new();
    let mut sink = ByteSink::for_vec(&mut bytes);
    // SAFETY: a live task of the module's type, a live sink and error buffer.
    let rc = unsafe { (api.save_in.unwrap())(null, th, &mut sink, &mut err) };
    assert_eq!(rc, code::OK, "{err:?}");
    // SAFETY: plain function of the module.
    let size = unsafe { (api.task_size.unwrap())(mod_name::method::CUSTOM) };
    assert_eq!(size, size_of::<CustomTask>());
    // SAFETY: as above.
    assert_eq!(unsafe { (api.task_size.unwrap())(12345) }, 0);
    let block = alloc
        .allocate_aligned(size, align_of::<CustomTask>())
        .unwrap();
    let bh = block.as_ptr() as *mut TaskHeader;
    // SAFETY: a block of `size` bytes whose header names the method, as load_in
    // requires (the rest is overwritten).
    unsafe {
        std::ptr::write_bytes(block.as_ptr(), 0, size);
        (*bh).method = mod_name::method::CUSTOM;
    }
    // SAFETY: as above, with `bytes.len()` bytes at `bytes`.
    let rc = unsafe { (api.load_in.unwrap())(null, bh, bytes.as_ptr(), bytes.len(), &mut err) };
    assert_eq!(rc, code::OK, "{err:?}");
    // SAFETY: load_in wrote a whole CustomTask there.
    let loaded = unsafe { &*(bh as *const CustomTask) };
    assert_eq!(loaded.data.to_str().unwrap(), "payload");
    assert_eq!(loaded.op, mod_name::OP_COUNT);
    assert_eq!(loaded.header.pool_id, PoolId(77));
    assert_eq!(loaded.result, 0, "outputs are not inputs");

    // save_out → load_out carries the outputs.
    let mut out = Vec::new();
    let mut sink = ByteSink::for_vec(&mut out);
    // SAFETY: as above.
    let rc = unsafe { (api.save_out.unwrap())(null, th, &mut sink, &mut err) };
    assert_eq!(rc, code::OK, "{err:?}");
    // SAFETY: as above.
    let rc = unsafe { (api.load_out.unwrap())(null, bh, out.as_ptr(), out.len(), &mut err) };
    assert_eq!(rc, code::OK, "{err:?}");
    assert_eq!(loaded.result, 5);
    // Garbage bytes are refused, not trusted.
    // SAFETY: as above.
    let rc = unsafe { (api.load_out.unwrap())(null, bh, [0xffu8; 3].as_ptr(), 3, &mut err) };
    assert_eq!(rc, code::BAD_TASK, "{err:?}");

    // new_copy: a deep copy in a new block.
    // SAFETY: as above.
    let copy = unsafe { (api.new_copy.unwrap())(null, th, &mut err) };
    assert!(!copy.is_null(), "{err:?}");
    // SAFETY: new_copy returned a whole CustomTask.
    let c = unsafe { &*(copy as *const CustomTask) };
    assert_eq!(c.data.to_str().unwrap(), "payload");
    // SAFETY: the original task is live and unchanged.
    assert_ne!(c.data.data(), unsafe { t.as_ref() }.data.data());

    // del frees each task with what it owns: back to the baseline.
    for h in [th, bh, copy] {
        // SAFETY: live tasks of the module, not used afterwards.
        assert_eq!(unsafe { (api.del.unwrap())(null, h) }, code::OK);
    }
}

#[test]
fn a_library_with_another_fingerprint_is_refused() {
    let _wd = Watchdog::new("a_library_with_another_fingerprint", WATCHDOG);
    let s = setup("chimod_bad_abi");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let admin = AdminClient::new(&client);
    let e = admin
        .create_pool("chimaera_bad_abi", "bad", "", PoolId::NULL)
        .expect_err("a module with another ABI must be refused");
    let msg = e.to_string();
    let ours = AbiFingerprint::current();
    let theirs = AbiFingerprint {
        abi_version: ours.abi_version + 1000,
        ..ours
    };
    assert!(
        msg.contains(&ours.to_string()) && msg.contains(&theirs.to_string()),
        "the refusal must name both fingerprints ({ours} and {theirs}): {msg}"
    );
    assert!(msg.contains("libchimaera_bad_abi_runtime.so"), "{msg}");
    // The runtime still serves.
    let pool = admin
        .create_pool("chimaera_mod_name", "fine", "", PoolId::NULL)
        .expect("the runtime still loads good modules");
    assert_eq!(
        ModNameClient::from(pool)
            .custom(&client, "ok", mod_name::OP_UPPERCASE)
            .expect("Custom")
            .0,
        "OK"
    );
    drop(client);
    rt.stop();
}

/// Fire-and-forget tasks of a loaded module are freed by the runtime through
/// the module's generated `del`: their fields (here a string) too, not only
/// the task block.
#[test]
fn fire_and_forget_tasks_are_freed_with_their_fields() {
    use chi_sdk::queue::Priority;
    use chi_sdk::shm::ShmString;
    use chi_sdk::task::flags;
    use chi_sdk::types::DomainQuery;

    let _wd = Watchdog::new("fire_and_forget_tasks_are_freed", WATCHDOG);
    let s = setup("chimod_ff");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "ff_pool", &CreateParams::default()).expect("pool");
    // Warm up (the runtime's first error strings, caches).
    m.custom(&client, "warm", mod_name::OP_UPPERCASE)
        .expect("Custom");
    let live = || client.main_allocator().stats().live_blocks;
    let before = live();
    const N: u32 = 200;
    for i in 0..N {
        let data = ShmString::from_str(client.main_allocator(), &format!("ff {i}")).unwrap();
        let mut t = CustomTask::new(m.pool, DomainQuery::local(), data, mod_name::OP_UPPERCASE);
        t.header.flags |= flags::FIRE_AND_FORGET;
        let t = client.new_task(t).expect("task");
        client.enqueue(&t, Priority::LowLatency).expect("enqueue");
        // The runtime owns it now (a TaskPtr frees nothing when it goes).
        let _ = t;
    }
    // Custom by op 0 runs on one lane, in order: a synchronous call of the same
    // op after them completes after all of them.
    let (_, n) = m
        .custom(&client, "flush", mod_name::OP_COUNT)
        .expect("flush");
    assert!(n > N, "{n}");
    let (_, _) = m
        .custom(&client, "flush", mod_name::OP_UPPERCASE)
        .expect("flush");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while live() > before + 8 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let after = live();
    assert!(
        after <= before + 8,
        "{N} fire-and-forget tasks left {} blocks behind ({before} → {after})",
        after - before
    );
    drop(client);
    rt.stop();
}

#[test]
fn a_monitor_that_fails_is_logged_and_its_task_still_runs() {
    let _wd = Watchdog::new("monitor_fails", WATCHDOG);
    let s = setup("monitor_fails");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let m = ModNameClient::create(&client, "mon", &CreateParams::default()).expect("pool");
    // A monitor that panics, and one that routes to a queue never made: each
    // task runs where it arrived, and the log names the method and the fault.
    for _ in 0..3 {
        m.custom(&client, "", mod_name::OP_MONITOR_PANICS)
            .expect("runs although its monitor panicked");
        m.custom(&client, "", mod_name::OP_MONITOR_NO_QUEUE)
            .expect("runs although its monitor routed nowhere");
    }
    assert_eq!(
        m.custom(&client, "", mod_name::OP_COUNT).expect("count").1,
        6
    );
    drop(client);
    let log = rt.stop();
    assert!(
        log.contains("Monitor(LocalSchedule) panicked") && log.contains("method=10"),
        "{log}"
    );
    assert!(
        log.contains("routed a task to a lane that does not exist")
            && log.contains("has no queue 7"),
        "{log}"
    );
}
