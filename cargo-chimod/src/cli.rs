//! The command line: `cargo chimod new | refresh | remove-method | link |
//! install`, with the help text a newcomer reads first.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Shown after `cargo chimod --help`.
const AFTER_HELP: &str = "\
A module repository holds one or more Chimaera modules (ChiMods). Each module
is a crate built as lib{namespace}_{module}_runtime.so, which a running
chi-runtime loads when a pool of the module is created.

Getting started:
  cargo chimod new my_mods --module hello   # a repository with module 'hello'
  cd my_mods && cargo build                 # builds libchimaera_hello_runtime.so
  cargo test                                # starts chi-runtime ($CHI_RUNTIME_BIN or on
                                            # PATH), creates a pool, calls the method
  cargo chimod install --dest ~/chimods     # copies the library where a runtime looks

Then edit hello/chimaera_mod.yaml to add a method and run 'cargo chimod refresh'
('cargo chimod remove-method kGreet' removes the example method). Commit the
repository; in a clone, 'cargo chimod link <chimaera checkout>' points it at
the checkout's chi-sdk and chi-runtime.";

/// Create, check and install Chimaera module repositories.
#[derive(Parser, Debug)]
#[command(
    name = "cargo chimod",
    bin_name = "cargo chimod",
    version,
    about,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The sub-commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a module repository, or add a module to the repository you are in.
    #[command(after_help = NEW_AFTER_HELP)]
    New(NewArgs),
    /// Check every chimaera_repo.yaml and chimaera_mod.yaml, record method ids
    /// in chimaera_methods.lock, and scaffold the code of newly added methods.
    #[command(after_help = REFRESH_AFTER_HELP)]
    Refresh(RefreshArgs),
    /// Remove a method from a module: its YAML entry, task struct, handler,
    /// monitor, client calls and the tests that call it.
    #[command(after_help = REMOVE_AFTER_HELP)]
    RemoveMethod(RemoveMethodArgs),
    /// Point this repository (e.g. a fresh clone) at a Chimaera checkout: its
    /// chi-sdk and its chi-runtime, in the uncommitted .cargo/config.toml.
    #[command(after_help = LINK_AFTER_HELP)]
    Link(LinkArgs),
    /// Build the repository's modules and copy their runtime libraries to a
    /// directory the runtime searches.
    #[command(after_help = INSTALL_AFTER_HELP)]
    Install(InstallArgs),
}

const NEW_AFTER_HELP: &str = "\
Examples:
  cargo chimod new my_mods                     # repository my_mods/, module 'my_mods'
  cargo chimod new my_mods --module hello      # repository my_mods/, module 'hello'
  cargo chimod new my_mods --namespace acme    # library libacme_my_mods_runtime.so
  cd my_mods && cargo chimod new --module other   # add a module to this repository

A new repository has chimaera_repo.yaml (namespace and module list), a
workspace Cargo.toml, chimaera_methods.lock and one module directory with its
chimaera_mod.yaml, sources (tasks, runtime, client), README and a test that
starts chi-runtime, creates a pool and calls the module's method.

Names (namespace and module) are lower-case Rust identifiers: letters, digits
and '_', starting with a letter. They are checked before anything is written.

chi-sdk dependency: the committed Cargo.toml names chi-sdk by version only, so
the repository can be committed and cloned. When this cargo-chimod was built
from a checkout of the Chimaera sources that still exists (or with --sdk-path),
the repository takes that checkout's chi-sdk version, and its local
.cargo/config.toml, which git ignores, patches chi-sdk to the checkout and sets
CHI_RUNTIME_BIN to the checkout's target/debug/chi-runtime if built; in a clone,
`cargo chimod link <checkout>` writes that file. Otherwise (or with
--sdk-version) chi-sdk comes from the registry, version of cargo-chimod's own.";

const REFRESH_AFTER_HELP: &str = "\
Run it after editing a chimaera_mod.yaml. It

  1. checks every chimaera_repo.yaml and chimaera_mod.yaml of the repository:
     module names, namespace agreement, method keys ('k' + CamelCase), ids
     (inherited: kCreate 0, kDestroy 1, and kNodeFailure 2, kRecover 3,
     kMigrate 4, kUpgrade 5 or -1; custom: from 10, or -1), duplicates,
     and that each module crate builds lib{namespace}_{module}_runtime.so
     (its [lib] name, and 'cdylib' in its crate-type);
  2. compares the ids with chimaera_methods.lock (commit that file): a method
     whose id changed, or a new method reusing a recorded id, is refused;
  3. for each method new since the lock, adds what is missing without touching
     existing code: the task struct (kFooBar -> FooBarTask) at the end of the
     module's tasks file, the handler (foo_bar) and monitor (monitor_foo_bar)
     at the end of the #[chimod] impl block, and the client calls foo_bar and
     async_foo_bar at the end of the {Module}Client impl block, method after
     method in the order of the YAML file;
  4. records the new ids in chimaera_methods.lock.

Nothing is written when a check fails, nor with --check, which says what a
refresh would do. A second run changes nothing.";

const REMOVE_AFTER_HELP: &str = "\
It removes, for method kFooBar of the module:
  * its line in chimaera_mod.yaml;
  * the #[task] struct FooBarTask, the handler foo_bar and the monitor
    monitor_foo_bar (with their doc comments);
  * the client calls foo_bar and async_foo_bar, if the client has them;
  * the #[test] functions of the module's tests/ that call foo_bar or
    async_foo_bar;
  * the names these files import and no longer use.
Other code that only the removed code used (a field, a constant) is left:
cargo build warns about it.

The id stays recorded in chimaera_methods.lock, so no other method takes it:
clients and runtimes built earlier know the method by it. A method that no
one has built against yet (the example kGreet of a new repository) can give
its id back with --forget-id.

Replace the example method of a new repository:
  cargo chimod remove-method kGreet --forget-id
  echo 'kMyMethod: 10' >> hello/chimaera_mod.yaml
  cargo chimod refresh";

const LINK_AFTER_HELP: &str = "\
A repository names chi-sdk by version in its committed Cargo.toml. To build a
clone against a Chimaera checkout (its chi-sdk, and its chi-runtime for the
tests), run in the clone:

  cargo chimod link ~/src/chimaera        # the checkout, or its chi-sdk/

It writes .cargo/config.toml (ignored by git): [patch.crates-io] chi-sdk =
{ path = ... }, and [env] CHI_RUNTIME_BIN = <checkout>/target/debug/chi-runtime
if that is built (`cargo build -p chi-runtime` there; else the tests look for
chi-runtime on PATH). --runtime-bin names another; a CHI_RUNTIME_BIN in the
environment wins over the file.";

const INSTALL_AFTER_HELP: &str = "\
The runtime looks for lib{namespace}_{module}_runtime.so when a pool of the
module is created: first in the directories of 'module_path' in its
configuration file (chi-runtime start -c FILE, or $CHI_SERVER_CONF), then in
the colon-separated directories of $CHI_MODULE_PATH in the runtime's
environment. Install into one of those, or point CHI_MODULE_PATH at the
repository's target/debug (or target/release) directory instead of installing.

Examples:
  cargo chimod install --dest /opt/chimods
  CHI_MODULE_PATH=/opt/chimods cargo chimod install --release";

/// `cargo chimod new`.
#[derive(Args, Debug)]
pub struct NewArgs {
    /// Directory of the new repository (must not exist, or be empty). Without
    /// it, or when it already holds a chimaera_repo.yaml, --module is added to
    /// that repository (the current one if DIR is not given).
    pub dir: Option<PathBuf>,
    /// Namespace of a new repository [default: chimaera]; prefixes the library
    /// names (lib{namespace}_{module}_runtime.so).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Module name [default: the new repository's directory name].
    #[arg(long, value_name = "NAME")]
    pub module: Option<String>,
    /// Use the chi-sdk of this Chimaera checkout (or chi-sdk directory): its
    /// version in Cargo.toml, its path in the uncommitted .cargo/config.toml.
    #[arg(long, value_name = "PATH", conflicts_with = "sdk_version")]
    pub sdk_path: Option<PathBuf>,
    /// Depend on this version of chi-sdk (from the registry).
    #[arg(long, value_name = "VERSION")]
    pub sdk_version: Option<String>,
}

/// `cargo chimod refresh`.
#[derive(Args, Debug)]
pub struct RefreshArgs {
    /// The repository [default: the one the current directory is in].
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Only check, writing nothing: fail, saying what a refresh would scaffold
    /// or record, if anything (for CI).
    #[arg(long)]
    pub check: bool,
}

/// `cargo chimod remove-method`.
#[derive(Args, Debug)]
pub struct RemoveMethodArgs {
    /// The method key, e.g. kGreet.
    pub key: String,
    /// The module [default: the only module whose YAML has the key].
    #[arg(long, value_name = "NAME")]
    pub module: Option<String>,
    /// Also remove the id from chimaera_methods.lock so another method may
    /// take it: only for a method no client or runtime was built with.
    #[arg(long)]
    pub forget_id: bool,
    /// The repository [default: the one the current directory is in].
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
}

/// `cargo chimod link`.
#[derive(Args, Debug)]
pub struct LinkArgs {
    /// The Chimaera checkout (or its chi-sdk directory) [default: the one this
    /// cargo-chimod was built from].
    pub checkout: Option<PathBuf>,
    /// The chi-runtime the tests start [default: the checkout's
    /// target/debug/chi-runtime if built, else chi-runtime on PATH].
    #[arg(long, value_name = "PATH")]
    pub runtime_bin: Option<PathBuf>,
    /// The repository [default: the one the current directory is in].
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
}

/// `cargo chimod install`.
#[derive(Args, Debug)]
pub struct InstallArgs {
    /// Directory to copy the libraries to [default: the first directory of
    /// $CHI_MODULE_PATH].
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Only this module [default: every module of the repository].
    #[arg(long, value_name = "NAME")]
    pub module: Option<String>,
    /// Build and install the release profile.
    #[arg(long)]
    pub release: bool,
    /// The repository [default: the one the current directory is in].
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
}
