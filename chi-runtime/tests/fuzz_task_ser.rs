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
// The encodings of the fields.

/// How a field is encoded (see chi-sdk/src/ser.rs).
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `n` bytes of plain data, every value valid.
    Fixed(usize),
    /// `u64` length and UTF-8 bytes.
    Str,
    /// `u64` length and `u64`s.
    VecU64,
    /// `u64` length and strings.
    VecStr,
    /// `u64` length and byte vectors.
    VecBytes,
    /// A client-data buffer in: `u64` length and the bytes.
    Bytes,
    /// A client-data output buffer: `u64` length and the bytes written (the
    /// capacity does not travel).
    Buf,
}

use Kind::*;

/// The header's routing fields (`save_header_in`): flags, method, pool, task
/// node, domain query, period, client id.
const HEADER_IN: Kind = Fixed(4 + 4 + 8 + 16 + 8 + 8 + 4);
/// `save_header_out`: the result code, then the error message (a [`Str`]).
const RESULT: Kind = Fixed(4);

/// The bytes of any value of `kind`.
fn encode(kind: Kind) -> BoxedStrategy<Vec<u8>> {
    fn len_prefixed(n: usize, items: Vec<u8>) -> Vec<u8> {
        let mut out = (n as u64).to_le_bytes().to_vec();
        out.extend(items);
        out
    }
    fn string() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-z_0-9]{0,12}",
            1 => any::<String>().prop_map(|s| s.chars().take(24).collect()),
        ]
    }
    match kind {
        Fixed(n) => prop::collection::vec(any::<u8>(), n).boxed(),
        Str => string()
            .prop_map(|s| len_prefixed(s.len(), s.into_bytes()))
            .boxed(),
        VecU64 => prop::collection::vec(any::<u64>(), 0..12)
            .prop_map(|v| len_prefixed(v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .boxed(),
        VecStr => prop::collection::vec(string(), 0..6)
            .prop_map(|v| {
                let n = v.len();
                let items = v
                    .into_iter()
                    .flat_map(|s| len_prefixed(s.len(), s.into_bytes()))
                    .collect();
                len_prefixed(n, items)
            })
            .boxed(),
        Bytes | Buf => prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| len_prefixed(b.len(), b))
            .boxed(),
        VecBytes => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..5)
            .prop_map(|v| {
                let n = v.len();
                let items = v
                    .into_iter()
                    .flat_map(|b| len_prefixed(b.len(), b))
                    .collect();
                len_prefixed(n, items)
            })
            .boxed(),
    }
}

/// A valid encoding of the fields `kinds`.
fn valid(kinds: &'static [Kind]) -> impl Strategy<Value = Vec<u8>> {
    kinds
        .iter()
        .map(|&k| encode(k))
        .collect::<Vec<_>>()
        .prop_map(|parts| parts.concat())
}

/// Edits that keep most of a valid buffer: the loader gets deep into it before
/// it meets the damage.
#[derive(Clone, Debug)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    /// A huge or off-by-one length written over 8 bytes.
    Length {
        at: usize,
        value: LengthValue,
    },
}

#[derive(Clone, Copy, Debug)]
enum LengthValue {
    Fixed(u64),
    /// What is left after the prefix, plus this.
    Remaining(i8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    let length = prop_oneof![
        Just(LengthValue::Fixed(1 << 60)),
        Just(LengthValue::Fixed(u64::MAX)),
        Just(LengthValue::Fixed(1 << 63)),
        Just(LengthValue::Fixed(1 << 32)),
        Just(LengthValue::Fixed(1 << 16)),
        Just(LengthValue::Fixed(1 << 20)),
        Just(LengthValue::Fixed((1 << 61) + 1)),
        (-2i8..=2).prop_map(LengthValue::Remaining),
    ];
    prop_oneof![
        2 => (at, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
        1 => (at, prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (at, 1usize..16).prop_map(|(at, len)| Mutation::Remove { at, len }),
        3 => (at, length).prop_map(|(at, value)| Mutation::Length { at, value }),
    ]
}

fn mutate(mut buf: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = buf.len();
        match *m {
            Mutation::Flip { at, bit } if n > 0 => buf[at % n] ^= 1 << bit,
            Mutation::Set { at, byte } if n > 0 => buf[at % n] = byte,
            Mutation::Truncate { at } => buf.truncate(at % (n + 1)),
            Mutation::Insert { at, ref bytes } => {
                let at = at % (n + 1);
                buf.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove { at, len } if n > 0 => {
                let at = at % n;
                buf.drain(at..(at + len).min(n));
            }
            Mutation::Length { at, value } if n >= 8 => {
                let at = at % (n - 7);
                let v = match value {
                    LengthValue::Fixed(v) => v,
                    LengthValue::Remaining(d) => {
                        ((n - at - 8) as u64).wrapping_add_signed(d.into())
                    }
                };
                buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            _ => {}
        }
    }
    buf
}

/// A buffer for fields `kinds`: arbitrary bytes, a valid encoding, a damaged
/// one, or a valid one with trailing bytes.
fn buffer(kinds: &'static [Kind]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..300),
        2 => valid(kinds),
        4 => (valid(kinds), prop::collection::vec(mutation(), 1..4))
            .prop_map(|(buf, ms)| mutate(buf, &ms)),
        1 => (valid(kinds), prop::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(mut buf, tail)| { buf.extend(tail); buf }),
    ]
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
