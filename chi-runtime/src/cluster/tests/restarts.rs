//! Restarts, over the in-process backend: what node 1 sent a run of node 2
//! fails as soon as a later run of node 2 is heard (not at
//! `cluster.task_timeout`), a frame of the earlier run that comes after is
//! dropped, and a run of node 1 numbers its requests past an earlier run's,
//! so a reply meant for that run completes nothing of this one. The nodes'
//! peers never go down by silence here (a peer timeout of an hour): only a
//! restart can fail a task.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{InProcNet, batch_frame, hosts, request, state, wait_for};
use crate::cluster::frame::Kind;
use crate::cluster::membership::{Membership, PeerState};
use crate::cluster::peer::{Cluster, PeerSettings};
use crate::cluster::pools::{Outgoing, PoolHost};
use crate::remote::inflight::RemoteError;
use crate::remote::record::{Record, Reply, Request};

const HOUR: Duration = Duration::from_secs(3600);

/// Node 1's host: records what it completes (the tag a task was sent with,
/// and its outcome).
struct Recorder(Arc<Mutex<Vec<(u32, String)>>>);

impl PoolHost for Recorder {
    fn complete(&self, back: Outgoing, outcome: Result<Reply, RemoteError>) {
        let tag = *back.downcast::<u32>().unwrap();
        let what = match outcome {
            Ok(r) => format!("reply {}", r.result),
            Err(e) => e.to_string(),
        };
        self.0.lock().unwrap().push((tag, what));
    }
}

/// Node 2's host: takes every task, records its request id, never answers.
struct Silent(Arc<Mutex<Vec<u64>>>);

impl PoolHost for Silent {
    fn run(&self, _from: u32, req: &Request) -> Result<(), String> {
        self.0.lock().unwrap().push(req.id);
        Ok(())
    }
}

/// Node `id` as `incarnation`, whose peers go down by a restart or a
/// goodbye only, and whose tasks wait an hour for their replies.
fn patient(net: &InProcNet, id: u32, incarnation: u64, host: Box<dyn PoolHost>) -> Cluster {
    let m = Arc::new(Membership::new(id, incarnation, &hosts(3), HOUR));
    Cluster::start_with_pools(
        Box::new(net.attach(id)),
        m,
        PeerSettings {
            heartbeat: Duration::from_millis(20),
            task_timeout: HOUR,
        },
        Box::new(Vec::new),
        host,
    )
    .unwrap()
}

fn task() -> Request {
    request(0, 1)
}

/// A batch with the reply `result` to request `id`, from run `incarnation`
/// of node `sender`.
fn reply_frame(sender: u32, incarnation: u64, id: u64, result: i32) -> Vec<u8> {
    let reply = Reply {
        id,
        result,
        message: String::new(),
        body: Vec::new(),
    };
    batch_frame(
        Kind::ReplyBatch,
        sender,
        incarnation,
        &[Record::Reply(reply)],
    )
}

fn both_up(a: &Cluster, b: &Cluster) {
    wait_for("1 and 2 up", || {
        state(a, 2) == PeerState::Up && state(b, 1) == PeerState::Up
    });
}

#[test]
fn a_restart_fails_what_the_earlier_run_was_sent_and_its_late_frames_are_dropped() {
    let net = InProcNet::new();
    let done = Arc::new(Mutex::new(Vec::new()));
    let ran = Arc::new(Mutex::new(Vec::new()));
    let a = patient(&net, 1, 10, Box::new(Recorder(done.clone())));
    let b = patient(&net, 2, 20, Box::new(Silent(ran.clone())));
    both_up(&a, &b);
    a.pool_asker().send_task(2, task(), Box::new(7u32)).unwrap();
    wait_for("node 2 has the task", || ran.lock().unwrap().len() == 1);
    // Node 2 crashes and comes back before anyone could miss it.
    net.detach(2);
    b.vanish();
    let b = patient(&net, 2, 21, Box::new(Silent(ran.clone())));
    wait_for("the task sent to run 20 failed", || {
        !done.lock().unwrap().is_empty()
    });
    assert_eq!(
        *done.lock().unwrap(),
        [(7, RemoteError::NodeDown { node: 2 }.to_string())]
    );
    both_up(&a, &b);
    // Run 21 gets the next task; a reply of run 20 to its id, late, is
    // dropped, and run 21's own is taken (frames are handled in order).
    a.pool_asker().send_task(2, task(), Box::new(8u32)).unwrap();
    wait_for("run 21 has the task", || ran.lock().unwrap().len() == 2);
    let id = ran.lock().unwrap()[1];
    net.inject(1, reply_frame(2, 20, id, 1)).unwrap();
    net.inject(1, reply_frame(2, 21, id, 0)).unwrap();
    wait_for("task 8 completed", || done.lock().unwrap().len() == 2);
    assert_eq!(done.lock().unwrap()[1], (8, "reply 0".to_owned()));
    assert_eq!(state(&a, 2), PeerState::Up);
    drop(b);
}

#[test]
fn a_later_run_numbers_its_requests_past_an_earlier_runs() {
    let net = InProcNet::new();
    let done = Arc::new(Mutex::new(Vec::new()));
    let ran = Arc::new(Mutex::new(Vec::new()));
    // Incarnations are microseconds since the epoch: the later run started
    // a second after the earlier.
    let t0 = 1_800_000_000_000_000;
    let a = patient(&net, 1, t0, Box::new(Recorder(done.clone())));
    let b = patient(&net, 2, 20, Box::new(Silent(ran.clone())));
    both_up(&a, &b);
    a.pool_asker().send_task(2, task(), Box::new(7u32)).unwrap();
    wait_for("node 2 has the task", || ran.lock().unwrap().len() == 1);
    net.detach(1);
    a.vanish();
    let a = patient(&net, 1, t0 + 1_000_000, Box::new(Recorder(done.clone())));
    both_up(&a, &b);
    a.pool_asker().send_task(2, task(), Box::new(9u32)).unwrap();
    wait_for("node 2 has the task", || ran.lock().unwrap().len() == 2);
    let (earlier, later) = {
        let ran = ran.lock().unwrap();
        (ran[0], ran[1])
    };
    assert!(later > earlier, "ids {earlier} then {later}");
    // Node 2's reply to the earlier run's task finds nothing to complete
    // in the later run; the later run's own reply completes its task.
    net.inject(1, reply_frame(2, 20, earlier, 1)).unwrap();
    net.inject(1, reply_frame(2, 20, later, 0)).unwrap();
    wait_for("task 9 completed", || !done.lock().unwrap().is_empty());
    assert_eq!(*done.lock().unwrap(), [(9, "reply 0".to_owned())]);
    drop(b);
}
