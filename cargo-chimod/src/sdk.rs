//! Which chi-sdk a repository depends on, and how a clone finds it.
//!
//! A repository is meant to be committed and cloned by a team, so its
//! committed files name no directory of the machine that made it. The design:
//!
//! * the committed workspace `Cargo.toml` depends on chi-sdk **by version**
//!   (`chi-sdk = "0.1.0"`), which is all a clone needs once that chi-sdk is in
//!   the registry;
//! * a Chimaera checkout is used through the repository's **local**
//!   `.cargo/config.toml`, which the generated `.gitignore` leaves out: a
//!   `[patch.crates-io]` entry replaces chi-sdk by the checkout's, and
//!   `[env] CHI_RUNTIME_BIN` names the checkout's `chi-runtime` for the tests
//!   when it is built (an environment variable of the same name still wins). `cargo chimod new`
//!   writes it when it knows a checkout, and `cargo chimod link <checkout>`
//!   writes it in a clone (see [`crate::link`]).
//!
//! The rule of `new`: `--sdk-path P` (a checkout, or its `chi-sdk/`) gives P's
//! chi-sdk version and a link to P; `--sdk-version V` gives V and no link;
//! otherwise, when this `cargo-chimod` was built from a checkout that still
//! holds `chi-sdk/Cargo.toml`, that checkout (a module must be built with the
//! chi-sdk of the runtime that loads it, which the runtime checks); otherwise
//! the chi-sdk version equal to cargo-chimod's own, and no link.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// How a new repository depends on chi-sdk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkDep {
    /// The version written to the committed `Cargo.toml`.
    pub version: String,
    /// The chi-sdk directory of a checkout the local `.cargo/config.toml`
    /// patches it to, if any.
    pub local: Option<PathBuf>,
}

impl SdkDep {
    /// Applies the rule of the module doc to the command-line flags.
    pub fn choose(path: Option<&Path>, version: Option<&str>) -> Result<SdkDep> {
        match (path, version) {
            (Some(_), Some(_)) => bail!("give --sdk-path or --sdk-version, not both"),
            (Some(p), None) => SdkDep::local(&sdk_dir(p, "--sdk-path")?),
            (None, Some(v)) => {
                if v.trim().is_empty() {
                    bail!(
                        "--sdk-version is empty: give a version such as {}",
                        own_version()
                    );
                }
                Ok(SdkDep {
                    version: v.trim().to_owned(),
                    local: None,
                })
            }
            (None, None) => match checkout_sdk() {
                Some(dir) => SdkDep::local(&dir),
                None => Ok(SdkDep {
                    version: own_version().to_owned(),
                    local: None,
                }),
            },
        }
    }

    /// The chi-sdk in directory `dir`, by its version, patched to `dir`.
    pub fn local(dir: &Path) -> Result<SdkDep> {
        Ok(SdkDep {
            version: sdk_version(dir)?,
            local: Some(dir.to_owned()),
        })
    }

    /// The value of `chi-sdk = …` in the committed `Cargo.toml`.
    pub fn toml_value(&self) -> String {
        toml_edit::Value::from(self.version.as_str()).to_string()
    }

    /// One line saying what was chosen, for the user.
    pub fn describe(&self) -> String {
        match &self.local {
            Some(p) => format!(
                "chi-sdk {} taken from {} through .cargo/config.toml, which is not committed",
                self.version,
                p.display()
            ),
            None => format!("chi-sdk {} from the registry", self.version),
        }
    }
}

/// cargo-chimod's version, which is chi-sdk's.
pub fn own_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// `chi-sdk/` of the checkout this binary was built from, if it still exists.
pub fn checkout_sdk() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .join("chi-sdk");
    is_sdk_dir(&dir).then(|| dir.canonicalize().unwrap_or(dir))
}

fn manifest(dir: &Path) -> Option<toml_edit::DocumentMut> {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .ok()?
        .parse()
        .ok()
}

/// Whether `dir/Cargo.toml` is chi-sdk's manifest.
fn is_sdk_dir(dir: &Path) -> bool {
    manifest(dir).is_some_and(|d| {
        d.get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            == Some("chi-sdk")
    })
}

/// The version of the chi-sdk in `dir` (its own, or its workspace's).
fn sdk_version(dir: &Path) -> Result<String> {
    let doc = manifest(dir).with_context(|| format!("cannot read {}/Cargo.toml", dir.display()))?;
    let v = doc.get("package").and_then(|p| p.get("version"));
    if let Some(v) = v.and_then(|v| v.as_str()) {
        return Ok(v.to_owned());
    }
    let ws = dir.parent().and_then(manifest).and_then(|d| {
        d.get("workspace")?
            .get("package")?
            .get("version")?
            .as_str()
            .map(str::to_owned)
    });
    ws.with_context(|| {
        format!(
            "cannot find the version of the chi-sdk in {} (neither its Cargo.toml nor its \
             workspace's names one)",
            dir.display()
        )
    })
}

/// The chi-sdk directory `p` names: chi-sdk itself, or a checkout holding
/// `chi-sdk/`. Absolute: it goes to the local `.cargo/config.toml` only.
/// `flag` names the argument in errors.
pub fn sdk_dir(p: &Path, flag: &str) -> Result<PathBuf> {
    let abs = p
        .canonicalize()
        .with_context(|| format!("{flag} {}: no such directory", p.display()))?;
    if is_sdk_dir(&abs) {
        return Ok(abs);
    }
    if is_sdk_dir(&abs.join("chi-sdk")) {
        return Ok(abs.join("chi-sdk"));
    }
    bail!(
        "{flag} {}: neither it nor its chi-sdk/ subdirectory holds chi-sdk's Cargo.toml; give a \
         Chimaera checkout (or its chi-sdk directory)",
        p.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_rule() {
        assert_eq!(
            SdkDep::choose(None, Some("1.2.3")).unwrap(),
            SdkDep {
                version: "1.2.3".into(),
                local: None
            }
        );
        let e = SdkDep::choose(Some(Path::new("/nonexistent/x")), None).unwrap_err();
        assert!(e.to_string().contains("no such directory"), "{e}");
        let e = SdkDep::choose(Some(Path::new("/")), None).unwrap_err();
        assert!(e.to_string().contains("chi-sdk's Cargo.toml"), "{e}");
    }

    #[test]
    fn this_checkout_is_linked_by_its_version() {
        // These tests run from a checkout: the default is its chi-sdk.
        let dep = SdkDep::choose(None, None).unwrap();
        let p = dep.local.clone().expect("a local chi-sdk");
        assert!(p.ends_with("chi-sdk"), "{}", p.display());
        assert_eq!(dep.version, own_version());
        assert_eq!(
            SdkDep::choose(Some(p.parent().unwrap()), None).unwrap(),
            dep
        );
        // The committed value is the version alone.
        assert_eq!(dep.toml_value(), format!("\"{}\"", own_version()));
    }
}
