//! The state machine both locks share: who holds the lock and in which mode,
//! who waits, who may go next; and how a caller waits for its turn (see the
//! module doc of [`crate::sync`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;
use std::time::Duration;

use crate::container::{block_current, current_task, wake_task};

/// How often a task waiting behind a thread re-checks its turn (a thread that
/// is not a worker cannot wake a task).
pub(crate) const THREAD_POLL: Duration = Duration::from_millis(1);

/// The unit that holds a lock and re-enters it without waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Group {
    /// The tasks of one task graph (their task node's major).
    Graph(u64),
    /// A task whose node has no major: alone (its token).
    Task(u32),
    /// A thread outside any task (an id unique in the process).
    Thread(u64),
}

/// How a lock is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// With other groups' shared holds (a reader).
    Shared,
    /// Alone (a writer, a mutex).
    Exclusive,
}

/// Who asks: the group, and how it waits (a task's token, or `None` for the
/// calling thread).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caller {
    pub(crate) group: Group,
    pub(crate) task: Option<u32>,
}

impl Caller {
    /// The caller on this thread: the running task, or the thread.
    pub(crate) fn current() -> Caller {
        match current_task() {
            Some(t) => Caller {
                group: if t.node.major != 0 {
                    Group::Graph(t.node.major)
                } else {
                    Group::Task(t.token)
                },
                task: Some(t.token),
            },
            None => Caller {
                group: Group::Thread(thread_id()),
                task: None,
            },
        }
    }

    /// The calling thread, in `group` (tests play task graphs with threads).
    #[cfg(test)]
    pub(crate) fn thread_as(group: Group) -> Caller {
        Caller { group, task: None }
    }
}

/// An id of the calling thread, unique in the process.
fn thread_id() -> u64 {
    // Relaxed: only uniqueness matters (the read-modify-write gives it);
    // pairs with nothing.
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    ID.with(|id| *id)
}

/// A waiter's side of the hand-off.
#[derive(Debug)]
pub(crate) struct WaitCell {
    /// Set (under the state's mutex) when the lock is handed to the waiter.
    granted: AtomicBool,
    /// Whom to wake.
    wake: Wake,
}

#[derive(Debug)]
enum Wake {
    /// A task, by token.
    Task(u32),
    /// A parked thread.
    Thread(Thread),
}

impl WaitCell {
    fn wake(&self) {
        match &self.wake {
            Wake::Task(token) => wake_task(*token),
            Wake::Thread(t) => t.unpark(),
        }
    }

    fn is_granted(&self) -> bool {
        // Acquire: pairs with the Release store in `State::dispatch`, made
        // after the previous holder's release (under the same mutex), so the
        // previous holder's writes to the data are visible to the new one.
        self.granted.load(Ordering::Acquire)
    }
}

/// A group's holds.
#[derive(Debug)]
struct Hold {
    group: Group,
    shared: u32,
    exclusive: u32,
}

/// A queued request.
#[derive(Debug)]
struct Waiter {
    group: Group,
    mode: Mode,
    cell: Arc<WaitCell>,
}

/// Holders and waiters of a lock. Invariant: a group that holds in
/// [`Mode::Exclusive`] is the only holder.
#[derive(Debug)]
pub(crate) struct State {
    holds: Vec<Hold>,
    waiters: VecDeque<Waiter>,
    /// A thread (not a task) took or waited for the lock once: tasks that wait
    /// re-check their turn every [`THREAD_POLL`].
    threads: bool,
}

impl State {
    pub(crate) const fn new() -> State {
        State {
            holds: Vec::new(),
            waiters: VecDeque::new(),
            threads: false,
        }
    }

    fn hold(&self, group: Group) -> Option<usize> {
        self.holds.iter().position(|h| h.group == group)
    }

    /// Whether `group` may hold in `mode` given the holds alone (not the
    /// queue): a holding group always may read, and may write once it is the
    /// only holder; another group may read while nobody writes, write while
    /// nobody holds.
    fn compatible(&self, group: Group, mode: Mode) -> bool {
        match (self.hold(group).is_some(), mode) {
            (true, Mode::Shared) => true,
            (true, Mode::Exclusive) => self.holds.len() == 1,
            (false, Mode::Shared) => self.holds.iter().all(|h| h.exclusive == 0),
            (false, Mode::Exclusive) => self.holds.is_empty(),
        }
    }

    fn grant(&mut self, group: Group, mode: Mode) {
        let i = match self.hold(group) {
            Some(i) => i,
            None => {
                self.holds.push(Hold {
                    group,
                    shared: 0,
                    exclusive: 0,
                });
                self.holds.len() - 1
            }
        };
        let h = &mut self.holds[i];
        match mode {
            Mode::Shared => h.shared += 1,
            Mode::Exclusive => h.exclusive += 1,
        }
    }

    /// Takes the lock at once if allowed: a holding group re-enters past the
    /// queue; any other only when nobody waits (no barging).
    pub(crate) fn try_take(&mut self, group: Group, mode: Mode) -> bool {
        if matches!(group, Group::Thread(_)) {
            self.threads = true;
        }
        let holding = self.hold(group).is_some();
        let ok = (holding || self.waiters.is_empty()) && self.compatible(group, mode);
        if ok {
            self.grant(group, mode);
        }
        ok
    }

    /// Queues a request: at the back, or — for a holding group, which can only
    /// be waiting to upgrade — ahead of every group that does not hold.
    fn enqueue(&mut self, group: Group, mode: Mode, cell: Arc<WaitCell>) {
        let at = if self.hold(group).is_some() {
            self.waiters
                .iter()
                .position(|w| self.hold(w.group).is_none())
                .unwrap_or(self.waiters.len())
        } else {
            self.waiters.len()
        };
        self.waiters.insert(at, Waiter { group, mode, cell });
    }

    /// Drops one hold of `group` in `mode`, hands the lock on and returns the
    /// waiters to wake (after the mutex is released).
    pub(crate) fn release(&mut self, group: Group, mode: Mode) -> Vec<Arc<WaitCell>> {
        let Some(i) = self.hold(group) else {
            debug_assert!(false, "released a lock {group:?} does not hold");
            return Vec::new();
        };
        let h = &mut self.holds[i];
        match mode {
            Mode::Shared => h.shared -= 1,
            Mode::Exclusive => h.exclusive -= 1,
        }
        if h.shared == 0 && h.exclusive == 0 {
            self.holds.swap_remove(i);
        }
        self.dispatch()
    }

    /// Grants what the queue allows now, in order: a waiter of a holding group
    /// whenever it fits (an upgrade, or a task of a graph that queued before
    /// its graph got the lock: the graph may be waiting for it); every other
    /// waiter only once all before it went, so a waiting writer stops the
    /// readers behind it.
    fn dispatch(&mut self) -> Vec<Arc<WaitCell>> {
        let mut woken = Vec::new();
        let mut blocked = false;
        let mut i = 0;
        while i < self.waiters.len() {
            let (group, mode) = (self.waiters[i].group, self.waiters[i].mode);
            let holding = self.hold(group).is_some();
            if (holding || !blocked) && self.compatible(group, mode) {
                self.grant(group, mode);
                let w = self.waiters.remove(i).expect("index in range");
                // Release: pairs with the Acquire load in `WaitCell::is_granted`.
                w.cell.granted.store(true, Ordering::Release);
                woken.push(w.cell);
            } else {
                blocked = true;
                i += 1;
            }
        }
        woken
    }

    /// Takes the request of `cell` out of the queue (its wait was given up)
    /// and lets in whoever it held back.
    fn withdraw(&mut self, cell: &Arc<WaitCell>) -> Vec<Arc<WaitCell>> {
        self.waiters.retain(|w| !Arc::ptr_eq(&w.cell, cell));
        self.dispatch()
    }

    /// Waiters now.
    pub(crate) fn waiters(&self) -> usize {
        self.waiters.len()
    }

    /// Whether any group holds the lock.
    pub(crate) fn is_held(&self) -> bool {
        !self.holds.is_empty()
    }
}

/// A lock's state under its short mutex, and the waiting.
#[derive(Debug)]
pub(crate) struct Core {
    state: Mutex<State>,
}

impl Core {
    pub(crate) const fn new() -> Core {
        Core {
            state: Mutex::new(State::new()),
        }
    }

    /// The state, for a short update. Nothing panics while it is held
    /// (allocation failure aborts), so a poisoned mutex is still consistent.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the lock in `mode` for `caller` if that needs no wait.
    pub(crate) fn try_acquire(&self, caller: Caller, mode: Mode) -> bool {
        self.state().try_take(caller.group, mode)
    }

    /// Takes the lock in `mode` for `caller`, waiting for its turn: the task's
    /// coroutine blocks, or the thread parks.
    pub(crate) fn acquire(&self, caller: Caller, mode: Mode) {
        let (cell, poll) = {
            let mut s = self.state();
            if s.try_take(caller.group, mode) {
                return;
            }
            let cell = Arc::new(WaitCell {
                granted: AtomicBool::new(false),
                wake: match caller.task {
                    Some(token) => Wake::Task(token),
                    None => Wake::Thread(std::thread::current()),
                },
            });
            s.enqueue(caller.group, mode, cell.clone());
            // A thread that hands the lock to this task later has set the flag
            // by now: it holds or waits ahead of this request already (a thread
            // arriving later queues behind it).
            (cell, s.threads)
        };
        // Should the wait be unwound (a suspended coroutine dropped), the
        // request is withdrawn, or the lock handed to it released.
        let mut waiting = Waiting {
            core: self,
            group: caller.group,
            mode,
            cell,
            armed: true,
        };
        match caller.task {
            Some(_) => {
                let timeout = poll.then_some(THREAD_POLL);
                while !waiting.cell.is_granted() {
                    if !block_current(timeout) {
                        // Not in a task after all (cannot happen with a token):
                        // never spin hard.
                        std::thread::park_timeout(THREAD_POLL);
                    }
                }
            }
            None => {
                while !waiting.cell.is_granted() {
                    std::thread::park();
                }
            }
        }
        waiting.armed = false;
    }

    /// Drops one hold of `group` in `mode` and wakes whoever got the lock.
    pub(crate) fn release(&self, group: Group, mode: Mode) {
        let woken = self.state().release(group, mode);
        for c in woken {
            c.wake();
        }
    }
}

/// A request in the queue, withdrawn if its wait ends without the lock (the
/// waiting stack unwound).
struct Waiting<'a> {
    core: &'a Core,
    group: Group,
    mode: Mode,
    cell: Arc<WaitCell>,
    /// Cleared once the caller holds the lock.
    armed: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let woken = {
            let mut s = self.core.state();
            if self.cell.is_granted() {
                // Handed over meanwhile: give it back.
                s.release(self.group, self.mode)
            } else {
                s.withdraw(&self.cell)
            }
        };
        for c in woken {
            c.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell() -> Arc<WaitCell> {
        Arc::new(WaitCell {
            granted: AtomicBool::new(false),
            wake: Wake::Thread(std::thread::current()),
        })
    }

    fn abandon(core: &Core, group: Group, mode: Mode, cell: &Arc<WaitCell>) {
        drop(Waiting {
            core,
            group,
            mode,
            cell: cell.clone(),
            armed: true,
        });
    }

    /// A wait that ends without the lock (its stack unwound) withdraws its
    /// request, letting in those it held back, or gives back a lock handed
    /// to it meanwhile.
    #[test]
    fn an_abandoned_wait_withdraws_its_request_or_gives_the_lock_back() {
        let core = Core::new();
        let (a, b, c, d) = (
            Group::Graph(1),
            Group::Graph(2),
            Group::Graph(3),
            Group::Graph(4),
        );
        assert!(core.try_acquire(Caller::thread_as(a), Mode::Shared));
        let (wb, wc) = (cell(), cell());
        {
            let mut s = core.state();
            s.enqueue(b, Mode::Exclusive, wb.clone());
            s.enqueue(c, Mode::Shared, wc.clone());
        }
        // A leaves: the writer B gets in; the reader C, behind it, waits.
        core.release(a, Mode::Shared);
        assert!(wb.is_granted() && !wc.is_granted());
        core.release(b, Mode::Exclusive);
        assert!(wc.is_granted());
        // C reads; D queues to write, E to read behind it.
        let (wd, we) = (cell(), cell());
        {
            let mut s = core.state();
            s.enqueue(d, Mode::Exclusive, wd.clone());
            s.enqueue(Group::Graph(5), Mode::Shared, we.clone());
        }
        // D gives up: E joins C at once.
        abandon(&core, d, Mode::Exclusive, &wd);
        assert!(we.is_granted() && !wd.is_granted());
        assert_eq!(core.state().waiters(), 0);
        // A writer handed the lock as its wait is abandoned gives it back.
        let wf = cell();
        core.state()
            .enqueue(Group::Graph(6), Mode::Exclusive, wf.clone());
        core.release(c, Mode::Shared);
        core.release(Group::Graph(5), Mode::Shared);
        assert!(wf.is_granted());
        abandon(&core, Group::Graph(6), Mode::Exclusive, &wf);
        assert!(!core.state().is_held());
    }
}
