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

/// What a macro emits: the items it could generate and the errors it found.
///
/// The items are generated even when something is wrong, as far as what is
/// wrong allows (each macro's module says how far), so that one mistake is
/// one error at its span and not a cascade of errors about items that are
/// missing.
#[derive(Debug)]
pub struct Expansion {
    /// The generated items.
    pub items: TokenStream,
    /// Every problem, combined; `None` if there was none.
    pub error: Option<syn::Error>,
}

impl Expansion {
    pub(crate) fn new(items: TokenStream, errors: Vec<syn::Error>) -> Expansion {
        Expansion {
            items,
            error: diag::combine(errors),
        }
    }

    /// The items, or the error if there was one.
    pub fn into_result(self) -> syn::Result<TokenStream> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.items),
        }
    }

    /// What the proc macro returns: the errors (as `compile_error!`s), then
    /// the items.
    pub fn into_tokens(self) -> TokenStream {
        let mut out = self.error.map(|e| e.to_compile_error()).unwrap_or_default();
        out.extend(self.items);
        out
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
    task_expansion(attr, item, ctx).into_result()
}

/// Expands `#[task(attr)] item` in `ctx`, with its items even on error.
pub fn task_expansion(attr: TokenStream, item: TokenStream, ctx: &Context) -> Expansion {
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
    chimod_expansion(attr, item, ctx).into_result()
}

/// Expands `#[chimod(attr)] item` in `ctx`, with its items even on error.
pub fn chimod_expansion(attr: TokenStream, item: TokenStream, ctx: &Context) -> Expansion {
    chimod::expand(attr, item, ctx)
}

/// Expands `method_ids!(input)` in `ctx`: the id constants of the module whose
/// YAML `input` names (`yaml = "…"`, relative to the calling file; or nothing,
/// for the crate's own `chimaera_mod.yaml`), checked as `#[chimod]` checks it.
pub fn expand_method_ids(input: TokenStream, ctx: &Context) -> syn::Result<TokenStream> {
    method_ids::expand(input, ctx)
}
