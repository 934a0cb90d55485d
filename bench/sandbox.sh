#!/usr/bin/env bash
# Sandbox benchmark (make bench): side by side in one run on this machine:
#   1. cold start: a fresh sandbox running /bin/true — postern vs bwrap --unshare-all, unshare -Urpfnm,
#      firejail, Anthropic's srt, and plain fork/exec (hyperfine medians, ratio to bare /bin/true and to bwrap);
#   2. warm exec: /bin/true in an existing session vs plain fork/exec/wait from the same process;
#   3. memory of 100 idle sessions.
# Targets (issues 4, 8): cold start faster than bwrap (the invocation issue 8 names); warm exec within 1.2x of
# fork/exec; < 1 MB per idle session. Load on the machine skews sequential hyperfine runs: compare in one quiet run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:?usage: bench/sandbox.sh POSTERN_BIN}")
RUNS=${SBX_BENCH_RUNS:-300}
out=build/bench; mkdir -p "$out"
json=$out/sandbox-cold.json
# A private copy: a rebuild of the checkout during the run must not swap the binary under hyperfine.
cp "$BIN" "$out/postern-sandbox-bench" && BIN=$(realpath "$out/postern-sandbox-bench")

need() { command -v "$1" >/dev/null || { echo "bench/sandbox.sh: $1 is missing (POSTERN_BENCH_DEPS=1 scripts/deps.sh installs it)" >&2; exit 1; }; }
need hyperfine; need bwrap; need unshare; need node

# Anthropic's sandbox runtime, pinned, installed under build/ (not committed) when npm can reach the registry.
SRT_VERSION=0.0.83
srt_bin=$out/srt/node_modules/.bin/srt
if [ ! -x "$srt_bin" ]; then
  npm install --silent --no-audit --no-fund --prefix "$out/srt" "@anthropic-ai/sandbox-runtime@$SRT_VERSION" >/dev/null 2>&1 \
    || echo "note: srt $SRT_VERSION could not be installed from npm; its row is omitted" >&2
fi

cmds=(
  "/bin/true"
  "$BIN sandbox run -q -- /bin/true"
  "$BIN sandbox run -q --no-cgroup -- /bin/true"
  "bwrap --ro-bind / / --dev /dev --proc /proc --unshare-all --die-with-parent /bin/true"
  "unshare -Urpfnm --mount-proc /bin/true"
)
if [ "$(id -u)" = 0 ] && command -v firejail >/dev/null; then cmds+=("firejail --quiet --noprofile /bin/true"); fi

echo "== sandbox cold start: a fresh sandbox running /bin/true (hyperfine -N, $RUNS runs, medians)"
hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$json" "${cmds[@]}" > "$out/sandbox-hyperfine.log" 2>&1 \
  || { echo "bench/sandbox.sh: hyperfine failed:" >&2; grep -i error "$out/sandbox-hyperfine.log" >&2; exit 1; }
srt_json=""
if [ -x "$srt_bin" ]; then
  srt_json=$out/sandbox-srt.json
  hyperfine -N --warmup 3 --runs 30 --export-json "$srt_json" "$srt_bin /bin/true" >/dev/null 2>&1 || srt_json=""
fi
node - "$json" "$srt_json" <<'EOF'
const fs = require('fs');
const rows = JSON.parse(fs.readFileSync(process.argv[2])).results;
if (process.argv[3]) rows.push(...JSON.parse(fs.readFileSync(process.argv[3])).results);
const med = (r) => r.median * 1000;
const bare = med(rows[0]);
const bw = med(rows.find((r) => r.command.startsWith('bwrap')));
console.log('| command | median | min | ratio to /bin/true | ratio to bwrap |');
console.log('|---|---|---|---|---|');
for (const r of rows) {
  const name = r.command.replace(/^\S*\/postern\S* /, 'postern ').replace(/^\S*\/srt /, 'srt ');
  console.log(`| \`${name}\` | ${med(r).toFixed(2)} ms | ${(r.min * 1000).toFixed(2)} ms | ${(med(r) / bare).toFixed(1)} | ${(med(r) / bw).toFixed(2)} |`);
}
EOF

echo
echo "== cold start, interleaved (postern and bwrap in turn, ${RUNS} rounds; the figure the issue 8 target is judged on)"
# Sequential hyperfine runs are skewed by load changes between commands; in turn, both see the same load.
cc -O2 -Wall -Wextra -Werror -o "$out/interleave" bench/interleave.c
bw=$(command -v bwrap)
"$out/interleave" "$RUNS" "$BIN sandbox run -q -- /bin/true" \
  "$bw --ro-bind / / --dev /dev --proc /proc --unshare-all --die-with-parent /bin/true" > "$out/sandbox-interleave.txt" \
  || { echo "bench/sandbox.sh: the interleaved run failed:" >&2; cat "$out/sandbox-interleave.txt" >&2; exit 1; }
cat "$out/sandbox-interleave.txt"
awk '/^wall med/ {m[++n] = $3} END {if (n == 2) printf "postern / bwrap (interleaved medians): %.2fx (target < 1.00x)\n", m[1] / m[2]}' \
  "$out/sandbox-interleave.txt"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "== engine cold start in a running process (sbx_new + /bin/true + sbx_free; what a worker pays per session)"
for v in "" --no-cgroup; do
  r=$("$BIN" sandbox bench-cold 300 $v)
  node -e 'const m = JSON.parse(process.argv[1]); console.log(`postern engine${process.argv[2] ? " (" + process.argv[2] + ")" : ""}: median ${(m.median_us / 1000).toFixed(2)} ms (p10 ${(m.p10_us / 1000).toFixed(2)}, p90 ${(m.p90_us / 1000).toFixed(2)})`);' "$r" "$v"
done

echo
echo "== warm exec: /bin/true in an existing session vs plain fork/execve/waitpid (same process, 2000 runs)"
warm=$("$BIN" sandbox bench-warm 2000)
plain=$("$BIN" sandbox bench-warm 2000 --plain)
node -e '
const w = JSON.parse(process.argv[1]), p = JSON.parse(process.argv[2]);
console.log(`postern warm exec: median ${w.median_us.toFixed(0)} us (p10 ${w.p10_us.toFixed(0)}, p90 ${w.p90_us.toFixed(0)})`);
console.log(`plain fork/exec:   median ${p.median_us.toFixed(0)} us (p10 ${p.p10_us.toFixed(0)}, p90 ${p.p90_us.toFixed(0)})`);
console.log(`ratio: ${(w.median_us / p.median_us).toFixed(2)}x (target <= 1.2x)`);' "$warm" "$plain"

echo
echo "== memory of 100 idle sessions"
idle=$("$BIN" sandbox bench-idle 100)
node -e '
const m = JSON.parse(process.argv[1]);
console.log(`created 100 sessions, ${m.create_ms_each.toFixed(2)} ms each`);
console.log(`per session: init process ${m.init_private_kb_each.toFixed(0)} KiB private (${m.init_pss_kb_each.toFixed(0)} KiB PSS);` +
  ` host process growth ${m.host_process_growth_kb_each.toFixed(0)} KiB; kernel (slab, stacks, page tables) ${m.kernel_kb_each.toFixed(0)} KiB;` +
  ` MemAvailable drop ${m.memavailable_drop_kb_each.toFixed(0)} KiB (target < 1024 KiB)`);' "$idle"
