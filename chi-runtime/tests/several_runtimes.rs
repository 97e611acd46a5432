//! One process, clients of several runtimes at once: each runtime takes
//! segment ids no other runtime of the user holds, so their segments map side
//! by side, tasks go to the runtime whose client submitted them, and threads
//! use both at the same time. No lock keeps the runtimes apart.

mod support;

use chi_sdk::client::Client;
use chimaera_mod_name_runtime as mod_name;
use mod_name::{CreateParams, ModNameClient};
use support::modules::module_dir;
use support::*;

fn setup(test: &str) -> Setup {
    Setup::with(
        test,
        ConfigOpts {
            low_latency: 1,
            high_latency: 1,
            extra: format!("module_path: [{:?}]\n", module_dir().display().to_string()),
            ..ConfigOpts::default()
        },
    )
}

#[test]
fn one_process_is_a_client_of_three_runtimes_at_once() {
    let _wd = Watchdog::new("several_runtimes", WATCHDOG);
    let setups: Vec<Setup> = (0..3).map(|i| setup(&format!("several_{i}"))).collect();
    let rts: Vec<RuntimeGuard> = setups.iter().map(RuntimeGuard::start).collect();
    let clients: Vec<Client> = setups
        .iter()
        .map(|s| Client::connect(s.opts()).expect("connect"))
        .collect();
    // Their segments have ids of their own.
    let mut ids: Vec<u16> = clients
        .iter()
        .map(|c| c.queue().shm().segment().0)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        3,
        "each runtime's main segment has its own id: {ids:?}"
    );
    // Each runtime runs its own pools; the same name on each is three pools.
    let pools: Vec<ModNameClient> = clients
        .iter()
        .map(|c| ModNameClient::create(c, "same_name", &CreateParams::default()).expect("pool"))
        .collect();
    std::thread::scope(|s| {
        for (i, (c, p)) in clients.iter().zip(&pools).enumerate() {
            s.spawn(move || {
                for v in 0..2000u64 {
                    assert_eq!(
                        p.echo(c, v * 10 + i as u64).expect("echo"),
                        v * 10 + i as u64
                    );
                }
                // Subtasks inside each runtime.
                assert_eq!(
                    p.fan_out(c, p.pool, mod_name::TARGET_MOD_NAME, 50)
                        .expect("FanOut"),
                    1275
                );
            });
        }
    });
    // Interleaved from one thread: every task to the runtime of its client.
    for v in 0..300u64 {
        for (c, p) in clients.iter().zip(&pools) {
            assert_eq!(p.echo(c, v).expect("echo"), v);
        }
    }
    for s in &setups {
        let st = Client::status(&s.opts()).expect("status");
        assert!(st.tasks_completed >= 2300, "{}", st.tasks_completed);
    }
    // A client of one runtime outlives another runtime's stop.
    drop(pools);
    let mut clients = clients;
    let last = clients.pop().expect("a client");
    drop(clients);
    let mut rts = rts;
    let last_rt = rts.pop().expect("a runtime");
    for rt in rts {
        rt.stop();
    }
    let p = ModNameClient::create(&last, "after", &CreateParams::default()).expect("pool");
    assert_eq!(p.echo(&last, 9).expect("echo after the others stopped"), 9);
    drop(last);
    last_rt.stop();
}
