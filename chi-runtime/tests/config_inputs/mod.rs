//! The configuration texts `fuzz_config.rs` feeds the parser: arbitrary
//! text, the default configuration mutated line by line, and documents of
//! known keys with plausible and odd values.

use chi_runtime::config::Config;
use proptest::prelude::*;

/// Odd and plausible scalars for any key.
pub const SCALARS: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "3",
    "7",
    "255",
    "256",
    "257",
    "1023",
    "1024",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "1e999",
    "1e999g",
    "-1e999",
    "1.5g",
    "0.5k",
    ".5t",
    ".",
    "1.",
    "1t",
    "2t",
    "1024t",
    "1.0000000000000000001g",
    "16k",
    "15k",
    "12k",
    "64m",
    "1m",
    "1g",
    "384k",
    "1 g",
    "1gb",
    "1GiB",
    "g",
    "k1",
    "1e3",
    "100us",
    "50µs",
    "0s",
    "0",
    "1ns",
    "9ms",
    "10ms",
    "61s",
    "25h",
    "1e3ms",
    "1.5s",
    "99999999999h",
    "5m",
    "~",
    "null",
    "true",
    "false",
    "yes",
    "NaN",
    ".nan",
    ".inf",
    "-.inf",
    "''",
    "\"\"",
    "'quoted'",
    "\"1g\"",
    "\"30s\"",
    "[]",
    "{}",
    "[1, 2]",
    "[a, b]",
    "{a: 1}",
    "0x10",
    "0o17",
    "0b11",
    "1_000",
    "+5",
    "local",
    "global",
    "debug",
    "trace",
    "LOUD",
    "!!binary aGk=",
    "!!int \"5\"",
    "&a 5",
    "*a",
    "|",
    ">-",
    "- 1",
    "? a",
    "@",
    "`",
    "%",
    "\t",
    "a #b",
    "\"\\u0000\"",
    "'\\n'",
    "é",
];

#[derive(Clone, Debug)]
enum LineEdit {
    /// Replaces the value of the line's `key: value`.
    Value {
        line: usize,
        with: String,
    },
    Delete {
        line: usize,
    },
    Duplicate {
        line: usize,
    },
    Indent {
        line: usize,
        by: i8,
    },
    Insert {
        line: usize,
        text: String,
    },
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(SCALARS).prop_map(str::to_owned),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => (any::<u32>(), "(|k|m|g|t|b|kb|KiB|ns|us|ms|s|m|h|min|sec)").prop_map(|(n, u)| format!("{n}{u}")),
        1 => "[a-z0-9._-]{1,10}",
    ]
}

/// Insertions that YAML makes interesting.
fn fragment() -> impl Strategy<Value = String> {
    let nest = (1usize..2000, any::<bool>()).prop_map(|(depth, flow)| {
        if flow {
            format!("workers: {}1{}", "[".repeat(depth), "]".repeat(depth))
        } else {
            let mut s = "queue:".to_owned();
            for i in 0..depth.min(300) {
                s.push('\n');
                s.push_str(&" ".repeat(i + 1));
                s.push_str("a:");
            }
            s
        }
    });
    prop_oneof![
        4 => prop::sample::select(&[
            "workers:\n  low_latency: 0",
            "workers: {low_latency: 256, high_latency: 1}",
            "workers: {low_latency: 100, high_latency: 100, reinforcement: 100}",
            "workers:\n  affinity:\n    low_latency: 1023",
            "workers: {affinity: {high_latency: [0, 2-1]}}",
            "workers: {affinity: {process_reaper: '0,,1'}}",
            "workers: {affinity: [0]}",
            "queue: {lanes: 1024, depth: 16777216}",
            "queue: {lanes: 0}",
            "queue: {depth: 3}",
            "segments: {main: 1m}",
            "segments: {main: 1t, client_data: 1t, runtime_data: 1t}",
            "coroutine: {stack_size: 1e999g}",
            "compose:\n  - module: chimaera_bdev\n    name: a\n    query: local\n  - module: m\n    name: a\n    query: global",
            "compose:\n  - {module: m, name: n, query: local, id: 1}",
            "compose:\n  - {module: 'has space', name: n, query: local}",
            "compose:\n  -",
            "compose: [~]",
            "module_path: ['', a]",
            "base: &b {low_latency: 3}\nworkers: *b",
            "workers:\n  <<: {low_latency: 3}",
            "--- \nport: 1\n---\nport: 2",
            "...",
            "%YAML 1.2\n---\nport: 5",
            "port: !!str 5",
            "port: 5\nport: 6",
            "? port\n: 7",
            "task_deadline: ~",
            "task_deadline: 0",
            "idle: {busy_poll: 2s}",
            "control: {max_clients: 100000}",
            "logging: {level: LOUD}",
            "hostfile: ''",
            "hostfile: does-not-exist",
            "\u{feff}port: 5",
            "port: 5\t# tab",
            "\t- x",
            "a: |\n  text\n  more",
        ][..]).prop_map(str::to_owned),
        1 => nest,
        1 => "[a-z_ :\\[\\]{}#~0-9.'\",&*!|>?@-]{0,30}",
    ]
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    let line = any::<usize>();
    prop_oneof![
        6 => (line, scalar()).prop_map(|(line, with)| LineEdit::Value { line, with }),
        2 => line.prop_map(|line| LineEdit::Delete { line }),
        2 => line.prop_map(|line| LineEdit::Duplicate { line }),
        1 => (line, -4i8..=4).prop_map(|(line, by)| LineEdit::Indent { line, by }),
        2 => (line, fragment()).prop_map(|(line, text)| LineEdit::Insert { line, text }),
    ]
}

/// The default configuration with `edits` applied, line by line.
fn edited_defaults(edits: &[LineEdit]) -> String {
    let mut lines: Vec<String> = Config::default_yaml().lines().map(str::to_owned).collect();
    // Edits aim at key lines (comments are most of the file).
    let keys = |lines: &[String]| -> Vec<usize> {
        (0..lines.len())
            .filter(|&i| {
                let t = lines[i].trim_start();
                !t.is_empty() && !t.starts_with('#')
            })
            .collect()
    };
    for e in edits {
        let key_lines = keys(&lines);
        if key_lines.is_empty() {
            break;
        }
        let pick = |i: usize| key_lines[i % key_lines.len()];
        match e {
            LineEdit::Value { line, with } => {
                let i = pick(*line);
                if let Some(colon) = lines[i].find(':') {
                    lines[i] = format!("{} {with}", &lines[i][..=colon]);
                }
            }
            LineEdit::Delete { line } => {
                lines.remove(pick(*line));
            }
            LineEdit::Duplicate { line } => {
                let i = pick(*line);
                let copy = lines[i].clone();
                lines.insert(i + 1, copy);
            }
            LineEdit::Indent { line, by } => {
                let i = pick(*line);
                lines[i] = if *by >= 0 {
                    format!("{}{}", " ".repeat(*by as usize), lines[i])
                } else {
                    let strip = lines[i]
                        .chars()
                        .take((-by) as usize)
                        .take_while(|&c| c == ' ')
                        .count();
                    lines[i][strip..].to_owned()
                };
            }
            LineEdit::Insert { line, text } => {
                let i = line % (lines.len() + 1);
                lines.insert(i, text.clone());
            }
        }
    }
    lines.join("\n")
}

/// A document of known keys with plausible values (many are accepted).
fn known_keys() -> impl Strategy<Value = String> {
    // Mostly values in range, so that many documents are accepted and their
    // bounds checked; sometimes not.
    let size = prop_oneof![
        4 => Just("1g".to_owned()),
        2 => Just("64m".to_owned()),
        1 => Just("2m".to_owned()),
        1 => Just("384k".to_owned()),
        1 => (1u64..4096).prop_map(|n| format!("{n}k")),
        1 => (1u64..2048).prop_map(|n| format!("{n}m")),
        1 => scalar(),
    ];
    let count = prop_oneof![
        8 => 1u32..8,
        1 => 0u32..300,
        1 => Just(u32::MAX),
    ]
    .prop_map(|n| n.to_string());
    // A duration mostly in `lo..=hi` microseconds.
    let duration = |lo: u64, hi: u64| {
        prop_oneof![
            8 => (lo..=hi).prop_map(|n| format!("{n}us")),
            1 => (0u64..100_000).prop_map(|n| format!("{n}s")),
            1 => scalar(),
        ]
        .boxed()
    };
    let entry = |key: &'static str, value: BoxedStrategy<String>| {
        prop::option::weighted(0.4, value).prop_map(move |v| v.map(|v| format!("{key}: {v}")))
    };
    (
        (
            entry(
                "port",
                prop_oneof![8 => 1u32..65_536, 1 => 65_536u32..70_000, 1 => Just(0)]
                    .prop_map(|n| n.to_string())
                    .boxed(),
            ),
            entry("  main", size.clone().boxed()),
            entry("  client_data", size.clone().boxed()),
            entry("  runtime_data", size.boxed()),
            entry("  low_latency", count.clone().boxed()),
            entry("  high_latency", count.clone().boxed()),
            entry("  reinforcement", count.clone().boxed()),
            entry(
                "  process_reaper",
                prop_oneof![8 => 0u32..2, 1 => 2u32..5]
                    .prop_map(|n| n.to_string())
                    .boxed(),
            ),
        ),
        (
            entry(
                "  lanes",
                prop_oneof![Just("~".to_owned()), count.clone()].boxed(),
            ),
            entry(
                "  depth",
                prop_oneof![
                    8 => (1u32..13).prop_map(|b| 1 << b),
                    2 => 1u32..5000,
                    1 => prop_oneof![Just(1 << 24), Just((1 << 24) + 1), Just(u32::MAX)],
                ]
                .prop_map(|n| n.to_string())
                .boxed(),
            ),
            entry(
                "  stack_size",
                prop_oneof![
                    8 => (16u32..2048).prop_map(|n| format!("{n}k")),
                    1 => (1u32..70_000).prop_map(|n| format!("{n}k")),
                    1 => scalar(),
                ]
                .boxed(),
            ),
            entry("  max_live", count.clone().boxed()),
            entry("  busy_poll", duration(0, 1_000_000)),
            entry("client_wait_timeout", duration(1, 100_000_000)),
            entry("task_deadline", duration(0, 100_000_000)),
            entry("  interval", duration(10_000, 60_000_000)),
        ),
        (
            entry("  stall_timeout", duration(100_000, 86_400_000_000)),
            entry("  max_clients", count.boxed()),
            entry("  affinity", affinity().boxed()),
            prop::collection::vec(
                (
                    prop_oneof![8 => "[a-z_]{1,6}", 1 => "[a-z_ ]{0,6}"],
                    prop_oneof![8 => "[a-z]{1,4}", 1 => "[a-z ]{0,4}"],
                    prop_oneof![4 => Just("local"), 4 => Just("global"), 1 => Just("other")],
                    prop::option::weighted(0.3, 0u64..40),
                ),
                0..3,
            ),
        ),
    )
        .prop_map(|(a, b, (stall, max_clients, affinity, pools))| {
            let (port, main, client, runtime, low, high, rl, reaper) = a;
            let (lanes, depth, stack, live, busy, wait, deadline, interval) = b;
            let mut doc = String::new();
            let mut section = |name: &str, items: Vec<Option<String>>| {
                let items: Vec<String> = items.into_iter().flatten().collect();
                if !items.is_empty() {
                    doc.push_str(name);
                    doc.push_str(":\n");
                    for i in items {
                        doc.push_str(&i);
                        doc.push('\n');
                    }
                }
            };
            section("segments", vec![main, client, runtime]);
            section("workers", vec![low, high, rl, reaper, affinity]);
            section("queue", vec![lanes, depth]);
            section("coroutine", vec![stack, live]);
            section("idle", vec![busy]);
            section("reaper", vec![interval]);
            section("supervisor", vec![stall]);
            section("control", vec![max_clients]);
            for top in [port, wait, deadline].into_iter().flatten() {
                doc.push_str(&top);
                doc.push('\n');
            }
            if !pools.is_empty() {
                doc.push_str("compose:\n");
                for (module, name, query, id) in pools {
                    doc.push_str(&format!(
                        "  - module: '{module}'\n    name: '{name}'\n    query: {query}\n"
                    ));
                    if let Some(id) = id {
                        doc.push_str(&format!("    id: {id}\n"));
                    }
                }
            }
            doc
        })
}

/// A `workers.affinity` mapping (flow style) with plausible and odd CPU lists.
fn affinity() -> impl Strategy<Value = String> {
    let list = prop_oneof![
        4 => prop_oneof![
            Just("0".to_owned()),
            Just("0-1".to_owned()),
            Just("[0, 1]".to_owned()),
            Just("\"0,1\"".to_owned()),
            Just("[1, 0-0]".to_owned()),
        ],
        2 => (0u32..8, 0u32..8).prop_map(|(a, b)| format!("{a}-{b}")),
        2 => prop_oneof![
            Just("1023".to_owned()),
            Just("1024".to_owned()),
            Just("3-1".to_owned()),
            Just("[]".to_owned()),
            Just("[[1]]".to_owned()),
            Just("\"1,,2\"".to_owned()),
            Just("0-1023".to_owned()),
            Just("0-99999999999999999999".to_owned()),
        ],
        1 => scalar(),
    ];
    let kind = prop::sample::select(
        &[
            "low_latency",
            "high_latency",
            "reinforcement",
            "process_reaper",
            "other",
        ][..],
    );
    prop::collection::vec((kind, list), 0..4).prop_map(|entries| {
        let items: Vec<String> = entries
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!("{{{}}}", items.join(", "))
    })
}

pub fn config_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<String>().prop_map(|s| s.chars().take(200).collect()),
        1 => "[a-z_:\\- \n\\[\\]{}#~0-9.'\",&*!|>?]{0,200}",
        4 => prop::collection::vec(line_edit(), 1..6).prop_map(|e| edited_defaults(&e)),
        3 => known_keys(),
    ]
}
