//! A broadcast over the cluster (`GlobalBcast`): one replica of the task per
//! container of the pool, and how their outputs combine.
//!
//! # Design
//!
//! The worker saves the task's inputs once and sends one request per
//! container (`worker/remote.rs`), each [`Sent`](super::Sent) naming its
//! replica (its index in container order) and sharing one [`Bcast`]. The
//! thread that takes a replica's reply (the peer thread, or a worker
//! polling after remote work: `cluster/intake.rs`) hands its outcome to
//! [`Bcast::gather`]; the last
//! one yields them all, in container order:
//!
//! * if any replica failed (its handler, or its node down or silent), the
//!   task fails with the first failure in container order, naming the
//!   replica's container and node;
//! * otherwise the task takes container 0's outputs (`load_out`), and then,
//!   replica by replica in container order, [`combine`] folds the others
//!   in: each reply is loaded into a copy of the task (the module's
//!   `new_copy`, then `load_out`) and the module's `aggregate` combines it
//!   into the task (a handler `aggregate_foo` of the module, or the
//!   generated default that collects: collection outputs append, values
//!   and `#[inout]` fields keep container 0's); the copy is freed through
//!   the module's `del`. A module without `aggregate` keeps container 0's
//!   outputs. A failed combination fails the task with its message. On a
//!   node without a container of the pool the hooks get the pool's
//!   stand-in (a null state): the default aggregation works, a module's
//!   own `aggregate_*` fails the task saying it needs a container.
//!
//! Those threads gather the outcomes; a replica for this node that a
//! worker could not hand over because the runtime stops is gathered by
//! that worker, as a failure ([`Bcast::fail_unsent`]), and if it
//! was the last, fails the task. The lock makes the two safe; whoever
//! gathers the last outcome, and only they, completes the task.

use std::sync::Mutex;

use chi_sdk::abi::ErrorBuf;
use chi_sdk::shm::{Allocator, Segment, ShmPtr};
use chi_sdk::task::{TaskHeader, code};

use super::codec;
use super::inflight::RemoteError;
use super::record::Reply;
use crate::placement::Located;
use crate::pool::Container;

/// A broadcast's replicas (see the module doc).
#[derive(Debug)]
pub struct Bcast {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Replicas not answered yet.
    left: usize,
    /// Per replica, in container order: where it runs.
    targets: Vec<Located>,
    /// Per replica: its reply, or why it failed, once answered.
    outcomes: Vec<Option<Result<Reply, String>>>,
}

impl Bcast {
    /// A broadcast to `targets` (in container order).
    pub fn new(targets: &[Located]) -> Bcast {
        Bcast {
            state: Mutex::new(State {
                left: targets.len(),
                targets: targets.to_vec(),
                outcomes: targets.iter().map(|_| None).collect(),
            }),
        }
    }

    /// Records replica `i`'s outcome; once it was the last, every reply in
    /// container order, or the first failure (in container order, naming
    /// its container and node).
    pub fn gather(
        &self,
        i: usize,
        outcome: Result<Reply, RemoteError>,
    ) -> Option<Result<Vec<Reply>, String>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = s.outcomes.get_mut(i) else {
            tracing::warn!(
                replica = i,
                "a reply for a replica the broadcast does not have"
            );
            return None;
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(match outcome {
            Ok(r) if r.result == code::OK => Ok(r),
            Ok(r) => Err(format!("failed ({}): {}", r.result, r.message)),
            Err(e) => Err(e.to_string()),
        });
        s.left = s.left.saturating_sub(1);
        if s.left > 0 {
            return None;
        }
        let State {
            targets, outcomes, ..
        } = &mut *s;
        let mut replies = Vec::with_capacity(outcomes.len());
        for (to, o) in targets.iter().zip(outcomes.iter_mut()) {
            match o.take() {
                Some(Ok(r)) => replies.push(r),
                Some(Err(why)) => {
                    return Some(Err(format!(
                        "the replica of the broadcast on container {} (node {}) {why}",
                        to.container.0, to.node.0
                    )));
                }
                None => return Some(Err("a replica of the broadcast was lost".into())),
            }
        }
        if replies.is_empty() {
            return Some(Err("the broadcast had no replica".into()));
        }
        Some(Ok(replies))
    }
}

impl Bcast {
    /// Records the replicas `unsent` (which could not be handed over: the
    /// runtime stops) as failed with `e`; if one of them was the last
    /// outcome the broadcast waited for, the task's failure, which the
    /// caller then reports (nobody else completes the task).
    pub fn fail_unsent(&self, unsent: &[usize], e: &RemoteError) -> Option<String> {
        let mut last = None;
        for &i in unsent {
            if let Some(done) = self.gather(i, Err(e.clone())) {
                last = Some(done.err().unwrap_or_else(|| e.to_string()));
            }
        }
        last
    }
}

/// Folds the outputs of `replies` (replicas 1.. in container order) into
/// `task`, which holds container 0's, through the module of `c` (see the
/// module doc).
///
/// # Safety
/// `task` is a live task of `c`'s module that nobody else reads or writes
/// during the call.
pub unsafe fn combine(
    c: &Container,
    task: *mut TaskHeader,
    replies: &[Reply],
    alloc: &Allocator,
    main: &Segment,
) -> Result<(), String> {
    let api = c.module.api;
    let Some(aggregate) = api.aggregate else {
        return Ok(());
    };
    let (Some(new_copy), Some(del)) = (api.new_copy, api.del) else {
        return Err(format!(
            "module {} has no new_copy or del hook to combine a broadcast's replicas with",
            c.module.name
        ));
    };
    // SAFETY: the caller's contract: a live task.
    let method = unsafe { (*task).method };
    let failed = |what: &str, err: &ErrorBuf| {
        format!(
            "module {}, method {method}: {what} of a broadcast's replica failed: {}",
            c.module.name,
            err.as_str()
        )
    };
    for (i, reply) in replies.iter().enumerate() {
        let mut err = ErrorBuf::default();
        // SAFETY: the container is alive (held); `task` is live (contract).
        let copy = unsafe { new_copy(c.state, task, &mut err) };
        if copy.is_null() {
            return Err(failed("the copy", &err));
        }
        // SAFETY: `copy` is a fresh task of the module, ours alone.
        let loaded = unsafe { codec::load_out(c, copy, &reply.body) };
        let done = match loaded {
            Err(e) => Err(format!("replica {}: {e}", i + 1)),
            Ok(()) => {
                // SAFETY: two live tasks of one method, `copy` only read.
                let rc = unsafe { aggregate(c.state, task, copy, &mut err) };
                if rc == code::OK {
                    Ok(())
                } else {
                    Err(failed("aggregating", &err))
                }
            }
        };
        // SAFETY: the copy is ours, and nobody uses it after this.
        if unsafe { del(c.state, copy) } != code::OK {
            let _ = alloc.free(ShmPtr::new(main.id(), copy as u64 - main.base() as u64));
        }
        done?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chi_sdk::types::{ContainerId, NodeId};

    use super::*;

    /// Containers 0, 1, 2 on nodes 1, 2, 3.
    fn three() -> Bcast {
        let t: Vec<Located> = (0..3)
            .map(|i| Located {
                node: NodeId(i + 1),
                container: ContainerId(i),
            })
            .collect();
        Bcast::new(&t)
    }

    fn ok(id: u64) -> Result<Reply, RemoteError> {
        Ok(Reply {
            id,
            result: code::OK,
            message: String::new(),
            body: vec![id as u8],
        })
    }

    #[test]
    fn the_last_replica_yields_every_reply_in_container_order() {
        let b = three();
        assert!(b.gather(2, ok(2)).is_none());
        assert!(b.gather(0, ok(0)).is_none());
        // A second outcome for a replica counts once.
        assert!(b.gather(0, ok(9)).is_none());
        let all = b.gather(1, ok(1)).unwrap().unwrap();
        assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn the_first_failure_in_container_order_fails_the_broadcast() {
        let b = three();
        assert!(
            b.gather(2, Err(RemoteError::NodeDown { node: 3 }))
                .is_none()
        );
        assert!(b.gather(0, ok(0)).is_none());
        let why = b
            .gather(1, Err(RemoteError::NotHeard { node: 2 }))
            .unwrap()
            .unwrap_err();
        assert!(why.contains("container 1 (node 2)"), "{why}");
    }

    #[test]
    fn replicas_that_could_not_be_handed_over_still_gather() {
        // The unsent replicas are the last outcomes: the caller fails the
        // task, naming the first failure.
        let b = three();
        assert!(b.gather(0, ok(0)).is_none());
        assert!(b.gather(2, ok(2)).is_none());
        let why = b.fail_unsent(&[1], &RemoteError::Stopping).unwrap();
        assert!(
            why.contains("container 1 (node 2)") && why.contains("stopping"),
            "{why}"
        );
        // Outcomes still out: whoever gives the last one fails the task.
        let b = three();
        assert!(b.fail_unsent(&[1, 2], &RemoteError::Stopping).is_none());
        let why = b.gather(0, ok(0)).unwrap().unwrap_err();
        assert!(why.contains("container 1 (node 2)"), "{why}");
    }
}
