//! A client of a local cluster (`chi-runtime start --local-cluster 3`): creates
//! a pool of the example module `mod_name` with one container per node, and
//! from the node it is connected to sends tasks to each container — by global
//! id, by hash, by the module's choice (a dynamic query), and broadcasts whose
//! answers are collected or summed — printing which node answered each.
//! `scripts/cluster_demo.sh` starts the cluster, runs this, and stops it.

use chi_sdk::admin::{AdminClient, PoolParams};
use chi_sdk::client::Client;
use chi_sdk::types::DomainQuery;
use chimaera_mod_name_runtime::{self as mod_name, CreateParams, ModNameClient};

fn main() -> anyhow::Result<()> {
    let client = Client::init()?;
    let status = Client::status(&chi_sdk::client::ClientOptions::from_env())?;
    let nodes = status
        .cluster
        .iter()
        .filter(|n| n.state == "up" || n.state == "self")
        .count() as u32;
    println!(
        "connected to node {} of a cluster of {} node(s) up",
        client.node_id().0,
        nodes
    );
    let params = CreateParams {
        config_data: "cluster demo".into(),
        fail: false,
        fail_on_node: 0,
    }
    .to_args()
    .map_err(anyhow::Error::msg)?;
    let pool = AdminClient::new(&client).get_or_create_cluster_pool(
        mod_name::CHIMOD_LIB_NAME,
        "demo_cluster",
        &params,
        nodes.max(1),
    )?;
    let pool = ModNameClient::from(pool);
    println!(
        "pool 'demo_cluster' ({} containers) has id {}",
        nodes, pool.pool.0
    );
    for g in 0..nodes {
        let (node, container) = pool
            .with_query(DomainQuery::global_id(g))
            .locate(&client, mod_name::LOCATE_ANY)?;
        println!("  Locate to global id {g}: container {container} answered on node {node}");
    }
    for key in [7u32, 8, 9] {
        let at = pool.with_query(DomainQuery::global_hash(key));
        let (node, container) = at.locate(&client, mod_name::LOCATE_ANY)?;
        let echoed = at.echo(&client, u64::from(key) * 1000)?;
        println!(
            "  Echo({}) by hash {key}: {echoed} from container {container} on node {node}",
            u64::from(key) * 1000
        );
    }
    // Dynamic: the module's monitor routes by the key (0: round robin).
    for key in [mod_name::LOCATE_ANY, mod_name::LOCATE_ANY, 5] {
        let at = pool.with_query(DomainQuery::dynamic());
        let (node, container) = at.locate(&client, key)?;
        println!("  Locate dynamic (key {key}): container {container} answered on node {node}");
    }
    // Broadcasts: every container answers; Census collects the answers (the
    // generated default), Tally sums them (the module's aggregate_tally).
    let all = pool.with_query(DomainQuery::global_bcast());
    let (_, nodes_seen, containers, _, _, _) = all.census(&client, 0)?;
    println!("  Census broadcast: containers {containers:?} answered on nodes {nodes_seen:?}");
    let (total, replicas) = all.tally(&client, 1000)?;
    println!("  Tally broadcast of 1000: {replicas} replicas summed to {total}");
    Ok(())
}
