//! The seed's `MOD_NAME` module in Rust: a container declared with
//! [`#[chi_sdk::chimod]`](chi_sdk::chimod), its tasks declared with
//! [`#[chi_sdk::task]`](macro@chi_sdk::task), and its client, [`ModNameClient`].
//!
//! Built as `libchimaera_mod_name_runtime.so` (a `cdylib`) for the runtime to
//! load from its module path, and as an `rlib` for client programs.
//!
//! Methods (see `chimaera_mod.yaml`):
//! * `kCustom` (10): [`CustomTask`]: `op` [`OP_UPPERCASE`] upper-cases `data` in
//!   place and returns its length; [`OP_COUNT`] returns how many Custom calls the
//!   container ran before this one; [`OP_APPEND_POOL`] appends `:` and the pool's
//!   name to `data` (the output grows: the handler allocates it in the main
//!   segment); [`OP_OWN_POOL`] returns the pool id of the container's own client;
//!   other ops fail with a message.
//! * `kPanic` (11): [`PanicTask`]: the handler panics (the runtime must report
//!   `code::PANICKED` and keep serving).
//! * `kEcho` (14): [`EchoTask`]: answers `value`, like the admin pool's Echo
//!   (for measuring a loaded module's round trip against the built-in one).
//!
//! * `kSleep` (15): [`SleepTask`]: takes `ms` milliseconds, yielding its
//!   coroutine meanwhile, or (`block` ≠ 0) holding its worker without yielding
//!   (a misbehaving handler: for testing back-pressure and the supervisor).
//! * `kCoMutexTest` (20): [`CoMutexTestTask`]: the container's counter under a
//!   [`CoMutex`](chi_sdk::sync::CoMutex): count with a yield inside the
//!   critical section ([`MUTEX_COUNT`]), hold it until told
//!   ([`MUTEX_HOLD`], [`MUTEX_OPEN`]), look at its queue ([`MUTEX_STATUS`]),
//!   re-enter it from subtasks while holding it ([`MUTEX_NESTED`]).
//! * `kCoRwLockTest` (21): [`CoRwLockTestTask`]: a value under a
//!   [`CoRwLock`](chi_sdk::sync::CoRwLock), with counters of the readers and
//!   writers inside: readers that yield inside ([`RW_READ`]) or wait for each
//!   other inside ([`RW_READ_TOGETHER`]), writers that check they are alone
//!   ([`RW_WRITE`]), holds ([`RW_HOLD_READ`], [`RW_HOLD_WRITE`], [`RW_OPEN`]),
//!   re-entry from subtasks ([`RW_NESTED`], [`RW_NESTED_UNDER_READ`]).
//!
//! The container has two local queues: [`METADATA_QUEUE`] (one high-latency
//! lane) and [`PROCESSING_QUEUE`] (two low-latency lanes). Its monitor routes
//! Custom by the hash of `op`, so calls of one op stay in order on one lane,
//! and the lock tests by the hash of their `spread`.
//!
//! Laid out as `cargo chimod new` lays out a module:
//! * [`tasks`]: [`CreateParams`], the ops of [`CustomTask`] and one task struct
//!   per method of `chimaera_mod.yaml`;
//! * [`runtime`]: [`ModNameContainer`], the container the runtime runs for each
//!   pool (and what `#[chimod]` generates beside it: [`method`],
//!   [`CHIMOD_LIB_NAME`], [`CHIMOD_ENTRY`]);
//! * [`client`]: [`ModNameClient`], what a client program calls.

pub mod client;
pub mod runtime;
pub mod tasks;

pub use runtime::*;
pub use tasks::*;
