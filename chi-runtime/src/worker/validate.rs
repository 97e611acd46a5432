//! Validation of the words a worker pops from its lanes.
//!
//! # Design
//!
//! A lane cell holds a 64-bit word that a client wrote, and clients are never
//! trusted to be correct (see the trust model in the workspace's design): a
//! word may be garbage, a stale pointer to a task the client already freed, a
//! pointer into the wrong segment or to one of the runtime's own structures.
//! [`validate_task`] reads, and never writes, until it has shown that the word
//! names the start of a live task block of the main segment:
//!
//! 1. the segment is the main segment, and the offset names none of the
//!    runtime's own blocks (the queue, the runtime block, the lane beats);
//! 2. the allocator knows a live block starting there, at least a header big;
//! 3. the header's magic is a task's, and the word's generation tag (if any)
//!    is the block's generation now (else the client freed and reused it);
//! 4. the size the header claims fits in the block.
//!
//! A word failing 1–3 is [`Invalid::Refuse`]d: dropped without a write (there
//! is nothing to complete). A live task failing 4 is [`Invalid::Fail`]ed: the
//! worker completes it with `BAD_TASK`, so its client gets an answer. A valid
//! word's generation goes with the task: the worker writes the task only while
//! the block's generation stays that one.

use chi_sdk::shm::{Allocator, ShmPtr};
use chi_sdk::task::TaskHeader;

/// Why a popped word is not run.
#[derive(Debug)]
pub enum Invalid {
    /// Not a live task block of the main segment: dropped without a write.
    Refuse(String),
    /// A live task block with a bad header: completed with `BAD_TASK`.
    Fail {
        /// The task.
        task: *mut TaskHeader,
        /// Its generation.
        generation: u32,
        /// Why.
        message: String,
    },
}

/// Checks that `word`, popped from a lane, names the start of a live task
/// block of the main segment that is not one of the runtime's own structures
/// (`runtime_owned`), and that the size its header claims fits the block.
/// Returns the header and the generation the task has now (the runtime writes
/// to the task only while the generation stays this one).
///
/// Nothing is written: the pointer is untrusted until this returns `Ok`.
#[inline]
pub fn validate_task(
    alloc: &Allocator,
    runtime_owned: &[ShmPtr],
    word: ShmPtr,
) -> Result<(*mut TaskHeader, u32), Invalid> {
    let (ptr, tag) = chi_sdk::task::split_task_word(word);
    if ptr.segment() != alloc.segment_id() {
        return Err(refuse(format_args!(
            "{ptr} is not in the main segment ({})",
            alloc.segment_id()
        )));
    }
    if runtime_owned.contains(&ptr) {
        return Err(refuse(format_args!(
            "{ptr} names one of the runtime's own structures, not a task"
        )));
    }
    let usable = alloc
        .live_size(ptr)
        .map_err(|e| refuse(format_args!("{ptr} is not a live allocation: {e}")))?;
    if usable < size_of::<TaskHeader>() as u64 {
        return Err(refuse(format_args!(
            "{ptr} is a block of {usable} bytes, too small for a task"
        )));
    }
    let h = ptr
        .resolve::<TaskHeader>()
        .map_err(|e| refuse(format_args!("{ptr} does not resolve: {e}")))?;
    let task = h.as_ptr();
    // SAFETY: resolved in bounds and aligned inside a live block of at least a
    // header's size; TaskHeader is valid for any bytes; only read here.
    let hdr = unsafe { &*task };
    if hdr.magic != chi_sdk::task::TASK_MAGIC {
        return Err(refuse(format_args!(
            "{ptr} is a live block but not a task (magic {:#x})",
            hdr.magic
        )));
    }
    let generation = u32::from(hdr.generation);
    if tag != 0 && tag != chi_sdk::task::generation_tag(generation) {
        return Err(refuse(format_args!(
            "{ptr} is stale: its block holds another task now (generation changed since the \
             pointer was pushed; the client freed the task before the runtime took it)"
        )));
    }
    let size = u64::from(hdr.size);
    if size < size_of::<TaskHeader>() as u64 || size > usable {
        return Err(bad_size(task, generation, ptr, size, usable));
    }
    Ok((task, generation))
}

/// Rate limit of the workers' warnings about refused words.
static REFUSED_LOG: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::per_second();

/// Warns (rate limited) that worker `worker` dropped `word` for `why`.
#[cold]
pub fn log_refused(worker: u32, word: ShmPtr, why: &str) {
    if let Some(suppressed) = REFUSED_LOG.allow() {
        tracing::warn!(
            worker,
            word = format_args!("{:#018x}", word.to_bits()),
            suppressed,
            "dropped a word from a lane that is not a live task ({why}); a client pushed a \
             stale or garbage pointer"
        );
    }
}

/// The refusal of a word, built off the task path (the checks above stay small
/// enough to inline into the worker's loop).
#[cold]
#[inline(never)]
fn refuse(why: std::fmt::Arguments<'_>) -> Invalid {
    Invalid::Refuse(why.to_string())
}

/// A live task whose header claims a size its block cannot hold.
#[cold]
#[inline(never)]
fn bad_size(
    task: *mut TaskHeader,
    generation: u32,
    ptr: ShmPtr,
    size: u64,
    usable: u64,
) -> Invalid {
    Invalid::Fail {
        task,
        generation,
        message: format!(
            "task at {ptr} claims {size} bytes, but its block holds {usable} (and a task is at \
             least its {}-byte header)",
            size_of::<TaskHeader>()
        ),
    }
}
