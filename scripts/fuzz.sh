#!/usr/bin/env bash
# scripts/fuzz.sh SECONDS: builds the libFuzzer harnesses; 0 runs each corpus once (regression),
# otherwise fuzzes each harness for SECONDS into a scratch copy of its corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
make -s -j"${JOBS:-2}" FLAVOUR=fuzz fuzz-bins
for bin in build/fuzz/fuzz/fuzz_*; do
  case $bin in *.d|*.o) continue;; esac
  name=$(basename "$bin")
  corpus=tests/fuzz/corpus/${name#fuzz_}
  [ -d "$corpus" ] || { echo "fuzz: $name has no corpus at $corpus" >&2; exit 1; }
  if [ "$secs" = 0 ]; then
    echo "== fuzz corpus once: $name ($(ls "$corpus" | wc -l) inputs)"
    "$bin" -runs=0 "$corpus" 2>&1 | tail -1
  else
    work=tests/fuzz/corpus-work/${name#fuzz_}; mkdir -p "$work"
    echo "== fuzz $name for ${secs}s"
    "$bin" -max_total_time="$secs" -max_len=20000 "$work" "$corpus" 2>&1 | tail -3
  fi
done
