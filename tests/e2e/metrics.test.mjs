// Issue 11, observability: per-route request metrics, latency histogram, bytes, build_info and process_* on a
// real edge and gateway; the edge's /ready and the gateway's (cloudflared's fields); `postern tunnel list|info`
// with live connections (table and JSON) before, during and after a gateway's connection; and the Grafana
// dashboard's metric names all present in live scrapes (so the dashboard cannot rot).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import tls from 'node:tls';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { stopAll, waitUntil, postern, freePort, sleep, run } from './lib/proc.mjs';
import { makeEdges, createTunnel, startGateway } from './lib/tunnel.mjs';
import { pinnedFetch } from './lib/mcp.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let ctx, t, gw, upstream, upPort, version;
const edge = () => ctx.edges[0];
const tunnelUrl = (route, p = '') => `https://${route}.${t.domain}:${edge().client}${p}`;

// Prometheus text: {samples: [{name, labels, value}], types: {family: type}}.
function parseMetrics(text) {
  const samples = [], types = {};
  for (const line of text.split('\n')) {
    if (!line) continue;
    let m = line.match(/^# TYPE (\S+) (\S+)$/);
    if (m) { types[m[1]] = m[2]; continue; }
    if (line.startsWith('#')) continue;
    m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/);
    assert.ok(m, `not a sample line: ${line}`);
    const labels = {};
    for (const l of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { samples, types };
}
async function scrape(port) {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  return parseMetrics(await r.text());
}
// The value of the one sample named name whose labels include want (undefined when none).
function val(m, name, want = {}) {
  const s = m.samples.filter((x) => x.name === name && Object.entries(want).every(([k, v]) => x.labels[k] === v));
  assert.ok(s.length <= 1, `${name} ${JSON.stringify(want)} matches ${s.length} series`);
  return s[0]?.value;
}
const getJson = async (url) => { const r = await fetch(url); return { status: r.status, body: await r.json() }; };
const tunnelCmd = (...args) => postern(['tunnel', ...args, '-c', edge().yaml]);

before(async () => {
  version = (await postern(['--version'])).stdout.trim().replace(/^postern /, '');
  upstream = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      if (req.url.startsWith('/slow')) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: one\n\n');
        setTimeout(() => res.end('data: two\n\n'), 1500);
        return;
      }
      const code = req.url.startsWith('/missing') ? 404 : req.url.startsWith('/boom') ? 500 : 200;
      res.writeHead(code, { 'content-type': 'text/plain' });
      res.end(`${code} ${body.length}\n`);
    });
  });
  upPort = await freePort();
  await new Promise((r) => upstream.listen(upPort, '127.0.0.1', r));
  ctx = await makeEdges(1);
  t = await createTunnel(ctx, 'obs');
});

after(async () => {
  await stopAll();
  upstream?.close();
  ctx?.cleanup();
});

test('tunnel list and info with no edge running: the store alone, live state marked unknown', async () => {
  const l = await tunnelCmd('list');
  assert.equal(l.code, 0, l.stderr);
  assert.match(l.stderr, /live connections unknown: the edge on metrics_listen 127\.0\.0\.1:\d+ did not answer/);
  const lines = l.stdout.trim().split('\n');
  assert.match(lines[0], /^NAME\s+ID\s+CREATED\s+TOKENS\s+CONNECTORS\s+CONNECTIONS\s+STREAMS\s+CONNECTED$/);
  assert.match(lines[1], new RegExp(`^obs\\s+${t.id}\\s+\\d+s ago\\s+1\\s+\\?\\s+\\?\\s+\\?\\s+\\?$`));
  const j = JSON.parse((await tunnelCmd('list', '--output', 'json')).stdout);
  assert.equal(j.length, 1);
  assert.equal(j[0].connections, null);
  assert.equal(j[0].connectors, null);
  const bad = await tunnelCmd('list', '--output', 'yaml');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--output: 'yaml' is not table or json/);
  const bad2 = await tunnelCmd('create', 'x', '-o', 'json');
  assert.equal(bad2.code, 2);
  assert.match(bad2.stderr, /--output applies to list and info/);
  const none = await tunnelCmd('info', 'nope');
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no tunnel named or with the id 'nope'/);
});

test('gateway /ready: 503 with readyConnections 0 before an edge is up, 200 once registered', async () => {
  gw = await startGateway(ctx, t, { api: `http://127.0.0.1:${upPort}`, other: `http://127.0.0.1:${upPort}` },
    { connections: 2, wait: false });
  await waitUntil(async () => (await gw.ready()) === 503, 10000, 50, 'gateway /ready 503');
  const r0 = await getJson(`http://127.0.0.1:${gw.metrics}/ready`);
  assert.equal(r0.status, 503);
  assert.equal(r0.body.readyConnections, 0);
  assert.equal(r0.body.ready_connections, 0);
  assert.match(r0.body.connectorId, /^[0-9a-f-]{36}$/);
  await edge().start();
  await waitUntil(async () => (await gw.ready()) === 200, 20000, 100, 'gateway /ready 200');
  const r1 = await getJson(`http://127.0.0.1:${gw.metrics}/ready`);
  assert.equal(r1.body.status, 'ready');
  assert.ok(r1.body.readyConnections >= 1);
  assert.equal(r1.body.connectorId, r0.body.connectorId);
  // Both slots registered before the rest of the tests count on them.
  await waitUntil(async () => (await getJson(`http://127.0.0.1:${gw.metrics}/ready`)).body.readyConnections === 2, 20000, 100, '2 ready connections');
});

test('edge /ready: 200 with its listeners and a working store, no connector needed', async () => {
  const r = await getJson(`http://127.0.0.1:${edge().metrics}/ready`);
  assert.equal(r.status, 200);
  assert.equal(r.body.status, 'ready');
  assert.equal(r.body.tunnels_connected, 1);
  assert.equal(r.body.connector_connections, 2);
  assert.equal(r.body.listeners.connector, `127.0.0.1:${edge().connector}`);
  assert.equal(r.body.listeners.client, `127.0.0.1:${edge().client}`);
  assert.equal(r.body.listeners.mtls, null);
});

test('per-route requests by status class, duration histogram and bytes; client-chosen names are no labels', async () => {
  const f = pinnedFetch({ ca: t.ca });
  const want = { api: { '2xx': 0, '4xx': 0, '5xx': 0 }, other: { '2xx': 0 } };
  try {
    for (const [route, p, code] of [['api', '/ok', 200], ['api', '/ok?secret=1', 200], ['api', '/missing', 404],
      ['api', '/boom', 500], ['api', '/missing/2', 404], ['other', '/ok', 200]]) {
      const res = await f(tunnelUrl(route, p), { method: 'POST', body: 'x'.repeat(100) });
      assert.equal(res.status, code);
      await res.text();
      want[route][`${Math.floor(code / 100)}xx`]++;
    }
    // A host name no route has: counted under route "-", never under the name the client chose.
    const res = await f(tunnelUrl('zz-client-chosen'), {});
    assert.ok(res.status >= 400, `status ${res.status}`);
    await res.text();
  } finally {
    await f.close();
  }
  // The edge counts a client it refuses (an unknown tunnel in the SNI).
  await new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: edge().client, servername: `api.aaaaaaaaaaaaaaaa.${t.domain.split('.').slice(1).join('.')}`, rejectUnauthorized: false });
    s.on('error', resolve); s.on('close', resolve);
  });

  const m = await scrape(gw.metrics);
  assert.equal(m.types.postern_proxy_requests_total, 'counter');
  assert.equal(m.types.postern_proxy_request_duration_seconds, 'histogram');
  for (const [route, codes] of Object.entries(want)) {
    let n = 0;
    for (const [code, count] of Object.entries(codes)) {
      assert.equal(val(m, 'postern_proxy_requests_total', { route, code }), count, `${route} ${code}`);
      n += count;
    }
    assert.equal(val(m, 'postern_proxy_request_duration_seconds_count', { route }), n, `${route} _count`);
    assert.equal(val(m, 'postern_proxy_request_duration_seconds_bucket', { route, le: '+Inf' }), n);
    const buckets = m.samples.filter((s) => s.name === 'postern_proxy_request_duration_seconds_bucket' && s.labels.route === route);
    assert.deepEqual(buckets.map((b) => b.labels.le),
      ['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '30', '60', '+Inf']);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'buckets are cumulative');
    assert.equal(buckets[buckets.length - 2].value, n, 'every loopback request took under 60 s');
    const sum = val(m, 'postern_proxy_request_duration_seconds_sum', { route });
    assert.ok(sum > 0 && sum < n * 5, `sum ${sum}`);
    assert.ok(val(m, 'postern_proxy_request_bytes_total', { route }) >= n * 100, 'request bytes hold the bodies');
    assert.ok(val(m, 'postern_proxy_response_bytes_total', { route }) > n * 20, 'response bytes');
  }
  assert.equal(val(m, 'postern_proxy_requests_total', { route: '-', code: '4xx' }), 1);
  const routes = new Set(m.samples.filter((s) => s.labels.route !== undefined).map((s) => s.labels.route));
  assert.ok(!routes.has('zz-client-chosen') && [...routes].every((r) => ['api', 'other', '-'].includes(r)), [...routes].join(','));
  assert.ok(!m.samples.some((s) => JSON.stringify(s.labels).includes('secret')), 'no query text in labels');

  const e = await scrape(edge().metrics);
  assert.equal(val(e, 'postern_edge_tunnels_connected'), 1);
  assert.equal(val(e, 'postern_edge_connector_connections', { tunnel: t.id }), 2);
  assert.ok(val(e, 'postern_edge_streams_total', { tunnel: t.id }) >= 2); // one per client connection
  assert.ok(val(e, 'postern_edge_bytes_total', { tunnel: t.id, direction: 'to_connector' }) > 700);
  assert.ok(val(e, 'postern_edge_bytes_total', { tunnel: t.id, direction: 'to_client' }) > 0);
  await waitUntil(async () => val(await scrape(edge().metrics), 'postern_edge_client_rejects_total', { entry: 'sni', reason: 'unknown_tunnel' }) === 1,
    5000, 50, 'the unknown tunnel reject counted');
});

test('postern_proxy_requests_active: 1 for a route while its stream is open, 0 once it ended', async () => {
  const f = pinnedFetch({ ca: t.ca });
  try {
    const before = await scrape(gw.metrics);
    assert.equal(val(before, 'postern_proxy_requests_active', { route: 'other' }), 0);
    const res = await f(tunnelUrl('other', '/slow'));
    const reader = res.body.getReader();
    await reader.read(); // the first event: the stream is open
    const during = await scrape(gw.metrics);
    assert.equal(val(during, 'postern_proxy_requests_active', { route: 'other' }), 1);
    assert.equal(val(during, 'postern_proxy_requests_active', { route: 'api' }), 0);
    while (!(await reader.read()).done);
    await waitUntil(async () => val(await scrape(gw.metrics), 'postern_proxy_requests_active', { route: 'other' }) === 0, 5000, 50, 'active back to 0');
    const after = await scrape(gw.metrics);
    const b = val(after, 'postern_proxy_request_duration_seconds_bucket', { route: 'other', le: '1' });
    const c = val(after, 'postern_proxy_request_duration_seconds_bucket', { route: 'other', le: '2.5' });
    assert.equal(c - b, 1, 'the 1.5 s stream lands in the 2.5 s bucket');
  } finally {
    await f.close();
  }
});

test('build_info and process_* on edge and gateway', async () => {
  for (const [who, port] of [['edge', edge().metrics], ['gateway', gw.metrics]]) {
    const m = await scrape(port);
    assert.equal(val(m, 'postern_build_info', { version }), 1, `${who} build_info version ${version}`);
    assert.equal(m.types.process_cpu_seconds_total, 'counter');
    for (const n of ['process_open_fds', 'process_max_fds', 'process_resident_memory_bytes', 'process_virtual_memory_bytes', 'process_start_time_seconds'])
      assert.equal(m.types[n], 'gauge', `${who} ${n}`);
    const fds = val(m, 'process_open_fds');
    assert.ok(fds >= 5 && fds < 500 && fds < val(m, 'process_max_fds'), `${who} open fds ${fds}`);
    assert.ok(val(m, 'process_resident_memory_bytes') > 1e6 && val(m, 'process_resident_memory_bytes') < val(m, 'process_virtual_memory_bytes'));
    const st = val(m, 'process_start_time_seconds');
    assert.ok(st > Date.now() / 1000 - 600 && st <= Date.now() / 1000 + 1, `${who} start ${st}`);
    assert.ok(val(m, 'process_cpu_seconds_total') > 0);
  }
});

test('the Grafana dashboard uses only metric names a live edge or gateway exposes', async () => {
  const dash = JSON.parse(readFileSync(path.join(root, 'deploy/grafana/postern.json'), 'utf8'));
  const exprs = [];
  const walk = (o) => {
    if (Array.isArray(o)) o.forEach(walk);
    else if (o && typeof o === 'object') {
      if (typeof o.expr === 'string') exprs.push(o.expr);
      if (typeof o.definition === 'string') exprs.push(o.definition);
      Object.values(o).forEach(walk);
    }
  };
  walk(dash);
  assert.ok(exprs.length >= 25, `only ${exprs.length} queries`);
  const names = new Set(exprs.flatMap((e) => e.match(/\b(?:postern|process)_[a-z0-9_]+/g) || []));
  const live = new Set();
  for (const port of [edge().metrics, gw.metrics]) for (const s of (await scrape(port)).samples) live.add(s.name);
  const missing = [...names].filter((n) => !live.has(n));
  assert.deepEqual(missing, [], `dashboard names no live series: ${missing.join(', ')}`);
  assert.ok(names.size >= 30, `dashboard names only ${names.size} metrics`);
});

test('docs/metrics.md lists every metric family a live edge or gateway exposes', async () => {
  const doc = readFileSync(path.join(root, 'docs/metrics.md'), 'utf8');
  const families = new Set();
  for (const port of [edge().metrics, gw.metrics]) for (const f of Object.keys((await scrape(port)).types)) families.add(f);
  assert.ok(families.size >= 30);
  const undocumented = [...families].filter((f) => !doc.includes(`| \`${f}\` |`));
  assert.deepEqual(undocumented, [], `not in docs/metrics.md: ${undocumented.join(', ')}`);
});

test('tunnel list and info with a live gateway: connectors, connections, times, fingerprints (table and JSON)', async () => {
  const ready = (await getJson(`http://127.0.0.1:${gw.metrics}/ready`)).body;
  const l = await tunnelCmd('list');
  assert.equal(l.code, 0, l.stderr);
  assert.equal(l.stderr, '');
  const row = l.stdout.trim().split('\n')[1];
  assert.match(row, new RegExp(`^obs\\s+${t.id}\\s+(\\d+s|\\d+m \\d+s) ago\\s+1\\s+1\\s+2\\s+0\\s+since (\\d+s|\\d+m \\d+s)$`));

  const j = JSON.parse((await tunnelCmd('list', '-o', 'json')).stdout)[0];
  assert.equal(j.id, t.id);
  assert.equal(j.connectors, 1);
  assert.equal(j.connections.length, 2);
  assert.deepEqual(j.connections.map((c) => c.slot).sort(), [0, 1]);
  for (const c of j.connections) {
    assert.equal(c.connector_id, ready.connectorId);
    assert.match(c.remote, /^127\.0\.0\.1:\d+$/);
    assert.ok(c.since_ms > Date.now() - 120000 && c.since_ms <= Date.now());
    assert.equal(c.state, 'live');
    assert.match(c.protocol, /postern\/1/);
    assert.equal(c.version, version);
  }

  const secret = readFileSync(t.tokenFile, 'utf8').trim().split('_')[2];
  const fp = `sha256:${createHash('sha256').update(secret).digest('hex').slice(0, 16)}`;
  for (const which of ['obs', t.id]) {
    const i = await tunnelCmd('info', which);
    assert.equal(i.code, 0, i.stderr);
    assert.match(i.stdout, new RegExp(`^Tunnel:\\s+obs$`, 'm'));
    assert.match(i.stdout, new RegExp(`^ID:\\s+${t.id}$`, 'm'));
    assert.match(i.stdout, new RegExp(`^Domain:\\s+${t.domain.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(i.stdout, /^Created:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \((\d+s|\d+m \d+s) ago\)$/m);
    assert.match(i.stdout, new RegExp(`^  ${fp}  created .* ago, no expiry$`, 'm'));
    assert.match(i.stdout, /^Connections:\s+2 from 1 connector$/m);
    assert.match(i.stdout, /^  CONNECTOR\s+SLOT\s+REMOTE\s+SINCE\s+STREAMS\s+VERSION\s+STATE\s+PROTOCOL$/m);
    assert.equal((i.stdout.match(new RegExp(`^  ${ready.connectorId}\\s+[01]\\s+127\\.0\\.0\\.1:\\d+\\s+\\S+.*UTC\\)\\s+0\\s+${version.replace(/\./g, '\\.')}\\s+live\\s+postern/1`, 'gm')) || []).length, 2, i.stdout);
    assert.doesNotMatch(i.stdout, /pt1_/);
    assert.ok(!i.stdout.includes(secret));
  }
  const ij = JSON.parse((await tunnelCmd('info', t.id, '--output=json')).stdout);
  assert.equal(ij.name, 'obs');
  assert.equal(ij.valid_tokens.length, 1);
  assert.equal(ij.valid_tokens[0].fingerprint, fp);
  assert.equal(ij.valid_tokens[0].expires_ms, null);
  assert.equal(ij.connections.length, 2);
  assert.ok(ij.streams_total >= 2);
  assert.ok(ij.bytes_to_connector > 0);
  assert.equal(typeof ij.edge_id, 'string');
  assert.ok(!JSON.stringify(ij).includes(secret));
});

test('after the gateway disconnects: no connections in list and info, the edge gauges back to 0', async () => {
  await gw.proc.kill('SIGTERM');
  await waitUntil(async () => val(await scrape(edge().metrics), 'postern_edge_tunnels_connected') === 0, 15000, 100, 'edge sees the gateway gone');
  const e = await scrape(edge().metrics);
  assert.equal(val(e, 'postern_edge_connector_connections', { tunnel: t.id }), 0);
  const l = await tunnelCmd('list');
  assert.match(l.stdout.trim().split('\n')[1], new RegExp(`^obs\\s+${t.id}\\s+.* ago\\s+1\\s+0\\s+0\\s+0\\s+not connected$`));
  const j = JSON.parse((await tunnelCmd('list', '-o', 'json')).stdout)[0];
  assert.deepEqual(j.connections, []);
  assert.equal(j.connectors, 0);
  const i = await tunnelCmd('info', 'obs');
  assert.match(i.stdout, /^Connections:\s+none \(no connector is registered on this edge\)$/m);
  // The edge's view stays on loopback: /tunnels answers JSON there.
  const tj = await getJson(`http://127.0.0.1:${edge().metrics}/tunnels`);
  assert.equal(tj.status, 200);
  assert.deepEqual(tj.body.tunnels.find((x) => x.id === t.id).connections, []);
  await sleep(0);
});

test('edge /ready: 503 naming the store when the token store fails, 200 again once it is whole', async () => {
  // The WAL goes into the database file, the file is overwritten: the edge's next query finds no database.
  const db = path.join(ctx.dir, 'edge-state', 'tunnels.db');
  const ck = await run('sqlite3', [db, 'PRAGMA wal_checkpoint(TRUNCATE);']);
  assert.equal(ck.code, 0, ck.stderr);
  const saved = readFileSync(db);
  writeFileSync(db, Buffer.alloc(saved.length, 0x55));
  try {
    const b = await getJson(`http://127.0.0.1:${edge().metrics}/ready`);
    assert.equal(b.status, 503);
    assert.equal(b.body.status, 'not ready');
    assert.match(b.body.reason, /^token store unavailable: /);
  } finally {
    writeFileSync(db, saved);
  }
  // The file is whole again: the running edge recovers (its store reopens the connection SQLite kept failed)
  // and so does `postern tunnel` (a new connection).
  const r = await getJson(`http://127.0.0.1:${edge().metrics}/ready`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.status, 'ready');
  const l = await tunnelCmd('list', '-o', 'json');
  assert.equal(l.code, 0, l.stderr);
  assert.equal(JSON.parse(l.stdout)[0].id, t.id);
});
