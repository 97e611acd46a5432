//! The `cluster` section of the configuration: defaults, values, and errors
//! that name the file, line and key.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chi_runtime::config::{Config, ConfigError};
use support::config_files::assert_names;

/// A fresh directory for one test, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("chi-config-cluster-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write test file");
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_err(path: &Path) -> String {
    match Config::from_file(path) {
        Ok(config) => panic!("{} should not load, got {config:?}", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_and_values() {
    let d = Config::defaults().unwrap();
    assert_eq!(d.cluster.port, d.port + 1);
    assert_eq!(d.cluster.node, None);
    assert_eq!(d.cluster.key_file, None);
    assert!(d.cluster.peer_timeout >= d.cluster.heartbeat * 2);
    let dir = Dir::new("values");
    dir.write("hosts", "127.0.0.[1-3]\n");
    let p = dir.write(
        "c.yaml",
        "port: 7000\nhostfile: hosts\ncluster:\n  port: 7100\n  node: 127.0.0.2\n  heartbeat: 100ms\n  peer_timeout: 1s\n  key_file: keys/cluster.key\n",
    );
    let c = Config::from_file(&p).unwrap();
    assert_eq!(c.cluster.port, 7100);
    // A relative key file is from the configuration's directory.
    assert_eq!(c.cluster.key_file, Some(dir.0.join("keys/cluster.key")));
    assert_eq!(c.cluster.node.as_deref(), Some("127.0.0.2"));
    assert_eq!(c.cluster.heartbeat, Duration::from_millis(100));
    assert_eq!(c.cluster.peer_timeout, Duration::from_secs(1));
    // `~` keeps the defaults.
    let p = dir.write("n.yaml", "port: 7000\ncluster:\n  port: ~\n  node: ~\n");
    let c = Config::from_file(&p).unwrap();
    assert_eq!((c.cluster.port, c.cluster.node), (7001, None));
}

#[test]
fn mistakes_name_the_key() {
    let dir = Dir::new("mistakes");
    dir.write("hosts", "127.0.0.[1-3]\n");
    let cases: &[(&str, u64, &str, &str)] = &[
        (
            "cluster:\n  heartbeat: 1ms\n",
            2,
            "cluster.heartbeat",
            "out of range",
        ),
        ("cluster:\n  heartbeat: 10\n", 2, "cluster.heartbeat", ""),
        (
            "cluster:\n  peer_timeout: 10h\n",
            2,
            "cluster.peer_timeout",
            "out of range",
        ),
        (
            "cluster:\n  heartbeat: 1s\n  peer_timeout: 1500ms\n",
            3,
            "cluster.peer_timeout",
            "shorter than two heartbeats",
        ),
        (
            "port: 7000\ncluster:\n  port: 7000\n",
            3,
            "cluster.port",
            "differ from the control port",
        ),
        ("cluster:\n  port: 0\n", 2, "cluster.port", "not allowed"),
        ("cluster:\n  port: 70000\n", 2, "cluster.port", ""),
        (
            "hostfile: hosts\ncluster:\n  node: 10.9.9.9\n",
            3,
            "cluster.node",
            "not an entry of the hostfile",
        ),
        ("cluster:\n  nodes: 3\n", 2, "cluster.nodes", ""),
    ];
    for (i, (text, line, key, words)) in cases.iter().enumerate() {
        let p = dir.write(&format!("c{i}.yaml"), text);
        let m = load_err(&p);
        assert_names(&m, &p, *line, key);
        assert!(m.contains(words), "{text:?}: no {words:?} in:\n{m}");
    }
}

#[test]
fn command_line_overrides_are_checked() {
    let dir = Dir::new("overrides");
    let hosts = dir.write("hosts", "127.0.0.[1-2]\n");
    let mut c = Config::defaults().unwrap();
    c.with_hostfile(&hosts).unwrap();
    assert_eq!(c.hosts, ["127.0.0.1", "127.0.0.2"]);
    c.with_node("127.0.0.2").unwrap();
    assert_eq!(c.cluster.node.as_deref(), Some("127.0.0.2"));
    let e = c.with_node("127.0.0.7").unwrap_err();
    assert!(matches!(e, ConfigError::Hostfile { .. }), "{e}");
    assert!(e.to_string().contains("--node '127.0.0.7'"), "{e}");
    // A hostfile without the configured node.
    let other = dir.write("other", "127.0.0.5\n");
    let e = c.with_hostfile(&other).unwrap_err();
    assert!(e.to_string().contains("cluster.node '127.0.0.2'"), "{e}");
}
