//! One mapping of a segment in this process, and the header at its start.
//!
//! # Design
//!
//! * The [`SegmentHeader`] (offset 0, [`HEADER_SIZE`] bytes reserved) holds the
//!   magic, the layout version, the segment's id, size and name, the creator's
//!   pid, where the allocator metadata starts, and the root slots. Its plain
//!   fields are written before the magic is published (Release) and read only
//!   after the magic was seen (Acquire); the magic and the root slots are atomics.
//! * A process maps each segment once: every [`Segment`](super::Segment) handle to
//!   it, and every allocator handle and thread cache that serves it, shares one
//!   [`Mapping`] through an `Arc`, found by name in [`BY_NAME`]. The last one to
//!   go unmaps the segment and takes it out of this process's segment table
//!   ([`registry`]).
//! * A mapping made by another copy of this library in the same process (a
//!   module library, which links its own copy) is adopted, not owned: it is never
//!   unmapped or unregistered from here.

use std::sync::{Mutex, Weak};

use memmap2::MmapRaw;

use super::{SegmentId, registry};
use crate::sync::AtomicU64;

/// First eight bytes of every segment: `b"CHIMSEG1"` as a little-endian word.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"CHIMSEG1");
/// Version of the layout of the header, the allocator metadata and the block
/// headers. Bump it on any change to them.
pub const LAYOUT_VERSION: u32 = 4;
/// Number of root slots in the header (well-known objects such as the process queue).
pub const NUM_ROOTS: usize = 16;
/// Bytes reserved for the header at the start of a segment.
pub(crate) const HEADER_SIZE: u64 = 4096;
/// Bytes of the header's name field (names are shorter: NUL-padded).
pub(super) const NAME_CAP: usize = 128;

/// The header at offset 0 of every segment.
#[repr(C)]
pub(crate) struct SegmentHeader {
    /// [`SEGMENT_MAGIC`] once the segment is fully initialised.
    pub(super) magic: AtomicU64,
    pub(super) layout_version: u32,
    pub(super) segment_id: u16,
    _pad: u16,
    /// Size of the whole segment in bytes.
    pub(super) size: u64,
    /// pid of the creating process.
    pub(super) creator_pid: u32,
    _pad2: u32,
    /// Offset of the allocator metadata.
    pub alloc_offset: u64,
    /// NUL-padded name, for diagnostics.
    pub(super) name: [u8; NAME_CAP],
    /// Root slots: `ShmPtr` bits of well-known objects, set by the creator.
    pub(super) roots: [AtomicU64; NUM_ROOTS],
}

const _: () = assert!(size_of::<SegmentHeader>() as u64 <= HEADER_SIZE);

/// One mapping of a segment in this process, shared by every handle to it.
pub(crate) struct Mapping {
    pub(super) name: String,
    pub(super) id: SegmentId,
    /// `None` for a mapping made by another copy of this library in the same
    /// process (a module seeing the runtime's segments): see
    /// [`Segment::adopt_external`](super::Segment::adopt_external).
    pub(super) map: Option<MmapRaw>,
    pub(super) ext_base: usize,
    pub(super) size: u64,
    /// (device, inode) of the file, to tell our segment from a replacement.
    pub(super) file_id: (u64, u64),
}

impl Mapping {
    /// Base address of the mapping.
    #[inline]
    pub(crate) fn base(&self) -> *mut u8 {
        match &self.map {
            Some(m) => m.as_mut_ptr(),
            None => self.ext_base as *mut u8,
        }
    }

    /// Length of the mapping.
    #[inline]
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The segment's id.
    #[inline]
    pub(crate) fn id(&self) -> SegmentId {
        self.id
    }

    /// The segment's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    #[inline]
    pub(crate) fn header(&self) -> &SegmentHeader {
        // SAFETY: every mapping is at least HEADER_SIZE long (checked at create and
        // attach), page aligned, and the header is only accessed through atomics or
        // fields written before the magic was published.
        unsafe { &*(self.base() as *const SegmentHeader) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.map.is_none() {
            // Adopted: the other copy owns the mapping and its registration.
            return;
        }
        registry::unregister(self.id, self.base() as usize);
        let mut by_name = BY_NAME.lock().unwrap_or_else(|e| e.into_inner());
        by_name.retain(|(n, w)| !(n == &self.name && w.strong_count() == 0));
    }
}

/// Mappings of this process by name, so attaching twice shares one mapping.
pub(super) static BY_NAME: Mutex<Vec<(String, Weak<Mapping>)>> = Mutex::new(Vec::new());
