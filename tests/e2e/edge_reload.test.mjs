// Live reload of `postern edge` on SIGHUP (issue 11; docs/operations.md, "Reload"): one edge, one tunnel, a
// gateway with one connector link and an upstream on loopback. Each test rewrites the edge's file and sends
// SIGHUP to the same process: client caps apply to new clients at once (client_allowed_ips refusing and then
// admitting this host), a listener key is named in restart_needed_for= and keeps its running value, a new
// connector certificate is served to new connections while the registered link stays, a certificate whose key
// does not match is refused with an error naming the file (the running one still served), a deleted tunnel's
// link is closed at the reload rather than at the 15 s periodic check, and the edge exits 0 (ASan: no leak).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { postern, freePort, stopAll } from './lib/proc.mjs';
import { pinnedFetch } from './lib/mcp.mjs';
import { makeEdges, createTunnel, startGateway } from './lib/tunnel.mjs';

let ctx, edge, t, gw, upstream, base;

async function status(route) {
  const f = pinnedFetch({ ca: t.ca });
  try {
    const r = await f(`https://${route}.${t.domain}:${edge.client}/x`);
    await r.text();
    return r.status;
  } catch {
    return 0; // refused by the edge: no TLS with the gateway
  } finally {
    await f.close();
  }
}

// SIGHUP with the file set to lines; resolves to the log written after it once re matched.
async function hup(lines, re, timeoutMs = 10000) {
  writeFileSync(edge.yaml, lines.join('\n') + '\n');
  const mark = edge.proc.log.length;
  edge.proc.child.kill('SIGHUP');
  await edge.proc.waitFor(re, timeoutMs, mark);
  return { mark, log: () => edge.proc.log.slice(mark) };
}

// The certificate the connector listener presents now (fingerprint).
function connectorCert() {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: edge.connector, rejectUnauthorized: false, ALPNProtocols: ['postern/1'], servername: 'connect.edge.test' });
    const timer = setTimeout(() => { s.destroy(); reject(new Error('connector TLS timeout')); }, 5000);
    s.once('secureConnect', () => { clearTimeout(timer); const c = s.getPeerX509Certificate(); s.destroy(); resolve(c.fingerprint256); });
    s.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
}
const fp = (file) => new X509Certificate(readFileSync(file)).fingerprint256;

before(async () => {
  upstream = http.createServer((_q, r) => r.end('up'));
  await new Promise((r) => upstream.listen(0, '127.0.0.1', r));
  ctx = await makeEdges(1);
  edge = ctx.edges[0];
  base = [...edge.lines];
  await edge.start();
  t = await createTunnel(ctx);
  gw = await startGateway(ctx, t, { a: `http://127.0.0.1:${upstream.address().port}` }, { connections: 1 });
  await edge.proc.waitFor(/msg="connector registered"/, 10000);
});

after(async () => {
  await stopAll();
  upstream.close();
  ctx.cleanup();
});

test('client caps apply to new clients at once; a listener change is named as needing a restart', async () => {
  assert.equal(await status('a'), 200);
  const pid = edge.proc.child.pid;
  const newPort = await freePort();
  // this host outside client_allowed_ips, a lower pending cap, and a new client_listen (restart only)
  const r = await hup([...base.map((l) => l.startsWith('client_listen:') ? `client_listen: 127.0.0.1:${newPort}` : l),
    'client_allowed_ips: [10.0.0.0/8]', 'client_pending_max: 77'],
  /restart_needed_for="client_listen"/);
  assert.match(r.log(), /msg="edge config applied" .*client_pending_max=77 /);
  assert.equal(edge.proc.child.pid, pid);
  assert.equal(await status('a'), 0); // the running listener, now refusing this address
  await edge.proc.waitFor(/msg="client rejected" entry=sni reason="address not in client_allowed_ips"/, 5000, r.mark);
  // back: admitted again, on the same listener, without the gateway re-registering
  const regs = (edge.proc.log.match(/msg="connector registered"/g) || []).length;
  const r2 = await hup(base, /msg="config reloaded" file=/);
  assert.match(r2.log(), /msg="edge config applied" .*client_pending_max=16384 /);
  assert.equal(await status('a'), 200);
  assert.equal((edge.proc.log.match(/msg="connector registered"/g) || []).length, regs);
  assert.doesNotMatch(r2.log(), /connector disconnected/);
});

test('a new connector certificate is served to new connections; a mismatched key is refused and the running one stays', async () => {
  const pki1 = path.join(ctx.dir, 'edge-pki');
  const pki2 = path.join(ctx.dir, 'edge-pki2');
  const r = await postern(['certs', 'init', '--domain', 'edge.test', '--out', pki2]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await connectorCert(), fp(path.join(pki1, 'server.pem')));
  const withTls = (cert, key) => base.map((l) => l.startsWith('connector_tls:') ? `connector_tls: { cert_file: ${cert}, key_file: ${key} }` : l);
  // cert of pki2 with the key of pki1: refused, naming the key file
  const bad = await hup(withTls(path.join(pki2, 'server.pem'), path.join(pki1, 'server.key')),
    /msg="config reload failed, keeping the running config" err=".*server\.key: cannot load private key: key values mismatch"/);
  assert.doesNotMatch(bad.log(), /edge config applied/);
  assert.equal(await connectorCert(), fp(path.join(pki1, 'server.pem')));
  // the pki2 pair: served from now on; the registered link (made with pki1) carries on
  await hup(withTls(path.join(pki2, 'server.pem'), path.join(pki2, 'server.key')), /msg="config reloaded" file=/);
  assert.equal(await connectorCert(), fp(path.join(pki2, 'server.pem')));
  assert.equal(await status('a'), 200);
  assert.equal(await gw.ready(), 200);
  await hup(base, /msg="config reloaded" file=/);
  assert.equal(await connectorCert(), fp(path.join(pki1, 'server.pem')));
});

test('a tunnel deleted before the reload loses its links at the reload', async () => {
  const r = await postern(['tunnel', 'delete', 'test', '-c', edge.yaml]);
  assert.equal(r.code, 0, r.stderr);
  const t0 = Date.now();
  await hup(base, new RegExp(`msg="tunnel deleted: closing its connector links" tunnel=${t.id}`), 5000);
  assert.ok(Date.now() - t0 < 5000);
});

test('after its reloads the edge drains and exits 0 (under ASan: no leak report)', async () => {
  await gw.proc.kill('SIGTERM', 15000);
  const ex = await edge.proc.kill('SIGTERM', 15000);
  assert.equal(ex.code, 0, edge.proc.log.slice(-3000));
  assert.doesNotMatch(edge.proc.log, /Sanitizer|runtime error/);
});
