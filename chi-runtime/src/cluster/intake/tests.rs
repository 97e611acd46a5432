//! The intake over the in-process transport: what a worker takes, what it
//! leaves to the peer thread (in order), and who holds the socket.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chi_sdk::types::{ContainerId, PoolId};

use super::*;
use crate::cluster::outbox::Outbox;
use crate::cluster::pools::{CTL_SHARE, Outgoing};
use crate::cluster::transport::{InProcNet, PeerTransport};
use crate::remote::inflight::RemoteError;
use crate::remote::record::Request;

/// What the workers' host was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Done {
    Ran { from: u32, id: u64 },
    Completed { tag: u32, result: i32 },
}

struct Host(Arc<Mutex<Vec<Done>>>);

impl PoolHost for Host {
    fn run(&self, from: u32, req: &Request) -> Result<(), String> {
        if req.method == 99 {
            return Err("no method 99".into());
        }
        self.0.lock().unwrap().push(Done::Ran { from, id: req.id });
        Ok(())
    }
    fn complete(&self, back: Outgoing, outcome: Result<Reply, RemoteError>) {
        let tag = *back.downcast::<u32>().unwrap();
        let result = outcome.map_or(i32::MIN, |r| r.result);
        self.0.lock().unwrap().push(Done::Completed { tag, result });
    }
}

/// Node 1 of 3 with node 2 up: its intake, its wire, the network and what
/// the host did.
struct Node {
    intake: Intake,
    wire: Wire,
    net: InProcNet,
    done: Arc<Mutex<Vec<Done>>>,
    // Kept attached: sends to node 2 (the replies of failed runs) succeed.
    _two: crate::cluster::transport::InProcPeer,
}

fn node() -> Node {
    let hosts: Vec<(String, IpAddr)> = (1..=3)
        .map(|i| (format!("n{i}"), format!("127.0.0.{i}").parse().unwrap()))
        .collect();
    let m = Arc::new(Membership::new(1, 7, &hosts, Duration::from_secs(5)));
    assert!(m.heard(2, 1, Instant::now()));
    let net = InProcNet::new();
    let one = net.attach(1);
    let two = net.attach(2);
    let wire = Wire::new(m, one.sender(), Duration::from_secs(5));
    let done = Arc::new(Mutex::new(Vec::new()));
    let intake = Intake::new(Box::new(one), Some(Box::new(Host(done.clone()))));
    Node {
        intake,
        wire,
        net,
        done,
        _two: two,
    }
}

fn req(id: u64, method: u32) -> Request {
    Request {
        id,
        pool: PoolId(9),
        container: ContainerId(0),
        method,
        flags: 0,
        body: vec![1, 2, 3],
    }
}

fn reply(id: u64) -> Reply {
    Reply {
        id,
        result: 0,
        message: String::new(),
        body: vec![4],
    }
}

impl Node {
    /// Delivers a frame of `kind` from node `from` (incarnation 1).
    fn frame(&self, from: u32, kind: Kind, payload: &[u8]) {
        let bytes = Frame {
            kind,
            sender: from,
            incarnation: 1,
            payload,
        }
        .encode()
        .unwrap();
        self.net.inject(1, bytes).unwrap();
    }

    /// Delivers the batch of `requests` and `replies` from node `from`.
    fn batch(&self, from: u32, requests: &[Request], replies: &[Reply]) {
        let mut o = Outbox::default();
        for r in requests {
            o.request(1, r);
        }
        for r in replies {
            o.reply(1, r);
        }
        for (_, kind, payload) in o.drain() {
            self.frame(from, kind, &payload);
        }
    }

    fn take(&self, worker: u32, out: &mut WireBatch) -> usize {
        self.intake.take(worker, &self.wire, out)
    }

    fn done(&self) -> Vec<Done> {
        std::mem::take(&mut *self.done.lock().unwrap())
    }

    /// The kind and sender of the frame the peer thread gets next (`None`
    /// for bytes that are not a frame).
    fn peer_gets(&self) -> Option<Option<(Kind, u32)>> {
        let r = self.intake.lock().recv(Duration::ZERO).unwrap()?;
        Some(Frame::decode(&r.bytes).ok().map(|f| (f.kind, f.sender)))
    }

    /// As [`peer_gets`](Self::peer_gets), for a frame a worker left.
    fn left(&self) -> Option<Option<(Kind, u32)>> {
        let r = self.intake.lock().deferred()?;
        Some(Frame::decode(&r.bytes).ok().map(|f| (f.kind, f.sender)))
    }
}

#[test]
fn a_worker_runs_the_requests_and_completes_the_replies_it_takes() {
    let n = node();
    let mut out = WireBatch::default();
    let id = n
        .wire
        .register(2, Box::new(5u32))
        .map_err(|(_, e)| e)
        .unwrap();
    n.batch(2, &[req(1, 10), req(2, 99)], &[]);
    n.batch(2, &[], &[reply(id), reply(12_345)]);
    assert_eq!(n.take(0, &mut out), 2);
    assert_eq!(
        n.done(),
        vec![
            Done::Ran { from: 2, id: 1 },
            Done::Completed { tag: 5, result: 0 },
        ]
    );
    assert!(n.wire.table().tasks.is_empty());
    // The request it could not run is answered from the worker's batch.
    assert!(!out.is_empty());
    let traffic = n.wire.membership().traffic().snapshot();
    assert_eq!((traffic.tasks_in, traffic.replies_in), (2, 2));
    assert_eq!(traffic.batches_in_by_workers, 2);
    assert_eq!(n.peer_gets(), None, "nothing left to the peer thread");
}

#[test]
fn a_batch_of_another_run_of_its_sender_goes_to_the_peer_thread() {
    let n = node();
    let mut out = WireBatch::default();
    let mut o = Outbox::default();
    o.request(1, &req(1, 10));
    let (_, kind, payload) = o.drain().pop().unwrap();
    // Node 2 is up as run 1: run 2's first batch (a restart, which only
    // the peer thread may take in) and a late one of run 0 are left.
    for incarnation in [2, 0] {
        let bytes = Frame {
            kind,
            sender: 2,
            incarnation,
            payload: &payload,
        }
        .encode()
        .unwrap();
        n.net.inject(1, bytes).unwrap();
        assert_eq!(n.take(0, &mut out), 0);
        assert_eq!(n.left(), Some(Some((Kind::TaskBatch, 2))));
    }
    assert!(n.done().is_empty(), "a batch of another run ran");
    assert_eq!(
        n.wire.membership().up_as(2),
        Ok(1),
        "the worker took a run in"
    );
    assert_eq!(n.wire.membership().traffic().snapshot().tasks_in, 0);
}

#[test]
fn frames_a_worker_does_not_handle_go_to_the_peer_thread_in_order() {
    let n = node();
    let mut out = WireBatch::default();
    n.frame(2, Kind::Heartbeat, &[]);
    n.batch(2, &[req(1, 10)], &[]);
    assert_eq!(n.take(0, &mut out), 0);
    assert_eq!(n.take(0, &mut out), 0, "nothing past a frame left behind");
    assert!(n.done().is_empty());
    // The peer thread takes the heartbeat (it owns what was left), the
    // worker the batch after it.
    assert_eq!(n.left(), Some(Some((Kind::Heartbeat, 2))));
    assert_eq!(n.left(), None);
    assert_eq!(n.take(0, &mut out), 1);
    assert_eq!(n.done(), vec![Done::Ran { from: 2, id: 1 }]);
    // Pool agreement's records, a node not up, a bad frame, a batch of
    // over 256 records: all left, in the order they came.
    n.batch(2, &[req(2, 10), req(3, CTL_SHARE)], &[]);
    n.batch(2, &[], &[reply(crate::cluster::pools::CONTROL_IDS + 1)]);
    n.batch(3, &[req(4, 10)], &[]);
    n.net.inject(1, b"not a frame".to_vec()).unwrap();
    let flood: Vec<Request> = (0..257).map(|i| req(100 + i, 10)).collect();
    n.batch(2, &flood, &[]);
    let expected = [
        Some((Kind::TaskBatch, 2)),
        Some((Kind::ReplyBatch, 2)),
        Some((Kind::TaskBatch, 3)),
        None,
        Some((Kind::TaskBatch, 2)),
    ];
    for e in expected {
        assert_eq!(n.take(0, &mut out), 0);
        assert_eq!(n.left(), Some(e));
    }
    assert!(n.done().is_empty(), "no record of a frame left behind ran");
    let traffic = n.wire.membership().traffic().snapshot();
    assert_eq!(traffic.tasks_in, 1, "frames left behind are not counted");
}

#[test]
fn the_socket_goes_back_to_the_peer_thread_when_released_or_unlooked_at() {
    let n = node();
    let mut out = WireBatch::default();
    let mut w = Watch::default();
    let t0 = Instant::now();
    assert!(n.intake.peer_receives(&mut w, t0));
    n.take(3, &mut out);
    assert!(!n.intake.peer_receives(&mut w, t0), "worker 3 claimed it");
    // Another worker neither claims it nor reads.
    n.batch(2, &[req(1, 10)], &[]);
    assert_eq!(n.take(4, &mut out), 0);
    n.intake.release(4);
    assert!(!n.intake.peer_receives(&mut w, t0));
    n.intake.release(3);
    assert!(n.intake.peer_receives(&mut w, t0), "released");
    assert_eq!(n.peer_gets(), Some(Some((Kind::TaskBatch, 2))));
    // A worker that keeps looking keeps it; one that stops loses it.
    n.take(3, &mut out);
    assert!(!n.intake.peer_receives(&mut w, t0));
    n.take(3, &mut out);
    assert!(!n.intake.peer_receives(&mut w, t0 + STEAL_AFTER));
    assert!(!n.intake.peer_receives(&mut w, t0 + STEAL_AFTER));
    assert!(n.intake.peer_receives(&mut w, t0 + STEAL_AFTER * 2));
    assert!(n.intake.peer_receives(&mut w, t0 + STEAL_AFTER * 2));
    // It claims it again at its next look.
    n.batch(2, &[req(2, 10)], &[]);
    assert_eq!(n.take(3, &mut out), 1);
    assert!(!n.intake.peer_receives(&mut w, t0 + STEAL_AFTER * 2));
}

#[test]
fn once_the_peer_thread_stops_workers_take_nothing() {
    let n = node();
    let mut out = WireBatch::default();
    let mut w = Watch::default();
    n.take(0, &mut out);
    n.batch(2, &[req(1, 10)], &[]);
    n.intake.shut_workers();
    assert!(n.intake.peer_receives(&mut w, Instant::now()));
    assert_eq!(n.take(0, &mut out), 0);
    assert!(
        n.intake.peer_receives(&mut w, Instant::now()),
        "not claimed"
    );
    assert!(n.done().is_empty());
    assert_eq!(n.peer_gets(), Some(Some((Kind::TaskBatch, 2))));
    // Closed: the transport is gone.
    n.batch(2, &[req(2, 10)], &[]);
    n.intake.close();
    assert_eq!(n.take(0, &mut out), 0);
    assert_eq!(n.peer_gets(), None);
    assert!(n.done().is_empty());
}

#[test]
fn without_a_host_workers_take_nothing() {
    let n = node();
    let one = n.net.attach(1);
    let intake = Intake::new(Box::new(one), None);
    n.batch(2, &[req(1, 10)], &[]);
    assert_eq!(intake.take(0, &n.wire, &mut WireBatch::default()), 0);
    assert!(
        intake.peer_receives(&mut Watch::default(), Instant::now()),
        "the socket is never claimed"
    );
    assert!(intake.lock().recv(Duration::ZERO).unwrap().is_some());
}

#[test]
fn a_busy_worker_looks_only_while_it_holds_the_claim() {
    let n = node();
    let mut out = WireBatch::default();
    let mut w = Watch::default();
    n.batch(2, &[req(1, 10)], &[]);
    assert_eq!(n.intake.take_held(0, &n.wire, &mut out), 0);
    assert!(
        n.intake.peer_receives(&mut w, Instant::now()),
        "a busy look claims nothing"
    );
    assert!(n.done().is_empty());
    assert_eq!(n.take(0, &mut out), 1, "an idle look claims");
    n.batch(2, &[req(2, 10)], &[]);
    assert_eq!(n.intake.take_held(0, &n.wire, &mut out), 1);
    n.batch(2, &[req(3, 10)], &[]);
    assert_eq!(n.intake.take_held(1, &n.wire, &mut out), 0, "not its claim");
    assert_eq!(
        n.done(),
        vec![Done::Ran { from: 2, id: 1 }, Done::Ran { from: 2, id: 2 }]
    );
    n.intake.release(0);
    assert!(n.intake.peer_receives(&mut w, Instant::now()));
    assert_eq!(n.peer_gets(), Some(Some((Kind::TaskBatch, 2))));
}
