//! The pool manager: this node's pools by id and by name, and their containers.
//!
//! # Design
//!
//! Lookups by id on the task path are O(1) and lock-free for workers: each worker
//! keeps its own map of pools and refreshes it when the manager's generation
//! counter moves (one atomic load per task). Creation and destruction take the
//! manager's lock.
//!
//! A container is created by its module ([`LoadedModule::create_container`])
//! with a [`ContainerInfo`] whose `runtime` handle points to a `QueueBuilder`
//! on [`PoolManager::create`]'s stack: the `create_local_queue` service
//! ([`crate::services`]) fills it while `create` runs, and the container keeps
//! the queues it lists. The module is loaded by the caller (the node state's
//! module manager), so this file knows modules only as loaded tables.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chi_sdk::abi::{ContainerInfo, ErrorBuf, LaneId, LocalQueueInfo, fixed_str, lane_priority};
use chi_sdk::types::{ContainerId, NodeId, PoolId};

use crate::module::LoadedModule;
use crate::placement::Placement;
use crate::services::QueueBuilder;

/// A container of a pool on this node: a module's state.
#[derive(Debug)]
pub struct Container {
    /// Its id in the pool.
    pub id: ContainerId,
    /// Its module.
    pub module: Arc<LoadedModule>,
    /// The module's opaque state.
    pub state: *mut c_void,
    /// The local queues the container created (empty: one default lane).
    pub queues: Vec<LocalQueueInfo>,
    /// Coroutine stack of its tasks, in bytes (0: `coroutine.stack_size`).
    pub stack_size: usize,
    /// Its pool was destroyed: periodic tasks of the container end (a
    /// destroyed pool's container lives on only while tasks hold it).
    pub retired: std::sync::atomic::AtomicBool,
}

impl Container {
    /// Where lane `lane` of this container runs: the process-queue lane (and so
    /// the worker) it maps to, given the process queue's lanes of each
    /// priority. Lanes of one queue are spread over the lanes of their
    /// priority starting at a per-queue offset; `None` if the container has no
    /// such lane.
    pub fn process_lane(
        &self,
        pool: PoolId,
        lane: LaneId,
        low: &std::ops::Range<usize>,
        high: &std::ops::Range<usize>,
    ) -> Option<usize> {
        let q = self
            .queues
            .iter()
            .find(|q| q.queue_id == u32::from(lane.queue()))?;
        if u32::from(lane.lane()) >= q.lanes {
            return None;
        }
        let group = if q.priority == lane_priority::HIGH_LATENCY && !high.is_empty() {
            high
        } else {
            low
        };
        if group.is_empty() {
            return None;
        }
        let seed = pool
            .0
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(u64::from(self.id.0) << 16)
            .wrapping_add(u64::from(q.queue_id));
        let n = group.len() as u64;
        Some(group.start + ((seed % n + u64::from(lane.lane())) % n) as usize)
    }
}

// SAFETY: the state belongs to the module, whose functions must accept calls from
// any worker thread (the module ABI contract); the runtime only passes it along.
unsafe impl Send for Container {}
// SAFETY: as above.
unsafe impl Sync for Container {}

impl Drop for Container {
    fn drop(&mut self) {
        if self.state.is_null() {
            // A stand-in for the module's hooks (`Pool::hooks`): no state.
            return;
        }
        // SAFETY: `state` came from this module's `create` and is destroyed once,
        // after the last reference (tasks hold an Arc while they run).
        unsafe { (self.module.api.destroy)(self.state) };
    }
}

/// A pool: a name, a module and this node's containers.
#[derive(Debug)]
pub struct Pool {
    /// Id.
    pub id: PoolId,
    /// Name.
    pub name: String,
    /// The module's library name.
    pub module: String,
    /// Its creation arguments (a pool over the cluster gives them to a
    /// node that joins later).
    pub args: String,
    /// Containers on this node (of a pool over the cluster: this node's
    /// share, each with its global id).
    pub containers: Vec<Arc<Container>>,
    /// Of a pool over the cluster: the node of each container. `None`: a
    /// pool of this node (one container, id 0), resolved on the fast path.
    pub placement: Option<Arc<Placement>>,
    /// The next container a `Dynamic` task goes to when Monitor does not
    /// choose (round robin over the pool's containers).
    pub dynamic_turn: std::sync::atomic::AtomicU32,
    /// Of a pool over the cluster with no container on this node: a
    /// stand-in with the module and a null state, through which tasks sent
    /// from here reach the module's task hooks (`save_in`, `load_out`,
    /// `del`; see `chi_sdk::abi::DelFn` on a null container). Never run.
    pub stand_in: Option<Arc<Container>>,
}

impl Pool {
    /// A container whose module serves this pool's tasks' hooks: the
    /// first container here, else the stand-in; `None` for neither.
    pub fn hooks(&self) -> Option<&Arc<Container>> {
        self.containers.first().or(self.stand_in.as_ref())
    }

    /// The module's library name.
    pub fn module_name(&self) -> &str {
        &self.module
    }
}

/// Why a pool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The name is used by a pool of another module.
    #[error("pool name '{name}' is taken by a pool of module '{module}'; choose another name")]
    NameTaken {
        /// Name.
        name: String,
        /// The existing pool's module.
        module: String,
    },
    /// The id is taken.
    #[error("pool id {id} is taken by pool '{name}'; request another id or 0 for any")]
    IdTaken {
        /// Id.
        id: u64,
        /// Existing pool name.
        name: String,
    },
    /// The id is reserved.
    #[error("pool id {0} is reserved; use 0 (any) or an id from 2 up")]
    Reserved(u64),
    /// The cluster agreed on another id for the name, or on another name
    /// for the id (the nodes' pool tables disagree).
    #[error(
        "pool '{name}' (id {id}) of the cluster conflicts with this node's pool '{existing}' \
         (id {existing_id}); destroy the local pool or choose another name"
    )]
    Conflict {
        /// Name.
        name: String,
        /// The cluster's id.
        id: u64,
        /// The local pool's name.
        existing: String,
        /// Its id.
        existing_id: u64,
    },
    /// No such pool.
    #[error("no pool {0} on this node")]
    NoPool(u64),
    /// The module could not create its container.
    #[error("module '{module}' could not create a container for pool '{name}': {message}")]
    Create {
        /// Module.
        module: String,
        /// Pool name.
        name: String,
        /// Its message.
        message: String,
    },
}

#[derive(Default)]
struct Tables {
    by_id: HashMap<PoolId, Arc<Pool>>,
    by_name: HashMap<String, PoolId>,
    next: u64,
}

/// This node's pools.
pub struct PoolManager {
    node: NodeId,
    tables: RwLock<Tables>,
    generation: AtomicU64,
}

impl std::fmt::Debug for PoolManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolManager")
            .field("node", &self.node)
            .finish()
    }
}

impl PoolManager {
    /// An empty manager for node `node`.
    pub fn new(node: NodeId) -> PoolManager {
        PoolManager {
            node,
            tables: RwLock::new(Tables {
                next: PoolId::FIRST_USER.0,
                ..Tables::default()
            }),
            generation: AtomicU64::new(1),
        }
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Changes each time a pool is created or destroyed.
    #[inline]
    pub fn generation(&self) -> u64 {
        // Acquire: pairs with the Release increment after a table change, so a
        // worker that sees the new generation sees the new table in `snapshot`.
        self.generation.load(Ordering::Acquire)
    }

    /// All pools, for a worker's cache.
    pub fn snapshot(&self) -> HashMap<PoolId, Arc<Pool>> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .clone()
    }

    /// The pool `id`.
    pub fn get(&self, id: PoolId) -> Option<Arc<Pool>> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .get(&id)
            .cloned()
    }

    /// The pool named `name`.
    pub fn by_name(&self, name: &str) -> Option<Arc<Pool>> {
        let t = self.tables.read().unwrap_or_else(|e| e.into_inner());
        t.by_name.get(name).and_then(|id| t.by_id.get(id)).cloned()
    }

    /// Every pool, ordered by id.
    pub fn list(&self) -> Vec<Arc<Pool>> {
        let mut v: Vec<_> = self.snapshot().into_values().collect();
        v.sort_by_key(|p| p.id);
        v
    }

    /// Creates pool `name` of `module` with one container on this node.
    /// `requested` 0 means any id. With `get_or_create`, an existing pool of that
    /// name and module is returned instead.
    pub fn create(
        &self,
        module: Arc<LoadedModule>,
        name: &str,
        args: &str,
        requested: PoolId,
        get_or_create: bool,
    ) -> Result<PoolId, PoolError> {
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = t.by_name.get(name) {
            let existing = &t.by_id[&id];
            if get_or_create && existing.module_name() == module.name {
                return Ok(id);
            }
            return Err(PoolError::NameTaken {
                name: name.to_owned(),
                module: existing.module_name().to_owned(),
            });
        }
        let id = if requested.is_null() {
            while t.by_id.contains_key(&PoolId(t.next)) {
                t.next += 1;
            }
            t.next += 1;
            PoolId(t.next - 1)
        } else if requested == PoolId::ADMIN && module.name != chi_sdk::admin::ADMIN_LIB_NAME {
            return Err(PoolError::Reserved(requested.0));
        } else if let Some(p) = t.by_id.get(&requested) {
            return Err(PoolError::IdTaken {
                id: requested.0,
                name: p.name.clone(),
            });
        } else {
            requested
        };
        let container = self.make_container(&module, id, ContainerId(0), name, args)?;
        let pool = Arc::new(Pool {
            id,
            name: name.to_owned(),
            module: module.name.clone(),
            args: args.to_owned(),
            containers: vec![container],
            placement: None,
            dynamic_turn: Default::default(),
            stand_in: None,
        });
        t.by_id.insert(id, pool);
        t.by_name.insert(name.to_owned(), id);
        self.generation.fetch_add(1, Ordering::Release);
        tracing::info!(pool = %id, name, "pool created");
        Ok(id)
    }

    /// Creates this node's share of pool `name` over the cluster: the
    /// containers `placement` puts on this node (maybe none: the pool is
    /// then known here, its tasks go elsewhere), with their global ids.
    /// Idempotent: the same pool again is `Ok`.
    pub fn create_share(
        &self,
        module: Arc<LoadedModule>,
        id: PoolId,
        name: &str,
        args: &str,
        placement: Placement,
    ) -> Result<(), PoolError> {
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&existing) = t.by_name.get(name) {
            if existing == id {
                return Ok(());
            }
            return Err(PoolError::Conflict {
                name: name.to_owned(),
                id: id.0,
                existing: name.to_owned(),
                existing_id: existing.0,
            });
        }
        if let Some(p) = t.by_id.get(&id) {
            return Err(PoolError::Conflict {
                name: name.to_owned(),
                id: id.0,
                existing: p.name.clone(),
                existing_id: id.0,
            });
        }
        let mut containers = Vec::new();
        for g in placement.on(self.node) {
            // A failure drops the containers made so far (their Drop
            // destroys them).
            containers.push(self.make_container(&module, id, g, name, args)?);
        }
        let here = containers.len();
        let stand_in = containers.is_empty().then(|| {
            Arc::new(Container {
                id: ContainerId(u32::MAX),
                module: module.clone(),
                state: std::ptr::null_mut(),
                queues: Vec::new(),
                stack_size: 0,
                retired: std::sync::atomic::AtomicBool::new(false),
            })
        });
        let pool = Arc::new(Pool {
            id,
            name: name.to_owned(),
            module: module.name.clone(),
            args: args.to_owned(),
            containers,
            placement: Some(Arc::new(placement)),
            dynamic_turn: Default::default(),
            stand_in,
        });
        t.by_id.insert(id, pool);
        t.by_name.insert(name.to_owned(), id);
        self.generation.fetch_add(1, Ordering::Release);
        tracing::info!(pool = %id, name, containers_here = here, "pool of the cluster created");
        Ok(())
    }

    /// Container `cid` of pool `id`, made by `module`.
    fn make_container(
        &self,
        module: &Arc<LoadedModule>,
        id: PoolId,
        cid: ContainerId,
        name: &str,
        args: &str,
    ) -> Result<Arc<Container>, PoolError> {
        let mut queues = QueueBuilder::default();
        let info = ContainerInfo {
            pool_id: id,
            container_id: cid,
            node_id: self.node,
            pool_name: fixed_str(name),
            runtime: &mut queues as *mut QueueBuilder as *mut c_void,
        };
        let mut err = ErrorBuf::default();
        let state = module.create_container(&info, args, &mut err);
        if state.is_null() {
            return Err(PoolError::Create {
                module: module.name.clone(),
                name: name.to_owned(),
                message: err.as_str().to_owned(),
            });
        }
        Ok(Arc::new(Container {
            id: cid,
            module: module.clone(),
            state,
            queues: queues.queues,
            stack_size: queues.stack_size.unwrap_or(0),
            retired: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// The id past every id of the range of pools over the cluster
    /// ([`chi_sdk::admin::GLOBAL_POOL_BASE`] to
    /// [`GLOBAL_POOL_END`](crate::cluster::pools::GLOBAL_POOL_END)) that a
    /// pool of this node has (a runtime without peers numbers its pools over
    /// the cluster itself; a node that becomes the authority numbers past
    /// what it holds; a local pool a client gave an id past the range is no
    /// pool over the cluster's to avoid). Past, not the lowest free: the id
    /// of a destroyed pool is never given again.
    pub fn free_cluster_id(&self) -> PoolId {
        let t = self.tables.read().unwrap_or_else(|e| e.into_inner());
        let base = chi_sdk::admin::GLOBAL_POOL_BASE;
        let end = crate::cluster::pools::GLOBAL_POOL_END;
        let past = t
            .by_id
            .keys()
            .filter(|id| (base..end).contains(&id.0))
            .map(|id| id.0.saturating_add(1))
            .max();
        PoolId(past.unwrap_or(base))
    }

    /// Removes pool `id`; its containers are destroyed when the last task using
    /// them finishes.
    pub fn destroy(&self, id: PoolId) -> Result<(), PoolError> {
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        let pool = t.by_id.remove(&id).ok_or(PoolError::NoPool(id.0))?;
        t.by_name.remove(&pool.name);
        for c in &pool.containers {
            // Relaxed: a flag periodic tasks read between runs; the wake-up
            // sweep that follows the destruction makes them look.
            c.retired.store(true, Ordering::Relaxed);
        }
        self.generation.fetch_add(1, Ordering::Release);
        tracing::info!(pool = %id, name = %pool.name, "pool destroyed");
        Ok(())
    }

    /// Removes every pool (at stop).
    pub fn clear(&self) {
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        for pool in t.by_id.values() {
            for c in &pool.containers {
                // Relaxed: as in `destroy`.
                c.retired.store(true, Ordering::Relaxed);
            }
        }
        t.by_id.clear();
        t.by_name.clear();
        self.generation.fetch_add(1, Ordering::Release);
    }
}
