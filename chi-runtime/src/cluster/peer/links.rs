//! The peer thread's care of its links: a link whose frames do not arrive
//! is replaced. Methods of [`PeerLoop`] (another `impl` block).
//!
//! # Design
//!
//! libzmq gives up on a connection whose handshake the other side refused
//! (it read another cluster key: a node started with the wrong key file,
//! since fixed and restarted), and the peer thread cannot see that in the
//! socket. It sees it in the protocol: a node that does not hear this one
//! keeps sending `Hello` instead of `Heartbeat`. So a peer up here that
//! says hello [`HELLOS_BEFORE_RENEWAL`] times without a heartbeat between
//! gets a fresh link ([`Wire::renew_link`](crate::cluster::wire::Wire::renew_link)),
//! and so does a peer not up for a whole `cluster.peer_timeout` since its
//! link was made or last renewed (both directions refused). What was queued
//! on the old link is dropped, which costs nothing here: it was not
//! arriving.

use std::time::Instant;

use super::PeerLoop;
use crate::cluster::membership::PeerState;

/// Hellos from a peer that is up, with no heartbeat between, after which
/// its link is renewed (a restarted peer says hello once or twice before it
/// hears this node).
pub(super) const HELLOS_BEFORE_RENEWAL: u32 = 3;

impl PeerLoop {
    /// Node `from`, up here, said hello: it does not hear this node yet.
    pub(super) fn hello_while_up(&mut self, from: u32) {
        let n = self.hellos.entry(from).or_default();
        *n += 1;
        if *n >= HELLOS_BEFORE_RENEWAL {
            *n = 0;
            tracing::info!(
                node = from,
                "node {from} does not hear this node (it keeps saying hello): renewing the link to it"
            );
            self.renew_link(from, Instant::now());
        }
    }

    /// Renews the links of the peers not up for `cluster.peer_timeout`
    /// since their link was made or last renewed (part of the coarse
    /// checks).
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

    fn renew_link(&mut self, node: u32, now: Instant) {
        self.wire.renew_link(node);
        self.renewed.insert(node, now);
    }
}
