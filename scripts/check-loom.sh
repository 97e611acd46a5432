#!/usr/bin/env bash
# Model-checks the lock-free algorithms of chi-shm with loom: the allocator's
# tagged Treiber stack (chi-shm/src/shm/alloc/stack.rs), the lane ring
# (chi-shm/src/queue/ring.rs) and the doorbell handshake
# (chi-shm/src/queue/doorbell.rs). Under --cfg loom, chi-shm's atomics facade
# (chi-shm/src/sync.rs) wraps loom's atomics and the whole library builds
# against it; only chi-shm and its dependencies are built.
# See docs/verification.md for what each model checks.
#
# LOOM_MAX_PREEMPTIONS bounds the number of preemptive context switches per
# explored execution. Every model except two is exhaustive even without a bound;
# the 3-thread stack model and the 2-producer consumer-loop model are not
# tractable unbounded, and 3 keeps the whole run near one minute of model
# checking in release mode. Override with LOOM_MAX_PREEMPTIONS=N.
#
# Extra arguments go to the test binary, e.g. `scripts/check-loom.sh stack`.
set -euo pipefail
cd "$(dirname "$0")/.."

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
# Append to (not replace) any RUSTFLAGS the caller set.
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }--cfg loom"

echo "== loom (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"
start=$(date +%s)
# Its own target dir: --cfg loom changes every crate's build.
cargo test -p chi-shm --lib --release --target-dir target/loom -- "$@"
echo "== loom model checks passed in $(($(date +%s) - start)) s"
