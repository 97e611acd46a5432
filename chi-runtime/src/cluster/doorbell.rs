//! The peer thread's doorbell: how other threads wake it when they hand it
//! work (a remote task to send, a served task that completed, a request of
//! the control loop, a stop, a frame a worker left it or a change of who
//! reads the peer socket: `super::intake`).
//!
//! # Design
//!
//! The peer thread sleeps in one poll over its socket and an eventfd (or
//! on the eventfd alone while a worker reads the socket). A
//! producer queues its work (on a channel of its own), then [`rings`]: it
//! sets the *rung* flag and, only if the thread announced that it sleeps,
//! writes the eventfd (one system call; none while the thread is awake).
//! The thread's turn is:
//!
//! 1. [`take`](Doorbell::take) the flag, then drain every queue;
//! 2. [`prepare_sleep`](Doorbell::prepare_sleep): set *sleeping*, then look
//!    at the flag again: if a producer rang since step 1, do not sleep, go
//!    back to 1;
//! 3. poll (the sockets and [`fd`](Doorbell::fd)) until the next timer,
//!    then [`woke`](Doorbell::woke): clear *sleeping*, drain the eventfd.
//!
//! No wake-up is lost: a producer stores *rung* then loads *sleeping*; the
//! thread stores *sleeping* then loads *rung*; with a sequentially
//! consistent fence between each store and load, at least one of them sees
//! the other's store — either the thread does not sleep, or the producer
//! writes the eventfd and the poll returns. Of several producers that find
//! the thread asleep, one writes (the one whose swap of *sleeping* wins).
//! A write that lands after the thread woke for another reason leaves the
//! eventfd readable: the next poll returns at once, a spurious turn, and
//! drains it.
//!
//! [`rings`]: Doorbell::ring

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering, fence};

use rustix::event::{EventfdFlags, eventfd};

/// The doorbell (see the module doc).
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
    /// Work was handed over since the thread last took the flag.
    rung: AtomicBool,
    /// The thread sleeps, or is about to.
    sleeping: AtomicBool,
}

impl Doorbell {
    /// A doorbell with a fresh eventfd (non-blocking, closed on exec).
    pub fn new() -> std::io::Result<Doorbell> {
        let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Doorbell {
            fd,
            rung: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
        })
    }

    /// The eventfd the thread polls (readable once rung while it slept).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A producer, after queueing its work: wakes the thread if it sleeps.
    pub fn ring(&self) {
        // Release: pairs with the Acquire swap in `take`: what the producer
        // did before ringing (its queue, a change of the intake's claim) is
        // seen by the turn that takes the flag. The fence below orders it
        // against the load of `sleeping`.
        self.rung.store(true, Ordering::Release);
        // SeqCst: pairs with the fence in `prepare_sleep` (a store then a
        // load on each side: one of the two loads sees the other's store).
        fence(Ordering::SeqCst);
        // Relaxed load first (no write while the thread is awake); the
        // swap (AcqRel, pairs with the store in `prepare_sleep`) lets one
        // producer only write the eventfd.
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            // A full counter (2^64 - 2 unread rings) cannot happen: the
            // thread drains it each time it wakes.
            let _ = rustix::io::write(self.fd.as_fd(), &1u64.to_ne_bytes());
        }
    }

    /// The thread, at the start of its turn: whether anything was rung
    /// since it last looked. Work queued after this call rings again.
    pub fn take(&self) -> bool {
        // Acquire: pairs with the Release store in `ring`.
        self.rung.swap(false, Ordering::Acquire)
    }

    /// The thread, before it sleeps: announces it, and returns `false` (do
    /// not sleep: take and drain again) if a producer rang since
    /// [`take`](Self::take).
    pub fn prepare_sleep(&self) -> bool {
        // Relaxed: ordered by the fence below.
        self.sleeping.store(true, Ordering::Relaxed);
        // SeqCst: pairs with the fence in `ring`.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence above.
        if self.rung.load(Ordering::Relaxed) {
            // Relaxed: only the thread itself and `ring`'s swap write it; a
            // producer that swapped it first wrote the eventfd, which the
            // next `woke` drains.
            self.sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The thread, after its poll returned (for any reason): no longer
    /// asleep; the eventfd drained.
    pub fn woke(&self) {
        // Relaxed: the thread's own flag; a producer that still sees `true`
        // writes the eventfd once more: a spurious turn, never a lost one.
        self.sleeping.store(false, Ordering::Relaxed);
        let mut buf = [0u8; 8];
        // Non-blocking: fails with EAGAIN when nothing was written.
        let _ = rustix::io::read(self.fd.as_fd(), &mut buf);
    }

    /// Waits up to `timeout_ms` (-1: for ever) for the eventfd alone (the
    /// in-process transport, tests); whether it was readable.
    pub fn wait_fd(&self, timeout_ms: i32) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let ts = (timeout_ms >= 0).then(|| Timespec {
            tv_sec: i64::from(timeout_ms / 1000),
            tv_nsec: i64::from(timeout_ms % 1000) * 1_000_000,
        });
        matches!(poll(&mut fds, ts.as_ref()), Ok(n) if n > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn a_ring_before_the_check_keeps_the_thread_awake() {
        let b = Doorbell::new().unwrap();
        assert!(!b.take());
        b.ring();
        // Not asleep: no write, the flag says it.
        assert!(!b.wait_fd(0), "an awake thread's eventfd was written");
        assert!(
            !b.prepare_sleep(),
            "rung before the check, yet it would sleep"
        );
        assert!(b.take());
        assert!(b.prepare_sleep());
    }

    #[test]
    fn a_ring_after_the_check_wakes_the_sleeper() {
        let b = Doorbell::new().unwrap();
        b.take();
        assert!(b.prepare_sleep());
        // The producer comes between the check and the poll.
        b.ring();
        // The poll returns at once (a lost ring would block for 5 s and fail).
        assert!(b.wait_fd(5_000), "the ring after prepare_sleep was lost");
        b.woke();
        assert!(!b.wait_fd(0), "woke() left the eventfd readable");
        assert!(b.take());
    }

    #[test]
    fn one_of_several_producers_writes_the_eventfd() {
        let b = Doorbell::new().unwrap();
        b.take();
        assert!(b.prepare_sleep());
        b.ring();
        b.ring();
        b.ring();
        let mut buf = [0u8; 8];
        rustix::io::read(b.fd.as_fd(), &mut buf).unwrap();
        assert_eq!(
            u64::from_ne_bytes(buf),
            1,
            "more than one write for one sleep"
        );
    }

    /// A producer hands over items one at a time while the consumer takes,
    /// drains and sleeps in a loop; every sleep is bounded by 2 s, and a
    /// sleep that ends by its timeout with an item waiting is a lost
    /// wake-up.
    #[test]
    fn no_wake_up_is_lost_under_contention() {
        const N: u64 = 20_000;
        let bell = Arc::new(Doorbell::new().unwrap());
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let producer = {
            let (bell, queue) = (bell.clone(), queue.clone());
            std::thread::spawn(move || {
                for i in 0..N {
                    queue.lock().unwrap().push_back(i);
                    bell.ring();
                    if i % 7 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let (mut next, mut sleeps, mut lost) = (0u64, 0u64, 0u64);
        while next < N {
            bell.take();
            while let Some(v) = queue.lock().unwrap().pop_front() {
                assert_eq!(v, next);
                next += 1;
            }
            if next == N || !bell.prepare_sleep() {
                continue;
            }
            sleeps += 1;
            let readable = bell.wait_fd(2_000);
            bell.woke();
            if !readable && !queue.lock().unwrap().is_empty() {
                lost += 1;
            }
        }
        producer.join().unwrap();
        assert_eq!(lost, 0, "{lost} of {sleeps} sleeps missed a ring");
    }
}
