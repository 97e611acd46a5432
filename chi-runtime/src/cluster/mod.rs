//! The cluster: membership, the peer transport, heartbeats and failures.
//!
//! # Design
//!
//! The hostfile is the membership list. A runtime binds the first entry it
//! can (or the one `cluster.node` names); its offset + 1 is its node id
//! ([`crate::runtime`] does the binding). With more than one host, it also
//! starts a peer link:
//!
//! * [`frame`]: the one versioned binary frame runtimes send each other
//!   (magic, version, kind, sender node id, sender incarnation, payload
//!   length, payload), with a decoder that treats every byte as untrusted;
//! * [`transport`]: the [`transport::PeerTransport`] trait, with an
//!   in-process backend for unit tests, and [`zmq_peer`]: the real one, a
//!   ZeroMQ ROUTER bound on this node's hostfile address at `cluster.port`
//!   and a DEALER per peer, which admits only frames from hostfile
//!   addresses;
//! * [`membership`]: what this runtime believes of each node (unknown, up,
//!   down), with incarnations and the time of the last frame, and the
//!   [`membership::PeerEvent`]s ("node N went down", "node N came back as a
//!   new incarnation") that later code subscribes to;
//! * [`peer`]: the thread that sends heartbeats, marks silent peers down,
//!   fetches another node's status for `chi-runtime status --node N`, and
//!   carries the batches of request and reply records ([`outbox`]); the
//!   workers send their own ([`wire`]) and, while they poll after remote
//!   work, take those received ([`intake`]);
//! * [`pools`]: pools over the cluster: the authority (lowest node id up)
//!   picks a pool's id and placement and every node creates its share.
//!
//! # Trust
//!
//! Only the hostfile's addresses may send frames, each only as the node of
//! its address, and every frame is untrusted input: a malformed, truncated, oversized or wrong-version frame
//! is refused with a log line (rate-limited) and counted
//! (`peer_frames_refused` in `status`); it never stops or corrupts the
//! runtime. Only connections presenting the cluster key get a frame in
//! ([`zmq_peer`], `cluster.key_file`); frames then create pools over the
//! cluster and run tasks on their containers (never on the admin pool or a
//! node's own pools): whoever holds the key is trusted as a node (see the
//! README's "Trust model").
//!
//! # Remote records
//!
//! The batch kinds ([`frame::Kind::TaskBatch`], [`frame::Kind::ReplyBatch`])
//! carry pool agreement's control records and remote tasks (run and
//! completed by the node state's host, `crate::remote_host`), broadcasts
//! included.

pub mod doorbell;
pub mod frame;
pub mod hosts;
pub mod intake;
pub mod key;
pub mod membership;
pub mod outbox;
pub mod peer;
pub mod pools;
pub mod traffic;
pub mod transport;
pub mod wire;
pub mod zmq_peer;

#[cfg(test)]
mod tests;
