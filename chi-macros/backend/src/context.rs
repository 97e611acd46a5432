//! Where a macro is expanded, and which YAML file follows from it.
//!
//! A proc macro learns its crate's directory (`CARGO_MANIFEST_DIR`) and the
//! source file of its call from its environment; [`Context`] holds both so
//! tests can set them. Every macro of this crate finds its module's
//! `chimaera_mod.yaml` the same way ([`yaml_path`]), explains a missing file
//! the same way ([`load_error`]) and lets Cargo see the file the same way
//! ([`include_yaml`]).

use std::path::{Component, Path, PathBuf};

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::LitStr;

use crate::yaml::{MOD_YAML, YamlError};

/// Where the macro is expanded: the inputs a proc macro gets from its
/// environment, passed explicitly so that tests can set them.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `CARGO_MANIFEST_DIR` of the crate being compiled: `chimaera_mod.yaml` is
    /// looked up there.
    pub manifest_dir: Option<PathBuf>,
    /// The source file holding the attribute, absolute: `yaml = "…"` is relative
    /// to its directory.
    pub source_file: Option<PathBuf>,
}

impl Context {
    /// The context of the current process: `CARGO_MANIFEST_DIR` from the
    /// environment, no source file.
    pub fn from_env() -> Self {
        Context {
            manifest_dir: std::env::var_os("CARGO_MANIFEST_DIR").map(Into::into),
            source_file: None,
        }
    }
}

/// The YAML's path: `yaml = "…"` against the source file's directory, else
/// `chimaera_mod.yaml` in the manifest directory; without `.` and `..`.
pub(crate) fn yaml_path(arg: Option<&LitStr>, ctx: &Context) -> syn::Result<PathBuf> {
    let path = match arg {
        Some(lit) => {
            let rel = PathBuf::from(lit.value());
            if rel.is_absolute() {
                rel
            } else {
                let base = ctx
                    .source_file
                    .as_ref()
                    .and_then(|f| f.parent())
                    .or(ctx.manifest_dir.as_deref());
                match base {
                    Some(b) => b.join(rel),
                    None => {
                        return Err(syn::Error::new(
                            lit.span(),
                            "cannot tell which directory `yaml = \"…\"` is relative to (neither \
                             the source file nor CARGO_MANIFEST_DIR is known); give an absolute \
                             path",
                        ));
                    }
                }
            }
        }
        None => match &ctx.manifest_dir {
            Some(dir) => dir.join(MOD_YAML),
            None => {
                return Err(syn::Error::new(
                    Span::call_site(),
                    "CARGO_MANIFEST_DIR is not set, so chimaera_mod.yaml cannot be found: build \
                     with cargo, or name the file with `yaml = \"…\"`",
                ));
            }
        },
    };
    Ok(normalize(&path))
}

/// `path` without `.` and `..` components (lexically: messages show the path the
/// author means, and `include_bytes!` gets the same file).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The compile error for a module YAML that could not be read, at the
/// `yaml = "…"` argument (or the call site). `uses` says what the macro reads
/// the file for (`#[task] checks method ids against it`).
pub(crate) fn load_error(e: &YamlError, arg: Option<&LitStr>, uses: &str) -> syn::Error {
    let span = arg.map_or(Span::call_site(), LitStr::span);
    match e {
        YamlError::Io { path, error } if error.kind() == std::io::ErrorKind::NotFound => {
            let how = match arg {
                Some(_) => "check the `yaml = \"…\"` path (it is relative to this source file)",
                None => {
                    "every module crate has one beside its Cargo.toml (`cargo chimod new` writes \
                     it); or name another file with `yaml = \"…\"`, relative to this source file"
                }
            };
            syn::Error::new(span, format!("{} not found: {uses}; {how}", path.display()))
        }
        other => syn::Error::new(span, other.to_string()),
    }
}

/// `const _: &[u8] = include_bytes!("<path>");`: an item that makes Cargo
/// rebuild the crate when the YAML at `path` changes.
pub(crate) fn include_yaml(path: &Path) -> TokenStream {
    let lit = LitStr::new(&path.display().to_string(), Span::call_site());
    quote!(
        const _: &[u8] = include_bytes!(#lit);
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_dots() {
        assert_eq!(
            normalize(Path::new("/a/b/./../c/x.yaml")),
            PathBuf::from("/a/c/x.yaml")
        );
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
    }

    #[test]
    fn the_yaml_is_relative_to_the_source_file() {
        let ctx = Context {
            manifest_dir: Some("/crate".into()),
            source_file: Some("/crate/src/lib.rs".into()),
        };
        let lit = LitStr::new("../m.yaml", Span::call_site());
        assert_eq!(
            yaml_path(Some(&lit), &ctx).unwrap(),
            PathBuf::from("/crate/m.yaml")
        );
        assert_eq!(
            yaml_path(None, &ctx).unwrap(),
            PathBuf::from("/crate/chimaera_mod.yaml")
        );
        assert!(yaml_path(None, &Context::default()).is_err());
    }
}
