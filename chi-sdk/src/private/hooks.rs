//! The per-task-type hooks of a module's table (`del`, `save_in`, `save_out`,
//! `load_in`, `load_out`, `new_copy`), generic over the task type: `#[chimod]`
//! generates one `match` on the method per hook, whose arms call these with the
//! method's task type. Each returns a [`Failure`]; [`hook`] turns it (or a
//! panic) into the result code and message the runtime gets.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::abi::{ByteSink, ErrorBuf};
use crate::shm::{Allocator, ShmPtr};
use crate::task::{Failure, Task, TaskHeader, code};
use crate::types::PoolId;

/// The text of a panic payload.
pub(super) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}

/// The main allocator, or the failure of a hook that needs it.
fn alloc() -> Result<&'static Allocator, Failure> {
    Ok(crate::container::main_allocator()?)
}

/// Runs a task hook (`del`, `save_*`, `load_*`): contains panics, writes a
/// failure to `err` (if any) and returns the result code.
pub fn hook(err: Option<&mut ErrorBuf>, f: impl FnOnce() -> Result<(), Failure>) -> i32 {
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return code::OK,
        Ok(Err(e)) => e,
        Err(p) => Failure::panicked(format!("panicked: {}", panic_text(&*p))),
    };
    if let Some(err) = err {
        err.set(&failure.message);
    }
    failure.code
}

/// `del` for a task of type `T`: frees its fields, its error message and
/// its block in the main segment.
///
/// # Safety
/// As [`cast`]; nobody uses the task afterwards.
pub unsafe fn del<T: crate::ser::TaskSer>(task: *mut TaskHeader) -> Result<(), Failure> {
    let alloc = alloc()?;
    // SAFETY: per the contract.
    let t = unsafe { cast::<T>(task)? };
    let ptr = ShmPtr::from_addr(task)
        .ok_or_else(|| Failure::bad_task(format!("task at {task:p} is not in a mapped segment")))?;
    // The task's client-data buffers are freed if they are its process's.
    let owner = alloc.owner_of(ptr).ok().and_then(|o| alloc.owner_pid(o));
    crate::bytes::freeing_for(owner, || t.free_fields(alloc));
    let _ = t.header_mut().error.free(alloc);
    alloc
        .free(ptr)
        .map_err(|e| Failure::bad_task(e.to_string()))
}

/// `save_in` / `save_out` for a task of type `T`.
///
/// # Safety
/// As [`cast`] (read only); `out` is the runtime's live sink.
pub unsafe fn save<T: crate::ser::TaskSer>(
    task: *const TaskHeader,
    out: *mut ByteSink,
    outputs: bool,
) -> Result<(), Failure> {
    // SAFETY: per the contract; only read.
    let t: &T = unsafe { cast::<T>(task as *mut TaskHeader)? };
    let mut v = Vec::new();
    if outputs {
        t.save_out(&mut v)?;
    } else {
        t.save_in(&mut v)?;
    }
    // SAFETY: the runtime's sink, live for the call.
    unsafe { (*out).put(&v) };
    Ok(())
}

/// `load_in` for a task of type `T`: `task` is a block of
/// `size_of::<T>()` bytes, overwritten with the task read from `data`.
///
/// # Safety
/// `task` points to a writable block of at least `size_of::<T>()` bytes,
/// aligned for `T`; `data` holds `len` readable bytes.
pub unsafe fn load_in<T: crate::ser::TaskSer>(
    task: *mut TaskHeader,
    data: *const u8,
    len: usize,
    empty: fn(PoolId) -> T,
) -> Result<(), Failure> {
    let alloc = alloc()?;
    if !(task as usize).is_multiple_of(align_of::<T>()) {
        return Err(Failure::bad_task(format!(
            "task block at {task:p} is misaligned"
        )));
    }
    // SAFETY: per the contract, the block is writable and large enough; T is
    // ShmSafe, so overwriting whatever bytes were there needs no drop.
    let t = unsafe {
        (task as *mut T).write(empty(PoolId::NULL));
        &mut *(task as *mut T)
    };
    // SAFETY: per the contract.
    let bytes = unsafe { bytes_at(data, len) };
    let mut r = crate::ser::Reader::new(bytes);
    t.load_in(&mut r, alloc)?;
    Ok(r.finish()?)
}

/// `load_out` for a task of type `T`.
///
/// # Safety
/// As [`cast`]; `data` holds `len` readable bytes.
pub unsafe fn load_out<T: crate::ser::TaskSer>(
    task: *mut TaskHeader,
    data: *const u8,
    len: usize,
) -> Result<(), Failure> {
    let alloc = alloc()?;
    // SAFETY: per the contract.
    let t = unsafe { cast::<T>(task)? };
    // SAFETY: per the contract.
    let bytes = unsafe { bytes_at(data, len) };
    let mut r = crate::ser::Reader::new(bytes);
    // An output that no longer fits replaces its buffer: the old one is
    // freed if it is the task's process's (as in `del`).
    let owner = ShmPtr::from_addr(task)
        .and_then(|p| alloc.owner_of(p).ok())
        .and_then(|o| alloc.owner_pid(o));
    crate::bytes::freeing_for(owner, || t.load_out(&mut r, alloc))?;
    Ok(r.finish()?)
}

/// `new_copy` for a task of type `T`: a deep copy in a new main-segment block.
///
/// # Safety
/// As [`cast`] (read only).
pub unsafe fn new_copy<T: crate::ser::TaskSer>(
    task: *const TaskHeader,
) -> Result<*mut TaskHeader, Failure> {
    let alloc = alloc()?;
    // SAFETY: per the contract; only read.
    let t: &T = unsafe { cast::<T>(task as *mut TaskHeader)? };
    let copy = t.new_copy(alloc)?;
    let p = alloc
        .new_obj(copy)
        .map_err(|e| Failure::failed(e.to_string()))?;
    Ok(p.as_ptr() as *mut TaskHeader)
}

/// The default `aggregate` for a task of type `T`: its generated
/// [`TaskSer::collect_outputs`](crate::ser::TaskSer::collect_outputs).
///
/// # Safety
/// As [`cast`] for `task`; `replica` is another live task of the same
/// method, only read.
pub unsafe fn collect<T: crate::ser::TaskSer>(
    task: *mut TaskHeader,
    replica: *const TaskHeader,
) -> Result<(), Failure> {
    let alloc = alloc()?;
    // SAFETY: per the contract (two distinct tasks).
    let (t, r) = unsafe { (cast::<T>(task)?, &*cast::<T>(replica as *mut TaskHeader)?) };
    Ok(t.collect_outputs(r, alloc)?)
}

/// # Safety
/// `data` holds `len` readable bytes (or `len` is 0).
unsafe fn bytes_at<'a>(data: *const u8, len: usize) -> &'a [u8] {
    if data.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: per the contract.
        unsafe { std::slice::from_raw_parts(data, len) }
    }
}

/// The task as `T`, if its declared size covers `T` and it is aligned for it.
///
/// # Safety
/// `task` points to a header whose `size` bytes the runtime checked lie in a
/// mapped segment, and the caller has exclusive use of the task.
pub unsafe fn cast<'a, T: Task>(task: *mut TaskHeader) -> Result<&'a mut T, Failure> {
    // SAFETY: per the contract, the header is readable.
    let size = unsafe { (*task).size } as usize;
    if size < size_of::<T>() {
        return Err(Failure::bad_task(format!(
            "task of {size} bytes is too small for {} ({} bytes)",
            std::any::type_name::<T>(),
            size_of::<T>()
        )));
    }
    if !(task as usize).is_multiple_of(align_of::<T>()) {
        return Err(Failure::bad_task(format!(
            "task at {task:p} is not aligned for {}",
            std::any::type_name::<T>()
        )));
    }
    // SAFETY: in bounds and aligned (checked), T is ShmSafe (valid for any
    // bytes), exclusive use per the contract.
    Ok(unsafe { &mut *(task as *mut T) })
}
