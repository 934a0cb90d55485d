// Tool-call load for the guard benchmark: C SDK clients (StreamableHTTPClientTransport), each making its share
// of N `echo` tool calls one after another. Prints one JSON line: calls, seconds, calls_per_s, p50_us, p99_us,
// and with CPU_PID set, cpu_us_per_call: the CPU time (all threads, /proc/PID/task/*/schedstat, nanoseconds) that
// process spent over the timed calls only (after connect and warm-up, before the sessions close), per call.
// Usage: [CPU_PID=PID] node bench/mcp-calls.mjs URL CALLS CONCURRENCY [CA_FILE]   (https names resolve to 127.0.0.1)
import { readFileSync, readdirSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { pinnedFetch } from '../tests/e2e/lib/mcp.mjs';

const [url, callsArg, concArg, ca] = process.argv.slice(2);
process.removeAllListeners('warning'); // the SDK adds an abort listener per call to a shared signal: noise at this count
const calls = Number(callsArg), conc = Number(concArg);
const lat = [];
const cpuPid = process.env.CPU_PID;
function cpuNs() {
  let ns = 0;
  for (const t of readdirSync(`/proc/${cpuPid}/task`)) ns += Number(readFileSync(`/proc/${cpuPid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
  return ns;
}
let cpu0 = 0, cpu1 = 0, t1, left;
async function worker(n) {
  const f = pinnedFetch({ ca });
  const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: f });
  const client = new Client({ name: 'postern-bench', version: '1.0.0' });
  await client.connect(transport);
  for (let i = 0; i < 20; i++) await client.callTool({ name: 'echo', arguments: { text: 'warm' } }); // warm-up, not counted
  if (++ready === conc) go();
  await barrier;
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const r = await client.callTool({ name: 'echo', arguments: { text: `call ${i}`, password: 'hunter2' } });
    lat.push(Number(process.hrtime.bigint() - t0) / 1000);
    if (!r.content?.[0]?.text?.startsWith('echo:')) throw new Error(`bad answer: ${JSON.stringify(r)}`);
  }
  if (--left === 0) { t1 = process.hrtime.bigint(); if (cpuPid) cpu1 = cpuNs(); }
  await transport.terminateSession().catch(() => {});
  await client.close();
  await f.close();
}
let go, ready = 0;
const barrier = new Promise((r) => { go = r; });
const per = Math.floor(calls / conc);
let t0;
left = conc;
barrier.then(() => { if (cpuPid) cpu0 = cpuNs(); t0 = process.hrtime.bigint(); });
await Promise.all(Array.from({ length: conc }, () => worker(per)));
const secs = Number(t1 - t0) / 1e9;
lat.sort((a, b) => a - b);
const q = (p) => Math.round(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]);
console.log(JSON.stringify({ calls: lat.length, seconds: +secs.toFixed(3), calls_per_s: Math.round(lat.length / secs), p50_us: q(0.5), p99_us: q(0.99),
  ...(cpuPid ? { cpu_us_per_call: +((cpu1 - cpu0) / 1000 / lat.length).toFixed(1) } : {}) }));
