//! The impl block of a `#[chimod]` container against its checked YAML.
//!
//! The YAML itself was checked by [`crate::check`]; this module checks what
//! only the impl block can tell: that `create` has its shape, that every
//! supported method has a handler of the right shape and every function a
//! method, that monitors monitor supported methods, and that `kDestroy` is
//! left to `Drop`. Each problem is spanned at the function (or the type) it is
//! about and pushed to the caller's list, so all are reported together.
//!
//! One mistake, one error: a handler of a key the YAML rules rejected (a
//! custom id below 10, say) is not told again, a monitor whose handler was
//! reported is not reported too, and a function that is left out (reported)
//! is left out of the dispatch, whose other parts are still generated.

use std::collections::BTreeMap;

use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, ReturnType, Type};

use crate::check::{CheckedModule, FIRST_CUSTOM, Method};
use crate::diag::show;
use crate::lock::LOCK_FILE;
use crate::names::{camel_case, is_keyword};

/// A handler of the impl block.
pub(super) struct Handler<'a> {
    /// The function.
    pub func: &'a ImplItemFn,
    /// `T` of its `task: &mut T` parameter.
    pub task_ty: Type,
}

/// What the impl block holds, once checked.
pub(super) struct Functions<'a> {
    /// The parameter type of `create` (`None` for a raw `&str`); `None` if
    /// `create` is missing or misshapen (reported).
    pub params: Option<Option<Type>>,
    /// The type to implement `PoolParams` for: `create`'s parameter type,
    /// also when `create` takes it the wrong way (reported), so that the
    /// clients naming it are not told about it again.
    pub pool_params: Option<Type>,
    /// Handler name → handler.
    pub handlers: BTreeMap<String, Handler<'a>>,
    /// Handler name → its monitor.
    pub monitors: BTreeMap<String, &'a ImplItemFn>,
    /// Handler name → its aggregate function (how a broadcast's replica
    /// outputs combine).
    pub aggregates: BTreeMap<String, &'a ImplItemFn>,
}

const CREATE_USAGE: &str = "`fn create(ctx: &mut chi_sdk::container::CreateCtx<'_>, params: \
     CreateParams) -> Result<Self, String>` (params: a serde type, the module's create \
     parameters; or `args: &str` for the raw argument string)";

/// Checks the functions of `imp` against the methods of `module`; problems go
/// to `errors`.
pub(super) fn functions<'a>(
    imp: &'a ItemImpl,
    module: &CheckedModule,
    errors: &mut Vec<syn::Error>,
) -> Functions<'a> {
    let shown = module.path.display().to_string();
    let methods = &module.methods;
    let mut create: Option<&ImplItemFn> = None;
    let mut handlers = BTreeMap::new();
    let mut monitors = BTreeMap::new();
    let mut aggregates = BTreeMap::new();
    // Handlers reported as handling no method: their monitors are not told.
    let mut orphans: Vec<String> = Vec::new();
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
        if let Some(h) = name.strip_prefix("aggregate_") {
            match aggregate_shape(f) {
                Ok(()) => {
                    aggregates.insert(h.to_owned(), f);
                }
                Err(e) => errors.push(e),
            }
            continue;
        }
        let Some(m) = module.method_of_handler(&name) else {
            // A key the YAML rules rejected was reported at the attribute.
            if module.rejected_key_of_handler(&name).is_none() {
                errors.push(no_method(f, module, monitor_of(imp, &name)));
                orphans.push(name);
            }
            continue;
        };
        if !m.supported() {
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
    let extras = monitors
        .iter()
        .map(|(h, f)| ("monitor", h, f))
        .chain(aggregates.iter().map(|(h, f)| ("aggregate", h, f)));
    for (kind, h, f) in extras {
        if orphans.contains(h) || module.rejected_key_of_handler(h).is_some() {
            continue;
        }
        let why = match methods.iter().find(|m| &m.handler() == h) {
            Some(m) if m.supported() => continue,
            Some(m) => format!("`{}` is -1 (unsupported) at {shown}:{}", m.key, m.line),
            None => format!(
                "no method of {shown} has the handler `{h}` ({noun} is named `{kind}_` + \
                 its method's handler, e.g. `{kind}_custom` for `kCustom`)",
                noun = if kind == "monitor" {
                    "a monitor"
                } else {
                    "an aggregate function"
                }
            ),
        };
        let verb = if kind == "monitor" {
            "monitors"
        } else {
            "aggregates"
        };
        errors.push(syn::Error::new(
            f.sig.ident.span(),
            format!("`{kind}_{h}` {verb} no supported method: {why}"),
        ));
    }
    let (params, pool_params) = check_create(imp, create, errors);
    for m in methods.iter().filter(|m| wants_handler(m)) {
        let name = m.handler();
        if !has_fn(imp, &name) {
            errors.push(syn::Error::new(
                imp.self_ty.span(),
                format!(
                    "`{}: {}` ({shown}:{}) has no handler: add `fn {name}(&self, task: &mut {}, \
                     ctx: &mut chi_sdk::abi::RunCtx) -> Result<(), String>`, or set it to -1 \
                     (unsupported)",
                    m.key,
                    m.id,
                    m.line,
                    m.task_struct()
                ),
            ));
        }
    }
    Functions {
        params,
        pool_params,
        handlers,
        monitors,
        aggregates,
    }
}

/// The functions of `imp` when its YAML could not be read: only `create` can
/// be judged (problems go to `errors`); no handler is known.
pub(super) fn create_only<'a>(imp: &'a ItemImpl, errors: &mut Vec<syn::Error>) -> Functions<'a> {
    let create = imp.items.iter().find_map(|i| match i {
        ImplItem::Fn(f) if f.sig.ident == "create" => Some(f),
        _ => None,
    });
    let (params, pool_params) = check_create(imp, create, errors);
    Functions {
        params,
        pool_params,
        handlers: BTreeMap::new(),
        monitors: BTreeMap::new(),
        aggregates: BTreeMap::new(),
    }
}

/// `create`'s parameters (see [`Functions`]): whether it can be called, and
/// the type to implement `PoolParams` for. Problems go to `errors`.
fn check_create(
    imp: &ItemImpl,
    create: Option<&ImplItemFn>,
    errors: &mut Vec<syn::Error>,
) -> (Option<Option<Type>>, Option<Type>) {
    let Some(f) = create else {
        errors.push(syn::Error::new(
            imp.self_ty.span(),
            format!("a #[chimod] impl needs {CREATE_USAGE} (method kCreate)"),
        ));
        return (None, None);
    };
    let params = match create_params(f) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    (params, pool_params(f))
}

/// The error of a function `f` that handles no method of `module` (the
/// lock's record of its key, if any, said), naming its monitor if it has one.
fn no_method(f: &ImplItemFn, module: &CheckedModule, monitor: Option<&ImplItemFn>) -> syn::Error {
    let name = f.sig.ident.to_string();
    let shown = module.path.display();
    let key = format!("k{}", camel_case(&name));
    let also = monitor
        .map(|m| format!(" and its monitor `{}`", m.sig.ident))
        .unwrap_or_default();
    let message = match module.locked.get(&key) {
        Some(id) => {
            let mut code = vec![format!("`{name}`")];
            code.extend(monitor.map(|m| format!("`{}`", m.sig.ident)));
            code.extend(handler_task_type(f).map(|t| format!("the task `{}`", show(&t))));
            format!(
                "`{name}` handles `{key}`, which is not in {shown}, but {LOCK_FILE} records `{key} \
                 = {id}` (a method removed from the YAML keeps its id): put back `{key}: {id}` to \
                 keep the method, or remove its code: {} and the client calls",
                code.join(", ")
            )
        }
        None => format!(
            "`{name}` handles no method of {shown}: add `{key}: <id>` to it (custom ids from \
             {FIRST_CUSTOM}), or move this function{also} to another impl block (every function \
             of a #[chimod] impl is a handler)"
        ),
    };
    syn::Error::new(f.sig.ident.span(), message)
}

/// The function `monitor_{handler}` of `imp`.
fn monitor_of<'a>(imp: &'a ItemImpl, handler: &str) -> Option<&'a ImplItemFn> {
    let name = format!("monitor_{handler}");
    imp.items.iter().find_map(|i| match i {
        ImplItem::Fn(f) if f.sig.ident == name => Some(f),
        _ => None,
    })
}

/// The type `create` takes its parameters as, the wrong way included (`&P`
/// gives `P`); `None` for the raw `&str` or a shape with no such type.
fn pool_params(f: &ImplItemFn) -> Option<Type> {
    let FnArg::Typed(p) = f.sig.inputs.iter().nth(1)? else {
        return None;
    };
    let ty = match &*p.ty {
        Type::Reference(r) => &*r.elem,
        other => other,
    };
    match ty {
        Type::Path(tp) if tp.path.is_ident("str") => None,
        other => Some(other.clone()),
    }
}

/// Whether `m` needs a handler the author could write: not one whose name the
/// YAML rules already rejected (a keyword, a `monitor_…` name).
fn wants_handler(m: &Method) -> bool {
    let name = m.handler();
    m.needs_handler()
        && !is_keyword(&name)
        && !name.starts_with("monitor_")
        && !name.starts_with("aggregate_")
}

/// Whether the impl has a function named `name` (if it was rejected, that was
/// reported at the function).
fn has_fn(imp: &ItemImpl, name: &str) -> bool {
    imp.items
        .iter()
        .any(|i| matches!(i, ImplItem::Fn(f) if f.sig.ident == name))
}

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
                show(&r.elem),
                show(&p.ty)
            ),
        )),
        other => Ok(Some(other.clone())),
    }
}

/// Checks the shape of an aggregate function: `fn aggregate_foo(&self,
/// task: &mut FooTask, replica: &FooTask) -> Result<(), E>` (the types are
/// the compiler's to check).
fn aggregate_shape(f: &ImplItemFn) -> syn::Result<()> {
    let name = &f.sig.ident;
    let usage = format!(
        "an aggregate function takes `(&self, task: &mut {t}, replica: &{t})` and returns \
         `Result<(), E>` with `E: Into<chi_sdk::task::Failure>` (e.g. `String`): it combines the \
         outputs of one replica of a broadcast into `task`",
        t = format!(
            "{}Task",
            camel_case(name.to_string().trim_start_matches("aggregate_"))
        )
    );
    let inputs: Vec<&FnArg> = f.sig.inputs.iter().collect();
    let ok_recv = matches!(inputs.first(), Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none());
    let ok_task = matches!(inputs.get(1), Some(FnArg::Typed(p)) if matches!(&*p.ty, Type::Reference(r) if r.mutability.is_some()));
    let ok_replica = matches!(inputs.get(2), Some(FnArg::Typed(p)) if matches!(&*p.ty, Type::Reference(r) if r.mutability.is_none()));
    if inputs.len() != 3 || !ok_recv || !ok_task || !ok_replica {
        return Err(syn::Error::new_spanned(&f.sig, usage));
    }
    if matches!(f.sig.output, ReturnType::Default) {
        return Err(syn::Error::new(
            name.span(),
            format!("`{name}` returns nothing: add `-> Result<(), String>`; {usage}"),
        ));
    }
    Ok(())
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
    if matches!(f.sig.output, ReturnType::Default) {
        let name = &f.sig.ident;
        return Err(syn::Error::new(
            name.span(),
            format!(
                "the handler `{name}` returns nothing: add `-> Result<(), String>` (a handler \
                 returns `Result<(), E>` with `E: Into<chi_sdk::task::Failure>`; an `Err` fails \
                 the task with its message)"
            ),
        ));
    }
    match inputs[1] {
        FnArg::Typed(pt) => match &*pt.ty {
            Type::Reference(r) if r.mutability.is_some() => Ok((*r.elem).clone()),
            other => Err(syn::Error::new_spanned(other, usage)),
        },
        FnArg::Receiver(r) => Err(syn::Error::new_spanned(r, usage)),
    }
}
