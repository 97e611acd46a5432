//! The peer thread: heartbeats, failure detection, `status --node N`, and
//! the batches of remote records.
//!
//! One thread per runtime owns the [`PeerTransport`]'s receiving side,
//! which it shares with the worker that waits on remote work
//! ([`super::intake`]). Each turn of its loop:
//!
//! 1. takes its [`Doorbell`]'s flag (work handed over after this rings
//!    again);
//! 2. every `cluster.heartbeat`, sends a `Heartbeat` frame to every peer
//!    (sends never block: a frame for a peer that is not connected is
//!    dropped), and renews the links of peers not up for
//!    `cluster.peer_timeout` (and, when handling a `Hello`, the link of a
//!    peer this node cannot answer: `peer/links.rs`);
//! 3. every [`CHECK_EVERY`] (coarse: timeouts only), marks down the peers
//!    silent for longer than `cluster.peer_timeout` ([`Membership::expire`])
//!    and fails the status requests, pool asks and remote tasks past their
//!    time or waiting on a node that went down;
//! 4. takes the work other threads handed it: requests of the control loop
//!    ([`Cluster::node_status`]), of the admin containers
//!    ([`PoolAsker::ask`], [`PoolAsker::destroy`]: pools over the cluster,
//!    [`super::pools`]), and of the workers: the replicas of broadcasts for
//!    this node itself ([`PoolAsker::send_task`], [`PoolAsker::served`]) and
//!    the tasks they could not send ([`PoolAsker::failed`]) — the workers
//!    send remote tasks and replies themselves ([`super::wire`]); and tells
//!    the nodes seen (back) up since the last turn ([`PeerEvent::Up`], from
//!    a membership listener) the pools destroyed and the pools that exist;
//! 5. handles the frames a worker left to it, then, unless a worker holds
//!    the socket ([`Intake::peer_receives`]), the frames already received
//!    (decoded by [`Frame::decode`](super::frame::Frame::decode): a refused
//!    frame is counted and logged, rate-limited), each under the intake's
//!    lock;
//! 6. if nothing came in and nothing was rung since step 1, sleeps until
//!    the next heartbeat, or the next coarse check while something waits on
//!    other nodes (at most [`MAX_WAIT`]): in the transport's poll — over
//!    its socket and the doorbell's eventfd, holding the intake's lock —
//!    or, while a worker holds the socket, on the doorbell alone, for at
//!    most [`STEAL_AFTER`].
//!
//! So a hand-over or a frame wakes the thread at once (the doorbell's
//! protocol loses no wake-up; a frame while a worker reads the socket is
//! the worker's), and an idle link wakes only for heartbeats. On a link
//! carrying tasks, the frames mostly go to the workers polling after
//! remote work (the reply, or the next request of a client that waits on
//! each, comes within about a round trip): the peer thread only checks the
//! claim every [`STEAL_AFTER`], and a round trip pays no wake-up of it on
//! either node (`docs/benchmarks.md`).
//!
//! Records decided while handling frames and commands go into an
//! [`Outbox`] that is sent after each step, one batch frame per node and
//! kind. To a peer it has not heard from (unknown or down) it sends `Hello`
//! instead of `Heartbeat`; the peer answers a `Hello` at once with a
//! heartbeat, so both sides see each other up as soon as the connection
//! carries its first frame (frames sent before ZeroMQ has (re)connected are
//! dropped, not queued). At stop it fails what waits on other nodes, ends
//! the commands handed over last (the channel's gate closes first, so no
//! hand-over is lost: [`PoolAsker`]) and sends `Goodbye`, so peers mark it
//! down at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, channel, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::doorbell::Doorbell;
use super::frame::{Kind, encode_status_request};
use super::intake::{Intake, STEAL_AFTER, Watch};
use super::membership::{Membership, PeerEvent, PeerState};
use super::outbox::Outbox;
use super::pools::{GlobalPools, PoolHost, Waiter};
use super::transport::{PeerError, PeerTransport};
use super::wire::Wire;
use crate::ratelimit::RateLimit;
use crate::remote::inflight::first_id;

/// The peer thread runs ([`Cluster::stop`] word).
const RUN: u8 = 0;
/// The peer thread says goodbye and ends.
const STOP: u8 = 1;
/// The peer thread ends without a goodbye, as a crash would (tests).
const VANISH: u8 = 2;

/// Longest sleep of the loop (its doorbell wakes it for work, frames wake
/// it too; this bounds how late a heartbeat may be).
pub const MAX_WAIT: Duration = Duration::from_millis(50);

/// Period of the coarse checks: timeouts of requests and remote tasks,
/// peers gone silent.
pub const CHECK_EVERY: Duration = Duration::from_millis(5);

/// Frames handled in a row before the loop looks at its commands again.
const DRAIN_AT_ONCE: usize = 64;

/// Bytes of records the outbox holds at most while the loop handles the
/// records of frames (the replies a flood of failing requests queues are
/// sent as they pile up, not held by the million: `peer/frames.rs`).
const FLUSH_AT: usize = 1 << 20;

static BAD_FRAME: RateLimit = RateLimit::new(Duration::from_secs(10));
static SOCKET_ERROR: RateLimit = RateLimit::new(Duration::from_secs(10));

/// Settings of the peer thread.
#[derive(Debug, Clone, Copy)]
pub struct PeerSettings {
    /// Between two heartbeats.
    pub heartbeat: Duration,
    /// Longest wait for another node's answer (`cluster.task_timeout`).
    pub task_timeout: Duration,
}

/// A running peer link: the membership table and the peer thread.
pub struct Cluster {
    membership: Arc<Membership>,
    /// The peer thread's command channel (its gate: [`PoolAsker`]).
    hand: PoolAsker,
    wire: Arc<Wire>,
    intake: Arc<Intake>,
    /// [`RUN`], [`STOP`] or [`VANISH`].
    stop: Arc<AtomicU8>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("membership", &self.membership)
            .finish()
    }
}

impl Cluster {
    /// Starts the peer thread over `transport`; `report` makes this node's
    /// status report (JSON) for peers that ask, `host` creates this node's
    /// share of the pools over the cluster ([`super::pools`]; [`super::pools::NoPools`]
    /// for a peer link that hosts none).
    pub fn start_with_pools(
        transport: Box<dyn PeerTransport>,
        membership: Arc<Membership>,
        settings: PeerSettings,
        report: Box<dyn Fn() -> Vec<u8> + Send>,
        host: Box<dyn PoolHost>,
    ) -> std::io::Result<Cluster> {
        let (tx, rx) = channel();
        let stop = Arc::new(AtomicU8::new(RUN));
        let bell = transport.doorbell();
        let hand = PoolAsker {
            commands: tx,
            bell: bell.clone(),
            open: Arc::new(RwLock::new(true)),
        };
        let wire = Arc::new(Wire::new(
            membership.clone(),
            transport.sender(),
            settings.task_timeout,
        ));
        let intake = Arc::new(Intake::new(transport, host.for_workers()));
        // Nodes (back) up, told the destroyed pools by the loop, and nodes
        // gone down, whose remote tasks it fails: a restart seen in one
        // frame (down and up at once) is never down at a coarse check.
        let joined = Arc::new(Mutex::new(Vec::new()));
        let j = joined.clone();
        membership.subscribe(move |e| j.lock().unwrap_or_else(|e| e.into_inner()).push(*e));
        let mut l = PeerLoop {
            bell: bell.clone(),
            intake: intake.clone(),
            watch: Watch::default(),
            peers: membership.peers().into_iter().map(|(id, _)| id).collect(),
            membership: membership.clone(),
            settings,
            report,
            commands: rx,
            open: hand.open.clone(),
            pending: HashMap::new(),
            next_request: first_id(membership.incarnation()),
            stop: stop.clone(),
            pools: GlobalPools::new(
                membership.me(),
                membership.incarnation(),
                settings.task_timeout,
                host,
            ),
            wire: wire.clone(),
            outbox: Outbox::default(),
            joined,
            hellos: HashMap::new(),
            renewed: membership
                .peers()
                .into_iter()
                .map(|(id, _)| (id, Instant::now()))
                .collect(),
        };
        let thread = std::thread::Builder::new()
            .name("chi-peers".into())
            .spawn(move || {
                l.run();
                l.intake.close();
            })?;
        Ok(Cluster {
            membership,
            hand,
            wire,
            intake,
            stop,
            thread: Some(thread),
        })
    }

    /// The membership table.
    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// Asks node `node` for its status report (JSON), waiting up to `timeout`.
    /// Fails at once if the node is down or was never heard from.
    pub fn node_status(&self, node: u32, timeout: Duration) -> StatusAnswer {
        let answer = self.node_status_later(node, timeout)?;
        // The peer thread answers every request by its deadline.
        answer
            .recv_timeout(timeout + MAX_WAIT * 4)
            .unwrap_or(Err(NodeStatusError::Timeout { node, timeout }))
    }

    /// As [`node_status`](Self::node_status), without waiting: the answer
    /// comes on the returned receiver within `timeout` (plus a turn of the
    /// peer thread), or at once as an error.
    pub fn node_status_later(
        &self,
        node: u32,
        timeout: Duration,
    ) -> Result<Receiver<StatusAnswer>, NodeStatusError> {
        let nodes = self.membership.len();
        match self.membership.state_of(node) {
            None => return Err(NodeStatusError::NoSuchNode { node, nodes }),
            Some((PeerState::Down, silent)) => {
                return Err(NodeStatusError::Down {
                    node,
                    silent_ms: silent.map_or(0, |d| d.as_millis() as u64),
                });
            }
            Some((PeerState::Unknown, _)) => return Err(NodeStatusError::NeverHeard { node }),
            Some((PeerState::Up, _)) => {}
        }
        let (reply, answer) = sync_channel(1);
        self.hand
            .hand(Command::Status {
                node,
                timeout,
                reply,
            })
            .map_err(|_| NodeStatusError::Stopped)?;
        Ok(answer)
    }

    /// What the workers share with the peer thread to send remote records
    /// themselves ([`super::wire`]).
    pub fn wire(&self) -> &Arc<Wire> {
        &self.wire
    }

    /// The peer socket's receiving side, which a worker waiting on remote
    /// work reads too ([`super::intake`]).
    pub fn intake(&self) -> &Arc<Intake> {
        &self.intake
    }

    /// A handle that asks for pools over the cluster
    /// ([`PoolAsker::ask`]), for the admin containers.
    pub fn pool_asker(&self) -> PoolAsker {
        self.hand.clone()
    }

    /// Says goodbye to the peers and stops the peer thread.
    pub fn stop(mut self) {
        self.halt(STOP);
    }

    /// Stops the peer thread without a goodbye: to the peers, this node
    /// crashed (tests of failure detection).
    pub fn vanish(mut self) {
        self.halt(VANISH);
    }

    /// Tells the peer thread to stop (`how`) without waiting for it: the
    /// first word set wins.
    fn signal(&self, how: u8) {
        // Release: pairs with the Acquire load in `PeerLoop::run`; nothing
        // else is published by it.
        let _ = self
            .stop
            .compare_exchange(RUN, how, Ordering::Release, Ordering::Relaxed);
        self.hand.bell.ring();
    }

    /// Tells the peer thread to stop, without waiting (tests of what it
    /// does at stop).
    #[cfg(test)]
    pub(super) fn signal_stop(&self) {
        self.signal(STOP);
    }

    fn halt(&mut self, how: u8) {
        self.signal(how);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.halt(STOP);
    }
}

struct Pending {
    node: u32,
    deadline: Instant,
    timeout: Duration,
    reply: SyncSender<StatusAnswer>,
}

struct PeerLoop {
    /// The transport's receiving side, shared with the workers.
    intake: Arc<Intake>,
    /// Whether the worker that claimed the socket still looks at it.
    watch: Watch,
    bell: Arc<Doorbell>,
    membership: Arc<Membership>,
    peers: Vec<u32>,
    settings: PeerSettings,
    report: Box<dyn Fn() -> Vec<u8> + Send>,
    commands: Receiver<Command>,
    /// The gate of `commands` ([`PoolAsker`]).
    open: Arc<RwLock<bool>>,
    pending: HashMap<u64, Pending>,
    next_request: u64,
    stop: Arc<AtomicU8>,
    pools: GlobalPools,
    outbox: Outbox,
    /// The in-flight table and the sending half, shared with the workers.
    wire: Arc<Wire>,
    /// Nodes seen (back) up or down since the last turn, in order.
    joined: Arc<Mutex<Vec<PeerEvent>>>,
    /// Per peer: Hellos in a row whose answer could not be sent (this
    /// node's link to it is broken; `peer/links.rs`).
    hellos: HashMap<u32, u32>,
    /// Per peer: when its link was last made or renewed.
    renewed: HashMap<u32, Instant>,
}

impl PeerLoop {
    /// Sends a frame (never blocks); whether it was queued.
    fn send(&mut self, to: u32, kind: Kind, payload: &[u8]) -> bool {
        match self.wire.send(to, kind, payload) {
            Ok(()) => return true,
            Err(e @ PeerError::TooLarge { .. }) => {
                tracing::warn!(to, ?kind, error = %e, "a frame too large to send was dropped");
            }
            Err(e) => tracing::trace!(to, ?kind, error = %e, "frame not sent"),
        }
        false
    }

    fn broadcast(&mut self, kind: Kind) {
        for to in self.peers.clone() {
            self.send(to, kind, &[]);
        }
    }

    /// A heartbeat to each peer that is up, a hello to the others.
    fn beat(&mut self) {
        for to in self.peers.clone() {
            let kind = match self.membership.state_of(to) {
                Some((PeerState::Up, _)) => Kind::Heartbeat,
                _ => Kind::Hello,
            };
            self.send(to, kind, &[]);
        }
    }

    fn run(&mut self) {
        self.broadcast(Kind::Hello);
        let mut next_beat = Instant::now() + self.settings.heartbeat;
        let mut next_check = Instant::now();
        let started = Instant::now();
        // Acquire: pairs with the Release store in `Cluster::halt`.
        while self.stop.load(Ordering::Acquire) == RUN {
            // Work handed over after this is rung again (see `doorbell`).
            self.bell.take();
            let now = Instant::now();
            if now >= next_beat {
                self.beat();
                self.renew_silent_links(now);
                next_beat = now + self.settings.heartbeat;
            }
            if now >= next_check {
                self.checks(now);
                next_check = now + CHECK_EVERY;
            }
            self.await_unheard(now, started);
            self.take_joined();
            self.take_commands();
            self.flush_outbox();
            // Frames already here, without sleeping: those a worker left
            // first, then the socket's unless a worker reads it.
            let intake = self.intake.clone();
            let mine = intake.peer_receives(&mut self.watch, Instant::now());
            let mut got = 0;
            let mut inlet = intake.lock();
            while got < DRAIN_AT_ONCE {
                let r = if mine {
                    inlet.recv(Duration::ZERO)
                } else {
                    Ok(inlet.deferred())
                };
                match r {
                    Ok(Some(r)) => {
                        self.handle(&r.bytes, r.from);
                        // A node this frame brought (back) up is told the
                        // pools before a worker may take its next frame.
                        self.take_joined();
                        got += 1;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.socket_error(&e);
                        break;
                    }
                }
            }
            drop(inlet);
            if got > 0 {
                self.flush_outbox();
                continue;
            }
            if !self.bell.prepare_sleep() {
                continue;
            }
            // Until the next heartbeat; the coarse checks only while
            // something waits on other nodes.
            let wake = if self.waiting() {
                next_beat.min(next_check)
            } else {
                next_beat
            };
            let mut wait = wake.saturating_duration_since(Instant::now()).min(MAX_WAIT);
            if !mine {
                // The doorbell alone (a worker rings it for a frame it
                // leaves here, and when it gives the socket back), and a
                // look at the worker's claim in a while.
                wait = wait.min(STEAL_AFTER);
                let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                self.bell.wait_fd(ms);
                self.bell.woke();
                continue;
            }
            // In the socket's poll, holding the intake's lock (a worker
            // claiming the socket rings the doorbell: the poll returns).
            let mut inlet = intake.lock();
            let r = inlet.recv(wait);
            self.bell.woke();
            match r {
                Ok(Some(r)) => {
                    self.handle(&r.bytes, r.from);
                    self.take_joined();
                    drop(inlet);
                    self.flush_outbox();
                }
                Ok(None) => {}
                Err(e) => {
                    drop(inlet);
                    self.socket_error(&e);
                    // Never a busy loop, even when the socket keeps failing.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        // What a worker took from now on could no longer be answered.
        self.intake.shut_workers();
        // Acquire: as above.
        if self.stop.load(Ordering::Acquire) == VANISH {
            return;
        }
        self.pools.stop(&mut self.outbox);
        let failed = self.wire.close();
        self.fail_remote(failed);
        self.close_commands();
        self.flush_outbox();
        self.broadcast(Kind::Goodbye);
        for (_, p) in self.pending.drain() {
            let _ = p.reply.try_send(Err(NodeStatusError::Stopped));
        }
        // Give the goodbyes a moment to leave (the sockets do not linger).
        std::thread::sleep(Duration::from_millis(20));
    }

    fn socket_error(&self, e: &super::transport::PeerError) {
        if let Some(suppressed) = SOCKET_ERROR.allow() {
            tracing::warn!(error = %e, suppressed, "peer socket error");
        }
    }

    fn take_commands(&mut self) {
        let mut served = Vec::new();
        loop {
            match self.commands.try_recv() {
                Ok(Command::Status {
                    node,
                    timeout,
                    reply,
                }) => {
                    let id = self.next_request;
                    self.next_request += 1;
                    self.pending.insert(
                        id,
                        Pending {
                            node,
                            deadline: Instant::now() + timeout,
                            timeout,
                            reply,
                        },
                    );
                    self.send(node, Kind::StatusRequest, &encode_status_request(id));
                }
                Ok(Command::Task {
                    node,
                    request,
                    back,
                }) => {
                    self.send_task(node, request, back);
                }
                Ok(Command::Pool { ask, reply }) => {
                    let up = self.up();
                    self.pools
                        .ask(ask, Waiter::Local(reply), &up, &mut self.outbox);
                }
                Ok(Command::Destroy { id, reply }) => {
                    let up = self.up();
                    self.pools
                        .destroy(id, Waiter::Local(reply), &up, &mut self.outbox);
                }
                Ok(Command::Served(task)) => served.push(task),
                Ok(Command::Failed(tasks)) => self.fail_remote(tasks),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if !served.is_empty() {
            self.replies(&served);
        }
    }
}

mod commands;
mod frames;
mod links;
mod records;

use commands::Command;
pub use commands::StatusAnswer;
pub use commands::{NodeStatusError, PoolAsker};
