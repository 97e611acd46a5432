//! The allocator's on-segment layout: the metadata header, pages, size classes,
//! block headers, page descriptors, and owner and thread slots. Everything here
//! is `#[repr(C)]`, pointer-free and shared by every process that maps the
//! segment; changing any of it means bumping
//! [`LAYOUT_VERSION`](crate::shm::LAYOUT_VERSION).
//!
//! # The heap's format
//!
//! ```text
//! alloc_offset                 desc_offset             heap_offset (a multiple of 64 KiB)
//! | AllocHeader                | page descriptors      | page 0 | page 1 | ...
//! | (lists, slots, page lock)  | (one u32 per page)    |
//! ```
//!
//! [`format()`] writes the header of a fresh, zero-filled segment (zero is the
//! initial value of every other field); [`validate`] checks that an attached
//! segment's header agrees with its size before anything indexes through it.
//! [`geometry`] is the one place that computes where the heap starts and how
//! many pages it has, for both and for sizing segments ahead of time.

use super::pages::PageState;
use super::stack::TaggedStack;
pub(crate) use crate::sync::Padded;
use crate::sync::{AtomicU32, AtomicU64};

/// log2 of the page size.
pub(crate) const PAGE_SHIFT: u32 = 16;
/// Pages (64 KiB) are the unit the heap is carved into: a page holds blocks of one
/// size class, or is part of one large allocation.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Size of the header in front of every block.
pub(crate) const BLOCK_HEADER: u64 = 16;
/// The alignment of every small allocation.
pub const SMALL_ALIGN: usize = 16;

/// Block sizes (header included) of the small size classes: 16-byte steps up to
/// 128, then four steps per doubling up to 16 KiB. Internal waste stays under 25 %.
pub(crate) const CLASS_SIZES: [u32; 35] = [
    32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
    1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336,
    16384,
];
/// Number of small size classes.
pub(crate) const NUM_CLASSES: usize = CLASS_SIZES.len();
/// Largest block (header included) served by a size class.
pub(crate) const MAX_SMALL_BLOCK: u64 = CLASS_SIZES[NUM_CLASSES - 1] as u64;
/// Largest request served by a size class; bigger ones take whole pages.
pub const MAX_SMALL_SIZE: usize = (MAX_SMALL_BLOCK - BLOCK_HEADER) as usize;

/// `CLASS_OF_16[(block + 15) / 16]` is the class of a block of `block` bytes.
static CLASS_OF_16: [u8; (MAX_SMALL_BLOCK / 16) as usize + 1] = {
    let mut table = [0u8; (MAX_SMALL_BLOCK / 16) as usize + 1];
    let mut i = 0;
    let mut class = 0;
    while i < table.len() {
        while (CLASS_SIZES[class] as usize) < i * 16 {
            class += 1;
        }
        table[i] = class as u8;
        i += 1;
    }
    table
};

/// The size class for a request of `size` payload bytes, if it is small.
#[inline]
pub(crate) fn class_of(size: usize) -> Option<usize> {
    let block = (size as u64).checked_add(BLOCK_HEADER)?;
    if block > MAX_SMALL_BLOCK {
        return None;
    }
    Some(CLASS_OF_16[block.div_ceil(16) as usize] as usize)
}

/// Payload bytes a block of `class` can hold.
#[inline]
pub(crate) fn class_payload(class: usize) -> u64 {
    CLASS_SIZES[class] as u64 - BLOCK_HEADER
}

/// Blocks carved from one page of `class`.
#[inline]
pub(crate) fn blocks_per_page(class: usize) -> u64 {
    PAGE_SIZE / CLASS_SIZES[class] as u64
}

/// Block states, stored in the low half of [`BlockHeader::word`]. Distinct magic
/// values, so that zeroed or foreign memory is never mistaken for a block.
pub(crate) mod state {
    /// Allocated and owned by the process in `owner`.
    pub const LIVE: u32 = 0x4c49_5645;
    /// Free, held in the thread cache of a process of owner `owner`.
    pub const CACHED: u32 = 0x4341_4348;
    /// Free, on a shared free list (or a free large run).
    pub const FREE: u32 = 0x4652_4545;
}

/// The 16 bytes in front of every block. Only the allocator touches them, and
/// always through atomics, so a stale reader never races with plain writes.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct BlockHeader {
    /// Small blocks: the free-list link while free. Large runs: offset of the
    /// payload from the run's first byte.
    pub next: AtomicU64,
    /// The block's state (one of [`state`], low 32 bits) and the owner slot index
    /// of the process that allocated (LIVE) or caches (CACHED) it (high 32 bits).
    /// One word, so that a block changes state and owner in one atomic step: a
    /// reaper never sees a block that another process just took over still
    /// carrying the old owner.
    pub word: AtomicU64,
}

/// The header word of a block in `state` owned by `owner`.
#[inline]
pub(crate) const fn word(state: u32, owner: u32) -> u64 {
    state as u64 | (owner as u64) << 32
}

/// The state half of a header word.
#[inline]
pub(crate) const fn state_of(word: u64) -> u32 {
    word as u32
}

/// The owner half of a header word.
#[inline]
pub(crate) const fn owner_of(word: u64) -> u32 {
    (word >> 32) as u32
}

/// Page descriptor values (one `AtomicU32` per page).
pub(crate) mod desc {
    /// Not in use.
    pub const FREE: u32 = 0;
    /// Bit set on pages carved into blocks of class `desc & CLASS_MASK`.
    pub const SMALL: u32 = 0x1000_0000;
    /// Bit set on the first page of a large run of `desc & COUNT_MASK` pages.
    pub const LARGE_HEAD: u32 = 0x2000_0000;
    /// Bit set on the other pages of a large run.
    pub const LARGE_TAIL: u32 = 0x4000_0000;
    /// Claimed under the page lock, not yet described (being carved or set up).
    pub const RESERVED: u32 = 0x8000_0000;
    /// Mask of the class number or page count.
    pub const VALUE_MASK: u32 = 0x0fff_ffff;
    /// Mask of the kind bits.
    pub const KIND_MASK: u32 = 0xf000_0000;
}

/// Per-owner counters, kept apart so that owners do not share cache lines.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct OwnerSlot {
    /// pid of the process holding the slot; 0 = slot free; [`OWNER_REAPED`] = its
    /// process died and was reaped, but blocks the runtime kept are still live
    /// (see `Allocator::reap_owner`). While a reaper works on the slot, the
    /// reaper's pid.
    pub pid: AtomicU32,
    /// Bumped each time the slot is taken, so a reused slot can be told apart.
    pub generation: AtomicU32,
    /// Payload bytes of LIVE blocks allocated under this owner.
    pub live_bytes: AtomicU64,
    /// Number of LIVE blocks allocated under this owner.
    pub live_blocks: AtomicU64,
    /// pid of the dead process while the slot is [`OWNER_REAPED`] (for reports).
    pub reaped_pid: AtomicU32,
    /// Start time of the process holding the slot (clock ticks since boot; 0:
    /// unknown), so that a reused pid is not taken for the dead holder.
    pub started: AtomicU64,
}

/// [`OwnerSlot::pid`] of a slot whose process was reaped while the runtime kept
/// some of its blocks: not free (its blocks still name it), not a process. Above
/// every pid Linux hands out, so it is never mistaken for one.
pub(crate) const OWNER_REAPED: u32 = u32::MAX;

/// Counters of one thread cache: written by that thread alone (plain load + store,
/// no locked instruction), summed by readers. Net of the allocations and frees
/// the thread made of blocks of its own owner; may be negative (two's complement).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ThreadSlot {
    /// 0 while free; `owner + 1` while a thread cache of that owner holds it (one
    /// word, so a reaper never pairs a taken slot with a stale owner).
    pub taken: AtomicU32,
    /// Net payload bytes.
    pub live_bytes: AtomicU64,
    /// Net blocks.
    pub live_blocks: AtomicU64,
    /// Bytes this thread is moving between its cache and the shared structures
    /// (a refill, a spill, a fresh page being carved, a large run being set up);
    /// 0 otherwise. If the thread is killed meanwhile, at most this much is
    /// leaked, and the reaper counts it.
    pub transit: AtomicU64,
}

/// The counters the allocator keeps about damage it could not repair.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Health {
    /// Upper bound of the bytes lost by threads killed in the middle of a move
    /// (summed by the reaper from their [`ThreadSlot::transit`]).
    pub possibly_leaked_bytes: AtomicU64,
    /// Free lists found corrupt and abandoned (their blocks are leaked).
    pub abandoned_lists: AtomicU64,
}

/// Thread-counter slots per segment; threads beyond this count use the owner's
/// shared (atomic) counters.
pub(crate) const MAX_THREAD_SLOTS: usize = 1024;

/// Maximum number of owners (attached allocator handles) per segment.
pub const MAX_OWNERS: usize = 1024;

/// First eight bytes of the allocator metadata: `b"CHIALLOC"` as a little-endian word.
const ALLOC_MAGIC: u64 = u64::from_le_bytes(*b"CHIALLOC");

/// The allocator metadata at `alloc_offset` in the segment.
#[repr(C)]
pub(crate) struct AllocHeader {
    /// [`ALLOC_MAGIC`], written by [`format()`].
    pub magic: u64,
    /// [`PAGE_SIZE`] of the build that formatted the segment.
    pub page_size: u64,
    /// Segment offset of the first heap page.
    pub heap_offset: u64,
    /// Heap pages.
    pub n_pages: u64,
    /// Segment offset of the page descriptors (one `AtomicU32` per page).
    pub desc_offset: u64,
    /// The page runs and their lock.
    pub pages: Padded<PageState>,
    /// Counters of the damage the allocator could not repair.
    pub health: Padded<Health>,
    /// The class free lists, one per size class.
    pub classes: [Padded<TaggedStack>; NUM_CLASSES],
    /// One slot per attached allocator handle.
    pub owners: [Padded<OwnerSlot>; MAX_OWNERS],
    /// One counter slot per thread cache.
    pub threads: [Padded<ThreadSlot>; MAX_THREAD_SLOTS],
}

fn meta_size(n_pages: u64) -> u64 {
    (size_of::<AllocHeader>() as u64).next_multiple_of(64) + n_pages * 4
}

/// Offset of the first heap page for metadata at `alloc_offset` describing `n_pages`.
pub(crate) fn heap_offset_for(alloc_offset: u64, n_pages: u64) -> u64 {
    (alloc_offset + meta_size(n_pages)).next_multiple_of(PAGE_SIZE)
}

/// `(heap_offset, n_pages)` of a segment of `size` bytes with its allocator
/// metadata at `alloc_offset`.
pub(crate) fn geometry(size: u64, alloc_offset: u64) -> (u64, u64) {
    let upper = size / PAGE_SIZE;
    let heap_offset = heap_offset_for(alloc_offset, upper);
    let n_pages = size.saturating_sub(heap_offset) / PAGE_SIZE;
    (heap_offset, n_pages)
}

/// Lays out the allocator metadata of a fresh (zero-filled) segment.
///
/// # Safety
/// `base..base+size` is a fresh, zero-filled mapping no one else accesses, and
/// `alloc_offset` leaves room for the metadata (`size >= Segment::min_size()`).
pub(crate) unsafe fn format(base: *mut u8, size: u64, alloc_offset: u64) {
    let (heap_offset, n_pages) = geometry(size, alloc_offset);
    // SAFETY: per the contract, the header fits at `alloc_offset` and no one else
    // accesses the memory; zero is a valid initial value of every other field.
    unsafe {
        let h = base.add(alloc_offset as usize) as *mut AllocHeader;
        (*h).magic = ALLOC_MAGIC;
        (*h).page_size = PAGE_SIZE;
        (*h).heap_offset = heap_offset;
        (*h).n_pages = n_pages;
        (*h).desc_offset = alloc_offset + (size_of::<AllocHeader>() as u64).next_multiple_of(64);
    }
}

/// Checks the allocator metadata of an attached segment is consistent with its size.
///
/// # Safety
/// `base..base+size` is a mapping of a segment whose header was validated.
pub(crate) unsafe fn validate(
    base: *mut u8,
    size: u64,
    alloc_offset: u64,
) -> Result<(), &'static str> {
    if alloc_offset
        .checked_add(size_of::<AllocHeader>() as u64)
        .is_none_or(|end| end > size)
        || !alloc_offset.is_multiple_of(128)
    {
        return Err("allocator metadata out of bounds");
    }
    // SAFETY: in bounds (checked above) and aligned (alloc_offset % 128 == 0, base
    // page aligned); the plain fields were written before the magic was published.
    let h = unsafe { &*(base.add(alloc_offset as usize) as *const AllocHeader) };
    let (heap_offset, n_pages) = geometry(size, alloc_offset);
    if h.magic != ALLOC_MAGIC
        || h.page_size != PAGE_SIZE
        || h.heap_offset != heap_offset
        || h.n_pages != n_pages
        || h.desc_offset + n_pages * 4 > heap_offset
    {
        return Err("allocator metadata does not match the segment size");
    }
    Ok(())
}

// Not under loom, whose atomics have another layout (see crate::sync).
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn classes_fit_and_are_tight() {
        for size in 1..=MAX_SMALL_SIZE {
            let c = class_of(size).unwrap();
            assert!(class_payload(c) >= size as u64, "size {size} class {c}");
            if c > 0 {
                assert!(class_payload(c - 1) < size as u64, "size {size} not tight");
            }
        }
        assert_eq!(class_of(MAX_SMALL_SIZE + 1), None);
        assert_eq!(class_of(0), Some(0));
        for w in CLASS_SIZES.windows(2) {
            assert!(w[0] < w[1] && w[0] % 16 == 0);
        }
    }

    #[test]
    fn header_layout_is_fixed() {
        assert_eq!(size_of::<BlockHeader>() as u64, BLOCK_HEADER);
        assert_eq!(size_of::<Padded<OwnerSlot>>(), 128);
        assert_eq!(size_of::<Padded<ThreadSlot>>(), 128);
        let w = word(state::LIVE, 7);
        assert_eq!((state_of(w), owner_of(w)), (state::LIVE, 7));
    }
}
