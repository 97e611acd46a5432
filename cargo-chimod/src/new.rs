//! `cargo chimod new`: a new repository with its first module, or a module
//! added to an existing repository. Every name is checked and every file
//! rendered before the first one is written.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chi_macros_backend::check::check_module;
use chi_macros_backend::yaml::ModYaml;
use chi_macros_backend::yaml::REPO_YAML;
use minijinja::{Value, context};

use crate::cli::NewArgs;
use crate::link;
use crate::lock::{self, LOCK_FILE, Lock};
use crate::names::{self, Kind};
use crate::repo::{self, CARGO_TOML, Repo};
use crate::sdk::{SdkDep, own_version};
use crate::templates::{self, MODULE_FILES, REPO_FILES, camel_case};

/// The namespace of a repository made without `--namespace`.
pub const DEFAULT_NAMESPACE: &str = "chimaera";

/// Library names the runtime has built in.
const BUILTIN_LIBS: &[&str] = &["chimaera_admin"];

/// Runs `cargo chimod new`.
pub fn run(args: &NewArgs) -> Result<()> {
    match &args.dir {
        Some(dir) if dir.join(REPO_YAML).is_file() => add_module(&Repo::open(dir)?, args),
        Some(dir) => new_repo(dir, args),
        None => {
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            let repo = Repo::find(&cwd).map_err(|_| {
                anyhow::anyhow!(
                    "{} is not inside a module repository (no {REPO_YAML} here or above). To \
                     create one: `cargo chimod new <dir>`; to add a module to one: run `cargo \
                     chimod new --module <name>` inside it",
                    cwd.display()
                )
            })?;
            add_module(&repo, args)
        }
    }
}

/// Files to write: path and content.
type Files = Vec<(PathBuf, String)>;

fn new_repo(dir: &Path, args: &NewArgs) -> Result<()> {
    if dir.exists() {
        let empty = dir.is_dir()
            && std::fs::read_dir(dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .next()
                .is_none();
        if !empty {
            bail!(
                "{} already exists and is not an empty directory: choose a new directory for the \
                 repository, or, to add a module to an existing repository, run `cargo chimod new \
                 --module <name>` inside it",
                dir.display()
            );
        }
    }
    let namespace = args.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    names::check(Kind::Namespace, namespace)?;
    let abs =
        std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let repo_name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let module = match &args.module {
        Some(m) => m.clone(),
        None => {
            if let Err(e) = names::check(Kind::Module, &repo_name) {
                let s = names::suggest(&repo_name);
                bail!(
                    "the module is named after the directory by default, but {e:#}; pass --module \
                     <name>{}",
                    if s.is_empty() {
                        String::new()
                    } else {
                        format!(" (e.g. --module {s})")
                    }
                );
            }
            repo_name.clone()
        }
    };
    names::check(Kind::Module, &module)?;
    check_builtin(namespace, &module)?;
    let sdk = SdkDep::choose(args.sdk_path.as_deref(), args.sdk_version.as_deref())?;

    let ctx = context! {
        namespace => namespace,
        repo_name => repo_name.clone(),
        sdk_dep => sdk.toml_value(),
        sdk_note => sdk_note(&sdk),
        module => module.clone(),
        lib_name => format!("{namespace}_{module}"),
        version => own_version(),
    };
    let mut files: Files = Vec::new();
    for (id, path) in REPO_FILES {
        files.push((abs.join(path), templates::render(id, &ctx)?));
    }
    let (module_files, lock) = render_module(&abs, namespace, &module, &sdk, Lock::default())?;
    files.extend(module_files);
    files.push((abs.join(LOCK_FILE), lock.render()));
    write_all(&files)?;
    let runtime = sdk.local.as_deref().and_then(link::default_runtime_bin);
    if let Some(local) = &sdk.local {
        link::write(&abs, local, runtime.as_deref())?;
    }
    println!(
        "created module repository {} ({})",
        abs.display(),
        sdk.describe()
    );
    match (&runtime, &sdk.local) {
        (Some(bin), _) => println!("  the tests run {} (CHI_RUNTIME_BIN)", bin.display()),
        (None, Some(local)) => println!(
            "  the tests look for chi-runtime on PATH: `cargo build -p chi-runtime` in {} and \
             `cargo chimod link` would make them run that one",
            local.parent().unwrap_or(local).display()
        ),
        (None, None) => {}
    }
    println!("  namespace {namespace}, module {module}: lib{namespace}_{module}_runtime.so");
    println!();
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  cargo build     # builds target/debug/lib{namespace}_{module}_runtime.so");
    println!("  cargo test      # starts chi-runtime, creates a pool, calls the method");
    println!("see {}/README.md", dir.display());
    if sdk.local.is_some() {
        println!(
            "a clone of the repository builds after `cargo chimod link <chimaera checkout>` in it"
        );
    }
    Ok(())
}

fn add_module(repo: &Repo, args: &NewArgs) -> Result<()> {
    let Some(module) = &args.module else {
        bail!(
            "{} is a module repository: to add a module to it, name the module with --module \
             <name>; to create a new repository, give a new directory",
            repo.root.display()
        );
    };
    names::check(Kind::Module, module)?;
    let namespace = repo.namespace()?;
    if let Some(ns) = &args.namespace
        && ns != namespace
    {
        bail!(
            "the repository's namespace is `{namespace}` ({}), and its modules share it: drop \
             --namespace {ns}, or create a new repository for namespace {ns}",
            repo.yaml_path().display()
        );
    }
    check_builtin(namespace, module)?;
    if repo.yaml.modules.iter().any(|m| m == module) {
        bail!(
            "module `{module}` already exists: {} lists it; choose another name",
            repo.yaml_path().display()
        );
    }
    let dir = repo.root.join(module);
    if dir.exists() {
        bail!(
            "{} already exists: a module named `{module}` would go there; choose another name",
            dir.display()
        );
    }
    for existing in crate::check::check_repo(&repo.root)?.modules {
        if existing.name == *module {
            bail!(
                "module `{module}` already exists in this repository ({}); choose another name",
                existing.checked.path.display()
            );
        }
    }
    let manifest = repo.root.join(CARGO_TOML);
    let manifest_text = std::fs::read_to_string(&manifest).unwrap_or_default();
    let has_sdk = manifest_text
        .parse::<toml_edit::DocumentMut>()
        .ok()
        .is_some_and(|d| {
            d.get("workspace")
                .and_then(|w| w.get("dependencies"))
                .and_then(|d| d.get("chi-sdk"))
                .is_some()
        });
    if has_sdk && (args.sdk_path.is_some() || args.sdk_version.is_some()) {
        bail!(
            "this repository already depends on chi-sdk ({} [workspace.dependencies]); its modules \
             share that dependency: change it there (and `cargo chimod link <checkout>` for a \
             local checkout) instead of passing --sdk-path/--sdk-version",
            manifest.display()
        );
    }
    let sdk = SdkDep::choose(args.sdk_path.as_deref(), args.sdk_version.as_deref())?;

    let lock_path = repo.root.join(LOCK_FILE);
    let lock = lock::load(&lock_path)?;
    let (mut files, lock) = render_module(&repo.root, namespace, module, &sdk, lock)?;
    let yaml_text = std::fs::read_to_string(repo.yaml_path())?;
    files.push((
        repo.yaml_path(),
        repo::add_module_to_yaml(&repo.yaml_path(), &yaml_text, module)?,
    ));
    files.push((
        manifest.clone(),
        repo::add_workspace_member(&manifest, &manifest_text, module, &sdk.toml_value())?,
    ));
    files.push((lock_path, lock.render()));
    write_all(&files)?;
    if !has_sdk && let Some(local) = &sdk.local {
        link::write(
            &repo.root,
            local,
            link::default_runtime_bin(local).as_deref(),
        )?;
    }
    println!(
        "added module {module} to {} (lib{namespace}_{module}_runtime.so)",
        repo.root.display()
    );
    println!("  updated chimaera_repo.yaml (modules), Cargo.toml (workspace members), {LOCK_FILE}");
    println!("next: cargo build && cargo test -p {module}");
    Ok(())
}

/// Refuses names the runtime has built in.
fn check_builtin(namespace: &str, module: &str) -> Result<()> {
    let lib = format!("{namespace}_{module}");
    if BUILTIN_LIBS.contains(&lib.as_str()) {
        bail!(
            "module `{module}` in namespace `{namespace}` would be `{lib}`, the runtime's built-in \
             module: choose another module name"
        );
    }
    if module == "target" {
        bail!("`target` is cargo's build directory, not a module name: choose another name");
    }
    Ok(())
}

/// The files of module `module` in the repository at `root`, and `lock` with
/// its method ids recorded.
fn render_module(
    root: &Path,
    namespace: &str,
    module: &str,
    sdk: &SdkDep,
    mut lock: Lock,
) -> Result<(Files, Lock)> {
    let ctx = module_context(namespace, module, sdk);
    let dir = root.join(module);
    let mut files = Vec::new();
    for (id, path) in MODULE_FILES {
        let path = dir.join(path.replace("{module}", module));
        files.push((path, templates::render(id, &ctx)?));
    }
    // The rendered YAML must pass refresh's checks; its ids start the lock.
    let yaml_path = dir.join(chi_macros_backend::yaml::MOD_YAML);
    let yaml_text = files
        .iter()
        .find(|(p, _)| *p == yaml_path)
        .map(|(_, t)| t.as_str())
        .unwrap_or_default();
    let yaml = ModYaml::parse(&yaml_path, yaml_text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let repo_yaml = ModYaml::parse(&root.join(REPO_YAML), &format!("namespace: {namespace}\n"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let checked = check_module(&yaml, Some(&repo_yaml));
    if !checked.problems.is_empty() {
        bail!(
            "the module template renders a YAML file with problems (a bug in cargo-chimod):\n  {}",
            checked
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    let lib = format!("{namespace}_{module}");
    lock::record(&mut lock, &lib, &checked.methods);
    Ok((files, lock))
}

/// The context of the module templates.
pub fn module_context(namespace: &str, module: &str, sdk: &SdkDep) -> Value {
    let camel = camel_case(module);
    context! {
        namespace => namespace,
        module => module,
        lib_name => format!("{namespace}_{module}"),
        crate_lib => format!("{namespace}_{module}_runtime"),
        container => format!("{camel}Container"),
        client => format!("{camel}Client"),
        params => "CreateParams",
        version => own_version(),
        runtime_hint => format!("{:?}", runtime_hint(&sdk.version)),
    }
}

/// How the module's test tells its user to get `chi-runtime`: no path of
/// this machine, since the file is committed.
fn runtime_hint(sdk_version: &str) -> String {
    format!(
        "build chi-runtime in the Chimaera checkout of chi-sdk {sdk_version} (`cargo build -p \
         chi-runtime`) and run `cargo chimod link <checkout>` in this repository (it sets \
         CHI_RUNTIME_BIN in the uncommitted .cargo/config.toml); or set CHI_RUNTIME_BIN to that \
         binary, or put it on PATH"
    )
}

/// How the repository depends on chi-sdk, for its README.
fn sdk_note(sdk: &SdkDep) -> String {
    format!("by version, on chi-sdk {}", sdk.version)
}

/// Writes every file, creating directories, then formats the Rust files
/// with `rustfmt` if it is installed (names of any length then still give
/// formatted code; without rustfmt the files are written as rendered).
fn write_all(files: &Files) -> Result<()> {
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let rust: Vec<&PathBuf> = files
        .iter()
        .map(|(p, _)| p)
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    if !rust.is_empty() {
        let _ = std::process::Command::new("rustfmt")
            .args(["--edition", "2024"])
            .args(rust)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    Ok(())
}
