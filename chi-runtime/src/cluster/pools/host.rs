//! What pool agreement exchanges ([`PoolAsk`], [`PoolSpec`]) and what it
//! and remote tasks ask of the node they run on: [`PoolHost`] (the node
//! state's `ShareHost`, in a runtime), and [`NoPools`], the host of a peer
//! link without pools.

use chi_sdk::admin::GLOBAL_POOL_BASE;
use chi_sdk::types::NodeId;

use crate::placement::Placement;
use crate::remote::inflight::RemoteError;
use crate::remote::record::{Reply, Request};

/// Most containers a pool over the cluster may have.
pub const MAX_CONTAINERS: u32 = 1 << 16;
/// The end of the ids of pools over the cluster (they start at
/// [`GLOBAL_POOL_BASE`]): 2^48 − 2^32 pools, and no node's count past it
/// is taken in.
pub const GLOBAL_POOL_END: u64 = 1 << 48;

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
    /// Its id (≥ [`GLOBAL_POOL_BASE`](chi_sdk::admin::GLOBAL_POOL_BASE)).
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
    /// Whether a spec from another node is one this node takes in: an id
    /// of the cluster's range, 1 to [`MAX_CONTAINERS`] containers, each
    /// on a node (≥ 1). What fails says which field is wrong.
    pub fn check(&self) -> Result<(), String> {
        if !(GLOBAL_POOL_BASE..GLOBAL_POOL_END).contains(&self.id) {
            return Err(format!(
                "pool '{}' has id {}, outside the ids of pools over the cluster ({GLOBAL_POOL_BASE} \
                 to {GLOBAL_POOL_END})",
                self.name, self.id
            ));
        }
        let n = self.nodes.len();
        if n == 0 || n > MAX_CONTAINERS as usize {
            return Err(format!(
                "pool '{}' ({}) has {n} containers; a pool over the cluster has 1 to \
                 {MAX_CONTAINERS}",
                self.name, self.id
            ));
        }
        if self.nodes.contains(&0) {
            return Err(format!(
                "pool '{}' ({}) places a container on node 0; nodes count from 1",
                self.name, self.id
            ));
        }
        Ok(())
    }

    /// Its placement.
    pub fn placement(&self) -> Result<Placement, String> {
        Placement::from_nodes(self.nodes.iter().map(|&n| NodeId(n)).collect())
            .map_err(|e| e.to_string())
    }
}

/// The answer to an ask: the pool, or why not.
pub type PoolAnswer = Result<PoolSpec, String>;

/// What creates a node's share of a pool (the node state, in a runtime).
/// Every method has the answer of a host of no pools ([`NoPools`]) by
/// default.
pub trait PoolHost: Send {
    /// Creates this node's containers of `spec` and registers the pool;
    /// the same spec again is `Ok`.
    fn create_share(&self, spec: &PoolSpec) -> Result<(), String> {
        Err(format!(
            "this node hosts no pools over the cluster (asked for '{}')",
            spec.name
        ))
    }

    /// The pool over the cluster named `name` this node holds: what a node
    /// that becomes the authority knows of the pools its predecessor
    /// decided.
    fn lookup(&self, name: &str) -> Option<PoolSpec> {
        let _ = name;
        None
    }

    /// The id past every id from [`GLOBAL_POOL_BASE`](chi_sdk::admin::GLOBAL_POOL_BASE) up that a pool of
    /// this node has.
    fn free_id(&self) -> u64 {
        chi_sdk::admin::GLOBAL_POOL_BASE
    }

    /// Destroys this node's share of pool `id` over the cluster (its
    /// containers end once no task holds them); `Ok(false)` if this node
    /// holds no such pool. A host of no pools has none.
    fn destroy_share(&self, id: u64) -> Result<bool, String> {
        let _ = id;
        Ok(false)
    }

    /// The pool over the cluster of id `id` this node holds (as
    /// [`lookup`](Self::lookup) by name).
    fn lookup_id(&self, id: u64) -> Option<PoolSpec> {
        let _ = id;
        None
    }

    /// Every pool over the cluster this node holds, with its args (what a
    /// node that joins is told).
    fn cluster_pools(&self) -> Vec<PoolSpec> {
        Vec::new()
    }

    /// Starts running the remote task `req` from node `from` (its reply
    /// comes out of [`finished`](Self::finished) once the worker that
    /// completes it tells the peer thread,
    /// [`crate::cluster::peer::PoolAsker::served`]); an error is replied at
    /// once.
    fn run(&self, from: u32, req: &Request) -> Result<(), String> {
        let _ = (from, req);
        Err("this node does not run remote tasks".into())
    }

    /// The replies, with their node, of the tasks run here whose workers
    /// said they completed (`tasks`: their addresses).
    fn finished(&self, tasks: &[usize]) -> Vec<(u32, Reply)> {
        let _ = tasks;
        Vec::new()
    }

    /// Completes a task this node sent out (`back`, what the sender gave
    /// [`crate::cluster::peer::PoolAsker::send_task`]) with its node's reply or the
    /// error that took its place.
    fn complete(&self, back: Outgoing, outcome: Result<Reply, RemoteError>) {
        let _ = (back, outcome);
    }

    /// A host of the same node for the workers that take remote records
    /// themselves ([`crate::cluster::intake`]): [`run`](Self::run) and
    /// [`complete`](Self::complete) only; `None` (the default): workers
    /// take none and the peer thread handles every frame.
    fn for_workers(&self) -> Option<Box<dyn PoolHost>> {
        None
    }
}

/// A pool host for a peer link that hosts no pools (tests of membership).
#[derive(Debug)]
pub struct NoPools;

impl PoolHost for NoPools {}

/// What the sender of a remote task keeps to complete it (opaque to the
/// peer thread).
pub type Outgoing = Box<dyn std::any::Any + Send>;
