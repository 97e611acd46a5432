//! Every kind of mistake in a user's configuration file gives an error that names
//! the file, the line and the key.
//!
//! The tests that need `CHI_SERVER_CONF` run this test binary again as a child
//! process with the variable set, rather than changing the environment of this
//! multi-threaded process.
//!
//! The last section runs the real `chi-runtime start`: configurations the machine
//! cannot hold (segments beyond the free space of `/dev/shm`, a main segment
//! below its minimum, thousands of workers) exit with code 2 naming the file,
//! line and key, before anything is created.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chi_runtime::config::footprint::MainSegmentNeeds;
use chi_runtime::config::{
    AffinityConfig, Config, ConfigError, CpuList, ENV_SERVER_CONF, MAX_SEGMENT_SIZE,
};
use support::{
    Children, RuntimeGuard, Setup, WATCHDOG, Watchdog, child_connect, child_role, run_cli,
    runtime_exe, segments,
};

/// A fresh directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chi-config-errors-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

fn load_err(path: &Path) -> ConfigError {
    match Config::from_file(path) {
        Ok(config) => panic!("{} should not load, got {config:?}", path.display()),
        Err(e) => e,
    }
}

/// The message names `file`, then `:line:` and the key in backticks.
fn assert_names(message: &str, file: &Path, line: u64, key: &str) {
    let file = file.display().to_string();
    assert!(
        message.contains(&format!("{file}:{line}:")),
        "no `{file}:{line}:` in:\n{message}"
    );
    assert!(
        message.contains(&format!("`{key}`")),
        "no key `{key}` in:\n{message}"
    );
}

#[test]
fn unknown_key() {
    let dir = scratch("unknown_key");
    let file = write(
        &dir,
        "chi.yaml",
        "port: 9600\nworkers:\n  low_latency: 2\n  lowlatency: 3\n",
    );
    let e = load_err(&file);
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e:?}");
    assert_eq!(e.line(), Some(4));
    assert_eq!(e.key(), Some("workers.lowlatency"));
    let message = e.to_string();
    assert_names(&message, &file, 4, "workers.lowlatency");
    assert!(message.contains(":4:3:"), "{message}");
    // It says which keys are allowed there.
    assert!(
        message.contains("expected one of: low_latency, high_latency"),
        "{message}"
    );

    // At the top level and inside a list too.
    let file = write(&dir, "top.yaml", "# comment\nprot: 9600\n");
    assert_names(&load_err(&file).to_string(), &file, 2, "prot");
    let file = write(
        &dir,
        "list.yaml",
        "compose:\n  - module: chimaera_bdev\n    name: a\n    query: local\n    arg: x\n",
    );
    let message = load_err(&file).to_string();
    assert_names(&message, &file, 5, "compose[0].arg");
    assert!(message.contains("args"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wrong_type() {
    let dir = scratch("wrong_type");
    let file = write(&dir, "chi.yaml", "queue:\n  lanes: 2\n  depth: deep\n");
    let e = load_err(&file);
    assert!(matches!(e, ConfigError::WrongType { .. }), "{e:?}");
    assert_eq!((e.line(), e.key()), (Some(3), Some("queue.depth")));
    let message = e.to_string();
    assert_names(&message, &file, 3, "queue.depth");
    assert!(message.contains(":3:10:"), "{message}");
    assert!(message.contains("`deep` is not a valid u32"), "{message}");
    assert!(
        message.contains("expected a whole number of tasks per lane"),
        "{message}"
    );

    // A list where a mapping goes.
    let file = write(&dir, "seq.yaml", "port: 9600\nsegments: [1g, 2g]\n");
    let e = load_err(&file);
    assert!(matches!(e, ConfigError::WrongType { .. }), "{e:?}");
    let message = e.to_string();
    assert_names(&message, &file, 2, "segments");
    assert!(
        message.contains("expected a mapping with keys main, client_data"),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_value() {
    let dir = scratch("bad_value");
    // Out of range: found by the checks after parsing.
    let file = write(&dir, "chi.yaml", "port: 9600\nqueue:\n  depth: 0\n");
    let e = load_err(&file);
    assert!(matches!(e, ConfigError::BadValue { .. }), "{e:?}");
    assert_eq!((e.line(), e.key()), (Some(3), Some("queue.depth")));
    let message = e.to_string();
    assert_names(&message, &file, 3, "queue.depth");
    assert!(
        message.contains("expected a power of two from 2"),
        "{message}"
    );

    // Not a size: found while parsing.
    let file = write(&dir, "size.yaml", "segments:\n  client_data: 12 parsecs\n");
    let message = load_err(&file).to_string();
    assert_names(&message, &file, 2, "segments.client_data");
    assert!(message.contains("unknown unit `parsecs`"), "{message}");

    // Not one of the allowed names.
    let file = write(
        &dir,
        "query.yaml",
        "compose:\n  - module: chimaera_bdev\n    name: a\n    query: everywhere\n",
    );
    let message = load_err(&file).to_string();
    assert_names(&message, &file, 4, "compose[0].query");
    assert!(
        message.contains("expected one of: local, global"),
        "{message}"
    );

    // No low-latency worker.
    let file = write(&dir, "workers.yaml", "workers:\n  low_latency: 0\n");
    let message = load_err(&file).to_string();
    assert_names(&message, &file, 2, "workers.low_latency");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn syntax_error() {
    let dir = scratch("syntax_error");
    let file = write(
        &dir,
        "chi.yaml",
        "port: 9600\nworkers:\n  low_latency: 2\n\thigh_latency: 1\n",
    );
    let e = load_err(&file);
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    let message = e.to_string();
    assert!(message.contains("YAML syntax error"), "{message}");
    let line = e.line().expect("a line");
    assert!((3..=4).contains(&line), "{message}");
    assert_names(&message, &file, line, e.key().expect("a key"));
    assert!(e.key().unwrap().starts_with("workers"), "{message}");

    // An unterminated quote: the parser notices at the end of the text.
    let file = write(
        &dir,
        "quote.yaml",
        "port: 9600\nlogging:\n  file: \"chi.log\n",
    );
    let e = load_err(&file);
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    let message = e.to_string();
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert_eq!(e.key(), Some("logging.file"), "{message}");

    // A key given twice.
    let file = write(
        &dir,
        "twice.yaml",
        "port: 9600\nidle:\n  busy_poll: 5us\nport: 9700\n",
    );
    let message = load_err(&file).to_string();
    assert_names(&message, &file, 4, "port");
    assert!(message.contains("duplicate"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_file() {
    let dir = scratch("missing_file");
    let file = dir.join("does-not-exist.yaml");
    let e = load_err(&file);
    let ConfigError::Read { source, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    let message = e.to_string();
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains("cannot read config file"), "{message}");

    // A hostfile named by the config but missing: the error names the hostfile and
    // the config's file, line and key.
    let conf = write(&dir, "chi.yaml", "port: 9600\nhostfile: hosts.txt\n");
    let message = load_err(&conf).to_string();
    assert!(
        message.contains(&dir.join("hosts.txt").display().to_string()),
        "{message}"
    );
    assert_names(&message, &conf, 2, "hostfile");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unreadable_file() {
    let dir = scratch("unreadable_file");
    // A directory is not a readable file.
    let e = load_err(&dir);
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    let message = e.to_string();
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.to_lowercase().contains("directory"), "{message}");

    // Same for a hostfile.
    std::fs::create_dir(dir.join("hosts.d")).unwrap();
    let conf = write(&dir, "chi.yaml", "hostfile: hosts.d\n");
    let message = load_err(&conf).to_string();
    assert_names(&message, &conf, 1, "hostfile");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_hostfile_line() {
    let dir = scratch("bad_hostfile_line");
    let hosts = write(&dir, "hosts", "# the cluster\nnode[01-04]\nnode[05-\n");
    let conf = write(&dir, "chi.yaml", "port: 9600\n\nhostfile: hosts\n");
    let e = load_err(&conf);
    assert!(matches!(e, ConfigError::Hostfile { .. }), "{e:?}");
    assert_eq!(e.line(), Some(3));
    let message = e.to_string();
    assert!(
        message.contains(&format!("{}:3:", hosts.display())),
        "{message}"
    );
    assert_names(&message, &conf, 3, "hostfile");

    let good = write(&dir, "hosts", "node[01-02]\n10.0.0.[1-2]\n");
    assert_eq!(good, hosts);
    let config = Config::from_file(&conf).unwrap();
    assert_eq!(config.hosts, ["node01", "node02", "10.0.0.1", "10.0.0.2"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------
// Through CHI_SERVER_CONF, in a child process.

const CHILD_MARKER: &str = "CHI_CONFIG_ERRORS_CHILD";

/// Runs `child_load` in a child process with `CHI_SERVER_CONF` = `conf` (or unset)
/// and returns what it printed.
fn load_in_child(conf: Option<&Path>) -> String {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        "--ignored",
        "--exact",
        "child_load",
        "--nocapture",
        "--test-threads=1",
    ]);
    command.env(CHILD_MARKER, "1");
    match conf {
        Some(path) => command.env(ENV_SERVER_CONF, path),
        None => command.env_remove(ENV_SERVER_CONF),
    };
    let output = command.output().expect("run the test binary");
    assert!(output.status.success(), "child failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Not a test of its own: does its work only when run by [`load_in_child`].
#[test]
#[ignore = "child role: run by its parent test"]
fn child_load() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    match Config::load() {
        Ok(config) => println!("LOADED port={} source={:?}", config.port, config.source),
        Err(e) => println!("ERROR {e}"),
    }
}

#[test]
fn load_reads_chi_server_conf() {
    let dir = scratch("load_reads_chi_server_conf");
    let conf = write(&dir, "chi.yaml", "port: 9777\n");
    let out = load_in_child(Some(&conf));
    assert!(out.contains("LOADED port=9777"), "{out}");
    assert!(out.contains(&conf.display().to_string()), "{out}");

    let out = load_in_child(None);
    assert!(out.contains("LOADED port=9513 source=None"), "{out}");

    let missing = dir.join("missing.yaml");
    let out = load_in_child(Some(&missing));
    assert!(out.contains("ERROR cannot read config file"), "{out}");
    assert!(out.contains(&missing.display().to_string()), "{out}");
    assert!(
        out.contains(&format!("(named by {ENV_SERVER_CONF})")),
        "{out}"
    );

    let bad = write(&dir, "bad.yaml", "workers:\n  low_latency: x\n");
    let out = load_in_child(Some(&bad));
    assert!(
        out.contains(&format!("ERROR {}:2:16:", bad.display())),
        "{out}"
    );
    assert!(out.contains("`workers.low_latency`"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------
// New keys.

#[test]
fn new_keys_parse_and_name_bad_values() {
    let dir = scratch("new_keys");
    let file = write(
        &dir,
        "chi.yaml",
        "coroutine:\n  max_live: 64\nreaper:\n  interval: 50ms\nsupervisor:\n  \
         stall_timeout: 2s\ntask_deadline: ~\ncontrol:\n  max_clients: 100\n",
    );
    let c = Config::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.coroutine.max_live, 64);
    assert_eq!(c.reaper.interval, Duration::from_millis(50));
    assert_eq!(c.supervisor.stall_timeout, Duration::from_secs(2));
    assert_eq!(c.task_deadline, None);
    assert_eq!(c.control.max_clients, 100);
    let c = Config::from_file(write(&dir, "d.yaml", "task_deadline: 90s\n")).unwrap();
    assert_eq!(c.task_deadline, Some(Duration::from_secs(90)));
    assert_eq!(c.coroutine.max_live, 256);

    let cases: &[(&str, u64, &str, &str)] = &[
        (
            "port: 9600\ncoroutine:\n  max_live: 0\n",
            3,
            "coroutine.max_live",
            "expected 1 to",
        ),
        (
            "reaper:\n  interval: 1ms\n",
            2,
            "reaper.interval",
            "from 10ms to 60s",
        ),
        (
            "supervisor:\n  stall_timeout: fast\n",
            2,
            "supervisor.stall_timeout",
            "invalid duration `fast`",
        ),
        ("\ntask_deadline: 60\n", 2, "task_deadline", "has no unit"),
        (
            "control:\n  max_clients: -1\n",
            2,
            "control.max_clients",
            "not a valid u32",
        ),
        (
            "control:\n  max_clients: 5000\n",
            2,
            "control.max_clients",
            "allocator owner slots",
        ),
        (
            "workers:\n  process_reaper: 2\n",
            2,
            "workers.process_reaper",
            "one reaper serves the whole node",
        ),
    ];
    for (i, &(text, line, key, what)) in cases.iter().enumerate() {
        let file = write(&dir, &format!("bad{i}.yaml"), text);
        let message = load_err(&file).to_string();
        assert_names(&message, &file, line, key);
        assert!(message.contains(what), "{what:?} missing: {message}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn affinity_lists_parse_and_name_bad_values() {
    let dir = scratch("affinity");
    let file = write(
        &dir,
        "chi.yaml",
        "workers:\n  low_latency: 2\n  affinity:\n    low_latency: [0, 2-3]\n    \
         high_latency: 1\n    process_reaper: \"0,4-5\"\n",
    );
    let c = Config::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
    let list = |s: &str| Some(CpuList::parse(s).unwrap());
    assert_eq!(c.affinity.low_latency, list("0,2-3"));
    assert_eq!(c.affinity.high_latency, list("1"));
    assert_eq!(c.affinity.reinforcement, None);
    assert_eq!(c.affinity.process_reaper, list("0,4,5"));
    // The defaults pin nothing.
    let c = Config::from_file(write(&dir, "none.yaml", "port: 9600\n")).unwrap();
    assert_eq!(c.affinity, AffinityConfig::default());

    let cases: &[(&str, u64, &str, &str)] = &[
        (
            "port: 9600\nworkers:\n  affinity:\n    low_latency: 5-2\n",
            4,
            "workers.affinity.low_latency",
            "runs backwards",
        ),
        (
            "workers:\n  affinity:\n    high_latency: [1, two]\n",
            3,
            "workers.affinity.high_latency[1]",
            "`two` is not a CPU number",
        ),
        (
            "workers:\n  affinity:\n    process_reaper: 100000\n",
            3,
            "workers.affinity.process_reaper",
            "CPU numbers are below 1024",
        ),
        (
            "workers:\n  affinity:\n    reinforcement: []\n",
            3,
            "workers.affinity.reinforcement",
            "an empty list of CPUs",
        ),
        (
            "workers:\n  affinity:\n    low_latency: true\n",
            3,
            "workers.affinity.low_latency",
            "or ~ for no pinning",
        ),
        (
            "workers:\n  affinity:\n    supervisor: 1\n",
            3,
            "workers.affinity.supervisor",
            "expected one of: low_latency, high_latency, reinforcement, process_reaper",
        ),
    ];
    for (i, &(text, line, key, what)) in cases.iter().enumerate() {
        let file = write(&dir, &format!("bad{i}.yaml"), text);
        let message = load_err(&file).to_string();
        assert_names(&message, &file, line, key);
        assert!(message.contains(what), "{what:?} missing: {message}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

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
