//! A worker's tasks between their steps: which are ready, which are blocked
//! and on what, the subtasks handlers submit, and the wake-ups that move a
//! blocked task back to ready — from this worker or from another.
//!
//! # Design
//!
//! * **Slots and tokens.** Every live coroutine of a worker sits in a slot of
//!   the worker's `Slots`. Its *token* names the worker and the slot
//!   (`token`); it is what a blocked task is woken by. Tokens are not
//!   unique over time (a slot is reused), so a stale token costs at most a
//!   spurious wake-up: every wait of the runtime loops on its condition.
//! * **Ready, blocked, timed.** A task that yields (`yield_now`) stays
//!   ready and is resumed in turn. A task that blocks (waiting for a
//!   subtask, a lock, a timer) leaves the ready list and costs nothing until
//!   a wake-up names its token, or its timer fires (`Timers`). A worker
//!   with nothing ready and nothing in its lanes sleeps on its doorbell
//!   until the next timer.
//! * **Wake-ups.** A wake-up for a task of this worker, made on this thread
//!   (a subtask that completed here, a lock released here), goes to
//!   `Local::wakes`, read by the worker after the step. One made on another
//!   worker's thread is posted to this worker's mailbox
//!   (`WorkerStats::post`) and rings its doorbell
//!   ([`chi_sdk::queue::MultiLaneQueue::wake_consumer`]); the worker drains the
//!   mailbox between steps, so a wake-up never races the step it follows.
//!   A wake-up that arrives while its task still runs (before it blocked)
//!   is remembered in the slot and turns the block into a yield.
//! * **Subtasks.** A handler's subtask is handed over by the `submit`
//!   service: the runtime stamps its task node under the handler's (same
//!   major, depth + 1, bounded by `tasks.max_depth`) with the handler's token
//!   as its waiter, and puts it in this worker's inbox (`Local::inbox`).
//!   The worker takes it from there like a task popped from a lane (Monitor
//!   may route it to another worker's lane). A subtask's completion wakes
//!   its waiter; so a handler that waits for a subtask of its own container
//!   on a one-worker runtime lets the worker run the subtask meanwhile.
//!   Most often the handler does not get that far: when it waits for one
//!   subtask still in the inbox, the subtask runs at once on the handler's
//!   own stack ([`super::inline`]).
//! * **`Local`** is the part of the worker that the services reach while a
//!   task of the worker runs (module code cannot reach the worker itself,
//!   which is inside the step): a thread-local pointer to it is set while
//!   the worker runs.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use chi_sdk::task::{TASK_MAGIC, TaskHeader};
use chi_sdk::types::TaskNode;
use corosensei::Yielder;

use chi_sdk::queue::MultiLaneQueue;
use chi_sdk::shm::Segment;

use super::frames::{self, Frame};
use super::supervision::WorkerStats;
pub(crate) use super::timers::Timers;

/// How a task's coroutine gives the worker back control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// `yield_now`: run again in turn.
    Ready,
    /// Blocked until woken, or until the instant passes.
    Block(Option<Instant>),
}

/// The yielder of a task's coroutine.
pub(crate) type TaskYielder = Yielder<(), Suspend>;

/// Bits of a token that name the slot.
const SLOT_BITS: u32 = 20;
/// Slots a worker has at most (live coroutines; `coroutine.max_live` is far
/// below, but subtasks may go past it).
pub(crate) const MAX_SLOTS: u32 = (1 << SLOT_BITS) - 1;

/// The token of slot `slot` of worker `worker` (never 0).
pub(crate) fn token(worker: u32, slot: u32) -> u32 {
    ((worker + 1) << SLOT_BITS) | slot
}

/// The worker and slot a token names (`None` for 0).
pub(crate) fn split(token: u32) -> Option<(u32, u32)> {
    let w = token >> SLOT_BITS;
    (w != 0).then(|| (w - 1, token & MAX_SLOTS))
}

/// Wakes the task of `token` from another thread than its worker's (the
/// peer thread, or a worker that took the reply of a remote subtask,
/// completing it): posts the wake-up to its worker's mailbox and rings it.
pub(crate) fn wake_from_outside(workers: &[Arc<WorkerStats>], queue: &MultiLaneQueue, token: u32) {
    let Some((w, slot)) = split(token) else {
        return;
    };
    if let Some(p) = workers.iter().find(|p| p.id == w) {
        p.post(slot);
        p.ring(queue);
    }
}

/// The waiter of a task of another node that this node runs
/// (`remote_host.rs`): no coroutine waits for it. The worker that
/// completes it sends its reply ([`crate::cluster::wire`]), or, for a
/// broadcast's replica of this node's own, tells the peer thread
/// ([`crate::cluster::peer::PoolAsker::served`]), instead of waking a slot.
/// No worker has this token: worker ids stay far below `2^12 - 2`.
pub(crate) const PEER_WAITER: u32 = u32::MAX;

/// A mailbox entry that wakes every blocked task of the worker (after a
/// cancellation, a pool's destruction, at stop): each looks at its
/// condition again.
pub(crate) const SWEEP: u32 = u32::MAX;

/// Asks every worker to wake all its blocked tasks ([`SWEEP`]).
pub(crate) fn sweep_all(workers: &[Arc<WorkerStats>], queue: &MultiLaneQueue) {
    for w in workers {
        w.post(SWEEP);
        w.ring(queue);
    }
}

/// Where a worker finds the others (the node state's list, which grows when
/// a worker is replaced).
pub(crate) type Peers = Box<dyn Fn() -> Vec<Arc<WorkerStats>>>;

/// The task running on this thread now.
#[derive(Clone, Copy)]
pub(crate) struct Current {
    /// Its token (0: no task runs).
    pub(crate) token: u32,
    /// Its task node.
    pub(crate) node: TaskNode,
    /// Its task's header.
    pub(crate) task: *mut TaskHeader,
    /// Its coroutine's yielder.
    pub(crate) yielder: *const TaskYielder,
    /// The lowest usable address of its coroutine's stack (0: unknown).
    pub(crate) stack_limit: usize,
    /// The subtasks running inline on its coroutine, innermost first (null:
    /// none; then `task` is the coroutine's own task, else the innermost
    /// subtask's).
    pub(crate) inline: *const Frame,
}

impl Current {
    const NONE: Current = Current {
        token: 0,
        node: TaskNode::root(0),
        task: std::ptr::null_mut(),
        yielder: std::ptr::null(),
        stack_limit: 0,
        inline: std::ptr::null(),
    };
}

/// A subtask waiting in a worker's inbox: its header and generation.
pub(crate) type Sub = (*mut TaskHeader, u32);

/// What runs a subtask inline for the `run_inline` service
/// ([`super::inline`], which needs the pool table: behind this trait, so
/// that the services do not import it).
pub(crate) trait Helper {
    /// Runs `task`, a subtask the running task of `local` is about to wait
    /// for, on the running coroutine's stack if it can; returns whether it
    /// did.
    fn run_inline(&self, local: &Local, task: *mut TaskHeader) -> bool;
}

/// The `run_inline` service (see [`Helper`]).
pub(crate) fn run_inline(task: *mut TaskHeader) -> bool {
    with_local(|l| l.helper.run_inline(l, task)).unwrap_or(false)
}

/// What the services reach of a worker while one of its tasks runs (see the
/// module doc).
pub(crate) struct Local {
    /// The worker's id.
    pub(crate) worker: u32,
    /// The running task.
    pub(crate) current: Cell<Current>,
    /// Subtasks submitted by this worker's tasks, not yet taken.
    pub(crate) inbox: RefCell<VecDeque<Sub>>,
    /// Slots of this worker woken on its own thread during a step.
    pub(crate) wakes: RefCell<Vec<u32>>,
    /// Subtasks run inline that suspended and have not ended: parked as
    /// well (`WorkerStats::blocked` counts them; [`super::inline`]).
    pub(crate) inline_parked: Cell<u64>,
    /// A task cancelled another during the step: every worker's blocked
    /// tasks look again, once, after the step ([`Local::after_step`]).
    pub(crate) sweep: Cell<bool>,
    /// The other workers, on demand.
    peers_of: Peers,
    /// The process queue (to ring another worker's doorbell).
    queue: MultiLaneQueue,
    /// The workers, by id (refreshed when a token names one not in it).
    peers: RefCell<Vec<Arc<WorkerStats>>>,
    /// What the worker publishes.
    pub(crate) stats: Arc<WorkerStats>,
    /// Runs subtasks inline ([`super::inline`]).
    helper: Rc<dyn Helper>,
    main_base: usize,
    main_len: usize,
    max_depth: u32,
}

thread_local! {
    static LOCAL: Cell<*const Local> = const { Cell::new(std::ptr::null()) };
}

impl Local {
    /// The part of the worker of `stats` the services reach.
    pub(crate) fn new(
        stats: Arc<WorkerStats>,
        peers_of: Peers,
        queue: MultiLaneQueue,
        main: &Segment,
        max_depth: u32,
        helper: Rc<dyn Helper>,
    ) -> Box<Local> {
        Box::new(Local {
            worker: stats.id,
            current: Cell::new(Current::NONE),
            inbox: RefCell::new(VecDeque::new()),
            wakes: RefCell::new(Vec::new()),
            sweep: Cell::new(false),
            inline_parked: Cell::new(0),
            main_base: main.base() as usize,
            main_len: main.size() as usize,
            max_depth,
            peers: RefCell::new(peers_of()),
            peers_of,
            queue,
            stats,
            helper,
        })
    }

    /// Makes `self` the thread's worker for the services, until the returned
    /// guard drops.
    pub(crate) fn install(&self) -> Installed {
        LOCAL.with(|l| l.set(self));
        Installed
    }

    /// Sets the running task (token 0: none).
    #[inline]
    pub(crate) fn set_current(&self, c: Current) {
        self.current.set(c);
    }

    /// Clears the running task.
    #[inline]
    pub(crate) fn clear_current(&self) {
        self.current.set(Current::NONE);
    }

    /// After a step: the sweep a cancellation asked for.
    #[inline]
    pub(crate) fn after_step(&self) {
        if self.sweep.get() {
            self.sweep.set(false);
            sweep_all(&(self.peers_of)(), &self.queue);
        }
    }

    /// Posts a wake-up for `token` of another worker (or of this one).
    fn wake(&self, token: u32) {
        let Some((w, slot)) = split(token) else {
            return;
        };
        if w == self.worker {
            self.wakes.borrow_mut().push(slot);
            return;
        }
        let peer = {
            let mut peers = self.peers.borrow_mut();
            if w as usize >= peers.len() {
                *peers = (self.peers_of)();
            }
            peers.get(w as usize).cloned()
        };
        if let Some(p) = peer {
            p.post(slot);
            p.ring(&self.queue);
        }
    }

    /// Takes `task` as a subtask of the running task (the `submit` service).
    fn submit(&self, task: *mut TaskHeader) -> Result<(), String> {
        let cur = self.current.get();
        if cur.token == 0 {
            return Err(
                "no task runs on this thread: submit subtasks from a handler (or a monitor) of a \
                 task the runtime runs"
                    .into(),
            );
        }
        let addr = task as usize;
        if addr < self.main_base
            || addr + size_of::<TaskHeader>() > self.main_base + self.main_len
            || !addr.is_multiple_of(align_of::<TaskHeader>())
        {
            return Err(format!(
                "the subtask at {addr:#x} is not a task of the runtime's main segment; allocate \
                 it with the client of RunCtx::client"
            ));
        }
        // SAFETY: in bounds and aligned in the main segment, which stays mapped;
        // the module allocated and filled the task and hands it over now.
        let h = unsafe { &mut *task };
        if h.magic != TASK_MAGIC {
            return Err(
                "the subtask has no task header (bad magic); build it with its task type's \
                        `new`"
                    .into(),
            );
        }
        let depth = cur.node.minor + 1;
        if depth > self.max_depth {
            return Err(format!(
                "a subtask at depth {depth} is deeper than tasks.max_depth = {} (the task graph \
                 of major {} recurses too deep); raise tasks.max_depth in the runtime's \
                 configuration or bound the recursion",
                self.max_depth, cur.node.major
            ));
        }
        h.task_node = TaskNode {
            major: cur.node.major,
            minor: depth,
            waiter: cur.token,
        };
        h.client_id = 0;
        h.mark_queued();
        let generation = u32::from(h.generation);
        tracing::trace!(
            worker = self.worker,
            major = cur.node.major,
            depth,
            pool = %h.pool_id,
            method = h.method,
            "subtask submitted"
        );
        self.inbox.borrow_mut().push_back((task, generation));
        Ok(())
    }
}

/// Keeps a [`Local`] installed; uninstalls it on drop.
pub(crate) struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        LOCAL.with(|l| l.set(std::ptr::null()));
    }
}

/// The worker installed on this thread, if any.
fn with_local<R>(f: impl FnOnce(&Local) -> R) -> Option<R> {
    let p = LOCAL.with(Cell::get);
    // SAFETY: set by `Local::install` to a `Local` the worker keeps boxed while
    // it runs, and cleared by the guard before the worker goes.
    (!p.is_null()).then(|| f(unsafe { &*p }))
}

/// The running task of this thread: its token and node.
pub(crate) fn current() -> Option<Current> {
    with_local(|l| l.current.get()).filter(|c| c.token != 0)
}

/// Suspends the running task with `how`; returns `false` outside a task.
pub(crate) fn suspend(how: Suspend) -> bool {
    let p = LOCAL.with(Cell::get);
    if p.is_null() {
        return false;
    }
    // SAFETY: set by `Local::install` to the worker's boxed `Local`, which
    // outlives every coroutine the worker resumes (see `with_local`).
    let l = unsafe { &*p };
    let c = l.current.get();
    if c.token == 0 || c.yielder.is_null() {
        return false;
    }
    if !c.inline.is_null() {
        // SAFETY: the chain of the running coroutine; its frames live on this
        // stack below this call.
        let n = unsafe { frames::before_suspend(c.inline, &l.stats) };
        l.inline_parked.set(l.inline_parked.get() + n);
    }
    // SAFETY: the yielder of the coroutine running on this thread now
    // (set by the worker for the step, cleared after it); suspending
    // returns control to the worker's `resume`.
    unsafe { (*c.yielder).suspend(how) };
    // The worker resumed the coroutine with its own task as the running one;
    // the task on top of its stack may be a subtask running inline.
    l.current.set(c);
    if !c.inline.is_null() {
        // SAFETY: as above; the frames' tasks are the running subtasks.
        unsafe { frames::pass_cancel(c.inline) };
    }
    true
}

/// Called by a task's coroutine when it starts: records its yielder as the
/// running task's.
pub(crate) fn started(yielder: &TaskYielder) {
    with_local(|l| {
        let mut c = l.current.get();
        c.yielder = yielder;
        l.current.set(c);
    });
}

/// Wakes the task of `token` through worker `local` (outside a step).
pub(crate) fn wake_from(local: &Local, token: u32) {
    local.wake(token);
}

/// Wakes the task of `token` (from any worker's thread; ignored elsewhere).
pub(crate) fn wake(token: u32) {
    if with_local(|l| l.wake(token)).is_none() && token != 0 {
        tracing::debug!(
            token,
            "a wake-up from a thread that is not a worker's was dropped; wake tasks from tasks"
        );
    }
}

/// Cancels `task` (the `cancel` service): marks it and has every worker look
/// at its blocked tasks again.
pub(crate) fn cancel(task: *mut TaskHeader) -> Result<(), String> {
    with_local(|l| {
        let addr = task as usize;
        if addr < l.main_base
            || addr + size_of::<TaskHeader>() > l.main_base + l.main_len
            || !addr.is_multiple_of(align_of::<TaskHeader>())
        {
            return Err(format!(
                "{addr:#x} is not a task of the runtime's main segment"
            ));
        }
        // SAFETY: in bounds and aligned in the main segment, which stays
        // mapped; only the state word is changed, atomically.
        let h = unsafe { &*task };
        if h.magic == TASK_MAGIC && h.cancel() {
            // One sweep after the step, however many tasks it cancels.
            l.sweep.set(true);
        }
        Ok(())
    })
    .unwrap_or_else(|| Err("tasks are cancelled from a handler the runtime runs".into()))
}

/// Takes `task` as a subtask of the task running on this thread.
pub(crate) fn submit(task: *mut TaskHeader) -> Result<(), String> {
    with_local(|l| l.submit(task)).unwrap_or_else(|| {
        Err(
            "subtasks are submitted from a handler the runtime runs, not from another thread"
                .into(),
        )
    })
}

/// What a slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Nothing.
    Free,
    /// Its task is being stepped.
    Running,
    /// In the ready list.
    Ready,
    /// Waiting for a wake-up (or its timer).
    Blocked,
}

/// A worker's slots (see the module doc): `T` is the parked coroutine.
pub(crate) struct Slots<T> {
    items: Vec<(Option<T>, SlotState, bool)>,
    free: Vec<u32>,
    /// Ready slots, in the order they became ready.
    pub(crate) ready: VecDeque<u32>,
    blocked: usize,
}

impl<T> Slots<T> {
    pub(crate) fn new() -> Slots<T> {
        Slots {
            items: Vec::new(),
            free: Vec::new(),
            ready: VecDeque::new(),
            blocked: 0,
        }
    }

    /// A free slot, marked running (its task is about to start).
    pub(crate) fn alloc(&mut self) -> Option<u32> {
        if let Some(s) = self.free.pop() {
            self.items[s as usize] = (None, SlotState::Running, false);
            return Some(s);
        }
        let s = u32::try_from(self.items.len())
            .ok()
            .filter(|&s| s < MAX_SLOTS)?;
        self.items.push((None, SlotState::Running, false));
        Some(s)
    }

    /// Frees slot `s` (its task ended).
    pub(crate) fn release(&mut self, s: u32) {
        self.items[s as usize] = (None, SlotState::Free, false);
        self.free.push(s);
    }

    /// Takes the parked task of ready slot `s` to step it.
    pub(crate) fn take(&mut self, s: u32) -> Option<T> {
        let it = self.items.get_mut(s as usize)?;
        if it.1 != SlotState::Ready {
            return None;
        }
        it.1 = SlotState::Running;
        it.2 = false;
        it.0.take()
    }

    /// Parks `t` in slot `s` after its step suspended with `how`. Returns
    /// whether it is blocked (not ready).
    pub(crate) fn park(&mut self, s: u32, t: T, blocked: bool) -> bool {
        let it = &mut self.items[s as usize];
        it.0 = Some(t);
        if blocked && !it.2 {
            it.1 = SlotState::Blocked;
            self.blocked += 1;
            true
        } else {
            it.1 = SlotState::Ready;
            it.2 = false;
            self.ready.push_back(s);
            false
        }
    }

    /// A wake-up for slot `s`: a blocked task becomes ready; one that runs
    /// remembers it (its block turns into a yield); others ignore it.
    pub(crate) fn wake(&mut self, s: u32) {
        let Some(it) = self.items.get_mut(s as usize) else {
            return;
        };
        match it.1 {
            SlotState::Blocked => {
                it.1 = SlotState::Ready;
                self.blocked -= 1;
                self.ready.push_back(s);
            }
            SlotState::Running => it.2 = true,
            SlotState::Free | SlotState::Ready => {}
        }
    }

    /// Wakes every blocked task ([`SWEEP`]).
    pub(crate) fn wake_all_blocked(&mut self) {
        for (i, it) in self.items.iter_mut().enumerate() {
            if it.1 == SlotState::Blocked {
                it.1 = SlotState::Ready;
                self.ready.push_back(i as u32);
            }
        }
        self.blocked = 0;
    }

    /// Blocked tasks.
    pub(crate) fn blocked(&self) -> usize {
        self.blocked
    }

    /// Every parked task, taken out (at stop and at retirement).
    pub(crate) fn drain_parked(&mut self) -> Vec<(u32, T)> {
        let mut out = Vec::new();
        for (i, it) in self.items.iter_mut().enumerate() {
            if let Some(t) = it.0.take() {
                out.push((i as u32, t));
                it.1 = SlotState::Running;
            }
        }
        self.ready.clear();
        self.blocked = 0;
        out
    }
}
