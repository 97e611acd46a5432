//! The peer thread over each transport backend — the in-process one and
//! ZeroMQ on 127.0.0.1..3 — one suite for both: membership, failures,
//! rejoins, garbage and status requests. Every wait is bounded (a generous
//! limit that fails the test, never a timing assertion).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::frame::{Frame, Kind, encode_batch};
use super::membership::{Membership, PeerEvent, PeerState};
use super::peer::{Cluster, NodeStatusError, PeerSettings};
use super::pools::{NoPools, Outgoing, PoolHost};
use super::transport::{InProcNet, PeerTransport};
use super::zmq_peer::ZmqPeers;
use crate::remote::inflight::RemoteError;
use crate::remote::record::{Record, Reply, Request};
use chi_sdk::auth::ControlKey;
use chi_sdk::transport::PLAIN_USER;
use chi_sdk::types::{ContainerId, PoolId};

const LIMIT: Duration = Duration::from_secs(20);
const TIMEOUT: Duration = Duration::from_millis(300);

fn hosts(n: u32) -> Vec<(String, IpAddr)> {
    (1..=n)
        .map(|i| (format!("n{i}"), format!("127.0.0.{i}").parse().unwrap()))
        .collect()
}

/// A network of nodes 1 to 3.
trait Net {
    /// The transport of node `id` (again after a crash: a restart).
    fn attach(&self, id: u32) -> Box<dyn PeerTransport>;
    /// Node `id` crashed: frames to it go nowhere.
    fn detach(&self, id: u32);
    /// Delivers raw bytes to node `to`'s peer socket, from a hostfile address.
    fn inject(&self, to: u32, bytes: Vec<u8>);
}

impl Net for InProcNet {
    fn attach(&self, id: u32) -> Box<dyn PeerTransport> {
        Box::new(InProcNet::attach(self, id))
    }
    fn detach(&self, id: u32) {
        InProcNet::detach(self, id)
    }
    fn inject(&self, to: u32, bytes: Vec<u8>) {
        InProcNet::inject(self, to, bytes).unwrap()
    }
}

/// ZeroMQ on 127.0.0.1..3 at a port free on all three, with a cluster key.
struct ZmqNet {
    port: u16,
    key: ControlKey,
    ctx: zmq::Context,
    injectors: Mutex<Vec<zmq::Socket>>,
}

impl ZmqNet {
    fn new() -> ZmqNet {
        let port = loop {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let p = l.local_addr().unwrap().port();
            drop(l);
            if (1..=3).all(|k| std::net::TcpListener::bind((format!("127.0.0.{k}"), p)).is_ok()) {
                break p;
            }
        };
        ZmqNet {
            port,
            key: ControlKey::generate().unwrap(),
            ctx: zmq::Context::new(),
            injectors: Mutex::new(Vec::new()),
        }
    }

    /// A DEALER from `from` to node `to`'s peer socket, presenting `key`.
    fn dealer(&self, from: u32, to: u32, key: &ControlKey) -> zmq::Socket {
        let s = self.ctx.socket(zmq::DEALER).unwrap();
        s.set_linger(1000).unwrap();
        s.set_plain_username(Some(PLAIN_USER)).unwrap();
        s.set_plain_password(Some(&key.to_hex())).unwrap();
        s.connect(&format!(
            "tcp://127.0.0.{from}:0;127.0.0.{to}:{}",
            self.port
        ))
        .unwrap();
        s
    }

    fn bind(&self, id: u32) -> ZmqPeers {
        let h = hosts(3);
        let peers: Vec<(u32, IpAddr)> = (1..=3u32)
            .filter(|&k| k != id)
            .map(|k| (k, h[k as usize - 1].1))
            .collect();
        let allowed: std::collections::HashSet<IpAddr> = h.iter().map(|(_, ip)| *ip).collect();
        let t0 = Instant::now();
        // A restarted node may find its old socket's port not yet released.
        loop {
            let me = h[id as usize - 1].1;
            match ZmqPeers::bind(id, me, self.port, &peers, allowed.clone(), &self.key) {
                Ok(p) => return p,
                Err(e) => {
                    assert!(t0.elapsed() < LIMIT, "binding node {id}: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

impl Net for ZmqNet {
    fn attach(&self, id: u32) -> Box<dyn PeerTransport> {
        Box::new(self.bind(id))
    }
    fn detach(&self, _id: u32) {
        // The node's sockets close when its Cluster vanishes.
    }
    fn inject(&self, to: u32, bytes: Vec<u8>) {
        let s = self.dealer(1, to, &self.key);
        s.send(bytes, 0).unwrap();
        self.injectors.lock().unwrap().push(s);
    }
}

fn node(net: &dyn Net, id: u32, incarnation: u64) -> Cluster {
    hosting(net.attach(id), id, incarnation, Box::new(NoPools))
}

/// Node `id` over `transport`, with `host`; its status report is
/// `{"node":id}`.
fn hosting(
    transport: Box<dyn PeerTransport>,
    id: u32,
    incarnation: u64,
    host: Box<dyn PoolHost>,
) -> Cluster {
    let m = Arc::new(Membership::new(id, incarnation, &hosts(3), TIMEOUT));
    let report = Box::new(move || format!("{{\"node\":{id}}}").into_bytes());
    Cluster::start_with_pools(
        transport,
        m,
        PeerSettings {
            heartbeat: Duration::from_millis(20),
            task_timeout: Duration::from_secs(5),
        },
        report,
        host,
    )
    .unwrap()
}

/// An empty request `id` of method 10 for container `container` of a pool
/// over the cluster.
fn request(id: u64, container: u32) -> Request {
    Request {
        id,
        pool: PoolId(1 << 40),
        container: ContainerId(container),
        method: 10,
        flags: 0,
        body: Vec::new(),
    }
}

/// A frame of `kind` (a batch) carrying `records`, from run `incarnation`
/// of node `sender`.
fn batch_frame(kind: Kind, sender: u32, incarnation: u64, records: &[Record]) -> Vec<u8> {
    let encoded: Vec<Vec<u8>> = records
        .iter()
        .map(|r| {
            let mut v = Vec::new();
            r.encode(&mut v);
            v
        })
        .collect();
    let batch = encode_batch(encoded.iter().map(Vec::as_slice)).unwrap();
    Frame {
        kind,
        sender,
        incarnation,
        payload: &batch,
    }
    .encode()
    .unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn state(c: &Cluster, of: u32) -> PeerState {
    c.membership().state_of(of).unwrap().0
}

/// One test of the suite, for each backend.
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod inproc {
            $(#[test]
            fn $name() {
                super::$name(&super::InProcNet::new());
            })*
        }
        mod zeromq {
            $(#[test]
            fn $name() {
                super::$name(&super::ZmqNet::new());
            })*
        }
    };
}

for_each_backend!(
    three_nodes_meet_fail_and_rejoin,
    status_requests_round_trip_and_fail_clearly,
    garbage_is_refused_and_counted_and_the_node_keeps_going,
    a_claim_left_unused_is_taken_back,
);

/// A host whose copy for the workers lets them claim the peer socket.
struct ClaimHost;

impl PoolHost for ClaimHost {
    fn for_workers(&self) -> Option<Box<dyn PoolHost>> {
        Some(Box::new(NoPools))
    }
}

/// A worker that claims the peer socket and stops looking at it (a long
/// handler) does not stop the node hearing its peers: the peer thread takes
/// the socket back (and, given back, reads it at once).
fn a_claim_left_unused_is_taken_back(net: &dyn Net) {
    let a = hosting(net.attach(1), 1, 10, Box::new(ClaimHost));
    let b = node(net, 2, 20);
    wait_for("both up", || {
        state(&a, 2) == PeerState::Up && state(&b, 1) == PeerState::Up
    });
    for round in 0..4 {
        a.intake()
            .take(7, a.wire(), &mut super::wire::WireBatch::default());
        if round == 1 {
            a.intake().release(7);
        }
        let answer = b.node_status(1, Duration::from_secs(5));
        assert_eq!(answer.as_deref(), Ok(&b"{\"node\":1}"[..]), "round {round}");
    }
    assert_eq!(state(&b, 1), PeerState::Up);
    assert_eq!(state(&a, 2), PeerState::Up);
}

fn three_nodes_meet_fail_and_rejoin(net: &dyn Net) {
    let a = node(net, 1, 10);
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    a.membership()
        .subscribe(move |ev| e.lock().unwrap().push(*ev));
    let b = node(net, 2, 20);
    let c = node(net, 3, 30);
    wait_for("all up", || {
        [(&a, 2), (&a, 3), (&b, 1), (&b, 3), (&c, 1), (&c, 2)]
            .iter()
            .all(|(n, of)| state(n, *of) == PeerState::Up)
    });
    // A crash: node 3 falls silent.
    net.detach(3);
    c.vanish();
    wait_for("node 3 down", || {
        state(&a, 3) == PeerState::Down && state(&b, 3) == PeerState::Down
    });
    assert_eq!(state(&a, 2), PeerState::Up);
    assert!(matches!(
        a.node_status(3, Duration::from_secs(1)),
        Err(NodeStatusError::Down { node: 3, .. })
    ));
    // It comes back as a new incarnation.
    let c = node(net, 3, 31);
    wait_for("node 3 back", || {
        state(&a, 3) == PeerState::Up && state(&b, 3) == PeerState::Up
    });
    let seen = events.lock().unwrap().clone();
    assert!(seen.contains(&PeerEvent::Up {
        node: 3,
        incarnation: 31,
        rejoined: true
    }));
    assert!(seen.iter().any(|e| matches!(
        e,
        PeerEvent::Down {
            node: 3,
            incarnation: 30,
            ..
        }
    )));
    // A stop says goodbye: node 2 goes down at once (well within the timeout
    // we do not assert on, but before its own restart).
    b.stop();
    wait_for("node 2 down after goodbye", || {
        state(&a, 2) == PeerState::Down
    });
    drop(c);
}

fn status_requests_round_trip_and_fail_clearly(net: &dyn Net) {
    let a = node(net, 1, 10);
    let b = node(net, 2, 20);
    wait_for("1 and 2 up", || {
        state(&a, 2) == PeerState::Up && state(&b, 1) == PeerState::Up
    });
    let r = a.node_status(2, Duration::from_secs(5)).unwrap();
    assert_eq!(r, b"{\"node\":2}");
    assert!(matches!(
        a.node_status(3, Duration::from_secs(1)),
        Err(NodeStatusError::NeverHeard { node: 3 })
    ));
    assert!(matches!(
        a.node_status(9, Duration::from_secs(1)),
        Err(NodeStatusError::NoSuchNode { node: 9, nodes: 3 })
    ));
    drop(b);
}

fn garbage_is_refused_and_counted_and_the_node_keeps_going(net: &dyn Net) {
    let a = node(net, 1, 10);
    let b = node(net, 2, 20);
    wait_for("1 and 2 up", || {
        state(&a, 2) == PeerState::Up && state(&b, 1) == PeerState::Up
    });
    let good = |kind, sender, payload: &[u8]| {
        Frame {
            kind,
            sender,
            incarnation: 5,
            payload,
        }
        .encode()
        .unwrap()
    };
    let mut wrong_version = good(Kind::Heartbeat, 2, b"");
    wrong_version[4] = 99;
    let mut huge = good(Kind::Heartbeat, 2, b"");
    huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut lying_batch = encode_batch([b"abc".as_slice()]).unwrap();
    lying_batch[0..4].copy_from_slice(&1000u32.to_le_bytes());
    let garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"hello".to_vec(),
        vec![0xff; 100],
        good(Kind::Heartbeat, 2, b"")[..10].to_vec(),
        wrong_version,
        huge,
        good(Kind::Heartbeat, 1, b""),  // from itself
        good(Kind::Heartbeat, 77, b""), // not in the hostfile
        good(Kind::StatusRequest, 2, b"123"),
        good(Kind::StatusReply, 2, b"1"),
        good(Kind::TaskBatch, 2, &lying_batch),
    ];
    let n = garbage.len() as u64;
    for g in garbage {
        net.inject(1, g);
    }
    wait_for("every garbage frame refused", || {
        a.membership().refused() >= n
    });
    assert_eq!(a.membership().refused(), n);
    // Still up and answering.
    assert_eq!(state(&a, 2), PeerState::Up);
    let r = b.node_status(1, Duration::from_secs(5));
    assert!(r.is_ok(), "{r:?}");
}

/// The ZeroMQ transport alone: refused messages (several parts) are
/// skipped, a receive of no time skips at most one (a stream of them never
/// holds the peer thread), and a frame ends a receive that waits.
#[test]
fn zeromq_recv_skips_refused_messages_within_its_time() {
    let net = ZmqNet::new();
    let mut t = net.attach(1);
    let s = net.dealer(2, 1, &net.key);
    let refused = 200u32;
    for _ in 0..refused {
        s.send_multipart([b"a".as_slice(), b"b"], 0).unwrap();
    }
    s.send(b"good".as_slice(), 0).unwrap();
    // Each receive of no time returns `None` after one refused message (or
    // none yet arrived), so it takes at least one call per refused message.
    let t0 = Instant::now();
    let mut nones = 0u32;
    let frame = loop {
        assert!(t0.elapsed() < LIMIT, "the good frame never came");
        match t.recv(Duration::ZERO).unwrap() {
            Some(f) => break f,
            None => nones += 1,
        }
    };
    assert_eq!(frame.bytes, b"good");
    assert_eq!(frame.from, Some("127.0.0.2".parse().unwrap()));
    assert!(
        nones >= refused,
        "{nones} empty receives for {refused} refused messages"
    );
    // A later frame ends a receive that waits for it.
    s.send(b"next".as_slice(), 0).unwrap();
    let f = t.recv(LIMIT).unwrap().expect("the next frame");
    assert_eq!(f.bytes, b"next");
}

/// A host whose `run` of a task from node 2 blocks until the test says, and
/// that records what it completed (the tags the tasks were sent with).
struct StopHost {
    hold: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    running: std::sync::mpsc::SyncSender<()>,
    completed: Arc<Mutex<Vec<(u32, String)>>>,
    ran_from_self: Arc<std::sync::atomic::AtomicBool>,
}

impl PoolHost for StopHost {
    fn run(&self, from: u32, _req: &Request) -> Result<(), String> {
        if from == 1 {
            // SeqCst: a flag the test reads after joining the peer thread
            // (the join orders it anyway).
            self.ran_from_self
                .store(true, std::sync::atomic::Ordering::SeqCst);
        } else if let Some(hold) = self.hold.lock().unwrap().take() {
            self.running.send(()).unwrap();
            let _ = hold.recv_timeout(LIMIT);
        }
        Ok(())
    }
    fn complete(&self, back: Outgoing, outcome: Result<Reply, RemoteError>) {
        let tag = *back.downcast::<u32>().unwrap();
        let what = match outcome {
            Ok(r) => format!("reply {}", r.result),
            Err(e) => e.to_string(),
        };
        self.completed.lock().unwrap().push((tag, what));
    }
}

/// At stop, the commands handed over after the peer thread's last look are
/// still taken: a task for this node itself (a broadcast's local replica)
/// fails saying the runtime stops — before, it was lost in the channel and
/// its broadcast never gathered — and a hand-over after the stop fails at
/// once.
#[test]
fn commands_handed_over_at_stop_are_ended_not_lost() {
    let net = InProcNet::new();
    let (release, hold) = std::sync::mpsc::channel();
    let (running, is_running) = std::sync::mpsc::sync_channel(1);
    let completed = Arc::new(Mutex::new(Vec::new()));
    let ran_from_self = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let host = StopHost {
        hold: Mutex::new(Some(hold)),
        running,
        completed: completed.clone(),
        ran_from_self: ran_from_self.clone(),
    };
    let a = hosting(Box::new(net.attach(1)), 1, 10, Box::new(host));
    let req = |id| request(id, 0);
    // Node 2 sends node 1 a task: the peer thread runs it and is held
    // there, after its look at the commands of this turn.
    let frame = batch_frame(Kind::TaskBatch, 2, 5, &[Record::Request(req(1))]);
    net.inject(1, frame).unwrap();
    is_running.recv_timeout(LIMIT).unwrap();
    // Meanwhile: a replica for node 1 itself is handed over, and the
    // runtime stops; the peer thread ends its loop right after the task.
    let asker = a.pool_asker();
    asker.send_task(1, req(0), Box::new(7u32)).unwrap();
    a.signal_stop();
    release.send(()).unwrap();
    drop(a);
    assert_eq!(
        *completed.lock().unwrap(),
        [(
            7,
            "this runtime is stopping; its peer link is closed".to_owned()
        )]
    );
    // SeqCst: pairs with the store in `StopHost::run` (see there).
    assert!(
        !ran_from_self.load(std::sync::atomic::Ordering::SeqCst),
        "the replica ran although the runtime had stopped"
    );
    let late = asker.send_task(1, req(0), Box::new(8u32));
    assert!(late.unwrap_err().contains("stopping"));
    assert_eq!(completed.lock().unwrap().len(), 1);
}

/// The ZeroMQ transport refuses, during the handshake, a connection that
/// does not present the cluster key (a wrong one, counted; or none, without
/// PLAIN): its frames never arrive (a Hello from a hostfile address,
/// claiming node 2); the same frame with the key gets in.
#[test]
fn zeromq_peers_without_the_cluster_key_are_refused() {
    let net = ZmqNet::new();
    let mut t = net.bind(1);
    let hello = Frame {
        kind: Kind::Hello,
        sender: 2,
        incarnation: 5,
        payload: b"",
    }
    .encode()
    .unwrap();
    // Without PLAIN at all: ZeroMQ refuses the mechanism itself.
    let bare = net.ctx.socket(zmq::DEALER).unwrap();
    bare.set_linger(0).unwrap();
    bare.connect(&format!("tcp://127.0.0.2:0;127.0.0.1:{}", net.port))
        .unwrap();
    bare.send(hello.as_slice(), zmq::DONTWAIT).ok();
    let wrong = ControlKey::generate().unwrap();
    let outsider = net.dealer(2, 1, &wrong);
    outsider.send(hello.as_slice(), zmq::DONTWAIT).ok();
    let t0 = Instant::now();
    while t.refused_connections() == 0 {
        assert!(
            t0.elapsed() < LIMIT,
            "no refusal of a connection without the key"
        );
        assert!(
            t.recv(Duration::from_millis(10)).unwrap().is_none(),
            "a frame got in"
        );
    }
    // Whatever the outsider keeps trying, nothing of it arrives.
    for _ in 0..20 {
        assert!(
            t.recv(Duration::from_millis(10)).unwrap().is_none(),
            "a frame got in"
        );
    }
    let member = net.dealer(2, 1, &net.key);
    member.send(hello.as_slice(), 0).unwrap();
    let t0 = Instant::now();
    let got = loop {
        if let Some(r) = t.recv(Duration::from_millis(50)).unwrap() {
            break r;
        }
        assert!(
            t0.elapsed() < LIMIT,
            "the frame with the key did not arrive"
        );
    };
    assert_eq!(got.bytes, hello);
}

mod floods;
mod restarts;
