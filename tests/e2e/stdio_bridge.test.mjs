// The stdio bridge, complete: a `stdio:` route running @modelcontextprotocol/server-everything over stdio,
// driven with the official SDK client (StreamableHTTPClientTransport) and with raw HTTP where the test needs
// the wire: progress on the POST's SSE stream before the result, a sampling request answered by the client,
// the GET stream with server-initiated messages, Last-Event-ID resume, one GET stream per session (409),
// abandoned sessions reclaimed at the session cap, and sessions per route in the gateway's /metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { start, postern, freePort, tmpdir, rmrf, stopAll, waitUntil, sleep } from './lib/proc.mjs';
import { pinnedFetch } from './lib/mcp.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DOMAIN = 'tun.test';
const EVERYTHING = `["${process.execPath}", "${path.join(root, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js')}", "stdio"]`;
const CAP = 4;
let dir, port, metricsPort, gw, ca;

before(async () => {
  dir = tmpdir('postern-stdio-');
  const r = await postern(['certs', 'init', '--domain', DOMAIN, '--out', path.join(dir, 'pki')]);
  assert.equal(r.code, 0, r.stderr);
  ca = path.join(dir, 'pki', 'ca.pem');
  port = await freePort();
  metricsPort = await freePort();
  const yaml = path.join(dir, 'gw.yaml');
  // `postern gateway` with no edges: the proxy alone, plus /metrics on metrics_listen.
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
    '    policy: {default: allow, rules: [{match: {tool: "get-env"}, action: deny}]}',
    '  small:',
    `    max_sessions: ${CAP}`,
    '    reclaim_idle: 1s',
    `    stdio: ${EVERYTHING}`,
  ].join('\n') + '\n');
  gw = start(process.env.POSTERN_BIN, ['gateway', '-c', yaml], { name: 'gateway' });
  await gw.waitFor(/proxy listening/, 10000);
});

after(async () => {
  await stopAll();
  rmrf(dir);
});

const url = (route) => `https://${route}.${DOMAIN}:${port}/mcp`;
const text = (r) => r.content.map((c) => c.text).join('');

async function metrics() {
  const r = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.equal(r.status, 200);
  return r.text();
}
const metric = (body, name, labels) => {
  const m = body.match(new RegExp(`^${name}\\{${labels.replace(/[{}]/g, '\\$&')}\\} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : undefined;
};

// An SDK client; every HTTP answer's method, status and content type is recorded.
async function sdkClient(route, { sampling } = {}) {
  const f = pinnedFetch({ ca });
  const seen = [];
  const rec = async (u, init = {}) => {
    const r = await f(u, init);
    seen.push({ method: init.method || 'GET', status: r.status, ctype: r.headers.get('content-type') || '' });
    return r;
  };
  const transport = new StreamableHTTPClientTransport(new URL(url(route)), { fetch: rec });
  const client = new Client({ name: 'postern-stdio-test', version: '1.0.0' }, { capabilities: sampling ? { sampling: {} } : {} });
  if (sampling) client.setRequestHandler(CreateMessageRequestSchema, sampling);
  await client.connect(transport);
  return {
    client, transport, seen,
    close: async () => {
      await transport.terminateSession().catch(() => {});
      await client.close().catch(() => {});
      await f.close().catch(() => {});
    },
    // the client goes away without DELETE: its GET stream is cut, the session stays behind
    abandon: async () => { await client.close().catch(() => {}); await f.close().catch(() => {}); },
  };
}

test('a POST answered as SSE carries 4 of 4 progress notifications before the result', async () => {
  const s = await sdkClient('every');
  try {
    const order = [];
    const r = await s.client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 4 } }, undefined,
      { onprogress: (p) => order.push(`progress ${p.progress}/${p.total}`), timeout: 30000 });
    order.push('result');
    assert.deepEqual(order, ['progress 1/4', 'progress 2/4', 'progress 3/4', 'progress 4/4', 'result']);
    assert.match(text(r), /Long running operation completed\. Duration: 1 seconds, Steps: 4\./);
    const post = s.seen.filter((x) => x.method === 'POST' && x.status === 200);
    assert.ok(post.some((x) => x.ctype.startsWith('text/event-stream')), `no SSE answer among ${JSON.stringify(s.seen)}`);
    // a response with nothing before it stays plain JSON
    assert.ok(post.some((x) => x.ctype.startsWith('application/json')), 'initialize was not answered as JSON');
    // the SDK client opened the session's GET stream
    assert.ok(s.seen.some((x) => x.method === 'GET' && x.status === 200 && x.ctype.startsWith('text/event-stream')));
  } finally {
    await s.close();
  }
});

for (const route of ['every', 'guarded'])
test(`${route}: a sampling request from the server reaches the client and its answer reaches the server`, async () => {
  const asked = [];
  const s = await sdkClient(route, {
    sampling: async (req) => {
      asked.push(req.params);
      return { model: 'postern-test-model', role: 'assistant', content: { type: 'text', text: `sampled: ${req.params.messages[0].content.text}` } };
    },
  });
  try {
    const r = await s.client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'hello through the bridge', maxTokens: 7 } });
    assert.equal(asked.length, 1);
    assert.equal(asked[0].maxTokens, 7);
    assert.match(text(r), /LLM sampling result:/);
    assert.match(text(r), /postern-test-model/);
    assert.match(text(r), /sampled: Resource trigger-sampling-request context: hello through the bridge/);
  } finally {
    await s.close();
  }
});

// ---- raw HTTP: the wire of the GET stream ----

function rawRequest(method, headers, body) {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port, servername: `every.${DOMAIN}`, path: '/mcp', method, agent: false, ca: readFileSync(ca),
      headers: { host: `every.${DOMAIN}`, ...headers },
    }, resolve);
    req.setTimeout(20000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

async function rawJson(method, headers, body) {
  const res = await rawRequest(method, headers, body);
  let t = '';
  for await (const c of res) t += c;
  return { status: res.statusCode, headers: res.headers, text: t };
}

// An open SSE response: .next(pred) waits (bounded) for the next event that matches.
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
      const ev = { id: null, data: [] };
      for (const line of block.split('\n')) {
        if (line.startsWith('id: ')) ev.id = line.slice(4);
        else if (line.startsWith('data: ')) ev.data.push(line.slice(6));
      }
      if (!ev.data.length) continue; // keep-alive comments
      ev.msg = JSON.parse(ev.data.join('\n'));
      events.push(ev);
    }
    if (waiter) waiter();
  });
  res.on('end', () => { ended = true; if (waiter) waiter(); });
  let pos = 0;
  return {
    events,
    ended: () => ended,
    next: (pred, timeoutMs = 15000) => new Promise((resolve, reject) => {
      const t = setTimeout(() => { waiter = null; reject(new Error(`no matching SSE event in ${timeoutMs} ms; got ${JSON.stringify(events.map((e) => e.msg))}`)); }, timeoutMs);
      const check = () => {
        while (pos < events.length) {
          const ev = events[pos++];
          if (pred(ev)) { clearTimeout(t); waiter = null; resolve(ev); return; }
        }
        if (ended) { clearTimeout(t); waiter = null; reject(new Error('the SSE stream ended')); }
      };
      waiter = check;
      check();
    }),
    close: () => res.destroy(),
  };
}

test('GET stream: server requests and notifications, one stream per session, Last-Event-ID resume', async () => {
  const J = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  const init = await rawJson('POST', J, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: {
    protocolVersion: '2025-06-18', capabilities: { roots: { listChanged: true } }, clientInfo: { name: 'raw', version: '1' } } }));
  assert.equal(init.status, 200, init.text);
  assert.match(init.headers['content-type'], /^application\/json/);
  const sid = init.headers['mcp-session-id'];
  assert.match(sid, /^[0-9a-f]{32}$/);
  const S = { ...J, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' };
  const G = { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' };
  const post = (msg) => rawJson('POST', S, JSON.stringify(msg));
  assert.equal((await post({ jsonrpc: '2.0', method: 'notifications/initialized' })).status, 202);

  // The server asks for the client's roots (a server request with no request of the client behind it).
  const res1 = await rawRequest('GET', G);
  assert.equal(res1.statusCode, 200);
  assert.match(res1.headers['content-type'], /^text\/event-stream/);
  const g1 = sseReader(res1);
  const ask1 = await g1.next((e) => e.msg.method === 'roots/list');
  assert.match(ask1.id, /^0-\d+$/);
  assert.equal((await post({ jsonrpc: '2.0', id: ask1.msg.id, result: { roots: [{ uri: 'file:///srv/one', name: 'one' }] } })).status, 202);
  const log1 = await g1.next((e) => e.msg.method === 'notifications/message');
  assert.match(JSON.stringify(log1.msg.params), /Roots updated: 1 root\(s\) received from client/);

  // Only one GET stream per session.
  const dup = await rawJson('GET', G);
  assert.equal(dup.status, 409);
  assert.match(JSON.parse(dup.text).error.message, /Conflict/);

  // The client loses its stream; what the server sends meanwhile waits in the replay buffer.
  g1.close();
  await waitUntil(async () => metric(await metrics(), 'postern_mcp_streams', 'route="every",kind="get"') === 0, 10000, 50, 'the GET stream to close');
  const before = metric(await metrics(), 'postern_mcp_events_total', 'route="every"');
  assert.equal((await post({ jsonrpc: '2.0', method: 'notifications/roots/list_changed' })).status, 202);
  await waitUntil(async () => metric(await metrics(), 'postern_mcp_events_total', 'route="every"') > before, 10000, 50, 'the server to ask again');

  // Resume after the last event seen: what was missed, then the stream goes on.
  const g2 = sseReader(await rawRequest('GET', { ...G, 'last-event-id': log1.id }));
  const ask2 = await g2.next(() => true);
  assert.equal(ask2.msg.method, 'roots/list');
  assert.notEqual(ask2.msg.id, ask1.msg.id);
  assert.ok(Number(ask2.id.split('-')[1]) > Number(log1.id.split('-')[1]), `${ask2.id} does not follow ${log1.id}`);
  assert.equal((await post({ jsonrpc: '2.0', id: ask2.msg.id, result: { roots: [{ uri: 'file:///a', name: 'a' }, { uri: 'file:///b', name: 'b' }] } })).status, 202);
  const log2 = await g2.next((e) => e.msg.method === 'notifications/message');
  assert.match(JSON.stringify(log2.msg.params), /Roots updated: 2 root\(s\)/);
  g2.close();
  await waitUntil(async () => metric(await metrics(), 'postern_mcp_streams', 'route="every",kind="get"') === 0, 10000, 50, 'the GET stream to close');

  // From further back: every event of the stream after that id, delivered before or not, in order.
  const g3 = sseReader(await rawRequest('GET', { ...G, 'last-event-id': ask1.id }));
  const replay = [await g3.next(() => true), await g3.next(() => true), await g3.next(() => true)];
  assert.deepEqual(replay.map((e) => e.id), [log1.id, ask2.id, log2.id]);
  g3.close();

  const bad = await rawJson('GET', { ...G, 'last-event-id': 'not-an-id' });
  assert.equal(bad.status, 400);
  assert.equal((await rawJson('DELETE', { 'mcp-session-id': sid })).status, 200);
  assert.equal((await rawJson('GET', G)).status, 404);
});

test(`abandoned sessions are reclaimed: with the cap at ${CAP}, client ${CAP + 1} is served; 503 only while every session is busy`, async () => {
  const clients = [];
  for (let i = 0; i < CAP; i++) clients.push(await sdkClient('small'));
  // Busy: each SDK client holds its GET stream open.
  await assert.rejects(() => sdkClient('small'), /too many concurrent MCP sessions on route small \(max 4, all busy\)/);
  let m = await metrics();
  assert.equal(metric(m, 'postern_mcp_sessions', 'route="small"'), CAP);
  assert.equal(metric(m, 'postern_mcp_sessions_max', 'route="small"'), CAP);
  assert.equal(metric(m, 'postern_mcp_sessions_refused_total', 'route="small"'), 1);
  assert.equal(metric(m, 'postern_mcp_streams', 'route="small",kind="get"'), CAP);
  // They all go away without DELETE.
  for (const c of clients) await c.abandon();
  await waitUntil(async () => metric(await metrics(), 'postern_mcp_streams', 'route="small",kind="get"') === 0, 10000, 50, 'the GET streams to close');
  const from = gw.log.length;
  // Idle for reclaim_idle (1 s): a new client takes the oldest one's place.
  let fresh;
  const deadline = Date.now() + 15000;
  while (!fresh) {
    try {
      fresh = await sdkClient('small');
    } catch (e) {
      assert.match(String(e), /all busy/);
      if (Date.now() > deadline) throw e;
      await sleep(250);
    }
  }
  try {
    const r = await fresh.client.callTool({ name: 'echo', arguments: { message: 'served after reclaim' } });
    assert.match(text(r), /served after reclaim/);
    await gw.waitFor(/msg="mcp session reclaimed" route=small session=[0-9a-f]{8} idle_ms=\d+ sessions=4 max=4 mark=3 reason="a new session at the cap"/, 5000, from);
    // Above the high-water mark (3 of 4) the tick reclaims idle sessions, oldest first, down to it.
    await gw.waitFor(/msg="mcp session reclaimed" route=small .* reason="above the high-water mark"/, 5000, from);
    await waitUntil(async () => metric(await metrics(), 'postern_mcp_sessions', 'route="small"') === 3, 5000, 50, 'sessions down to the mark');
    m = await metrics();
    assert.equal(metric(m, 'postern_mcp_sessions_reclaimed_total', 'route="small"'), 2);
    assert.equal(metric(m, 'postern_mcp_sessions_started_total', 'route="small"'), CAP + 1);
    // The busy session (an open GET stream) was not reclaimed: it still answers.
    const again = await fresh.client.callTool({ name: 'echo', arguments: { message: 'still here' } });
    assert.match(text(again), /still here/);
  } finally {
    await fresh.close();
  }
});

test('SIGTERM with GET streams open: the gateway ends them and exits 0', async () => {
  const s = await sdkClient('every');
  await waitUntil(async () => metric(await metrics(), 'postern_mcp_streams', 'route="every",kind="get"') === 1, 10000, 50, 'the GET stream');
  const t0 = Date.now();
  const { code, signal } = await gw.kill('SIGTERM', 15000);
  await s.abandon();
  assert.equal(signal, null, `gateway died by ${signal}`);
  assert.equal(code, 0, gw.log.slice(-2000));
  assert.ok(Date.now() - t0 < 5000, 'the drain waited for the GET stream');
  assert.doesNotMatch(gw.log, /AddressSanitizer|LeakSanitizer|runtime error:/);
});
