//! The peer thread's part in remote records: batches of task records and
//! replies ([`crate::cluster::outbox`]), and the pool agreement they carry
//! ([`crate::cluster::pools`]), the nodes seen (back) up, and the coarse
//! checks of what waits on other nodes (timeouts, nodes gone down, status
//! requests). Methods of [`PeerLoop`] (another `impl` block).

use std::time::Instant;

use super::commands::STOPPING;
use super::{Command, NodeStatusError, PeerLoop};
use crate::cluster::frame::Kind;
use crate::cluster::membership::{PeerEvent, PeerState};
use crate::cluster::pools::Outgoing;
use crate::remote::inflight::RemoteError;
use crate::remote::record::Request;
use crate::remote::record::{Record, Reply};

impl PeerLoop {
    /// The nodes up now, this one included, in id order (the first is the
    /// pools' authority).
    pub(super) fn up(&self) -> Vec<u32> {
        (1..=self.membership.len())
            .filter(|&n| {
                n == self.membership.me()
                    || matches!(self.membership.state_of(n), Some((PeerState::Up, _)))
            })
            .collect()
    }

    /// Tells the pools which nodes this node has not heard from since it
    /// started, while `cluster.peer_timeout` has not passed since: an
    /// authority waits for what they hold before it decides a pool
    /// (`pools/sync.rs`).
    pub(super) fn await_unheard(&mut self, now: Instant, started: Instant) {
        if now.saturating_duration_since(started) >= self.membership.peer_timeout() {
            self.pools.unheard(&[]);
            return;
        }
        let unheard: Vec<u32> = (1..=self.membership.len())
            .filter(|&n| matches!(self.membership.state_of(n), Some((PeerState::Unknown, _))))
            .collect();
        self.pools.unheard(&unheard);
    }

    /// Fails the remote tasks sent to the runs of nodes seen down since the
    /// last call (a restart too: the new run never heard of them; what was
    /// sent to the new run meanwhile stays), and tells the nodes seen
    /// (back) up the pools ([`GlobalPools::joined`]), in the order it
    /// happened.
    pub(super) fn take_joined(&mut self) {
        let joined = std::mem::take(&mut *self.joined.lock().unwrap_or_else(|e| e.into_inner()));
        if joined.is_empty() {
            return;
        }
        let up = self.up();
        for event in joined {
            match event {
                PeerEvent::Up { node, .. } => self.pools.joined(node, &up, &mut self.outbox),
                PeerEvent::Down {
                    node, incarnation, ..
                } => {
                    let failed = self.wire.table().tasks.run_down(node, incarnation);
                    self.fail_remote(failed);
                }
            }
        }
    }

    /// Fails the status requests past their deadline or on a node gone
    /// down.
    pub(super) fn expire_requests(&mut self, now: Instant) {
        self.pending.retain(|_, p| {
            let down = matches!(self.membership.state_of(p.node), Some((PeerState::Down, _)));
            if now < p.deadline && !down {
                return true;
            }
            let e = if down {
                NodeStatusError::Down {
                    node: p.node,
                    silent_ms: self
                        .membership
                        .state_of(p.node)
                        .and_then(|(_, s)| s)
                        .map_or(0, |d| d.as_millis() as u64),
                }
            } else {
                NodeStatusError::Timeout {
                    node: p.node,
                    timeout: p.timeout,
                }
            };
            let _ = p.reply.try_send(Err(e));
            false
        });
    }

    /// Sends what the outbox holds: one batch frame per node and kind.
    pub(super) fn flush_outbox(&mut self) {
        for (to, kind, payload) in self.outbox.drain() {
            self.send(to, kind, &payload);
        }
    }

    /// One record of a batch from node `from`: pool agreement's control
    /// requests and replies ([`crate::cluster::pools`]); a remote task runs
    /// through the host (or is answered with why not), and a reply
    /// completes the task this node sent (or is dropped if it answers none
    /// of them).
    pub(super) fn record(&mut self, from: u32, kind: Kind, bytes: &[u8]) {
        let rec = match Record::decode(bytes) {
            Ok(r) => r,
            Err(e) => return self.refuse(&e.to_string(), bytes.len()),
        };
        let up = self.up();
        match (kind, rec) {
            (Kind::TaskBatch, Record::Request(q)) => {
                if !self.pools.on_request(from, &q, &up, &mut self.outbox)
                    && let Err(m) = self.pools.host().run(from, &q)
                {
                    let me = self.membership.me();
                    self.outbox.reply(from, &Reply::not_run(me, q.id, &m));
                }
            }
            (Kind::ReplyBatch, Record::Reply(p)) => {
                if !self.pools.on_reply(from, &p, &mut self.outbox) {
                    let back = self.wire.table().tasks.take(p.id, from);
                    match back {
                        Some(back) => self.pools.host().complete(back, Ok(p)),
                        None => tracing::debug!(
                            from,
                            id = p.id,
                            "a reply to no request of this node was dropped"
                        ),
                    }
                }
            }
            _ => self.refuse("a record of the wrong kind for its batch", bytes.len()),
        }
    }

    /// Sends the remote task `request` to `node`, or fails it at once if the
    /// node is down.
    /// A request for this node itself (a broadcast's replica of a local
    /// container) runs here without a frame; its reply comes out of the
    /// host's `finished` like any other.
    pub(super) fn send_task(&mut self, node: u32, mut request: Request, back: Outgoing) {
        let me = self.membership.me();
        let run = if node == me {
            self.membership.incarnation()
        } else {
            match self.wire.admits(node) {
                Ok(run) => run,
                Err(e) => return self.pools.host().complete(back, Err(e)),
            }
        };
        request.id = self
            .wire
            .table()
            .tasks
            .insert(node, run, back, Instant::now());
        if node != me {
            return self.outbox.request(node, &request);
        }
        if let Err(message) = self.pools.host().run(me, &request)
            && let Some(back) = self.wire.table().tasks.take(request.id, me)
        {
            let reply = Reply::not_run(me, request.id, &message);
            self.pools.host().complete(back, Ok(reply));
        }
    }

    /// The coarse checks (every [`super::CHECK_EVERY`]): silent peers down, status
    /// requests, pool asks and remote tasks past their time or on a node
    /// that went down.
    pub(super) fn checks(&mut self, now: Instant) {
        self.membership.expire(now);
        self.expire_requests(now);
        let m = self.membership.clone();
        let down = move |n: u32| matches!(m.state_of(n), Some((PeerState::Down, _)));
        self.pools.expire(now, &down, &mut self.outbox);
        // Asks waiting for what the nodes hold: a node may have gone down.
        let up = self.up();
        self.pools.retry_deferred(now, &up, &mut self.outbox);
        self.expire_remote(now);
    }

    /// Whether something waits on other nodes (then the loop wakes for the
    /// coarse checks, else only for heartbeats and work).
    pub(super) fn waiting(&self) -> bool {
        !self.pending.is_empty() || !self.wire.table().tasks.is_empty() || self.pools.busy()
    }

    /// The coarse check of remote tasks: fails those past their time or
    /// on a node that went down.
    pub(super) fn expire_remote(&mut self, now: Instant) {
        let up = self.up();
        let failed = {
            let mut t = self.wire.table();
            let mut failed = t.tasks.expire(now);
            if !t.tasks.is_empty() {
                for n in 1..=self.membership.len() {
                    if !up.contains(&n) {
                        failed.extend(t.tasks.node_down(n));
                    }
                }
            }
            failed
        };
        self.fail_remote(failed);
    }

    /// Completes each remote task of `failed` with its error.
    pub(super) fn fail_remote(&self, failed: Vec<(Outgoing, RemoteError)>) {
        for (back, e) in failed {
            self.pools.host().complete(back, Err(e));
        }
    }

    /// At stop, after the wire closed: closes the gate of the command
    /// channel (a hand-over after this fails at its sender) and ends the
    /// commands queued before it, which no turn of the loop took: status
    /// requests and pool asks are answered that this runtime stops, tasks
    /// for other nodes (a broadcast's replicas) fail with
    /// [`RemoteError::Stopping`] (so a broadcast still gathers every
    /// replica), the replies of tasks served here still leave.
    pub(super) fn close_commands(&mut self) {
        *self.open.write().unwrap_or_else(|e| e.into_inner()) = false;
        let mut served = Vec::new();
        while let Ok(c) = self.commands.try_recv() {
            match c {
                Command::Status { reply, .. } => {
                    let _ = reply.try_send(Err(NodeStatusError::Stopped));
                }
                Command::Pool { reply, .. } | Command::Destroy { reply, .. } => {
                    let _ = reply.try_send(Err(STOPPING.to_owned()));
                }
                Command::Task { back, .. } => {
                    self.pools.host().complete(back, Err(RemoteError::Stopping));
                }
                Command::Served(task) => served.push(task),
                Command::Failed(tasks) => self.fail_remote(tasks),
            }
        }
        if !served.is_empty() {
            self.replies(&served);
        }
    }

    /// Queues the replies of the tasks of other nodes that completed here
    /// (their workers told this thread, [`super::PoolAsker::served`]); a
    /// broadcast's replica for this node completes its task at once.
    pub(super) fn replies(&mut self, served: &[usize]) {
        let me = self.membership.me();
        for (to, reply) in self.pools.host().finished(served) {
            if to != me {
                self.outbox.reply(to, &reply);
                continue;
            }
            let back = self.wire.table().tasks.take(reply.id, me);
            if let Some(back) = back {
                self.pools.host().complete(back, Ok(reply));
            }
        }
    }
}
