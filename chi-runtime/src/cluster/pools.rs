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
//! (`cluster.task_timeout`). A failed creation is not rolled back on the
//! nodes that had created their share (they keep a pool no client has the
//! id of). Destroying a pool over the cluster is refused for now (the admin's
//! DestroyPool says so): nodes do not agree on destruction yet.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use chi_sdk::admin::GLOBAL_POOL_BASE;
use chi_sdk::types::{ContainerId, MethodId, NodeId, PoolId};

use super::outbox::Outbox;
use crate::placement::Placement;
use crate::remote::inflight::RemoteError;
use crate::remote::record::{Reply, Request};

/// Method of a request record to the authority: "create (or get) this pool
/// over the cluster" (body: [`PoolAsk`] as JSON; reply body: [`PoolSpec`]).
pub const CTL_CREATE: MethodId = 0xC000_0001;
/// Method of a request record from the authority: "create your share of
/// this pool" (body: [`PoolSpec`] as JSON; empty reply body).
pub const CTL_SHARE: MethodId = 0xC000_0002;
/// Most containers a pool over the cluster may have.
pub const MAX_CONTAINERS: u32 = 1 << 16;

/// Result code of a control reply that failed.
const FAILED: i32 = chi_sdk::task::code::CREATE_FAILED;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PoolAsk {
    /// Module library name.
    pub module: String,
    /// Pool name, unique in the cluster.
    pub name: String,
    /// Creation arguments.
    pub args: String,
    /// Containers (≥ 1).
    pub containers: u32,
    /// GetOrCreatePool (else CreatePool).
    pub get_or_create: bool,
}

/// A pool the cluster agreed on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PoolSpec {
    /// Its id (≥ [`GLOBAL_POOL_BASE`]).
    pub id: u64,
    /// Module library name.
    pub module: String,
    /// Name.
    pub name: String,
    /// Creation arguments.
    pub args: String,
    /// `nodes[g]`: the node of container `g`.
    pub nodes: Vec<u32>,
}

impl PoolSpec {
    /// Its placement.
    pub fn placement(&self) -> Result<Placement, String> {
        Placement::from_nodes(self.nodes.iter().map(|&n| NodeId(n)).collect())
            .map_err(|e| e.to_string())
    }
}

/// The answer to an ask: the pool, or why not.
pub type PoolAnswer = Result<PoolSpec, String>;

/// What creates a node's share of a pool (the node state, in a runtime).
pub trait PoolHost: Send {
    /// Creates this node's containers of `spec` and registers the pool;
    /// the same spec again is `Ok`.
    fn create_share(&self, spec: &PoolSpec) -> Result<(), String>;

    /// The pool over the cluster named `name` this node holds (its args
    /// need not be kept): what a node that becomes the authority knows of
    /// the pools its predecessor decided.
    fn lookup(&self, name: &str) -> Option<PoolSpec>;

    /// The lowest id from [`GLOBAL_POOL_BASE`] up that no pool of this
    /// node has.
    fn free_id(&self) -> u64;

    /// Starts running the remote task `req` from node `from` (its reply
    /// comes out of [`finished`](Self::finished)); an error is replied at
    /// once.
    fn run(&self, from: u32, req: &Request) -> Result<(), String> {
        let _ = (from, req);
        Err("this node does not run remote tasks".into())
    }

    /// Whether remote tasks run here (the peer thread then looks for their
    /// end every millisecond).
    fn serving(&self) -> bool {
        false
    }

    /// The replies of the remote tasks that ended, with their node.
    fn finished(&self) -> Vec<(u32, Reply)> {
        Vec::new()
    }

    /// Completes a task this node sent out (`back`, what the sender gave
    /// [`super::peer::PoolAsker::send_task`]) with its node's reply or the
    /// error that took its place.
    fn complete(&self, back: Outgoing, outcome: Result<Reply, RemoteError>) {
        let _ = (back, outcome);
    }
}

/// A pool host for a peer link that hosts no pools (tests of membership).
#[derive(Debug)]
pub struct NoPools;

impl PoolHost for NoPools {
    fn create_share(&self, spec: &PoolSpec) -> Result<(), String> {
        Err(format!(
            "this node hosts no pools over the cluster (asked for '{}')",
            spec.name
        ))
    }

    fn lookup(&self, _name: &str) -> Option<PoolSpec> {
        None
    }

    fn free_id(&self) -> u64 {
        chi_sdk::admin::GLOBAL_POOL_BASE
    }
}

/// What the sender of a remote task keeps to complete it (opaque to the
/// peer thread).
pub type Outgoing = Box<dyn std::any::Any + Send>;

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
    missing: BTreeSet<u32>,
    waiters: Vec<Waiter>,
    deadline: Instant,
}

struct Forwarded {
    waiter: Waiter,
    authority: u32,
    deadline: Instant,
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
    pub fn new(me: u32, timeout: Duration, host: Box<dyn PoolHost>) -> GlobalPools {
        GlobalPools {
            me,
            timeout,
            host,
            next_pool: GLOBAL_POOL_BASE,
            next_request: 1,
            ready: HashMap::new(),
            creating: HashMap::new(),
            shares: HashMap::new(),
            forwarded: HashMap::new(),
        }
    }

    /// The host (remote tasks use it too).
    pub fn host(&self) -> &dyn PoolHost {
        self.host.as_ref()
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
        let id = self.request_id();
        let body = serde_json::to_vec(&ask).unwrap_or_default();
        out.request(authority, &control(id, CTL_CREATE, body));
        self.forwarded.insert(
            id,
            Forwarded {
                waiter,
                authority,
                deadline: Instant::now() + self.timeout,
            },
        );
    }

    /// The authority's decision on `ask`.
    fn decide(&mut self, ask: PoolAsk, waiter: Waiter, up: &[u32], out: &mut Outbox) {
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
        self.next_pool = self.next_pool.max(self.host.free_id());
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

    /// Fails the creation of `name` with `why`.
    fn fail(&mut self, name: &str, why: String, out: &mut Outbox) {
        if let Some(c) = self.creating.remove(name) {
            self.shares.retain(|_, (n, _)| n != name);
            for w in c.waiters {
                answer(w, Err(why.clone()), out);
            }
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
            CTL_SHARE => {
                let r = serde_json::from_slice::<PoolSpec>(&req.body)
                    .map_err(|e| format!("malformed pool spec: {e}"))
                    .and_then(|spec| self.host.create_share(&spec));
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
                .and_then(|spec| self.host.create_share(&spec).map(|()| spec))
        };
        answer(f.waiter, a, out);
        true
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
    }
}

#[cfg(test)]
mod tests;
