//! UI tests of `#[task]` and `#[chimod]`: `pass/` must compile (and run), each file of `fail/`
//! must fail with the diagnostics in its `.stderr`. Regenerate those with
//! `TRYBUILD=overwrite cargo test -p chi-macros` and read every one.
//!
//! The tests name their YAML with `yaml = "…"` (relative to the test file):
//! trybuild compiles them in a generated crate under `target/tests/trybuild/`,
//! whose `CARGO_MANIFEST_DIR` has no `chimaera_mod.yaml` (which `fail/no_yaml.rs`
//! relies on). The `#[chimod]` fixtures are under `chimod/repo/` (a
//! `chimaera_repo.yaml` and one module directory per case).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
    t.compile_fail("tests/fail/*.rs");
}
