//! Where a pool's containers live, and which of them a domain query names.
//!
//! # Placement
//!
//! A pool has `n` containers with global ids `0..n` (the `GLOBAL` subdomain).
//! [`Placement::spread`] deals them round robin over the pool's nodes, in
//! node-id order: container `g` lives on the `g % k`-th of `k` nodes, so a
//! pool of one container per node has container `i` on the `i`-th node, and
//! a larger pool keeps every node's share within one of the others'. On each
//! node its containers, in global-id order, have local ids `0..` (the `LOCAL`
//! subdomain, which differs from node to node); the nodes themselves are the
//! `PHYSICAL_NODE` subdomain. The placement is a pure function of the count
//! and the node list, so every node that agrees on those agrees on it.
//!
//! # Resolution
//!
//! [`Placement::resolve`] turns a task's [`DomainQuery`] into a [`Target`],
//! seen from node `here`:
//!
//! | query | containers |
//! | --- | --- |
//! | `LocalId(i)` | local id `i` on `here` |
//! | `GlobalId(g)` | global id `g`, wherever it lives |
//! | `LocalHash(h)` | local id `h % (containers on here)` |
//! | `GlobalHash(h)` | global id `h % n` |
//! | `GlobalBcast` | every container, each on its node |
//! | `Dynamic` | the container's Monitor decides (`GlobalSchedule`) |
//!
//! A query naming a container that does not exist, or a local one on a node
//! that hosts none of the pool, is an error that names the query and the
//! pool's shape: the task fails with it rather than going anywhere.

use chi_sdk::types::{ContainerId, DomainQuery, NodeId, QueryKind, SubDomainId, subdomain};

/// A pool's containers and the node of each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// `nodes[g]`: the node of the container with global id `g`.
    nodes: Vec<NodeId>,
}

/// One container and its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    /// The node.
    pub node: NodeId,
    /// The container's global id.
    pub container: ContainerId,
}

/// What a query names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One container.
    One(Located),
    /// Every container of the pool (a broadcast), in global-id order.
    All(Vec<Located>),
    /// The container's Monitor picks (`GlobalSchedule`), then the query it
    /// sets is resolved.
    Dynamic,
}

/// Why a query names no container.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A query kind no writer produces (the header holds garbage).
    #[error("domain query kind {0} is not a kind (0..=5); the task's header is corrupt")]
    BadKind(u32),
    /// An id past the pool's containers.
    #[error(
        "domain query {query:?} names container {id}, but the pool has {count} \
         container(s){scope}; use an id below {count}"
    )]
    NoContainer {
        /// The query.
        query: DomainQuery,
        /// The id it names.
        id: u32,
        /// How many there are (globally, or on this node).
        count: u32,
        /// " on node N" for a local query.
        scope: String,
    },
    /// A local query on a node that hosts none of the pool's containers.
    #[error(
        "domain query {query:?} is local, but node {} hosts none of the pool's {count} \
         container(s) (they are on nodes {nodes:?}); use a global query",
        here.0
    )]
    NoneHere {
        /// The query.
        query: DomainQuery,
        /// This node.
        here: NodeId,
        /// The pool's containers.
        count: u32,
        /// The nodes that host them.
        nodes: Vec<u32>,
    },
}

/// Why a placement cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// No container, or no node to put them on.
    #[error("a pool needs at least one container and one node (asked: {count} on {nodes} node(s))")]
    Empty {
        /// Containers asked for.
        count: u32,
        /// Nodes given.
        nodes: usize,
    },
}

impl Placement {
    /// One container (global id 0) on `node`: a pool of one node.
    pub fn single(node: NodeId) -> Placement {
        Placement { nodes: vec![node] }
    }

    /// `count` containers dealt round robin over `nodes` (sorted and
    /// deduplicated first, so every node computes the same placement).
    pub fn spread(count: u32, nodes: &[NodeId]) -> Result<Placement, PlacementError> {
        let mut sorted = nodes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if count == 0 || sorted.is_empty() {
            return Err(PlacementError::Empty {
                count,
                nodes: sorted.len(),
            });
        }
        Ok(Placement {
            nodes: (0..count as usize)
                .map(|g| sorted[g % sorted.len()])
                .collect(),
        })
    }

    /// A placement as recorded (`nodes[g]` the node of container `g`).
    pub fn from_nodes(nodes: Vec<NodeId>) -> Result<Placement, PlacementError> {
        if nodes.is_empty() {
            return Err(PlacementError::Empty { count: 0, nodes: 0 });
        }
        Ok(Placement { nodes })
    }

    /// The node of each container, by global id.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// How many containers the pool has.
    pub fn count(&self) -> u32 {
        self.nodes.len() as u32
    }

    /// The node of container `g`.
    pub fn node_of(&self, g: ContainerId) -> Option<NodeId> {
        self.nodes.get(g.0 as usize).copied()
    }

    /// The containers on `node`, in global-id order (index = local id).
    pub fn on(&self, node: NodeId) -> Vec<ContainerId> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == node)
            .map(|(g, _)| ContainerId(g as u32))
            .collect()
    }

    /// The distinct nodes the pool spans, in node-id order.
    pub fn span(&self) -> Vec<NodeId> {
        let mut v = self.nodes.clone();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The address of container `g` in subdomain `major`, seen from `here`
    /// (`LOCAL` only for a container on `here`).
    pub fn address(&self, g: ContainerId, major: u32, here: NodeId) -> Option<SubDomainId> {
        let node = self.node_of(g)?;
        let minor = match major {
            subdomain::GLOBAL => g.0,
            subdomain::PHYSICAL_NODE => node.0,
            subdomain::LOCAL if node == here => self.on(here).iter().position(|c| *c == g)? as u32,
            _ => return None,
        };
        Some(SubDomainId { major, minor })
    }

    /// What `query` names, seen from node `here`.
    pub fn resolve(&self, query: DomainQuery, here: NodeId) -> Result<Target, ResolveError> {
        let kind = query.kind().ok_or(ResolveError::BadKind(query.kind))?;
        let count = self.count();
        let global = |g: u32| -> Result<Target, ResolveError> {
            let node = self
                .node_of(ContainerId(g))
                .ok_or(ResolveError::NoContainer {
                    query,
                    id: g,
                    count,
                    scope: String::new(),
                })?;
            Ok(Target::One(Located {
                node,
                container: ContainerId(g),
            }))
        };
        let local = |pick: &dyn Fn(u32) -> u32| -> Result<Target, ResolveError> {
            let mine = self.on(here);
            if mine.is_empty() {
                return Err(ResolveError::NoneHere {
                    query,
                    here,
                    count,
                    nodes: self.span().iter().map(|n| n.0).collect(),
                });
            }
            let i = pick(mine.len() as u32);
            let container = *mine.get(i as usize).ok_or(ResolveError::NoContainer {
                query,
                id: i,
                count: mine.len() as u32,
                scope: format!(" on node {}", here.0),
            })?;
            Ok(Target::One(Located {
                node: here,
                container,
            }))
        };
        match kind {
            QueryKind::LocalId => local(&|_| query.value),
            QueryKind::LocalHash => local(&|n| query.value % n),
            QueryKind::GlobalId => global(query.value),
            QueryKind::GlobalHash => global(query.value % count),
            QueryKind::GlobalBcast => Ok(Target::All(
                self.nodes
                    .iter()
                    .enumerate()
                    .map(|(g, node)| Located {
                        node: *node,
                        container: ContainerId(g as u32),
                    })
                    .collect(),
            )),
            QueryKind::Dynamic => Ok(Target::Dynamic),
        }
    }
}

#[cfg(test)]
mod tests;
