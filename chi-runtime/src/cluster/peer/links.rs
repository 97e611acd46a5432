//! The peer thread's care of its links: a link whose frames cannot leave
//! is replaced. Methods of [`PeerLoop`] (another `impl` block).
//!
//! # Design
//!
//! libzmq gives up on a connection whose handshake the other side refused
//! (it read another cluster key: a node started with the wrong key file,
//! since fixed and restarted), and never connects it again. With
//! `ZMQ_IMMEDIATE` a send on such a link fails at once (no connection to
//! queue on), which the peer thread sees when it answers a `Hello`: a node
//! says hello until it hears this one. So after [`UNANSWERED_BEFORE_RENEWAL`]
//! hellos in a row whose answer could not be sent, the peer's link is
//! renewed ([`Wire::renew_link`](crate::cluster::wire::Wire::renew_link));
//! so is the link of a peer not up for a whole `cluster.peer_timeout` since
//! the link was made or last renewed (both directions refused). A link is
//! renewed at most once per half `cluster.peer_timeout`. Nothing queued is
//! lost: a link that cannot send holds nothing. The peer's ROUTER hands the
//! routing id over to the new connection (`ZMQ_ROUTER_HANDOVER`), so an old
//! connection it still holds does not shadow the new one.

use std::time::{Duration, Instant};

use super::PeerLoop;
use crate::cluster::membership::PeerState;
use crate::ratelimit::RateLimit;

/// Hellos in a row whose answer could not be sent, after which the link to
/// their sender is renewed (a link still connecting after the peer
/// restarted answers within one or two).
pub(super) const UNANSWERED_BEFORE_RENEWAL: u32 = 3;

static RENEWED: RateLimit = RateLimit::new(Duration::from_secs(10));

impl PeerLoop {
    /// Node `from` said hello and this node's answer could not leave.
    pub(super) fn unanswered_hello(&mut self, from: u32) {
        let n = self.hellos.entry(from).or_default();
        *n += 1;
        if *n < UNANSWERED_BEFORE_RENEWAL {
            return;
        }
        let now = Instant::now();
        if !self.may_renew(from, now) {
            return;
        }
        self.hellos.remove(&from);
        if let Some(suppressed) = RENEWED.allow() {
            tracing::info!(
                node = from,
                suppressed,
                "node {from} cannot hear this node (its link refused or closed): renewing the link"
            );
        }
        self.renew_link(from, now);
    }

    /// Renews the links of the peers not up for `cluster.peer_timeout`
    /// since their link was made or last renewed (at each heartbeat: the
    /// timeout is coarse).
    pub(super) fn renew_silent_links(&mut self, now: Instant) {
        let timeout = self.membership.peer_timeout();
        let due: Vec<u32> = self
            .renewed
            .iter()
            .filter(|&(&n, &at)| {
                now.saturating_duration_since(at) >= timeout
                    && !matches!(self.membership.state_of(n), Some((PeerState::Up, _)))
            })
            .map(|(&n, _)| n)
            .collect();
        for n in due {
            tracing::debug!(node = n, "renewing the link to a peer not heard from");
            self.renew_link(n, now);
        }
    }

    /// Whether `node`'s link was made or renewed at least half a
    /// `cluster.peer_timeout` ago.
    fn may_renew(&self, node: u32, now: Instant) -> bool {
        let half = self.membership.peer_timeout() / 2;
        self.renewed
            .get(&node)
            .is_none_or(|&at| now.saturating_duration_since(at) >= half)
    }

    fn renew_link(&mut self, node: u32, now: Instant) {
        self.wire.renew_link(node);
        self.renewed.insert(node, now);
    }
}
