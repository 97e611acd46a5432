//! Subtasks run inline: a handler that waits for a subtask still in its
//! worker's inbox runs it at once on its own coroutine's stack, the way a
//! work-stealing join helps while it waits, instead of blocking and
//! having the worker start the subtask on a coroutine of its own.
//!
//! # Design
//!
//! * **When.** The module side asks through the `run_inline` service when a
//!   handler is about to block in a wait for subtasks with no deadline
//!   (`Client::wait` and `wait_all`, `PendingSet::wait_all`), naming the
//!   first subtask not done. The subtask runs inline only if it is in this
//!   worker's inbox (not started), the running coroutine is its waiter, it
//!   is not periodic or fire-and-forget, neither it nor its parent is
//!   cancelled (a cancelled parent cancels it, as its wait loop would), its
//!   pool and container
//!   resolve, its container's `Monitor(LocalSchedule)` keeps it here, the
//!   runtime is not stopping, and the stack has room (below). Otherwise
//!   nothing changes: the handler blocks and the worker takes the subtask
//!   from the inbox as before (a subtask that Monitor sent elsewhere goes
//!   back to its place in the inbox, and the worker asks Monitor again).
//! * **What stays the same.** `submit` stamped the task node (major,
//!   depth plus one, the waiter's token) and checked the depth limit; the
//!   subtask runs with its own task node and header as the running task
//!   (what its own subtasks, `is_cancelled` and `task_node` see) but with
//!   the coroutine's token, so whatever wakes it wakes the coroutine. It
//!   ends as any task (`Outcome::complete`); its waiter runs and looks at
//!   its state next, so no wake-up is sent.
//! * **Stack room.** Task stacks are mapped at twice their size
//!   (`crate::coroutine::mapped_size`); a subtask runs inline only if the
//!   stack pointer is at least its container's stack size plus
//!   `INLINE_MARGIN` above the stack's limit, so it never has less stack
//!   than on a coroutine of its own. A chain of subtasks runs inline until
//!   the stack is used down to that, then continues on a new coroutine.
//! * **Blocking inline.** A subtask that blocks inline (a lock, a sleep, a
//!   subtask it cannot run inline) suspends the whole coroutine: its parent
//!   waits for it anyway. The coroutine keeps its chain of inline subtasks
//!   ([`super::frames`]): they are listed as suspended while it is parked,
//!   and a cancelled parent cancels its inline subtask when the coroutine
//!   is resumed, as its wait loop would have.
//! * **Counters.** `live` counts coroutines, so an inline subtask adds none;
//!   `completed` counts it as any task.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chi_sdk::abi::{ErrorBuf, LaneId, MonitorMode, RunCtx};
use chi_sdk::shm::Allocator;
use chi_sdk::task::{TaskHeader, code, flags};
use chi_sdk::types::PoolId;

use super::frames::Frame;
use super::outcome::Outcome;
use super::pools::PoolCache;
use super::sched::{Current, Helper, Local, Peers, Sub};
use super::supervision::WorkerStats;
use crate::pool::Container;
use crate::state::NodeState;

/// Stack an inline subtask needs beyond its container's stack size: the
/// frames of the wait, this run and the module's entry glue.
pub(crate) const INLINE_MARGIN: usize = 16 << 10;

/// Inbox entries looked at from each end for the awaited subtask.
const SEARCH: usize = 32;

/// What a worker runs subtasks inline with (its [`Helper`]); the worker
/// finds its containers through it too.
pub(crate) struct Inline {
    /// The worker's copy of the pool table.
    pub(crate) pools: RefCell<PoolCache>,
    /// The worker's allocator handle (error messages).
    alloc: Allocator,
    /// The node.
    node: Arc<NodeState>,
}

impl Inline {
    /// The helper of a worker of `node` (its `stats`, its allocator handle
    /// `alloc`), and the worker's [`Local`] that calls it.
    pub(crate) fn with_local(
        node: &Arc<NodeState>,
        stats: Arc<WorkerStats>,
        peers: Peers,
        alloc: Allocator,
    ) -> (Rc<Inline>, Box<Local>) {
        let inline = Rc::new(Inline {
            pools: RefCell::new(PoolCache::default()),
            alloc,
            node: node.clone(),
        });
        let local = Local::new(
            stats,
            peers,
            node.ipc.queue.clone(),
            &node.ipc.main,
            node.config.tasks.max_depth,
            inline.clone(),
        );
        (inline, local)
    }
}

/// The context a task of container `c` of pool `pool` runs with on worker
/// `worker` (`runtime`: its coroutine's yielder).
#[inline]
pub(crate) fn run_ctx(worker: u32, c: &Container, pool: PoolId, runtime: *mut c_void) -> RunCtx {
    RunCtx {
        worker_id: worker,
        route_lane: 0,
        est_load_us: 0.0,
        pool_id: pool,
        container_id: c.id,
        runtime,
        queues: c.queues.as_ptr(),
        num_queues: c.queues.len() as u32,
        route_container: u32::MAX,
        pool_containers: 0,
    }
}

/// Where `task` is in `inbox`: at one end (the newest subtask, or the
/// oldest one of a fan-out waited for in order), else among [`SEARCH`]
/// entries from each end.
#[inline]
fn find(inbox: &VecDeque<Sub>, task: *mut TaskHeader) -> Option<usize> {
    let n = inbox.len();
    match (inbox.back(), inbox.front()) {
        (Some(b), _) if b.0 == task => Some(n - 1),
        (_, Some(f)) if f.0 == task => Some(0),
        (None, _) => None,
        _ => inbox
            .iter()
            .rev()
            .take(SEARCH)
            .position(|s| s.0 == task)
            .map(|k| n - 1 - k)
            .or_else(|| inbox.iter().take(SEARCH).position(|s| s.0 == task)),
    }
}

/// Bytes of stack between the caller's frame and `limit`.
#[inline(always)]
fn stack_room(limit: usize) -> usize {
    let probe = 0u8;
    (std::hint::black_box(&probe) as *const u8 as usize).saturating_sub(limit)
}

impl Helper for Inline {
    fn run_inline(&self, l: &Local, task: *mut TaskHeader) -> bool {
        let cur = l.current.get();
        if cur.token == 0 || cur.yielder.is_null() || cur.stack_limit == 0 {
            return false;
        }
        let Some((idx, generation)) = ({
            let inbox = l.inbox.borrow();
            find(&inbox, task).map(|i| (i, inbox[i].1))
        }) else {
            return false;
        };
        // SAFETY: the inbox holds only tasks `submit` checked (in bounds and
        // aligned in the main segment, which stays mapped, with a task
        // header); nothing runs them while they are there.
        let h = unsafe { &*task };
        if u32::from(h.generation) != generation
            || h.task_node.waiter != cur.token
            || h.flags & (flags::FIRE_AND_FORGET | flags::PERIODIC) != 0
            || self.node.stopping()
        {
            return false;
        }
        // A cancelled parent cancels the subtasks it waits for (what its wait
        // loop does when it blocks), and a cancelled subtask does not run: the
        // worker ends it.
        // SAFETY: the running task's header, live while it runs.
        if h.is_cancelled() || (!cur.task.is_null() && unsafe { &*cur.task }.is_cancelled()) {
            h.cancel();
            return false;
        }
        self.pools.borrow_mut().refresh(&self.node.pools);
        let Ok((pool_id, container)) = self.pools.borrow().container_of(h) else {
            return false;
        };
        let size = match container.stack_size {
            0 => self.node.config.coroutine.stack_size,
            s => s,
        };
        if stack_room(cur.stack_limit) < size + INLINE_MARGIN {
            return false;
        }
        let sub = l.inbox.borrow_mut().remove(idx);
        let mut ctx = run_ctx(l.worker, &container, pool_id, std::ptr::null_mut());
        if !h.is_routed()
            && let Some(monitor) = container.module.api.monitor
            && !container.queues.is_empty()
        {
            ctx.route_lane = LaneId::HERE.0;
            // SAFETY: the container's state and the checked task are live; the
            // monitor only writes `ctx` (routing is by returned lane).
            let rc = unsafe {
                monitor(
                    container.state,
                    MonitorMode::LocalSchedule as u32,
                    task,
                    &mut ctx,
                )
            };
            // A monitor that failed is logged when the worker dispatches the
            // subtask; it does not run inline.
            if rc != chi_sdk::task::code::OK || LaneId(ctx.route_lane) != LaneId::HERE {
                // The worker routes it: back to its place.
                if let Some(sub) = sub {
                    let mut inbox = l.inbox.borrow_mut();
                    let at = idx.min(inbox.len());
                    inbox.insert(at, sub);
                }
                return false;
            }
            ctx.route_lane = 0;
        }
        ctx.runtime = cur.yielder as *mut c_void;
        let frame = Frame {
            parent: cur.task,
            task,
            generation,
            listed: Cell::new(false),
            outer: cur.inline,
        };
        l.current.set(Current {
            node: h.task_node,
            task,
            inline: &frame,
            ..cur
        });
        let mut err = ErrorBuf::default();
        // SAFETY: the container outlives the call (held here), the task was
        // checked by `submit` and taken from the inbox (nothing else runs it),
        // and `ctx`/`err` live on this stack.
        let rc = unsafe { (container.module.api.run)(container.state, task, &mut ctx, &mut err) };
        // The parent runs again (a suspension in between left `current` as it
        // found it: see `sched::suspend`).
        l.current.set(cur);
        if frame.listed.get() {
            l.stats.unlist_suspended(task as u64);
            l.inline_parked.set(l.inline_parked.get() - 1);
            // Relaxed: a monitoring figure only this worker's thread writes
            // (`Worker::publish_blocked` stores it whole at the next park).
            let b = &l.stats.blocked;
            b.store(
                b.load(Ordering::Relaxed).saturating_sub(1),
                Ordering::Relaxed,
            );
        }
        let msg = (rc != code::OK).then(|| err.as_str().to_owned());
        let outcome = Outcome {
            alloc: &self.alloc,
            stats: Some(&l.stats),
            main: &self.node.ipc.main,
        };
        // Its waiter is the running coroutine, which looks at the subtask's
        // state next: no wake-up.
        let _waiter = outcome.complete(task, generation, rc, msg, None);
        true
    }
}
