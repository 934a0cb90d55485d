// Tool-call round trip and session start through postern control + a worker (bench/worker.sh), per store:
//   postern: `postern worker` (warm pool, tools in a sandbox serve child) against `postern control`;
//   sdk:     the SDK's own EnvironmentWorker (fixtures/sdk_worker.mjs; tools on the host, no sandbox) against the
//            same control plane: the peer;
//   direct:  the same bash command as an MCP tools/call to a warm `postern sandbox serve --stdio --prestart`
//            child, no control plane (what the worker adds to the sandbox is the difference).
// Round trip = agent.tool_use POSTed -> the user.tool_result seen on an SSE stream of the session (the control
// plane pumps its streams at once after an append, so this is "result stored" plus one loopback write).
// Session start = session created -> the result of its first bash call; take_us = the worker's own pool take.
// WORKER_BENCH_N calls per run (200), WORKER_BENCH_RUNS runs (3; medians of the runs' p50/p99 are printed),
// WORKER_BENCH_SESSIONS sessions per run (10), WORKER_BENCH_STORES (sqlite,redis), WORKER_BENCH_PEERS
// (postern,sdk). Output: one JSON line on
// stdout per (store, peer) and a table on stderr; bench/worker.sh formats the ratios.
import { writeFileSync, mkdirSync } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';
import http from 'node:http';
import { BIN, start, tmpdir, rmrf } from '../tests/e2e/lib/proc.mjs';
import { startControl, stopSharedRedis, BETA } from '../tests/e2e/lib/control.mjs';
import { startSdkWorker } from '../tests/e2e/lib/sdk.mjs';

const N = Number(process.env.WORKER_BENCH_N || 200);
const RUNS = Number(process.env.WORKER_BENCH_RUNS || 3);
const SESSIONS = Number(process.env.WORKER_BENCH_SESSIONS || 10);
const STORES = (process.env.WORKER_BENCH_STORES || 'sqlite,redis').split(',').filter(Boolean);
const PEERS = (process.env.WORKER_BENCH_PEERS || 'postern,sdk').split(',').filter(Boolean);
const WARMUP = 10;
const CMD = (i) => `echo call-${i}`;
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const med = (a) => pct(a, 0.5);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The driver's own client: node:http on a keep-alive agent, not fetch (undici's fetch and web streams cost this
// client 1-2 ms per request on this machine, which would be measured as the system's). post() resolves to
// {status, body}; stream(sid) to an SSE reader {next(timeoutMs) -> {event, data} | null at its end, close()}.
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
function lean(c) {
  const u = new URL(c.url);
  const base = { host: u.hostname, port: u.port, agent, headers: { 'anthropic-beta': BETA, 'x-api-key': c.apiKey } };
  const post = (p, obj, method = 'POST') => new Promise((resolve, reject) => {
    const body = obj === undefined ? '' : JSON.stringify(obj);
    const req = http.request({ ...base, method, path: `${p}?beta=true`, timeout: 30000,
      headers: { ...base.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let t = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { t += d; });
      res.on('end', () => { try { resolve({ status: res.statusCode, body: JSON.parse(t) }); } catch { resolve({ status: res.statusCode, body: t }); } });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${p}: timed out`)));
    req.on('error', reject);
    req.end(body);
  });
  const stream = (sid) => new Promise((resolve, reject) => {
    const req = http.get({ ...base, agent: false, path: `/v1/sessions/${sid}/events/stream?beta=true`,
      headers: { ...base.headers, accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) { reject(new Error(`stream: ${res.statusCode}`)); res.resume(); return; }
      res.setEncoding('utf8');
      let buf = '', ended = false, wake = null;
      const queue = [];
      res.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = {};
          for (const line of buf.slice(0, i).split('\n')) {
            const k = line.indexOf(':');
            if (k <= 0) continue;
            const v = line.slice(k + 1).replace(/^ /, '');
            if (line.slice(0, k) === 'data') ev.data = JSON.parse(v); else ev[line.slice(0, k)] = v;
          }
          buf = buf.slice(i + 2);
          if (ev.data) queue.push(ev);
        }
        if (wake) wake();
      });
      const end = () => { ended = true; if (wake) wake(); };
      res.on('end', end); res.on('close', end); res.on('error', end);
      resolve({
        async next(timeoutMs = 30000) {
          const deadline = Date.now() + timeoutMs;
          while (!queue.length && !ended) {
            const left = deadline - Date.now();
            if (left <= 0) throw new Error('sse: no event in time');
            await new Promise((r) => { const t = setTimeout(r, left); wake = () => { clearTimeout(t); wake = null; r(); }; });
          }
          return queue.shift() ?? null;
        },
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
  return { post, stream };
}

// A worker against control `c`: {stop(), takeUs() (postern only: the pool takes logged so far)}.
async function startWorker(kind, c, dir) {
  const ws = path.join(dir, `ws-${kind}`);
  mkdirSync(ws, { recursive: true });
  if (kind === 'sdk') {
    const p = await startSdkWorker({ baseURL: c.url, environmentId: c.envId, environmentKey: c.envKey, workdir: ws, maxIdleMs: 600000 });
    return { stop: () => p.kill('SIGTERM'), takeUs: () => [] };
  }
  const keyFile = path.join(dir, 'env.key');
  writeFileSync(keyFile, `${c.envKey}\n`, { mode: 0o600 });
  const cfg = path.join(dir, 'worker.yaml');
  writeFileSync(cfg, [`base_url: ${c.url}`, `environment_id: ${c.envId}`, `environment_key_file: ${keyFile}`,
    `workspace_root: ${ws}`, 'pool_size: 2', 'max_sessions: 4', 'max_idle: 0', 'log_level: info'].join('\n') + '\n');
  const p = start(BIN, ['worker', '-c', cfg], { name: 'worker-bench' });
  await p.waitFor(/msg="worker started"/, 10000);
  return {
    stop: () => p.kill('SIGTERM'), proc: p,
    takeUs: () => [...p.log.matchAll(/msg="sandbox taken from the warm pool".* take_us=([\d.]+)/g)].map((m) => Number(m[1])),
  };
}

// Posts one bash call on session `sid` and resolves when its result arrives on `st` (an sseReader).
async function roundTrip(l, sid, st, i) {
  const t0 = performance.now();
  const r = await l.post(`/v1/sessions/${sid}/events`,
    { events: [{ type: 'agent.tool_use', name: 'bash', input: { command: CMD(i) }, evaluated_permission: 'allow' }] });
  if (r.status !== 200) throw new Error(`post: ${r.status} ${JSON.stringify(r.body)}`);
  const id = r.body.data[0].id;
  for (let k = 0; k < 100; k++) {
    const ev = await st.next(30000);
    if (!ev) throw new Error('stream ended');
    if (ev.data?.type === 'user.tool_result' && ev.data.tool_use_id === id) {
      const text = (ev.data.content ?? []).map((b) => b.text ?? '').join('');
      if (ev.data.is_error || !text.includes(`call-${i}`)) throw new Error(`bad result: ${JSON.stringify(ev.data)}`);
      return performance.now() - t0;
    }
  }
  throw new Error(`no result for ${id} within 100 events`);
}

async function oneRun(kind, c, dir) {
  const w = await startWorker(kind, c, dir);
  const l = lean(c);
  const rt = [], ss = [];
  try {
    // Session start, sequentially: each session's first call, then the session is deleted (the worker ends it)
    // and the pool gets a moment to refill (a sandbox cold start) before the next.
    for (let k = 0; k < SESSIONS; k++) {
      const t0 = performance.now();
      const s = await c.createSession();
      const st = await l.stream(s.id);
      await roundTrip(l, s.id, st, k);
      ss.push(performance.now() - t0); // create + stream open + first result
      st.close();
      await l.post(`/v1/sessions/${s.id}`, undefined, 'DELETE');
      await sleep(300);
    }
    const s = await c.createSession();
    const st = await l.stream(s.id);
    for (let i = 0; i < WARMUP + N; i++) {
      const d = await roundTrip(l, s.id, st, i);
      if (i >= WARMUP) rt.push(d);
    }
    st.close();
    await l.post(`/v1/sessions/${s.id}`, undefined, 'DELETE');
    return { p50: med(rt), p99: pct(rt, 0.99), start: med(ss), take: w.takeUs() };
  } finally { await w.stop(); }
}

// The same calls to a warm sandbox serve child over its stdin (newline-framed JSON-RPC), no control plane.
async function directRun(dir) {
  const ws = path.join(dir, 'ws-direct');
  mkdirSync(ws, { recursive: true });
  const ch = spawn(BIN, ['sandbox', 'serve', '--stdio', '--prestart', '--workspace', ws], { stdio: ['pipe', 'pipe', 'pipe'] });
  let buf = '';
  const waiting = new Map();
  ch.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i); buf = buf.slice(i + 1);
      const m = JSON.parse(line);
      if (m.id !== undefined && waiting.has(m.id)) { waiting.get(m.id)(m); waiting.delete(m.id); }
    }
  });
  ch.stderr.resume();
  const spawned = new Promise((resolve, reject) => { ch.on('spawn', resolve); ch.on('error', reject); });
  let nextId = 1;
  const call = (method, params) => new Promise((resolve, reject) => {
    const id = nextId++;
    const t = setTimeout(() => reject(new Error(`sandbox serve: no answer to ${method}`)), 30000);
    waiting.set(id, (m) => { clearTimeout(t); resolve(m); });
    ch.stdin.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n');
  });
  await spawned;
  try {
    await call('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '1' } });
    ch.stdin.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) + '\n');
    const rt = [];
    for (let i = 0; i < WARMUP + N; i++) {
      const t0 = performance.now();
      const m = await call('tools/call', { name: 'bash', arguments: { command: CMD(i) } });
      const text = (m.result?.content ?? []).map((b) => b.text ?? '').join('');
      if (m.result?.isError || !text.includes(`call-${i}`)) throw new Error(`bad result: ${JSON.stringify(m)}`);
      if (i >= WARMUP) rt.push(performance.now() - t0);
    }
    return { p50: med(rt), p99: pct(rt, 0.99) };
  } finally {
    ch.stdin.end();
    const t = setTimeout(() => ch.kill('SIGKILL'), 5000);
    await new Promise((r) => { if (ch.exitCode !== null) r(); else ch.on('exit', r); });
    clearTimeout(t);
  }
}

const dir = tmpdir('postern-wbench-');
try {
  const direct = [];
  for (let r = 0; r < RUNS; r++) direct.push(await directRun(dir));
  const dm = { store: '-', peer: 'direct', p50: med(direct.map((x) => x.p50)), p99: med(direct.map((x) => x.p99)), runs: direct };
  console.log(JSON.stringify(dm));
  for (const store of STORES) {
    const c = await startControl({ store, config: { lease_ttl: '30s' } });
    try {
      for (const kind of PEERS) {
        const runs = [];
        for (let r = 0; r < RUNS; r++) runs.push(await oneRun(kind, c, path.join(dir, `${store}-${kind}-${r}`)));
        const take = runs.flatMap((x) => x.take);
        console.log(JSON.stringify({ store, peer: kind, p50: med(runs.map((x) => x.p50)), p99: med(runs.map((x) => x.p99)),
          start: med(runs.map((x) => x.start)), take_p50: take.length ? med(take) : null, take_max: take.length ? Math.max(...take) : null,
          runs: runs.map(({ p50, p99, start }) => ({ p50, p99, start })) }));
      }
    } finally { await c.stop(); }
  }
} finally { agent.destroy(); await stopSharedRedis(); rmrf(dir); }
