//! The life of a pool over the cluster, with three real runtimes on
//! 127.0.0.1, .2 and .3: DestroyPool from any node removes the pool from
//! every node (its tasks then fail saying so, its name is free again); a
//! node paused (SIGSTOP) during a destruction drops its stale share once it
//! is heard from again; a creation that one node cannot make (its `create`
//! fails, or it has no such module) fails naming that node and the reason,
//! and no node keeps the pool; `compose` entries with `query: global` make
//! their pool over the cluster once the nodes are up (every node lists the
//! same pool, tasks by global id reach every node), or at once on a runtime
//! without peers; a node that holds no container of a pool (2 containers
//! over 3 nodes) still sends tasks to it, with client data and broadcasts;
//! a node that starts after a pool was made learns it (and sends to it),
//! and a node that restarts gets its containers back; node 1, the pools'
//! authority, restarted, makes new pools past the ones that exist and
//! drops none of them.
//!
//! Heartbeats every 100 ms, peers down after 1 s, `cluster.task_timeout` 2 s
//! ([`support::cluster`]); every wait is bounded by a generous limit.

mod support;

use std::time::Duration;

use chi_sdk::admin::AdminClient;
use chi_sdk::client::Client;
use chi_sdk::types::{DomainQuery, PoolId};
use chimaera_kv_runtime::KvClient;
use chimaera_mod_name_runtime::EchoTask;
use support::cluster::{ClusterSetup, Node, echo, locate};
use support::{Watchdog, assert_no_process_left, wait_until};

const MOD_NAME: &str = "chimaera_mod_name";
const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn destroy_from_any_node_removes_the_pool_everywhere() {
    let _w = Watchdog::new("destroy_everywhere", Duration::from_secs(120));
    let setup = ClusterSetup::with_modules("plife-destroy", 3);
    let nodes = setup.start_all(LIMIT);
    let clients = setup.clients();

    // Made at node 2, destroyed at node 3 (node 1 decides both).
    let id = AdminClient::new(&clients[1])
        .create_cluster_pool(MOD_NAME, "doomed", "", 3)
        .expect("a pool over the cluster");
    for k in 1..=3 {
        assert_eq!(setup.share(k, id), Some(vec![k - 1]), "node {k}");
    }
    assert_eq!(echo(&clients[0], id, DomainQuery::global_id(2), 5), Ok(5));
    AdminClient::new(&clients[2])
        .destroy_pool(id)
        .expect("destroy from node 3");
    for k in 1..=3 {
        assert_eq!(setup.share(k, id), None, "node {k} still lists {id}");
    }
    for (i, c) in clients.iter().enumerate() {
        for g in 0..3 {
            let e = echo(c, id, DomainQuery::global_id(g), 1).unwrap_err();
            assert!(e.contains(&format!("no {id}")), "from node {}: {e}", i + 1);
        }
    }
    // Gone: a second destroy says so; the name is free, with a new id.
    let e = AdminClient::new(&clients[0])
        .destroy_pool(id)
        .unwrap_err()
        .to_string();
    assert!(e.contains("destroyed already"), "{e}");
    let again = AdminClient::new(&clients[0])
        .create_cluster_pool(MOD_NAME, "doomed", "", 3)
        .expect("the name is free again");
    assert!(again.0 > id.0, "{again} after {id}");
    assert_eq!(
        echo(&clients[2], again, DomainQuery::global_id(1), 6),
        Ok(6)
    );
    // A pool of one node with an id in the cluster's range is still that
    // node's to destroy.
    let mine = AdminClient::new(&clients[1])
        .create_pool(MOD_NAME, "mine", "", PoolId(again.0 + 1000))
        .expect("a local pool with a high id");
    AdminClient::new(&clients[1])
        .destroy_pool(mine)
        .expect("destroy a local pool with a high id");
    assert_eq!(setup.share(2, mine), None);
    // Destroyed from the authority itself.
    AdminClient::new(&clients[0])
        .destroy_pool(again)
        .expect("destroy from node 1");
    for k in 1..=3 {
        assert_eq!(setup.share(k, again), None, "node {k}");
    }
    drop(clients);
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}

#[test]
fn a_node_away_during_a_destroy_drops_the_pool_when_it_is_back() {
    let _w = Watchdog::new("destroy_away", Duration::from_secs(120));
    let setup = ClusterSetup::with_modules("plife-away", 3);
    let mut nodes = setup.start_all(LIMIT);
    let clients = setup.clients();
    let id = AdminClient::new(&clients[0])
        .create_cluster_pool(MOD_NAME, "stale", "", 3)
        .expect("a pool over the cluster");
    assert_eq!(setup.share(3, id), Some(vec![2]));

    // Node 3 falls silent; once seen down, the destroy goes on without it.
    nodes[2].pause();
    wait_until(LIMIT, "nodes 1 and 2 see node 3 down", || {
        [1, 2]
            .iter()
            .all(|&v| setup.state_seen(v, 3).is_some_and(|(s, _)| s == "down"))
    });
    AdminClient::new(&clients[1])
        .destroy_pool(id)
        .expect("destroy while node 3 is away");
    assert_eq!(setup.share(1, id), None);
    assert_eq!(setup.share(2, id), None);

    // Back: it is told, and drops its share.
    nodes[2].resume();
    wait_until(LIMIT, "node 3 drops the destroyed pool", || {
        Client::status(&setup.opts(3)).is_ok_and(|st| !st.pools.iter().any(|p| p.id == id.0))
    });
    drop(clients);
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}

/// Whether node `k` lists a pool named `name`.
fn lists(setup: &ClusterSetup, k: u32, name: &str) -> bool {
    setup.status(k).pools.iter().any(|p| p.name == name)
}

#[test]
fn a_creation_one_node_cannot_make_is_rolled_back() {
    let _w = Watchdog::new("rollback", Duration::from_secs(120));
    let setup = ClusterSetup::with_modules("plife-rollback", 3);
    // Node 3 has no module path: it cannot load any example module.
    let bare = setup.config_without_modules();
    let nodes: Vec<Node> = (1..=3)
        .map(|k| match k {
            3 => Node::start_config(&setup, k, &bare),
            _ => Node::start(&setup, k),
        })
        .collect();
    wait_until(LIMIT, "every node shows all three up", || setup.all_up());
    let clients = setup.clients();

    // Node 3 does not find the module (asked at node 3 and at node 1,
    // decided by node 1, made by nodes 1 and 2 first).
    for (at, module) in [(2usize, MOD_NAME), (0, "chimaera_kv")] {
        let e = AdminClient::new(&clients[at])
            .create_cluster_pool(module, "half", "", 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("node 3") && e.contains(module), "{e}");
        assert!(e.contains("removed from the nodes"), "{e}");
        for k in 1..=3 {
            assert!(!lists(&setup, k, "half"), "node {k} kept a half pool: {e}");
        }
    }
    // Node 3 restarted with the modules: node 2's own failure comes back.
    drop(clients);
    let mut nodes = nodes;
    drop(nodes.pop());
    nodes.push(Node::start(&setup, 3));
    wait_until(LIMIT, "every node shows all three up", || setup.all_up());
    let clients = setup.clients();
    // The create handler fails on node 2 only.
    let args = r#"{"fail_on_node": 2}"#;
    for c in &clients {
        let e = AdminClient::new(c)
            .create_cluster_pool(MOD_NAME, "half", args, 3)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 2") && e.contains("asked to fail on node 2"),
            "{e}"
        );
        for k in 1..=3 {
            assert!(!lists(&setup, k, "half"), "node {k} kept a half pool: {e}");
        }
    }
    // The authority's own failure: nothing was made elsewhere.
    let e = AdminClient::new(&clients[1])
        .create_cluster_pool(MOD_NAME, "half", r#"{"fail_on_node": 1}"#, 3)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("node 1") && e.contains("asked to fail on node 1"),
        "{e}"
    );
    // And the name is free: made without the knob.
    let id = AdminClient::new(&clients[2])
        .create_cluster_pool(MOD_NAME, "half", "", 3)
        .expect("the pool, without failure");
    for k in 1..=3 {
        assert_eq!(setup.share(k, id), Some(vec![k - 1]), "node {k}");
    }
    drop(clients);
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}

/// The id of the pool named `name` on node `k`, if it lists one.
fn id_of(setup: &ClusterSetup, k: u32, name: &str) -> Option<PoolId> {
    Client::status(&setup.opts(k))
        .ok()?
        .pools
        .iter()
        .find(|p| p.name == name)
        .map(|p| PoolId(p.id))
}

const COMPOSE: &str = "compose:
  - {module: chimaera_mod_name, name: everywhere, query: global}
  - {module: chimaera_mod_name, name: five, query: global, containers: 5}
  - {module: chimaera_mod_name, name: mine, query: local}
";

#[test]
fn compose_makes_global_pools_over_the_cluster() {
    let _w = Watchdog::new("compose_global", Duration::from_secs(120));
    let setup = ClusterSetup::with_modules_and("plife-compose", 3, COMPOSE);
    // Started one after the other: each start returns before the others
    // are up (the pools are made by each node's chi-compose thread).
    let nodes: Vec<Node> = (1..=3).map(|k| Node::start(&setup, k)).collect();
    wait_until(LIMIT, "every node lists both global pools", || {
        (1..=3)
            .all(|k| id_of(&setup, k, "everywhere").is_some() && id_of(&setup, k, "five").is_some())
    });
    let clients = setup.clients();
    for (name, n) in [("everywhere", 3u32), ("five", 5)] {
        let id = id_of(&setup, 1, name).unwrap();
        for k in 1..=3 {
            assert_eq!(id_of(&setup, k, name), Some(id), "node {k}, {name}");
            let mine: Vec<u32> = (0..n).filter(|g| g % 3 + 1 == k).collect();
            assert_eq!(setup.share(k, id), Some(mine), "node {k}, {name}");
        }
        for c in &clients {
            for g in 0..n {
                assert_eq!(
                    locate(c, id, DomainQuery::global_id(g)),
                    Ok((g % 3 + 1, g)),
                    "{name}"
                );
            }
        }
    }
    // A local entry stays each node's own.
    let local: Vec<PoolId> = (1..=3).map(|k| id_of(&setup, k, "mine").unwrap()).collect();
    for (i, id) in local.iter().enumerate() {
        assert!(id.0 < chi_sdk::admin::GLOBAL_POOL_BASE, "{id}");
        assert_eq!(echo(&clients[i], *id, DomainQuery::local(), 4), Ok(4));
    }
    // Node 3's own compose thread asks only once it sees every node up,
    // which may come after the pools were shared to it.
    wait_until(
        LIMIT,
        "node 3's compose thread logs its pools ready",
        || {
            nodes[2]
                .log()
                .contains("compose pool over the cluster ready")
        },
    );
    drop(clients);
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}

#[test]
fn compose_retries_until_every_node_can_make_its_share() {
    let _w = Watchdog::new("compose_retry", Duration::from_secs(120));
    let compose = "compose:\n  - {module: chimaera_mod_name, name: everywhere, query: global}\n";
    let setup = ClusterSetup::with_modules_and("plife-compose-retry", 3, compose);
    // Node 3 cannot load the module: every creation is rolled back, and
    // the compose threads ask again.
    let bare = setup.config_without_modules();
    let mut nodes: Vec<Node> = (1..=3)
        .map(|k| match k {
            3 => Node::start_config(&setup, k, &bare),
            _ => Node::start(&setup, k),
        })
        .collect();
    wait_until(LIMIT, "node 1 logs a failed compose naming node 3", || {
        let log = nodes[0].log();
        log.contains("compose pool over the cluster not made yet") && log.contains("node 3")
    });
    // No half pool stays: each attempt is rolled back (a look may fall in
    // the middle of one, while nodes 1 and 2 hold their shares, so wait
    // for a look between attempts, which come farther apart each time).
    wait_until(LIMIT, "no node holds a share of the pool", || {
        (1..=3).all(|k| id_of(&setup, k, "everywhere").is_none())
    });
    // Node 3 again, with the module: a later ask makes the pool (over the
    // nodes up when it is asked: while node 3 restarts, nodes 1 and 2 may
    // make it without it).
    drop(nodes.pop());
    nodes.push(Node::start(&setup, 3));
    wait_until(LIMIT, "every node lists the composed pool", || {
        (1..=3).all(|k| id_of(&setup, k, "everywhere").is_some())
    });
    let id = id_of(&setup, 1, "everywhere").unwrap();
    let c1 = Client::connect(setup.opts(1)).expect("a client of node 1");
    let mut all = Vec::new();
    for k in 1..=3 {
        assert_eq!(id_of(&setup, k, "everywhere"), Some(id), "node {k}");
        for g in setup.share(k, id).expect("listed") {
            assert_eq!(locate(&c1, id, DomainQuery::global_id(g)), Ok((k, g)));
            all.push(g);
        }
    }
    all.sort_unstable();
    assert_eq!(all, vec![0, 1, 2]);
    drop(c1);
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}

#[test]
fn compose_global_on_a_runtime_without_peers_makes_the_pool_at_start() {
    let _w = Watchdog::new("compose_alone", Duration::from_secs(60));
    let setup = ClusterSetup::with_modules_and("plife-compose1", 1, COMPOSE);
    let node = Node::start(&setup, 1);
    let id = id_of(&setup, 1, "five").expect("made before the start returned");
    assert_eq!(setup.share(1, id), Some(vec![0, 1, 2, 3, 4]));
    let id = id_of(&setup, 1, "everywhere").expect("made at start");
    assert_eq!(setup.share(1, id), Some(vec![0]));
    drop(node);
    assert_no_process_left(setup.dir.path(), &[]);
}

#[test]
fn a_node_without_a_container_sends_tasks_to_the_pool() {
    let _w = Watchdog::new("containerless", Duration::from_secs(120));
    let setup = ClusterSetup::with_modules("plife-none", 3);
    let nodes = setup.start_all(LIMIT);
    let clients = setup.clients();
    // Two containers over three nodes: node 3 knows the pool, holds none.
    let id = AdminClient::new(&clients[2])
        .create_cluster_pool(MOD_NAME, "two", "", 2)
        .expect("a pool of 2 over 3 nodes");
    assert_eq!(setup.share(1, id), Some(vec![0]));
    assert_eq!(setup.share(2, id), Some(vec![1]));
    assert_eq!(setup.share(3, id), Some(vec![]));
    let c3 = &clients[2];
    for g in 0..2 {
        assert_eq!(locate(c3, id, DomainQuery::global_id(g)), Ok((g + 1, g)));
        assert_eq!(
            locate(c3, id, DomainQuery::global_hash(g + 10)),
            Ok((g + 1, g))
        );
        assert_eq!(
            echo(c3, id, DomainQuery::global_id(g), 40 + u64::from(g)),
            Ok(40 + u64::from(g))
        );
    }
    // Dynamic: no container here to ask, the containers round robin.
    let mut seen: Vec<(u32, u32)> = (0..4)
        .map(|_| locate(c3, id, DomainQuery::dynamic()).expect("dynamic from node 3"))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, vec![(1, 0), (2, 1)]);
    // A broadcast reaches both containers.
    assert_eq!(echo(c3, id, DomainQuery::global_bcast(), 9), Ok(9));
    // local(): this node has no container to run it.
    let e = echo(c3, id, DomainQuery::local(), 1).unwrap_err();
    assert!(e.contains("node 3"), "{e}");
    // Many at once, some abandoned: all come back or are freed.
    let pending: Vec<_> = (0..100u64)
        .map(|v| {
            c3.submit(
                EchoTask::new(id, DomainQuery::global_id((v % 2) as u32), v),
                chi_sdk::queue::Priority::LowLatency,
            )
            .expect("submit")
        })
        .collect();
    for (v, p) in pending.into_iter().enumerate() {
        if v % 10 == 0 {
            drop(p);
            continue;
        }
        assert_eq!(
            p.wait_with(|t| t.reply).expect("echo from node 3"),
            v as u64
        );
    }

    // Client data both ways through the hooks of a node with no container.
    let kv_pool = AdminClient::new(&clients[0])
        .create_cluster_pool("chimaera_kv", "kv2", "", 2)
        .expect("a kv pool of 2");
    assert_eq!(setup.share(3, kv_pool), Some(vec![]));
    let mut kv = KvClient::from(kv_pool);
    kv.query = DomainQuery::global_id(1);
    let big: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    kv.put(c3, b"k", &big).expect("put from node 3");
    assert_eq!(kv.get(c3, b"k").expect("get from node 3"), big);
    assert_eq!(kv.get(&clients[1], b"k").expect("get on node 2"), big);

    // Destroyed from the node without a container.
    AdminClient::new(c3)
        .destroy_pool(id)
        .expect("destroy from node 3");
    for k in 1..=3 {
        assert_eq!(setup.share(k, id), None, "node {k}");
    }
    drop(clients);
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}

#[test]
fn a_node_that_starts_later_or_restarts_learns_the_pools() {
    let _w = Watchdog::new("join_later", Duration::from_secs(120));
    let setup = ClusterSetup::with_modules("plife-join", 3);
    let mut nodes: Vec<Node> = (1..=2).map(|k| Node::start(&setup, k)).collect();
    wait_until(LIMIT, "nodes 1 and 2 see each other up", || {
        setup.state_seen(1, 2).is_some_and(|(s, _)| s == "up")
            && setup.state_seen(2, 1).is_some_and(|(s, _)| s == "up")
    });
    let c1 = Client::connect(setup.opts(1)).expect("a client of node 1");
    // Made while node 3 is not running: dealt over nodes 1 and 2.
    let early = AdminClient::new(&c1)
        .create_cluster_pool(MOD_NAME, "early", "", 3)
        .expect("a pool over nodes 1 and 2");
    assert_eq!(setup.share(1, early), Some(vec![0, 2]));
    nodes.push(Node::start(&setup, 3));
    wait_until(
        LIMIT,
        "node 3 learns the pool made before it started",
        || setup.share(3, early) == Some(vec![]),
    );
    // Sending needs the peer node up as node 3 sees it.
    wait_until(LIMIT, "every node shows all three up", || setup.all_up());
    let c3 = Client::connect(setup.opts(3)).expect("a client of node 3");
    for g in 0..3 {
        let node = if g == 1 { 2 } else { 1 };
        assert_eq!(locate(&c3, early, DomainQuery::global_id(g)), Ok((node, g)));
    }

    // A pool with a container on node 3; node 3 crashes and starts again:
    // it is told the pool and makes its container anew.
    let back = AdminClient::new(&c1)
        .create_cluster_pool(MOD_NAME, "back", "", 3)
        .expect("a pool over the three nodes");
    assert_eq!(setup.share(3, back), Some(vec![2]));
    drop(c3);
    nodes[2].kill9();
    wait_until(LIMIT, "node 1 sees node 3 down", || {
        setup.state_seen(1, 3).is_some_and(|(s, _)| s == "down")
    });
    let e = echo(&c1, back, DomainQuery::global_id(2), 1).unwrap_err();
    assert!(e.contains("node 3"), "{e}");
    nodes[2] = Node::start(&setup, 3);
    wait_until(
        LIMIT,
        "the restarted node 3 holds its container again",
        || setup.share(3, back) == Some(vec![2]) && setup.share(3, early) == Some(vec![]),
    );
    wait_until(LIMIT, "node 1 sees node 3 up", || {
        setup.state_seen(1, 3).is_some_and(|(s, _)| s == "up")
    });
    // Node 1 hears node 3 before its own link to node 3 has reconnected
    // (ZeroMQ's back-off, up to 250 ms): a task sent in between fails as
    // unreachable, to resubmit.
    let mut found = Err(String::new());
    wait_until(LIMIT, "node 1 reaches node 3 again", || {
        found = locate(&c1, back, DomainQuery::global_id(2));
        !found
            .as_ref()
            .is_err_and(|e| e.contains("could not be reached"))
    });
    assert_eq!(found, Ok((3, 2)));
    wait_until(LIMIT, "every node shows all three up", || setup.all_up());
    let c3 = Client::connect(setup.opts(3)).expect("a client of the new node 3");
    assert_eq!(locate(&c3, back, DomainQuery::global_id(0)), Ok((1, 0)));
    assert_eq!(echo(&c3, early, DomainQuery::global_id(1), 8), Ok(8));
    drop((c1, c3));
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}

#[test]
fn a_restarted_node_1_makes_new_pools_past_the_pools_that_exist() {
    let _w = Watchdog::new("restart_authority", Duration::from_secs(120));
    let setup = ClusterSetup::with_modules("plife-auth", 3);
    let mut nodes: Vec<Node> = (1..=3).map(|k| Node::start(&setup, k)).collect();
    wait_until(LIMIT, "every node shows all three up", || setup.all_up());
    let c2 = Client::connect(setup.opts(2)).expect("a client of node 2");
    let admin2 = AdminClient::new(&c2);
    let a = admin2
        .create_cluster_pool(MOD_NAME, "a", "", 3)
        .expect("pool a");
    let b = admin2
        .create_cluster_pool(MOD_NAME, "b", "", 3)
        .expect("pool b");
    // Node 1, the pools' authority, crashes and starts again knowing no
    // pool; a client of it asks for pools as soon as it can connect.
    nodes[0].kill9();
    wait_until(LIMIT, "node 2 sees node 1 down", || {
        setup.state_seen(2, 1).is_some_and(|(s, _)| s == "down")
    });
    nodes[0] = Node::start(&setup, 1);
    let c1 = Client::connect(setup.opts(1)).expect("a client of the new node 1");
    let admin1 = AdminClient::new(&c1);
    let c = admin1
        .create_cluster_pool(MOD_NAME, "c", "", 3)
        .expect("pool c, made by the restarted authority");
    assert!(c.0 > b.0 && b.0 > a.0, "ids {a:?} {b:?} {c:?}");
    assert_eq!(
        admin1
            .get_or_create_cluster_pool(MOD_NAME, "a", "", 3)
            .expect("pool a, from the restarted authority"),
        a,
        "the restarted authority knows the pool made before"
    );
    // Nothing that existed was dropped: every node lists the three pools
    // with their ids, and tasks reach every container.
    for k in 1..=3 {
        for (name, id) in [("a", a), ("b", b), ("c", c)] {
            assert_eq!(id_of(&setup, k, name), Some(id), "node {k}, pool {name}");
        }
    }
    wait_until(LIMIT, "every node shows all three up", || setup.all_up());
    for pool in [a, b, c] {
        for g in 0..3 {
            assert_eq!(echo(&c2, pool, DomainQuery::global_id(g), 5), Ok(5));
        }
    }
    drop((c1, c2));
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}
