//! Unit tests of `#[chimod]`: the generated items, read back with `syn`
//! (`expansion`), and each diagnostic (`diagnostics`). Here: a temporary
//! repository to expand in, and helpers to find items in an expansion.

mod diagnostics;
mod expansion;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use proc_macro2::TokenStream;
use quote::quote;

use super::*;
use crate::yaml::REPO_YAML;

/// A repository directory with `chimaera_repo.yaml` (unless `repo` is `None`)
/// and a module subdirectory holding `chimaera_mod.yaml`; removed on drop.
struct Repo(PathBuf);

impl Repo {
    fn new(repo: Option<&str>, module: &str) -> Repo {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chimod-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("m")).unwrap();
        if let Some(r) = repo {
            std::fs::write(dir.join(REPO_YAML), r).unwrap();
        }
        std::fs::write(dir.join("m").join("chimaera_mod.yaml"), module).unwrap();
        Repo(dir)
    }

    fn ctx(&self) -> Context {
        Context {
            manifest_dir: Some(self.0.join("m")),
            source_file: None,
        }
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The expansion, or its errors (the items beside them are tested apart).
fn expand(attr: TokenStream, item: TokenStream, ctx: &Context) -> syn::Result<TokenStream> {
    super::expand(attr, item, ctx).into_result()
}

const REPO: &str = "namespace: chimaera\nmodules:\n  - m\n";
const MODULE: &str = "\
module_name: mod_name
namespace: chimaera
kCreate: 0
kDestroy: 1
kNodeFailure: -1
kRecover: -1
kMigrate: -1
kUpgrade: -1
kCustom: 10
kCoMutexTest: 11
kGone: -1
";

/// A container with typed create parameters, two handlers and a monitor.
fn item() -> TokenStream {
    quote! {
        impl MyContainer {
            fn create(ctx: &mut CreateCtx<'_>, params: Params) -> Result<Self, String> { Err(String::new()) }
            fn custom(&self, task: &mut CustomTask, ctx: &mut RunCtx) -> Result<(), String> { Ok(()) }
            fn co_mutex_test(&self, task: &mut CoMutexTestTask, ctx: &mut RunCtx) -> Result<(), Failure> { Ok(()) }
            fn monitor_custom(&self, mode: MonitorMode, task: &CustomTask, ctx: &mut RunCtx) {}
        }
    }
}

fn errors(e: syn::Error) -> Vec<String> {
    e.into_iter().map(|e| e.to_string()).collect()
}

/// The expansion, parsed (so it is valid Rust syntax).
fn expand_ok(it: TokenStream, r: &Repo) -> syn::File {
    let out = expand(quote!(), it, &r.ctx()).unwrap();
    syn::parse2(out.clone()).unwrap_or_else(|e| panic!("{e}: not Rust:\n{out}"))
}

/// `ts` as text, as `quote` spaces it (for comparing pieces of an expansion).
fn text(ts: impl quote::ToTokens) -> String {
    ts.into_token_stream().to_string()
}

/// The items of `pub mod name { … }` among `items`.
fn module<'a>(items: &'a [syn::Item], name: &str) -> &'a [syn::Item] {
    items
        .iter()
        .find_map(|i| match i {
            syn::Item::Mod(m) if m.ident == name => m.content.as_ref().map(|c| &c.1[..]),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no `mod {name}`"))
}

/// The item named `name` among `items` (a const, a static or a function).
fn named<'a>(items: &'a [syn::Item], name: &str) -> &'a syn::Item {
    items
        .iter()
        .find(|i| match i {
            syn::Item::Const(c) => c.ident == name,
            syn::Item::Static(s) => s.ident == name,
            syn::Item::Fn(f) => f.sig.ident == name,
            _ => false,
        })
        .unwrap_or_else(|| panic!("no item `{name}`"))
}

/// The method ids that have a match arm in `code` (`11u32 => …`).
fn arm_ids(code: &str) -> Vec<&str> {
    let tokens: Vec<&str> = code.split(' ').collect();
    tokens
        .windows(2)
        .filter(|w| w[1] == "=>" && w[0].ends_with("u32"))
        .map(|w| w[0])
        .collect()
}

/// The `const NAME: … = value;` items among `items`, as (name, value text).
fn consts(items: &[syn::Item]) -> Vec<(String, String)> {
    items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Const(c) => Some((c.ident.to_string(), text(&c.expr))),
            _ => None,
        })
        .collect()
}
