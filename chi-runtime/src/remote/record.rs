//! The records a runtime sends another about tasks: a request (a task's
//! inputs, for a container on the peer) and a reply (its outcome and
//! outputs). Several records travel in one message (the peer link batches
//! them); each is self-delimited and checked on its own, so a bad record
//! fails its task and not its neighbours.
//!
//! # Layout (little endian)
//!
//! ```text
//! request: kind=1 u8 | id u64 | pool u64 | container u32 | method u32 | flags u32 | body_len u32 | body
//! reply:   kind=2 u8 | id u64 | result i32 | message_len u32 | message (UTF-8) | body_len u32 | body
//! ```
//!
//! `id` is the sender's: a reply carries the id of its request. A request's
//! body is what the module's `save_in` wrote (the task's header routing
//! fields and inputs, client-data bytes included); a reply's is what
//! `save_out` wrote, empty when the task failed before it ran.
//!
//! Decoding never panics and never allocates more than the record holds: a
//! record from the network is untrusted. Bodies are bounded by
//! [`MAX_BODY`], messages by [`MAX_MESSAGE`].

use chi_sdk::ser::{Reader, SerError};
use chi_sdk::types::{ContainerId, MethodId, PoolId};

/// Largest body a record may carry (a task's inputs or outputs with its
/// client data).
pub const MAX_BODY: usize = 256 << 20;
/// Longest error message a reply may carry.
pub const MAX_MESSAGE: usize = 64 << 10;

const KIND_REQUEST: u8 = 1;
const KIND_REPLY: u8 = 2;

/// A task for a container on the receiving node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The sender's id of the task (its reply carries it back).
    pub id: u64,
    /// The pool.
    pub pool: PoolId,
    /// The container (global id) that runs it.
    pub container: ContainerId,
    /// The method.
    pub method: MethodId,
    /// The task's header flags (`chi_sdk::task::flags`).
    pub flags: u32,
    /// The module's `save_in` bytes.
    pub body: Vec<u8>,
}

/// The outcome of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The request's id.
    pub id: u64,
    /// The task's result code (`chi_sdk::task::code`).
    pub result: i32,
    /// The error message (empty on success).
    pub message: String,
    /// The module's `save_out` bytes (empty if the task never ran).
    pub body: Vec<u8>,
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A task to run.
    Request(Request),
    /// A task's outcome.
    Reply(Reply),
}

/// Why a record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Shorter than its fields, or bytes left over.
    #[error("task record: {0}")]
    Malformed(#[from] SerError),
    /// An unknown kind byte.
    #[error("task record: kind {0} is neither a request (1) nor a reply (2)")]
    Kind(u8),
    /// A body or message larger than the bound.
    #[error("task record: {what} of {len} bytes is larger than the {max} a record may carry")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Its declared length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A message that is not UTF-8.
    #[error("task record: the reply's message is not UTF-8")]
    Utf8,
}

impl Request {
    /// Appends the record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(KIND_REQUEST);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.pool.0.to_le_bytes());
        out.extend_from_slice(&self.container.0.to_le_bytes());
        out.extend_from_slice(&self.method.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        put_bytes(out, &self.body);
    }

    /// The bytes [`encode`](Self::encode) appends before the body: kind,
    /// id, pool, container, method, flags and the body's length.
    pub const HEADER_LEN: usize = 1
        + size_of::<u64>()
        + size_of::<PoolId>()
        + size_of::<ContainerId>()
        + size_of::<MethodId>()
        + size_of::<u32>()
        + 4;

    /// How many bytes [`encode`](Self::encode) appends.
    pub fn encoded_len(&self) -> usize {
        Self::HEADER_LEN + self.body.len()
    }
}

impl Reply {
    /// The answer to request `id` that node `me` could not start (`why`).
    pub fn not_run(me: u32, id: u64, why: &str) -> Reply {
        Reply {
            id,
            ..Reply::failed(format!("node {me} could not run the task: {why}"))
        }
    }

    /// A failure without outputs (the task did not run, or its replicas
    /// failed), with `message`.
    pub fn failed(message: String) -> Reply {
        Reply {
            id: 0,
            result: chi_sdk::task::code::FAILED,
            message,
            body: Vec::new(),
        }
    }

    /// Appends the record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(KIND_REPLY);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.result.to_le_bytes());
        put_bytes(out, self.sent_message().as_bytes());
        put_bytes(out, &self.body);
    }

    /// How many bytes [`encode`](Self::encode) appends.
    pub fn encoded_len(&self) -> usize {
        1 + 8 + size_of_val(&self.result) + 4 + self.sent_message().len() + 4 + self.body.len()
    }

    /// The message as it is sent: cut to [`MAX_MESSAGE`] bytes at a
    /// character's boundary (a receiver refuses a longer one, and the whole
    /// reply with it: its task would fail by timeout, its error lost).
    fn sent_message(&self) -> &str {
        let m = self.message.as_str();
        let mut end = m.len().min(MAX_MESSAGE);
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        &m[..end]
    }
}

impl Record {
    /// Appends the record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Request(r) => r.encode(out),
            Record::Reply(r) => r.encode(out),
        }
    }

    /// Decodes one record that fills `buf` exactly.
    pub fn decode(buf: &[u8]) -> Result<Record, RecordError> {
        let mut r = Reader::new(buf);
        let [kind] = r.take_array::<1>()?;
        let id = u64::from_le_bytes(r.take_array()?);
        let rec = match kind {
            KIND_REQUEST => Record::Request(Request {
                id,
                pool: PoolId(u64::from_le_bytes(r.take_array()?)),
                container: ContainerId(u32::from_le_bytes(r.take_array()?)),
                method: u32::from_le_bytes(r.take_array()?),
                flags: u32::from_le_bytes(r.take_array()?),
                body: take_bytes(&mut r, "body", MAX_BODY)?.to_vec(),
            }),
            KIND_REPLY => {
                let result = i32::from_le_bytes(r.take_array()?);
                let message = take_bytes(&mut r, "message", MAX_MESSAGE)?;
                let message = std::str::from_utf8(message)
                    .map_err(|_| RecordError::Utf8)?
                    .to_owned();
                Record::Reply(Reply {
                    id,
                    result,
                    message,
                    body: take_bytes(&mut r, "body", MAX_BODY)?.to_vec(),
                })
            }
            other => return Err(RecordError::Kind(other)),
        };
        r.finish()?;
        Ok(rec)
    }
}

/// Appends `u32 len | bytes`.
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Reads `u32 len | bytes`, refusing more than `max`.
fn take_bytes<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
    max: usize,
) -> Result<&'a [u8], RecordError> {
    let len = u32::from_le_bytes(r.take_array()?) as usize;
    if len > max {
        return Err(RecordError::TooLarge { what, len, max });
    }
    Ok(r.take(len as u64)?)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn request() -> Request {
        Request {
            id: 7,
            pool: PoolId(16),
            container: ContainerId(2),
            method: 14,
            flags: 0,
            body: vec![1, 2, 3],
        }
    }

    #[test]
    fn records_round_trip() {
        for rec in [
            Record::Request(request()),
            Record::Reply(Reply {
                id: 7,
                result: 0,
                message: String::new(),
                body: vec![9; 100],
            }),
            Record::Reply(Reply {
                id: u64::MAX,
                result: -3,
                message: "no such pool ✗".into(),
                body: vec![],
            }),
        ] {
            let mut buf = Vec::new();
            rec.encode(&mut buf);
            let len = match &rec {
                Record::Request(r) => r.encoded_len(),
                Record::Reply(r) => r.encoded_len(),
            };
            assert_eq!(len, buf.len(), "encoded_len of {rec:?}");
            assert_eq!(Record::decode(&buf).unwrap(), rec);
        }
    }

    #[test]
    fn a_reply_with_a_long_message_goes_with_the_message_cut() {
        // 3-byte characters: the cut falls inside one and moves back.
        let long = "✗".repeat(MAX_MESSAGE);
        let reply = Reply {
            id: 1,
            result: -1,
            message: long.clone(),
            body: vec![1, 2],
        };
        let mut buf = Vec::new();
        reply.encode(&mut buf);
        assert_eq!(reply.encoded_len(), buf.len());
        let Record::Reply(got) = Record::decode(&buf).unwrap() else {
            panic!("not a reply");
        };
        assert!(long.starts_with(&got.message));
        assert!(got.message.len() <= MAX_MESSAGE && got.message.len() > MAX_MESSAGE - 3);
        assert_eq!((got.id, got.result, got.body), (1, -1, vec![1, 2]));
    }

    #[test]
    fn bad_records_are_refused_with_the_reason() {
        let mut buf = Vec::new();
        request().encode(&mut buf);
        // Every truncation is refused.
        for n in 0..buf.len() {
            assert!(
                matches!(Record::decode(&buf[..n]), Err(RecordError::Malformed(_))),
                "a record cut at {n} was accepted"
            );
        }
        // A byte too many.
        let mut long = buf.clone();
        long.push(0);
        assert!(matches!(
            Record::decode(&long),
            Err(RecordError::Malformed(SerError::TrailingBytes { .. }))
        ));
        // An unknown kind.
        let mut bad = buf.clone();
        bad[0] = 9;
        assert!(matches!(Record::decode(&bad), Err(RecordError::Kind(9))));
        // A body length past the bound is refused before anything is read.
        let mut huge = buf.clone();
        let at = 1 + 8 + 8 + 4 + 4 + 4;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = Record::decode(&huge).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        // A message that is not UTF-8.
        let mut reply = Vec::new();
        Record::Reply(Reply {
            id: 1,
            result: 1,
            message: "ab".into(),
            body: vec![],
        })
        .encode(&mut reply);
        reply[1 + 8 + 4 + 4] = 0xff;
        assert!(matches!(Record::decode(&reply), Err(RecordError::Utf8)));
    }

    proptest! {
        /// Any bytes: decoded or refused, never a panic.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Record::decode(&bytes);
        }

        /// Any request survives the round trip.
        #[test]
        fn any_request_round_trips(
            id in any::<u64>(),
            pool in any::<u64>(),
            container in any::<u32>(),
            method in any::<u32>(),
            flags in any::<u32>(),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let rec = Record::Request(Request {
                id,
                pool: PoolId(pool),
                container: ContainerId(container),
                method,
                flags,
                body,
            });
            let mut buf = Vec::new();
            rec.encode(&mut buf);
            prop_assert_eq!(Record::decode(&buf).unwrap(), rec);
        }
    }
}
