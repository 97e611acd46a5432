//! Helpers shared by the shared-memory integration tests.
//!
//! * Unique segment names and ids per test ([`unique_name`], [`fresh_id`]), and a
//!   guard that unlinks a name on drop, also when the test panics ([`ShmName`]).
//! * Child processes: a test re-executes its own binary to run one `#[test]`
//!   function as a "child role" (`exe --exact <role> --nocapture --test-threads=1`),
//!   with the role and its parameters in environment variables. A child-role test
//!   returns at once when [`child_role`] says the variable is absent, so it passes
//!   as a no-op in normal runs. [`Children`] kills and reaps every child on drop and
//!   waits for them under a watchdog: a child that does not finish in time is
//!   killed and the test fails with a message naming it and showing its output.

#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chi_sdk::shm::{Segment, SegmentId};

/// Environment variable naming the child role a re-executed test binary runs.
pub const ROLE_ENV: &str = "CHI_TEST_ROLE";
/// Default watchdog for waits on children.
pub const WATCHDOG: Duration = Duration::from_secs(120);

static NAME_COUNTER: AtomicU32 = AtomicU32::new(0);
static NEXT_ID: AtomicU16 = AtomicU16::new(1);

/// A segment name unique to this process, call and test: `chi-t-<pid>-<n>-<test>`,
/// shorter than 100 bytes and free of '/'.
pub fn unique_name(test: &str) -> String {
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = format!("chi-t-{}-{n}-", std::process::id());
    for c in test.chars() {
        if name.len() >= 99 {
            break;
        }
        name.push(if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        });
    }
    name
}

/// A segment id no other call in this process got: tests run as threads of one
/// process, and a process can map each id only once. An id that is never mapped
/// is an "unknown segment" for the whole test.
pub fn fresh_id() -> SegmentId {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    assert!(
        id != 0 && id <= SegmentId::MAX.0,
        "test process ran out of segment ids"
    );
    SegmentId(id)
}

/// Path of a segment's file.
pub fn shm_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(name)
}

/// Unlinks a segment name when dropped (also during a panic).
#[derive(Debug)]
pub struct ShmName(pub String);

impl ShmName {
    /// A fresh unique name for `test`, unlinked on drop.
    pub fn new(test: &str) -> ShmName {
        ShmName(unique_name(test))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = Segment::unlink(&self.0);
    }
}

/// A new segment with a unique name and id; the guard unlinks it on drop.
pub fn new_segment(test: &str, size: u64) -> (ShmName, Segment) {
    let name = ShmName::new(test);
    let seg = Segment::create(name.as_str(), fresh_id(), size)
        .unwrap_or_else(|e| panic!("creating segment for {test}: {e}"));
    (name, seg)
}

/// Whether this process is a child started to play `role`.
pub fn child_role(role: &str) -> bool {
    std::env::var(ROLE_ENV).is_ok_and(|r| r == role)
}

/// A parameter passed to a child.
pub fn env_str(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("child parameter {key} is missing"))
}

/// A numeric parameter passed to a child.
pub fn env_u64(key: &str) -> u64 {
    let v = env_str(key);
    v.parse()
        .unwrap_or_else(|_| panic!("child parameter {key}={v:?} is not a number"))
}

/// A small, fast, seedable PRNG (SplitMix64): deterministic per seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

struct Proc {
    label: String,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Proc {
    fn output(&mut self) -> String {
        // The readers end at EOF, i.e. once the child (and its pipe ends) are gone.
        if self.status.is_some() {
            for r in self.readers.drain(..) {
                let _ = r.join();
            }
        }
        let out = self.output.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&out).into_owned()
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// The child processes of one test. Dropping it kills and reaps every child still
/// running, so a failing (panicking) test never leaves processes behind.
#[derive(Default)]
pub struct Children {
    procs: Vec<Proc>,
}

impl std::fmt::Debug for Children {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.procs.iter().map(|p| (&p.label, p.child.id())))
            .finish()
    }
}

fn drain_into(mut from: impl Read + Send + 'static, to: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => to
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&buf[..n]),
            }
        }
    })
}

impl Children {
    /// No children yet.
    pub fn new() -> Children {
        Children::default()
    }

    /// Starts this test binary again to run the `#[test]` function `role` (a
    /// top-level function of the test file) as a child, with `env` set. Returns
    /// the child's index (for [`wait_for`](Self::wait_for) and
    /// [`pid`](Self::pid)).
    pub fn spawn(&mut self, role: &str, label: &str, env: &[(&str, String)]) -> usize {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", role, "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start child {label}: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            drain_into(child.stdout.take().expect("stdout"), output.clone()),
            drain_into(child.stderr.take().expect("stderr"), output.clone()),
        ];
        self.procs.push(Proc {
            label: label.to_owned(),
            child,
            output,
            readers,
            status: None,
        });
        self.procs.len() - 1
    }

    /// pid of child `i`.
    pub fn pid(&self, i: usize) -> u32 {
        self.procs[i].child.id()
    }

    /// The output (stdout and stderr) child `i` produced so far.
    pub fn output(&mut self, i: usize) -> String {
        self.procs[i].output()
    }

    /// Reaps children that exited; fails the test (after killing the others) if
    /// one exited unsuccessfully.
    fn poll(&mut self) {
        let mut failed = None;
        for (i, p) in self.procs.iter_mut().enumerate() {
            if p.status.is_none()
                && let Ok(Some(st)) = p.child.try_wait()
            {
                p.status = Some(st);
                if !st.success() && failed.is_none() {
                    failed = Some(i);
                }
            }
        }
        if let Some(i) = failed {
            self.kill_all();
            let p = &mut self.procs[i];
            let out = p.output();
            let status = p
                .status
                .map_or("an unknown status".into(), |s| s.to_string());
            panic!(
                "child '{}' (pid {}) failed ({status}); its output:\n{out}",
                p.label,
                p.child.id(),
            );
        }
    }

    fn watchdog_fired(&mut self, timeout: Duration, what: &str) -> ! {
        let mut report = String::new();
        for p in &mut self.procs {
            if p.status.is_none() {
                report.push_str(&format!(
                    "  '{}' (pid {}) still running\n",
                    p.label,
                    p.child.id()
                ));
            }
        }
        self.kill_all();
        for p in &mut self.procs {
            let out = p.output();
            report.push_str(&format!("--- output of '{}':\n{out}\n", p.label));
        }
        panic!("watchdog: {what} did not happen within {timeout:?}; killed the children\n{report}");
    }

    /// Waits until `cond` holds, failing the test if a child fails meanwhile or
    /// if `timeout` passes (the children are then killed).
    pub fn wait_until(&mut self, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond() {
                return;
            }
            self.poll();
            if Instant::now() >= deadline {
                self.watchdog_fired(timeout, what);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for child `i` to exit successfully, under the watchdog.
    pub fn wait_for(&mut self, i: usize, timeout: Duration) {
        let what = format!("exit of child '{}'", self.procs[i].label);
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            if self.procs[i].status.is_some() {
                return;
            }
            if Instant::now() >= deadline {
                self.watchdog_fired(timeout, &what);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for every child to exit successfully, under the watchdog.
    pub fn wait_all(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            if self.procs.iter().all(|p| p.status.is_some()) {
                return;
            }
            if Instant::now() >= deadline {
                self.watchdog_fired(timeout, "exit of every child");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills and reaps every child still running.
    pub fn kill_all(&mut self) {
        for p in &mut self.procs {
            p.kill();
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill_all();
    }
}
