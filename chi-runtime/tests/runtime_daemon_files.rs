//! `chi-runtime start --daemon`'s pid and log files, with real processes: by
//! default in the private per-user directory (and the pid file gone after
//! `stop`); a symbolic link planted where either file goes is never followed.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use chi_sdk::auth::RuntimeDir;
use chi_sdk::client::{Client, ClientError};
use chi_sdk::transport::TransportError;
use support::*;

const LIMIT: Duration = Duration::from_secs(40);

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Stops the runtime on the setup's port on drop, if one runs.
struct StopOnDrop<'a>(&'a Setup);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if Client::status(&self.0.opts()).is_ok() {
            let cfg = self.0.config.to_str().unwrap();
            let _ = run_cli(runtime_exe(), &["stop", "-c", cfg], &[], LIMIT);
        }
    }
}

#[test]
fn daemon_files_default_to_the_private_directory() {
    let _wd = Watchdog::new("daemon_files", Duration::from_secs(100));
    let setup = Setup::new("daemon_files");
    let cfg = setup.config.to_str().unwrap();
    let dir = RuntimeDir::ensure().unwrap();
    let (pid_file, log_file) = (dir.pid_file(setup.port), dir.log_file(setup.port));

    let out = run_cli(runtime_exe(), &["start", "-c", cfg, "--daemon"], &[], LIMIT);
    let _stop = StopOnDrop(&setup);
    assert!(out.status.success(), "{out}");
    assert!(
        out.stdout
            .contains(&format!("pid file {}", pid_file.display())),
        "{out}"
    );
    assert!(out.stdout.contains(&format!("log {}", log_file.display())));
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&pid_file), 0o600);
    assert_eq!(mode(&log_file), 0o600);
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(Client::status(&setup.opts()).unwrap().pid, pid);

    let out = run_cli(runtime_exe(), &["stop", "-c", cfg], &[], LIMIT);
    assert!(out.status.success(), "{out}");
    assert!(!pid_alive(pid));
    assert!(!pid_file.exists(), "stop left the pid file");
    assert!(!dir.key_file(setup.port).exists(), "stop left the key file");
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(log.contains("runtime stopped"), "{log}");
}

/// Starting a daemon fails, naming the link, and changes nothing.
fn start_refused(setup: &Setup, extra: &[&str], link: &Path, victim: &Path) {
    let cfg = setup.config.to_str().unwrap();
    let mut args = vec!["start", "-c", cfg, "--daemon"];
    args.extend_from_slice(extra);
    let out = run_cli(runtime_exe(), &args, &[], LIMIT);
    let _stop = StopOnDrop(setup);
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("symbolic link"), "{out}");
    assert!(
        out.stderr.contains(&link.display().to_string()),
        "the message does not name {}: {out}",
        link.display()
    );
    assert_eq!(std::fs::read_to_string(victim).unwrap(), "precious\n");
    assert!(
        std::fs::symlink_metadata(link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Nothing was started.
    assert!(matches!(
        Client::status(&setup.opts()),
        Err(ClientError::Transport(TransportError::NoRuntime { .. }))
    ));
    assert!(processes_naming(setup.dir.path(), &[]).is_empty());
}

#[test]
fn planted_links_are_not_followed() {
    let _wd = Watchdog::new("planted_links", Duration::from_secs(150));
    let setup = Setup::new("planted_links");
    let d = setup.dir.path();
    let victim = setup.dir.write("victim", "precious\n");
    let link = d.join("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let (pid, log) = (d.join("d.pid"), d.join("d.log"));

    // Given paths.
    start_refused(
        &setup,
        &[
            "--pid-file",
            link.to_str().unwrap(),
            "--log-file",
            log.to_str().unwrap(),
        ],
        &link,
        &victim,
    );
    start_refused(
        &setup,
        &[
            "--pid-file",
            pid.to_str().unwrap(),
            "--log-file",
            link.to_str().unwrap(),
        ],
        &link,
        &victim,
    );
    assert!(!pid.exists(), "a refused start left a pid file");

    // The default pid file's place.
    let dir = RuntimeDir::ensure().unwrap();
    let default_pid = dir.pid_file(setup.port);
    std::os::unix::fs::symlink(&victim, &default_pid).unwrap();
    start_refused(&setup, &[], &default_pid, &victim);
    std::fs::remove_file(&default_pid).unwrap();

    // The log file configured with `logging.file`: not followed either; the
    // runtime logs to standard error instead.
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let with_log = format!("{text}logging:\n  file: {}\n", link.display());
    std::fs::write(&setup.config, with_log).unwrap();
    let rt = RuntimeGuard::start(&setup);
    let out = rt.stop();
    assert!(out.contains("symbolic link"), "{out}");
    assert!(out.contains("runtime stopped"), "{out}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}
