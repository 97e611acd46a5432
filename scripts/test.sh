#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: formatting, lints, the
# API docs (no broken, ambiguous or private links), the multi-process test
# suite, doc tests, the loom model checks and a smoke run of the benchmarks.
# Installs what it needs (cargo-nextest) itself.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-shot run gains nothing from incremental caches, which double the
# size of the build directory.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Each stage's heading shows the minutes and seconds since the start, so a
# slow run shows where its time went.
stage() { echo "== [$((SECONDS / 60))m$((SECONDS % 60))s] $*"; }

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

stage "cargo fmt --check"
cargo fmt --all -- --check
stage "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
stage "api docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
stage "import circles"; scripts/check-imports.sh
stage "tests (nextest)"
cargo nextest run --workspace --no-fail-fast
stage "doc tests"
cargo test --workspace --doc
if [ -x scripts/check-loom.sh ]; then
  stage "loom model checks"
  scripts/check-loom.sh
fi
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "== installing a nightly toolchain with miri"
  rustup toolchain install nightly --profile minimal --component miri,rust-src >/dev/null 2>&1 || true
fi
if cargo +nightly miri --version >/dev/null 2>&1; then
  stage "miri (the algorithms, under the interpreter)"
  scripts/check-miri.sh
else
  stage "miri skipped: could not install a nightly toolchain with miri (rustup toolchain install nightly --component miri)"
fi
stage "benchmark smoke runs"
cargo bench -p chi-shm --bench shm -- --test
cargo bench -p chi-runtime --bench coroutine -- --test
cargo build --release -p chi-runtime -p chi-bench -p bdev -p mod_name
bench_out="$(mktemp -d)"
"${CARGO_TARGET_DIR:-target}/release/chi-bench" all --quick --json "$bench_out/bench.json" --plot "$bench_out"
rm -rf "$bench_out"
stage "soak (short): mixed clients, one killed every 3 s, nothing may leak"
"${CARGO_TARGET_DIR:-target}/release/chi-bench" soak --seconds 30
stage "all tests passed"
