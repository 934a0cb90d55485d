#!/usr/bin/env bash
# Tool-call round trip through postern control + worker + warm sandbox, on each store, next to the SDK's own
# EnvironmentWorker (tools on the host, no sandbox) against the same control plane and to "direct" (the same
# bash call to a warm `postern sandbox serve` child, no control plane), in one run; and session start from the
# warm pool (bench/worker.mjs; WORKER_BENCH_N, _RUNS, _SESSIONS, _STORES tune it).
# Targets (issue 13): p50 under 5 ms with SQLite, under 7 ms with Redis; a session from the pool under 1 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:?usage: bench/worker.sh POSTERN_BIN}")
out=build/bench; mkdir -p "$out"
# A private copy: a rebuild of the checkout during the run must not swap the binary.
cp "$BIN" "$out/postern-worker-bench" && BIN=$(realpath "$out/postern-worker-bench")
POSTERN_BIN=$BIN node bench/worker.mjs > "$out/worker.jsonl"
echo "== tool-call round trip: agent.tool_use posted -> user.tool_result stored (seen on SSE); bash 'echo', loopback"
echo "   (${WORKER_BENCH_RUNS:-3} runs of ${WORKER_BENCH_N:-200} calls each, medians of the runs' p50/p99)"
node - "$out/worker.jsonl" <<'JS'
const rows = require('fs').readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const direct = rows.find((r) => r.peer === 'direct');
const f = (x) => `${x.toFixed(2)} ms`;
console.log('| store | worker | p50 | p99 | p50 × SDK worker | p50 − direct | session start (create → 1st result) | pool take |');
console.log('|---|---|---|---|---|---|---|---|');
console.log(`| - | direct (warm sandbox serve child) | ${f(direct.p50)} | ${f(direct.p99)} | | | | |`);
for (const r of rows.filter((x) => x.peer !== 'direct')) {
  const sdk = rows.find((x) => x.store === r.store && x.peer === 'sdk');
  const target = { sqlite: 5, redis: 7 }[r.store];
  console.log(`| ${r.store} | ${r.peer === 'sdk' ? 'SDK EnvironmentWorker (host, no sandbox)' : 'postern worker'} | ${f(r.p50)}` +
    `${r.peer === 'postern' ? ` (target < ${target})` : ''} | ${f(r.p99)} | ${(r.p50 / sdk.p50).toFixed(2)} | ${f(r.p50 - direct.p50)} | ` +
    `${f(r.start)} | ${r.take_p50 === null ? '-' : `${r.take_p50} µs (max ${r.take_max})`} |`);
}
JS
