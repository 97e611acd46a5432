//! Identifiers and the domain query: small `#[repr(C)]` values that live in task
//! headers in shared memory.

use std::fmt;

use crate::shm::ShmSafe;

/// Identifies a pool on every node. Id 0 is "none"; [`PoolId::ADMIN`] is the admin
/// pool every runtime creates at start.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct PoolId(pub u64);

impl PoolId {
    /// No pool.
    pub const NULL: PoolId = PoolId(0);
    /// The admin pool.
    pub const ADMIN: PoolId = PoolId(1);
    /// First id handed out to pools created at run time.
    pub const FIRST_USER: PoolId = PoolId(16);

    /// Whether this is [`PoolId::NULL`].
    pub fn is_null(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for PoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pool#{}", self.0)
    }
}

/// The id of a container within its pool (0, 1, ...).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct ContainerId(pub u32);

/// The id of a node: its offset in the hostfile plus one (1 without a hostfile).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct NodeId(pub u32);

/// The named subsets of a pool's containers (seed: `SubDomain`), the major
/// part of a [`SubDomainId`].
pub mod subdomain {
    /// The nodes the pool spans: minor = a node id.
    pub const PHYSICAL_NODE: u32 = 0;
    /// Every container of the pool: minor = a global container id (0..n).
    pub const GLOBAL: u32 = 1;
    /// The containers on this node: minor = a local id (0..the node's count).
    pub const LOCAL: u32 = 2;
}

/// An address within a pool: a subdomain ([`subdomain`]) and an id in it.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct SubDomainId {
    /// The subdomain.
    pub major: u32,
    /// The id in it.
    pub minor: u32,
}

/// An address of a container in the whole system: a pool and an address in it.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct DomainId {
    /// The pool.
    pub pool: PoolId,
    /// The address in it.
    pub sub: SubDomainId,
}

/// A method number, as listed in a module's `chimaera_mod.yaml`.
pub type MethodId = u32;

/// The id of a task in its task graph: every subtask shares its root's `major`
/// and has `minor` = its depth.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct TaskNode {
    /// Id shared by a root task and all its subtasks.
    pub major: u64,
    /// Depth below the root (0 for the root).
    pub minor: u32,
    /// The runtime's token of the task waiting for this one: the coroutine of
    /// the handler that submitted it as a subtask, made runnable when it
    /// completes (0: none). Set by the runtime at submission; a wrong value
    /// only costs a spurious wake-up, which every wait tolerates.
    pub waiter: u32,
}

impl TaskNode {
    /// A root task node with major id `major`.
    pub const fn root(major: u64) -> TaskNode {
        TaskNode {
            major,
            minor: 0,
            waiter: 0,
        }
    }

    /// The node of a subtask of this one.
    pub const fn child(self) -> TaskNode {
        TaskNode {
            major: self.major,
            minor: self.minor + 1,
            waiter: 0,
        }
    }
}

/// How a [`DomainQuery`] selects containers.
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum QueryKind {
    /// The container with local id `value` on this node.
    LocalId = 0,
    /// The container with global id `value`.
    GlobalId = 1,
    /// `value` modulo the containers on this node.
    LocalHash = 2,
    /// `value` modulo all the pool's containers.
    GlobalHash = 3,
    /// Every node of the pool.
    GlobalBcast = 4,
    /// Decided by the container's `Monitor` in `GlobalSchedule` mode.
    Dynamic = 5,
}

/// Which containers of a pool a task goes to. Eight bytes, no strings.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DomainQuery {
    /// A [`QueryKind`] as an integer (validated when read: it comes from shared memory).
    pub kind: u32,
    /// Id or hash, per `kind`.
    pub value: u32,
}

impl Default for DomainQuery {
    fn default() -> Self {
        DomainQuery::local()
    }
}

impl DomainQuery {
    /// Container `id` on this node.
    pub const fn local_id(id: u32) -> Self {
        DomainQuery {
            kind: QueryKind::LocalId as u32,
            value: id,
        }
    }
    /// The first container on this node.
    pub const fn local() -> Self {
        Self::local_id(0)
    }
    /// Container with global id `id`.
    pub const fn global_id(id: u32) -> Self {
        DomainQuery {
            kind: QueryKind::GlobalId as u32,
            value: id,
        }
    }
    /// Hash onto this node's containers.
    pub const fn local_hash(hash: u32) -> Self {
        DomainQuery {
            kind: QueryKind::LocalHash as u32,
            value: hash,
        }
    }
    /// Hash onto all containers.
    pub const fn global_hash(hash: u32) -> Self {
        DomainQuery {
            kind: QueryKind::GlobalHash as u32,
            value: hash,
        }
    }
    /// Every node.
    pub const fn global_bcast() -> Self {
        DomainQuery {
            kind: QueryKind::GlobalBcast as u32,
            value: 0,
        }
    }
    /// Decided by the container's Monitor.
    pub const fn dynamic() -> Self {
        DomainQuery {
            kind: QueryKind::Dynamic as u32,
            value: 0,
        }
    }

    /// The kind, or `None` for a value no writer should have produced.
    pub fn kind(&self) -> Option<QueryKind> {
        Some(match self.kind {
            0 => QueryKind::LocalId,
            1 => QueryKind::GlobalId,
            2 => QueryKind::LocalHash,
            3 => QueryKind::GlobalHash,
            4 => QueryKind::GlobalBcast,
            5 => QueryKind::Dynamic,
            _ => return None,
        })
    }
}

// SAFETY: each of these is repr(C)/repr(transparent) over integers, with no
// pointers; every bit pattern is a valid value (DomainQuery validates `kind` when
// read); no Drop.
unsafe impl ShmSafe for PoolId {}
// SAFETY: as above.
unsafe impl ShmSafe for ContainerId {}
// SAFETY: as above.
unsafe impl ShmSafe for NodeId {}
// SAFETY: as above.
unsafe impl ShmSafe for TaskNode {}
// SAFETY: as above.
unsafe impl ShmSafe for DomainQuery {}
