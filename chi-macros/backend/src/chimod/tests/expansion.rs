//! The items `#[chimod]` generates: constants, library name, entry, the C
//! boundary's dispatch, the create parameters' impl.

use std::path::Path;

use proc_macro2::TokenStream;
use quote::quote;

use super::*;

#[test]
fn expands_constants_lib_name_and_entry() {
    let r = Repo::new(Some(REPO), MODULE);
    let file = expand_ok(item(), &r);
    let items = &file.items;

    // The impl block is kept as written.
    assert_eq!(text(&items[0]), item().to_string());

    // One constant per supported method, none for a -1 method; ALL has every key.
    let method = consts(module(items, "method"));
    let want: Vec<(String, String)> = [
        ("CO_MUTEX_TEST", "11u32"),
        ("CREATE", "0u32"),
        ("CUSTOM", "10u32"),
        ("DESTROY", "1u32"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .chain(std::iter::once((
        "ALL".to_string(),
        text(quote!(&[
            ("kCoMutexTest", 11i64),
            ("kCreate", 0i64),
            ("kCustom", 10i64),
            ("kDestroy", 1i64),
            ("kGone", -1i64),
            ("kMigrate", -1i64),
            ("kNodeFailure", -1i64),
            ("kRecover", -1i64),
            ("kUpgrade", -1i64)
        ])),
    )))
    .collect();
    assert_eq!(method, want);

    assert_eq!(
        text(named(items, "CHIMOD_LIB_NAME")),
        text(quote!(
            #[doc = r" This module's library name (`{namespace}_{module_name}`): the runtime"]
            #[doc = r" loads `lib{CHIMOD_LIB_NAME}_runtime.so`."]
            pub const CHIMOD_LIB_NAME: &str = "chimaera_mod_name";
        ))
    );
    let entry = text(named(items, "CHIMOD_ENTRY"));
    assert!(
        entry.ends_with(&text(quote!(
            pub const CHIMOD_ENTRY: ::chi_sdk::__private::chimod::EntryFn = __chimod::entry;
        ))),
        "{entry}"
    );

    // The C boundary: its entry is exported under the library's name and
    // returns the table, which has this build's fingerprint and every hook.
    let c = module(items, "__chimod");
    let syn::Item::Fn(f) = named(c, "entry") else {
        panic!("`entry` is not a function")
    };
    assert!(
        f.attrs.iter().any(|a| text(a)
            == text(quote!(#[unsafe(export_name = "chimaera_module_entry_chimaera_mod_name")]))),
        "{}",
        text(f)
    );
    assert_eq!(text(&f.sig.abi), text(quote!(extern "C")));
    assert_eq!(text(&f.block), text(quote!({ &API })));
    let api = text(named(c, "API"));
    for field in [
        quote!(fingerprint: ::chi_sdk::__private::chimod::AbiFingerprint::current(),),
        quote!(name: ::chi_sdk::__private::chimod::fixed_str("chimaera_mod_name"),),
        quote!(init: __init, create: __create, destroy: __destroy, run: __run,),
        quote!(del: ::core::option::Option::Some(__del),),
        quote!(save_in: ::core::option::Option::Some(__save_in),),
        quote!(load_in: ::core::option::Option::Some(__load_in),),
        quote!(save_out: ::core::option::Option::Some(__save_out),),
        quote!(load_out: ::core::option::Option::Some(__load_out),),
        quote!(new_copy: ::core::option::Option::Some(__new_copy),),
        quote!(task_size: ::core::option::Option::Some(__task_size),),
        quote!(::core::option::Option::Some(
            __monitor as ::chi_sdk::__private::chimod::MonitorFn
        )),
    ] {
        assert!(api.contains(&text(&field)), "no `{field}` in\n{api}");
    }

    // Compile-time checks: each handler's task type has its method's id, and
    // the container may be shared between workers.
    let checks: Vec<String> = consts(c)
        .into_iter()
        .filter(|(n, _)| n == "_")
        .map(|(_, v)| v)
        .collect();
    let method_check = |ty: TokenStream, id: u32, msg: &str| {
        text(quote!(::core::assert!(
            <#ty as ::chi_sdk::__private::chimod::Task>::METHOD == #id,
            #msg
        )))
    };
    assert_eq!(
        checks,
        [
            method_check(
                quote!(CoMutexTestTask),
                11,
                "`co_mutex_test` handles `kCoMutexTest` (11 in chimaera_mod.yaml), but its task \
                 type `CoMutexTestTask` has another METHOD: take the `#[task(method = 11)]` type"
            ),
            method_check(
                quote!(CustomTask),
                10,
                "`custom` handles `kCustom` (10 in chimaera_mod.yaml), but its task type \
                 `CustomTask` has another METHOD: take the `#[task(method = 10)]` type"
            ),
            text(quote!(
                ::chi_sdk::__private::chimod::assert_container::<MyContainer>
            )),
        ]
    );

    // Both YAML files are included, so editing them rebuilds.
    let mod_yaml = r.0.join("m").join("chimaera_mod.yaml");
    let repo_yaml = r.0.join(REPO_YAML);
    let includes: Vec<String> = consts(items)
        .into_iter()
        .filter(|(n, _)| n == "_")
        .map(|(_, v)| v)
        .collect();
    let include = |p: &Path| {
        let l = p.display().to_string();
        text(quote!(include_bytes!(#l)))
    };
    assert_eq!(includes, [include(&mod_yaml), include(&repo_yaml)]);
}

#[test]
fn dispatches_every_supported_method_and_only_those() {
    let r = Repo::new(Some(REPO), MODULE);
    let file = expand_ok(item(), &r);
    let c = module(&file.items, "__chimod");
    let p = quote!(::chi_sdk::__private::chimod);
    let unsupported = text(
        quote!(other => ::core::result::Result::Err(#p::unsupported("chimaera_mod_name", other, NAMES)),),
    );

    // NAMES, for the "unsupported" message, has every key (-1 included).
    assert!(
        text(named(c, "NAMES")).contains(&text(quote!(("kGone", -1i64)))),
        "{}",
        text(named(c, "NAMES"))
    );

    // run: each arm casts to the handler's task type and turns its result
    // into a Failure through the handler's return-type trait; anything else
    // is unsupported.
    let run = text(named(c, "__run"));
    for (id, ty, handler, returns) in [
        (
            10u32,
            quote!(CustomTask),
            quote!(custom),
            quote!(__CustomReturns),
        ),
        (
            11u32,
            quote!(CoMutexTestTask),
            quote!(co_mutex_test),
            quote!(__CoMutexTestReturns),
        ),
    ] {
        let arm = text(quote! {
            #id => {
                let t = unsafe { #p::cast::<#ty>(task)? };
                #returns::__done((&mut __Ret(::core::option::Option::Some(this.#handler(t, ctx)))).__verdict())
            }
        });
        assert!(run.contains(&arm), "no `{arm}` in\n{run}");
    }
    assert!(run.contains(&unsupported), "{run}");
    assert!(run.contains(&text(quote!(#p::run::<MyContainer>))), "{run}");
    // No arm for kCreate, kDestroy or a -1 method.
    assert_eq!(arm_ids(&run), ["11u32", "10u32"], "{run}");

    // create decodes the typed parameters.
    let create = text(named(c, "__create"));
    let make = text(quote!(
        |ctx, args| <MyContainer>::create(ctx, #p::params::<Params>(args)?)
    ));
    assert!(create.contains(&make), "no `{make}` in\n{create}");
    let destroy = text(named(c, "__destroy"));
    assert!(
        destroy.contains(&text(quote!(#p::destroy::<MyContainer>(container)))),
        "{destroy}"
    );

    // The per-method hooks: one arm per supported method, over its task type.
    type Arm = fn(TokenStream) -> TokenStream;
    let hooks: [(&str, Arm); 7] = [
        (
            "__del",
            |t| quote!(unsafe { ::chi_sdk::__private::chimod::del::<#t>(task) },),
        ),
        (
            "__save_in",
            |t| quote!(unsafe { ::chi_sdk::__private::chimod::save::<#t>(task, out, false) },),
        ),
        (
            "__save_out",
            |t| quote!(unsafe { ::chi_sdk::__private::chimod::save::<#t>(task, out, true) },),
        ),
        (
            "__load_in",
            |t| quote!(unsafe { ::chi_sdk::__private::chimod::load_in::<#t>(task, data, len, <#t>::empty) },),
        ),
        (
            "__load_out",
            |t| quote!(unsafe { ::chi_sdk::__private::chimod::load_out::<#t>(task, data, len) },),
        ),
        (
            "__new_copy",
            |t| quote!(unsafe { ::chi_sdk::__private::chimod::new_copy::<#t>(task) },),
        ),
        ("__task_size", |t| quote!(::core::mem::size_of::<#t>(),)),
    ];
    for (name, arm) in hooks {
        let f = text(named(c, name));
        for (id, ty) in [
            (10u32, quote!(CustomTask)),
            (11u32, quote!(CoMutexTestTask)),
        ] {
            let body = arm(ty);
            let want = text(quote!(#id => #body));
            assert!(f.contains(&want), "no `{want}` in\n{f}");
        }
        // Only the two supported methods have arms.
        assert_eq!(arm_ids(&f), ["11u32", "10u32"], "{f}");
        let fallback = if name == "__task_size" {
            text(quote!(_ => 0,))
        } else {
            unsupported.clone()
        };
        assert!(f.contains(&fallback), "no `{fallback}` in\n{f}");
    }

    // monitor: the author's for kCustom, the default for the rest.
    let api = text(named(c, "API"));
    let arm = text(quote! {
        10u32 => {
            let t = unsafe { #p::cast::<CustomTask>(task)? };
            this.monitor_custom(mode, t, ctx);
            ::core::result::Result::Ok(())
        }
        _ => #p::default_monitor(mode, ctx),
    });
    assert!(api.contains(&arm), "no `{arm}` in\n{api}");
}

/// Whether `im` implements `PoolParams`.
fn is_pool_params(im: &syn::ItemImpl) -> bool {
    im.trait_
        .as_ref()
        .is_some_and(|(_, p, _)| p.segments.last().is_some_and(|s| s.ident == "PoolParams"))
}

#[test]
fn typed_params_get_pool_params_and_raw_args_do_not() {
    let r = Repo::new(Some(REPO), MODULE);
    let file = expand_ok(item(), &r);
    let impls: Vec<String> = file
        .items
        .iter()
        .filter(|i| matches!(i, syn::Item::Impl(im) if is_pool_params(im)))
        .map(text)
        .collect();
    assert_eq!(
        impls,
        [text(quote! {
            impl ::chi_sdk::__private::chimod::PoolParams for Params {
                const CHIMOD_LIB_NAME: &'static str = "chimaera_mod_name";
            }
        })]
    );

    let raw = quote! {
        impl MyContainer {
            fn create(ctx: &mut CreateCtx<'_>, args: &str) -> Result<Self, String> { Err(String::new()) }
            fn custom(&self, task: &mut CustomTask, ctx: &mut RunCtx) -> Result<(), String> { Ok(()) }
            fn co_mutex_test(&self, task: &mut CoMutexTestTask, ctx: &mut RunCtx) -> Result<(), String> { Ok(()) }
        }
    };
    let file = expand_ok(raw, &r);
    assert!(
        !file
            .items
            .iter()
            .any(|i| matches!(i, syn::Item::Impl(im) if is_pool_params(im))),
        "a trait impl for `&str` args"
    );
    let c = module(&file.items, "__chimod");
    let create = text(named(c, "__create"));
    let make = text(quote!(|ctx, args| <MyContainer>::create(ctx, args)));
    assert!(create.contains(&make), "no `{make}` in\n{create}");
}

#[test]
fn without_monitors_the_table_has_none() {
    let r = Repo::new(
        Some(REPO),
        "module_name: a\nkCreate: 0\nkDestroy: 1\nkCustom: 10\n",
    );
    let it = quote! {
        impl C {
            fn create(c: &mut CreateCtx<'_>, a: &str) -> Result<Self, String> { Err(String::new()) }
            fn custom(&self, t: &mut CustomTask, c: &mut RunCtx) -> Result<(), String> { Ok(()) }
        }
    };
    let file = expand_ok(it, &r);
    let api = text(named(module(&file.items, "__chimod"), "API"));
    assert!(
        api.contains(&text(quote!(monitor: ::core::option::Option::None,))),
        "{api}"
    );
    // The namespace comes from the repository.
    assert_eq!(
        consts(&file.items)
            .into_iter()
            .find(|(n, _)| n == "CHIMOD_LIB_NAME"),
        Some(("CHIMOD_LIB_NAME".into(), "\"chimaera_a\"".into()))
    );
}
