//! Parsing and code generation behind `chi-macros`.
//!
//! Each macro is a function from token streams to `syn::Result<TokenStream>`:
//! errors carry the span of what they are about, several are reported at once
//! (combined into one `syn::Error`), and nothing here panics on bad input. The
//! `proc_macro` crate only forwards to these functions, so they can be
//! unit-tested on token strings and reused by `cargo chimod`.
//!
//! * [`expand_task`]: `#[task(method = N)]` (see the `task` module).
//! * [`expand_chimod`]: `#[chimod]` on a container's impl block (see the
//!   `chimod` module).

use std::path::PathBuf;

use proc_macro2::TokenStream;

pub mod check;
pub mod chimod;
mod task;
pub mod yaml;

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

/// Expands `#[task(attr)] item` in the context of [`Context::from_env`].
pub fn expand_task(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    expand_task_in(attr, item, &Context::from_env())
}

/// Expands `#[task(attr)] item` in `ctx`.
pub fn expand_task_in(
    attr: TokenStream,
    item: TokenStream,
    ctx: &Context,
) -> syn::Result<TokenStream> {
    task::expand(attr, item, ctx)
}

/// `item` without the `#[input]` / `#[output]` / `#[inout]` attributes on its
/// fields: what a macro emits beside its errors, so the rest of the crate (and the
/// IDE) still sees the struct. Returns `item` unchanged if it does not parse.
pub fn strip_field_attrs(item: TokenStream) -> TokenStream {
    task::strip_field_attrs(item)
}

/// Expands `#[chimod(attr)] item` in the context of [`Context::from_env`].
pub fn expand_chimod(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    expand_chimod_in(attr, item, &Context::from_env())
}

/// Expands `#[chimod(attr)] item` in `ctx`.
pub fn expand_chimod_in(
    attr: TokenStream,
    item: TokenStream,
    ctx: &Context,
) -> syn::Result<TokenStream> {
    chimod::expand(attr, item, ctx)
}
