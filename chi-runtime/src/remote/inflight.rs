//! The tasks this node sent to other nodes and waits on: the in-flight
//! table of remote tasks.
//!
//! # Design
//!
//! Each task sent out gets a request id ([`InFlight::insert`]), the id its
//! [`super::record::Request`] carries and its [`super::record::Reply`]
//! echoes. The table keeps, per id, the node it went to, its deadline
//! (`cluster.task_timeout` after it was sent) and what the sender needs to
//! complete it (`T`: the task's pointer and generation, in a runtime; any
//! value in tests). A reply takes its entry out ([`InFlight::take`]) only if
//! it comes from the node the request went to, so a node cannot complete
//! another node's task. [`InFlight::expire`] (at the peer thread's coarse
//! checks, every few milliseconds) and [`InFlight::node_down`] (when the
//! peer thread sees a node go down or restart, and at those checks for
//! every node down) take out what can no longer be answered, each with a [`RemoteError`] naming the node:
//! a remote task fails, it never hangs.
//!
//! Request ids are this run's own: they start at [`first_id`] of the
//! runtime's incarnation, so a late reply to a task an earlier run of this
//! node sent (it crashed and restarted within a task's time) finds no
//! entry here and is dropped, rather than completing a task of this run
//! that happens to carry the same id with another task's outputs.
//!
//! The table itself takes no lock: in a runtime it lives behind the lock
//! of [`crate::cluster::wire::Wire`], where the workers insert the tasks
//! they send and whoever takes a reply (a worker polling after remote work,
//! or the peer thread, which also expires them) takes them out. Deadlines are kept in a
//! min-ordered set, so `expire` looks only at what is due.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Why a remote task failed without a reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The node went down (or was down when the task was sent).
    #[error(
        "node {node} went down before it answered the task; resubmit it once the node is up \
         again, or to a container on another node"
    )]
    NodeDown {
        /// The node.
        node: u32,
    },
    /// The node has not been heard from since this runtime started (it is
    /// starting, or not running).
    #[error(
        "node {node} has not been heard from since this runtime started; resubmit the task \
         once it is up (is its runtime running, with the same hostfile?)"
    )]
    NotHeard {
        /// The node.
        node: u32,
    },
    /// The frame carrying the task could not be queued for the node (no
    /// connection to it now, or too many frames wait for it).
    #[error(
        "node {node} could not be reached (no connection to it now, or too many frames wait \
         for it); resubmit the task later"
    )]
    Unreachable {
        /// The node.
        node: u32,
    },
    /// This runtime stops: its peer link no longer waits for replies.
    #[error("this runtime is stopping; its peer link is closed")]
    Stopping,
    /// No reply within the timeout.
    #[error(
        "node {node} did not answer the task within {timeout:?} (cluster.task_timeout); is it \
         overloaded? raise cluster.task_timeout for longer tasks"
    )]
    Timeout {
        /// The node.
        node: u32,
        /// The timeout.
        timeout: Duration,
    },
}

/// The first request id of a run whose incarnation is `incarnation` (µs
/// since the epoch at its start, larger for each run of a node): that times
/// 2 048, kept below 2^62. Two runs of a node share ids only if the earlier
/// one sent more than 2 048 requests per microsecond of its life (or in
/// 2041, when the product first wraps past 2^62). Remote tasks' ids thus
/// stay below 2^63, where pool agreement's start
/// ([`crate::cluster::pools::CONTROL_IDS`]); pool agreement adds this to
/// its own too.
pub fn first_id(incarnation: u64) -> u64 {
    (incarnation.wrapping_mul(2048) & ((1 << 62) - 1)).max(1)
}

struct Entry<T> {
    node: u32,
    /// The run (incarnation) of the node it was sent to; 0: unknown.
    run: u64,
    deadline: Instant,
    value: T,
    /// Failed already (never sent): its error, given at its deadline.
    failed: Option<RemoteError>,
}

/// Tasks sent to other nodes, by request id (see the module doc).
pub struct InFlight<T> {
    timeout: Duration,
    next: u64,
    by_id: HashMap<u64, Entry<T>>,
    due: BTreeSet<(Instant, u64)>,
}

impl<T> std::fmt::Debug for InFlight<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("timeout", &self.timeout)
            .field("len", &self.by_id.len())
            .finish()
    }
}

impl<T> InFlight<T> {
    /// An empty table whose tasks fail after `timeout`, and whose first
    /// request id is `first` ([`first_id`]).
    pub fn new(timeout: Duration, first: u64) -> InFlight<T> {
        InFlight {
            timeout,
            next: first,
            by_id: HashMap::new(),
            due: BTreeSet::new(),
        }
    }

    /// How many tasks wait.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// No task waits.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Records `value` sent to `node`, up as run (incarnation) `run`, at
    /// `now`; returns its request id.
    pub fn insert(&mut self, node: u32, run: u64, value: T, now: Instant) -> u64 {
        self.put(node, run, value, now + self.timeout, None)
    }

    /// Records `value`, which could not be sent to `node`, as failed with
    /// `error`: due at `now`, so the next [`expire`](Self::expire) gives it
    /// back with that error (and [`drain`](Self::drain) with its own).
    /// Returns its id.
    pub fn insert_failed(&mut self, node: u32, value: T, error: RemoteError, now: Instant) -> u64 {
        self.put(node, 0, value, now, Some(error))
    }

    fn put(
        &mut self,
        node: u32,
        run: u64,
        value: T,
        deadline: Instant,
        failed: Option<RemoteError>,
    ) -> u64 {
        let id = self.next;
        self.next += 1;
        self.by_id.insert(
            id,
            Entry {
                node,
                run,
                deadline,
                value,
                failed,
            },
        );
        self.due.insert((deadline, id));
        id
    }

    /// The task of request `id`, answered by node `from`; `None` if there
    /// is none, or if it went to another node (the entry stays).
    pub fn take(&mut self, id: u64, from: u32) -> Option<T> {
        if self.by_id.get(&id)?.node != from {
            return None;
        }
        let e = self.by_id.remove(&id)?;
        self.due.remove(&(e.deadline, id));
        Some(e.value)
    }

    /// Takes out every task past its deadline at `now`, each with its error.
    pub fn expire(&mut self, now: Instant) -> Vec<(T, RemoteError)> {
        let mut out = Vec::new();
        while let Some(&(deadline, id)) = self.due.first() {
            if deadline > now {
                break;
            }
            self.due.pop_first();
            if let Some(e) = self.by_id.remove(&id) {
                let why = e.failed.unwrap_or(RemoteError::Timeout {
                    node: e.node,
                    timeout: self.timeout,
                });
                out.push((e.value, why));
            }
        }
        out
    }

    /// Takes out every task sent to `node` (it is down), each with its
    /// error.
    pub fn node_down(&mut self, node: u32) -> Vec<(T, RemoteError)> {
        self.run_down(node, u64::MAX)
    }

    /// Takes out every task sent to run `run` of `node`, or to an earlier
    /// one (that run went down, or the node restarted as a later one: the
    /// tasks already sent to the later run stay), each with its error.
    pub fn run_down(&mut self, node: u32, run: u64) -> Vec<(T, RemoteError)> {
        let ids: Vec<u64> = self
            .by_id
            .iter()
            .filter(|(_, e)| e.node == node && e.run <= run)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(e) = self.by_id.remove(&id) {
                self.due.remove(&(e.deadline, id));
                let why = e.failed.unwrap_or(RemoteError::NodeDown { node });
                out.push((e.value, why));
            }
        }
        out
    }

    /// Takes out every task (the runtime stops), each failed with
    /// [`RemoteError::Stopping`].
    pub fn drain(&mut self) -> Vec<(T, RemoteError)> {
        self.due.clear();
        self.by_id
            .drain()
            .map(|(_, e)| (e.value, RemoteError::Stopping))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(2);

    #[test]
    fn a_run_gone_down_takes_its_tasks_and_not_the_next_runs() {
        let now = Instant::now();
        let mut t = InFlight::new(T, 1);
        t.insert(2, 5, 'a', now);
        let b = t.insert(2, 6, 'b', now);
        t.insert(3, 5, 'c', now);
        let gone: Vec<char> = t.run_down(2, 5).into_iter().map(|(v, _)| v).collect();
        assert_eq!(gone, ['a']);
        assert_eq!(t.take(b, 2), Some('b'));
        assert_eq!(t.node_down(3).len(), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn each_run_of_a_node_numbers_its_requests_from_its_own_start() {
        // 2026 and one microsecond later: 2 048 ids apart, under 2^62.
        let inc = 1_796_000_000_000_000;
        assert_eq!(first_id(inc + 1) - first_id(inc), 2048);
        assert!(first_id(inc) < 1 << 62);
        assert!(first_id(u64::MAX) < 1 << 62);
        assert_eq!(first_id(0), 1);
        let mut t = InFlight::new(T, first_id(inc));
        assert_eq!(t.insert(2, 1, "a", Instant::now()), first_id(inc));
    }

    #[test]
    fn a_reply_takes_its_task_only_from_the_node_it_went_to() {
        let now = Instant::now();
        let mut t = InFlight::new(T, 1);
        let a = t.insert(2, 1, "a", now);
        let b = t.insert(3, 1, "b", now);
        assert_ne!(a, b);
        assert_eq!(t.take(a, 3), None, "node 3 cannot answer node 2's task");
        assert_eq!(t.take(a, 2), Some("a"));
        assert_eq!(t.take(a, 2), None, "answered once");
        assert_eq!(t.take(99, 2), None);
        assert_eq!(t.len(), 1);
        assert!(t.expire(now + T).iter().all(|(v, _)| *v == "b"));
        assert!(t.is_empty());
    }

    #[test]
    fn tasks_past_their_deadline_fail_with_a_timeout_naming_the_node() {
        let now = Instant::now();
        let mut t = InFlight::new(T, 1);
        t.insert(2, 1, 1, now);
        t.insert(3, 1, 2, now + Duration::from_secs(1));
        assert!(t.expire(now + Duration::from_millis(1999)).is_empty());
        let out = t.expire(now + T);
        assert_eq!(
            out,
            vec![(
                1,
                RemoteError::Timeout {
                    node: 2,
                    timeout: T
                }
            )]
        );
        let msg = out[0].1.to_string();
        assert!(
            msg.contains("node 2") && msg.contains("task_timeout"),
            "{msg}"
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t.expire(now + Duration::from_secs(3)).len(), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn a_node_going_down_fails_its_tasks_only() {
        let now = Instant::now();
        let mut t = InFlight::new(T, 1);
        let ids: Vec<u64> = (0..6).map(|i| t.insert(2 + i % 2, 1, i, now)).collect();
        let mut down: Vec<u32> = t
            .node_down(3)
            .into_iter()
            .map(|(v, e)| {
                assert_eq!(e, RemoteError::NodeDown { node: 3 });
                v
            })
            .collect();
        down.sort_unstable();
        assert_eq!(down, vec![1, 3, 5]);
        assert_eq!(t.len(), 3);
        // Their deadlines went with them; the others still time out.
        assert_eq!(t.expire(now + T).len(), 3);
        assert_eq!(t.take(ids[0], 2), None);
        let msg = RemoteError::NodeDown { node: 3 }.to_string();
        assert!(msg.contains("node 3 went down"), "{msg}");
    }

    #[test]
    fn a_task_failed_at_once_comes_back_with_its_error_at_the_next_look() {
        let now = Instant::now();
        let mut t = InFlight::new(T, 1);
        let sent = t.insert(2, 1, 'x', now);
        t.insert_failed(3, 'y', RemoteError::NotHeard { node: 3 }, now);
        t.insert_failed(4, 'z', RemoteError::NotHeard { node: 4 }, now);
        // Its node seen down first: still its own error.
        assert_eq!(
            t.node_down(4),
            vec![('z', RemoteError::NotHeard { node: 4 })]
        );
        assert_eq!(
            t.expire(now),
            vec![('y', RemoteError::NotHeard { node: 3 })]
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t.take(sent, 2), Some('x'));
    }

    #[test]
    fn drain_fails_everything() {
        let now = Instant::now();
        let mut t = InFlight::new(T, 1);
        t.insert(2, 1, 'x', now);
        t.insert(3, 1, 'y', now);
        let all = t.drain();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|(_, e)| *e == RemoteError::Stopping));
        assert!(t.is_empty() && t.expire(now + T * 2).is_empty());
    }
}
