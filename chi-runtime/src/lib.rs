//! `chi-runtime`: the daemon's building blocks.
//!
//! # Layers
//!
//! The modules import each other in one direction only (no import circles:
//! `scripts/check-imports.sh` checks it), from the building blocks up to the
//! daemon:
//!
//! * building blocks, which know nothing of the runtime around them:
//!   [`config`] (the server configuration: embedded defaults +
//!   `CHI_SERVER_CONF`), [`ipc`] (segments, process queue and runtime block),
//!   [`clients`] (the bounded registry of client processes), [`ratelimit`]
//!   (rate-limited warnings), [`daemon_files`] (the pid and log files, opened
//!   without following symbolic links), `coroutine` (task coroutines and their
//!   stack pool);
//! * modules: [`services`] (the functions module libraries call back into),
//!   [`module`] (finding, checking and loading module libraries), [`pool`]
//!   (pools and containers of this node);
//! * [`state`]: the node state that one runtime is made of, shared by its
//!   threads; it owns the module manager (nothing of a runtime is a process
//!   global);
//! * what works on the node state: [`worker`] (workers running tasks in
//!   coroutines), [`reaper`] (reclaiming what dead clients held),
//!   [`supervisor`] (the thread that watches the workers and runs the reaper),
//!   `threads` (starting worker threads pinned to the CPUs of their kind),
//!   [`admin`] (the built-in admin module);
//! * [`runtime`]: start, serve, stop; [`cli`]: the `chi-runtime` command line.

pub mod admin;
pub mod cli;
pub mod clients;
pub mod cluster;
pub mod compose;
pub mod config;
pub(crate) mod coroutine;
pub mod daemon_files;
pub mod ipc;
pub mod models;
pub mod module;
pub mod placement;
pub mod pool;
pub mod ratelimit;
pub mod reaper;
pub mod reinforcement;
pub mod remote;
pub mod remote_host;
pub mod runtime;
pub mod services;
pub mod state;
pub mod supervisor;
pub(crate) mod threads;
pub mod worker;
