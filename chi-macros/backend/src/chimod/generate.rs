//! The expansion of a checked `#[chimod]` impl block.
//!
//! Everything generated calls `::chi_sdk::__private::chimod` by absolute path;
//! the functions there do the work (casting a task, containing panics, writing
//! failures to the runtime's error buffer), so what is generated here is only
//! dispatch: one `match` on the task's method per hook, one arm per supported
//! method, naming its handler and task type. `tests/snapshots/` of this crate
//! holds one whole expansion, for reading.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemImpl, LitStr, ReturnType, Type};

use super::aggregate;
use super::validate::{Functions, Handler};
use crate::check::{CheckedModule, Method};
use crate::context::include_yaml;
use crate::diag::show;
use crate::method_ids;
use crate::names::camel_case;

/// The library name generated items carry when the YAML does not give one
/// (reported): the crate does not build, but its other items still resolve.
const UNKNOWN_LIB: &str = "unknown (see the #[chimod] errors)";

/// The generated items: the impl block as written, the `method` module, the
/// library name, the create parameters' `PoolParams` impl, the includes of the
/// YAML and lock files and, if `boundary` and the library name is known, the
/// C boundary.
pub(super) fn module(
    imp: &ItemImpl,
    fns: &Functions<'_>,
    module: &CheckedModule,
    boundary: bool,
) -> TokenStream {
    let p = private();
    let lib_name = module.lib_name();
    let items = common(imp, fns, &module.methods, lib_name.as_deref());
    let includes = std::iter::once(&module.path)
        .chain(&module.repo_path)
        .chain(&module.lock_path)
        .map(|path| include_yaml(path));
    let boundary = lib_name.filter(|_| boundary).map(|lib| {
        let boundary = self::boundary(imp, fns, &module.methods, &lib);
        quote! {
            #boundary

            /// The module's entry (exported as `chimaera_module_entry_{CHIMOD_LIB_NAME}`):
            /// its function table. A runtime that links the module in registers it
            /// with this.
            pub const CHIMOD_ENTRY: #p::EntryFn = __chimod::entry;
        }
    });
    quote! {
        #items

        #(#includes)*

        #boundary
    }
}

/// The items of a module whose YAML could not be read (reported): the impl,
/// the constants (none) and `PoolParams`, so that the clients still resolve.
pub(super) fn without_module(imp: &ItemImpl, fns: &Functions<'_>) -> TokenStream {
    common(imp, fns, &[], None)
}

/// The impl block, the `method` module, `CHIMOD_LIB_NAME` and `PoolParams`.
fn common(
    imp: &ItemImpl,
    fns: &Functions<'_>,
    methods: &[Method],
    lib_name: Option<&str>,
) -> TokenStream {
    let p = private();
    let consts = method_ids::constants(methods);
    let lib_lit = LitStr::new(lib_name.unwrap_or(UNKNOWN_LIB), Span::call_site());
    let params_impl = fns.pool_params.as_ref().map(|pt| {
        quote! {
            impl #p::PoolParams for #pt {
                const CHIMOD_LIB_NAME: &'static str = #lib_lit;
            }
        }
    });
    quote! {
        #imp

        /// Method ids of this module (from its `chimaera_mod.yaml`).
        pub mod method {
            #consts
        }

        /// This module's library name (`{namespace}_{module_name}`): the runtime
        /// loads `lib{CHIMOD_LIB_NAME}_runtime.so`.
        pub const CHIMOD_LIB_NAME: &str = #lib_lit;

        #params_impl
    }
}

/// The path generated code names the module side of the boundary by.
pub(super) fn private() -> TokenStream {
    quote!(::chi_sdk::__private::chimod)
}

/// The arms of every per-method `match`, one of each per handled method.
#[derive(Default)]
struct Arms {
    /// Compile-time checks that each handler's task type has its method's id.
    checks: Vec<TokenStream>,
    /// Each handler's return-type trait (see [`returns`]).
    returns: Vec<TokenStream>,
    run: Vec<TokenStream>,
    monitor: Vec<TokenStream>,
    del: Vec<TokenStream>,
    save_in: Vec<TokenStream>,
    save_out: Vec<TokenStream>,
    load_in: Vec<TokenStream>,
    load_out: Vec<TokenStream>,
    new_copy: Vec<TokenStream>,
    task_size: Vec<TokenStream>,
    aggregate: Vec<TokenStream>,
}

impl Arms {
    fn of(methods: &[Method], fns: &Functions<'_>, lib: &str) -> Arms {
        let (handlers, monitors) = (&fns.handlers, &fns.monitors);
        let p = private();
        let mut a = Arms::default();
        let mut seen = Vec::new();
        for m in methods.iter().filter(|m| m.supported()) {
            let Some(h) = handlers.get(&m.handler()) else {
                continue;
            };
            // Two methods with one id were reported; one arm each id.
            if seen.contains(&m.id) {
                continue;
            }
            seen.push(m.id);
            let id = m.id as u32;
            let fname = &h.func.sig.ident;
            let tt = &h.task_ty;
            let msg = format!(
                "`{fname}` handles `{}` ({id} in chimaera_mod.yaml), but its task type `{}` has \
                 another METHOD: take the `#[task(method = {id})]` type",
                m.key,
                show(tt)
            );
            // Spanned at the handler's task type, so the error points there.
            a.checks.push(quote_spanned!(tt.span()=>
                const _: () = ::core::assert!(<#tt as #p::Task>::METHOD == #id, #msg);
            ));
            let (returns, call) = returns(h);
            a.returns.push(returns);
            a.run.push(quote! {
                #id => {
                    // SAFETY: the runtime validated the task's `size` bytes; `cast`
                    // checks they cover the task type and its alignment.
                    let t = unsafe { #p::cast::<#tt>(task)? };
                    #call
                }
            });
            // SAFETY (of each arm): the hooks' contracts are the runtime's, passed on.
            a.del.push(quote!(#id => unsafe { #p::del::<#tt>(task) },));
            a.save_in
                .push(quote!(#id => unsafe { #p::save::<#tt>(task, out, false) },));
            a.save_out
                .push(quote!(#id => unsafe { #p::save::<#tt>(task, out, true) },));
            a.load_in
                .push(quote!(#id => unsafe { #p::load_in::<#tt>(task, data, len, <#tt>::empty) },));
            a.load_out
                .push(quote!(#id => unsafe { #p::load_out::<#tt>(task, data, len) },));
            a.new_copy
                .push(quote!(#id => unsafe { #p::new_copy::<#tt>(task) },));
            a.task_size
                .push(quote!(#id => ::core::mem::size_of::<#tt>(),));
            let custom = fns.aggregates.get(&m.handler()).copied();
            a.aggregate.push(aggregate::arm(id, tt, custom, lib));
            if let Some(mf) = monitors.get(&m.handler()) {
                let mname = &mf.sig.ident;
                a.monitor.push(quote! {
                    #id => {
                        // SAFETY: as in `run`.
                        let t = unsafe { #p::cast::<#tt>(task)? };
                        this.#mname(mode, t, ctx);
                        ::core::result::Result::Ok(())
                    }
                });
            }
        }
        a
    }
}

/// The hidden `__chimod` module: the `extern "C"` functions of the module's
/// table, the table and the exported entry.
fn boundary(
    imp: &ItemImpl,
    fns: &Functions<'_>,
    methods: &[Method],
    lib_name: &str,
) -> TokenStream {
    let p = private();
    let ty = &imp.self_ty;
    let arms = Arms::of(methods, fns, lib_name);
    let checks = &arms.checks;
    let run_arms = &arms.run;
    let copy_arms = &arms.new_copy;
    let size_arms = &arms.task_size;
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
    let make = match &fns.params {
        Some(None) => quote!(|ctx, args| <#ty>::create(ctx, args)),
        Some(Some(pt)) => quote!(|ctx, args| <#ty>::create(ctx, #p::params::<#pt>(args)?)),
        // `create` is missing or misshapen (reported): not called.
        None => quote!(|_, _| ::core::result::Result::Err(::std::string::String::new())),
    };
    let returns = &arms.returns;
    let ret = ret_machinery();
    let unknown = quote! {
        other => ::core::result::Result::Err(#p::unsupported(#lib_lit, other, NAMES)),
    };
    let hooks = hooks(&arms, &unknown);
    let monitor = monitor(ty, &arms.monitor);
    let aggregate = aggregate::entry(ty, &arms.aggregate, &unknown);

    quote! {
        /// The module's C boundary, generated by `#[chimod]`.
        #[doc(hidden)]
        pub mod __chimod {
            #[allow(unused_imports)]
            use super::*;

            #(#checks)*
            const _: fn() = #p::assert_container::<#ty>;

            #ret
            #(#returns)*

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
                            #(#run_arms)*
                            #unknown
                        }
                    })
                }
            }

            #hooks

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
                aggregate: #aggregate,
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
    }
}

/// The items that turn a handler's return value into the runtime's
/// `Result<(), Failure>`, checking its type: `__Ret(Some(r)).__verdict()`
/// is that result for `r: Result<(), E>` with `E: Into<Failure>` (`__RetOk`,
/// found first), and `r` itself for any other type (`__RetOther`, found by
/// auto-ref), which the handler's own trait (see [`returns`]) refuses with a
/// message naming the handler. The compiler's own error would name neither
/// the handler nor what to return.
fn ret_machinery() -> TokenStream {
    let p = private();
    quote! {
        struct __Ret<R>(::core::option::Option<R>);

        trait __RetOk {
            fn __verdict(&mut self) -> ::core::result::Result<(), #p::Failure>;
        }

        impl<E: ::core::convert::Into<#p::Failure>> __RetOk for __Ret<::core::result::Result<(), E>> {
            fn __verdict(&mut self) -> ::core::result::Result<(), #p::Failure> {
                match self.0.take() {
                    ::core::option::Option::Some(r) => r.map_err(#p::failed),
                    ::core::option::Option::None => ::core::result::Result::Ok(()),
                }
            }
        }

        trait __RetOther<R> {
            fn __verdict(&mut self) -> R;
        }

        impl<R> __RetOther<R> for &mut __Ret<R> {
            fn __verdict(&mut self) -> R {
                match self.0.take() {
                    ::core::option::Option::Some(r) => r,
                    ::core::option::Option::None => ::core::unreachable!(),
                }
            }
        }
    }
}

/// The trait that accepts handler `h`'s checked result (`__{H}Returns`, for
/// `Result<(), Failure>` only, its message naming `h` and what it returns),
/// and the call of `h` through it, spanned at its return type so that a wrong
/// one is reported there.
fn returns(h: &Handler<'_>) -> (TokenStream, TokenStream) {
    let p = private();
    let fname = &h.func.sig.ident;
    let trait_name = format_ident!("__{}Returns", camel_case(&fname.to_string()));
    let (span, message, note) = match &h.func.sig.output {
        ReturnType::Type(_, ty) => {
            let shown = show(ty);
            let (message, note) = match result_error(ty) {
                Some(e) => {
                    let e = show(e);
                    (
                        format!(
                            "the handler `{fname}` returns `{shown}`, but `{e}` is not \
                             `Into<chi_sdk::task::Failure>`"
                        ),
                        format!(
                            "return `Result<(), String>` (e.g. with `.map_err(|e| e.to_string())?`), \
                             or implement `From<{e}>` for `chi_sdk::task::Failure` if `{e}` is a \
                             type of this crate"
                        ),
                    )
                }
                None => (
                    format!(
                        "the handler `{fname}` returns `{shown}`, not `Result<(), E>` with `E: \
                         Into<chi_sdk::task::Failure>`"
                    ),
                    "return `Result<(), String>`: `Ok(())` completes the task, an `Err` fails it \
                     with its message"
                        .to_owned(),
                ),
            };
            (ty.span(), message, note)
        }
        // Refused by `validate`; never generated.
        ReturnType::Default => (fname.span(), String::new(), String::new()),
    };
    let label = format!("the return type of `{fname}`");
    let item = quote! {
        #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
        trait #trait_name {
            fn __done(self) -> ::core::result::Result<(), #p::Failure>;
        }

        #[diagnostic::do_not_recommend]
        impl #trait_name for ::core::result::Result<(), #p::Failure> {
            fn __done(self) -> ::core::result::Result<(), #p::Failure> {
                self
            }
        }
    };
    let called = Ident::new(&trait_name.to_string(), span);
    let call = quote_spanned!(span=>
        #called::__done((&mut __Ret(::core::option::Option::Some(this.#fname(t, ctx)))).__verdict())
    );
    (item, call)
}

/// `E` of a return type written `Result<(), E>` (any path ending in `Result`).
fn result_error(ty: &Type) -> Option<&Type> {
    let Type::Path(tp) = ty else {
        return None;
    };
    let last = tp.path.segments.last()?;
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let tys: Vec<&Type> = args
        .args
        .iter()
        .filter_map(|a| match a {
            syn::GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect();
    match (last.ident == "Result", tys.as_slice()) {
        (true, [Type::Tuple(unit), e]) if unit.elems.is_empty() => Some(e),
        _ => None,
    }
}

/// The hooks that return a result code (`del`, `save_*`, `load_*`): each
/// dispatches on the task's method to its arms, inside `hook` (panics
/// contained, failures written to `err`).
fn hooks(arms: &Arms, unknown: &TokenStream) -> TokenStream {
    let p = private();
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
    let all = [
        hook("__del", task_mut.clone(), false, &arms.del),
        hook("__save_in", quote!(#task_ref, #sink), true, &arms.save_in),
        hook("__save_out", quote!(#task_ref, #sink), true, &arms.save_out),
        hook("__load_in", quote!(#task_mut, #bytes), true, &arms.load_in),
        hook(
            "__load_out",
            quote!(#task_mut, #bytes),
            true,
            &arms.load_out,
        ),
    ];
    quote!(#(#all)*)
}

/// The table's `monitor`: `None` (the runtime's default) without any
/// `monitor_*`, else a function dispatching to them, the default for the rest.
fn monitor(ty: &Type, arms: &[TokenStream]) -> TokenStream {
    let p = private();
    if arms.is_empty() {
        return quote!(::core::option::Option::None);
    }
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
                        #(#arms)*
                        _ => #p::default_monitor(mode, ctx),
                    }
                })
            }
        }
        ::core::option::Option::Some(__monitor as #p::MonitorFn)
    }}
}
