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
//! heartbeat is worth nothing late; the remote tasks of a batch that could
//! not be queued fail at once, naming the node, and those sent fail when
//! the membership sees their node down, or at their timeout).
//!
//! Its receive also wakes for the peer thread's [`Doorbell`], so the
//! thread sleeps in one wait for frames and for the work other threads
//! hand it.
//!
//! Sending is a separate, shared half ([`PeerSend`], from
//! [`PeerTransport::sender`]): the peer thread sends through it, and so do
//! the workers, which put the remote tasks they save and the replies of the
//! tasks they complete on the wire themselves, without handing them to the
//! peer thread first (`crate::cluster::wire`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::doorbell::Doorbell;

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

/// The sending half of a transport, shared by every thread that sends.
pub trait PeerSend: Send + Sync {
    /// Queues `frame` for node `to` without blocking.
    fn send(&self, to: u32, frame: &[u8]) -> Result<(), PeerError>;
    /// Replaces the link to node `to` with a fresh one (what is queued on
    /// it is dropped): the peer thread's remedy for a link whose frames do
    /// not arrive. Nothing to do for a backend without connections.
    fn reset(&self, to: u32) {
        let _ = to;
    }
}

/// Frames to and from the other nodes.
pub trait PeerTransport: Send {
    /// The sending half, for every thread that sends.
    fn sender(&self) -> Arc<dyn PeerSend>;
    /// The next frame received from an admitted peer; `None` after
    /// `timeout` without one (zero: only a frame already there), or as soon
    /// as the [`doorbell`](Self::doorbell)'s eventfd is readable (the
    /// caller drains it).
    fn recv(&mut self, timeout: Duration) -> Result<Option<Received>, PeerError>;
    /// The doorbell whose eventfd [`recv`](Self::recv) also waits for: the
    /// peer thread's ([`Doorbell`]).
    fn doorbell(&self) -> Arc<Doorbell>;
}

/// Frames a node's in-process endpoint may hold before sends to it fail.
const INPROC_DEPTH: usize = 1024;

/// An endpoint's queue and the doorbell its receiver sleeps on.
type Endpoint = (SyncSender<Vec<u8>>, Arc<Doorbell>);

/// An in-process network: endpoints by node id. A node is "down" while it has
/// no endpoint ([`InProcNet::detach`]); sends to it fail as unreachable. A
/// send queues the frame, then rings the receiver's doorbell.
#[derive(Debug, Clone, Default)]
pub struct InProcNet {
    nodes: Arc<Mutex<HashMap<u32, Endpoint>>>,
}

impl InProcNet {
    /// An empty network.
    pub fn new() -> InProcNet {
        InProcNet::default()
    }

    /// Attaches node `id` (replacing an earlier endpoint of it: a restart).
    pub fn attach(&self, id: u32) -> InProcPeer {
        let (tx, rx) = sync_channel(INPROC_DEPTH);
        let bell = Arc::new(Doorbell::new().expect("an eventfd for an in-process endpoint"));
        self.lock().insert(id, (tx, bell.clone()));
        InProcPeer {
            net: self.clone(),
            rx,
            bell,
        }
    }

    /// Detaches node `id`: frames to it fail from now on (a crash).
    pub fn detach(&self, id: u32) {
        self.lock().remove(&id);
    }

    /// Delivers raw bytes to node `to` as if a peer had sent them (tests feed
    /// garbage this way).
    pub fn inject(&self, to: u32, bytes: Vec<u8>) -> Result<(), PeerError> {
        let ep = self.lock().get(&to).cloned();
        match ep {
            Some((tx, bell)) => {
                tx.try_send(bytes)
                    .map_err(|_| PeerError::Unreachable { node: to })?;
                bell.ring();
                Ok(())
            }
            None => Err(PeerError::Unreachable { node: to }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Endpoint>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One node's endpoint of an [`InProcNet`].
#[derive(Debug)]
pub struct InProcPeer {
    net: InProcNet,
    rx: Receiver<Vec<u8>>,
    bell: Arc<Doorbell>,
}

impl PeerSend for InProcNet {
    fn send(&self, to: u32, frame: &[u8]) -> Result<(), PeerError> {
        self.inject(to, frame.to_vec())
    }
}

impl PeerTransport for InProcPeer {
    fn sender(&self) -> Arc<dyn PeerSend> {
        Arc::new(self.net.clone())
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Received>, PeerError> {
        if let Ok(bytes) = self.rx.try_recv() {
            return Ok(Some(Received { bytes, from: None }));
        }
        if timeout.is_zero() {
            return Ok(None);
        }
        // A frame rings the doorbell after it is queued (detached and
        // replaced: nothing comes any more, only the owner's own rings).
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        self.bell.wait_fd(ms);
        Ok(self
            .rx
            .try_recv()
            .ok()
            .map(|bytes| Received { bytes, from: None }))
    }

    fn doorbell(&self) -> Arc<Doorbell> {
        self.bell.clone()
    }
}

impl InProcPeer {
    /// The next frame if one is queued (tests).
    pub fn try_recv(&mut self) -> Option<Vec<u8>> {
        self.rx.try_recv().ok()
    }
}
