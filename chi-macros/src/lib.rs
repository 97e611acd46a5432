//! Procedural macros of the Chimaera SDK.
//!
//! This crate only declares the attributes; parsing and code generation live in
//! the plain library `chi-macros-backend`, where they are unit-tested (and where
//! `cargo chimod` can reuse them). Use the macros through `chi_sdk` (`chi_sdk::task`).

use proc_macro::TokenStream;

/// Declares a task: a `#[repr(C)]` struct in shared memory whose first field is the
/// task header, with its `Task`, `ShmSafe` and `TaskSer` impls and constructors.
///
/// ```ignore
/// use chi_sdk::shm::ShmString;
///
/// #[chi_sdk::task(method = 10)] // must equal `kCustom` in chimaera_mod.yaml
/// pub struct CustomTask {
///     #[inout]
///     pub data: ShmString,
///     pub operation_id: u32, // unmarked: #[input]
///     #[output]
///     pub result_code: u32,
/// }
/// ```
///
/// # Arguments
/// * `method = N` (required): the method id. It must equal the id of the task's
///   key in the module's `chimaera_mod.yaml`, found beside the crate's
///   `Cargo.toml`. The key is `k` + the struct name less a `Task` suffix
///   (`CustomTask` → `kCustom`, `Echo` → `kEcho`).
/// * `name = "kBar"`: the YAML key to check instead.
/// * `yaml = "path"`: the YAML file to check instead, relative to the source file
///   that holds the attribute (as `include_str!` resolves paths); for tests (a
///   trybuild crate's `CARGO_MANIFEST_DIR` is a generated directory) and crates
///   laid out differently.
/// * `new = "name"`: the name of the emplace constructor (default `new`), for a
///   type that keeps a hand-written `new`; it must be a function name other
///   than `empty`.
///
/// # Errors
/// Every problem is reported at once, at its span: arguments, item shape, each
/// field, the YAML (a missing file or key, another id, `-1`, a parse error with
/// its line). A field type the compiler must judge is checked with a trait bound
/// spanned at the field. On error the struct is still emitted (without the
/// field attributes) so the rest of the crate and the IDE keep working.
///
/// # Fields
/// Named fields only, each marked `#[input]` (the default when unmarked),
/// `#[output]` or `#[inout]`. Each field type must be `ShmSafe` (plain data,
/// `ShmString`, `ShmVec<T>`, ids…) and `chi_sdk::ser::Ser`; `String`, `Vec`,
/// `Box`, references, raw pointers, `bool`, `char`, `Option` and tuples are
/// rejected at the field with what to use instead. The macro inserts
/// `pub header: chi_sdk::task::TaskHeader` as the first field and adds
/// `#[repr(C)]`: do not write either yourself.
///
/// # Generated
/// * `unsafe impl ShmSafe`, `unsafe impl Task` (`METHOD = N`, `header`,
///   `header_mut`, `free_fields` freeing every string and vector field, through
///   `Ser::free_shm`);
/// * `impl chi_sdk::ser::TaskSer` (`save_in`, `load_in`, `save_out`, `load_out`,
///   `new_copy`; see that trait for what each covers);
/// * `pub fn empty(pool: PoolId) -> Self`: a task for `pool` with a local domain
///   query and every field zero / empty;
/// * `pub fn new(pool: PoolId, query: DomainQuery, <each input and inout field,
///   in declaration order, by value>) -> Self` (or the `new = "…"` name): output
///   fields start zero / empty. A field named `pool` or `query` renames that
///   parameter to `_pool` / `_query`;
/// * `const _: &[u8] = include_bytes!(<the YAML>)`, so editing the YAML rebuilds.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    // On error, the errors beside what could still be generated (the struct
    // and its impls), so that the rest of the crate and the IDE still see them.
    chi_macros_backend::task_expansion(attr.into(), item.into(), &context())
        .into_tokens()
        .into()
}

/// Declares a module: its container type, the handlers of its methods, and the
/// C entry points the runtime loads (`chimaera_module_entry_{chimod_lib_name}`).
///
/// ```ignore
/// use chi_sdk::abi::{MonitorMode, QueueId, RunCtx};
/// use chi_sdk::container::CreateCtx;
/// use chi_sdk::queue::Priority;
///
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// pub struct CreateParams { pub depth: u32 }
///
/// pub struct MyContainer { /* … */ }
///
/// #[chi_sdk::chimod]
/// impl MyContainer {
///     /// Method kCreate (0): builds the container from the pool's parameters.
///     fn create(ctx: &mut CreateCtx<'_>, params: CreateParams) -> Result<Self, String> {
///         ctx.create_local_queue(QueueId(0), 2, Priority::LowLatency)?;
///         Ok(MyContainer { /* … */ })
///     }
///
///     /// Handler of kCustom (10): the YAML key without `k`, in snake_case.
///     fn custom(&self, task: &mut CustomTask, ctx: &mut RunCtx) -> Result<(), String> {
///         Ok(())
///     }
///
///     /// Optional: the monitor of kCustom (default: run where it was taken).
///     fn monitor_custom(&self, mode: MonitorMode, task: &CustomTask, ctx: &mut RunCtx) {
///         if mode == MonitorMode::LocalSchedule {
///             ctx.route_to(QueueId(0), 1);
///         }
///     }
/// }
/// ```
///
/// # The impl block
/// An inherent, non-generic `impl` of a `Send + Sync + 'static` type holding
/// only `create` (required), one handler per supported method and optional
/// `monitor_<handler>` functions. Helpers go in another impl block: every other
/// function here is a handler and needs a YAML key. `kDestroy` drops the
/// container (implement `Drop` for cleanup).
///
/// * `fn create(ctx: &mut CreateCtx<'_>, params: P) -> Result<Self, String>`
///   with `P` any serde type, decoded from the pool's argument string
///   (`#[chimod]` implements `chi_sdk::admin::PoolParams` for it, with this
///   module's library name); or `args: &str` for the raw string.
/// * A handler takes `(&self, task: &mut T, ctx: &mut RunCtx)` where `T` is a
///   `#[task]` type whose `METHOD` is the key's id (checked at compile time),
///   and returns `Result<(), E>` with `E: Into<chi_sdk::task::Failure>` (a
///   `String` or `&str` fails the task with `code::FAILED`).
/// * A monitor takes `(&self, mode: MonitorMode, task: &T, ctx: &mut RunCtx)`;
///   in `LocalSchedule` it routes with `ctx.route(lane)`, never by enqueueing.
///
/// # The YAML
/// `chimaera_mod.yaml` beside the crate's `Cargo.toml` (or `yaml = "path"`,
/// relative to this source file) gives `module_name`, `namespace` and the
/// method ids; the nearest `chimaera_repo.yaml` in a directory above it gives
/// the repository's `namespace`, which must agree (without one, the module's
/// namespace is used). The library name `chimod_lib_name` is
/// `{namespace}_{module_name}`: build the crate as a `cdylib` named
/// `{chimod_lib_name}_runtime` so the runtime finds
/// `lib{chimod_lib_name}_runtime.so` in its module path.
///
/// Inherited methods have fixed ids: `kCreate: 0`, `kDestroy: 1`,
/// `kNodeFailure: 2`, `kRecover: 3`, `kMigrate: 4`, `kUpgrade: 5`; all but the
/// first two may be `-1` (unsupported). Custom methods have ids from 10, or
/// `-1`.
///
/// # Errors
/// Reported together, each at its span. At the attribute, naming file and
/// line: every problem `cargo chimod refresh` reports in the YAML files (the
/// same rules, the same messages): a missing or non-identifier `module_name`
/// or namespace, a namespace that disagrees with `chimaera_repo.yaml`, an
/// unknown key (`custom: 10` for `kCustom: 10`), an id that is not an integer,
/// an inherited key with another id, a custom id below 10, duplicate ids, a key
/// whose handler would be a keyword or a `monitor_…` name. At the functions: a
/// supported method with no handler, a handler (or monitor) with no supported
/// method, a handler of a `-1` method, a `destroy` handler, a missing or
/// misshapen `create`, a handler with the wrong shape or no return type, a
/// generic container, a trait impl. After expansion the compiler reports, each
/// once: a handler whose task type has another `METHOD` (at that type), a
/// handler whose return type is not `Result<(), E: Into<Failure>>` (at it,
/// naming the handler) and a container that is not `Send + Sync`.
///
/// The repository's `chimaera_methods.lock` (beside `chimaera_repo.yaml`)
/// is read as `cargo chimod refresh` reads it: a recorded id changed in the
/// YAML, or given to another method, is an error with refresh's advice (put
/// the recorded id back); the recorded id wins.
///
/// One mistake, one error: what a mistake leaves sound is still generated
/// (the constants, `PoolParams`, the dispatch of the other handlers), a
/// handler of a key the YAML rules rejected is not told again, and a monitor
/// is not told when its handler is.
///
/// # Generated
/// * the impl block, unchanged;
/// * `pub mod method { pub const CUSTOM: u32 = 10; …; pub const ALL: &[(&str, i64)] }`:
///   a constant per supported key, and every key with its id (`-1` included);
/// * `pub const CHIMOD_LIB_NAME: &str` and `pub const CHIMOD_ENTRY: EntryFn`
///   (the entry, for a program that links the module in);
/// * `impl chi_sdk::admin::PoolParams for P` (typed create parameters only);
/// * `include_bytes!` of both YAML files and of the lock file, so editing them
///   rebuilds;
/// * in a hidden `pub mod __chimod`, the C boundary: `extern "C"` init, create,
///   destroy, run (dispatch on the header's method; an unknown or `-1` method
///   fails with `code::UNSUPPORTED_METHOD`, a handler's `Err` with its
///   `Failure`, a panic with `code::PANICKED`), monitor (only if a `monitor_*`
///   exists; otherwise the runtime's default applies), and per-method del,
///   save_in, load_in, save_out, load_out, new_copy and task_size hooks; a
///   `static` `ModuleApi` with this build's `AbiFingerprint`, returned by the
///   entry exported as `chimaera_module_entry_{chimod_lib_name}`.
#[proc_macro_attribute]
pub fn chimod(attr: TokenStream, item: TokenStream) -> TokenStream {
    // On error, the errors beside what could still be generated (the impl,
    // the constants, `PoolParams`, the dispatch of the sound handlers), so that
    // the rest of the crate still sees them.
    chi_macros_backend::chimod_expansion(attr.into(), item.into(), &context())
        .into_tokens()
        .into()
}

/// The method id constants of a module, from its `chimaera_mod.yaml`: the
/// items `#[chimod]` puts in its `method` module, for a crate that has the
/// module's YAML but not its container.
///
/// ```ignore
/// /// Method ids of the admin module.
/// pub mod method {
///     chi_macros::method_ids!(yaml = "admin/chimaera_mod.yaml");
/// }
/// ```
///
/// # Arguments
/// Nothing (the crate's own `chimaera_mod.yaml`, beside its `Cargo.toml`) or
/// `yaml = "path"`, relative to the source file of the call.
///
/// # Generated
/// * `pub const FOO_BAR: u32 = N;` for every supported key `kFooBar: N`
///   (documented with the YAML comment after it, if any);
/// * `pub const ALL: &[(&str, i64)]`: every key with its id (`-1` included);
/// * `include_bytes!` of the YAML files, so editing them rebuilds.
///
/// # Errors
/// Every problem `cargo chimod refresh` would report in the YAML (and in the
/// `chimaera_repo.yaml` above it), at the call, naming the file and line.
#[proc_macro]
pub fn method_ids(input: TokenStream) -> TokenStream {
    let ctx = context();
    match chi_macros_backend::expand_method_ids(input.into(), &ctx) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// `p` made absolute against the current directory (rustc's, which is where
/// cargo's relative source paths start).
fn absolute(p: std::path::PathBuf) -> std::path::PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// Where the macro is expanded: the crate's manifest directory and the source file
/// (for locating `chimaera_mod.yaml` and relative `yaml = "..."` paths).
fn context() -> chi_macros_backend::Context {
    chi_macros_backend::Context {
        manifest_dir: std::env::var_os("CARGO_MANIFEST_DIR").map(Into::into),
        source_file: proc_macro::Span::call_site().local_file().map(absolute),
    }
}
