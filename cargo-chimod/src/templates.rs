//! The templates `cargo chimod` renders, embedded in the binary (the sources
//! are `cargo-chimod/templates/`), and their rendering with minijinja.
//!
//! Every template id is a constant here; [`REPO_FILES`] and [`MODULE_FILES`]
//! say where each file of a new repository or module goes. Rendering is strict:
//! a variable the context lacks is an error, which the unit tests catch for
//! every template.
//!
//! Variables:
//! * repository templates: `namespace`, `repo_name`, `sdk_dep` (the TOML value
//!   of the chi-sdk dependency), `sdk_note`, `module` (the first module),
//!   `lib_name`, `version`;
//! * module templates: `namespace`, `module`, `lib_name` (`{namespace}_{module}`),
//!   `crate_lib` (`{lib_name}_runtime`, the crate's lib name), `container`,
//!   `client` and `params` (type names), `version`, `runtime_hint` (how to get
//!   `chi-runtime`);
//! * scaffold templates (`refresh`): `key`, `id`, `handler`, `monitor`,
//!   `task`, `task_path` (the task type as the impl block's file names it),
//!   `file` (where the handler is, for messages).

use anyhow::{Context, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior, Value};

/// `chimaera_repo.yaml` of a new repository.
pub const REPO_YAML: &str = "repo/chimaera_repo.yaml";
/// The workspace `Cargo.toml`.
pub const REPO_CARGO: &str = "repo/Cargo.toml";
/// The repository README.
pub const REPO_README: &str = "repo/README.md";
/// `.gitignore`.
pub const REPO_GITIGNORE: &str = "repo/gitignore";

/// A module's `Cargo.toml`.
pub const MOD_CARGO: &str = "module/Cargo.toml";
/// A module's `chimaera_mod.yaml`.
pub const MOD_YAML: &str = "module/chimaera_mod.yaml";
/// A module's README.
pub const MOD_README: &str = "module/README.md";
/// `src/lib.rs`.
pub const MOD_LIB: &str = "module/src/lib.rs";
/// `src/tasks.rs`.
pub const MOD_TASKS: &str = "module/src/tasks.rs";
/// `src/runtime.rs`.
pub const MOD_RUNTIME: &str = "module/src/runtime.rs";
/// `src/client.rs`.
pub const MOD_CLIENT: &str = "module/src/client.rs";
/// `tests/support/mod.rs`: starting and stopping a runtime for the tests.
pub const MOD_TEST_SUPPORT: &str = "module/tests/support/mod.rs";
/// `tests/{module}.rs`.
pub const MOD_TEST: &str = "module/tests/module.rs";
/// `examples/{module}_call.rs`: calls the example method of a running runtime's pool.
pub const MOD_CALL: &str = "module/examples/call.rs";

/// A task struct for a new method (appended to the tasks file).
pub const SCAFFOLD_TASK: &str = "scaffold/task.rs";
/// A handler for a new method (inserted at the end of the `#[chimod]` impl).
pub const SCAFFOLD_HANDLER: &str = "scaffold/handler.rs";
/// A monitor for a new method (inserted after its handler).
pub const SCAFFOLD_MONITOR: &str = "scaffold/monitor.rs";

/// Every template: id and source.
pub const ALL: &[(&str, &str)] = &[
    (
        REPO_YAML,
        include_str!("../templates/repo/chimaera_repo.yaml.jinja"),
    ),
    (
        REPO_CARGO,
        include_str!("../templates/repo/Cargo.toml.jinja"),
    ),
    (
        REPO_README,
        include_str!("../templates/repo/README.md.jinja"),
    ),
    (
        REPO_GITIGNORE,
        include_str!("../templates/repo/gitignore.jinja"),
    ),
    (
        MOD_CARGO,
        include_str!("../templates/module/Cargo.toml.jinja"),
    ),
    (
        MOD_YAML,
        include_str!("../templates/module/chimaera_mod.yaml.jinja"),
    ),
    (
        MOD_README,
        include_str!("../templates/module/README.md.jinja"),
    ),
    (
        MOD_LIB,
        include_str!("../templates/module/src/lib.rs.jinja"),
    ),
    (
        MOD_TASKS,
        include_str!("../templates/module/src/tasks.rs.jinja"),
    ),
    (
        MOD_RUNTIME,
        include_str!("../templates/module/src/runtime.rs.jinja"),
    ),
    (
        MOD_CLIENT,
        include_str!("../templates/module/src/client.rs.jinja"),
    ),
    (
        MOD_TEST_SUPPORT,
        include_str!("../templates/module/tests/support/mod.rs.jinja"),
    ),
    (
        MOD_TEST,
        include_str!("../templates/module/tests/module.rs.jinja"),
    ),
    (
        MOD_CALL,
        include_str!("../templates/module/examples/call.rs.jinja"),
    ),
    (
        SCAFFOLD_TASK,
        include_str!("../templates/scaffold/task.rs.jinja"),
    ),
    (
        SCAFFOLD_HANDLER,
        include_str!("../templates/scaffold/handler.rs.jinja"),
    ),
    (
        SCAFFOLD_MONITOR,
        include_str!("../templates/scaffold/monitor.rs.jinja"),
    ),
];

/// The files of a new repository (besides its first module): template id and
/// path relative to the repository root.
pub const REPO_FILES: &[(&str, &str)] = &[
    (REPO_YAML, "chimaera_repo.yaml"),
    (REPO_CARGO, "Cargo.toml"),
    (REPO_README, "README.md"),
    (REPO_GITIGNORE, ".gitignore"),
];

/// The files of a new module: template id and path relative to the module
/// directory (`{module}` is replaced by the module's name).
pub const MODULE_FILES: &[(&str, &str)] = &[
    (MOD_CARGO, "Cargo.toml"),
    (MOD_YAML, "chimaera_mod.yaml"),
    (MOD_README, "README.md"),
    (MOD_LIB, "src/lib.rs"),
    (MOD_TASKS, "src/tasks.rs"),
    (MOD_RUNTIME, "src/runtime.rs"),
    (MOD_CLIENT, "src/client.rs"),
    (MOD_TEST_SUPPORT, "tests/support/mod.rs"),
    (MOD_TEST, "tests/{module}.rs"),
    (MOD_CALL, "examples/{module}_call.rs"),
];

/// The environment holding every template.
pub fn environment() -> Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .context("template syntax configuration")?,
    );
    for (id, source) in ALL {
        env.add_template(id, source)
            .with_context(|| format!("template {id} of cargo-chimod does not parse"))?;
    }
    Ok(env)
}

/// Renders template `id` with `ctx`.
pub fn render(id: &str, ctx: &Value) -> Result<String> {
    let env = environment()?;
    let t = env
        .get_template(id)
        .with_context(|| format!("template {id} is missing from cargo-chimod"))?;
    t.render(ctx)
        .with_context(|| format!("cannot render template {id}"))
}

pub use chi_macros_backend::names::camel_case;

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    /// A context with every variable any template uses.
    fn full_context() -> Value {
        context! {
            namespace => "acme",
            repo_name => "my_mods",
            sdk_dep => "\"0.1.0\"",
            sdk_note => "by version, on chi-sdk 0.1.0",
            module => "hello",
            lib_name => "acme_hello",
            crate_lib => "acme_hello_runtime",
            container => "HelloContainer",
            client => "HelloClient",
            params => "CreateParams",
            version => "0.1.0",
            runtime_hint => "\"build it\"",
            new_task => true,
            file_lit => "\"hello/src/runtime.rs\"",
            key => "kSayBye",
            id => 11,
            handler => "say_bye",
            monitor => "monitor_say_bye",
            task => "SayByeTask",
            task_path => "crate::tasks::SayByeTask",
            file => "hello/src/runtime.rs",
        }
    }

    #[test]
    fn every_template_renders() {
        let env = environment().unwrap();
        let ctx = full_context();
        for (id, _) in ALL {
            let t = env
                .get_template(id)
                .unwrap_or_else(|e| panic!("template {id} does not parse: {e}"));
            let out = t
                .render(&ctx)
                .unwrap_or_else(|e| panic!("template {id} does not render: {e:#}"));
            assert!(!out.trim().is_empty(), "{id} renders to nothing");
            assert!(
                !out.contains("{{") && !out.contains("{%"),
                "{id} left template syntax:\n{out}"
            );
        }
    }

    #[test]
    fn rust_templates_render_to_rust_that_parses() {
        let ctx = full_context();
        for id in [
            MOD_LIB,
            MOD_TASKS,
            MOD_RUNTIME,
            MOD_CLIENT,
            MOD_TEST_SUPPORT,
            MOD_TEST,
            MOD_CALL,
            SCAFFOLD_TASK,
        ] {
            let out = render(id, &ctx).unwrap();
            if let Err(e) = syn::parse_file(&out) {
                panic!("{id} renders to Rust that does not parse: {e}\n{out}");
            }
        }
        for id in [SCAFFOLD_HANDLER, SCAFFOLD_MONITOR] {
            let out = render(id, &ctx).unwrap();
            let wrapped = format!("impl X {{\n{out}\n}}");
            if let Err(e) = syn::parse_file(&wrapped) {
                panic!("{id} renders to items that do not parse in an impl: {e}\n{out}");
            }
        }
    }

    #[test]
    fn toml_and_yaml_templates_parse() {
        let ctx = full_context();
        for id in [REPO_CARGO, MOD_CARGO] {
            let out = render(id, &ctx).unwrap();
            out.parse::<toml_edit::DocumentMut>()
                .unwrap_or_else(|e| panic!("{id}: {e}\n{out}"));
        }
        let y = render(MOD_YAML, &ctx).unwrap();
        let parsed =
            chi_macros_backend::yaml::ModYaml::parse(std::path::Path::new("m.yaml"), &y).unwrap();
        let checked = chi_macros_backend::check::check_module(&parsed, None);
        assert!(checked.problems.is_empty(), "{:?}", checked.problems);
        assert_eq!(checked.lib_name().as_deref(), Some("acme_hello"));
        let r = render(REPO_YAML, &ctx).unwrap();
        let repo = crate::repo::parse_repo_yaml(std::path::Path::new("r.yaml"), &r).unwrap();
        assert_eq!(repo.namespace.as_deref(), Some("acme"));
        assert_eq!(repo.modules, ["hello"]);
    }

    #[test]
    fn every_template_has_a_destination_or_is_a_scaffold() {
        for (id, _) in ALL {
            let placed = REPO_FILES.iter().chain(MODULE_FILES).any(|(t, _)| t == id);
            assert!(placed || id.starts_with("scaffold/"), "{id} is never used");
        }
    }

    #[test]
    fn camel() {
        assert_eq!(camel_case("my_mod2"), "MyMod2");
        assert_eq!(camel_case("hello"), "Hello");
    }
}
