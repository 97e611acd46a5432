//! `#[chimod]`: a module's container, its method table and its C entry points.
//!
//! # What the author writes
//!
//! One inherent `impl` block of the container type, holding only:
//!
//! * `fn create(ctx: &mut CreateCtx<'_>, params: CreateParams) -> Result<Self,
//!   String>` (method `kCreate`, 0): builds the container of a pool. `params`
//!   is the module's creation parameters, any serde type: `#[chimod]`
//!   implements `chi_sdk::admin::PoolParams` for it (with this module's library
//!   name), and the generated code decodes it from the pool's argument string;
//!   `args: &str` takes the raw string instead. `ctx` gives the pool's id and
//!   name and creates the container's local queues. Required. Destroying a
//!   container (`kDestroy`, 1) drops it: implement `Drop` for cleanup.
//! * one handler per supported method of `chimaera_mod.yaml`: the key less its
//!   `k`, in snake_case (`kCustom` → `custom`, `kCoMutexTest` →
//!   `co_mutex_test`), taking `(&self, task: &mut FooTask, ctx: &mut RunCtx)`
//!   and returning `Result<(), E>` with `E: Into<chi_sdk::task::Failure>` (a
//!   `String` fails the task with `code::FAILED`);
//! * optionally `monitor_foo(&self, mode: MonitorMode, task: &FooTask, ctx: &mut
//!   RunCtx)` for a handler `foo`: in `LocalSchedule` it names a lane of the
//!   container's local queues with `ctx.route(ctx.lane(..)?)`; it cannot
//!   enqueue. A method without a monitor runs where the runtime took it from
//!   the process queue (no extra hop).
//! * optionally `aggregate_foo(&self, task: &mut FooTask, replica: &FooTask)
//!   -> Result<(), E>` for a handler `foo`: how a broadcast's replica outputs
//!   combine into the caller's task (called per replica past the first, in
//!   container order). Without one, the generated default collects
//!   (`TaskSer::collect_outputs`: collection outputs append, values and
//!   `#[inout]` fields keep container 0's).
//!
//! # What it generates
//!
//! The `method` module of id constants, `CHIMOD_LIB_NAME`, `CHIMOD_ENTRY`, and
//! in a hidden module the C boundary: `create`, `destroy`, `run` and `monitor`
//! dispatching by method id, and per-method `del`, `save_in`, `load_in`,
//! `save_out`, `load_out`, `new_copy`, `task_size` and `aggregate` hooks over the task
//! types' `TaskSer` impls. A method set to -1, or an id the YAML does not
//! have, fails with `code::UNSUPPORTED_METHOD`. The entry is exported as
//! `chimaera_module_entry_{CHIMOD_LIB_NAME}`.
//!
//! Helpers belong in another `impl` block: every other function here is taken
//! for a handler and must have a YAML key.
//!
//! # The YAML
//!
//! `chimaera_mod.yaml` beside the crate's `Cargo.toml` (or `yaml = "path"`,
//! relative to the source file) gives `module_name`, `namespace` and the method
//! ids; the nearest `chimaera_repo.yaml` in the directories above it gives the
//! repository's `namespace`, which must agree. `chimod_lib_name` is
//! `{namespace}_{module_name}`.
//!
//! Inherited methods have fixed ids (`kCreate` 0, `kDestroy` 1, `kNodeFailure`
//! 2, `kRecover` 3, `kMigrate` 4, `kUpgrade` 5) or `-1` (unsupported); custom
//! methods have ids from 10, or `-1`. The rules are [`crate::check`]'s, the
//! ones `cargo chimod refresh` applies: every problem it would report is a
//! compile error here, at the attribute, naming the file and line.
//!
//! # How
//!
//! [`expand`] reads the arguments and the impl block, checks the YAML with
//! [`check_module_file`] (which holds it to `chimaera_methods.lock` too),
//! checks the impl block against it (`validate`) and generates the items
//! (`generate`). All problems are reported together, beside the items: what
//! a mistake leaves sound is still generated (the impl as written, the
//! constants, `PoolParams`, the dispatch of every sound handler), so that the
//! rest of the crate sees no follow-on errors. Only the C boundary needs a
//! library name and a non-generic container; without them it is left out.

mod aggregate;
mod client;
mod generate;
mod validate;

use proc_macro2::{Span, TokenStream};
use syn::{ItemImpl, LitStr};

use crate::Expansion;
use crate::check::check_module_file;
use crate::context::{Context, load_error, yaml_path};

pub(crate) fn expand(attr: TokenStream, item: TokenStream, ctx: &Context) -> Expansion {
    let (yaml_arg, with_client) = match client::parse_args(attr) {
        Ok(a) => a,
        Err(e) => return Expansion::new(item, vec![e]),
    };
    let imp: ItemImpl = match syn::parse2(item.clone()) {
        Ok(i) => i,
        Err(e) => {
            let e = syn::Error::new(
                e.span(),
                format!("#[chimod] applies to an inherent `impl Container {{ … }}` block: {e}"),
            );
            return Expansion::new(item, vec![e]);
        }
    };
    if let Some((_, path, _)) = &imp.trait_ {
        // Alone: the trait's functions are not handlers, so nothing else applies.
        let e = syn::Error::new_spanned(
            path,
            "#[chimod] applies to an inherent impl block (`impl MyContainer { … }`), not a trait \
             impl: put `create` and the handlers in an `impl MyContainer` block",
        );
        return Expansion::new(item, vec![e]);
    }
    let mut errors: Vec<syn::Error> = Vec::new();
    let generic = !imp.generics.params.is_empty();
    if generic {
        errors.push(syn::Error::new_spanned(
            &imp.generics,
            "a container cannot be generic: the runtime creates it by name",
        ));
    }

    // The YAML files, by the rules `cargo chimod refresh` applies.
    let module = yaml_path(yaml_arg.as_ref(), ctx).and_then(|path| {
        check_module_file(&path).map_err(|e| {
            let uses = "#[chimod] reads the module's methods from it";
            load_error(&e, yaml_arg.as_ref(), uses)
        })
    });
    let module = match module {
        Ok(m) => m,
        Err(e) => {
            // Without methods, only `create` can be judged.
            errors.push(e);
            let fns = validate::create_only(&imp, &mut errors);
            let items = generate::without_module(&imp, &fns);
            return Expansion::new(items, errors);
        }
    };
    let at_attr = yaml_arg.as_ref().map_or(Span::call_site(), LitStr::span);
    errors.extend(module.problems.iter().map(|p| p.at(at_attr)));

    // The functions, against the methods.
    let fns = validate::functions(&imp, &module, &mut errors);
    let boundary = !generic;
    let mut items = generate::module(&imp, &fns, &module, boundary);
    if with_client {
        items.extend(client::client(&fns, &module));
    }
    Expansion::new(items, errors)
}

#[cfg(test)]
mod tests;
