//! `cargo chimod link`: point a repository (typically a fresh clone) at a
//! Chimaera checkout, in its local `.cargo/config.toml`:
//!
//! ```toml
//! [patch.crates-io]
//! chi-sdk = { path = "/src/chimaera/chi-sdk" }
//!
//! [env]
//! CHI_RUNTIME_BIN = "/src/chimaera/target/debug/chi-runtime"
//! ```
//!
//! The committed `Cargo.toml` names chi-sdk by version only (see
//! [`crate::sdk`]); this file, which the generated `.gitignore` leaves out,
//! holds what differs from one machine to the next. Cargo applies the patch to
//! every build of the repository, and sets `CHI_RUNTIME_BIN` for the tests it
//! runs unless the environment sets it already. `CHI_RUNTIME_BIN` is written
//! for `--runtime-bin`, or for the checkout's `target/debug/chi-runtime` if it
//! is built; otherwise the tests look for `chi-runtime` on `PATH`. Other
//! content of the file is kept.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cli::LinkArgs;
use crate::repo::Repo;
use crate::sdk::{SdkDep, checkout_sdk, sdk_dir};

/// The local cargo configuration, relative to the repository root.
pub const LOCAL_CONFIG: &str = ".cargo/config.toml";

/// Runs `cargo chimod link`.
pub fn run(repo: &Repo, args: &LinkArgs) -> Result<()> {
    let sdk = match &args.checkout {
        Some(p) => sdk_dir(p, "the checkout")?,
        None => checkout_sdk().context(
            "which Chimaera checkout? give its directory: `cargo chimod link <checkout>` (this \
             cargo-chimod was not built from a checkout that still exists)",
        )?,
    };
    let dep = SdkDep::local(&sdk)?;
    let wanted = committed_version(&repo.root)?;
    if let Some(v) = &wanted
        && !version_matches(v, &dep.version)
    {
        bail!(
            "the repository depends on chi-sdk {v} (Cargo.toml), but {} is chi-sdk {}: link a \
             checkout of that version, or change the version in Cargo.toml",
            sdk.display(),
            dep.version
        );
    }
    let bin = match &args.runtime_bin {
        Some(b) => Some(
            std::path::absolute(b).with_context(|| format!("cannot resolve {}", b.display()))?,
        ),
        None => default_runtime_bin(&sdk),
    };
    let path = write(&repo.root, &sdk, bin.as_deref())?;
    println!(
        "linked {} to chi-sdk {} in {} (in {}, which git ignores)",
        repo.root.display(),
        dep.version,
        sdk.display(),
        path.display()
    );
    let checkout = sdk.parent().unwrap_or(&sdk).display();
    match &bin {
        Some(b) if b.is_file() => println!("  the tests run {} (CHI_RUNTIME_BIN)", b.display()),
        Some(b) => println!(
            "  the tests run {} (CHI_RUNTIME_BIN), which does not exist yet: build it",
            b.display()
        ),
        None => println!(
            "  {checkout}/target/debug/chi-runtime is not built, so the tests look for chi-runtime \
             on PATH; or run `cargo build -p chi-runtime` in {checkout} and link again"
        ),
    }
    Ok(())
}

/// `<checkout>/target/debug/chi-runtime` for the chi-sdk directory `sdk`, if
/// it is built (else the tests look for `chi-runtime` on `PATH`, as without a
/// link).
pub fn default_runtime_bin(sdk: &Path) -> Option<PathBuf> {
    let bin = sdk.parent()?.join("target/debug/chi-runtime");
    bin.is_file().then_some(bin)
}

/// Sets the chi-sdk patch and `CHI_RUNTIME_BIN` (removed when `runtime_bin`
/// is `None`) in the local configuration of the repository at `root`; returns
/// the file.
pub fn write(root: &Path, sdk: &Path, runtime_bin: Option<&Path>) -> Result<PathBuf> {
    let path = root.join(LOCAL_CONFIG);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let out = edit(&text, sdk, runtime_bin).with_context(|| {
        format!(
            "cannot update {}: fix its TOML, or remove it and link again",
            path.display()
        )
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// `text` (a cargo configuration) with the patch and the variable set.
fn edit(text: &str, sdk: &Path, runtime_bin: Option<&Path>) -> Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse()?;
    if text.trim().is_empty() {
        doc.decor_mut().set_prefix(
            "# Local to this clone (not committed): where the Chimaera checkout is.\n# Written by \
             `cargo chimod link <checkout>`.\n",
        );
    }
    let mut dep = toml_edit::InlineTable::new();
    dep.insert("path", sdk.display().to_string().into());
    let patch = table(doc.as_table_mut(), "patch")?;
    patch.set_implicit(true);
    let crates_io = table(patch, "crates-io")?;
    crates_io.insert("chi-sdk", toml_edit::value(dep));
    match runtime_bin {
        Some(bin) => {
            let env = table(doc.as_table_mut(), "env")?;
            env.insert(
                "CHI_RUNTIME_BIN",
                toml_edit::value(bin.display().to_string()),
            );
        }
        None => {
            let env = doc.get_mut("env").and_then(|e| e.as_table_mut());
            if let Some(env) = env {
                env.remove("CHI_RUNTIME_BIN");
                if env.is_empty() {
                    doc.remove("env");
                }
            }
        }
    }
    Ok(doc.to_string())
}

fn table<'a>(t: &'a mut toml_edit::Table, key: &str) -> Result<&'a mut toml_edit::Table> {
    t.entry(key)
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_mut()
        .with_context(|| format!("`{key}` is not a table"))
}

/// The chi-sdk version the committed `Cargo.toml` asks for, if it names one.
fn committed_version(root: &Path) -> Result<Option<String>> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("cannot parse {}", path.display()))?;
    let Some(dep) = doc
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(|d| d.get("chi-sdk"))
    else {
        return Ok(None);
    };
    if dep.get("path").is_some() {
        bail!(
            "{} depends on chi-sdk by path: a committed repository names it by version (e.g. \
             `chi-sdk = \"{}\"` under [workspace.dependencies]), and `cargo chimod link` supplies \
             the checkout; change it, then link again",
            path.display(),
            crate::sdk::own_version()
        );
    }
    Ok(dep
        .as_str()
        .or_else(|| dep.get("version").and_then(|v| v.as_str()))
        .map(str::to_owned))
}

/// Whether version `have` meets the caret requirement `want` (`"0.1"`,
/// `"0.1.0"`, `"^0.1"`): the same leftmost non-zero part, and not older.
fn version_matches(want: &str, have: &str) -> bool {
    let parse = |s: &str| -> Option<Vec<u64>> {
        s.trim()
            .trim_start_matches('^')
            .split(['-', '+'])
            .next()?
            .split('.')
            .map(|p| p.parse().ok())
            .collect()
    };
    let (Some(w), Some(h)) = (parse(want), parse(have)) else {
        // Requirements other than plain versions are cargo's to judge.
        return true;
    };
    let h3 = |i: usize| h.get(i).copied().unwrap_or(0);
    let first = w.iter().position(|&p| p != 0).unwrap_or(w.len() - 1);
    (0..=first).all(|i| w.get(i).copied().unwrap_or(0) == h3(i))
        && (0..w.len()).map(h3).collect::<Vec<_>>() >= w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_keeps_what_was_there() {
        let out = edit(
            "# mine\n[build]\njobs = 2\n",
            Path::new("/c/chi-sdk"),
            Some(Path::new("/c/bin")),
        )
        .unwrap();
        assert!(out.starts_with("# mine\n[build]\njobs = 2\n"), "{out}");
        let doc: toml_edit::DocumentMut = out.parse().unwrap();
        assert_eq!(
            doc["patch"]["crates-io"]["chi-sdk"]["path"].as_str(),
            Some("/c/chi-sdk")
        );
        assert_eq!(doc["env"]["CHI_RUNTIME_BIN"].as_str(), Some("/c/bin"));
        // Linking again replaces, and does not duplicate.
        let again = edit(&out, Path::new("/d/chi-sdk"), Some(Path::new("/d/bin"))).unwrap();
        assert_eq!(again.matches("chi-sdk =").count(), 1, "{again}");
        assert!(again.contains("/d/chi-sdk") && !again.contains("/c/chi-sdk"));
        // Without a runtime, the one of the previous checkout goes.
        let none = edit(&again, Path::new("/e/chi-sdk"), None).unwrap();
        assert!(
            !none.contains("CHI_RUNTIME_BIN") && !none.contains("[env]"),
            "{none}"
        );
        assert!(none.starts_with("# mine\n[build]\njobs = 2\n"), "{none}");
        assert!(
            edit("", Path::new("/s"), None)
                .unwrap()
                .starts_with("# Local")
        );
    }

    #[test]
    fn caret_versions() {
        assert!(version_matches("0.1.0", "0.1.0"));
        assert!(version_matches("0.1", "0.1.7"));
        assert!(!version_matches("0.1.0", "0.2.0"));
        assert!(!version_matches("0.1.3", "0.1.2"));
        assert!(version_matches("1.2", "1.9.0"));
        assert!(!version_matches("1.2", "2.0.0"));
        assert!(version_matches(">=0.1, <2", "5.0.0"));
    }
}
