//! Every kind of mistake in a user's configuration file gives an error that names
//! the file, the line and the key.
//!
//! The tests that need `CHI_SERVER_CONF` run this test binary again as a child
//! process with the variable set, rather than changing the environment of this
//! multi-threaded process.

use std::path::{Path, PathBuf};
use std::process::Command;

use chi_runtime::config::{Config, ConfigError, ENV_SERVER_CONF};

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
    command.args(["--exact", "child_load", "--nocapture", "--test-threads=1"]);
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
