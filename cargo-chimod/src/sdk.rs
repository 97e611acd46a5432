//! Which chi-sdk a new repository depends on.
//!
//! The rule: `--sdk-path P` or `--sdk-version V` if given; otherwise, when this
//! `cargo-chimod` was built from a checkout of the Chimaera sources that still
//! holds `chi-sdk/Cargo.toml`, that checkout's chi-sdk by path (the module then
//! builds against exactly the SDK of the runtime built there, which the
//! runtime's ABI check requires); otherwise the chi-sdk version equal to
//! cargo-chimod's own, from the registry.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// How a repository depends on chi-sdk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkDep {
    /// `chi-sdk = { path = "…" }`: the directory of chi-sdk's `Cargo.toml`.
    Path(PathBuf),
    /// `chi-sdk = "…"`.
    Version(String),
}

impl SdkDep {
    /// Applies the rule of the module doc to the command-line flags.
    pub fn choose(path: Option<&Path>, version: Option<&str>) -> Result<SdkDep> {
        match (path, version) {
            (Some(_), Some(_)) => bail!("give --sdk-path or --sdk-version, not both"),
            (Some(p), None) => Ok(SdkDep::Path(sdk_dir(p)?)),
            (None, Some(v)) => {
                if v.trim().is_empty() {
                    bail!(
                        "--sdk-version is empty: give a version such as {}",
                        own_version()
                    );
                }
                Ok(SdkDep::Version(v.trim().to_owned()))
            }
            (None, None) => Ok(match checkout_sdk() {
                Some(dir) => SdkDep::Path(dir),
                None => SdkDep::Version(own_version().to_owned()),
            }),
        }
    }

    /// The value of `chi-sdk = …` in a `Cargo.toml`.
    pub fn toml_value(&self) -> String {
        match self {
            SdkDep::Path(p) => {
                let mut t = toml_edit::InlineTable::new();
                t.insert("path", p.display().to_string().into());
                t.to_string()
            }
            SdkDep::Version(v) => toml_edit::Value::from(v.as_str()).to_string(),
        }
    }

    /// One line saying what was chosen, for the user.
    pub fn describe(&self) -> String {
        match self {
            SdkDep::Path(p) => format!("chi-sdk by path: {}", p.display()),
            SdkDep::Version(v) => format!("chi-sdk version {v} (from the registry)"),
        }
    }

    /// The source checkout the SDK comes from, when it is a path inside one
    /// (its parent holds `chi-runtime/Cargo.toml`).
    pub fn checkout(&self) -> Option<PathBuf> {
        match self {
            SdkDep::Path(p) => {
                let root = p.parent()?;
                root.join("chi-runtime/Cargo.toml")
                    .is_file()
                    .then(|| root.to_owned())
            }
            SdkDep::Version(_) => None,
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

/// Whether `dir/Cargo.toml` is chi-sdk's manifest.
fn is_sdk_dir(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|t| {
        t.parse::<toml_edit::DocumentMut>().is_ok_and(|d| {
            d.get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                == Some("chi-sdk")
        })
    })
}

/// The chi-sdk directory `p` names: chi-sdk itself, or a checkout holding
/// `chi-sdk/`. Absolute, so the repository can be moved.
fn sdk_dir(p: &Path) -> Result<PathBuf> {
    let abs = p
        .canonicalize()
        .with_context(|| format!("--sdk-path {}: no such directory", p.display()))?;
    if is_sdk_dir(&abs) {
        return Ok(abs);
    }
    if is_sdk_dir(&abs.join("chi-sdk")) {
        return Ok(abs.join("chi-sdk"));
    }
    bail!(
        "--sdk-path {}: neither it nor its chi-sdk/ subdirectory holds chi-sdk's Cargo.toml; \
         give the chi-sdk directory of a Chimaera checkout",
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
            SdkDep::Version("1.2.3".into())
        );
        let e = SdkDep::choose(Some(Path::new("/nonexistent/x")), None).unwrap_err();
        assert!(e.to_string().contains("no such directory"), "{e}");
        let e = SdkDep::choose(Some(Path::new("/")), None).unwrap_err();
        assert!(e.to_string().contains("chi-sdk's Cargo.toml"), "{e}");
    }

    #[test]
    fn this_checkout_is_used_by_path() {
        // These tests run from a checkout: the default is its chi-sdk.
        let dep = SdkDep::choose(None, None).unwrap();
        let SdkDep::Path(p) = &dep else {
            panic!("{dep:?}")
        };
        assert!(p.ends_with("chi-sdk"), "{}", p.display());
        assert!(dep.checkout().is_some());
        assert_eq!(
            SdkDep::choose(Some(p.parent().unwrap()), None).unwrap(),
            dep
        );
    }

    #[test]
    fn toml_values() {
        assert_eq!(SdkDep::Version("0.1.0".into()).toml_value(), "\"0.1.0\"");
        // Any path survives the round trip through TOML.
        let odd = "/a/b \"c\" 'd'";
        let v = SdkDep::Path(odd.into()).toml_value();
        let doc: toml_edit::DocumentMut = format!("x = {v}").parse().unwrap();
        assert_eq!(doc["x"]["path"].as_str(), Some(odd));
    }
}
