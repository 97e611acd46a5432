//! Remote tasks: what a runtime sends a peer about a task whose container
//! lives on that peer, and how a task turns into those bytes and back.
//!
//! # A task's journey between two nodes
//!
//! A task whose domain query resolves ([`crate::placement`]) to a container
//! on another node is a subtask of the runtime: the worker saves its inputs
//! with the module's `save_in` ([`codec::save`]) into a [`record::Request`]
//! and sends it itself, batched with the other records it has for that
//! node ([`crate::cluster::wire`]). The peer decodes the request, loads the inputs
//! into a fresh task of its main segment ([`codec::load_in`]), runs it like
//! any subtask, and sends back a [`record::Reply`] with the result code, the
//! error message and the outputs (`save_out`). The sender loads the outputs
//! into the waiting task ([`codec::load_out`]) and completes it: the client
//! waits on a remote task exactly as on a local one.
//!
//! * [`record`]: the request and reply records, their byte layout, and a
//!   decoder for untrusted input;
//! * [`codec`]: the module hooks that turn a task into a record's body and
//!   back;
//! * [`inflight`]: the tasks sent out and waited on, by request id, failed
//!   with an error naming their node when it goes down or past
//!   `cluster.task_timeout`;
//! * [`bcast`]: a broadcast's replicas, and how their outputs combine.
//!
//! The worker sends a task out (`worker/remote.rs`) after entering it in
//! the [`inflight`] table it shares with the peer thread, as a [`Sent`];
//! the node state's host (`remote_host.rs`), on whichever thread takes the
//! frame (a worker polling after remote work, else the peer thread:
//! `cluster/intake.rs`), runs the requests of other nodes (entering them in
//! the [`serving`] table, where the worker that completes one finds it and
//! replies) and completes what was sent when its reply comes (its error:
//! on the peer thread, which owns the timeouts).

use std::sync::Arc;

use crate::pool::Container;
pub use bcast::Bcast;

pub mod bcast;
pub mod codec;
pub mod inflight;
pub mod record;
pub mod serving;

/// What the sending node keeps of a task it sent out: the task, its
/// generation when sent (a task the client freed meanwhile is not written),
/// and a container of its pool here, whose module loads the reply.
#[derive(Debug)]
pub struct Sent {
    /// The task's header, as an address in the main segment.
    pub task: usize,
    /// Its generation when sent.
    pub generation: u32,
    /// A container of the task's pool on this node.
    pub container: Arc<Container>,
    /// Of a broadcast: what its replicas share (the task completes with the
    /// last reply), and which replica this is (in container order).
    pub bcast: Option<(Arc<Bcast>, usize)>,
}
