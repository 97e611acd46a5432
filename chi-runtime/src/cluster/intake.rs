//! The intake: the peer socket's receiving side, shared by the peer thread
//! and the worker that waits on remote work, so that a frame of tasks or
//! replies is taken by the thread that was going to run or wait for them.
//!
//! # Why
//!
//! On a small machine a remote round trip is as dear as the thread
//! hand-overs it crosses. With the peer thread receiving every frame, a
//! round trip crossed two more than the network needs: node 2's peer thread
//! to the worker that runs the task, and node 1's peer thread, which
//! completes it, before the client (`docs/benchmarks.md`). A worker that
//! sent remote records polls for a while anyway, waiting for the reply or
//! the next task; while it does, it takes the frames itself.
//!
//! # Design
//!
//! * **One lock for the socket.** The transport (and what workers run the
//!   records with: the node state's [`PoolHost`]) sits in the intake's lock
//!   ([`Inlet`]). Whoever receives holds it from reading a frame until it
//!   has handled it, so frames are handled in the order they came, as by one
//!   thread. ZeroMQ lets a socket move between threads when a full barrier
//!   separates the uses, which the lock is.
//! * **The claim: who looks.** By default the peer thread receives: it
//!   sleeps in the transport's poll over the socket and its doorbell,
//!   holding the lock (a worker's `try_lock` then fails and it goes on). A
//!   worker in its busy window after remote work ([`super::wire`]) claims
//!   the socket ([`Intake::take`]: one compare-and-swap, then a ring of the
//!   peer thread's doorbell, so that it leaves the socket's poll) and from
//!   then on looks for frames without waiting (`try_lock`, then reads that
//!   never block): every few turns of its loop while idle, and, while it
//!   has work, every few hundred turns ([`Intake::take_held`]: a busy
//!   worker looks only while it holds the claim, and gives it back when its
//!   looks come far apart or find a backlog). Meanwhile the peer thread
//!   sleeps on its doorbell alone, waking every [`STEAL_AFTER`] to check
//!   the claim. A worker going to sleep gives the claim back
//!   ([`Intake::release`]) and rings again: the peer thread reads what came
//!   meanwhile and goes back to the socket's poll. A worker that stops
//!   looking without going to sleep (a long handler) loses the claim: the
//!   peer thread takes it back once the worker's look count has not moved
//!   between two of its checks [`STEAL_AFTER`] apart
//!   ([`Intake::peer_receives`]), so no frame waits unlooked at for much
//!   more than twice that. A worker whose read fails gives the claim back
//!   at once (the peer thread logs the error and backs off).
//! * **Workers that take nothing.** Without a host for them (a peer link
//!   that hosts no pools), and from the moment the peer thread leaves its
//!   loop at stop ([`Intake::shut_workers`]: what a worker ran then could no
//!   longer reply), no worker claims the socket.
//! * **What a worker handles.** Only batches of remote tasks and of their
//!   replies from a peer that is up as the incarnation the frame names
//!   ([`Membership::heard_if_up`]), every record of which decodes and is
//!   not pool agreement's (control requests, replies to control ids: the
//!   peer thread's pools own those), and that holds at most 256 records
//!   (the replies to a flood of requests that fail are the peer thread's to
//!   send as they pile up). It runs the requests through the host
//!   (its failures are replied from the worker's own batch) and completes
//!   the tasks whose replies came. Any other frame, including one that is
//!   malformed, goes to the peer thread untouched ([`Inlet::deferred`]),
//!   with a ring: it checks, counts, logs or handles it as always, and no
//!   worker reads past it before it has, so the order holds.
//!
//! A worker's look is a few system calls (ZeroMQ's mailbox check): every
//! few turns of an idle worker's loop in its busy window, every few hundred
//! of a busy one holding the claim; a runtime without remote work never
//! looks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use super::doorbell::Doorbell;
use super::frame::{Frame, Kind, decode_batch};
use super::membership::Membership;
use super::pools::{CONTROL_IDS, PoolHost, is_control};
use super::transport::{PeerError, PeerTransport, Received};
use super::wire::{Wire, WireBatch};
use crate::remote::record::{Record, Reply};

/// Longest a claimed socket goes unlooked at before the peer thread takes
/// it back (see the module doc); also the longest the peer thread sleeps
/// while a worker holds the claim.
pub const STEAL_AFTER: Duration = Duration::from_millis(1);

/// Frames a worker takes in one look.
pub const TAKE_AT_ONCE: usize = 16;

/// Records a frame a worker takes holds at most; a larger batch (a flood,
/// or a peer thread's batch of a burst) is the peer thread's, which sends
/// the replies it queues as they pile up.
const WORKER_RECORDS: usize = 256;

/// The claim's value once workers take nothing (no host for them, or the
/// peer thread has left its loop): the peer thread receives.
const SHUT: u32 = u32::MAX;

/// What the intake's lock holds (see the module doc).
pub struct Inlet {
    /// `None` once the peer thread has stopped.
    transport: Option<Box<dyn PeerTransport>>,
    /// Frames a worker read and left to the peer thread, in order.
    deferred: VecDeque<Received>,
    /// Runs and completes the records workers take; `None`: workers take
    /// nothing.
    host: Option<Box<dyn PoolHost>>,
}

impl std::fmt::Debug for Inlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inlet")
            .field("open", &self.transport.is_some())
            .field("deferred", &self.deferred.len())
            .finish()
    }
}

impl Inlet {
    /// The next frame: a deferred one first, else one from the transport
    /// within `timeout` (the transport's [`PeerTransport::recv`]).
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Received>, PeerError> {
        if let Some(r) = self.deferred.pop_front() {
            return Ok(Some(r));
        }
        match self.transport.as_mut() {
            Some(t) => t.recv(timeout),
            None => Ok(None),
        }
    }

    /// The next frame a worker left to the peer thread.
    pub fn deferred(&mut self) -> Option<Received> {
        self.deferred.pop_front()
    }
}

/// The peer thread's view of a worker's claim: who held it, its look count
/// and since when that has not moved.
#[derive(Debug, Default)]
pub struct Watch {
    claim: u32,
    looks: u64,
    since: Option<Instant>,
}

/// The shared receiving side (see the module doc).
pub struct Intake {
    inlet: Mutex<Inlet>,
    /// 0: the peer thread receives; else the claiming worker's id + 1.
    claim: AtomicU32,
    /// Looks of the claiming worker (a progress count).
    looks: AtomicU64,
    /// The peer thread's.
    bell: Arc<Doorbell>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            // Relaxed: a snapshot for the debug output.
            .field("claim", &self.claim.load(Ordering::Relaxed))
            .finish()
    }
}

impl Intake {
    /// The intake of `transport`; workers run and complete the records
    /// they take with `host` (none: they take nothing).
    pub fn new(transport: Box<dyn PeerTransport>, host: Option<Box<dyn PoolHost>>) -> Intake {
        Intake {
            claim: AtomicU32::new(if host.is_some() { 0 } else { SHUT }),
            bell: transport.doorbell(),
            inlet: Mutex::new(Inlet {
                transport: Some(transport),
                deferred: VecDeque::new(),
                host,
            }),
            looks: AtomicU64::new(0),
        }
    }

    /// The lock (the peer thread's side; a worker only tries it).
    pub fn lock(&self) -> MutexGuard<'_, Inlet> {
        self.inlet.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The peer thread has left its loop: from now on no worker reads the
    /// socket (one reading now finishes first). What workers would run or
    /// complete after the wire closed would be lost: their replies no
    /// longer leave.
    pub fn shut_workers(&self) {
        // SeqCst: see `peer_receives`; a worker checks the claim again
        // under the lock, which is taken next.
        self.claim.store(SHUT, Ordering::SeqCst);
        drop(self.lock());
    }

    /// Drops the transport (the peer thread has stopped): its sockets
    /// close, workers find nothing more.
    pub fn close(&self) {
        self.shut_workers();
        let t = self.lock().transport.take();
        drop(t);
    }

    /// The peer thread, each turn: whether it receives from the socket
    /// itself (no worker holds the claim, or the one that does stopped
    /// looking for [`STEAL_AFTER`]: then the claim is taken back).
    pub fn peer_receives(&self, w: &mut Watch, now: Instant) -> bool {
        // SeqCst: pairs with the claim's changes by the workers, each
        // followed by a ring of the doorbell, whose Release store of its
        // flag the peer thread's `take` acquires before this look.
        let c = self.claim.load(Ordering::SeqCst);
        if c == 0 || c == SHUT {
            w.since = None;
            return true;
        }
        // Relaxed: a progress count, compared with itself only.
        let looks = self.looks.load(Ordering::Relaxed);
        match w.since {
            Some(t) if w.claim == c && w.looks == looks => {
                if now.saturating_duration_since(t) >= STEAL_AFTER
                    // SeqCst: as above.
                    && self
                        .claim
                        .compare_exchange(c, 0, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    w.since = None;
                    return true;
                }
                false
            }
            _ => {
                *w = Watch {
                    claim: c,
                    looks,
                    since: Some(now),
                };
                false
            }
        }
    }

    /// A worker (`worker`: its id) in its busy window after remote work:
    /// claims the socket if nobody does, and takes the frames of remote
    /// tasks and replies already here (see the module doc), queueing what
    /// it replies at once in `out`. Returns how many frames it handled.
    pub fn take(&self, worker: u32, wire: &Wire, out: &mut WireBatch) -> usize {
        self.take_as(worker, wire, out, true)
    }

    /// As [`take`](Self::take) for a worker between tasks: it looks only if
    /// it holds the claim already, and claims nothing. A busy worker looks
    /// seldom; were it to claim, the peer thread would take the socket back
    /// after [`STEAL_AFTER`] without a look, and the two would take turns
    /// at a cost of up to that much to each frame.
    pub fn take_held(&self, worker: u32, wire: &Wire, out: &mut WireBatch) -> usize {
        self.take_as(worker, wire, out, false)
    }

    fn take_as(&self, worker: u32, wire: &Wire, out: &mut WireBatch, claim: bool) -> usize {
        let me = worker + 1;
        // Relaxed: a first look; the swap below decides.
        let c = self.claim.load(Ordering::Relaxed);
        if c == 0 && claim {
            // SeqCst: see `peer_receives`.
            if self
                .claim
                .compare_exchange(0, me, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                return 0;
            }
            // The peer thread leaves the socket's poll (and its lock).
            self.bell.ring();
        } else if c != me {
            return 0;
        }
        // Relaxed: a progress count (see `peer_receives`).
        self.looks.fetch_add(1, Ordering::Relaxed);
        let mut inlet = match self.inlet.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return 0,
        };
        // SeqCst: see `peer_receives` (taken back meanwhile: stop).
        if self.claim.load(Ordering::SeqCst) != me || !inlet.deferred.is_empty() {
            return 0;
        }
        let Inlet {
            transport: Some(transport),
            deferred,
            host: Some(host),
        } = &mut *inlet
        else {
            return 0;
        };
        let mut taken = 0;
        while taken < TAKE_AT_ONCE {
            let r = match transport.recv(Duration::ZERO) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(_) => {
                    // The peer thread's to see, log and back off from.
                    drop(inlet);
                    self.release(worker);
                    return taken;
                }
            };
            match tasks_of(&r, wire.membership()) {
                Some((from, records)) => {
                    serve(from, records, wire, host.as_ref(), out);
                    taken += 1;
                }
                None => {
                    deferred.push_back(r);
                    self.bell.ring();
                    break;
                }
            }
        }
        taken
    }

    /// A worker going to sleep: gives its claim back, if it holds it, and
    /// wakes the peer thread to receive again.
    pub fn release(&self, worker: u32) {
        let me = worker + 1;
        // SeqCst: see `peer_receives`.
        if self
            .claim
            .compare_exchange(me, 0, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            self.bell.ring();
        }
    }
}

/// The sender and records of `r` if it is a frame a worker handles (see
/// the module doc), counted as received and as a sign of life; `None`
/// (nothing counted) for any other.
fn tasks_of(r: &Received, m: &Membership) -> Option<(u32, Vec<Record>)> {
    let f = Frame::decode(&r.bytes).ok()?;
    if !matches!(f.kind, Kind::TaskBatch | Kind::ReplyBatch) {
        return None;
    }
    if let Some(ip) = r.from
        && m.address_of(f.sender) != Some(ip)
    {
        return None;
    }
    let raw = decode_batch(f.kind, f.payload).ok()?;
    if raw.len() > WORKER_RECORDS {
        return None;
    }
    let mut records = Vec::with_capacity(raw.len());
    for bytes in raw {
        let rec = Record::decode(bytes).ok()?;
        match (f.kind, &rec) {
            (Kind::TaskBatch, Record::Request(q)) if !is_control(q.method) => {}
            (Kind::ReplyBatch, Record::Reply(p)) if p.id < CONTROL_IDS => {}
            _ => return None,
        }
        records.push(rec);
    }
    // Last: it counts the frame as a sign of life.
    if !m.heard_if_up(f.sender, f.incarnation, Instant::now()) {
        return None;
    }
    m.traffic().received(f.kind, r.bytes.len(), records.len());
    m.traffic().taken_by_worker();
    Some((f.sender, records))
}

/// Runs the requests and completes the tasks whose replies came, as the
/// peer thread would (`peer/records.rs`).
fn serve(from: u32, records: Vec<Record>, wire: &Wire, host: &dyn PoolHost, out: &mut WireBatch) {
    for rec in records {
        match rec {
            Record::Request(q) => {
                if let Err(why) = host.run(from, &q) {
                    out.reply(from, &Reply::not_run(wire.me(), q.id, &why));
                }
            }
            Record::Reply(p) => {
                let back = wire.table().tasks.take(p.id, from);
                match back {
                    Some(back) => host.complete(back, Ok(p)),
                    None => tracing::debug!(
                        from,
                        id = p.id,
                        "a reply to no request of this node was dropped"
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
