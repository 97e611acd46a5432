//! Dynamic queries and broadcasts over the cluster, with three real
//! runtimes on 127.0.0.1, .2 and .3 and a mod_name pool of five containers
//! (container g on node g % 3 + 1).
//!
//! * GetDynamic: Locate's monitor (GlobalSchedule) routes by the task's key
//!   (container key % 5), from every node, to containers on every node; with
//!   no choice the containers come round robin; a choice past the pool's
//!   containers fails the task naming the choice and the count, and the
//!   node logs it. A pool of one node takes the same path.
//!
//! Heartbeats every 100 ms, peers down after 1 s, `cluster.task_timeout` 2 s
//! ([`support::cluster`]); every wait is bounded by a generous limit.

mod support;

use std::time::Duration;

use chi_sdk::admin::AdminClient;
use chi_sdk::client::Client;
use chi_sdk::queue::Priority;
use chi_sdk::types::{DomainQuery, PoolId};
use chimaera_mod_name_runtime::{LOCATE_ANY, LOCATE_PAST_END, LocateTask};
use support::cluster::{ClusterSetup, Node};
use support::{Watchdog, assert_no_process_left};

const MOD_NAME: &str = "chimaera_mod_name";
const LIMIT: Duration = Duration::from_secs(20);
/// Containers of the test pool.
const N: u32 = 5;

/// The node and container that ran a Locate task with `key`, sent with
/// query `q`.
fn locate(c: &Client, pool: PoolId, q: DomainQuery, key: u64) -> Result<(u32, u32), String> {
    c.submit(LocateTask::new(pool, q, key), Priority::LowLatency)
        .map_err(|e| e.to_string())?
        .wait_with(|t| (t.node_id, t.container_id))
        .map_err(|e| e.to_string())
}

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
                locate(from, id, dynamic, key),
                Ok((node_of(g), g)),
                "key {key}"
            );
        }
    }

    // No choice: round robin over the pool's containers (one turn counter
    // per pool on each node), twice around from node 2.
    let seen: Vec<u32> = (0..2 * N)
        .map(|_| {
            let (node, g) = locate(&clients[1], id, dynamic, LOCATE_ANY).expect("round robin");
            assert_eq!(node, node_of(g));
            g
        })
        .collect();
    for w in seen.windows(2) {
        assert_eq!(w[1], (w[0] + 1) % N, "round robin: {seen:?}");
    }

    // A choice past the pool's containers fails the task, naming it.
    let e = locate(&clients[2], id, dynamic, LOCATE_PAST_END).unwrap_err();
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
    assert_eq!(locate(&clients[2], local, dynamic, 4), Ok((3, 0)));
    assert_eq!(locate(&clients[2], local, dynamic, LOCATE_ANY), Ok((3, 0)));
    let e = locate(&clients[2], local, dynamic, LOCATE_PAST_END).unwrap_err();
    assert!(e.contains("chose container 8"), "{e}");

    drop(clients);
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}
