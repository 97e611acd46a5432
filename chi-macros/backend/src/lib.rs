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
//! * [`expand_method_ids`]: `method_ids!(yaml = "…")`, a module's id
//!   constants without its container (see the `method_ids` module).
//!
//! # Modules
//!
//! The modules form a tree, leaves first; each imports only from those above
//! it in this list:
//!
//! * [`names`]: what each name derives from (`kFooBar` → `foo_bar`, …);
//! * [`diag`]: [`diag::Problem`], combining errors, showing types;
//! * [`yaml`]: reading `chimaera_mod.yaml` and `chimaera_repo.yaml`;
//! * [`lock`]: reading and writing `chimaera_methods.lock`;
//! * `context`: where a macro runs and which YAML that means ([`Context`]);
//! * [`check`]: the YAML rules and the lock's, the one function `cargo chimod
//!   refresh` and `#[chimod]` both run;
//! * `method_ids`: the id constants;
//! * `task`, `chimod`: the two attribute macros.

use proc_macro2::TokenStream;

pub mod check;
mod chimod;
mod context;
pub mod diag;
pub mod lock;
mod method_ids;
pub mod names;
mod task;
pub mod yaml;

pub use context::Context;

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

/// Expands `method_ids!(input)` in `ctx`: the id constants of the module whose
/// YAML `input` names (`yaml = "…"`, relative to the calling file; or nothing,
/// for the crate's own `chimaera_mod.yaml`), checked as `#[chimod]` checks it.
pub fn expand_method_ids(input: TokenStream, ctx: &Context) -> syn::Result<TokenStream> {
    method_ids::expand(input, ctx)
}
