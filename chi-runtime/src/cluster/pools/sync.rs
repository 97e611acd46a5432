//! What the nodes hold, told to a node that comes (back) up, so that an
//! authority never decides a pool before it knows the pools that exist.
//! Methods of [`GlobalPools`] (another `impl` block).
//!
//! # Design
//!
//! A node that restarts knows no pool and no pool id: it learns the pools
//! over the cluster from the others (the shares of [`GlobalPools::joined`]).
//! If it is the authority (node 1 coming back), an ask it decided before
//! those arrived would pick an id another pool holds, or make a second pool
//! of a name that exists; the other nodes would refuse their share and the
//! rollback would then drop *their* pool of that id. So:
//!
//! * every node sends a node it sees (back) up a [`CTL_HELD`] notice (after
//!   the drops and shares it sends it): the next pool id it would give (past
//!   every id it holds or saw destroyed) and the specs of the pools over the
//!   cluster it holds; the receiver replies with the same of its own. Each
//!   side registers the other's pools (idempotent), moves its next id past
//!   the other's, and counts the other as *synced*: a node is synced by its
//!   own notice's reply, whatever the other saw;
//! * the authority decides an ask only once every other node up is synced,
//!   and so is every node it has not heard from since it started, for
//!   `cluster.peer_timeout` after its start (a node that restarted learns
//!   who is up from their first frames; a node not running by then is
//!   left out) ([`GlobalPools::unheard`]);
//!   until then the ask waits ([`GlobalPools::retry_deferred`], on each
//!   `CTL_HELD` and at the coarse checks, when a node may have gone down),
//!   and fails after `cluster.task_timeout` naming the nodes up that did
//!   not answer.
//!
//! A node seen (back) up is unsynced again until its next `CTL_HELD`: a new
//! incarnation may hold other pools than the old one.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{
    CTL_HELD, Deferred, FAILED, GLOBAL_POOL_END, GlobalPools, Outbox, PoolAsk, PoolSpec, Waiter,
    answer,
};
use crate::remote::record::{Reply, Request};

/// The body of a [`CTL_HELD`] notice.
#[derive(Debug, Serialize, Deserialize)]
struct Held {
    /// The next pool id the sender would give.
    next: u64,
    /// The pools over the cluster the sender holds.
    pools: Vec<PoolSpec>,
}

impl GlobalPools {
    /// The next pool id this node would give: past every id it holds, gave
    /// or saw destroyed.
    pub(super) fn next_id(&self) -> u64 {
        let past_destroyed = self.destroyed.last().map_or(0, |d| d.saturating_add(1));
        self.next_pool.max(self.host.free_id()).max(past_destroyed)
    }

    /// What this node holds: the next id it would give, its pools over the
    /// cluster (not destroyed).
    fn held(&self) -> Vec<u8> {
        let held = Held {
            next: self.next_id(),
            pools: self
                .host
                .cluster_pools()
                .into_iter()
                .filter(|p| !self.destroyed.contains(p.id))
                .collect(),
        };
        serde_json::to_vec(&held).unwrap_or_default()
    }

    /// Tells node `node`, seen (back) up, what this node holds
    /// ([`CTL_HELD`]); it is unsynced until it tells this node the same, in
    /// its reply or in a notice of its own.
    pub(super) fn tell_held(&mut self, node: u32, out: &mut Outbox) {
        self.synced.remove(&node);
        let body = self.held();
        self.notify(node, CTL_HELD, body, 0, out);
    }

    /// Takes in what node `from` holds: registers its pools, moves the next
    /// id past its, and counts it synced.
    pub(super) fn take_held(&mut self, from: u32, body: &[u8]) -> Result<(), String> {
        let held = serde_json::from_slice::<Held>(body)
            .map_err(|e| format!("malformed list of held pools: {e}"))?;
        for spec in &held.pools {
            // A destroyed one is refused; a conflict is the sender's to
            // report (it holds the pool, this node another).
            if let Err(e) = self.share(spec) {
                tracing::warn!(
                    node = from,
                    pool = spec.id,
                    name = %spec.name,
                    "a pool another node holds was not registered here: {e}"
                );
            }
        }
        if held.next > GLOBAL_POOL_END {
            tracing::warn!(
                node = from,
                next = held.next,
                "a node's next pool id is past the ids of pools over the cluster; not taken in"
            );
        } else {
            self.next_pool = self.next_pool.max(held.next);
        }
        self.synced.insert(from);
        Ok(())
    }

    /// A [`CTL_HELD`] from node `from`: takes it in, replies with what this
    /// node holds, and decides the asks that waited for it.
    pub(super) fn on_held(&mut self, from: u32, req: &Request, up: &[u32], out: &mut Outbox) {
        let reply = match self.take_held(from, &req.body) {
            Ok(()) => Reply {
                id: req.id,
                result: 0,
                message: String::new(),
                body: self.held(),
            },
            Err(message) => Reply {
                id: req.id,
                result: FAILED,
                message,
                body: Vec::new(),
            },
        };
        out.reply(from, &reply);
        self.retry_deferred(Instant::now(), up, out);
    }

    /// The other nodes up, or not heard from yet but awaited, that have not
    /// told this node what they hold.
    fn unsynced(&self, up: &[u32]) -> Vec<u32> {
        let mut v: Vec<u32> = up
            .iter()
            .chain(self.unheard.iter())
            .copied()
            .filter(|&n| n != self.me && !self.synced.contains(&n))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The nodes not heard from since this node started that an
    /// authority still waits for (the peer thread sets them each turn,
    /// and none once `cluster.peer_timeout` has passed since the start).
    pub fn unheard(&mut self, nodes: &[u32]) {
        if self.unheard.len() != nodes.len() || !nodes.iter().all(|n| self.unheard.contains(n)) {
            self.unheard = nodes.iter().copied().collect();
        }
    }

    /// Keeps `ask` for later if some node up has not told this node what it
    /// holds; `Some` gives it back to decide now.
    pub(super) fn defer(
        &mut self,
        ask: PoolAsk,
        waiter: Waiter,
        up: &[u32],
    ) -> Option<(PoolAsk, Waiter)> {
        if self.unsynced(up).is_empty() {
            return Some((ask, waiter));
        }
        self.deferred.push(Deferred {
            ask,
            waiter,
            deadline: Instant::now() + self.timeout,
        });
        None
    }

    /// Decides the asks that waited, if every node up is synced now (or
    /// forwards them, if a lower node came up meanwhile and is the
    /// authority now); fails those past their deadline naming the nodes not
    /// heard.
    pub fn retry_deferred(&mut self, now: Instant, up: &[u32], out: &mut Outbox) {
        if self.deferred.is_empty() {
            return;
        }
        let missing = self.unsynced(up);
        // Nodes not heard from are waited for only until the grace ends;
        // the timeout is for nodes up that do not answer.
        let silent: Vec<u32> = missing.iter().copied().filter(|n| up.contains(n)).collect();
        for d in std::mem::take(&mut self.deferred) {
            if missing.is_empty() {
                self.ask(d.ask, d.waiter, up, out);
            } else if now >= d.deadline && !silent.is_empty() {
                let why = format!(
                    "node(s) {silent:?} did not tell node {} (the cluster's pool authority) the \
                     pools they hold within {:?} (cluster.task_timeout); ask again once they \
                     answer, or stop them",
                    self.me, self.timeout
                );
                answer(d.waiter, Err(why), out);
            } else {
                self.deferred.push(d);
            }
        }
    }

    /// Fails the asks that wait (the runtime stops).
    pub(super) fn stop_deferred(&mut self, out: &mut Outbox) {
        for d in std::mem::take(&mut self.deferred) {
            answer(d.waiter, Err("this runtime is stopping".into()), out);
        }
    }
}
