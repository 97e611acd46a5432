//! The wire over the in-process transport: batches, failures, the close.

use std::net::IpAddr;

use chi_sdk::types::{ContainerId, PoolId};

use super::*;
use crate::cluster::frame::decode_batch;
use crate::cluster::transport::{InProcNet, InProcPeer, PeerTransport};
use crate::remote::record::Record;

/// Node 1's wire on an in-process network of nodes 1 to 3, with the
/// endpoints of nodes 2 and 3; `up` are the peers node 1 has heard.
fn wire(up: &[u32]) -> (Wire, InProcNet, InProcPeer, InProcPeer) {
    let hosts: Vec<(String, IpAddr)> = (1..=3)
        .map(|i| (format!("n{i}"), format!("127.0.0.{i}").parse().unwrap()))
        .collect();
    let m = Arc::new(Membership::new(1, 7, &hosts, Duration::from_secs(5)));
    for &n in up {
        assert!(m.heard(n, 1, Instant::now()));
    }
    let net = InProcNet::new();
    let one = net.attach(1);
    let (two, three) = (net.attach(2), net.attach(3));
    let w = Wire::new(m, one.sender(), Duration::from_secs(5));
    (w, net, two, three)
}

/// What a flush of `b` failed.
fn flushed(b: &mut WireBatch, w: &Wire) -> Vec<(Outgoing, RemoteError)> {
    let mut failed = Vec::new();
    b.flush(w, |f| failed = f);
    failed
}

fn req(id: u64) -> Request {
    Request {
        id,
        pool: PoolId(9),
        container: ContainerId(1),
        method: 10,
        flags: 0,
        body: vec![id as u8; 3],
    }
}

/// Registers a task for `node` (its value: `tag`) and queues its request.
fn queue(w: &Wire, b: &mut WireBatch, node: u32, tag: u32) -> u64 {
    let id = w.register(node, Box::new(tag)).map_err(|(_, e)| e).unwrap();
    b.request(node, &req(id));
    id
}

/// The records of one frame from node 1: its kind and records.
fn records(bytes: &[u8]) -> (Kind, Vec<Record>) {
    let f = Frame::decode(bytes).unwrap();
    assert_eq!((f.sender, f.incarnation), (1, 7));
    let rs = decode_batch(f.kind, f.payload).unwrap();
    (
        f.kind,
        rs.iter().map(|r| Record::decode(r).unwrap()).collect(),
    )
}

#[test]
fn a_workers_records_leave_in_one_frame_per_node_and_kind() {
    let (w, _net, mut two, mut three) = wire(&[2, 3]);
    let mut b = WireBatch::default();
    let ids: Vec<u64> = (0..3).map(|t| queue(&w, &mut b, 2, t)).collect();
    let other = queue(&w, &mut b, 3, 9);
    let reply = Reply {
        id: 77,
        result: 0,
        message: String::new(),
        body: vec![1],
    };
    b.reply(2, &reply);
    assert!(!b.is_empty());
    assert!(flushed(&mut b, &w).is_empty());
    assert!(b.is_empty() && !b.due());
    let busy = Duration::from_micros(100);
    assert_eq!(b.busy_period(busy), busy * WireBatch::BUSY_FACTOR);
    b.slept();
    assert_eq!(b.busy_period(busy), busy);
    let (kind, rs) = records(&two.try_recv().unwrap());
    assert_eq!(kind, Kind::TaskBatch);
    assert_eq!(
        rs,
        ids.iter()
            .map(|&i| Record::Request(req(i)))
            .collect::<Vec<_>>()
    );
    let (kind, rs) = records(&two.try_recv().unwrap());
    assert_eq!((kind, rs), (Kind::ReplyBatch, vec![Record::Reply(reply)]));
    assert!(two.try_recv().is_none());
    let (kind, rs) = records(&three.try_recv().unwrap());
    assert_eq!(
        (kind, rs),
        (Kind::TaskBatch, vec![Record::Request(req(other))])
    );
    // The tasks wait in the shared table until their replies come.
    let mut t = w.table();
    assert_eq!(t.tasks.len(), 4);
    let back = t.tasks.take(other, 3).unwrap();
    assert_eq!(*back.downcast::<u32>().unwrap(), 9);
    drop(t);
    let traffic = w.membership().traffic().snapshot();
    assert_eq!((traffic.tasks_out, traffic.replies_out), (4, 1));
    assert_eq!(traffic.batches_out, 3);
}

#[test]
fn a_batch_is_due_when_full_or_old() {
    let (w, _net, _two, _three) = wire(&[2]);
    let mut b = WireBatch::default();
    assert!(!b.due());
    queue(&w, &mut b, 2, 0);
    std::thread::sleep(WireBatch::MAX_AGE * 20);
    assert!(b.due(), "a record older than MAX_AGE");
    flushed(&mut b, &w);
    for t in 0..WireBatch::FULL as u32 {
        queue(&w, &mut b, 2, t);
    }
    assert!(b.due(), "a full batch");
}

#[test]
fn a_batch_that_cannot_be_sent_fails_its_tasks_at_once() {
    let (w, net, mut two, _three) = wire(&[2, 3]);
    net.detach(3);
    let mut b = WireBatch::default();
    let kept = queue(&w, &mut b, 2, 2);
    queue(&w, &mut b, 3, 3);
    b.reply(3, &Reply::failed("lost".to_owned()));
    let failed = flushed(&mut b, &w);
    assert_eq!(failed.len(), 1);
    let (back, e) = failed.into_iter().next().unwrap();
    assert_eq!(*back.downcast::<u32>().unwrap(), 3);
    assert_eq!(e, RemoteError::Unreachable { node: 3 });
    assert!(e.to_string().contains("node 3 could not be reached"), "{e}");
    assert!(two.try_recv().is_some());
    let mut t = w.table();
    assert_eq!(t.tasks.len(), 1);
    assert!(t.tasks.take(kept, 2).is_some());
}

#[test]
fn register_refuses_nodes_not_up_and_a_closed_wire() {
    let (w, _net, _two, _three) = wire(&[2]);
    let (back, e) = w.register(3, Box::new(3u32)).unwrap_err();
    assert_eq!(e, RemoteError::NotHeard { node: 3 });
    assert_eq!(*back.downcast::<u32>().unwrap(), 3);
    w.register(2, Box::new(2u32)).map_err(|(_, e)| e).unwrap();
    let waiting = w.close();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].1, RemoteError::Stopping);
    let (_, e) = w.register(2, Box::new(0u32)).unwrap_err();
    assert_eq!(e, RemoteError::Stopping);
    assert!(w.table().tasks.is_empty());
}

#[test]
fn replicas_register_all_at_once_and_one_for_a_node_not_up_fails_at_the_next_look() {
    let (w, _net, _two, _three) = wire(&[2]);
    let ids = w
        .register_replicas(vec![(2, Box::new(2u32)), (3, Box::new(3u32))])
        .unwrap();
    assert!(ids[0].is_some() && ids[1].is_none());
    let failed = w.table().tasks.expire(Instant::now());
    assert_eq!(failed.len(), 1);
    assert_eq!(*failed[0].0.downcast_ref::<u32>().unwrap(), 3);
    assert_eq!(failed[0].1, RemoteError::NotHeard { node: 3 });
    assert_eq!(w.table().tasks.len(), 1, "the replica sent waits");
    w.close();
    let e = w.register_replicas(vec![(2, Box::new(0u32))]).unwrap_err();
    assert_eq!(e, RemoteError::Stopping);
    assert!(w.table().tasks.is_empty(), "none registered once closed");
}

#[test]
fn after_the_close_no_worker_frame_leaves_but_the_peer_threads_do() {
    let (w, _net, mut two, _three) = wire(&[2]);
    let mut b = WireBatch::default();
    queue(&w, &mut b, 2, 1);
    b.reply(2, &Reply::failed("shut down".to_owned()));
    let failed = w.close();
    assert_eq!(failed.len(), 1, "the queued request failed by the close");
    assert!(flushed(&mut b, &w).is_empty());
    assert!(b.is_empty());
    assert!(two.try_recv().is_none(), "a worker frame after the close");
    // The peer thread's goodbye still goes.
    w.send(2, Kind::Goodbye, &[]).unwrap();
    let f = two.try_recv().unwrap();
    assert_eq!(Frame::decode(&f).unwrap().kind, Kind::Goodbye);
}

#[test]
fn a_split_batch_that_fails_fails_only_the_tasks_of_its_frame() {
    /// Fails every send after the first `ok`.
    struct FailAfter(std::sync::atomic::AtomicU32, Arc<dyn PeerSend>);
    impl PeerSend for FailAfter {
        fn send(&self, to: u32, frame: &[u8]) -> Result<(), PeerError> {
            // Relaxed: a test counter on one thread.
            if self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                return Err(PeerError::Unreachable { node: to });
            }
            self.1.send(to, frame)
        }
    }
    let (w0, _net, mut two, _three) = wire(&[2]);
    let w = Wire::new(
        w0.membership().clone(),
        Arc::new(FailAfter(1.into(), w0.sender.clone())),
        Duration::from_secs(5),
    );
    let mut b = WireBatch::default();
    // Each request about half a frame: two frames of one request each.
    let big = super::super::frame::MAX_PAYLOAD / 2 + 1;
    let mut ids = Vec::new();
    for tag in 0..2u32 {
        let id = w.register(2, Box::new(tag)).map_err(|(_, e)| e).unwrap();
        b.request(
            2,
            &Request {
                body: vec![0; big],
                ..req(id)
            },
        );
        ids.push(id);
    }
    let failed = flushed(&mut b, &w);
    assert_eq!(failed.len(), 1, "only the second frame's task");
    assert_eq!(*failed[0].0.downcast_ref::<u32>().unwrap(), 1);
    let (kind, rs) = records(&two.try_recv().unwrap());
    assert_eq!(kind, Kind::TaskBatch);
    assert!(matches!(&rs[..], [Record::Request(q)] if q.id == ids[0]));
    let mut t = w.table();
    assert_eq!(t.tasks.len(), 1, "the sent task still waits for its reply");
    assert!(t.tasks.take(ids[0], 2).is_some());
}
