//! The locks outside any runtime: threads wait by parking, and play task
//! graphs (`lock_as`, `read_as`, `write_as`) to exercise the grouping rules.
//! Orderings are forced with `waiters()` (a request is queued before the next
//! one is made), never with timing.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use chi_testkit::{Rng, Watchdog, wait_until};

use super::core::Group;
use super::*;

const LIMIT: Duration = Duration::from_secs(60);

/// A gate threads wait at until it is opened.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
}

/// Waits until `n` requests are queued on `waiters`.
fn until_queued(n: usize, waiters: impl Fn() -> usize) {
    wait_until(LIMIT, &format!("{n} waiters"), || waiters() == n);
}

#[test]
fn a_mutex_locks_and_unlocks() {
    let _wd = Watchdog::new("mutex_basic", LIMIT);
    let mut m = CoMutex::new(5u32);
    {
        let mut g = m.lock();
        *g += 1;
        assert!(m.is_locked());
        // Another thread cannot take it, nor wait-free.
        thread::scope(|s| {
            s.spawn(|| assert!(m.try_lock().is_none()));
        });
    }
    assert!(!m.is_locked());
    assert_eq!(*m.try_lock().expect("free"), 6);
    *m.get_mut() += 1;
    assert_eq!(
        format!("{m:?}"),
        "CoMutex { locked: false, waiters: 0, .. }"
    );
    assert_eq!(m.into_inner(), 7);
}

#[test]
fn threads_count_to_80000_without_losing_an_update() {
    let _wd = Watchdog::new("mutex_count", LIMIT);
    const THREADS: u64 = 8;
    const ITERS: u64 = 10_000;
    let m = CoMutex::new(0u64);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for i in 0..ITERS {
                    let mut g = m.lock();
                    let v = *g;
                    if i % 16 == 0 {
                        thread::yield_now();
                    }
                    *g = v + 1;
                }
            });
        }
    });
    assert_eq!(m.into_inner(), THREADS * ITERS);
}

#[test]
fn the_mutex_goes_to_waiters_in_arrival_order() {
    let _wd = Watchdog::new("mutex_fifo", LIMIT);
    let m = CoMutex::new(Vec::new());
    thread::scope(|s| {
        let g = m.lock();
        for id in 0..6 {
            let m = &m;
            s.spawn(move || m.lock().push(id));
            until_queued(id + 1, || m.waiters());
        }
        drop(g);
    });
    assert_eq!(m.into_inner(), [0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_released_mutex_is_handed_over_not_left_for_the_taking() {
    let _wd = Watchdog::new("mutex_handoff", LIMIT);
    let m = CoMutex::new(0);
    let gate = Gate::default();
    thread::scope(|s| {
        let g = m.lock();
        let waiter = s.spawn(|| {
            let mut g = m.lock();
            *g += 1;
            gate.wait();
        });
        until_queued(1, || m.waiters());
        drop(g);
        // The waiter owns the lock now, whether or not it has run yet: no
        // barging, not even by the thread that just released it.
        assert!(m.try_lock().is_none());
        assert!(m.is_locked());
        gate.open();
        waiter.join().expect("waiter");
    });
    assert_eq!(*m.lock(), 1);
}

#[test]
fn nobody_barges_past_a_waiter() {
    let _wd = Watchdog::new("mutex_no_barging", LIMIT);
    let m = CoMutex::new(Vec::new());
    thread::scope(|s| {
        let g = m.lock();
        s.spawn(|| m.lock().push("first waiter"));
        until_queued(1, || m.waiters());
        // A newcomer asking while the holder is about to leave still queues.
        s.spawn(|| m.lock().push("newcomer"));
        until_queued(2, || m.waiters());
        drop(g);
    });
    assert_eq!(m.into_inner(), ["first waiter", "newcomer"]);
}

#[test]
fn a_thread_re_enters_its_own_mutex_counted() {
    let _wd = Watchdog::new("mutex_reenter_thread", LIMIT);
    let m = CoMutex::new(0);
    let released = AtomicBool::new(false);
    thread::scope(|s| {
        let mut a = m.lock();
        let mut b = m.lock();
        *a += 1;
        *b += 1;
        let other = s.spawn(|| {
            let g = m.lock();
            // Relaxed: the store before the last guard's release is ordered
            // before this load by the lock's hand-off (Release in dispatch,
            // Acquire in the waiter); it pairs with nothing itself.
            assert!(
                released.load(Ordering::Relaxed),
                "taken before both guards went"
            );
            *g
        });
        until_queued(1, || m.waiters());
        drop(a);
        // One guard left: still held.
        assert!(m.is_locked());
        assert_eq!(m.waiters(), 1);
        // Relaxed: see the load.
        released.store(true, Ordering::Relaxed);
        drop(b);
        assert_eq!(other.join().expect("other"), 2);
    });
}

#[test]
fn tasks_of_one_graph_share_the_mutex_others_wait() {
    let _wd = Watchdog::new("mutex_graph", LIMIT);
    let m = CoMutex::new(Vec::new());
    // Guards of graph 7 alive (bookkeeping outside the lock).
    let inside = AtomicU32::new(0);
    let gate = Gate::default();
    let parent_wrote = Gate::default();
    thread::scope(|s| {
        // The "parent" of graph 7 holds the lock until told; it touches the
        // data only while its "subtask" does not (the aliasing rule).
        let parent = s.spawn(|| {
            let mut g = m.lock_as(Group::Graph(7));
            // Relaxed (here and below): ordered by the lock's hand-off, like
            // the data; pairs with nothing itself.
            inside.fetch_add(1, Ordering::Relaxed);
            g.push("parent");
            parent_wrote.open();
            gate.wait();
            g.push("parent again");
            inside.fetch_sub(1, Ordering::Relaxed);
        });
        parent_wrote.wait();
        // Another graph queues.
        let other = s.spawn(|| {
            let mut g = m.lock_as(Group::Graph(8));
            // Relaxed: see the parent's fetch_add.
            assert_eq!(
                inside.load(Ordering::Relaxed),
                0,
                "graph 8 entered beside graph 7"
            );
            g.push("other graph");
        });
        until_queued(1, || m.waiters());
        // A "subtask" of graph 7, on another thread, gets in at once, past
        // the waiter, and sees the parent's change.
        s.spawn(|| {
            let mut g = m.lock_as(Group::Graph(7));
            assert_eq!(*g, ["parent"]);
            g.push("subtask");
        })
        .join()
        .expect("subtask");
        assert_eq!(m.waiters(), 1);
        gate.open();
        parent.join().expect("parent");
        other.join().expect("other");
    });
    assert_eq!(
        m.into_inner(),
        ["parent", "subtask", "parent again", "other graph"]
    );
}

#[test]
fn a_graph_queued_before_it_got_the_lock_is_let_in_past_other_waiters() {
    let _wd = Watchdog::new("mutex_graph_queued", LIMIT);
    let m = CoMutex::new(Vec::new());
    // The parent and its subtask get the lock together: they take turns with
    // the data (the aliasing rule), the subtask after the parent wrote.
    let parent_wrote = Gate::default();
    let subtask_done = Gate::default();
    thread::scope(|s| {
        let g = m.lock_as(Group::Graph(1));
        // Graph 2's parent queues, then graph 3, then graph 2's subtask.
        let parent = s.spawn(|| {
            let mut g = m.lock_as(Group::Graph(2));
            g.push("parent");
            parent_wrote.open();
            // The parent "waits for its subtask", still holding the lock.
            subtask_done.wait();
        });
        until_queued(1, || m.waiters());
        s.spawn(|| m.lock_as(Group::Graph(3)).push("graph 3"));
        until_queued(2, || m.waiters());
        let sub = s.spawn(|| {
            let mut g = m.lock_as(Group::Graph(2));
            parent_wrote.wait();
            g.push("subtask");
        });
        until_queued(3, || m.waiters());
        drop(g);
        // The subtask gets in while its parent holds, though graph 3 queued
        // first (the parent waits for it: queuing it behind graph 3 would
        // deadlock).
        sub.join().expect("subtask");
        assert_eq!(m.waiters(), 1);
        subtask_done.open();
        parent.join().expect("parent");
    });
    assert_eq!(m.into_inner(), ["parent", "subtask", "graph 3"]);
}

#[test]
fn readers_share_the_lock() {
    let _wd = Watchdog::new("rw_share", LIMIT);
    let l = CoRwLock::new(3);
    let all_in = Barrier::new(4);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let g = l.read();
                // Completes only if the four readers hold it at once.
                all_in.wait();
                assert_eq!(*g, 3);
            });
        }
    });
    *l.write() += 1;
    assert_eq!(*l.read(), 4);
    assert_eq!(
        format!("{l:?}"),
        "CoRwLock { locked: false, waiters: 0, .. }"
    );
}

#[test]
fn a_waiting_writer_holds_back_later_readers() {
    let _wd = Watchdog::new("rw_writer_first", LIMIT);
    let l = CoRwLock::new(Vec::new());
    thread::scope(|s| {
        let r = l.read();
        s.spawn(|| l.write().push("writer"));
        until_queued(1, || l.waiters());
        // Only readers hold it, but a writer waits: a new reader queues.
        thread::scope(|s2| {
            s2.spawn(|| assert!(l.try_read().is_none()));
        });
        let reader = s.spawn(|| l.read().clone());
        until_queued(2, || l.waiters());
        s.spawn(|| l.write().push("second writer"));
        until_queued(3, || l.waiters());
        drop(r);
        // The reader went after the first writer, before the second.
        assert_eq!(reader.join().expect("reader"), ["writer"]);
    });
    assert_eq!(l.into_inner(), ["writer", "second writer"]);
}

#[test]
fn readers_queued_behind_a_writer_go_in_together() {
    let _wd = Watchdog::new("rw_batch", LIMIT);
    let l = CoRwLock::new(0);
    let all_in = Barrier::new(3);
    thread::scope(|s| {
        let mut w = l.write();
        for i in 0..3 {
            let (l, all_in) = (&l, &all_in);
            s.spawn(move || {
                let g = l.read();
                all_in.wait();
                assert_eq!(*g, 1);
            });
            until_queued(i + 1, || l.waiters());
        }
        *w += 1;
        drop(w);
    });
}

#[test]
fn a_graph_reads_under_its_own_write_and_writes_under_its_read() {
    let _wd = Watchdog::new("rw_graph", LIMIT);
    let l = CoRwLock::new(Vec::new());
    thread::scope(|s| {
        let mut w = l.write_as(Group::Graph(1));
        w.push(1);
        // Graph 2 queues to read.
        s.spawn(|| assert_eq!(l.read_as(Group::Graph(2)).len(), 3));
        until_queued(1, || l.waiters());
        // Graph 1's subtasks read and write at once, past the waiter.
        s.spawn(|| {
            let r = l.read_as(Group::Graph(1));
            assert_eq!(*r, [1]);
            let mut w2 = l.write_as(Group::Graph(1));
            w2.push(2);
        })
        .join()
        .expect("subtask");
        // A task of the graph re-enters to read although a reader of another
        // graph would wait (graph 1 holds it).
        assert!(l.try_read_as(Group::Graph(1)).is_some());
        w.push(3);
        drop(w);
    });
}

#[test]
fn a_graph_upgrades_past_other_waiters_once_other_readers_leave() {
    let _wd = Watchdog::new("rw_upgrade", LIMIT);
    let l = CoRwLock::new(Vec::new());
    let gate = Gate::default();
    thread::scope(|s| {
        // Graphs 1 and 2 read; graph 1 keeps reading until told.
        let one = s.spawn(|| {
            let _r = l.read_as(Group::Graph(1));
            gate.wait();
        });
        wait_until(LIMIT, "graph 1 reads", || l.is_locked());
        let r2 = l.read_as(Group::Graph(2));
        // Graph 3 queues to write.
        s.spawn(|| l.write_as(Group::Graph(3)).push("graph 3"));
        until_queued(1, || l.waiters());
        // A subtask of graph 1 asks to write: it waits for graph 2's reader,
        // ahead of graph 3.
        let up = s.spawn(|| l.write_as(Group::Graph(1)).push("graph 1 upgraded"));
        until_queued(2, || l.waiters());
        drop(r2);
        up.join().expect("upgrade");
        gate.open();
        one.join().expect("graph 1");
    });
    assert_eq!(l.into_inner(), ["graph 1 upgraded", "graph 3"]);
}

#[test]
fn a_graph_reading_re_enters_past_a_waiting_writer() {
    let _wd = Watchdog::new("rw_reenter_read", LIMIT);
    let l = CoRwLock::new(0);
    thread::scope(|s| {
        let r = l.read_as(Group::Graph(1));
        s.spawn(|| *l.write_as(Group::Graph(2)) += 1);
        until_queued(1, || l.waiters());
        // Graph 1's subtask would deadlock its parent if it queued behind the
        // writer: it gets in at once.
        s.spawn(|| assert_eq!(*l.read_as(Group::Graph(1)), 0))
            .join()
            .expect("subtask");
        drop(r);
    });
    assert_eq!(l.into_inner(), 1);
}

/// Many threads playing three task graphs take the lock in random modes; every
/// section checks, through counters outside the lock, that no other graph is
/// inside beside a writer. (Threads of one graph share the lock, so the value
/// is an atomic: they would race on a plain one — the aliasing rule.)
#[test]
fn stress_readers_writers_and_graphs() {
    let _wd = Watchdog::new("rw_stress", LIMIT);
    const GRAPHS: usize = 3;
    const THREADS: usize = 9;
    const ITERS: u64 = 3000;
    let l = CoRwLock::new(AtomicU64::new(0));
    let readers: [AtomicU32; GRAPHS] = Default::default();
    let writers: [AtomicU32; GRAPHS] = Default::default();
    let violations = Mutex::new(Vec::<String>::new());
    // SeqCst for the bookkeeping: each section announces itself, then checks
    // the other graphs' counters; the counters' operations pair with one
    // another through the single SeqCst order (a section that announced
    // itself before another checked is seen). The lock's own ordering is what
    // is tested.
    let check = |g: usize, writer: bool| {
        for h in (0..GRAPHS).filter(|&h| h != g) {
            let (r, w) = (
                readers[h].load(Ordering::SeqCst),
                writers[h].load(Ordering::SeqCst),
            );
            if w != 0 || (writer && r != 0) {
                violations.lock().unwrap().push(format!(
                    "graph {g} {} with graph {h}: {r} readers, {w} writers",
                    if writer { "writes" } else { "reads" }
                ));
            }
        }
    };
    thread::scope(|s| {
        for t in 0..THREADS {
            let (l, readers, writers, check) = (&l, &readers, &writers, &check);
            s.spawn(move || {
                let g = t % GRAPHS;
                let group = Group::Graph(g as u64 + 1);
                let mut rng = Rng::new(t as u64 + 1);
                for _ in 0..ITERS {
                    let writer = rng.chance(30);
                    let (counter, guard_r, guard_w) = if writer {
                        (&writers[g], None, Some(l.write_as(group)))
                    } else {
                        (&readers[g], Some(l.read_as(group)), None)
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    check(g, writer);
                    if let Some(w) = &guard_w {
                        // Relaxed: the lock orders the graphs' writes (its
                        // hand-off pairs Release with Acquire); within a graph
                        // updates may be lost, which is not what is checked.
                        let v = w.load(Ordering::Relaxed);
                        w.store(v + 1, Ordering::Relaxed);
                    }
                    if rng.chance(10) {
                        thread::yield_now();
                    }
                    counter.fetch_sub(1, Ordering::SeqCst);
                    drop((guard_r, guard_w));
                }
            });
        }
    });
    let v = violations.into_inner().unwrap();
    assert!(
        v.is_empty(),
        "{} violations, first: {:?}",
        v.len(),
        &v[..v.len().min(5)]
    );
    assert!(!l.is_locked() && l.waiters() == 0);
}

/// The same with one thread per graph: then writes are exclusive and none is
/// lost.
#[test]
fn stress_one_thread_per_graph_loses_no_write() {
    let _wd = Watchdog::new("rw_stress_exact", LIMIT);
    const THREADS: u64 = 6;
    const ITERS: u64 = 4000;
    let l = Arc::new(CoRwLock::new(0u64));
    let writes = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (l, writes) = (l.clone(), writes.clone());
            thread::spawn(move || {
                let mut rng = Rng::new(100 + t);
                for _ in 0..ITERS {
                    if rng.chance(40) {
                        let mut w = l.write();
                        let v = *w;
                        if rng.chance(10) {
                            thread::yield_now();
                        }
                        *w = v + 1;
                        // Relaxed: a tally read after the joins.
                        writes.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let r = l.read();
                        let _ = *r;
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    // Relaxed: the joins order the tally.
    assert_eq!(*l.read(), writes.load(Ordering::Relaxed));
}
