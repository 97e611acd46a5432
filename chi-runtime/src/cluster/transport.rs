//! The peer transport: frames between this runtime and the other nodes.
//!
//! Behind the [`PeerTransport`] trait so that the membership and heartbeat
//! logic ([`super::peer`]) runs the same over the real backend,
//! [`super::zmq_peer::ZmqPeers`] (ZeroMQ ROUTER/DEALER over TCP), and over
//! [`InProcNet`], an in-process backend for fast unit tests without sockets.
//!
//! A transport moves opaque bytes: it neither decodes nor trusts them
//! ([`super::frame`] does). It never blocks a sender: a frame for a node that
//! is unreachable, or whose queue is full, is dropped with an error (a
//! heartbeat is worth nothing late; remote tasks will learn of failures from
//! the membership, not from the transport).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a frame was not sent or received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// No such node in the cluster.
    #[error("node {node} is not in the cluster")]
    NoSuchNode {
        /// The node.
        node: u32,
    },
    /// The node cannot take the frame now (not connected, or its queue is
    /// full); the frame was dropped.
    #[error("node {node} is unreachable now; the frame was dropped")]
    Unreachable {
        /// The node.
        node: u32,
    },
    /// The frame is larger than the transport carries.
    #[error("a frame of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The socket layer failed.
    #[error("peer socket: {0}")]
    Socket(String),
}

/// A frame as received: its bytes, and the address it came from when the
/// backend knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The frame's bytes (not yet decoded).
    pub bytes: Vec<u8>,
    /// The sender's IP address (`None` for the in-process backend).
    pub from: Option<IpAddr>,
}

/// Frames to and from the other nodes.
pub trait PeerTransport: Send {
    /// Queues `frame` for node `to` without blocking.
    fn send(&mut self, to: u32, frame: &[u8]) -> Result<(), PeerError>;
    /// The next frame received from an admitted peer, or `None` after
    /// `timeout` without one.
    fn recv(&mut self, timeout: Duration) -> Result<Option<Received>, PeerError>;
}

/// Frames a node's in-process endpoint may hold before sends to it fail.
const INPROC_DEPTH: usize = 1024;

/// An in-process network: endpoints by node id. A node is "down" while it has
/// no endpoint ([`InProcNet::detach`]); sends to it fail as unreachable.
#[derive(Debug, Clone, Default)]
pub struct InProcNet {
    nodes: Arc<Mutex<HashMap<u32, SyncSender<Vec<u8>>>>>,
}

impl InProcNet {
    /// An empty network.
    pub fn new() -> InProcNet {
        InProcNet::default()
    }

    /// Attaches node `id` (replacing an earlier endpoint of it: a restart).
    pub fn attach(&self, id: u32) -> InProcPeer {
        let (tx, rx) = sync_channel(INPROC_DEPTH);
        self.lock().insert(id, tx);
        InProcPeer {
            net: self.clone(),
            rx,
        }
    }

    /// Detaches node `id`: frames to it fail from now on (a crash).
    pub fn detach(&self, id: u32) {
        self.lock().remove(&id);
    }

    /// Delivers raw bytes to node `to` as if a peer had sent them (tests feed
    /// garbage this way).
    pub fn inject(&self, to: u32, bytes: Vec<u8>) -> Result<(), PeerError> {
        let tx = self.lock().get(&to).cloned();
        match tx {
            Some(tx) => tx
                .try_send(bytes)
                .map_err(|_| PeerError::Unreachable { node: to }),
            None => Err(PeerError::Unreachable { node: to }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, SyncSender<Vec<u8>>>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One node's endpoint of an [`InProcNet`].
#[derive(Debug)]
pub struct InProcPeer {
    net: InProcNet,
    rx: Receiver<Vec<u8>>,
}

impl PeerTransport for InProcPeer {
    fn send(&mut self, to: u32, frame: &[u8]) -> Result<(), PeerError> {
        self.net.inject(to, frame.to_vec())
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Received>, PeerError> {
        match self.rx.recv_timeout(timeout) {
            Ok(bytes) => Ok(Some(Received { bytes, from: None })),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            // Detached and replaced: nothing will come to this endpoint again.
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(timeout);
                Ok(None)
            }
        }
    }
}

impl InProcPeer {
    /// The next frame if one is queued (tests).
    pub fn try_recv(&mut self) -> Option<Vec<u8>> {
        self.rx.try_recv().ok()
    }
}
