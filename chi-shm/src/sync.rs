//! One facade for atomics, fences and spinning, so that the lock-free parts of the
//! shared-memory layer (the allocator's free lists and the queue's rings) can be
//! model-checked with `loom` by building with `RUSTFLAGS="--cfg loom"`.
//!
//! Under `cfg(loom)` only the algorithm modules are compiled (they are written
//! against this facade and against small "arena" traits); the code that lays
//! those structures over a real `mmap`ed segment needs the real `std` atomics,
//! whose layout is guaranteed to match the integer they wrap.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// Pads a value to its own 128-byte line pair (what adjacent-line prefetch pulls
/// in together on x86-64), with a layout fixed by this crate rather than by a
/// dependency's version: it is part of the shared-memory layout.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub T);
