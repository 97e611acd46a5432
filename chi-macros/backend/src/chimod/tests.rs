//! Unit tests of `#[chimod]`: the generated items, read back with `syn`, and
//! each diagnostic.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use proc_macro2::TokenStream;
use quote::quote;

use super::*;
use crate::yaml::REPO_YAML;

/// A repository directory with `chimaera_repo.yaml` (unless `repo` is `None`)
/// and a module subdirectory holding `chimaera_mod.yaml`; removed on drop.
struct Repo(PathBuf);

impl Repo {
    fn new(repo: Option<&str>, module: &str) -> Repo {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chimod-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("m")).unwrap();
        if let Some(r) = repo {
            std::fs::write(dir.join(REPO_YAML), r).unwrap();
        }
        std::fs::write(dir.join("m").join("chimaera_mod.yaml"), module).unwrap();
        Repo(dir)
    }

    fn ctx(&self) -> Context {
        Context {
            manifest_dir: Some(self.0.join("m")),
            source_file: None,
        }
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const REPO: &str = "namespace: chimaera\nmodules:\n  - m\n";
const MODULE: &str = "\
module_name: mod_name
namespace: chimaera
kCreate: 0
kDestroy: 1
kNodeFailure: -1
kRecover: -1
kMigrate: -1
kUpgrade: -1
kCustom: 10
kCoMutexTest: 11
kGone: -1
";

/// A container with typed create parameters, two handlers and a monitor.
fn item() -> TokenStream {
    quote! {
        impl MyContainer {
            fn create(ctx: &mut CreateCtx<'_>, params: Params) -> Result<Self, String> { Err(String::new()) }
            fn custom(&self, task: &mut CustomTask, ctx: &mut RunCtx) -> Result<(), String> { Ok(()) }
            fn co_mutex_test(&self, task: &mut CoMutexTestTask, ctx: &mut RunCtx) -> Result<(), Failure> { Ok(()) }
            fn monitor_custom(&self, mode: MonitorMode, task: &CustomTask, ctx: &mut RunCtx) {}
        }
    }
}

fn errors(e: syn::Error) -> Vec<String> {
    e.into_iter().map(|e| e.to_string()).collect()
}

/// The expansion, parsed (so it is valid Rust syntax).
fn expand_ok(it: TokenStream, r: &Repo) -> syn::File {
    let out = expand(quote!(), it, &r.ctx()).unwrap();
    syn::parse2(out.clone()).unwrap_or_else(|e| panic!("{e}: not Rust:\n{out}"))
}

/// `ts` as text, as `quote` spaces it (for comparing pieces of an expansion).
fn text(ts: impl quote::ToTokens) -> String {
    ts.into_token_stream().to_string()
}

/// The items of `pub mod name { … }` among `items`.
fn module<'a>(items: &'a [syn::Item], name: &str) -> &'a [syn::Item] {
    items
        .iter()
        .find_map(|i| match i {
            syn::Item::Mod(m) if m.ident == name => m.content.as_ref().map(|c| &c.1[..]),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no `mod {name}`"))
}

/// The item named `name` among `items` (a const, a static or a function).
fn named<'a>(items: &'a [syn::Item], name: &str) -> &'a syn::Item {
    items
        .iter()
        .find(|i| match i {
            syn::Item::Const(c) => c.ident == name,
            syn::Item::Static(s) => s.ident == name,
            syn::Item::Fn(f) => f.sig.ident == name,
            _ => false,
        })
        .unwrap_or_else(|| panic!("no item `{name}`"))
}

/// The method ids that have a match arm in `code` (`11u32 => …`).
fn arm_ids(code: &str) -> Vec<&str> {
    let tokens: Vec<&str> = code.split(' ').collect();
    tokens
        .windows(2)
        .filter(|w| w[1] == "=>" && w[0].ends_with("u32"))
        .map(|w| w[0])
        .collect()
}

/// The `const NAME: … = value;` items among `items`, as (name, value text).
fn consts(items: &[syn::Item]) -> Vec<(String, String)> {
    items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Const(c) => Some((c.ident.to_string(), text(&c.expr))),
            _ => None,
        })
        .collect()
}

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

    // run: each arm casts to the handler's task type and maps its error to a
    // Failure; anything else is unsupported.
    let run = text(named(c, "__run"));
    for (id, ty, handler) in [
        (10u32, quote!(CustomTask), quote!(custom)),
        (11u32, quote!(CoMutexTestTask), quote!(co_mutex_test)),
    ] {
        let arm = text(quote! {
            #id => {
                let t = unsafe { #p::cast::<#ty>(task)? };
                this.#handler(t, ctx).map_err(#p::failed)
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

#[test]
fn typed_params_get_pool_params_and_raw_args_do_not() {
    let r = Repo::new(Some(REPO), MODULE);
    let file = expand_ok(item(), &r);
    let impls: Vec<String> = file
        .items
        .iter()
        .filter(|i| matches!(i, syn::Item::Impl(im) if im.trait_.is_some()))
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
            .any(|i| matches!(i, syn::Item::Impl(im) if im.trait_.is_some())),
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

#[test]
fn reports_every_problem_at_once() {
    let module = "\
module_name: m
namespace: other
kCreate: 0
kDestroy: -1
kNodeFailure: 7
kCustom: 10
kAlso: 10
kLow: 5
kGone: -1
custom: 12
kType: 13
";
    let r = Repo::new(Some(REPO), module);
    let it = quote! {
        impl C {
            fn extra(&self, t: &mut ExtraTask, c: &mut RunCtx) -> Result<(), String> { Ok(()) }
            fn gone(&self, t: &mut GoneTask, c: &mut RunCtx) -> Result<(), String> { Ok(()) }
            fn monitor_nothing(&self, m: MonitorMode, t: &X, c: &mut RunCtx) {}
        }
    };
    let msgs = errors(expand(quote!(), it, &r.ctx()).unwrap_err());
    let want = [
        "chimaera_mod.yaml:2: `namespace: other` disagrees with `namespace: chimaera`",
        "chimaera_mod.yaml:4: `kDestroy: -1`: `kDestroy` is inherited and its id is 1",
        "chimaera_mod.yaml:5: `kNodeFailure: 7`: `kNodeFailure` is inherited and its id is 2 or \
         -1 (unsupported)",
        "chimaera_mod.yaml:8: `kLow: 5`: custom methods have ids from 10",
        "chimaera_mod.yaml: duplicate method id 10: `kAlso` (line 7) and `kCustom` (line 6)",
        // The rules `cargo chimod refresh` applies, which the macro once skipped.
        "chimaera_mod.yaml:10: unknown key `custom` (did you mean `kCustom`?)",
        "chimaera_mod.yaml:11: `kType` maps to the handler `type`, a Rust keyword",
        "`extra` handles no method",
        "add `kExtra: <id>`",
        "`kGone` is -1 (unsupported)",
        "`monitor_nothing` monitors no supported method",
        "needs `fn create(",
        "`kCustom: 10`",
        "has no handler: add `fn custom(&self, task: &mut CustomTask",
    ];
    for w in want {
        assert!(msgs.iter().any(|m| m.contains(w)), "no `{w}` in {msgs:#?}");
    }
    // kAlso has no handler either; kType's missing handler is not reported
    // again (no function can have its name).
    assert_eq!(msgs.len(), 13, "{msgs:#?}");
}

#[test]
fn a_handler_of_the_wrong_shape_is_reported_once() {
    let r = Repo::new(Some(REPO), "module_name: a\nkCreate: 0\nkCustom: 10\n");
    let it = quote! {
        impl C {
            fn create(c: &mut CreateCtx<'_>, a: &str) -> Result<Self, String> { Err(String::new()) }
            fn custom(&mut self, t: CustomTask) -> Result<(), String> { Ok(()) }
        }
    };
    let msgs = errors(expand(quote!(), it, &r.ctx()).unwrap_err());
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert!(
        msgs[0].contains("a handler takes `(&self, task: &mut CustomTask"),
        "{msgs:#?}"
    );
}

#[test]
fn create_signatures() {
    let r = Repo::new(Some(REPO), "module_name: a\nkCreate: 0\nkDestroy: 1\n");
    let create = |sig: TokenStream| {
        let it = quote!(impl C { #sig { Err(String::new()) } });
        expand(quote!(), it, &r.ctx()).map_err(errors)
    };
    let by_ref =
        create(quote!(fn create(c: &mut CreateCtx<'_>, p: &Params) -> Result<Self, String>))
            .unwrap_err();
    assert_eq!(by_ref.len(), 1, "{by_ref:#?}");
    assert!(
        by_ref[0].starts_with("create takes its parameters by value (`Params`, not `&Params`;"),
        "{by_ref:#?}"
    );
    let one = create(quote!(fn create(a: &str) -> Result<Self, String>)).unwrap_err();
    assert!(
        one[0].starts_with(
            "create takes 2 parameters (its context and its create parameters), not 1"
        ),
        "{one:#?}"
    );
    let three =
        create(quote!(fn create(c: &mut CreateCtx<'_>, a: &str, b: u32) -> Result<Self, String>))
            .unwrap_err();
    assert!(three[0].contains("not 3"), "{three:#?}");
    let receiver = create(quote!(fn create(&self, a: &str) -> Result<Self, String>)).unwrap_err();
    assert!(
        receiver[0].starts_with("create is an associated function, without `self`"),
        "{receiver:#?}"
    );
    let ctx_by_value =
        create(quote!(fn create(c: CreateCtx<'_>, a: &str) -> Result<Self, String>)).unwrap_err();
    assert!(
        ctx_by_value[0].starts_with("the first parameter of create is `&mut CreateCtx<'_>`"),
        "{ctx_by_value:#?}"
    );
    for ok in [
        quote!(fn create(c: &mut CreateCtx<'_>, a: &str) -> Result<Self, String>),
        quote!(fn create(c: &mut CreateCtx<'_>, p: my::Params) -> Result<Self, String>),
    ] {
        assert!(create(ok.clone()).is_ok(), "{ok}");
    }
}

#[test]
fn destroy_generic_and_trait_impls() {
    let r = Repo::new(Some(REPO), "module_name: a\nkCreate: 0\nkDestroy: 1\n");
    let create = quote!(
        fn create(c: &mut CreateCtx<'_>, a: &str) -> Result<Self, String> {
            Err(String::new())
        }
    );

    let it = quote!(impl C { #create fn destroy(&self, t: &mut DestroyTask, c: &mut RunCtx) -> Result<(), String> { Ok(()) } });
    let msgs = errors(expand(quote!(), it, &r.ctx()).unwrap_err());
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert!(
        msgs[0].starts_with("kDestroy drops the container: implement `Drop`"),
        "{msgs:#?}"
    );

    let it = quote!(impl<T: Send> C<T> { #create });
    let msgs = errors(expand(quote!(), it, &r.ctx()).unwrap_err());
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert!(
        msgs[0].starts_with("a container cannot be generic"),
        "{msgs:#?}"
    );

    // A trait impl is reported alone: its functions are not handlers.
    let it = quote!(impl Default for C { fn default() -> Self { C } });
    let msgs = errors(expand(quote!(), it, &r.ctx()).unwrap_err());
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert!(
        msgs[0].starts_with("#[chimod] applies to an inherent impl block"),
        "{msgs:#?}"
    );
}

#[test]
fn missing_yaml_and_namespace() {
    let r = Repo::new(None, "module_name: a\nkCreate: 0\n");
    let it = quote!(impl C { fn create(c: &mut CreateCtx<'_>, a: &str) -> Result<Self, String> { Err(String::new()) } });
    let msgs = errors(expand(quote!(), it.clone(), &r.ctx()).unwrap_err());
    assert!(msgs[0].contains("no namespace"), "{msgs:#?}");
    let ctx = Context {
        manifest_dir: Some(r.0.join("nowhere")),
        source_file: None,
    };
    let msgs = errors(expand(quote!(), it.clone(), &ctx).unwrap_err());
    assert!(msgs[0].contains("chimaera_mod.yaml not found"), "{msgs:#?}");
    assert!(msgs[0].contains("beside its Cargo.toml"), "{msgs:#?}");
    let msgs = errors(expand(quote!(yaml = "/nowhere/m.yaml"), it, &ctx).unwrap_err());
    assert!(
        msgs[0].starts_with("/nowhere/m.yaml not found: #[chimod] reads the module's methods from it; check the `yaml = \"…\"` path"),
        "{msgs:#?}"
    );
}

#[test]
fn not_an_inherent_impl() {
    let r = Repo::new(Some(REPO), "module_name: a\nkCreate: 0\n");
    let e = expand(
        quote!(),
        quote!(
            struct S;
        ),
        &r.ctx(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("inherent `impl Container"), "{e}");
    let e = expand(quote!(colour = 1), quote!(impl S {}), &r.ctx()).unwrap_err();
    assert!(e.to_string().contains("unknown argument"), "{e}");
}
