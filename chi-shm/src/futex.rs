//! Futex wait and wake on words in shared memory (shared, not process-private,
//! futexes: the word may be mapped by several processes at different addresses).
//!
//! The words are the standard `AtomicU32`: the system call needs one, and the
//! words callers wait on (a task's state word, a doorbell) are theirs. Inside this
//! crate a doorbell reaches these through the atomics facade
//! (`sync::AtomicU32::futex_wait`), which a loom model replaces.

// The futex system call's word type: a deliberate exception to the facade rule
// of clippy.toml (this module is the system call, not an algorithm to model).
#![allow(clippy::disallowed_types)]

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

/// Blocks while `*word == expected`, for at most `timeout`. Returns on a wake-up,
/// a change of the word, a signal or the timeout: callers re-check their condition.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    // EAGAIN (word changed), EINTR and ETIMEDOUT all mean "go and look again".
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// Wakes up to `n` threads blocked in [`wait`] on `word`.
pub fn wake(word: &AtomicU32, n: u32) {
    let _ = futex::wake(word, futex::Flags::empty(), n);
}
