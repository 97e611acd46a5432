//! `#[chimod]`: a module's container, its method table and its C entry points.
//!
//! # What the author writes
//!
//! One inherent `impl` block of the container type, holding only:
//!
//! * `fn create(ctx: &mut CreateCtx<'_>, params: CreateParams) -> Result<Self,
//!   String>` (method `kCreate`, 0): builds the container of a pool. `params`
//!   is the module's creation parameters, any serde type: `#[chimod]`
//!   implements `chi_sdk::admin::PoolParams` for it (with this module's library
//!   name), and the generated code decodes it from the pool's argument string;
//!   `args: &str` takes the raw string instead. `ctx` gives the pool's id and
//!   name and creates the container's local queues. Required. Destroying a
//!   container (`kDestroy`, 1) drops it: implement `Drop` for cleanup.
//! * one handler per supported method of `chimaera_mod.yaml`: the key less its
//!   `k`, in snake_case (`kCustom` → `custom`, `kCoMutexTest` →
//!   `co_mutex_test`), taking `(&self, task: &mut FooTask, ctx: &mut RunCtx)`
//!   and returning `Result<(), E>` with `E: Into<chi_sdk::task::Failure>` (a
//!   `String` fails the task with `code::FAILED`);
//! * optionally `monitor_foo(&self, mode: MonitorMode, task: &FooTask, ctx: &mut
//!   RunCtx)` for a handler `foo`: in `LocalSchedule` it names a lane of the
//!   container's local queues with `ctx.route(ctx.lane(..)?)`; it cannot
//!   enqueue. A method without a monitor runs where the runtime took it from
//!   the process queue (no extra hop).
//!
//! # What it generates
//!
//! The `method` module of id constants, `CHIMOD_LIB_NAME`, `CHIMOD_ENTRY`, and
//! in a hidden module the C boundary: `create`, `destroy`, `run` and `monitor`
//! dispatching by method id, and per-method `del`, `save_in`, `load_in`,
//! `save_out`, `load_out`, `new_copy` and `task_size` hooks over the task
//! types' `TaskSer` impls. A method set to -1, or an id the YAML does not
//! have, fails with `code::UNSUPPORTED_METHOD`. The entry is exported as
//! `chimaera_module_entry_{CHIMOD_LIB_NAME}`.
//!
//! Helpers belong in another `impl` block: every other function here is taken
//! for a handler and must have a YAML key.
//!
//! # The YAML
//!
//! `chimaera_mod.yaml` beside the crate's `Cargo.toml` (or `yaml = "path"`,
//! relative to the source file) gives `module_name`, `namespace` and the method
//! ids; the nearest `chimaera_repo.yaml` in the directories above it gives the
//! repository's `namespace`, which must agree. `chimod_lib_name` is
//! `{namespace}_{module_name}`.
//!
//! Inherited methods have fixed ids (`kCreate` 0, `kDestroy` 1, `kNodeFailure`
//! 2, `kRecover` 3, `kMigrate` 4, `kUpgrade` 5) or `-1` (unsupported); custom
//! methods have ids from 10, or `-1`.

use std::collections::BTreeMap;
use std::path::Path;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, LitStr, Type};

use crate::Context;
use crate::task::{normalize, yaml_path};
use crate::yaml::{ModYaml, YamlError};

use crate::check::REPO_YAML;

/// Inherited methods and their fixed ids.
pub const INHERITED: [(&str, i64); 6] = [
    ("kCreate", 0),
    ("kDestroy", 1),
    ("kNodeFailure", 2),
    ("kRecover", 3),
    ("kMigrate", 4),
    ("kUpgrade", 5),
];

/// First id of a custom method.
pub const FIRST_CUSTOM: i64 = 10;

/// `FooBar` → `foo_bar` (`CoMutexTest` → `co_mutex_test`, `IOStat` → `io_stat`).
pub fn snake_case(camel: &str) -> String {
    let chars: Vec<char> = camel.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A YAML method: its key and id.
#[derive(Debug, Clone)]
struct Method {
    key: String,
    id: i64,
    line: u64,
}

impl Method {
    /// The handler's name.
    fn handler(&self) -> String {
        snake_case(&self.key[1..])
    }

    /// The constant's name.
    fn constant(&self) -> String {
        self.handler().to_ascii_uppercase()
    }
}

/// A handler of the impl block.
struct Handler<'a> {
    func: &'a ImplItemFn,
    task_ty: Type,
}

pub(crate) fn expand(
    attr: TokenStream,
    item: TokenStream,
    ctx: &Context,
) -> syn::Result<TokenStream> {
    let yaml_arg = parse_args(attr)?;
    let imp: ItemImpl = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("#[chimod] applies to an inherent `impl Container {{ … }}` block: {e}"),
        )
    })?;
    if let Some((_, path, _)) = &imp.trait_ {
        // Alone: the trait's functions are not handlers, so nothing else applies.
        return Err(syn::Error::new_spanned(
            path,
            "#[chimod] applies to an inherent impl block (`impl MyContainer { … }`), not a trait \
             impl: put `create` and the handlers in an `impl MyContainer` block",
        ));
    }
    let mut errors: Vec<syn::Error> = Vec::new();
    if !imp.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &imp.generics,
            "a container cannot be generic: the runtime creates it by name",
        ));
    }
    let self_ty = &imp.self_ty;

    // The YAML files.
    let mod_path = normalize(&yaml_path(yaml_arg.as_ref(), ctx)?);
    let at_attr = yaml_arg.as_ref().map_or(Span::call_site(), LitStr::span);
    let yaml = match ModYaml::load(&mod_path) {
        Ok(y) => y,
        Err(YamlError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            let how = match &yaml_arg {
                Some(_) => "check the `yaml = \"…\"` path (it is relative to this source file)",
                None => {
                    "every module crate has one beside its Cargo.toml (`cargo chimod new` writes \
                     it); or name another file with `yaml = \"…\"`, relative to this source file"
                }
            };
            return Err(syn::Error::new(
                at_attr,
                format!(
                    "{} not found: #[chimod] reads the module's methods from it; {how}",
                    mod_path.display()
                ),
            ));
        }
        Err(e) => return Err(syn::Error::new(at_attr, e.to_string())),
    };
    let shown = mod_path.display().to_string();
    let repo_path = crate::check::find_repo_yaml(&mod_path);
    let repo = match &repo_path {
        Some(p) => match ModYaml::load(p) {
            Ok(y) => Some(y),
            Err(e) => {
                errors.push(syn::Error::new(at_attr, e.to_string()));
                None
            }
        },
        None => None,
    };

    // module_name and namespace.
    let module_name = yaml.texts.get("module_name").map(|t| t.value.clone());
    if module_name.is_none() {
        errors.push(syn::Error::new(
            at_attr,
            format!("{shown} has no `module_name`: add e.g. `module_name: my_module`"),
        ));
    }
    let mod_ns = yaml.texts.get("namespace");
    let repo_ns = repo.as_ref().and_then(|r| r.texts.get("namespace"));
    let namespace = match (mod_ns, repo_ns) {
        (Some(m), Some(r)) if m.value != r.value => {
            errors.push(syn::Error::new(
                at_attr,
                format!(
                    "`namespace: {}` at {shown}:{} disagrees with `namespace: {}` at {}:{}: a \
                     module takes its repository's namespace; make them equal",
                    m.value,
                    m.line,
                    r.value,
                    repo_path
                        .as_deref()
                        .map(Path::display)
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    r.line
                ),
            ));
            None
        }
        (Some(m), _) => Some(m.value.clone()),
        (None, Some(r)) => Some(r.value.clone()),
        (None, None) => {
            errors.push(syn::Error::new(
                at_attr,
                format!(
                    "no namespace: {shown} has no `namespace` and no {REPO_YAML} with one was found \
                     above it"
                ),
            ));
            None
        }
    };

    // The methods.
    let mut methods: Vec<Method> = Vec::new();
    for (key, e) in &yaml.methods {
        let at = format!("{shown}:{}", e.line);
        let Some(id) = e.id else {
            errors.push(syn::Error::new(
                at_attr,
                format!("`{key}` at {at} is not an integer method id"),
            ));
            continue;
        };
        match INHERITED.iter().find(|(k, _)| k == key) {
            Some((_, fixed)) => {
                let ok = id == *fixed || (id == -1 && *fixed > 1);
                if !ok {
                    let allowed = if *fixed > 1 {
                        format!("{fixed} or -1 (unsupported)")
                    } else {
                        fixed.to_string()
                    };
                    errors.push(syn::Error::new(
                        at_attr,
                        format!(
                            "`{key}: {id}` at {at}: `{key}` is inherited and its id is {allowed}"
                        ),
                    ));
                    continue;
                }
            }
            None if id != -1 && id < FIRST_CUSTOM => {
                errors.push(syn::Error::new(
                    at_attr,
                    format!(
                        "`{key}: {id}` at {at}: custom methods have ids from {FIRST_CUSTOM} (0..{} \
                         are inherited methods); use -1 for an unsupported method",
                        FIRST_CUSTOM - 1
                    ),
                ));
                continue;
            }
            None if id > i64::from(u32::MAX) => {
                errors.push(syn::Error::new(
                    at_attr,
                    format!("`{key}: {id}` at {at}: a method id fits in a u32"),
                ));
                continue;
            }
            None => {}
        }
        methods.push(Method {
            key: key.clone(),
            id,
            line: e.line,
        });
    }
    let mut by_id: BTreeMap<i64, &Method> = BTreeMap::new();
    for m in &methods {
        if m.id < 0 {
            continue;
        }
        if let Some(prev) = by_id.insert(m.id, m) {
            errors.push(syn::Error::new(
                at_attr,
                format!(
                    "duplicate method id {}: `{}` ({shown}:{}) and `{}` ({shown}:{}); every method \
                     needs its own id",
                    m.id, prev.key, prev.line, m.key, m.line
                ),
            ));
        }
    }

    // The functions.
    let mut create: Option<&ImplItemFn> = None;
    let mut handlers: BTreeMap<String, Handler<'_>> = BTreeMap::new();
    let mut monitors: BTreeMap<String, &ImplItemFn> = BTreeMap::new();
    for it in &imp.items {
        let ImplItem::Fn(f) = it else {
            continue;
        };
        let name = f.sig.ident.to_string();
        if name == "create" {
            create = Some(f);
            continue;
        }
        if let Some(h) = name.strip_prefix("monitor_") {
            monitors.insert(h.to_owned(), f);
            continue;
        }
        let Some(m) = methods.iter().find(|m| m.handler() == name) else {
            let key = format!("k{}", camel_case(&name));
            errors.push(syn::Error::new(
                f.sig.ident.span(),
                format!(
                    "`{name}` handles no method of {shown}: add `{key}: <id>` to it (custom ids \
                     from {FIRST_CUSTOM}), or move this function to another impl block (every \
                     function of a #[chimod] impl is a handler)"
                ),
            ));
            continue;
        };
        if m.id < 0 {
            errors.push(syn::Error::new(
                f.sig.ident.span(),
                format!(
                    "`{}` is -1 (unsupported) at {shown}:{}, but `{name}` handles it: give it an \
                     id or remove the handler",
                    m.key, m.line
                ),
            ));
            continue;
        }
        if m.key == "kDestroy" {
            errors.push(syn::Error::new(
                f.sig.ident.span(),
                "kDestroy drops the container: implement `Drop` instead of a `destroy` handler",
            ));
            continue;
        }
        match handler_task_type(f) {
            Ok(task_ty) => {
                handlers.insert(name, Handler { func: f, task_ty });
            }
            Err(e) => errors.push(e),
        }
    }
    for (h, f) in &monitors {
        let why = match methods.iter().find(|m| &m.handler() == h) {
            Some(m) if m.id >= 0 => continue,
            Some(m) => format!("`{}` is -1 (unsupported) at {shown}:{}", m.key, m.line),
            None => format!(
                "no method of {shown} has the handler `{h}` (a monitor is named `monitor_` + \
                 its method's handler, e.g. `monitor_custom` for `kCustom`)"
            ),
        };
        errors.push(syn::Error::new(
            f.sig.ident.span(),
            format!("`monitor_{h}` monitors no supported method: {why}"),
        ));
    }
    let mut params: Option<Option<Type>> = None;
    match create {
        None => errors.push(syn::Error::new(
            self_ty.span(),
            format!("a #[chimod] impl needs {CREATE_USAGE} (method kCreate)"),
        )),
        Some(f) => match create_params(f) {
            Ok(p) => params = Some(p),
            Err(e) => errors.push(e),
        },
    }
    for m in &methods {
        let needs = m.id >= 0 && m.key != "kCreate" && m.key != "kDestroy";
        let name = m.handler();
        if needs && !has_fn(&imp, &name) {
            errors.push(syn::Error::new(
                self_ty.span(),
                format!(
                    "`{}: {}` ({shown}:{}) has no handler: add `fn {name}(&self, task: &mut \
                     {}Task, ctx: &mut chi_sdk::abi::RunCtx) -> Result<(), String>`, or set it \
                     to -1 (unsupported)",
                    m.key,
                    m.id,
                    m.line,
                    &m.key[1..]
                ),
            ));
        }
    }
    if let Some(e) = crate::task::combine(errors) {
        return Err(e);
    }
    let (Some(module_name), Some(namespace)) = (module_name, namespace) else {
        return Err(syn::Error::new(
            Span::call_site(),
            "#[chimod] could not be expanded",
        ));
    };
    let lib_name = format!("{namespace}_{module_name}");
    Ok(generate(
        &imp,
        params.flatten().as_ref(),
        &lib_name,
        &methods,
        &handlers,
        &monitors,
        &mod_path,
        repo_path.as_deref(),
    ))
}

/// Whether the impl has a function named `name` (if it was rejected, that was
/// reported at the function).
fn has_fn(imp: &ItemImpl, name: &str) -> bool {
    imp.items
        .iter()
        .any(|i| matches!(i, ImplItem::Fn(f) if f.sig.ident == name))
}

/// `foo_bar` → `FooBar` (the inverse of [`snake_case`] for handler names).
pub fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `yaml = "…"`, the only argument.
fn parse_args(attr: TokenStream) -> syn::Result<Option<LitStr>> {
    let mut yaml = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("yaml") {
            yaml = Some(meta.value()?.parse::<LitStr>()?);
            Ok(())
        } else {
            Err(meta.error(
                "unknown argument of #[chimod]; the only one is `yaml = \"path/to/chimaera_mod.yaml\"`",
            ))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(yaml)
}

const CREATE_USAGE: &str = "`fn create(ctx: &mut chi_sdk::container::CreateCtx<'_>, params: \
     CreateParams) -> Result<Self, String>` (params: a serde type, the module's create \
     parameters; or `args: &str` for the raw argument string)";

/// The parameter type of `create` (`None` for a raw `&str`).
fn create_params(f: &ImplItemFn) -> syn::Result<Option<Type>> {
    let inputs: Vec<&FnArg> = f.sig.inputs.iter().collect();
    if let Some(FnArg::Receiver(r)) = inputs.first() {
        return Err(syn::Error::new_spanned(
            r,
            format!(
                "create is an associated function, without `self` (it makes the container): \
                 expected {CREATE_USAGE}"
            ),
        ));
    }
    if inputs.len() != 2 {
        return Err(syn::Error::new(
            f.sig.paren_token.span.join(),
            format!(
                "create takes 2 parameters (its context and its create parameters), not {}: \
                 expected {CREATE_USAGE}",
                inputs.len()
            ),
        ));
    }
    let (FnArg::Typed(ctx), FnArg::Typed(p)) = (inputs[0], inputs[1]) else {
        return Err(syn::Error::new_spanned(
            &f.sig,
            format!("expected {CREATE_USAGE}"),
        ));
    };
    if !matches!(&*ctx.ty, Type::Reference(_)) {
        return Err(syn::Error::new_spanned(
            &ctx.ty,
            format!(
                "the first parameter of create is `&mut CreateCtx<'_>`: expected {CREATE_USAGE}"
            ),
        ));
    }
    match &*p.ty {
        Type::Reference(r) if matches!(&*r.elem, Type::Path(tp) if tp.path.is_ident("str")) => {
            Ok(None)
        }
        Type::Reference(r) => Err(syn::Error::new_spanned(
            r,
            format!(
                "create takes its parameters by value (`{}`, not `{}`; they are decoded from the \
                 pool's arguments for this call): expected {CREATE_USAGE}",
                crate::task::show(&r.elem),
                crate::task::show(&p.ty)
            ),
        )),
        other => Ok(Some(other.clone())),
    }
}

/// `T` of a handler `fn h(&self, task: &mut T, ctx: &mut RunCtx)`.
fn handler_task_type(f: &ImplItemFn) -> syn::Result<Type> {
    let usage = format!(
        "a handler takes `(&self, task: &mut {}Task, ctx: &mut chi_sdk::abi::RunCtx)` and returns \
         `Result<(), E>` with `E: Into<chi_sdk::task::Failure>` (e.g. `String`)",
        camel_case(&f.sig.ident.to_string())
    );
    let inputs: Vec<&FnArg> = f.sig.inputs.iter().collect();
    let ok_recv = matches!(inputs.first(), Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none());
    if inputs.len() != 3 || !ok_recv {
        return Err(syn::Error::new_spanned(&f.sig, usage));
    }
    match inputs[1] {
        FnArg::Typed(pt) => match &*pt.ty {
            Type::Reference(r) if r.mutability.is_some() => Ok((*r.elem).clone()),
            other => Err(syn::Error::new_spanned(other, usage)),
        },
        FnArg::Receiver(r) => Err(syn::Error::new_spanned(r, usage)),
    }
}

#[allow(clippy::too_many_arguments)]
fn generate(
    imp: &ItemImpl,
    params: Option<&Type>,
    lib_name: &str,
    methods: &[Method],
    handlers: &BTreeMap<String, Handler<'_>>,
    monitors: &BTreeMap<String, &ImplItemFn>,
    mod_yaml: &Path,
    repo_yaml: Option<&Path>,
) -> TokenStream {
    let p = quote!(::chi_sdk::__private::chimod);
    let ty = &imp.self_ty;
    let consts = methods.iter().filter(|m| m.id >= 0).map(|m| {
        let c = format_ident!("{}", m.constant());
        let id = m.id as u32;
        let doc = format!("`{}` in chimaera_mod.yaml.", m.key);
        quote!(#[doc = #doc] pub const #c: u32 = #id;)
    });
    let all = methods.iter().map(|m| {
        let k = &m.key;
        let id = m.id;
        quote!((#k, #id))
    });
    let includes = std::iter::once(mod_yaml)
        .chain(repo_yaml)
        .map(|p| {
            let l = LitStr::new(&p.display().to_string(), Span::call_site());
            quote!(
                const _: &[u8] = include_bytes!(#l);
            )
        })
        .collect::<Vec<_>>();

    let mut arms = Vec::new();
    let mut del_arms = Vec::new();
    let mut save_in_arms = Vec::new();
    let mut save_out_arms = Vec::new();
    let mut load_in_arms = Vec::new();
    let mut load_out_arms = Vec::new();
    let mut copy_arms = Vec::new();
    let mut size_arms = Vec::new();
    let mut checks = Vec::new();
    let mut monitor_arms = Vec::new();
    for m in methods.iter().filter(|m| m.id >= 0) {
        let Some(h) = handlers.get(&m.handler()) else {
            continue;
        };
        let id = m.id as u32;
        let fname = &h.func.sig.ident;
        let tt = &h.task_ty;
        let msg = format!(
            "`{fname}` handles `{}` ({id} in chimaera_mod.yaml), but its task type `{}` has \
             another METHOD: take the `#[task(method = {id})]` type",
            m.key,
            crate::task::show(tt)
        );
        // Spanned at the handler's task type, so the error points there.
        checks.push(quote::quote_spanned!(tt.span()=>
            const _: () = ::core::assert!(<#tt as #p::Task>::METHOD == #id, #msg);
        ));
        arms.push(quote! {
            #id => {
                // SAFETY: the runtime validated the task's `size` bytes; `cast`
                // checks they cover the task type and its alignment.
                let t = unsafe { #p::cast::<#tt>(task)? };
                this.#fname(t, ctx).map_err(#p::failed)
            }
        });
        // SAFETY (of each arm): the hooks' contracts are the runtime's, passed on.
        del_arms.push(quote!(#id => unsafe { #p::del::<#tt>(task) },));
        save_in_arms.push(quote!(#id => unsafe { #p::save::<#tt>(task, out, false) },));
        save_out_arms.push(quote!(#id => unsafe { #p::save::<#tt>(task, out, true) },));
        load_in_arms
            .push(quote!(#id => unsafe { #p::load_in::<#tt>(task, data, len, <#tt>::empty) },));
        load_out_arms.push(quote!(#id => unsafe { #p::load_out::<#tt>(task, data, len) },));
        copy_arms.push(quote!(#id => unsafe { #p::new_copy::<#tt>(task) },));
        size_arms.push(quote!(#id => ::core::mem::size_of::<#tt>(),));
        if let Some(mf) = monitors.get(&m.handler()) {
            let mname = &mf.sig.ident;
            monitor_arms.push(quote! {
                #id => {
                    // SAFETY: as in `run`.
                    let t = unsafe { #p::cast::<#tt>(task)? };
                    this.#mname(mode, t, ctx);
                    ::core::result::Result::Ok(())
                }
            });
        }
    }
    let names = methods.iter().map(|m| {
        let k = &m.key;
        let id = m.id;
        quote!((#k, #id))
    });
    let lib_lit = LitStr::new(lib_name, Span::call_site());
    let entry_lit = LitStr::new(
        &format!("chimaera_module_entry_{lib_name}"),
        Span::call_site(),
    );
    let (make, params_impl) = match params {
        None => (quote!(|ctx, args| <#ty>::create(ctx, args)), quote!()),
        Some(pt) => (
            quote!(|ctx, args| <#ty>::create(ctx, #p::params::<#pt>(args)?)),
            quote! {
                impl #p::PoolParams for #pt {
                    const CHIMOD_LIB_NAME: &'static str = #lib_lit;
                }
            },
        ),
    };
    let unknown = quote! {
        other => ::core::result::Result::Err(#p::unsupported(#lib_lit, other, NAMES)),
    };
    // The hooks that return a result code: each dispatches on the task's method
    // to its arms, inside `hook` (panics contained, failures written to `err`).
    let hook = |name: &str, params: TokenStream, with_err: bool, arms: &[TokenStream]| {
        let name = format_ident!("{name}");
        let err = if with_err {
            // SAFETY (generated): the runtime's error buffer, or null.
            quote!(unsafe { err.as_mut() })
        } else {
            quote!(::core::option::Option::None)
        };
        quote! {
            unsafe extern "C" fn #name(_container: *mut ::core::ffi::c_void, #params) -> i32 {
                // SAFETY (generated): the runtime passes a validated task (for
                // `load_in`, a block of `task_size(method)` bytes whose header
                // names the method) and, where taken, a live sink or `len`
                // readable bytes at `data`.
                #p::hook(#err, || match unsafe { (*task).method } {
                    #(#arms)*
                    #unknown
                })
            }
        }
    };
    let task_mut = quote!(task: *mut #p::TaskHeader);
    let task_ref = quote!(task: *const #p::TaskHeader);
    let sink = quote!(out: *mut #p::ByteSink, err: *mut #p::ErrorBuf);
    let bytes = quote!(data: *const u8, len: usize, err: *mut #p::ErrorBuf);
    let hooks = [
        hook("__del", task_mut.clone(), false, &del_arms),
        hook("__save_in", quote!(#task_ref, #sink), true, &save_in_arms),
        hook("__save_out", quote!(#task_ref, #sink), true, &save_out_arms),
        hook("__load_in", quote!(#task_mut, #bytes), true, &load_in_arms),
        hook(
            "__load_out",
            quote!(#task_mut, #bytes),
            true,
            &load_out_arms,
        ),
    ];
    let monitor = if monitor_arms.is_empty() {
        quote!(::core::option::Option::None)
    } else {
        quote! {{
            unsafe extern "C" fn __monitor(
                container: *mut ::core::ffi::c_void,
                mode: u32,
                task: *mut #p::TaskHeader,
                ctx: *mut #p::RunCtx,
            ) -> i32 {
                // SAFETY: the runtime passes its container, a validated task and a context.
                unsafe {
                    #p::monitor::<#ty>(container, mode, task, ctx, |this, mode, task, ctx| {
                        // SAFETY: validated by the runtime.
                        match unsafe { (*task).method } {
                            #(#monitor_arms)*
                            _ => #p::default_monitor(mode, ctx),
                        }
                    })
                }
            }
            ::core::option::Option::Some(__monitor as #p::MonitorFn)
        }}
    };

    quote! {
        #imp

        /// Method ids of this module (from its `chimaera_mod.yaml`).
        pub mod method {
            #(#consts)*
            /// Every method key with its id (`-1` = unsupported).
            pub const ALL: &[(&str, i64)] = &[#(#all),*];
        }

        /// This module's library name (`{namespace}_{module_name}`): the runtime
        /// loads `lib{CHIMOD_LIB_NAME}_runtime.so`.
        pub const CHIMOD_LIB_NAME: &str = #lib_lit;

        #params_impl

        #(#includes)*

        /// The module's C boundary, generated by `#[chimod]`.
        #[doc(hidden)]
        pub mod __chimod {
            #[allow(unused_imports)]
            use super::*;

            #(#checks)*
            const _: fn() = #p::assert_container::<#ty>;

            const NAMES: &[(&str, i64)] = &[#(#names),*];

            unsafe extern "C" fn __init(services: *const #p::RuntimeServices) -> i32 {
                // SAFETY: the runtime passes its services table, valid for the process.
                unsafe { #p::init(services) }
            }

            unsafe extern "C" fn __create(
                info: *const #p::ContainerInfo,
                args: *const u8,
                args_len: usize,
                err: *mut #p::ErrorBuf,
            ) -> *mut ::core::ffi::c_void {
                // SAFETY: the runtime passes valid pointers (ModuleApi::create contract).
                unsafe { #p::create::<#ty>(info, args, args_len, err, #make) }
            }

            unsafe extern "C" fn __destroy(container: *mut ::core::ffi::c_void) {
                // SAFETY: `container` came from `__create` and is destroyed once.
                unsafe { #p::destroy::<#ty>(container) }
            }

            unsafe extern "C" fn __run(
                container: *mut ::core::ffi::c_void,
                task: *mut #p::TaskHeader,
                ctx: *mut #p::RunCtx,
                err: *mut #p::ErrorBuf,
            ) -> i32 {
                // SAFETY: the runtime passes its container, a validated task, a
                // context and an error buffer.
                unsafe {
                    #p::run::<#ty>(container, task, ctx, err, |this, task, ctx| {
                        // SAFETY: validated by the runtime.
                        match unsafe { (*task).method } {
                            #(#arms)*
                            other => ::core::result::Result::Err(#p::unsupported(#lib_lit, other, NAMES)),
                        }
                    })
                }
            }

            #(#hooks)*

            unsafe extern "C" fn __new_copy(
                _container: *mut ::core::ffi::c_void,
                task: *const #p::TaskHeader,
                err: *mut #p::ErrorBuf,
            ) -> *mut #p::TaskHeader {
                let mut copy = ::core::ptr::null_mut();
                #p::hook(
                    // SAFETY: the runtime's error buffer, or null.
                    unsafe { err.as_mut() },
                    || {
                    // SAFETY: a validated task, only read.
                    copy = match unsafe { (*task).method } {
                        #(#copy_arms)*
                        #unknown
                    }?;
                    ::core::result::Result::Ok(())
                });
                copy
            }

            unsafe extern "C" fn __task_size(method: u32) -> usize {
                match method {
                    #(#size_arms)*
                    _ => 0,
                }
            }

            static API: #p::ModuleApi = #p::ModuleApi {
                fingerprint: #p::AbiFingerprint::current(),
                name: #p::fixed_str(#lib_lit),
                init: __init,
                create: __create,
                destroy: __destroy,
                run: __run,
                monitor: #monitor,
                del: ::core::option::Option::Some(__del),
                save_in: ::core::option::Option::Some(__save_in),
                load_in: ::core::option::Option::Some(__load_in),
                save_out: ::core::option::Option::Some(__save_out),
                load_out: ::core::option::Option::Some(__load_out),
                new_copy: ::core::option::Option::Some(__new_copy),
                task_size: ::core::option::Option::Some(__task_size),
            };

            /// The module's entry: its function table.
            ///
            /// # Safety
            /// Always safe to call.
            #[unsafe(export_name = #entry_lit)]
            pub unsafe extern "C" fn entry() -> *const #p::ModuleApi {
                &API
            }
        }

        /// The module's entry (exported as `chimaera_module_entry_{CHIMOD_LIB_NAME}`):
        /// its function table. A runtime that links the module in registers it
        /// with this.
        pub const CHIMOD_ENTRY: #p::EntryFn = __chimod::entry;
    }
}

#[cfg(test)]
mod tests;
