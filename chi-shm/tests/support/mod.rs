//! Helpers shared by the shared-memory integration tests.
//!
//! * Unique segment names and ids per test ([`unique_name`], [`fresh_id`]), and a
//!   guard that unlinks a name on drop, also when the test panics ([`ShmName`]).
//! * Child processes ([`Children`], [`child_role`], ...) come from `chi-testkit`:
//!   a test re-executes its own binary to run one `#[test]` function as a "child
//!   role", with the role and its parameters in environment variables. A
//!   child-role test is marked `#[ignore = "child role: run by its parent test"]`
//!   (a normal run lists it as ignored; its parent runs it with `--ignored`) and
//!   returns at once when [`child_role`] says the variable is absent.
//!   [`Children`] kills and reaps every child on drop and waits for them under a
//!   watchdog: a child that fails, runs no test, or does not finish in time fails
//!   the test with a message naming it and showing its output.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use chi_shm::shm::{Segment, SegmentId};
// Each test binary uses a subset.
#[allow(unused_imports)]
pub use chi_testkit::{Children, Rng, ShmName, child_role, env_str, env_u64, unique_name};

/// Default watchdog for waits on children.
pub const WATCHDOG: Duration = Duration::from_secs(120);

static NEXT_ID: AtomicU16 = AtomicU16::new(1);

/// A segment id no other call in this process got: tests run as threads of one
/// process, and a process can map each id only once. An id that is never mapped
/// is an "unknown segment" for the whole test.
pub fn fresh_id() -> SegmentId {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    assert!(
        id != 0 && id <= SegmentId::MAX.0,
        "test process ran out of segment ids"
    );
    SegmentId(id)
}

/// Path of a segment's file.
pub fn shm_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(name)
}

/// A new segment with a unique name and id; the guard unlinks it on drop.
pub fn new_segment(test: &str, size: u64) -> (ShmName, Segment) {
    let name = ShmName::new(test);
    let seg = Segment::create(name.as_str(), fresh_id(), size)
        .unwrap_or_else(|e| panic!("creating segment for {test}: {e}"));
    (name, seg)
}

pub mod pattern;
pub mod patterns;

/// A multi-lane queue of `low` + `high` lanes of `depth` cells in `seg`.
pub fn small_queue(
    seg: &Segment,
    alloc: &chi_shm::shm::Allocator,
    low: u32,
    high: u32,
    depth: u64,
) -> chi_shm::queue::MultiLaneQueue {
    chi_shm::queue::MultiLaneQueue::create(
        seg,
        alloc,
        chi_shm::queue::QueueConfig {
            low_latency_lanes: low,
            high_latency_lanes: high,
            depth,
        },
    )
    .unwrap()
}
