//! [`ShmSafe`]: the types that may live in shared memory.

// The standard atomics are what users' shared-memory types hold, so the marker
// names them: a deliberate exception to the facade rule of clippy.toml.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32, AtomicU64};

use super::ShmPtr;

/// Marks a type whose values may be placed in shared memory and read by other
/// processes (tasks, queue entries, container elements).
///
/// # Safety
///
/// Implement it only for a type that meets every item of this checklist:
///
/// 1. **Fixed layout.** A primitive, or `#[repr(C)]` / `#[repr(transparent)]` with
///    every field `ShmSafe`. The default Rust layout may differ between the
///    runtime and a module compiled separately.
/// 2. **No addresses.** No reference, raw pointer, `Box`, `String`, `Vec`, `Arc`,
///    function pointer or anything holding one: another process maps memory
///    elsewhere. Refer to shared memory with [`ShmPtr`], [`ShmString`](super::ShmString)
///    or [`ShmVec`](super::ShmVec).
/// 3. **Every bit pattern is valid.** Another process may write any bytes, so a
///    reader must not be able to observe an invalid value: no `bool`, `char`,
///    enum, `NonZero*` or reference niches. Use integers (`u8` for a flag) and
///    validate them when read.
/// 4. **No meaningful `Drop`.** Shared memory is released explicitly (by the
///    allocator), never by a destructor running in whichever process happens to
///    drop a copy.
/// 5. **No process-local state.** No thread ids, file descriptors or handles that
///    mean something only in the process that wrote them.
///
/// The `#[task]` macro checks fields against this trait and reports an error at
/// the offending field.
pub unsafe trait ShmSafe: Sized + 'static {}

macro_rules! shm_safe {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: a primitive integer, float or atomic integer: fixed layout, no
            // pointers, every bit pattern valid, no Drop.
            unsafe impl ShmSafe for $t {}
        )*
    };
}

shm_safe!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);
shm_safe!(
    AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicI32, AtomicI64
);
shm_safe!(());

// SAFETY: a repr(C) wrapper of one u64; every value is a (possibly garbage)
// pointer that `resolve` validates before use.
unsafe impl ShmSafe for ShmPtr {}

// SAFETY: an array of ShmSafe elements has their layout, contiguous, and inherits
// their properties.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_shm_safe<T: ShmSafe>() {}

    #[test]
    fn primitives_and_containers_are_shm_safe() {
        assert_shm_safe::<u64>();
        assert_shm_safe::<[u32; 4]>();
        assert_shm_safe::<ShmPtr>();
        assert_shm_safe::<crate::shm::ShmString>();
        assert_shm_safe::<crate::shm::ShmVec<crate::shm::ShmString>>();
    }
}
