// Live reload of `postern edge` on SIGHUP (issue 11; docs/operations.md, "Reload"): one edge, one tunnel, a
// gateway with one connector link and an upstream on loopback. Each test rewrites the edge's file and sends
// SIGHUP to the same process: client caps apply to new clients at once (client_allowed_ips refusing and then
// admitting this host), a listener key is named in restart_needed_for= and keeps its running value, a new
// connector certificate is served to new connections while the registered link stays, a certificate whose key
// does not match is refused with an error naming the file (the running one still served), a deleted tunnel's
// link is closed at the reload rather than at the 15 s periodic check, and the edge exits 0 (ASan: no leak).
// The mTLS entry (second edge, test connectors that echo): a reload moves the per-tunnel binding (client_cn,
// client_ca_file) so the certificate bound before is refused after and the newly bound one relayed, a CONNECT
// accepted before the reload keeps flowing, and a reload that fails (a CA file gone, an entry naming no
// client) changes nothing.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { postern, freePort, stopAll, start, tmpdir, rmrf } from './lib/proc.mjs';
import { makeCA, makeLeaf } from './lib/certs.mjs';
import { connectTestConnector } from './lib/testconnector.mjs';
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

describe('mTLS entry across a reload', () => {
  let dir, edge2, yaml, ports, head, plat, team, tun = {}, certs = {}, conns = [];
  const edgeCa = () => path.join(dir, 'edge-pki', 'ca.pem');
  const target = (name) => `mcp.${tun[name].domain}:443`;
  const OK = /^HTTP\/1\.1 200 Connection established\r\n\r\n/;
  const REFUSED = /^HTTP\/1\.1 403 Forbidden\r\n[^]*client certificate is not allowed for this tunnel\n$/;

  // A CONNECT through the mTLS entry with who's certificate. Resolves {head, send(s) -> echo, close()} once
  // the edge answered; a refusal resolves with head only (the edge closes).
  const open = (who, name, timeoutMs = 8000) => new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: ports.mtls, servername: 'connect.edge.test', ca: readFileSync(edgeCa()),
      cert: readFileSync(certs[who].cert), key: readFileSync(certs[who].key) });
    let got = '', waiting = null;
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no answer within ${timeoutMs}ms; got: ${JSON.stringify(got)}`)); }, timeoutMs);
    const api = {
      send: (text) => new Promise((res, rej) => {
        const mark = got.length;
        const t2 = setTimeout(() => rej(new Error(`no echo of ${text}; got: ${JSON.stringify(got.slice(mark))}`)), timeoutMs);
        waiting = () => { if (got.slice(mark).includes(text)) { clearTimeout(t2); waiting = null; res(got.slice(mark)); } };
        s.write(text);
      }),
      close: () => s.destroy(),
    };
    s.on('secureConnect', () => s.write(`CONNECT ${target(name)} HTTP/1.1\r\nHost: ${target(name)}\r\n\r\n`));
    s.on('data', (d) => {
      got += d;
      if (waiting) waiting();
      else if (/\r\n\r\n/.test(got) && /^HTTP\/1\.1 200 /.test(got)) { clearTimeout(timer); resolve({ head: got, ...api }); }
    });
    s.on('error', (e) => { clearTimeout(timer); reject(e); });
    s.on('close', () => { clearTimeout(timer); resolve({ head: got, ...api }); });
  });
  const status = async (who, name) => {
    const c = await open(who, name);
    const h = c.head;
    c.close();
    return h;
  };
  const config = (binds) => [...head, 'mtls_tunnels:', ...binds].join('\n') + '\n';
  async function hup2(text, re) {
    writeFileSync(yaml, text);
    const mark = edge2.log.length;
    edge2.child.kill('SIGHUP');
    await edge2.waitFor(re, 10000, mark);
    return edge2.log.slice(mark);
  }

  before(async () => {
    dir = tmpdir('postern-edge-mtls-reload-');
    ports = { connector: await freePort(), client: await freePort(), metrics: await freePort(), mtls: await freePort() };
    assert.equal((await postern(['certs', 'init', '--domain', 'edge.test', '--out', path.join(dir, 'edge-pki')])).code, 0);
    plat = makeCA(dir, 'platform-ca');
    team = makeCA(dir, 'team-ca');
    certs.a = makeLeaf(dir, plat, 'agent-a', [], 'client');
    certs.b = makeLeaf(dir, plat, 'agent-b', [], 'client');
    certs.t = makeLeaf(dir, team, 'agent-t', [], 'client');
    const bundle = path.join(dir, 'client-cas.pem');
    writeFileSync(bundle, readFileSync(plat.cert, 'utf8') + readFileSync(team.cert, 'utf8'));
    yaml = path.join(dir, 'edge.yaml');
    head = [
      `state_dir: ${path.join(dir, 'state')}`,
      'domain: tunnel.test',
      `connector_listen: 127.0.0.1:${ports.connector}`,
      `connector_tls: { cert_file: ${path.join(dir, 'edge-pki', 'server.pem')}, key_file: ${path.join(dir, 'edge-pki', 'server.key')} }`,
      `client_listen: 127.0.0.1:${ports.client}`,
      `metrics_listen: 127.0.0.1:${ports.metrics}`,
      `mtls_listen: 127.0.0.1:${ports.mtls}`,
      `client_ca_file: ${bundle}`,
    ];
    writeFileSync(yaml, config(['  alpha: { client_cn: [agent-a] }', `  gamma: { client_ca_file: ${team.cert} }`]));
    for (const name of ['alpha', 'gamma']) {
      const c = await postern(['tunnel', 'create', name, '-c', yaml]);
      assert.equal(c.code, 0, c.stderr);
      tun[name] = JSON.parse(c.stdout);
    }
    edge2 = start(process.env.POSTERN_BIN, ['edge', '-c', yaml], { name: 'edge-mtls' });
    await edge2.waitFor(/msg="edge listening"/, 10000);
    for (const name of Object.keys(tun))
      conns.push(await connectTestConnector({ port: ports.connector, ca: edgeCa(), token: tun[name].token, connectorId: `c-${name}` }));
  });

  after(async () => {
    for (const c of conns) c.close();
    if (edge2) {
      const r = await edge2.kill('SIGTERM', 10000);
      assert.equal(r.code, 0, `edge exit: ${JSON.stringify(r)}\n${edge2.log.slice(-3000)}`);
      assert.doesNotMatch(edge2.log, /Sanitizer|runtime error/);
    }
    rmrf(dir);
  });

  test('a reload moves the bindings: the old certificate is refused after, the new one relayed, a live CONNECT flows on', async () => {
    assert.match(await status('a', 'alpha'), OK);
    assert.match(await status('b', 'alpha'), REFUSED);
    assert.match(await status('t', 'gamma'), OK);
    assert.match(await status('a', 'gamma'), REFUSED);
    const live = await open('a', 'alpha');
    assert.match(live.head, OK);
    assert.equal(await live.send('before'), 'before');

    // alpha now for agent-b only; gamma now for the platform CA instead of the team CA
    const log = await hup2(config(['  alpha: { client_cn: [agent-b] }', `  gamma: { client_ca_file: ${plat.cert} }`]),
      /msg="config reloaded" file=/);
    assert.match(log, /msg="edge config applied" .*mtls=on mtls_tunnels=2 /);
    assert.doesNotMatch(log, /restart_needed_for/);
    assert.match(await status('a', 'alpha'), REFUSED);
    assert.match(await status('b', 'alpha'), OK);
    assert.match(await status('t', 'gamma'), REFUSED);
    assert.match(await status('a', 'gamma'), OK);
    await edge2.waitFor(new RegExp(`reason="client certificate not allowed for this tunnel" tunnel=${tun.alpha.id} tunnel_name="alpha" cert_cn="agent-a"`));
    // accepted under the old binding: kept, and still relaying both ways
    assert.equal(await live.send('after'), 'after');
    live.close();
  });

  test('a reload that fails changes no binding', async () => {
    const good = readFileSync(yaml, 'utf8');
    const gone = path.join(dir, 'gone-ca.pem');
    let log = await hup2(config(['  alpha: { client_cn: [agent-a] }', `  gamma: { client_ca_file: ${gone} }`]),
      /msg="config reload failed, keeping the running config" err=".*gone-ca\.pem/);
    assert.doesNotMatch(log, /edge config applied/);
    log = await hup2(config(['  alpha: {}']), /msg="config reload failed, keeping the running config" err=".*alpha: names no client/);
    assert.doesNotMatch(log, /edge config applied/);
    // still the bindings of the last good reload, not those of the refused files
    assert.match(await status('a', 'alpha'), REFUSED);
    assert.match(await status('b', 'alpha'), OK);
    assert.match(await status('a', 'gamma'), OK);
    assert.match(await status('t', 'gamma'), REFUSED);
    writeFileSync(yaml, good);
  });
});
