//! A task to bytes and back through its module's generated hooks: the
//! sending runtime saves a task's inputs (`save_in`) into a request record,
//! the receiving one loads them into a fresh task block of its main segment
//! (`task_size` + `load_in`), runs it, and saves its outputs (`save_out`)
//! into the reply, which the sender loads into the waiting task
//! (`load_out`). Client-data bytes a task names travel inside the bodies
//! (the hooks move the bytes, not the pointers).
//!
//! Every function here takes the container whose module serves the task and
//! returns an error naming the module and the method: a body that does not
//! load (truncated, trailing bytes, a length past what it holds) fails the
//! task, never the runtime.

use chi_sdk::abi::{ByteSink, ErrorBuf};
use chi_sdk::shm::{Allocator, Segment, ShmPtr};
use chi_sdk::task::{TaskHeader, code};

use crate::pool::Container;

/// Why a task could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
#[error("module {module}, method {method}: {what}")]
pub struct CodecError {
    /// The module.
    pub module: String,
    /// The method.
    pub method: u32,
    /// What went wrong.
    pub what: String,
}

impl CodecError {
    fn new(c: &Container, method: u32, what: impl Into<String>) -> CodecError {
        CodecError {
            module: c.module.name.clone(),
            method,
            what: what.into(),
        }
    }
}

/// Which half of a task a hook handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    /// The inputs (and the header's routing fields).
    In,
    /// The outputs (and the result code and error message).
    Out,
}

/// Saves `half` of `task` (served by `c`) as bytes.
///
/// # Safety
/// `task` is a live task of `c`'s module whose method is its `method` field,
/// not being written by anyone during the call.
pub unsafe fn save(
    c: &Container,
    task: *const TaskHeader,
    half: Half,
) -> Result<Vec<u8>, CodecError> {
    // SAFETY: the caller's contract: `task` is live.
    let method = unsafe { (*task).method };
    let api = c.module.api;
    let hook = match half {
        Half::In => api.save_in,
        Half::Out => api.save_out,
    }
    .ok_or_else(|| {
        CodecError::new(
            c,
            method,
            "the module has no save hook (built without #[chimod]?)",
        )
    })?;
    let mut out = Vec::new();
    let mut sink = ByteSink::for_vec(&mut out);
    let mut err = ErrorBuf::default();
    // SAFETY: the container's state is alive (the caller holds the
    // container); `task`, the sink and the error buffer are valid for the
    // call, which is the hook's contract.
    let rc = unsafe { hook(c.state, task, &mut sink, &mut err) };
    if rc != code::OK {
        return Err(CodecError::new(
            c,
            method,
            format!("save failed ({rc}): {}", err.as_str()),
        ));
    }
    Ok(out)
}

/// Loads a request's body into a new task block of `main` (allocated with
/// `alloc`) for method `method` of `c`'s module; returns the task's header.
/// On error nothing stays allocated.
pub fn load_in(
    c: &Container,
    method: u32,
    body: &[u8],
    alloc: &Allocator,
    main: &Segment,
) -> Result<*mut TaskHeader, CodecError> {
    let api = c.module.api;
    let (Some(size_of), Some(load), Some(del)) = (api.task_size, api.load_in, api.del) else {
        return Err(CodecError::new(
            c,
            method,
            "the module has no load hooks (built without #[chimod]?)",
        ));
    };
    // SAFETY: a plain function of the module's table.
    let size = unsafe { size_of(method) };
    if size < size_of_header() {
        return Err(CodecError::new(
            c,
            method,
            "the module has no task of this method",
        ));
    }
    let block = alloc
        .allocate_aligned(size, 16)
        .map_err(|e| CodecError::new(c, method, format!("no room for the task: {e}")))?;
    let task = block.as_ptr().cast::<TaskHeader>();
    // SAFETY: a fresh block of `size` bytes, ours alone; the hook's contract
    // asks for a zeroed header (the load fills it all).
    unsafe { std::ptr::write_bytes(block.as_ptr(), 0, size) };
    // The generated hook picks the task type by the header's method.
    // SAFETY: as above: the fresh block holds a (zeroed) header.
    unsafe { (*task).method = method };
    let mut err = ErrorBuf::default();
    // SAFETY: the container is alive; `task` is the fresh block of the
    // method's size; `body` holds `len` readable bytes.
    let rc = unsafe { load(c.state, task, body.as_ptr(), body.len(), &mut err) };
    if rc != code::OK {
        // SAFETY: the task is ours; `del` frees what the load allocated (its
        // fields hold either loaded values or zeroes) and the block.
        if unsafe { del(c.state, task) } != code::OK {
            let _ = alloc.free(ShmPtr::new(main.id(), task as u64 - main.base() as u64));
        }
        return Err(CodecError::new(
            c,
            method,
            format!("load failed ({rc}): {}", err.as_str()),
        ));
    }
    Ok(task)
}

/// Loads a reply's body into `task`, the task that waits for it.
///
/// # Safety
/// `task` is a live task of `c`'s module, not run or read by anyone else
/// until this returns.
pub unsafe fn load_out(
    c: &Container,
    task: *mut TaskHeader,
    body: &[u8],
) -> Result<(), CodecError> {
    // SAFETY: the caller's contract.
    let method = unsafe { (*task).method };
    let load = c.module.api.load_out.ok_or_else(|| {
        CodecError::new(
            c,
            method,
            "the module has no load hook (built without #[chimod]?)",
        )
    })?;
    let mut err = ErrorBuf::default();
    // SAFETY: the container is alive; `task` is live and ours for the call.
    let rc = unsafe { load(c.state, task, body.as_ptr(), body.len(), &mut err) };
    if rc != code::OK {
        return Err(CodecError::new(
            c,
            method,
            format!("load failed ({rc}): {}", err.as_str()),
        ));
    }
    Ok(())
}

/// The header's size: no task is smaller.
const fn size_of_header() -> usize {
    std::mem::size_of::<TaskHeader>()
}
