//! What the runtimes of a test leave on the machine, and how a test finds a
//! port no other test uses: segments in `/dev/shm`, files in the per-user
//! directory, processes that name a test's scratch directory.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::COUNTER;

/// Segment files of the runtimes on `port` in `/dev/shm` (on 127.0.0.1, and
/// the nodes of a local cluster on other 127.0.0.x addresses), sorted.
pub fn segments(port: u16) -> Vec<String> {
    let prefix = chi_runtime::ipc::segment_name(port, "");
    let tagged = chi_runtime::ipc::tagged_segment_name("127.", "");
    let tagged = tagged.trim_end_matches('_');
    let tail = format!("-{port}_");
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix) || (n.starts_with(tagged) && n.contains(&tail)))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Removes what runtimes on `port` may leave in this user's runtime directories
/// (a killed runtime's key file, a daemon's pid and log files).
pub fn remove_runtime_files(port: u16) {
    let uid = chi_sdk::auth::current_uid();
    for dir in chi_sdk::auth::RuntimeDir::candidates(uid) {
        for ext in ["key", "pid", "log"] {
            let _ = std::fs::remove_file(dir.join(format!("{port}.{ext}")));
        }
        // The nodes of a local cluster: `127.0.0.k-{port}.{ext}`.
        let tail: Vec<String> = ["key", "pid", "log"]
            .iter()
            .map(|ext| format!("-{port}.{ext}"))
            .collect();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("127.") && tail.iter().any(|t| name.ends_with(t)) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Removes the segments of `port`; returns the names removed.
pub fn remove_segments(port: u16) -> Vec<String> {
    let names = segments(port);
    for n in &names {
        let _ = std::fs::remove_file(Path::new("/dev/shm").join(n));
    }
    names
}

/// pids of live processes, other than `except`, whose command line mentions
/// `dir` (a test's scratch directory: its config, log and pid files are there,
/// so every runtime the test started names it).
pub fn processes_naming(dir: &Path, except: &[u32]) -> Vec<u32> {
    let needle = dir.display().to_string();
    let canon = std::fs::canonicalize(dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| needle.clone());
    let me = std::process::id();
    let mut v: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&pid| pid != me && !except.contains(&pid))
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                        let c = String::from_utf8_lossy(&c);
                        c.contains(&needle) || c.contains(&canon)
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Fails unless no process other than `except` names `dir` (waiting up to 10 s
/// for exiting ones).
pub fn assert_no_process_left(dir: &Path, except: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_naming(dir, except);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let cmds: Vec<String> = left
                .iter()
                .map(|p| {
                    let c = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    format!("{p}: {}", String::from_utf8_lossy(&c).replace('\0', " "))
                })
                .collect();
            panic!(
                "processes of this test are still running:\n{}",
                cmds.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A port free for this test: derived from the pid and a counter (so parallel
/// test processes pick distinct ports), below the ephemeral range, that can be
/// bound on 127.0.0.1 now and has no segments in `/dev/shm`.
pub fn free_port() -> u16 {
    const LO: u32 = 20_000;
    const SPAN: u32 = 12_000; // 20000..32000, below Linux's ephemeral ports
    let pid = std::process::id();
    for _ in 0..SPAN {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let port = (LO + (pid.wrapping_mul(7919).wrapping_add(n.wrapping_mul(31))) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && segments(port).is_empty() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}
