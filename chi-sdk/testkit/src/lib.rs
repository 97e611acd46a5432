//! Helpers shared by the workspace's integration tests (internal, not published).
//!
//! Only generic machinery lives here; what is specific to a crate (shared-memory
//! segments, the runtime, ports, configuration files) stays in that crate's
//! `tests/support/mod.rs`, which re-exports what it uses from here.
//!
//! * Child roles: a test re-executes its own binary to run one `#[test]`
//!   function as a "child role" (`exe --ignored --exact <role> --nocapture
//!   --test-threads=1`, [`role_args`]), with the role ([`ROLE_ENV`]) and its
//!   parameters in environment variables ([`env_str`], [`env_u64`]). A role
//!   function is marked `#[ignore = "child role: run by its parent test"]`
//!   ([`ROLE_IGNORE`]), so a normal run lists it as ignored, and returns at once
//!   when [`child_role`] says the variable is absent. A child that fails, or runs
//!   no test, fails its parent.
//! * [`Children`]: such child processes, their output captured. Dropping it kills
//!   and reaps every child still running; every wait on them is bounded by a
//!   watchdog that kills them and fails the test with their output.
//! * [`run_cli`]: runs a command to completion under a time limit.
//! * Every process started through this crate is killed by the kernel when the
//!   thread that started it ends (also when the test process is SIGKILLed), and is
//!   recorded until reaped, so that a [`Watchdog`] (a per-test limit) can kill it.
//! * [`Rng`]: a small seedable PRNG; [`wait_until`]: a bounded wait.
//!
//! Tests never assert timings: every wait is bounded by a watchdog that fails
//! the test with the processes' output.

mod children;
mod cli;
mod process;
mod rng;
mod role;
mod shm_name;
mod watchdog;

pub use children::Children;
pub use cli::{CliOutput, run_cli};
pub use process::{SCRUBBED_ENV, die_with_parent, sigkill, sigterm, spawn_registered, try_reap};
pub use rng::Rng;
pub use role::{ROLE_ENV, ROLE_IGNORE, child_role, env_str, env_u64, role_args};
pub use shm_name::{ShmName, unique_name};
pub use watchdog::{Watchdog, exempt, wait_until};
