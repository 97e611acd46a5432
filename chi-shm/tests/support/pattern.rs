//! A sparse content pattern for blocks of any size, cheap enough for blocks of
//! megabytes: the first 32 words, every 512th word, the last word and the tail
//! bytes, each a function of the block's tag and position.

#![allow(dead_code)]

/// Word indexes the pattern covers in a block of `size` bytes.
fn words(size: usize) -> impl Iterator<Item = usize> {
    let n = size / 8;
    (0..n.min(32))
        .chain((512..n).step_by(512))
        .chain((n > 32).then(|| n - 1))
}

fn word(tag: u64, i: usize) -> u64 {
    tag.rotate_left(17) ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn tail_byte(tag: u64, j: usize) -> u8 {
    (tag as u8).wrapping_add(j as u8).wrapping_mul(31)
}

/// Writes the pattern of `tag` into `size` bytes at `p`.
///
/// # Safety
/// `p` is 8-aligned and valid for writes of `size` bytes.
pub unsafe fn fill(p: *mut u8, size: usize, tag: u64) {
    for i in words(size) {
        // SAFETY: word `i` lies inside the `size` bytes; `p` is 8-aligned.
        unsafe { p.cast::<u64>().add(i).write(word(tag, i)) };
    }
    for j in size / 8 * 8..size {
        // SAFETY: inside the `size` bytes.
        unsafe { p.add(j).write(tail_byte(tag, j)) };
    }
}

/// Checks the pattern of `tag` over `size` bytes at `p`.
///
/// # Safety
/// `p` is 8-aligned and valid for reads of `size` bytes.
pub unsafe fn check(p: *const u8, size: usize, tag: u64) -> Result<(), String> {
    for i in words(size) {
        // SAFETY: word `i` lies inside the `size` bytes; `p` is 8-aligned.
        let got = unsafe { p.cast::<u64>().add(i).read() };
        if got != word(tag, i) {
            return Err(format!(
                "block of {size} bytes tagged {tag:#x}: word {i} is {got:#x}, expected {:#x}",
                word(tag, i)
            ));
        }
    }
    for j in size / 8 * 8..size {
        // SAFETY: inside the `size` bytes.
        let got = unsafe { p.add(j).read() };
        if got != tail_byte(tag, j) {
            return Err(format!(
                "block of {size} bytes tagged {tag:#x}: byte {j} differs"
            ));
        }
    }
    Ok(())
}
