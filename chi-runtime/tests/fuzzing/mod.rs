//! Helpers shared by the `fuzz_*` property tests.
//!
//! * [`config`]: a proptest configuration with a short case count for CI, raised
//!   by the `CHI_FUZZ_CASES` environment variable for long runs, whose failures
//!   are persisted to `tests/fuzz-corpus/<target>.txt` (committed: proptest
//!   replays those seeds first on every run).
//! * [`seeds`]: the hand-written seed inputs of a target, the files of
//!   `tests/fuzz-corpus/<target>/`, which a plain test replays.
//! * [`parse_hex`]: the hex notation of binary seeds.
//! * [`ShmFixture`]: a real segment (its name unlinked as soon as it is
//!   mapped) and its allocator.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use chi_sdk::shm::{Allocator, Segment, SegmentId};
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};

/// Environment variable that sets the number of cases of every fuzz target.
pub const CASES_ENV: &str = "CHI_FUZZ_CASES";

/// Cases to run: `CHI_FUZZ_CASES` if set, else `default` (sized for CI).
pub fn cases(default: u32) -> u32 {
    match std::env::var(CASES_ENV) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{CASES_ENV}={v:?} is not a number of cases")),
        _ => default,
    }
}

/// The proptest configuration of `target`: `default_cases` cases (or
/// `CHI_FUZZ_CASES`), failures persisted in `tests/fuzz-corpus/<target>.txt`.
pub fn config(target: &str, default_cases: u32) -> ProptestConfig {
    // Tests run with the package directory as their working directory.
    let path: &'static str = Box::leak(format!("tests/fuzz-corpus/{target}.txt").into_boxed_str());
    ProptestConfig {
        cases: cases(default_cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(path))),
        ..ProptestConfig::default()
    }
}

/// The corpus directory of `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target)
}

/// The seed files of `target` (name and content), sorted by name. Panics if
/// there are none: every target has a seed corpus.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes =
                std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            (name, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seed files in {}", dir.display());
    out
}

/// Parses the hex notation of a binary seed: whitespace-separated tokens,
/// each a byte in two hex digits (`4b`) optionally repeated (`00*96`), and
/// comments from `#` to the end of the line.
pub fn parse_hex(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        for token in line.split_whitespace() {
            let (byte, count) = token.split_once('*').unwrap_or((token, "1"));
            let byte = u8::from_str_radix(byte, 16)
                .unwrap_or_else(|_| panic!("`{token}`: not a hex byte"));
            let count: usize = count
                .parse()
                .unwrap_or_else(|_| panic!("`{token}`: bad repeat count"));
            out.extend(std::iter::repeat_n(byte, count));
        }
    }
    out
}

static NAME_COUNTER: AtomicU32 = AtomicU32::new(0);
static NEXT_ID: AtomicU16 = AtomicU16::new(1);

/// A segment of its own (unique name and id in this process) and an allocator
/// attached to it. Its name is unlinked at once; dropping it unmaps it.
pub struct ShmFixture {
    // Field order: the allocator is dropped before the segment.
    pub alloc: Allocator,
    pub segment: Segment,
}

impl ShmFixture {
    /// A fresh segment of `size` bytes for `test`.
    pub fn new(test: &str, size: u64) -> ShmFixture {
        let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("chi-fuzz-{}-{n}-{test}", std::process::id());
        // Tests of one binary may share a process, which maps each id once.
        let id = SegmentId(NEXT_ID.fetch_add(1, Ordering::Relaxed));
        assert!(id <= SegmentId::MAX, "test process ran out of segment ids");
        let segment = Segment::create(&name, id, size)
            .unwrap_or_else(|e| panic!("creating segment {name}: {e}"));
        let alloc = Allocator::attach(&segment).expect("attaching the allocator");
        // No other process attaches: the name can go now, so that nothing is
        // left in /dev/shm even when the fixture is a static (never dropped) or
        // the test process dies. The mapping stays valid.
        Segment::unlink(&name).expect("unlinking the segment's name");
        ShmFixture { alloc, segment }
    }

    /// Bytes of live allocations, with this thread's cache flushed first (cached
    /// blocks count as free).
    pub fn used_bytes(&self) -> u64 {
        self.alloc.flush_thread_cache();
        self.alloc.stats().used_bytes
    }

    /// Live allocations (after flushing this thread's cache).
    pub fn live_blocks(&self) -> u64 {
        self.alloc.flush_thread_cache();
        self.alloc.stats().live_blocks
    }
}
