//! Every diagnostic of `#[chimod]`: the YAML rules (those of `cargo chimod
//! refresh`), the impl block against the methods, the item's shape.

use proc_macro2::TokenStream;
use quote::quote;

use super::*;

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
