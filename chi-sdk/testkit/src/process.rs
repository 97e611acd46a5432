//! Starting, tracking, signalling and reaping processes.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rustix::process::Signal;

/// Environment variables (the user's Chimaera settings) that the processes
/// [`Children`](crate::Children) and [`run_cli`](crate::run_cli) start do not
/// inherit; a test passes them explicitly when it means to.
pub const SCRUBBED_ENV: &[&str] = &["CHI_SERVER_CONF", "CHI_PORT"];

/// pids of processes this test process started and has not reaped yet: what a
/// [`Watchdog`](crate::Watchdog) kills when it fires.
static PIDS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn pids() -> MutexGuard<'static, BTreeSet<u32>> {
    PIDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pids started and not reaped yet.
pub(crate) fn registered_pids() -> Vec<u32> {
    pids().iter().copied().collect()
}

/// Spawns `cmd` and records its pid until [`try_reap`] (or a kill through
/// [`Children`](crate::Children)) reaps it. The pid is recorded in the same
/// critical section as the spawn, so the [`Watchdog`](crate::Watchdog) never
/// misses a process.
pub fn spawn_registered(cmd: &mut Command) -> std::io::Result<Child> {
    let mut pids = pids();
    let child = cmd.spawn()?;
    pids.insert(child.id());
    Ok(child)
}

/// Reaps `child` if it exited; forgets its pid in the same critical section, so
/// the watchdog never signals a pid that was reaped (and maybe reused).
pub fn try_reap(child: &mut Child) -> Option<ExitStatus> {
    let mut pids = pids();
    match child.try_wait() {
        Ok(Some(st)) => {
            pids.remove(&child.id());
            Some(st)
        }
        Ok(None) => None,
        Err(_) => {
            pids.remove(&child.id());
            None
        }
    }
}

/// SIGKILLs `child` and reaps it (forgetting its pid in the same critical
/// section as the reap).
pub(crate) fn kill_and_reap(child: &mut Child) -> Option<ExitStatus> {
    let _ = child.kill();
    let mut pids = pids();
    let st = child.wait().ok();
    pids.remove(&child.id());
    st
}

fn signal(pid: u32, sig: Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// Sends SIGKILL to `pid`.
pub fn sigkill(pid: u32) {
    signal(pid, Signal::KILL);
}

/// Sends SIGTERM to `pid`.
pub fn sigterm(pid: u32) {
    signal(pid, Signal::TERM);
}

/// Makes the process `cmd` starts receive `sig` when the thread that started it
/// ends (in particular when the test process dies, even by SIGKILL), so nothing
/// outlives a test run that was killed.
pub fn die_with_parent(cmd: &mut Command, sig: Signal) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec; it only makes the
    // prctl system call, which is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(sig))
                .map_err(std::io::Error::from)
        });
    }
}

/// A command for `program` without the [`SCRUBBED_ENV`] variables (set others
/// after this, so that a test can still pass them), with stdin from
/// `/dev/null`, stdout and stderr piped, and SIGKILLed when the thread that
/// starts it ends.
pub(crate) fn piped_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for k in SCRUBBED_ENV {
        cmd.env_remove(k);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd, Signal::KILL);
    cmd
}

/// A thread that appends what `from` yields to `to` until EOF.
pub(crate) fn drain_into(
    mut from: impl Read + Send + 'static,
    to: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<()> {
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

/// Text of a captured output buffer.
pub(crate) fn text(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}
