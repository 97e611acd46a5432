#!/usr/bin/env bash
# The demo: builds the project, starts a runtime on the embedded default
# configuration (finding the example module's library through CHI_MODULE_PATH),
# runs a client that creates a pool of the example module and runs tasks
# (printing the results), shows the runtime's status, and stops the runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p chi-runtime --bins --examples
cargo build --release -p mod_name
bin="${CARGO_TARGET_DIR:-target}/release"
unset CHI_SERVER_CONF
export CHI_MODULE_PATH="$(cd "$bin" && pwd)"
"$bin/chi-runtime" start --daemon
trap '"$bin/chi-runtime" stop >/dev/null 2>&1 || true' EXIT
"$bin/examples/demo_client"
"$bin/chi-runtime" status
"$bin/chi-runtime" stop
trap - EXIT
