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
//!
//! Where the repository's `chimaera_methods.lock` records the key, its id is
//! the one to match: a task that kept the recorded id is right even if the
//! YAML was renumbered (`#[chimod]` reports the YAML, with the advice of
//! `cargo chimod refresh`), and a task of a key removed from the YAML is told
//! the id the lock keeps for it.

mod args;
mod client;
pub(crate) use client::bridge_name;
mod fields;
mod generate;

use std::path::PathBuf;

use proc_macro2::TokenStream;
use quote::format_ident;
use syn::spanned::Spanned;
use syn::{Fields, Item, ItemStruct};

use crate::Expansion;
use crate::check::{CheckedModule, check_module_file, next_free};
use crate::context::{Context, load_error, yaml_path};
use crate::lock::LOCK_FILE;
use crate::names::task_key;
use args::TaskArgs;

/// The struct and its impls, with every problem found. What can be generated
/// is, whatever else is wrong, so that one mistake is one error: a field whose
/// type was rejected keeps its place in the struct (only its layout check and
/// its serialisation are left out), a method id the YAML disagrees with is
/// reported while the impls take the YAML's (or the lock's) id. Only without a
/// method id, or for a generic struct, is the struct emitted alone.
pub(crate) fn expand(attr: TokenStream, item: TokenStream, ctx: &Context) -> Expansion {
    let mut errors = Vec::new();
    let args = args::parse(attr).map_err(|e| errors.push(e)).ok();
    let parsed = match parse_item(item.clone(), &mut errors) {
        Ok(p) => p,
        Err(e) => {
            errors.push(e);
            return Expansion::new(strip_field_attrs(item), errors);
        }
    };
    let task_fields: Vec<fields::TaskField> = parsed
        .fields
        .iter()
        .filter_map(|f| fields::task_field(f, &mut errors))
        .collect();
    let generic = !parsed.generics.params.is_empty() || parsed.generics.where_clause.is_some();
    let Some(args) = args.filter(|_| !generic) else {
        // The bridge, empty: the container's client names it.
        let bridge = client::bridge(&parsed, &[], "", &format_ident!("new"), false);
        let mut tokens = strip_field_attrs(item);
        tokens.extend(bridge);
        return Expansion::new(tokens, errors);
    };
    let (yaml, method) = match check_yaml(&args, &parsed, ctx) {
        Ok(ok) => ok,
        Err((e, known)) => {
            errors.push(e);
            known
        }
    };
    let mut item = parsed;
    item.attrs.retain(|a| !a.path().is_ident("repr"));
    let method = method.unwrap_or(args.method);
    let mut tokens = generate::task(&item, &task_fields, &args, method, yaml.as_deref());
    let key = match &args.name {
        Some(n) => n.value(),
        None => task_key(&item.ident.to_string()),
    };
    let new_fn = args
        .new_name
        .clone()
        .unwrap_or_else(|| format_ident!("new"));
    tokens.extend(client::bridge(
        &item,
        &task_fields,
        &key,
        &new_fn,
        args.client,
    ));
    Expansion::new(tokens, errors)
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

/// What the YAML check learnt: the file to include (if it exists) and the id
/// the impls take (the YAML's, or the lock's), when known.
type Known = (Option<PathBuf>, Option<u32>);

/// Finds the YAML and checks the method id against it and against the lock
/// beside the repository's `chimaera_repo.yaml` (the lock wins). On error,
/// what was learnt comes with it.
fn check_yaml(
    args: &TaskArgs,
    item: &ItemStruct,
    ctx: &Context,
) -> Result<Known, (syn::Error, Known)> {
    let path = yaml_path(args.yaml.as_ref(), ctx).map_err(|e| (e, (None, None)))?;
    let module = check_module_file(&path).map_err(|e| {
        let uses = "#[task] checks method ids against it";
        (load_error(&e, args.yaml.as_ref(), uses), (None, None))
    })?;
    let (key, key_span) = match &args.name {
        Some(n) => (n.value(), n.span()),
        None => (task_key(&item.ident.to_string()), args.method_lit.span()),
    };
    let n = args.method;
    let shown = path.display();
    let Some(entry) = module.entries.get(&key) else {
        let message = match module.locked.get(&key) {
            Some(&old) => {
                let id = if old == i64::from(n) {
                    String::new()
                } else {
                    format!(", with `method = {old}`")
                };
                format!(
                    "`{key}` is not in {shown}, but {LOCK_FILE} records `{key} = {old}` (a \
                     method removed from the YAML keeps its id): put back `{key}: {old}` to keep \
                     the method{id}, or remove this task"
                )
            }
            None => {
                let hint = if args.name.is_some() {
                    String::new()
                } else {
                    format!(
                        " (the key of `{}`; name another with `#[task(method = {n}, name = \
                         \"kOther\")]`)",
                        item.ident
                    )
                };
                missing_key(&module, &key, n, &hint)
            }
        };
        return Err((syn::Error::new(key_span, message), (Some(path), None)));
    };
    let at = format!("{shown}:{}", entry.line);
    let at_id = args.method_lit.span();
    let expected = match (entry.id, module.locked.get(&key)) {
        (Some(id), Some(&old)) if id >= 0 && id != old => {
            let known = (Some(path.clone()), u32::try_from(old).ok());
            if i64::from(n) == old {
                // The task is right; `#[chimod]` reports the YAML.
                return Ok(known);
            }
            let message = format!(
                "method = {n}, but {LOCK_FILE} records `{key} = {old}` and method ids are \
                 permanent (clients and saved tasks use them): write `method = {old}`, and put \
                 back `{key}: {old}` at {at} (it says {id}), or add a new method with a new id"
            );
            return Err((syn::Error::new(at_id, message), known));
        }
        (Some(id), _) => id,
        (None, _) => {
            let message =
                format!("`{key}` at {at} is not an integer method id; write `{key}: {n}`");
            return Err((syn::Error::new(at_id, message), (Some(path), None)));
        }
    };
    let known = (Some(path.clone()), u32::try_from(expected).ok());
    if expected == i64::from(n) {
        return Ok(known);
    }
    let message = if expected == -1 {
        format!(
            "`{key}` is -1 (unsupported) at {at}, but this task declares method = {n}: give \
             `{key}` its id in the YAML, or remove the task"
        )
    } else {
        format!(
            "method = {n} does not match `{key}: {expected}` at {at}: method ids come from the \
             YAML and never change; write `method = {expected}`"
        )
    };
    Err((syn::Error::new(at_id, message), known))
}

/// The message for a key `module`'s YAML does not have: add it, with `n`
/// unless the lock gives `n` to another method.
fn missing_key(module: &CheckedModule, key: &str, n: u32, hint: &str) -> String {
    let shown = module.path.display();
    let n = i64::from(n);
    match module.locked.iter().find(|(_, id)| **id == n) {
        Some((owner, _)) => {
            let free = next_free(&module.locked);
            format!(
                "`{key}` is not in {shown}{hint}, and {LOCK_FILE} gives id {n} to `{owner}` (ids \
                 are never reused): add `{key}: {free}` to it and write `method = {free}`"
            )
        }
        None => format!(
            "`{key}` is not in {shown}{hint}: add `{key}: {n}` to it (custom methods have ids \
             from 10, and ids never change once released)"
        ),
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
