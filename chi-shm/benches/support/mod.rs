//! Plumbing of the `shm` benchmarks: uniquely named segments that are always
//! unlinked, a control block in shared memory, and "echo" peers (a thread or a
//! child process) that bounce values back, stopped and reaped even if a benchmark
//! panics.
//!
//! A child process is this very benchmark executable, re-executed with
//! [`CHILD_ENV`] naming the segment; `main` calls [`child_main`] before criterion
//! starts. The child finds everything through root slots of the segment: the
//! [`Control`] block (which says what to echo) and, for queue echoes, the queue.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chi_shm::queue::{MultiLaneQueue, QueueConfig};
use chi_shm::shm::{Allocator, FullPtr, Segment, SegmentId, ShmPtr, ShmSafe};

/// Environment variable that turns the benchmark executable into an echo child;
/// its value is the name of the segment to attach.
pub const CHILD_ENV: &str = "CHI_BENCH_CHILD";
/// Prefix of every segment these benchmarks create: `chi_bench_<pid>_<n>`.
const NAME_PREFIX: &str = "chi_bench_";
/// Root slot of the [`Control`] block.
const ROOT_CONTROL: usize = 0;
/// Root slot of the queue (queue echoes).
const ROOT_QUEUE: usize = 1;
/// Lane the driver pushes requests on (the echo consumes it).
pub const REQ_LANE: usize = 0;
/// Lane the echo pushes answers on (the driver consumes it).
pub const RESP_LANE: usize = 1;
/// Size of every benchmark segment (sparse: only touched pages cost memory).
const SEGMENT_SIZE: u64 = 64 << 20;

/// What an echo peer does, stored in [`Control::mode`].
const MODE_QUEUE: u64 = 1;
const MODE_FLOOR: u64 = 2;

/// One `AtomicU64` alone on a 128-byte line pair.
#[repr(C, align(128))]
pub struct Line(pub AtomicU64);

/// Shared between the driver and its echo peer, in the segment.
#[repr(C)]
pub struct Control {
    /// `MODE_QUEUE` or `MODE_FLOOR`.
    mode: Line,
    /// Set to 1 by the echo once it is ready to serve.
    ready: Line,
    /// Set to 1 by the driver to make the echo return.
    stop: Line,
    /// The ping-pong word of the floor benchmark: the driver stores odd values,
    /// the echo answers each with the next (even) value.
    pub word: Line,
}

// SAFETY: repr(C) of four repr(C, align(128)) wrappers of AtomicU64: fixed layout,
// no addresses, every bit pattern valid, no Drop, no process-local state.
unsafe impl ShmSafe for Control {}

/// A segment created for one benchmark, with an allocator handle. Dropping it
/// unlinks the name.
pub struct Shm {
    pub seg: Segment,
    pub alloc: Allocator,
}

impl Shm {
    /// Creates `chi_bench_<pid>_<n>` with a fresh segment id.
    pub fn new() -> Shm {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = u16::try_from(n)
            .ok()
            .filter(|&i| i <= SegmentId::MAX.0)
            .expect("too many benchmark segments in one process");
        let name = format!("{NAME_PREFIX}{}_{n}", std::process::id());
        let seg = Segment::create(&name, SegmentId(id), SEGMENT_SIZE)
            .unwrap_or_else(|e| panic!("cannot create segment {name}: {e}"));
        let alloc = Allocator::attach(&seg).expect("allocator attach");
        Shm { seg, alloc }
    }

    /// A queue of two lanes ([`REQ_LANE`], [`RESP_LANE`]) of `depth` entries,
    /// published in the queue root slot.
    pub fn queue(&self, depth: u64) -> MultiLaneQueue {
        let cfg = QueueConfig {
            low_latency_lanes: 2,
            high_latency_lanes: 0,
            depth,
        };
        let q = MultiLaneQueue::create(&self.seg, &self.alloc, cfg).expect("queue create");
        self.seg.set_root(ROOT_QUEUE, q.shm());
        q
    }

    /// Allocates a zeroed [`Control`] block of `mode` and publishes it in its root slot.
    fn control(&self, mode: u64) -> FullPtr<Control> {
        let line = |v| Line(AtomicU64::new(v));
        let ctl = self
            .alloc
            .new_obj(Control {
                mode: line(mode),
                ready: line(0),
                stop: line(0),
                word: line(0),
            })
            .expect("control block");
        self.seg.set_root(ROOT_CONTROL, ctl.shm());
        ctl
    }
}

/// Removes `chi_bench_<pid>_*` segments left behind by benchmark processes that
/// no longer exist (killed before they could unlink).
pub fn unlink_stale_segments() {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Segment::unlink(name);
        }
    }
}

/// Something that may die while we wait on it.
pub trait Peer {
    /// Panics if the peer is gone.
    fn check_alive(&mut self);
}

impl<F: FnMut()> Peer for F {
    fn check_alive(&mut self) {
        self()
    }
}

/// Polls taken without success before a waiter yields the CPU (and checks its
/// peer): about 10 to 100 µs of spinning, far above a round trip of a running peer,
/// so it only matters when the peer is descheduled on a busy machine.
const YIELD_EVERY: u32 = 4096;

/// Polls until `poll` yields a value, busy-waiting; every [`YIELD_EVERY`] polls
/// checks the peer and yields the CPU.
#[inline]
pub fn spin_until<T>(mut poll: impl FnMut() -> Option<T>, peer: &mut impl Peer) -> T {
    let mut spins = 0u32;
    loop {
        if let Some(v) = poll() {
            return v;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(YIELD_EVERY) {
            peer.check_alive();
            std::thread::yield_now();
        }
    }
}

/// Where the echo runs.
enum Runner {
    Thread(Option<JoinHandle<Result<(), String>>>),
    Process(Option<Child>),
}

/// An echo peer serving the segment of a [`Shm`]. Dropping it stops the peer and
/// joins (thread) or reaps (process) it, killing a child that does not stop.
pub struct Echo {
    ctl: FullPtr<Control>,
    runner: Runner,
    // Keeps the mapping (and the control block) alive while the peer runs.
    _seg: Segment,
}

impl Echo {
    /// A thread echoing `queue`'s [`REQ_LANE`] onto its [`RESP_LANE`].
    pub fn queue_thread(shm: &Shm, queue: &MultiLaneQueue) -> Echo {
        let ctl = shm.control(MODE_QUEUE);
        let q = queue.clone();
        let handle = std::thread::Builder::new()
            .name("queue-echo".into())
            .spawn(move || {
                // SAFETY: the block was initialised by `new_obj` and is only accessed
                // through atomics; the driver's `Echo` keeps the segment mapped
                // until this thread is joined.
                let ctl = unsafe { ctl.as_ref() };
                queue_echo(&q, ctl, None)
            })
            .expect("spawn echo thread");
        Echo::started(shm, ctl, Runner::Thread(Some(handle)))
    }

    /// A child process echoing the segment's queue ([`Shm::queue`]).
    pub fn queue_process(shm: &Shm) -> Echo {
        Echo::process(shm, MODE_QUEUE)
    }

    /// A child process answering the floor ping-pong on [`Control::word`].
    pub fn floor_process(shm: &Shm) -> Echo {
        Echo::process(shm, MODE_FLOOR)
    }

    fn process(shm: &Shm, mode: u64) -> Echo {
        let ctl = shm.control(mode);
        let exe = std::env::current_exe().expect("current_exe");
        let child = Command::new(exe)
            .env(CHILD_ENV, shm.seg.name())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn echo child");
        Echo::started(shm, ctl, Runner::Process(Some(child)))
    }

    fn started(shm: &Shm, ctl: FullPtr<Control>, runner: Runner) -> Echo {
        let mut echo = Echo {
            ctl,
            runner,
            _seg: shm.seg.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while echo.control().ready.0.load(Ordering::Acquire) == 0 {
            echo.check_alive();
            assert!(Instant::now() < deadline, "echo peer not ready after 20 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        echo
    }

    /// The control block, to access it while the echo is borrowed mutably.
    pub fn control_ptr(&self) -> FullPtr<Control> {
        self.ctl
    }

    /// The control block.
    fn control(&self) -> &Control {
        // SAFETY: initialised by `new_obj`, accessed only through atomics, and kept
        // mapped by `self._seg`.
        unsafe { self.ctl.as_ref() }
    }
}

impl Peer for Echo {
    fn check_alive(&mut self) {
        match &mut self.runner {
            Runner::Thread(h) => {
                if h.as_ref().is_some_and(|h| h.is_finished()) {
                    let r = h.take().map(|h| h.join());
                    panic!("echo thread ended early: {r:?}");
                }
            }
            Runner::Process(c) => {
                if let Some(child) = c
                    && let Ok(Some(status)) = child.try_wait()
                {
                    c.take();
                    panic!("echo child ended early: {status}");
                }
            }
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.control().stop.0.store(1, Ordering::Release);
        match &mut self.runner {
            Runner::Thread(h) => {
                if let Some(Ok(Err(e))) = h.take().map(|h| h.join()) {
                    eprintln!("echo thread failed: {e}");
                }
            }
            Runner::Process(c) => {
                let Some(mut child) = c.take() else { return };
                let deadline = Instant::now() + Duration::from_secs(2);
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => {
                            if !status.success() {
                                eprintln!("echo child exited with {status}");
                            }
                            return;
                        }
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        _ => break,
                    }
                }
                eprintln!("echo child {} did not stop; killing it", child.id());
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Counts the consecutive idle polls of an echo loop: every [`YIELD_EVERY`] of them
/// (the driver is descheduled) yields the CPU, and tells the loop to give up on
/// the stop flag or when the process that started this child is gone.
struct Idle<'a> {
    ctl: &'a Control,
    parent: Option<u32>,
    streak: u32,
}

impl Idle<'_> {
    /// Called on a poll that found work.
    #[inline]
    fn reset(&mut self) {
        self.streak = 0;
    }

    /// Called on a poll that found nothing; returns whether to stop.
    #[inline]
    fn should_stop(&mut self) -> bool {
        std::hint::spin_loop();
        self.streak = self.streak.wrapping_add(1);
        if !self.streak.is_multiple_of(YIELD_EVERY) {
            return false;
        }
        std::thread::yield_now();
        if self.ctl.stop.0.load(Ordering::Acquire) != 0 {
            return true;
        }
        self.streak.is_multiple_of(YIELD_EVERY * 256)
            && self
                .parent
                .is_some_and(|p| std::os::unix::process::parent_id() != p)
    }
}

/// Pops [`REQ_LANE`] and pushes every value back on [`RESP_LANE`], busy-polling,
/// until told to stop.
fn queue_echo(q: &MultiLaneQueue, ctl: &Control, parent: Option<u32>) -> Result<(), String> {
    let mut consumer = q.consumer(&[REQ_LANE]).map_err(|e| e.to_string())?;
    ctl.ready.0.store(1, Ordering::Release);
    let mut idle = Idle {
        ctl,
        parent,
        streak: 0,
    };
    loop {
        match consumer.pop_lane(0) {
            Some(v) => {
                idle.reset();
                while q.try_push(RESP_LANE, v).is_err() {
                    if idle.should_stop() {
                        return Ok(());
                    }
                }
            }
            None => {
                if idle.should_stop() {
                    return Ok(());
                }
            }
        }
    }
}

/// Answers each odd value the driver stores in [`Control::word`] with the next
/// value, busy-polling, until told to stop.
fn floor_echo(ctl: &Control, parent: Option<u32>) {
    let word = &ctl.word.0;
    ctl.ready.0.store(1, Ordering::Release);
    let mut idle = Idle {
        ctl,
        parent,
        streak: 0,
    };
    loop {
        // Acquire/Release: the same orderings a real hand-off would need.
        let v = word.load(Ordering::Acquire);
        if v & 1 == 1 {
            word.store(v.wrapping_add(1), Ordering::Release);
            idle.reset();
        } else if idle.should_stop() {
            return;
        }
    }
}

/// Body of an echo child: attaches segment `name`, finds its control block (and
/// queue) through the root slots and echoes until stopped. Returns the exit code.
pub fn child_main(name: &str) -> i32 {
    let run = || -> Result<(), String> {
        let parent = std::os::unix::process::parent_id();
        let seg = Segment::attach(name).map_err(|e| e.to_string())?;
        let ctl_ptr = seg
            .root(ROOT_CONTROL)
            .filter(|p| !p.is_null())
            .ok_or("no control block in the root slot")?;
        let ctl = ctl_ptr.resolve::<Control>().map_err(|e| e.to_string())?;
        // SAFETY: `resolve` checked bounds and alignment; the driver initialised
        // the block before publishing it (Release store of the root, Acquire load
        // in `root`), and it is only accessed through atomics. `seg` keeps it
        // mapped until we return.
        let ctl = unsafe { ctl.as_ref() };
        match ctl.mode.0.load(Ordering::Relaxed) {
            MODE_QUEUE => {
                let qptr = seg.root(ROOT_QUEUE).unwrap_or(ShmPtr::NULL);
                let q = MultiLaneQueue::attach(&seg, qptr).map_err(|e| e.to_string())?;
                queue_echo(&q, ctl, Some(parent))
            }
            MODE_FLOOR => {
                floor_echo(ctl, Some(parent));
                Ok(())
            }
            m => Err(format!("unknown echo mode {m}")),
        }
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("chi-shm bench echo child ({name}): {e}");
            1
        }
    }
}
