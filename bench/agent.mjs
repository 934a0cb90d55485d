// See bench/agent.sh. Runs scripts/demo.mjs with POSTERN_DEMO_REPEAT and reads the step times it prints.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../tests/e2e/lib/proc.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const n = Number(process.env.AGENT_BENCH_N || 30);
const env = { ...process.env, POSTERN_DEMO_REPEAT: String(n) };
delete env.ANTHROPIC_API_KEY;
const r = await run(process.execPath, [path.join(root, 'scripts/demo.mjs')], { env, timeoutMs: 300000 });
if (r.code !== 0) { console.error(r.stdout + r.stderr); process.exit(1); }
const times = { tunnel_mcp: [], tunnel_sbx: [], direct_mcp: [], direct_sbx: [] };
for (const l of r.stdout.split('\n')) {
  let m = l.match(/\] (tunnel|direct)_(mcp|sbx)_\d+ .* ok \(([\d.]+) ms\)/);
  if (m) times[`${m[1]}_${m[2]}`].push(Number(m[3]));
  m = l.match(/direct sandbox\.bash ([\d.]+) ms/);
  if (m) times.direct_sbx.push(Number(m[1]));
}
const p50 = (a) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.floor(s.length / 2)].toFixed(1) : 'n/a'; };
console.log(`agent steps (scripted demo, ${n} of each, loopback)`);
console.log(`  MCP tools/call echo: through edge + gateway + guard + audit p50 ${p50(times.tunnel_mcp)} ms (${times.tunnel_mcp.length}), direct to the server p50 ${p50(times.direct_mcp)} ms (${times.direct_mcp.length})`);
console.log(`  sandbox bash "true": through control plane + worker p50 ${p50(times.tunnel_sbx)} ms (${times.tunnel_sbx.length}), a sandbox serve child alone p50 ${p50(times.direct_sbx)} ms (${times.direct_sbx.length})`);
