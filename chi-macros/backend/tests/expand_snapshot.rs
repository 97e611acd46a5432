//! The expansion of one real `#[chimod]`, checked in: the container of
//! `examples/mod_name`, expanded by the backend, pretty-printed and compared
//! with `snapshots/mod_name_chimod.expanded.rs`. A reader sees there what the
//! macro generates (the `method` module, the C boundary, every dispatch), and
//! a change to the generated code shows in review as a change to that file.
//!
//! After an intended change, rewrite the file and read the diff:
//! `UPDATE_SNAPSHOTS=1 cargo test -p chi-macros-backend --test expand_snapshot`.
//! Absolute paths (the YAML files the expansion includes) are written from
//! `$WORKSPACE` (before pretty-printing, so that the line breaks do not
//! depend on the checkout's path), so the file is the same in every checkout.

use std::path::{Path, PathBuf};

use chi_macros_backend::Context;
use quote::ToTokens;

const SNAPSHOT: &str = "tests/snapshots/mod_name_chimod.expanded.rs";

/// The workspace root, without symbolic links or `..`.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// The `impl` block marked `#[chimod]` (or `#[chi_sdk::chimod]`) in `file`,
/// without that attribute, and the attribute's arguments.
fn chimod_impl(file: &syn::File) -> (proc_macro2::TokenStream, proc_macro2::TokenStream) {
    for item in &file.items {
        let syn::Item::Impl(imp) = item else {
            continue;
        };
        let is_chimod = |a: &syn::Attribute| {
            a.path()
                .segments
                .last()
                .is_some_and(|s| s.ident == "chimod")
        };
        if let Some(attr) = imp.attrs.iter().find(|a| is_chimod(a)) {
            let args = match &attr.meta {
                syn::Meta::List(l) => l.tokens.clone(),
                _ => proc_macro2::TokenStream::new(),
            };
            let mut imp = imp.clone();
            imp.attrs.retain(|a| !is_chimod(a));
            return (args, imp.into_token_stream());
        }
    }
    panic!("no #[chimod] impl block")
}

#[test]
fn mod_name_container_expansion() {
    let root = workspace();
    let module = root.join("examples/mod_name");
    let source = module.join("src/runtime.rs");
    let text = std::fs::read_to_string(&source).expect("examples/mod_name/src/runtime.rs");
    let file = syn::parse_file(&text).expect("the example parses");
    let (args, item) = chimod_impl(&file);
    let ctx = Context {
        manifest_dir: Some(module),
        source_file: Some(source),
    };
    let out = chi_macros_backend::expand_chimod_in(args, item, &ctx)
        .unwrap_or_else(|e| panic!("#[chimod] on examples/mod_name fails: {e}"));
    // The paths are replaced before pretty-printing: line breaks depend on
    // line lengths, so a checkout at a longer path would otherwise wrap the
    // `include_bytes!` lines differently.
    let tokens = out
        .to_string()
        .replace(&root.display().to_string(), "$WORKSPACE");
    let expanded: syn::File = syn::parse_str(&tokens).expect("the expansion is Rust");
    let pretty = prettyplease::unparse(&expanded);
    let got = format!(
        "// The expansion of #[chimod] on examples/mod_name's container, written by\n\
         // chi-macros/backend/tests/expand_snapshot.rs (UPDATE_SNAPSHOTS=1 rewrites it).\n\
         // Comments of the generated code (the SAFETY notes) are not tokens, so they\n\
         // do not appear here; see chi-macros/backend/src/chimod/generate.rs.\n\n{pretty}"
    );

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SNAPSHOT);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &got).expect("write the snapshot");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(g, w)| g != w)
            .unwrap_or_else(|| got.lines().count().min(want.lines().count()));
        panic!(
            "the expansion of #[chimod] on examples/mod_name differs from {SNAPSHOT} from line \
             {}:\n  now:      {}\n  snapshot: {}\nIf the change is intended, rewrite the file \
             with UPDATE_SNAPSHOTS=1 cargo test -p chi-macros-backend --test expand_snapshot \
             and review its diff.",
            line + 1,
            got.lines().nth(line).unwrap_or("<end>"),
            want.lines().nth(line).unwrap_or("<end>"),
        );
    }
}
