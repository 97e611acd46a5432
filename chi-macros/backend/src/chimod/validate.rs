//! The impl block of a `#[chimod]` container against its checked YAML.
//!
//! The YAML itself was checked by [`crate::check`]; this module checks what
//! only the impl block can tell: that `create` has its shape, that every
//! supported method has a handler of the right shape and every function a
//! method, that monitors monitor supported methods, and that `kDestroy` is
//! left to `Drop`. Each problem is spanned at the function (or the type) it is
//! about and pushed to the caller's list, so all are reported together.

use std::collections::BTreeMap;

use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, Type};

use crate::check::{CheckedModule, FIRST_CUSTOM, Method};
use crate::diag::show;
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
    /// Handler name → handler.
    pub handlers: BTreeMap<String, Handler<'a>>,
    /// Handler name → its monitor.
    pub monitors: BTreeMap<String, &'a ImplItemFn>,
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
    for (h, f) in &monitors {
        let why = match methods.iter().find(|m| &m.handler() == h) {
            Some(m) if m.supported() => continue,
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
    let params = match create {
        None => {
            errors.push(syn::Error::new(
                imp.self_ty.span(),
                format!("a #[chimod] impl needs {CREATE_USAGE} (method kCreate)"),
            ));
            None
        }
        Some(f) => match create_params(f) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
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
        handlers,
        monitors,
    }
}

/// Whether `m` needs a handler the author could write: not one whose name the
/// YAML rules already rejected (a keyword, a `monitor_…` name).
fn wants_handler(m: &Method) -> bool {
    let name = m.handler();
    m.needs_handler() && !is_keyword(&name) && !name.starts_with("monitor_")
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
