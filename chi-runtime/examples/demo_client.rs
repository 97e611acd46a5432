//! A client of a running runtime: creates a pool of the example module
//! `mod_name` (its library loaded by the runtime from the module path) and
//! calls its methods, runs echo tasks through the admin pool (synchronously and
//! asynchronously), and prints results and timings.
//!
//! Run against a runtime started with `chi-runtime start` (same `CHI_PORT` or
//! `CHI_SERVER_CONF`) that finds `libchimaera_mod_name_runtime.so` in its
//! `module_path` or `CHI_MODULE_PATH` (`scripts/demo.sh` does all of this).

use std::time::Instant;

use chi_sdk::admin::AdminClient;
use chi_sdk::client::Client;
use chi_sdk::types::PoolId;
use chimaera_mod_name_runtime::{self as mod_name, CreateParams, ModNameClient};

fn main() -> anyhow::Result<()> {
    let client = Client::init()?;
    println!(
        "connected: node {}, client id {}, runtime pid {}",
        client.node_id().0,
        client.client_id(),
        client.runtime_pid()
    );
    let admin = AdminClient::new(&client);

    // A pool of a loaded module.
    let params = CreateParams {
        config_data: "demo".into(),
        fail: false,
        fail_on_node: 0,
    };
    let m = ModNameClient::create(&client, "demo_mod_name", &params)?;
    println!(
        "pool 'demo_mod_name' of module {} has id {}",
        mod_name::CHIMOD_LIB_NAME,
        m.pool.0
    );
    let (s, n) = m.custom(&client, "hello, chimaera", mod_name::OP_UPPERCASE)?;
    println!("Custom(uppercase, \"hello, chimaera\") = {s:?} (length {n})");
    let (s, _) = m.custom(&client, "grown", mod_name::OP_APPEND_POOL)?;
    println!("Custom(append pool name, \"grown\") = {s:?}");
    let pending: Vec<_> = (0..4)
        .map(|i| m.async_custom(&client, &format!("async {i}"), mod_name::OP_UPPERCASE))
        .collect::<Result<_, _>>()?;
    for p in pending {
        let s = p.wait_with(|t| t.data.to_str().map(str::to_owned))??;
        println!("AsyncCustom → {s:?}");
    }
    match m.panic(&client, 7) {
        Err(e) => println!("a panicking handler fails only its task: {e}"),
        Ok(()) => println!("unexpected: the panic task succeeded"),
    }
    let (_, calls) = m.custom(&client, "", mod_name::OP_COUNT)?;
    println!("the container still serves: {calls} Custom calls so far");
    let n = 100_000u64;
    let t = Instant::now();
    for i in 0..n {
        assert_eq!(m.echo(&client, i)?, i);
    }
    println!(
        "{n} synchronous echo round trips through the loaded module: {:.2} µs each",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );

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
        "{n} synchronous echo round trips through the built-in admin module: {:.2} µs each",
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
    admin.destroy_pool(m.pool)?;
    println!("pools {} and {} destroyed", pool.0, m.pool.0);
    Ok(())
}
