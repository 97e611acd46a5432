//! The atomics facade: the one way the code of this crate reaches atomics,
//! fences and futex waits, so that its lock-free algorithms (the allocator's free
//! lists, the lane rings, the doorbell handshake) can be model-checked with loom
//! by building with `RUSTFLAGS="--cfg loom"`.
//!
//! # Design
//!
//! * Every atomic of the crate is an [`AtomicU32`] or [`AtomicU64`] of this
//!   module, and every fence is [`fence`]. In a normal build each type is
//!   `#[repr(transparent)]` over the standard atomic of the same name, whose
//!   layout is that of the integer it wraps: the types are part of the
//!   shared-memory layout, and every method is an inlined forward.
//! * Under `cfg(loom)` the same types wrap loom's atomics and [`fence`] is loom's,
//!   so the models check the code as it is written. The whole library builds
//!   under loom, but only the model tests (`#[cfg(all(loom, test))]`) mean
//!   anything there: loom's atomics have another layout and live only inside a
//!   model, so the code that lays structures over a real mapping is tested
//!   natively (`#[cfg(all(test, not(loom)))]`).
//! * A doorbell sleeps on its word with [`AtomicU32::futex_wait`]: the futex
//!   system call natively ([`crate::futex`]); under loom a yield and a spurious
//!   return, which a futex may always do (callers re-check their condition).
//! * Loom's atomics cannot be built in a `const`, and a model must not share
//!   state with another run. Process-wide statics (the table of mapped segments,
//!   handle and claim counters) are never part of a model: they use the
//!   [`native`] types, which wrap the standard atomics in every build.
//!
//! `chi-shm/clippy.toml` forbids the standard atomic types and fences everywhere
//! else in the crate; the few deliberate exceptions carry an `allow` that says
//! why: the futex system call, the [`ShmSafe`](crate::shm::ShmSafe) impls of the
//! standard atomics (which user types hold), and the crate's integration tests,
//! bench and example, which use the crate as a client program does.

// This file is where the standard (or loom's) atomics are wrapped.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::Duration;

#[cfg(loom)]
use loom::sync::atomic as imp;
#[cfg(not(loom))]
use std::sync::atomic as imp;

pub(crate) use std::sync::atomic::Ordering;

/// The methods of an atomic integer type wrapping an atomic of `$int` (the
/// standard one or loom's, whose methods have the same names and signatures).
macro_rules! atomic_methods {
    ($int:ty) => {
        /// Loads the value.
        #[inline]
        pub(crate) fn load(&self, order: Ordering) -> $int {
            self.0.load(order)
        }

        /// Stores `val`.
        #[inline]
        pub(crate) fn store(&self, val: $int, order: Ordering) {
            self.0.store(val, order)
        }

        /// Stores `val`, returning the previous value.
        #[inline]
        pub(crate) fn swap(&self, val: $int, order: Ordering) -> $int {
            self.0.swap(val, order)
        }

        /// Stores `new` if the value is `current`; returns the previous value,
        /// `Ok` if it was `current`.
        #[inline]
        pub(crate) fn compare_exchange(
            &self,
            current: $int,
            new: $int,
            success: Ordering,
            failure: Ordering,
        ) -> Result<$int, $int> {
            self.0.compare_exchange(current, new, success, failure)
        }

        /// [`compare_exchange`](Self::compare_exchange) that may fail spuriously,
        /// for loops.
        #[inline]
        pub(crate) fn compare_exchange_weak(
            &self,
            current: $int,
            new: $int,
            success: Ordering,
            failure: Ordering,
        ) -> Result<$int, $int> {
            self.0.compare_exchange_weak(current, new, success, failure)
        }

        /// Adds `val` (wrapping), returning the previous value.
        #[inline]
        pub(crate) fn fetch_add(&self, val: $int, order: Ordering) -> $int {
            self.0.fetch_add(val, order)
        }

        /// Subtracts `val` (wrapping), returning the previous value.
        #[inline]
        pub(crate) fn fetch_sub(&self, val: $int, order: Ordering) -> $int {
            self.0.fetch_sub(val, order)
        }
    };
}

/// Declares the atomic integer type `$name` over `$inner`; `$($const)?` makes its
/// constructor `const`.
macro_rules! atomic_int {
    ($(#[$doc:meta])* $name:ident, $int:ty, $inner:ty, $($const:tt)?) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Debug, Default)]
        pub(crate) struct $name($inner);

        // Not every build uses every method of the facade.
        #[allow(dead_code)]
        impl $name {
            /// A new atomic holding `v`.
            #[inline]
            pub(crate) $($const)? fn new(v: $int) -> $name {
                $name(<$inner>::new(v))
            }

            atomic_methods!($int);
        }
    };
}

#[cfg(not(loom))]
atomic_int!(
    /// A `u32` atomic: the standard one here, loom's in model checks.
    AtomicU32, u32, imp::AtomicU32, const
);
#[cfg(loom)]
atomic_int!(
    /// A `u32` atomic: loom's, in model checks.
    AtomicU32, u32, imp::AtomicU32,
);
#[cfg(not(loom))]
atomic_int!(
    /// A `u64` atomic: the standard one here, loom's in model checks.
    AtomicU64, u64, imp::AtomicU64, const
);
#[cfg(loom)]
atomic_int!(
    /// A `u64` atomic: loom's, in model checks.
    AtomicU64, u64, imp::AtomicU64,
);

/// The standard atomics in every build, loom's included, for process-wide
/// statics that no model checks (see the [module doc](self)).
pub(crate) mod native {
    use super::Ordering;

    atomic_int!(
        /// A `u16` atomic for statics.
        AtomicU16, u16, std::sync::atomic::AtomicU16, const
    );
    atomic_int!(
        /// A `u64` atomic for statics.
        AtomicU64, u64, std::sync::atomic::AtomicU64, const
    );
    atomic_int!(
        /// A `usize` atomic for statics.
        AtomicUsize, usize, std::sync::atomic::AtomicUsize, const
    );
}

impl AtomicU32 {
    /// Blocks while the word reads `expected`, for at most `timeout` (the futex
    /// system call, see [`crate::futex::wait`]). May return early, for any
    /// reason: callers re-check their condition.
    #[inline]
    pub(crate) fn futex_wait(&self, expected: u32, timeout: Option<Duration>) {
        #[cfg(not(loom))]
        crate::futex::wait(&self.0, expected, timeout);
        #[cfg(loom)]
        {
            // A spurious return, after letting the other threads of the model run.
            let _ = (expected, timeout);
            loom::thread::yield_now();
        }
    }

    /// Wakes up to `n` threads blocked in [`futex_wait`](Self::futex_wait) on
    /// this word (see [`crate::futex::wake`]).
    #[inline]
    pub(crate) fn futex_wake(&self, n: u32) {
        #[cfg(not(loom))]
        crate::futex::wake(&self.0, n);
        #[cfg(loom)]
        let _ = n;
    }
}

/// A memory fence: the standard one here, loom's in model checks.
#[inline]
pub(crate) fn fence(order: Ordering) {
    imp::fence(order)
}

/// Pads a value to its own 128-byte line pair (what adjacent-line prefetch pulls
/// in together on x86-64), with a layout fixed by this crate rather than by a
/// dependency's version: it is part of the shared-memory layout.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub T);
