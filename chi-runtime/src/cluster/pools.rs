//! Pools over the cluster: how the nodes agree on a pool's id and placement.
//!
//! # Design
//!
//! The **authority** is the node of lowest id that is up (as the asking
//! node sees the membership). A CreatePool or GetOrCreatePool with
//! `containers` ≥ 1 asks for a pool over the cluster; the admin container
//! hands the ask to the peer thread ([`super::peer::PoolAsker::ask`]),
//! which answers it itself when this node is the authority, or forwards it
//! as a [`CTL_CREATE`] request record to the authority and answers when the
//! authority replies.
//!
//! The authority keeps the cluster's pools by name ([`GlobalPools`]). For a
//! new name it picks the next id from [`GLOBAL_POOL_BASE`] up (never an id a
//! node gives its own pools) and the placement ([`Placement::spread`] of the
//! count over the nodes up now), creates its own share, and sends every other
//! node that is up a [`CTL_SHARE`] request ("create your containers":
//! the [`PoolSpec`] as JSON). Every node registers the pool, with the
//! containers the placement gives it (maybe none), so every node knows the
//! pool's id, name and placement. Once every node has acknowledged, the
//! authority answers every asker; an ask for a name being created waits for
//! that creation, so GetOrCreatePool by one name from two nodes at once
//! makes one pool. The asking node registers the spec too before it answers
//! (idempotent), so its client can use the pool as soon as it has the id.
//! A node that becomes the authority (the one before it went down) knows
//! the pools decided before from its own pool table ([`PoolHost::lookup`]),
//! and picks ids past every id it holds.
//!
//! These control requests travel as [`Request`] records to the admin pool
//! with method ids no module uses, in the same batches as remote tasks will
//! ([`super::outbox`]); their bodies are untrusted JSON, refused with an
//! error reply when malformed.
//!
//! # Failure
//!
//! An ask fails, with a message naming the node, when the authority or a
//! node of the placement goes down or does not answer within the timeout
//! (`cluster.task_timeout`), or when a node cannot create its share (its
//! message says which node and why). A failed creation is rolled back:
//! every node asked drops its share ([`CTL_DROP`]), so no half pool stays.
//!
//! # The end of a pool
//!
//! DestroyPool of a pool over the cluster goes to the authority like a
//! creation ([`CTL_DESTROY`]); see `pools/life.rs` for destruction, the rollback,
//! and what a node that (re)joins is told of the pools destroyed meanwhile.
//!
//! Control request ids are at or above [`CONTROL_IDS`] (2^63): the ids of
//! remote tasks ([`crate::remote::inflight`], below 2^62) travel in the
//! same batches and their replies come back the same way, so the two ranges
//! never meet. Like those, they start at the run's own
//! [`first_id`] past it, so a reply to a run before a restart matches
//! nothing of this one.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use chi_sdk::admin::GLOBAL_POOL_BASE;
use chi_sdk::types::{ContainerId, MethodId, NodeId, PoolId};

use super::outbox::Outbox;
use crate::placement::Placement;
use crate::remote::inflight::first_id;
use crate::remote::record::{Reply, Request};

/// Method of a request record to the authority: "create (or get) this pool
/// over the cluster" (body: [`PoolAsk`] as JSON; reply body: [`PoolSpec`]).
pub const CTL_CREATE: MethodId = 0xC000_0001;
/// Method of a request record from the authority (or, to a node that
/// joins, from the lowest other node up): "create your share of this pool"
/// (body: [`PoolSpec`] as JSON; empty reply body).
pub const CTL_SHARE: MethodId = 0xC000_0002;
/// Method of a request record to the authority: "destroy this pool over
/// the cluster" (body: its id as JSON; reply body: its [`PoolSpec`]).
pub const CTL_DESTROY: MethodId = 0xC000_0003;
/// Method of a request record: "drop your share of these pools, they are
/// destroyed" (body: the ids as a JSON list; empty reply body).
pub const CTL_DROP: MethodId = 0xC000_0004;
/// Method of a request record to a node seen (back) up: "this is what I
/// hold" (body: the next pool id the sender would give and the specs of its
/// pools over the cluster, as JSON; empty reply body). See `pools/sync.rs`.
pub const CTL_HELD: MethodId = 0xC000_0005;
/// Whether `method` is one of pool agreement's control methods (the
/// top two bits set; module methods never use them).
pub fn is_control(method: MethodId) -> bool {
    method & 0xC000_0000 == 0xC000_0000
}

/// The first request id of control records (those of remote tasks are
/// below 2^62: [`crate::remote::inflight::first_id`]).
pub const CONTROL_IDS: u64 = 1 << 63;

/// Result code of a control reply that failed.
const FAILED: i32 = chi_sdk::task::code::CREATE_FAILED;

/// Who waits for an answer.
#[derive(Debug)]
pub enum Waiter {
    /// An admin task of this node.
    Local(SyncSender<PoolAnswer>),
    /// A node that forwarded the ask, with its request id.
    Peer {
        /// The node.
        node: u32,
        /// Its request id.
        request: u64,
    },
}

struct Creating {
    spec: PoolSpec,
    /// The nodes asked for their share (dropped again on a rollback).
    asked: Vec<u32>,
    missing: BTreeSet<u32>,
    waiters: Vec<Waiter>,
    deadline: Instant,
}

/// An ask waiting for the nodes' [`CTL_HELD`] (`pools/sync.rs`).
struct Deferred {
    ask: PoolAsk,
    waiter: Waiter,
    deadline: Instant,
}

/// A destruction waiting for the nodes' drops.
struct Destroying {
    spec: PoolSpec,
    missing: BTreeSet<u32>,
    waiters: Vec<Waiter>,
    deadline: Instant,
    /// Of a rolled back creation: why it failed (what the waiters get).
    failed: Option<String>,
}

/// A drop or share sent to a node outside a creation ([`life`]): sent
/// again until the node answers or goes down (a frame sent before the
/// peer link to a node that just came up has connected is lost).
struct Notice {
    /// The pool whose destruction waits on it, or 0.
    pool: u64,
    node: u32,
    request: Request,
    resend: Instant,
}

struct Forwarded {
    waiter: Waiter,
    authority: u32,
    deadline: Instant,
    /// A DestroyPool (else a creation).
    destroy: bool,
}

/// The peer thread's part of pool agreement (see the module doc).
pub struct GlobalPools {
    me: u32,
    timeout: Duration,
    host: Box<dyn PoolHost>,
    next_pool: u64,
    next_request: u64,
    ready: HashMap<String, PoolSpec>,
    creating: HashMap<String, Creating>,
    /// Share request id → (pool name, node).
    shares: HashMap<u64, (String, u32)>,
    /// Forwarded ask's request id → its asker.
    forwarded: HashMap<u64, Forwarded>,
    /// Ids of the pools over the cluster destroyed (or rolled back): never
    /// given again, and told to nodes that (re)join.
    destroyed: IdRanges,
    /// Destructions waiting for the nodes' drops, by pool id.
    destroying: HashMap<u64, Destroying>,
    /// Notices waiting for their reply, by request id.
    notices: HashMap<u64, Notice>,
    /// Nodes that told this one what they hold since they were last seen
    /// (back) up ([`CTL_HELD`], `pools/sync.rs`).
    synced: BTreeSet<u32>,
    /// Asks waiting for the nodes' [`CTL_HELD`] before they are decided.
    deferred: Vec<Deferred>,
    /// Nodes not heard from since this one started, awaited too.
    unheard: BTreeSet<u32>,
}

impl std::fmt::Debug for GlobalPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalPools")
            .field("me", &self.me)
            .field("ready", &self.ready.len())
            .field("creating", &self.creating.len())
            .finish()
    }
}

fn answer(waiter: Waiter, a: PoolAnswer, out: &mut Outbox) {
    match waiter {
        // A local asker that gave up (its task failed) no longer listens.
        Waiter::Local(tx) => {
            let _ = tx.try_send(a);
        }
        Waiter::Peer { node, request } => {
            let (result, message, body) = match a {
                Ok(spec) => (
                    0,
                    String::new(),
                    serde_json::to_vec(&spec).unwrap_or_default(),
                ),
                Err(m) => (FAILED, m, Vec::new()),
            };
            out.reply(
                node,
                &Reply {
                    id: request,
                    result,
                    message,
                    body,
                },
            );
        }
    }
}

fn control(id: u64, method: MethodId, body: Vec<u8>) -> Request {
    Request {
        id,
        pool: PoolId::ADMIN,
        container: ContainerId(0),
        method,
        flags: 0,
        body,
    }
}

impl GlobalPools {
    /// The agreement state of node `me`; asks fail after `timeout`.
    pub fn new(
        me: u32,
        incarnation: u64,
        timeout: Duration,
        host: Box<dyn PoolHost>,
    ) -> GlobalPools {
        GlobalPools {
            me,
            timeout,
            host,
            next_pool: GLOBAL_POOL_BASE,
            next_request: CONTROL_IDS + first_id(incarnation),
            ready: HashMap::new(),
            creating: HashMap::new(),
            shares: HashMap::new(),
            forwarded: HashMap::new(),
            destroyed: IdRanges::default(),
            destroying: HashMap::new(),
            notices: HashMap::new(),
            synced: BTreeSet::new(),
            deferred: Vec::new(),
            unheard: BTreeSet::new(),
        }
    }

    /// The host (remote tasks use it too).
    pub fn host(&self) -> &dyn PoolHost {
        self.host.as_ref()
    }

    /// Whether an ask, a creation, a destruction or a notice waits on other
    /// nodes (its timeout or its resend is up to [`GlobalPools::expire`]).
    pub fn busy(&self) -> bool {
        !self.creating.is_empty()
            || !self.forwarded.is_empty()
            || !self.destroying.is_empty()
            || !self.notices.is_empty()
            || !self.deferred.is_empty()
    }

    fn request_id(&mut self) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// An ask of this node's admin (`up`: the nodes up now, this one
    /// included, in id order; the first is the authority).
    pub fn ask(&mut self, ask: PoolAsk, waiter: Waiter, up: &[u32], out: &mut Outbox) {
        let authority = up.first().copied().unwrap_or(self.me);
        if authority == self.me {
            return self.decide(ask, waiter, up, out);
        }
        let body = serde_json::to_vec(&ask).unwrap_or_default();
        self.forward(authority, CTL_CREATE, body, waiter, out);
    }

    /// Sends the `authority` a control request of `method` (CTL_CREATE or
    /// CTL_DESTROY) with `body` for this node's admin, keeping `waiter` until
    /// the reply, or until the authority goes down or `timeout` passes.
    fn forward(
        &mut self,
        authority: u32,
        method: MethodId,
        body: Vec<u8>,
        waiter: Waiter,
        out: &mut Outbox,
    ) {
        let id = self.request_id();
        out.request(authority, &control(id, method, body));
        self.forwarded.insert(
            id,
            Forwarded {
                waiter,
                authority,
                deadline: Instant::now() + self.timeout,
                destroy: method == CTL_DESTROY,
            },
        );
    }

    /// The authority's decision on `ask`.
    fn decide(&mut self, ask: PoolAsk, waiter: Waiter, up: &[u32], out: &mut Outbox) {
        // Not before every node up has told this one what it holds.
        let Some((ask, waiter)) = self.defer(ask, waiter, up) else {
            return;
        };
        let taken = |module: &str| {
            format!(
                "pool name '{}' is taken in the cluster by a pool of module '{module}'; choose \
                 another name",
                ask.name
            )
        };
        if !self.ready.contains_key(&ask.name)
            && !self.creating.contains_key(&ask.name)
            && let Some(spec) = self.host.lookup(&ask.name)
        {
            // Decided by an authority before this node took over.
            self.ready.insert(ask.name.clone(), spec);
        }
        if let Some(spec) = self.ready.get(&ask.name) {
            let a = if ask.get_or_create && spec.module == ask.module {
                Ok(spec.clone())
            } else {
                Err(taken(&spec.module))
            };
            return answer(waiter, a, out);
        }
        if let Some(c) = self.creating.get_mut(&ask.name) {
            if ask.get_or_create && c.spec.module == ask.module {
                c.waiters.push(waiter);
            } else {
                let m = c.spec.module.clone();
                answer(waiter, Err(taken(&m)), out);
            }
            return;
        }
        if ask.containers == 0 || ask.containers > MAX_CONTAINERS {
            let m = format!(
                "a pool over the cluster needs 1 to {MAX_CONTAINERS} containers (asked: {})",
                ask.containers
            );
            return answer(waiter, Err(m), out);
        }
        let nodes: Vec<NodeId> = up.iter().map(|&n| NodeId(n)).collect();
        let placement = match Placement::spread(ask.containers, &nodes) {
            Ok(p) => p,
            Err(e) => return answer(waiter, Err(e.to_string()), out),
        };
        self.next_pool = self.next_id();
        if self.next_pool >= GLOBAL_POOL_END {
            // 2^48 − 2^32 pools made (ids are not reused).
            let m = "the cluster's pool ids are used up; restart the cluster".to_owned();
            return answer(waiter, Err(m), out);
        }
        let spec = PoolSpec {
            id: self.next_pool,
            module: ask.module,
            name: ask.name,
            args: ask.args,
            nodes: placement.nodes().iter().map(|n| n.0).collect(),
        };
        self.next_pool += 1;
        if let Err(e) = self.host.create_share(&spec) {
            let m = format!(
                "node {} could not create its share of pool '{}': {e}",
                self.me, spec.name
            );
            return answer(waiter, Err(m), out);
        }
        let body = serde_json::to_vec(&spec).unwrap_or_default();
        let mut missing = BTreeSet::new();
        let me = self.me;
        for &node in up.iter().filter(|&&n| n != me) {
            let id = self.request_id();
            out.request(node, &control(id, CTL_SHARE, body.clone()));
            self.shares.insert(id, (spec.name.clone(), node));
            missing.insert(node);
        }
        let name = spec.name.clone();
        self.creating.insert(
            name.clone(),
            Creating {
                spec,
                asked: missing.iter().copied().collect(),
                missing,
                waiters: vec![waiter],
                deadline: Instant::now() + self.timeout,
            },
        );
        self.settle(&name, out);
    }

    /// Answers the creation of `name` once no node is missing.
    fn settle(&mut self, name: &str, out: &mut Outbox) {
        if self
            .creating
            .get(name)
            .is_some_and(|c| c.missing.is_empty())
            && let Some(c) = self.creating.remove(name)
        {
            tracing::info!(pool = c.spec.id, name, nodes = ?c.spec.nodes, "pool of the cluster agreed");
            self.ready.insert(name.to_owned(), c.spec.clone());
            for w in c.waiters {
                answer(w, Ok(c.spec.clone()), out);
            }
        }
    }

    /// Fails the creation of `name` with `why` and rolls it back: this
    /// node and every node asked drop their share; the waiters get `why`
    /// once the nodes up have dropped theirs ([`life`]).
    fn fail(&mut self, name: &str, why: String, out: &mut Outbox) {
        if let Some(c) = self.creating.remove(name) {
            self.shares.retain(|_, (n, _)| n != name);
            let why =
                format!("{why}; the pool was removed from the nodes that had made their share");
            tracing::warn!(
                pool = c.spec.id,
                name,
                "creation of a pool of the cluster failed: {why}"
            );
            let id = c.spec.id;
            let missing = self.forget(id, &c.asked, id, out);
            self.destroying.insert(
                id,
                Destroying {
                    spec: c.spec,
                    missing,
                    waiters: c.waiters,
                    deadline: Instant::now() + self.timeout,
                    failed: Some(why),
                },
            );
            self.settle_destroy(id, out);
        }
    }

    /// A control request from node `from`; `false` if it is not one (the
    /// caller handles it).
    pub fn on_request(&mut self, from: u32, req: &Request, up: &[u32], out: &mut Outbox) -> bool {
        match req.method {
            CTL_CREATE => {
                let waiter = Waiter::Peer {
                    node: from,
                    request: req.id,
                };
                match serde_json::from_slice::<PoolAsk>(&req.body) {
                    Ok(ask) => self.decide(ask, waiter, up, out),
                    Err(e) => answer(waiter, Err(format!("malformed pool ask: {e}")), out),
                }
            }
            CTL_DESTROY => {
                let waiter = Waiter::Peer {
                    node: from,
                    request: req.id,
                };
                match serde_json::from_slice::<u64>(&req.body) {
                    Ok(id) => self.decide_destroy(id, waiter, up, out),
                    Err(e) => answer(waiter, Err(format!("malformed pool id: {e}")), out),
                }
            }
            CTL_DROP => self.on_drop(from, req, out),
            CTL_HELD => self.on_held(from, req, up, out),
            CTL_SHARE => {
                let r = serde_json::from_slice::<PoolSpec>(&req.body)
                    .map_err(|e| format!("malformed pool spec: {e}"))
                    .and_then(|spec| self.share(&spec));
                let (result, message) = match r {
                    Ok(()) => (0, String::new()),
                    Err(m) => (FAILED, m),
                };
                out.reply(
                    from,
                    &Reply {
                        id: req.id,
                        result,
                        message,
                        body: Vec::new(),
                    },
                );
            }
            _ => return false,
        }
        true
    }

    /// A reply from node `from`; `false` if it answers no control request.
    pub fn on_reply(&mut self, from: u32, reply: &Reply, out: &mut Outbox) -> bool {
        if self.on_notice_reply(from, reply, out) {
            return true;
        }
        if let Some((name, node)) = self.shares.get(&reply.id).cloned() {
            if node != from {
                return false;
            }
            self.shares.remove(&reply.id);
            if reply.result != 0 {
                let why = format!(
                    "node {from} could not create its share of pool '{name}': {}",
                    reply.message
                );
                self.fail(&name, why, out);
            } else {
                if let Some(c) = self.creating.get_mut(&name) {
                    c.missing.remove(&from);
                }
                self.settle(&name, out);
            }
            return true;
        }
        match self.forwarded.get(&reply.id) {
            Some(f) if f.authority == from => {}
            _ => return false,
        }
        let Some(f) = self.forwarded.remove(&reply.id) else {
            return false;
        };
        let a = if reply.result != 0 {
            Err(reply.message.clone())
        } else {
            serde_json::from_slice::<PoolSpec>(&reply.body)
                .map_err(|e| format!("node {from} sent a malformed pool spec: {e}"))
                .and_then(|spec| {
                    if f.destroy {
                        self.dropped(spec.id);
                        Ok(spec)
                    } else {
                        self.share(&spec).map(|()| spec)
                    }
                })
        };
        answer(f.waiter, a, out);
        true
    }

    /// Fails every ask (the runtime stops).
    pub fn stop(&mut self, out: &mut Outbox) {
        for (_, f) in self.forwarded.drain() {
            answer(f.waiter, Err("this runtime is stopping".into()), out);
        }
        let names: Vec<String> = self.creating.keys().cloned().collect();
        for name in names {
            self.fail(&name, "this runtime is stopping".into(), out);
        }
        self.stop_destroying(out);
        self.stop_deferred(out);
    }
}

mod host;
mod ids;
mod life;
mod sync;

pub use host::{
    GLOBAL_POOL_END, MAX_CONTAINERS, NoPools, Outgoing, PoolAnswer, PoolAsk, PoolHost, PoolSpec,
};
use ids::IdRanges;
#[cfg(test)]
mod tests;
