//! The runtime side of IPC: the three segments, the process queue and the
//! runtime block, created at start and unlinked at stop.
//!
//! Segment names are unique per user and runtime tag (`chi_{uid}_{tag}_{role}`,
//! the tag being the port, or `{addr}-{port}` for a node of a local cluster on
//! 127.0.0.x: [`chi_sdk::auth::runtime_tag`]), so two users, two runtimes on
//! distinct ports, or the nodes of a local cluster on one port, never collide. A stale set left
//! by a runtime that died is replaced. The caller must hold the port (the bound
//! loopback socket) before calling [`Ipc::create`], so a second runtime on the
//! same port never touches the first one's segments.
//!
//! Segment *ids* (what a [`chi_sdk::shm::ShmPtr`] names) are unique per user
//! too: each runtime claims a [`SegmentFamily`] of ids no other runtime of its
//! user holds, so one process can be a client of several runtimes at once.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use chi_sdk::proto::{self, RUNTIME_MAGIC, RuntimeBlock, SegmentDesc, runtime_state};
use chi_sdk::queue::{MultiLaneQueue, QueueConfig};
use chi_sdk::shm::{Allocator, FullPtr, Segment, SegmentId};

use crate::config::Config;

/// Ids a family holds: main, client data, runtime data, one spare.
pub const FAMILY_SIZE: u16 = 4;
/// Families there are (segment ids `1..=SegmentId::MAX` in blocks of
/// [`FAMILY_SIZE`]).
pub const FAMILIES: u16 = SegmentId::MAX.0 / FAMILY_SIZE;

/// The segment ids of one runtime: family `n` holds ids
/// `1 + n * FAMILY_SIZE ..`, claimed with an exclusive `flock` on
/// `segments-{n}.lock` in the user's runtime directory, which the runtime holds
/// for its life (the kernel drops it when the process ends, however it ends).
/// The lowest free family is taken, so a lone runtime's ids are 1, 2 and 3.
#[derive(Debug)]
pub struct SegmentFamily {
    n: u16,
    _lock: std::fs::File,
}

impl SegmentFamily {
    /// Claims the lowest family no running runtime holds, through lock files
    /// in `dir` (the user's private runtime directory).
    pub fn claim(dir: &std::path::Path) -> anyhow::Result<SegmentFamily> {
        use std::os::unix::fs::OpenOptionsExt;
        for n in 0..FAMILIES {
            let path = dir.join(format!("segments-{n}.lock"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(SegmentFamily { n, _lock: file }),
                Err(rustix::io::Errno::WOULDBLOCK) => {}
                Err(e) => anyhow::bail!("locking {}: {e}", path.display()),
            }
        }
        anyhow::bail!(
            "all {FAMILIES} families of segment ids are held by running runtimes of this user \
             (lock files segments-N.lock in {}); stop some of them",
            dir.display()
        )
    }

    /// Its number.
    pub fn number(&self) -> u16 {
        self.n
    }

    /// Id `k` (0: main, 1: client data, 2: runtime data) of the family.
    pub fn id(&self, k: u16) -> SegmentId {
        SegmentId(1 + self.n * FAMILY_SIZE + k.min(FAMILY_SIZE - 1))
    }
}

/// The runtime's shared memory.
pub struct Ipc {
    /// Tasks.
    pub main: Segment,
    /// Client data.
    pub client_data: Segment,
    /// Runtime data.
    pub runtime_data: Segment,
    /// The runtime's allocator of the main segment.
    pub main_alloc: Allocator,
    /// The runtime's allocator of the client-data segment.
    pub client_data_alloc: Allocator,
    /// The process queue.
    pub queue: MultiLaneQueue,
    block: FullPtr<RuntimeBlock>,
    /// One beat word per process-queue lane (see [`RuntimeBlock::lane_beats`]).
    beats: FullPtr<AtomicU64>,
    /// The ids of the segments, held while they exist.
    family: SegmentFamily,
}

impl std::fmt::Debug for Ipc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ipc")
            .field("main", &self.main)
            .field("queue", &self.queue)
            .finish()
    }
}

/// Segment name for `role` of the runtime on `port` (on 127.0.0.1, or on a
/// node's network address).
pub fn segment_name(port: u16, role: &str) -> String {
    tagged_segment_name(&port.to_string(), role)
}

/// Segment name for `role` of the runtime of tag `tag`
/// ([`chi_sdk::auth::runtime_tag`]: its port, or `{addr}-{port}` for a node
/// of a local cluster on 127.0.0.x).
pub fn tagged_segment_name(tag: &str, role: &str) -> String {
    format!(
        "chi_{}_{}_{}",
        rustix::process::getuid().as_raw(),
        tag,
        role
    )
}

impl Ipc {
    /// Removes the names of the segments now (they are unmapped at exit), for a
    /// stop that cannot wait for every reference to drop.
    pub fn unlink_segments(&self) {
        for seg in [&self.main, &self.client_data, &self.runtime_data] {
            if let Err(e) = Segment::unlink(seg.name()) {
                tracing::warn!(segment = seg.name(), error = %e, "could not remove a segment");
            }
        }
    }

    /// Creates the segments, the process queue (`low` + `high` lanes) and the
    /// runtime block.
    pub fn create(
        cfg: &Config,
        tag: &str,
        node_id: u32,
        low: u32,
        high: u32,
        family: SegmentFamily,
    ) -> anyhow::Result<Ipc> {
        use anyhow::Context;
        let mk = |role: &str, k: u16, size: u64| {
            let name = tagged_segment_name(tag, role);
            Segment::create(&name, family.id(k), size)
                .with_context(|| format!("creating the {role} segment"))
        };
        let main = mk("main", 0, cfg.segments.main)?;
        let client_data = mk("client_data", 1, cfg.segments.client_data)?;
        let runtime_data = mk("runtime_data", 2, cfg.segments.runtime_data)?;
        let main_alloc = Allocator::attach(&main)?;
        let client_data_alloc = Allocator::attach(&client_data)?;
        let queue = MultiLaneQueue::create(
            &main,
            &main_alloc,
            QueueConfig {
                low_latency_lanes: low,
                high_latency_lanes: high,
                depth: cfg.queue.depth as u64,
            },
        )
        .context("creating the process queue")?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let lanes = queue.num_lanes();
        let beats = main_alloc
            .allocate_zeroed(lanes * size_of::<AtomicU64>())
            .context("allocating the lane beats")?
            .cast::<AtomicU64>();
        let block = main_alloc.new_obj(RuntimeBlock {
            magic: RUNTIME_MAGIC,
            pid: std::process::id(),
            state: AtomicU32::new(runtime_state::RUNNING),
            node_id,
            num_lanes: lanes as u32,
            started_unix_ns: started,
            next_major: AtomicU64::new(1),
            lane_beats: beats.shm(),
        })?;
        main.set_root(proto::ROOT_QUEUE, queue.shm());
        main.set_root(proto::ROOT_RUNTIME, block.shm());
        Ok(Ipc {
            main,
            client_data,
            runtime_data,
            main_alloc,
            client_data_alloc,
            queue,
            block,
            beats,
            family,
        })
    }

    /// The family of the segments' ids.
    pub fn family(&self) -> &SegmentFamily {
        &self.family
    }

    /// Use of the main and client-data segments, for `status`.
    pub fn usage(&self) -> Vec<proto::SegmentUsage> {
        [
            ("main", &self.main_alloc),
            ("client_data", &self.client_data_alloc),
        ]
        .into_iter()
        .map(|(role, a)| {
            let st = a.stats();
            let owners = (0..chi_sdk::shm::alloc::MAX_OWNERS as u32)
                .filter(|&o| {
                    a.owner_pid(chi_sdk::shm::OwnerId(o))
                        .is_some_and(|p| p != 0)
                })
                .count() as u32;
            proto::SegmentUsage {
                role: role.into(),
                used_bytes: st.used_bytes,
                live_blocks: st.live_blocks,
                free_pages: st.free_pages,
                owners,
            }
        })
        .collect()
    }

    /// The runtime's own blocks in the main segment (process queue, runtime
    /// block, lane beats): a word popped from a lane that names one of them is
    /// refused, never run as a task.
    pub fn runtime_owned(&self) -> [chi_sdk::shm::ShmPtr; 3] {
        [self.queue.shm(), self.block.shm(), self.beats.shm()]
    }

    /// Publishes that the worker of `lane` was seen making progress (or idle)
    /// at `now_ms` ([`proto::monotonic_ms`]).
    pub fn beat_lane(&self, lane: usize, now_ms: u64) {
        if lane < self.queue.num_lanes() {
            // SAFETY: `beats` holds `num_lanes` atomics, allocated in `create` and
            // alive while the main segment is mapped (as long as `self`).
            let b = unsafe { &*self.beats.as_ptr().add(lane) };
            // Relaxed: a monitoring value clients compare with their own clock.
            b.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Sets the runtime state clients see ([`runtime_state`]).
    pub fn set_state(&self, state: u32) {
        // SAFETY: the block was allocated and initialised in `create` and lives as
        // long as the main segment, which `self` keeps mapped.
        let b = unsafe { self.block.as_ref() };
        // Release: pairs with the Acquire load in the client's wait loop.
        b.state.store(state, Ordering::Release);
        chi_sdk::futex::wake(&b.state, u32::MAX);
    }

    /// The segments, as announced to clients.
    pub fn describe(&self) -> Vec<SegmentDesc> {
        [
            ("main", &self.main),
            ("client_data", &self.client_data),
            ("runtime_data", &self.runtime_data),
        ]
        .into_iter()
        .map(|(role, s)| SegmentDesc {
            role: role.into(),
            name: s.name().into(),
            id: s.id().0,
            size: s.size(),
        })
        .collect()
    }

    /// The segments, for modules' segment tables.
    pub fn segment_infos(&self) -> Vec<chi_sdk::abi::SegmentInfo> {
        use chi_sdk::abi::segment_kind;
        [
            (segment_kind::MAIN, &self.main),
            (segment_kind::CLIENT_DATA, &self.client_data),
            (segment_kind::RUNTIME_DATA, &self.runtime_data),
        ]
        .into_iter()
        .map(|(kind, s)| chi_sdk::abi::SegmentInfo {
            kind,
            id: s.id().0,
            base: s.base() as usize,
            len: s.size(),
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_claimed_lowest_first_and_freed_with_their_lock() {
        let dir = std::env::temp_dir().join(format!("chi-families-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = SegmentFamily::claim(&dir).unwrap();
        let b = SegmentFamily::claim(&dir).unwrap();
        let c = SegmentFamily::claim(&dir).unwrap();
        assert_eq!((a.number(), b.number(), c.number()), (0, 1, 2));
        assert_eq!(
            (a.id(0), a.id(1), a.id(2)),
            (SegmentId(1), SegmentId(2), SegmentId(3))
        );
        assert_eq!(b.id(0), SegmentId(1 + FAMILY_SIZE));
        // Ids never leave their family.
        assert_eq!(b.id(99), SegmentId(FAMILY_SIZE * 2));
        // A family is free again once its holder is gone.
        drop(b);
        assert_eq!(SegmentFamily::claim(&dir).unwrap().number(), 1);
        // The last family's ids are valid segment ids.
        let last = SegmentFamily {
            n: FAMILIES - 1,
            _lock: std::fs::File::open(dir.join("segments-0.lock")).unwrap(),
        };
        assert!(last.id(FAMILY_SIZE - 1) <= SegmentId::MAX);
        drop((a, c));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
