//! Fuzz target of the hooks `#[task]` generates for tasks that cross nodes:
//! `load_in` / `load_out` fed arbitrary and mutated byte strings, for the admin
//! tasks, the example modules' tasks and a task of every field type (see
//! docs/verification.md, "Fuzzing").
//!
//! For each buffer, a fresh task allocated in a real segment loads it. Checked:
//!
//! * it returns `Ok` or a `SerError`, never panics;
//! * what it allocated stays within a small multiple of the buffer's length (a
//!   length prefix of 2^60 is refused, not attempted);
//! * `free_fields` (and freeing the header's error string and the task) brings
//!   the segment's used bytes and live blocks back to where they were, also
//!   after a load that failed halfway and after a second load into the same task;
//! * a load that succeeds consumed a canonical encoding: saving the task again
//!   gives back the bytes it read.
//!
//! And the round trip with known values: `save_in` then `load_in` (and
//! `save_out` then `load_out`) reproduces the fields.
//!
//! Seeds: `tests/fuzz-corpus/task_ser/<task>.<in|out>.<what>.hex`.

mod fuzzing;
mod task_encodings;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use chi_sdk::admin::{
    CreatePoolTask, DestroyPoolTask, EchoTask, GetOrCreatePoolTask, StopRuntimeTask,
};
use chi_sdk::ser::{Reader, SerError, TaskSer};
use chi_sdk::shm::{ShmPtr, ShmString, ShmVec};
use chi_sdk::task::Task;
use chi_sdk::types::{DomainQuery, PoolId, TaskNode};
use chimaera_bdev_runtime::{AllocateBlocksTask, FreeBlocksTask, GetStatsTask};
use chimaera_compress_runtime::{CompressTask, DecompressTask};
use chimaera_mod_name_runtime::CustomTask;
use fuzzing::ShmFixture;
use proptest::prelude::*;
use task_encodings::Kind::*;
use task_encodings::*;

/// A task with a field of every kind the format has: nested vectors, strings,
/// `usize` / `isize`, an array, a float, a pointer, an atomic.
#[chi_sdk::task(method = 10, yaml = "fuzz_tasks.yaml")]
pub struct FuzzTask {
    #[inout]
    pub names: ShmVec<ShmString>,
    pub count: usize,
    pub delta: isize,
    pub weights: [u16; 3],
    #[inout]
    pub blobs: ShmVec<ShmVec<u8>>,
    pub ratio: f64,
    pub target: ShmPtr,
    pub counter: AtomicU32,
    #[output]
    pub sums: ShmVec<u64>,
    #[output]
    pub note: ShmString,
    #[output]
    pub flag: u8,
}

// ---------------------------------------------------------------------------
// The targets.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    In,
    Out,
}

/// What a load did.
#[derive(Debug)]
struct Loaded {
    ok: bool,
    /// Bytes read (when it succeeded).
    consumed: usize,
}

/// A task type under test: the encodings of its in and out halves, and the
/// check instantiated for it.
struct Target {
    name: &'static str,
    ins: &'static [Kind],
    outs: &'static [Kind],
    check: CheckFn,
}

/// `check_load` for one task type: (segment, direction, buffer, second buffer).
type CheckFn = fn(&ShmFixture, Dir, &[u8], Option<&[u8]>) -> Result<Loaded, TestCaseError>;

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

macro_rules! target {
    ($name:literal, $ty:ty, [$($i:expr),* $(,)?], [$($o:expr),* $(,)?]) => {
        Target {
            name: $name,
            ins: &[HEADER_IN, $($i),*],
            outs: &[RESULT, Str, $($o),*],
            check: |fx, dir, first, second| {
                check_load(fx, || <$ty>::empty(PoolId::NULL), dir, first, second)
            },
        }
    };
}

const TARGETS: &[Target] = &[
    target!(
        "create_pool",
        CreatePoolTask,
        [Str, Str, Str, Fixed(8), Fixed(4)],
        [Fixed(8)]
    ),
    target!(
        "get_or_create_pool",
        GetOrCreatePoolTask,
        [Str, Str, Str, Fixed(4)],
        [Fixed(8)]
    ),
    target!("destroy_pool", DestroyPoolTask, [Fixed(8)], []),
    target!("stop_runtime", StopRuntimeTask, [], []),
    target!("echo", EchoTask, [Fixed(8), Fixed(8)], [Fixed(8)]),
    target!(
        "mod_name_custom",
        CustomTask,
        [Str, Fixed(4)],
        [Str, Fixed(4)]
    ),
    target!(
        "bdev_allocate_blocks",
        AllocateBlocksTask,
        [Fixed(8), Fixed(8), Fixed(8)],
        [VecU64, Fixed(8)]
    ),
    target!("bdev_free_blocks", FreeBlocksTask, [VecU64], [Fixed(8)]),
    target!("bdev_get_stats", GetStatsTask, [], [Fixed(8 * 13)]),
    target!("compress", CompressTask, [Bytes, Fixed(4)], [Buf, Fixed(4)]),
    target!("decompress", DecompressTask, [Bytes], [Buf]),
    target!(
        "fuzz_task",
        FuzzTask,
        [
            VecStr,
            Fixed(8),
            Fixed(8),
            Fixed(6),
            VecBytes,
            Fixed(8),
            Fixed(8),
            Fixed(4)
        ],
        [VecStr, VecBytes, VecU64, Str, Fixed(1)]
    ),
];

fn target_named(name: &str) -> &'static Target {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no task `{name}`"))
}

/// Bytes a load may allocate for a buffer of `len` bytes: every field's storage
/// is bounded by the bytes that encode it (a string or vector element is at
/// least 8 bytes on the wire and 24 in memory), plus rounding to size classes.
fn allowance(len: usize) -> u64 {
    4 * len as u64 + 4096
}

/// Loads `first` (then `second`, if any, into the same task) into a fresh task
/// of the segment, and checks what it allocated, that freeing returns
/// everything, and that a successful load reads a canonical encoding.
fn check_load<T: TaskSer>(
    fx: &ShmFixture,
    make: fn() -> T,
    dir: Dir,
    first: &[u8],
    second: Option<&[u8]>,
) -> Result<Loaded, TestCaseError> {
    let alloc = &fx.alloc;
    let (used0, blocks0) = (fx.used_bytes(), fx.live_blocks());
    let task = alloc.new_obj(make()).expect("allocating a task");
    let with_task = fx.used_bytes();
    // SAFETY: a fresh task block of ours; nobody else knows it.
    let t = unsafe { &mut *task.as_ptr() };

    let load = |t: &mut T, buf: &[u8]| {
        let mut r = Reader::new(buf);
        let res = match dir {
            Dir::In => t.load_in(&mut r, alloc),
            Dir::Out => t.load_out(&mut r, alloc),
        };
        // The segment has room for far more than any buffer here can justify:
        // running out means the load tried an allocation its buffer does not
        // back (a length prefix believed before it was checked).
        let oom = matches!(res, Err(SerError::Alloc(_)));
        (res.is_ok(), r.position(), oom)
    };
    let (ok, consumed, oom) = load(t, first);
    let grown = fx.used_bytes().saturating_sub(with_task);
    let mut result = Ok(Loaded { ok, consumed });
    if oom {
        result = Err(TestCaseError::fail(format!(
            "a load of {} bytes ran out of shared memory",
            first.len()
        )));
    } else if grown > allowance(first.len()) {
        result = Err(TestCaseError::fail(format!(
            "a load of {} bytes allocated {grown} bytes",
            first.len()
        )));
    } else if ok {
        let mut again = Vec::new();
        let saved = match dir {
            Dir::In => t.save_in(&mut again),
            Dir::Out => t.save_out(&mut again),
        };
        if let Err(e) = saved {
            result = Err(TestCaseError::fail(format!("saving the loaded task: {e}")));
        } else if again != first[..consumed] {
            result = Err(TestCaseError::fail(format!(
                "saved again, the task gives {again:02x?}, not the {consumed} bytes it read"
            )));
        }
    }
    if let Some(second) = second {
        let before = fx.used_bytes();
        let (_, _, oom) = load(t, second);
        let grown = fx.used_bytes().saturating_sub(before);
        if result.is_ok() && (oom || grown > allowance(second.len())) {
            result = Err(TestCaseError::fail(format!(
                "a second load of {} bytes allocated {grown} bytes",
                second.len()
            )));
        }
    }

    // Free everything, also when a check failed, so the next case starts clean.
    t.free_fields(alloc);
    let _ = t.header_mut().error.free(alloc);
    alloc.free(task.shm()).expect("freeing the task");
    let result = result?;
    prop_assert_eq!(
        (fx.used_bytes(), fx.live_blocks()),
        (used0, blocks0),
        "free_fields left memory allocated"
    );
    Ok(result)
}

fn fixture() -> MutexGuard<'static, ShmFixture> {
    static FX: OnceLock<Mutex<ShmFixture>> = OnceLock::new();
    FX.get_or_init(|| {
        let fx = ShmFixture::new("task_ser", 32 << 20);
        // The segment stands for the client-data segment too: loaded
        // buffers are allocated there.
        std::mem::forget(chi_sdk::bytes::registry::register(&fx.alloc));
        Mutex::new(fx)
    })
    .lock()
    // A failed case frees what it allocated before it returns.
    .unwrap_or_else(|e| e.into_inner())
}

fn any_target() -> impl Strategy<Value = &'static Target> {
    (0..TARGETS.len()).prop_map(|i| &TARGETS[i])
}

fn load_case() -> impl Strategy<Value = (&'static Target, Dir, Vec<u8>, Option<Vec<u8>>)> {
    (any_target(), prop_oneof![Just(Dir::In), Just(Dir::Out)]).prop_flat_map(|(target, dir)| {
        let kinds = match dir {
            Dir::In => target.ins,
            Dir::Out => target.outs,
        };
        (
            Just(target),
            Just(dir),
            buffer(kinds),
            prop::option::weighted(0.25, buffer(kinds)),
        )
    })
}

proptest! {
    #![proptest_config(fuzzing::config("task_ser", 2000))]

    #[test]
    fn fuzz_task_ser_load((target, dir, first, second) in load_case()) {
        let fx = fixture();
        (target.check)(&fx, dir, &first, second.as_deref())?;
    }
}

proptest! {
    #![proptest_config(fuzzing::config("task_ser_valid", 600))]

    /// A valid encoding always loads, whole.
    #[test]
    fn fuzz_task_ser_valid_loads(
        (target, dir, buf) in (any_target(), prop_oneof![Just(Dir::In), Just(Dir::Out)])
            .prop_flat_map(|(t, d)| (Just(t), Just(d), valid(if d == Dir::In { t.ins } else { t.outs })))
    ) {
        let fx = fixture();
        let loaded = (target.check)(&fx, dir, &buf, None)?;
        prop_assert!(loaded.ok && loaded.consumed == buf.len(), "{target:?} {dir:?}: {loaded:?}");
    }
}

// ---------------------------------------------------------------------------
// Round trips with known values.

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_ ]{0,16}",
        any::<String>().prop_map(|s| s.chars().take(40).collect()),
    ]
}

fn header_values() -> impl Strategy<Value = (u32, u64, u64, u64, u32, u32)> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
    )
}

proptest! {
    #![proptest_config(fuzzing::config("task_ser_round_trip", 300))]

    #[test]
    fn fuzz_task_ser_round_trip(
        (flags, pool, period, major, client, hash) in header_values(),
        (module, name, args) in (text(), text(), text()),
        requested in any::<u64>(),
        (data, op, result, code) in (text(), any::<u32>(), any::<u32>(), any::<i32>()),
        (error, answer) in (text(), text()),
    ) {
        let fx = fixture();
        let alloc = &fx.alloc;
        let start = (fx.used_bytes(), fx.live_blocks());

        // The admin's CreatePool: inputs travel in.
        let mut sent = CreatePoolTask::new(alloc, &module, &name, &args, PoolId(requested)).unwrap();
        sent.header.flags = flags;
        sent.header.pool_id = PoolId(pool);
        sent.header.period_ns = period;
        sent.header.task_node = TaskNode::root(major).child();
        sent.header.dom_query = DomainQuery::global_hash(hash);
        sent.header.client_id = client;
        let mut buf = Vec::new();
        sent.save_in(&mut buf).unwrap();
        let p = alloc.new_obj(CreatePoolTask::empty(PoolId::NULL)).unwrap();
        // SAFETY: a fresh task block of ours.
        let got = unsafe { &mut *p.as_ptr() };
        let mut r = Reader::new(&buf);
        got.load_in(&mut r, alloc).unwrap();
        r.finish().unwrap();
        prop_assert_eq!(got.module.to_str().unwrap(), module.as_str());
        prop_assert_eq!(got.pool_name.to_str().unwrap(), name.as_str());
        prop_assert_eq!(got.args.to_str().unwrap(), args.as_str());
        prop_assert_eq!(got.pool_id, PoolId(requested));
        let h = &got.header;
        prop_assert_eq!(
            (h.flags, h.method, h.pool_id, h.period_ns, h.task_node, h.dom_query, h.client_id),
            (flags, 10, PoolId(pool), period, TaskNode::root(major).child(), DomainQuery::global_hash(hash), client)
        );
        // The output comes back.
        got.pool_id = PoolId(requested ^ 1);
        got.header.result.store(code, Ordering::Relaxed);
        got.header.error.set(alloc, &error).unwrap();
        let mut out = Vec::new();
        got.save_out(&mut out).unwrap();
        let mut r = Reader::new(&out);
        sent.load_out(&mut r, alloc).unwrap();
        r.finish().unwrap();
        prop_assert_eq!(sent.pool_id, PoolId(requested ^ 1));
        prop_assert_eq!(sent.header.result(), code);
        prop_assert_eq!(sent.header.error.to_str().unwrap(), error.as_str());
        prop_assert_eq!(sent.module.to_str().unwrap(), module.as_str());
        for t in [&mut sent, got] {
            t.free_fields(alloc);
            t.header.error.free(alloc).unwrap();
        }
        alloc.free(p.shm()).unwrap();

        // The example module's CustomTask: an #[inout] string.
        let mut sent = CustomTask::new(
            PoolId(pool),
            DomainQuery::local(),
            ShmString::from_str(alloc, &data).unwrap(),
            op,
        );
        let mut buf = Vec::new();
        sent.save_in(&mut buf).unwrap();
        let p = alloc.new_obj(CustomTask::empty(PoolId::NULL)).unwrap();
        // SAFETY: a fresh task block of ours.
        let got = unsafe { &mut *p.as_ptr() };
        let mut r = Reader::new(&buf);
        got.load_in(&mut r, alloc).unwrap();
        r.finish().unwrap();
        prop_assert_eq!(got.data.to_str().unwrap(), data.as_str());
        prop_assert_eq!((got.op, got.result, got.header.pool_id), (op, 0, PoolId(pool)));
        got.data.set(alloc, &answer).unwrap();
        got.result = result;
        let mut out = Vec::new();
        got.save_out(&mut out).unwrap();
        let mut r = Reader::new(&out);
        sent.load_out(&mut r, alloc).unwrap();
        r.finish().unwrap();
        prop_assert_eq!(sent.data.to_str().unwrap(), answer.as_str());
        prop_assert_eq!((sent.result, sent.op), (result, op));
        for t in [&mut sent, got] {
            t.free_fields(alloc);
            t.header.error.free(alloc).unwrap();
        }
        alloc.free(p.shm()).unwrap();

        prop_assert_eq!((fx.used_bytes(), fx.live_blocks()), start);
    }
}

// ---------------------------------------------------------------------------
// The seed corpus.

/// Replays `tests/fuzz-corpus/task_ser/<task>.<in|out>.<what>.hex` (the hex
/// notation of `fuzzing::parse_hex`). A line `# expect: ok` or `# expect: error`
/// also checks the outcome.
#[test]
fn fuzz_task_ser_seeds() {
    let fx = fixture();
    for (file, bytes) in fuzzing::seeds("task_ser") {
        let text = String::from_utf8(bytes).expect("seed files are text");
        let mut parts = file.split('.');
        let (Some(task), Some(dir)) = (parts.next(), parts.next()) else {
            panic!("{file}: not <task>.<in|out>.<what>.hex");
        };
        let dir = match dir {
            "in" => Dir::In,
            "out" => Dir::Out,
            _ => panic!("{file}: direction `{dir}` is not in or out"),
        };
        let buf = fuzzing::parse_hex(&text);
        let loaded = (target_named(task).check)(&fx, dir, &buf, None)
            .unwrap_or_else(|e| panic!("seed {file}: {e}"));
        if text.contains("# expect: ok") {
            assert!(loaded.ok, "seed {file}: the load failed");
        }
        if text.contains("# expect: error") {
            assert!(!loaded.ok, "seed {file}: the load succeeded");
        }
    }
}
