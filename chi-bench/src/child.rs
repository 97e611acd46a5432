//! Partner processes: this executable re-executed with a hidden sub-command,
//! killed by a guard if it is still running when the guard drops (on errors and
//! panics too).
//!
//! The handshake of a partner that must start in step with others: it prints
//! `ready` on its standard output once set up, waits for a line on its standard
//! input, runs, and prints its result as one JSON line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::Signal;

/// Has the process started by `cmd` receive `sig` when the thread that starts it
/// exits — when this process dies without running its guards (killed by a
/// signal), so that nothing it started outlives it. (Every partner and runtime
/// is started from the main thread.)
pub fn die_with_parent(cmd: &mut Command, sig: Signal) {
    // SAFETY: the closure runs in the forked child before `exec`; it makes one
    // system call (prctl), which is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(sig)).map_err(Into::into)
        });
    }
}

/// A partner process; killed and reaped on drop unless it already exited.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
    what: String,
}

impl ChildGuard {
    /// Starts this executable with `args` (standard input and output piped,
    /// standard error inherited).
    pub fn spawn_self(args: &[String], what: &str) -> Result<ChildGuard> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(&exe);
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
        die_with_parent(&mut cmd, Signal::KILL);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the {what} process ({})", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(ChildGuard {
            child,
            stdin,
            stdout,
            what: what.to_owned(),
        })
    }

    /// Reads one line of the partner's output (an error at end of file).
    pub fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        let out = self.stdout.as_mut().context("no standard output")?;
        if out.read_line(&mut line)? == 0 {
            let status = self.child.wait()?;
            bail!("the {} process exited early ({status})", self.what);
        }
        Ok(line.trim_end().to_owned())
    }

    /// Waits for the partner's `ready` line.
    pub fn wait_ready(&mut self) -> Result<()> {
        let l = self.read_line()?;
        if l != "ready" {
            bail!("the {} process said `{l}` instead of `ready`", self.what);
        }
        Ok(())
    }

    /// Tells the partner to go.
    pub fn go(&mut self) -> Result<()> {
        let i = self.stdin.as_mut().context("no standard input")?;
        i.write_all(b"go\n")?;
        i.flush()?;
        Ok(())
    }

    /// Waits for the partner to exit successfully within `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Result<()> {
        self.stdin = None;
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait()? {
                if !s.success() {
                    bail!("the {} process failed ({s})", self.what);
                }
                return Ok(());
            }
            if t.elapsed() > timeout {
                bail!(
                    "the {} process did not finish within {timeout:?}",
                    self.what
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In a partner: prints `ready` and waits for the go line (an error if the
/// parent closed the pipe instead).
pub fn ready_and_wait_go() -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(b"ready\n")?;
    out.flush()?;
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        bail!("the parent went away before saying go");
    }
    Ok(())
}

/// In a partner that needs no go: prints `ready`.
pub fn say_ready() -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(b"ready\n")?;
    out.flush()?;
    Ok(())
}

/// In a spinning partner: whether the parent process is gone (the partner then
/// exits rather than spin forever).
pub fn orphaned(parent: u32) -> bool {
    std::os::unix::process::parent_id() != parent
}

/// In a spinning partner: counts the spins without work and, every so many
/// of them, fails if the parent is gone (checking only now and then keeps the
/// loop a bare load).
pub struct Idle {
    parent: u32,
    spins: u32,
    mask: u32,
}

impl Idle {
    /// Watches the current parent; `mask` (one less than a power of two) sets
    /// how many idle spins pass between two checks.
    pub fn new(mask: u32) -> Idle {
        Idle {
            parent: std::os::unix::process::parent_id(),
            spins: 0,
            mask,
        }
    }

    /// Work was done: the count starts again.
    #[inline]
    pub fn reset(&mut self) {
        self.spins = 0;
    }

    /// One spin without work; an error if a check finds the parent gone.
    #[inline]
    pub fn spin(&mut self) -> Result<()> {
        std::hint::spin_loop();
        self.spins = self.spins.wrapping_add(1);
        if self.spins & self.mask == 0 && orphaned(self.parent) {
            bail!("the parent went away");
        }
        Ok(())
    }
}
