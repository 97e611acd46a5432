//! Unit tests of the configuration: parsing, merging, checks and their errors.

use std::path::PathBuf;
use std::time::Duration;

use super::defaults::DEFAULT_YAML;
use super::footprint::MainSegmentNeeds;
use super::parse::key_path_at;
use super::*;

mod affinity;

fn with(text: &str) -> Config {
    Config::from_yaml_override(text, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn error(text: &str) -> ConfigError {
    match Config::from_yaml_override(text, "test.yaml") {
        Ok(c) => panic!("{text:?} should fail, got {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn defaults_parse_and_check() {
    let c = Config::defaults().unwrap();
    assert_eq!(c.port, 9513);
    assert_eq!(c.hostfile, None);
    assert_eq!(c.hosts, ["127.0.0.1"]);
    assert_eq!(c.segments.main, 1 << 30);
    assert_eq!(c.segments.client_data, 512 << 20);
    assert_eq!(
        c.workers,
        WorkerCounts {
            low_latency: 2,
            high_latency: 1,
            reinforcement: 1,
            process_reaper: 1
        }
    );
    assert_eq!(
        c.queue,
        QueueConfig {
            lanes: 2,
            depth: 1024
        }
    );
    assert_eq!(
        c.coroutine,
        CoroutineConfig {
            stack_size: 64 << 10,
            max_live: 256
        }
    );
    assert_eq!(c.reaper.interval, Duration::from_millis(200));
    assert_eq!(c.supervisor.stall_timeout, Duration::from_secs(10));
    assert_eq!(c.task_deadline, Some(Duration::from_secs(60)));
    assert_eq!(c.control.max_clients, 512);
    assert!(c.module_path.is_empty());
    assert_eq!(
        c.logging,
        LoggingConfig {
            level: LogLevel::Info,
            file: None
        }
    );
    assert_eq!(c.idle.busy_poll, Duration::from_micros(100));
    assert_eq!(c.client_wait_timeout, Duration::from_secs(30));
    assert!(c.compose.is_empty());
    assert_eq!(c.source, None);
    assert_eq!(
        Config::from_yaml_override("", DEFAULT_SOURCE_NAME).unwrap(),
        c
    );
}

#[test]
fn equality_ignores_where_keys_were_written() {
    let defaults = Config::defaults().unwrap();
    let copy = Config::from_yaml_override(DEFAULT_YAML, "copy.yaml").unwrap();
    assert_eq!(copy.origins.of("segments.main").at.file, "copy.yaml");
    assert_eq!(
        Config {
            source: None,
            ..copy
        },
        defaults
    );
    assert_ne!(with("workers: {low_latency: 3}"), with(""));
}

#[test]
fn every_default_key_is_set_and_commented() {
    // Each key of the default file has a comment line right above it.
    let lines: Vec<&str> = Config::default_yaml().lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        assert!(
            i > 0 && lines[i - 1].trim_start().starts_with('#'),
            "key without a comment: {line}"
        );
    }
}

#[test]
fn override_is_key_by_key() {
    let c = with("workers:\n  low_latency: 4\nsegments:\n  main: 64m\n");
    assert_eq!(c.workers.low_latency, 4);
    assert_eq!(c.workers.high_latency, 1);
    assert_eq!(c.segments.main, 64 << 20);
    assert_eq!(c.segments.runtime_data, 512 << 20);
    // lanes follows the low-latency workers unless set.
    assert_eq!(c.queue.lanes, 4);
    assert_eq!(with("queue: {lanes: 3}").queue.lanes, 3);
    assert_eq!(c.source.as_deref(), Some("test.yaml"));
}

#[test]
fn null_keeps_the_default_and_empty_files_are_fine() {
    assert_eq!(with("port: ~\nworkers:\n").port, 9513);
    assert_eq!(with("# only a comment\n").port, 9513);
    assert_eq!(with("").workers.low_latency, 2);
}

#[test]
fn all_keys() {
    let dir = std::env::temp_dir().join(format!("chi-config-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hosts"), "node[01-02]\n").unwrap();
    let file = dir.join("chi.yaml");
    let text = r#"
port: 7000
hostfile: hosts
segments: {main: 1073741824, client_data: 256MiB, runtime_data: "1.5g"}
workers: {low_latency: 3, high_latency: 2, reinforcement: 0, process_reaper: 1}
queue: {lanes: 5, depth: 100}
module_path: [mods, /abs/mods]
logging: {level: debug, file: chi.log}
idle: {busy_poll: 50us}
client_wait_timeout: 2m
task_deadline: 5m
reaper: {interval: 1s}
supervisor: {stall_timeout: 30s}
control: {max_clients: 100}
coroutine: {stack_size: 100k, max_live: 32}
compose:
  - module: chimaera_bdev
    name: ram
    query: global
    containers: 6
    args: "ram:1g"
  - {module: example_mod, name: ex, query: local}
"#;
    std::fs::write(&file, text).unwrap();
    let c = Config::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.port, 7000);
    assert_eq!(c.hostfile, Some(dir.join("hosts")));
    assert_eq!(c.hosts, ["node01", "node02"]);
    assert_eq!(
        c.segments,
        SegmentSizes {
            main: 1 << 30,
            client_data: 256 << 20,
            runtime_data: 3 << 29
        }
    );
    assert_eq!(
        c.workers,
        WorkerCounts {
            low_latency: 3,
            high_latency: 2,
            reinforcement: 0,
            process_reaper: 1
        }
    );
    assert_eq!(
        c.queue,
        QueueConfig {
            lanes: 5,
            depth: 128
        }
    );
    assert_eq!(c.coroutine.stack_size, 100 << 10);
    assert_eq!(c.coroutine.max_live, 32);
    assert_eq!(c.task_deadline, Some(Duration::from_secs(300)));
    assert_eq!(c.reaper.interval, Duration::from_secs(1));
    assert_eq!(c.supervisor.stall_timeout, Duration::from_secs(30));
    assert_eq!(c.control.max_clients, 100);
    assert_eq!(
        c.module_path,
        [dir.join("mods"), PathBuf::from("/abs/mods")]
    );
    assert_eq!(
        c.logging,
        LoggingConfig {
            level: LogLevel::Debug,
            file: Some(dir.join("chi.log"))
        }
    );
    assert_eq!(c.idle.busy_poll, Duration::from_micros(50));
    assert_eq!(c.client_wait_timeout, Duration::from_secs(120));
    assert_eq!(
        c.compose,
        [
            PoolSpec {
                module: "chimaera_bdev".into(),
                name: "ram".into(),
                query: PoolQuery::Global,
                id: None,
                args: Some("ram:1g".into()),
                containers: Some(6),
            },
            PoolSpec {
                module: "example_mod".into(),
                name: "ex".into(),
                query: PoolQuery::Local,
                id: None,
                args: None,
                containers: None,
            },
        ]
    );
    assert_eq!(c.source, Some(file.display().to_string()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stack_size_rounds_up_to_pages() {
    assert_eq!(
        with("coroutine: {stack_size: 70000}").coroutine.stack_size,
        73728
    );
}

#[test]
fn unknown_keys_name_line_and_path() {
    let e = error("port: 1\nworkers:\n  low_latency: 3\n  bogus: 4\n");
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e:?}");
    assert_eq!(
        (e.file(), e.line(), e.key()),
        (Some("test.yaml"), Some(4), Some("workers.bogus"))
    );
    let text = e.to_string();
    assert!(
        text.starts_with(
            "test.yaml:4:3: unknown key `workers.bogus`; expected one of: low_latency"
        ),
        "{text}"
    );
    assert!(text.contains("bogus: 4\n"), "{text}");

    let e = error("compose:\n  - module: a\n    name: b\n    query: local\n    nmae: c\n");
    assert_eq!(e.key(), Some("compose[0].nmae"));
    assert_eq!(e.line(), Some(5));
    assert_eq!(error("prot: 5\n").key(), Some("prot"));
}

#[test]
fn wrong_types_say_what_is_expected() {
    let e = error("workers:\n  low_latency: many\n");
    assert!(matches!(e, ConfigError::WrongType { .. }), "{e:?}");
    assert_eq!((e.line(), e.key()), (Some(2), Some("workers.low_latency")));
    let text = e.to_string();
    assert!(text.contains("test.yaml:2:16: key `workers.low_latency`: `many` is not a valid u32; expected a whole number"), "{text}");

    let e = error("port: 70000\n");
    assert!(e.to_string().contains("expected a TCP port number"), "{e}");
    let e = error("workers: [1, 2]\n");
    assert_eq!(e.key(), Some("workers"));
    assert!(
        e.to_string()
            .contains("expected a mapping with keys low_latency"),
        "{e}"
    );
    let e = error("compose:\n  - module: [x]\n");
    assert_eq!(e.key(), Some("compose[0].module"));
    assert_eq!(error("- 1\n").key(), Some("(top level)"));
}

#[test]
fn bad_values_from_parsing() {
    let e = error("segments:\n  main: 12 parsecs\n");
    assert!(matches!(e, ConfigError::BadValue { .. }), "{e:?}");
    assert_eq!((e.line(), e.key()), (Some(2), Some("segments.main")));
    assert!(e.to_string().contains("unknown unit `parsecs`"), "{e}");
    let e = error("idle:\n  busy_poll: 50\n");
    assert_eq!((e.line(), e.key()), (Some(2), Some("idle.busy_poll")));
    assert!(e.to_string().contains("has no unit"), "{e}");
    let e = error("segments:\n  main: -5\n");
    assert_eq!((e.line(), e.key()), (Some(2), Some("segments.main")));
    let e = error("segments:\n  main: [1]\n");
    assert_eq!((e.line(), e.key()), (Some(2), Some("segments.main")));
    let e = error("logging:\n  level: loud\n");
    assert_eq!((e.line(), e.key()), (Some(2), Some("logging.level")));
    assert!(
        e.to_string().contains("error, warn, info, debug, trace"),
        "{e}"
    );
    let e = error("compose:\n  - module: a\n    name: b\n    query: everywhere\n");
    assert_eq!((e.line(), e.key()), (Some(4), Some("compose[0].query")));
    let e = error("compose:\n  - module: a\n    name: b\n");
    assert!(e.to_string().contains("query"), "{e}");
    assert_eq!(e.key(), Some("compose[0]"));
}

#[test]
fn bad_values_from_checks() {
    let cases: &[(&str, &str, u64, &str)] = &[
        ("port: 0\n", "port", 1, "port 0 is not allowed"),
        (
            "workers:\n  low_latency: 0\n",
            "workers.low_latency",
            2,
            "expected 1 to",
        ),
        (
            "workers:\n  high_latency: 0\n",
            "workers.high_latency",
            2,
            "expected 1 to",
        ),
        (
            "workers: {reinforcement: 5000}\n",
            "workers.reinforcement",
            1,
            "expected 0 to 1",
        ),
        (
            "queue:\n  depth: 0\n",
            "queue.depth",
            2,
            "expected a power of two from 2",
        ),
        ("queue:\n  depth: 1\n", "queue.depth", 2, "out of range"),
        ("queue:\n  lanes: 0\n", "queue.lanes", 2, "expected 1 to"),
        (
            "segments:\n  main: 0\n",
            "segments.main",
            2,
            "needs at least 1472k",
        ),
        (
            "segments:\n  client_data: 4k\n",
            "segments.client_data",
            2,
            "expected a size from 384k to 1t (the smallest holds the allocator metadata",
        ),
        (
            "workers:\n  process_reaper: 2\n",
            "workers.process_reaper",
            2,
            "expected 0 to 1 (one reaper serves the whole node",
        ),
        (
            "coroutine:\n  max_live: 0\n",
            "coroutine.max_live",
            2,
            "expected 1 to 65536",
        ),
        (
            "reaper:\n  interval: 5ms\n",
            "reaper.interval",
            2,
            "expected a duration from 10ms to 60s",
        ),
        (
            "reaper:\n  interval: 2m\n",
            "reaper.interval",
            2,
            "out of range",
        ),
        (
            "supervisor:\n  stall_timeout: 0s\n",
            "supervisor.stall_timeout",
            2,
            "from 100ms to 86400s",
        ),
        (
            "control:\n  max_clients: 0\n",
            "control.max_clients",
            2,
            "expected 1 to 986",
        ),
        (
            "control:\n  max_clients: 1000\n",
            "control.max_clients",
            2,
            "allocator owner slots",
        ),
        (
            "segments:\n  client_data: 2t\n",
            "segments.client_data",
            2,
            "out of range",
        ),
        (
            "coroutine:\n  stack_size: 8k\n",
            "coroutine.stack_size",
            2,
            "from 16k",
        ),
        ("idle:\n  busy_poll: 2s\n", "idle.busy_poll", 2, "too long"),
        (
            "client_wait_timeout: 0s\n",
            "client_wait_timeout",
            1,
            "longer than 0",
        ),
        (
            "module_path: [a, '']\n",
            "module_path[1]",
            1,
            "empty directory",
        ),
    ];
    for &(text, key, line, what) in cases {
        let e = error(text);
        assert!(matches!(e, ConfigError::BadValue { .. }), "{text:?}: {e:?}");
        assert_eq!(
            (e.file(), e.key(), e.line()),
            (Some("test.yaml"), Some(key), Some(line)),
            "{text:?}: {e}"
        );
        assert!(e.to_string().contains(what), "{text:?}: {e}");
    }
}

#[test]
fn main_segment_minimum() {
    let needs = |low, high, depth| MainSegmentNeeds::of(low, high, depth).unwrap().min_size;
    let min = needs(2, 1, 1024);
    assert_eq!(min, 1472 << 10);
    // The minimum itself is accepted, a page less is not.
    let ok = with(&format!("segments:\n  main: {min}\n"));
    assert_eq!(ok.segments.main, min);
    let e = error(&format!("segments:\n  main: {}\n", min - 4096));
    assert_eq!((e.line(), e.key()), (Some(2), Some("segments.main")));
    let text = e.to_string();
    for part in [
        "1468k",
        "at least 1472k (1.44 MiB)",
        "320 KiB of segment header and allocator metadata",
        "64 KiB for the process queue (3 lanes of 1024 tasks)",
        "64 KiB for the runtime block",
        "1 MiB of room for tasks",
        "set segments.main to at least 1472k",
    ] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }
    // The queue's shape counts: a deep queue in the default 1g is refused at
    // the key the user set, naming the queue keys to lower.
    let e = error("queue:\n  lanes: 64\n  depth: 1048576\n");
    assert_eq!((e.line(), e.key()), (Some(3), Some("queue.depth")));
    assert!(
        e.to_string()
            .contains("or lower queue.depth or queue.lanes"),
        "{e}"
    );
    let e = error("segments:\n  main: 16m\nworkers:\n  low_latency: 8\nqueue:\n  depth: 262144\n");
    assert_eq!((e.line(), e.key()), (Some(2), Some("segments.main")));
    assert_eq!(
        with("segments: {main: 64m}\nqueue: {lanes: 8, depth: 65536}")
            .queue
            .depth,
        65536
    );
}

#[test]
fn worker_totals() {
    let e = error("workers:\n  low_latency: 1024\n  high_latency: 1024\n");
    assert_eq!((e.line(), e.key()), (Some(2), Some("workers.low_latency")));
    assert!(e.to_string().contains("expected 1 to 256"), "{e}");
    let e = error("workers:\n  low_latency: 200\n  high_latency: 100\n");
    assert_eq!((e.line(), e.key()), (Some(2), Some("workers.low_latency")));
    let text = e.to_string();
    assert!(
        text.contains("302 worker threads in all is more than 256"),
        "{text}"
    );
    assert!(text.contains("workers.high_latency 100"), "{text}");
    // The most clients shrink with the workers.
    let c = with("workers: {low_latency: 200, high_latency: 54, reinforcement: 1}");
    assert_eq!(c.workers.total(), 256);
    let e = error("workers: {low_latency: 200, high_latency: 54}\ncontrol: {max_clients: 736}");
    assert!(e.to_string().contains("expected 1 to 735"), "{e}");
}

#[test]
fn task_deadline_none() {
    for text in [
        "task_deadline: ~\n",
        "task_deadline: 0\n",
        "task_deadline: null\n",
        "task_deadline: 0s\n",
    ] {
        assert_eq!(with(text).task_deadline, None, "{text}");
    }
    assert_eq!(
        with("port: 1\n").task_deadline,
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        with("task_deadline: 1.5s").task_deadline,
        Some(Duration::from_millis(1500))
    );
    let e = error("port: 1\ntask_deadline: 60\n");
    assert_eq!((e.line(), e.key()), (Some(2), Some("task_deadline")));
    assert!(e.to_string().contains("has no unit"), "{e}");
    let e = error("port: 1\ntask_deadline: [1s]\n");
    assert_eq!((e.line(), e.key()), (Some(2), Some("task_deadline")));
    let e = error("reaper:\n  intervall: 1s\n");
    assert_eq!((e.line(), e.key()), (Some(2), Some("reaper.intervall")));
    let e = error("control:\n  max_clients: lots\n");
    assert_eq!((e.line(), e.key()), (Some(2), Some("control.max_clients")));
    assert!(
        e.to_string().contains("expected a whole number of clients"),
        "{e}"
    );
}

#[test]
fn compose_checks() {
    let pool =
        |name: &str, id: &str| format!("  - {{module: m, name: {name}, query: local{id}}}\n");
    let e = error(&format!("compose:\n{}{}", pool("a", ""), pool("a", "")));
    assert_eq!((e.key(), e.line()), (Some("compose[1].name"), Some(3)));
    assert!(e.to_string().contains("already used by compose[0]"), "{e}");
    let e = error(&format!("compose:\n{}", pool("a", ", id: 1")));
    assert_eq!(e.key(), Some("compose[0].id"));
    assert!(e.to_string().contains("reserved"), "{e}");
    let e = error(&format!(
        "compose:\n{}{}",
        pool("a", ", id: 20"),
        pool("b", ", id: 20")
    ));
    assert_eq!(e.key(), Some("compose[1].id"));
    let e = error("compose:\n  - {module: '', name: a, query: local}\n");
    assert_eq!(e.key(), Some("compose[0].module"));
    let e = error("compose:\n  - {module: m, name: a, query: global, id: 20}\n");
    assert_eq!(e.key(), Some("compose[0].id"));
    assert!(e.to_string().contains("the cluster chooses"), "{e}");
    let e = error("compose:\n  - {module: m, name: a, query: local, containers: 2}\n");
    assert_eq!(e.key(), Some("compose[0].containers"));
    for n in ["0", "65537"] {
        let e = error(&format!(
            "compose:\n  - {{module: m, name: a, query: global, containers: {n}}}\n"
        ));
        assert_eq!(e.key(), Some("compose[0].containers"), "{n}");
        assert!(e.to_string().contains("expected 1 to 65536"), "{e}");
    }
}

#[test]
fn syntax_errors_name_the_line() {
    let e = error("port: 1\nworkers:\n  low_latency: \"2\n");
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    assert_eq!(e.file(), Some("test.yaml"));
    assert!(e.line().is_some(), "{e}");
    let e = error("port: 1\nport: 2\n");
    assert_eq!((e.line(), e.key()), (Some(2), Some("port")));
    let e = error("{port: 1\n");
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
}

#[test]
fn key_paths_from_text() {
    let text = "a:\n  b:\n    c: 1\n  d: 2\nlist:\n  - x: 1\n    y: 2\n  - x: 3\n    z: 4\nflat:\n- p: 1\n- q: 2\n";
    assert_eq!(key_path_at(text, 3).as_deref(), Some("a.b.c"));
    assert_eq!(key_path_at(text, 4).as_deref(), Some("a.d"));
    assert_eq!(key_path_at(text, 7).as_deref(), Some("list[0].y"));
    assert_eq!(key_path_at(text, 8).as_deref(), Some("list[1].x"));
    assert_eq!(key_path_at(text, 9).as_deref(), Some("list[1].z"));
    assert_eq!(key_path_at(text, 12).as_deref(), Some("flat[1].q"));
    assert_eq!(key_path_at(text, 99), None);
}

#[test]
fn hostfile_errors_name_the_key() {
    let e = error("hostfile: /nonexistent/chi-hosts\n");
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("/nonexistent/chi-hosts"), "{text}");
    assert!(text.contains("key `hostfile` at test.yaml:1:11"), "{text}");
}

#[test]
fn log_levels() {
    assert_eq!(LogLevel::Warn.to_tracing(), tracing::Level::WARN);
    assert_eq!(LogLevel::Trace.to_string(), "trace");
    assert_eq!(PoolQuery::Global.to_string(), "global");
}
