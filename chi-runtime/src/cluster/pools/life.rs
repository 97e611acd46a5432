//! The end of a pool over the cluster: its destruction, the rollback of a
//! failed creation, what a node that (re)joins is told, and the coarse
//! check of what waits on other nodes ([`GlobalPools::expire`]). Methods of
//! [`GlobalPools`] (another `impl` block).
//!
//! # Design
//!
//! **Destruction** goes through the authority, like a creation: a node's
//! DestroyPool of an id from [`GLOBAL_POOL_BASE`](chi_sdk::admin::GLOBAL_POOL_BASE)
//! up is forwarded as a [`CTL_DESTROY`] request (or decided here if this
//! node is the authority). The authority finds the pool (its agreed pools,
//! else its own pool table: it may have taken over), forgets its name,
//! remembers its id as destroyed, drops its own share and sends every other
//! node up a [`CTL_DROP`] of the id. Once every node asked has answered (a
//! node that goes down meanwhile no longer counts: it is told when it
//! comes back), the asker gets the pool's spec; a forwarding node drops its
//! share too (idempotent) before it answers its admin task.
//!
//! **Rollback**: a creation that fails (a node could not create its share,
//! or went down or stayed silent) sends the same [`CTL_DROP`] to every node
//! it had asked, and the authority drops its own share: no half pool stays.
//! Its askers get the failure once the nodes up have dropped their share,
//! as for a destruction (so a client that sees the error sees no node
//! with the pool).
//!
//! **Remembered ids**: every node that drops a pool over the cluster, on a
//! destruction or a rollback, keeps its id in its destroyed set. No
//! authority gives such an id again (it picks ids past the largest), a
//! share of a destroyed id is refused, and each node up sends a node that
//! comes (back) up its whole set in one [`CTL_DROP`] ([`GlobalPools::joined`]):
//! a node that was unreachable during a destruction drops its stale share
//! as soon as it is heard from again. The set lives as long as the runtime,
//! kept as ranges of ids (`ids.rs`): its size is bounded by the pools
//! alive, not by how many were ever destroyed.
//!
//! **A node that joins** (starts after a pool was made, or restarts) is
//! also sent every pool over the cluster by the lowest other node up, as
//! [`CTL_SHARE`] requests with the pools' specs (args included): it
//! registers each pool, and makes its containers of it if the placement has
//! any on it (a restarted node gets fresh containers; their old state is
//! gone). The placement is not changed: a node that was down when a pool
//! was made holds no container of it, and sends its tasks elsewhere.
//!
//! Drops and shares sent outside a creation are **notices**: kept until
//! the node answers, sent again every [`RESEND`] (a frame to a node that
//! just came up is lost if the link to it has not connected yet; both are
//! idempotent), forgotten when the node goes down (it is told again when
//! it comes back).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chi_sdk::types::MethodId;

use super::ids::Span;
use super::{
    CTL_DESTROY, CTL_DROP, CTL_HELD, CTL_SHARE, Destroying, FAILED, GlobalPools, Notice, Outbox,
    PoolSpec, Waiter, answer, control,
};
use crate::remote::record::{Reply, Request};

/// How long a notice waits for its reply before it is sent again.
const RESEND: Duration = Duration::from_millis(250);

impl GlobalPools {
    /// A DestroyPool of this node's admin for pool `id` over the cluster
    /// (`up`: the nodes up now, in id order; the first is the authority).
    pub fn destroy(&mut self, id: u64, waiter: Waiter, up: &[u32], out: &mut Outbox) {
        let authority = up.first().copied().unwrap_or(self.me);
        if authority == self.me {
            return self.decide_destroy(id, waiter, up, out);
        }
        let body = serde_json::to_vec(&id).unwrap_or_default();
        self.forward(authority, CTL_DESTROY, body, waiter, out);
    }

    /// The authority's destruction of pool `id`.
    pub(super) fn decide_destroy(&mut self, id: u64, waiter: Waiter, up: &[u32], out: &mut Outbox) {
        if let Some(d) = self.destroying.get_mut(&id) {
            d.waiters.push(waiter);
            return;
        }
        if let Some(c) = self.creating.values().find(|c| c.spec.id == id) {
            let m = format!(
                "pool '{}' ({id}) is still being created; destroy it once its creation has \
                 answered",
                c.spec.name
            );
            return answer(waiter, Err(m), out);
        }
        let spec = self
            .ready
            .values()
            .find(|s| s.id == id)
            .cloned()
            .or_else(|| self.host.lookup_id(id));
        let Some(spec) = spec else {
            let m = if self.destroyed.contains(id) {
                format!("pool {id} of the cluster is destroyed already")
            } else {
                format!("no pool {id} in the cluster; list the pools with `chi-runtime status`")
            };
            return answer(waiter, Err(m), out);
        };
        let me = self.me;
        let others: Vec<u32> = up.iter().copied().filter(|&n| n != me).collect();
        let missing = self.forget(id, &others, id, out);
        self.destroying.insert(
            id,
            Destroying {
                spec,
                missing,
                waiters: vec![waiter],
                deadline: Instant::now() + self.timeout,
                failed: None,
            },
        );
        self.settle_destroy(id, out);
    }

    /// Forgets pool `id` here (its name, its share) and sends `nodes` a
    /// drop of it, each tracked for the destruction `track` (0: none);
    /// returns the nodes sent to.
    pub(super) fn forget(
        &mut self,
        id: u64,
        nodes: &[u32],
        track: u64,
        out: &mut Outbox,
    ) -> BTreeSet<u32> {
        self.dropped(id);
        let body = serde_json::to_vec(&[id]).unwrap_or_default();
        let mut sent = BTreeSet::new();
        let me = self.me;
        for &node in nodes.iter().filter(|&&n| n != me) {
            self.notify(node, CTL_DROP, body.clone(), track, out);
            sent.insert(node);
        }
        sent
    }

    /// Sends node `node` a notice (`method`, `body`), kept until answered
    /// for the destruction of `pool` (0: none).
    pub(super) fn notify(
        &mut self,
        node: u32,
        method: MethodId,
        body: Vec<u8>,
        pool: u64,
        out: &mut Outbox,
    ) {
        let request = control(self.request_id(), method, body);
        out.request(node, &request);
        self.notices.insert(
            request.id,
            Notice {
                pool,
                node,
                request,
                resend: Instant::now() + RESEND,
            },
        );
    }

    /// Sends again the notices not answered in [`RESEND`] to nodes not
    /// down, and forgets those to nodes down (a node that comes back is
    /// told again, [`GlobalPools::joined`]).
    pub(super) fn resend_notices(
        &mut self,
        now: Instant,
        down: &dyn Fn(u32) -> bool,
        out: &mut Outbox,
    ) {
        self.notices.retain(|_, n| !down(n.node));
        for n in self.notices.values_mut().filter(|n| now >= n.resend) {
            out.request(n.node, &n.request);
            n.resend = now + RESEND;
        }
    }

    /// Pool `id` is destroyed: remembered, its name free, this node's share
    /// dropped.
    pub(super) fn dropped(&mut self, id: u64) {
        self.dropped_range(id, id);
    }

    /// The pools `lo` to `hi` (both included) are destroyed: as
    /// [`dropped`](Self::dropped), for the pools of the range this node
    /// holds (the range is not walked: it may be wide).
    fn dropped_range(&mut self, lo: u64, hi: u64) {
        self.destroyed.insert_range(lo, hi);
        let inside = |id: &u64| (lo..=hi).contains(id);
        self.ready.retain(|_, s| !inside(&s.id));
        let ids: Vec<u64> = if lo == hi {
            vec![lo]
        } else {
            let held = self.host.cluster_pools().into_iter().map(|s| s.id);
            held.filter(inside).collect()
        };
        for id in ids {
            match self.host.destroy_share(id) {
                Ok(true) => tracing::info!(pool = id, "share of a pool of the cluster dropped"),
                Ok(false) => {}
                Err(e) => tracing::warn!(pool = id, "could not drop a pool of the cluster: {e}"),
            }
        }
    }

    /// Creates this node's share of `spec`, unless the pool is destroyed.
    pub(super) fn share(&mut self, spec: &PoolSpec) -> Result<(), String> {
        spec.check()?;
        if self.destroyed.contains(spec.id) {
            return Err(format!(
                "pool '{}' ({}) of the cluster was destroyed meanwhile",
                spec.name, spec.id
            ));
        }
        self.host.create_share(spec)
    }

    /// A [`CTL_DROP`] from node `from`: drops the pools named and replies.
    pub(super) fn on_drop(&mut self, from: u32, req: &Request, out: &mut Outbox) {
        let ranges = serde_json::from_slice::<Vec<Span>>(&req.body)
            .map_err(|e| e.to_string())
            .and_then(|spans| {
                spans
                    .into_iter()
                    .map(Span::bounds)
                    .collect::<Result<Vec<_>, _>>()
            });
        let (result, message) = match ranges {
            Ok(ranges) => {
                for (lo, hi) in ranges {
                    self.dropped_range(lo, hi);
                }
                (0, String::new())
            }
            Err(e) => (FAILED, format!("malformed list of pool ids: {e}")),
        };
        let reply = Reply {
            id: req.id,
            result,
            message,
            body: Vec::new(),
        };
        out.reply(from, &reply);
    }

    /// A reply to one of this node's notices; `false` if it answers none.
    pub(super) fn on_notice_reply(&mut self, from: u32, reply: &Reply, out: &mut Outbox) -> bool {
        match self.notices.get(&reply.id) {
            Some(n) if n.node == from => {}
            _ => return false,
        }
        let Some(Notice { pool, request, .. }) = self.notices.remove(&reply.id) else {
            return false;
        };
        if request.method == CTL_HELD && reply.result == 0 {
            // What the node holds, in its reply (`pools/sync.rs`).
            if let Err(e) = self.take_held(from, &reply.body) {
                tracing::warn!(node = from, "a node's list of pools was refused: {e}");
            }
        }
        if reply.result != 0 {
            let what = match request.method {
                CTL_SHARE => "register a pool of the cluster",
                CTL_DROP => "drop a pool of the cluster",
                _ => "take the pools this node holds",
            };
            tracing::warn!(
                node = from,
                pool,
                "a node could not {what}: {}",
                reply.message
            );
        }
        if let Some(d) = self.destroying.get_mut(&pool) {
            d.missing.remove(&from);
            self.settle_destroy(pool, out);
        }
        true
    }

    /// Answers the destruction (or rollback) of `id` once no node is
    /// missing.
    pub(super) fn settle_destroy(&mut self, id: u64, out: &mut Outbox) {
        if self
            .destroying
            .get(&id)
            .is_some_and(|d| d.missing.is_empty())
            && let Some(d) = self.destroying.remove(&id)
        {
            let a = match d.failed {
                Some(why) => Err(why),
                None => {
                    tracing::info!(pool = id, name = %d.spec.name, "pool of the cluster destroyed");
                    Ok(d.spec)
                }
            };
            for w in d.waiters {
                answer(w, a.clone(), out);
            }
        }
    }

    /// Node `node` is (back) up (`up`: the nodes up now, in id order): it
    /// gets every destroyed id, so it drops what it still holds of them;
    /// and from the lowest other node up, every pool over the cluster that
    /// node holds, so it knows them (and makes its containers of them, if
    /// the placement has any on it: a node that restarted); and from every
    /// node, what it holds (`pools/sync.rs`).
    pub fn joined(&mut self, node: u32, up: &[u32], out: &mut Outbox) {
        if node == self.me {
            return;
        }
        if !self.destroyed.is_empty() {
            let body = serde_json::to_vec(&self.destroyed.spans()).unwrap_or_default();
            self.notify(node, CTL_DROP, body, 0, out);
        }
        if up.iter().find(|&&n| n != node) == Some(&self.me) {
            for spec in self.host.cluster_pools() {
                if self.destroyed.contains(spec.id) {
                    continue;
                }
                let body = serde_json::to_vec(&spec).unwrap_or_default();
                self.notify(node, CTL_SHARE, body, 0, out);
            }
        }
        // After the drops and shares: what this node holds (`pools/sync.rs`).
        self.tell_held(node, out);
    }

    /// Fails what waits past its deadline or on a node that is `down`.
    pub fn expire(&mut self, now: Instant, down: &dyn Fn(u32) -> bool, out: &mut Outbox) {
        let timeout = self.timeout;
        let late: Vec<u64> = self
            .forwarded
            .iter()
            .filter(|(_, f)| now >= f.deadline || down(f.authority))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(f) = self.forwarded.remove(&id) {
                let why = if down(f.authority) {
                    format!(
                        "node {} (the cluster's pool authority) went down before it answered; \
                         ask again (the next node up takes over)",
                        f.authority
                    )
                } else {
                    format!(
                        "node {} (the cluster's pool authority) did not answer within {timeout:?} \
                         (cluster.task_timeout)",
                        f.authority
                    )
                };
                answer(f.waiter, Err(why), out);
            }
        }
        let failing: Vec<(String, String)> = self
            .creating
            .iter()
            .filter_map(|(name, c)| {
                let gone: Vec<u32> = c.missing.iter().copied().filter(|&n| down(n)).collect();
                if !gone.is_empty() {
                    Some((
                        name.clone(),
                        format!("node(s) {gone:?} went down while pool '{name}' was being created"),
                    ))
                } else if now >= c.deadline {
                    Some((
                        name.clone(),
                        format!(
                            "node(s) {:?} did not create their share of pool '{name}' within \
                             {timeout:?} (cluster.task_timeout)",
                            c.missing
                        ),
                    ))
                } else {
                    None
                }
            })
            .collect();
        for (name, why) in failing {
            self.fail(&name, why, out);
        }
        self.expire_destroying(now, down, out);
        self.resend_notices(now, down, out);
    }

    /// Fails every destruction (the runtime stops).
    pub(super) fn stop_destroying(&mut self, out: &mut Outbox) {
        for (_, d) in self.destroying.drain() {
            for w in d.waiters {
                answer(w, Err("this runtime is stopping".into()), out);
            }
        }
    }

    /// Destructions past their deadline fail naming the silent nodes; nodes
    /// down no longer count (they are told when they come back). Drops
    /// waiting on a node down are forgotten.
    pub(super) fn expire_destroying(
        &mut self,
        now: Instant,
        down: &dyn Fn(u32) -> bool,
        out: &mut Outbox,
    ) {
        let ids: Vec<u64> = self.destroying.keys().copied().collect();
        for id in ids {
            let Some(d) = self.destroying.get_mut(&id) else {
                continue;
            };
            d.missing.retain(|&n| !down(n));
            if d.missing.is_empty() {
                self.settle_destroy(id, out);
            } else if now >= d.deadline
                && let Some(d) = self.destroying.remove(&id)
            {
                let late = format!(
                    "node(s) {:?} did not confirm the destruction of pool '{}' ({id}) within \
                     {:?} (cluster.task_timeout); the pool is gone from the other nodes, and \
                     they drop it when they are next heard from after being down",
                    d.missing, d.spec.name, self.timeout
                );
                let why = match d.failed {
                    Some(f) => format!("{f}; {late}"),
                    None => late,
                };
                for w in d.waiters {
                    answer(w, Err(why.clone()), out);
                }
            }
        }
    }
}
