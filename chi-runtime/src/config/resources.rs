//! Start-time checks: does this machine hold the configuration?
//!
//! Parsing checks what a configuration is on its own ([`super::footprint`]);
//! [`Config::check_resources`] checks it against the machine it starts on, before
//! anything is created, so that a runtime that cannot work refuses to start with
//! a [`ConfigError::Resources`] naming the file, line and key — not dies of
//! SIGBUS when a segment page past the free space of `/dev/shm` is first touched,
//! or of a failed `mmap` deep in a worker.
//!
//! * **`/dev/shm`**: the three segments together must fit its free space
//!   (`statvfs`), counting the space of this port's stale segments, which start
//!   replaces. Segments are sparse files: this check (and the same one per segment
//!   in `Segment::create`) is what stands between an oversized segment and
//!   SIGBUS. Space that other programs take *after* the start is not reserved
//!   (reserving it with `fallocate` costs ~0.5 s and the memory itself per GiB).
//! * **Threads**: worker threads of all kinds at most
//!   [`WORKER_THREADS_PER_CPU`] per available CPU.
//! * **Affinity**: every CPU of the `workers.affinity` lists must be online and
//!   one this process may run on (its own affinity mask, within its cgroup's
//!   cpuset): `sched_setaffinity` would refuse, or silently narrow, any other.
//! * **Coroutine stacks**: `coroutine.max_live` stacks of `coroutine.stack_size`
//!   per task-running worker must fit the memory-map limit
//!   (`vm.max_map_count`, two entries a stack), the address space (`RLIMIT_AS`)
//!   and, under strict overcommit (`vm.overcommit_memory = 2`), the commit limit.

use std::path::Path;

use super::build::{sum_of, worker_keys};
use super::cpus::CpuList;
use super::defaults::ENV_SERVER_CONF;
use super::error::ConfigError;
use super::footprint::{CoroutineNeeds, MAPPINGS_PER_STACK};
use super::limits::WORKER_THREADS_PER_CPU;
use super::model::Config;
use super::units::{format_size, format_size_approx};

/// Where the segments are created.
const SHM_DIR: &str = "/dev/shm";
/// Memory-map entries kept for everything but coroutine stacks started later:
/// module libraries, segments, allocator arenas.
const MAP_HEADROOM: u64 = 1024;
/// User address space of a process (47 bits on x86-64 and most 64-bit Linux).
const USER_ADDRESS_SPACE: u64 = 1 << 47;

/// What the machine offers, as far as the checks go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Machine {
    /// Free bytes of `/dev/shm` plus the bytes of this port's stale segments;
    /// `None`: unknown or unlimited.
    pub shm_free: Option<u64>,
    /// CPUs this process may run on.
    pub cpus: u32,
    /// Which CPUs this process may run on; `None`: unknown.
    pub allowed_cpus: Option<CpuList>,
    /// The CPUs online; `None`: unknown.
    pub online_cpus: Option<CpuList>,
    /// `vm.max_map_count`; `None`: unknown.
    pub max_map_count: Option<u64>,
    /// Memory-map entries of this process now.
    pub maps_in_use: u64,
    /// Address space left to this process, and what limits it.
    pub address_space_left: (u64, &'static str),
    /// Bytes that may still be committed under strict overcommit; `None`: the
    /// kernel overcommits (mode 0 or 1).
    pub commit_left: Option<u64>,
}

impl Machine {
    /// Reads the machine's limits, for a runtime on `port`.
    pub(super) fn probe(tag: &str) -> Machine {
        Machine {
            shm_free: shm_free(tag),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            allowed_cpus: CpuList::of_current_thread(),
            online_cpus: CpuList::online(),
            max_map_count: read_number("/proc/sys/vm/max_map_count"),
            maps_in_use: std::fs::read_to_string("/proc/self/maps")
                .map_or(0, |m| m.lines().count() as u64),
            address_space_left: address_space_left(),
            commit_left: commit_left(),
        }
    }
}

/// Free bytes of `/dev/shm` for the segments of the runtime of tag `tag`
/// ([`chi_sdk::auth::runtime_tag`]).
fn shm_free(tag: &str) -> Option<u64> {
    let st = match rustix::fs::statvfs(SHM_DIR) {
        Ok(st) => st,
        Err(e) => {
            tracing::debug!(error = %e, "cannot statvfs {SHM_DIR}; not checking its free space");
            return None;
        }
    };
    // A tmpfs mounted without a size limit reports no blocks at all.
    if st.f_blocks == 0 {
        return None;
    }
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    // Start replaces the stale segments of its own tag (a runtime that died):
    // their space comes back.
    let stale: u64 = ["main", "client_data", "runtime_data"]
        .into_iter()
        .filter_map(|role| {
            let path = Path::new(SHM_DIR).join(crate::ipc::tagged_segment_name(tag, role));
            rustix::fs::stat(&path).ok()
        })
        .map(|st| (st.st_blocks as u64).saturating_mul(512))
        .sum();
    Some(free.saturating_add(stale))
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A `Key:   123 kB` line of a `/proc` status file, in bytes.
fn proc_kb(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

fn address_space_left() -> (u64, &'static str) {
    let used = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| proc_kb(&s, "VmSize:"))
        .unwrap_or(0);
    let limit = rustix::process::getrlimit(rustix::process::Resource::As).current;
    match limit {
        Some(limit) if limit < USER_ADDRESS_SPACE => (
            limit.saturating_sub(used),
            "the address-space limit RLIMIT_AS (ulimit -v)",
        ),
        _ => (
            USER_ADDRESS_SPACE.saturating_sub(used),
            "the process's address space",
        ),
    }
}

fn commit_left() -> Option<u64> {
    if read_number("/proc/sys/vm/overcommit_memory")? != 2 {
        return None;
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let limit = proc_kb(&meminfo, "CommitLimit:")?;
    let committed = proc_kb(&meminfo, "Committed_AS:")?;
    Some(limit.saturating_sub(committed))
}

impl Config {
    /// Checks that this machine can hold the configuration: the segments fit the
    /// free space of `/dev/shm`, the worker threads the CPUs, the coroutine stacks
    /// the memory-map limit, the address space and the commit limit (see the
    /// module documentation of `config::resources`). Call it before creating
    /// anything; `chi-runtime start` exits with code 2 on its error, like on any
    /// configuration error.
    pub fn check_resources(&self) -> Result<(), ConfigError> {
        // The tag of this runtime's segments: known here when `cluster.node`
        // is an address (a name is not resolved by a check: its tag is the
        // port, as for every address but 127.0.0.2 and up).
        let addr = self.cluster.node.as_deref().unwrap_or("127.0.0.1");
        self.check_against(&Machine::probe(&chi_sdk::auth::runtime_tag(
            addr, self.port,
        )))
    }

    pub(super) fn check_against(&self, m: &Machine) -> Result<(), ConfigError> {
        self.check_shm(m)?;
        self.check_threads(m)?;
        self.check_affinity(m)?;
        self.check_coroutines(m)
    }

    /// Where to change things, for messages.
    fn file_to_edit(&self) -> String {
        match &self.source {
            Some(file) => file.clone(),
            None => format!(
                "a configuration file (start from `chi-runtime default-config`, name it \
                 with --config or {})",
                ENV_SERVER_CONF
            ),
        }
    }

    fn check_shm(&self, m: &Machine) -> Result<(), ConfigError> {
        let Some(free) = m.shm_free else {
            return Ok(());
        };
        // Segment::create rounds sizes up to 4 KiB.
        let keys = [
            ("segments.main", self.segments.main),
            ("segments.client_data", self.segments.client_data),
            ("segments.runtime_data", self.segments.runtime_data),
        ]
        .map(|(k, v)| (k, v.next_multiple_of(4096)));
        let total: u64 = keys.iter().map(|(_, v)| v).sum();
        if total <= free {
            return Ok(());
        }
        let listed: Vec<String> = keys
            .iter()
            .map(|(k, v)| self.origins.describe(k, format_size(*v)))
            .collect();
        let message = format!(
            "the shared-memory segments need {} in all ({}), but {SHM_DIR} has only {} free \
             ({free} bytes); set smaller segment sizes in {}, or make {SHM_DIR} larger \
             (e.g. mount -o remount,size={} {SHM_DIR})",
            format_size_approx(total),
            listed.join(", "),
            format_size_approx(free),
            self.file_to_edit(),
            format_size(total.next_multiple_of(1 << 30).max(total)),
        );
        let key = self.origins.blame(&keys);
        Err(self.origins.error(ConfigError::Resources, key, message))
    }

    fn check_threads(&self, m: &Machine) -> Result<(), ConfigError> {
        let limit = u64::from(m.cpus) * u64::from(WORKER_THREADS_PER_CPU);
        let total = u64::from(self.workers.total());
        if total <= limit {
            return Ok(());
        }
        let keys = worker_keys(&self.workers);
        let message = format!(
            "{total} worker threads ({}) is more than this machine runs: {} CPUs available × \
             {WORKER_THREADS_PER_CPU} = {limit}; lower the worker counts in {}",
            sum_of(&keys),
            m.cpus,
            self.file_to_edit()
        );
        let key = self.origins.blame(&keys);
        Err(self.origins.error(ConfigError::Resources, key, message))
    }

    fn check_affinity(&self, m: &Machine) -> Result<(), ConfigError> {
        let Some(allowed) = &m.allowed_cpus else {
            return Ok(());
        };
        for (key, list) in self.affinity.keys() {
            let Some(list) = list else { continue };
            let missing: Vec<usize> = list
                .cpus()
                .iter()
                .copied()
                .filter(|&c| !allowed.contains(c))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let absent: Vec<usize> = match &m.online_cpus {
                Some(online) => missing
                    .iter()
                    .copied()
                    .filter(|&c| !online.contains(c))
                    .collect(),
                None => Vec::new(),
            };
            let named = |cpus: &[usize]| {
                let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
                format!(
                    "CPU{} {}",
                    if cpus.len() > 1 { "s" } else { "" },
                    list.join(", ")
                )
            };
            let online = m
                .online_cpus
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), CpuList::to_string);
            let why = if !absent.is_empty() {
                format!(
                    "{} {} not exist on this machine (CPUs online: {online})",
                    named(&absent),
                    if absent.len() > 1 { "do" } else { "does" }
                )
            } else {
                format!(
                    "{} {} online but this process may not run on {} (its affinity mask \
                     or cgroup cpuset allows CPUs {allowed})",
                    named(&missing),
                    if missing.len() > 1 { "are" } else { "is" },
                    if missing.len() > 1 { "them" } else { "it" },
                )
            };
            let message = format!(
                "{why}; list only CPUs of {allowed} in {}, or ~ for no pinning",
                self.file_to_edit()
            );
            return Err(self.origins.error(ConfigError::Resources, key, message));
        }
        Ok(())
    }

    fn check_coroutines(&self, m: &Machine) -> Result<(), ConfigError> {
        // Tasks run on the low- and high-latency workers.
        let workers = self.workers.low_latency + self.workers.high_latency;
        let max_live = self.coroutine.max_live;
        let stack = self.coroutine.stack_size;
        let needs = CoroutineNeeds::of(workers, max_live, stack);
        let stacks = format!(
            "{workers} task-running workers × coroutine.max_live {max_live} = {} coroutine \
             stacks of {}",
            needs.stacks,
            format_size(stack as u64)
        );
        let o = &self.origins;

        if let Some(max) = m.max_map_count {
            // Each thread's stack and guard page are two entries more.
            let threads = u64::from(self.workers.total()) * 2;
            let wanted = m.maps_in_use + threads + MAP_HEADROOM + needs.mappings;
            if wanted > max {
                let message = format!(
                    "{stacks} need {} memory mappings ({MAPPINGS_PER_STACK} each), which with \
                     the {} this process has, {threads} for worker threads and {MAP_HEADROOM} \
                     to spare is {wanted}, more than vm.max_map_count = {max}; lower \
                     coroutine.max_live ({}) or the worker counts, or raise the limit \
                     (sysctl -w vm.max_map_count={})",
                    needs.mappings,
                    m.maps_in_use,
                    o.of("coroutine.max_live").at,
                    wanted.next_power_of_two()
                );
                return Err(o.error(ConfigError::Resources, "coroutine.max_live", message));
            }
        }

        // Name the stack size if the user set it, else the count.
        let key = if o.set_by_user("coroutine.stack_size") && !o.set_by_user("coroutine.max_live") {
            "coroutine.stack_size"
        } else {
            "coroutine.max_live"
        };
        let (left, what) = m.address_space_left;
        if needs.bytes > left {
            let message = format!(
                "{stacks} need {} of address space, more than the {} left by {what}; lower \
                 coroutine.stack_size ({}) or coroutine.max_live ({})",
                format_size_approx(needs.bytes),
                format_size_approx(left),
                o.of("coroutine.stack_size").at,
                o.of("coroutine.max_live").at,
            );
            return Err(o.error(ConfigError::Resources, key, message));
        }
        if let Some(left) = m.commit_left
            && needs.bytes > left
        {
            let message = format!(
                "{stacks} may commit {}, more than the {} the kernel still allows \
                 (vm.overcommit_memory = 2: CommitLimit − Committed_AS); lower \
                 coroutine.stack_size ({}) or coroutine.max_live ({})",
                format_size_approx(needs.bytes),
                format_size_approx(left),
                o.of("coroutine.stack_size").at,
                o.of("coroutine.max_live").at,
            );
            return Err(o.error(ConfigError::Resources, key, message));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roomy() -> Machine {
        Machine {
            shm_free: Some(64 << 30),
            cpus: 4,
            allowed_cpus: CpuList::new(0..4),
            online_cpus: CpuList::new(0..8),
            max_map_count: Some(65530),
            maps_in_use: 300,
            address_space_left: (USER_ADDRESS_SPACE / 2, "the process's address space"),
            commit_left: None,
        }
    }

    fn config(text: &str) -> Config {
        Config::from_yaml_override(text, "res.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn refused(text: &str, m: &Machine) -> ConfigError {
        match config(text).check_against(m) {
            Ok(()) => panic!("{text:?} should be refused on {m:?}"),
            Err(e) => {
                assert!(matches!(e, ConfigError::Resources(_)), "{e:?}");
                e
            }
        }
    }

    #[test]
    fn defaults_fit_a_roomy_machine() {
        Config::defaults().unwrap().check_against(&roomy()).unwrap();
        let unknown = Machine {
            shm_free: None,
            max_map_count: None,
            ..roomy()
        };
        config("segments: {main: 1t}")
            .check_against(&unknown)
            .unwrap();
    }

    #[test]
    fn segments_must_fit_dev_shm() {
        let small = Machine {
            shm_free: Some(1 << 30),
            ..roomy()
        };
        // The defaults (2 GiB) do not fit 1 GiB: the error names every size.
        let e = refused("port: 9000\n", &small);
        let text = e.to_string();
        assert_eq!(e.key(), Some("segments.main"), "{text}");
        assert_eq!(
            e.file(),
            Some(super::super::defaults::DEFAULT_SOURCE_NAME),
            "{text}"
        );
        for key in [
            "`segments.main` = 1g",
            "`segments.client_data` = 512m",
            "`segments.runtime_data` = 512m",
        ] {
            assert!(text.contains(key), "{key} missing: {text}");
        }
        assert!(text.contains("has only 1 GiB free"), "{text}");
        assert!(text.contains("mount -o remount,size="), "{text}");
        // The user's largest segment is the key named, at its line.
        let e = refused(
            "segments:\n  main: 64m\n  client_data: 2g\n  runtime_data: 16m\n",
            &small,
        );
        assert_eq!(
            (e.file(), e.line(), e.key()),
            (Some("res.yaml"), Some(3), Some("segments.client_data"))
        );
        assert!(e.to_string().contains("in res.yaml"), "{e}");
        config("segments: {main: 512m, client_data: 256m, runtime_data: 256m}")
            .check_against(&small)
            .unwrap();
    }

    #[test]
    fn threads_per_cpu() {
        let one = Machine { cpus: 1, ..roomy() };
        let e = refused("workers:\n  low_latency: 30\n  high_latency: 40\n", &one);
        assert_eq!((e.line(), e.key()), (Some(3), Some("workers.high_latency")));
        let text = e.to_string();
        assert!(text.contains("72 worker threads"), "{text}");
        assert!(text.contains("1 CPUs available × 64 = 64"), "{text}");
        config("workers: {low_latency: 30, high_latency: 30}")
            .check_against(&one)
            .unwrap();
    }

    #[test]
    fn affinity_names_cpus_that_do_not_exist() {
        let e = refused(
            "workers:\n  affinity:\n    high_latency: [1, 9-10]\n",
            &roomy(),
        );
        assert_eq!(
            (e.file(), e.line(), e.key()),
            (
                Some("res.yaml"),
                Some(3),
                Some("workers.affinity.high_latency")
            )
        );
        let text = e.to_string();
        assert!(
            text.contains("CPUs 9, 10 do not exist on this machine (CPUs online: 0-7)"),
            "{text}"
        );
        assert!(text.contains("list only CPUs of 0-3 in res.yaml"), "{text}");
        // Online but outside this process's mask (a cgroup cpuset, taskset).
        let e = refused("workers: {affinity: {process_reaper: 5}}\n", &roomy());
        assert_eq!(e.key(), Some("workers.affinity.process_reaper"));
        let text = e.to_string();
        assert!(
            text.contains("CPU 5 is online but this process may not run on it"),
            "{text}"
        );
        assert!(text.contains("allows CPUs 0-3"), "{text}");
        config("workers: {affinity: {low_latency: 0-3, high_latency: 2}}")
            .check_against(&roomy())
            .unwrap();
        // Unknown masks are not checked.
        let unknown = Machine {
            allowed_cpus: None,
            ..roomy()
        };
        config("workers: {affinity: {low_latency: 1000}}")
            .check_against(&unknown)
            .unwrap();
    }

    #[test]
    fn coroutine_stacks_fit_the_map_count_and_address_space() {
        let few_maps = Machine {
            max_map_count: Some(4096),
            ..roomy()
        };
        let e = refused("coroutine:\n  max_live: 2000\n", &few_maps);
        assert_eq!((e.line(), e.key()), (Some(2), Some("coroutine.max_live")));
        let text = e.to_string();
        assert!(text.contains("6000 coroutine stacks"), "{text}");
        assert!(text.contains("vm.max_map_count = 4096"), "{text}");
        config("coroutine:\n  max_live: 256\n")
            .check_against(&few_maps)
            .unwrap();

        let small_as = Machine {
            address_space_left: (1 << 30, "the address-space limit RLIMIT_AS (ulimit -v)"),
            ..roomy()
        };
        let e = refused("coroutine:\n  stack_size: 8m\n", &small_as);
        assert_eq!((e.line(), e.key()), (Some(2), Some("coroutine.stack_size")));
        assert!(e.to_string().contains("RLIMIT_AS"), "{e}");

        let strict = Machine {
            commit_left: Some(16 << 20),
            ..roomy()
        };
        let e = refused("coroutine: {max_live: 1000}\n", &strict);
        assert_eq!(e.key(), Some("coroutine.max_live"));
        assert!(e.to_string().contains("vm.overcommit_memory = 2"), "{e}");
    }

    #[test]
    fn probing_this_machine_works() {
        let m = Machine::probe("1");
        assert!(m.cpus >= 1);
        assert!(m.maps_in_use > 0, "{m:?}");
        assert!(m.address_space_left.0 > 0, "{m:?}");
    }
}
