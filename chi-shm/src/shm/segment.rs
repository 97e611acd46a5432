//! Named shared-memory segments in `/dev/shm`.
//!
//! Layout of a segment:
//!
//! ```text
//! 0            4 KiB                         heap_offset (64 KiB aligned)      size
//! | header     | allocator metadata          | heap pages ...                   |
//! ```
//!
//! The [`SegmentHeader`] is written completely before its magic number is stored
//! (Release), and an attacher reads the magic first (Acquire): a half-created
//! segment is reported as "wrong magic", never read half-initialised.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::sync::Arc;

use memmap2::MmapOptions;
use rustix::fs::Mode;
use rustix::shm;

use super::alloc::{self, PAGE_SIZE};
use super::mapping::{
    BY_NAME, HEADER_SIZE, LAYOUT_VERSION, Mapping, NAME_CAP, SEGMENT_MAGIC, SegmentHeader,
};
use super::{SegmentId, ShmError, ShmPtr, registry};
use crate::sync::Ordering;

/// Largest segment: offsets of blocks must fit the free lists' head words.
pub(crate) const MAX_SEGMENT_SIZE: u64 = super::alloc::stack::MAX_NODE_OFFSET;

/// A handle to a mapped segment.
///
/// Created by [`Segment::create`] (the owner of the name, which unlinks it on drop)
/// or [`Segment::attach`] (which never unlinks). Handles are cheap to clone; clones
/// do not own the name.
pub struct Segment {
    map: Arc<Mapping>,
    owns_name: bool,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.map.name)
            .field("id", &self.map.id)
            .field("size", &self.map.size)
            .field("owns_name", &self.owns_name)
            .finish()
    }
}

impl Clone for Segment {
    fn clone(&self) -> Self {
        Segment {
            map: self.map.clone(),
            owns_name: false,
        }
    }
}

fn io_err<'a>(name: &'a str, op: &'static str) -> impl FnOnce(rustix::io::Errno) -> ShmError + 'a {
    move |e| ShmError::Io {
        name: name.to_owned(),
        op,
        source: io::Error::from(e),
    }
}

fn shm_path(name: &str) -> Result<CString, ShmError> {
    let bad = |reason| ShmError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() >= NAME_CAP {
        return Err(bad("it is longer than 127 bytes"));
    }
    if name.contains('/') || name.contains('\0') {
        return Err(bad("it contains '/' or NUL"));
    }
    CString::new(format!("/{name}")).map_err(|_| bad("it contains NUL"))
}

fn file_id(file: &File, name: &str) -> Result<(u64, u64, u64), ShmError> {
    let st = rustix::fs::fstat(file).map_err(io_err(name, "fstat"))?;
    Ok((st.st_dev, st.st_ino, st.st_size as u64))
}

impl Segment {
    /// Smallest size accepted by [`create`](Self::create): the header, the
    /// allocator metadata and one heap page.
    pub fn min_size() -> u64 {
        Self::size_for_heap_pages(1)
    }

    /// Heap pages (of [`PAGE_SIZE`]) the allocator of a segment of `size` bytes
    /// hands out: what is left after the header and the allocator metadata, which
    /// grows with the size (4 bytes per page). `size` is rounded up to 4 KiB, as in
    /// [`create`](Self::create).
    pub fn heap_pages(size: u64) -> u64 {
        let size = size.checked_next_multiple_of(4096).unwrap_or(u64::MAX);
        alloc::geometry(size, HEADER_SIZE).1
    }

    /// The smallest segment size whose allocator hands out at least `pages` heap
    /// pages ([`heap_pages`](Self::heap_pages)).
    pub fn size_for_heap_pages(pages: u64) -> u64 {
        let mut size = alloc::heap_offset_for(HEADER_SIZE, pages)
            .saturating_add(pages.saturating_mul(PAGE_SIZE));
        // The metadata is sized for `size / PAGE_SIZE` pages, a little more than
        // `pages`: it may push the heap a page further.
        while Self::heap_pages(size) < pages && size < u64::MAX {
            size = size.saturating_add(PAGE_SIZE);
        }
        size
    }

    /// Largest size accepted by [`create`](Self::create) (16 TiB).
    pub fn max_size() -> u64 {
        MAX_SEGMENT_SIZE
    }

    /// Creates segment `name` (in `/dev/shm`, mode 0600) of `size` bytes with id `id`,
    /// lays out its header and allocator, and maps it. A stale segment of the same
    /// name (left by a process that died) is replaced. The returned handle owns the
    /// name and unlinks it on drop.
    pub fn create(name: &str, id: SegmentId, size: u64) -> Result<Segment, ShmError> {
        let path = shm_path(name)?;
        if id == SegmentId::NULL || id > SegmentId::MAX {
            return Err(ShmError::InvalidId {
                name: name.to_owned(),
                id: id.0,
                max: SegmentId::MAX.0,
            });
        }
        // A size that overflows when rounded up is out of range like any too large one.
        let size = size.checked_next_multiple_of(4096).unwrap_or(u64::MAX);
        if size < Self::min_size() || size > Self::max_size() {
            return Err(ShmError::BadSize {
                name: name.to_owned(),
                size,
                min: Self::min_size(),
                max: Self::max_size(),
            });
        }
        let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
        let mode = Mode::RUSR | Mode::WUSR;
        let fd = match shm::open(path.as_c_str(), flags, mode) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::EXIST) => {
                tracing::warn!(segment = name, "replacing a stale shared-memory segment");
                let _ = shm::unlink(path.as_c_str());
                shm::open(path.as_c_str(), flags, mode).map_err(io_err(name, "shm_open"))?
            }
            Err(e) => return Err(io_err(name, "shm_open")(e)),
        };
        let file = File::from(fd);
        let created = (|| {
            check_space(&file, name, size)?;
            rustix::fs::ftruncate(&file, size).map_err(io_err(name, "ftruncate"))?;
            let (dev, ino, _) = file_id(&file, name)?;
            let map = MmapOptions::new()
                .len(size as usize)
                .map_raw(&file)
                .map_err(|source| ShmError::Io {
                    name: name.to_owned(),
                    op: "mmap",
                    source,
                })?;
            let mapping = Mapping {
                name: name.to_owned(),
                id,
                map: Some(map),
                ext_base: 0,
                size,
                file_id: (dev, ino),
            };
            // SAFETY: the mapping is fresh, private to this process until the magic is
            // published, at least `min_size()` long and page aligned.
            unsafe { Self::format(&mapping) };
            Ok::<_, ShmError>(mapping)
        })();
        let mapping = match created {
            Ok(m) => m,
            Err(e) => {
                let _ = shm::unlink(path.as_c_str());
                return Err(e);
            }
        };
        let seg = Self::publish(mapping, true);
        if let Err(e) = &seg {
            tracing::debug!(segment = name, error = %e, "could not register new segment");
            let _ = shm::unlink(path.as_c_str());
        }
        seg
    }

    /// Writes the header and the allocator metadata, then the magic.
    ///
    /// # Safety
    /// No other process may access the mapping yet.
    unsafe fn format(m: &Mapping) {
        let base = m.base();
        let alloc_offset = HEADER_SIZE;
        // SAFETY: the header fits in the first HEADER_SIZE bytes of the mapping,
        // which nobody else accesses yet; the fresh file is zero-filled.
        unsafe {
            let h = base as *mut SegmentHeader;
            (*h).layout_version = LAYOUT_VERSION;
            (*h).segment_id = m.id.0;
            (*h).size = m.size;
            (*h).creator_pid = std::process::id();
            (*h).alloc_offset = alloc_offset;
            let n = m.name.len().min(NAME_CAP - 1);
            (&mut (*h).name)[..n].copy_from_slice(&m.name.as_bytes()[..n]);
            alloc::format(base, m.size, alloc_offset);
        }
        // Release: pairs with the Acquire load of the magic in `attach`; everything
        // written above is visible to an attacher that sees the magic.
        m.header().magic.store(SEGMENT_MAGIC, Ordering::Release);
    }

    fn publish(mapping: Mapping, owns_name: bool) -> Result<Segment, ShmError> {
        let mut by_name = BY_NAME.lock().unwrap_or_else(|e| e.into_inner());
        registry::register(
            mapping.id,
            mapping.base() as usize,
            mapping.size,
            &mapping.name,
        )?;
        let map = Arc::new(mapping);
        by_name.retain(|(_, w)| w.strong_count() > 0);
        by_name.push((map.name.clone(), Arc::downgrade(&map)));
        Ok(Segment { map, owns_name })
    }

    /// Maps the existing segment `name`. Fails with a typed error naming the
    /// segment if it is missing, not a chimaera segment, of another layout version,
    /// or truncated. Attaching a segment this process already maps shares the
    /// mapping.
    pub fn attach(name: &str) -> Result<Segment, ShmError> {
        Self::attach_inner(name, None)
    }

    /// Like [`attach`](Self::attach), and also checks the segment is `size` bytes
    /// (as announced by the runtime).
    pub fn attach_expecting(name: &str, size: u64) -> Result<Segment, ShmError> {
        Self::attach_inner(name, Some(size))
    }

    fn attach_inner(name: &str, expected: Option<u64>) -> Result<Segment, ShmError> {
        let path = shm_path(name)?;
        {
            let by_name = BY_NAME.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(map) = by_name
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, w)| w.upgrade())
            {
                check_size(name, expected, map.size)?;
                return Ok(Segment {
                    map,
                    owns_name: false,
                });
            }
        }
        let fd = shm::open(path.as_c_str(), shm::OFlags::RDWR, Mode::empty()).map_err(|e| {
            if e == rustix::io::Errno::NOENT {
                ShmError::NotFound {
                    name: name.to_owned(),
                }
            } else {
                io_err(name, "shm_open")(e)
            }
        })?;
        let file = File::from(fd);
        let (dev, ino, file_size) = file_id(&file, name)?;
        if file_size < HEADER_SIZE {
            return Err(ShmError::SizeMismatch {
                name: name.to_owned(),
                expected: expected.unwrap_or(HEADER_SIZE),
                actual: file_size,
            });
        }
        let map = MmapOptions::new()
            .len(file_size as usize)
            .map_raw(&file)
            .map_err(|source| ShmError::Io {
                name: name.to_owned(),
                op: "mmap",
                source,
            })?;
        let mut mapping = Mapping {
            name: name.to_owned(),
            id: SegmentId::NULL,
            map: Some(map),
            ext_base: 0,
            size: file_size,
            file_id: (dev, ino),
        };
        let h = mapping.header();
        // Acquire: pairs with the Release store in `format`.
        let magic = h.magic.load(Ordering::Acquire);
        if magic != SEGMENT_MAGIC {
            return Err(ShmError::WrongMagic {
                name: name.to_owned(),
                found: magic,
                expected: SEGMENT_MAGIC,
            });
        }
        if h.layout_version != LAYOUT_VERSION {
            return Err(ShmError::WrongVersion {
                name: name.to_owned(),
                found: h.layout_version,
                expected: LAYOUT_VERSION,
            });
        }
        if h.size != file_size {
            return Err(ShmError::SizeMismatch {
                name: name.to_owned(),
                expected: h.size,
                actual: file_size,
            });
        }
        check_size(name, expected, file_size)?;
        let id = SegmentId(h.segment_id);
        // SAFETY: the header was validated above (magic, version, size), so the
        // allocator metadata offset it names was written by `format`.
        unsafe { alloc::validate(mapping.base(), file_size, h.alloc_offset) }.map_err(
            |reason| ShmError::WrongMagic {
                name: format!("{name} ({reason})"),
                found: magic,
                expected: SEGMENT_MAGIC,
            },
        )?;
        mapping.id = id;
        Self::publish(mapping, false)
    }

    /// Removes segment `name` from `/dev/shm`. Returns whether it existed.
    /// Processes that map it keep their mapping.
    pub fn unlink(name: &str) -> Result<bool, ShmError> {
        let path = shm_path(name)?;
        match shm::unlink(path.as_c_str()) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(io_err(name, "shm_unlink")(e)),
        }
    }

    /// Whether a segment of that name exists in `/dev/shm`.
    pub fn exists(name: &str) -> bool {
        shm_path(name)
            .ok()
            .and_then(|p| shm::open(p.as_c_str(), shm::OFlags::RDONLY, Mode::empty()).ok())
            .is_some()
    }

    /// A handle to a segment that another copy of this library mapped in this
    /// process at `base` for `len` bytes (the runtime's segments, seen from a
    /// module library, which has its own copy of this crate and so its own segment
    /// table). Registers it in this copy's table unless the same mapping is
    /// already there. The handle never unmaps, unregisters or unlinks anything.
    ///
    /// # Safety
    /// `base..base + len` is a live mapping of a formatted segment with id `id`
    /// that stays mapped for as long as the returned handle (or anything made
    /// from it) is used.
    pub unsafe fn adopt_external(
        id: SegmentId,
        base: usize,
        len: u64,
    ) -> Result<Segment, ShmError> {
        let name = format!("segment {} (mapped by the runtime)", id.0);
        if len < HEADER_SIZE || base == 0 {
            return Err(ShmError::SizeMismatch {
                name,
                expected: HEADER_SIZE,
                actual: len,
            });
        }
        if registry::lookup(id) != Some((base, len)) {
            registry::register(id, base, len, &name)?;
        }
        let mapping = Mapping {
            name,
            id,
            map: None,
            ext_base: base,
            size: len,
            file_id: (0, 0),
        };
        // Acquire: pairs with the Release store of the magic in `format`.
        let found = mapping.header().magic.load(Ordering::Acquire);
        if found != SEGMENT_MAGIC {
            return Err(ShmError::WrongMagic {
                name: mapping.name.clone(),
                found,
                expected: SEGMENT_MAGIC,
            });
        }
        Ok(Segment {
            map: Arc::new(mapping),
            owns_name: false,
        })
    }

    /// The segment's name (without the leading `/`).
    pub fn name(&self) -> &str {
        &self.map.name
    }

    /// The segment's id, used in every [`ShmPtr`] into it.
    pub fn id(&self) -> SegmentId {
        self.map.id
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.map.size
    }

    /// Base address in this process.
    pub fn base(&self) -> *mut u8 {
        self.map.base()
    }

    /// Whether this handle unlinks the name when dropped.
    pub fn owns_name(&self) -> bool {
        self.owns_name
    }

    /// Gives up ownership of the name: dropping this handle will not unlink it.
    pub fn disown(&mut self) {
        self.owns_name = false;
    }

    /// The pointer to `offset` in this segment.
    pub fn ptr_at(&self, offset: u64) -> ShmPtr {
        ShmPtr::new(self.map.id, offset)
    }

    /// Whether `ptr` points into this segment (bounds only).
    pub fn contains(&self, ptr: ShmPtr) -> bool {
        ptr.segment() == self.map.id && ptr.offset() < self.map.size
    }

    /// Reads root slot `i` (a pointer the creator published there), or `None` if
    /// `i` is out of range.
    pub fn root(&self, i: usize) -> Option<ShmPtr> {
        // Acquire: pairs with the Release store in `set_root`, so the object the
        // root points to is fully written when it is seen.
        self.map
            .header()
            .roots
            .get(i)
            .map(|r| ShmPtr::from_bits(r.load(Ordering::Acquire)))
    }

    /// Publishes `ptr` in root slot `i`. Panics if `i >= NUM_ROOTS`.
    pub fn set_root(&self, i: usize, ptr: ShmPtr) {
        self.map.header().roots[i].store(ptr.to_bits(), Ordering::Release);
    }

    /// pid of the process that created the segment.
    pub fn creator_pid(&self) -> u32 {
        self.map.header().creator_pid
    }

    pub(crate) fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }
}

/// Refuses a segment larger than the free space of the file system holding `file`
/// (the tmpfs of `/dev/shm`). The file is sparse, so nothing fails at `ftruncate`
/// or `mmap`: without this check a segment larger than the free space dies of
/// SIGBUS when a page past the free space is first touched. Reserving the pages
/// up front (`fallocate`) would also catch space taken later by others, but costs
/// ~0.5 s and the memory itself per GiB at start, so only the free space is checked.
fn check_space(file: &File, name: &str, size: u64) -> Result<(), ShmError> {
    let st = rustix::fs::fstatvfs(file).map_err(io_err(name, "fstatvfs"))?;
    // A tmpfs mounted without a size limit reports no blocks at all.
    if st.f_blocks == 0 {
        return Ok(());
    }
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if size > free {
        return Err(ShmError::NoSpace {
            name: name.to_owned(),
            size,
            free,
        });
    }
    Ok(())
}

fn check_size(name: &str, expected: Option<u64>, actual: u64) -> Result<(), ShmError> {
    match expected {
        Some(e) if e != actual => Err(ShmError::SizeMismatch {
            name: name.to_owned(),
            expected: e,
            actual,
        }),
        _ => Ok(()),
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if !self.owns_name {
            return;
        }
        // Unlink only if the name still names our file: a newer segment may have
        // replaced ours (e.g. after we were presumed dead).
        let Ok(path) = shm_path(&self.map.name) else {
            return;
        };
        let Ok(fd) = shm::open(path.as_c_str(), shm::OFlags::RDONLY, Mode::empty()) else {
            return;
        };
        let file = File::from(fd);
        if let Ok((dev, ino, _)) = file_id(&file, &self.map.name)
            && (dev, ino) == self.map.file_id
            && let Err(e) = shm::unlink(path.as_c_str())
        {
            tracing::warn!(segment = %self.map.name, error = %e, "could not unlink segment");
        }
    }
}

// Real segments, processes, files or sockets: not under Miri (see
// scripts/check-miri.sh) nor loom (see crate::sync); run natively.
#[cfg(all(test, not(miri), not(loom)))]
mod tests {
    use super::*;
    use crate::shm::Allocator;

    #[test]
    fn heap_pages_and_sizes_agree() {
        assert_eq!(
            Segment::min_size(),
            alloc::heap_offset_for(HEADER_SIZE, 1) + PAGE_SIZE
        );
        assert_eq!(Segment::heap_pages(Segment::min_size()), 1);
        assert_eq!(Segment::heap_pages(Segment::min_size() - 4096), 0);
        assert_eq!(Segment::heap_pages(0), 0);
        for pages in [1, 2, 3, 17, 1000, 16_384, 1 << 20] {
            let size = Segment::size_for_heap_pages(pages);
            assert!(Segment::heap_pages(size) >= pages, "{pages} pages");
            assert!(
                Segment::heap_pages(size - 4096) < pages,
                "{pages}: not the least"
            );
        }
    }

    #[test]
    fn pages_for_small_and_large() {
        assert_eq!(Allocator::pages_for(40, 8), 1);
        assert_eq!(Allocator::pages_for(40, 128), 1);
        assert_eq!(Allocator::pages_for(PAGE_SIZE as usize - 128, 128), 1);
        assert_eq!(Allocator::pages_for(PAGE_SIZE as usize, 128), 2);
        assert_eq!(Allocator::pages_for(3 * PAGE_SIZE as usize, 16), 4);
    }
}
