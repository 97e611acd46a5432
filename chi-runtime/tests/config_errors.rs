//! Every kind of mistake in a user's configuration file gives an error that names
//! the file, the line and the key.
//!
//! The tests that need `CHI_SERVER_CONF` run this test binary again as a child
//! process with the variable set, rather than changing the environment of this
//! multi-threaded process.
//!
//! `config_resources.rs` runs the real `chi-runtime start` on configurations
//! the machine cannot hold.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chi_runtime::config::{AffinityConfig, Config, ConfigError, CpuList, ENV_SERVER_CONF};
use support::config_files::{assert_names, scratch, write};

fn load_err(path: &Path) -> ConfigError {
    match Config::from_file(path) {
        Ok(config) => panic!("{} should not load, got {config:?}", path.display()),
        Err(e) => e,
    }
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
