//! Child processes running a role of the test binary.

use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::process::{drain_into, kill_and_reap, piped_command, spawn_registered, text, try_reap};
use crate::role::{ROLE_ENV, ROLE_IGNORE, role_args};

struct Proc {
    label: String,
    /// The role this child plays, if it is this test binary run for one.
    role: Option<String>,
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
        text(&self.output)
    }

    /// Why this child, which exited with `st`, fails its test: it failed, or it
    /// was started for a role and ran no test.
    fn failure(&mut self, st: ExitStatus) -> Option<String> {
        if !st.success() {
            return Some(format!("failed ({st})"));
        }
        let role = self.role.clone()?;
        (!ran_one_test(&self.output())).then(|| {
            format!(
                "ran no test: is `{role}` a top-level #[test] of this file, marked \
                 #[ignore = \"{ROLE_IGNORE}\"]?"
            )
        })
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            self.status = kill_and_reap(&mut self.child);
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// The child processes of one test. Dropping it kills and reaps every child
/// still running, so a failing (panicking) test never leaves processes behind.
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

impl Children {
    /// No children yet.
    pub fn new() -> Children {
        Children::default()
    }

    /// Starts this test binary again to run the `#[test]` function `role` (a
    /// top-level function of the test file, marked `#[ignore]`: see
    /// [`role_args`]) as a child, with `env` set (and the
    /// [`SCRUBBED_ENV`](crate::SCRUBBED_ENV) variables unset unless given). The
    /// child is SIGKILLed if the calling thread ends before it. Returns the
    /// child's index (for [`wait_for`](Self::wait_for) and [`pid`](Self::pid)).
    ///
    /// A child that exits successfully without having run its role (no test of
    /// that name, or one not marked `#[ignore]`) fails the test like a child that
    /// failed.
    pub fn spawn(&mut self, role: &str, label: &str, env: &[(&str, String)]) -> usize {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = piped_command(exe);
        cmd.args(role_args(role))
            .env(ROLE_ENV, role)
            .env("RUST_BACKTRACE", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let i = self.start(cmd, label, label);
        self.procs[i].role = Some(role.to_owned());
        i
    }

    /// Starts `program` with `args` as a child (like [`spawn`](Self::spawn), for
    /// another program than this test binary: same environment scrubbing,
    /// captured output and kill on the caller's end).
    pub fn spawn_program(
        &mut self,
        program: &std::path::Path,
        args: &[&str],
        label: &str,
        env: &[(&str, String)],
    ) -> usize {
        let mut cmd = piped_command(program);
        cmd.args(args).env("RUST_BACKTRACE", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.start(cmd, label, &program.display().to_string())
    }

    /// Spawns `cmd` (registered for the watchdog), captures its output, and
    /// records it as child `label`; returns its index.
    fn start(&mut self, mut cmd: std::process::Command, label: &str, what: &str) -> usize {
        let mut child = spawn_registered(&mut cmd)
            .unwrap_or_else(|e| panic!("cannot start child {label} ({what}): {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            drain_into(child.stdout.take().expect("stdout"), output.clone()),
            drain_into(child.stderr.take().expect("stderr"), output.clone()),
        ];
        self.procs.push(Proc {
            label: label.to_owned(),
            role: None,
            child,
            output,
            readers,
            status: None,
        });
        self.procs.len() - 1
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Whether no child was started.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
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
    /// one exited unsuccessfully, or a role child exited without having run its
    /// role.
    fn poll(&mut self) {
        let mut failed = None;
        for (i, p) in self.procs.iter_mut().enumerate() {
            if p.status.is_none()
                && let Some(st) = try_reap(&mut p.child)
            {
                p.status = Some(st);
                if failed.is_none() {
                    failed = p.failure(st).map(|why| (i, why));
                }
            }
        }
        if let Some((i, why)) = failed {
            self.kill_all();
            let p = &mut self.procs[i];
            let out = p.output();
            panic!(
                "child '{}' (pid {}) {why}; its output:\n{out}",
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

    /// Polls until `done` holds, failing the test if a child fails meanwhile or
    /// if `timeout` passes (the children are then killed). `done` runs before
    /// the first poll.
    fn wait(&mut self, timeout: Duration, what: &str, mut done: impl FnMut(&mut Self) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return;
            }
            self.poll();
            if Instant::now() >= deadline {
                self.watchdog_fired(timeout, what);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until `cond` holds, failing the test if a child fails meanwhile or
    /// if `timeout` passes (the children are then killed).
    pub fn wait_until(&mut self, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        self.wait(timeout, what, |_| cond());
    }

    /// Waits until every child printed `marker`, failing the test if a child
    /// fails meanwhile or if `timeout` passes.
    pub fn wait_output_all(&mut self, marker: &str, timeout: Duration) {
        let what = format!("'{marker}' from every child");
        self.wait(timeout, &what, |c| {
            c.procs.iter_mut().all(|p| p.output().contains(marker))
        });
    }

    /// Waits for child `i` to exit successfully, under the watchdog.
    pub fn wait_for(&mut self, i: usize, timeout: Duration) {
        let what = format!("exit of child '{}'", self.procs[i].label);
        self.wait(timeout, &what, |c| {
            c.poll();
            c.procs[i].status.is_some()
        });
    }

    /// Waits for every child to exit successfully, under the watchdog.
    pub fn wait_all(&mut self, timeout: Duration) {
        self.wait(timeout, "exit of every child", |c| {
            c.poll();
            c.procs.iter().all(|p| p.status.is_some())
        });
    }

    /// Runs one child to completion and returns its output.
    pub fn run(
        &mut self,
        role: &str,
        label: &str,
        env: &[(&str, String)],
        timeout: Duration,
    ) -> String {
        let i = self.spawn(role, label, env);
        self.wait_for(i, timeout);
        self.output(i)
    }

    /// Kills and reaps child `i` (a kill the test meant: not a failure).
    pub fn kill(&mut self, i: usize) {
        self.procs[i].kill();
    }

    /// Waits up to `timeout` for child `i` to exit however it does (a child
    /// meant to crash), and returns its status; `None` if it is still running.
    pub fn expect_exit(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let p = &mut self.procs[i];
        loop {
            if p.status.is_none() {
                p.status = try_reap(&mut p.child);
            }
            if p.status.is_some() || Instant::now() >= deadline {
                return p.status;
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

/// Whether the output of a test binary says it ran exactly one test (libtest
/// prints `running 1 test` before it starts one, `running 0 tests` when the
/// filter matched none).
fn ran_one_test(output: &str) -> bool {
    output.lines().any(|l| l.trim() == "running 1 test")
}
