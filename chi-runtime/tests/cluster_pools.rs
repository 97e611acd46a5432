//! Pools over the cluster and remote tasks, with three real runtimes on
//! 127.0.0.1, .2 and .3: a CreatePool with `containers` asked at node 2
//! makes one pool on every node, each holding its round-robin share of the
//! containers with their global ids; tasks by global id and global hash,
//! from every node, run on their container's node (over the peer link when
//! it is another, marked as sent there), 200 at once too, fire-and-forget
//! and abandoned ones
//! freed by the sender; a kv pool over the cluster stores a
//! 100 kB value put from node 1 on node 2 and serves it to node 3 (the
//! bytes travel both ways); GetOrCreatePool of one name from two
//! nodes at once makes one pool; a taken name is refused cluster-wide; a
//! pool over the cluster destroyed from a node that did not create it is
//! gone from every node and its tasks fail saying so; a task to
//! a killed node fails naming it within the task timeout; with the authority
//! (node 1) killed, an ask fails naming it or is decided by the next node
//! up, never hangs.
//!
//! Heartbeats every 100 ms, peers down after 1 s, `cluster.task_timeout` 2 s
//! ([`support::cluster`]); every wait is bounded by a generous limit.

mod support;

use std::time::{Duration, Instant};

use chi_sdk::admin::{AdminClient, GLOBAL_POOL_BASE};
use chi_sdk::client::Client;
use chi_sdk::task::{Task, state};
use chi_sdk::types::{DomainQuery, PoolId};
use chimaera_kv_runtime::KvClient;
use chimaera_mod_name_runtime::{
    CreateParams, EchoTask, FanOutTask, MUTEX_COUNT, ModNameClient, TARGET_MOD_NAME_SPREAD,
};
use support::cluster::{ClusterSetup, TASK_TIMEOUT, echo, locate};
use support::{Watchdog, assert_no_process_left, wait_until};

const MOD_NAME: &str = "chimaera_mod_name";
const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn pools_over_three_nodes() {
    let _w = Watchdog::new("pools_over_three_nodes", Duration::from_secs(120));
    let setup = ClusterSetup::with_modules("cpools", 3);
    let mut nodes = setup.start_all(LIMIT);
    let clients = setup.clients();

    // Five containers asked at node 2 (decided by node 1): 0 and 3 on node
    // 1, 1 and 4 on node 2, 2 on node 3; every node knows the pool.
    let id = AdminClient::new(&clients[1])
        .create_cluster_pool(MOD_NAME, "spread", "", 5)
        .expect("a pool over the cluster");
    assert!(id.0 >= GLOBAL_POOL_BASE, "{id}");
    assert_eq!(setup.listed_share(1, id), Some(vec![0, 3]));
    assert_eq!(setup.listed_share(2, id), Some(vec![1, 4]));
    assert_eq!(setup.listed_share(3, id), Some(vec![2]));

    // By global id and global hash, from every node, a task runs on its
    // container's node (container g on node g % 3 + 1), which gave it its
    // global id: a container elsewhere is reached over the peer link.
    for from in &clients {
        for g in 0..5u32 {
            let node = g % 3 + 1;
            assert_eq!(locate(from, id, DomainQuery::global_id(g)), Ok((node, g)));
            assert_eq!(
                locate(from, id, DomainQuery::global_hash(g + 5 * 7)),
                Ok((node, g))
            );
        }
    }
    assert_eq!(locate(&clients[2], id, DomainQuery::local()), Ok((3, 2)));
    // A broadcast runs on every container (local ones too) and completes
    // once all have answered; Locate's outputs are values, which the
    // default aggregation keeps from container 0 (tests/cluster_aggregate.rs
    // has the rest).
    for from in &clients {
        let located = locate(from, id, DomainQuery::global_bcast());
        assert_eq!(located, Ok((1, 0)), "container 0's outputs");
        assert_eq!(echo(from, id, DomainQuery::global_bcast(), 21), Ok(21));
    }
    // A handler's subtasks to containers on every node (FanOut from node 1's
    // container 0, echo v to container v % 5): each parent is woken when
    // its remote subtasks' replies come.
    for n in [1u32, 10] {
        let sum = clients[0]
            .submit(
                FanOutTask::new(
                    id,
                    DomainQuery::global_id(0),
                    id,
                    TARGET_MOD_NAME_SPREAD,
                    n,
                    0,
                ),
                chi_sdk::queue::Priority::LowLatency,
            )
            .expect("submit FanOut")
            .wait_with(|t| t.sum)
            .expect("FanOut over the cluster");
        assert_eq!(sum, u64::from(n) * u64::from(n + 1) / 2);
    }
    // Many tasks to other nodes at once share frames, and all come back.
    // (The thread counts its handles: with others in flight, a wait spins
    // no longer on a remote task than on any other.)
    assert_eq!(Client::pending_on_this_thread(), 0);
    let pending: Vec<_> = (0..200u64)
        .map(|v| {
            clients[0]
                .submit(
                    EchoTask::new(id, DomainQuery::global_id(1 + (v % 2) as u32), v),
                    chi_sdk::queue::Priority::LowLatency,
                )
                .expect("submit")
        })
        .collect();
    assert_eq!(Client::pending_on_this_thread(), 200);
    for (v, p) in pending.into_iter().enumerate() {
        assert_eq!(p.wait_with(|t| t.reply).expect("remote echo"), v as u64);
    }
    assert_eq!(Client::pending_on_this_thread(), 0);
    // A task sent to another node is marked so (its client spins longer on
    // it: `client/wait.rs`); one run on the client's node is not.
    let state_of = |g: u32| {
        clients[0]
            .submit(
                EchoTask::new(id, DomainQuery::global_id(g), 1),
                chi_sdk::queue::Priority::LowLatency,
            )
            .expect("submit")
            .wait_with(|t| t.header().state_bits())
            .expect("echo")
    };
    let to_two = state_of(1);
    assert_ne!(to_two & state::REMOTE, 0, "a task to node 2");
    // (Its CPU, when the field can hold it.)
    if std::thread::available_parallelism().map_or(1, usize::from) < 255 {
        assert_ne!(to_two & state::REMOTE_CPU, 0, "the sending worker's CPU");
    }
    assert_eq!(state_of(0) & state::REMOTE, 0, "a task to node 1");
    // Node 1's peer traffic counted them (requests out, replies in) and
    // the heartbeats beside the batch frames.
    let after = setup.status(1).peer_traffic;
    assert!(after.tasks_out >= 200, "{after:?}");
    assert!(after.replies_in >= 200, "{after:?}");
    assert!(
        after.batch_bytes_out > 0 && after.bytes_out > after.batch_bytes_out,
        "{after:?}"
    );
    // Round trips one at a time: the worker that waits on the reply (node
    // 1's) and the one that ran the task (node 2's) take the frames
    // themselves while they poll after remote work, not the peer thread
    // (`cluster/intake.rs`). A loaded machine may put them to sleep before
    // a frame comes, so this allows many tries.
    let taken = |k| setup.status(k).peer_traffic.batches_in_by_workers;
    let before = (taken(1), taken(2));
    let more = || taken(1) > before.0 && taken(2) > before.1;
    for v in 0..3000u64 {
        if v % 100 == 1 && more() {
            break;
        }
        assert_eq!(echo(&clients[0], id, DomainQuery::global_id(1), v), Ok(v));
    }
    assert!(
        more(),
        "no frame was taken by a worker: {:?} / {:?}",
        setup.status(1).peer_traffic,
        setup.status(2).peer_traffic
    );
    // A worker kept busy (a task that yields its coroutine 50 000 times
    // on node 1: a turn of the worker's loop each) still takes the reply of
    // a remote task it sent, while it holds the peer socket from its busy
    // window: it looks every few hundred turns (`worker/remote.rs`), where
    // without that look the reply would wait for the peer thread to take
    // the socket back. The remote echo must come back while the busy task
    // still runs, taken by a worker; a machine that put the worker to sleep
    // between the two (the claim goes) needs another try.
    let busy_pool =
        ModNameClient::create(&clients[0], "busy", &CreateParams::default()).expect("a local pool");
    let busy_look = (0..50u64).any(|v| {
        let before = taken(1);
        // The worker claims the socket waiting for this one's reply.
        assert_eq!(echo(&clients[0], id, DomainQuery::global_id(1), v), Ok(v));
        let busy = busy_pool
            .async_co_mutex_test(&clients[0], MUTEX_COUNT, 50_000, 0)
            .expect("CoMutexTest");
        let remote = clients[0]
            .submit(
                EchoTask::new(id, DomainQuery::global_id(1), v),
                chi_sdk::queue::Priority::LowLatency,
            )
            .expect("submit");
        assert_eq!(remote.wait_with(|t| t.reply).expect("remote echo"), v);
        let during = !busy.is_complete();
        busy.wait().expect("CoMutexTest");
        // Both replies taken by the worker.
        during && taken(1) >= before + 2
    });
    assert!(
        busy_look,
        "no reply was taken by a busy worker: {:?}",
        setup.status(1).peer_traffic
    );
    assert_eq!(echo(&clients[0], id, DomainQuery::global_id(3), 7), Ok(7));
    assert_eq!(echo(&clients[2], id, DomainQuery::global_id(2), 8), Ok(8));
    assert_eq!(echo(&clients[1], id, DomainQuery::global_hash(9), 9), Ok(9));
    assert_eq!(echo(&clients[1], id, DomainQuery::local(), 10), Ok(10));
    assert_eq!(echo(&clients[0], id, DomainQuery::global_id(1), 11), Ok(11));
    let e = echo(&clients[0], id, DomainQuery::global_id(5), 1).unwrap_err();
    assert!(e.contains("has 5 container"), "{e}");
    // A periodic task for a container on another node fails at once: it
    // would run there until cancelled, and nothing cancels it from here.
    let e = clients[0]
        .submit_periodic(
            EchoTask::new(id, DomainQuery::global_id(1), 1),
            Duration::from_millis(10),
            chi_sdk::queue::Priority::LowLatency,
        )
        .expect("submit")
        .wait_with(|t| t.reply)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("periodic task runs only on the node") && e.contains("node 2"),
        "{e}"
    );

    // GetOrCreatePool of one name from nodes 2 and 3 at once: one pool.
    let ids: Vec<PoolId> = std::thread::scope(|s| {
        let asks: Vec<_> = [1usize, 2]
            .iter()
            .map(|&i| {
                let c = &clients[i];
                s.spawn(move || {
                    AdminClient::new(c)
                        .get_or_create_cluster_pool(MOD_NAME, "shared", "", 3)
                        .expect("get or create")
                })
            })
            .collect();
        asks.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[0], id);
    for k in 1..=3 {
        assert_eq!(setup.listed_share(k, ids[0]), Some(vec![k - 1]), "node {k}");
    }
    // A taken name is refused wherever it is asked.
    let e = AdminClient::new(&clients[2])
        .create_cluster_pool(MOD_NAME, "spread", "", 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("'spread' is taken"), "{e}");
    // Fire-and-forget and abandoned remote tasks are freed by the sender's
    // peer thread when their replies come; the node goes on serving.
    for v in 0..50u64 {
        let mut t = EchoTask::new(id, DomainQuery::global_id(1), v);
        t.header.flags |= chi_sdk::task::flags::FIRE_AND_FORGET;
        let t = clients[0].new_task(t).expect("task");
        clients[0]
            .enqueue(&t, chi_sdk::queue::Priority::LowLatency)
            .expect("enqueue");
        let abandoned = clients[0]
            .submit(
                EchoTask::new(id, DomainQuery::global_id(2), v),
                chi_sdk::queue::Priority::LowLatency,
            )
            .expect("submit");
        drop(abandoned);
    }
    assert_eq!(echo(&clients[0], id, DomainQuery::global_id(1), 31), Ok(31));
    assert_eq!(echo(&clients[0], id, DomainQuery::global_id(2), 32), Ok(32));

    // kv over the cluster: a value put from node 1 into container 1 (node 2)
    // is read back from node 3; its bytes travel both ways.
    let kv_pool = AdminClient::new(&clients[0])
        .create_cluster_pool("chimaera_kv", "kv", "", 3)
        .expect("a kv pool over the cluster");
    let mut kv = KvClient::from(kv_pool);
    kv.query = DomainQuery::global_id(1);
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(kv.put(&clients[0], b"k", &big).expect("remote put"), 0);
    assert_eq!(kv.get(&clients[2], b"k").expect("remote get"), big);
    assert_eq!(kv.get(&clients[1], b"k").expect("local get"), big);
    kv.query = DomainQuery::global_id(2);
    let e = kv.get(&clients[0], b"k").unwrap_err().to_string();
    assert!(
        e.contains("k"),
        "the module's not-found error comes back: {e}"
    );

    // Destroying a pool over the cluster (asked at node 1, made at nodes 2
    // and 3) removes it from every node; its tasks then fail saying so.
    AdminClient::new(&clients[0])
        .destroy_pool(ids[0])
        .expect("destroy a pool over the cluster");
    for k in 1..=3 {
        assert_eq!(setup.listed_share(k, ids[0]), None, "node {k}");
    }
    for c in &clients {
        let e = echo(c, ids[0], DomainQuery::global_id(0), 1).unwrap_err();
        assert!(e.contains(&format!("no {}", ids[0])), "{e}");
    }
    // Local pools are as before.
    let local = AdminClient::new(&clients[2])
        .create_pool(MOD_NAME, "mine", "", PoolId::NULL)
        .expect("a local pool");
    assert!(local.0 < GLOBAL_POOL_BASE);
    assert_eq!(echo(&clients[2], local, DomainQuery::local(), 3), Ok(3));

    // A node dies: a task to its container fails naming it within the
    // task timeout (sent before it is seen down: timeout or down; after:
    // at once), never a hang.
    nodes[2].kill9();
    for _ in 0..2 {
        let t0 = Instant::now();
        let e = echo(&clients[0], id, DomainQuery::global_id(2), 1).unwrap_err();
        assert!(e.contains("node 3"), "{e}");
        assert!(t0.elapsed() < TASK_TIMEOUT * 2, "{:?}", t0.elapsed());
    }
    wait_until(LIMIT, "node 1 sees node 3 down", || {
        setup.state_seen(1, 3).is_some_and(|(s, _)| s == "down")
    });
    let e = echo(&clients[0], id, DomainQuery::global_id(2), 1).unwrap_err();
    assert!(e.contains("node 3 went down"), "{e}");
    assert_eq!(echo(&clients[0], id, DomainQuery::global_id(1), 12), Ok(12));
    let e = echo(&clients[0], id, DomainQuery::global_bcast(), 1).unwrap_err();
    assert!(e.contains("replica") && e.contains("node 3"), "{e}");

    // The authority dies: an ask fails naming it, or (once node 1 is seen
    // down) node 2 decides it; never a hang.
    drop(clients);
    nodes[0].kill9();
    let c2 = Client::connect(setup.opts(2)).expect("a client of node 2");
    let t0 = Instant::now();
    match AdminClient::new(&c2).create_cluster_pool(MOD_NAME, "after", "", 2) {
        Ok(p) => assert_eq!(setup.listed_share(2, p), Some(vec![0, 1])),
        Err(e) => assert!(e.to_string().contains("node 1"), "{e}"),
    }
    assert!(t0.elapsed() < TASK_TIMEOUT * 3, "{:?}", t0.elapsed());
    wait_until(LIMIT, "node 2 sees node 1 down", || {
        setup.state_seen(2, 1).is_some_and(|(s, _)| s == "down")
    });
    let p = AdminClient::new(&c2)
        .get_or_create_cluster_pool(MOD_NAME, "after2", "", 2)
        .expect("node 2 decides once node 1 is down");
    assert_eq!(setup.listed_share(2, p), Some(vec![0, 1]));
    drop(c2);
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}
