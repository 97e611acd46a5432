//! The runtime's life with real processes: stop (command, signal, task) and
//! SIGKILL while clients wait, a second runtime on a taken port, `--daemon`
//! start and `chimaera_stop_runtime`, restart after a crash. After each test no
//! runtime process and no segment of its port is left.

mod support;

use std::time::{Duration, Instant};

use chi_sdk::admin::{AdminClient, EchoTask};
use chi_sdk::client::{Client, ClientError, TaskPtr};
use chi_sdk::queue::Priority;
use chi_sdk::task::code;
use chi_sdk::types::PoolId;
use support::*;

// ---------------------------------------------------------------------------------
// Child roles.

/// Child: echoes a few values through the admin pool and prints the runtime's pid.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_echo_check() {
    if !child_role("child_echo_check") {
        return;
    }
    let client = child_connect();
    let admin = AdminClient::new(&client);
    for v in [0u64, 1, 42, u64::MAX, 1 << 40] {
        assert_eq!(admin.echo(PoolId::ADMIN, v).expect("echo"), v);
    }
    println!("ECHO_OK runtime_pid={}", client.runtime_pid());
}

/// How one waited task ended.
#[derive(Debug, Default)]
struct Outcomes {
    ok: u32,
    shutdown: u32,
    stopped: u32,
    died: u32,
}

impl Outcomes {
    fn add(&mut self, o: &Outcomes) {
        self.ok += o.ok;
        self.shutdown += o.shutdown;
        self.stopped += o.stopped;
        self.died += o.died;
    }

    /// Records the end of a wait on `t` (which was submitted with `value`).
    fn record(&mut self, client: &Client, t: TaskPtr<EchoTask>, value: u64) {
        match client.wait(&t) {
            Ok(()) => {
                match t.result() {
                    Ok(()) => {
                        assert_eq!(t.get().reply, value);
                        self.ok += 1;
                    }
                    Err(e) if e.code == code::SHUTDOWN => {
                        assert!(e.message.contains("runtime stopped"), "{e}");
                        self.shutdown += 1;
                    }
                    Err(e) => panic!("unexpected task error: {e}"),
                }
                client.del_task(t);
            }
            Err(e) => self.client_error(e),
        }
    }

    fn client_error(&mut self, e: ClientError) {
        match e {
            ClientError::RuntimeStopped { .. } => self.stopped += 1,
            ClientError::RuntimeDied { .. } => self.died += 1,
            e => panic!("unexpected client error: {e}"),
        }
    }
}

/// Child: `CHI_TEST_THREADS` threads each submit `CHI_TEST_TASKS` echoes of
/// `CHI_TEST_DELAY_US` and one more thread makes one synchronous delayed call;
/// prints READY once everything is submitted, then waits for every task and
/// prints how each ended. `CHI_TEST_EXPECT` (ok, shutdown, died) is what every
/// task must get.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_wait_delayed() {
    if !child_role("child_wait_delayed") {
        return;
    }
    let threads = env_u64("CHI_TEST_THREADS") as usize;
    let tasks = env_u64("CHI_TEST_TASKS");
    let delay = env_u64("CHI_TEST_DELAY_US");
    let expect = env_str("CHI_TEST_EXPECT");
    let client = child_connect();
    let submitted = std::sync::Barrier::new(threads + 2);
    let t0 = Instant::now();
    let total = std::sync::Mutex::new(Outcomes::default());
    std::thread::scope(|s| {
        for th in 0..threads {
            let (client, submitted, total) = (&client, &submitted, &total);
            s.spawn(move || {
                let mut mine = Vec::new();
                for i in 0..tasks {
                    let v = (th as u64) << 32 | i;
                    let mut e = EchoTask::new(PoolId::ADMIN, v);
                    e.delay_us = delay;
                    let t = client.new_task(e).expect("new_task");
                    client.enqueue(&t, Priority::LowLatency).expect("enqueue");
                    mine.push((t, v));
                }
                submitted.wait();
                let mut o = Outcomes::default();
                for (t, v) in mine {
                    o.record(client, t, v);
                }
                total.lock().unwrap().add(&o);
            });
        }
        // One synchronous call, blocked in Client::call → wait.
        let (client, submitted, total) = (&client, &submitted, &total);
        s.spawn(move || {
            let mut e = EchoTask::new(PoolId::ADMIN, 77);
            e.delay_us = delay;
            let t = client.new_task(e).expect("new_task");
            client.enqueue(&t, Priority::LowLatency).expect("enqueue");
            submitted.wait();
            let mut o = Outcomes::default();
            o.record(client, t, 77);
            total.lock().unwrap().add(&o);
        });
        submitted.wait();
        println!("READY");
    });
    let o = total.into_inner().unwrap();
    println!(
        "OUTCOME ok={} shutdown={} stopped={} died={} secs={:.2}",
        o.ok,
        o.shutdown,
        o.stopped,
        o.died,
        t0.elapsed().as_secs_f64()
    );
    let n = threads as u32 * tasks as u32 + 1;
    let got = match expect.as_str() {
        "ok" => o.ok,
        "shutdown" => o.shutdown,
        "died" => o.died,
        other => panic!("bad CHI_TEST_EXPECT {other}"),
    };
    assert_eq!(got, n, "expected every task to end '{expect}': {o:?}");
}

/// Child: stops the runtime with a StopRuntime task (through the admin pool).
#[test]
#[ignore = "child role: run by its parent test"]
fn child_stop_runtime_task() {
    if !child_role("child_stop_runtime_task") {
        return;
    }
    let client = child_connect();
    let admin = AdminClient::new(&client);
    assert_eq!(admin.echo(PoolId::ADMIN, 3).unwrap(), 3);
    admin.stop_runtime().expect("StopRuntime");
    println!("STOP_ACCEPTED");
}

// ---------------------------------------------------------------------------------
// Helpers.

/// Spawns `procs` clients of `child_wait_delayed`; returns once all submitted.
fn spawn_waiters(kids: &mut Children, setup: &Setup, procs: usize, delay_us: u64, expect: &str) {
    for p in 0..procs {
        let mut env = setup.child_env();
        env.push(("CHI_TEST_THREADS", "2".into()));
        env.push(("CHI_TEST_TASKS", "3".into()));
        env.push(("CHI_TEST_DELAY_US", delay_us.to_string()));
        env.push(("CHI_TEST_EXPECT", expect.into()));
        kids.spawn("child_wait_delayed", &format!("waiter{p}"), &env);
    }
    kids.wait_output_all("READY", WATCHDOG);
    // Every task left the queue: the workers run (and park) them.
    wait_until(Duration::from_secs(20), "the lanes to drain", || {
        Client::status(&setup.opts()).is_ok_and(|st| st.lanes.iter().all(|l| l.len == 0))
    });
}

fn outcomes(kids: &mut Children) -> String {
    (0..kids.len())
        .map(|i| {
            let out = kids.output(i);
            out.lines()
                .find(|l| l.contains("OUTCOME"))
                .map(str::to_owned)
                .unwrap_or_else(|| format!("no OUTCOME in:\n{out}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------
// Stop and kill while clients wait.

/// `chi-runtime stop` while clients wait on tasks that are parked (their handler
/// yields while it delays): the runtime finishes them before it exits, so every
/// client gets its answer.
#[test]
fn stop_while_clients_wait_finishes_parked_tasks() {
    let _wd = Watchdog::new("stop_while_clients_wait", Duration::from_secs(100));
    let setup = Setup::new("stop_wait");
    let mut rt = RuntimeGuard::start(&setup);
    let mut kids = Children::new();
    spawn_waiters(&mut kids, &setup, 3, 2_000_000, "ok");
    let cfg = setup.config.to_str().unwrap();
    let out = run_cli(runtime_exe(), &["stop", "-c", cfg], &[], EXIT_LIMIT);
    assert!(out.status.success(), "chi-runtime stop failed: {out}");
    assert!(out.stdout.contains("chi-runtime stopped"), "{out}");
    kids.wait_all(Duration::from_secs(30));
    let log = rt.expect_clean_exit();
    assert!(log.contains("stop requested"), "{log}");
    println!("{}", outcomes(&mut kids));
}

/// Tasks parked longer than the runtime's 5 s stop limit are completed with
/// SHUTDOWN; the runtime still exits cleanly and removes its segments.
#[test]
fn stop_while_clients_wait_beyond_the_drain_limit() {
    let _wd = Watchdog::new("stop_beyond_drain_limit", Duration::from_secs(100));
    let setup = Setup::new("stop_long");
    let mut rt = RuntimeGuard::start(&setup);
    let mut kids = Children::new();
    spawn_waiters(&mut kids, &setup, 2, 60_000_000, "shutdown");
    let cfg = setup.config.to_str().unwrap();
    let out = run_cli(stop_exe(), &["-c", cfg], &[], EXIT_LIMIT);
    assert!(out.status.success(), "chimaera_stop_runtime failed: {out}");
    kids.wait_all(Duration::from_secs(30));
    rt.expect_clean_exit();
    println!("{}", outcomes(&mut kids));
}

/// SIGKILL while clients wait: every wait ends with RuntimeDied (well before the
/// client_wait_timeout of 60 s), also while the dead runtime is still a zombie
/// (its parent has not reaped it yet); a new runtime on the port replaces the
/// stale segments and works.
#[test]
fn sigkill_while_clients_wait_reports_runtime_died() {
    let _wd = Watchdog::new("sigkill_while_clients_wait", Duration::from_secs(100));
    let setup = Setup::with(
        "sigkill",
        ConfigOpts {
            client_wait_timeout: "60s",
            ..ConfigOpts::default()
        },
    );
    let rt = RuntimeGuard::start(&setup);
    let mut kids = Children::new();
    spawn_waiters(&mut kids, &setup, 3, 30_000_000, "died");
    let t0 = Instant::now();
    rt.kill_keep_zombie();
    // The watchdog: far below the 60 s a client would wait for a stopped runtime
    // (a killed runtime never says STOPPING: only its death ends the waits).
    kids.wait_all(Duration::from_secs(20));
    println!(
        "clients noticed the death within {:.3} s\n{}",
        t0.elapsed().as_secs_f64(),
        outcomes(&mut kids)
    );
    rt.reap_zombie();
    // A killed runtime cannot clean up: its segments are still there.
    let stale = inodes(setup.port);
    assert_eq!(stale.len(), 3, "{stale:?}");

    // A new runtime on the same port replaces them and serves.
    let rt2 = RuntimeGuard::start_named(&setup, "runtime2.log");
    let fresh = inodes(setup.port);
    assert_eq!(fresh.len(), 3, "{fresh:?}");
    for (s, f) in stale.iter().zip(&fresh) {
        assert_eq!(s.0, f.0);
        assert_ne!(s.1, f.1, "segment {} was not replaced", s.0);
    }
    let out = kids.run("child_echo_check", "echo", &setup.child_env(), WATCHDOG);
    assert_eq!(
        field(&out, "ECHO_OK", "runtime_pid"),
        Some(rt2.pid().to_string()),
        "{out}"
    );
    rt2.stop();
    drop(rt);
}

/// SIGTERM and a StopRuntime task stop the runtime cleanly too.
#[test]
fn sigterm_and_stop_task_stop_cleanly() {
    let _wd = Watchdog::new("sigterm_and_stop_task", Duration::from_secs(100));
    let setup = Setup::new("sigterm");
    let mut rt = RuntimeGuard::start(&setup);
    rt.terminate();
    let log = rt.expect_clean_exit();
    assert!(log.contains("by=\"a signal\""), "{log}");
    drop(rt);

    let mut rt = RuntimeGuard::start_named(&setup, "runtime2.log");
    let mut kids = Children::new();
    let out = kids.run(
        "child_stop_runtime_task",
        "stopper",
        &setup.child_env(),
        WATCHDOG,
    );
    assert!(out.contains("STOP_ACCEPTED"), "{out}");
    let log = rt.expect_clean_exit();
    assert!(log.contains("by=\"a StopRuntime task\""), "{log}");
}

// ---------------------------------------------------------------------------------
// A second runtime on the same port.

fn inodes(port: u16) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    segments(port)
        .into_iter()
        .map(|n| {
            let ino = std::fs::metadata(format!("/dev/shm/{n}")).unwrap().ino();
            (n, ino)
        })
        .collect()
}

#[test]
fn second_runtime_on_the_same_port_fails_and_the_first_keeps_working() {
    let _wd = Watchdog::new("second_runtime", Duration::from_secs(100));
    let setup = Setup::new("second");
    let rt = RuntimeGuard::start(&setup);
    let before = inodes(setup.port);
    assert_eq!(before.len(), 3, "{before:?}");
    let cfg = setup.config.to_str().unwrap();

    // Foreground.
    let out = run_cli(runtime_exe(), &["start", "-c", cfg], &[], EXIT_LIMIT);
    assert!(!out.status.success(), "a second runtime started: {out}");
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("in use"), "{out}");
    assert!(
        out.stderr.contains(&setup.port.to_string()),
        "the message does not name the port: {out}"
    );
    // As a daemon.
    let log = setup.dir.path().join("second.log");
    let pid = setup.dir.path().join("second.pid");
    let out = run_cli(
        runtime_exe(),
        &[
            "start",
            "-c",
            cfg,
            "--daemon",
            "--log-file",
            log.to_str().unwrap(),
            "--pid-file",
            pid.to_str().unwrap(),
        ],
        &[],
        EXIT_LIMIT,
    );
    assert!(!out.status.success(), "a second daemon started: {out}");
    assert!(
        out.stderr.contains("in use") || out.stderr.contains("already answers"),
        "{out}"
    );
    assert!(!pid.exists(), "the failed daemon wrote a pid file");
    // The daemon it spawned is gone already (had it not reached its bind yet, it
    // would take the port once the first runtime stops).
    let left = processes_naming(setup.dir.path(), &[rt.pid()]);
    assert!(left.is_empty(), "the failed daemon start left {left:?}");

    // The first one is untouched and serves.
    assert_eq!(inodes(setup.port), before);
    assert!(rt.exit_status().is_none(), "the first runtime exited");
    let mut kids = Children::new();
    let out = kids.run("child_echo_check", "echo", &setup.child_env(), WATCHDOG);
    assert_eq!(
        field(&out, "ECHO_OK", "runtime_pid"),
        Some(rt.pid().to_string()),
        "{out}"
    );
    assert_eq!(Client::status(&setup.opts()).unwrap().pid, rt.pid());
    rt.stop();
}

// ---------------------------------------------------------------------------------
// --daemon.

/// A daemon the test started (not its child): stopped, then killed, on drop.
struct Daemon {
    pid: u32,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if pid_alive(self.pid) {
            let _ = Client::request_stop(&client_opts(self.port));
            let deadline = Instant::now() + Duration::from_secs(15);
            while pid_alive(self.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if pid_alive(self.pid) {
                eprintln!("test cleanup: killing the daemon {}", self.pid);
                sigkill(self.pid);
            }
        }
        for s in remove_segments(self.port) {
            eprintln!("test cleanup: removed leftover segment /dev/shm/{s}");
        }
    }
}

fn start_daemon(exe: &str, args: &[&str], setup: &Setup, tag: &str) -> Daemon {
    let log = setup.dir.path().join(format!("{tag}.log"));
    let pid_file = setup.dir.path().join(format!("{tag}.pid"));
    let cfg = setup.config.to_str().unwrap();
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "-c",
        cfg,
        "--daemon",
        "--log-file",
        log.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    let out = run_cli(exe, &all, &[], Duration::from_secs(40));
    // Whatever happened, the daemon (if any) is cleaned up by the guard.
    let reported = Client::status(&setup.opts()).map(|s| s.pid).ok();
    let daemon = reported.map(|pid| Daemon {
        pid,
        port: setup.port,
    });
    assert!(out.status.success(), "daemon start failed: {out}");
    let daemon = daemon.expect("the daemon does not answer after start returned");
    assert!(out.stdout.contains("chi-runtime started"), "{out}");
    assert!(
        out.stdout.contains(&format!("pid {}", daemon.pid)),
        "{out} (daemon pid {})",
        daemon.pid
    );
    let written = std::fs::read_to_string(&pid_file).expect("the pid file");
    assert_eq!(written.trim(), daemon.pid.to_string());
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log_text.contains("runtime ready"), "{log_text}");
    daemon
}

#[test]
fn daemon_start_and_chimaera_stop_runtime() {
    let _wd = Watchdog::new("daemon_start", Duration::from_secs(100));
    let setup = Setup::new("daemon");
    let cfg = setup.config.to_str().unwrap();
    let mut kids = Children::new();

    // chi-runtime start --daemon, chimaera_stop_runtime.
    let d = start_daemon(runtime_exe(), &["start"], &setup, "d1");
    let out = kids.run("child_echo_check", "echo", &setup.child_env(), WATCHDOG);
    assert_eq!(
        field(&out, "ECHO_OK", "runtime_pid"),
        Some(d.pid.to_string())
    );
    let out = run_cli(stop_exe(), &["-c", cfg], &[], EXIT_LIMIT);
    assert!(out.status.success(), "{out}");
    assert!(
        out.stdout.contains(&format!("stopped (pid {})", d.pid)),
        "{out}"
    );
    // `stop` returns once the process is gone.
    assert!(!pid_alive(d.pid), "the daemon {} is still alive", d.pid);
    assert_eq!(segments(setup.port), Vec::<String>::new());
    drop(d);

    // chimaera_start_runtime --daemon, chi-runtime stop.
    let d = start_daemon(start_exe(), &[], &setup, "d2");
    let out = kids.run("child_echo_check", "echo2", &setup.child_env(), WATCHDOG);
    assert_eq!(
        field(&out, "ECHO_OK", "runtime_pid"),
        Some(d.pid.to_string())
    );
    let out = run_cli(runtime_exe(), &["stop", "-c", cfg], &[], EXIT_LIMIT);
    assert!(out.status.success(), "{out}");
    assert!(!pid_alive(d.pid), "the daemon {} is still alive", d.pid);
    assert_eq!(segments(setup.port), Vec::<String>::new());
    let log = std::fs::read_to_string(setup.dir.path().join("d2.log")).unwrap();
    assert!(log.contains("runtime stopped"), "{log}");
    assert_no_process_left(setup.dir.path(), &[]);
}
