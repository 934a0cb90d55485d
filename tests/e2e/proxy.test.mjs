// The inner proxy on its own (proxy-only: listen_addr, no edges): TLS with the customer certificate,
// routing by Host, transparent forwarding, streaming without buffering, keep-alive, errors, IP validation,
// config errors with file and line, certificate hot-reload, drain. Real clients: the MCP SDK, curl, Node.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import crypto from 'node:crypto';
import path from 'node:path';
import { readFileSync, writeFileSync, renameSync, copyFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { start, run, postern, freePort, stopAll, tmpdir, rmrf, sleep, waitUntil } from './lib/proc.mjs';
import { connectMcp, pinnedFetch } from './lib/mcp.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DOMAIN = 'abcd.tunnel.test';
// `postern gateway` without `edges` is the proxy-only gateway; `postern proxy` is the same proxy alone.
const CMD = process.env.POSTERN_PROXY_CMD || 'proxy';

let dir, pki, pki2, everything, mcpPort, upstream, upPort, proxy, pxPort;
const sockets = new Set(); // upstream-side sockets seen (keep-alive reuse)
let lastSeen = null; // what the upstream received last

function writeConfig(file, lines) {
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

async function startProxy(name, routes, extra = [], level = 'info') {
  const yaml = writeConfig(path.join(dir, `${name}.yaml`), [
    'listen_addr: "127.0.0.1:0"',
    `tunnel_domain: ${DOMAIN}`,
    `log_level: ${level}`,
    'shutdown_timeout: 5s',
    `tls:\n  cert_file: ${path.join(dir, 'live', 'tls.crt')}\n  key_file: ${path.join(dir, 'live', 'tls.key')}`,
    'routes:',
    ...Object.entries(routes).map(([k, v]) => `  ${k}: ${v}`),
    ...extra,
  ]);
  // Under ASan, freed memory sits in a 256 MB quarantine and would look like buffering in the RSS checks.
  const asan = [process.env.ASAN_OPTIONS, 'quarantine_size_mb=2', 'thread_local_quarantine_size_kb=64'].filter(Boolean).join(':');
  const p = start(process.env.POSTERN_BIN, [CMD, '-c', yaml], { name, env: { ...process.env, ASAN_OPTIONS: asan } });
  const m = await p.waitFor(/msg="proxy listening" addr=127\.0\.0\.1:(\d+)/, 10000);
  p.port = Number(m[1]);
  return p;
}

// A Node https request to host (any name) pinned to the proxy's port, verifying the customer CA.
function request(host, reqPath, { method = 'GET', headers = {}, body, agent, ca = pki.ca, port = pxPort, sni = host } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = https.request({
      host: '127.0.0.1', port, servername: sni, path: reqPath, method, agent: agent ?? false,
      headers: { host, ...headers }, ca: readFileSync(ca), timeout: 10000,
    }, (res) => {
      const chunks = [];
      const events = [];
      res.on('data', (c) => { chunks.push(c); events.push({ at: performance.now() - t0, text: c.toString() }); });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks),
        text: Buffer.concat(chunks).toString(), events, reused: req.reusedSocket, total: performance.now() - t0 }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

const BIG = crypto.randomBytes(8 * 1024 * 1024);
const BIG_SHA = crypto.createHash('sha256').update(BIG).digest('hex');
const HUGE_CHUNK = crypto.randomBytes(256 * 1024);
let sseClosed = false;

function rssKiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]);
}

before(async () => {
  dir = tmpdir('postern-proxy-');
  // The customer PKI exactly as users make it, twice (the second pair is for the hot-reload test).
  for (const [name, out] of [['a', 'pki'], ['b', 'pki2']]) {
    const r = await postern(['certs', 'init', '--domain', DOMAIN, '--out', path.join(dir, out)]);
    assert.equal(r.code, 0, `certs init ${name}: ${r.stderr}`);
  }
  pki = { ca: path.join(dir, 'pki', 'ca.pem'), cert: path.join(dir, 'pki', 'server.pem'), key: path.join(dir, 'pki', 'server.key') };
  pki2 = { ca: path.join(dir, 'pki2', 'ca.pem'), cert: path.join(dir, 'pki2', 'server.pem'), key: path.join(dir, 'pki2', 'server.key') };
  await run('mkdir', ['-p', path.join(dir, 'live')]);
  copyFileSync(pki.cert, path.join(dir, 'live', 'tls.crt'));
  copyFileSync(pki.key, path.join(dir, 'live', 'tls.key'));

  mcpPort = await freePort();
  everything = start(process.execPath, [path.join(root, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js'), 'streamableHttp'],
    { env: { ...process.env, PORT: String(mcpPort) }, name: 'server-everything' });
  await everything.waitFor(/listening on port/, 20000);

  upstream = http.createServer((req, res) => {
    sockets.add(req.socket);
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    if (req.url === '/slow-sink') {
      // does not read the body for 2 s, then drains it
      req.pause();
      setTimeout(() => { let n = 0; req.on('data', (c) => { n += c.length; }); req.on('end', () => res.end(String(n))); req.resume(); }, 2000);
      return;
    }
    if (req.url === '/sse-forever') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: hello\n\n');
      const t = setInterval(() => res.write('data: tick\n\n'), 100);
      res.on('close', () => { clearInterval(t); sseClosed = true; });
      return;
    }
    req.on('end', () => {
      lastSeen = { method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString() };
      if (req.url === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write('event: one\ndata: first\n\n');
        setTimeout(() => { res.write('event: two\ndata: second\n\n'); res.end(); }, 2000);
        return;
      }
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG.length });
        res.end(BIG);
        return;
      }
      if (req.url === '/huge') {
        // 64 MiB, written as fast as the proxy takes it
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': HUGE_CHUNK.length * 256 });
        let i = 0;
        const pump = () => { while (i < 256) { i++; if (!res.write(HUGE_CHUNK)) { res.once('drain', pump); return; } } res.end(); };
        pump();
        return;
      }
      if (req.url === '/cut') {
        // promises 100000 bytes, sends 10, then the connection dies
        res.writeHead(200, { 'content-length': '100000' });
        res.write('0123456789');
        setTimeout(() => req.socket.destroy(), 100);
        return;
      }
      if (req.url === '/sha') {
        res.end(crypto.createHash('sha256').update(Buffer.concat(chunks)).digest('hex'));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes' });
      res.end(JSON.stringify(lastSeen));
    });
  });
  upPort = await freePort();
  await new Promise((r) => upstream.listen(upPort, '127.0.0.1', r));

  proxy = await startProxy('proxy', {
    everything: `http://127.0.0.1:${mcpPort}`,
    up: `http://127.0.0.1:${upPort}`,
    'api.internal.example': `http://127.0.0.1:${upPort}`,
  }, ['upstream:', '  allowed_ips: [127.0.0.0/8]']);
  pxPort = proxy.port;
});

after(async () => {
  await stopAll();
  upstream?.close();
  upstream?.closeAllConnections?.();
  if (dir) rmrf(dir);
});

test('MCP SDK (Streamable HTTP) lists and calls tools through the proxy exactly as directly', async () => {
  const via = await connectMcp(`https://everything.${DOMAIN}:${pxPort}/mcp`, { ca: pki.ca });
  const direct = await connectMcp(`http://127.0.0.1:${mcpPort}/mcp`);
  try {
    const a = await via.client.listTools();
    const b = await direct.client.listTools();
    assert.ok(a.tools.length >= 5, `expected server-everything's tools, got ${a.tools.length}`);
    assert.deepEqual(a.tools.map((x) => x.name).sort(), b.tools.map((x) => x.name).sort());
    assert.deepEqual(a.tools.find((x) => x.name === 'echo'), b.tools.find((x) => x.name === 'echo'));
    const ea = await via.client.callTool({ name: 'echo', arguments: { message: 'through the proxy' } });
    const eb = await direct.client.callTool({ name: 'echo', arguments: { message: 'through the proxy' } });
    assert.deepEqual(ea, eb);
    assert.match(ea.content[0].text, /through the proxy/);
    const sa = await via.client.callTool({ name: 'get-sum', arguments: { a: 40, b: 2 } });
    assert.match(sa.content[0].text, /42/);
  } finally {
    await via.close();
    await direct.close();
  }
  await proxy.waitFor(/msg="request" route="everything" method=POST path="\/mcp" status=200/, 5000);
});

test('curl: the customer CA verifies the certificate; Host routes; 404 "no route for host"', async () => {
  const ok = await run('curl', ['-sS', '--cacert', pki.ca, '--resolve', `up.${DOMAIN}:${pxPort}:127.0.0.1`,
    `https://up.${DOMAIN}:${pxPort}/hello?x=1`]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).url, '/hello?x=1');
  // the exact full host name is a route too; routing follows Host, not the TLS server name
  const exact = await request('api.internal.example', '/exact', { sni: `up.${DOMAIN}` });
  assert.equal(exact.status, 200);
  assert.equal(JSON.parse(exact.text).url, '/exact');
  const nf = await run('curl', ['-sS', '-w', '\n%{http_code}', '--cacert', pki.ca, '--resolve', `nope.${DOMAIN}:${pxPort}:127.0.0.1`,
    `https://nope.${DOMAIN}:${pxPort}/x`]);
  assert.equal(nf.code, 0, nf.stderr);
  assert.deepEqual(nf.stdout.split('\n'), ['no route for host', '404']);
  await proxy.waitFor(/msg="no route for host" host="nope\.abcd\.tunnel\.test"/, 5000);
  // another CA is refused by the client
  const bad = await run('curl', ['-sS', '--cacert', pki2.ca, '--resolve', `up.${DOMAIN}:${pxPort}:127.0.0.1`, `https://up.${DOMAIN}:${pxPort}/`]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /certificate/i);
});

test('method, path, query, headers and body reach the upstream unchanged; Host kept; secrets not logged', async () => {
  const secret = `Bearer sekrit-${Date.now()}`;
  const body = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list', pad: 'x'.repeat(100000) });
  const r = await request(`up.${DOMAIN}`, '/mcp/v1?session=abc&tok=qq%20x', {
    method: 'PATCH', body, headers: { authorization: secret, 'x-Custom-Header': 'A  b', 'content-type': 'application/json' },
  });
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-upstream'], 'yes');
  const seen = JSON.parse(r.text);
  assert.equal(seen.method, 'PATCH');
  assert.equal(seen.url, '/mcp/v1?session=abc&tok=qq%20x');
  assert.equal(seen.headers.host, `up.${DOMAIN}`);
  assert.equal(seen.headers.authorization, secret);
  assert.equal(seen.headers['x-custom-header'], 'A  b');
  assert.ok(seen.rawHeaders.includes('x-Custom-Header'), 'header name case must be kept');
  assert.equal(seen.body, body);
  // nothing added: the upstream sees exactly the client's headers
  assert.deepEqual(Object.keys(seen.headers).sort(), ['authorization', 'connection', 'content-length', 'content-type', 'host', 'x-custom-header']);
  await proxy.waitFor(/method=PATCH path="\/mcp\/v1" status=200/, 5000);
  assert.ok(!proxy.log.includes('sekrit'), 'Authorization value in the proxy log');
  assert.ok(!proxy.log.includes('session=abc'), 'query string in the proxy log');
  assert.ok(!proxy.log.includes('tools/list'), 'body in the proxy log');
});

test('SSE: the first event reaches the client in under 200 ms, the second 2 s later', async () => {
  const r = await request(`up.${DOMAIN}`, '/sse');
  assert.equal(r.status, 200);
  const first = r.events.find((e) => e.text.includes('data: first'));
  const second = r.events.find((e) => e.text.includes('data: second'));
  assert.ok(first && second, `events: ${JSON.stringify(r.events)}`);
  assert.ok(first.at < 200, `first event after ${first.at.toFixed(1)} ms`);
  assert.ok(!first.text.includes('second'), 'the first event was held back until the second');
  assert.ok(second.at - first.at > 1800, `second event only ${(second.at - first.at).toFixed(0)} ms after the first`);
  // the same with the fetch API (undici), reading the stream as it comes
  const f = pinnedFetch({ ca: pki.ca });
  const t0 = performance.now();
  const res = await f(`https://up.${DOMAIN}:${pxPort}/sse`);
  const reader = res.body.getReader();
  const { value } = await reader.read();
  const at = performance.now() - t0;
  assert.match(Buffer.from(value).toString(), /data: first/);
  assert.ok(at < 200, `fetch: first event after ${at.toFixed(1)} ms`);
  await reader.cancel();
  await f.close();
});

test('keep-alive: several requests on one client connection reuse one upstream connection', async () => {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const before0 = sockets.size;
  const results = [];
  for (let i = 0; i < 5; i++) results.push(await request(`up.${DOMAIN}`, `/ka/${i}`, { agent, method: i % 2 ? 'POST' : 'GET', body: i % 2 ? `b${i}` : undefined }));
  agent.destroy();
  results.forEach((r, i) => { assert.equal(r.status, 200); assert.equal(JSON.parse(r.text).url, `/ka/${i}`); });
  assert.deepEqual(results.map((r) => r.reused), [false, true, true, true, true]);
  assert.equal(sockets.size - before0, 1, 'the upstream saw more than one connection');
  // curl with several URLs: one connection, in order
  const c = await run('curl', ['-sS', '-v', '--cacert', pki.ca, '--resolve', `up.${DOMAIN}:${pxPort}:127.0.0.1`,
    `https://up.${DOMAIN}:${pxPort}/c1`, `https://up.${DOMAIN}:${pxPort}/c2`, `https://up.${DOMAIN}:${pxPort}/c3`]);
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stderr, /Re-using existing connection/);
  assert.deepEqual(c.stdout.match(/"url":"\/c\d"/g), ['"url":"/c1"', '"url":"/c2"', '"url":"/c3"']);
});

test('large bodies stream both ways intact (8 MiB each way)', async () => {
  const down = await request(`up.${DOMAIN}`, '/big');
  assert.equal(down.status, 200);
  assert.equal(down.body.length, BIG.length);
  assert.equal(crypto.createHash('sha256').update(down.body).digest('hex'), BIG_SHA);
  const up = await request(`up.${DOMAIN}`, '/sha', { method: 'POST', body: BIG, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(up.text, BIG_SHA);
  // chunked request body
  const ch = await run('curl', ['-sS', '--cacert', pki.ca, '--resolve', `up.${DOMAIN}:${pxPort}:127.0.0.1`,
    '-H', 'Transfer-Encoding: chunked', '--data-binary', 'chunked-body', `https://up.${DOMAIN}:${pxPort}/chunk`]);
  assert.equal(JSON.parse(ch.stdout).body, 'chunked-body');
});

// Raw HTTP over the inner TLS, for malformed requests no client library sends.
function rawTls(payload) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: pxPort, servername: `up.${DOMAIN}`, ca: readFileSync(pki.ca) }, () => s.end(payload));
    let out = '';
    s.on('data', (d) => { out += d; });
    s.on('end', () => resolve(out));
    s.on('close', () => resolve(out));
    s.on('error', reject);
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
  });
}

test('pipelined requests in one TLS record are answered in order on one connection', async () => {
  // The second request arrives while the first exchange is still running: its bytes wait, then start a new one.
  const h = `up.${DOMAIN}`;
  const out = await rawTls(`GET /pipe1 HTTP/1.1\r\nHost: ${h}\r\n\r\n` +
    `POST /pipe2 HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 5\r\n\r\nhello` +
    `GET /pipe3 HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`);
  assert.deepEqual(out.match(/HTTP\/1\.1 \d+/g), ['HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 200']);
  assert.deepEqual(out.match(/"url":"\/pipe\d"/g), ['"url":"/pipe1"', '"url":"/pipe2"', '"url":"/pipe3"']);
  assert.match(out, /"body":"hello"/);
});

test('TLS 1.3 KeyUpdate from openssl s_client, requested and not, on a connection the record layer took over', async () => {
  const px = await startProxy('px-keyupdate', { up: `http://127.0.0.1:${upPort}` }, ['upstream:', '  allowed_ips: [127.0.0.0/8]'], 'debug');
  const h = `up.${DOMAIN}`;
  const cli = start('openssl', ['s_client', '-connect', `127.0.0.1:${px.port}`, '-servername', h, '-CAfile', pki.ca,
    '-crlf', '-brief'], { name: 's_client' });
  try {
    await cli.waitFor(/Verification: OK/, 10000);
    await px.waitFor(/msg="tls handshake done" client=\S+ record_layer=postern/, 5000);
    // s_client takes a line starting with K or k as a command only when it arrives in a read of its own.
    const command = async (c) => { cli.child.stdin.write(`${c}\n`); await sleep(300); };
    const ask = async (n, extra = '') => {
      cli.child.stdin.write(`GET /ku${n} HTTP/1.1\nHost: ${h}\n${extra}\n`);
      await cli.waitFor(new RegExp(`"url":"/ku${n}"`), 5000);
    };
    await ask(1);
    await command('K'); // KeyUpdate, update_requested: we answer with our own and move both keys
    await ask(2);
    await command('k'); // KeyUpdate, update_not_requested
    await ask(3);
    await command('K');
    await ask(4, 'Connection: close\n');
    await cli.exited;
    assert.equal((cli.log.match(/KEYUPDATE/g) || []).length, 3, cli.log);
    assert.deepEqual(cli.log.match(/"url":"\/ku\d"/g), ['"url":"/ku1"', '"url":"/ku2"', '"url":"/ku3"', '"url":"/ku4"']);
    assert.doesNotMatch(px.log, /client TLS error/);
  } finally {
    await cli.kill();
    await px.kill();
  }
});

test('TLS 1.3 session resumption: a ticket from a handed-off connection resumes, and the new one is handed off too', async () => {
  const px = await startProxy('px-resume', { up: `http://127.0.0.1:${upPort}` }, ['upstream:', '  allowed_ips: [127.0.0.0/8]'], 'debug');
  const h = `up.${DOMAIN}`;
  const sess = path.join(dir, 'tls-session.pem');
  try {
    const once = (n, flag) => run('openssl', ['s_client', '-connect', `127.0.0.1:${px.port}`, '-servername', h, '-CAfile', pki.ca,
      '-crlf', '-ign_eof', flag, sess], { input: `GET /resume${n} HTTP/1.1\nHost: ${h}\nConnection: close\n\n`, timeoutMs: 10000 });
    const first = await once(1, '-sess_out');
    assert.match(first.stdout, /New, TLSv1\.3/);
    assert.match(first.stdout, /"url":"\/resume1"/);
    const second = await once(2, '-sess_in');
    assert.match(second.stdout, /Reused, TLSv1\.3/);
    assert.match(second.stdout, /"url":"\/resume2"/);
    await px.waitFor(/(msg="tls handshake done" client=\S+ record_layer=postern[\s\S]*){2}/, 5000);
    assert.doesNotMatch(px.log, /client TLS error/);
  } finally {
    await px.kill();
  }
});

test('bad requests: 400 with a reason, 431 for a huge head, 405 for CONNECT', async () => {
  const r1 = await rawTls('GARBAGE\r\n\r\n');
  assert.match(r1, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(r1, /bad request: /);
  const r2 = await rawTls(`GET / HTTP/1.1\r\nHost: up.${DOMAIN}\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\n\r\n`);
  assert.match(r2, /^HTTP\/1\.1 431 /);
  const r3 = await rawTls(`GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`);
  assert.match(r3, /^HTTP\/1\.1 400 .*\r\n[\s\S]*more than one Host header/);
  const r4 = await rawTls(`GET / HTTP/1.1\r\nX: y\r\n\r\n`);
  assert.match(r4, /missing Host header/);
  const r5 = await rawTls(`CONNECT up.${DOMAIN}:443 HTTP/1.1\r\nHost: up.${DOMAIN}:443\r\n\r\n`);
  assert.match(r5, /^HTTP\/1\.1 405 /);
  const r6 = await rawTls(`POST / HTTP/1.1\r\nHost: up.${DOMAIN}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc`);
  assert.match(r6, /^HTTP\/1\.1 400 /);
  // the proxy keeps serving
  assert.equal((await request(`up.${DOMAIN}`, '/after-bad')).status, 200);
});

test('an upstream outside allowed_ips after DNS: 502 and "IP validation failed" (default RFC 1918 list)', async () => {
  const p = await startProxy('proxy-default-ips', { local: `http://localhost:${upPort}`, lit: `http://127.0.0.1:${upPort}` });
  try {
    for (const host of [`local.${DOMAIN}`, `lit.${DOMAIN}`]) {
      const r = await request(host, '/x', { port: p.port });
      assert.equal(r.status, 502);
      assert.equal(r.text, 'upstream address not allowed');
    }
    await p.waitFor(/IP validation failed: 127\.0\.0\.1 is not an allowed address.* key=upstream\.allowed_ips hint="add 127\.0\.0\.1/, 5000);
  } finally {
    assert.equal((await p.kill()).code, 0, p.log);
  }
});

test('upstream down: 502 quickly, and the proxy keeps serving', async () => {
  const dead = await freePort();
  const p = await startProxy('proxy-dead', { dead: `http://127.0.0.1:${dead}` }, ['upstream:', '  allowed_ips: [127.0.0.0/8]']);
  try {
    const r = await request(`dead.${DOMAIN}`, '/x', { port: p.port });
    assert.equal(r.status, 502);
    assert.equal(r.text, 'upstream connect failed');
    assert.ok(r.total < 2000);
    await p.waitFor(/msg="upstream connect failed" route=dead/, 5000);
  } finally {
    assert.equal((await p.kill()).code, 0, p.log);
  }
});

test('config errors name the file, the line and the key', async () => {
  const cases = [
    [['routes:', '  docs: http://docs:8080/mcp'], /bad\.yaml:4: docs: invalid upstream \(must be scheme:\/\/host:port\)/],
    [['routes:', '  - docs: http://docs:8080'], /bad\.yaml:3: routes: must be a mapping of route name to scheme:\/\/host:port .*not a list/],
    [['routes: {a: "http://a:1"}', 'upstream:', '  allowed_ips: [10.0.0.0/8, nonsense]'], /bad\.yaml:5: upstream\.allowed_ips: 'nonsense' is not a CIDR/],
    [['routes: {a: "http://a:1"}', 'tls_typo: 1'], /bad\.yaml:4: unknown key 'tls_typo'/],
  ];
  for (const [lines, re] of cases) {
    const yaml = writeConfig(path.join(dir, 'bad.yaml'), ['listen_addr: "127.0.0.1:0"', `tls: {cert_file: ${pki.cert}, key_file: ${pki.key}}`, ...lines]);
    const r = await postern([CMD, '-c', yaml], { timeoutMs: 5000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, re);
    // postern check -c says the same without starting anything
    const c = await postern(['check', '-c', yaml], { timeoutMs: 5000 });
    assert.equal(c.code, 1);
    assert.match(c.stderr, re);
  }
  const good = writeConfig(path.join(dir, 'good.yaml'), ['listen_addr: "127.0.0.1:0"', `tls: {cert_file: ${pki.cert}, key_file: ${pki.key}}`, 'routes: {a: "http://a:1"}']);
  const c = await postern(['check', '-c', good], { timeoutMs: 5000 });
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /good\.yaml: ok/);
  // a key file that does not match: a clear start-up error
  const yaml = writeConfig(path.join(dir, 'badkey.yaml'), ['listen_addr: "127.0.0.1:0"', `tls: {cert_file: ${pki.cert}, key_file: ${pki2.key}}`, 'routes: {a: "http://a:1"}']);
  const r = await postern([CMD, '-c', yaml], { timeoutMs: 5000 });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /cannot load private key: key values mismatch|private key does not match/);
});

function peerFingerprint(port) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: `up.${DOMAIN}`, rejectUnauthorized: false }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

const fingerprint = (file) => new crypto.X509Certificate(readFileSync(file)).fingerprint256;

test('certificate hot-reload: new connections get the new pair; a broken pair keeps the old one', async () => {
  const live = path.join(dir, 'live');
  assert.equal(await peerFingerprint(pxPort), fingerprint(pki.cert));
  // an open keep-alive connection survives the swap
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  assert.equal((await request(`up.${DOMAIN}`, '/before', { agent })).status, 200);

  // a broken pair: a certificate with the wrong key
  const mark = proxy.log.length;
  writeFileSync(path.join(live, 'tls.crt.tmp'), readFileSync(pki2.cert));
  renameSync(path.join(live, 'tls.crt.tmp'), path.join(live, 'tls.crt'));
  await proxy.waitFor(/certificate reload failed, keeping the current certificate/, 10000, mark);
  assert.equal(await peerFingerprint(pxPort), fingerprint(pki.cert));
  assert.equal((await request(`up.${DOMAIN}`, '/still-old')).status, 200);

  // the matching key arrives: the new pair is taken
  const mark2 = proxy.log.length;
  writeFileSync(path.join(live, 'tls.key.tmp'), readFileSync(pki2.key), { mode: 0o600 });
  renameSync(path.join(live, 'tls.key.tmp'), path.join(live, 'tls.key'));
  await proxy.waitFor(/msg="certificate reloaded"/, 10000, mark2);
  assert.equal(await peerFingerprint(pxPort), fingerprint(pki2.cert));
  const fresh = await request(`up.${DOMAIN}`, '/new-ca', { ca: pki2.ca });
  assert.equal(fresh.status, 200);
  await assert.rejects(() => request(`up.${DOMAIN}`, '/old-ca', { ca: pki.ca }), /certificate|self.signed|unable to verify/i);
  // the connection opened before the swap still works
  const old = await request(`up.${DOMAIN}`, '/after', { agent });
  assert.equal(old.status, 200);
  assert.equal(old.reused, true);
  agent.destroy();

  // put the first pair back for the tests that follow
  copyFileSync(pki.cert, path.join(live, 'tls.crt.tmp'));
  copyFileSync(pki.key, path.join(live, 'tls.key.tmp'));
  renameSync(path.join(live, 'tls.key.tmp'), path.join(live, 'tls.key'));
  renameSync(path.join(live, 'tls.crt.tmp'), path.join(live, 'tls.crt'));
  await waitUntil(async () => (await peerFingerprint(pxPort)) === fingerprint(pki.cert), 10000, 200, 'reload back');
});

test('certificate hot-reload: a valid pair for another domain is refused with an error, the old one stays', async () => {
  const live = path.join(dir, 'live');
  const r = await postern(['certs', 'init', '--domain', 'elsewhere.test', '--out', path.join(dir, 'pki3')]);
  assert.equal(r.code, 0, r.stderr);
  const mark = proxy.log.length;
  // the key first, then the certificate: the pair that finally loads is a good pair, for the wrong names
  copyFileSync(path.join(dir, 'pki3', 'server.key'), path.join(live, 'tls.key.tmp'));
  copyFileSync(path.join(dir, 'pki3', 'server.pem'), path.join(live, 'tls.crt.tmp'));
  renameSync(path.join(live, 'tls.key.tmp'), path.join(live, 'tls.key'));
  renameSync(path.join(live, 'tls.crt.tmp'), path.join(live, 'tls.crt'));
  await proxy.waitFor(/level=error .*certificate reload failed, keeping the current certificate.*does not cover [a-z]+\.abcd\.tunnel\.test.*issue it for \*\.abcd\.tunnel\.test/, 10000, mark);
  await sleep(300);
  assert.equal(await peerFingerprint(pxPort), fingerprint(pki.cert));
  assert.equal((await request(`up.${DOMAIN}`, '/still-old')).status, 200);
  assert.doesNotMatch(proxy.log.slice(mark), /certificate reloaded/);
  copyFileSync(pki.cert, path.join(live, 'tls.crt.tmp'));
  copyFileSync(pki.key, path.join(live, 'tls.key.tmp'));
  renameSync(path.join(live, 'tls.key.tmp'), path.join(live, 'tls.key'));
  renameSync(path.join(live, 'tls.crt.tmp'), path.join(live, 'tls.crt'));
  await proxy.waitFor(/msg="certificate reloaded"/, 10000, mark);
  assert.equal(await peerFingerprint(pxPort), fingerprint(pki.cert));
});

test('SIGTERM drains: an in-flight SSE response completes, then the process exits 0', async () => {
  const p = await startProxy('proxy-drain', { up: `http://127.0.0.1:${upPort}` }, ['upstream:', '  allowed_ips: [127.0.0.0/8]']);
  const inflight = request(`up.${DOMAIN}`, '/sse', { port: p.port });
  await sleep(300);
  p.child.kill('SIGTERM');
  await p.waitFor(/msg="proxy draining"/, 5000);
  const r = await inflight;
  assert.equal(r.status, 200);
  assert.match(r.text, /data: second/);
  const ex = await p.exited;
  assert.equal(ex.code, 0);
  assert.match(p.log, /msg="proxy drained"/);
});

test('backpressure: a slow client and a slow upstream do not make the proxy buffer (RSS stays bounded)', async () => {
  const pid = proxy.child.pid;
  const base = rssKiB(pid);
  // download: the client stops reading for 2 s while the upstream has 64 MiB to send
  await new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: pxPort, servername: `up.${DOMAIN}`, path: '/huge',
      headers: { host: `up.${DOMAIN}` }, ca: readFileSync(pki.ca), agent: false }, (res) => {
      let got = 0, peak = 0;
      res.once('data', (c) => {
        got += c.length;
        res.pause();
        setTimeout(() => {
          peak = rssKiB(pid);
          res.on('data', (d) => { got += d.length; });
          res.resume();
        }, 2000);
      });
      res.on('end', () => {
        try {
          assert.equal(got, HUGE_CHUNK.length * 256);
          assert.ok(peak - base < 24 * 1024, `proxy RSS grew by ${peak - base} KiB while the client was not reading`);
          resolve();
        } catch (e) { reject(e); }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  // upload: the upstream does not read for 2 s while the client has 64 MiB to send
  let peakUp = 0;
  const sampler = setInterval(() => { peakUp = Math.max(peakUp, rssKiB(pid)); }, 100);
  const body = Buffer.alloc(HUGE_CHUNK.length * 256, 7);
  const r = await request(`up.${DOMAIN}`, '/slow-sink', { method: 'POST', body });
  clearInterval(sampler);
  assert.equal(r.text, String(body.length));
  assert.ok(peakUp - base < 24 * 1024, `proxy RSS grew by ${peakUp - base} KiB while the upstream was not reading`);
});

test('abrupt endings: client gone mid-stream closes the upstream; upstream gone mid-body aborts the client', async () => {
  sseClosed = false;
  await new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: pxPort, servername: `up.${DOMAIN}`, path: '/sse-forever',
      headers: { host: `up.${DOMAIN}` }, ca: readFileSync(pki.ca), agent: false }, (res) => {
      res.once('data', () => { req.destroy(); resolve(); });
    });
    req.on('error', (e) => { if (e.code !== 'ECONNRESET') reject(e); });
    req.end();
  });
  await waitUntil(() => sseClosed, 5000, 50, 'the upstream to see the stream closed');
  await proxy.waitFor(/path="\/sse-forever" status=200 .*error="client went away"/, 5000);

  await assert.rejects(() => request(`up.${DOMAIN}`, '/cut'), /aborted|ECONNRESET|socket hang up|terminated/);
  await proxy.waitFor(/path="\/cut" status=200 .*error="aborted"/, 5000);
  assert.equal((await request(`up.${DOMAIN}`, '/after-cut')).status, 200);
});

test('the proxy stops cleanly on SIGTERM (exit 0; under ASan: no leak report)', async () => {
  const r = await proxy.kill('SIGTERM', 10000);
  assert.equal(r.code, 0, proxy.log.slice(-3000));
  assert.ok(!/LeakSanitizer|AddressSanitizer|runtime error/.test(proxy.log), proxy.log.slice(-3000));
});
