//! Waiting on many tasks at once: [`PendingSet`].
//!
//! A client that submits N tasks waits once: [`PendingSet::wait_all`] returns
//! when all are done, [`PendingSet::completions`] hands each back as it
//! finishes (in completion order, not submission order). In module code the
//! set belongs to the runtime's own client: the handler's coroutine sleeps
//! until one of its subtasks completes (each completion wakes it). A client
//! program spins briefly, then sleeps on the oldest unfinished task in short
//! slices and looks at the others between slices, with the runtime checks of
//! [`Client::wait`] on each slice.

use std::time::{Duration, Instant};

use crate::task::Task;

use super::task_ptr::Waitable;
use super::wait::SpinPhase;
use super::{CallError, Client, ClientError, Pending, TaskPtr};

/// Tasks of one type submitted together, waited for together.
pub struct PendingSet<'c, T: Task> {
    client: &'c Client,
    tasks: Vec<Option<Pending<'c, T>>>,
    left: usize,
    /// Where the next scan for a finished task starts (round robin).
    cursor: usize,
}

impl<T: Task> std::fmt::Debug for PendingSet<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSet")
            .field("tasks", &self.tasks.len())
            .field("left", &self.left)
            .finish()
    }
}

/// A task handed back by a set: its index and its outcome.
pub type Completed<T> = (usize, Result<TaskPtr<T>, CallError>);

/// Longest sleep of a client program between two looks at the set.
const MAX_SLICE: Duration = Duration::from_millis(1);

impl<'c, T: Task> PendingSet<'c, T> {
    /// An empty set of `client`'s tasks.
    pub fn new(client: &'c Client) -> PendingSet<'c, T> {
        PendingSet {
            client,
            tasks: Vec::new(),
            left: 0,
            cursor: 0,
        }
    }

    /// Adds a submitted task; returns its index (what
    /// [`completions`](Self::completions) reports it under).
    pub fn push(&mut self, task: Pending<'c, T>) -> usize {
        self.tasks.push(Some(task));
        self.left += 1;
        self.tasks.len() - 1
    }

    /// Tasks in the set, waited for or not.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether the set holds no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Tasks not handed back yet.
    pub fn remaining(&self) -> usize {
        self.left
    }

    /// Waits for every task; returns them in submission order, each as
    /// [`Pending::wait`] would (a failed task is freed and its error returned).
    ///
    /// The set is walked once, in order: the wait sleeps on the first task
    /// not complete until it is, then moves on (in module code each subtask's
    /// completion wakes the handler, which looks only at that first task), so
    /// waiting for N tasks costs O(N) looks. If the wait fails (the runtime
    /// died or is stopping), the first unfinished task reports that error and
    /// the others a [`ClientError::Refused`] naming it; they stay allocated.
    pub fn wait_all(mut self) -> Vec<Result<TaskPtr<T>, CallError>> {
        let start = Instant::now();
        let mut failed: Option<(usize, ClientError)> = None;
        let mut i = 0;
        while i < self.tasks.len() {
            let Some(p) = self.tasks[i].as_ref().filter(|p| !p.is_complete()) else {
                i += 1;
                continue;
            };
            let r = if self.client.in_runtime {
                // A subtask not started runs at once on this handler's stack
                // if the runtime can (see `Client::wait_all`).
                if p.header().is_some_and(crate::module_side::run_inline) {
                    continue;
                }
                self.client
                    .pass_cancel(self.tasks[i..].iter().flatten().filter_map(|p| p.header()));
                self.client.block_until(p.shm(), start, None)
            } else {
                let h = p.header().expect("a task in the set");
                self.client.wait_header(h, p.shm(), None)
            };
            if let Err(e) = r {
                failed = Some((i, e));
                break;
            }
        }
        let mut out = Vec::with_capacity(self.tasks.len());
        for (k, slot) in self.tasks.iter_mut().enumerate() {
            let p = slot.take().expect("every task is handed back once");
            if p.is_complete() {
                out.push(p.wait());
                continue;
            }
            // Not complete: the wait failed; dropping the Pending leaves the task
            // allocated (the runtime may still write to it).
            let e = match failed.take() {
                Some((at, e)) if at == k => e,
                other => {
                    let msg = other.as_ref().map_or_else(
                        || "an earlier task's wait failed".to_owned(),
                        |(_, e)| e.to_string(),
                    );
                    failed = other;
                    ClientError::Refused(format!("not waited for: {msg}"))
                }
            };
            drop(p);
            out.push(Err(e.into()));
        }
        self.left = 0;
        out
    }

    /// Waits for every task, reads each with `read` and frees it; results in
    /// submission order.
    pub fn wait_all_with<R>(self, mut read: impl FnMut(&T) -> R) -> Vec<Result<R, CallError>> {
        let client = self.client;
        self.wait_all()
            .into_iter()
            .map(|r| {
                r.map(|t| {
                    let v = read(t.get());
                    client.del_task(t);
                    v
                })
            })
            .collect()
    }

    /// The tasks as they complete: `(index, outcome)` in completion order.
    pub fn completions(self) -> Completions<'c, T> {
        Completions {
            set: self,
            deadline: None,
        }
    }

    /// Hands back a task that completed, if any (without waiting).
    pub fn try_next(&mut self) -> Option<Completed<T>> {
        let n = self.tasks.len();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            if self.tasks[i].as_ref().is_some_and(Pending::is_complete) {
                self.cursor = (i + 1) % n.max(1);
                self.left -= 1;
                let p = self.tasks[i].take().expect("checked above");
                return Some((i, p.wait()));
            }
        }
        None
    }

    /// Waits for the next task to complete and hands it back; `None` once
    /// every task was handed back. Fails (leaving the set as it was) if the
    /// runtime dies, stops or `deadline` passes first.
    pub fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Option<Result<Completed<T>, ClientError>> {
        if self.left == 0 {
            return None;
        }
        let start = Instant::now();
        let mut slice = Duration::from_micros(20);
        loop {
            if let Some(done) = self.try_next() {
                return Some(Ok(done));
            }
            let first = self.tasks.iter().flatten().next()?;
            if self.client.in_runtime {
                // Every subtask of the set wakes this task when it completes.
                self.client
                    .pass_cancel(self.tasks.iter().flatten().filter_map(|p| p.header()));
                if let Err(e) = self.client.block_until(first.shm(), start, deadline) {
                    return Some(Err(e));
                }
                continue;
            }
            match SpinPhase::at(start.elapsed(), self.client.spin_for(first.header())) {
                SpinPhase::Poll => {
                    std::hint::spin_loop();
                    continue;
                }
                // As a single wait does (see `wait.rs`): the worker that
                // answers may be queued on this thread's CPU.
                SpinPhase::PollAndYield => {
                    std::thread::yield_now();
                    continue;
                }
                SpinPhase::Sleep => {}
            }
            // Sleep on the oldest task for one slice; the client's usual checks
            // (runtime alive, not stopping, lane moving) run on the way.
            let until = Instant::now() + slice;
            let until = deadline.map_or(until, |d| d.min(until));
            let h = first.header().expect("a task in the set");
            match self.client.wait_header(h, first.shm(), Some(until)) {
                Ok(()) => {}
                Err(ClientError::Deadline { .. }) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Some(Err(ClientError::Deadline {
                            task: first.shm(),
                            waited: start.elapsed(),
                        }));
                    }
                    slice = (slice * 2).min(MAX_SLICE);
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The tasks of a [`PendingSet`] in completion order (see
/// [`PendingSet::completions`]). A task whose wait fails (the runtime died or
/// stopped) is reported with that error; the rest of the set is then dropped
/// as [`Pending`] drops.
pub struct Completions<'c, T: Task> {
    set: PendingSet<'c, T>,
    deadline: Option<Instant>,
}

impl<T: Task> std::fmt::Debug for Completions<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completions")
            .field("set", &self.set)
            .finish()
    }
}

impl<'c, T: Task> Completions<'c, T> {
    /// Gives up on the tasks still running at `deadline` (they are reported
    /// with [`ClientError::Deadline`] and stay allocated).
    pub fn until(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

impl<'c, T: Task> Iterator for Completions<'c, T> {
    type Item = Completed<T>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.set.next_until(self.deadline)? {
            Ok(done) => Some(done),
            Err(e) => {
                // Report the oldest unfinished task with the error; it stays
                // allocated (the runtime may still write to it).
                let i = self.set.tasks.iter().position(Option::is_some)?;
                // Dropping its Pending leaves it allocated if it is still
                // running (the runtime may write to it).
                drop(self.set.tasks[i].take()?);
                self.set.left -= 1;
                Some((i, Err(e.into())))
            }
        }
    }
}
