//! Why an allocation or a free failed: small `Copy` enums, one per operation,
//! every variant documented and every message saying what to do next.

use super::layout::MAX_OWNERS;
use crate::shm::{SegmentId, ShmPtr};

/// Why an allocation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// The segment has no room left for the request.
    #[error(
        "{segment}: out of shared memory allocating {requested} bytes ({free_pages} free pages of \
         64 KiB); raise the segment size in the runtime configuration"
    )]
    OutOfMemory {
        /// Segment.
        segment: SegmentId,
        /// Bytes asked for.
        requested: usize,
        /// Free pages left.
        free_pages: u64,
    },
    /// The alignment is not a power of two or is above [`MAX_ALIGN`](super::MAX_ALIGN).
    #[error("alignment {align} is not a power of two up to 4096")]
    UnsupportedAlign {
        /// Alignment asked for.
        align: usize,
    },
    /// Every owner slot of the segment is taken.
    #[error(
        "{segment}: all {MAX_OWNERS} owner slots are taken; too many attached processes, or dead \
         ones not yet reclaimed"
    )]
    OwnerTableFull {
        /// Segment.
        segment: SegmentId,
    },
    /// A shared free list held an offset that is not a free block of its class.
    /// The list was abandoned (its blocks are lost until the segment is
    /// recreated); the next allocation of that class carves a fresh page.
    #[error(
        "free list of class {class} in {segment} is corrupt at offset {offset:#x}; the segment \
         was scribbled on by a client: the list was abandoned (its blocks are lost), so restart \
         the runtime to recover them and look for a client writing out of bounds"
    )]
    CorruptFreeList {
        /// Segment.
        segment: SegmentId,
        /// Size class of the list.
        class: u32,
        /// The offending offset.
        offset: u64,
    },
    /// The page lock stayed with one live, attached process for
    /// the page lock's timeout (2 s) without progress.
    #[error(
        "{segment}: the allocator's page lock has been held by process {holder} for {waited_ms} \
         ms; if that process is hung, kill it (the lock of a dead process is taken over) and \
         retry"
    )]
    PageLockTimeout {
        /// Segment.
        segment: SegmentId,
        /// pid in the lock word.
        holder: u32,
        /// How long this call waited, in milliseconds.
        waited_ms: u64,
    },
}

/// Why a free (or an ownership query) was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FreeError {
    /// The pointer names another segment than this allocator's.
    #[error("{ptr} is not in this allocator's segment ({segment})")]
    WrongSegment {
        /// The pointer.
        ptr: ShmPtr,
        /// This allocator's segment.
        segment: SegmentId,
    },
    /// The pointer is not the start of a live allocation (garbage, or freed twice).
    #[error("{ptr} is not a live allocation (garbage pointer or double free)")]
    NotAllocated {
        /// The pointer.
        ptr: ShmPtr,
    },
    /// Freeing a large block needs the page lock, which stayed with one live,
    /// attached process for the page lock's timeout (2 s). The block is still
    /// allocated.
    #[error(
        "{ptr}: not freed, the allocator's page lock has been held by process {holder} for over \
         2 s; if that process is hung, kill it and free the block again"
    )]
    PageLockTimeout {
        /// The pointer (still allocated).
        ptr: ShmPtr,
        /// pid in the lock word.
        holder: u32,
    },
}
