//! Binary serialisation of task fields, for tasks that cross nodes.
//!
//! A remote task travels as bytes: `SaveIn` on the sending runtime, `LoadIn` into a
//! fresh task on the receiving one, and back with `SaveOut` / `LoadOut`. The
//! `#[task]` macro implements [`TaskSer`] for each task from the [`Ser`] impls of
//! its fields.
//!
//! # Format
//!
//! Little-endian and fixed-width, no padding, no self-description (both ends know
//! the task type from its method id):
//!
//! | type | bytes |
//! | --- | --- |
//! | `u8`..`u128`, `i8`..`i128`, their atomics | the value, little-endian |
//! | `usize` / `isize` | as `u64` / `i64` (a value that does not fit is an error on load) |
//! | `f32` / `f64` | the IEEE bits, little-endian |
//! | `[T; N]` | the `N` elements |
//! | [`ShmString`] | `u64` length, then the UTF-8 bytes (checked on load) |
//! | [`ShmVec<T>`] | `u64` length, then the elements |
//! | [`PoolId`], [`ContainerId`], [`NodeId`] | the integer |
//! | [`TaskNode`] | `major: u64`, `minor: u32`, `waiter: u32` |
//! | [`DomainQuery`] | `kind: u32`, `value: u32` |
//! | [`ShmPtr`] | its raw `u64` bits: meaningful on the node that wrote it only |
//!
//! # Untrusted input
//!
//! A buffer comes from the network, and a task's strings and vectors from shared
//! memory that another process writes: every length is checked against what is
//! left of the buffer, every pointer is resolved with its bounds checked, and a
//! malformed buffer or field is a [`SerError`], never a panic. A `load` that fails
//! halfway leaves the field valid (it may hold part of the new value), so freeing
//! the task afterwards frees everything it owns.

use crate::shm::{AllocError, Allocator, ShmError, ShmPtr, ShmSafe, ShmString, ShmVec};
use crate::task::{Failure, Task};
use crate::types::{ContainerId, DomainQuery, NodeId, PoolId, TaskNode};

/// Why a task or field could not be saved, loaded or copied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SerError {
    /// The buffer ended before the value did.
    #[error("task buffer truncated: {needed} bytes needed at offset {at}, {remaining} left")]
    Truncated {
        /// Offset in the buffer.
        at: usize,
        /// Bytes the value needs.
        needed: u64,
        /// Bytes left in the buffer.
        remaining: usize,
    },
    /// Bytes were left over after the last field.
    #[error("task buffer has {extra} trailing bytes after offset {at}")]
    TrailingBytes {
        /// Offset where the task ended.
        at: usize,
        /// Bytes left over.
        extra: usize,
    },
    /// A string's bytes are not UTF-8.
    #[error("task buffer: the string at offset {at} is not valid UTF-8")]
    InvalidUtf8 {
        /// Offset of the string's bytes.
        at: usize,
    },
    /// A value does not fit the field's type on this machine.
    #[error("task buffer: value {value} at offset {at} does not fit in {ty}")]
    OutOfRange {
        /// Offset of the value.
        at: usize,
        /// The value read.
        value: i128,
        /// The field's type.
        ty: &'static str,
    },
    /// Shared memory ran out while loading or copying a string or vector.
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// A client-data buffer of the task could not be read, allocated or
    /// checked (see [`crate::bytes`]).
    #[error("task buffer: client-data buffer {0}")]
    ClientData(String),
    /// A string or vector of the task points outside shared memory (another
    /// process wrote garbage into it).
    #[error("reading a task field from shared memory: {0}")]
    Shm(#[from] ShmError),
}

/// A task that cannot be saved, loaded or copied fails with
/// [`code::BAD_TASK`](crate::task::code::BAD_TASK) and the reason.
impl From<SerError> for Failure {
    fn from(e: SerError) -> Failure {
        Failure::bad_task(e.to_string())
    }
}

/// A value of `T` whose bytes are all zero: the empty value of every field type
/// (`0`, an empty [`ShmString`] or [`ShmVec`]).
pub(crate) fn zeroed<T: ShmSafe>() -> T {
    // SAFETY: `ShmSafe` promises that every bit pattern is a valid `T` (item 3 of
    // its checklist), all zeroes included, and that `T` has no meaningful Drop.
    unsafe { std::mem::zeroed() }
}

/// A cursor over a received buffer; every read is bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Current offset in the buffer.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: u64) -> Result<&'a [u8], SerError> {
        let remaining = self.remaining();
        match usize::try_from(n) {
            Ok(n) if n <= remaining => {
                let s = &self.buf[self.pos..self.pos + n];
                self.pos += n;
                Ok(s)
            }
            _ => Err(SerError::Truncated {
                at: self.pos,
                needed: n,
                remaining,
            }),
        }
    }

    /// The next `N` bytes as an array.
    pub fn take_array<const N: usize>(&mut self) -> Result<[u8; N], SerError> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Reads a `u64` length of `min_each`-byte items and checks that so many items
    /// can fit in what is left (so a garbage length cannot make a loader allocate
    /// or loop for long).
    pub fn take_len(&mut self, min_each: usize) -> Result<u64, SerError> {
        let at = self.pos;
        let n = u64::from_le_bytes(self.take_array()?);
        let remaining = self.remaining();
        let needed = n.saturating_mul(min_each.max(1) as u64);
        if needed > remaining as u64 {
            return Err(SerError::Truncated {
                at,
                needed,
                remaining,
            });
        }
        Ok(n)
    }

    /// Checks that the whole buffer was read.
    pub fn finish(self) -> Result<(), SerError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(SerError::TrailingBytes {
                at: self.pos,
                extra,
            }),
        }
    }
}

/// A field type a task can save, load, deep-copy and free.
///
/// Implemented for the integers, floats and their atomics, arrays, the id types,
/// [`ShmString`] and [`ShmVec<T: Ser>`](ShmVec); a module's own `#[repr(C)]` type
/// can implement it field by field.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task field: it does not implement `chi_sdk::ser::Ser`",
    label = "a task field must be saveable, loadable and copyable",
    note = "use integers, floats, arrays, ids, `ShmString`, `ShmVec<T>`, or `ClientBytes` / `ClientStr` / `ClientBuf` for data of any size, or implement `Ser` for your `#[repr(C)]` type"
)]
pub trait Ser: ShmSafe {
    /// The fewest bytes one value encodes to (bounds lengths read from a buffer).
    const MIN_ENCODED: usize;

    /// The value whose bytes are all zero: `0`, an empty string or vector. (Valid
    /// for every `ShmSafe` type, all of whose bit patterns are values.)
    fn empty() -> Self {
        zeroed()
    }

    /// Appends the value to `out`.
    fn save(&self, out: &mut Vec<u8>) -> Result<(), SerError>;

    /// Replaces the value with one read from `r`, allocating strings and vectors
    /// from `alloc` (and reusing or freeing the storage the value owned).
    fn load(&mut self, r: &mut Reader<'_>, alloc: &Allocator) -> Result<(), SerError>;

    /// A deep copy whose strings and vectors are new allocations from `alloc`. On
    /// error nothing stays allocated.
    fn deep_copy(&self, alloc: &Allocator) -> Result<Self, SerError>;

    /// Returns the shared memory the value owns to `alloc`, leaving it empty. Plain
    /// data owns nothing.
    fn free_shm(&mut self, _alloc: &Allocator) {}

    /// Combines a broadcast replica's value into this one (the default
    /// aggregation of output fields, replicas in container order): a
    /// collection ([`ShmString`], [`ShmVec`], `ClientBuf`) appends the
    /// replica's contents; any other value keeps its own (container 0's).
    fn collect(&mut self, _replica: &Self, _alloc: &Allocator) -> Result<(), SerError> {
        Ok(())
    }
}

macro_rules! ser_int {
    ($($t:ty),* $(,)?) => {$(
        impl Ser for $t {
            const MIN_ENCODED: usize = size_of::<$t>();
            fn save(&self, out: &mut Vec<u8>) -> Result<(), SerError> {
                out.extend_from_slice(&self.to_le_bytes());
                Ok(())
            }
            fn load(&mut self, r: &mut Reader<'_>, _alloc: &Allocator) -> Result<(), SerError> {
                *self = <$t>::from_le_bytes(r.take_array()?);
                Ok(())
            }
            fn deep_copy(&self, _alloc: &Allocator) -> Result<Self, SerError> {
                Ok(*self)
            }
        }
    )*};
}

ser_int!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

macro_rules! ser_size {
    ($t:ty, $wire:ty) => {
        impl Ser for $t {
            const MIN_ENCODED: usize = size_of::<$wire>();
            fn save(&self, out: &mut Vec<u8>) -> Result<(), SerError> {
                out.extend_from_slice(&(*self as $wire).to_le_bytes());
                Ok(())
            }
            fn load(&mut self, r: &mut Reader<'_>, _alloc: &Allocator) -> Result<(), SerError> {
                let at = r.position();
                let v = <$wire>::from_le_bytes(r.take_array()?);
                *self = <$t>::try_from(v).map_err(|_| SerError::OutOfRange {
                    at,
                    value: v as i128,
                    ty: stringify!($t),
                })?;
                Ok(())
            }
            fn deep_copy(&self, _alloc: &Allocator) -> Result<Self, SerError> {
                Ok(*self)
            }
        }
    };
}

ser_size!(usize, u64);
ser_size!(isize, i64);

macro_rules! ser_atomic {
    ($($t:ident($v:ty)),* $(,)?) => {$(
        impl Ser for std::sync::atomic::$t {
            const MIN_ENCODED: usize = size_of::<$v>();
            fn save(&self, out: &mut Vec<u8>) -> Result<(), SerError> {
                out.extend_from_slice(
                    &self.load(std::sync::atomic::Ordering::Relaxed).to_le_bytes(),
                );
                Ok(())
            }
            fn load(&mut self, r: &mut Reader<'_>, _alloc: &Allocator) -> Result<(), SerError> {
                *self.get_mut() = <$v>::from_le_bytes(r.take_array()?);
                Ok(())
            }
            fn deep_copy(&self, _alloc: &Allocator) -> Result<Self, SerError> {
                Ok(Self::new(self.load(std::sync::atomic::Ordering::Relaxed)))
            }
        }
    )*};
}

ser_atomic!(
    AtomicU8(u8),
    AtomicU16(u16),
    AtomicU32(u32),
    AtomicU64(u64),
    AtomicI32(i32),
    AtomicI64(i64),
);

/// Ser for a `#[repr(C)]` / `#[repr(transparent)]` struct of `Copy` fields, field by field.
macro_rules! ser_plain_struct {
    ($t:ty { $($f:tt : $ft:ty),* $(,)? }) => {
        impl Ser for $t {
            const MIN_ENCODED: usize = 0 $(+ size_of::<$ft>())*;
            fn save(&self, out: &mut Vec<u8>) -> Result<(), SerError> {
                $( self.$f.save(out)?; )*
                Ok(())
            }
            fn load(&mut self, r: &mut Reader<'_>, alloc: &Allocator) -> Result<(), SerError> {
                $( self.$f.load(r, alloc)?; )*
                Ok(())
            }
            fn deep_copy(&self, _alloc: &Allocator) -> Result<Self, SerError> {
                Ok(*self)
            }
        }
    };
}

ser_plain_struct!(PoolId { 0: u64 });
ser_plain_struct!(ContainerId { 0: u32 });
ser_plain_struct!(NodeId { 0: u32 });
ser_plain_struct!(TaskNode {
    major: u64,
    minor: u32,
    waiter: u32
});
ser_plain_struct!(DomainQuery {
    kind: u32,
    value: u32
});

impl Ser for ShmPtr {
    const MIN_ENCODED: usize = 8;
    fn save(&self, out: &mut Vec<u8>) -> Result<(), SerError> {
        out.extend_from_slice(&self.to_bits().to_le_bytes());
        Ok(())
    }
    fn load(&mut self, r: &mut Reader<'_>, _alloc: &Allocator) -> Result<(), SerError> {
        *self = ShmPtr::from_bits(u64::from_le_bytes(r.take_array()?));
        Ok(())
    }
    fn deep_copy(&self, _alloc: &Allocator) -> Result<Self, SerError> {
        Ok(*self)
    }
}

impl<T: Ser, const N: usize> Ser for [T; N] {
    const MIN_ENCODED: usize = T::MIN_ENCODED * N;
    fn save(&self, out: &mut Vec<u8>) -> Result<(), SerError> {
        self.iter().try_for_each(|x| x.save(out))
    }
    fn load(&mut self, r: &mut Reader<'_>, alloc: &Allocator) -> Result<(), SerError> {
        self.iter_mut().try_for_each(|x| x.load(r, alloc))
    }
    fn deep_copy(&self, alloc: &Allocator) -> Result<Self, SerError> {
        let mut out: [T; N] = zeroed();
        for (i, (dst, src)) in out.iter_mut().zip(self).enumerate() {
            match src.deep_copy(alloc) {
                Ok(v) => *dst = v,
                Err(e) => {
                    out[..i].iter_mut().for_each(|x| x.free_shm(alloc));
                    return Err(e);
                }
            }
        }
        Ok(out)
    }
    fn free_shm(&mut self, alloc: &Allocator) {
        self.iter_mut().for_each(|x| x.free_shm(alloc));
    }
}

impl Ser for ShmString {
    const MIN_ENCODED: usize = 8;
    fn save(&self, out: &mut Vec<u8>) -> Result<(), SerError> {
        let bytes = self.as_bytes()?;
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
        Ok(())
    }
    fn load(&mut self, r: &mut Reader<'_>, alloc: &Allocator) -> Result<(), SerError> {
        let n = r.take_len(1)?;
        let at = r.position();
        let s = std::str::from_utf8(r.take(n)?).map_err(|_| SerError::InvalidUtf8 { at })?;
        self.set(alloc, s)?;
        Ok(())
    }
    fn deep_copy(&self, alloc: &Allocator) -> Result<Self, SerError> {
        let bytes = self.as_bytes()?;
        let s =
            std::str::from_utf8(bytes).map_err(|_| ShmError::InvalidUtf8 { ptr: self.data() })?;
        Ok(ShmString::from_str(alloc, s)?)
    }
    fn free_shm(&mut self, alloc: &Allocator) {
        let _ = self.free(alloc);
    }
    fn collect(&mut self, replica: &Self, alloc: &Allocator) -> Result<(), SerError> {
        let tail = replica.as_bytes()?;
        if tail.is_empty() {
            return Ok(());
        }
        let head = self.as_bytes()?;
        let mut joined = Vec::with_capacity(head.len() + tail.len());
        joined.extend_from_slice(head);
        joined.extend_from_slice(tail);
        let text =
            std::str::from_utf8(&joined).map_err(|_| ShmError::InvalidUtf8 { ptr: self.data() })?;
        self.set(alloc, text)?;
        Ok(())
    }
}

impl<T: Ser> Ser for ShmVec<T> {
    const MIN_ENCODED: usize = 8;
    fn save(&self, out: &mut Vec<u8>) -> Result<(), SerError> {
        let items = self.as_slice()?;
        out.extend_from_slice(&(items.len() as u64).to_le_bytes());
        items.iter().try_for_each(|x| x.save(out))
    }
    fn load(&mut self, r: &mut Reader<'_>, alloc: &Allocator) -> Result<(), SerError> {
        let n = r.take_len(T::MIN_ENCODED)?;
        // The old elements' own storage goes; the vector's storage is reused.
        if let Ok(old) = self.as_mut_slice() {
            old.iter_mut().for_each(|x| x.free_shm(alloc));
        }
        self.clear();
        self.reserve(alloc, n as usize)?;
        for _ in 0..n {
            self.push(alloc, zeroed())?;
            let last = self.len() - 1;
            // The element was just pushed, so the slice resolves and holds it.
            let slot = &mut self.as_mut_slice()?[last];
            slot.load(r, alloc)?;
        }
        Ok(())
    }
    fn deep_copy(&self, alloc: &Allocator) -> Result<Self, SerError> {
        let items = self.as_slice()?;
        let mut out = ShmVec::with_capacity(alloc, items.len())?;
        for x in items {
            // Room first (so a copied value is never dropped with its storage),
            // then the copy into the new slot.
            let res = out
                .push(alloc, zeroed())
                .map_err(SerError::from)
                .and_then(|()| x.deep_copy(alloc))
                .and_then(|v| {
                    let last = out.len() - 1;
                    out.as_mut_slice()?[last] = v;
                    Ok(())
                });
            if let Err(e) = res {
                out.free_shm(alloc);
                return Err(e);
            }
        }
        Ok(out)
    }
    fn free_shm(&mut self, alloc: &Allocator) {
        if let Ok(items) = self.as_mut_slice() {
            items.iter_mut().for_each(|x| x.free_shm(alloc));
        }
        let _ = self.free(alloc);
    }
    /// Appends deep copies of the replica's elements.
    fn collect(&mut self, replica: &Self, alloc: &Allocator) -> Result<(), SerError> {
        let items = replica.as_slice()?;
        self.reserve(alloc, items.len())?;
        for x in items {
            // Room first, then the copy into it (a copy is never dropped
            // with its storage; a failed one leaves an empty element).
            self.push(alloc, zeroed())?;
            let last = self.len() - 1;
            let v = x.deep_copy(alloc)?;
            self.as_mut_slice()?[last] = v;
        }
        Ok(())
    }
}

/// The serialisation and copy half of a task, generated by `#[task]`.
///
/// * `save_in` / `load_in`: the header's routing fields (flags, method, pool,
///   task node, domain query, period, client id) then the `#[input]` and
///   `#[inout]` fields, in declaration order.
/// * `save_out` / `load_out`: the header's result code and error message, then
///   the `#[output]` and `#[inout]` fields. `load_out` stores the result code;
///   the caller still completes the task.
///
/// The loads read from a [`Reader`] and leave it after the task's bytes (call
/// [`Reader::finish`] to reject trailing bytes).
pub trait TaskSer: Task {
    /// Appends the header's routing fields and the input fields to `out`.
    fn save_in(&self, out: &mut Vec<u8>) -> Result<(), SerError>;
    /// Loads what [`save_in`](Self::save_in) wrote into this (typically fresh) task.
    fn load_in(&mut self, r: &mut Reader<'_>, alloc: &Allocator) -> Result<(), SerError>;
    /// Appends the result code, error message and output fields to `out`.
    fn save_out(&self, out: &mut Vec<u8>) -> Result<(), SerError>;
    /// Loads what [`save_out`](Self::save_out) wrote into the original task.
    fn load_out(&mut self, r: &mut Reader<'_>, alloc: &Allocator) -> Result<(), SerError>;
    /// A deep copy: a fresh header (not queued, not complete, result OK, no error
    /// message) with this task's routing fields, and every field deep-copied
    /// (strings and vectors allocated from `alloc`). On error nothing stays
    /// allocated.
    fn new_copy(&self, alloc: &Allocator) -> Result<Self, SerError>;
    /// The default aggregation of a broadcast: combines `replica`'s outputs
    /// into this task's ([`Ser::collect`] of each `#[output]` field: a
    /// collection appends, a value keeps this task's); `#[inout]` fields
    /// keep this task's. The runtime calls it with the replicas in container
    /// order, this task holding container 0's outputs.
    fn collect_outputs(&mut self, replica: &Self, alloc: &Allocator) -> Result<(), SerError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_rejects_short_and_trailing_buffers() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert!(matches!(
            r.take_array::<4>(),
            Err(SerError::Truncated {
                at: 0,
                needed: 4,
                remaining: 3
            })
        ));
        assert_eq!(r.take(2).unwrap(), &[1, 2]);
        assert!(matches!(
            r.clone().finish(),
            Err(SerError::TrailingBytes { at: 2, extra: 1 })
        ));
        r.take(1).unwrap();
        r.finish().unwrap();
    }

    #[test]
    fn take_len_bounds_the_length_by_the_buffer() {
        let mut buf = u64::MAX.to_le_bytes().to_vec();
        buf.extend_from_slice(&[0; 16]);
        assert!(matches!(
            Reader::new(&buf).take_len(1),
            Err(SerError::Truncated { at: 0, .. })
        ));
        let mut buf = 2u64.to_le_bytes().to_vec();
        buf.extend_from_slice(&[0; 16]);
        assert_eq!(Reader::new(&buf).take_len(8).unwrap(), 2);
        assert!(Reader::new(&buf).take_len(9).is_err());
    }
}
