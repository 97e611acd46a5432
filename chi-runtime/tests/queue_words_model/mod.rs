//! The model `fuzz_queue_words.rs` checks the runtime's task-word
//! validation against: blocks of the main segment with their headers, and
//! the verdict a word must get.

use std::mem::offset_of;

use crate::fuzzing::ShmFixture;
use chi_runtime::worker::{Invalid, validate_task};
use chi_sdk::admin::EchoTask;
use chi_sdk::shm::{SegmentId, ShmPtr};
use chi_sdk::task::{TASK_MAGIC, TaskHeader, generation_tag, task_word};
use chi_sdk::types::{DomainQuery, PoolId};
use proptest::prelude::*;

pub const HEADER: u64 = size_of::<TaskHeader>() as u64;
pub const SEGMENT_SIZE: u64 = 16 << 20;

/// What the `size` field of a task header says.
#[derive(Clone, Copy, Debug)]
pub enum SizeField {
    /// The size of the struct written (correct).
    Exact,
    /// The block's usable size (the largest correct value).
    Usable,
    /// The usable size plus this much (one too many at least).
    Beyond(u32),
    /// Any value.
    Value(u32),
}

#[derive(Clone, Debug)]
pub enum BlockSpec {
    /// An `EchoTask` moved in with `new_obj`.
    Echo { size: SizeField },
    /// A block of `bytes` bytes with a task header written at its start (or,
    /// when the block is smaller than a header, the magic alone).
    RawTask { bytes: usize, size: SizeField },
    /// A plain block filled with `fill`.
    Plain { bytes: usize, fill: u8 },
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub block: BlockSpec,
    /// Freed right after every block was allocated.
    pub freed: bool,
    /// In the runtime-owned list.
    pub owned: bool,
}

#[derive(Clone, Copy, Debug)]
pub enum Tag {
    /// 0: untagged.
    None,
    /// The tag of the task's generation.
    Good,
    /// Any tag other than the good one and 0.
    Bad(u8),
    /// Any value.
    Any(u8),
}

#[derive(Clone, Copy, Debug)]
pub enum Seg {
    Main,
    Other(u16),
}

#[derive(Clone, Copy, Debug)]
pub enum WordSpec {
    Raw(u64),
    /// Block `block` (modulo their number) moved by `delta` bytes.
    Near {
        block: usize,
        delta: i64,
        tag: Tag,
        seg: Seg,
    },
}

/// A block of the case, as allocated.
pub struct Block {
    pub ptr: ShmPtr,
    pub addr: *mut u8,
    pub usable: u64,
    pub live: bool,
    pub owned: bool,
    /// The header's magic, generation and size (when the block is a task).
    pub task: Option<(u16, u16, u32)>,
}

/// The verdict of `validate_task`, reduced to what the model predicts.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok { addr: usize, generation: u32 },
    Fail { addr: usize, generation: u32 },
    Refuse,
}

pub fn verdict(r: Result<(*mut TaskHeader, u32), Invalid>) -> Verdict {
    match r {
        Ok((task, generation)) => Verdict::Ok {
            addr: task as usize,
            generation,
        },
        Err(Invalid::Fail {
            task, generation, ..
        }) => Verdict::Fail {
            addr: task as usize,
            generation,
        },
        Err(Invalid::Refuse(_)) => Verdict::Refuse,
    }
}

/// What `validate_task` must say of `word`, given the blocks and the
/// runtime-owned list. Every live block of the segment is in `blocks`.
pub fn expected(seg: SegmentId, blocks: &[Block], owned: &[ShmPtr], word: ShmPtr) -> Verdict {
    let bits = word.to_bits();
    let ptr = ShmPtr::from_bits(bits & !(0xff << 56));
    let tag = (bits >> 56) as u8;
    if ptr.segment() != seg || owned.contains(&ptr) {
        return Verdict::Refuse;
    }
    let Some(b) = blocks.iter().find(|b| b.live && b.ptr == ptr) else {
        return Verdict::Refuse;
    };
    if b.usable < HEADER {
        return Verdict::Refuse;
    }
    let Some((magic, generation, size)) = b.task else {
        return Verdict::Refuse;
    };
    if magic != TASK_MAGIC || (tag != 0 && tag != generation_tag(u32::from(generation))) {
        return Verdict::Refuse;
    }
    let generation = u32::from(generation);
    let addr = b.addr as usize;
    if u64::from(size) < HEADER || u64::from(size) > b.usable {
        Verdict::Fail { addr, generation }
    } else {
        Verdict::Ok { addr, generation }
    }
}

/// The little-endian `u16` at `offset` of `bytes`.
pub fn get_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes(bytes[offset..offset + 2].try_into().unwrap())
}

/// The little-endian `u32` at `offset` of `bytes`.
pub fn get_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

pub fn size_value(field: SizeField, exact: u64, usable: u64) -> u32 {
    match field {
        SizeField::Exact => exact as u32,
        SizeField::Usable => usable as u32,
        SizeField::Beyond(d) => (usable + 1 + u64::from(d)).min(u64::from(u32::MAX)) as u32,
        SizeField::Value(v) => v,
    }
}

/// One case's blocks in the fixture's segment; frees what is still live when
/// dropped (also when the case fails), so the next case starts empty.
pub struct Case<'f> {
    pub fx: &'f ShmFixture,
    pub blocks: Vec<Block>,
}

impl Drop for Case<'_> {
    fn drop(&mut self) {
        for b in self.blocks.iter_mut().filter(|b| b.live) {
            self.fx
                .alloc
                .free(b.ptr)
                .expect("freeing a block of the case");
            b.live = false;
        }
    }
}

impl<'f> Case<'f> {
    pub fn build(fx: &'f ShmFixture, specs: &[Spec]) -> Case<'f> {
        assert_eq!(fx.live_blocks(), 0, "the previous case left blocks");
        let mut case = Case {
            fx,
            blocks: Vec::new(),
        };
        let alloc = &fx.alloc;
        for spec in specs {
            let (full, task) = match spec.block {
                BlockSpec::Echo { size } => {
                    let p = alloc
                        .new_obj(EchoTask::new(PoolId::ADMIN, 7))
                        .expect("allocating a task")
                        .cast::<u8>();
                    let usable = alloc.live_size(p.shm()).unwrap();
                    let size = size_value(size, size_of::<EchoTask>() as u64, usable);
                    // SAFETY: a live EchoTask we allocated; its header is ours.
                    let h = unsafe { &mut *p.as_ptr().cast::<TaskHeader>() };
                    h.size = size;
                    (p, Some((h.magic, h.generation, size)))
                }
                BlockSpec::RawTask { bytes, size } => {
                    let p = alloc.allocate(bytes).expect("allocating a block");
                    let usable = alloc.live_size(p.shm()).unwrap();
                    // SAFETY: `usable` bytes of the fresh block are ours.
                    unsafe { p.as_ptr().write_bytes(0, usable as usize) };
                    let task = if usable >= HEADER {
                        let size = size_value(size, bytes as u64, usable);
                        let header =
                            TaskHeader::new(PoolId::ADMIN, 14, size as usize, DomainQuery::local());
                        let generation = header.generation;
                        // SAFETY: the block holds a header's size, 16-aligned.
                        unsafe { p.as_ptr().cast::<TaskHeader>().write(header) };
                        Some((TASK_MAGIC, generation, size))
                    } else {
                        if usable >= offset_of!(TaskHeader, magic) as u64 + 2 {
                            // SAFETY: in the block (checked just above); unaligned write.
                            unsafe {
                                p.as_ptr()
                                    .add(offset_of!(TaskHeader, magic))
                                    .cast::<u16>()
                                    .write_unaligned(TASK_MAGIC)
                            };
                        }
                        None
                    };
                    (p, task)
                }
                BlockSpec::Plain { bytes, fill } => {
                    let p = alloc.allocate(bytes).expect("allocating a block");
                    let usable = alloc.live_size(p.shm()).unwrap();
                    // SAFETY: `usable` bytes of the fresh block are ours.
                    unsafe { p.as_ptr().write_bytes(fill, usable as usize) };
                    (p, None)
                }
            };
            case.blocks.push(Block {
                ptr: full.shm(),
                addr: full.as_ptr(),
                usable: alloc.live_size(full.shm()).unwrap(),
                live: true,
                owned: spec.owned,
                task,
            });
        }
        for (b, spec) in case.blocks.iter_mut().zip(specs) {
            if spec.freed {
                alloc.free(b.ptr).expect("freeing a block");
                b.live = false;
            }
        }
        case
    }

    /// The bytes of every live block.
    pub fn snapshot(&self) -> Vec<Vec<u8>> {
        self.blocks
            .iter()
            .filter(|b| b.live)
            // SAFETY: a live block of ours, `usable` bytes long.
            .map(|b| unsafe { std::slice::from_raw_parts(b.addr, b.usable as usize) }.to_vec())
            .collect()
    }

    pub fn word(&self, w: WordSpec) -> ShmPtr {
        let (block, delta, tag, seg) = match w {
            WordSpec::Raw(bits) => return ShmPtr::from_bits(bits),
            WordSpec::Near {
                block,
                delta,
                tag,
                seg,
            } => (block, delta, tag, seg),
        };
        let b = &self.blocks[block % self.blocks.len()];
        let offset = b.ptr.offset().wrapping_add_signed(delta) & ShmPtr::MAX_OFFSET;
        let segment = match seg {
            Seg::Main => b.ptr.segment(),
            Seg::Other(id) => SegmentId(id),
        };
        let ptr = ShmPtr::new(segment, offset);
        let good = b.task.map_or(1, |(_, g, _)| generation_tag(u32::from(g)));
        let tag = match tag {
            Tag::None => 0,
            Tag::Good => return task_word(ptr, b.task.map_or(0, |(_, g, _)| u32::from(g))),
            Tag::Bad(t) => {
                if t == 0 || t == good {
                    good % 255 + 1
                } else {
                    t
                }
            }
            Tag::Any(t) => t,
        };
        ShmPtr::from_bits(ptr.to_bits() | (u64::from(tag) << 56))
    }

    pub fn owned(&self, extra: &[u64]) -> Vec<ShmPtr> {
        self.blocks
            .iter()
            .filter(|b| b.owned)
            .map(|b| b.ptr)
            .chain(extra.iter().map(|&bits| ShmPtr::from_bits(bits)))
            .collect()
    }
}

/// Runs every word against the case and compares with the model.
pub fn check_words(
    case: &Case<'_>,
    owned: &[ShmPtr],
    words: &[ShmPtr],
) -> Result<(), TestCaseError> {
    let seg = case.fx.alloc.segment_id();
    let before = case.snapshot();
    for &word in words {
        let got = verdict(validate_task(&case.fx.alloc, owned, word));
        let want = expected(seg, &case.blocks, owned, word);
        prop_assert_eq!(got, want, "word {:#018x}", word.to_bits());
    }
    prop_assert!(before == case.snapshot(), "validate_task wrote to a block");
    Ok(())
}
