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
//!   it sleeps: the reply, or the next task of the client that waited on
//!   one, comes about a round trip later and finds it awake (a wake-up of a
//!   sleeping worker is the dearest step of a remote round trip here).
//!
//! The frames go out through the transport's shared sending half
//! ([`PeerSend`]); for ZeroMQ, the same DEALER per peer as the peer
//! thread's, so frames to a peer keep their order whoever sends them. The
//! peer thread still receives every frame, completes the tasks whose
//! replies come, fails those past their time or on a node gone down (it
//! owns the timing, the workers only insert), and sends what concerns this
//! node itself (a broadcast's replica of a local container).
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
use crate::remote::inflight::{InFlight, RemoteError};
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
        Wire {
            membership,
            sender,
            table: Mutex::new(Table {
                tasks: InFlight::new(task_timeout),
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
        if let Err(e) = self.admits(node) {
            return Err((back, e));
        }
        let mut t = self.table();
        if t.closed {
            return Err((back, RemoteError::Stopping));
        }
        Ok(t.tasks.insert(node, back, Instant::now()))
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
        let admitted: Vec<Result<(), RemoteError>> =
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
                Ok(()) => Some(t.tasks.insert(node, back, now)),
                Err(e) => {
                    t.tasks.insert_failed(node, back, e, now);
                    None
                }
            })
            .collect())
    }

    /// Whether a task may be sent to `node` now: it is up.
    fn admits(&self, node: u32) -> Result<(), RemoteError> {
        match self.membership.state_of(node) {
            Some((PeerState::Up, _)) => Ok(()),
            Some((PeerState::Unknown, _)) => Err(RemoteError::NotHeard { node }),
            _ => Err(RemoteError::NodeDown { node }),
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

    /// The worker goes to sleep.
    #[inline]
    pub fn slept(&mut self) {
        self.sent = false;
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
mod tests {
    use std::net::IpAddr;

    use chi_sdk::types::{ContainerId, PoolId};

    use super::*;
    use crate::cluster::frame::decode_batch;
    use crate::cluster::transport::{InProcNet, InProcPeer, PeerTransport};
    use crate::remote::record::Record;

    /// Node 1's wire on an in-process network of nodes 1 to 3, with the
    /// endpoints of nodes 2 and 3; `up` are the peers node 1 has heard.
    fn wire(up: &[u32]) -> (Wire, InProcNet, InProcPeer, InProcPeer) {
        let hosts: Vec<(String, IpAddr)> = (1..=3)
            .map(|i| (format!("n{i}"), format!("127.0.0.{i}").parse().unwrap()))
            .collect();
        let m = Arc::new(Membership::new(1, 7, &hosts, Duration::from_secs(5)));
        for &n in up {
            assert!(m.heard(n, 1, Instant::now()));
        }
        let net = InProcNet::new();
        let one = net.attach(1);
        let (two, three) = (net.attach(2), net.attach(3));
        let w = Wire::new(m, one.sender(), Duration::from_secs(5));
        (w, net, two, three)
    }

    /// What a flush of `b` failed.
    fn flushed(b: &mut WireBatch, w: &Wire) -> Vec<(Outgoing, RemoteError)> {
        let mut failed = Vec::new();
        b.flush(w, |f| failed = f);
        failed
    }

    fn req(id: u64) -> Request {
        Request {
            id,
            pool: PoolId(9),
            container: ContainerId(1),
            method: 10,
            flags: 0,
            body: vec![id as u8; 3],
        }
    }

    /// Registers a task for `node` (its value: `tag`) and queues its request.
    fn queue(w: &Wire, b: &mut WireBatch, node: u32, tag: u32) -> u64 {
        let id = w.register(node, Box::new(tag)).map_err(|(_, e)| e).unwrap();
        b.request(node, &req(id));
        id
    }

    /// The records of one frame from node 1: its kind and records.
    fn records(bytes: &[u8]) -> (Kind, Vec<Record>) {
        let f = Frame::decode(bytes).unwrap();
        assert_eq!((f.sender, f.incarnation), (1, 7));
        let rs = decode_batch(f.kind, f.payload).unwrap();
        (
            f.kind,
            rs.iter().map(|r| Record::decode(r).unwrap()).collect(),
        )
    }

    #[test]
    fn a_workers_records_leave_in_one_frame_per_node_and_kind() {
        let (w, _net, mut two, mut three) = wire(&[2, 3]);
        let mut b = WireBatch::default();
        let ids: Vec<u64> = (0..3).map(|t| queue(&w, &mut b, 2, t)).collect();
        let other = queue(&w, &mut b, 3, 9);
        let reply = Reply {
            id: 77,
            result: 0,
            message: String::new(),
            body: vec![1],
        };
        b.reply(2, &reply);
        assert!(!b.is_empty());
        assert!(flushed(&mut b, &w).is_empty());
        assert!(b.is_empty() && !b.due());
        let busy = Duration::from_micros(100);
        assert_eq!(b.busy_period(busy), busy * WireBatch::BUSY_FACTOR);
        b.slept();
        assert_eq!(b.busy_period(busy), busy);
        let (kind, rs) = records(&two.try_recv().unwrap());
        assert_eq!(kind, Kind::TaskBatch);
        assert_eq!(
            rs,
            ids.iter()
                .map(|&i| Record::Request(req(i)))
                .collect::<Vec<_>>()
        );
        let (kind, rs) = records(&two.try_recv().unwrap());
        assert_eq!((kind, rs), (Kind::ReplyBatch, vec![Record::Reply(reply)]));
        assert!(two.try_recv().is_none());
        let (kind, rs) = records(&three.try_recv().unwrap());
        assert_eq!(
            (kind, rs),
            (Kind::TaskBatch, vec![Record::Request(req(other))])
        );
        // The tasks wait in the shared table until their replies come.
        let mut t = w.table();
        assert_eq!(t.tasks.len(), 4);
        let back = t.tasks.take(other, 3).unwrap();
        assert_eq!(*back.downcast::<u32>().unwrap(), 9);
        drop(t);
        let traffic = w.membership().traffic().snapshot();
        assert_eq!((traffic.tasks_out, traffic.replies_out), (4, 1));
        assert_eq!(traffic.batches_out, 3);
    }

    #[test]
    fn a_batch_is_due_when_full_or_old() {
        let (w, _net, _two, _three) = wire(&[2]);
        let mut b = WireBatch::default();
        assert!(!b.due());
        queue(&w, &mut b, 2, 0);
        std::thread::sleep(WireBatch::MAX_AGE * 20);
        assert!(b.due(), "a record older than MAX_AGE");
        flushed(&mut b, &w);
        for t in 0..WireBatch::FULL as u32 {
            queue(&w, &mut b, 2, t);
        }
        assert!(b.due(), "a full batch");
    }

    #[test]
    fn a_batch_that_cannot_be_sent_fails_its_tasks_at_once() {
        let (w, net, mut two, _three) = wire(&[2, 3]);
        net.detach(3);
        let mut b = WireBatch::default();
        let kept = queue(&w, &mut b, 2, 2);
        queue(&w, &mut b, 3, 3);
        b.reply(3, &Reply::failed("lost".to_owned()));
        let failed = flushed(&mut b, &w);
        assert_eq!(failed.len(), 1);
        let (back, e) = failed.into_iter().next().unwrap();
        assert_eq!(*back.downcast::<u32>().unwrap(), 3);
        assert_eq!(e, RemoteError::Unreachable { node: 3 });
        assert!(e.to_string().contains("node 3 could not be reached"), "{e}");
        assert!(two.try_recv().is_some());
        let mut t = w.table();
        assert_eq!(t.tasks.len(), 1);
        assert!(t.tasks.take(kept, 2).is_some());
    }

    #[test]
    fn register_refuses_nodes_not_up_and_a_closed_wire() {
        let (w, _net, _two, _three) = wire(&[2]);
        let (back, e) = w.register(3, Box::new(3u32)).unwrap_err();
        assert_eq!(e, RemoteError::NotHeard { node: 3 });
        assert_eq!(*back.downcast::<u32>().unwrap(), 3);
        w.register(2, Box::new(2u32)).map_err(|(_, e)| e).unwrap();
        let waiting = w.close();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].1, RemoteError::Stopping);
        let (_, e) = w.register(2, Box::new(0u32)).unwrap_err();
        assert_eq!(e, RemoteError::Stopping);
        assert!(w.table().tasks.is_empty());
    }

    #[test]
    fn replicas_register_all_at_once_and_one_for_a_node_not_up_fails_at_the_next_look() {
        let (w, _net, _two, _three) = wire(&[2]);
        let ids = w
            .register_replicas(vec![(2, Box::new(2u32)), (3, Box::new(3u32))])
            .unwrap();
        assert!(ids[0].is_some() && ids[1].is_none());
        let failed = w.table().tasks.expire(Instant::now());
        assert_eq!(failed.len(), 1);
        assert_eq!(*failed[0].0.downcast_ref::<u32>().unwrap(), 3);
        assert_eq!(failed[0].1, RemoteError::NotHeard { node: 3 });
        assert_eq!(w.table().tasks.len(), 1, "the replica sent waits");
        w.close();
        let e = w.register_replicas(vec![(2, Box::new(0u32))]).unwrap_err();
        assert_eq!(e, RemoteError::Stopping);
        assert!(w.table().tasks.is_empty(), "none registered once closed");
    }

    #[test]
    fn after_the_close_no_worker_frame_leaves_but_the_peer_threads_do() {
        let (w, _net, mut two, _three) = wire(&[2]);
        let mut b = WireBatch::default();
        queue(&w, &mut b, 2, 1);
        b.reply(2, &Reply::failed("shut down".to_owned()));
        let failed = w.close();
        assert_eq!(failed.len(), 1, "the queued request failed by the close");
        assert!(flushed(&mut b, &w).is_empty());
        assert!(b.is_empty());
        assert!(two.try_recv().is_none(), "a worker frame after the close");
        // The peer thread's goodbye still goes.
        w.send(2, Kind::Goodbye, &[]).unwrap();
        let f = two.try_recv().unwrap();
        assert_eq!(Frame::decode(&f).unwrap().kind, Kind::Goodbye);
    }

    #[test]
    fn a_split_batch_that_fails_fails_only_the_tasks_of_its_frame() {
        /// Fails every send after the first `ok`.
        struct FailAfter(std::sync::atomic::AtomicU32, Arc<dyn PeerSend>);
        impl PeerSend for FailAfter {
            fn send(&self, to: u32, frame: &[u8]) -> Result<(), PeerError> {
                // Relaxed: a test counter on one thread.
                if self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                    return Err(PeerError::Unreachable { node: to });
                }
                self.1.send(to, frame)
            }
        }
        let (w0, _net, mut two, _three) = wire(&[2]);
        let w = Wire::new(
            w0.membership().clone(),
            Arc::new(FailAfter(1.into(), w0.sender.clone())),
            Duration::from_secs(5),
        );
        let mut b = WireBatch::default();
        // Each request about half a frame: two frames of one request each.
        let big = super::super::frame::MAX_PAYLOAD / 2 + 1;
        let mut ids = Vec::new();
        for tag in 0..2u32 {
            let id = w.register(2, Box::new(tag)).map_err(|(_, e)| e).unwrap();
            b.request(
                2,
                &Request {
                    body: vec![0; big],
                    ..req(id)
                },
            );
            ids.push(id);
        }
        let failed = flushed(&mut b, &w);
        assert_eq!(failed.len(), 1, "only the second frame's task");
        assert_eq!(*failed[0].0.downcast_ref::<u32>().unwrap(), 1);
        let (kind, rs) = records(&two.try_recv().unwrap());
        assert_eq!(kind, Kind::TaskBatch);
        assert!(matches!(&rs[..], [Record::Request(q)] if q.id == ids[0]));
        let mut t = w.table();
        assert_eq!(t.tasks.len(), 1, "the sent task still waits for its reply");
        assert!(t.tasks.take(ids[0], 2).is_some());
    }
}
