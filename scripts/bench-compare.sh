#!/usr/bin/env bash
# Compares the sync round trip and the async throughput (one client thread,
# one client process) of several builds, interleaved so that the machine's
# drift hits them alike, and prints each build's medians over the rounds.
#
# usage: scripts/bench-compare.sh ROUNDS DIR...
#   each DIR holds a build's chi-bench, chi-runtime and module libraries
#   (e.g. a copy of target/release after
#   `cargo build --release -p chi-runtime -p chi-bench -p bdev -p mod_name`).
set -euo pipefail
rounds=$1
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$rounds"); do
  for d in "$@"; do
    rt=$("$d/chi-bench" roundtrip --iters 1000000 --threads 1 --procs 1 --no-progress 2>&1 |
      grep -E "sync echo, 1 client (thread|process): median" |
      grep -oP "median\s+\K[0-9.]+ (ns|µs)" | tr '\n' ' ')
    tp=$("$d/chi-bench" throughput --iters 3000000 --threads 1 --procs 1 --no-progress 2>&1 |
      grep -E "1 client (thread|process): tasks/s" |
      awk '{for(i=1;i<=NF;i++) if($i=="k/s"||$i=="M/s") {print $(i-1)$i; break}}' | tr '\n' ' ')
    echo "$r $d RT: $rt | TP: $tp" | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r'\d+ (\S+) RT: ([\d.]+) (ns|µs) ([\d.]+) (ns|µs)\s+\| TP: ([\d.]+)(M|k)/s ([\d.]+)(M|k)/s', line)
    if not m:
        continue
    ns = lambda v, u: float(v) * (1000 if u == 'µs' else 1)
    mps = lambda v, u: float(v) * (1 if u == 'M' else 0.001)
    runs.setdefault(m[1], []).append((ns(m[2], m[3]), ns(m[4], m[5]), mps(m[6], m[7]), mps(m[8], m[9])))
print("medians: sync round trip (1 thread / 1 process), async throughput (1 thread / 1 process)")
for d, v in runs.items():
    c = [statistics.median(x) for x in zip(*v)]
    print(f"{d}: {c[0]:.0f} ns / {c[1]:.0f} ns, {c[2]:.2f} M/s / {c[3]:.2f} M/s ({len(v)} rounds)")
PY
