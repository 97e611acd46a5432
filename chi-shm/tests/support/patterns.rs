//! Content patterns for allocator tests: every word of a block derived from
//! a tag (process, thread, sequence) and the block's size, so that a block
//! read back — by any process — says whose it was and whether it was damaged.

use chi_shm::shm::{Allocator, ShmPtr};

/// Word `i` of the pattern of a block: its tag, its size, then a mix of both.
#[inline]
pub fn pattern_word(tag: u64, size: u64, i: usize) -> u64 {
    match i {
        0 => tag,
        1 => size,
        _ => (tag ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(23),
    }
}

/// Fills `size` bytes at `p` with the pattern of `tag`.
///
/// # Safety
/// `p` is 8-aligned and valid for writes of `size` bytes.
pub unsafe fn fill(p: *mut u8, size: usize, tag: u64) {
    let words = size / 8;
    let w = p.cast::<u64>();
    for i in 0..words {
        // SAFETY: word `i` is inside the `size` bytes; `p` is 8-aligned.
        unsafe { w.add(i).write(pattern_word(tag, size as u64, i)) };
    }
    let last = pattern_word(tag, size as u64, words).to_le_bytes();
    for (j, b) in last.iter().enumerate().take(size % 8) {
        // SAFETY: the tail bytes are inside the `size` bytes.
        unsafe { p.add(words * 8 + j).write(*b) };
    }
}

/// Checks the pattern of `tag` over `size` bytes at `p`.
///
/// # Safety
/// `p` is 8-aligned and valid for reads of `size` bytes.
pub unsafe fn check(p: *const u8, size: usize, tag: u64) -> Result<(), String> {
    let words = size / 8;
    let w = p.cast::<u64>();
    for i in 0..words {
        // SAFETY: word `i` is inside the `size` bytes; `p` is 8-aligned.
        let got = unsafe { w.add(i).read() };
        let want = pattern_word(tag, size as u64, i);
        if got != want {
            return Err(format!(
                "block of {size} bytes tagged {tag:#x}: word {i} is {got:#x}, expected {want:#x} \
                 (overwritten by {})",
                describe_tag(got)
            ));
        }
    }
    let last = pattern_word(tag, size as u64, words).to_le_bytes();
    for (j, b) in last.iter().enumerate().take(size % 8) {
        // SAFETY: the tail bytes are inside the `size` bytes.
        let got = unsafe { p.add(words * 8 + j).read() };
        if got != *b {
            return Err(format!("block tagged {tag:#x}: tail byte {j} differs"));
        }
    }
    Ok(())
}

/// Tag of allocation `seq` of thread `thread` of process `proc`.
pub fn tag_of(proc: u64, thread: u64, seq: u64) -> u64 {
    ((proc + 1) << 56) | ((thread + 1) << 48) | seq
}

pub fn describe_tag(word: u64) -> String {
    format!(
        "a word that would be process {}, thread {}, seq {} if it is a tag",
        (word >> 56) as i64 - 1,
        ((word >> 48) & 0xff) as i64 - 1,
        word & ((1 << 48) - 1)
    )
}

/// Checks a block whose tag and size are written in its first 16 bytes (a
/// block received through a mailbox), returning them.
pub fn check_self_describing(alloc: &Allocator, ptr: ShmPtr) -> (u64, usize) {
    let usable = alloc
        .usable_size(ptr)
        .unwrap_or_else(|e| panic!("mailbox held {ptr}, not a live block: {e}"));
    let head = ptr
        .resolve_slice::<u64>(2)
        .expect("resolve block header words");
    // SAFETY: a live block of at least 16 bytes (only such blocks are published);
    // its publisher no longer touches it.
    let (tag, size) = unsafe { (head.as_ptr().read(), head.as_ptr().add(1).read() as usize) };
    assert!(
        size >= 16 && size as u64 <= usable,
        "block {ptr}: recorded size {size} does not fit its usable size {usable} (tag {tag:#x})"
    );
    let p = ptr.resolve_slice::<u8>(size as u64).unwrap();
    // SAFETY: `size` bytes of a live block (checked against its usable size).
    unsafe { check(p.as_ptr(), size, tag) }.unwrap_or_else(|e| panic!("{ptr}: {e}"));
    (tag, size)
}
