//! Chimaera's shared-memory building blocks.
//!
//! * [`shm`]: named shared-memory segments, offset pointers ([`shm::ShmPtr`],
//!   [`shm::FullPtr`]), the cross-process allocator and the shared-memory
//!   containers.
//! * [`queue`]: the multi-lane queue of offset pointers, with futex doorbells for
//!   idle consumers.
//! * [`futex`]: futex wait and wake on words in shared memory.
//! * [`proc`]: whether the process a pid in shared memory names is still alive.
//!
//! It knows nothing of tasks or modules: `chi-sdk` builds those on top of it and
//! re-exports it.
//!
//! Every atomic goes through one facade, `sync.rs` (enforced by
//! `chi-shm/clippy.toml`). Building with `RUSTFLAGS="--cfg loom"` switches it to
//! loom's model-checked atomics: the whole library builds, and `cargo test --lib`
//! runs the model tests of the lock-free algorithms (the allocator's free lists,
//! the lane rings and the doorbell handshake); see `scripts/check-loom.sh`.

#![warn(missing_docs)]

pub mod futex;
pub mod proc;
pub mod queue;
pub mod shm;
pub(crate) mod sync;
