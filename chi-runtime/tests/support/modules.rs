//! Building the module libraries the tests load (`cargo build -p …` of the
//! example modules, same profile and target directory as the test binary), so
//! that the tests work from a clean checkout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{ConfigOpts, Setup};

/// The packages whose `lib{name}_runtime.so` the tests load, with the library
/// each builds.
pub const MODULE_PACKAGES: &[(&str, &str)] = &[
    ("mod_name", "libchimaera_mod_name_runtime.so"),
    ("compress", "libchimaera_compress_runtime.so"),
    ("bdev", "libchimaera_bdev_runtime.so"),
    ("kv", "libchimaera_kv_runtime.so"),
    ("echo", "libchimaera_echo_runtime.so"),
    ("chi-test-bad-abi", "libchimaera_bad_abi_runtime.so"),
];

/// Runs `cargo build --quiet <args>` in the workspace with the profile and
/// target directory of this test binary; returns the profile's directory
/// (`target/<profile>`), where the built artifacts are.
pub fn cargo_build(args: &[&str], what: &str) -> PathBuf {
    // This test is target/<profile>/deps/<test>-…
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
        .args(["build", "--quiet"])
        .args(args);
    cmd.arg("--target-dir").arg(&target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    // A build on a loaded machine can take minutes: not the test's own time.
    let out = chi_testkit::exempt(|| cmd.output()).expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build of {what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    profile_dir
}

/// Builds every module library once per test binary; returns the directory
/// holding them.
pub fn module_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let args: Vec<&str> = MODULE_PACKAGES
            .iter()
            .flat_map(|(package, _)| ["-p", package])
            .collect();
        let profile_dir = cargo_build(&args, "the module libraries");
        for (_, lib) in MODULE_PACKAGES {
            assert!(
                profile_dir.join(lib).is_file(),
                "{lib} is not in {}",
                profile_dir.display()
            );
        }
        profile_dir
    })
}

/// A runtime setup whose module path is the module libraries' directory.
pub fn module_setup(test: &str) -> Setup {
    let dir = module_dir();
    Setup::with(
        test,
        ConfigOpts {
            extra: format!("module_path: [{:?}]\n", dir.display().to_string()),
            ..ConfigOpts::default()
        },
    )
}
