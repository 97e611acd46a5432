//! Shared memory: named segments, offset pointers, a cross-process allocator and
//! containers that live in shared memory.
//!
//! # Design
//!
//! * A [`Segment`] is a file in `/dev/shm` (mode 0600) mapped read-write. Its first
//!   page holds a header (magic, layout version, id, size, root
//!   slots); the rest is the heap of an [`Allocator`]. The runtime creates
//!   segments, clients attach to them.
//! * Shared memory never holds an address: it holds a [`ShmPtr`], a segment id
//!   and an offset in one `u64`. [`ShmPtr::resolve`] turns it into a [`FullPtr`]
//!   (shared pointer + this process's address) through this process's segment
//!   table, checking segment, bounds and alignment: a value written by another
//!   process is untrusted and a garbage one is an error, never a stray access.
//! * The [`Allocator`] serves small sizes from size-classed pages through
//!   per-thread caches and lock-free, ABA-tagged free lists in the segment, and
//!   large sizes from page runs under a short lock. Every block records its owner
//!   so that a dead client's memory can be found and reclaimed.
//! * [`ShmSafe`] marks the types that may live in shared memory;
//!   [`ShmString`] and [`ShmVec`] are the offset-based containers.
//!
//! # Who unlinks a segment
//!
//! The process that *creates* a segment owns its name: dropping that [`Segment`]
//! unlinks the name (if it still names this segment), and a creator that died
//! leaves a stale file that the next `create` of the same name replaces.
//! Processes that *attach* never unlink; they unmap when their last handle (and
//! the last thread cache that refers to the segment) goes away. A mapping
//! outlives the name: clients still attached keep working on the unlinked
//! memory until they detach.

pub mod alloc;
mod mapping;
mod ptr;
pub(crate) mod registry;
mod safe;
mod segment;
mod string;
mod vec;

use std::io;

pub use alloc::{AllocError, AllocStats, Allocator, FreeError, OwnerId, ReapError, ReapReport};
pub use mapping::{LAYOUT_VERSION, NUM_ROOTS, SEGMENT_MAGIC};
pub use ptr::{FullPtr, SegmentId, ShmPtr};
pub use safe::ShmSafe;
pub use segment::Segment;
pub use string::ShmString;
pub use vec::ShmVec;

/// Errors of segments and of pointer resolution.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// No segment of that name exists.
    #[error(
        "shared-memory segment '{name}' does not exist: is the runtime that creates it running?"
    )]
    NotFound {
        /// Segment name.
        name: String,
    },
    /// The file does not start with this project's magic number.
    #[error(
        "'{name}' is not a chimaera segment (magic {found:#018x}, expected {expected:#018x}); \
         it is still being created, or another program owns that name"
    )]
    WrongMagic {
        /// Segment name.
        name: String,
        /// Magic found.
        found: u64,
        /// Magic expected.
        expected: u64,
    },
    /// The segment was laid out by an incompatible version.
    #[error(
        "segment '{name}' has layout version {found}, this build reads version {expected}: \
         run a client and runtime of the same release"
    )]
    WrongVersion {
        /// Segment name.
        name: String,
        /// Version found.
        found: u32,
        /// Version expected.
        expected: u32,
    },
    /// The header's size disagrees with the file's or with what the caller expected.
    #[error(
        "segment '{name}' is {actual} bytes but {expected} were expected; \
         the segment was replaced or truncated: restart the runtime"
    )]
    SizeMismatch {
        /// Segment name.
        name: String,
        /// Size expected (header or caller).
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// The requested size is too small or too large.
    #[error("segment '{name}': size {size} is out of range {min}..={max} bytes")]
    BadSize {
        /// Segment name.
        name: String,
        /// Size asked for.
        size: u64,
        /// Smallest size.
        min: u64,
        /// Largest size.
        max: u64,
    },
    /// The name cannot be used for a shared-memory object.
    #[error("invalid segment name '{name}': {reason}")]
    InvalidName {
        /// Segment name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The segment id is outside the supported range.
    #[error("segment '{name}': id {id} is out of range 1..={max}")]
    InvalidId {
        /// Segment name.
        name: String,
        /// Id.
        id: u16,
        /// Largest id.
        max: u16,
    },
    /// This process already maps another segment under the same id.
    #[error(
        "segment '{name}': id {id} is already used by segment '{other}', which this process \
         maps; a process maps one segment per id. Segment ids are chosen by whoever creates a \
         segment (a runtime picks ids no other runtime of the same user uses): give the new \
         segment an id of its own, or, for two runtimes' segments, connect this process to one \
         of them at a time (runtimes started by different users, or with different runtime \
         directories, can pick the same ids)"
    )]
    IdInUse {
        /// Segment name.
        name: String,
        /// Id.
        id: u16,
        /// The segment mapped under that id.
        other: String,
    },
    /// A system call failed.
    #[error("segment '{name}': {op} failed: {source}")]
    Io {
        /// Segment name.
        name: String,
        /// Operation.
        op: &'static str,
        /// OS error.
        source: io::Error,
    },
    /// The file system of `/dev/shm` has less free space than the segment needs:
    /// mapping it would end in SIGBUS once its pages are touched.
    #[error(
        "segment '{name}' needs {size} bytes but /dev/shm has only {free} bytes free; \
         configure smaller segments, free /dev/shm, or enlarge it \
         (mount -o remount,size=<bytes> /dev/shm)"
    )]
    NoSpace {
        /// Segment name.
        name: String,
        /// Bytes the segment needs.
        size: u64,
        /// Bytes free in `/dev/shm`.
        free: u64,
    },
    /// A null pointer was resolved.
    #[error("null shared-memory pointer")]
    Null,
    /// The pointer names a segment this process does not map.
    #[error("{ptr} names a segment that is not mapped in this process")]
    UnknownSegment {
        /// The pointer.
        ptr: ShmPtr,
    },
    /// The bytes at the pointer run past the end of its segment.
    #[error("{ptr} + {len} bytes runs outside its segment")]
    OutOfBounds {
        /// The pointer.
        ptr: ShmPtr,
        /// Bytes asked for.
        len: u64,
    },
    /// The pointer is not aligned for the type read through it.
    #[error("{ptr} is not aligned to {align} bytes")]
    Misaligned {
        /// The pointer.
        ptr: ShmPtr,
        /// Alignment required.
        align: u64,
    },
    /// A shared-memory string does not hold UTF-8.
    #[error("string at {ptr} is not valid UTF-8")]
    InvalidUtf8 {
        /// The string's data pointer.
        ptr: ShmPtr,
    },
}
