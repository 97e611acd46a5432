//! Records bound for other nodes, batched per node.
//!
//! What the peer thread decides to send while it handles frames and commands
//! ([`super::pools`]) goes into an [`Outbox`]; once per turn of its loop the
//! thread drains it ([`Outbox::drain`]): every node gets at most one
//! [`Kind::TaskBatch`] frame with all its requests and one
//! [`Kind::ReplyBatch`] with all its replies (more only when a batch would
//! pass [`super::frame::MAX_PAYLOAD`]). Records are encoded when queued, so a
//! batch costs one copy into the frame.

use std::collections::BTreeMap;

use super::frame::{Kind, MAX_PAYLOAD, encode_batch};
use crate::remote::record::{Reply, Request};

/// The largest record a frame carries (a batch of one: its count and the
/// record's length come first). Workers check their records against it
/// before they queue them, so that a task too large fails at once.
pub const MAX_RECORD: usize = MAX_PAYLOAD - 8;

/// Encoded records per node and kind.
#[derive(Debug, Default)]
pub struct Outbox {
    requests: BTreeMap<u32, Vec<Vec<u8>>>,
    replies: BTreeMap<u32, Vec<Vec<u8>>>,
    /// The records' encoded bytes.
    bytes: usize,
}

impl Outbox {
    /// Queues a request to node `to`.
    pub fn request(&mut self, to: u32, r: &Request) {
        let mut v = Vec::new();
        r.encode(&mut v);
        self.bytes += v.len();
        self.requests.entry(to).or_default().push(v);
    }

    /// Queues a reply to node `to`.
    pub fn reply(&mut self, to: u32, r: &Reply) {
        let mut v = Vec::new();
        r.encode(&mut v);
        self.bytes += v.len();
        self.replies.entry(to).or_default().push(v);
    }

    /// The encoded bytes of the records queued (what the peer thread
    /// bounds between two drains: a frame of many small requests that fail
    /// queues a reply each).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.replies.is_empty()
    }

    /// Every queued record as batch payloads: `(node, kind, payload)`, one
    /// per node and kind unless a batch would be too large (then split; a
    /// single record too large for any frame is dropped with a log line).
    pub fn drain(&mut self) -> Vec<(u32, Kind, Vec<u8>)> {
        self.bytes = 0;
        let mut out = Vec::new();
        for (kind, map) in [
            (Kind::TaskBatch, &mut self.requests),
            (Kind::ReplyBatch, &mut self.replies),
        ] {
            for (to, records) in std::mem::take(map) {
                let mut batch: Vec<&[u8]> = Vec::new();
                let mut size = 4;
                for r in &records {
                    if r.len() > MAX_RECORD {
                        tracing::warn!(
                            to,
                            size = r.len(),
                            "a task record too large for a peer frame was dropped"
                        );
                        continue;
                    }
                    if size + 4 + r.len() > MAX_PAYLOAD {
                        out.extend(encode_batch(batch.drain(..)).map(|p| (to, kind, p)));
                        size = 4;
                    }
                    size += 4 + r.len();
                    batch.push(r);
                }
                if !batch.is_empty() {
                    out.extend(encode_batch(batch).map(|p| (to, kind, p)));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use chi_sdk::types::{ContainerId, PoolId};

    use super::*;
    use crate::cluster::frame::decode_batch;
    use crate::remote::record::Record;

    fn req(id: u64, body: usize) -> Request {
        Request {
            id,
            pool: PoolId(7),
            container: ContainerId(1),
            method: 10,
            flags: 0,
            body: vec![id as u8; body],
        }
    }

    #[test]
    fn records_to_one_node_share_one_frame_per_kind() {
        let mut o = Outbox::default();
        for id in 0..5 {
            o.request(2, &req(id, 10));
        }
        o.request(3, &req(9, 1));
        o.reply(
            2,
            &Reply {
                id: 4,
                result: 0,
                message: String::new(),
                body: vec![1, 2],
            },
        );
        assert!(o.bytes() > 5 * 10);
        let frames = o.drain();
        assert!(o.is_empty());
        assert_eq!(o.bytes(), 0);
        assert_eq!(frames.len(), 3, "{frames:?}");
        let (to, kind, payload) = &frames[0];
        assert_eq!((*to, *kind), (2, Kind::TaskBatch));
        let records = decode_batch(*kind, payload).unwrap();
        assert_eq!(records.len(), 5);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(
                Record::decode(r).unwrap(),
                Record::Request(req(i as u64, 10))
            );
        }
        assert_eq!((frames[1].0, frames[1].1), (3, Kind::TaskBatch));
        assert_eq!((frames[2].0, frames[2].1), (2, Kind::ReplyBatch));
        assert!(o.drain().is_empty());
    }

    #[test]
    fn a_batch_over_the_frame_bound_is_split() {
        let mut o = Outbox::default();
        // Three records of 6 MiB: two fit in 16 MiB, the third goes in a second frame.
        for id in 0..3 {
            o.request(2, &req(id, 6 << 20));
        }
        let frames = o.drain();
        assert_eq!(frames.len(), 2);
        let counts: Vec<usize> = frames
            .iter()
            .map(|(_, k, p)| decode_batch(*k, p).unwrap().len())
            .collect();
        assert_eq!(counts, vec![2, 1]);
        assert!(frames.iter().all(|(_, _, p)| p.len() <= MAX_PAYLOAD));
    }
}
