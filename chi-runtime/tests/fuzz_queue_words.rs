//! Fuzz targets of the queue pop path: `worker::validate_task`, which decides
//! whether a 64-bit word popped from a lane names a live task, fed arbitrary
//! words and task blocks of arbitrary bytes (see docs/verification.md,
//! "Fuzzing").
//!
//! Each case builds blocks in a real segment (tasks, tasks freed again, tasks
//! whose header claims a wrong size, plain blocks, runtime-owned blocks) and
//! checks every verdict against a model of what the segment holds:
//!
//! * `Ok` exactly for the start of a live block that holds a task header
//!   (`TASK_MAGIC`) whose size fits the block, when the word's tag is 0 or the
//!   tag of the task's generation, and that is not runtime-owned;
//! * `Fail` for the same with a size below a header or beyond the block;
//! * `Refuse` for everything else: other segments, inside or around blocks,
//!   freed blocks, blocks without the magic, blocks too small for a header,
//!   stale tags, runtime-owned blocks;
//! * nothing panics, and no byte of any block changes (the function only reads).
//!
//! Seeds: `tests/fuzz-corpus/queue_words/*.txt` (words against a fixed set of
//! blocks) and `tests/fuzz-corpus/task_header/*.txt` (header bytes).

mod fuzzing;
mod queue_words_model;

use std::mem::offset_of;
use std::sync::{Mutex, MutexGuard, OnceLock};

use chi_runtime::worker::validate_task;
use chi_sdk::admin::EchoTask;
use chi_sdk::shm::ShmPtr;
use chi_sdk::shm::alloc::MAX_SMALL_SIZE;
use chi_sdk::task::{TASK_MAGIC, TaskHeader, generation_tag};
use fuzzing::ShmFixture;
use proptest::prelude::*;
use queue_words_model::*;

// ---------------------------------------------------------------------------
// Strategies.

fn size_field() -> impl Strategy<Value = SizeField> {
    prop_oneof![
        4 => Just(SizeField::Exact),
        1 => Just(SizeField::Usable),
        2 => (0u32..64).prop_map(SizeField::Beyond),
        1 => any::<u32>().prop_map(SizeField::Beyond),
        2 => prop_oneof![0u32..=HEADER as u32 + 8, any::<u32>()].prop_map(SizeField::Value),
    ]
}

fn block_bytes() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 1usize..=512,
        2 => 512usize..=MAX_SMALL_SIZE,
        1 => MAX_SMALL_SIZE + 1..=200_000usize,
    ]
}

fn block_spec() -> impl Strategy<Value = BlockSpec> {
    prop_oneof![
        3 => size_field().prop_map(|size| BlockSpec::Echo { size }),
        3 => (block_bytes(), size_field()).prop_map(|(bytes, size)| BlockSpec::RawTask { bytes, size }),
        2 => (block_bytes(), any::<u8>()).prop_map(|(bytes, fill)| BlockSpec::Plain { bytes, fill }),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        block_spec(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(block, freed, owned)| Spec {
            block,
            freed,
            owned,
        })
}

fn tag() -> impl Strategy<Value = Tag> {
    prop_oneof![
        3 => Just(Tag::None),
        4 => Just(Tag::Good),
        2 => any::<u8>().prop_map(Tag::Bad),
        1 => any::<u8>().prop_map(Tag::Any),
    ]
}

fn word_spec() -> impl Strategy<Value = WordSpec> {
    let delta = prop_oneof![
        6 => Just(0i64),
        3 => -64i64..=64,
        1 => (-4i64..=4).prop_map(|d| d * 65536),
        1 => any::<i64>(),
    ];
    let seg = prop_oneof![
        9 => Just(Seg::Main),
        1 => any::<u16>().prop_map(Seg::Other),
    ];
    prop_oneof![
        1 => any::<u64>().prop_map(WordSpec::Raw),
        6 => (any::<usize>(), delta, tag(), seg).prop_map(|(block, delta, tag, seg)| {
            WordSpec::Near { block, delta, tag, seg }
        }),
    ]
}

/// The segment of one target, shared by its property test and its seed test
/// (one case at a time: a case expects the segment to hold its blocks alone).
fn fixture(
    cell: &'static OnceLock<Mutex<ShmFixture>>,
    target: &str,
) -> MutexGuard<'static, ShmFixture> {
    cell.get_or_init(|| Mutex::new(ShmFixture::new(target, SEGMENT_SIZE)))
        .lock()
        // A failed case frees its blocks while unwinding: the segment is fine.
        .unwrap_or_else(|e| e.into_inner())
}

static WORDS: OnceLock<Mutex<ShmFixture>> = OnceLock::new();
static HEADERS: OnceLock<Mutex<ShmFixture>> = OnceLock::new();

// ---------------------------------------------------------------------------
// Target 1: arbitrary words against real blocks.

proptest! {
    #![proptest_config(fuzzing::config("queue_words", 700))]

    #[test]
    fn fuzz_queue_words(
        specs in prop::collection::vec(spec(), 1..10),
        words in prop::collection::vec(word_spec(), 1..48),
        extra_owned in prop::collection::vec(any::<u64>(), 0..3),
    ) {
        let fx = fixture(&WORDS, "queue_words");
        let case = Case::build(&fx, &specs);
        let owned = case.owned(&extra_owned);
        let words: Vec<ShmPtr> = words.iter().map(|&w| case.word(w)).collect();
        check_words(&case, &owned, &words)?;
    }
}

// ---------------------------------------------------------------------------
// Target 2: task blocks of arbitrary bytes.

#[derive(Clone, Copy, Debug)]
enum Magic {
    /// `TASK_MAGIC` written over the bytes.
    Set,
    /// The bytes as they are.
    Keep,
}

#[derive(Clone, Copy, Debug)]
enum HeaderSize {
    /// The bytes as they are.
    Keep,
    /// The block size as the header size (a valid one).
    Block,
    /// This value.
    Value(u32),
}

fn block_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => Just(size_of::<EchoTask>()),
        2 => Just(size_of::<chi_sdk::admin::CreatePoolTask>()),
        2 => Just(size_of::<chimaera_mod_name_runtime::CustomTask>()),
        2 => Just(size_of::<chimaera_bdev_runtime::GetStatsTask>()),
        2 => Just(HEADER as usize),
        3 => 1usize..=1024,
    ]
}

fn header_case() -> impl Strategy<Value = (Vec<u8>, u8, Magic, HeaderSize, Tag)> {
    let magic = prop_oneof![4 => Just(Magic::Set), 1 => Just(Magic::Keep)];
    let size = prop_oneof![
        2 => Just(HeaderSize::Keep),
        2 => Just(HeaderSize::Block),
        2 => (0u32..=2048).prop_map(HeaderSize::Value),
    ];
    (
        block_len().prop_flat_map(|n| prop::collection::vec(any::<u8>(), n)),
        any::<u8>(),
        magic,
        size,
        tag(),
    )
}

/// Writes `bytes` (then `slack` up to the usable size) into a fresh block,
/// patches the magic and size as asked, and checks `validate_task` on the
/// block's start with `tag`.
fn check_header(
    bytes: &[u8],
    slack: u8,
    magic: Magic,
    size: HeaderSize,
    tag: Tag,
) -> Result<(), TestCaseError> {
    let guard = fixture(&HEADERS, "task_header");
    let fx = &*guard;
    let p = fx
        .alloc
        .allocate(bytes.len().max(1))
        .expect("allocating a block");
    struct Free<'a>(&'a ShmFixture, ShmPtr);
    impl Drop for Free<'_> {
        fn drop(&mut self) {
            self.0.alloc.free(self.1).expect("freeing the block");
        }
    }
    let _free = Free(fx, p.shm());
    let usable = fx.alloc.live_size(p.shm()).unwrap();
    let mut content = bytes.to_vec();
    content.resize(usable as usize, slack);
    if usable >= HEADER {
        if let Magic::Set = magic {
            content[offset_of!(TaskHeader, magic)..][..2]
                .copy_from_slice(&TASK_MAGIC.to_le_bytes());
        }
        let size = match size {
            HeaderSize::Keep => None,
            HeaderSize::Block => Some(bytes.len() as u32),
            HeaderSize::Value(v) => Some(v),
        };
        if let Some(v) = size {
            content[offset_of!(TaskHeader, size)..][..4].copy_from_slice(&v.to_le_bytes());
        }
    }
    // SAFETY: `usable` bytes of the fresh block are ours.
    unsafe { std::ptr::copy_nonoverlapping(content.as_ptr(), p.as_ptr(), content.len()) };

    let task = (usable >= HEADER).then(|| {
        (
            get_u16(&content, offset_of!(TaskHeader, magic)),
            get_u16(&content, offset_of!(TaskHeader, generation)),
            get_u32(&content, offset_of!(TaskHeader, size)),
        )
    });
    let case_blocks = [Block {
        ptr: p.shm(),
        addr: p.as_ptr(),
        usable,
        live: true,
        owned: false,
        task,
    }];
    let good = task.map_or(1, |(_, g, _)| generation_tag(u32::from(g)));
    let tag = match tag {
        Tag::None => 0,
        Tag::Good => good,
        Tag::Bad(t) if t == 0 || t == good => good % 255 + 1,
        Tag::Bad(t) | Tag::Any(t) => t,
    };
    let word = ShmPtr::from_bits(p.shm().to_bits() | (u64::from(tag) << 56));
    let got = verdict(validate_task(&fx.alloc, &[], word));
    let want = expected(fx.alloc.segment_id(), &case_blocks, &[], word);
    prop_assert_eq!(got, want, "word {:#018x}", word.to_bits());
    // SAFETY: the block is still live and ours.
    let after = unsafe { std::slice::from_raw_parts(p.as_ptr(), usable as usize) };
    prop_assert!(
        after == content.as_slice(),
        "validate_task wrote to the block"
    );
    Ok(())
}

proptest! {
    #![proptest_config(fuzzing::config("task_header", 4000))]

    #[test]
    fn fuzz_task_header_bytes((bytes, slack, magic, size, tag) in header_case()) {
        check_header(&bytes, slack, magic, size, tag)?;
    }
}

// ---------------------------------------------------------------------------
// The seed corpus.

/// The fixed blocks the `queue_words` seeds name: (name, spec).
fn seed_blocks() -> Vec<(&'static str, Spec)> {
    let spec = |block, freed, owned| Spec {
        block,
        freed,
        owned,
    };
    vec![
        (
            "task",
            spec(
                BlockSpec::Echo {
                    size: SizeField::Exact,
                },
                false,
                false,
            ),
        ),
        (
            "freed_task",
            spec(
                BlockSpec::Echo {
                    size: SizeField::Exact,
                },
                true,
                false,
            ),
        ),
        (
            "owned_task",
            spec(
                BlockSpec::Echo {
                    size: SizeField::Exact,
                },
                false,
                true,
            ),
        ),
        (
            "oversized_task",
            spec(
                BlockSpec::Echo {
                    size: SizeField::Beyond(0),
                },
                false,
                false,
            ),
        ),
        (
            "huge_size_task",
            spec(
                BlockSpec::Echo {
                    size: SizeField::Value(u32::MAX),
                },
                false,
                false,
            ),
        ),
        (
            "undersized_task",
            spec(
                BlockSpec::Echo {
                    size: SizeField::Value(HEADER as u32 - 1),
                },
                false,
                false,
            ),
        ),
        (
            "usable_size_task",
            spec(
                BlockSpec::RawTask {
                    bytes: 300,
                    size: SizeField::Usable,
                },
                false,
                false,
            ),
        ),
        (
            "small_block_magic",
            spec(
                BlockSpec::RawTask {
                    bytes: 40,
                    size: SizeField::Exact,
                },
                false,
                false,
            ),
        ),
        (
            "large_task",
            spec(
                BlockSpec::RawTask {
                    bytes: 100_000,
                    size: SizeField::Exact,
                },
                false,
                false,
            ),
        ),
        (
            "plain",
            spec(
                BlockSpec::Plain {
                    bytes: 256,
                    fill: 0,
                },
                false,
                false,
            ),
        ),
        (
            "freed_plain",
            spec(
                BlockSpec::Plain {
                    bytes: 256,
                    fill: 0xff,
                },
                true,
                false,
            ),
        ),
    ]
}

/// Parses one line of a `queue_words` seed:
///
/// * `raw <u64>`: the word as is (decimal or `0x` hex);
/// * `block <name> <delta> <tag> [segment <id>]`: block `<name>` of
///   [`seed_blocks`] moved by `<delta>` bytes, with tag `none`, `good`, `bad`
///   or a number, in another segment if given.
fn seed_word(line: &str, names: &[&str]) -> WordSpec {
    let num = |t: &str| -> u64 {
        t.strip_prefix("0x")
            .map(|h| u64::from_str_radix(&h.replace('_', ""), 16))
            .unwrap_or_else(|| t.parse())
            .unwrap_or_else(|_| panic!("`{t}` is not a number in `{line}`"))
    };
    let t: Vec<&str> = line.split_whitespace().collect();
    match t.as_slice() {
        ["raw", w] => WordSpec::Raw(num(w)),
        ["block", name, delta, tag, rest @ ..] => {
            let block = names
                .iter()
                .position(|n| n == name)
                .unwrap_or_else(|| panic!("no block `{name}` in `{line}`"));
            let delta: i64 = delta
                .parse()
                .unwrap_or_else(|_| panic!("bad delta in `{line}`"));
            let tag = match *tag {
                "none" => Tag::None,
                "good" => Tag::Good,
                "bad" => Tag::Bad(0),
                n => Tag::Any(num(n) as u8),
            };
            let seg = match rest {
                [] => Seg::Main,
                ["segment", id] => Seg::Other(num(id) as u16),
                _ => panic!("bad seed line `{line}`"),
            };
            WordSpec::Near {
                block,
                delta,
                tag,
                seg,
            }
        }
        _ => panic!("bad seed line `{line}`"),
    }
}

#[test]
fn fuzz_queue_words_seeds() {
    let fx = fixture(&WORDS, "queue_words");
    let (names, specs): (Vec<&str>, Vec<Spec>) = seed_blocks().into_iter().unzip();
    for (file, bytes) in fuzzing::seeds("queue_words") {
        let text = String::from_utf8(bytes).expect("seed files are text");
        let case = Case::build(&fx, &specs);
        let owned = case.owned(&[]);
        let words: Vec<ShmPtr> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(|l| case.word(seed_word(l, &names)))
            .collect();
        assert!(!words.is_empty(), "{file}: no words");
        if let Err(e) = check_words(&case, &owned, &words) {
            panic!("seed {file}: {e}");
        }
    }
}

/// A `task_header` seed: `block <len>` (default: an EchoTask's size), `slack
/// <byte>`, `magic set|keep`, `size keep|block|<n>`, `tag none|good|bad|<n>`,
/// and the block's bytes in the hex notation of [`fuzzing::parse_hex`] after a
/// `bytes` line.
#[test]
fn fuzz_task_header_seeds() {
    for (file, bytes) in fuzzing::seeds("task_header") {
        let text = String::from_utf8(bytes).expect("seed files are text");
        let (head, hex) = text.split_once("\nbytes\n").unwrap_or((&text, ""));
        let mut len = size_of::<EchoTask>();
        let (mut slack, mut magic, mut size, mut tag) =
            (0, Magic::Set, HeaderSize::Keep, Tag::None);
        for line in head
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
        {
            let t: Vec<&str> = line.split_whitespace().collect();
            match t.as_slice() {
                [] => {}
                ["block", n] => len = n.parse().expect("block length"),
                ["slack", b] => slack = u8::from_str_radix(b, 16).expect("slack byte"),
                ["magic", "set"] => magic = Magic::Set,
                ["magic", "keep"] => magic = Magic::Keep,
                ["size", "keep"] => size = HeaderSize::Keep,
                ["size", "block"] => size = HeaderSize::Block,
                ["size", n] => size = HeaderSize::Value(n.parse().expect("size")),
                ["tag", "none"] => tag = Tag::None,
                ["tag", "good"] => tag = Tag::Good,
                ["tag", "bad"] => tag = Tag::Bad(0),
                ["tag", n] => tag = Tag::Any(n.parse().expect("tag")),
                _ => panic!("{file}: bad line `{line}`"),
            }
        }
        let mut block = fuzzing::parse_hex(hex);
        block.resize(len, 0);
        if let Err(e) = check_header(&block, slack, magic, size, tag) {
            panic!("seed {file}: {e}");
        }
    }
}
