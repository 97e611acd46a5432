//! What other threads ask of the peer thread: the [`Command`]s of its
//! channel, and [`PoolAsker`], through which the admin containers and the
//! workers send them (pool asks and destructions, remote tasks, the end
//! of tasks of other nodes), ringing its doorbell; the
//! control loop's status requests and their [`NodeStatusError`].

use std::sync::mpsc::{Receiver, Sender, SyncSender, sync_channel};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::cluster::doorbell::Doorbell;
use crate::cluster::pools::{Outgoing, PoolAnswer, PoolAsk};
use crate::remote::inflight::RemoteError;
use crate::remote::record::Request;

/// Why another node's status could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeStatusError {
    /// No such node in the hostfile.
    #[error("node {node} is not in the cluster (nodes 1 to {nodes} of the hostfile)")]
    NoSuchNode {
        /// The node asked for.
        node: u32,
        /// Nodes in the hostfile.
        nodes: u32,
    },
    /// The node is down.
    #[error(
        "node {node} is down: no heartbeat from it for {silent_ms} ms; start its runtime, or ask another node"
    )]
    Down {
        /// The node.
        node: u32,
        /// Milliseconds since it was last heard from.
        silent_ms: u64,
    },
    /// The node was never heard from.
    #[error(
        "node {node} has not been heard from since this runtime started: is its runtime running, with the same hostfile and cluster.port?"
    )]
    NeverHeard {
        /// The node.
        node: u32,
    },
    /// No answer in time.
    #[error("node {node} did not answer within {timeout:?}")]
    Timeout {
        /// The node.
        node: u32,
        /// How long this runtime waited.
        timeout: Duration,
    },
    /// The answer was not a status report.
    #[error("node {node} sent a malformed status report: {why}")]
    Malformed {
        /// The node.
        node: u32,
        /// What is wrong.
        why: String,
    },
    /// This runtime's peer thread is gone (it is stopping).
    #[error("this runtime is stopping; its peer link is closed")]
    Stopped,
}

/// The answer to a status request: the peer's report as JSON bytes.
pub type StatusAnswer = Result<Vec<u8>, NodeStatusError>;

pub(super) enum Command {
    Status {
        node: u32,
        timeout: Duration,
        reply: SyncSender<StatusAnswer>,
    },
    Pool {
        ask: PoolAsk,
        reply: SyncSender<PoolAnswer>,
    },
    Destroy {
        id: u64,
        reply: SyncSender<PoolAnswer>,
    },
    Task {
        node: u32,
        request: Request,
        back: Outgoing,
    },
    /// A task of another node that ran here completed (its address).
    Served(usize),
    /// Tasks a worker could not send: to complete with their errors.
    Failed(Vec<(Outgoing, RemoteError)>),
}

/// Why a hand-over to a stopping peer thread fails.
pub(super) const STOPPING: &str = "this runtime is stopping; its peer link is closed";

/// Hands the peer thread work: pools over the cluster, remote tasks, the
/// end of tasks of other nodes run here. Each hand-over rings its doorbell.
///
/// The channel has a gate: a hand-over holds it for reading while it
/// queues its command, and the stopping peer thread closes it (holding it
/// for writing) before it takes the commands queued last. So every command either
/// fails at its sender or is taken by the peer thread; none is lost in
/// the channel (a broadcast's replica lost so never gathered).
#[derive(Debug, Clone)]
pub struct PoolAsker {
    pub(super) commands: Sender<Command>,
    pub(super) bell: Arc<Doorbell>,
    /// Open while the peer thread takes commands.
    pub(super) open: Arc<RwLock<bool>>,
}

impl PoolAsker {
    pub(super) fn hand(&self, c: Command) -> Result<(), String> {
        {
            let open = self.open.read().unwrap_or_else(|e| e.into_inner());
            if !*open {
                return Err(STOPPING.to_owned());
            }
            self.commands.send(c).map_err(|_| STOPPING.to_owned())?;
        }
        self.bell.ring();
        Ok(())
    }

    /// Hands `ask` to the peer thread; the answer arrives on the returned
    /// receiver (within `cluster.task_timeout`, or as an error when the
    /// runtime stops).
    pub fn ask(&self, ask: PoolAsk) -> Result<Receiver<PoolAnswer>, String> {
        let (reply, answer) = sync_channel(1);
        self.hand(Command::Pool { ask, reply })?;
        Ok(answer)
    }

    /// Hands the destruction of pool `id` over the cluster to the peer
    /// thread; the answer (the pool's spec, or why not) arrives on the
    /// returned receiver, as for [`ask`](Self::ask).
    pub fn destroy(&self, id: u64) -> Result<Receiver<PoolAnswer>, String> {
        let (reply, answer) = sync_channel(1);
        self.hand(Command::Destroy { id, reply })?;
        Ok(answer)
    }

    /// Hands the remote task `request` for node `node` to the peer thread,
    /// which gives it its id, batches it and completes `back` through the
    /// host's [`PoolHost::complete`](crate::cluster::pools::PoolHost::complete) with the reply, or with an error
    /// naming the node (down, or silent past `cluster.task_timeout`).
    pub fn send_task(&self, node: u32, request: Request, back: Outgoing) -> Result<(), String> {
        self.hand(Command::Task {
            node,
            request,
            back,
        })
    }

    /// Hands the peer thread tasks a worker could not send, to complete
    /// with their errors ([`crate::cluster::wire::WireBatch::flush`], which
    /// calls it while it holds the wire open: the stopping peer thread
    /// closes the wire, which waits for that, before it closes this
    /// channel, so the hand-over is always taken).
    pub fn failed(&self, tasks: Vec<(Outgoing, RemoteError)>) {
        // Refused only by a peer thread that vanished (tests of a crash).
        let _ = self.hand(Command::Failed(tasks));
    }

    /// Tells the peer thread that the task at `task`, one of another node's
    /// that this node's host runs ([`PoolHost::run`](crate::cluster::pools::PoolHost::run)),
    /// completed: its reply leaves at once
    /// ([`PoolHost::finished`](crate::cluster::pools::PoolHost::finished)).
    pub fn served(&self, task: usize) {
        // Refused once the peer thread stopped: the reply is not sent (the
        // sender's task fails with this node's goodbye) and the task's block
        // stays until the runtime's segments go, moments later.
        let _ = self.hand(Command::Served(task));
    }
}
