//! The node state as the peer link sees it ([`PoolHost`]): it creates
//! this node's share of the pools over the cluster, runs the tasks other
//! nodes send, and completes the tasks this node sent when their replies
//! come.
//!
//! # Design
//!
//! Running a request: only for a pool over the cluster (the admin pool
//! and a node's own pools never run tasks of other nodes: the cluster key
//! admits a peer to the cluster's pools, not to this node's
//! administration). The container named by the record (a container of
//! this node, by global id) loads the body into a fresh task of the main
//! segment ([`codec::load_in`]); the task becomes the runtime's own (client
//! 0, no waiter, not fire-and-forget whatever it was on its node, its query
//! the container's global id) and is pushed on a lane of the process queue,
//! as a client would. It is entered in the serving table shared with the
//! workers first ([`crate::remote::serving`]). Its waiter is
//! `PEER_WAITER`: the worker that completes it saves its outputs
//! ([`codec::save`] of `Half::Out`) into a reply with the result code and
//! error message, frees it through the module's `del`, and sends the
//! reply itself ([`crate::cluster::wire`]); only a broadcast replica of
//! this node's own comes back here
//! ([`crate::cluster::peer::PoolAsker::served`], [`PoolHost::finished`]).
//! No thread looks for completed tasks.
//!
//! Completing a task sent out ([`Sent`]): unless the client freed it
//! meanwhile (its generation changed), the reply's outputs are loaded into
//! it ([`codec::load_out`]) and it is completed like a local task
//! (`Outcome::complete`: the error message written, the state word
//! completed, a sleeping client woken, a fire-and-forget or abandoned task
//! freed; the parent coroutine of a subtask woken through its worker's
//! mailbox). A reply that does not load, and an error in place of a reply
//! (node down, timeout), fail the task with a message naming the node.
//!
//! A broadcast ([`crate::remote::Bcast`]) completes its task once every
//! replica has answered: failed with the first failure in container order
//! if any replica failed, else with container 0's outputs into which the
//! module combines the others' ([`bcast::combine`]).
//!
//! It runs on the peer thread, and a copy of it
//! ([`PoolHost::for_workers`]) on the worker that takes the frames of
//! remote tasks and replies itself ([`crate::cluster::intake`]), under the
//! intake's lock; the serving table they fill is shared with every worker.

use std::sync::{Arc, Weak};

use chi_sdk::shm::{Allocator, ShmPtr, ShmString};
use chi_sdk::task::{TaskHeader, code, flags, next_generation, task_word};
use chi_sdk::types::{DomainQuery, PoolId};

use crate::cluster::pools::{Outgoing, PoolHost, PoolSpec};
use crate::pool::Pool;
use crate::remote::codec;
use crate::remote::inflight::RemoteError;
use crate::remote::record::{Reply, Request};
use crate::remote::serving::{self, Serving, ServingTable};
use crate::remote::{Sent, bcast};
use crate::state::NodeState;
use crate::worker::outcome::Outcome;
use crate::worker::sched::{PEER_WAITER, wake_from_outside};

/// The peer link's [`PoolHost`] (see the module doc); weak: the peer
/// thread and the intake must not keep a stopped runtime's state alive.
pub struct ShareHost {
    node: Weak<NodeState>,
    alloc: Allocator,
    /// Shared with the workers ([`ServingTable`]).
    serving: Arc<ServingTable>,
}

impl std::fmt::Debug for ShareHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareHost")
            .field("serving", &self.serving)
            .finish()
    }
}

impl ShareHost {
    /// The host of `node`'s state.
    pub fn new(node: &Arc<NodeState>) -> std::io::Result<ShareHost> {
        let alloc = Allocator::attach(&node.ipc.main).map_err(std::io::Error::other)?;
        Ok(ShareHost {
            node: Arc::downgrade(node),
            alloc,
            serving: node.serving.clone(),
        })
    }

    fn state(&self) -> Result<Arc<NodeState>, String> {
        self.node
            .upgrade()
            .ok_or_else(|| "the runtime is stopping".to_owned())
    }
}

impl ShareHost {
    /// Combines the other replicas of a broadcast into `task`
    /// ([`bcast::combine`]; nothing to do for a task that is not one).
    ///
    /// # Safety
    /// As [`bcast::combine`].
    unsafe fn combine(
        &self,
        node: &NodeState,
        sent: &Sent,
        task: *mut TaskHeader,
        others: &[Reply],
    ) -> Result<(), String> {
        if others.is_empty() {
            return Ok(());
        }
        // SAFETY: the caller's contract.
        unsafe { bcast::combine(&sent.container, task, others, &self.alloc, &node.ipc.main) }
    }
}

impl PoolHost for ShareHost {
    fn create_share(&self, spec: &PoolSpec) -> Result<(), String> {
        self.state()?
            .create_share(spec)
            .map_err(|e| format!("{e:#}"))
    }

    fn lookup(&self, name: &str) -> Option<PoolSpec> {
        let pool = self.node.upgrade()?.pools.by_name(name)?;
        spec_of(&pool)
    }

    fn lookup_id(&self, id: u64) -> Option<PoolSpec> {
        let pool = self.node.upgrade()?.pools.get(PoolId(id))?;
        spec_of(&pool)
    }

    fn cluster_pools(&self) -> Vec<PoolSpec> {
        let Some(node) = self.node.upgrade() else {
            return Vec::new();
        };
        node.pools
            .list()
            .iter()
            .filter_map(|p| spec_of(p))
            .collect()
    }

    fn destroy_share(&self, id: u64) -> Result<bool, String> {
        self.state()?.destroy_share(PoolId(id))
    }

    fn free_id(&self) -> u64 {
        self.node
            .upgrade()
            .map_or(chi_sdk::admin::GLOBAL_POOL_BASE, |n| {
                n.pools.free_cluster_id().0
            })
    }

    fn run(&self, from: u32, req: &Request) -> Result<(), String> {
        let node = self.state()?;
        let me = node.node_id;
        let pool = node
            .pools
            .get(req.pool)
            .ok_or_else(|| format!("no {} on node {me}", req.pool))?;
        if pool.placement.is_none() {
            // Only pools over the cluster take tasks from other nodes (see
            // the module doc): never the admin pool or a local one.
            return Err(format!(
                "{} is not a pool over the cluster; node {me} runs tasks of other nodes only \
                 for those",
                req.pool
            ));
        }
        let c = pool
            .containers
            .iter()
            .find(|c| c.id == req.container)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "container {} of {} is not on node {me}",
                    req.container.0, req.pool
                )
            })?;
        let task = codec::load_in(&c, req.method, &req.body, &self.alloc, &node.ipc.main)
            .map_err(|e| e.to_string())?;
        // SAFETY: a fresh task of ours, not yet queued.
        let h = unsafe { &mut *task };
        if crate::worker::periodic::periodic_of(task).is_some() {
            // It would run until cancelled, and nothing cancels it from
            // another node: its sender would wait for a reply that never
            // comes (the sending node refuses these; another might not).
            // SAFETY: our task, never queued, of the container's module.
            unsafe { serving::free(task, &c, &self.alloc, &node.ipc.main) };
            return Err(format!(
                "a periodic task runs only on the node it is submitted to; submit it to node \
                 {me}, which holds container {}",
                req.container.0
            ));
        }
        h.pool_id = req.pool;
        h.method = req.method;
        h.flags &= !flags::FIRE_AND_FORGET;
        h.client_id = 0;
        h.task_node.waiter = PEER_WAITER;
        h.dom_query = DomainQuery::global_id(req.container.0);
        if h.generation == 0 {
            h.generation = next_generation();
        }
        let q = &node.ipc.queue;
        let low = q.lanes_of(chi_sdk::queue::Priority::LowLatency);
        let lane = low.start + req.container.0 as usize % low.len().max(1);
        // Relaxed: published to the worker by the push.
        h.lane
            .store(lane as u32, std::sync::atomic::Ordering::Relaxed);
        h.mark_queued();
        // Kept before the push: its worker may complete it at once.
        self.serving.insert(Serving {
            from,
            request: req.id,
            task: task as usize,
            container: c,
        });
        let main = &node.ipc.main;
        let ptr = ShmPtr::new(main.id(), task as u64 - main.base() as u64);
        if q.try_push(lane, task_word(ptr, u32::from(h.generation)))
            .is_err()
        {
            if let Some(s) = self.serving.remove(task as usize) {
                // SAFETY: our task, never queued (the push failed), of the
                // container's module.
                unsafe { serving::free(task, &s.container, &self.alloc, &node.ipc.main) };
            }
            return Err(format!("node {me}'s process queue is full; resubmit later"));
        }
        Ok(())
    }

    fn finished(&self, tasks: &[usize]) -> Vec<(u32, Reply)> {
        let Some(node) = self.node.upgrade() else {
            return Vec::new();
        };
        tasks
            .iter()
            .filter_map(|&t| self.serving.finish(t, &self.alloc, &node.ipc.main))
            .collect()
    }

    fn for_workers(&self) -> Option<Box<dyn PoolHost>> {
        Some(Box::new(ShareHost {
            node: self.node.clone(),
            alloc: self.alloc.clone(),
            serving: self.serving.clone(),
        }))
    }

    fn complete(&self, back: Outgoing, outcome: Result<Reply, RemoteError>) {
        let Ok(sent) = back.downcast::<Sent>() else {
            return;
        };
        let Some(node) = self.node.upgrade() else {
            return;
        };
        // A broadcast completes with its last replica: container 0's reply
        // loads first, the others are combined into it after.
        let (outcome, others) = match &sent.bcast {
            None => (outcome, Vec::new()),
            Some((b, i)) => match b.gather(*i, outcome) {
                // Replicas still out.
                None => return,
                Some(Ok(mut replies)) => {
                    let first = replies.remove(0);
                    (Ok(first), replies)
                }
                Some(Err(why)) => (Ok(Reply::failed(why)), Vec::new()),
            },
        };
        let task = sent.task as *mut TaskHeader;
        // SAFETY: the block stays mapped (the main segment lives as long as
        // the runtime); only read, to see whether it still holds our task.
        let (magic, now) = unsafe { ((*task).magic, (*task).generation) };
        if magic != chi_sdk::task::TASK_MAGIC || u32::from(now) != sent.generation {
            return;
        }
        let (rc, msg) = match outcome {
            Ok(reply) if reply.result != code::OK && reply.body.is_empty() => {
                (reply.result, Some(reply.message))
            }
            Ok(reply) => {
                // What the client left in the error field is not ours to
                // free, nor a buffer to load the reply's message into: the
                // load starts from an empty one.
                // SAFETY: our task (generation checked), which nobody runs:
                // the worker handed it over when it sent it; the field is
                // plain data.
                unsafe { std::ptr::addr_of_mut!((*task).error).write(ShmString::new()) };
                // SAFETY: as above.
                let loaded = unsafe { codec::load_out(&sent.container, task, &reply.body) };
                // The load stored the message in the header too (before any
                // failure of the outputs' load); the completion writes its
                // own (and frees it when nobody reads it), so the loaded
                // copy goes, whether the rest loaded or not.
                // SAFETY: our task, as above; its error field is empty or
                // the string the load just allocated.
                let _ = unsafe { (*task).error.free(&self.alloc) };
                match loaded {
                    Ok(()) => {
                        // SAFETY: our task, as above.
                        match unsafe { self.combine(&node, &sent, task, &others) } {
                            Ok(()) => (reply.result, Some(reply.message)),
                            Err(why) => (code::FAILED, Some(why)),
                        }
                    }
                    Err(e) if reply.result == code::OK => (code::FAILED, Some(e.to_string())),
                    Err(_) => (reply.result, Some(reply.message)),
                }
            }
            Err(e) => (code::FAILED, Some(e.to_string())),
        };
        let c = &sent.container;
        let del = c.module.api.del.map(|d| (d, c.state));
        let waiter = Outcome {
            alloc: &self.alloc,
            stats: None,
            main: &node.ipc.main,
        }
        .complete(task, sent.generation, rc, msg, del);
        if waiter != 0 {
            // A subtask: its parent coroutine waits on a worker's thread.
            wake_from_outside(&node.workers(), &node.ipc.queue, waiter);
        }
    }
}

/// What a node knows of a pool over the cluster; `None` for a pool of
/// this node alone.
fn spec_of(pool: &Pool) -> Option<PoolSpec> {
    let placement = pool.placement.as_ref()?;
    Some(PoolSpec {
        id: pool.id.0,
        module: pool.module.clone(),
        name: pool.name.clone(),
        args: pool.args.clone(),
        nodes: placement.nodes().iter().map(|n| n.0).collect(),
    })
}
