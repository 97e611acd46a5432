//! Unique shared-memory names per test, unlinked on drop.

use std::sync::atomic::{AtomicU32, Ordering};

static NAME_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A segment name unique to this process, call and test: `chi-t-<pid>-<n>-<test>`,
/// shorter than 100 bytes and free of '/'.
pub fn unique_name(test: &str) -> String {
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = format!("chi-t-{}-{n}-", std::process::id());
    for c in test.chars() {
        if name.len() >= 99 {
            break;
        }
        name.push(if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        });
    }
    name
}

/// Unlinks a segment name when dropped (also during a panic).
#[derive(Debug)]
pub struct ShmName(pub String);

impl ShmName {
    /// A fresh unique name for `test`, unlinked on drop.
    pub fn new(test: &str) -> ShmName {
        ShmName(unique_name(test))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = rustix::shm::unlink(format!("/{}", self.0).as_str());
    }
}
