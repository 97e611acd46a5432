//! `chi-runtime`: the daemon's building blocks.
//!
//! * [`config`]: the server configuration (embedded defaults + `CHI_SERVER_CONF`).
//! * [`ipc`]: segments, process queue and runtime block.
//! * [`clients`]: the bounded registry of client processes.
//! * [`module`]: finding and checking module libraries; the module ABI services.
//! * [`pool`]: pools and containers of this node.
//! * [`ratelimit`]: rate-limited warnings.
//! * [`worker`]: workers running tasks in coroutines.
//! * [`reaper`]: the supervisor thread: process reaper and worker watch.
//! * [`admin`]: the built-in admin module.
//! * [`runtime`]: start, serve, stop.
//! * [`cli`]: the `chi-runtime` command line; [`daemon_files`]: its pid and log
//!   files, opened without following symbolic links.

pub mod admin;
pub mod cli;
pub mod clients;
pub mod config;
pub mod daemon_files;
pub mod ipc;
pub mod module;
pub mod pool;
pub mod ratelimit;
pub mod reaper;
pub mod runtime;
pub mod worker;
