//! The client-data allocators of this process, by segment id: how a buffer
//! field finds the allocator that frees its block, wherever the task is freed.
//!
//! A [`Client`](crate::client::Client) registers the allocator of its
//! runtime's client-data segment while it lives ([`Registration`]); a module
//! library registers the runtime's on first use ([`with_local`] and
//! [`with_allocator`] fall back to it). A process that is a client of several
//! runtimes holds one entry per runtime: their segment ids differ.

use std::sync::Mutex;

use crate::shm::{Allocator, SegmentId};

/// (segment, allocator, registration number).
static ALLOCATORS: Mutex<Vec<(SegmentId, Allocator, u64)>> = Mutex::new(Vec::new());

/// An allocator registered while this lives.
#[derive(Debug)]
pub struct Registration {
    n: u64,
}

/// Registers `alloc` (a client-data allocator) until the returned value drops.
pub fn register(alloc: &Allocator) -> Registration {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    // Relaxed: only uniqueness matters.
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut all = ALLOCATORS.lock().unwrap_or_else(|e| e.into_inner());
    all.push((alloc.segment_id(), alloc.clone(), n));
    Registration { n }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut all = ALLOCATORS.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|(_, _, n)| *n != self.n);
    }
}

/// Runs `f` with the client-data allocator of segment `seg` in this process,
/// if there is one.
pub fn with_allocator<R>(seg: SegmentId, f: impl FnOnce(&Allocator) -> R) -> Option<R> {
    if let Ok(a) = crate::module_side::client_data_allocator()
        && a.segment_id() == seg
    {
        return Some(f(a));
    }
    let all = ALLOCATORS.lock().unwrap_or_else(|e| e.into_inner());
    let a = all
        .iter()
        .find(|(s, _, _)| *s == seg)
        .map(|(_, a, _)| a.clone());
    drop(all);
    a.map(|a| f(&a))
}

/// Runs `f` with the client-data allocator where this process puts new
/// buffers of a loaded task: the runtime's inside a module library, else the
/// one client's (`None` with none, or with clients of several runtimes).
pub fn with_local<R>(f: impl FnOnce(&Allocator) -> R) -> Option<R> {
    if let Ok(a) = crate::module_side::client_data_allocator() {
        return Some(f(a));
    }
    let all = ALLOCATORS.lock().unwrap_or_else(|e| e.into_inner());
    let mut segs = all.iter().map(|(s, _, _)| *s).collect::<Vec<_>>();
    segs.sort_unstable();
    segs.dedup();
    let a = (segs.len() == 1).then(|| all[0].1.clone());
    drop(all);
    a.map(|a| f(&a))
}
