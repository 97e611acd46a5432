//! Fuzz target: the peer frame decoder (`chi_runtime::cluster::frame`), the
//! first code to touch bytes from other nodes' — or anyone's — connections
//! to the peer port.
//!
//! Inputs: arbitrary bytes; valid frames of every kind (status payloads,
//! batches of random records) damaged by byte changes, truncation,
//! insertions, and length fields set to 0, the bytes present ± 1, the limit,
//! the limit + 1 and 2^32 - 1 (in the header, and in batch counts and record
//! lengths).
//!
//! Checked: `Frame::decode` and the payload decoders never panic; a decoded
//! frame is canonical (encoding it gives the same bytes back) and within the
//! limit; a decoded batch is canonical and has no more records than its
//! payload has room for lengths.
//!
//! Seeds: `tests/fuzz-corpus/peer_frame/*.hex` (the hex notation of
//! `fuzzing::parse_hex`, with `# expect: ok|error`: `ok` when the frame and
//! its payload decode).

mod fuzzing;

use chi_runtime::cluster::frame::{
    Frame, FrameError, HEADER_LEN, Kind, MAX_PAYLOAD, decode_batch, decode_status_reply,
    decode_status_request, encode_batch, encode_status_reply, encode_status_request,
};
use proptest::prelude::*;

/// Decodes `bytes` as the runtime does (frame, then its payload), checking
/// every property of the module doc.
fn check(bytes: &[u8]) -> Result<(), FrameError> {
    let f = Frame::decode(bytes)?;
    assert!(f.payload.len() <= MAX_PAYLOAD);
    assert_eq!(
        f.encode().as_deref(),
        Some(bytes),
        "a decoded frame is canonical"
    );
    match f.kind {
        Kind::Hello | Kind::Heartbeat | Kind::Goodbye => Ok(()),
        Kind::StatusRequest => {
            let id = decode_status_request(f.payload)?;
            assert_eq!(encode_status_request(id), f.payload);
            Ok(())
        }
        Kind::StatusReply => {
            let (id, report) = decode_status_reply(f.payload)?;
            assert_eq!(encode_status_reply(id, report), f.payload);
            Ok(())
        }
        Kind::TaskBatch | Kind::ReplyBatch => {
            let records = decode_batch(f.kind, f.payload)?;
            assert!(records.len() <= f.payload.len() / 4);
            let again = encode_batch(records.iter().copied()).expect("fits: it came in one");
            assert_eq!(again, f.payload, "a decoded batch is canonical");
            Ok(())
        }
    }
}

#[test]
fn fuzz_peer_frame_seeds() {
    for (file, bytes) in fuzzing::seeds("peer_frame") {
        let text = String::from_utf8_lossy(&bytes);
        let input = fuzzing::parse_hex(&text);
        let expect_ok = text.contains("# expect: ok");
        assert!(
            expect_ok || text.contains("# expect: error"),
            "seed {file} says neither `# expect: ok` nor `# expect: error`"
        );
        let r = check(&input);
        assert_eq!(r.is_ok(), expect_ok, "seed {file}: {r:?}");
        if let Err(e) = r {
            // Every refusal can be logged.
            assert!(!e.to_string().is_empty());
        }
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    (1u8..=7).prop_map(|b| Kind::from_u8(b).unwrap())
}

fn payload_for(kind: Kind) -> BoxedStrategy<Vec<u8>> {
    match kind {
        Kind::Hello | Kind::Heartbeat | Kind::Goodbye => Just(Vec::new()).boxed(),
        Kind::StatusRequest => any::<u64>().prop_map(encode_status_request).boxed(),
        Kind::StatusReply => (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(id, r)| encode_status_reply(id, &r))
            .boxed(),
        Kind::TaskBatch | Kind::ReplyBatch => {
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 0..8)
                .prop_map(|recs| encode_batch(recs.iter().map(|r| r.as_slice())).unwrap())
                .boxed()
        }
    }
}

/// A valid frame's bytes.
fn valid() -> impl Strategy<Value = Vec<u8>> {
    (kind(), 1u32..=u32::MAX, any::<u64>()).prop_flat_map(|(kind, sender, incarnation)| {
        payload_for(kind).prop_map(move |payload| {
            Frame {
                kind,
                sender,
                incarnation,
                payload: &payload,
            }
            .encode()
            .unwrap()
        })
    })
}

/// A damage done to a valid frame.
#[derive(Debug, Clone)]
enum Damage {
    Byte(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Insert(prop::sample::Index, Vec<u8>),
    /// A little-endian u32 length-like field written at `at` (the header's
    /// length field, a batch count, a record length...).
    Length(prop::sample::Index, u32),
}

fn damage() -> impl Strategy<Value = Damage> {
    let special = prop_oneof![
        Just(0u32),
        Just(1),
        Just(MAX_PAYLOAD as u32),
        Just(MAX_PAYLOAD as u32 + 1),
        Just(u32::MAX),
        any::<u32>(),
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Byte(i, b)),
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
        (
            any::<prop::sample::Index>(),
            proptest::collection::vec(any::<u8>(), 1..8)
        )
            .prop_map(|(i, v)| Damage::Insert(i, v)),
        (any::<prop::sample::Index>(), special).prop_map(|(i, v)| Damage::Length(i, v)),
    ]
}

fn apply(mut bytes: Vec<u8>, d: &Damage) -> Vec<u8> {
    if bytes.is_empty() && matches!(d, Damage::Byte(..) | Damage::Length(..)) {
        return bytes;
    }
    match d {
        Damage::Byte(i, b) => {
            let at = i.index(bytes.len());
            bytes[at] = *b;
        }
        Damage::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
        Damage::Insert(i, v) => {
            let at = i.index(bytes.len() + 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Damage::Length(i, v) => {
            // Aligned on the header's length field half the time.
            let at = if i.index(2) == 0 && bytes.len() >= HEADER_LEN {
                HEADER_LEN - 4
            } else {
                i.index(bytes.len())
            };
            let end = (at + 4).min(bytes.len());
            let le = v.to_le_bytes();
            bytes[at..end].copy_from_slice(&le[..end - at]);
        }
    }
    bytes
}

proptest! {
    #![proptest_config(fuzzing::config("peer_frame", 3000))]

    /// Arbitrary bytes, some starting like a frame.
    #[test]
    fn fuzz_peer_frame_bytes(
        head in prop_oneof![Just(Vec::new()), Just(b"CHIP\x01".to_vec())],
        tail in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        let mut bytes = head;
        bytes.extend(tail);
        let _ = check(&bytes);
    }

    /// Valid frames decode; damaged ones are refused or decode canonically.
    #[test]
    fn fuzz_peer_frame_damaged(
        frame in valid(),
        damages in proptest::collection::vec(damage(), 0..3),
    ) {
        if damages.is_empty() {
            prop_assert!(check(&frame).is_ok());
        }
        let bytes = damages.iter().fold(frame, apply);
        let _ = check(&bytes);
    }
}
