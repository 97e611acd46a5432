//! Unit tests of the allocator over real segments: page runs merging, empty pages
//! going back, corrupt free lists, the bounded page lock, and the reaper's checks.
//! Multi-process behaviour is tested in `tests/shm_alloc_*.rs`.

use super::layout::MAX_THREAD_SLOTS;
use super::stack::Links;
use super::*;
use crate::sync::native::AtomicU16;

// Ids from 200 up: other unit tests of the crate (if any) use small ones.
static NEXT_ID: AtomicU16 = AtomicU16::new(200);

/// A fresh segment of `size` bytes (unlinked when dropped) and an allocator.
fn segment(test: &str, size: u64) -> (Segment, Allocator) {
    let id = SegmentId(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let name = format!("chi-u-{}-{}-{test}", std::process::id(), id.0);
    let seg = Segment::create(&name, id, size).expect("create segment");
    let alloc = Allocator::attach(&seg).expect("attach");
    (seg, alloc)
}

const MIB: usize = 1 << 20;

/// The largest request an empty heap can serve: every page, less the header.
fn largest(alloc: &Allocator) -> usize {
    alloc.stats().heap_bytes as usize - BLOCK_HEADER as usize
}

fn lock_word(alloc: &Allocator) -> &AtomicU32 {
    alloc.shared.hdr().pages.0.lock.holder_word()
}

#[test]
fn freed_runs_merge_with_the_top_so_15_of_16_mib_fit() {
    let (_seg, alloc) = segment("merge", 16 << 20);
    let empty = alloc.stats();
    let runs: Vec<_> = [MIB, 4 * MIB, 8 * MIB]
        .iter()
        .map(|&n| alloc.allocate(n).unwrap())
        .collect();
    for p in runs {
        alloc.free_full(p).unwrap();
    }
    assert_eq!(alloc.stats(), empty, "nothing in use");
    let big = alloc
        .allocate(15 * MIB)
        .expect("15 MiB in an empty 16 MiB segment");
    alloc.free_full(big).unwrap();
    let all = alloc.allocate(largest(&alloc)).expect("the whole heap");
    alloc.free_full(all).unwrap();
    assert_eq!(alloc.stats(), empty);
}

#[test]
fn empty_size_class_pages_go_back_to_the_page_pool() {
    let (_seg, alloc) = segment("trim", 4 << 20);
    let empty = alloc.stats();
    let mut blocks = Vec::new();
    for i in 0..1500 {
        blocks.push(alloc.allocate([24, 200, 1000, 5000][i % 4]).unwrap());
    }
    let carved = alloc.stats().small_pages;
    assert!(carved > 4, "{carved} pages carved");
    for p in blocks {
        alloc.free_full(p).unwrap();
    }
    // Some of the blocks are still in this thread's cache: the out-of-memory retry
    // returns them before giving up.
    let all = alloc
        .allocate(largest(&alloc))
        .expect("the whole heap once every block is free");
    assert_eq!(alloc.stats().small_pages, 0);
    alloc.free_full(all).unwrap();
    assert_eq!(alloc.stats(), empty);
    // Size classes work again afterwards.
    let p = alloc.allocate(100).unwrap();
    alloc.free_full(p).unwrap();
}

#[test]
fn a_page_with_a_live_block_stays_with_its_class() {
    let (_seg, alloc) = segment("trim_live", 2 << 20);
    let a = alloc.allocate(1000).unwrap();
    let b = alloc.allocate(1000).unwrap();
    alloc.free_full(b).unwrap();
    alloc.flush_thread_cache();
    let err = alloc.allocate(largest(&alloc)).unwrap_err();
    assert!(matches!(err, AllocError::OutOfMemory { .. }), "{err}");
    assert_eq!(alloc.stats().small_pages, 1);
    // SAFETY: our live block of 1000 bytes.
    unsafe { a.as_ptr().write_bytes(7, 1000) };
    alloc.free_full(a).unwrap();
    alloc.flush_thread_cache();
    let all = alloc.allocate(largest(&alloc)).unwrap();
    alloc.free_full(all).unwrap();
}

/// Puts `n` blocks of `size` on the shared free list of their class and returns
/// the class and the list's head block.
fn shared_list(alloc: &Allocator, size: usize, n: usize) -> (usize, u64) {
    let blocks: Vec<_> = (0..n).map(|_| alloc.allocate(size).unwrap()).collect();
    for p in blocks {
        alloc.free_full(p).unwrap();
    }
    alloc.flush_thread_cache();
    let class = layout::class_of(size).unwrap();
    let head = alloc.shared.hdr().classes[class]
        .0
        .take_all()
        .expect("detach");
    // Put it back as it was.
    let links = alloc.shared.class_links(class);
    let mut last = head;
    loop {
        let next = links.next(last).load(Ordering::Relaxed);
        if next == 0 {
            break;
        }
        last = next;
    }
    alloc.shared.hdr().classes[class]
        .0
        .push_chain(&links, head, last)
        .unwrap();
    (class, head)
}

#[test]
fn a_scribbled_free_list_is_reported_and_abandoned() {
    let (seg, alloc) = segment("corrupt", 4 << 20);
    for garbage in [0xdead_bee0_u64, 3, seg.size() + 4096] {
        let (class, head) = shared_list(&alloc, 300, 100);
        // A client scribbles on the link of the list's second block.
        let links = alloc.shared.class_links(class);
        let second = links.next(head).load(Ordering::Relaxed);
        links.next(second).store(garbage, Ordering::Relaxed);
        let mut got = Vec::new();
        let err = loop {
            match alloc.allocate(300) {
                Ok(p) => got.push(p),
                Err(e) => break e,
            }
            assert!(got.len() < 100, "the corrupt link was followed");
        };
        assert_eq!(
            err,
            AllocError::CorruptFreeList {
                segment: seg.id(),
                class: class as u32,
                offset: garbage,
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("free list of class {class}")) && msg.contains("restart"),
            "{msg}"
        );
        // The list was reset: the class carves a fresh page and works on.
        let p = alloc.allocate(300).unwrap();
        // SAFETY: a fresh block of 300 bytes.
        unsafe { p.as_ptr().write_bytes(1, 300) };
        got.push(p);
        for p in got {
            alloc.free_full(p).unwrap();
        }
        alloc.flush_thread_cache();
    }
    assert_eq!(alloc.stats().abandoned_lists, 3);
    // A garbage head word (not a block of the class) is caught too.
    let (class, _) = shared_list(&alloc, 300, 10);
    let head = alloc.shared.hdr().classes[class].0.head_word();
    // Inside the heap's first block, not on a block boundary.
    head.store(
        (alloc.shared.heap_offset + 16) >> 4 | 5 << 40,
        Ordering::Relaxed,
    );
    let err = alloc.allocate(300).unwrap_err();
    assert!(matches!(err, AllocError::CorruptFreeList { .. }), "{err}");
    alloc.allocate(300).unwrap();
}

#[test]
fn a_lock_word_that_is_not_a_pid_does_not_block_allocation() {
    let (_seg, alloc) = segment("lock_garbage", 4 << 20);
    lock_word(&alloc).store(0xfff0_0001, Ordering::Relaxed);
    let p = alloc.allocate(200_000).expect("taken over");
    alloc.free_full(p).unwrap();
    assert_eq!(lock_word(&alloc).load(Ordering::Relaxed), 0);
}

#[test]
fn a_live_attached_holder_times_out_with_an_error() {
    let (seg, alloc) = segment("lock_live", 4 << 20);
    let large = alloc.allocate(200_000).unwrap();
    let me = crate::proc::current_pid();
    // Our own pid, attached to the segment, that never releases the lock (as a
    // hung client would).
    lock_word(&alloc).store(me, Ordering::Relaxed);
    let err = alloc.allocate(300_000).unwrap_err();
    match err {
        AllocError::PageLockTimeout {
            segment,
            holder,
            waited_ms,
        } => {
            assert_eq!((segment, holder), (seg.id(), me));
            assert!(waited_ms >= 2000, "{waited_ms}");
        }
        other => panic!("expected PageLockTimeout, got {other:?}"),
    }
    assert!(err.to_string().contains(&format!("process {me}")), "{err}");
    assert_eq!(
        alloc.free(large.shm()),
        Err(FreeError::PageLockTimeout {
            ptr: large.shm(),
            holder: me
        })
    );
    // Not freed: still ours.
    assert_eq!(alloc.owner_of(large.shm()), Ok(alloc.owner()));
    lock_word(&alloc).store(0, Ordering::Relaxed);
    alloc.free_full(large).unwrap();
    alloc.allocate(300_000).unwrap();
}

#[test]
fn a_live_holder_not_attached_is_taken_over_after_the_timeout() {
    let (_seg, alloc) = segment("lock_stranger", 4 << 20);
    let parent = std::os::unix::process::parent_id();
    assert!(pid_alive(parent));
    lock_word(&alloc).store(parent, Ordering::Relaxed);
    let p = alloc.allocate(200_000).expect("taken over");
    alloc.free_full(p).unwrap();
}

#[test]
fn a_large_free_cut_short_is_finished_by_the_next_locker() {
    let (_seg, alloc) = segment("lock_dead_free", 4 << 20);
    let empty = alloc.stats();
    let p = alloc.allocate(300_000).unwrap();
    // A holder killed after marking the run FREE, before releasing its pages.
    let block = p.shm().offset() - BLOCK_HEADER;
    alloc
        .shared
        .block(block)
        .word
        .store(word(state::FREE, alloc.shared.owner), Ordering::Relaxed);
    let dead = 1 << 22; // above every pid_max: no such process
    assert!(!pid_alive(dead));
    lock_word(&alloc).store(dead, Ordering::Relaxed);
    let q = alloc.allocate(100_000).unwrap();
    alloc.free_full(q).unwrap();
    let st = alloc.stats();
    assert_eq!(st.large_pages, 0);
    assert_eq!(st.free_pages, empty.free_pages);
}

#[test]
fn reap_refuses_what_it_must_not_touch() {
    let (seg, alloc) = segment("reap_checks", 2 << 20);
    let other = Allocator::attach(&seg).unwrap();
    let keep_none = |_: ShmPtr| false;
    let id = seg.id();
    assert_eq!(
        alloc.reap_owner(OwnerId(MAX_OWNERS as u32), &keep_none),
        Err(ReapError::NoSuchOwner {
            segment: id,
            owner: OwnerId(MAX_OWNERS as u32)
        })
    );
    assert_eq!(
        alloc.reap_owner(OwnerId(MAX_OWNERS as u32 - 1), &keep_none),
        Err(ReapError::NotAttached {
            segment: id,
            owner: OwnerId(MAX_OWNERS as u32 - 1)
        })
    );
    // Our own process's slots, forced or not.
    for o in [alloc.owner(), other.owner()] {
        assert_eq!(
            alloc.force_reap_owner(o, &keep_none),
            Err(ReapError::OwnSlot {
                segment: id,
                owner: o
            })
        );
    }
    // A live process's slot.
    let slot = alloc.shared.owner_slot(other.owner().0).unwrap();
    let parent = std::os::unix::process::parent_id();
    slot.pid.store(parent, Ordering::Relaxed);
    slot.started.store(
        crate::proc::process_start(parent).unwrap_or(0),
        Ordering::Relaxed,
    );
    let err = alloc.reap_owner(other.owner(), &keep_none).unwrap_err();
    assert_eq!(
        err,
        ReapError::OwnerAlive {
            segment: id,
            owner: other.owner(),
            pid: parent
        }
    );
    assert!(err.to_string().contains("force_reap_owner"), "{err}");
    assert!(alloc.dead_owners().is_empty());
    slot.pid
        .store(crate::proc::current_pid(), Ordering::Relaxed);
}

#[test]
fn reap_frees_a_dead_owners_blocks_and_keeps_what_it_is_told() {
    let (seg, alloc) = segment("reap_keep", 4 << 20);
    let empty = alloc.stats();
    let other = Allocator::attach(&seg).unwrap();
    let owner = other.owner();
    let blocks: Vec<ShmPtr> = [24, 700, 5000, 100_000, 40, 300_000]
        .iter()
        .map(|&n| other.allocate(n).unwrap().shm())
        .collect();
    let kept = [blocks[1], blocks[3]];
    other.flush_thread_cache();
    // Its process "dies": the slot names a pid that does not exist.
    let dead = 1 << 22;
    let slot = alloc.shared.owner_slot(owner.0).unwrap();
    slot.pid.store(dead, Ordering::Relaxed);
    assert_eq!(alloc.dead_owners(), vec![(owner, dead)]);

    let keep = |p: ShmPtr| kept.contains(&p);
    let r = alloc.reap_owner(owner, &keep).unwrap();
    assert_eq!((r.owner, r.pid), (owner, dead));
    assert_eq!((r.freed_blocks, r.kept_blocks), (4, 2));
    assert!(!r.slot_released);
    let kept_bytes: u64 = kept.iter().map(|&p| alloc.usable_size(p).unwrap()).sum();
    assert_eq!(r.kept_bytes, kept_bytes);
    assert_eq!(alloc.owner_usage(owner), Some((kept_bytes, 2)));
    for p in &blocks {
        let live = alloc.owner_of(*p).is_ok();
        assert_eq!(live, kept.contains(p), "{p}");
    }
    // The slot stays reaped: not handed out, still listed, owner_pid names the
    // dead process.
    assert_eq!(alloc.dead_owners(), vec![(owner, dead)]);
    assert_eq!(alloc.owner_pid(owner), Some(dead));
    // The runtime frees one kept block itself; the next reap keeps the other.
    alloc.free(kept[0]).unwrap();
    let r = alloc.reap_owner(owner, &keep).unwrap();
    assert_eq!((r.freed_blocks, r.kept_blocks, r.pid), (0, 1, dead));
    assert!(!r.slot_released);
    // Then it no longer keeps it: the reap frees it and the slot.
    let r = alloc.reap_owner(owner, &|_| false).unwrap();
    assert_eq!((r.freed_blocks, r.kept_blocks), (1, 0));
    assert!(r.slot_released);
    assert_eq!(alloc.owner_pid(owner), Some(0));
    assert!(alloc.dead_owners().is_empty());
    assert_eq!(
        alloc.reap_owner(owner, &|_| false),
        Err(ReapError::NotAttached {
            segment: seg.id(),
            owner
        })
    );
    // `other` is gone as far as the segment knows; dropping it must not free the
    // slot a second time.
    drop(other);
    let st = alloc.stats();
    assert_eq!((st.used_bytes, st.live_blocks), (0, 0));
    alloc.flush_thread_cache();
    let all = alloc.allocate(largest(&alloc)).unwrap();
    alloc.free_full(all).unwrap();
    assert_eq!(alloc.stats(), empty);
}

#[test]
fn reap_repairs_what_a_process_killed_mid_operation_left() {
    let (seg, alloc) = segment("reap_torn", 4 << 20);
    let empty = alloc.stats();
    let other = Allocator::attach(&seg).unwrap();
    let owner = other.owner();
    let [x, y, z] = [100, 2000, 40].map(|n| other.allocate(n).unwrap().shm());
    let large = other.allocate(200_000).unwrap().shm();
    other.flush_thread_cache();
    let slot = alloc.shared.owner_slot(owner.0).unwrap();
    // x: killed after popping it from a bin and counting it, before marking it
    // LIVE. y: killed after the CAS LIVE -> CACHED of its free, before counting it.
    // Both are CACHED by the owner and still counted.
    for p in [x, y] {
        alloc
            .shared
            .block(p.offset() - BLOCK_HEADER)
            .word
            .store(word(state::CACHED, owner.0), Ordering::Relaxed);
    }
    // The large run: set up and published, not yet counted.
    let usable = alloc.usable_size(large).unwrap();
    slot.live_bytes.fetch_sub(usable, Ordering::Relaxed);
    slot.live_blocks.fetch_sub(1, Ordering::Relaxed);
    // A thread of the owner killed half-way through a counter update, while moving
    // 4 KiB between its cache and a shared list.
    let t = &alloc.shared.hdr().threads[MAX_THREAD_SLOTS - 1].0;
    t.taken.store(owner.0 + 1, Ordering::Relaxed);
    t.live_bytes.store(12345, Ordering::Relaxed);
    t.transit.store(4096, Ordering::Relaxed);
    slot.pid.store(1 << 22, Ordering::Relaxed);

    let r = alloc.reap_owner(owner, &|_| false).unwrap();
    assert_eq!((r.freed_blocks, r.uncached_blocks), (2, 2));
    assert_eq!(r.possibly_leaked_bytes, 4096);
    assert!(r.slot_released);
    assert_eq!(t.taken.load(Ordering::Relaxed), 0);
    let st = alloc.stats();
    assert_eq!((st.used_bytes, st.live_blocks), (0, 0));
    assert_eq!(st.possibly_leaked_bytes, 4096);
    for p in [x, y, z, large] {
        assert_eq!(alloc.free(p), Err(FreeError::NotAllocated { ptr: p }));
    }
    drop(other);
    let all = alloc.allocate(largest(&alloc)).unwrap();
    alloc.free_full(all).unwrap();
    assert_eq!(
        alloc.stats(),
        AllocStats {
            possibly_leaked_bytes: 4096,
            ..empty
        }
    );
}
