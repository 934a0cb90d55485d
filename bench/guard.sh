#!/usr/bin/env bash
# The MCP guard's cost, measured in one run on this machine, with the official SDK client making `echo` tool
# calls (bench/mcp-calls.mjs). Every figure is a median over rounds, and the two sides of each comparison run
# in alternating order inside every round (ABBA), so a load change during the run hits both alike:
#   latency: 1 client, sequential calls: direct to the http MCP server, through the proxy with no guard, and
#            with the guard on (a policy and the audit to a file). The guard's added p50 is the median over
#            rounds of (guarded p50 - plain p50) of the same round. The proxy's CPU time per call (all its
#            threads, from /proc/PID/task/*/schedstat over the timed calls only) is measured in the same runs:
#            on a shared machine it is steadier than wall-clock latency.
#   calls/s: 16 clients: the same three, and the stdio route (the same server over stdio behind the bridge,
#            guard and audit on) vs supergateway --stateful in front of the same stdio server; each ratio is
#            the median of the per-round ratios.
# GUARD_BENCH_ROUNDS (5), GUARD_BENCH_LAT_CALLS (1000 per run), GUARD_BENCH_TPUT_ROUNDS (3),
# GUARD_BENCH_CALLS (4000 per run), GUARD_BENCH_CONC (16).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: bench/guard.sh POSTERN_BIN}
ROOT=$PWD
ROUNDS=${GUARD_BENCH_ROUNDS:-5}
N_LAT=${GUARD_BENCH_LAT_CALLS:-1000}
T_ROUNDS=${GUARD_BENCH_TPUT_ROUNDS:-3}
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
PXPID=$!
"$TOOLS/node_modules/.bin/supergateway" --stdio "node $FIX stdio" --outputTransport streamableHttp --stateful \
  --port "$SG" --logLevel none >"$W/sg.log" 2>&1 & pids+=($!)
wait_port "$UP"; wait_port "$PX"; wait_port "$SG"

CA=$W/pki/ca.pem
declare -A URL=( [direct]="http://127.0.0.1:$UP/mcp" [plain]="https://plain.bench.test:$PX/mcp"
  [guarded]="https://guarded.bench.test:$PX/mcp" [stdio]="https://stdio.bench.test:$PX/mcp"
  [supergateway]="http://127.0.0.1:$SG/mcp" )
# one run: KIND ROUND TARGET CALLS CONCURRENCY -> a line "KIND ROUND TARGET {json}" in $W/runs
run() {
  local cpu=
  case $3 in plain | guarded | stdio) cpu=$PXPID ;; esac
  echo "$1 $2 $3 $(CPU_PID=$cpu node bench/mcp-calls.mjs "${URL[$3]}" "$4" "$5" "$CA")" >>"$W/runs"
}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
  run lat "$r" direct "$N_LAT" 1
  if [ $((r % 2)) = 1 ]; then run lat "$r" plain "$N_LAT" 1; run lat "$r" guarded "$N_LAT" 1
  else run lat "$r" guarded "$N_LAT" 1; run lat "$r" plain "$N_LAT" 1; fi
done
for r in $(seq "$T_ROUNDS"); do
  run tput "$r" direct "$N_TPUT" "$CONC"
  if [ $((r % 2)) = 1 ]; then
    run tput "$r" plain "$N_TPUT" "$CONC"; run tput "$r" guarded "$N_TPUT" "$CONC"
    run tput "$r" stdio "$N_TPUT" "$CONC"; run tput "$r" supergateway "$N_TPUT" "$CONC"
  else
    run tput "$r" supergateway "$N_TPUT" "$CONC"; run tput "$r" stdio "$N_TPUT" "$CONC"
    run tput "$r" guarded "$N_TPUT" "$CONC"; run tput "$r" plain "$N_TPUT" "$CONC"
  fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$W/runs" "$ROUNDS" "$N_LAT" "$T_ROUNDS" "$N_TPUT" "$CONC" <<'PY'
import json, statistics as st, sys
path, rounds, n_lat, t_rounds, n_tput, conc = sys.argv[1:]
R = {}
for line in open(path):
    kind, rnd, target, js = line.split(' ', 3)
    R.setdefault(kind, {}).setdefault(target, {})[int(rnd)] = json.loads(js)
med = st.median
def col(kind, t, f): return [v[f] for _, v in sorted(R[kind][t].items())]
def verdict(ok): return 'met' if ok else 'NOT met'
lat = R['lat']
print(f"== guard: tool-call latency, 1 client, {n_lat} calls per run, {rounds} rounds (plain and guarded in ABBA order)")
for t in ('direct', 'plain', 'guarded'):
    extra = f", proxy CPU {med(col('lat', t, 'cpu_us_per_call')):.0f} us per call" if t != 'direct' else ''
    print(f"  {t}: p50 {med(col('lat', t, 'p50_us')):.0f} us (rounds: {' '.join(str(x) for x in col('lat', t, 'p50_us'))}){extra}")
added = [lat['guarded'][r]['p50_us'] - lat['plain'][r]['p50_us'] for r in sorted(lat['plain'])]
cpu_added = [lat['guarded'][r]['cpu_us_per_call'] - lat['plain'][r]['cpu_us_per_call'] for r in sorted(lat['plain'])]
a, ca = med(added), med(cpu_added)
print(f"  guard added at p50 (median of per-round guarded - plain): {a:.0f} us (rounds: {' '.join(str(x) for x in added)})"
      f"; target < 50 us: {verdict(a < 50)}" + ('' if a < 50 else f" (over by {a - 50:.0f} us)"))
print(f"  guard added proxy CPU per call (median of per-round differences): {ca:.0f} us (rounds: {' '.join(f'{x:.0f}' for x in cpu_added)})"
      f"; the < 50 us target applied to CPU: {verdict(ca < 50)}")
tp = R['tput']
print(f"== guard: calls/s, {conc} clients, {n_tput} calls per run, {t_rounds} rounds")
for t in ('direct', 'plain', 'guarded', 'stdio', 'supergateway'):
    extra = f", proxy CPU {med(col('tput', t, 'cpu_us_per_call')):.0f} us per call" if t in ('plain', 'guarded', 'stdio') else ''
    print(f"  {t}: {med(col('tput', t, 'calls_per_s')):.0f} calls/s (rounds: {' '.join(str(x) for x in col('tput', t, 'calls_per_s'))}){extra}")
def ratio(a, b): return med([tp[a][r]['calls_per_s'] / tp[b][r]['calls_per_s'] for r in sorted(tp[a])])
g, d, s = ratio('guarded', 'plain'), ratio('plain', 'direct'), ratio('stdio', 'supergateway')
print(f"  guarded / plain: {g:.2f}x (median of per-round ratios; target >= 0.90: {verdict(g >= 0.90)})")
print(f"  plain / direct: {d:.2f}x")
print(f"  stdio route, guard + audit / supergateway --stateful: {s:.2f}x (target >= 1.5: {verdict(s >= 1.5)})")
PY
echo "  audit lines written: $(wc -l < "$W/audit.jsonl")"
