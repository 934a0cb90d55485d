// `postern control` for tests: start it on a temp state_dir with a given store, make an environment and an
// API key through the CLI, and talk to it with fetch. Shared by the control, redis and SDK tests.
//   const c = await startControl({ store: 'sqlite' });          // or { store: 'redis', redisUrl }
//   const r = await c.api('/v1/environments/' + c.envId, { key: c.apiKey });
//   await c.kill9(); await c.restart(); await c.stop();
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { BIN, start, postern, tmpdir, rmrf, freePort } from './proc.mjs';

export const BETA = 'managed-agents-2026-04-01';

// The stores a test runs on: SQLite always, Redis when POSTERN_REDIS_TESTS is set (its URL in
// POSTERN_REDIS_URL, or a helper that starts a Redis passes redisUrl itself).
export const stores = ['sqlite', ...(process.env.POSTERN_REDIS_TESTS ? ['redis'] : [])];

// Options: store ('sqlite' | 'redis'), redisUrl, config (extra YAML keys: {lease_ttl: '2s'}), dir (state
// parent, made when absent; removed by stop() only when made here), name (log prefix), listen (override
// listen_addr, e.g. to test refusals), keys (reuse another instance's, below), envName.
export async function startControl(opts = {}) {
  const store = opts.store || 'sqlite';
  const own = !opts.dir;
  const dir = opts.dir || tmpdir('postern-control-');
  let storeSpec = 'sqlite';
  if (store === 'redis') {
    storeSpec = opts.redisUrl || process.env.POSTERN_REDIS_URL;
    if (!storeSpec) throw new Error('startControl: store redis needs redisUrl or POSTERN_REDIS_URL');
  }
  const port = await freePort();
  const metricsPort = await freePort();
  const cfgPath = path.join(dir, 'control.yaml');
  const extra = Object.entries(opts.config || {}).map(([k, v]) => `${k}: ${v}`);
  writeFileSync(cfgPath, [`listen_addr: ${opts.listen || `127.0.0.1:${port}`}`, `state_dir: ${path.join(dir, 'state')}`,
    `store: ${JSON.stringify(storeSpec)}`, `metrics_listen: 127.0.0.1:${metricsPort}`, ...extra].join('\n') + '\n');

  const cli = async (args) => {
    const r = await postern(['control', ...args, '-c', cfgPath], { timeoutMs: 20000 });
    if (r.code !== 0) throw new Error(`postern control ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  // keys: {envId, envKey, envKeyId, apiKey, apiKeyId} of another instance on the same store (a second replica
  // on one Redis) instead of making new ones.
  const env = opts.keys ? { id: opts.keys.envId, key: opts.keys.envKey, key_id: opts.keys.envKeyId }
    : await cli(['env', 'create', opts.envName || 'test-env']);
  const ak = opts.keys ? { id: opts.keys.apiKeyId, key: opts.keys.apiKey } : await cli(['apikey', 'create', 'test-api']);

  const c = {
    url: `http://127.0.0.1:${port}`, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, port, dir, cfgPath,
    envId: env.id, envKey: env.key, envKeyId: env.key_id, apiKey: ak.key, apiKeyId: ak.id, store, cli, proc: null,
    logs: '',
  };
  const launch = async () => {
    c.proc = start(BIN, ['control', '-c', cfgPath], { name: opts.name || `control-${store}` });
    await c.proc.waitFor(/msg="control plane listening"/, 15000);
  };
  c.restart = launch;
  // The log of every run so far (the current one included).
  c.allLogs = () => c.logs + (c.proc ? c.proc.log : '');
  c.kill9 = async () => { await c.proc.kill('SIGKILL'); c.logs += c.proc.log; c.proc = null; };
  c.stop = async () => {
    if (c.proc) { await c.proc.kill('SIGTERM'); c.logs += c.proc.log; c.proc = null; }
    if (own) rmrf(dir);
  };
  // One API call. key: x-api-key; bearer: Authorization: Bearer. Returns {status, body (JSON or text), headers}.
  c.api = async (p, o = {}) => {
    const headers = { 'anthropic-beta': BETA, ...(o.headers || {}) };
    if (o.key) headers['x-api-key'] = o.key;
    if (o.bearer) headers.authorization = `Bearer ${o.bearer}`;
    let body = o.body;
    if (body !== undefined && typeof body !== 'string') { body = JSON.stringify(body); headers['content-type'] = 'application/json'; }
    const sep = p.includes('?') ? '&' : '?';
    const res = await fetch(`${c.url}${p}${sep}beta=true`, { method: o.method || (body !== undefined ? 'POST' : 'GET'),
      headers, body, signal: AbortSignal.timeout(o.timeoutMs || 10000) });
    const text = await res.text();
    let parsed = text;
    try { parsed = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, body: parsed, headers: res.headers };
  };
  // Helpers on top of api().
  c.createSession = async (extra = {}) => {
    const r = await c.api('/v1/sessions', { key: c.apiKey, body: { agent: 'agent-test', environment_id: c.envId, ...extra } });
    if (r.status !== 200) throw new Error(`session create: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  c.poll = (q = 'block_ms=999', worker = 'w-1', bearer = c.envKey) =>
    c.api(`/v1/environments/${c.envId}/work/poll?${q}`, { bearer, headers: { 'Anthropic-Worker-ID': worker } });
  // The session's SSE stream (cred: {key} or {bearer}; lastEventId resumes): {status, sse (sseReader), close}.
  c.stream = async (sessionId, cred, lastEventId) => {
    const ctrl = new AbortController();
    const headers = { 'anthropic-beta': BETA, accept: 'text/event-stream' };
    if (cred.key) headers['x-api-key'] = cred.key;
    if (cred.bearer) headers.authorization = `Bearer ${cred.bearer}`;
    if (lastEventId !== undefined) headers['last-event-id'] = String(lastEventId);
    const t = setTimeout(() => ctrl.abort(), 10000);
    const res = await fetch(`${c.url}/v1/sessions/${sessionId}/events/stream?beta=true`, { headers, signal: ctrl.signal });
    clearTimeout(t);
    const sse = res.ok ? sseReader(res) : null;
    return { status: res.status, res, sse, close: () => { ctrl.abort(); } };
  };
  await launch();
  return c;
}

// The sessions token inside a work item's secret (base64url JSON).
export function sessionsToken(work) {
  return JSON.parse(Buffer.from(work.secret, 'base64url').toString()).sessions_token;
}

// An SSE reader over a fetch Response: next(timeoutMs) gives {event, data (parsed), id} or null at the end.
export function sseReader(res) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  const queue = [];
  let ended = false;
  const parse = () => {
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = {};
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const k = line.slice(0, line.indexOf(':'));
        const v = line.slice(line.indexOf(':') + 1).replace(/^ /, '');
        if (k === 'data') ev.data = JSON.parse(v); else if (k) ev[k] = v;
      }
      if (ev.event || ev.data) queue.push(ev);
    }
  };
  return {
    async next(timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (!queue.length && !ended) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error('sse: no event in time');
        let timer;
        const r = await Promise.race([reader.read(), new Promise((_, rej) => { timer = setTimeout(() => rej(new Error('sse: no event in time')), left); })]);
        clearTimeout(timer);
        if (r.done) ended = true; else { buf += dec.decode(r.value, { stream: true }); parse(); }
      }
      return queue.shift() || null;
    },
    cancel: () => reader.cancel().catch(() => {}),
  };
}

