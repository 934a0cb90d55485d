#!/usr/bin/env bash
# The MCP guard's cost, measured in one run on this machine (median of 3 runs each), with the official SDK
# client making `echo` tool calls (bench/mcp-calls.mjs):
#   latency: 1 client, sequential calls: direct to the http MCP server, through the proxy with no guard, and
#            with the guard on (a policy and the audit to a file); the guard's added p50 is on vs off.
#   calls/s: 16 clients: the same three, and the stdio route (the same server over stdio behind the bridge,
#            guard and audit on) vs supergateway --stateful in front of the same stdio server.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: bench/guard.sh POSTERN_BIN}
ROOT=$PWD
N_LAT=${GUARD_BENCH_LAT_CALLS:-2000}
N_TPUT=${GUARD_BENCH_CALLS:-4000}
CONC=${GUARD_BENCH_CONC:-16}
SG_VER=4.0.0
TOOLS=$ROOT/build/bench-tools
W=$(mktemp -d /tmp/postern-guard-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

if [ ! -x "$TOOLS/node_modules/.bin/supergateway" ]; then
  echo "guard bench: installing supergateway@$SG_VER into $TOOLS (bench only)" >&2
  npm install --prefix "$TOOLS" --no-audit --no-fund --save-exact "supergateway@$SG_VER" >/dev/null
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

FIX=$ROOT/tests/e2e/fixtures/guard_server.mjs
UP=$(port); PX=$(port); SG=$(port)
node "$FIX" http "$UP" >"$W/up.log" 2>&1 & pids+=($!)
"$BIN" certs init --domain bench.test --out "$W/pki" >/dev/null
cat >"$W/gw.yaml" <<YAML
listen_addr: 127.0.0.1:$PX
tunnel_domain: bench.test
log_level: warn
tls: {cert_file: $W/pki/server.pem, key_file: $W/pki/server.key}
upstream: {allowed_ips: [127.0.0.1/32]}
audit: {file: $W/audit.jsonl}
routes:
  plain: {url: "http://127.0.0.1:$UP", audit: false}
  guarded:
    url: http://127.0.0.1:$UP
    policy: {default: allow, rules: [{match: {tool: "write_*"}, action: deny}]}
  stdio:
    stdio: ["$(command -v node)", "$FIX", "stdio"]
    max_sessions: 64
    policy: {default: allow, rules: [{match: {tool: "write_*"}, action: deny}]}
YAML
"$BIN" proxy -c "$W/gw.yaml" >"$W/px.log" 2>&1 & pids+=($!)
"$TOOLS/node_modules/.bin/supergateway" --stdio "node $FIX stdio" --outputTransport streamableHttp --stateful \
  --port "$SG" --logLevel none >"$W/sg.log" 2>&1 & pids+=($!)
wait_port "$UP"; wait_port "$PX"; wait_port "$SG"

CA=$W/pki/ca.pem
declare -A URL=( [direct]="http://127.0.0.1:$UP/mcp" [plain]="https://plain.bench.test:$PX/mcp"
  [guarded]="https://guarded.bench.test:$PX/mcp" [stdio]="https://stdio.bench.test:$PX/mcp"
  [supergateway]="http://127.0.0.1:$SG/mcp" )
# median of 3 runs of FIELD for target: calls concurrency
measure() {
  local t=$1 n=$2 c=$3 f=$4 v=()
  for _ in 1 2 3; do v+=("$(node bench/mcp-calls.mjs "${URL[$t]}" "$n" "$c" "$CA" | python3 -c "import json,sys; print(json.load(sys.stdin)['$f'])")"); done
  printf '%s\n' "${v[@]}" | sort -n | sed -n 2p
}
echo "== guard: tool-call latency, 1 client, $N_LAT calls (p50, median of 3 runs)"
declare -A P50
for t in direct plain guarded; do P50[$t]=$(measure "$t" "$N_LAT" 1 p50_us); echo "  $t: p50 ${P50[$t]} us"; done
echo "  guard added (guarded - plain): $(( ${P50[guarded]} - ${P50[plain]} )) us at p50 (target < 50 us)"
echo "== guard: calls/s, $CONC clients, $N_TPUT calls (median of 3 runs)"
declare -A CPS
for t in direct plain guarded stdio supergateway; do CPS[$t]=$(measure "$t" "$N_TPUT" "$CONC" calls_per_s); echo "  $t: ${CPS[$t]} calls/s"; done
python3 - "${CPS[plain]}" "${CPS[guarded]}" "${CPS[stdio]}" "${CPS[supergateway]}" "${CPS[direct]}" <<'PY'
import sys
plain, guarded, stdio, sg, direct = map(float, sys.argv[1:])
print(f"  guarded / plain: {guarded/plain:.2f}x (target >= 0.90)")
print(f"  plain / direct: {plain/direct:.2f}x")
print(f"  stdio route, guard + audit / supergateway --stateful: {stdio/sg:.2f}x (target >= 1.5)")
PY
echo "  audit lines written: $(wc -l < "$W/audit.jsonl")"
