//! A handler's access to the bytes a task names: checked blocks and borrows
//! that cannot alias.
//!
//! # Design
//!
//! [`check_block`] accepts `len` bytes at a pointer only if the pointer starts
//! a live block of the client-data segment that holds them (the client wrote
//! the pointer: it may be garbage, stale, or another block's middle). A
//! process-wide table then records every block a handler borrows — shared for
//! [`ClientBytes::get`] / [`ClientStr::get`], exclusive for
//! [`ClientBuf::get_mut`] — until the guard drops, and refuses a borrow that
//! conflicts with a live one: a task whose input and output name the same
//! block, or two tasks running at once that write one block, get an error
//! instead of overlapping `&[u8]` and `&mut [u8]`.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{ClientBuf, ClientBytes, ClientStr};
use crate::shm::{Allocator, FullPtr, ShmPtr};
use crate::task::{Failure, code};

/// The longest buffer, in bytes (what a `usize` of this process and a
/// shared-memory offset can both hold).
pub const MAX_LEN: u64 = crate::shm::ShmPtr::MAX_OFFSET;

/// Checks that `len` bytes at `ptr` lie in one live block of `alloc`'s
/// segment that starts at `ptr`; `what` names the buffer in the error.
pub fn check_block(
    alloc: &Allocator,
    what: &str,
    ptr: ShmPtr,
    len: u64,
) -> Result<FullPtr<u8>, Failure> {
    let bad = |msg: String| Failure::new(code::BAD_TASK, format!("{what} buffer: {msg}"));
    if ptr.is_null() {
        return Err(bad(format!("null pointer with length {len}")));
    }
    if ptr.segment() != alloc.segment_id() {
        return Err(bad(format!(
            "{ptr} is not in the client-data segment ({}): make buffers with ClientBytes::new \
             or ClientBuf::with_capacity",
            alloc.segment_id()
        )));
    }
    alloc.owner_of(ptr).map_err(|e| {
        bad(format!(
            "{ptr} is not the start of a live client-data block ({e})"
        ))
    })?;
    let size = alloc
        .usable_size(ptr)
        .map_err(|e| bad(format!("{ptr}: {e}")))?;
    if len > size {
        return Err(bad(format!(
            "length {len} runs past the end of the block at {ptr} ({size} bytes)"
        )));
    }
    if usize::try_from(len).is_err() {
        return Err(bad(format!("length {len} does not fit this process")));
    }
    ptr.resolve_slice::<u8>(len).map_err(|e| bad(e.to_string()))
}

/// Blocks borrowed now: shared borrows counted up, an exclusive one is -1.
static BORROWS: Mutex<Option<HashMap<u64, isize>>> = Mutex::new(None);

/// Records a borrow of the block at `ptr`, or says why it conflicts.
fn borrow(ptr: ShmPtr, exclusive: bool, what: &str) -> Result<(), Failure> {
    let mut b = BORROWS.lock().unwrap_or_else(|e| e.into_inner());
    let map = b.get_or_insert_with(HashMap::new);
    let n = map.entry(ptr.to_bits()).or_insert(0);
    if *n < 0 || (exclusive && *n > 0) {
        return Err(Failure::new(
            code::BAD_TASK,
            format!(
                "{what} buffer {ptr} is in use by another buffer of this task or by another \
                 running task: a task may not name one block twice, and running tasks may not \
                 share an output buffer"
            ),
        ));
    }
    *n = if exclusive { -1 } else { *n + 1 };
    Ok(())
}

/// Ends a borrow recorded by [`borrow`].
fn release(ptr: ShmPtr) {
    let mut b = BORROWS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(map) = b.as_mut()
        && let Some(n) = map.get_mut(&ptr.to_bits())
    {
        if *n > 1 {
            *n -= 1;
        } else {
            map.remove(&ptr.to_bits());
        }
    }
}

/// The client-data allocator of the runtime this handler runs in.
fn runtime_allocator(what: &str) -> Result<&'static Allocator, Failure> {
    crate::module_side::client_data_allocator()
        .map_err(|e| Failure::new(code::FAILED, format!("{what} buffer: {e}")))
}

/// Bytes a handler reads ([`ClientBytes::get`]); the borrow ends when it drops.
#[derive(Debug)]
pub struct Bytes<'a> {
    data: &'a [u8],
    ptr: ShmPtr,
}

impl std::ops::Deref for Bytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.data
    }
}

impl Drop for Bytes<'_> {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            release(self.ptr);
        }
    }
}

/// Text a handler reads ([`ClientStr::get`]).
#[derive(Debug)]
pub struct Str<'a>(Bytes<'a>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        // SAFETY: checked to be UTF-8 when made (`ClientStr::get`), and the
        // bytes are borrowed shared since: no handler writes them.
        unsafe { std::str::from_utf8_unchecked(self.0.data) }
    }
}

impl ClientBytes {
    /// The bytes, checked (runtime side; see the [module doc](self)): a
    /// `BAD_TASK` failure names what is wrong with a pointer the client wrote.
    pub fn get(&self) -> Result<Bytes<'_>, Failure> {
        self.get_named("input")
    }

    fn get_named(&self, what: &str) -> Result<Bytes<'_>, Failure> {
        let len = self.len();
        if len == 0 {
            return Ok(Bytes {
                data: &[],
                ptr: ShmPtr::NULL,
            });
        }
        let p = check_block(runtime_allocator(what)?, what, self.ptr, len)?;
        borrow(self.ptr, false, what)?;
        Ok(Bytes {
            // SAFETY: checked: `len` bytes of a live client-data block, which no
            // handler writes while this shared borrow is recorded; the client
            // does not write an input while its task runs (a client that does
            // gets garbage, not memory of this process).
            data: unsafe { std::slice::from_raw_parts(p.as_ptr(), len as usize) },
            ptr: self.ptr,
        })
    }
}

impl ClientStr {
    /// The text, checked like [`ClientBytes::get`] and to be UTF-8.
    pub fn get(&self) -> Result<Str<'_>, Failure> {
        let b = self.0.get_named("text")?;
        if let Err(e) = std::str::from_utf8(b.data) {
            return Err(Failure::new(
                code::BAD_TASK,
                format!("text buffer {}: not UTF-8 ({e})", self.0.ptr),
            ));
        }
        Ok(Str(b))
    }
}

/// An output buffer a handler writes ([`ClientBuf::get_mut`]): its whole
/// capacity as a slice, the length to report, and room that grows.
#[derive(Debug)]
pub struct BufMut<'a> {
    buf: &'a mut ClientBuf,
    data: &'a mut [u8],
}

impl ClientBuf {
    /// The buffer, checked (runtime side; see the [module doc](self)).
    pub fn get_mut(&mut self) -> Result<BufMut<'_>, Failure> {
        let cap = self.capacity();
        if cap == 0 {
            return Ok(BufMut {
                buf: self,
                data: &mut [],
            });
        }
        let p = check_block(runtime_allocator("output")?, "output", self.ptr, cap)?;
        borrow(self.ptr, true, "output")?;
        self.len = self.len.min(cap);
        // SAFETY: checked: `cap` bytes of a live client-data block, borrowed
        // exclusively (no other handler reads or writes it); the client does
        // not touch an output until its task completes.
        let data = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), cap as usize) };
        Ok(BufMut { buf: self, data })
    }
}

impl BufMut<'_> {
    /// The whole capacity, to write into (then [`set_len`](Self::set_len)).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.data
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        &self.data[..self.buf.len as usize]
    }

    /// Says `len` bytes were written (at most the capacity).
    pub fn set_len(&mut self, len: usize) -> Result<(), Failure> {
        if len > self.data.len() {
            return Err(Failure::new(
                code::FAILED,
                format!(
                    "output buffer {}: length {len} past its capacity {}",
                    self.buf.ptr,
                    self.data.len()
                ),
            ));
        }
        self.buf.len = len as u64;
        Ok(())
    }

    /// Appends `bytes`, growing the buffer if they do not fit.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let at = self.buf.len as usize;
        self.reserve(bytes.len())?;
        self.data[at..at + bytes.len()].copy_from_slice(bytes);
        self.buf.len = (at + bytes.len()) as u64;
        Ok(())
    }

    /// Makes room for `extra` bytes after those written: a larger block of the
    /// client-data segment (twice the capacity at least), the written bytes
    /// copied, the old block freed. The task's field names the new block,
    /// which its client frees with the task.
    pub fn reserve(&mut self, extra: usize) -> Result<(), Failure> {
        let len = self.buf.len as usize;
        let need = len
            .checked_add(extra)
            .filter(|&n| n as u64 <= MAX_LEN)
            .ok_or_else(|| {
                Failure::new(
                    code::FAILED,
                    format!("output buffer: {len} + {extra} bytes is too long"),
                )
            })?;
        if need <= self.data.len() {
            return Ok(());
        }
        let alloc = runtime_allocator("output")?;
        let cap = need.max(self.data.len().saturating_mul(2)).max(64);
        let block = alloc.allocate(cap).map_err(|e| {
            Failure::new(
                code::FAILED,
                format!(
                    "output buffer: cannot grow to {cap} bytes in the client-data segment ({e})"
                ),
            )
        })?;
        // SAFETY: a fresh block of `cap >= len` bytes, ours alone, and the
        // `len` bytes written in the old block, borrowed exclusively.
        unsafe { std::ptr::copy_nonoverlapping(self.data.as_ptr(), block.as_ptr(), len) };
        borrow(block.shm(), true, "output")?;
        let owned = self.buf.is_owned();
        let old = std::mem::replace(&mut self.buf.ptr, block.shm());
        if !old.is_null() {
            release(old);
            // A borrowed block stays with its owner.
            if owned && let Err(e) = alloc.free(old) {
                tracing::warn!(block = %old, error = %e, "an output buffer that grew was not freed");
            }
        }
        // The new block is the task's.
        self.buf.cap = cap as u64;
        // SAFETY: the new block: `cap` bytes, live, borrowed exclusively.
        self.data = unsafe { std::slice::from_raw_parts_mut(block.as_ptr(), cap) };
        Ok(())
    }
}

impl Drop for BufMut<'_> {
    fn drop(&mut self) {
        if !self.data.is_empty() {
            release(self.buf.ptr);
        }
    }
}

#[cfg(test)]
pub(super) fn borrow_for_test(ptr: ShmPtr, exclusive: bool) -> Result<(), Failure> {
    borrow(ptr, exclusive, "test")
}

#[cfg(test)]
pub(super) fn release_for_test(ptr: ShmPtr) {
    release(ptr);
}
