//! `#[task(method = N)]`: a task struct's layout, impls and constructors.
//!
//! # What the author writes
//!
//! A struct with named fields (or a unit struct, for a task without
//! parameters), no generics and no `#[repr]`. Each field is `#[input]` (the
//! default when unmarked), `#[output]` or `#[inout]`, and its type must be
//! `ShmSafe` and `chi_sdk::ser::Ser`.
//!
//! # The header
//!
//! The macro inserts `pub header: ::chi_sdk::task::TaskHeader` as the first field
//! and makes the struct `#[repr(C)]`. A field named `header` is an error: there is
//! one way to get a header, so no task can put it anywhere but first.
//!
//! # The YAML check
//!
//! `method = N` must equal the id of the task's key in `chimaera_mod.yaml` beside
//! the crate's `Cargo.toml` (`CARGO_MANIFEST_DIR`). The key is `k` + the struct
//! name less a `Task` suffix (`CustomTask` → `kCustom`), or `name = "kBar"`. The
//! file can be named with `yaml = "path"`, relative to the source file holding
//! the attribute. A missing file, a missing key, another id and a parse error are
//! compile errors naming the file. The expansion includes the file's bytes, so
//! editing it rebuilds the crate.

mod args;
mod fields;
mod generate;

use std::path::PathBuf;

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{Fields, Item, ItemStruct};

use crate::context::{Context, load_error, yaml_path};
use crate::diag::combine;
use crate::names::task_key;
use crate::yaml::ModYaml;
use args::TaskArgs;

pub(crate) fn expand(
    attr: TokenStream,
    item: TokenStream,
    ctx: &Context,
) -> syn::Result<TokenStream> {
    let mut errors = Vec::new();
    let args = match args::parse(attr) {
        Ok(a) => Some(a),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let parsed = match parse_item(item, &mut errors) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let mut task_fields = Vec::new();
    if let Some(item) = &parsed {
        for f in &item.fields {
            if let Some(tf) = fields::task_field(f, &mut errors) {
                task_fields.push(tf);
            }
        }
    }
    let yaml = match (&args, &parsed) {
        (Some(args), Some(item)) => match check_yaml(args, item, ctx) {
            Ok(path) => Some(path),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        _ => None,
    };
    if let Some(e) = combine(errors) {
        return Err(e);
    }
    let (Some(args), Some(item), Some(yaml)) = (args, parsed, yaml) else {
        // Unreachable: each `None` above pushed an error.
        return Err(syn::Error::new(
            Span::call_site(),
            "#[task] could not be expanded",
        ));
    };
    Ok(generate::task(&item, &task_fields, &args, &yaml))
}

/// Checks the item's shape: a struct, named or unit, no generics, no `#[repr]`.
/// Problems that leave the fields worth checking go to `errors`.
fn parse_item(item: TokenStream, errors: &mut Vec<syn::Error>) -> syn::Result<ItemStruct> {
    let item: Item = syn::parse2(item)?;
    let s = match item {
        Item::Struct(s) => s,
        other => {
            let (span, what) = match &other {
                Item::Enum(e) => (e.enum_token.span, "an enum"),
                Item::Union(u) => (u.union_token.span, "a union"),
                Item::Fn(f) => (f.sig.fn_token.span, "a function"),
                Item::Type(t) => (t.type_token.span, "a type alias"),
                Item::Impl(i) => (i.impl_token.span, "an impl block"),
                Item::Trait(t) => (t.trait_token.span, "a trait"),
                _ => (other.span(), "this item"),
            };
            return Err(syn::Error::new(
                span,
                format!(
                    "#[task] applies to a struct with named fields (the method's parameters), \
                     not to {what}"
                ),
            ));
        }
    };
    if let Fields::Unnamed(u) = &s.fields {
        return Err(syn::Error::new(
            u.paren_token.span.join(),
            "#[task] needs named fields (each one a parameter with a direction, e.g. \
             `#[input] pub key: ShmString`), not a tuple struct",
        ));
    }
    if !s.generics.params.is_empty() || s.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &s.generics,
            "a task cannot be generic: its layout and method id are fixed for every process",
        ));
    }
    for attr in &s.attrs {
        if attr.path().is_ident("repr") {
            errors.push(syn::Error::new_spanned(
                attr,
                "#[task] makes the struct `#[repr(C)]` itself; remove this attribute",
            ));
        }
    }
    Ok(s)
}

/// Finds the YAML and checks the method id against it; returns the file's path.
fn check_yaml(args: &TaskArgs, item: &ItemStruct, ctx: &Context) -> syn::Result<PathBuf> {
    let path = yaml_path(args.yaml.as_ref(), ctx)?;
    let (key, key_span) = match &args.name {
        Some(n) => (n.value(), n.span()),
        None => (task_key(&item.ident.to_string()), args.method_lit.span()),
    };
    let n = args.method;
    let at_id = args.method_lit.span();
    let shown = path.display();
    let yaml = ModYaml::load(&path).map_err(|e| {
        load_error(
            &e,
            args.yaml.as_ref(),
            "#[task] checks method ids against it",
        )
    })?;
    let Some(entry) = yaml.methods.get(&key) else {
        let hint = if args.name.is_some() {
            String::new()
        } else {
            format!(
                " (the key of `{}`; name another with `#[task(method = {n}, name = \"kOther\")]`)",
                item.ident
            )
        };
        return Err(syn::Error::new(
            key_span,
            format!(
                "`{key}` is not in {shown}{hint}: add `{key}: {n}` to it (custom methods have ids \
                 from 10, and ids never change once released)"
            ),
        ));
    };
    let at = format!("{shown}:{}", entry.line);
    match entry.id {
        Some(id) if id == i64::from(n) => Ok(path),
        Some(-1) => Err(syn::Error::new(
            at_id,
            format!(
                "`{key}` is -1 (unsupported) at {at}, but this task declares method = {n}: give \
                 `{key}` its id in the YAML, or remove the task"
            ),
        )),
        Some(id) => Err(syn::Error::new(
            at_id,
            format!(
                "method = {n} does not match `{key}: {id}` at {at}: method ids come from the YAML \
                 and never change; write `method = {id}`"
            ),
        )),
        None => Err(syn::Error::new(
            at_id,
            format!("`{key}` at {at} is not an integer method id; write `{key}: {n}`"),
        )),
    }
}

/// `item` with the direction attributes removed from its fields.
pub(crate) fn strip_field_attrs(item: TokenStream) -> TokenStream {
    let Ok(mut s) = syn::parse2::<ItemStruct>(item.clone()) else {
        return item;
    };
    for f in s.fields.iter_mut() {
        f.attrs.retain(|a| !fields::is_direction(a));
    }
    quote::ToTokens::into_token_stream(s)
}

#[cfg(test)]
mod tests;
