//! The tasks of other nodes running on this one, and their replies.
//!
//! # Design
//!
//! The thread that takes a request's frame (a worker polling after remote
//! work, or the peer thread: `cluster/intake.rs`) loads it into a task of
//! the main segment and queues it (`remote_host.rs`), after it enters the
//! task here by address
//! ([`ServingTable::insert`]). The worker that completes the task finds it
//! here by the `PEER_WAITER` of its header and turns it into its reply
//! ([`ServingTable::finish`]: the outputs saved with the module's
//! `save_out`, the result code, the error message) and frees it, on its
//! own thread: the reply leaves from that worker
//! ([`crate::cluster::wire`]). A replica of a broadcast that this node
//! sent itself is answered by the peer thread instead, which holds the
//! broadcast.
//!
//! The table is shared by the thread that takes the requests (inserts) and
//! the workers (finishes): one lock, taken once per task at each end
//! ([`ServingTable::finish_from_other`] looks and takes under one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chi_sdk::shm::{Allocator, Segment, ShmPtr};
use chi_sdk::task::{TaskHeader, code};

use super::codec::{self, Half};
use super::record::Reply;
use crate::cluster::outbox::MAX_RECORD;
use crate::pool::Container;

/// A task of another node running here.
#[derive(Debug)]
pub struct Serving {
    /// The node that sent it.
    pub from: u32,
    /// Its request id there.
    pub request: u64,
    /// The task's header, as an address in the main segment.
    pub task: usize,
    /// The container it runs on (holds the module's hooks).
    pub container: Arc<Container>,
}

/// The tasks of other nodes running here, by address (see the module doc).
#[derive(Debug, Default)]
pub struct ServingTable {
    map: Mutex<HashMap<usize, Serving>>,
}

impl ServingTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<usize, Serving>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enters `s` (before its task is queued: its worker may complete it
    /// at once).
    pub fn insert(&self, s: Serving) {
        self.lock().insert(s.task, s);
    }

    /// Takes the task at `task` out.
    pub fn remove(&self, task: usize) -> Option<Serving> {
        self.lock().remove(&task)
    }

    /// Takes out the task at `task`, which completed, and turns it into its
    /// reply, freeing it: `(node it goes to, reply)`. `None` if the task is
    /// not one of ours, or not complete (it stays).
    pub fn finish(&self, task: usize, alloc: &Allocator, main: &Segment) -> Option<(u32, Reply)> {
        let s = self.remove(task)?;
        self.reply_of(s, alloc, main)
    }

    /// As [`finish`](Self::finish), but only for a task another node than
    /// `me` sent (one lock for the look and the take): the worker that
    /// completed it replies; this node's own broadcast replicas stay for
    /// the peer thread.
    pub fn finish_from_other(
        &self,
        task: usize,
        me: u32,
        alloc: &Allocator,
        main: &Segment,
    ) -> Option<(u32, Reply)> {
        let s = {
            let mut g = self.lock();
            if g.get(&task)?.from == me {
                return None;
            }
            g.remove(&task)?
        };
        self.reply_of(s, alloc, main)
    }

    /// The reply of `s`, out of the table, then freed (put back if it is
    /// not complete).
    fn reply_of(&self, s: Serving, alloc: &Allocator, main: &Segment) -> Option<(u32, Reply)> {
        let t = s.task as *mut TaskHeader;
        // SAFETY: our task, live until we free it (only through this
        // table, and it is out of it). Only read here; its waiter is
        // PEER_WAITER, so the worker that completes it calls here only
        // after completing it, and nothing writes a complete task.
        let h = unsafe { &*t };
        if !h.is_complete() {
            // Not ours to reply yet (never the case: its worker said so
            // after completing it); keep it.
            self.insert(s);
            return None;
        }
        let mut result = h.result();
        let mut message = h.error.to_str().unwrap_or_default().to_owned();
        // SAFETY: complete: nobody writes it any more.
        let body = match unsafe { codec::save(&s.container, t, Half::Out) } {
            Ok(b) => b,
            Err(e) => {
                result = code::FAILED;
                message = e.to_string();
                Vec::new()
            }
        };
        // SAFETY: complete, ours alone (out of the table), and its
        // container is held.
        unsafe { free(t, &s.container, alloc, main) };
        Some((s.from, fitted(s.request, result, message, body)))
    }
}

/// The reply of request `id`; one too large for a frame fails instead,
/// saying so (sent, it would be dropped and its task would time out).
fn fitted(id: u64, result: i32, message: String, body: Vec<u8>) -> Reply {
    let reply = Reply {
        id,
        result,
        message,
        body,
    };
    let size = reply.encoded_len();
    if size <= MAX_RECORD {
        return reply;
    }
    Reply {
        id,
        result: code::FAILED,
        message: format!(
            "the outputs of this task took {size} bytes saved, over the {MAX_RECORD} bytes a \
             task carries back from another node; submit it on the node of its container, or \
             split its data into smaller tasks"
        ),
        body: Vec::new(),
    }
}

/// Frees a task made for another node's request, through its module's
/// `del` (or as a bare block if the module has none, or it fails).
///
/// # Safety
/// `task` is a task of `c`'s module in `main`, complete or never queued,
/// that nobody else holds.
pub unsafe fn free(task: *mut TaskHeader, c: &Container, alloc: &Allocator, main: &Segment) {
    if let Some(del) = c.module.api.del {
        // SAFETY: the caller's contract; the container is alive (borrowed).
        if unsafe { del(c.state, task) } == code::OK {
            return;
        }
    }
    let _ = alloc.free(ShmPtr::new(main.id(), task as u64 - main.base() as u64));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_too_large_for_a_frame_fails_saying_so() {
        let small = fitted(3, 0, String::new(), vec![7; 10]);
        assert_eq!((small.id, small.result, small.body.len()), (3, 0, 10));
        let big = fitted(4, 0, String::new(), vec![0; MAX_RECORD]);
        assert_eq!((big.id, big.result), (4, code::FAILED));
        assert!(big.body.is_empty());
        assert!(big.message.contains("over the"), "{}", big.message);
        assert!(big.encoded_len() <= MAX_RECORD);
    }
}
