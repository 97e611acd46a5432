//! The wire: what the peer thread and the workers share so that a remote
//! task, and the reply of a task of another node, leave from the worker
//! that saved them, without a hand-over to the peer thread.
//!
//! # Design
//!
//! A remote round trip used to cross the peer thread twice more than the
//! network needs: the sending worker handed its request to the peer thread,
//! and the worker that ran a task of another node handed the completion to
//! the peer thread, which saved the reply. Each hand-over is a wake-up of a
//! sleeping thread, the dearest step of a round trip on a small machine.
//! Now:
//!
//! * a worker that sends a task out registers it in the shared in-flight
//!   table ([`Wire::register`]: its request id, its deadline) and queues the
//!   request in its own [`WireBatch`];
//! * a worker that completes a task of another node saves the reply and
//!   queues it in its [`WireBatch`] the same way;
//! * a worker sends its batch ([`WireBatch::flush`]) when it has nothing
//!   else to do right now, when the batch is full, or when its oldest
//!   record has waited [`WireBatch::MAX_AGE`]: one frame per node and
//!   kind, so pipelined tasks still share frames;
//! * a worker that sent records polls three times `idle.busy_poll` before
//!   it sleeps, looking at the peer socket as it does
//!   ([`super::intake`]): the reply, or the next task of the client that
//!   waited on one, comes about a round trip later and finds it awake (a
//!   wake-up of a sleeping thread is the dearest step of a remote round
//!   trip here).
//!
//! The frames go out through the transport's shared sending half
//! ([`PeerSend`]); for ZeroMQ, the same DEALER per peer as the peer
//! thread's, so frames to a peer keep their order whoever sends them. The
//! frames received go to the peer thread, or, while a worker polls after
//! remote work, to that worker ([`super::intake`]), which runs the tasks
//! and completes those whose replies came; the peer thread fails the
//! tasks past their time or on a node gone down (it owns the timing, the
//! workers only insert and take), and sends what concerns this node itself
//! (a broadcast's replica of a local container).
//!
//! When the peer thread stops it closes the wire ([`Wire::close`]) before
//! it says goodbye to its peers: what waits fails, a worker that registers
//! afterwards is told the runtime stops, so no task waits on a table nobody
//! watches, and no worker frame leaves any more (a frame after the goodbye
//! would bring this node back up on its peers). A worker sends its batch
//! holding the wire's gate for reading; closing takes it for writing, so a
//! batch is either wholly sent before the close or not at all.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use super::frame::{Frame, Kind};
use super::membership::{Membership, PeerState};
use super::outbox::Outbox;
use super::pools::Outgoing;
use super::transport::{PeerError, PeerSend};
use crate::ratelimit::RateLimit;
use crate::remote::inflight::{InFlight, RemoteError, first_id};
use crate::remote::record::{Record, Reply, Request};

/// Replies that could not be sent (their senders' tasks time out).
static REPLIES_DROPPED: RateLimit = RateLimit::new(Duration::from_secs(10));

/// The tasks this node sent and waits on, and whether anyone still watches.
#[derive(Debug)]
pub struct Table {
    /// By request id.
    pub tasks: InFlight<Outgoing>,
    closed: bool,
}

/// What the peer thread and the workers share (see the module doc).
pub struct Wire {
    membership: Arc<Membership>,
    sender: Arc<dyn PeerSend>,
    table: Mutex<Table>,
    /// Whether workers may still send (see the module doc); taken before
    /// the table where both are.
    open: RwLock<bool>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire")
            .field("me", &self.membership.me())
            .finish()
    }
}

impl Wire {
    /// The wire of `membership`'s node over `sender`; remote tasks fail
    /// after `task_timeout` without a reply.
    pub fn new(
        membership: Arc<Membership>,
        sender: Arc<dyn PeerSend>,
        task_timeout: Duration,
    ) -> Wire {
        let first = first_id(membership.incarnation());
        Wire {
            membership,
            sender,
            table: Mutex::new(Table {
                tasks: InFlight::new(task_timeout, first),
                closed: false,
            }),
            open: RwLock::new(true),
        }
    }

    /// This node's id.
    pub fn me(&self) -> u32 {
        self.membership.me()
    }

    /// The membership table.
    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// The in-flight table, locked (the peer thread's side).
    pub fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `back`, a task sent to `node` now: its request id. Fails
    /// (giving `back` back with why) if `node` is not up or the peer thread
    /// has stopped.
    pub fn register(&self, node: u32, back: Outgoing) -> Result<u64, (Outgoing, RemoteError)> {
        let run = match self.admits(node) {
            Ok(run) => run,
            Err(e) => return Err((back, e)),
        };
        let mut t = self.table();
        if t.closed {
            return Err((back, RemoteError::Stopping));
        }
        Ok(t.tasks.insert(node, run, back, Instant::now()))
    }

    /// Registers the replicas of a broadcast, `(node, replica)` each, all
    /// at once: the request id of each replica to send, `None` for one
    /// whose node is not up (registered as failed: the peer thread gives it
    /// back with its error at its next look, so the broadcast gathers
    /// it); or, if the peer thread has stopped, none at all.
    pub fn register_replicas(
        &self,
        replicas: Vec<(u32, Outgoing)>,
    ) -> Result<Vec<Option<u64>>, RemoteError> {
        let admitted: Vec<Result<u64, RemoteError>> =
            replicas.iter().map(|(n, _)| self.admits(*n)).collect();
        let mut t = self.table();
        if t.closed {
            return Err(RemoteError::Stopping);
        }
        let now = Instant::now();
        Ok(replicas
            .into_iter()
            .zip(admitted)
            .map(|((node, back), ok)| match ok {
                Ok(run) => Some(t.tasks.insert(node, run, back, now)),
                Err(e) => {
                    t.tasks.insert_failed(node, back, e, now);
                    None
                }
            })
            .collect())
    }

    /// Whether a task may be sent to `node` now: the run it is up as.
    /// (A task registered for a run is failed when that run goes down,
    /// not when the next one comes up: `InFlight::run_down`.)
    pub fn admits(&self, node: u32) -> Result<u64, RemoteError> {
        match self.membership.up_as(node) {
            Ok(run) => Ok(run),
            Err(Some(PeerState::Unknown)) => Err(RemoteError::NotHeard { node }),
            Err(_) => Err(RemoteError::NodeDown { node }),
        }
    }

    /// Fails every waiting task, refuses new ones and stops the workers'
    /// frames (the peer thread stops; it may still send its own): what it
    /// returns is for the caller to complete. Waits for a batch being sent.
    pub fn close(&self) -> Vec<(Outgoing, RemoteError)> {
        *self.open.write().unwrap_or_else(|e| e.into_inner()) = false;
        let mut t = self.table();
        t.closed = true;
        t.tasks.drain()
    }

    /// Replaces the link to node `to` with a fresh one
    /// ([`PeerSend::reset`]).
    pub fn renew_link(&self, to: u32) {
        self.sender.reset(to);
    }

    /// Frames `payload` as `kind` from this node and sends it to `to`,
    /// counting it in the traffic counters.
    pub fn send(&self, to: u32, kind: Kind, payload: &[u8]) -> Result<(), PeerError> {
        let bytes = Frame {
            kind,
            sender: self.membership.me(),
            incarnation: self.membership.incarnation(),
            payload,
        }
        .encode()
        .ok_or(PeerError::TooLarge {
            size: payload.len(),
            limit: super::frame::MAX_PAYLOAD,
        })?;
        self.sender.send(to, &bytes)?;
        // A batch payload starts with its record count.
        let records = match kind {
            Kind::TaskBatch | Kind::ReplyBatch => payload
                .get(..4)
                .map_or(0, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize),
            _ => 0,
        };
        self.membership.traffic().sent(kind, bytes.len(), records);
        Ok(())
    }
}

/// A worker's records not yet sent (see the module doc).
#[derive(Debug, Default)]
pub struct WireBatch {
    outbox: Outbox,
    records: usize,
    since: Option<Instant>,
    /// Something was sent since the worker last slept.
    sent: bool,
    /// The worker's last look at the peer socket while busy, if it has not
    /// been idle since ([`Self::busy_look_gap`]).
    busy_looked: Option<Instant>,
}

impl WireBatch {
    /// Records past which the batch is sent at once.
    pub const FULL: usize = 32;
    /// Longest a record waits in a busy worker's batch, as checked between
    /// the worker's loop turns (a long step of a handler holds it longer).
    pub const MAX_AGE: Duration = Duration::from_micros(50);

    /// Nothing queued.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Whether a busy worker should send now: full, or its oldest record
    /// waited [`Self::MAX_AGE`] (reads the clock only when something
    /// waits).
    #[inline]
    pub fn due(&self) -> bool {
        self.records != 0
            && (self.records >= Self::FULL
                || self.since.is_some_and(|t| t.elapsed() >= Self::MAX_AGE))
    }

    fn queued(&mut self) {
        if self.records == 0 {
            self.since = Some(Instant::now());
        }
        self.records += 1;
    }

    /// How many times `idle.busy_poll` a worker polls when it sent records
    /// since it last slept: the reply, or the next task of a client that
    /// waited on one, comes about a round trip later (here 100–200 µs), and
    /// a worker still polling takes it without the wake-up of a sleeper.
    pub const BUSY_FACTOR: u32 = 3;

    /// The busy period of an idle worker whose configured one is `busy`:
    /// [`Self::BUSY_FACTOR`] times longer if it sent records since it last
    /// slept.
    #[inline]
    pub fn busy_period(&self, busy: Duration) -> Duration {
        if self.sent {
            busy * Self::BUSY_FACTOR
        } else {
            busy
        }
    }

    /// Whether the worker sent something since it last slept (it is in its
    /// longer busy window, and reads the peer socket: [`super::intake`]).
    #[inline]
    pub fn sent_since_sleep(&self) -> bool {
        self.sent
    }

    /// The worker goes to sleep.
    #[inline]
    pub fn slept(&mut self) {
        self.sent = false;
        self.busy_looked = None;
    }

    /// A busy worker looks at the peer socket at `now`: the time since its
    /// previous look while busy, unless it was idle since.
    pub fn busy_look_gap(&mut self, now: Instant) -> Option<Duration> {
        self.busy_looked
            .replace(now)
            .map(|t| now.saturating_duration_since(t))
    }

    /// The worker looked at the peer socket while idle.
    #[inline]
    pub fn idle_looked(&mut self) {
        self.busy_looked = None;
    }

    /// Queues request `r` (registered: its id is set) for node `to`.
    pub fn request(&mut self, to: u32, r: &Request) {
        self.outbox.request(to, r);
        self.queued();
    }

    /// Queues reply `r` for node `to`.
    pub fn reply(&mut self, to: u32, r: &Reply) {
        self.outbox.reply(to, r);
        self.queued();
    }

    /// Sends what is queued, unless the wire is closed (then it is
    /// dropped: its requests were failed by the close). The tasks whose
    /// requests could not be sent (taken out of the in-flight table), each
    /// with its error, go to `failed` for the caller to complete, called
    /// while the wire is still held open: a close waits for it, so what
    /// `failed` hands the peer thread is taken before it stops (see
    /// [`crate::cluster::peer::PoolAsker`]). A reply that cannot be sent is
    /// dropped with a log line (its sender's task times out).
    pub fn flush(&mut self, wire: &Wire, failed: impl FnOnce(Vec<(Outgoing, RemoteError)>)) {
        self.sent |= self.records != 0;
        self.records = 0;
        self.since = None;
        let batches = self.outbox.drain();
        // Held across the sends (see the module doc).
        let open = wire.open.read().unwrap_or_else(|e| e.into_inner());
        if !*open {
            return;
        }
        let mut lost = Vec::new();
        for (to, kind, payload) in batches {
            let Err(e) = wire.send(to, kind, &payload) else {
                continue;
            };
            if kind != Kind::TaskBatch {
                if let Some(suppressed) = REPLIES_DROPPED.allow() {
                    tracing::warn!(
                        to,
                        error = %e,
                        suppressed,
                        "replies to node {to} could not be sent; its tasks will time out there"
                    );
                }
                continue;
            }
            tracing::debug!(to, error = %e, "a batch of tasks was not sent");
            // Only the requests of this frame (a large batch is split).
            let mut t = wire.table();
            for id in request_ids(&payload) {
                if let Some(back) = t.tasks.take(id, to) {
                    lost.push((back, RemoteError::Unreachable { node: to }));
                }
            }
        }
        if !lost.is_empty() {
            failed(lost);
        }
        drop(open);
    }
}

/// The request ids of a TaskBatch payload this node encoded (cold: only for
/// a frame that could not be sent).
#[cold]
fn request_ids(payload: &[u8]) -> Vec<u64> {
    super::frame::decode_batch(Kind::TaskBatch, payload)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| match Record::decode(r) {
            Ok(Record::Request(q)) => Some(q.id),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
