//! The task header and the task state machine.
//!
//! Every task is a `#[repr(C)]` struct in the main segment whose first field is a
//! [`TaskHeader`]; the rest are the method's parameters. A client allocates it,
//! fills it, enqueues its [`ShmPtr`](crate::shm::ShmPtr) and waits; a worker runs
//! it and completes it.
//!
//! # The state word
//!
//! `TaskHeader::state` is one `u32` of bits (and one 8-bit field,
//! `REMOTE_CPU`), also used as a futex. It is
//! private to this file: every transition is a named method of [`TaskHeader`],
//! and this table is the whole state machine.
//!
//! | bit | transition (method) | by | ordering | meaning |
//! | --- | --- | --- | --- | --- |
//! | [`state::QUEUED`] | [`mark_queued`](TaskHeader::mark_queued) | client, before the push | Relaxed (the push's Release publishes it) | handed to the runtime |
//! | [`state::ROUTED`] | [`mark_routed`](TaskHeader::mark_routed) / [`unmark_routed`](TaskHeader::unmark_routed) | worker, before / after a failed push to another lane | Release / Relaxed | moved to the worker of its container lane: run there without asking Monitor again |
//! | [`state::REMOTE`] | [`mark_remote`](TaskHeader::mark_remote) | worker, before it hands the task to the peer link | Relaxed (a hint: orders nothing) | sent to another node: its completion comes a network round trip later, so a waiting client spins longer before it sleeps ([`ClientOptions::remote_spin`](crate::client::ClientOptions::remote_spin)) |
//! | [`state::REMOTE_CPU`] (a field, bits 8–15) | [`mark_remote`](TaskHeader::mark_remote), with `REMOTE` | worker | as `REMOTE` | the CPU the worker sent it from, plus one (0: unknown; read by [`remote_cpu`](TaskHeader::remote_cpu)): a client that finds its own CPU there skips the alone poll of its next wait (`client/wait.rs`) |
//! | [`state::WAITER`] | [`announce_waiter`](TaskHeader::announce_waiter) | waiting client, before it sleeps | Acquire | a thread sleeps on the futex: wake it |
//! | [`state::COMPLETE`] | [`complete`](TaskHeader::complete), then [`wake_waiters`](TaskHeader::wake_waiters) | worker | Release | finished; outputs and `result` are final |
//! | [`state::ABANDONED`] | [`abandon`](TaskHeader::abandon) | client dropping a handle it never waited on | AcqRel | nobody waits: if the task was complete the client frees it, else the worker frees it when it completes it (it sees the bit in the word `complete` replaced) |
//! | [`state::CANCELLED`] | [`cancel`](TaskHeader::cancel) | client, parent task or runtime | Release | asked to stop: not started if not yet running, a periodic task does not run again, waits of its handler end and pass the cancellation on to the subtasks they wait for; the task completes with [`code::CANCELLED`] unless its handler finished first |
//! | [`state::RUNNING`] | — | — | — | reserved (a worker does not set it: the waiting client spins on this word, and a write while the task runs would cost the round trip a cache-line transfer) |
//!
//! A fresh header has no bit set; a task goes `0 → QUEUED [→ ROUTED | REMOTE] → COMPLETE`,
//! with `WAITER` set at any point by a client that stops spinning. Readers:
//! [`is_complete`](TaskHeader::is_complete) (Acquire, pairs with `complete`),
//! [`is_in_flight`](TaskHeader::is_in_flight) (queued and not complete: the
//! runtime may still write to it), [`is_routed`](TaskHeader::is_routed) and
//! [`is_remote`](TaskHeader::is_remote) and
//! [`remote_cpu`](TaskHeader::remote_cpu) (hints, Relaxed), and
//! [`state_bits`](TaskHeader::state_bits) for diagnostics.
//!
//! Completion is `fetch_or(COMPLETE)` with Release ordering after the outputs were
//! written; a waiter spins on an Acquire load of the word, then sets `WAITER` and
//! sleeps; the completer issues the wake-up system call only when it sees
//! `WAITER` in the value it replaced, so a client that spins costs no system call.

use crate::shm::{ShmSafe, ShmString};
use crate::types::{DomainQuery, MethodId, PoolId, TaskNode};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// Bits of the task state word (see the module documentation: only
/// [`TaskHeader`]'s methods change them).
pub mod state {
    /// Handed to the runtime.
    pub const QUEUED: u32 = 1 << 0;
    /// Reserved: not set on the task path (see the module documentation).
    pub const RUNNING: u32 = 1 << 1;
    /// Finished: outputs and result are final.
    pub const COMPLETE: u32 = 1 << 2;
    /// A thread is (about to be) asleep on the state word.
    pub const WAITER: u32 = 1 << 3;
    /// The runtime moved the task to the worker of the lane its container's
    /// Monitor chose: run it there without asking Monitor again.
    pub const ROUTED: u32 = 1 << 4;
    /// Cancellation was asked for.
    pub const CANCELLED: u32 = 1 << 5;
    /// Nobody will wait for the task any more: whoever of the client and the
    /// runtime comes second (the abandon or the completion) frees it.
    pub const ABANDONED: u32 = 1 << 6;
    /// The runtime sent the task to another node: its completion comes a
    /// network round trip later.
    pub const REMOTE: u32 = 1 << 7;
    /// With [`REMOTE`]: the CPU the sending worker ran on, plus one, in
    /// these bits (0: unknown).
    pub const REMOTE_CPU: u32 = 0xff << REMOTE_CPU_SHIFT;
    /// The lowest bit of [`REMOTE_CPU`].
    pub const REMOTE_CPU_SHIFT: u32 = 8;
}

/// Bits of [`TaskHeader::flags`].
pub mod flags {
    /// Runs again every `period_ns` until cancelled.
    pub const PERIODIC: u32 = 1 << 0;
    /// Nobody waits: the runtime frees the task when it completes.
    pub const FIRE_AND_FORGET: u32 = 1 << 1;
}

/// Result codes in [`TaskHeader::result`]; a module may use its own codes from
/// [`code::MODULE_BASE`] up.
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// The container does not support this method (`-1` in its YAML).
    pub const UNSUPPORTED_METHOD: i32 = 1;
    /// No such pool.
    pub const NO_POOL: i32 = 2;
    /// The task failed validation (bad size, bad pointers, bad query).
    pub const BAD_TASK: i32 = 3;
    /// The handler panicked.
    pub const PANICKED: i32 = 4;
    /// The runtime stopped before running the task.
    pub const SHUTDOWN: i32 = 5;
    /// The module or pool could not be created.
    pub const CREATE_FAILED: i32 = 6;
    /// The method reported a failure (details in the error message).
    pub const FAILED: i32 = 7;
    /// The task was cancelled before it finished.
    pub const CANCELLED: i32 = 8;
    /// First code free for modules.
    pub const MODULE_BASE: i32 = 1000;
}

/// Why a handler failed: a result code ([`code`]) and a message for the client.
/// A handler returns `Result<(), E>` for any `E: Into<Failure>`: a `String` or
/// `&str` is a [`code::FAILED`] failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The result code the task completes with.
    pub code: i32,
    /// The message.
    pub message: String,
}

impl Failure {
    /// A failure with `code` (one of [`code`], or a module's own from
    /// [`code::MODULE_BASE`]).
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A [`code::FAILED`] failure: the method reported an error.
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure::new(code::FAILED, message)
    }

    /// A [`code::BAD_TASK`] failure: the task is not what its method takes (its
    /// size, alignment, pointers or serialised bytes).
    pub fn bad_task(message: impl Into<String>) -> Failure {
        Failure::new(code::BAD_TASK, message)
    }

    /// A [`code::UNSUPPORTED_METHOD`] failure: the module has no such method,
    /// or does not support it (`-1` in its YAML).
    pub fn unsupported_method(message: impl Into<String>) -> Failure {
        Failure::new(code::UNSUPPORTED_METHOD, message)
    }

    /// A [`code::PANICKED`] failure: the code serving the task panicked.
    pub fn panicked(message: impl Into<String>) -> Failure {
        Failure::new(code::PANICKED, message)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::failed(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::failed(message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

/// Value of [`TaskHeader::lane`] for a task whose worker was found wedged
/// inside it (its lanes were moved to another worker): a waiting client reports
/// the task as making no progress after its deadline.
pub const LANE_STALLED: u32 = u32::MAX - 1;

/// Value of [`TaskHeader::magic`]: `b"CT"`.
pub const TASK_MAGIC: u16 = u16::from_le_bytes(*b"CT");

/// The header every task starts with (`#[repr(C)]`, 96 bytes).
///
/// `magic` and `generation` let the runtime tell a task from any other block of
/// the main segment, and a task from the task that reused its block: the runtime
/// refuses a popped pointer whose block does not start with [`TASK_MAGIC`], and
/// completes (or frees) a task only if its generation is still the one it saw
/// when it took the task. A client frees a task only if the generation matches
/// the one it allocated ([`crate::client::Client::try_del_task`]).
#[repr(C)]
#[derive(Debug)]
pub struct TaskHeader {
    /// State bits ([`state`]); the futex a waiting client sleeps on. Private:
    /// changed only through the transitions of the module's table.
    state: AtomicU32,
    /// Flags ([`flags`]).
    pub flags: u32,
    /// The method to run.
    pub method: MethodId,
    /// Size in bytes of the whole task struct (checked by the runtime before use).
    pub size: u32,
    /// [`TASK_MAGIC`].
    pub magic: u16,
    /// Tells this task from earlier and later occupants of its block: never 0,
    /// drawn from a per-thread sequence ([`next_generation`]).
    pub generation: u16,
    /// The process-queue lane the task was last pushed to (the runtime keeps it
    /// current when it routes the task); a waiting client watches the progress of
    /// the worker serving that lane.
    pub lane: AtomicU32,
    /// Target pool.
    pub pool_id: PoolId,
    /// Place in the task graph.
    pub task_node: TaskNode,
    /// Which containers of the pool.
    pub dom_query: DomainQuery,
    /// Period of a periodic task, in nanoseconds.
    pub period_ns: u64,
    /// Result code ([`code`]), final once `COMPLETE` is set.
    pub result: AtomicI32,
    /// Id of the client that submitted the task.
    pub client_id: u32,
    /// Error message written by the runtime on failure (allocated in the main
    /// segment; freed with the task).
    pub error: ShmString,
}

// 96 bytes: an echo-sized task (header + two u64) and its 16-byte block header
// fill one 128-byte size class, two cache lines, as the task path budgets.
const _: () = assert!(size_of::<TaskHeader>() == 96);

// SAFETY: repr(C) of integers, ShmSafe ids and a ShmString; no pointers; every bit
// pattern is a valid (if meaningless) header, and the runtime validates it.
unsafe impl ShmSafe for TaskHeader {}

impl TaskHeader {
    /// A header for a new task of `size` bytes.
    pub fn new(pool_id: PoolId, method: MethodId, size: usize, dom_query: DomainQuery) -> Self {
        TaskHeader {
            state: AtomicU32::new(0),
            flags: 0,
            method,
            size: size as u32,
            magic: TASK_MAGIC,
            generation: next_generation(),
            lane: AtomicU32::new(u32::MAX),
            pool_id,
            task_node: TaskNode::default(),
            dom_query,
            period_ns: 0,
            result: AtomicI32::new(code::OK),
            client_id: 0,
            error: ShmString::new(),
        }
    }

    /// The result code (meaningful once complete).
    #[inline]
    pub fn result(&self) -> i32 {
        self.result.load(Ordering::Relaxed)
    }

    /// Whether the task completed.
    #[inline]
    pub fn is_complete(&self) -> bool {
        // Acquire: pairs with the Release `fetch_or(COMPLETE)` in `complete`.
        self.state.load(Ordering::Acquire) & state::COMPLETE != 0
    }

    /// Marks the task complete with `result`; returns the state word as it was
    /// before. With [`state::WAITER`] in it a thread sleeps on the word (the
    /// caller must call [`wake_waiters`](Self::wake_waiters)); with
    /// [`state::ABANDONED`] nobody waits and the caller frees the task.
    #[inline]
    #[must_use = "a sleeping waiter must be woken, an abandoned task freed"]
    pub fn complete(&self, result: i32) -> u32 {
        self.result.store(result, Ordering::Relaxed);
        // Release: publishes the outputs and `result` to the waiter's Acquire load
        // in `is_complete` / `announce_waiter`, and to `abandon`'s Acquire.
        self.state.fetch_or(state::COMPLETE, Ordering::Release)
    }

    /// The client gives up a submitted task it will not wait for; returns
    /// whether the task was already complete (the client frees it then;
    /// otherwise the runtime frees it when it completes it, and the client
    /// must not touch it again).
    #[inline]
    #[must_use = "a complete abandoned task is the caller's to free"]
    pub fn abandon(&self) -> bool {
        // AcqRel: Acquire pairs with the Release `fetch_or(COMPLETE)` in
        // `complete` (the client frees what the runtime wrote); the one RMW
        // on the word decides who frees.
        self.state.fetch_or(state::ABANDONED, Ordering::AcqRel) & state::COMPLETE != 0
    }

    /// Wakes every thread asleep on the state word (after [`complete`](Self::complete)
    /// returned `true`).
    #[inline]
    pub fn wake_waiters(&self) {
        crate::futex::wake(&self.state, u32::MAX);
    }

    /// The client hands the task to the runtime: sets `QUEUED` before the push.
    #[inline]
    pub fn mark_queued(&self) {
        // Relaxed: published to the worker by the push (Release on the lane cell).
        self.state.fetch_or(state::QUEUED, Ordering::Relaxed);
    }

    /// A client is about to sleep on the state word: sets `WAITER` and returns the
    /// word as it is now (with `WAITER`), the value to pass to
    /// [`sleep_until_changed`](Self::sleep_until_changed).
    #[inline]
    pub fn announce_waiter(&self) -> u32 {
        // Acquire: pairs with the Release fetch_or(COMPLETE) in `complete`, when
        // the returned word already holds COMPLETE.
        self.state.fetch_or(state::WAITER, Ordering::Acquire) | state::WAITER
    }

    /// Sleeps while the state word still equals `seen` (from
    /// [`announce_waiter`](Self::announce_waiter)), at most `timeout`.
    #[inline]
    pub fn sleep_until_changed(&self, seen: u32, timeout: Option<std::time::Duration>) {
        crate::futex::wait(&self.state, seen, timeout);
    }

    /// The worker moves the task to the worker of another lane: sets `ROUTED`
    /// before the push, so the target runs it without asking Monitor again.
    #[inline]
    pub fn mark_routed(&self) {
        // Release: pairs with the target worker's Acquire load in `is_routed`
        // (the push hands the task over as well).
        self.state.fetch_or(state::ROUTED, Ordering::Release);
    }

    /// The push of a routed task failed: the task stays with this worker.
    #[inline]
    pub fn unmark_routed(&self) {
        // Relaxed: only this worker holds the task.
        self.state.fetch_and(!state::ROUTED, Ordering::Relaxed);
    }

    /// The worker sends the task to another node, from CPU `cpu` (if
    /// known): sets `REMOTE` and the `REMOTE_CPU` field before it hands the
    /// task over (after that the task is no longer its to touch).
    #[inline]
    pub fn mark_remote(&self, cpu: Option<usize>) {
        let field = match cpu {
            Some(c) if c < 255 => (c as u32 + 1) << state::REMOTE_CPU_SHIFT,
            _ => 0,
        };
        // Relaxed: a hint for the waiting client's spin (`is_remote`,
        // `remote_cpu`); it publishes nothing.
        self.state
            .fetch_or(state::REMOTE | field, Ordering::Relaxed);
    }

    /// The CPU the worker sent the task to another node from, if it was
    /// and the CPU is known (a hint: see [`mark_remote`](Self::mark_remote)).
    #[inline]
    pub fn remote_cpu(&self) -> Option<usize> {
        // Relaxed: pairs with nothing (`mark_remote`).
        let field =
            (self.state.load(Ordering::Relaxed) & state::REMOTE_CPU) >> state::REMOTE_CPU_SHIFT;
        (field as usize).checked_sub(1)
    }

    /// Whether the runtime sent the task to another node (a hint: see
    /// [`mark_remote`](Self::mark_remote)).
    #[inline]
    pub fn is_remote(&self) -> bool {
        // Relaxed: pairs with nothing (`mark_remote`).
        self.state.load(Ordering::Relaxed) & state::REMOTE != 0
    }

    /// Whether another worker routed the task here.
    #[inline]
    pub fn is_routed(&self) -> bool {
        // Acquire: pairs with the Release fetch_or in `mark_routed`.
        self.state.load(Ordering::Acquire) & state::ROUTED != 0
    }

    /// Asks the task to stop (see the state table); returns whether it was
    /// still running (not complete).
    #[inline]
    pub fn cancel(&self) -> bool {
        // Release: pairs with the Acquire load in `is_cancelled`.
        self.state.fetch_or(state::CANCELLED, Ordering::Release) & state::COMPLETE == 0
    }

    /// Whether cancellation was asked for.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        // Acquire: pairs with the Release fetch_or in `cancel`.
        self.state.load(Ordering::Acquire) & state::CANCELLED != 0
    }

    /// Whether the task was handed to the runtime and is not complete: the
    /// runtime may still write to it, so it must not be freed.
    #[inline]
    pub fn is_in_flight(&self) -> bool {
        // Acquire: pairs with the Release fetch_or(COMPLETE) in `complete`, so the
        // runtime's last writes happen before a free that follows.
        let st = self.state.load(Ordering::Acquire);
        st & state::QUEUED != 0 && st & state::COMPLETE == 0
    }

    /// The raw state bits, for diagnostics and tests.
    #[inline]
    pub fn state_bits(&self) -> u32 {
        // Acquire: as `is_complete`.
        self.state.load(Ordering::Acquire)
    }
}

/// The word that carries a task through a queue: its [`ShmPtr`](crate::shm::ShmPtr)
/// with a tag of its generation in the top byte (which no segment id uses:
/// ids stop at 255). The runtime compares the tag with the generation the block
/// holds when it pops the word, so a pointer that was freed, and whose block
/// was reused by another task, before the runtime took it is refused instead
/// of running the new task in its place. Tag 0 means "untagged" (no check).
pub fn task_word(ptr: crate::shm::ShmPtr, generation: u32) -> crate::shm::ShmPtr {
    let tag = u64::from(generation_tag(generation));
    crate::shm::ShmPtr::from_bits((ptr.to_bits() & !(0xff << 56)) | (tag << 56))
}

/// Splits a queue word into the task pointer and its generation tag (0: none).
pub fn split_task_word(word: crate::shm::ShmPtr) -> (crate::shm::ShmPtr, u8) {
    let bits = word.to_bits();
    (
        crate::shm::ShmPtr::from_bits(bits & !(0xff << 56)),
        (bits >> 56) as u8,
    )
}

/// The 8-bit tag of `generation` in a queue word (1..=255).
pub fn generation_tag(generation: u32) -> u8 {
    (generation % 255) as u8 + 1
}

/// A fresh task generation (never 0): a per-thread sequence whose start is
/// drawn from the process id, the thread and the clock, so that two threads (or
/// processes) reusing one block rarely draw the same value (1 in 2^16).
pub fn next_generation() -> u16 {
    use std::cell::Cell;
    thread_local! {
        static NEXT: Cell<u32> = Cell::new({
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default(),
            );
            h.finish() as u32
        });
    }
    NEXT.with(|n| {
        // An odd increment of a 32-bit counter; its top half is the generation
        // (consecutive ones always differ), never 0 ("no generation").
        let g = n.get().wrapping_add(0x9e37_79b9);
        n.set(g);
        match (g >> 16) as u16 {
            0 => 1,
            top => top,
        }
    })
}

/// A task type: a `#[repr(C)]` struct whose first field is a [`TaskHeader`].
///
/// # Safety
/// The type must be `#[repr(C)]` with a `TaskHeader` as its first field, and be
/// [`ShmSafe`]. The `#[task]` macro generates this impl.
pub unsafe trait Task: ShmSafe {
    /// The method this task calls.
    const METHOD: MethodId;

    /// The header.
    fn header(&self) -> &TaskHeader;

    /// The header, mutably.
    fn header_mut(&mut self) -> &mut TaskHeader;

    /// Frees the shared memory this task's fields own (strings, vectors), before the
    /// task itself is freed. The default owns nothing.
    fn free_fields(&mut self, _alloc: &crate::shm::Allocator) {}
}
