//! Running a command to completion.

use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::process::{drain_into, kill_and_reap, piped_command, spawn_registered, text, try_reap};

/// What a command did.
#[derive(Debug)]
pub struct CliOutput {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl CliOutput {
    /// The exit code (-1 if killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout:\n{}--- stderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `exe args` with `env` set (and the [`SCRUBBED_ENV`](crate::SCRUBBED_ENV)
/// variables unset unless given), failing the test if it does not finish within
/// `limit` (it is then killed).
pub fn run_cli(exe: &str, args: &[&str], env: &[(&str, &str)], limit: Duration) -> CliOutput {
    let mut cmd = piped_command(exe);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = spawn_registered(&mut cmd).unwrap_or_else(|e| panic!("cannot run {exe}: {e}"));
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let r1 = drain_into(child.stdout.take().expect("stdout"), out.clone());
    let r2 = drain_into(child.stderr.take().expect("stderr"), err.clone());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = try_reap(&mut child) {
            break st;
        }
        if Instant::now() > deadline {
            kill_and_reap(&mut child);
            let _ = (r1.join(), r2.join());
            panic!(
                "watchdog: `{exe} {}` did not finish within {limit:?}; killed it\n--- stdout:\n{}--- stderr:\n{}",
                args.join(" "),
                text(&out),
                text(&err),
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // The pipes close when the command exits, unless it left a child holding them
    // (a daemon redirects its own output, so it does not).
    let _ = (r1.join(), r2.join());
    CliOutput {
        status,
        stdout: text(&out),
        stderr: text(&err),
    }
}
