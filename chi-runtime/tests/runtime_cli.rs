//! The `chi-runtime` command line with real processes: configuration mistakes
//! (exit code 2, naming the file, the line and the key), `default-config`,
//! `status` (table and JSON), and what every command says when no runtime runs.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use chi_runtime::config::Config;
use chi_sdk::admin::{ADMIN_LIB_NAME, AdminClient};
use chi_sdk::client::{Client, ClientError};
use chi_sdk::proto::StatusReport;
use chi_sdk::transport::TransportError;
use chi_sdk::types::PoolId;
use support::config_files::assert_names;
use support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// `chi-runtime start -c file` exits with code 2 and says what is wrong.
fn start_fails(exe: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run_cli(exe, args, env, LIMIT);
    assert_eq!(out.code(), 2, "expected exit code 2: {out}");
    assert!(
        out.stderr.contains("configuration error"),
        "stderr does not say 'configuration error': {out}"
    );
    out.stderr
}

#[test]
fn config_mistakes_exit_2_naming_file_line_and_key() {
    let _wd = Watchdog::new("config_mistakes", Duration::from_secs(100));
    // Each file sets this test's own port first: if a mistake went unnoticed the
    // runtime would start there (and be killed by run_cli's limit), not on a port
    // another test uses.
    let setup = Setup::new("config_mistakes");
    let p = setup.port;
    let d = &setup.dir;
    let start =
        |file: &Path| start_fails(runtime_exe(), &["start", "-c", file.to_str().unwrap()], &[]);

    // Unknown key.
    let f = d.write(
        "unknown.yaml",
        &format!("port: {p}\nworkers:\n  low_latency: 2\n  lowlatency: 3\n"),
    );
    let e = start(&f);
    assert_names(&e, &f, 4, "workers.lowlatency");
    assert!(e.contains("unknown key"), "{e}");
    assert!(
        e.contains("low_latency"),
        "the allowed keys are not listed: {e}"
    );

    // Wrong type.
    let f = d.write("type.yaml", &format!("port: {p}\nqueue:\n  depth: deep\n"));
    assert_names(&start(&f), &f, 3, "queue.depth");
    let f = d.write("type2.yaml", &format!("port: {p}\nsegments: [1g, 2g]\n"));
    assert_names(&start(&f), &f, 2, "segments");

    // Bad value.
    let f = d.write("value.yaml", &format!("port: {p}\nqueue:\n  depth: 0\n"));
    let e = start(&f);
    assert_names(&e, &f, 3, "queue.depth");
    assert!(e.contains("out of range"), "{e}");
    let f = d.write(
        "value2.yaml",
        &format!("port: {p}\n\nworkers:\n  low_latency: 0\n"),
    );
    assert_names(&start(&f), &f, 4, "workers.low_latency");
    let f = d.write(
        "value3.yaml",
        &format!("port: {p}\nsegments:\n  main: 12 parsecs\n"),
    );
    assert_names(&start(&f), &f, 3, "segments.main");

    // YAML syntax error (a tab in the indentation).
    let f = d.write(
        "syntax.yaml",
        &format!("port: {p}\nworkers:\n  low_latency: 2\n\thigh_latency: 1\n"),
    );
    let e = start(&f);
    assert!(e.contains("YAML syntax error"), "{e}");
    let file = f.display().to_string();
    assert!(
        e.contains(&format!("{file}:3:")) || e.contains(&format!("{file}:4:")),
        "no line of {file} in:\n{e}"
    );
    assert!(e.contains("`workers."), "no key in:\n{e}");
    // A key given twice.
    let f = d.write(
        "twice.yaml",
        &format!("port: {p}\nidle:\n  busy_poll: 5us\nport: {p}\n"),
    );
    let e = start(&f);
    assert_names(&e, &f, 4, "port");
    assert!(e.contains("duplicate"), "{e}");

    // Missing file.
    let f = d.path().join("does-not-exist.yaml");
    let e = start(&f);
    assert!(e.contains("cannot read config file"), "{e}");
    assert!(e.contains(&f.display().to_string()), "{e}");
    assert!(e.contains("No such file"), "{e}");

    // Unreadable file: a directory; and, unless we are root (who reads anything),
    // a file without read permission.
    let e = start(d.path());
    assert!(e.contains("cannot read config file"), "{e}");
    assert!(e.contains(&d.path().display().to_string()), "{e}");
    let f = d.write("noperm.yaml", &format!("port: {p}\n"));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    if std::fs::read(&f).is_err() {
        let e = start(&f);
        assert!(e.contains("cannot read config file"), "{e}");
        assert!(e.contains(&f.display().to_string()), "{e}");
        assert!(e.contains("ermission denied"), "{e}");
    } else {
        println!("running as root: the mode-000 case is covered by the directory case");
    }

    // The same through CHI_SERVER_CONF, and through chimaera_start_runtime.
    let bad = d.write(
        "env.yaml",
        &format!("port: {p}\nworkers:\n  low_latency: x\n"),
    );
    let e = start_fails(
        runtime_exe(),
        &["start"],
        &[("CHI_SERVER_CONF", bad.to_str().unwrap())],
    );
    assert_names(&e, &bad, 3, "workers.low_latency");
    let missing = d.path().join("missing.yaml");
    let e = start_fails(
        runtime_exe(),
        &["start"],
        &[("CHI_SERVER_CONF", missing.to_str().unwrap())],
    );
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(e.contains("(named by CHI_SERVER_CONF)"), "{e}");
    let e = start_fails(start_exe(), &["-c", bad.to_str().unwrap()], &[]);
    assert_names(&e, &bad, 3, "workers.low_latency");
    let e = start_fails(
        runtime_exe(),
        &["start", "--daemon", "-c", bad.to_str().unwrap()],
        &[],
    );
    assert_names(&e, &bad, 3, "workers.low_latency");
    // stop and status read the same file (for the port): same error.
    let e = start_fails(runtime_exe(), &["status", "-c", bad.to_str().unwrap()], &[]);
    assert_names(&e, &bad, 3, "workers.low_latency");

    // None of these started anything.
    assert_eq!(segments(p), Vec::<String>::new());
    assert!(Client::status(&setup.opts()).is_err());
}

#[test]
fn default_config_parses_back() {
    let _wd = Watchdog::new("default_config", Duration::from_secs(60));
    let out = run_cli(runtime_exe(), &["default-config"], &[], LIMIT);
    assert!(out.status.success(), "{out}");
    assert_eq!(out.stdout, Config::default_yaml());
    let parsed = Config::from_yaml_override(&out.stdout, "<default-config output>")
        .unwrap_or_else(|e| panic!("the printed defaults do not parse back: {e}"));
    assert_eq!(parsed, Config::defaults().unwrap());
    assert_eq!(parsed.port, chi_sdk::proto::DEFAULT_PORT);
    // And as a file given to `start` (a copy users edit): checked only by loading
    // it, to not start a runtime on the default port.
    let dir = Scratch::new("default_config");
    let f = dir.write("copy.yaml", &out.stdout);
    assert_eq!(Config::from_file(&f).unwrap().workers, parsed.workers);
}

// ---------------------------------------------------------------------------------
// status.

/// Child: creates `status_pool` and runs some echoes through it.
#[test]
#[ignore = "child role: run by its parent test"]
fn child_status_work() {
    if !child_role("child_status_work") {
        return;
    }
    let client = child_connect();
    let admin = AdminClient::new(&client);
    let id = admin
        .get_or_create_pool(ADMIN_LIB_NAME, "status_pool", "")
        .unwrap();
    for v in 0..20 {
        assert_eq!(admin.echo(id, v).unwrap(), v);
        assert_eq!(admin.echo(PoolId::ADMIN, v).unwrap(), v);
    }
    println!("POOL id={}", id.0);
}

#[test]
fn status_table_and_json() {
    let _wd = Watchdog::new("status", Duration::from_secs(100));
    let setup = Setup::with(
        "status",
        ConfigOpts {
            low_latency: 2,
            high_latency: 1,
            ..ConfigOpts::default()
        },
    );
    let rt = RuntimeGuard::start(&setup);
    let mut kids = Children::new();
    let out = kids.run("child_status_work", "work", &setup.child_env(), WATCHDOG);
    let pool: u64 = field(&out, "POOL", "id").unwrap().parse().unwrap();
    let cfg = setup.config.to_str().unwrap();

    // JSON.
    let out = run_cli(runtime_exe(), &["status", "-c", cfg, "--json"], &[], LIMIT);
    assert!(out.status.success(), "{out}");
    let st: StatusReport = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not a StatusReport ({e}): {out}"));
    assert_eq!(st.node_id, 1);
    assert_eq!(st.pid, rt.pid());
    let workers: Vec<(u32, &str, Vec<usize>)> = st
        .workers
        .iter()
        .map(|w| (w.id, w.kind.as_str(), w.lanes.clone()))
        .collect();
    assert_eq!(
        workers,
        vec![
            (0, "low_latency", vec![0]),
            (1, "low_latency", vec![1]),
            (2, "high_latency", vec![2]),
        ],
        "{}",
        out.stdout
    );
    let lanes: Vec<(usize, &str)> = st
        .lanes
        .iter()
        .map(|l| (l.lane, l.priority.as_str()))
        .collect();
    assert_eq!(
        lanes,
        vec![(0, "low_latency"), (1, "low_latency"), (2, "high_latency")]
    );
    let pools: Vec<(u64, &str, &str, Vec<u32>)> = st
        .pools
        .iter()
        .map(|p| {
            (
                p.id,
                p.name.as_str(),
                p.module.as_str(),
                p.containers.clone(),
            )
        })
        .collect();
    assert_eq!(
        pools,
        vec![
            (1, "admin", ADMIN_LIB_NAME, vec![0]),
            (pool, "status_pool", ADMIN_LIB_NAME, vec![0]),
        ]
    );
    // 1 get_or_create + 40 echoes, at least.
    assert!(st.tasks_completed >= 41, "{}", out.stdout);
    assert_eq!(
        st.tasks_completed,
        st.workers.iter().map(|w| w.tasks_completed).sum::<u64>()
    );

    // The table, found through CHI_SERVER_CONF this time.
    let out = run_cli(
        runtime_exe(),
        &["status"],
        &[("CHI_SERVER_CONF", cfg)],
        LIMIT,
    );
    assert!(out.status.success(), "{out}");
    let t = &out.stdout;
    for want in [
        format!("node 1  pid {}", rt.pid()),
        format!("tasks completed {}", st.tasks_completed),
        "workers:".to_owned(),
        "#0   low_latency   lanes [0]".to_owned(),
        "#1   low_latency   lanes [1]".to_owned(),
        "#2   high_latency  lanes [2]".to_owned(),
        "queue lanes:".to_owned(),
        "lane 0   low_latency".to_owned(),
        "lane 2   high_latency".to_owned(),
        "pools:".to_owned(),
        "admin".to_owned(),
        "status_pool".to_owned(),
        ADMIN_LIB_NAME.to_owned(),
    ] {
        assert!(t.contains(&want), "no '{want}' in the status table:\n{t}");
    }
    rt.stop();
}

// ---------------------------------------------------------------------------------
// No runtime.

#[test]
fn without_a_runtime_commands_fail_and_clients_fail_at_once() {
    let _wd = Watchdog::new("no_runtime", Duration::from_secs(60));
    let setup = Setup::new("no_runtime");
    let cfg = setup.config.to_str().unwrap();
    for (exe, args) in [
        (runtime_exe(), vec!["status", "-c", cfg]),
        (runtime_exe(), vec!["status", "-c", cfg, "--json"]),
        (runtime_exe(), vec!["stop", "-c", cfg]),
        (stop_exe(), vec!["-c", cfg]),
    ] {
        let out = run_cli(exe, &args, &[], LIMIT);
        assert!(!out.status.success(), "{exe} {args:?} succeeded: {out}");
        assert_eq!(out.code(), 1, "{out}");
        assert!(out.stderr.contains("no runtime is listening"), "{out}");
        assert!(
            out.stderr.contains("start one with 'chi-runtime start'"),
            "{out}"
        );
        assert!(out.stderr.contains(&setup.port.to_string()), "{out}");
    }

    let t0 = Instant::now();
    let r = Client::connect(setup.opts());
    let took = t0.elapsed();
    match r {
        Err(ClientError::Transport(TransportError::NoRuntime { endpoint })) => {
            assert!(endpoint.contains(&setup.port.to_string()), "{endpoint}")
        }
        other => panic!("Client::connect without a runtime: {other:?}"),
    }
    // "At once": the 5 s connect timeout of the options is not waited out.
    assert!(
        took < Duration::from_secs(1),
        "Client::connect took {took:?} to notice no runtime runs"
    );
    assert!(matches!(
        Client::status(&setup.opts()),
        Err(ClientError::Transport(TransportError::NoRuntime { .. }))
    ));
}
