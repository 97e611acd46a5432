//! The remote path's own floor: the ZeroMQ round trip of [`super::zmq`]
//! behind a shared-memory hop at node 1's end, as a remote task crosses it,
//! with no runtime work at all.
//!
//! A remote Echo goes from its client to node 1's worker through shared
//! memory, and only then over ZeroMQ; its reply comes back the same way;
//! and each of the three threads polls for what it waits for. This floor
//! has that shape and nothing else: the caller's thread (the client) posts
//! a sequence number in a word; a relay thread (node 1's worker), polling
//! that word, sends the request on side A's DEALER and polls side A's
//! ROUTER for the reply, then posts the number back in a second word, which
//! the client polls; side B's thread (node 2's worker) polls its ROUTER and
//! answers on its DEALER. Every poller looks alone for [`POLL_ALONE`], then
//! yields the CPU between looks, as the runtime's workers and clients do.
//! The sockets and message sizes are the raw floor's.
//!
//! Its ratio to the raw floor is what the thread structure of a remote task
//! costs before any of the runtime's work: a runtime can come close to it,
//! not below it. Between blocks of round trips ([`ZmqRelay::round_trips`])
//! both threads sleep (the relay parked, side B in a poll of its ROUTER), so
//! that the blocks of the other measurements interleaved with these are not
//! measured beside two pollers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::zmq::{Side, zerr};
use crate::stats::ns_u32;

/// How long a poller looks without yielding the CPU (the runtime's
/// `SPIN_YIELD_AFTER` and the workers' busy poll alike).
const POLL_ALONE: Duration = Duration::from_micros(5);

/// How long side B's thread sleeps in one poll of its ROUTER between
/// blocks, before it looks at `stop` again (ms).
const REST_POLL_MS: i64 = 100;

/// Longest wait for an answer within a block: a partner that stalls fails
/// the measurement instead of hanging it (as the raw floor's receive
/// timeout does).
const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// Polls `ready` until it answers, alone for [`POLL_ALONE`], then yielding;
/// `None` as soon as `rest` is set (the block is over, or the pair stops);
/// an error naming `what` after [`ANSWER_LIMIT`].
fn poll<T>(
    rest: &AtomicBool,
    what: &str,
    mut ready: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let t = Instant::now();
    loop {
        if let Some(v) = ready()? {
            return Ok(Some(v));
        }
        if rest.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let waited = t.elapsed();
        if waited > ANSWER_LIMIT {
            bail!("ZeroMQ relay floor: no {what} within {ANSWER_LIMIT:?}");
        }
        if waited < POLL_ALONE {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// A message on `side`'s ROUTER, if one is there: its body's length.
fn try_recv(side: &Side, buf: &mut zmq::Message) -> Result<Option<usize>> {
    match side.router.recv(buf, zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Ok(None),
        Err(e) => return Err(zerr("receiving")(e)),
    }
    if !side.router.get_rcvmore().map_err(zerr("ZMQ_RCVMORE"))? {
        bail!("ZeroMQ relay floor: a message without a body");
    }
    side.router.recv(buf, 0).map_err(zerr("receiving"))?;
    Ok(Some(buf.len()))
}

/// The words the three threads share.
struct Words {
    /// The client's last request (a sequence number).
    ask: AtomicU64,
    /// The last request answered.
    done: AtomicU64,
    /// Set between blocks: the threads sleep.
    rest: AtomicBool,
    /// Set once: the threads exit.
    stop: AtomicBool,
}

/// Side B: answers every request with `reply` bytes, polling while a block
/// runs and asleep in a poll of its ROUTER between blocks.
fn answer(b: &Side, w: &Words, reply: usize) -> Result<()> {
    let answer = vec![0x5a_u8; reply.max(1)];
    let mut buf = zmq::Message::new();
    while !w.stop.load(Ordering::Relaxed) {
        if poll(&w.rest, "request", || try_recv(b, &mut buf))?.is_some() {
            b.dealer.send(&answer[..], 0).map_err(zerr("answering"))?;
        } else {
            b.router
                .poll(zmq::POLLIN, REST_POLL_MS)
                .map_err(zerr("polling"))?;
        }
    }
    Ok(())
}

/// The relay (node 1's worker): sends each request the client posts and
/// posts back the reply's arrival.
fn relay(a: &Side, w: &Words, request: usize) -> Result<()> {
    let ask = vec![0xa5_u8; request.max(1)];
    let mut buf = zmq::Message::new();
    let mut seen = 0;
    while !w.stop.load(Ordering::Relaxed) {
        // Acquire: pairs with the client's Release store of `ask`.
        let next = poll(&w.rest, "request", || {
            let v = w.ask.load(Ordering::Acquire);
            Ok((v != seen).then_some(v))
        })?;
        let Some(next) = next else {
            // Unparked by the client's next request (or by `stop`).
            std::thread::park_timeout(Duration::from_millis(100));
            continue;
        };
        a.dealer.send(&ask[..], 0).map_err(zerr("sending"))?;
        // The reply is awaited whatever `rest` says (the block waits for
        // it), until the pair stops.
        if poll(&w.stop, "reply", || try_recv(a, &mut buf))?.is_none() {
            return Ok(());
        }
        seen = next;
        // Release: pairs with the client's Acquire load of `done`.
        w.done.store(next, Ordering::Release);
    }
    Ok(())
}

/// The relayed pair, up (see the module doc); dropping it stops both
/// threads.
pub struct ZmqRelay {
    words: Arc<Words>,
    seq: u64,
    /// The relay thread, then side B's.
    threads: Vec<JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for ZmqRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZmqRelay").field("seq", &self.seq).finish()
    }
}

impl ZmqRelay {
    /// Sets up the relay for requests of `request` bytes and replies of
    /// `reply`, and warms it up.
    pub fn start(request: usize, reply: usize) -> Result<ZmqRelay> {
        let (a, b) = Side::pair()?;
        let words = Arc::new(Words {
            ask: AtomicU64::new(0),
            done: AtomicU64::new(0),
            rest: AtomicBool::new(true),
            stop: AtomicBool::new(false),
        });
        let w = words.clone();
        let relay = std::thread::Builder::new()
            .name("zmq-relay".into())
            .spawn(move || relay(&a, &w, request))?;
        let mut r = ZmqRelay {
            words: words.clone(),
            seq: 0,
            threads: vec![relay],
        };
        // On an error from here on, dropping `r` stops the relay thread.
        let partner = std::thread::Builder::new()
            .name("zmq-relay-b".into())
            .spawn(move || answer(&b, &words, reply))?;
        r.threads.push(partner);
        r.round_trips(2_000)?;
        Ok(r)
    }

    /// A block of `n` round trips, each timed (ns).
    pub fn round_trips(&mut self, n: u64) -> Result<Vec<u32>> {
        let mut samples = Vec::with_capacity(n as usize);
        self.words.rest.store(false, Ordering::Relaxed);
        let r = (|| {
            for _ in 0..n {
                let t = Instant::now();
                self.seq += 1;
                let seq = self.seq;
                // Release: publishes the request; pairs with the relay's
                // Acquire load of `ask`.
                self.words.ask.store(seq, Ordering::Release);
                self.threads[0].thread().unpark();
                let done = poll(&AtomicBool::new(false), "reply", || {
                    if self.threads.iter().any(JoinHandle::is_finished) {
                        bail!("ZeroMQ relay floor: a thread stopped");
                    }
                    // Acquire: pairs with the relay's Release store of `done`.
                    Ok((self.words.done.load(Ordering::Acquire) == seq).then_some(()))
                })?;
                debug_assert!(done.is_some());
                samples.push(ns_u32(t.elapsed()));
            }
            Ok(())
        })();
        self.words.rest.store(true, Ordering::Relaxed);
        r.map(|()| samples)
    }

    /// Stops both threads; the first error, if one failed.
    pub fn stop(mut self) -> Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> Result<()> {
        self.words.stop.store(true, Ordering::Relaxed);
        let mut first = Ok(());
        for h in self.threads.drain(..) {
            h.thread().unpark();
            let r = h
                .join()
                .unwrap_or_else(|_| bail!("a ZeroMQ relay floor thread panicked"));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Drop for ZmqRelay {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}
