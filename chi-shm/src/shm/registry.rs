//! This process's table of mapped segments: segment id → (base address, length).
//!
//! [`ShmPtr::resolve`](super::ShmPtr::resolve) reads it on every resolution, so it
//! is a fixed array of atomics indexed by id: two loads and a bounds check, no
//! lock. [`Segment`](super::Segment) fills a slot when it maps a segment and
//! empties it when the mapping goes away; one process maps each segment at most
//! once (attaching a segment this process already maps shares the mapping).
//!
//! A resolution is only meaningful while a handle to the segment lives: the
//! table tells where a segment is mapped now, it does not keep it mapped.

use super::{SegmentId, ShmError, ShmPtr};
use crate::sync::Ordering;
// A process-wide table, never part of a model: the standard atomics in every build.
use crate::sync::native::{AtomicU64, AtomicUsize};

/// Number of slots; segment ids range over `1..MAX_SEGMENTS` (64 KiB of
/// table: a process may map the segments of many runtimes, each of which
/// takes its own ids).
pub const MAX_SEGMENTS: usize = 4096;

struct Slot {
    base: AtomicUsize,
    len: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    base: AtomicUsize::new(0),
    len: AtomicU64::new(0),
};
static SLOTS: [Slot; MAX_SEGMENTS] = [EMPTY; MAX_SEGMENTS];
/// The name of each registered segment, for the error of a clash (never read
/// on a resolution).
static NAMES: std::sync::Mutex<std::collections::BTreeMap<u16, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Records that segment `id` is mapped at `base` for `len` bytes.
pub(crate) fn register(id: SegmentId, base: usize, len: u64, name: &str) -> Result<(), ShmError> {
    let slot = SLOTS
        .get(id.0 as usize)
        .filter(|_| id != SegmentId::NULL)
        .ok_or(ShmError::InvalidId {
            name: name.to_owned(),
            id: id.0,
            max: SegmentId::MAX.0,
        })?;
    // Claim the slot by its base so that two racing registrations cannot both win.
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if slot
        .base
        .compare_exchange(0, base, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return Err(ShmError::IdInUse {
            name: name.to_owned(),
            id: id.0,
            other: names.get(&id.0).cloned().unwrap_or_default(),
        });
    }
    names.insert(id.0, name.to_owned());
    // Release: pairs with the Acquire load of `len` in `resolve`, which then sees `base`.
    slot.len.store(len, Ordering::Release);
    Ok(())
}

/// Where segment `id` is mapped now: (base, length), if it is.
pub(crate) fn lookup(id: SegmentId) -> Option<(usize, u64)> {
    let slot = SLOTS.get(id.0 as usize)?;
    // Acquire: pairs with the Release store in `register`.
    let len = slot.len.load(Ordering::Acquire);
    let base = slot.base.load(Ordering::Relaxed);
    (len != 0 && base != 0).then_some((base, len))
}

/// Forgets the mapping of `id` (if it is still the one at `base`).
pub(crate) fn unregister(id: SegmentId, base: usize) {
    if let Some(slot) = SLOTS.get(id.0 as usize)
        && slot.base.load(Ordering::Relaxed) == base
    {
        let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
        names.remove(&id.0);
        slot.len.store(0, Ordering::Release);
        slot.base.store(0, Ordering::Release);
    }
}

/// The address of `len` bytes at `ptr`, if they lie inside a mapped segment and the
/// address is a multiple of `align`.
#[inline]
pub(crate) fn resolve(ptr: ShmPtr, len: u64, align: u64) -> Result<usize, ShmError> {
    if ptr.is_null() {
        return Err(ShmError::Null);
    }
    // The segment id comes from another process: an id past the table is an
    // unknown segment, never an index out of bounds.
    let Some(slot) = SLOTS.get(ptr.segment().0 as usize) else {
        return Err(ShmError::UnknownSegment { ptr });
    };
    // Acquire: pairs with the Release store in `register`.
    let seg_len = slot.len.load(Ordering::Acquire);
    let base = slot.base.load(Ordering::Relaxed);
    if seg_len == 0 || base == 0 {
        return Err(ShmError::UnknownSegment { ptr });
    }
    match ptr.offset().checked_add(len) {
        Some(end) if end <= seg_len => {}
        _ => return Err(ShmError::OutOfBounds { ptr, len }),
    }
    let addr = base + ptr.offset() as usize;
    if !(addr as u64).is_multiple_of(align) {
        return Err(ShmError::Misaligned { ptr, align });
    }
    Ok(addr)
}

/// The pointer of address `addr` if it lies inside a mapped segment (a linear
/// scan of the table: for rare paths such as freeing a task by address).
pub(crate) fn pointer_of(addr: usize) -> Option<ShmPtr> {
    SLOTS.iter().enumerate().skip(1).find_map(|(id, slot)| {
        // Acquire: pairs with the Release store in `register`.
        let len = slot.len.load(Ordering::Acquire);
        let base = slot.base.load(Ordering::Relaxed);
        (len != 0 && base != 0 && addr >= base && ((addr - base) as u64) < len)
            .then(|| ShmPtr::new(super::SegmentId(id as u16), (addr - base) as u64))
    })
}
