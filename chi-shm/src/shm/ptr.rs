//! Offset pointers: [`ShmPtr`] crosses process boundaries, [`FullPtr`] adds this
//! process's address of it.
//!
//! Processes map a segment at different addresses, so shared memory never holds an
//! address: it holds a segment id and a byte offset from the start of that segment.
//! Turning one back into an address ([`ShmPtr::resolve`]) looks the segment up in
//! this process's [segment table](super::registry) and checks bounds and alignment,
//! because the value may have been written by another process and must be treated
//! as untrusted.

use std::fmt;
use std::ptr::NonNull;

use super::ShmError;
use super::registry;

/// Identifies a segment mapped in a process (1..=4095; 0 is null). A runtime
/// gives its segments a family of ids that no other runtime of its user uses,
/// so one process may map the segments of several runtimes.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SegmentId(pub u16);

impl SegmentId {
    /// The id that no segment has; the segment of [`ShmPtr::NULL`].
    pub const NULL: SegmentId = SegmentId(0);
    /// The largest id a segment may have.
    pub const MAX: SegmentId = SegmentId(registry::MAX_SEGMENTS as u16 - 1);
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment#{}", self.0)
    }
}

const OFFSET_BITS: u32 = 48;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

/// A pointer into shared memory: a segment id and a byte offset in one `u64`.
///
/// The top 16 bits hold the [`SegmentId`], the low 48 bits the offset, so a
/// `ShmPtr` fits in one atomic word (queues carry it that way). The all-zero value
/// is [`ShmPtr::NULL`]. The layout is `#[repr(C)]` over a single `u64`: stable
/// across processes, compilers and modules.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ShmPtr {
    bits: u64,
}

impl ShmPtr {
    /// The pointer to address `addr`, if it lies in a segment this process maps.
    pub fn from_addr<T>(addr: *const T) -> Option<ShmPtr> {
        super::registry::pointer_of(addr as usize)
    }

    /// The null pointer (segment 0, offset 0).
    pub const NULL: ShmPtr = ShmPtr { bits: 0 };
    /// The largest offset a `ShmPtr` can hold.
    pub const MAX_OFFSET: u64 = OFFSET_MASK;

    /// Builds a pointer; the offset is truncated to 48 bits (checked in debug builds).
    #[inline]
    pub const fn new(segment: SegmentId, offset: u64) -> ShmPtr {
        debug_assert!(offset <= OFFSET_MASK);
        ShmPtr {
            bits: ((segment.0 as u64) << OFFSET_BITS) | (offset & OFFSET_MASK),
        }
    }

    /// Reinterprets a raw word (for example one popped from a queue).
    #[inline]
    pub const fn from_bits(bits: u64) -> ShmPtr {
        ShmPtr { bits }
    }

    /// The raw word.
    #[inline]
    pub const fn to_bits(self) -> u64 {
        self.bits
    }

    /// The segment this pointer points into.
    #[inline]
    pub const fn segment(self) -> SegmentId {
        SegmentId((self.bits >> OFFSET_BITS) as u16)
    }

    /// The byte offset from the start of the segment.
    #[inline]
    pub const fn offset(self) -> u64 {
        self.bits & OFFSET_MASK
    }

    /// Whether this is [`ShmPtr::NULL`].
    #[inline]
    pub const fn is_null(self) -> bool {
        self.bits == 0
    }

    /// This pointer moved `bytes` further into the same segment.
    #[inline]
    pub fn byte_add(self, bytes: u64) -> Result<ShmPtr, ShmError> {
        match self.offset().checked_add(bytes) {
            Some(off) if off <= OFFSET_MASK => Ok(ShmPtr::new(self.segment(), off)),
            _ => Err(ShmError::OutOfBounds {
                ptr: self,
                len: bytes,
            }),
        }
    }

    /// Resolves this pointer to an address in this process, checking that the
    /// segment is mapped here, that `size_of::<T>()` bytes fit inside it and that
    /// the address is aligned for `T`.
    #[inline]
    pub fn resolve<T>(self) -> Result<FullPtr<T>, ShmError> {
        let addr = registry::resolve(self, size_of::<T>() as u64, align_of::<T>() as u64)?;
        // SAFETY: `registry::resolve` returns a non-null address inside a mapping.
        let ptr = unsafe { NonNull::new_unchecked(addr as *mut T) };
        Ok(FullPtr { shm: self, ptr })
    }

    /// Resolves a run of `len` values of `T` starting at this pointer, with the same
    /// checks as [`resolve`](Self::resolve) over the whole run.
    #[inline]
    pub fn resolve_slice<T>(self, len: u64) -> Result<FullPtr<T>, ShmError> {
        let bytes = len
            .checked_mul(size_of::<T>() as u64)
            .ok_or(ShmError::OutOfBounds {
                ptr: self,
                len: u64::MAX,
            })?;
        let addr = registry::resolve(self, bytes, align_of::<T>() as u64)?;
        // SAFETY: `registry::resolve` returns a non-null address inside a mapping.
        let ptr = unsafe { NonNull::new_unchecked(addr as *mut T) };
        Ok(FullPtr { shm: self, ptr })
    }
}

impl fmt::Debug for ShmPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_null() {
            f.write_str("ShmPtr(null)")
        } else {
            write!(f, "ShmPtr({}+{:#x})", self.segment().0, self.offset())
        }
    }
}

impl fmt::Display for ShmPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A [`ShmPtr`] together with this process's address of the same bytes.
///
/// Only the `ShmPtr` half may be stored in shared memory or sent to another
/// process; the address is valid in this process while the segment stays mapped.
/// Like a raw pointer, a `FullPtr` grants no access by itself: reading or writing
/// through it is `unsafe`.
pub struct FullPtr<T> {
    shm: ShmPtr,
    ptr: NonNull<T>,
}

impl<T> FullPtr<T> {
    /// Pairs a shared pointer with its local address.
    ///
    /// # Safety
    /// `ptr` must be the address at which `shm` is mapped in this process.
    #[inline]
    pub const unsafe fn from_parts(shm: ShmPtr, ptr: NonNull<T>) -> FullPtr<T> {
        FullPtr { shm, ptr }
    }

    /// The shared half, safe to store in shared memory.
    #[inline]
    pub const fn shm(&self) -> ShmPtr {
        self.shm
    }

    /// This process's address.
    #[inline]
    pub const fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// This process's address as `NonNull`.
    #[inline]
    pub const fn as_non_null(&self) -> NonNull<T> {
        self.ptr
    }

    /// Reinterprets the pointee type (no check: see [`ShmPtr::resolve`] for a checked cast).
    #[inline]
    pub const fn cast<U>(self) -> FullPtr<U> {
        FullPtr {
            shm: self.shm,
            ptr: self.ptr.cast(),
        }
    }

    /// Borrows the pointee.
    ///
    /// # Safety
    /// The memory must hold a valid `T` and no one may write it while the borrow lives
    /// (other than through atomics or interior mutability inside `T`).
    #[inline]
    pub unsafe fn as_ref<'a>(&self) -> &'a T {
        // SAFETY: the caller guarantees validity and the absence of writers.
        unsafe { self.ptr.as_ref() }
    }

    /// Borrows the pointee mutably.
    ///
    /// # Safety
    /// The memory must hold a valid `T` and no one else may access it while the
    /// borrow lives.
    #[inline]
    pub unsafe fn as_mut<'a>(&mut self) -> &'a mut T {
        // SAFETY: the caller guarantees validity and exclusivity.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Clone for FullPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for FullPtr<T> {}

impl<T> PartialEq for FullPtr<T> {
    fn eq(&self, other: &Self) -> bool {
        self.shm == other.shm
    }
}
impl<T> Eq for FullPtr<T> {}

impl<T> fmt::Debug for FullPtr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FullPtr({:?} @ {:p})", self.shm, self.ptr)
    }
}

// SAFETY: a FullPtr is an address plus an offset; it grants no access without
// `unsafe`, and the memory it names is shared between processes anyway, so moving
// the pointer value to another thread adds no hazard a raw pointer would not have.
unsafe impl<T> Send for FullPtr<T> {}
// SAFETY: as for Send: `&FullPtr` only exposes copies of the two addresses.
unsafe impl<T> Sync for FullPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_segment_and_offset() {
        let p = ShmPtr::new(SegmentId(7), 0x1234_5678_9abc);
        assert_eq!(p.segment(), SegmentId(7));
        assert_eq!(p.offset(), 0x1234_5678_9abc);
        assert!(!p.is_null());
        assert!(ShmPtr::NULL.is_null());
        assert_eq!(ShmPtr::from_bits(p.to_bits()), p);
        assert_eq!(size_of::<ShmPtr>(), 8);
    }

    #[test]
    fn add_checks_overflow() {
        let p = ShmPtr::new(SegmentId(1), ShmPtr::MAX_OFFSET - 4);
        assert!(p.byte_add(4).is_ok());
        assert!(p.byte_add(5).is_err());
    }
}
