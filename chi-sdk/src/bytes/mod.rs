//! Bytes and text that cross the boundary between a client and the runtime:
//! task fields whose memory lives in the client-data segment.
//!
//! # Design
//!
//! A task is small and lives in the main segment; bulk data lives in the
//! client-data segment, which clients and the runtime both allocate from. Three
//! field types name such data:
//!
//! * [`ClientBytes`]: bytes the client hands in (the module reads them);
//! * [`ClientStr`]: the same, checked to be UTF-8;
//! * [`ClientBuf`]: an output buffer: the client allocates a capacity, the
//!   module writes into it, sets its length and may grow it (the runtime then
//!   allocates a larger block and frees the old one).
//!
//! **Ownership.** The task owns its buffers: they are freed when the task is
//! freed, exactly once, wherever that happens — `Client::del_task` (after a
//! call's outputs were read, or a submission that failed), or the worker for a
//! fire-and-forget task and for one whose `Pending` was dropped before it
//! completed. Freeing goes through the task's `free_fields` (the
//! [`Ser`] impls below), which find the client-data allocator of the buffer's
//! segment in this process ([`registry`]).
//!
//! **The runtime does not trust the fields.** A handler reaches the bytes only
//! through [`ClientBytes::get`], [`ClientStr::get`] and [`ClientBuf::get_mut`]
//! ([`access`]), which check that the pointer is the start of a live block of
//! the client-data segment holding the length, and that no other borrow of the
//! same block is alive — in this task or another one, on any worker — so two
//! fields (or two tasks) that name one block cannot give a handler a `&[u8]`
//! and a `&mut [u8]` over the same bytes. Data is read and written in place:
//! nothing is copied between the client and the module.
//!
//! **Remote tasks** carry the bytes, not the pointers: [`Ser::save`] writes
//! them and [`Ser::load`] allocates them anew in the client-data segment of
//! the process that loads the task.

use crate::client::{Client, ClientError};
use crate::ser::{Reader, Ser, SerError};
use crate::shm::{Allocator, ShmPtr, ShmSafe};

pub mod access;
pub mod registry;

pub use access::{BufMut, Bytes, Str};

/// Bytes a client hands to a module: the start of a client-data block and a
/// length (see the [module doc](self)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientBytes {
    ptr: ShmPtr,
    /// The length, and [`BORROWED`] if the task does not own the block.
    len: u64,
}

/// The bit of a length (or capacity) that marks a block the task names but
/// does not own ([`ClientBytes::borrow_block`]): it is not freed with the
/// task. Lengths are below 2^48 anyway.
const BORROWED: u64 = 1 << 63;

// SAFETY: `#[repr(C)]` over a `ShmPtr` (a `u64`) and a `u64`: no padding, no
// address, every bit pattern a value (the runtime validates before use).
unsafe impl ShmSafe for ClientBytes {}

/// Text a client hands to a module: [`ClientBytes`] that must be UTF-8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStr(ClientBytes);

// SAFETY: as `ClientBytes`, which it wraps (`#[repr(C)]`, one field).
unsafe impl ShmSafe for ClientStr {}

/// An output buffer: a client-data block of `cap` bytes of which the module
/// wrote `len` (see the [module doc](self)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientBuf {
    ptr: ShmPtr,
    /// The capacity, and [`BORROWED`] if the task does not own the block.
    cap: u64,
    len: u64,
}

// SAFETY: `#[repr(C)]` over three `u64`s: no padding, no address, every bit
// pattern a value (the runtime validates before use).
unsafe impl ShmSafe for ClientBuf {}

impl ClientBytes {
    /// No bytes (no block).
    pub const EMPTY: ClientBytes = ClientBytes {
        ptr: ShmPtr::NULL,
        len: 0,
    };

    /// A copy of `data` in a new client-data block of `client`'s runtime.
    pub fn new(client: &Client, data: &[u8]) -> Result<ClientBytes, ClientError> {
        if data.is_empty() {
            return Ok(ClientBytes::EMPTY);
        }
        let block = client.allocate_buffer(data.len())?;
        // SAFETY: a fresh block of `data.len()` bytes, ours alone; it cannot
        // overlap `data`, which is this process's own memory or another block.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), block.as_ptr(), data.len()) };
        Ok(ClientBytes {
            ptr: block.shm(),
            len: data.len() as u64,
        })
    }

    /// Names `len` bytes at `ptr`, which the task then owns (frees with
    /// itself): for a block allocated by hand
    /// ([`Client::allocate_buffer`]). The runtime checks it before use.
    pub fn from_raw_parts(ptr: ShmPtr, len: u64) -> ClientBytes {
        ClientBytes {
            ptr,
            len: len & !BORROWED,
        }
    }

    /// Names `len` bytes of a block the caller keeps (allocated with
    /// [`Client::allocate_buffer`] and reused for many tasks, say): the task
    /// does not free it, and the caller must not free it before the task
    /// completed.
    pub fn borrow_block(ptr: ShmPtr, len: u64) -> ClientBytes {
        ClientBytes {
            ptr,
            len: len | BORROWED,
        }
    }

    /// Bytes.
    pub fn len(&self) -> u64 {
        self.len & !BORROWED
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the task owns the block (frees it with itself).
    pub fn is_owned(&self) -> bool {
        self.len & BORROWED == 0
    }

    /// Where they are.
    pub fn ptr(&self) -> ShmPtr {
        self.ptr
    }

    /// The bytes, copied out (client side), checked as the runtime checks
    /// them.
    pub fn to_vec(&self, client: &Client) -> Result<Vec<u8>, ClientError> {
        copy_out(client, "input", self.ptr, self.len())
    }
}

impl ClientStr {
    /// No text.
    pub const EMPTY: ClientStr = ClientStr(ClientBytes::EMPTY);

    /// A copy of `text` in a new client-data block of `client`'s runtime.
    pub fn new(client: &Client, text: &str) -> Result<ClientStr, ClientError> {
        ClientBytes::new(client, text.as_bytes()).map(ClientStr)
    }

    /// Its bytes.
    pub fn bytes(&self) -> &ClientBytes {
        &self.0
    }
}

impl ClientBuf {
    /// No buffer: a module that writes grows it first.
    pub const EMPTY: ClientBuf = ClientBuf {
        ptr: ShmPtr::NULL,
        cap: 0,
        len: 0,
    };

    /// A new client-data block of `cap` bytes of `client`'s runtime, nothing
    /// written yet.
    pub fn with_capacity(client: &Client, cap: usize) -> Result<ClientBuf, ClientError> {
        if cap == 0 {
            return Ok(ClientBuf::EMPTY);
        }
        let block = client.allocate_buffer(cap)?;
        Ok(ClientBuf {
            ptr: block.shm(),
            cap: cap as u64,
            len: 0,
        })
    }

    /// Names the block at `ptr` of `cap` bytes, `len` of them written, which
    /// the task then owns (as [`ClientBytes::from_raw_parts`]).
    pub fn from_raw_parts(ptr: ShmPtr, cap: u64, len: u64) -> ClientBuf {
        ClientBuf {
            ptr,
            cap: cap & !BORROWED,
            len,
        }
    }

    /// Names the block at `ptr` of `cap` bytes, which the caller keeps (as
    /// [`ClientBytes::borrow_block`]). A module that must grow it allocates
    /// a new block, which the task then owns.
    pub fn borrow_block(ptr: ShmPtr, cap: u64) -> ClientBuf {
        ClientBuf {
            ptr,
            cap: cap | BORROWED,
            len: 0,
        }
    }

    /// Bytes written.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes it holds.
    pub fn capacity(&self) -> u64 {
        self.cap & !BORROWED
    }

    /// Whether the task owns the block (frees it with itself).
    pub fn is_owned(&self) -> bool {
        self.cap & BORROWED == 0
    }

    /// Where it is.
    pub fn ptr(&self) -> ShmPtr {
        self.ptr
    }

    /// The bytes written, copied out (client side, once the task completed).
    /// Checks the block as the runtime would: a buffer the module left
    /// inconsistent is an error, not a read out of bounds.
    pub fn to_vec(&self, client: &Client) -> Result<Vec<u8>, ClientError> {
        if self.len > self.capacity() {
            return Err(ClientError::Protocol(format!(
                "output buffer {}: {} bytes written in a buffer of {}",
                self.ptr,
                self.len,
                self.capacity()
            )));
        }
        copy_out(client, "output", self.ptr, self.len)
    }
}

/// `len` bytes of the client-data block at `ptr`, copied out on the client
/// side, checked as the runtime checks a field.
fn copy_out(client: &Client, what: &str, ptr: ShmPtr, len: u64) -> Result<Vec<u8>, ClientError> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let p = access::check_block(client.cdata_allocator(), what, ptr, len)
        .map_err(|f| ClientError::Protocol(f.message))?;
    // SAFETY: checked: `len` bytes of a live client-data block, which the
    // runtime no longer writes (the task completed, or was never submitted).
    Ok(unsafe { std::slice::from_raw_parts(p.as_ptr(), len as usize) }.to_vec())
}

std::thread_local! {
    /// Inside the runtime, while a fire-and-forget task's fields are freed:
    /// the pid of the process that allocated the task.
    static FREEING_FOR: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` (the freeing of a task's fields inside the runtime) allowing the
/// blocks of process `pid` (the task's) to be freed, besides the runtime's own.
pub(crate) fn freeing_for<R>(pid: Option<u32>, f: impl FnOnce() -> R) -> R {
    let before = FREEING_FOR.with(|c| c.replace(pid));
    let r = f();
    FREEING_FOR.with(|c| c.set(before));
    r
}

/// Frees the block at `ptr` (if any) to the client-data allocator of its
/// segment in this process; a block no allocator here knows stays, logged.
///
/// Inside the runtime a task's buffers are freed only if they belong to the
/// process that made the task (or to the runtime, which grew them): a client
/// that names another client's block in a fire-and-forget task does not get
/// it freed.
fn free_block(ptr: ShmPtr) {
    if ptr.is_null() {
        return;
    }
    let freed = registry::with_allocator(ptr.segment(), |a| {
        if crate::module_side::client_data_allocator().is_ok() {
            let owner = a.owner_of(ptr).ok().and_then(|o| a.owner_pid(o));
            let allowed = [Some(std::process::id()), FREEING_FOR.with(|c| c.get())];
            if owner.is_none() || !allowed.contains(&owner) {
                return Err(format!(
                    "it belongs to process {owner:?}, not to the task's ({:?})",
                    allowed[1]
                ));
            }
        }
        a.free(ptr).map_err(|e| e.to_string())
    });
    match freed {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            tracing::warn!(block = %ptr, error = %e, "a client-data buffer was not freed")
        }
        None => tracing::warn!(
            block = %ptr,
            "a client-data buffer was not freed: this process has no allocator of its segment"
        ),
    }
}

/// Allocates `data` anew in the client-data segment of this process (a
/// loaded remote task); `None` for no bytes.
fn load_block(data: &[u8], cap: usize) -> Result<ShmPtr, SerError> {
    if cap == 0 {
        return Ok(ShmPtr::NULL);
    }
    let block = registry::with_local(|a| a.allocate(cap))
        .ok_or_else(|| SerError::ClientData("no client-data segment in this process".into()))?
        .map_err(|e| SerError::ClientData(e.to_string()))?;
    // SAFETY: a fresh block of `cap >= data.len()` bytes, ours alone.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), block.as_ptr(), data.len()) };
    Ok(block.shm())
}

/// The bytes of a block for a save: checked like a handler's read.
fn saved<'a>(ptr: ShmPtr, len: u64) -> Result<&'a [u8], SerError> {
    if len == 0 {
        return Ok(&[]);
    }
    let p = registry::with_allocator(ptr.segment(), |a| access::check_block(a, "saved", ptr, len))
        .ok_or_else(|| SerError::ClientData(format!("{ptr}: no allocator of its segment here")))?
        .map_err(|f| SerError::ClientData(f.message))?;
    // SAFETY: checked: `len` bytes of a live block, which stays while the
    // task (and so its owner) is being saved.
    Ok(unsafe { std::slice::from_raw_parts(p.as_ptr(), len as usize) })
}

impl Ser for ClientBytes {
    const MIN_ENCODED: usize = 8;
    fn save(&self, out: &mut Vec<u8>) -> Result<(), SerError> {
        let b = saved(self.ptr, self.len())?;
        out.extend_from_slice(&self.len().to_le_bytes());
        out.extend_from_slice(b);
        Ok(())
    }
    fn load(&mut self, r: &mut Reader<'_>, alloc: &Allocator) -> Result<(), SerError> {
        let n = r.take_len(1)?;
        let data = r.take(n)?;
        let ptr = load_block(data, data.len())?;
        self.free_shm(alloc);
        *self = ClientBytes { ptr, len: n };
        Ok(())
    }
    fn deep_copy(&self, _alloc: &Allocator) -> Result<Self, SerError> {
        let data = saved(self.ptr, self.len())?;
        Ok(ClientBytes {
            ptr: load_block(data, data.len())?,
            len: self.len(),
        })
    }
    fn free_shm(&mut self, _alloc: &Allocator) {
        let this = std::mem::take(self);
        if this.is_owned() {
            free_block(this.ptr);
        }
    }
}

impl Ser for ClientStr {
    const MIN_ENCODED: usize = 8;
    fn save(&self, out: &mut Vec<u8>) -> Result<(), SerError> {
        self.0.save(out)
    }
    fn load(&mut self, r: &mut Reader<'_>, alloc: &Allocator) -> Result<(), SerError> {
        let at = r.position();
        self.0.load(r, alloc)?;
        let bytes = saved(self.0.ptr, self.0.len())?;
        if std::str::from_utf8(bytes).is_err() {
            self.0.free_shm(alloc);
            return Err(SerError::InvalidUtf8 { at });
        }
        Ok(())
    }
    fn deep_copy(&self, alloc: &Allocator) -> Result<Self, SerError> {
        self.0.deep_copy(alloc).map(ClientStr)
    }
    fn free_shm(&mut self, alloc: &Allocator) {
        self.0.free_shm(alloc);
    }
}

/// A buffer travels as its written bytes only: the copy a loaded task gets
/// holds exactly them (a handler grows it to write more), so a sender cannot
/// make the receiver allocate more than it sent.
impl Ser for ClientBuf {
    const MIN_ENCODED: usize = 8;
    fn save(&self, out: &mut Vec<u8>) -> Result<(), SerError> {
        let b = saved(self.ptr, self.len.min(self.capacity()))?;
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        out.extend_from_slice(b);
        Ok(())
    }
    /// Into a task that has a block (the outputs of a task sent out, loaded
    /// into the caller's task): the bytes go into that block when it holds
    /// them, whoever owns it (a block the caller keeps gets what was read
    /// into it, as it would from a local handler); otherwise, and into a
    /// fresh task, a new block of the task's holds them (a block of the
    /// task's it replaces is freed, one the caller keeps is not).
    fn load(&mut self, r: &mut Reader<'_>, alloc: &Allocator) -> Result<(), SerError> {
        let n = r.take_len(1)?;
        let data = r.take(n)?;
        if !self.ptr.is_null() && self.capacity() >= n && n > 0 {
            let cap = self.capacity();
            let p = registry::with_allocator(self.ptr.segment(), |a| {
                access::check_block(a, "loaded", self.ptr, cap)
            })
            .ok_or_else(|| {
                SerError::ClientData(format!("{}: no allocator of its segment here", self.ptr))
            })?
            .map_err(|f| SerError::ClientData(f.message))?;
            // SAFETY: checked: a live client-data block of at least `cap >=
            // n` bytes, which nobody else writes while the task's outputs load.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p.as_ptr(), data.len()) };
            self.len = n;
            return Ok(());
        }
        let ptr = load_block(data, data.len())?;
        self.free_shm(alloc);
        *self = ClientBuf {
            ptr,
            cap: n,
            len: n,
        };
        Ok(())
    }
    /// Appends the replica's written bytes (growing the buffer as a
    /// handler's write would).
    fn collect(&mut self, replica: &Self, _alloc: &Allocator) -> Result<(), SerError> {
        let tail = saved(replica.ptr, replica.len.min(replica.capacity()))?;
        if tail.is_empty() {
            return Ok(());
        }
        let mut out = self
            .get_mut()
            .map_err(|f| SerError::ClientData(f.message))?;
        out.write(tail).map_err(|f| SerError::ClientData(f.message))
    }
    fn deep_copy(&self, _alloc: &Allocator) -> Result<Self, SerError> {
        let data = saved(self.ptr, self.len.min(self.capacity()))?;
        Ok(ClientBuf {
            ptr: load_block(data, self.capacity() as usize)?,
            cap: self.capacity(),
            len: data.len() as u64,
        })
    }
    fn free_shm(&mut self, _alloc: &Allocator) {
        let this = std::mem::take(self);
        if this.is_owned() {
            free_block(this.ptr);
        }
    }
}

#[cfg(test)]
mod tests;
