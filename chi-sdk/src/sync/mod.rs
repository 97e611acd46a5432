//! Locks for module code that runs in the runtime's coroutines: [`CoMutex`]
//! and [`CoRwLock`] (seed: `chi::CoMutex`, `chi::CoRwLock`).
//!
//! A handler runs in a stackful coroutine on a worker thread that runs many
//! tasks in turn. A `std::sync::Mutex` held across a yield (or a wait for a
//! subtask) makes every other task that wants it block the *worker thread*:
//! with one worker that is a deadlock, with several it stalls every task of
//! the blocked worker. These locks suspend the *task* instead.
//!
//! # Design
//!
//! * **Waiting suspends the coroutine.** A task that cannot take a lock joins
//!   the lock's queue with its token ([`current_task`]) and blocks
//!   ([`block_current`]); the worker runs other tasks meanwhile. Whoever
//!   releases the lock hands it over and wakes the task ([`wake_task`]).
//!   Wake-ups may be spurious: a waiter loops until its own `granted` flag is
//!   set.
//! * **Direct hand-off, FIFO, no barging.** On release the lock goes straight
//!   to the first waiter(s) in arrival order, before they run: a task that
//!   comes along meanwhile (or the releaser, locking again at once) finds it
//!   taken and queues behind them. A task that asks while others wait queues,
//!   even if the lock happens to be free of holders.
//! * **Readers share, writers exclude, writers are not starved.** Readers
//!   that reach the head of the queue together are let in together; a waiting
//!   writer stops every later reader, so a stream of readers cannot hold it off.
//! * **Task graphs share a lock (seed: TaskNode grouping).** The holder of a
//!   lock is a *group*: the task graph of the task that took it (its
//!   [`TaskNode`](crate::types::TaskNode) `major`, shared by a task and every
//!   subtask under it). A task of the holding graph gets the lock at once, in
//!   any mode, even past waiters, counted: the lock is released when every
//!   guard of the graph is gone. So a handler that holds a lock and waits for
//!   a subtask that takes the same lock does not deadlock, on one worker or
//!   many. A read→write upgrade by the graph (it holds the read lock, one of
//!   its tasks asks for the write lock) waits only for the *other* graphs'
//!   readers, ahead of every waiter of another graph. A task whose node has no
//!   major (0) is a graph of its own.
//! * **Outside a task** (client programs, tests, a thread a module started, a
//!   monitor) the holder is the calling thread, and waiting parks the thread
//!   ([`std::thread::park`]); the same rules hold. A task waiting behind a
//!   thread re-checks every millisecond: a thread that is not a worker cannot
//!   wake a task.
//! * **State.** Holders and waiters live under a short `std::sync::Mutex`,
//!   held only to update them, never across a block or a wake-up. Guards are
//!   not `Send`: a task's guard is released on its worker, which delivers the
//!   wake-ups. There is no poisoning: a handler that panics holding a guard
//!   releases it while unwinding.
//!
//! # The aliasing rule
//!
//! Because a task graph shares its lock, several tasks of one graph may hold
//! guards of the same lock at once — a parent and the subtask it waits for,
//! or sibling subtasks — and they see one another's changes (a subtask that
//! re-enters sees what its parent wrote; the parent, after waiting, sees what
//! the subtask wrote). The guards deref through the lock's cell each time
//! they are used, so a guard that is merely kept alive across a wait claims
//! nothing; but Rust's aliasing rules still hold for the graph as a whole, and
//! the lock cannot enforce them between the graph's tasks. So, within one
//! graph:
//!
//! * do not keep a reference obtained from a guard (`&mut *guard`,
//!   `&guard.field`) across a point where another task of the graph may use
//!   the lock: a yield, a sleep, a wait for a subtask, a submission;
//! * do not let two tasks of the graph touch the data at the same time: a
//!   parent that holds the lock touches the data only while its subtasks
//!   that take the lock are not running (before it submits them, after it
//!   waited for them), and sibling subtasks that may run at once on
//!   different workers do not both take it.
//!
//! Between different graphs (and different threads) the locks exclude as
//! usual, and nothing of this applies.
//!
//! The task-graph id comes from the task's header. Clients stamp it from a
//! per-runtime counter; two graphs with the same major (a client that forged
//! or reused one) share every lock.
//!
//! # Where not to lock
//!
//! In a monitor (no task runs there: a lock held by a task of the same worker
//! would park the worker thread for good): use the `try_` forms. And not
//! while holding a `std::sync` lock or anything else that ties the worker
//! thread.
//!
//! [`current_task`]: crate::container::current_task
//! [`block_current`]: crate::container::block_current
//! [`wake_task`]: crate::container::wake_task

mod core;
mod mutex;
mod rwlock;
#[cfg(test)]
mod tests;

pub use mutex::{CoMutex, CoMutexGuard};
pub use rwlock::{CoRwLock, CoRwLockReadGuard, CoRwLockWriteGuard};
