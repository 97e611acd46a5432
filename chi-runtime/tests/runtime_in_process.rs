//! Runtimes started inside this test process (`Runtime::start`, not the
//! binary): a process hosts one runtime in its life.
//!
//! A module library is loaded once per process and keeps the services and
//! segments of the runtime that initialised it in process-wide state, so a
//! second runtime is refused — before it creates anything — with an error
//! that says why and what to do: while the first runs, and after it stopped
//! too. A start that fails before it has built its node state (its port is
//! taken) gives the process back.
//!
//! One test function only: under `cargo test` the functions of a file share
//! a process, and this one needs the process to itself.

mod support;

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use chi_runtime::config::Config;
use chi_runtime::runtime::Runtime;
use chi_runtime::state::NodeState;
use chi_sdk::client::Client;
use chimaera_mod_name_runtime as mod_name;
use mod_name::{CreateParams, ModNameClient};
use support::modules::module_setup;
use support::*;

/// A runtime serving in a thread of this process. Dropping it stops the
/// runtime and waits until its node state is gone (also when the test fails).
struct InProcess {
    state: Weak<NodeState>,
    serving: Option<JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    fn start(setup: &Setup) -> anyhow::Result<InProcess> {
        let config = Config::from_file(&setup.config)?;
        let rt = Runtime::start(config)?;
        let state = Arc::downgrade(rt.state());
        let serving = std::thread::Builder::new()
            .name("in-process-runtime".into())
            .spawn(move || rt.serve())?;
        Ok(InProcess {
            state,
            serving: Some(serving),
        })
    }

    /// Stops the runtime; returns once it has stopped and its state is gone.
    fn stop(&mut self) {
        if let Some(state) = self.state.upgrade() {
            state.request_stop("the test");
        }
        if let Some(serving) = self.serving.take() {
            match serving.join() {
                Ok(r) => r.expect("the runtime's serve loop"),
                Err(_) => panic!("the runtime's serve loop panicked"),
            }
        }
        assert!(
            self.state.upgrade().is_none(),
            "the node state outlived the runtime"
        );
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop();
        } else if let Some(state) = self.state.upgrade() {
            state.request_stop("the test (failing)");
            drop(state);
            if let Some(serving) = self.serving.take() {
                let _ = serving.join();
            }
        }
    }
}

/// Creates a pool of the example module on the runtime of `setup` and runs a
/// Custom task whose handler allocates its output in the runtime's main
/// segment (through the module's own view of the runtime's segments).
fn module_serves(setup: &Setup, pool: &str) {
    let client = Client::connect(setup.opts()).expect("connect");
    let params = CreateParams {
        config_data: String::new(),
        fail: false,
        fail_on_node: 0,
    };
    let m = ModNameClient::create(&client, pool, &params).expect("create a pool of mod_name");
    let (data, n) = m
        .custom(&client, "abc", mod_name::OP_APPEND_POOL)
        .expect("Custom append");
    assert_eq!(
        (data.as_str(), n as usize),
        (format!("abc:{pool}").as_str(), 4 + pool.len())
    );
}

/// The error of a start in this process refused because it hosts the runtime
/// of `hosted`; checks that it says why and what to do, and that the refused
/// runtime of `setup` created nothing.
fn refused(setup: &Setup, hosted: u16) {
    let err = match InProcess::start(setup) {
        Ok(_) => panic!("a second runtime started in a process that hosts one"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&format!(
            "cannot start a runtime on port {}: this process already hosts the runtime of port {hosted}",
            setup.port
        )),
        "{err}"
    );
    assert!(err.contains("process-wide state"), "{err}");
    assert!(
        err.contains("start this runtime in a process of its own ('chi-runtime start')"),
        "{err}"
    );
    assert!(
        segments(setup.port).is_empty(),
        "the refused runtime created segments: {:?}",
        segments(setup.port)
    );
}

#[test]
fn a_process_hosts_one_runtime_in_its_life() {
    let _wd = Watchdog::new("one_runtime_per_process", WATCHDOG);
    let first = module_setup("in_process_first");
    let second = module_setup("in_process_second");
    let later = module_setup("in_process_later");

    // A start that fails before it builds its node state (the port is taken)
    // leaves the process free.
    let taken = std::net::TcpListener::bind(("127.0.0.1", first.port)).expect("take the port");
    let err = match InProcess::start(&first) {
        Ok(_) => panic!("a runtime started on a port that is taken"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("in use"), "{err}");
    drop(taken);

    let mut a = InProcess::start(&first).expect("the first runtime starts");
    module_serves(&first, "first_pool");

    // A second runtime while the first runs: refused, nothing created, the
    // first one untouched.
    refused(&second, first.port);
    module_serves(&first, "first_pool_again");

    // And after the first has stopped: its module libraries still hold its
    // services.
    a.stop();
    assert!(
        segments(first.port).is_empty(),
        "the first runtime left segments: {:?}",
        segments(first.port)
    );
    refused(&later, first.port);
}
