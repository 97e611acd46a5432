//! The peer thread's part in remote records: batches of task records and
//! replies ([`super::outbox`]), and the pool agreement they carry
//! ([`super::pools`]). Methods of [`PeerLoop`] (another `impl` block).

use super::{NOT_YET, PeerLoop};
use crate::cluster::frame::Kind;
use crate::cluster::membership::PeerState;
use crate::remote::record::{Record, Reply};

impl PeerLoop {
    /// The nodes up now, this one included, in id order (the first is the
    /// pools' authority).
    pub(super) fn up(&self) -> Vec<u32> {
        (1..=self.membership.len())
            .filter(|&n| {
                n == self.membership.me()
                    || matches!(self.membership.state_of(n), Some((PeerState::Up, _)))
            })
            .collect()
    }

    /// Sends what the outbox holds: one batch frame per node and kind.
    pub(super) fn flush_outbox(&mut self) {
        for (to, kind, payload) in self.outbox.drain() {
            self.send(to, kind, &payload);
        }
    }

    /// One record of a batch from node `from`: pool agreement's control
    /// requests and replies ([`super::pools`]); anything else (remote tasks)
    /// is answered with an error, or dropped if a reply.
    pub(super) fn record(&mut self, from: u32, kind: Kind, bytes: &[u8]) {
        let rec = match Record::decode(bytes) {
            Ok(r) => r,
            Err(e) => return self.refuse(&e.to_string(), bytes.len()),
        };
        let up = self.up();
        match (kind, rec) {
            (Kind::TaskBatch, Record::Request(q)) => {
                if !self.pools.on_request(from, &q, &up, &mut self.outbox) {
                    if let Some(suppressed) = NOT_YET.allow() {
                        tracing::warn!(
                            from,
                            pool = q.pool.0,
                            suppressed,
                            "refused a remote task: this runtime does not run remote tasks yet"
                        );
                    }
                    self.outbox.reply(
                        from,
                        &Reply {
                            id: q.id,
                            result: chi_sdk::task::code::FAILED,
                            message: format!(
                                "node {} does not run remote tasks yet",
                                self.membership.me()
                            ),
                            body: Vec::new(),
                        },
                    );
                }
            }
            (Kind::ReplyBatch, Record::Reply(p)) => {
                if !self.pools.on_reply(from, &p, &mut self.outbox) {
                    tracing::debug!(
                        from,
                        id = p.id,
                        "a reply to no request of this node was dropped"
                    );
                }
            }
            _ => self.refuse("a record of the wrong kind for its batch", bytes.len()),
        }
    }
}
