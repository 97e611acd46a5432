//! The `workers` section: thread counts (bounded in all by the main
//! segment's allocator owner slots) and CPU lists.

use super::*;

impl Builder<'_> {
    pub(super) fn workers(&self, raw: RawWorkers) -> Result<WorkerCounts, ConfigError> {
        let why = format!("at most {MAX_WORKER_THREADS} worker threads in all");
        let workers = WorkerCounts {
            low_latency: self.count(
                raw.low_latency,
                "workers.low_latency",
                (1, MAX_WORKERS),
                &why,
            )?,
            high_latency: self.count(
                raw.high_latency,
                "workers.high_latency",
                (1, MAX_WORKERS),
                &why,
            )?,
            reinforcement: self.count(raw.reinforcement, "workers.reinforcement", (0, 1), &why)?,
            process_reaper: self.count(
                raw.process_reaper,
                "workers.process_reaper",
                (0, 1),
                "one reaper serves the whole node; 0 runs none",
            )?,
        };
        let total = u64::from(workers.low_latency)
            + u64::from(workers.high_latency)
            + u64::from(workers.reinforcement)
            + u64::from(workers.process_reaper);
        if total > u64::from(MAX_WORKER_THREADS) {
            let keys = worker_keys(&workers);
            let origins = self.origins.borrow();
            let key = origins.blame(&keys);
            let message = format!(
                "{total} worker threads in all is more than {MAX_WORKER_THREADS} ({}); \
                 each holds one of the main segment's {MAX_OWNERS} allocator owner slots, \
                 which clients need too: lower the worker counts",
                sum_of(&keys)
            );
            return Err(origins.error(ConfigError::BadValue, key, message));
        }
        Ok(workers)
    }

    /// The CPU lists of `workers.affinity`: their syntax was checked when they
    /// were read; whether their CPUs exist is checked at start.
    pub(super) fn affinity(&self, raw: RawAffinity) -> AffinityConfig {
        let list = |leaf: Leaf<super::super::cpus::RawCpuList>, key: &str| {
            leaf.map(|item| {
                self.note(key, &item);
                item.value.0
            })
        };
        AffinityConfig {
            low_latency: list(raw.low_latency, "workers.affinity.low_latency"),
            high_latency: list(raw.high_latency, "workers.affinity.high_latency"),
            reinforcement: list(raw.reinforcement, "workers.affinity.reinforcement"),
            process_reaper: list(raw.process_reaper, "workers.affinity.process_reaper"),
        }
    }
}
