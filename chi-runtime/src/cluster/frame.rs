//! The peer frame: the one message format runtimes send each other.
//!
//! # Layout (little-endian)
//!
//! | offset | size | field                                             |
//! |-------:|-----:|---------------------------------------------------|
//! | 0      | 4    | magic `CHIP`                                      |
//! | 4      | 1    | version ([`VERSION`])                             |
//! | 5      | 1    | kind ([`Kind`])                                   |
//! | 6      | 2    | reserved, must be 0                               |
//! | 8      | 4    | sender's node id (1-based, hostfile offset + 1)   |
//! | 12     | 8    | sender's incarnation (its start time, µs)         |
//! | 20     | 4    | payload length in bytes                           |
//! | 24     | n    | payload                                           |
//!
//! A frame is exactly [`HEADER_LEN`] + payload length bytes, with a payload of
//! at most [`MAX_PAYLOAD`] bytes.
//!
//! # Untrusted input
//!
//! Every frame comes from the network. [`Frame::decode`] checks every field
//! before it trusts it, returns a typed [`FrameError`] for anything else and
//! never panics, allocates nothing beyond the bytes it was given, and reads a
//! length field only as a claim to check against the bytes at hand (a huge
//! length is an error, not an allocation). The payload decoders
//! ([`decode_status_request`], [`decode_status_reply`], [`decode_batch`]) do
//! the same for what is inside. The property tests at the bottom feed them
//! random, truncated and mutated frames.
//!
//! # Kinds
//!
//! * [`Kind::Hello`]: "I (re)started", sent to every peer at start; answered
//!   by a heartbeat so that a rejoining node is seen at once.
//! * [`Kind::Heartbeat`]: "I am alive", every `cluster.heartbeat`.
//! * [`Kind::Goodbye`]: "I am stopping": peers mark the sender down at once.
//! * [`Kind::StatusRequest`] / [`Kind::StatusReply`]: `status --node N`; the
//!   payload is a request id (u64), then for the reply the sender's status
//!   report as JSON.
//! * [`Kind::TaskBatch`] / [`Kind::ReplyBatch`]: remote tasks and their
//!   replies, and pool agreement's control requests and replies: many
//!   opaque records to one node in one frame, `u32 count` then
//!   `(u32 length, bytes)` per record ([`encode_batch`], [`decode_batch`]).

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"CHIP";
/// The frame format's version; a frame of another version is refused.
/// Version 2: a pool-drop notice carries ranges of ids (`pools/ids.rs`),
/// which version 1 cannot read.
pub const VERSION: u8 = 2;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 24;
/// Largest payload accepted (and sent), in bytes.
pub const MAX_PAYLOAD: usize = 16 << 20;
/// Largest frame, header included.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD;

/// What a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// The sender started (or restarted); answer with a heartbeat.
    Hello = 1,
    /// The sender is alive.
    Heartbeat = 2,
    /// The sender is stopping.
    Goodbye = 3,
    /// Asks for the receiver's status report (payload: request id).
    StatusRequest = 4,
    /// The status report asked for (payload: request id, JSON report).
    StatusReply = 5,
    /// Records of tasks to run on the receiver (and control requests).
    TaskBatch = 6,
    /// Records of completed tasks (and control replies).
    ReplyBatch = 7,
}

impl Kind {
    /// The kind of a wire byte.
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Heartbeat,
            3 => Kind::Goodbye,
            4 => Kind::StatusRequest,
            5 => Kind::StatusReply,
            6 => Kind::TaskBatch,
            7 => Kind::ReplyBatch,
            _ => return None,
        })
    }
}

/// Why bytes are not a frame (or a payload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than a header.
    #[error("truncated frame: {len} bytes, a header is {HEADER_LEN}")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// The first bytes are not [`MAGIC`].
    #[error("not a Chimaera peer frame (bad magic {found:02x?})")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// Another version of the frame format.
    #[error(
        "frame version {found}, this runtime speaks version {VERSION}: are all nodes running the same chi-runtime?"
    )]
    Version {
        /// The version found.
        found: u8,
    },
    /// An unknown kind byte.
    #[error("unknown frame kind {found}")]
    Kind {
        /// The byte found.
        found: u8,
    },
    /// Reserved bits set.
    #[error("reserved header bits set ({found:#06x})")]
    Reserved {
        /// The field found.
        found: u16,
    },
    /// Node id 0 (ids start at 1).
    #[error("sender node id 0 (node ids start at 1)")]
    NodeZero,
    /// The length field claims more than [`MAX_PAYLOAD`].
    #[error("payload length {claimed} is over the limit of {MAX_PAYLOAD} bytes")]
    TooLarge {
        /// The length claimed.
        claimed: u64,
    },
    /// The length field does not match the bytes after the header.
    #[error("payload length field says {claimed} bytes, {actual} follow the header")]
    LengthMismatch {
        /// The length claimed.
        claimed: u64,
        /// The bytes that follow.
        actual: usize,
    },
    /// A payload that does not hold what its kind needs.
    #[error("malformed {kind:?} payload: {why}")]
    Payload {
        /// The frame's kind.
        kind: Kind,
        /// What is wrong.
        why: &'static str,
    },
}

/// A decoded frame, borrowing its payload from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What it is for.
    pub kind: Kind,
    /// The sender's node id.
    pub sender: u32,
    /// The sender's incarnation.
    pub incarnation: u64,
    /// The payload.
    pub payload: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl<'a> Frame<'a> {
    /// Checks `bytes` and reads the frame they hold (see the module doc).
    pub fn decode(bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::Truncated { len: bytes.len() });
        }
        let mut magic = [0; 4];
        magic.copy_from_slice(&bytes[0..4]);
        if magic != MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        if bytes[4] != VERSION {
            return Err(FrameError::Version { found: bytes[4] });
        }
        let kind = Kind::from_u8(bytes[5]).ok_or(FrameError::Kind { found: bytes[5] })?;
        let reserved = u16_at(bytes, 6);
        if reserved != 0 {
            return Err(FrameError::Reserved { found: reserved });
        }
        let sender = u32_at(bytes, 8);
        if sender == 0 {
            return Err(FrameError::NodeZero);
        }
        let incarnation = u64_at(bytes, 12);
        let claimed = u64::from(u32_at(bytes, 20));
        if claimed > MAX_PAYLOAD as u64 {
            return Err(FrameError::TooLarge { claimed });
        }
        let payload = &bytes[HEADER_LEN..];
        if claimed != payload.len() as u64 {
            return Err(FrameError::LengthMismatch {
                claimed,
                actual: payload.len(),
            });
        }
        Ok(Frame {
            kind,
            sender,
            incarnation,
            payload,
        })
    }

    /// The frame's bytes; `None` if the payload is over [`MAX_PAYLOAD`].
    pub fn encode(&self) -> Option<Vec<u8>> {
        if self.payload.len() > MAX_PAYLOAD {
            return None;
        }
        let mut v = Vec::with_capacity(HEADER_LEN + self.payload.len());
        v.extend_from_slice(&MAGIC);
        v.push(VERSION);
        v.push(self.kind as u8);
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(&self.sender.to_le_bytes());
        v.extend_from_slice(&self.incarnation.to_le_bytes());
        v.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        v.extend_from_slice(self.payload);
        Some(v)
    }
}

/// The payload of a [`Kind::StatusRequest`].
pub fn encode_status_request(request: u64) -> Vec<u8> {
    request.to_le_bytes().to_vec()
}

/// The request id of a [`Kind::StatusRequest`] payload.
pub fn decode_status_request(payload: &[u8]) -> Result<u64, FrameError> {
    if payload.len() != 8 {
        return Err(FrameError::Payload {
            kind: Kind::StatusRequest,
            why: "expected an 8-byte request id",
        });
    }
    Ok(u64_at(payload, 0))
}

/// The payload of a [`Kind::StatusReply`]: the request id, then the report.
pub fn encode_status_reply(request: u64, report: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + report.len());
    v.extend_from_slice(&request.to_le_bytes());
    v.extend_from_slice(report);
    v
}

/// The request id and report bytes of a [`Kind::StatusReply`] payload.
pub fn decode_status_reply(payload: &[u8]) -> Result<(u64, &[u8]), FrameError> {
    if payload.len() < 8 {
        return Err(FrameError::Payload {
            kind: Kind::StatusReply,
            why: "shorter than its 8-byte request id",
        });
    }
    Ok((u64_at(payload, 0), &payload[8..]))
}

/// The payload of a batch ([`Kind::TaskBatch`], [`Kind::ReplyBatch`]): the
/// count, then each record's length and bytes; `None` if it would be over
/// [`MAX_PAYLOAD`] (split the batch).
pub fn encode_batch<'r>(records: impl IntoIterator<Item = &'r [u8]>) -> Option<Vec<u8>> {
    let mut v = vec![0u8; 4];
    let mut count: u32 = 0;
    for r in records {
        if v.len() + 4 + r.len() > MAX_PAYLOAD {
            return None;
        }
        v.extend_from_slice(&(r.len() as u32).to_le_bytes());
        v.extend_from_slice(r);
        count += 1;
    }
    v[0..4].copy_from_slice(&count.to_le_bytes());
    Some(v)
}

/// The records of a batch payload of `kind`, borrowed. Every length is checked
/// against the bytes left; the count must match the records present exactly.
pub fn decode_batch(kind: Kind, payload: &[u8]) -> Result<Vec<&[u8]>, FrameError> {
    let bad = |why| FrameError::Payload { kind, why };
    if payload.len() < 4 {
        return Err(bad("shorter than its 4-byte record count"));
    }
    let count = u32_at(payload, 0) as usize;
    // Each record takes at least its 4-byte length: a count past that is a lie,
    // refused before anything is allocated for it.
    if count > (payload.len() - 4) / 4 {
        return Err(bad("record count larger than the payload can hold"));
    }
    let mut records = Vec::with_capacity(count);
    let mut at = 4;
    for _ in 0..count {
        if payload.len() - at < 4 {
            return Err(bad("truncated record length"));
        }
        let len = u32_at(payload, at) as usize;
        at += 4;
        if len > payload.len() - at {
            return Err(bad("record length past the end of the payload"));
        }
        records.push(&payload[at..at + len]);
        at += len;
    }
    if at != payload.len() {
        return Err(bad("bytes left after the last record"));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
        Frame {
            kind,
            sender: 2,
            incarnation: 77,
            payload,
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn round_trip_every_kind() {
        for b in 1..=7 {
            let kind = Kind::from_u8(b).unwrap();
            let bytes = frame(kind, b"abc");
            let f = Frame::decode(&bytes).unwrap();
            assert_eq!(f.kind, kind);
            assert_eq!((f.sender, f.incarnation, f.payload), (2, 77, &b"abc"[..]));
        }
        assert_eq!(Kind::from_u8(0), None);
        assert_eq!(Kind::from_u8(8), None);
    }

    #[test]
    fn each_header_mistake_has_its_error() {
        let good = frame(Kind::Heartbeat, b"xy");
        assert_eq!(
            Frame::decode(&good[..10]),
            Err(FrameError::Truncated { len: 10 })
        );
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(
            Frame::decode(&b),
            Err(FrameError::BadMagic { .. })
        ));
        let mut b = good.clone();
        b[4] = 9;
        assert_eq!(Frame::decode(&b), Err(FrameError::Version { found: 9 }));
        let mut b = good.clone();
        b[5] = 200;
        assert_eq!(Frame::decode(&b), Err(FrameError::Kind { found: 200 }));
        let mut b = good.clone();
        b[7] = 1;
        assert_eq!(
            Frame::decode(&b),
            Err(FrameError::Reserved { found: 0x100 })
        );
        let mut b = good.clone();
        b[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(Frame::decode(&b), Err(FrameError::NodeZero));
        let mut b = good.clone();
        b[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Frame::decode(&b),
            Err(FrameError::TooLarge {
                claimed: u32::MAX as u64
            })
        );
        let mut b = good.clone();
        b.push(0);
        assert_eq!(
            Frame::decode(&b),
            Err(FrameError::LengthMismatch {
                claimed: 2,
                actual: 3
            })
        );
        assert_eq!(
            Frame::decode(&good[..good.len() - 1]),
            Err(FrameError::LengthMismatch {
                claimed: 2,
                actual: 1
            })
        );
    }

    #[test]
    fn status_payloads() {
        assert_eq!(decode_status_request(&encode_status_request(5)), Ok(5));
        assert!(decode_status_request(b"1234567").is_err());
        let p = encode_status_reply(9, b"{}");
        assert_eq!(decode_status_reply(&p), Ok((9, &b"{}"[..])));
        assert!(decode_status_reply(b"short").is_err());
    }

    #[test]
    fn batches_round_trip_and_lies_are_refused() {
        let recs: Vec<&[u8]> = vec![b"one", b"", b"three"];
        let p = encode_batch(recs.iter().copied()).unwrap();
        assert_eq!(decode_batch(Kind::TaskBatch, &p).unwrap(), recs);
        let empty = encode_batch(std::iter::empty()).unwrap();
        assert!(decode_batch(Kind::ReplyBatch, &empty).unwrap().is_empty());
        // A count of 4 billion records in 8 bytes.
        let mut lie = p.clone();
        lie[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_batch(Kind::TaskBatch, &lie).is_err());
        // A record length past the end.
        let mut lie = p.clone();
        lie[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode_batch(Kind::TaskBatch, &lie).is_err());
        // Trailing bytes, truncation.
        let mut tail = p.clone();
        tail.push(1);
        assert!(decode_batch(Kind::TaskBatch, &tail).is_err());
        assert!(decode_batch(Kind::TaskBatch, &p[..p.len() - 1]).is_err());
        assert!(decode_batch(Kind::TaskBatch, b"ab").is_err());
        // Too large to send as one frame.
        let big = vec![0u8; MAX_PAYLOAD];
        assert!(encode_batch([big.as_slice()]).is_none());
    }
}
