//! The peer thread's handling of a received frame: its checks (sender,
//! source address, version, payload) and what each kind does. Methods of
//! [`PeerLoop`] (another `impl` block).

use std::net::IpAddr;
use std::time::Instant;

use super::{BAD_FRAME, FLUSH_AT, NodeStatusError, PeerLoop};
use crate::cluster::frame::{
    Frame, Kind, decode_batch, decode_status_reply, decode_status_request, encode_status_reply,
};

impl PeerLoop {
    pub(super) fn handle(&mut self, bytes: &[u8], from_ip: Option<IpAddr>) {
        let f = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => return self.refuse(&e.to_string(), bytes.len()),
        };
        if f.sender == self.membership.me() || f.sender > self.membership.len() {
            return self.refuse(
                &format!(
                    "sender node {} is not a peer of node {} (nodes 1 to {})",
                    f.sender,
                    self.membership.me(),
                    self.membership.len()
                ),
                bytes.len(),
            );
        }
        // The node of the source address must be the sender it claims: this
        // also catches nodes whose hostfiles differ.
        if let Some(ip) = from_ip
            && self.membership.address_of(f.sender) != Some(ip)
        {
            return self.refuse(
                &format!(
                    "a frame from {ip} claims to be node {} (whose hostfile address is {}): do \
                     all nodes use the same hostfile?",
                    f.sender,
                    self.membership
                        .address_of(f.sender)
                        .map_or_else(|| "unknown".to_owned(), |a| a.to_string())
                ),
                bytes.len(),
            );
        }
        let (from, inc) = (f.sender, f.incarnation);
        if !matches!(f.kind, Kind::TaskBatch | Kind::ReplyBatch) {
            self.membership.traffic().received(f.kind, bytes.len(), 0);
        }
        if f.kind == Kind::Goodbye {
            self.membership.goodbye(from, inc);
            return;
        }
        // Payloads are checked before the frame counts as a sign of life.
        match f.kind {
            Kind::StatusRequest => match decode_status_request(f.payload) {
                Ok(id) => {
                    if self.membership.heard(from, inc, Instant::now()) {
                        let report = (self.report)();
                        self.send(from, Kind::StatusReply, &encode_status_reply(id, &report));
                    }
                }
                Err(e) => self.refuse(&e.to_string(), bytes.len()),
            },
            Kind::StatusReply => match decode_status_reply(f.payload) {
                Ok((id, report)) => {
                    self.membership.heard(from, inc, Instant::now());
                    if let Some(p) = self.pending.remove(&id) {
                        let answer = if p.node == from {
                            Ok(report.to_vec())
                        } else {
                            Err(NodeStatusError::Malformed {
                                node: p.node,
                                why: format!("the reply came from node {from}"),
                            })
                        };
                        let _ = p.reply.try_send(answer);
                    }
                }
                Err(e) => self.refuse(&e.to_string(), bytes.len()),
            },
            Kind::TaskBatch | Kind::ReplyBatch => match decode_batch(f.kind, f.payload) {
                Ok(records) => {
                    self.membership
                        .traffic()
                        .received(f.kind, bytes.len(), records.len());
                    if !self.membership.heard(from, inc, Instant::now()) {
                        // A frame of an earlier run of the node that
                        // crossed its restart: what that run asked is
                        // waited for no more, and what this node sent it
                        // failed at the restart (`take_joined`).
                        tracing::debug!(
                            from,
                            incarnation = inc,
                            "dropped a batch of a stale incarnation of the node"
                        );
                        return;
                    }
                    // A node this frame brought (back) up is told what this
                    // one holds, and counted unsynced, before its records
                    // (maybe what it holds) are taken; what was sent to a
                    // run of it that went down fails first.
                    self.take_joined();
                    for r in records {
                        self.record(from, f.kind, r);
                        if self.outbox.bytes() >= FLUSH_AT {
                            self.flush_outbox();
                        }
                    }
                }
                Err(e) => self.refuse(&e.to_string(), bytes.len()),
            },
            Kind::Hello => {
                if self.membership.heard(from, inc, Instant::now()) {
                    if self.send(from, Kind::Heartbeat, &[]) {
                        self.hellos.remove(&from);
                    } else {
                        self.unanswered_hello(from);
                    }
                }
            }
            Kind::Heartbeat | Kind::Goodbye => {
                self.membership.heard(from, inc, Instant::now());
            }
        }
    }

    pub(super) fn refuse(&self, why: &str, size: usize) {
        self.membership.note_refused();
        if let Some(suppressed) = BAD_FRAME.allow() {
            tracing::warn!(size, suppressed, "refused a peer frame: {why}");
        }
    }
}
