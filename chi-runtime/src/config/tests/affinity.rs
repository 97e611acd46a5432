//! `workers.affinity`: the CPU lists of each kind of runtime thread, and
//! the errors of bad lists.

use super::super::*;
use super::{error, with};

#[test]
fn affinity_lists() {
    // No pinning by default.
    assert_eq!(
        Config::defaults().unwrap().affinity,
        AffinityConfig::default()
    );
    let list = |s: &str| Some(CpuList::parse(s).unwrap());
    let c = with(
        "workers:\n  affinity:\n    low_latency: [0, 2-3]\n    high_latency: \"1,4-5\"\n    \
         reinforcement: 7\n    process_reaper: 1-2\n",
    );
    assert_eq!(
        c.affinity,
        AffinityConfig {
            low_latency: list("0,2-3"),
            high_latency: list("1,4-5"),
            reinforcement: list("7"),
            process_reaper: list("1-2"),
        }
    );
    assert_eq!(c.affinity.of_kind("low_latency"), list("0,2,3").as_ref());
    assert_eq!(
        c.affinity.of_kind("process_reaper").unwrap().to_string(),
        "1-2"
    );
    assert_eq!(c.affinity.of_kind("other"), None);
    // Key by key over the defaults; ~ keeps the default (no pinning).
    let c = with("workers: {low_latency: 3, affinity: {high_latency: [3, 3, 1]}}");
    assert_eq!(c.workers.low_latency, 3);
    assert_eq!(c.affinity.low_latency, None);
    assert_eq!(c.affinity.high_latency, list("1,3"));
    assert_eq!(
        with("workers:\n  affinity:\n    low_latency: ~\n").affinity,
        AffinityConfig::default()
    );
    // The list where the key was set is what errors found at start name.
    assert_eq!(
        c.origins.of("workers.affinity.high_latency").at.to_string(),
        "test.yaml:1:52"
    );
}

#[test]
fn bad_affinity_lists_name_line_and_key() {
    let cases: &[(&str, u64, &str, &str)] = &[
        (
            "workers:\n  affinity:\n    low_latency: 3-1\n",
            3,
            "workers.affinity.low_latency",
            "the range `3-1` runs backwards",
        ),
        (
            "workers:\n  affinity:\n    high_latency: \"0,,2\"\n",
            3,
            "workers.affinity.high_latency",
            "an empty piece between commas",
        ),
        (
            "workers:\n  affinity:\n    process_reaper: 4096\n",
            3,
            "workers.affinity.process_reaper",
            "CPU 4096 is out of range; CPU numbers are below 1024",
        ),
        (
            "workers:\n  affinity:\n    low_latency: []\n",
            3,
            "workers.affinity.low_latency",
            "an empty list of CPUs",
        ),
        (
            "workers:\n  affinity:\n    low_latency: -2\n",
            3,
            "workers.affinity.low_latency",
            "`-2` is not a CPU number",
        ),
        (
            "workers:\n  affinity:\n    low_latency: cpu0\n",
            3,
            "workers.affinity.low_latency",
            "`cpu0` is not a CPU number",
        ),
        (
            "workers:\n  affinity:\n    low_latency: [1, x]\n",
            3,
            "workers.affinity.low_latency[1]",
            "`x` is not a CPU number",
        ),
        (
            "workers:\n  affinity:\n    low_latency: [[1]]\n",
            3,
            "workers.affinity.low_latency[0]",
            "a list inside a list of CPUs",
        ),
        (
            "workers:\n  affinity:\n    low_latency: {cpu: 1}\n",
            3,
            "workers.affinity.low_latency",
            "a mapping",
        ),
        (
            "workers:\n  affinity:\n    low_latency: 1.5\n",
            3,
            "workers.affinity.low_latency",
            "floating point",
        ),
    ];
    for &(text, line, key, what) in cases {
        let e = error(text);
        assert_eq!(
            (e.line(), e.key()),
            (Some(line), Some(key)),
            "{text:?}: {e}"
        );
        let shown = e.to_string();
        assert!(shown.contains("test.yaml:"), "{shown}");
        assert!(shown.contains(what), "{what:?} missing: {shown}");
    }
    // An unknown kind: the allowed ones are listed.
    let e = error("workers:\n  affinity:\n    io: 1\n");
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e:?}");
    assert_eq!(e.key(), Some("workers.affinity.io"));
    assert!(
        e.to_string()
            .contains("low_latency, high_latency, reinforcement, process_reaper"),
        "{e}"
    );
    let e = error("workers:\n  affinity: [0]\n");
    assert_eq!(e.key(), Some("workers.affinity"));
}
