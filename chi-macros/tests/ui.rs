//! UI tests of `#[task]` and `#[chimod]`: `pass/` must compile (and run), each file of `fail/`
//! must fail with the diagnostics in its `.stderr`. Regenerate those with
//! `TRYBUILD=overwrite cargo test -p chi-macros --test ui` and read every one.
//!
//! The tests name their YAML with `yaml = "…"` (relative to the test file):
//! trybuild compiles them in a generated crate under `target/tests/trybuild/`,
//! whose `CARGO_MANIFEST_DIR` has no `chimaera_mod.yaml` (which `fail/no_yaml.rs`
//! relies on). `chimaera_mod.yaml` here serves the `#[task]` tests; the
//! `#[chimod]` fixtures are under `chimod/repo/` (a `chimaera_repo.yaml` and one
//! module directory per case: `ok` and `raw` are valid, `bad` has every YAML
//! problem at once, `names` the mistakes only `cargo chimod refresh` used to
//! catch, `low` a custom id below 10).
//!
//! Where the diagnostics are:
//! * `#[task]`: `string_field`, `vec_field`, `bool_field`, `pointer_fields`,
//!   `not_shm_safe`, `not_ser` (field types); `method_mismatch` (id ≠ YAML id);
//!   `missing_key` (no YAML entry, a `-1` entry); `no_yaml` (no YAML file);
//!   `yaml_parse_error`; `bad_new` (`new = "…"`); `missing_method` (arguments);
//!   `field_attrs`, `generic`, `not_a_struct`, `tuple_struct` (item shape).
//! * `#[chimod]`: `chimod_yaml_errors` (namespace, inherited ids, custom id
//!   below 10, duplicate ids, a handler with no method, methods with no
//!   handler); `chimod_refresh_rules` (the YAML rules `cargo chimod refresh`
//!   applies: an unknown key, a module name that is not an identifier);
//!   `chimod_impl_errors` (handler of a `-1` method, `destroy`
//!   handler, monitor and aggregate of no method, handler and aggregate
//!   shape, `create` signatures, no `create`, generic container, trait impl); `chimod_wrong_task` (task type
//!   with another METHOD, container not Sync); `no_yaml` (no YAML file).
//! * One mistake, one error (the items are generated beside the error, so a
//!   crate that uses them sees no follow-ons): `task_field_used` (a rejected
//!   field), `task_id_used` (an id the YAML disagrees with, used by a
//!   handler), `chimod_error_used` (a #[chimod] error beside a client using
//!   `PoolParams` and the constants), `chimod_handler_returns` (no return
//!   type, an error type that is not `Into<Failure>`, not a `Result`: each
//!   naming the handler), `chimod_low_id` (a custom id below 10 with its
//!   handler, monitor and task), `chimod_no_task`, `chimod_forgotten` (no
//!   #[chimod]: the client's `PoolParams` error names it).
//! * `chimaera_methods.lock` (fixtures under `chimod/locked/`, whose lock
//!   records kGreet = 10): `lock_renumbered` (the YAML says 16: refresh's
//!   advice, the lock wins), `lock_removed` (kGreet gone from the YAML: one
//!   error at the task, one at the handler naming its monitor).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
    t.compile_fail("tests/fail/*.rs");
}
