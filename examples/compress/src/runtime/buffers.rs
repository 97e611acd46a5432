//! The buffers a task names, checked before a byte is touched: each must
//! start a live allocation of the client-data segment holding its length, and
//! the output must not be the input (see the crate doc, "Untrusted pointers").

use chi_sdk::shm::{FullPtr, ShmPtr};
use chi_sdk::task::{Failure, code};

/// The input and output buffers of a task, checked (see [`client_buffer`]) and
/// disjoint.
pub(super) fn buffers<'a>(
    input: ShmPtr,
    input_len: u64,
    output: ShmPtr,
    output_cap: u64,
) -> Result<(&'a [u8], &'a mut [u8]), Failure> {
    let inp = client_buffer("input", input, input_len)?;
    let out = client_buffer("output", output, output_cap)?;
    if let (Some(i), Some(o)) = (inp, out)
        && i.shm() == o.shm()
    {
        return Err(Failure::new(
            code::BAD_TASK,
            format!("the output buffer {output} is the input buffer: pass two allocations"),
        ));
    }
    let input: &[u8] = match inp {
        // SAFETY: `client_buffer` checked that `p` starts a live client-data
        // allocation of at least `input_len` bytes, inside the mapped segment;
        // any byte is a valid u8. The client does not write the input while the
        // task runs (the protocol; a client that does gets garbage, not UB in
        // this process's own memory, which it cannot reach).
        Some(p) => unsafe { std::slice::from_raw_parts(p.as_ptr(), input_len as usize) },
        None => &[],
    };
    let output: &mut [u8] = match out {
        // SAFETY: as for the input, for `output_cap` bytes; the two buffers are
        // distinct live allocations each at least as long as its length, so the
        // slices do not overlap, and the client does not touch the output until
        // the task completes.
        Some(p) => unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), output_cap as usize) },
        None => &mut [],
    };
    Ok((input, output))
}

/// Checks a buffer named by a task: `len` bytes at `ptr`, which must start a
/// live allocation of the client-data segment that holds at least `len` bytes.
/// `None` for an empty buffer (whose pointer is not looked at).
fn client_buffer(what: &str, ptr: ShmPtr, len: u64) -> Result<Option<FullPtr<u8>>, Failure> {
    if len == 0 {
        return Ok(None);
    }
    let bad = |msg: String| Failure::new(code::BAD_TASK, format!("{what} buffer: {msg}"));
    let alloc = chi_sdk::container::client_data_allocator()
        .map_err(|e| Failure::new(code::FAILED, format!("{what} buffer: {e}")))?;
    if ptr.is_null() {
        return Err(bad(format!("null pointer with length {len}")));
    }
    if ptr.segment() != alloc.segment_id() {
        return Err(bad(format!(
            "{ptr} is not in the client-data segment ({}): allocate buffers with \
             Client::allocate_buffer",
            alloc.segment_id()
        )));
    }
    alloc.owner_of(ptr).map_err(|e| {
        bad(format!(
            "{ptr} is not the start of a live client-data allocation ({e})"
        ))
    })?;
    let size = alloc
        .usable_size(ptr)
        .map_err(|e| bad(format!("{ptr}: {e}")))?;
    if len > size {
        return Err(bad(format!(
            "length {len} runs past the end of the allocation at {ptr} ({size} bytes)"
        )));
    }
    if usize::try_from(len).is_err() {
        return Err(bad(format!("length {len} does not fit this process")));
    }
    ptr.resolve_slice::<u8>(len)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}
