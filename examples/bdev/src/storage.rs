//! The two backends of a device: memory owned by the container, or a file.
//!
//! * **RAM**: an anonymous private mapping of the capacity (pages are zero and
//!   cost nothing until written; a capacity the system cannot map is a clean
//!   `create` error, not an abort) behind a [`CoRwLock`]: reads share it,
//!   writes take it alone, so no read ever sees a write half done; a task
//!   that waits for it suspends its coroutine, not its worker.
//! * **File**: a real file created (or truncated) to the capacity, written and
//!   read with `pwrite` / `pread` (`FileExt::write_all_at` / `read_exact_at`),
//!   which need no lock: the kernel orders concurrent calls. Dropped with the
//!   container, the file is removed unless the parameters keep it.
//!
//! Callers check ranges against the capacity first; these functions still
//! return errors (never panic) if they are wrong.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use chi_sdk::sync::CoRwLock;
use memmap2::MmapMut;

/// A device's bytes.
#[derive(Debug)]
pub(crate) enum Storage {
    /// Memory of the container.
    Ram(CoRwLock<MmapMut>),
    /// A file.
    File {
        /// The open file.
        file: File,
        /// Its path (to remove it).
        path: PathBuf,
        /// Keep it when the container goes.
        keep: bool,
    },
}

fn out_of_range(offset: u64, len: usize, capacity: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{len} bytes at offset {offset} run past the {capacity}-byte store"),
    )
}

/// `offset..offset + len` as a range of a store of `capacity` bytes.
fn span(offset: u64, len: usize, capacity: usize) -> io::Result<std::ops::Range<usize>> {
    let start = usize::try_from(offset).map_err(|_| out_of_range(offset, len, capacity))?;
    match start.checked_add(len) {
        Some(end) if end <= capacity => Ok(start..end),
        _ => Err(out_of_range(offset, len, capacity)),
    }
}

impl Storage {
    /// `capacity` bytes of zeroed memory.
    pub(crate) fn ram(capacity: u64) -> Result<Storage, String> {
        let len = usize::try_from(capacity).map_err(|_| {
            format!("capacity {capacity} does not fit this machine's address space")
        })?;
        let map = MmapMut::map_anon(len).map_err(|e| {
            format!("cannot map {capacity} bytes of memory for the RAM backend: {e}")
        })?;
        Ok(Storage::Ram(CoRwLock::new(map)))
    }

    /// The file at `path`, created or truncated, of `capacity` zero bytes.
    pub(crate) fn file(path: PathBuf, capacity: u64, keep: bool) -> Result<Storage, String> {
        if path.as_os_str().is_empty() {
            return Err("the file backend needs a path".to_owned());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| format!("cannot open the backing file {}: {e}", path.display()))?;
        if let Err(e) = file.set_len(capacity) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(format!(
                "cannot size the backing file {} to {capacity} bytes: {e}",
                path.display()
            ));
        }
        Ok(Storage::File { file, path, keep })
    }

    /// The backend's name.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Storage::Ram(_) => "ram",
            Storage::File { .. } => "file",
        }
    }

    /// Writes `src` at `offset`.
    pub(crate) fn write_at(&self, offset: u64, src: &[u8]) -> io::Result<()> {
        match self {
            Storage::Ram(lock) => {
                let mut map = lock.write();
                let r = span(offset, src.len(), map.len())?;
                map[r].copy_from_slice(src);
                Ok(())
            }
            Storage::File { file, .. } => file.write_all_at(src, offset),
        }
    }

    /// Fills `dst` from `offset`.
    pub(crate) fn read_at(&self, offset: u64, dst: &mut [u8]) -> io::Result<()> {
        match self {
            Storage::Ram(lock) => {
                let map = lock.read();
                let r = span(offset, dst.len(), map.len())?;
                dst.copy_from_slice(&map[r]);
                Ok(())
            }
            Storage::File { file, .. } => file.read_exact_at(dst, offset),
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Storage::File { path, keep, .. } = self {
            if *keep {
                chi_sdk::tracing::info!(path = %path.display(), "bdev: backing file kept");
            } else if let Err(e) = std::fs::remove_file(&*path) {
                chi_sdk::tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "bdev: cannot remove the backing file"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_round_trips_and_checks_bounds() {
        let s = Storage::ram(8192).unwrap();
        s.write_at(4000, b"hello").unwrap();
        let mut buf = [0u8; 7];
        s.read_at(3999, &mut buf).unwrap();
        assert_eq!(&buf, b"\0hello\0");
        assert!(s.write_at(8190, b"abc").is_err());
        assert!(s.read_at(u64::MAX, &mut buf).is_err());
        assert_eq!(s.kind(), "ram");
    }

    #[test]
    fn file_round_trips_and_is_removed_unless_kept() {
        let dir = std::env::temp_dir().join(format!("bdev-storage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("dev");
        let s = Storage::file(p.clone(), 16384, false).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 16384);
        s.write_at(12288, b"block three").unwrap();
        let mut buf = [0u8; 11];
        s.read_at(12288, &mut buf).unwrap();
        assert_eq!(&buf, b"block three");
        assert!(s.read_at(16380, &mut buf).is_err(), "read past the end");
        drop(s);
        assert!(!p.exists());
        let s = Storage::file(p.clone(), 4096, true).unwrap();
        drop(s);
        assert!(p.exists());
        assert!(Storage::file(dir.join("no/such/dir"), 4096, false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
