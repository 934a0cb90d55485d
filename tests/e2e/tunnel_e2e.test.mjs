// Issue 3, items 1-3: a real MCP client through edge -> gateway; SSE streaming without buffering;
// the edge never sees plaintext (we capture the edge's own view of the connector link).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import tls from 'node:tls';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { start, freePort, stopAll, waitUntil, run, tmpdir, rmrf } from './lib/proc.mjs';
import { makeCA, makeLeaf } from './lib/certs.mjs';
import { makeEdges, createTunnel, startGateway } from './lib/tunnel.mjs';
import { postern } from './lib/proc.mjs';
import { connectMcp, pinnedFetch } from './lib/mcp.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let ctx, t, gw, agent, foreign, pkiDir, everything, mcpPort, upstream, upPort, relay, captured = [];
const REQ_MARK = `req-marker-${process.pid}-${Date.now()}-q7`;
const RESP_MARK = `resp-marker-${process.pid}-${Date.now()}-z9`;
let upstreamSaw = '';

before(async () => {
  mcpPort = await freePort();
  everything = start(process.execPath, [path.join(root, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js'), 'streamableHttp'],
    { env: { ...process.env, PORT: String(mcpPort) }, name: 'server-everything' });
  await everything.waitFor(/listening on port/, 20000);

  // Test upstream: /sse streams two events 2 s apart; /echo returns a marker and records the body.
  upstream = http.createServer((req, res) => {
    if (req.url === '/sse') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('event: one\ndata: first\n\n');
      setTimeout(() => { res.write('event: two\ndata: second\n\n'); res.end(); }, 2000);
      return;
    }
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { upstreamSaw += body; res.writeHead(200, { 'content-type': 'text/plain' }); res.end(`ok ${RESP_MARK}\n`); });
  });
  upPort = await freePort();
  await new Promise((r) => upstream.listen(upPort, '127.0.0.1', r));

  // The agent platform's client certificate for the outer mTLS entry, and one from a CA the edge does not trust.
  pkiDir = tmpdir('postern-agent-pki-');
  const platform = makeCA(pkiDir, 'platform-ca');
  agent = makeLeaf(pkiDir, platform, 'agent', [], 'client');
  foreign = makeLeaf(pkiDir, makeCA(pkiDir, 'other-ca'), 'intruder', [], 'client');
  ctx = await makeEdges(1, { mtlsCa: platform.cert, mtlsTunnels: '{ test: { client_cn: [agent] } }' });
  await ctx.edges[0].start();
  t = await createTunnel(ctx);

  // The edge's view of the connector link: a relay that holds the edge's certificate, so it sees exactly
  // what the edge sees after removing the outer TLS, and forwards it to the real edge.
  const relayPort = await freePort();
  const edgeCert = readFileSync(path.join(ctx.dir, 'edge-pki', 'server.pem'));
  const edgeKey = readFileSync(path.join(ctx.dir, 'edge-pki', 'server.key'));
  relay = tls.createServer({ cert: edgeCert, key: edgeKey, ALPNProtocols: ['postern/1'], minVersion: 'TLSv1.3' }, (down) => {
    const up = tls.connect({ host: '127.0.0.1', port: ctx.edges[0].connector, servername: 'connect.edge.test',
      ca: readFileSync(ctx.edgeCa), ALPNProtocols: ['postern/1'] });
    down.on('data', (d) => { captured.push(Buffer.from(d)); up.write(d); });
    up.on('data', (d) => { captured.push(Buffer.from(d)); down.write(d); });
    down.on('end', () => up.end()); up.on('end', () => down.end());
    down.on('error', () => up.destroy()); up.on('error', () => down.destroy());
  });
  await new Promise((r) => relay.listen(relayPort, '127.0.0.1', r));

  gw = await startGateway(ctx, t, {
    everything: `http://127.0.0.1:${mcpPort}`,
    up: `http://127.0.0.1:${upPort}`,
  }, { connections: 1, edgeAddrs: [`127.0.0.1:${relayPort}`] });
});

after(async () => {
  await stopAll();
  upstream?.close();
  relay?.close();
  ctx?.cleanup();
  if (pkiDir) rmrf(pkiDir);
});

const tunnelUrl = (route, p = '') => `https://${route}.${t.domain}:${ctx.edges[0].client}${p}`;

test('MCP SDK client lists and calls tools through edge -> gateway, same as direct', async () => {
  const viaTunnel = await connectMcp(tunnelUrl('everything', '/mcp'), { ca: t.ca });
  const direct = await connectMcp(`http://127.0.0.1:${mcpPort}/mcp`);
  try {
    const a = await viaTunnel.client.listTools();
    const b = await direct.client.listTools();
    assert.ok(a.tools.length >= 5, `expected server-everything's tools, got ${a.tools.length}`);
    assert.deepEqual(a.tools.map((x) => x.name).sort(), b.tools.map((x) => x.name).sort());
    const ea = await viaTunnel.client.callTool({ name: 'echo', arguments: { message: 'through the tunnel' } });
    const eb = await direct.client.callTool({ name: 'echo', arguments: { message: 'through the tunnel' } });
    assert.deepEqual(ea.content, eb.content);
    assert.match(ea.content[0].text, /through the tunnel/);
    const sa = await viaTunnel.client.callTool({ name: 'get-sum', arguments: { a: 40, b: 2 } });
    assert.match(sa.content[0].text, /42/);
  } finally {
    await viaTunnel.close();
    await direct.close();
  }
});

test('the inner TLS is verified against the customer CA and fails against another CA', async () => {
  const f = pinnedFetch({ ca: ctx.edgeCa });
  await assert.rejects(() => f(tunnelUrl('up', '/x')), /certificate|fetch failed/);
  await f.close();
});

test('SSE: the first event reaches the client in under 200 ms, before the second is sent', async () => {
  const f = pinnedFetch({ ca: t.ca });
  const t0 = performance.now();
  const res = await f(tunnelUrl('up', '/sse'));
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  let text = '', firstAt = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString();
    if (!firstAt && text.includes('data: first')) firstAt = performance.now() - t0;
  }
  const total = performance.now() - t0;
  assert.ok(firstAt > 0, 'first event never arrived');
  assert.ok(firstAt < 200, `first event took ${firstAt.toFixed(1)} ms`);
  assert.ok(total >= 1900, `stream ended after ${total.toFixed(0)} ms: the upstream's 2 s pause was not kept`);
  assert.match(text, /data: second/);
  await f.close();
});

test('the edge never sees plaintext: markers absent from the edge-side link bytes and edge logs', async () => {
  const f = pinnedFetch({ ca: t.ca });
  const res = await f(tunnelUrl('up', '/echo'), { method: 'POST', body: `payload ${REQ_MARK}` });
  assert.equal(res.status, 200);
  assert.match(await res.text(), new RegExp(RESP_MARK));
  await f.close();
  assert.match(upstreamSaw, new RegExp(REQ_MARK), 'the upstream must have received the marker');
  const link = Buffer.concat(captured);
  // The capture is the decrypted outer layer: the registration line and HTTP/2 frames must be there...
  assert.ok(link.includes('"connector_id"'), 'capture does not show the registration line: not the edge view');
  assert.ok(link.includes('PRI * HTTP/2.0'), 'capture does not show the HTTP/2 preface');
  assert.ok(link.length > 2000, `capture too small (${link.length} bytes)`);
  // ...but the inner TLS keeps the payload unreadable.
  assert.ok(!link.includes(REQ_MARK), 'request marker visible on the edge link');
  assert.ok(!link.includes(RESP_MARK), 'response marker visible on the edge link');
  const edgeLog = ctx.edges[0].proc.log;
  assert.ok(!edgeLog.includes(REQ_MARK) && !edgeLog.includes(RESP_MARK), 'marker in edge log');
  assert.ok(!edgeLog.includes(t.token), 'tunnel token in edge log');
  await waitUntil(async () => true, 10);
});

test('outer mTLS entry: curl as an HTTPS proxy client reaches the route, inner TLS verified against the customer CA', async () => {
  const e = ctx.edges[0];
  const host = `up.${t.domain}`;
  const viaMtls = (certArgs) => run('curl', ['-sS', '--max-time', '20', '--proxy', `https://connect.edge.test:${e.mtls}`,
    '--resolve', `connect.edge.test:${e.mtls}:127.0.0.1`, '--proxy-cacert', ctx.edgeCa, ...certArgs,
    '--cacert', t.ca, '--data', 'via-mtls', `https://${host}/echo`]);
  const ok = await viaMtls(['--proxy-cert', agent.cert, '--proxy-key', agent.key]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, `ok ${RESP_MARK}\n`);
  assert.match(upstreamSaw, /via-mtls/);
  const none = await viaMtls([]);
  assert.notEqual(none.code, 0, 'no client certificate must be refused');
  const wrong = await viaMtls(['--proxy-cert', foreign.cert, '--proxy-key', foreign.key]);
  assert.notEqual(wrong.code, 0, 'a client certificate from another CA must be refused');
  await ctx.edges[0].proc.waitFor(/entry=mtls reason="TLS handshake failed: peer did not return a certificate"/);
});

test('deleting a tunnel closes its live connector links and new registrations are refused', async () => {
  const t2 = await createTunnel(ctx, 'doomed');
  const gw2 = await startGateway(ctx, t2, { up: `http://127.0.0.1:${upPort}` }, { connections: 1, name: 'gateway-doomed' });
  const r = await postern(['tunnel', 'delete', 'doomed', '-c', ctx.edges[0].yaml]);
  assert.equal(r.code, 0, r.stderr);
  await ctx.edges[0].proc.waitFor(new RegExp(`msg="tunnel deleted: closing its connector links" tunnel=${t2.id}`), 25000);
  await waitUntil(async () => (await gw2.ready()) === 503, 10000, 100, 'the deleted tunnel\'s gateway to lose readiness');
  await gw2.proc.waitFor(/edge rejected the tunnel token/, 10000);
  await gw2.proc.kill();
});
