//! Clients in separate processes against a real runtime: pools (create, get,
//! destroy, failures) and many processes × threads of echo tasks, every answer
//! checked.

mod support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chi_sdk::admin::{ADMIN_LIB_NAME, AdminClient, EchoTask};
use chi_sdk::client::{CallError, TaskError, TaskPtr};
use chi_sdk::task::code;
use chi_sdk::types::PoolId;
use support::*;

/// The method failed with `want`; returns its message.
fn task_err<T: std::fmt::Debug>(r: Result<T, CallError>, want: i32, what: &str) -> String {
    match r {
        Err(CallError::Task(TaskError { code, message })) if code == want => message,
        other => panic!("{what}: expected a task error with code {want}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// Pools.

/// Child: creates pool `shared_pool` and checks get-or-create and create on it.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_pools_create() {
    if !child_role("child_pools_create") {
        return;
    }
    let client = child_connect();
    let admin = AdminClient::new(&client);
    let id = admin
        .get_or_create_pool(ADMIN_LIB_NAME, "shared_pool", "")
        .expect("get_or_create_pool creates");
    assert!(id.0 >= 2, "a user pool got id {id:?}");
    // Idempotent by name.
    for _ in 0..3 {
        let again = admin
            .get_or_create_pool(ADMIN_LIB_NAME, "shared_pool", "")
            .expect("get_or_create_pool again");
        assert_eq!(again, id);
    }
    // Plain create refuses a taken name.
    let msg = task_err(
        admin.create_pool(ADMIN_LIB_NAME, "shared_pool", "", PoolId::NULL),
        code::CREATE_FAILED,
        "create_pool of a taken name",
    );
    assert!(
        msg.contains("shared_pool") && msg.contains("taken"),
        "{msg}"
    );
    // The pool answers.
    assert_eq!(admin.echo(id, 7).unwrap(), 7);
    println!("POOL id={}", id.0);
}

/// Child: in another process, finds the pool, checks the failures, destroys it.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_pools_get_destroy() {
    if !child_role("child_pools_get_destroy") {
        return;
    }
    let want = PoolId(env_u64("CHI_TEST_POOL"));
    let searched: Vec<String> = env_str("CHI_TEST_SEARCHED")
        .split(':')
        .map(str::to_owned)
        .collect();
    let client = child_connect();
    let admin = AdminClient::new(&client);

    // Same name, same module: the same pool.
    let id = admin
        .get_or_create_pool(ADMIN_LIB_NAME, "shared_pool", "")
        .expect("get_or_create_pool from another process");
    assert_eq!(id, want, "get_or_create_pool returned another id");
    assert_eq!(admin.echo(id, 11).unwrap(), 11);

    // Same name, another module: fails.
    let msg = task_err(
        admin.get_or_create_pool("chimaera_other", "shared_pool", ""),
        code::CREATE_FAILED,
        "get_or_create_pool with another module",
    );
    assert!(msg.contains("chimaera_other"), "{msg}");

    // An unknown module: fails, listing the searched directories.
    let msg = task_err(
        admin.create_pool("no_such_module", "fresh_name", "", PoolId::NULL),
        code::CREATE_FAILED,
        "create_pool of an unknown module",
    );
    assert!(
        msg.contains("no_such_module") && msg.contains("not found"),
        "{msg}"
    );
    assert!(msg.contains("libno_such_module_runtime.so"), "{msg}");
    for dir in &searched {
        assert!(msg.contains(dir.as_str()), "{dir} not listed in: {msg}");
    }
    println!("UNKNOWN_MODULE_MESSAGE {msg}");
    // The failed create left no pool behind: the name is free.
    let tmp = admin
        .create_pool(ADMIN_LIB_NAME, "fresh_name", "", PoolId::NULL)
        .expect("the name of a failed create is free");
    admin.destroy_pool(tmp).unwrap();

    // The admin pool cannot be destroyed, and still answers.
    let msg = task_err(
        admin.destroy_pool(PoolId::ADMIN),
        code::FAILED,
        "destroy_pool(admin)",
    );
    assert!(msg.contains("admin pool cannot be destroyed"), "{msg}");
    assert_eq!(admin.echo(PoolId::ADMIN, 5).unwrap(), 5);

    // Destroy; then the pool is gone.
    admin.destroy_pool(id).expect("destroy_pool");
    let msg = task_err(admin.echo(id, 1), code::NO_POOL, "echo to a destroyed pool");
    assert!(msg.contains("create it first"), "{msg}");
    task_err(admin.destroy_pool(id), code::NO_POOL, "destroying it twice");
    task_err(
        admin.destroy_pool(PoolId(987_654)),
        code::NO_POOL,
        "destroying an unknown pool",
    );
    println!("DESTROYED");
}

/// Child: the name of a destroyed pool can be taken again (a new pool, a new id).
#[test]
#[ignore = "child role: run by its parent test"]
fn child_pools_recreate() {
    if !child_role("child_pools_recreate") {
        return;
    }
    let old = PoolId(env_u64("CHI_TEST_POOL"));
    let client = child_connect();
    let admin = AdminClient::new(&client);
    let id = admin
        .get_or_create_pool(ADMIN_LIB_NAME, "shared_pool", "")
        .unwrap();
    assert_ne!(id, old, "a destroyed pool's id was handed out again");
    assert_eq!(admin.echo(id, 99).unwrap(), 99);
    task_err(admin.echo(old, 1), code::NO_POOL, "echo to the old id");
    println!("POOL id={}", id.0);
}

/// Child: get-or-create of one name, racing with other processes.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_pools_race() {
    if !child_role("child_pools_race") {
        return;
    }
    let client = child_connect();
    let admin = AdminClient::new(&client);
    let id = admin
        .get_or_create_pool(ADMIN_LIB_NAME, "race_pool", "")
        .unwrap();
    for i in 0..20 {
        assert_eq!(
            admin
                .get_or_create_pool(ADMIN_LIB_NAME, "race_pool", "")
                .unwrap(),
            id
        );
        assert_eq!(admin.echo(id, i).unwrap(), i);
    }
    println!("POOL id={}", id.0);
}

#[test]
fn pools_across_processes() {
    let _wd = Watchdog::new("pools_across_processes", Duration::from_secs(100));
    let setup = Setup::with(
        "pools",
        ConfigOpts {
            extra: "module_path: [mods_a, mods_b]\n".into(),
            ..ConfigOpts::default()
        },
    );
    let mods_a = setup.dir.path().join("mods_a");
    let mods_b = setup.dir.path().join("mods_b");
    std::fs::create_dir_all(&mods_a).unwrap();
    std::fs::create_dir_all(&mods_b).unwrap();
    let rt = RuntimeGuard::start(&setup);
    let mut kids = Children::new();
    let env = setup.child_env();

    let out = kids.run("child_pools_create", "create", &env, WATCHDOG);
    let id: u64 = field(&out, "POOL", "id")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no pool id in:\n{out}"));

    let mut env2 = env.clone();
    env2.push(("CHI_TEST_POOL", id.to_string()));
    env2.push((
        "CHI_TEST_SEARCHED",
        format!("{}:{}", mods_a.display(), mods_b.display()),
    ));
    let out = kids.run("child_pools_get_destroy", "get+destroy", &env2, WATCHDOG);
    assert!(out.contains("DESTROYED"), "{out}");

    let out = kids.run("child_pools_recreate", "recreate", &env2, WATCHDOG);
    let new_id: u64 = field(&out, "POOL", "id").unwrap().parse().unwrap();

    // Processes racing for one name all get the same pool.
    let racers: Vec<usize> = (0..3)
        .map(|i| kids.spawn("child_pools_race", &format!("race{i}"), &env))
        .collect();
    kids.wait_all(WATCHDOG);
    let ids: Vec<String> = racers
        .iter()
        .map(|&i| field(&kids.output(i), "POOL", "id").expect("a pool id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "racers got {ids:?}");

    // The runtime's view: the admin pool, shared_pool (new id), race_pool.
    let st = chi_sdk::client::Client::status(&setup.opts()).unwrap();
    let pools: Vec<(u64, &str, &str)> = st
        .pools
        .iter()
        .map(|p| (p.id, p.name.as_str(), p.module.as_str()))
        .collect();
    let race_id: u64 = ids[0].parse().unwrap();
    assert_eq!(
        pools,
        vec![
            (1, "admin", ADMIN_LIB_NAME),
            (new_id, "shared_pool", ADMIN_LIB_NAME),
            (race_id, "race_pool", ADMIN_LIB_NAME),
        ],
        "{st:?}"
    );
    assert_eq!(st.clients, 0, "clients that exited are still registered");
    rt.stop();
}

// ---------------------------------------------------------------------------------
// Echo from many processes and threads.

/// Child: `CHI_TEST_THREADS` threads each submit `CHI_TEST_TASKS` echoes with
/// `CHI_TEST_WINDOW` in flight, each with its own value, and check every reply.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_echo_stress() {
    if !child_role("child_echo_stress") {
        return;
    }
    let proc_no = env_u64("CHI_TEST_PROC");
    let threads = env_u64("CHI_TEST_THREADS");
    let tasks = env_u64("CHI_TEST_TASKS");
    let window = env_u64("CHI_TEST_WINDOW") as usize;
    let client = child_connect();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads {
            let client = &client;
            s.spawn(move || {
                let admin = AdminClient::new(client);
                let mut rng = Rng::new(proc_no << 32 | th);
                let mut inflight: VecDeque<(TaskPtr<EchoTask>, u64)> =
                    VecDeque::with_capacity(window);
                let check = |t: TaskPtr<EchoTask>, want: u64| {
                    client.wait(&t).expect("wait");
                    t.result().expect("echo result");
                    assert_eq!(t.get().reply, want, "proc {proc_no} thread {th}");
                    client.del_task(t);
                };
                for i in 0..tasks {
                    // Unique per process, thread and task, otherwise random.
                    let v = (rng.next_u64() & !0xFFFF_FFFF) ^ (proc_no << 28 | th << 24 | i);
                    if i % 1000 == 999 {
                        // Now and then a synchronous call in between.
                        assert_eq!(admin.echo(PoolId::ADMIN, v).expect("echo"), v);
                        continue;
                    }
                    inflight.push_back((admin.async_echo(PoolId::ADMIN, v).expect("submit"), v));
                    if inflight.len() >= window {
                        let (t, want) = inflight.pop_front().unwrap();
                        check(t, want);
                    }
                }
                for (t, want) in inflight.drain(..) {
                    check(t, want);
                }
            });
        }
    });
    println!(
        "ECHO proc={proc_no} tasks={} secs={:.3}",
        threads * tasks,
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn echo_from_many_processes_and_threads() {
    const PROCS: u64 = 4;
    const THREADS: u64 = 2;
    /// Echo tasks per client thread.
    const TASKS: u64 = 100_000;
    let _wd = Watchdog::new(
        "echo_from_many_processes_and_threads",
        Duration::from_secs(110),
    );
    let setup = Setup::new("echo_stress");
    let rt = RuntimeGuard::start(&setup);
    let before = chi_sdk::client::Client::status(&setup.opts())
        .unwrap()
        .tasks_completed;
    let mut kids = Children::new();
    let t0 = Instant::now();
    for p in 0..PROCS {
        let mut env = setup.child_env();
        env.push(("CHI_TEST_PROC", p.to_string()));
        env.push(("CHI_TEST_THREADS", THREADS.to_string()));
        env.push(("CHI_TEST_TASKS", TASKS.to_string()));
        env.push(("CHI_TEST_WINDOW", "64".to_string()));
        kids.spawn("child_echo_stress", &format!("echo{p}"), &env);
    }
    kids.wait_all(Duration::from_secs(100));
    let total = PROCS * THREADS * TASKS;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{total} echo tasks from {PROCS} processes x {THREADS} threads in {secs:.2} s ({:.0} tasks/s)",
        total as f64 / secs
    );
    let st = chi_sdk::client::Client::status(&setup.opts()).unwrap();
    assert!(
        st.tasks_completed - before >= total,
        "the runtime counts {} tasks, the clients submitted {total}",
        st.tasks_completed - before
    );
    let low: Vec<_> = st
        .workers
        .iter()
        .filter(|w| w.kind == "low_latency")
        .collect();
    assert_eq!(low.len(), 2);
    rt.stop();
}
