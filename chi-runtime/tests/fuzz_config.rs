//! Fuzz targets of the configuration parsers (see docs/verification.md,
//! "Fuzzing"): `Config::from_yaml_override` (the user's YAML over the built-in
//! defaults) and `parse_size` / `parse_duration`; `parse_hostfile`'s are in
//! `fuzz_hostfile.rs`.
//!
//! Config inputs: arbitrary text, the default configuration mutated line by
//! line (values replaced by odd scalars such as `1e999g`, lines deleted,
//! duplicated, re-indented, YAML oddities inserted: anchors, tags, deep
//! nesting), and documents of known keys with random plausible values. Checked:
//!
//! * nothing panics or overflows the stack;
//! * every error names a key or a line of the file it is in, and its Display
//!   shows that position and key;
//! * every configuration accepted satisfies the documented bounds (worker
//!   counts, lane shape, segment sizes against the main segment's needs, stack
//!   size, durations, client slots, unique compose entries, CPU lists sorted,
//!   unique and below `MAX_CPU`), and checking it
//!   against this machine (`check_resources`) does not panic either.
//!
//! Seeds: `tests/fuzz-corpus/config/*.yaml`.

mod config_inputs;
mod fuzzing;

use std::time::Duration;

use chi_runtime::config::footprint::{MainSegmentNeeds, max_clients_for};
use chi_runtime::config::{
    Config, ConfigError, CpuList, DEFAULT_SOURCE_NAME, MAX_BUSY_POLL, MAX_COMPOSE_CONTAINERS,
    MAX_CPU, MAX_HOSTS, MAX_LANES, MAX_LIVE_COROUTINES, MAX_QUEUE_DEPTH, MAX_SEGMENT_SIZE,
    MAX_STACK_SIZE, MAX_WORKER_THREADS, MAX_WORKERS, MIN_QUEUE_DEPTH, MIN_STACK_SIZE,
    REAPER_INTERVAL_RANGE, RESERVED_POOL_IDS, STACK_SIZE_GRANULE, STALL_TIMEOUT_RANGE,
    parse_duration, parse_size,
};
use chi_sdk::shm::Segment;
use config_inputs::{SCALARS, config_text};
use proptest::prelude::*;

/// How the fuzzed text is named in errors (not a path: relative paths in it,
/// such as a `hostfile`, resolve against the test's working directory).
const SOURCE: &str = "<fuzz>";

// ---------------------------------------------------------------------------
// Config checks.

/// An error must say where: a line of the user's file or of the defaults, or
/// at least the key, and its Display must show both.
fn check_error(e: &ConfigError) -> Result<(), TestCaseError> {
    let shown = e.to_string();
    prop_assert!(!shown.is_empty());
    match e.detail() {
        Some(d) => {
            prop_assert!(
                d.at.file == SOURCE || d.at.file == DEFAULT_SOURCE_NAME,
                "error in file {:?}: {}",
                d.at.file,
                shown
            );
            prop_assert!(
                d.at.line > 0 || !d.key.is_empty(),
                "error names neither a line nor a key: {}",
                shown
            );
            prop_assert!(
                shown.contains(&d.at.to_string()),
                "position not shown: {}",
                shown
            );
            if !d.key.is_empty() {
                prop_assert!(
                    shown.contains(&format!("`{}`", d.key)),
                    "key not shown: {}",
                    shown
                );
            }
        }
        None => {
            // A hostfile named by the text: the error names it.
            prop_assert!(shown.contains("hostfile"), "{}", shown);
        }
    }
    Ok(())
}

/// The documented bounds of an accepted configuration.
fn check_config(c: &Config) -> Result<(), TestCaseError> {
    prop_assert!(c.port != 0);
    let w = c.workers;
    prop_assert!((1..=MAX_WORKERS).contains(&w.low_latency), "{:?}", w);
    prop_assert!((1..=MAX_WORKERS).contains(&w.high_latency), "{:?}", w);
    prop_assert!(w.reinforcement <= 1 && w.process_reaper <= 1, "{:?}", w);
    prop_assert!(w.total() <= MAX_WORKER_THREADS, "{:?}", w);
    for (key, list) in c.affinity.keys() {
        if let Some(list) = list {
            let cpus = list.cpus();
            prop_assert!(!cpus.is_empty(), "{}: {:?}", key, list);
            prop_assert!(
                cpus.windows(2).all(|p| p[0] < p[1]) && cpus.iter().all(|&c| c < MAX_CPU),
                "{}: {:?}",
                key,
                list
            );
            let again = CpuList::parse(&list.to_string());
            prop_assert_eq!(again.as_ref(), Ok(list));
        }
    }
    let q = c.queue;
    prop_assert!((1..=MAX_LANES).contains(&q.lanes), "{:?}", q);
    prop_assert!(q.depth.is_power_of_two(), "{:?}", q);
    prop_assert!(
        (MIN_QUEUE_DEPTH..=MAX_QUEUE_DEPTH).contains(&q.depth),
        "{:?}",
        q
    );
    let s = c.segments;
    let needs = MainSegmentNeeds::of(q.lanes, w.high_latency, q.depth);
    prop_assert!(
        needs.is_some_and(|n| s.main >= n.min_size) && s.main <= MAX_SEGMENT_SIZE,
        "{:?} for {:?}",
        s,
        q
    );
    for data in [s.client_data, s.runtime_data] {
        prop_assert!(
            (Segment::min_size()..=MAX_SEGMENT_SIZE).contains(&data),
            "{:?}",
            s
        );
    }
    let co = c.coroutine;
    prop_assert!(
        (MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&co.stack_size),
        "{:?}",
        co
    );
    prop_assert!(co.stack_size.is_multiple_of(STACK_SIZE_GRANULE), "{:?}", co);
    prop_assert!((1..=MAX_LIVE_COROUTINES).contains(&co.max_live), "{:?}", co);
    prop_assert!(c.idle.busy_poll <= MAX_BUSY_POLL);
    prop_assert!(c.client_wait_timeout > Duration::ZERO);
    let within = |d: Duration, (lo, hi): (Duration, Duration)| lo <= d && d <= hi;
    prop_assert!(within(c.reaper.interval, REAPER_INTERVAL_RANGE));
    prop_assert!(within(c.supervisor.stall_timeout, STALL_TIMEOUT_RANGE));
    prop_assert!((1..=max_clients_for(w.total())).contains(&c.control.max_clients));
    prop_assert!(!c.hosts.is_empty() && c.hosts.len() <= MAX_HOSTS);
    prop_assert!(c.module_path.iter().all(|p| !p.as_os_str().is_empty()));
    let mut names = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for p in &c.compose {
        prop_assert!(
            !p.module.is_empty() && !p.module.contains(char::is_whitespace),
            "{:?}",
            p
        );
        prop_assert!(
            !p.name.is_empty() && names.insert(p.name.clone()),
            "{:?}",
            p
        );
        if let Some(id) = p.id {
            prop_assert!(
                !RESERVED_POOL_IDS.contains(&id) && ids.insert(id),
                "{:?}",
                p
            );
        }
        let global = p.query == chi_runtime::config::PoolQuery::Global;
        prop_assert!(!(global && p.id.is_some()), "{:?}", p);
        if let Some(n) = p.containers {
            prop_assert!(
                global && (1..=MAX_COMPOSE_CONTAINERS).contains(&n),
                "{:?}",
                p
            );
        }
    }
    // What the machine can hold: an answer either way, never a panic.
    if let Err(e) = c.check_resources() {
        check_error(&e)?;
    }
    Ok(())
}

fn check_text(text: &str) -> Result<bool, TestCaseError> {
    match Config::from_yaml_override(text, SOURCE) {
        Ok(c) => {
            check_config(&c)?;
            Ok(true)
        }
        Err(e) => {
            check_error(&e)?;
            Ok(false)
        }
    }
}

proptest! {
    #![proptest_config(fuzzing::config("config", 300))]

    #[test]
    fn fuzz_config_yaml(text in config_text()) {
        check_text(&text)?;
    }
}

// ---------------------------------------------------------------------------
// Units.

fn unit_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_map(|s| s.chars().take(40).collect()),
        "[0-9.]{0,30}[ ]{0,2}(|b|k|kb|kib|m|g|t|TB|ns|us|µs|ms|s|sec|m|min|h|x)",
        prop::sample::select(SCALARS).prop_map(str::to_owned),
    ]
}

proptest! {
    #![proptest_config(fuzzing::config("config_units", 2000))]

    /// `parse_size` / `parse_duration` answer every string, exactly for a
    /// whole number with a unit, and name the input in their errors.
    #[test]
    fn fuzz_config_units(text in unit_text()) {
        match parse_size(&text) {
            Ok(bytes) => {
                let t = text.trim().to_ascii_lowercase();
                if let Some(n) = t.strip_suffix('k').and_then(|n| n.parse::<u64>().ok()) {
                    prop_assert_eq!(Some(bytes), n.checked_mul(1024));
                }
            }
            Err(e) => prop_assert!(e.to_string().contains(text.as_str()), "{}", e),
        }
        match parse_duration(&text) {
            Ok(d) => {
                if let Some(n) = text.trim().strip_suffix("ms").and_then(|n| n.parse::<u64>().ok()) {
                    prop_assert_eq!(d, Duration::from_millis(n));
                }
            }
            Err(e) => prop_assert!(e.to_string().contains(text.as_str()), "{}", e),
        }
    }
}

// ---------------------------------------------------------------------------
// The seed corpus.

#[test]
fn fuzz_config_seeds() {
    for (file, bytes) in fuzzing::seeds("config") {
        let text = String::from_utf8(bytes).expect("config seeds are UTF-8");
        let accepted = check_text(&text).unwrap_or_else(|e| panic!("seed {file}: {e}"));
        // `# expect: ok` / `# expect: error` in a seed checks the outcome.
        if text.contains("# expect: ok") {
            assert!(accepted, "seed {file} was refused");
        }
        if text.contains("# expect: error") {
            assert!(!accepted, "seed {file} was accepted");
        }
    }
}
