//! [`ShmVec`]: a growable array in shared memory.

use std::marker::PhantomData;

use super::{AllocError, Allocator, FreeError, ShmError, ShmPtr, ShmSafe};

/// A growable array whose elements live in a segment, addressed by offset, so it
/// can be read from any process that maps the segment.
///
/// The three words (`data`, `len`, `cap`) are plain data: a `ShmVec` may be a
/// field of a task. Its storage is freed explicitly with [`free`](Self::free) (a
/// destructor cannot know which allocator to return it to). Reading validates
/// `data` and `len` against the segment, since another process may have written
/// them.
#[repr(C)]
pub struct ShmVec<T: ShmSafe> {
    data: ShmPtr,
    len: u64,
    cap: u64,
    _marker: PhantomData<T>,
}

// SAFETY: repr(C) of a ShmPtr and two u64s; any bit pattern is a (possibly
// invalid) vector that every read validates; no Drop; PhantomData is zero-sized.
unsafe impl<T: ShmSafe> ShmSafe for ShmVec<T> {}

impl<T: ShmSafe> Default for ShmVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: ShmSafe> std::fmt::Debug for ShmVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmVec")
            .field("data", &self.data)
            .field("len", &self.len)
            .field("cap", &self.cap)
            .finish()
    }
}

impl<T: ShmSafe> ShmVec<T> {
    /// An empty vector that owns no storage.
    pub const fn new() -> Self {
        ShmVec {
            data: ShmPtr::NULL,
            len: 0,
            cap: 0,
            _marker: PhantomData,
        }
    }

    /// An empty vector with room for `cap` elements.
    pub fn with_capacity(alloc: &Allocator, cap: usize) -> Result<Self, AllocError> {
        let mut v = Self::new();
        v.reserve(alloc, cap)?;
        Ok(v)
    }

    /// A vector holding copies of `items`.
    pub fn from_slice(alloc: &Allocator, items: &[T]) -> Result<Self, AllocError>
    where
        T: Copy,
    {
        let mut v = Self::new();
        v.extend_from_slice(alloc, items)?;
        Ok(v)
    }

    /// Appends copies of `items`, growing the storage once if needed.
    pub fn extend_from_slice(&mut self, alloc: &Allocator, items: &[T]) -> Result<(), AllocError>
    where
        T: Copy,
    {
        if items.is_empty() {
            return Ok(());
        }
        self.reserve(alloc, items.len())?;
        // `len` may have been written by another process: checked arithmetic.
        let at = self
            .len
            .checked_mul(size_of::<T>() as u64)
            .ok_or_else(|| oom(alloc, items))?;
        let dst = self
            .data
            .byte_add(at)
            .and_then(|p| p.resolve_slice::<T>(items.len() as u64))
            .map_err(|_| oom(alloc, items))?;
        // SAFETY: `reserve` made room for `items.len()` more elements after `len`;
        // that storage is ours and disjoint from `items`.
        unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), dst.as_ptr(), items.len()) };
        self.len += items.len() as u64;
        Ok(())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements the storage can hold.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// The storage pointer (null while empty and unallocated).
    pub fn data(&self) -> ShmPtr {
        self.data
    }

    /// Makes room for at least `additional` more elements.
    pub fn reserve(&mut self, alloc: &Allocator, additional: usize) -> Result<(), AllocError> {
        let too_big = AllocError::OutOfMemory {
            segment: alloc.segment_id(),
            requested: usize::MAX,
            free_pages: 0,
        };
        // `len` may have been written by another process: checked arithmetic.
        let need = self.len.checked_add(additional as u64).ok_or(too_big)?;
        if need <= self.cap {
            return Ok(());
        }
        let new_cap = need.max(self.cap.saturating_mul(2)).max(4);
        let bytes = usize::try_from(new_cap)
            .ok()
            .and_then(|c| c.checked_mul(size_of::<T>()))
            .ok_or(too_big)?;
        let new = alloc.allocate_aligned(bytes.max(1), align_of::<T>())?;
        if self.len > 0
            && let Ok(old) = self.data.resolve_slice::<T>(self.len)
        {
            {
                // SAFETY: the old storage holds `len` elements; the new one has room
                // for more; they are distinct allocations.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        old.as_ptr(),
                        new.as_ptr().cast::<T>(),
                        self.len as usize,
                    )
                };
            }
        }
        if !self.data.is_null() {
            let _ = alloc.free(self.data);
        }
        self.data = new.shm();
        self.cap = new_cap;
        Ok(())
    }

    /// Appends `value`, growing the storage if needed.
    pub fn push(&mut self, alloc: &Allocator, value: T) -> Result<(), AllocError> {
        self.reserve(alloc, 1)?;
        let at = self
            .len
            .checked_mul(size_of::<T>() as u64)
            .ok_or_else(|| oom(alloc, &[0u8]))?;
        let slot = self
            .data
            .byte_add(at)
            .and_then(|p| p.resolve::<T>())
            .map_err(|_| oom(alloc, &[0u8]))?;
        // SAFETY: `reserve` guaranteed room for element `len`; it is uninitialised
        // storage we own.
        unsafe { slot.as_ptr().write(value) };
        self.len += 1;
        Ok(())
    }

    /// Forgets every element (the storage stays).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The elements, after checking that they lie inside a mapped segment.
    pub fn as_slice(&self) -> Result<&[T], ShmError> {
        if self.len == 0 {
            return Ok(&[]);
        }
        let p = self.data.resolve_slice::<T>(self.len)?;
        // SAFETY: `resolve_slice` checked that `len` elements at `data` lie inside a
        // mapped segment and are aligned; T is ShmSafe, so any bytes are a valid T.
        Ok(unsafe { std::slice::from_raw_parts(p.as_ptr(), self.len as usize) })
    }

    /// The elements, mutably.
    pub fn as_mut_slice(&mut self) -> Result<&mut [T], ShmError> {
        if self.len == 0 {
            return Ok(&mut []);
        }
        let p = self.data.resolve_slice::<T>(self.len)?;
        // SAFETY: as in `as_slice`, and `&mut self` stands for exclusive access to the
        // storage this vector owns.
        Ok(unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), self.len as usize) })
    }

    /// Element `i`, if in range.
    pub fn get(&self, i: usize) -> Result<Option<&T>, ShmError> {
        Ok(self.as_slice()?.get(i))
    }

    /// Returns the storage to `alloc` and leaves the vector empty. Elements that own
    /// shared memory themselves must be freed first.
    pub fn free(&mut self, alloc: &Allocator) -> Result<(), FreeError> {
        let data = std::mem::replace(&mut self.data, ShmPtr::NULL);
        self.len = 0;
        self.cap = 0;
        if data.is_null() {
            Ok(())
        } else {
            alloc.free(data)
        }
    }
}

fn oom<U>(alloc: &Allocator, items: &[U]) -> AllocError {
    AllocError::OutOfMemory {
        segment: alloc.segment_id(),
        requested: std::mem::size_of_val(items),
        free_pages: alloc.stats().free_pages,
    }
}
