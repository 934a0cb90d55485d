// Red team of the MCP guard on a gateway route: a hostile client (odd HTTP, odd JSON, notifications acting as
// calls, forged request-metadata headers, credentials in odd places) and a hostile upstream (list results in
// framings the guard might not read: a GET stream labelled text/plain, an HTTP error body, an SSE event cut
// by the end of the stream, events split byte by byte, CR line ends, interim responses, huge events). Each
// test asserts what the upstream received (a denied call never reaches it, a validated credential never
// does), what the client received (no hidden tool name), and that the audit holds every message released.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { gzipSync, gunzipSync } from 'node:zlib';
import { start, postern, freePort, tmpdir, rmrf, stopAll, sleep } from './lib/proc.mjs';

const DOMAIN = 'tun.test';
let slow, slowT0, dir, port, ca, gw, recPort, evilPort, rec, evil, auditFile, tokA, tokB;
const seen = []; // requests the recording upstream received: {method, url, headers, body}

// The recording upstream: an MCP-ish server that answers every request with a small JSON-RPC result and
// keeps what it got, so a test can say what reached the server.
function recorder() {
  return http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks).toString('utf8');
    seen.push({ method: req.method, url: req.url, headers: req.headers, body });
    let id = null;
    try { const j = JSON.parse(body); id = Array.isArray(j) ? j[0]?.id ?? null : j.id ?? null; } catch { /* not JSON */ }
    if (id === null) { res.writeHead(202).end(); return; }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'ok' }] } }));
  });
}

// The hostile upstream: raw bytes, chosen by the scenario named in the request's path (/s/NAME).
const TOOLS = (id) => JSON.stringify({ jsonrpc: '2.0', id, result: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }, { name: 'write_file', description: 'EVIL-DESCRIPTION', inputSchema: { type: 'object' } }] } });
const scenarios = {
  // a GET stream answered with an SSE body but labelled text/plain (the SDK client reads a GET body as SSE
  // whatever its type)
  'get-plain': (s) => s.end(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\ndata: ${TOOLS(7)}\n\n`),
  'get-json': (s) => s.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\ndata: ${TOOLS(7)}\n\n`),
  // an HTTP error whose body is a JSON-RPC list result
  'err-list': (s) => { const b = TOOLS(1); s.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n${b}`); },
  'err-text': (s) => s.end('HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nbusy; go!'),
  // a compressed body the guard cannot read (a client's fetch would inflate it)
  'gzip-json': (s) => { const b = gzipSync(TOOLS(1)); s.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n`); s.end(b); },
  'gzip-sse': (s) => { const b = gzipSync(`data: ${TOOLS(1)}\n\n`); s.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n'); s.end(b); },
  'gzip-err': (s) => { const b = gzipSync(TOOLS(1)); s.write(`HTTP/1.1 500 Oops\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n`); s.end(b); },
  // resource templates under a denied scheme, and a list page with a cursor
  'templates': (s) => { const b = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { resourceTemplates: [{ uriTemplate: 'docs:{path}', name: 'docs' }, { uriTemplate: 'vault:{key}', name: 'vault-secrets' }], nextCursor: 'c2' } }); s.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n${b}`); },
  // what the gateway sent upstream, echoed back in a JSON-RPC result
  'echo-head': (s, head) => { const b = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { head } }); s.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(b)}\r\nConnection: close\r\n\r\n${b}`); },
  'accepted-list': (s) => { const b = TOOLS(1); s.end(`HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n${b}`); },
  // an SSE stream whose last event has no blank line before the end of the stream
  'sse-cut': (s) => s.end(`HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: ${TOOLS(1)}\n`),
  'sse-cut-chunked': (s) => { const e = `data: ${TOOLS(1)}\n`; s.end(`HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n${e.length.toString(16)}\r\n${e}\r\n0\r\n\r\n`); },
  // events split byte by byte across reads, with comments, id, event type and CR line ends
  'sse-split': async (s) => {
    s.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n');
    const ev = `: comment\r\nid: 9\r\nevent: message\r\ndata: ${TOOLS(1)}\r\n\r\n`;
    for (const ch of ev) { s.write(ch); await sleep(1); }
    s.end();
  },
  'sse-cr': (s) => s.end(`HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: ${TOOLS(1)}\r\r`),
  'sse-multiline': (s) => { const t = TOOLS(1); const mid = t.indexOf('write_file'); s.end(`HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: ${t.slice(0, mid)}\ndata:${t.slice(mid)}\n\n`); },
  // interim responses before the final one
  'interim': (s) => { const b = TOOLS(1); s.end(`HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n${b}`); },
  'switching': (s) => { const b = TOOLS(1); s.end(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n${b}`); },
  // two Content-Type headers, either order
  'two-ct-a': (s) => s.end(`HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Type: application/json\r\nConnection: close\r\n\r\ndata: ${TOOLS(1)}\n\n`),
  'two-ct-b': (s) => s.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: ${TOOLS(1)}\n\n`),
  // a type naming SSE inside a parameter (a client testing includes("text/event-stream") reads SSE)
  'ct-param': (s) => s.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json; x="text/event-stream"\r\nConnection: close\r\n\r\ndata: ${TOOLS(1)}\n\n`),
  // a list result inside a batch answer, and one in a notification's params (not a list: passes)
  'batch-list': (s) => { const b = `[${TOOLS(1)}]`; s.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n${b}`); },
  // one event of 200 KiB on one data line (a long tool list)
  'sse-big': (s) => {
    const tools = [{ name: 'write_file', inputSchema: { type: 'object' } }];
    for (let i = 0; i < 2000; i++) tools.push({ name: `t${i}`, description: 'x'.repeat(80), inputSchema: { type: 'object' } });
    s.end(`HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools } })}\n\n`);
  },
  // chunked with extensions and a trailer
  'chunk-ext': (s) => { const b = TOOLS(1); s.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${b.length.toString(16)};ext=1\r\n${b}\r\n0\r\nX-Trailer: 1\r\n\r\n`); },
};
function evilServer() {
  return net.createServer((s) => {
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      const e = buf.indexOf('\r\n\r\n');
      if (e < 0) return;
      const head = buf.slice(0, e);
      const cl = Number((head.match(/\r\ncontent-length:\s*(\d+)/i) || [])[1] || 0);
      if (buf.length < e + 4 + cl) return;
      const name = (head.match(/^\S+ \/s\/([\w-]+)/) || [])[1];
      s.removeAllListeners('data');
      const f = scenarios[name];
      if (f) f(s, head); else s.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    });
    s.on('error', () => {});
  });
}

before(async () => {
  dir = tmpdir('postern-guard-red-');
  const r = await postern(['certs', 'init', '--domain', DOMAIN, '--out', path.join(dir, 'pki')]);
  assert.equal(r.code, 0, r.stderr);
  ca = readFileSync(path.join(dir, 'pki', 'ca.pem'));
  port = await freePort();
  recPort = await freePort();
  evilPort = await freePort();
  rec = recorder();
  evil = evilServer();
  await new Promise((r) => rec.listen(recPort, '127.0.0.1', r));
  await new Promise((r) => evil.listen(evilPort, '127.0.0.1', r));
  tokA = randomBytes(24).toString('hex');
  tokB = randomBytes(24).toString('hex');
  for (const [f, sub, t] of [['tokens-a', 'alice', tokA], ['tokens-b', 'bob', tokB]]) {
    const h = await postern(['auth', 'hash-token', sub], { input: t });
    assert.equal(h.code, 0, h.stderr);
    writeFileSync(path.join(dir, f), h.stdout, { mode: 0o600 });
  }
  auditFile = path.join(dir, 'audit.jsonl');
  const policy = ['    policy:', '      default: allow', '      approval_timeout: 6s', '      rules:',
    '        - {match: {tool: "move_*"}, action: approve}',
    '        - {match: {tool: "write_*"}, action: deny}',
    '        - {match: {prompt: "secret_*"}, action: deny}',
    '        - {match: {resource: "vault:*"}, action: deny}'];
  const yaml = path.join(dir, 'gw.yaml');
  writeFileSync(yaml, [
    `listen_addr: 127.0.0.1:${port}`,
    `tunnel_domain: ${DOMAIN}`,
    'log_level: info',
    'shutdown_timeout: 2s',
    'admin_socket: ""',
    'metrics_listen: ""',
    'mcp_limits: {max_body: 1MiB, max_batch: 16, max_depth: 16}',
    `audit: {file: ${auditFile}}`,
    `tls: { cert_file: ${path.join(dir, 'pki', 'server.pem')}, key_file: ${path.join(dir, 'pki', 'server.key')} }`,
    'upstream: {allowed_ips: [127.0.0.1/32]}',
    'routes:',
    '  rec:', `    url: http://127.0.0.1:${recPort}`, ...policy,
    // the held-bytes cap test: 72 bodies of 1 MB must all be held at once, which takes more than rec's 6 s
    // to upload on a loaded machine (earlier holds expired and freed the budget before the last arrived)
    '  hold:', `    url: http://127.0.0.1:${recPort}`, ...policy.map((l) => l.replace('approval_timeout: 6s', 'approval_timeout: 25s')),
    '  evil:', `    url: http://127.0.0.1:${evilPort}`, ...policy,
    '  tok:', `    url: http://127.0.0.1:${recPort}`, `    auth: {bearer: {tokens_file: ${path.join(dir, 'tokens-a')}}}`, ...policy,
    '  tokb:', `    url: http://127.0.0.1:${recPort}`, `    auth: {bearer: {tokens_file: ${path.join(dir, 'tokens-b')}}}`,
  ].join('\n') + '\n');
  gw = start(process.env.POSTERN_BIN, ['gateway', '-c', yaml], { name: 'gateway' });
  await gw.waitFor(/proxy listening/, 10000);
  // A POST whose body never completes, checked by the last test (the body deadline is the head's, 30 s).
  slowT0 = Date.now();
  slow = raw('rec', null, { timeoutMs: 45000, writes: [`POST /mcp HTTP/1.1\r\nHost: ${H('rec')}\r\nContent-Length: 100\r\n\r\n0123456789`] })
    .then((r) => ({ r, after: Date.now() - slowT0 }));
});

after(async () => {
  rec?.close();
  evil?.close();
  await stopAll();
  rmrf(dir);
});

// Raw bytes over TLS to route; resolves with everything the gateway sent until it closed (or timeoutMs).
function raw(route, bytes, { timeoutMs = 5000, writes } = {}) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: `${route}.${DOMAIN}`, ca });
    const out = [];
    const t = setTimeout(() => { s.destroy(); resolve(Buffer.concat(out).toString('latin1')); }, timeoutMs);
    s.on('secureConnect', async () => {
      for (const w of writes || [bytes]) { s.write(w); if (writes) await sleep(30); }
    });
    s.on('data', (d) => out.push(d));
    s.on('end', () => { clearTimeout(t); s.end(); resolve(Buffer.concat(out).toString('latin1')); });
    s.on('error', (e) => { clearTimeout(t); if (out.length) resolve(Buffer.concat(out).toString('latin1')); else reject(e); });
  });
}
const H = (route) => `${route}.${DOMAIN}`;
function postReq(route, body, { path: p = '/mcp', headers = '', close = true, version = '1.1' } = {}) {
  const b = typeof body === 'string' ? body : JSON.stringify(body);
  return `POST ${p} HTTP/${version}\r\nHost: ${H(route)}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n` +
    `Content-Length: ${Buffer.byteLength(b)}\r\n${headers}${close ? 'Connection: close\r\n' : ''}\r\n${b}`;
}
const call = (id, name, args = {}) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
const status = (resp) => Number((resp.match(/^HTTP\/1\.[01] (\d{3})/) || [])[1] || 0);
const reached = (needle) => seen.some((r) => r.body.includes(needle) || JSON.stringify(r.headers).includes(needle));
const auditText = () => { try { return readFileSync(auditFile, 'utf8'); } catch { return ''; } };
const auditLines = () => auditText().split('\n').filter(Boolean).map((l) => JSON.parse(l));

// ---- (a) a hostile client --------------------------------------------------------------------------------

test('a notification naming a denied tool (tools/call without an id) never reaches the upstream', async () => {
  const marker = 'notif-' + randomBytes(4).toString('hex');
  const n = { jsonrpc: '2.0', method: 'tools/call', params: { name: 'write_file', arguments: { path: marker } } };
  const r = await raw('rec', postReq('rec', n));
  assert.ok(!reached(marker), `a notification tools/call of a denied tool was forwarded:\n${r}`);
  // in a batch, beside an allowed request, too
  const m2 = marker + '-b';
  await raw('rec', postReq('rec', [call(1, 'echo'), { ...n, params: { name: 'write_file', arguments: { path: m2 } } }]));
  assert.ok(!reached(m2), 'a notification tools/call inside a batch was forwarded');
  // prompts/get and resources/read notifications as well
  const m3 = 'vault:' + marker;
  await raw('rec', postReq('rec', { jsonrpc: '2.0', method: 'resources/read', params: { uri: m3 } }));
  assert.ok(!reached(m3), 'a notification resources/read of a denied resource was forwarded');
});

test('denied calls spelled with unicode escapes, in batches, or by prompt or resource never reach the upstream', async () => {
  const m = 'esc-' + randomBytes(4).toString('hex');
  const bodies = [
    `{"jsonrpc":"2.0","id":1,"method":"tools\\u002fcall","params":{"name":"write\\u005ffile","arguments":{"p":"${m}1"}}}`,
    JSON.stringify([call(1, 'echo', { p: m + '2' }), call(2, 'write_file', { p: m + '2' })]),
    JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'prompts/get', params: { name: 'secret_plan', arguments: { p: m + '3' } } }),
    JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'resources/read', params: { uri: `vault:${m}4` } }),
    // the same key twice (the server might read the second)
    `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","name":"write_file","arguments":{"p":"${m}5"}}}`,
    `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","n\\u0061me":"write_file","arguments":{"p":"${m}6"}}}`,
    // not JSON-RPC 2.0, odd ids: refused, not forwarded
    `{"jsonrpc":"2.0 ","id":7,"method":"tools/call","params":{"name":"write_file","arguments":{"p":"${m}7"}}}`,
    `{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"write_file","arguments":{"p":"${m}8"}}}`,
    `{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"write_file","arguments":{"p":"${m}9"}}}`,
    `{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call","params":{"name":"write_file","arguments":{"p":"${m}10"}}}`,
    // a lone surrogate and a NUL in the name
    `{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"write_file\\ud800","arguments":{"p":"${m}11"}}}`,
    `{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"write_file\\u0000","arguments":{"p":"${m}12"}}}`,
    // trailing bytes after the object, a second object
    `{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"echo","arguments":{}}}{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":"write_file","arguments":{"p":"${m}13"}}}`,
    // a batch nested in a batch
    JSON.stringify([[call(15, 'write_file', { p: m + '15' })]]),
  ];
  for (const b of bodies) {
    const r = await raw('rec', postReq('rec', b));
    assert.ok(status(r) >= 200, r);
  }
  for (let i = 1; i <= 15; i++)
    assert.ok(!seen.some((s) => s.body.includes(`${m}${i}"`) && s.body.includes('write')), `body ${i} reached the upstream`);
  assert.ok(!reached(m + '3'), 'a denied prompt reached the upstream');
  assert.ok(!reached(m + '4'), 'a denied resource reached the upstream');
});

test('resource URIs a server could resolve elsewhere are refused where resources are policed; subscriptions are policed', async () => {
  const m = 'uri-' + randomBytes(4).toString('hex');
  const read = (id, uri, method = 'resources/read') => postReq('rec', { jsonrpc: '2.0', id, method, params: { uri } });
  const bad = [`VAULT:${m}`, `Vault:${m}`, `docs:/pub/../${m}`, `docs:/pub/./${m}`, `docs:..`, `file:///srv/%2e%2e/${m}`,
    `file:///srv/..%2F${m}`, `file:///srv/..%5c${m}`, `docs:a\\..\\${m}`, `docs:${m}%00`];
  for (const [i, uri] of bad.entries()) {
    const r = await raw('rec', read(i + 1, uri));
    assert.match(r, /-31001/, `${uri}: ${r}`);
  }
  let r = await raw('rec', read(20, `vault:${m}`, 'resources/subscribe'));
  assert.match(r, /-31001/, r);
  assert.ok(!reached(m), 'a refused resource URI reached the upstream');
  // ordinary URIs pass, dots inside names too
  r = await raw('rec', read(21, `docs:/pub/readme.v2..txt?x=${m}-ok`));
  assert.equal(status(r), 200, r);
  assert.doesNotMatch(r, /-31001/);
  assert.ok(reached(`${m}-ok`));
});

test('HTTP framing tricks: chunked, Expect, HTTP/1.0, pipelining, absolute form, bodies on GET, other methods', async () => {
  const m = 'http-' + randomBytes(4).toString('hex');
  const deny = (i) => JSON.stringify(call(i, 'write_file', { p: `${m}-${i}` }));
  const chunked = (b) => `POST /mcp HTTP/1.1\r\nHost: ${H('rec')}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
    `5;ext=1\r\n${b.slice(0, 5)}\r\n${(b.length - 5).toString(16)}\r\n${b.slice(5)}\r\n0\r\nX-T: 1\r\n\r\n`;
  let r = await raw('rec', chunked(deny(1)));
  assert.equal(status(r), 200, r);
  assert.match(r, /-31001/);
  r = await raw('rec', postReq('rec', deny(2), { headers: 'Expect: 100-continue\r\n' }));
  assert.match(r, /-31001/);
  r = await raw('rec', postReq('rec', deny(3), { version: '1.0' }));
  assert.match(r, /-31001/);
  // pipelined: an allowed call, then a denied one, in one write
  r = await raw('rec', postReq('rec', call(4, 'echo', { p: m + '-ok' }), { close: false }) + postReq('rec', deny(5)));
  assert.match(r, /-31001/, r);
  assert.ok(reached(m + '-ok'), 'the allowed pipelined call did not arrive');
  r = await raw('rec', postReq('rec', deny(6), { path: `http://${H('rec')}/mcp` }));
  assert.match(r, /-31001/);
  r = await raw('rec', postReq('rec', deny(7), { path: `http://${H('evil')}/mcp` }));
  assert.equal(status(r), 400, r);
  // a body on GET or DELETE (the guard reads POST bodies only)
  for (const meth of ['GET', 'DELETE', 'OPTIONS']) {
    const b = deny(8);
    r = await raw('rec', `${meth} /mcp HTTP/1.1\r\nHost: ${H('rec')}\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n${b}`);
    assert.equal(status(r), 400, `${meth} with a body: ${r}`);
  }
  for (const meth of ['PUT', 'PATCH', 'PROPFIND', 'post']) {
    r = await raw('rec', `${meth} /mcp HTTP/1.1\r\nHost: ${H('rec')}\r\nContent-Length: ${deny(9).length}\r\nConnection: close\r\n\r\n${deny(9)}`);
    assert.ok([400, 405].includes(status(r)), `${meth}: ${r}`);
  }
  r = await raw('rec', `POST /mcp HTTP/1.1\r\nHost: ${H('rec')}\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: ${deny(10).length}\r\n\r\n${deny(10)}`);
  assert.equal(status(r), 501, r);
  // two Content-Lengths, CL with TE, an obs-folded header
  r = await raw('rec', `POST /mcp HTTP/1.1\r\nHost: ${H('rec')}\r\nContent-Length: 2\r\nContent-Length: ${deny(11).length}\r\nConnection: close\r\n\r\n${deny(11)}`);
  assert.equal(status(r), 400, r);
  r = await raw('rec', `POST /mcp HTTP/1.1\r\nHost: ${H('rec')}\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${deny(12)}`);
  assert.equal(status(r), 400, r);
  r = await raw('rec', `POST /mcp HTTP/1.1\r\nHost: ${H('rec')}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n${deny(13).length.toString(16)}\r\n${deny(13)}\r\n0\r\n\r\n`);
  assert.ok(status(r) === 400 || /-31001/.test(r), r);
  // a body sent slowly, a byte at a time
  const b = deny(14);
  r = await raw('rec', null, { writes: [`POST /mcp HTTP/1.1\r\nHost: ${H('rec')}\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n`, ...b.match(/.{1,7}/g)] });
  assert.match(r, /-31001/);
  for (let i = 1; i <= 14; i++) assert.ok(!reached(`${m}-${i}"`), `framing case ${i} reached the upstream`);
});

test('request-metadata headers that disagree with the body are refused in either era, and never decide', async () => {
  const m = 'hdr-' + randomBytes(4).toString('hex');
  // modern: the header names the allowed tool, the body the denied one: denied by the body, 400 for the mismatch
  let r = await raw('rec', postReq('rec', { ...call(1, 'write_file', { p: m + '1' }), params: { name: 'write_file', arguments: { p: m + '1' }, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } },
    { headers: 'MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: echo\r\n' }));
  assert.equal(status(r), 400, r);
  assert.match(r, /-32020/);
  // legacy era (no modern version): the body says echo, the headers say write_file; a server routing on the
  // headers would run write_file, so the mismatch is refused as well
  r = await raw('rec', postReq('rec', call(2, 'echo', { p: m + '2' }), { headers: 'MCP-Protocol-Version: 2025-06-18\r\nMcp-Method: tools/call\r\nMcp-Name: write_file\r\n' }));
  assert.equal(status(r), 400, r);
  assert.match(r, /-32020/);
  assert.ok(!reached(m + '2'), 'a legacy request with a forged Mcp-Name reached the upstream');
  // matching headers on a legacy request pass
  r = await raw('rec', postReq('rec', call(3, 'echo', { p: m + '3' }), { headers: 'Mcp-Method: tools/call\r\nMcp-Name: echo\r\n' }));
  assert.equal(status(r), 200, r);
  assert.ok(reached(m + '3'));
  assert.ok(!reached(m + '1'));
});

test('client auth: missing, duplicate, oversized, odd schemes, a token in the query, another route\'s token', async () => {
  const m = 'auth-' + randomBytes(4).toString('hex');
  const body = (i) => JSON.stringify(call(i, 'echo', { p: `${m}-${i}` }));
  const req = (i, headers, p = '/mcp') => `POST ${p} HTTP/1.1\r\nHost: ${H('tok')}\r\nContent-Type: application/json\r\nContent-Length: ${body(i).length}\r\n${headers}Connection: close\r\n\r\n${body(i)}`;
  const cases = [
    [1, '', 401],
    [2, `Authorization: Bearer ${tokA}\r\nAuthorization: Bearer ${tokA}\r\n`, 400],
    [3, `Authorization: Bearer ${'a'.repeat(20000)}\r\n`, 401],
    [4, `Authorization: Basic ${Buffer.from('x:' + tokA).toString('base64')}\r\n`, 401],
    [5, `Authorization: Bearer ${tokB}\r\n`, 401], // bob's token is for route tokb
    [6, `Authorization: Bearer ${tokA}x\r\n`, 401],
    [7, `Authorization: ${tokA}\r\n`, 401],
    [8, `X-Authorization: Bearer ${tokA}\r\n`, 401],
    [9, `Proxy-Authorization: Bearer ${tokA}\r\n`, 401],
  ];
  for (const [i, h, want] of cases) {
    const r = await raw('tok', req(i, h));
    assert.equal(status(r), want, `case ${i}: ${r}`);
    assert.ok(!r.includes(tokA), `case ${i}: the token came back in the answer`);
  }
  let r = await raw('tok', req(10, '', `/mcp?access_token=${tokA}`));
  assert.equal(status(r), 401, r);
  // metadata path variants are answered here, never by the upstream, and need no token; others need one
  r = await raw('tok', `GET /.well-known/oauth-protected-resource/../../mcp HTTP/1.1\r\nHost: ${H('tok')}\r\nConnection: close\r\n\r\n`);
  assert.equal(status(r), 200, r);
  assert.match(r, /"resource":"https:\/\/tok\./);
  for (const p of ['/.well-known/oauth-protected-resourcex', '//.well-known/oauth-protected-resource', '/.well-known/%6fauth-protected-resource', '/.WELL-KNOWN/oauth-protected-resource']) {
    r = await raw('tok', `GET ${p} HTTP/1.1\r\nHost: ${H('tok')}\r\nConnection: close\r\n\r\n`);
    assert.equal(status(r), 401, `${p}: ${r}`);
  }
  for (let i = 1; i <= 10; i++) assert.ok(!reached(`${m}-${i}"`), `auth case ${i} reached the upstream`);
  assert.ok(!seen.some((s) => s.url.includes('well-known')), 'a metadata path reached the upstream');
  // lowercase scheme, extra spaces: accepted; the credential never goes upstream
  r = await raw('tok', req(11, `authorization: bEaReR   ${tokA}\r\n`));
  assert.equal(status(r), 200, r);
  const got = seen.find((s) => s.body.includes(`${m}-11"`));
  assert.ok(got, 'the authenticated call did not arrive');
  assert.ok(!JSON.stringify(got.headers).includes(tokA), 'the validated token reached the upstream');
  assert.equal(got.headers.authorization, undefined);
  // GET and DELETE too
  r = await raw('tok', `DELETE /mcp HTTP/1.1\r\nHost: ${H('tok')}\r\nAuthorization: Bearer ${tokA}\r\nConnection: close\r\n\r\n`);
  assert.ok(!seen.some((s) => s.method === 'DELETE' && s.headers.authorization), 'a DELETE carried the token upstream');
  // the token is in neither the audit nor the log
  await sleep(100);
  assert.ok(!auditText().includes(tokA), 'the token reached the audit');
  assert.ok(!gw.log.includes(tokA), 'the token reached the log');
});

test('a secret in a resource URI or a tool name is redacted in the audit like an argument', async () => {
  const aws = 'AKIA' + randomBytes(8).toString('hex').toUpperCase().slice(0, 16);
  const jwtish = 'eyJhbGciOiJIUzI1NiJ9.' + randomBytes(12).toString('base64url') + '.' + randomBytes(12).toString('base64url');
  await raw('rec', postReq('rec', { jsonrpc: '2.0', id: 1, method: 'resources/read', params: { uri: `docs:report?key=${aws}` } }));
  await raw('rec', postReq('rec', call(2, jwtish, { password: 'hunter2-' + aws })));
  await sleep(50);
  const t = auditText();
  assert.ok(t.includes('docs:report?key='), 'the resource read was not audited');
  assert.ok(!t.includes(aws), 'an AWS key id in a resource URI reached the audit');
  assert.ok(!t.includes(jwtish), 'a JWT used as a tool name reached the audit');
});

test('an audit line that cannot be built (huge id, huge name) keeps the call from the upstream', async () => {
  const m = 'aud-' + randomBytes(4).toString('hex');
  const bigId = 'i'.repeat(900 * 1024);
  let r = await raw('rec', postReq('rec', { ...call(1, 'echo', { p: m + '1' }), id: bigId }), { timeoutMs: 8000 });
  const got1 = reached(m + '1');
  const inAudit1 = auditText().includes(bigId.slice(0, 1000));
  assert.ok(!got1 || inAudit1, 'a call went upstream without its audit line');
  const bigName = 'e'.repeat(900 * 1024);
  r = await raw('rec', postReq('rec', call(m + '-id2', bigName, { p: m + '2' })), { timeoutMs: 8000 });
  assert.ok(status(r) > 0, r.slice(0, 200));
  assert.ok(!reached(m + '2') || auditLines().some((l) => l.id === m + '-id2' && l.dir === 'in'), 'a call went upstream without its audit line');
  // bad UTF-8 in the arguments: not JSON to the guard, refused
  const bad = Buffer.concat([Buffer.from(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"p":"${m}3\xff`, 'latin1'), Buffer.from('"}}}')]);
  r = await raw('rec', Buffer.concat([Buffer.from(`POST /mcp HTTP/1.1\r\nHost: ${H('rec')}\r\nContent-Type: application/json\r\nContent-Length: ${bad.length}\r\nConnection: close\r\n\r\n`), bad]));
  assert.equal(status(r), 400, r);
  assert.ok(!reached(m + '3'));
  const v = await postern(['audit', 'verify', auditFile]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
});

test('held calls cannot pin unbounded memory: past 64 MiB of held bodies a call is refused at once', async () => {
  const pad = 'p'.repeat(1000 * 1024);
  const conns = [];
  for (let i = 0; i < 72; i++) {
    const t0 = Date.now();
    conns.push(raw('hold', postReq('hold', call(i, 'move_file', { pad })), { timeoutMs: 40000 }).then((r) => ({ r, ms: Date.now() - t0 })));
  }
  const res = await Promise.all(conns);
  const refused = res.filter(({ r }) => /hold too many bytes/.test(r));
  const timedOut = res.filter(({ r }) => /not approved in time/.test(r));
  assert.ok(refused.length >= 6, `refused at once: ${refused.length}; ${res.map(({ r }) => r.slice(-120)).join('\n')}`);
  assert.ok(timedOut.length >= 60 && timedOut.length <= 66, `held then timed out: ${timedOut.length}`);
  assert.ok(!reached(pad.slice(0, 100)), 'a held call reached the upstream');
  // the budget is back once they are decided
  const again = await raw('rec', postReq('rec', call(99, 'move_file', { pad })), { timeoutMs: 15000 });
  assert.match(again, /not approved in time/);
});

// ---- (b) a hostile upstream ------------------------------------------------------------------------------

async function evilList(scn, { method = 'POST' } = {}) {
  const before = auditLines().length;
  const req = method === 'GET'
    ? `GET /s/${scn} HTTP/1.1\r\nHost: ${H('evil')}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n`
    : postReq('evil', { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { path: `/s/${scn}`, headers: 'Accept-Encoding: gzip, deflate, br\r\n' });
  const r = await raw('evil', req);
  await sleep(50);
  return { r, lines: auditLines().slice(before) };
}

for (const [scn, method] of [['get-plain', 'GET'], ['get-json', 'GET']]) {
  test(`a GET stream labelled otherwise (${scn}) still has its events audited and its lists filtered`, async () => {
    const { r, lines } = await evilList(scn, { method });
    assert.ok(!r.includes('write_file') && !r.includes('EVIL-DESCRIPTION'), `a hidden tool reached the client:\n${r}`);
    assert.match(r, /"echo"/, 'the allowed part of the list did not arrive');
    assert.ok(lines.some((l) => l.dir === 'out' && String(l.id) === '7'), `released without an audit line: ${JSON.stringify(lines)}`);
  });
}

for (const scn of ['err-list', 'accepted-list']) {
  test(`an HTTP ${scn === 'err-list' ? 'error' : '202'} whose body is a list result is filtered and audited`, async () => {
    const { r, lines } = await evilList(scn);
    assert.ok(!r.includes('write_file'), `a hidden tool reached the client:\n${r}`);
    assert.equal(status(r), scn === 'err-list' ? 400 : 202, r);
    assert.match(r, /"echo"/);
    assert.ok(lines.some((l) => l.dir === 'out' && String(l.id) === '1'), `the answer was released unaudited: ${JSON.stringify(lines)}`);
  });
}

test('an HTTP error whose body is not JSON-RPC still passes as sent', async () => {
  const { r } = await evilList('err-text');
  assert.equal(status(r), 503, r);
  assert.match(r, /\r\n\r\nbusy; go!$/);
});

test('a compressed answer is never released unread, and the guard asks the upstream for none', async () => {
  for (const scn of ['gzip-json', 'gzip-sse', 'gzip-err']) {
    const { r } = await evilList(scn);
    const body = Buffer.from(r.slice(r.indexOf('\r\n\r\n') + 4), 'latin1');
    assert.ok(!r.includes('write_file') && !body.includes(Buffer.from([0x1f, 0x8b])), `${scn}: a compressed body went out: ${r.slice(0, 300)}`);
    let inflated = '';
    try { inflated = gunzipSync(Buffer.from(r.slice(r.indexOf('\r\n\r\n') + 4), 'latin1')).toString(); } catch { /* not gzip */ }
    assert.ok(!inflated.includes('write_file'), `${scn}: a compressed list went out`);
  }
  const { r } = await evilList('echo-head');
  assert.equal(status(r), 200, r);
  const head = JSON.parse(r.slice(r.indexOf('\r\n\r\n') + 4)).result.head;
  assert.ok(!/accept-encoding:\s*(?!identity)/i.test(head), `the upstream was offered compression:\n${head}`);
});

test('resource templates under a denied scheme are hidden like resources', async () => {
  const { r, lines } = await evilList('templates');
  assert.equal(status(r), 200, r);
  assert.ok(!r.includes('vault:'), `a denied template was listed:\n${r}`);
  assert.match(r, /docs:\{path\}/);
  assert.match(r, /"nextCursor":"c2"/);
  assert.ok(lines.some((l) => l.dir === 'out' && String(l.id) === '1'));
});

for (const scn of ['sse-cut', 'sse-cut-chunked']) {
  test(`an SSE event cut by the end of the stream (${scn}) is not released unread`, async () => {
    const { r } = await evilList(scn);
    assert.ok(!r.includes('write_file'), `the unterminated event went out unfiltered:\n${r}`);
  });
}

for (const scn of ['sse-split', 'sse-cr', 'sse-multiline', 'interim', 'switching', 'two-ct-a', 'two-ct-b', 'ct-param', 'batch-list', 'chunk-ext', 'sse-big']) {
  test(`hostile upstream framing ${scn}: the hidden tool never reaches the client`, async () => {
    const { r, lines } = await evilList(scn);
    assert.ok(!r.includes('write_file'), `a hidden tool reached the client:\n${r.slice(0, 2000)}`);
    if (/"echo"|"t1999"/.test(r)) assert.ok(lines.some((l) => l.dir === 'out' && String(l.id) === '1'), 'released without an audit line');
    if (scn === 'sse-big') assert.match(r, /"t1999"/, 'a long (200 KiB) tool list on one SSE line was not passed');
  });
}

test('the audit chain of everything above verifies', async () => {
  const v = await postern(['audit', 'verify', auditFile]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.ok(!/log line not in key=value form/.test(gw.log));
});

test('a POST body sent too slowly is answered 408 after the head deadline, not held forever', async () => {
  const { r, after } = await slow;
  assert.equal(status(r), 408, `after ${after} ms: ${r}`);
  assert.match(r, /request body not received in time/);
  assert.ok(after >= 29000 && after < 40000, `answered after ${after} ms`);
});
