#!/usr/bin/env bash
# make bench: every benchmark, each figure next to the peer measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: bench/run.sh POSTERN_BIN}
POSTERN_BENCH_DEPS=1 scripts/deps.sh
out=build/bench; mkdir -p "$out"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
for b in bench/tunnel.sh bench/sandbox.sh bench/guard.sh bench/worker.sh bench/agent.sh; do
  [ -x "$b" ] || { echo "bench: $b is missing" >&2; exit 1; }
  "$b" "$BIN" | tee "$out/$(basename "$b" .sh).txt"
done
