//! Fuzz target of the control protocol's decoding (see docs/verification.md,
//! "Fuzzing"): the bytes of a request as the runtime's `serve` decodes them
//! (`serde_json::from_slice::<Request>`), the bytes of a reply as a client
//! decodes them (`Reply`), and the key a client presents (`ControlKey`).
//!
//! Inputs: arbitrary bytes, valid messages, and valid messages mutated at the
//! byte and at the JSON level (huge and negative numbers, floats, unknown
//! operations, duplicate and extra keys, deep nesting, bad escapes). Checked:
//!
//! * decoding never panics and never overflows the stack;
//! * what decodes re-encodes to a message that decodes to the same value;
//! * the runtime's answer to a malformed request (`serve` answers
//!   `Reply::Error { "malformed request: <serde error>" }`; there is no pure
//!   function for it, so it is rebuilt here) encodes, decodes back and stays
//!   within a bound of the request's size;
//! * `ControlKey::from_hex` takes exactly 64 hex digits, and `matches` accepts
//!   exactly the key's hex.
//!
//! Seeds: `tests/fuzz-corpus/control/*` (raw messages, each tried as a request
//! and as a reply).

mod fuzzing;

use chi_sdk::auth::ControlKey;
use chi_sdk::proto::{
    LaneStatus, ModelStatus, PoolStatus, ReaperStatus, Registration, Reply, Request, SegmentDesc,
    SegmentUsage, StatusReport, WorkerStatus,
};
use chi_sdk::transport::MAX_REQUEST_BYTES;
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Valid messages.

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        any::<u32>().prop_map(|pid| Request::Register { pid }),
        any::<u32>().prop_map(|client_id| Request::Unregister { client_id }),
        Just(Request::Status),
        Just(Request::Stop),
        any::<u32>().prop_map(|node| Request::NodeStatus { node }),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z_0-9]{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(16).collect()),
    ]
}

fn registration() -> impl Strategy<Value = Registration> {
    let segment =
        (text(), text(), any::<u16>(), any::<u64>()).prop_map(|(role, name, id, size)| {
            SegmentDesc {
                role,
                name,
                id,
                size,
            }
        });
    (
        (any::<u32>(), any::<u32>(), any::<u32>()),
        prop::collection::vec(segment, 0..4),
        text(),
        (any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |((node_id, client_id, runtime_pid), segments, fingerprint, (wait, deadline))| {
                Registration {
                    node_id,
                    client_id,
                    runtime_pid,
                    segments,
                    fingerprint,
                    wait_timeout_ms: wait,
                    task_deadline_ms: deadline,
                }
            },
        )
}

fn status() -> impl Strategy<Value = StatusReport> {
    let worker = (
        (
            any::<u32>(),
            text(),
            prop::collection::vec(any::<usize>(), 0..4),
            text(),
        ),
        (any::<u64>(), any::<bool>(), any::<bool>(), any::<u64>()),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |(
                (id, kind, lanes, cpus),
                (tasks_completed, sleeping, stalled, live_tasks),
                (refused, panics, cells_skipped, restarts),
            )| WorkerStatus {
                id,
                kind,
                lanes,
                tasks_completed,
                sleeping,
                stalled,
                live_tasks,
                parked_tasks: live_tasks / 2,
                periodic_tasks: live_tasks / 3,
                running: stalled.then(|| format!("task {live_tasks}.1")),
                refused,
                panics,
                cells_skipped,
                restarts,
                retired: stalled && sleeping,
                cpus,
                load_us: f64::from(id) / 8.0,
                lanes_given: restarts / 2,
            },
        );
    let model = (any::<u64>(), any::<u32>(), any::<u32>(), any::<u64>()).prop_map(
        |(pool, method, cost, samples)| ModelStatus {
            pool,
            method,
            cost_us: f64::from(cost) / 4.0,
            estimate_us: f64::from(cost % 7),
            samples,
        },
    );
    let lane =
        (any::<usize>(), text(), any::<u64>()).prop_map(|(lane, priority, len)| LaneStatus {
            lane,
            priority,
            len,
        });
    let pool = (
        any::<u64>(),
        text(),
        text(),
        prop::collection::vec(any::<u32>(), 0..3),
    )
        .prop_map(|(id, name, module, containers)| PoolStatus {
            id,
            name,
            module,
            containers,
        });
    let usage = (
        text(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
    )
        .prop_map(
            |(role, used_bytes, live_blocks, free_pages, owners)| SegmentUsage {
                role,
                used_bytes,
                live_blocks,
                free_pages,
                owners,
            },
        );
    let reaper = (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(clients_reaped, blocks_freed, bytes_freed, tasks_handed_over, owners_cleared)| {
                ReaperStatus {
                    clients_reaped,
                    blocks_freed,
                    bytes_freed,
                    tasks_handed_over,
                    owners_cleared,
                }
            },
        );
    (
        (
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
        ),
        prop::collection::vec(worker, 0..3),
        prop::collection::vec(lane, 0..3),
        prop::collection::vec(pool, 0..3),
        reaper,
        prop::collection::vec(usage, 0..3),
        (text(), prop::collection::vec(model, 0..3), text()),
    )
        .prop_map(
            |(
                (node_id, pid, uptime_ms, tasks_completed, clients),
                workers,
                lanes,
                pools,
                reaper,
                segments,
                (supervisor_cpus, models, reinforcement_cpus),
            )| {
                StatusReport {
                    node_id,
                    pid,
                    uptime_ms,
                    workers,
                    lanes,
                    pools,
                    tasks_completed,
                    clients,
                    reaper,
                    segments,
                    supervisor_cpus,
                    models,
                    reinforcement_cpus,
                    cluster: Vec::new(),
                    peer_frames_refused: 0,
                    peer_traffic: Default::default(),
                }
            },
        )
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        registration().prop_map(Reply::Registered),
        status().prop_map(Reply::Status),
        any::<u32>().prop_map(|pid| Reply::Ok { pid }),
        text().prop_map(|message| Reply::Error { message }),
    ]
}

// ---------------------------------------------------------------------------
// Mutations.

/// JSON-level edits: each replaces or inserts text at a position chosen by
/// `at` (modulo the message's length, moved to a character boundary).
#[derive(Clone, Debug)]
enum Edit {
    /// Replaces the next run of digits.
    Number {
        at: usize,
        with: &'static str,
    },
    /// Inserts a fragment.
    Insert {
        at: usize,
        with: String,
    },
    /// Wraps the whole message in `depth` arrays or objects.
    Nest {
        depth: usize,
        objects: bool,
    },
    /// Byte-level: flips a bit, drops or truncates.
    Flip {
        at: usize,
        bit: u8,
    },
    Truncate {
        at: usize,
    },
}

const NUMBERS: &[&str] = &[
    "-1",
    "0",
    "1.5",
    "1e999",
    "-1e999",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999999999999999999",
    "0x10",
    "NaN",
    "null",
    "\"7\"",
    "true",
    "[]",
    "{}",
];

const FRAGMENTS: &[&str] = &[
    ",\"op\":\"stop\"",
    ",\"op\":\"register\"",
    ",\"pid\":1",
    ",\"extra\":[1,2,{\"a\":null}]",
    "\"op\":\"format_disk\",",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "\\",
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    " ",
    "\u{feff}",
    "\u{0}",
];

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<usize>();
    prop_oneof![
        3 => (at, prop::sample::select(NUMBERS)).prop_map(|(at, with)| Edit::Number { at, with }),
        3 => (at, prop_oneof![
            3 => prop::sample::select(FRAGMENTS).prop_map(str::to_owned),
            1 => text(),
        ]).prop_map(|(at, with)| Edit::Insert { at, with }),
        1 => (prop_oneof![1usize..200, 100usize..20_000], any::<bool>())
            .prop_map(|(depth, objects)| Edit::Nest { depth, objects }),
        2 => (at, 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        1 => at.prop_map(|at| Edit::Truncate { at }),
    ]
}

fn apply(mut msg: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = msg.len();
        match e {
            Edit::Number { at, with } => {
                let from = at % (n + 1);
                if let Some(start) = msg[from..].iter().position(u8::is_ascii_digit) {
                    let start = from + start;
                    let end = msg[start..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(n, |e| start + e);
                    msg.splice(start..end, with.bytes());
                }
            }
            Edit::Insert { at, with } => {
                let at = at % (n + 1);
                msg.splice(at..at, with.bytes());
            }
            Edit::Nest { depth, objects } => {
                let (open, close): (&[u8], &[u8]) = if *objects {
                    (b"{\"a\":", b"}")
                } else {
                    (b"[", b"]")
                };
                let mut out = open.repeat(*depth);
                out.extend_from_slice(&msg);
                out.extend(close.repeat(*depth));
                msg = out;
            }
            Edit::Flip { at, bit } if n > 0 => msg[at % n] ^= 1 << bit,
            Edit::Truncate { at } => msg.truncate(at % (n + 1)),
            Edit::Flip { .. } => {}
        }
    }
    msg.truncate(MAX_REQUEST_BYTES);
    msg
}

/// A message to decode: arbitrary bytes, or a valid request or reply with
/// edits.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop_oneof![
        request().prop_map(|r| serde_json::to_vec(&r).unwrap()),
        reply().prop_map(|r| serde_json::to_vec(&r).unwrap()),
    ];
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..256),
        1 => valid.clone(),
        6 => (valid, prop::collection::vec(edit(), 1..5)).prop_map(|(m, e)| apply(m, &e)),
    ]
}

// ---------------------------------------------------------------------------
// The checks.

/// What the runtime answers a request that does not decode (`Runtime::serve`).
fn malformed_answer(e: &serde_json::Error) -> Reply {
    Reply::Error {
        message: format!("malformed request: {e}"),
    }
}

fn check_message(bytes: &[u8]) -> Result<(), TestCaseError> {
    match serde_json::from_slice::<Request>(bytes) {
        Ok(req) => {
            let again = serde_json::to_vec(&req).unwrap();
            prop_assert_eq!(serde_json::from_slice::<Request>(&again).unwrap(), req);
        }
        Err(e) => {
            let answer = malformed_answer(&e);
            let encoded = serde_json::to_vec(&answer).expect("encoding the answer");
            // The message may quote part of the input (an unknown variant's
            // name), escaped: up to 6 bytes a byte.
            prop_assert!(
                encoded.len() <= 6 * bytes.len() + 512,
                "a {}-byte request gets a {}-byte answer",
                bytes.len(),
                encoded.len()
            );
            prop_assert_eq!(serde_json::from_slice::<Reply>(&encoded).unwrap(), answer);
        }
    }
    if let Ok(reply) = serde_json::from_slice::<Reply>(bytes) {
        let again = serde_json::to_vec(&reply).unwrap();
        prop_assert_eq!(serde_json::from_slice::<Reply>(&again).unwrap(), reply);
    }
    Ok(())
}

/// `text` as a key must parse exactly when it is 64 hex digits, and then to
/// the key whose hex it is; a key matches exactly its own lowercase hex.
fn check_key(text: &str, presented: &[u8]) -> Result<(), TestCaseError> {
    let hex_digits = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
    let key = ControlKey::from_hex(text);
    prop_assert_eq!(key.is_some(), hex_digits, "from_hex({:?})", text);
    if let Some(key) = key {
        let hex = key.to_hex();
        prop_assert_eq!(&hex, &text.to_ascii_lowercase());
        prop_assert!(key.matches(hex.as_bytes()));
        prop_assert_eq!(key.matches(presented), presented == hex.as_bytes());
        prop_assert!(ControlKey::from_hex(&hex).is_some_and(|k| k.matches(hex.as_bytes())));
    }
    Ok(())
}

fn key_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[0-9a-fA-F]{64}",
        2 => "[0-9a-fA-F+\\- _xX]{64}",
        1 => "[0-9a-f]{60,68}",
        // Pairs that `u8::from_str_radix` takes: a digit pair or a sign and a digit.
        2 => prop::collection::vec(prop_oneof!["[0-9a-f]{2}", "[+][0-9a-f]"], 32)
            .prop_map(|pairs| pairs.concat()),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(fuzzing::config("control", 3000))]

    #[test]
    fn fuzz_control_messages(bytes in message()) {
        check_message(&bytes)?;
    }
}

proptest! {
    #![proptest_config(fuzzing::config("control_key", 1000))]

    #[test]
    fn fuzz_control_key(
        text in key_text(),
        presented in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..70),
            "[0-9a-f]{64}".prop_map(String::into_bytes),
        ],
    ) {
        check_key(&text, &presented)?;
        // The key presented as its own hex, with one byte changed.
        if let Some(key) = ControlKey::from_hex(&text) {
            let mut hex = key.to_hex().into_bytes();
            let i = presented.len() % hex.len();
            hex[i] ^= 1;
            prop_assert!(!key.matches(&hex));
        }
    }
}

// ---------------------------------------------------------------------------
// The seed corpus.

/// Replays `tests/fuzz-corpus/control/*`: each file's bytes as a request and a
/// reply; files named `key-*` as a key's text.
#[test]
fn fuzz_control_seeds() {
    for (file, bytes) in fuzzing::seeds("control") {
        let result = if file.starts_with("key-") {
            let text = String::from_utf8_lossy(&bytes);
            check_key(text.trim_end_matches('\n'), text.as_bytes())
        } else {
            check_message(&bytes)
        };
        if let Err(e) = result {
            panic!("seed {file}: {e}");
        }
    }
}

/// The decoder's recursion limit holds at any depth the size limit allows.
#[test]
fn fuzz_control_deepest_nesting() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let depth = MAX_REQUEST_BYTES / (open.len() + close.len());
        let msg = format!("{}{}", open.repeat(depth), close.repeat(depth));
        assert!(serde_json::from_slice::<Request>(msg.as_bytes()).is_err());
        assert!(serde_json::from_slice::<Reply>(msg.as_bytes()).is_err());
        check_message(msg.as_bytes()).unwrap();
    }
}
