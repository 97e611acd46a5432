#!/usr/bin/env bash
# The cluster demo: builds the project, starts a local cluster of 3 runtimes
# on 127.0.0.1..3 (embedded default configuration, the example module's
# library found through CHI_MODULE_PATH), runs a client that creates a pool
# with a container on each node and sends tasks to each of them, printing
# which node answered, shows the cluster's status, and stops the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p chi-runtime --bins --examples
cargo build --release -p mod_name
bin="${CARGO_TARGET_DIR:-target}/release"
unset CHI_SERVER_CONF CHI_ADDR
export CHI_MODULE_PATH="$(cd "$bin" && pwd)"
dir="$(mktemp -d)"
"$bin/chi-runtime" start --local-cluster 3 --dir "$dir"
trap '"$bin/chi-runtime" stop --local-cluster --dir "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
"$bin/examples/cluster_demo"
"$bin/chi-runtime" status | sed -n '/[Cc]luster/,$p'
"$bin/chi-runtime" stop --local-cluster --dir "$dir"
trap 'rm -rf "$dir"' EXIT
