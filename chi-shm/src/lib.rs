//! Chimaera's shared-memory building blocks.
//!
//! * [`shm`]: named shared-memory segments, offset pointers ([`shm::ShmPtr`],
//!   [`shm::FullPtr`]), the cross-process allocator and the shared-memory
//!   containers.
//! * [`queue`]: the multi-lane queue of offset pointers, with futex doorbells for
//!   idle consumers.
//! * [`futex`]: futex wait and wake on words in shared memory.
//!
//! It knows nothing of tasks or modules: `chi-sdk` builds those on top of it and
//! re-exports it.
//!
//! Building with `RUSTFLAGS="--cfg loom"` compiles only the lock-free algorithms
//! (the allocator's free lists, the lane rings and the doorbell handshake) against
//! loom's model-checked atomics, for `cargo test --lib` under loom.

#![warn(missing_docs)]
// Under loom only the algorithms compile, without the code that uses them.
#![cfg_attr(loom, allow(dead_code))]

pub(crate) mod sync;

#[cfg(not(loom))]
pub mod futex;
#[cfg(not(loom))]
pub mod queue;
#[cfg(not(loom))]
pub mod shm;

// Under loom: only the algorithm modules, each with its model tests.
#[cfg(loom)]
#[path = "queue/loom_only.rs"]
pub(crate) mod queue;
#[cfg(loom)]
#[path = "shm/alloc/stack.rs"]
pub(crate) mod stack;
