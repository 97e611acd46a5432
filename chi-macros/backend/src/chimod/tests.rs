use std::sync::atomic::{AtomicU32, Ordering};

use quote::quote;

use super::*;

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

fn item() -> TokenStream {
    quote! {
        impl MyContainer {
            fn create(info: &ContainerInfo, args: &str) -> Result<Self, String> { Err(String::new()) }
            fn custom(&self, task: &mut CustomTask, ctx: &mut RunCtx) -> Result<(), String> { Ok(()) }
            fn co_mutex_test(&self, task: &mut CoMutexTestTask, ctx: &mut RunCtx) -> Result<(), String> { Ok(()) }
            fn monitor_custom(&self, mode: MonitorMode, task: &CustomTask, ctx: &mut RunCtx) {}
        }
    }
}

fn errors(e: syn::Error) -> Vec<String> {
    e.into_iter().map(|e| e.to_string()).collect()
}

#[test]
fn snake_case_of_keys() {
    assert_eq!(snake_case("Custom"), "custom");
    assert_eq!(snake_case("CoMutexTest"), "co_mutex_test");
    assert_eq!(snake_case("NodeFailure"), "node_failure");
    assert_eq!(snake_case("IOStat"), "io_stat");
    assert_eq!(snake_case("Get2Keys"), "get2_keys");
}

#[test]
fn expands_constants_entry_and_dispatch() {
    let r = Repo::new(Some(REPO), MODULE);
    let out = expand(quote!(), item(), &r.ctx()).unwrap().to_string();
    for needle in [
        "pub mod method",
        "pub const CUSTOM : u32 = 10u32",
        "pub const CO_MUTEX_TEST : u32 = 11u32",
        "pub const CREATE : u32 = 0u32",
        "(\"kGone\" , - 1i64)",
        "pub const CHIMOD_LIB_NAME : & str = \"chimaera_mod_name\"",
        "chimaera_module_entry",
        "# [unsafe (no_mangle)]",
        "AbiFingerprint :: current ()",
        "cast :: < CustomTask >",
        "this . custom (t , ctx)",
        "this . monitor_custom (mode , t , ctx)",
        "< CoMutexTestTask as :: chi_sdk :: __private :: chimod :: Task > :: METHOD == 11u32",
        "unsupported (\"chimaera_mod_name\"",
        "assert_container :: < MyContainer >",
    ] {
        assert!(out.contains(needle), "no `{needle}` in\n{out}");
    }
    // Both YAML files are included, so editing them rebuilds.
    let mod_yaml = r.0.join("m").join("chimaera_mod.yaml");
    let repo_yaml = r.0.join(REPO_YAML);
    for p in [mod_yaml, repo_yaml] {
        let lit = format!("include_bytes ! ({:?})", p.display().to_string());
        assert!(out.contains(&lit), "no `{lit}` in\n{out}");
    }
}

#[test]
fn without_monitors_the_table_has_none() {
    let r = Repo::new(
        Some(REPO),
        "module_name: a\nkCreate: 0\nkDestroy: 1\nkCustom: 10\n",
    );
    let it = quote! {
        impl C {
            fn create(i: &ContainerInfo, a: &str) -> Result<Self, String> { Err(String::new()) }
            fn custom(&self, t: &mut CustomTask, c: &mut RunCtx) -> Result<(), String> { Ok(()) }
        }
    };
    let out = expand(quote!(), it, &r.ctx()).unwrap().to_string();
    assert!(
        out.contains("monitor : :: core :: option :: Option :: None"),
        "{out}"
    );
    // The namespace comes from the repository.
    assert!(out.contains("\"chimaera_a\""), "{out}");
}

#[test]
fn reports_every_problem_at_once() {
    let module = "\
module_name: m
namespace: other
kCreate: 0
kDestroy: 1
kNodeFailure: 7
kCustom: 10
kAlso: 10
kLow: 5
kGone: -1
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
        "`namespace: other`",
        "disagrees with `namespace: chimaera`",
        "`kNodeFailure: 7`",
        "`kLow: 5` at",
        "custom methods have ids from 10",
        "duplicate method id 10: `kAlso`",
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
}

#[test]
fn a_handler_of_the_wrong_shape_is_reported_once() {
    let r = Repo::new(Some(REPO), "module_name: a\nkCreate: 0\nkCustom: 10\n");
    let it = quote! {
        impl C {
            fn create(i: &ContainerInfo, a: &str) -> Result<Self, String> { Err(String::new()) }
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
fn missing_yaml_and_namespace() {
    let r = Repo::new(None, "module_name: a\nkCreate: 0\n");
    let it = quote!(impl C { fn create(i: &ContainerInfo, a: &str) -> Result<Self, String> { Err(String::new()) } });
    let msgs = errors(expand(quote!(), it.clone(), &r.ctx()).unwrap_err());
    assert!(msgs[0].contains("no namespace"), "{msgs:#?}");
    let ctx = Context {
        manifest_dir: Some(r.0.join("nowhere")),
        source_file: None,
    };
    let msgs = errors(expand(quote!(), it, &ctx).unwrap_err());
    assert!(msgs[0].contains("chimaera_mod.yaml not found"), "{msgs:#?}");
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
