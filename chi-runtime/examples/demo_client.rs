//! A client of a running runtime: creates a pool, runs echo tasks through the
//! admin pool (synchronously and asynchronously), prints results and timings.
//!
//! Run against a runtime started with `chi-runtime start` (same `CHI_PORT` or
//! `CHI_SERVER_CONF`).

use std::time::Instant;

use chi_sdk::admin::AdminClient;
use chi_sdk::client::Client;
use chi_sdk::types::PoolId;

fn main() -> anyhow::Result<()> {
    let client = Client::init()?;
    println!(
        "connected: node {}, client id {}, runtime pid {}",
        client.node_id().0,
        client.client_id(),
        client.runtime_pid()
    );
    let admin = AdminClient::new(&client);
    let pool = admin.get_or_create_pool(chi_sdk::admin::ADMIN_LIB_NAME, "demo_admin", "")?;
    println!("pool 'demo_admin' has id {}", pool.0);
    for v in [1u64, 42, 1 << 40] {
        println!("echo({v}) = {}", admin.echo(pool, v)?);
    }
    let n = 100_000u64;
    let t = Instant::now();
    for i in 0..n {
        assert_eq!(admin.echo(PoolId::ADMIN, i)?, i);
    }
    let sync = t.elapsed();
    println!(
        "{n} synchronous echo round trips: {:.2} µs each",
        sync.as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    let mut inflight = Vec::with_capacity(256);
    for i in 0..n {
        inflight.push(admin.async_echo(PoolId::ADMIN, i)?);
        if inflight.len() == 256 || i == n - 1 {
            for task in inflight.drain(..) {
                client.wait(&task)?;
                assert_eq!(task.get().reply, task.get().value);
                client.del_task(task);
            }
        }
    }
    println!(
        "{n} asynchronous echoes (256 in flight): {:.0} tasks/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    match admin.create_pool("no_such_module", "x", "", PoolId::NULL) {
        Err(e) => println!("creating a pool of an unknown module fails: {e}"),
        Ok(id) => println!("unexpected: pool {id} created"),
    }
    admin.destroy_pool(pool)?;
    println!("pool {} destroyed", pool.0);
    Ok(())
}
