#!/usr/bin/env bash
# Runs chi-shm's unit tests (`--lib`) under Miri: the Treiber stack, the lane ring
# and the doorbell handshake (multi-threaded tests over heap memory, with the real
# futex, which Miri emulates), the allocator's layout, offset pointers and ShmSafe.
#
# Only `--lib`: the integration tests in chi-shm/tests/ create real shared-memory
# segments (shm_open + mmap of a file-backed shared mapping) and fork processes,
# which Miri cannot run; unit tests that would do so are
# `#[cfg_attr(miri, ignore)]`. See docs/verification.md.
#
# Usage: scripts/check-miri.sh [test filter...]
#   MIRI_SEEDS=N  also run the tests under N more scheduler/weak-memory seeds
#                 (-Zmiri-many-seeds=0..N), default 0.
#   MIRIFLAGS     passed through (e.g. MIRIFLAGS=-Zmiri-seed=7).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLCHAIN="${MIRI_TOOLCHAIN:-nightly}"

if ! cargo "+$TOOLCHAIN" miri --version >/dev/null 2>&1; then
  echo "== installing the $TOOLCHAIN toolchain with miri"
  rustup toolchain install "$TOOLCHAIN" --profile minimal --component miri,rust-src
fi
if ! rustup component list --toolchain "$TOOLCHAIN" --installed | grep -q '^rust-src'; then
  rustup component add rust-src --toolchain "$TOOLCHAIN"
fi
# Builds the Miri sysroot once (no-op when it is up to date).
cargo "+$TOOLCHAIN" miri setup

# Its own target dir, so Miri builds do not invalidate the normal ones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/miri}"

start=$(date +%s)
echo "== miri: cargo +$TOOLCHAIN miri test -p chi-shm --lib (MIRIFLAGS='${MIRIFLAGS:-}')"
cargo "+$TOOLCHAIN" miri test -p chi-shm --lib -- "$@"

seeds="${MIRI_SEEDS:-0}"
if [ "$seeds" -gt 0 ]; then
  echo "== miri: the concurrent tests under seeds 0..$seeds"
  MIRIFLAGS="${MIRIFLAGS:+$MIRIFLAGS }-Zmiri-many-seeds=0..$seeds" \
    cargo "+$TOOLCHAIN" miri test -p chi-shm --lib -- \
    queue::ring::tests queue::doorbell::tests stack::tests::threads
fi
echo "== miri passed in $(($(date +%s) - start)) s"
