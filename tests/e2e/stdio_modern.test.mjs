// The stdio bridge's 2026-07-28 era: a `stdio:` route running @modelcontextprotocol/server-everything (a
// 2025-x stdio server), driven with raw HTTPS POSTs in the modern wire (no initialize, no session, _meta
// protocolVersion on every request, the MCP-Protocol-Version / Mcp-Method / Mcp-Name headers): server/discover
// from the bridge, tools/list and tools/call, two clients with the same id on the shared child, progress on an
// SSE answer scoped to the request, closing that stream cancels the call, a legacy SDK client on the same
// route at the same time, and the refusals (-32022, batch, -32020, 405).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { start, postern, freePort, tmpdir, rmrf, stopAll, waitUntil } from './lib/proc.mjs';
import { pinnedFetch } from './lib/mcp.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DOMAIN = 'tun.test';
const EVERYTHING = `["${process.execPath}", "${path.join(root, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js')}", "stdio"]`;
const V = '2026-07-28';
let dir, port, metricsPort, gw, ca;

before(async () => {
  dir = tmpdir('postern-modern-');
  const r = await postern(['certs', 'init', '--domain', DOMAIN, '--out', path.join(dir, 'pki')]);
  assert.equal(r.code, 0, r.stderr);
  ca = path.join(dir, 'pki', 'ca.pem');
  port = await freePort();
  metricsPort = await freePort();
  const yaml = path.join(dir, 'gw.yaml');
  writeFileSync(yaml, [
    `listen_addr: 127.0.0.1:${port}`,
    `metrics_listen: 127.0.0.1:${metricsPort}`,
    `tunnel_domain: ${DOMAIN}`,
    'log_level: info',
    'shutdown_timeout: 5s',
    `tls: { cert_file: ${path.join(dir, 'pki', 'server.pem')}, key_file: ${path.join(dir, 'pki', 'server.key')} }`,
    'routes:',
    '  every:',
    `    stdio: ${EVERYTHING}`,
    '  guarded:',
    `    stdio: ${EVERYTHING}`,
    '    policy:',
    '      default: allow',
    '      rules:',
    '        - {name: no-env, match: {tool: "get-env"}, action: deny}',
  ].join('\n') + '\n');
  gw = start(process.env.POSTERN_BIN, ['gateway', '-c', yaml], { name: 'gateway' });
  await gw.waitFor(/proxy listening/, 10000);
});

after(async () => {
  await stopAll();
  rmrf(dir);
});

async function metrics() {
  const r = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.equal(r.status, 200);
  return r.text();
}
const metric = (body, name, labels) => {
  const m = body.match(new RegExp(`^${name}\\{${labels.replace(/[{}]/g, '\\$&')}\\} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : undefined;
};

function rawRequest(method, headers, body, route = 'every') {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port, servername: `${route}.${DOMAIN}`, path: '/mcp', method, agent: false, ca: readFileSync(ca),
      headers: { host: `${route}.${DOMAIN}`, ...headers },
    }, resolve);
    req.setTimeout(30000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

async function rawText(res) {
  let t = '';
  for await (const c of res) t += c;
  return { status: res.statusCode, headers: res.headers, text: t };
}

// The events of an SSE answer, read to its end (or .events while open, .close() to cut it).
function sseReader(res) {
  const events = [];
  let buf = '', waiter = null, ended = false;
  res.setEncoding('utf8');
  res.on('data', (c) => {
    buf += c;
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
      if (data.length) events.push(JSON.parse(data.join('\n')));
    }
    if (waiter) waiter();
  });
  res.on('end', () => { ended = true; if (waiter) waiter(); });
  res.on('error', () => { ended = true; if (waiter) waiter(); });
  const until = (pred, timeoutMs = 20000) => new Promise((resolve, reject) => {
    const t = setTimeout(() => { waiter = null; reject(new Error(`SSE: not reached in ${timeoutMs} ms; got ${JSON.stringify(events)}`)); }, timeoutMs);
    const check = () => { if (pred()) { clearTimeout(t); waiter = null; resolve(events); } };
    waiter = check;
    check();
  });
  return {
    events,
    ended: () => until(() => ended),
    first: (p) => until(() => events.some(p)),
    close: () => res.destroy(),
  };
}

// A modern request: the body carries the per-request _meta, the headers mirror it.
let nextId = 100;
function modern(method, params = {}, { id = nextId++, meta = {}, headers = {}, version = V, route } = {}) {
  const body = { jsonrpc: '2.0', id, method, params: { ...params, _meta: {
    'io.modelcontextprotocol/protocolVersion': version,
    'io.modelcontextprotocol/clientCapabilities': {},
    'io.modelcontextprotocol/clientInfo': { name: 'raw-modern', version: '1' },
    ...meta,
  } } };
  const h = {
    'content-type': 'application/json', accept: 'application/json, text/event-stream',
    'mcp-protocol-version': version, 'mcp-method': method,
    ...(params.name ? { 'mcp-name': params.name } : {}),
    ...headers,
  };
  return rawRequest('POST', h, JSON.stringify(body), route);
}
async function modernJson(method, params, opts) {
  const r = await rawText(await modern(method, params, opts));
  return { ...r, body: r.text ? JSON.parse(r.text) : null };
}
const longRun = (duration, steps) => ({ name: 'trigger-long-running-operation', arguments: { duration, steps } });

test('server/discover is answered by the bridge from the shared child\'s initialize result', async () => {
  const r = await modernJson('server/discover', {}, { id: 'disc-1' });
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers['content-type'], /^application\/json/);
  assert.equal(r.headers['mcp-session-id'], undefined, 'a modern answer carries no session id');
  assert.equal(r.body.id, 'disc-1');
  const res = r.body.result;
  assert.equal(res.resultType, 'complete');
  assert.deepEqual(res.supportedVersions, [V]);
  assert.ok(res.capabilities.tools, JSON.stringify(res.capabilities));
  assert.equal(res.capabilities.tools.listChanged, undefined, 'no listChanged: the bridge offers no subscriptions/listen');
  assert.equal(res._meta['io.modelcontextprotocol/serverInfo'].name, 'mcp-servers/everything');
  assert.equal(typeof res.instructions, 'string');
  assert.equal(res.ttlMs, 300000);
  assert.equal(res.cacheScope, 'public');
  await gw.waitFor(/msg="mcp shared child initialized" route=every child=[0-9a-f]{8} protocol="2025-11-25" server="mcp-servers\/everything"/, 5000);
});

test('tools/list and tools/call (echo) in the modern wire', async () => {
  const l = await modernJson('tools/list', {}, { id: 1 });
  assert.equal(l.status, 200, l.text);
  assert.equal(l.body.id, 1);
  assert.equal(l.body.result.resultType, 'complete');
  assert.equal(l.body.result.ttlMs, 0);
  assert.equal(l.body.result.cacheScope, 'private');
  const names = l.body.result.tools.map((t) => t.name);
  assert.ok(names.includes('echo') && names.includes('trigger-long-running-operation'), names.join(','));
  const c = await modernJson('tools/call', { name: 'echo', arguments: { message: 'hello modern' } }, { id: 'call-1' });
  assert.equal(c.status, 200, c.text);
  assert.match(c.headers['content-type'], /^application\/json/, 'nothing came before the response: plain JSON');
  assert.equal(c.body.id, 'call-1');
  assert.equal(c.body.result.resultType, 'complete');
  assert.equal(c.body.result.content[0].text, 'Echo: hello modern');
});

test('two clients with the same id (1) and the same progress token on the shared child get their own answers', async () => {
  const [a, b] = await Promise.all([
    modern('tools/call', longRun(1, 2), { id: 1, meta: { progressToken: 'p' } }),
    modern('tools/call', longRun(2, 3), { id: 1, meta: { progressToken: 'p' } }),
  ]);
  const [ea, eb] = await Promise.all([sseReader(a).ended(), sseReader(b).ended()]);
  const prog = (ev) => ev.filter((e) => e.method === 'notifications/progress').map((e) => `${e.params.progressToken} ${e.params.progress}/${e.params.total}`);
  assert.deepEqual(prog(ea), ['p 1/2', 'p 2/2']);
  assert.deepEqual(prog(eb), ['p 1/3', 'p 2/3', 'p 3/3']);
  assert.equal(ea.at(-1).id, 1);
  assert.match(ea.at(-1).result.content[0].text, /Duration: 1 seconds, Steps: 2\./);
  assert.equal(eb.at(-1).id, 1);
  assert.match(eb.at(-1).result.content[0].text, /Duration: 2 seconds, Steps: 3\./);
  const m = await metrics();
  assert.equal(metric(m, 'postern_mcp_modern_children', 'route="every"'), 1, 'both went to the one shared child');
});

test('a long-running call with a progress token: its progress on SSE, then the result, then the stream ends', async () => {
  const res = await modern('tools/call', longRun(1, 4), { id: 'lr', meta: { progressToken: 42 } });
  assert.equal(res.statusCode, 200);
  assert.match(res.headers['content-type'], /^text\/event-stream/);
  assert.equal(res.headers['mcp-session-id'], undefined);
  const ev = await sseReader(res).ended();
  assert.deepEqual(ev.map((e) => e.method ? `${e.method} ${e.params.progressToken} ${e.params.progress}` : `result ${e.id}`),
    ['notifications/progress 42 1', 'notifications/progress 42 2', 'notifications/progress 42 3', 'notifications/progress 42 4', 'result lr']);
  assert.equal(ev.at(-1).result.resultType, 'complete');
});

test('closing the SSE stream mid-call cancels it: notifications/cancelled goes to the child', async () => {
  const from = gw.log.length;
  const before = metric(await metrics(), 'postern_mcp_modern_cancelled_total', 'route="every"');
  const res = await modern('tools/call', longRun(20, 20), { id: 'gone', meta: { progressToken: 'g' } });
  const s = sseReader(res);
  await s.first((e) => e.method === 'notifications/progress');
  assert.equal(metric(await metrics(), 'postern_mcp_modern_inflight', 'route="every"'), 1);
  s.close();
  await gw.waitFor(/msg="mcp request cancelled" route=every child=[0-9a-f]{8} era=2026-07-28 id=\d+ method=tools\/call reason="the client closed the stream"/, 10000, from);
  const m = await metrics();
  assert.equal(metric(m, 'postern_mcp_modern_cancelled_total', 'route="every"'), before + 1);
  assert.equal(metric(m, 'postern_mcp_modern_inflight', 'route="every"'), 0);
  // The child goes on serving.
  const c = await modernJson('tools/call', { name: 'echo', arguments: { message: 'after cancel' } });
  assert.equal(c.body.result.content[0].text, 'Echo: after cancel');
});

test('a legacy SDK client uses the same route at the same time', async () => {
  const f = pinnedFetch({ ca });
  const transport = new StreamableHTTPClientTransport(new URL(`https://every.${DOMAIN}:${port}/mcp`), { fetch: f });
  const client = new Client({ name: 'legacy-beside-modern', version: '1.0.0' }, { capabilities: {} });
  await client.connect(transport);
  try {
    // A modern call in flight while the legacy session is set up and used.
    const pending = modern('tools/call', longRun(2, 2), { id: 1, meta: { progressToken: 1 } }).then((r) => sseReader(r).ended());
    const r = await client.callTool({ name: 'echo', arguments: { message: 'legacy here' } });
    assert.equal(r.content[0].text, 'Echo: legacy here');
    const m = await metrics();
    assert.equal(metric(m, 'postern_mcp_sessions', 'route="every"'), 1, 'the legacy client has its own session (child)');
    assert.equal(metric(m, 'postern_mcp_modern_children', 'route="every"'), 1);
    const ev = await pending;
    assert.match(ev.at(-1).result.content[0].text, /Duration: 2 seconds/);
    assert.ok(transport.sessionId, 'the legacy client got a session id');
  } finally {
    await transport.terminateSession().catch(() => {});
    await client.close().catch(() => {});
    await f.close().catch(() => {});
  }
});

test('refusals: unknown version -32022, batch 400, header mismatch -32020, removed method 404, GET/DELETE 405', async () => {
  for (const v of ['2027-01-01', 'garbage']) {
    const r = await modernJson('tools/list', {}, { id: 5, version: v });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.body.id, 5);
    assert.equal(r.body.error.code, -32022);
    assert.deepEqual(r.body.error.data.supported, [V]);
    assert.equal(r.body.error.data.requested, v);
  }
  const one = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': V } } };
  const batch = await rawText(await rawRequest('POST', { 'content-type': 'application/json', accept: 'application/json, text/event-stream',
    'mcp-protocol-version': V, 'mcp-method': 'tools/list' }, JSON.stringify([one, { ...one, id: 2 }])));
  assert.equal(batch.status, 400, batch.text);
  assert.match(JSON.parse(batch.text).error.message, /batch/i);
  const mm = await modernJson('tools/call', { name: 'echo', arguments: { message: 'x' } }, { headers: { 'mcp-name': 'get-env' } });
  assert.equal(mm.status, 400);
  assert.equal(mm.body.error.code, -32020);
  const ping = await modernJson('ping', {});
  assert.equal(ping.status, 404);
  assert.equal(ping.body.error.code, -32601);
  for (const method of ['GET', 'DELETE']) {
    const r = await rawText(await rawRequest(method, { accept: 'text/event-stream', 'mcp-protocol-version': V }));
    assert.equal(r.status, 405, `${method}: ${r.text}`);
    assert.equal(r.headers.allow, 'POST');
  }
  // A notification: 202, nothing to answer.
  const n = await rawText(await rawRequest('POST', { 'content-type': 'application/json', accept: 'application/json, text/event-stream',
    'mcp-protocol-version': V, 'mcp-method': 'notifications/cancelled' },
  JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'none-such' } })));
  assert.equal(n.status, 202);
  const m = await metrics();
  // served: discover, list, echo, 2 same-id calls, the progress call, the cancelled one, echo after it, the one
  // beside the legacy client; the refusals above do not count
  assert.equal(metric(m, 'postern_mcp_modern_requests_total', 'route="every"'), 9);
  assert.equal(metric(m, 'postern_mcp_sessions_started_total', 'route="every"'), 1, 'only the legacy client started a session');
});

test('a guarded stdio route: modern tools/list is filtered and a denied call is refused naming the rule', async () => {
  const l = await modernJson('tools/list', {}, { id: 1, route: 'guarded' });
  assert.equal(l.status, 200, l.text);
  const names = l.body.result.tools.map((t) => t.name);
  assert.ok(names.includes('echo'), names.join(','));
  assert.ok(!names.includes('get-env'), 'the denied tool is hidden');
  assert.equal(l.body.result.resultType, 'complete');
  const d = await modernJson('tools/call', { name: 'get-env', arguments: {} }, { id: 2, route: 'guarded' });
  assert.equal(d.body.id, 2);
  assert.match(JSON.stringify(d.body.error ?? d.body.result), /no-env/);
  const c = await modernJson('tools/call', { name: 'echo', arguments: { message: 'guarded' } }, { id: 3, route: 'guarded' });
  assert.equal(c.body.result.content[0].text, 'Echo: guarded');
});

test('SIGTERM: the gateway exits 0 with the shared child running', async () => {
  await waitUntil(async () => metric(await metrics(), 'postern_mcp_modern_inflight', 'route="every"') === 0, 5000, 50, 'no request in flight');
  const { code, signal } = await gw.kill('SIGTERM', 15000);
  assert.equal(signal, null, `gateway died by ${signal}`);
  assert.equal(code, 0, gw.log.slice(-2000));
  assert.doesNotMatch(gw.log, /AddressSanitizer|LeakSanitizer|runtime error:/);
});
