//! Checking a whole repository: every `chimaera_repo.yaml` and
//! `chimaera_mod.yaml` under its root (build output and hidden directories
//! left out), each module against the rules of
//! [`chi_macros_backend::check`], the module lists against the module
//! directories, and each module crate's library against the file the runtime
//! looks for: its name, and `"cdylib"` among its crate types (without it cargo
//! builds no shared library, and a copy left from an earlier build would be
//! loaded or installed instead).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use chi_macros_backend::check::{CheckedModule, check_module_file};
use chi_macros_backend::names::is_identifier;
use chi_macros_backend::yaml::{MOD_YAML, REPO_YAML};

use crate::repo::parse_repo_yaml;

/// A module that passed the checks.
#[derive(Debug, Clone)]
pub struct Module {
    /// The module's directory (its crate, holding `chimaera_mod.yaml`).
    pub dir: PathBuf,
    /// Its checked YAML.
    pub checked: CheckedModule,
    /// `module_name`.
    pub name: String,
    /// `{namespace}_{module_name}`.
    pub lib_name: String,
}

/// The outcome of [`check_repo`].
#[derive(Debug, Clone, Default)]
pub struct RepoCheck {
    /// Modules without problems, by directory.
    pub modules: Vec<Module>,
    /// Every problem found, one message each.
    pub problems: Vec<String>,
}

/// Checks every YAML file under `root`.
pub fn check_repo(root: &Path) -> Result<RepoCheck> {
    let mut repo_yamls = Vec::new();
    let mut mod_yamls = Vec::new();
    walk(root, &mut repo_yamls, &mut mod_yamls)?;
    repo_yamls.sort();
    mod_yamls.sort();
    let mut out = RepoCheck::default();

    // The repositories and their module lists.
    let mut listed: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for path in &repo_yamls {
        let text = std::fs::read_to_string(path)?;
        let repo = match parse_repo_yaml(path, &text) {
            Ok(r) => r,
            Err(e) => {
                out.problems.push(format!("{e:#}"));
                continue;
            }
        };
        match &repo.namespace {
            None => out.problems.push(format!(
                "{}: no `namespace`: add e.g. `namespace: chimaera` (the prefix of the modules' \
                 library names)",
                path.display()
            )),
            Some(ns) if !is_identifier(ns) => out.problems.push(format!(
                "{}: namespace `{ns}` is not a Rust identifier (letters, digits and `_`, not \
                 starting with a digit)",
                path.display()
            )),
            Some(_) => {}
        }
        let dir = path.parent().unwrap_or(root);
        let mut seen = Vec::new();
        for m in &repo.modules {
            if seen.contains(m) {
                out.problems.push(format!(
                    "{}: `{m}` is listed twice in `modules:`; remove one",
                    path.display()
                ));
                continue;
            }
            seen.push(m.clone());
            if !dir.join(m).join(MOD_YAML).is_file() {
                out.problems.push(format!(
                    "{}: `modules:` lists `{m}`, but {} does not exist: remove it from the list, or \
                     create the module with `cargo chimod new --module {m}`",
                    path.display(),
                    dir.join(m).join(MOD_YAML).display()
                ));
            }
        }
        listed.insert(dir.to_owned(), seen);
    }

    // The modules.
    let mut by_lib: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in &mod_yamls {
        // The rules `#[chimod]` applies too: a module that passes builds.
        let checked = match check_module_file(path) {
            Ok(c) => c,
            Err(e) => {
                out.problems.push(e.to_string());
                continue;
            }
        };
        let dir = path.parent().unwrap_or(root).to_owned();
        let mut problems: Vec<String> = checked.problems.iter().map(ToString::to_string).collect();
        if let Some(rp) = &checked.repo_path {
            let repo_dir = rp.parent().unwrap_or(root);
            let rel = dir
                .strip_prefix(repo_dir)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !listed.get(repo_dir).is_some_and(|l| l.contains(&rel)) {
                problems.push(format!(
                    "{}: the module directory `{rel}` is not in the `modules:` list of {}: add \
                     `  - {rel}` to it",
                    path.display(),
                    rp.display()
                ));
            }
        }
        let lib_name = checked.lib_name();
        if let Some(lib) = &lib_name {
            if let Some(other) = by_lib.insert(lib.clone(), path.clone()) {
                problems.push(format!(
                    "{} and {} are both module `{lib}`: give one another module_name",
                    other.display(),
                    path.display()
                ));
            }
            problems.extend(lib_name_problem(&dir, lib));
            problems.extend(crate_type_problem(&dir, lib));
        }
        if !problems.is_empty() {
            out.problems.extend(problems);
            continue;
        }
        let (Some(name), Some(lib_name)) = (checked.module_name.clone(), lib_name) else {
            continue;
        };
        out.modules.push(Module {
            dir,
            checked,
            name,
            lib_name,
        });
    }
    Ok(out)
}

/// A problem if the crate in `dir` builds a library other than
/// `lib{lib}_runtime.so`.
fn lib_name_problem(dir: &Path, lib: &str) -> Option<String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).ok()?;
    let doc: toml_edit::DocumentMut = text.parse().ok()?;
    let want = format!("{lib}_runtime");
    let name = doc
        .get("lib")
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .or_else(|| {
            doc.get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                .map(|n| n.replace('-', "_"))
        })?;
    (name != want).then(|| {
        format!(
            "{}: the library is named `{name}`, but the runtime loads module `{lib}` from \
             lib{want}.so: set `name = \"{want}\"` under [lib]",
            manifest.display()
        )
    })
}

/// A problem if the crate in `dir` does not build a shared library.
fn crate_type_problem(dir: &Path, lib: &str) -> Option<String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).ok()?;
    let doc: toml_edit::DocumentMut = text.parse().ok()?;
    let types = doc.get("lib").and_then(|l| l.get("crate-type"));
    let cdylib = types
        .and_then(|t| t.as_array())
        .is_some_and(|a| a.iter().any(|v| v.as_str() == Some("cdylib")));
    (!cdylib).then(|| {
        format!(
            "{}: [lib] crate-type does not list \"cdylib\", so cargo builds no \
             lib{lib}_runtime.so for the runtime to load: set crate-type = [\"cdylib\", \"rlib\"] \
             under [lib]",
            manifest.display()
        )
    })
}

/// Collects the YAML files under `dir`, skipping hidden directories and build
/// output (`target`, or any directory holding a `CACHEDIR.TAG`).
fn walk(dir: &Path, repos: &mut Vec<PathBuf>, mods: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?;
    for e in entries {
        let e = e?;
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if e.file_type()?.is_dir() {
            if name.starts_with('.') || name == "target" || p.join("CACHEDIR.TAG").exists() {
                continue;
            }
            walk(&p, repos, mods)?;
        } else if name == REPO_YAML {
            repos.push(p);
        } else if name == MOD_YAML {
            mods.push(p);
        }
    }
    Ok(())
}
