//! Who may talk to a runtime, with real processes: the key file (private, gone
//! at stop), other users (refused by the client and by the runtime, which keeps
//! running), peers without the key or with a wrong one, and a per-user
//! directory that is not private.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chi_sdk::auth::{AuthError, ControlKey, RuntimeDir, current_uid};
use chi_sdk::client::{Client, ClientError};
use chi_sdk::proto::Request;
use chi_sdk::transport::{ControlClient, TransportError, ZmqClient};
use chi_testkit::ROLE_ENV;
use support::*;

const LIMIT: Duration = Duration::from_secs(30);
/// The user other users' processes run as.
const NOBODY: u32 = 65534;
/// Key path passed to [`child_forged_key`].
const KEY_ENV: &str = "CHI_TEST_KEY_PATH";

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn the_key_file_is_private_and_removed_at_stop() {
    let _wd = Watchdog::new("key_file", Duration::from_secs(100));
    let setup = Setup::new("key_file");
    let rt = RuntimeGuard::start(&setup);
    let dir = RuntimeDir::ensure().unwrap();
    let key = dir.key_file(setup.port);
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&key), 0o600);
    let meta = std::fs::symlink_metadata(&key).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.uid(), current_uid());
    assert_eq!(meta.len(), 65, "64 hex digits and a newline");
    let k = ControlKey::find("127.0.0.1", setup.port).unwrap();
    assert!(k.matches(std::fs::read_to_string(&key).unwrap().trim().as_bytes()));
    // The key is never logged.
    assert!(!rt.log().contains(&k.to_hex()));
    rt.stop();
    assert!(!key.exists(), "the key file outlived the runtime");
}

/// Child (run as another user): every way in is refused.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_forged_key() {
    if !child_role("child_forged_key") {
        return;
    }
    let port = env_u64(PORT_ENV) as u16;
    // The SDK knows at once that the runtime is another user's.
    let e = match Client::connect(client_opts(port)) {
        Err(ClientError::Auth(e)) => e,
        other => panic!("Client::connect as another user: {other:?}"),
    };
    let AuthError::OtherUser {
        owner,
        you,
        key_dir: Some(dir),
        ..
    } = &e
    else {
        panic!("Client::connect as another user: {e:?}")
    };
    // The message says whose runtime it is and where its key is.
    let text = e.to_string();
    assert!(text.contains("started by uid 0"), "{text}");
    assert!(text.contains(&dir.display().to_string()), "{text}");
    println!("CONNECT owner={owner} you={you}");
    // The key cannot be read.
    let path = PathBuf::from(env_str(KEY_ENV));
    match ControlKey::read(&path, 0) {
        Err(AuthError::KeyUnreadable { .. }) => println!("KEYFILE unreadable=yes"),
        other => panic!("reading {} as another user: {other:?}", path.display()),
    }
    // A guessed key is refused by the runtime during the handshake.
    let forged = ZmqClient::new("127.0.0.1", port, ControlKey::generate().unwrap());
    let mut refused = 0;
    for req in [
        Request::Register {
            pid: std::process::id(),
        },
        Request::Status,
        Request::Stop,
    ] {
        let msg = serde_json::to_vec(&req).unwrap();
        match forged.request(&msg, Duration::from_secs(10)) {
            Err(e @ TransportError::NotAuthorised { .. }) => {
                let text = e.to_string();
                assert!(text.contains("(uid 0)"), "{text}");
                refused += 1;
            }
            other => panic!("{req:?} with a forged key: {other:?}"),
        }
    }
    println!("FORGED refused={refused} uid={}", current_uid());
}

/// `setpriv`, if this process may switch to another user (it runs as root).
fn switch_user() -> Result<PathBuf, String> {
    if current_uid() != 0 {
        return Err(format!(
            "the test runs as uid {}, not root: it cannot act as another user",
            current_uid()
        ));
    }
    ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| "setpriv is not installed".to_owned())
}

#[test]
fn another_user_is_refused_and_the_runtime_keeps_running() {
    let _wd = Watchdog::new("other_user", Duration::from_secs(120));
    let setpriv = match switch_user() {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED another_user_is_refused_and_the_runtime_keeps_running: {why}");
            return;
        }
    };
    let setup = Setup::new("other_user");
    let rt = RuntimeGuard::start(&setup);
    let cfg = setup.config.to_str().unwrap();
    let as_nobody = |exe: &str, args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec![
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            exe,
        ];
        all.extend_from_slice(args);
        run_cli(setpriv.to_str().unwrap(), &all, env, LIMIT)
    };

    // The commands.
    for (exe, args) in [
        (runtime_exe(), vec!["status", "-c", cfg]),
        (runtime_exe(), vec!["status", "-c", cfg, "--json"]),
        (runtime_exe(), vec!["stop", "-c", cfg]),
        (stop_exe(), vec!["-c", cfg]),
    ] {
        let out = as_nobody(exe, &args, &[]);
        assert_eq!(out.code(), 1, "{exe} {args:?} as nobody: {out}");
        assert!(out.stderr.contains("not authorised"), "{out}");
        assert!(out.stderr.contains("started by uid 0"), "{out}");
        assert!(
            out.stderr.contains(&format!("you are uid {NOBODY}")),
            "{out}"
        );
    }

    // A client program: connect, read the key, a guessed key.
    let key = RuntimeDir::ensure().unwrap().key_file(setup.port);
    let exe = std::env::current_exe().unwrap();
    let port = setup.port.to_string();
    let out = as_nobody(
        exe.to_str().unwrap(),
        &[
            "--ignored",
            "--exact",
            "child_forged_key",
            "--nocapture",
            "--test-threads=1",
        ],
        &[
            (ROLE_ENV, "child_forged_key"),
            (PORT_ENV, &port),
            (KEY_ENV, key.to_str().unwrap()),
        ],
    );
    assert!(out.status.success(), "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(
        field(&all, "CONNECT", "owner").as_deref(),
        Some("0"),
        "{out}"
    );
    assert_eq!(field(&all, "KEYFILE", "unreadable").as_deref(), Some("yes"));
    assert_eq!(field(&all, "FORGED", "refused").as_deref(), Some("3"));
    assert_eq!(
        field(&all, "FORGED", "uid"),
        Some(NOBODY.to_string()),
        "{out}"
    );

    // The runtime still runs, untouched: nobody registered or stopped it.
    assert!(rt.exit_status().is_none(), "the runtime exited");
    let st = Client::status(&setup.opts()).unwrap();
    assert_eq!(st.pid, rt.pid());
    assert_eq!(st.clients, 0);
    assert!(key.exists());
    let mut kids = Children::new();
    let out = kids.run("child_echo", "echo", &setup.child_env(), WATCHDOG);
    assert!(out.contains("ECHO ok"), "{out}");
    let log = rt.stop();
    assert!(
        log.contains("refused a control connection without the runtime's key"),
        "{log}"
    );
}

/// Child: the runtime's own user connects and runs a task.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_echo() {
    if !child_role("child_echo") {
        return;
    }
    let client = child_connect();
    let admin = chi_sdk::admin::AdminClient::new(&client);
    assert_eq!(admin.echo(chi_sdk::types::PoolId::ADMIN, 7).unwrap(), 7);
    println!("ECHO ok");
}

#[test]
fn peers_without_the_key_are_refused_and_logged_sparingly() {
    let _wd = Watchdog::new("no_key", Duration::from_secs(100));
    let setup = Setup::new("no_key");
    let rt = RuntimeGuard::start(&setup);

    // No credentials at all: no answer.
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::REQ).unwrap();
    raw.set_linger(0).unwrap();
    raw.set_rcvtimeo(500).unwrap();
    raw.connect(&format!("tcp://127.0.0.1:{}", setup.port))
        .unwrap();
    raw.send(br#"{"op":"stop"}"#.as_slice(), 0).unwrap();
    assert_eq!(raw.recv_bytes(0), Err(zmq::Error::EAGAIN));
    drop(raw);

    // Wrong keys: refused at once, each time.
    let stop = serde_json::to_vec(&Request::Stop).unwrap();
    for _ in 0..12 {
        let wrong = ZmqClient::new("127.0.0.1", setup.port, ControlKey::generate().unwrap());
        match wrong.request(&stop, Duration::from_secs(10)) {
            Err(TransportError::NotAuthorised { owner, .. }) => {
                assert_eq!(owner, Some(current_uid()))
            }
            other => panic!("a wrong key: {other:?}; the runtime's log:\n{}", rt.log()),
        }
    }
    let st = Client::status(&setup.opts()).unwrap();
    assert_eq!(st.pid, rt.pid());
    let log = rt.stop();
    let logged = log
        .matches("refused a control connection without the runtime's key")
        .count();
    assert!(
        (1..=5).contains(&logged),
        "{logged} refusals logged (13 made, at most 5 a minute logged):\n{log}"
    );
}

#[test]
fn an_unsafe_runtime_directory_is_refused() {
    let _wd = Watchdog::new("unsafe_dir", Duration::from_secs(100));
    let setup = Setup::new("unsafe_dir");
    let cfg = setup.config.to_str().unwrap();
    let xdg = setup.dir.path().join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let env = [("XDG_RUNTIME_DIR", xdg.to_str().unwrap())];
    let ours = xdg.join("chimaera");
    let elsewhere = setup.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();

    // A symbolic link in the directory's place.
    std::os::unix::fs::symlink(&elsewhere, &ours).unwrap();
    let out = run_cli(runtime_exe(), &["start", "-c", cfg], &env, LIMIT);
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("is a symbolic link"), "{out}");
    assert!(out.stderr.contains(&ours.display().to_string()), "{out}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    std::fs::remove_file(&ours).unwrap();

    // A directory others may enter.
    std::fs::create_dir(&ours).unwrap();
    std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run_cli(runtime_exe(), &["start", "-c", cfg], &env, LIMIT);
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("mode is 0755"), "{out}");
    assert!(segments(setup.port).is_empty());

    // Made private, it is used: key, pid and log files all land there.
    std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = run_cli(
        runtime_exe(),
        &["start", "-c", cfg, "--daemon"],
        &env,
        Duration::from_secs(40),
    );
    let daemon = DaemonGuard {
        config: cfg,
        xdg: env[0].1,
    };
    assert!(out.status.success(), "{out}");
    for ext in ["key", "pid", "log"] {
        let f = ours.join(format!("{}.{ext}", setup.port));
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    let out = run_cli(runtime_exe(), &["status", "-c", cfg], &env, LIMIT);
    assert!(out.status.success(), "{out}");
    let out = run_cli(runtime_exe(), &["stop", "-c", cfg], &env, LIMIT);
    assert!(out.status.success(), "{out}");
    assert!(!ours.join(format!("{}.key", setup.port)).exists());
    assert!(!ours.join(format!("{}.pid", setup.port)).exists());
    drop(daemon);
}

/// A daemon started with `XDG_RUNTIME_DIR` set: stopped on drop (and killed by
/// the [`Setup`] if that fails: its command line names the scratch directory).
struct DaemonGuard<'a> {
    config: &'a str,
    xdg: &'a str,
}

impl Drop for DaemonGuard<'_> {
    fn drop(&mut self) {
        // Fails at once if it is stopped already.
        let _ = run_cli(
            runtime_exe(),
            &["stop", "-c", self.config, "--timeout-secs", "15"],
            &[("XDG_RUNTIME_DIR", self.xdg)],
            LIMIT,
        );
    }
}
