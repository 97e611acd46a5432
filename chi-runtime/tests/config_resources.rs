//! The real `chi-runtime start` on configurations the machine cannot hold
//! (segments beyond the free space of `/dev/shm`, a main segment below its
//! minimum, thousands of workers, CPUs it does not have): each exits with
//! code 2 naming the file, line and key, before anything is created.
//!
//! Tests marked as children run this test binary again as a child process.

mod support;

use std::path::Path;
use std::time::Duration;

use chi_runtime::config::MAX_SEGMENT_SIZE;
use chi_runtime::config::footprint::MainSegmentNeeds;
use support::config_files::assert_names;
use support::{
    Children, RuntimeGuard, Setup, WATCHDOG, Watchdog, child_connect, child_role, run_cli,
    runtime_exe, segments,
};
// ---------------------------------------------------------------------------------
// The real binary: refused at start, exit code 2.

const LIMIT: Duration = Duration::from_secs(60);

/// `chi-runtime start -c config` exits with code 2 as a configuration error;
/// returns what it printed.
fn start_refused(config: &Path) -> String {
    let out = run_cli(
        runtime_exe(),
        &["start", "-c", config.to_str().unwrap()],
        &[],
        LIMIT,
    );
    assert_eq!(out.code(), 2, "expected exit code 2: {out}");
    assert!(out.stderr.contains("configuration error"), "{out}");
    out.stderr
}

/// Free bytes of `/dev/shm`; `None` when it has no size limit.
fn dev_shm_free() -> Option<u64> {
    let st = rustix::fs::statvfs("/dev/shm").expect("statvfs /dev/shm");
    (st.f_blocks > 0).then(|| st.f_bavail * st.f_frsize)
}

#[test]
fn segments_beyond_dev_shm_free_space_exit_2() {
    let _wd = Watchdog::new("shm_space", Duration::from_secs(100));
    let Some(free) = dev_shm_free() else {
        println!("skipped: /dev/shm has no size limit, so no size is beyond its free space");
        return;
    };
    let main = (free * 2).next_multiple_of(1 << 20);
    if main > MAX_SEGMENT_SIZE {
        println!(
            "skipped: twice the free space of /dev/shm ({main} bytes) is above the largest segment accepted"
        );
        return;
    }
    let setup = Setup::new("shm_space");
    let p = setup.port;
    let f = setup.dir.write(
        "big.yaml",
        &format!("port: {p}\nsegments:\n  main: {main}\n  client_data: 16m\n  runtime_data: 16m\n"),
    );
    let e = start_refused(&f);
    assert_names(&e, &f, 3, "segments.main");
    for part in [
        "`segments.client_data` = 16m",
        "`segments.runtime_data` = 16m",
        "/dev/shm has only",
        "set smaller segment sizes in",
        "mount -o remount,size=",
    ] {
        assert!(e.contains(part), "{part:?} missing: {e}");
    }
    assert!(segments(p).is_empty(), "segments left: {:?}", segments(p));

    // The sum counts: three segments each below the free space, together above.
    let third = (free / 2).next_multiple_of(1 << 20);
    let f = setup.dir.write(
        "sum.yaml",
        &format!(
            "port: {p}\nsegments:\n  main: {third}\n  client_data: {third}\n  runtime_data: {third}\n"
        ),
    );
    let e = start_refused(&f);
    assert!(e.contains(&format!("{}:", f.display())), "{e}");
    assert!(e.contains("/dev/shm has only"), "{e}");
}

#[test]
fn main_segment_below_its_minimum_exit_2() {
    let _wd = Watchdog::new("main_minimum", Duration::from_secs(100));
    let setup = Setup::new("main_minimum");
    let p = setup.port;
    let f = setup
        .dir
        .write("small.yaml", &format!("port: {p}\nsegments:\n  main: 4k\n"));
    let e = start_refused(&f);
    assert_names(&e, &f, 3, "segments.main");
    let min = MainSegmentNeeds::of(2, 1, 1024).unwrap().min_size;
    for part in [
        format!("at least {}k", min >> 10),
        "allocator metadata".into(),
        "process queue (3 lanes of 1024 tasks)".into(),
        "room for tasks".into(),
    ] {
        assert!(e.contains(&part), "{part:?} missing: {e}");
    }
    // A deeper queue raises the minimum; the key the user set is named.
    let f = setup.dir.write(
        "deep.yaml",
        &format!("port: {p}\nsegments:\n  main: 64m\nqueue:\n  lanes: 16\n  depth: 1048576\n"),
    );
    let e = start_refused(&f);
    assert_names(&e, &f, 3, "segments.main");
    assert!(e.contains("or lower queue.depth or queue.lanes"), "{e}");
    assert!(segments(p).is_empty());
}

#[test]
fn thousands_of_workers_exit_2() {
    let _wd = Watchdog::new("many_workers", Duration::from_secs(100));
    let setup = Setup::new("many_workers");
    let p = setup.port;
    let f = setup.dir.write(
        "many.yaml",
        &format!("port: {p}\nworkers:\n  low_latency: 1024\n  high_latency: 1024\n"),
    );
    let e = start_refused(&f);
    assert_names(&e, &f, 3, "workers.low_latency");
    assert!(e.contains("expected 1 to 256"), "{e}");
    // Each within its bound, too many together: the larger is named.
    let f = setup.dir.write(
        "total.yaml",
        &format!("port: {p}\nworkers:\n  low_latency: 100\n  high_latency: 200\n"),
    );
    let e = start_refused(&f);
    assert_names(&e, &f, 4, "workers.high_latency");
    assert!(e.contains("302 worker threads in all"), "{e}");
    assert!(segments(p).is_empty());
}

#[test]
fn affinity_to_cpus_this_machine_does_not_have_exit_2() {
    let _wd = Watchdog::new("absent_cpus", Duration::from_secs(100));
    let setup = Setup::new("absent_cpus");
    let p = setup.port;
    // CPU 1023 is the last a list may name; no machine these tests run on has it.
    let f = setup.dir.write(
        "absent.yaml",
        &format!("port: {p}\nworkers:\n  affinity:\n    low_latency: [0, 1023]\n"),
    );
    let e = start_refused(&f);
    assert_names(&e, &f, 4, "workers.affinity.low_latency");
    assert!(e.contains("CPU 1023 does not exist on this machine"), "{e}");
    assert!(e.contains("or ~ for no pinning"), "{e}");
    // Several: all named, on the key that lists them.
    let f = setup.dir.write(
        "several.yaml",
        &format!(
            "port: {p}\nworkers:\n  affinity:\n    high_latency: 0\n    process_reaper: 1020-1023\n"
        ),
    );
    let e = start_refused(&f);
    assert_names(&e, &f, 5, "workers.affinity.process_reaper");
    assert!(
        e.contains("CPUs 1020, 1021, 1022, 1023 do not exist on this machine"),
        "{e}"
    );
    assert!(segments(p).is_empty(), "segments left: {:?}", segments(p));
}

/// Child: tasks of several sizes, some in flight together, in a runtime whose
/// main segment has its minimum size.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_tasks_at_minimum() {
    if !child_role("child_tasks_at_minimum") {
        return;
    }
    use chi_sdk::admin::{ADMIN_LIB_NAME, AdminClient};
    use chi_sdk::types::PoolId;
    let client = child_connect();
    let admin = AdminClient::new(&client);
    let pool = admin
        .get_or_create_pool(ADMIN_LIB_NAME, "at_minimum", "")
        .expect("create a pool");
    for round in 0..20u64 {
        let pending: Vec<_> = (0..32)
            .map(|i| admin.async_echo(pool, round * 100 + i).expect("submit"))
            .collect();
        for (i, task) in pending.into_iter().enumerate() {
            client.wait(&task).expect("wait");
            task.result().expect("echo result");
            assert_eq!(task.get().reply, round * 100 + i as u64);
            client.del_task(task);
        }
        assert_eq!(admin.echo(PoolId::ADMIN, round).unwrap(), round);
    }
    admin.destroy_pool(pool).expect("destroy the pool");
    println!("TASKS ok");
}

#[test]
fn defaults_and_the_minimum_main_segment_start() {
    let _wd = Watchdog::new("defaults_start", Duration::from_secs(200));

    // The smallest segments accepted start and run tasks.
    let setup = Setup::new("minimum_start");
    let min = MainSegmentNeeds::of(2, 1, 1024).unwrap().min_size;
    let data_min = chi_sdk::shm::Segment::min_size();
    setup.dir.write(
        "chi.yaml",
        &format!(
            "port: {}\nsegments:\n  main: {min}\n  client_data: {data_min}\n  \
             runtime_data: {data_min}\n",
            setup.port
        ),
    );
    let rt = RuntimeGuard::start(&setup);
    let out = Children::new().run(
        "child_tasks_at_minimum",
        "tasks",
        &setup.child_env(),
        WATCHDOG,
    );
    assert!(out.contains("TASKS ok"), "{out}");
    rt.stop();

    // The built-in defaults (2 GiB of segments), where /dev/shm has room.
    let setup = Setup::new("defaults_start");
    let need = (1u64 << 30) + (512 << 20) * 2;
    if dev_shm_free().is_some_and(|free| free < need) {
        println!("skipped the defaults: /dev/shm has less than the 2 GiB they need");
        return;
    }
    setup
        .dir
        .write("chi.yaml", &format!("port: {}\n", setup.port));
    let rt = RuntimeGuard::start(&setup);
    rt.stop();
}

// ---------------------------------------------------------------------------------
// A small /dev/shm: a clear error, never SIGBUS.

const NO_SPACE_SEGMENT: &str = "CHI_TEST_NO_SPACE_SEGMENT";

/// Runs `sh -c script args…` in a private mount namespace whose `/dev/shm` is a
/// 4 MiB tmpfs (the script's `exec "$0" "$@"` runs `args`).
fn with_tiny_shm(args: &[&str], env: &[(&str, &str)]) -> chi_testkit::CliOutput {
    let script = "mount -t tmpfs -o size=4m chi-test /dev/shm && exec \"$0\" \"$@\"";
    let mut all = vec!["-m", "sh", "-c", script];
    all.extend_from_slice(args);
    run_cli("unshare", &all, env, LIMIT)
}

/// Child, in the namespace of [`with_tiny_shm`]: a segment larger than the
/// tmpfs is refused at create, naming it; a smaller one is created.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_segment_no_space() {
    if !child_role("child_segment_no_space") {
        return;
    }
    use chi_sdk::shm::{Segment, SegmentId, ShmError};
    let name = std::env::var(NO_SPACE_SEGMENT).unwrap();
    match Segment::create(&name, SegmentId(1), 8 << 20) {
        Err(e @ ShmError::NoSpace { .. }) => println!("NOSPACE {e}"),
        Err(e) => panic!("expected NoSpace, got {e}"),
        Ok(_) => panic!("an 8 MiB segment was created in a 4 MiB /dev/shm"),
    }
    let seg = Segment::create(&name, SegmentId(1), 1 << 20).expect("a 1 MiB segment fits");
    // Touch every page: backed, so no SIGBUS.
    for offset in (0..seg.size()).step_by(4096) {
        // SAFETY: `offset` is inside the mapping, which `seg` keeps alive; nothing
        // else uses the segment.
        unsafe { seg.base().add(offset as usize).write_volatile(1) };
    }
    println!("FITS");
}

#[test]
fn small_dev_shm_is_refused_not_sigbus() {
    use std::os::unix::process::ExitStatusExt;
    let _wd = Watchdog::new("small_shm", Duration::from_secs(100));
    if !rustix::process::geteuid().is_root() {
        println!("skipped: mounting a tmpfs over /dev/shm needs root");
        return;
    }
    let probe = run_cli(
        "unshare",
        &[
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs -o size=4m chi-test /dev/shm",
        ],
        &[],
        LIMIT,
    );
    if probe.code() != 0 {
        println!("skipped: cannot mount a tmpfs in a private mount namespace: {probe}");
        return;
    }
    let setup = Setup::new("small_shm");
    let f = setup.dir.write(
        "chi.yaml",
        &format!(
            "port: {}\nsegments:\n  main: 8m\n  client_data: 1m\n  runtime_data: 1m\n",
            setup.port
        ),
    );
    let out = with_tiny_shm(&[runtime_exe(), "start", "-c", f.to_str().unwrap()], &[]);
    assert_ne!(out.status.signal(), Some(libc_sigbus()), "SIGBUS: {out}");
    assert_eq!(out.code(), 2, "expected exit code 2: {out}");
    assert_names(&out.stderr, &f, 3, "segments.main");
    assert!(out.stderr.contains("/dev/shm has only 4 MiB free"), "{out}");

    // The library's own check, for a segment created without the runtime.
    let exe = std::env::current_exe().unwrap();
    let name = format!("chi_test_no_space_{}", std::process::id());
    let out = with_tiny_shm(
        &[
            exe.to_str().unwrap(),
            "--ignored",
            "--exact",
            "child_segment_no_space",
            "--nocapture",
            "--test-threads=1",
        ],
        &[
            (chi_testkit::ROLE_ENV, "child_segment_no_space"),
            (NO_SPACE_SEGMENT, &name),
        ],
    );
    assert_ne!(out.status.signal(), Some(libc_sigbus()), "SIGBUS: {out}");
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stdout.contains(&format!(
            "NOSPACE segment '{name}' needs 8388608 bytes but /dev/shm has only"
        )),
        "{out}"
    );
    assert!(out.stdout.contains("FITS"), "{out}");
}

/// SIGBUS's number on Linux.
fn libc_sigbus() -> i32 {
    rustix::process::Signal::BUS.as_raw()
}
