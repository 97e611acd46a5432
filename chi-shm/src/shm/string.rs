//! [`ShmString`]: a UTF-8 string in shared memory.

use super::{AllocError, Allocator, FreeError, ShmError, ShmPtr, ShmSafe, ShmVec};

/// A string whose bytes live in a segment (see [`ShmVec`]); readable from any
/// process that maps the segment. Since another process may have written the
/// bytes, reading as `&str` validates UTF-8 ([`to_str`](Self::to_str)).
#[repr(C)]
#[derive(Default)]
pub struct ShmString {
    bytes: ShmVec<u8>,
}

// SAFETY: repr(C) wrapper of a ShmVec<u8>, which is ShmSafe.
unsafe impl ShmSafe for ShmString {}

impl std::fmt::Debug for ShmString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_str() {
            Ok(s) => write!(f, "ShmString({s:?})"),
            Err(e) => write!(f, "ShmString(<{e}>)"),
        }
    }
}

impl ShmString {
    /// The empty string (owns no storage).
    pub const fn new() -> Self {
        ShmString {
            bytes: ShmVec::new(),
        }
    }

    /// A copy of `s` in `alloc`'s segment.
    pub fn from_str(alloc: &Allocator, s: &str) -> Result<Self, AllocError> {
        Ok(ShmString {
            bytes: ShmVec::from_slice(alloc, s.as_bytes())?,
        })
    }

    /// Replaces the content with `s`, reusing the storage when it is large enough.
    pub fn set(&mut self, alloc: &Allocator, s: &str) -> Result<(), AllocError> {
        self.bytes.clear();
        self.bytes.extend_from_slice(alloc, s.as_bytes())
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes, bounds-checked.
    pub fn as_bytes(&self) -> Result<&[u8], ShmError> {
        self.bytes.as_slice()
    }

    /// The string, bounds- and UTF-8-checked.
    pub fn to_str(&self) -> Result<&str, ShmError> {
        std::str::from_utf8(self.as_bytes()?)
            .map_err(|_| ShmError::InvalidUtf8 { ptr: self.data() })
    }

    /// Upper-cases the ASCII letters in place (the string stays valid UTF-8; no
    /// allocation, so a module can update an `#[inout]` string of the same length).
    pub fn make_ascii_uppercase(&mut self) -> Result<(), ShmError> {
        self.bytes.as_mut_slice()?.make_ascii_uppercase();
        Ok(())
    }

    /// The storage pointer.
    pub fn data(&self) -> ShmPtr {
        self.bytes.data()
    }

    /// Returns the storage to `alloc`.
    pub fn free(&mut self, alloc: &Allocator) -> Result<(), FreeError> {
        self.bytes.free(alloc)
    }
}
