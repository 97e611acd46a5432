//! The Chimaera SDK: the one dependency of module authors and client programs.
//!
//! This crate grows in layers, building blocks at the bottom:
//!
//! * [`shm`]: named shared-memory segments, offset pointers ([`shm::ShmPtr`],
//!   [`shm::FullPtr`]), the cross-process allocator and the shared-memory
//!   containers. It knows nothing of tasks or modules.
//! * [`queue`]: the multi-lane queue that carries task pointers from clients to
//!   the runtime's workers, with futex doorbells for idle consumers.
//! * [`types`], [`task`]: ids, the domain query, the task header and its state
//!   machine.
//! * [`abi`]: the C boundary between the runtime and module libraries.
//! * [`client`], [`admin`], [`proto`], [`transport`]: registering with a runtime,
//!   submitting and waiting for tasks, the admin pool's calls.
//!
//! Building with `RUSTFLAGS="--cfg loom"` compiles only the lock-free algorithms
//! (the allocator's free lists, the lane rings and the doorbell handshake) against
//! loom's model-checked atomics, for `cargo test --lib` under loom.

#![warn(missing_docs)]
// Under loom only the algorithms compile, without the code that uses them.
#![cfg_attr(loom, allow(dead_code))]

pub(crate) mod sync;

#[cfg(not(loom))]
pub mod abi;
#[cfg(not(loom))]
pub mod admin;
#[cfg(not(loom))]
pub mod client;
#[cfg(not(loom))]
pub mod futex;
#[cfg(not(loom))]
pub mod proto;
#[cfg(not(loom))]
pub mod queue;
#[cfg(not(loom))]
pub mod shm;
#[cfg(not(loom))]
pub mod task;
#[cfg(not(loom))]
pub mod transport;
#[cfg(not(loom))]
pub mod types;

// Under loom: only the algorithm modules, each with its model tests.
#[cfg(loom)]
#[path = "queue/loom_only.rs"]
pub(crate) mod queue;
#[cfg(loom)]
#[path = "shm/alloc/stack.rs"]
pub(crate) mod stack;
