//! Three real runtimes on 127.0.0.1, .2 and .3 form a cluster: each shows all
//! three up; a node killed with SIGKILL is shown down by the others, which
//! keep serving their clients; restarted, it rejoins as a new incarnation.
//! Garbage sent to a runtime's peer port (random bytes, truncated headers,
//! huge length fields, wrong versions, many-part and oversized messages,
//! frames from an address outside the hostfile, a frame whose sender id is
//! not the node of its source address) leaves it serving. A `status --node
//! N` of a node that fell silent holds up no other request of the control
//! socket. A periodic task in a frame from a peer is refused, never
//! started. A reply whose outputs do not load fails its task, naming the
//! load, and leaves nothing allocated. The local-cluster launcher starts and
//! stops N nodes.
//!
//! Heartbeats every 100 ms, peers down after 1 s ([`support::cluster`]). No
//! timing is asserted: every wait is bounded by a generous limit that fails
//! the test.

mod support;

use std::io::Write;
use std::time::Duration;

use chi_runtime::cluster::frame::{Frame, Kind};
use chi_sdk::client::Client;
use support::cluster::{ClusterSetup, Node, PEER_TIMEOUT, node_addr};
use support::{Watchdog, assert_no_process_left, run_cli, runtime_exe, wait_until};

/// Bound on each wait for the cluster to change (far above the 1 s timeout).
const CHANGE_LIMIT: Duration = Duration::from_secs(20);

#[test]
fn three_runtimes_form_a_cluster_and_survive_a_kill() {
    let _w = Watchdog::new(
        "three_runtimes_form_a_cluster_and_survive_a_kill",
        Duration::from_secs(90),
    );
    let setup = ClusterSetup::new("cluster3", 3);
    let nodes: Vec<Node> = (1..=3).map(|k| Node::start(&setup, k)).collect();
    let mut nodes = nodes;
    wait_until(CHANGE_LIMIT, "every node shows all three up", || {
        setup.all_up()
    });
    for k in 1..=3u32 {
        let st = setup.status(k);
        assert_eq!(st.node_id, k);
        assert_eq!(st.cluster.len(), 3);
    }

    // `status` (a table) and `status --node 3` through node 1's peer link.
    let cfg = setup.config.to_str().unwrap();
    let out = run_cli(runtime_exe(), &["status", "-c", cfg], &[], CHANGE_LIMIT);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout
            .contains("cluster: 3 node(s), 3 up (seen from node 1)"),
        "{}",
        out.stdout
    );
    let out = run_cli(
        runtime_exe(),
        &["status", "-c", cfg, "--node", "3"],
        &[],
        CHANGE_LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("(seen from node 3)"), "{}", out.stdout);
    let via2 = Client::node_status(&setup.opts(2), 3).unwrap();
    assert_eq!(via2.node_id, 3);
    assert_eq!(via2.pid, nodes[2].pid);

    // kill -9 node 2: the others show it down and keep serving.
    let (_, old_incarnation) = setup.state_seen(1, 2).unwrap();
    nodes[1].kill9();
    wait_until(CHANGE_LIMIT, "nodes 1 and 3 show node 2 down", || {
        [1, 3]
            .iter()
            .all(|&v| setup.state_seen(v, 2).is_some_and(|(s, _)| s == "down"))
    });
    for v in [1, 3] {
        let st = setup.status(v);
        let two = st.cluster.iter().find(|p| p.node_id == 2).unwrap();
        // Down means silent for longer than the timeout.
        assert!(
            two.last_heartbeat_ms.unwrap() >= PEER_TIMEOUT.as_millis() as u64,
            "{two:?}"
        );
        // Local clients are still served.
        let c = Client::connect(setup.opts(v)).expect("a client of a surviving node");
        drop(c);
    }
    let out = run_cli(
        runtime_exe(),
        &["status", "-c", cfg, "--node", "2"],
        &[],
        CHANGE_LIMIT,
    );
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("node 2 is down"), "{}", out.stderr);

    // Restarted, it rejoins as a new incarnation.
    nodes[1] = Node::start(&setup, 2);
    wait_until(CHANGE_LIMIT, "node 2 back up everywhere", || setup.all_up());
    for v in [1, 3] {
        let (_, inc) = setup.state_seen(v, 2).unwrap();
        assert!(
            inc > old_incarnation,
            "node {v} knows incarnation {inc}, was {old_incarnation}"
        );
    }
    let log1 = nodes[0].log();
    assert!(
        log1.contains("peer down") && log1.contains("rejoined=true"),
        "{log1}"
    );
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}

/// A DEALER to node `k`'s peer port, from `from` (an address of this
/// machine), presenting the cluster key.
fn dealer(ctx: &zmq::Context, setup: &ClusterSetup, from: &str, k: u32) -> zmq::Socket {
    let s = ctx.socket(zmq::DEALER).unwrap();
    s.set_linger(1000).unwrap();
    s.set_plain_username(Some("chimaera")).unwrap();
    s.set_plain_password(Some(&setup.cluster_key().to_hex()))
        .unwrap();
    s.connect(&format!(
        "tcp://{from}:0;{}:{}",
        node_addr(k),
        setup.peer_port
    ))
    .unwrap();
    s
}

fn frame(kind: Kind, sender: u32, payload: &[u8]) -> Vec<u8> {
    Frame {
        kind,
        sender,
        incarnation: 1,
        payload,
    }
    .encode()
    .unwrap()
}

#[test]
fn garbage_on_the_peer_port_leaves_a_runtime_serving() {
    let _w = Watchdog::new(
        "garbage_on_the_peer_port_leaves_a_runtime_serving",
        Duration::from_secs(90),
    );
    let setup = ClusterSetup::new("garbage", 2);
    let nodes: Vec<Node> = (1..=2).map(|k| Node::start(&setup, k)).collect();
    wait_until(CHANGE_LIMIT, "both up", || {
        setup.sees_all_up(1) && setup.sees_all_up(2)
    });

    let mut rng = support::Rng::new(0x5eed_c1a5);
    let mut garbage: Vec<Vec<u8>> = (0..50)
        .map(|_| {
            (0..rng.range(0, 200))
                .map(|_| rng.next_u64() as u8)
                .collect()
        })
        .collect();
    let good = frame(Kind::Heartbeat, 1, b"");
    garbage.push(Vec::new());
    garbage.push(good[..10].to_vec()); // truncated header
    let mut huge = good.clone();
    huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes()); // huge length field
    garbage.push(huge);
    let mut version = good.clone();
    version[4] = 200; // wrong version
    garbage.push(version);
    garbage.push(frame(Kind::Heartbeat, 2, b"")); // pretends to be node 2 itself
    garbage.push(frame(Kind::Heartbeat, 9, b"")); // no such node
    garbage.push(frame(Kind::StatusRequest, 1, b"xyz")); // bad payload
    let mut batch = chi_runtime::cluster::frame::encode_batch([b"ab".as_slice()]).unwrap();
    batch[0..4].copy_from_slice(&u32::MAX.to_le_bytes()); // a lying record count
    garbage.push(frame(Kind::TaskBatch, 1, &batch));
    let sent = garbage.len() as u64;

    let ctx = zmq::Context::new();
    // First (refusals are logged rate-limited): a well-formed heartbeat
    // claiming node 1 from node 2's own address. The sender id must be the
    // node of the source address.
    let impostor = dealer(&ctx, &setup, &node_addr(2), 2);
    impostor.send(good.as_slice(), 0).unwrap();
    let sent = sent + 1;
    wait_until(CHANGE_LIMIT, "node 2 refused the impostor", || {
        nodes[1].log().contains("claims to be node 1")
    });
    let d = dealer(&ctx, &setup, "127.0.0.1", 2);
    for g in &garbage {
        d.send(g.as_slice(), 0).unwrap();
    }
    // Many parts in one message: refused whole (not counted as frames).
    d.send_multipart([good.as_slice(), good.as_slice()], 0)
        .unwrap();
    // From an address outside the hostfile: dropped before decoding.
    let stranger = dealer(&ctx, &setup, "127.0.0.9", 2);
    stranger.send(good.as_slice(), 0).unwrap();
    // Not ZeroMQ at all: raw bytes on the TCP port.
    if let Ok(mut tcp) = std::net::TcpStream::connect((node_addr(2).as_str(), setup.peer_port)) {
        let _ = tcp.write_all(&[0xff; 4096]);
    }
    // Over the size limit: the connection is dropped before the frame is read.
    let big = dealer(&ctx, &setup, "127.0.0.1", 2);
    big.send(vec![0u8; chi_runtime::cluster::frame::MAX_FRAME + 1], 0)
        .unwrap();

    wait_until(CHANGE_LIMIT, "node 2 counted every garbage frame", || {
        Client::status(&setup.opts(2)).is_ok_and(|s| s.peer_frames_refused >= sent)
    });
    wait_until(
        CHANGE_LIMIT,
        "node 2 logged the stranger and the many-part message",
        || {
            let log = nodes[1].log();
            log.contains("not in the hostfile") && log.contains("a frame is one part")
        },
    );
    // Still serving: a client, its status, the peer link both ways.
    drop(Client::connect(setup.opts(2)).expect("a client of node 2"));
    let st = setup.status(2);
    assert_eq!(st.peer_frames_refused, sent, "{:?}", st.cluster);
    assert!(setup.sees_all_up(1) && setup.sees_all_up(2));
    assert_eq!(Client::node_status(&setup.opts(1), 2).unwrap().node_id, 2);
    drop((d, impostor, stranger, big));
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}

/// A periodic task in a frame from a peer (a node that does not refuse
/// them itself) is answered that it does not run there, and never starts:
/// it would run until cancelled, and nothing cancels it from another node.
#[test]
fn a_periodic_task_from_a_peer_is_refused() {
    use chi_runtime::cluster::frame::encode_batch;
    use chi_runtime::remote::record::{Record, Request};
    use chi_sdk::ser::TaskSer;
    use chi_sdk::task::{Task, flags};
    use chi_sdk::types::{ContainerId, DomainQuery};
    use chimaera_mod_name_runtime::EchoTask;

    let _w = Watchdog::new(
        "a_periodic_task_from_a_peer_is_refused",
        Duration::from_secs(90),
    );
    let setup = ClusterSetup::with_modules("periodic", 2);
    let nodes = setup.start_all(CHANGE_LIMIT);
    let clients = setup.clients();
    let pool = chi_sdk::admin::AdminClient::new(&clients[0])
        .create_cluster_pool("chimaera_mod_name", "p", "", 2)
        .expect("a pool over the cluster");
    // Container 1 is node 2's; the frame comes from node 1's address as
    // its current incarnation.
    let mut task = EchoTask::new(pool, DomainQuery::global_id(1), 5);
    task.header_mut().flags |= flags::PERIODIC;
    task.header_mut().period_ns = 1_000_000;
    let mut body = Vec::new();
    task.save_in(&mut body).unwrap();
    let mut rec = Vec::new();
    Record::Request(Request {
        id: 7,
        pool,
        container: ContainerId(1),
        method: EchoTask::METHOD,
        flags: task.header().flags,
        body,
    })
    .encode(&mut rec);
    let batch = encode_batch([rec.as_slice()]).unwrap();
    let (_, incarnation) = setup.state_seen(2, 1).expect("node 2 knows node 1");
    let f = Frame {
        kind: Kind::TaskBatch,
        sender: 1,
        incarnation,
        payload: &batch,
    }
    .encode()
    .unwrap();
    let before = setup.status(2).peer_traffic;
    let ctx = zmq::Context::new();
    let d = dealer(&ctx, &setup, "127.0.0.1", 2);
    d.send(f.as_slice(), 0).unwrap();
    wait_until(CHANGE_LIMIT, "node 2 took the task in and answered", || {
        let t = setup.status(2).peer_traffic;
        t.tasks_in > before.tasks_in && t.replies_out > before.replies_out
    });
    let periodic: u64 = setup
        .status(2)
        .workers
        .iter()
        .map(|w| w.periodic_tasks)
        .sum();
    assert_eq!(periodic, 0, "a periodic task from a peer runs on node 2");
    drop((d, clients, nodes));
    assert_no_process_left(setup.dir.path(), &[]);
}

#[test]
fn local_cluster_starts_and_stops() {
    let _w = Watchdog::new("local_cluster_starts_and_stops", Duration::from_secs(90));
    let setup = ClusterSetup::new("local", 3);
    let cfg = setup.config.to_str().unwrap();
    let dir = setup.dir.path().join("lc");
    let dir_s = dir.to_str().unwrap();
    let out = run_cli(
        runtime_exe(),
        &["start", "-c", cfg, "--local-cluster", "3", "--dir", dir_s],
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout.contains("local cluster of 3 node(s)"),
        "{}",
        out.stdout
    );
    for k in 1..=3 {
        assert!(
            out.stdout
                .contains(&format!("node {k}: 127.0.0.{k}:{}", setup.port)),
            "{}",
            out.stdout
        );
        assert!(
            setup.sees_all_up(k),
            "node {k}: {:?}",
            setup.status(k).cluster
        );
    }
    // A second cluster on the same port is refused and leaves the first be.
    let other = setup.dir.path().join("other");
    let out = run_cli(
        runtime_exe(),
        &[
            "start",
            "-c",
            cfg,
            "--local-cluster",
            "2",
            "--dir",
            other.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.contains("already answers on 127.0.0.1"),
        "{}",
        out.stderr
    );
    for k in 1..=3 {
        assert!(
            setup.sees_all_up(k),
            "node {k}: {:?}",
            setup.status(k).cluster
        );
    }
    let out = run_cli(
        runtime_exe(),
        &["stop", "-c", cfg, "--local-cluster", "--dir", dir_s],
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout.contains("3 node(s) were running"),
        "{}",
        out.stdout
    );
    assert_no_process_left(setup.dir.path(), &[]);
    assert!(support::segments(setup.port).is_empty());
}

/// Without a hostfile, a runtime is a cluster of one: `status` shows it
/// alone, `--node` its own id answers, another id says why not.
#[test]
fn a_runtime_without_hostfile_is_a_cluster_of_one() {
    let _w = Watchdog::new(
        "a_runtime_without_hostfile_is_a_cluster_of_one",
        Duration::from_secs(90),
    );
    let setup = support::Setup::new("alone");
    let rt = support::RuntimeGuard::start(&setup);
    let cfg = setup.config.to_str().unwrap();
    let out = run_cli(runtime_exe(), &["status", "-c", cfg], &[], CHANGE_LIMIT);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout
            .contains("cluster: 1 node(s), 1 up (seen from node 1)"),
        "{}",
        out.stdout
    );
    let own = Client::node_status(&setup.opts(), 1).unwrap();
    assert_eq!(own.pid, rt.pid());
    let out = run_cli(
        runtime_exe(),
        &["status", "-c", cfg, "--node", "2"],
        &[],
        CHANGE_LIMIT,
    );
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("runs alone"), "{}", out.stderr);
    rt.stop();
}

#[test]
fn a_status_of_a_silent_node_holds_up_no_other_request() {
    let _w = Watchdog::new("status_of_a_silent_node", Duration::from_secs(90));
    let setup = ClusterSetup::new("cluster-silent", 2);
    let mut nodes: Vec<Node> = (1..=2).map(|k| Node::start(&setup, k)).collect();
    wait_until(CHANGE_LIMIT, "both nodes show both up", || setup.all_up());
    // Node 2 falls silent; node 1 still has it up for up to a second.
    nodes[1].pause();
    let opts = setup.opts(1);
    let asking = std::thread::spawn(move || Client::node_status(&opts, 2));
    std::thread::sleep(Duration::from_millis(100));
    // Meanwhile node 1's control socket answers its own status and
    // registers a client.
    assert_eq!(setup.status(1).node_id, 1);
    let c = Client::connect(setup.opts(1)).expect("a client registered meanwhile");
    assert!(
        !asking.is_finished(),
        "the status of node 2 came before node 1's own requests were answered"
    );
    let e = asking.join().unwrap().unwrap_err().to_string();
    assert!(e.contains("node 2"), "{e}");
    drop(c);
    nodes[1].resume();
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}

#[test]
fn a_node_without_the_cluster_key_is_kept_out() {
    // Node 2 reads another key: its connections to node 1 are refused in
    // the handshake (logged), so neither sees the other up; given the
    // cluster's key, it joins.
    let _w = Watchdog::new(
        "a_node_without_the_cluster_key_is_kept_out",
        Duration::from_secs(90),
    );
    let setup = ClusterSetup::new("clusterkey", 2);
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let other = setup.dir.write(
        "chi-other-key.yaml",
        &text.replace("key_file: cluster.key", "key_file: other.key"),
    );
    let n1 = Node::start(&setup, 1);
    let mut n2 = Node::start_config(&setup, 2, &other);
    assert!(
        setup.dir.path().join("other.key").exists(),
        "node 2 made its own key"
    );
    wait_until(CHANGE_LIMIT, "node 1 to refuse node 2's connection", || {
        n1.log()
            .contains("refused a peer connection without the cluster key")
    });
    wait_until(CHANGE_LIMIT, "node 2 to be refused too", || {
        n2.log()
            .contains("refused a peer connection without the cluster key")
    });
    // Refused connections carry no heartbeat: neither is up for the other;
    // the refusals are counted in the status.
    assert!(!setup.sees_all_up(1) && !setup.sees_all_up(2));
    assert!(setup.status(1).peer_traffic.connections_refused >= 1);
    let out = run_cli(
        runtime_exe(),
        &["status", "-c", setup.config.to_str().unwrap()],
        &[],
        CHANGE_LIMIT,
    );
    assert!(
        out.stdout
            .contains("peer connections refused (no cluster key)"),
        "{}",
        out.stdout
    );
    n2.kill9();
    drop(n2);
    let _n2 = Node::start(&setup, 2);
    wait_until(CHANGE_LIMIT, "both up with the same key", || setup.all_up());
    drop(_n2);
    drop(n1);
    assert_no_process_left(setup.dir.path(), &[]);
}

#[test]
fn a_reply_whose_outputs_do_not_load_fails_its_task_and_leaks_nothing() {
    use chi_runtime::cluster::frame::encode_batch;
    use chi_runtime::remote::inflight::first_id;
    use chi_runtime::remote::record::{Record, Reply};
    use chi_sdk::queue::Priority;
    use chi_sdk::types::DomainQuery;
    use chimaera_mod_name_runtime::EchoTask;
    use support::cluster::echo;

    let _w = Watchdog::new(
        "a_reply_whose_outputs_do_not_load_fails_its_task_and_leaks_nothing",
        Duration::from_secs(90),
    );
    let setup = ClusterSetup::with_modules("badreply", 2);
    let mut nodes = setup.start_all(CHANGE_LIMIT);
    let clients = setup.clients();
    let pool = chi_sdk::admin::AdminClient::new(&clients[0])
        .create_cluster_pool("chimaera_mod_name", "p", "", 2)
        .expect("a pool over the cluster");
    let to_two = DomainQuery::global_id(1);
    assert_eq!(echo(&clients[0], pool, to_two, 3), Ok(3));
    let (_, one) = setup.state_seen(2, 1).expect("node 2 knows node 1");
    let (_, two) = setup.state_seen(1, 2).expect("node 1 knows node 2");
    let before = setup.live_blocks(1);
    // The forged replies come from node 2's address; the socket connects
    // before node 2 falls silent, so they arrive well within the timeout.
    let ctx = zmq::Context::new();
    let d = dealer(&ctx, &setup, "127.0.0.2", 1);
    let sent = setup.status(1).peer_traffic.tasks_out;
    nodes[1].pause();
    let pending = clients[0]
        .submit(EchoTask::new(pool, to_two, 5), Priority::LowLatency)
        .expect("submit");
    // Its request id is registered once node 1 sent it.
    wait_until(CHANGE_LIMIT, "node 1 sent the task", || {
        setup.status(1).peer_traffic.tasks_out > sent
    });
    // Node 1's request ids start at its run's first id; a reply to each of
    // the first 64 whose outputs (as an Echo's `save_out` lays them: result
    // code, error message, reply) hold a message the load stores in the
    // task, then 3 bytes where the reply's 8 should be.
    let message = "a message the load stores";
    let mut body = 0i32.to_le_bytes().to_vec();
    body.extend_from_slice(&(message.len() as u64).to_le_bytes());
    body.extend_from_slice(message.as_bytes());
    body.extend_from_slice(&[0xff; 3]);
    let records: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            let mut rec = Vec::new();
            Record::Reply(Reply {
                id: first_id(one) + i,
                result: 0,
                message: String::new(),
                body: body.clone(),
            })
            .encode(&mut rec);
            rec
        })
        .collect();
    let batch = encode_batch(records.iter().map(Vec::as_slice)).unwrap();
    let f = Frame {
        kind: Kind::ReplyBatch,
        sender: 2,
        incarnation: two,
        payload: &batch,
    }
    .encode()
    .unwrap();
    d.send(f.as_slice(), 0).unwrap();
    let err = pending
        .wait_with(|t| t.reply)
        .expect_err("outputs that do not load");
    let text = err.to_string();
    assert!(text.contains("load failed"), "{text}");
    // The task is freed; so is every string the failed load allocated.
    wait_until(
        CHANGE_LIMIT,
        "node 1's segments back to their blocks",
        || setup.live_blocks(1) == before,
    );
    // Node 2's own reply, late, completes nothing; both go on serving.
    nodes[1].resume();
    wait_until(CHANGE_LIMIT, "node 2 back up", || setup.sees_all_up(1));
    assert_eq!(echo(&clients[0], pool, to_two, 7), Ok(7));
    drop((d, clients, nodes));
    assert_no_process_left(setup.dir.path(), &[]);
}
