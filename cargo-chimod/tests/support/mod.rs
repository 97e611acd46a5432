//! Helpers of cargo-chimod's integration tests, which run the real binary and
//! build what it scaffolds.
//!
//! * [`Scratch`]: a directory under the system's temp dir, outside this
//!   workspace (a scaffolded repository must build on its own), removed at the
//!   end unless the test failed.
//! * [`chimod`]: runs `cargo chimod …`.
//! * [`Cargo`]: runs cargo in a scaffolded repository with the target
//!   directory of this workspace (so the dependencies this workspace already
//!   built are reused: a scaffolded repository then compiles only its own
//!   crates, chi-sdk and the macros) and `CHI_RUNTIME_BIN` pointing at this
//!   workspace's `chi-runtime`; a scaffolded repository finds this
//!   workspace's chi-sdk through the `.cargo/config.toml` that `cargo chimod
//!   new` (run from this checkout) or `cargo chimod link` writes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// This workspace's root.
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cargo-chimod is in the workspace")
}

/// The directory cargo put this test in: `<target>/<profile>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("tests run from <target>/<profile>/deps")
        .to_owned()
}

/// This workspace's target directory and the profile flags of this test build.
fn target() -> (PathBuf, Vec<&'static str>) {
    let profile = profile_dir();
    let target = profile.parent().expect("<target>").to_owned();
    let flags = match profile.file_name().and_then(|n| n.to_str()) {
        Some("release") => vec!["--release"],
        _ => vec![],
    };
    (target, flags)
}

/// A directory removed on drop, unless the thread is panicking (then its
/// path is printed, to look at what was scaffolded).
#[derive(Debug)]
pub struct Scratch(PathBuf);

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Scratch {
    /// A fresh directory for `test`.
    pub fn new(test: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("chimod-it-{}-{n}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        assert!(
            !dir.starts_with(workspace()),
            "the scratch directory must be outside the workspace"
        );
        Scratch(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scratch directory kept: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The outcome of a command.
#[derive(Debug)]
pub struct Run {
    /// What ran.
    pub what: String,
    /// Its output.
    pub out: Output,
}

impl Run {
    /// Standard output.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    /// Standard error.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// Fails unless it succeeded; returns its standard output.
    pub fn ok(&self) -> String {
        assert!(
            self.out.status.success(),
            "{} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.out.status,
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Fails unless it failed; returns its standard error.
    pub fn fails(&self) -> String {
        assert!(
            !self.out.status.success(),
            "{} succeeded but should have failed:\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.stdout(),
            self.stderr()
        );
        self.stderr()
    }
}

/// Runs `cargo chimod <args>` in `dir`, as cargo does (`cargo-chimod chimod …`),
/// with this workspace's target directory (for `install`, which builds).
pub fn chimod(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_cargo-chimod"))
        .arg("chimod")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target().0)
        .env_remove("CHI_MODULE_PATH")
        .output()
        .expect("run cargo-chimod");
    Run {
        what: format!("cargo chimod {} (in {})", args.join(" "), dir.display()),
        out,
    }
}

/// The `chi-runtime` of this workspace, built on first use (a no-op when the
/// workspace is built already, as under `cargo nextest run --workspace`).
pub fn runtime_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let (target, flags) = target();
        let out = Command::new(env!("CARGO"))
            .current_dir(workspace())
            .args([
                "build",
                "--quiet",
                "-p",
                "chi-runtime",
                "--bin",
                "chi-runtime",
            ])
            .args(&flags)
            .arg("--target-dir")
            .arg(&target)
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build -p chi-runtime failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = profile_dir().join("chi-runtime");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// Cargo in a scaffolded repository (see the module doc).
pub fn cargo(dir: &Path, args: &[&str]) -> Run {
    cargo_env(dir, args, &[])
}

/// [`cargo`] with more environment variables.
pub fn cargo_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Run {
    let mut all = vec![("CHI_RUNTIME_BIN", runtime_bin())];
    all.extend_from_slice(env);
    cargo_with(dir, args, &all)
}

/// [`cargo`] without `CHI_RUNTIME_BIN`: the tests then take the runtime from
/// the repository's `.cargo/config.toml`, or `PATH`.
pub fn cargo_no_runtime_env(dir: &Path, args: &[&str]) -> Run {
    cargo_with(dir, args, &[])
}

fn cargo_with(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Run {
    let (target, flags) = target();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(dir)
        .args(args)
        .args(&flags)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("CHI_RUNTIME_BIN")
        .env_remove("CHI_MODULE_PATH")
        .env_remove("CHI_TEST_MODULE_DIR")
        .env_remove("CHI_SERVER_CONF")
        .env_remove("CHI_PORT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run cargo");
    Run {
        what: format!("cargo {} (in {})", args.join(" "), dir.display()),
        out,
    }
}

/// Where cargo builds the libraries of scaffolded repositories (beside
/// their tests): `<target>/<profile>/deps`. Repositories share it, so each test
/// names its modules differently.
pub fn deps_dir() -> PathBuf {
    profile_dir().join("deps")
}

/// Runs `program args` in `dir` and fails unless it succeeds; returns its
/// standard output.
pub fn run_ok(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Run {
        what: format!("{program} {} (in {})", args.join(" "), dir.display()),
        out,
    }
    .ok()
}

/// Gives a scaffolded repository this workspace's `Cargo.lock`: cargo keeps
/// the versions of the packages it still uses, so the build reuses the
/// dependencies this workspace compiled instead of resolving newer ones.
pub fn pin_dependencies(repo: &Path) {
    std::fs::copy(workspace().join("Cargo.lock"), repo.join("Cargo.lock"))
        .expect("copy Cargo.lock");
}

/// Every file under `dir` (build output and hidden files left out) with its
/// content, sorted: a snapshot to compare.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" || name == "Cargo.lock" {
                continue;
            }
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push((p.clone(), std::fs::read_to_string(&p).unwrap_or_default()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Reads a file.
pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Writes a file.
pub fn write(p: &Path, text: &str) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("create_dir_all");
    }
    std::fs::write(p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// Appends to a file.
pub fn append(p: &Path, text: &str) {
    let mut t = read(p);
    t.push_str(text);
    write(p, &t);
}
