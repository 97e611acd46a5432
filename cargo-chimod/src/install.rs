//! `cargo chimod install`: build the repository's module libraries and copy
//! them to a directory the runtime searches.
//!
//! The runtime loads `lib{namespace}_{module}_runtime.so` when a pool of the
//! module is created, searching the `module_path` directories of its
//! configuration, then the colon-separated directories of `CHI_MODULE_PATH`.
//! A library is installed by copying it beside the destination and renaming it
//! into place, so a runtime that has the previous copy loaded keeps a valid
//! mapping (overwriting a loaded library in place would corrupt it).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::check::check_repo;
use crate::cli::InstallArgs;
use crate::repo::Repo;

/// Runs `cargo chimod install`.
pub fn run(repo: &Repo, args: &InstallArgs) -> Result<()> {
    let dest = match &args.dest {
        Some(d) => d.clone(),
        None => match first_module_path() {
            Some(d) => d,
            None => bail!(
                "no destination: pass --dest <dir>, a directory listed in the runtime's \
                 `module_path` (its configuration file) or in CHI_MODULE_PATH; or set \
                 CHI_MODULE_PATH, whose first directory is then the default"
            ),
        },
    };
    let checked = check_repo(&repo.root)?;
    if !checked.problems.is_empty() {
        bail!(
            "the repository has problems; fix them first (`cargo chimod refresh` lists them \
             too):\n  {}",
            checked.problems.join("\n  ")
        );
    }
    let mut modules = checked.modules;
    if let Some(name) = &args.module {
        modules.retain(|m| &m.name == name);
        if modules.is_empty() {
            bail!(
                "no module `{name}` in {}: its modules are those listed in chimaera_repo.yaml",
                repo.root.display()
            );
        }
    }
    if modules.is_empty() {
        bail!(
            "{} has no modules to install: add one with `cargo chimod new --module <name>`",
            repo.root.display()
        );
    }
    let mut packages = Vec::new();
    for m in &modules {
        packages.push(package_name(&m.dir)?);
    }

    // Build.
    let manifest = repo.root.join("Cargo.toml");
    // From the repository, so cargo reads its .cargo/config.toml (the chi-sdk
    // patch of `cargo chimod link`) wherever install runs.
    let mut cmd = cargo();
    cmd.current_dir(&repo.root)
        .arg("build")
        .arg("--lib")
        .arg("--manifest-path")
        .arg(&manifest);
    for p in &packages {
        cmd.arg("-p").arg(p);
    }
    if args.release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .context("cannot run cargo build (is cargo on PATH?)")?;
    if !status.success() {
        bail!("cargo build failed ({status}); fix the build, then install again");
    }
    let out_dir = target_dir(&manifest)?.join(if args.release { "release" } else { "debug" });

    // Copy.
    std::fs::create_dir_all(&dest)
        .with_context(|| format!("cannot create the destination {}", dest.display()))?;
    for m in &modules {
        let file = format!("lib{}_runtime.so", m.lib_name);
        let from = out_dir.join(&file);
        if !from.is_file() {
            bail!(
                "{} was not built: check that {}/Cargo.toml has `crate-type = [\"cdylib\", \"rlib\"]` \
                 under [lib]",
                from.display(),
                m.dir.display()
            );
        }
        let to = dest.join(&file);
        install_file(&from, &to)?;
        println!("installed {} -> {}", from.display(), to.display());
    }
    println!(
        "a runtime finds these libraries if {} is in the `module_path` of its configuration or in \
         its CHI_MODULE_PATH (e.g. CHI_MODULE_PATH={} chi-runtime start)",
        dest.display(),
        dest.display()
    );
    Ok(())
}

/// The first directory of `CHI_MODULE_PATH`, if set.
fn first_module_path() -> Option<PathBuf> {
    let v = std::env::var_os("CHI_MODULE_PATH")?;
    std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty())
}

/// `cargo`, the one that runs this sub-command if any.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The package name in `dir/Cargo.toml`.
fn package_name(dir: &Path) -> Result<String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("cannot parse {}", manifest.display()))?;
    doc.get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no [package] name", manifest.display()))
}

/// The target directory of the workspace of `manifest`, as cargo resolves it
/// (`CARGO_TARGET_DIR`, `.cargo/config.toml`, or `target/`).
fn target_dir(manifest: &Path) -> Result<PathBuf> {
    let out = cargo()
        .current_dir(manifest.parent().unwrap_or(Path::new(".")))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cannot read cargo metadata's output")?;
    v.get("target_directory")
        .and_then(|t| t.as_str())
        .map(PathBuf::from)
        .context("cargo metadata did not name the target directory")
}

/// Copies `from` to a temporary name beside `to`, then renames it over `to`.
fn install_file(from: &Path, to: &Path) -> Result<()> {
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = to.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::copy(from, &tmp)
        .with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot move {} to {}", tmp.display(), to.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_replaces_by_rename() {
        let d = std::env::temp_dir().join(format!("chimod-install-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let from = d.join("a.so");
        let to = d.join("b.so");
        std::fs::write(&from, "new").unwrap();
        std::fs::write(&to, "old").unwrap();
        let old = std::fs::File::open(&to).unwrap();
        install_file(&from, &to).unwrap();
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "new");
        // The open (think: mapped) old file still reads its old content.
        let mut s = String::new();
        std::io::Read::read_to_string(&mut &old, &mut s).unwrap();
        assert_eq!(s, "old");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
