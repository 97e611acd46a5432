//! Task coroutines and the pool of their stacks.
//!
//! # Design
//!
//! Every task runs on a stackful coroutine of its own (`corosensei`), so a
//! handler can wait for a subtask or a lock by yielding — the worker parks the
//! coroutine and runs other tasks meanwhile — without being written as a state
//! machine.
//!
//! * **The coroutine** of a task is a [`TaskCoroutine`]: resumed with `()`,
//!   it yields `()` when the task waits and returns the module's result code
//!   and error message when the task is done. The worker builds it in
//!   `Worker::start_task` around the module's `run`, and resumes it in
//!   `Worker::step` until it returns.
//! * **Yielding across the C boundary.** A module calls its own copy of
//!   chi-sdk, which cannot reach the runtime's coroutine: it calls the
//!   runtime's `yield_now` or `block` service ([`crate::services`]), which
//!   finds the running coroutine's yielder in the worker's thread-local
//!   state (`crate::worker::sched`) and suspends through it. A coroutine is
//!   only ever resumed by the worker thread that parked it.
//! * **The stack pool.** Mapping a stack costs an `mmap` and a guard page, far
//!   more than the task it would run; so each worker keeps the stacks of
//!   finished tasks in a [`StackPool`] and starts the next task on one of them
//!   (last in, first out: the most recent stack is the one still in the
//!   cache). The worker keeps at most [`MAX_POOLED_STACKS`]; past that, the
//!   stack of a finished task is unmapped. A new stack is mapped only when the
//!   pool is empty, and `coroutine.max_live` bounds the live coroutines, and so
//!   the stacks, of a worker.
//! * **Room for inline subtasks.** A stack is mapped at twice the size its
//!   task gets ([`mapped_size`]): the rest is where subtasks the task waits
//!   for run inline (`crate::worker::inline`), each only while at least its
//!   own stack size is left. Pages never touched cost no memory.

use corosensei::Coroutine;
use corosensei::stack::DefaultStack;

use crate::worker::sched::Suspend;

/// The coroutine a task runs on: resumed with `()`, yields how it waits (ready
/// again in turn, or blocked), returns the module's result code and error
/// message.
pub(crate) type TaskCoroutine = Coroutine<(), Suspend, (i32, Option<String>), DefaultStack>;

/// Stacks a worker keeps for its next tasks at most (64 KiB each by default;
/// as many as the default `coroutine.max_live`, so a chain of subtasks that
/// deep maps no stack once warm).
pub(crate) const MAX_POOLED_STACKS: usize = 256;

/// Stacks of each container-chosen size a worker keeps at most (see
/// `CreateCtx::set_stack_size`).
pub(crate) const MAX_POOLED_SIZED_STACKS: usize = 8;

/// A worker's spare coroutine stacks (see the module doc): a stack of it is
/// handed to the next task before a new one is mapped. Stacks of the
/// configured size (key 0) and of the sizes containers chose are kept apart.
#[derive(Default)]
pub(crate) struct StackPool {
    default: Vec<DefaultStack>,
    sized: Vec<(usize, Vec<DefaultStack>)>,
}

impl StackPool {
    /// An empty pool.
    pub(crate) fn new() -> StackPool {
        StackPool::default()
    }

    /// The most recently pooled stack of `size` (0: the configured size), if any.
    #[inline]
    pub(crate) fn pop(&mut self, size: usize) -> Option<DefaultStack> {
        if size == 0 {
            return self.default.pop();
        }
        self.sized
            .iter_mut()
            .find(|(s, _)| *s == size)
            .and_then(|(_, v)| v.pop())
    }

    /// A stack of `size` bytes (0: `default_size`), from the pool or new
    /// (mapped at [`mapped_size`]).
    pub(crate) fn take(
        &mut self,
        size: usize,
        default_size: usize,
    ) -> std::io::Result<DefaultStack> {
        match self.pop(size) {
            Some(s) => Ok(s),
            None => DefaultStack::new(mapped_size(if size == 0 { default_size } else { size })),
        }
    }

    /// Keeps `stack` of `size` for a later task, unless the pool of its size
    /// is full (then it is unmapped).
    #[inline]
    pub(crate) fn push(&mut self, size: usize, stack: DefaultStack) {
        if size == 0 {
            if self.default.len() < MAX_POOLED_STACKS {
                self.default.push(stack);
            }
            return;
        }
        match self.sized.iter_mut().find(|(s, _)| *s == size) {
            Some((_, v)) if v.len() < MAX_POOLED_SIZED_STACKS => v.push(stack),
            Some(_) => {}
            None => self.sized.push((size, vec![stack])),
        }
    }
}

/// The bytes mapped for a task stack of `size` bytes (see the module doc).
#[inline]
pub(crate) const fn mapped_size(size: usize) -> usize {
    size * 2
}

/// Suspends the running task's coroutine; it is ready again at once (the
/// `yield_now` service).
pub(crate) fn yield_current() {
    crate::worker::sched::suspend(Suspend::Ready);
}
