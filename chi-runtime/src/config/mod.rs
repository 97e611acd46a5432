//! The runtime's configuration.
//!
//! The built-in defaults live in `chi-runtime/config/chimaera_default.yaml`, embedded
//! in the binary ([`Config::default_yaml`]). The environment variable
//! [`CHI_SERVER_CONF`](ENV_SERVER_CONF) names the user's YAML file, whose keys override
//! the defaults key by key, nested keys too; lists are replaced whole.
//!
//! Both documents are read into "raw" structs whose every field is optional and
//! remembers its line and column; the user's raw struct is merged over the defaults',
//! then every value is checked and the typed [`Config`] built. A mistake in the user's
//! file becomes a [`ConfigError`] that names the file, the line and column, the key
//! (as a dotted path such as `workers.low_latency`) and what was expected.
//!
//! Checking a value includes what the runtime will make of it
//! ([`footprint`]): the main segment must hold its allocator metadata, the
//! process queue and room for tasks; worker threads and clients share the main
//! segment's allocator owner slots. What depends on the machine is checked at
//! start, before anything is created, by [`Config::check_resources`]
//! (`resources`): the segments against the free space of `/dev/shm`, the
//! workers against the CPUs, the coroutine stacks against the memory-map and
//! address-space limits. Its errors name the file, line and key too, and the
//! CLI exits with code 2 on them as on any configuration error.
//!
//! # Files
//!
//! One file per step, each importing only the steps before it:
//! `defaults` and `limits` (names and bounds) → `error` → `model`
//! (the typed [`Config`]) → `raw` (documents as written) → `parse` →
//! `build` (checking values) → `load`; beside them `units` (sizes and
//! durations), `cpus` (CPU lists), `hostfile`, [`footprint`] and
//! `resources`. This file only declares them and re-exports the public items.

mod build;
mod cpus;
mod defaults;
mod error;
pub mod footprint;
mod hostfile;
mod limits;
mod load;
mod model;
mod overrides;
mod parse;
mod raw;
mod resources;
mod units;

#[cfg(test)]
mod tests;

pub use cpus::{CpuList, CpuListError, MAX_CPU};
pub use defaults::{DEFAULT_SOURCE_NAME, ENV_SERVER_CONF};
pub use error::{ConfigError, ErrorDetail, Pos, Snippet};
pub use hostfile::{MAX_HOST_NAME, MAX_HOSTS, load_hostfile, parse_hostfile};
pub use limits::{
    HEARTBEAT_RANGE, MAX_BUSY_POLL, MAX_COMPOSE_CONTAINERS, MAX_LANES, MAX_LIVE_COROUTINES,
    MAX_QUEUE_DEPTH, MAX_SEGMENT_SIZE, MAX_STACK_SIZE, MAX_WORKER_THREADS, MAX_WORKERS,
    MIN_QUEUE_DEPTH, MIN_STACK_SIZE, PEER_TIMEOUT_RANGE, REAPER_INTERVAL_RANGE, RESERVED_POOL_IDS,
    STACK_SIZE_GRANULE, STALL_TIMEOUT_RANGE, TASK_TIMEOUT_RANGE, WORKER_THREADS_PER_CPU,
};
pub use model::{
    AffinityConfig, ClusterConfig, Config, ControlConfig, CoroutineConfig, IdleConfig, LogLevel,
    LoggingConfig, PoolQuery, PoolSpec, QueueConfig, ReaperConfig, SegmentSizes, SupervisorConfig,
    TasksConfig, WorkerCounts,
};
pub use units::{UnitError, format_size, format_size_approx, parse_duration, parse_size};
