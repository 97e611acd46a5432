//! Loading a module library built with `#[chimod]` into a real runtime: the
//! example `mod_name` (`libchimaera_mod_name_runtime.so`) found through the
//! configured `module_path`, its methods called by a client, a panicking handler
//! contained, unsupported methods reported, and a library with another ABI
//! fingerprint refused with both fingerprints named.
//!
//! The test builds the libraries itself (`cargo build -p mod_name -p
//! chi-test-bad-abi`, same profile and target directory as this test), so it
//! works from a clean checkout.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use chi_sdk::abi::AbiFingerprint;
use chi_sdk::admin::AdminClient;
use chi_sdk::client::{CallError, Client, TaskError};
use chi_sdk::task::code;
use chi_sdk::types::PoolId;
use chimaera_mod_name_runtime as mod_name;
use support::*;

/// Builds the module libraries once; returns the directory holding them.
fn module_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // This test is target/<profile>/deps/module_loading-…
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_owned();
        let target_dir = profile_dir.parent().expect("target dir").to_owned();
        let profile = profile_dir
            .file_name()
            .and_then(|s| s.to_str())
            .expect("profile name")
            .to_owned();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(workspace)
            .args([
                "build",
                "--quiet",
                "-p",
                "mod_name",
                "-p",
                "chi-test-bad-abi",
            ])
            .arg("--target-dir")
            .arg(&target_dir);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build of the module libraries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for lib in [
            "libchimaera_mod_name_runtime.so",
            "libchimaera_bad_abi_runtime.so",
        ] {
            assert!(
                profile_dir.join(lib).is_file(),
                "{lib} is not in {}",
                profile_dir.display()
            );
        }
        profile_dir
    })
}

/// A runtime whose module path is the module libraries' directory.
fn setup(test: &str) -> Setup {
    let dir = module_dir();
    Setup::with(
        test,
        ConfigOpts {
            extra: format!("module_path: [{:?}]\n", dir.display().to_string()),
            ..ConfigOpts::default()
        },
    )
}

/// The call failed with `want`; returns its message.
fn task_err<T: std::fmt::Debug>(r: Result<T, CallError>, want: i32, what: &str) -> String {
    match r {
        Err(CallError::Task(TaskError { code, message })) if code == want => message,
        other => panic!("{what}: expected a task error with code {want}, got {other:?}"),
    }
}

#[test]
fn generated_constants() {
    assert_eq!(mod_name::CHIMOD_LIB_NAME, "chimaera_mod_name");
    assert_eq!(mod_name::method::CUSTOM, 10);
    assert_eq!(mod_name::method::PANIC, 11);
    assert!(mod_name::method::ALL.contains(&("kUnsupported", -1)));
    assert!(mod_name::method::ALL.contains(&("kNodeFailure", -1)));
}

#[test]
fn a_chimod_library_is_loaded_and_serves_its_methods() {
    let _wd = Watchdog::new("a_chimod_library_is_loaded", WATCHDOG);
    let s = setup("chimod_load");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let admin = AdminClient::new(&client);

    let pool = admin
        .create_pool(
            mod_name::CHIMOD_LIB_NAME,
            "mod_pool",
            "some args",
            PoolId::NULL,
        )
        .expect("create a pool of the example module");

    // Custom: in-place upper-casing, and state kept by the container.
    let (data, n) =
        mod_name::custom(&client, pool, "hello, chimaera", mod_name::OP_UPPERCASE).expect("Custom");
    assert_eq!((data.as_str(), n), ("HELLO, CHIMAERA", 15));
    let (data, n) = mod_name::custom(&client, pool, "x", mod_name::OP_COUNT).expect("Custom");
    assert_eq!((data.as_str(), n), ("x", 1));

    // A handler's Err is FAILED with its message.
    let msg = task_err(
        mod_name::custom(&client, pool, "x", 77),
        code::FAILED,
        "unknown op",
    );
    assert!(
        msg.contains("unknown op 77") && msg.contains("mod_pool") && msg.contains("some args"),
        "{msg}"
    );

    // A panicking handler is contained and reported with its message.
    let msg = task_err(mod_name::panic(&client, pool, 42), code::PANICKED, "kPanic");
    assert!(msg.contains("kPanic asked to panic with value 42"), "{msg}");
    // …and the runtime (and the container) still answer.
    let (_, n) = mod_name::custom(&client, pool, "y", mod_name::OP_COUNT).expect("after panic");
    assert_eq!(n, 3);
    assert_eq!(
        mod_name::custom(&client, pool, "abc", mod_name::OP_UPPERCASE)
            .expect("after panic")
            .0,
        "ABC"
    );

    // Unsupported and unknown methods name the method.
    let msg = task_err(
        mod_name::call_method(&client, pool, 2),
        code::UNSUPPORTED_METHOD,
        "kNodeFailure",
    );
    assert!(
        msg.contains("chimaera_mod_name") && msg.contains("method 2 (kNodeFailure)"),
        "{msg}"
    );
    let msg = task_err(
        mod_name::call_method(&client, pool, 99),
        code::UNSUPPORTED_METHOD,
        "method 99",
    );
    assert!(msg.contains("has no method 99"), "{msg}");

    // A create that fails reports the module's message.
    let e = admin
        .create_pool(mod_name::CHIMOD_LIB_NAME, "bad_pool", "fail", PoolId::NULL)
        .expect_err("create with args = fail");
    assert!(e.to_string().contains("asked to fail"), "{e}");

    admin.destroy_pool(pool).expect("destroy the pool");
    drop(client);
    let log = rt.stop();
    assert!(log.contains("module loaded"), "{log}");
}

#[test]
fn a_library_with_another_fingerprint_is_refused() {
    let _wd = Watchdog::new("a_library_with_another_fingerprint", WATCHDOG);
    let s = setup("chimod_bad_abi");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let admin = AdminClient::new(&client);
    let e = admin
        .create_pool("chimaera_bad_abi", "bad", "", PoolId::NULL)
        .expect_err("a module with another ABI must be refused");
    let msg = e.to_string();
    let ours = AbiFingerprint::current();
    let theirs = AbiFingerprint {
        abi_version: ours.abi_version + 1000,
        ..ours
    };
    assert!(
        msg.contains(&ours.to_string()) && msg.contains(&theirs.to_string()),
        "the refusal must name both fingerprints ({ours} and {theirs}): {msg}"
    );
    assert!(msg.contains("libchimaera_bad_abi_runtime.so"), "{msg}");
    // The runtime still serves.
    let pool = admin
        .create_pool("chimaera_mod_name", "fine", "", PoolId::NULL)
        .expect("the runtime still loads good modules");
    assert_eq!(
        mod_name::custom(&client, pool, "ok", mod_name::OP_UPPERCASE)
            .expect("Custom")
            .0,
        "OK"
    );
    drop(client);
    rt.stop();
}
