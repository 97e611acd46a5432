//! Dynamic queries and broadcasts over the cluster, with three real
//! runtimes on 127.0.0.1, .2 and .3 and a mod_name pool of five containers
//! (container g on node g % 3 + 1).
//!
//! * GetDynamic: Locate's monitor (GlobalSchedule) routes by the task's key
//!   (container key % 5), from every node, to containers on every node; with
//!   no choice the containers come round robin; a choice past the pool's
//!   containers fails the task naming the choice and the count, and the
//!   node logs it. A pool of one node takes the same path.
//! * Broadcast: Census from every node collects every container's answer
//!   in container order (the generated default: vectors, strings and
//!   client-data buffers append, a value and the `#[inout]` tag keep container 0's); Tally's
//!   `aggregate_tally` sums; Locate keeps container 0's outputs; from a node
//!   without a container of the pool, the default still collects and a
//!   module's aggregate fails saying why; with node 3
//!   killed, a broadcast fails naming node 3 within the task timeout (before
//!   and after it is seen down), and the survivors keep serving. No node's
//!   segments keep a block more after the broadcasts.
//!
//! Heartbeats every 100 ms, peers down after 1 s, `cluster.task_timeout` 2 s
//! ([`support::cluster`]); every wait is bounded by a generous limit.

mod support;

use std::time::{Duration, Instant};

use chi_sdk::admin::AdminClient;
use chi_sdk::client::Client;
use chi_sdk::queue::Priority;
use chi_sdk::types::{DomainQuery, PoolId};
use chimaera_mod_name_runtime::{CensusTask, LOCATE_ANY, LOCATE_PAST_END, TallyTask};
use support::cluster::{ClusterSetup, Node, TASK_TIMEOUT, locate_key};
use support::{Watchdog, assert_no_process_left, wait_until};

const MOD_NAME: &str = "chimaera_mod_name";
const LIMIT: Duration = Duration::from_secs(20);
/// Containers of the test pool.
const N: u32 = 5;

/// The node of container `g` of the test pool.
fn node_of(g: u32) -> u32 {
    g % 3 + 1
}

#[test]
fn dynamic_queries_go_where_the_monitor_says() {
    let _w = Watchdog::new("dynamic_queries", Duration::from_secs(120));
    let setup = ClusterSetup::with_modules("cdynamic", 3);
    let nodes: Vec<Node> = setup.start_all(LIMIT);
    let clients = setup.clients();
    let id = AdminClient::new(&clients[0])
        .create_cluster_pool(MOD_NAME, "dyn", "", N)
        .expect("a pool over the cluster");
    let dynamic = DomainQuery::dynamic();

    // The monitor's choice, from every node, to containers on every node
    // (the choice is a global id: a container elsewhere is reached over the
    // peer link).
    for from in &clients {
        for key in 1..=2 * u64::from(N) {
            let g = (key % u64::from(N)) as u32;
            assert_eq!(
                locate_key(from, id, dynamic, key),
                Ok((node_of(g), g)),
                "key {key}"
            );
        }
    }

    // No choice: round robin over the pool's containers (one turn counter
    // per pool on each node), twice around from node 2.
    let seen: Vec<u32> = (0..2 * N)
        .map(|_| {
            let (node, g) = locate_key(&clients[1], id, dynamic, LOCATE_ANY).expect("round robin");
            assert_eq!(node, node_of(g));
            g
        })
        .collect();
    for w in seen.windows(2) {
        assert_eq!(w[1], (w[0] + 1) % N, "round robin: {seen:?}");
    }

    // A choice past the pool's containers fails the task, naming it.
    let e = locate_key(&clients[2], id, dynamic, LOCATE_PAST_END).unwrap_err();
    assert!(
        e.contains("chose container 12") && e.contains("5 container(s)"),
        "{e}"
    );
    assert!(
        nodes[2].log().contains("a Dynamic task failed"),
        "node 3 logs the bad choice:\n{}",
        nodes[2].log()
    );

    // A pool of one node takes the same path (one container).
    let local = AdminClient::new(&clients[2])
        .create_pool(MOD_NAME, "dyn-local", "", PoolId::NULL)
        .expect("a local pool");
    assert_eq!(locate_key(&clients[2], local, dynamic, 4), Ok((3, 0)));
    assert_eq!(
        locate_key(&clients[2], local, dynamic, LOCATE_ANY),
        Ok((3, 0))
    );
    let e = locate_key(&clients[2], local, dynamic, LOCATE_PAST_END).unwrap_err();
    assert!(e.contains("chose container 8"), "{e}");

    drop(clients);
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}

/// What a broadcast Census answered: (nodes, containers, trail and note
/// joined by a space, first node, tag).
type Census = (Vec<u32>, Vec<u32>, String, u32, u32);

fn census(c: &Client, pool: PoolId, q: DomainQuery, tag: u32) -> Result<Census, String> {
    c.submit(CensusTask::new(pool, q, tag), Priority::LowLatency)
        .map_err(|e| e.to_string())?
        .wait_with(|t| {
            let text = |b: Vec<u8>| String::from_utf8(b).expect("UTF-8");
            (
                t.nodes.as_slice().expect("nodes").to_vec(),
                t.containers.as_slice().expect("containers").to_vec(),
                format!(
                    "{} {}",
                    text(t.trail.as_bytes().expect("trail").to_vec()),
                    text(t.note.to_vec(c).expect("note"))
                ),
                t.first_node,
                t.tag,
            )
        })
        .map_err(|e| e.to_string())
}

fn tally(c: &Client, pool: PoolId, q: DomainQuery, add: u64) -> Result<(u64, u32), String> {
    c.submit(TallyTask::new(pool, q, add), Priority::LowLatency)
        .map_err(|e| e.to_string())?
        .wait_with(|t| (t.total, t.replicas))
        .map_err(|e| e.to_string())
}

#[test]
fn broadcasts_aggregate_their_replicas() {
    let _w = Watchdog::new("broadcasts_aggregate", Duration::from_secs(120));
    let setup = ClusterSetup::with_modules("cbcast", 3);
    let mut nodes: Vec<Node> = setup.start_all(LIMIT);
    let clients = setup.clients();
    let id = AdminClient::new(&clients[1])
        .create_cluster_pool(MOD_NAME, "bcast", "", N)
        .expect("a pool over the cluster");
    let bcast = DomainQuery::global_bcast();

    for from in &clients {
        // The generated default collects, in container order.
        let (nodes_seen, containers, trail, first, tag) =
            census(from, id, bcast, 7).expect("a broadcast Census");
        assert_eq!(nodes_seen, (0..N).map(node_of).collect::<Vec<_>>());
        assert_eq!(containers, (0..N).collect::<Vec<_>>());
        assert_eq!(trail, "c0@n1;c1@n2;c2@n3;c3@n1;c4@n2; n1|n2|n3|n1|n2|");
        assert_eq!((first, tag), (1, 7), "values and inout keep container 0's");
        // The module's aggregate_tally sums: 5 × 1000 + (0 + 1 + 2 + 3 + 4).
        assert_eq!(tally(from, id, bcast, 1000), Ok((5010, N)));
        // Locate has scalar outputs only: container 0's.
        assert_eq!(locate_key(from, id, bcast, 0), Ok((1, 0)));
    }
    // Nothing leaks: the copies the replicas are combined through, and the
    // buffers the collection grows, are freed (counted after a first round,
    // which leaves the allocators' caches filled).
    let before: Vec<(u64, u64)> = (1..=3).map(|k| setup.live_blocks(k)).collect();
    for _ in 0..3 {
        for from in &clients {
            census(from, id, bcast, 1).expect("Census");
            tally(from, id, bcast, 1).expect("Tally");
        }
    }
    for (k, want) in (1..=3).zip(before) {
        wait_until(
            LIMIT,
            &format!("node {k}'s live blocks back to {want:?}"),
            || setup.live_blocks(k) == want,
        );
    }

    // One container: no aggregation at all.
    assert_eq!(
        tally(&clients[0], id, DomainQuery::global_id(3), 1000),
        Ok((1003, 1))
    );

    // From a node that holds no container of the pool (2 containers, on
    // nodes 1 and 2): the default aggregation needs no container; the
    // module's aggregate_tally, a method of its container, fails saying so.
    let two = AdminClient::new(&clients[0])
        .create_cluster_pool(MOD_NAME, "bcast2", "", 2)
        .expect("a pool of 2 over the cluster");
    let (nodes_seen, containers, trail, first, _) =
        census(&clients[2], two, bcast, 0).expect("a broadcast Census from node 3");
    assert_eq!((nodes_seen, containers), (vec![1, 2], vec![0, 1]));
    assert_eq!((trail.as_str(), first), ("c0@n1;c1@n2; n1|n2|", 1));
    let e = tally(&clients[2], two, bcast, 1).unwrap_err();
    assert!(
        e.contains("aggregate_tally") && e.contains("holds no container"),
        "{e}"
    );

    // Node 3 dies: a broadcast fails naming it within the task timeout
    // (before it is seen down: timeout or down; after: at once).
    nodes[2].kill9();
    let t0 = Instant::now();
    let e = census(&clients[0], id, bcast, 0).unwrap_err();
    assert!(e.contains("node 3") && e.contains("container 2"), "{e}");
    assert!(t0.elapsed() < TASK_TIMEOUT * 2, "{:?}", t0.elapsed());
    wait_until(LIMIT, "node 1 sees node 3 down", || {
        setup.state_seen(1, 3).is_some_and(|(s, _)| s == "down")
    });
    let t0 = Instant::now();
    // From node 2, which may not see node 3 down yet: then its frame to
    // node 3 cannot be queued (no connection), which fails it at once too.
    let e = tally(&clients[1], id, bcast, 1).unwrap_err();
    assert!(
        e.contains("node 3 went down") || e.contains("node 3 could not be reached"),
        "{e}"
    );
    assert!(t0.elapsed() < TASK_TIMEOUT, "{:?}", t0.elapsed());
    // The others keep serving.
    assert_eq!(
        tally(&clients[0], id, DomainQuery::global_id(1), 5),
        Ok((6, 1))
    );
    drop(clients);
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}
