//! Process liveness: whether the process that holds a lock, an owner slot or a
//! lane claim in shared memory is still alive.
//!
//! # Design
//!
//! Shared memory names processes by pid (a page lock's holder, an allocator
//! owner slot, a lane's consumer), and every pid read from it is untrusted: a
//! scribbled word, a process that died, or a pid reused since by another process.
//!
//! * [`pid_alive`]: the pid is plausible, the process exists and is not a zombie
//!   (a zombie has exited; only its parent's reap is missing).
//! * [`process_start`]: a process's start time (clock ticks since boot, from
//!   `/proc/<pid>/stat`). With the pid it names one process for good, so a holder
//!   records its own ([`own_start`]) beside its pid, and
//!   [`started_process_alive`] tells a live holder from a reused pid.
//! * `current_pid` is cached: the page lock and the owner slots compare pids on
//!   every acquisition.
//!
//! These read `/proc` and send signal 0: they are for slow paths (a lock that
//! has been waited on, a reaper's scan), never for an allocation or a push.

/// The largest pid Linux can hand out (`PID_MAX_LIMIT`, 2^22).
const PID_MAX_LIMIT: u32 = 1 << 22;

/// This process's pid, cached (`getpid` is a system call on every use otherwise).
pub(crate) fn current_pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Whether `pid` could be a process id at all (a scribbled word often cannot).
fn plausible_pid(pid: u32) -> bool {
    pid != 0 && pid <= PID_MAX_LIMIT
}

/// Whether process `pid` is alive: it exists (a process we may not signal still
/// exists) and is not a zombie. A zombie has exited and only waits for its parent
/// to reap it, which a parent may do late or never (an init that reaps lazily, a
/// supervisor that does not reap): its locks, claims and work are gone.
pub fn pid_alive(pid: u32) -> bool {
    if !plausible_pid(pid) {
        return false;
    }
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    if matches!(
        rustix::process::test_kill_process(p),
        Err(rustix::io::Errno::SRCH)
    ) {
        return false;
    }
    !is_zombie(pid)
}

/// When process `pid` started, in clock ticks since boot (`/proc/<pid>/stat`,
/// field 22); `None` if it cannot be read. With the pid it names one process
/// for good: a pid that was reused names a process with another start time.
pub fn process_start(pid: u32) -> Option<u64> {
    if !plausible_pid(pid) {
        return None;
    }
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let end = stat.iter().rposition(|&b| b == b')')?;
    // After "pid (comm)": field 3 (state) is the first, field 22 (starttime)
    // the twentieth.
    std::str::from_utf8(&stat[end + 1..])
        .ok()?
        .split_ascii_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// This process's start time (see [`process_start`]), read once per process
/// (and again in a forked child, whose pid differs).
pub fn own_start() -> u64 {
    static CACHE: std::sync::Mutex<(u32, u64)> = std::sync::Mutex::new((0, 0));
    let pid = std::process::id();
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if c.0 != pid {
        *c = (pid, process_start(pid).unwrap_or(0));
    }
    c.1
}

/// Whether the process that was `pid` when it started at `started` (0:
/// unknown) is alive: [`pid_alive`], and the pid was not reused since by a
/// process that started later (pids wrap quickly where `pid_max` is small).
pub fn started_process_alive(pid: u32, started: u64) -> bool {
    pid_alive(pid) && (started == 0 || process_start(pid).is_none_or(|now| now == started))
}

/// Whether `/proc/<pid>/stat` says the process is a zombie (`Z`) or dead (`X`).
/// `false` if it cannot be read.
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": comm may hold spaces and parentheses; the state is the
    // first field after the last ')'.
    let Some(end) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    stat[end + 1..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'Z' || b == b'X')
}

// Reads /proc: not under Miri (see scripts/check-miri.sh); run natively.
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn a_reused_pid_is_not_the_process_that_started_before() {
        let me = std::process::id();
        let started = own_start();
        assert!(started > 0, "no start time in /proc/self/stat");
        assert_eq!(process_start(me), Some(started));
        assert!(started_process_alive(me, started));
        assert!(
            started_process_alive(me, 0),
            "unknown start time: the pid alone"
        );
        // The same pid, but a holder that started at another time: reused.
        assert!(!started_process_alive(me, started + 1));
        assert!(!started_process_alive(0, started));
    }
}
