//! Starting the runtime's threads on the CPUs of their kind (`workers.affinity`).
//!
//! A runtime thread pins itself as its first act ([`enter`]:
//! `sched_setaffinity` on the calling thread), before it touches a lane, so no
//! task of it ever runs elsewhere, then reads its mask back for
//! `chi-runtime status`. Worker threads are started by [`spawn_worker`], at
//! start and when one takes over a wedged worker's lanes; the supervisor
//! thread calls [`enter`] itself. The lists were checked against this machine
//! before anything was created ([`crate::config::Config::check_resources`]):
//! should pinning fail anyway (the cgroup's cpuset changed since), the thread
//! says so in the log and runs on the CPUs it has, which `status` shows.

use std::sync::Arc;
use std::thread::JoinHandle;

use chi_sdk::queue::Consumer;

use crate::config::CpuList;
use crate::state::NodeState;
use crate::worker::WorkerStats;
use crate::worker::lifecycle::worker_thread;

/// Pins the calling thread, of `kind` (a `workers.affinity` key), to `cpus`
/// (none: leaves it where it may run); returns the CPUs it may run on now, in
/// the list syntax (empty if the kernel does not say).
pub(crate) fn enter(kind: &str, cpus: Option<&CpuList>) -> String {
    if let Some(list) = cpus {
        match rustix::thread::sched_setaffinity(None, &list.to_cpu_set()) {
            Ok(()) => tracing::debug!(kind, cpus = %list, "thread pinned"),
            Err(e) => tracing::error!(
                kind,
                cpus = %list,
                error = %e,
                "cannot pin the thread to the CPUs of workers.affinity.{kind}; it runs on the \
                 CPUs it has"
            ),
        }
    }
    CpuList::of_current_thread().map_or_else(String::new, |l| l.to_string())
}

/// Starts the thread of worker `stats` on its lanes (consumed through
/// `consumer`), pinned to the CPUs of its kind.
pub(crate) fn spawn_worker(
    shared: &Arc<NodeState>,
    stats: Arc<WorkerStats>,
    consumer: Consumer,
) -> std::io::Result<JoinHandle<()>> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name(format!("chi-worker-{}", stats.id))
        .spawn(move || {
            let cpus = enter(stats.kind, shared.config.affinity.of_kind(stats.kind));
            // Set once: a worker's thread starts once (a restart after a
            // panic runs on the same thread, with the same mask).
            let _ = stats.cpus.set(cpus);
            worker_thread(shared, stats, consumer)
        })
}
