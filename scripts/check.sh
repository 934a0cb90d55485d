#!/usr/bin/env bash
# make check: every test tier. The layer and naming rules, gcc build + unit, clang build + unit, integration,
# then unit + integration again under ASan+UBSan, then each fuzz corpus once.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-2}
t0=$(date +%s)
step() { echo; echo "=== check: $* ($(( $(date +%s) - t0 ))s)"; }

step "layers";            make -s layers
step "gcc build + unit";   make -s -j"$jobs" FLAVOUR=gcc build unit-bins;   make -s FLAVOUR=gcc unit
step "clang build + unit"; make -s -j"$jobs" FLAVOUR=clang build unit-bins; make -s FLAVOUR=clang unit
step "integration (gcc)";  make -s FLAVOUR=gcc integration
step "asan+ubsan build + unit"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
make -s -j"$jobs" FLAVOUR=asan build unit-bins; make -s FLAVOUR=asan unit
step "integration (asan+ubsan)"; make -s FLAVOUR=asan integration
step "fuzz corpora once";  scripts/fuzz.sh 0
step "all tiers passed"
