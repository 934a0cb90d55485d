// The outer mTLS entry binds client certificates to tunnels (mtls_tunnels in the edge config): a certificate
// allowed for tunnel alpha reaches alpha and is refused on beta with a log line naming both; a tunnel without
// an entry is not reachable through the entry at all; host names with an empty label are refused at both
// entries (issue 11, hardening 4).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { start, postern, freePort, tmpdir, rmrf, stopAll } from './lib/proc.mjs';
import { makeCA, makeLeaf } from './lib/certs.mjs';
import { connectTestConnector } from './lib/testconnector.mjs';

const DOMAIN = 'tunnel.test';
const u16 = (v) => Buffer.from([v >> 8, v & 255]);

function clientHello(sni) {
  const name = Buffer.from(sni);
  const ext = Buffer.concat([u16(0), u16(name.length + 5), u16(name.length + 3), Buffer.from([0]), u16(name.length), name]);
  const body = Buffer.concat([u16(0x0303), Buffer.alloc(32, 7), Buffer.from([0]), u16(2), u16(0x1301), Buffer.from([1, 0]), u16(ext.length), ext]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 255]), body]);
  return Buffer.concat([Buffer.from([22, 3, 1]), u16(hs.length), hs]);
}

describe('mTLS entry: client certificates bound to tunnels', () => {
  let dir, edge, yaml, ports, tun = {}, certs = {}, conns = [];
  const edgeCa = () => path.join(dir, 'edge-pki', 'ca.pem');

  // CONNECT to target with cert, then 'ping' once answered 200; resolves with all the edge sent until close
  // (or 'ping' echoed back by the connector, then the test closes).
  const via = (who, target, timeoutMs = 8000) => new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: ports.mtls, servername: 'connect.edge.test', ca: readFileSync(edgeCa()),
      cert: readFileSync(certs[who].cert), key: readFileSync(certs[who].key) });
    let got = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no answer within ${timeoutMs}ms; got: ${JSON.stringify(got)}`)); }, timeoutMs);
    s.on('secureConnect', () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    s.on('data', (d) => {
      got += d;
      if (/^HTTP\/1\.1 200 /.test(got) && !got.includes('ping')) s.write('ping');
      if (got.endsWith('ping')) { clearTimeout(timer); s.destroy(); resolve(got); }
    });
    s.on('error', (e) => { clearTimeout(timer); reject(e); });
    s.on('close', () => { clearTimeout(timer); resolve(got); });
  });
  const host = (t, route = 'mcp') => `${route}.${tun[t].domain}:443`;

  before(async () => {
    dir = tmpdir('postern-edge-mtls-');
    ports = { connector: await freePort(), client: await freePort(), metrics: await freePort(), mtls: await freePort() };
    assert.equal((await postern(['certs', 'init', '--domain', 'edge.test', '--out', path.join(dir, 'edge-pki')])).code, 0);
    const plat = makeCA(dir, 'platform-ca'), team = makeCA(dir, 'team-ca');
    certs.a = makeLeaf(dir, plat, 'agent-a', [], 'client');
    certs.b = makeLeaf(dir, plat, 'agent-b', ['URI:spiffe://platform.test/agent-b'], 'client');
    certs.t = makeLeaf(dir, team, 'agent-t', [], 'client');
    const bundle = path.join(dir, 'client-cas.pem');
    writeFileSync(bundle, readFileSync(plat.cert, 'utf8') + readFileSync(team.cert, 'utf8'));
    yaml = path.join(dir, 'edge.yaml');
    writeFileSync(yaml, [
      `state_dir: ${path.join(dir, 'state')}`,
      `domain: ${DOMAIN}`,
      `connector_listen: 127.0.0.1:${ports.connector}`,
      `connector_tls: { cert_file: ${path.join(dir, 'edge-pki', 'server.pem')}, key_file: ${path.join(dir, 'edge-pki', 'server.key')} }`,
      `client_listen: 127.0.0.1:${ports.client}`,
      `metrics_listen: 127.0.0.1:${ports.metrics}`,
      `mtls_listen: 127.0.0.1:${ports.mtls}`,
      `client_ca_file: ${bundle}`,
      'mtls_tunnels:',
      '  alpha: { client_cn: [agent-a] }',
      '  beta: { client_uri: ["spiffe://platform.test/agent-b"] }',
      `  gamma: { client_ca_file: ${team.cert} }`,
    ].join('\n') + '\n');
    for (const name of ['alpha', 'beta', 'gamma', 'delta']) {
      const c = await postern(['tunnel', 'create', name, '-c', yaml]);
      assert.equal(c.code, 0, c.stderr);
      tun[name] = JSON.parse(c.stdout);
    }
    edge = start(process.env.POSTERN_BIN, ['edge', '-c', yaml], { name: 'edge' });
    await edge.waitFor(/msg="edge listening"/, 10000);
    for (const name of Object.keys(tun))
      conns.push(await connectTestConnector({ port: ports.connector, ca: edgeCa(), token: tun[name].token, connectorId: `c-${name}` }));
  });

  after(async () => {
    for (const c of conns) c.close();
    if (edge) {
      const r = await edge.kill('SIGTERM', 10000);
      assert.equal(r.code, 0, `edge exit: ${JSON.stringify(r)}\n${edge.log}`);
    }
    await stopAll();
    rmrf(dir);
  });

  it('relays a certificate to its own tunnel (by CN, URI SAN or CA) and refuses it on another', async () => {
    const ok = /^HTTP\/1\.1 200 Connection established\r\n\r\nping$/;
    const refused = /^HTTP\/1\.1 403 Forbidden\r\n[^]*\r\n\r\nclient certificate is not allowed for this tunnel\n$/;
    assert.match(await via('a', host('alpha')), ok);
    assert.match(await via('b', host('beta')), ok);
    assert.match(await via('t', host('gamma')), ok);
    assert.match(await via('a', host('beta')), refused);
    assert.match(await via('a', host('gamma')), refused); // signed by client_ca_file, not by gamma's CA
    assert.match(await via('b', host('alpha')), refused);
    assert.match(await via('t', host('alpha')), refused);
    await edge.waitFor(new RegExp(`level=warn comp=edge msg="client rejected" entry=mtls reason="client certificate not allowed for this tunnel" tunnel=${tun.beta.id} tunnel_name="beta" cert_cn="agent-a" host="mcp\\.${tun.beta.id}\\.`));
    await edge.waitFor(new RegExp(`reason="client certificate not allowed for this tunnel" tunnel=${tun.alpha.id} tunnel_name="alpha" cert_cn="agent-t"`));
    // Still served after the refusals.
    assert.match(await via('a', host('alpha', 'api')), ok);
  });

  it('refuses every certificate on a tunnel without an mtls_tunnels entry', async () => {
    for (const who of ['a', 'b', 't'])
      assert.match(await via(who, host('delta')), /^HTTP\/1\.1 403 Forbidden\r\n[^]*this tunnel is not served through the mTLS entry\n$/);
    await edge.waitFor(new RegExp(`reason="tunnel has no mtls_tunnels entry" tunnel=${tun.delta.id} tunnel_name="delta"`));
  });

  it('refuses host names with an empty label at the CONNECT and SNI entries', async () => {
    for (const target of [`mcp..${tun.alpha.domain}:443`, `a..b.${tun.alpha.domain}:443`])
      assert.match(await via('a', target), /^HTTP\/1\.1 400 Bad Request\r\n[^]*CONNECT host must be a DNS name/, target);
    const got = await new Promise((resolve) => {
      const s = net.connect(ports.client, '127.0.0.1', () => s.write(clientHello(`mcp..${tun.alpha.domain}`)));
      let b = Buffer.alloc(0);
      s.on('data', (d) => { b = Buffer.concat([b, d]); });
      s.on('error', () => {});
      s.on('close', () => resolve(b));
    });
    assert.equal(got.length, 0); // closed, nothing relayed
    await edge.waitFor(/msg="client rejected" entry=sni reason="not a TLS ClientHello"/);
    assert.doesNotMatch(edge.log, /msg="client relayed" entry=\S+ tunnel=\S+ host="[^"]*\.\./);
    const m = await (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text();
    // Only the two relays of the first test reached alpha.
    assert.match(m, new RegExp(`postern_edge_streams_total\\{tunnel="${tun.alpha.id}"\\} 2\n`));
  });

  it('rejects bad mtls_tunnels with the line and what to do', async () => {
    const base = readFileSync(yaml, 'utf8').replace(/mtls_tunnels:[^]*$/, '');
    const cases = [
      ['mtls_tunnels:\n  alpha: {}\n', /alpha: names no client: give client_ca_file, client_cn or client_uri/],
      ['mtls_tunnels:\n  alpha: { client_cns: [x] }\n', /client_cns/],
      ['mtls_tunnels:\n  "bad name": { client_cn: [x] }\n', /'bad name' is not a tunnel name/],
      ['mtls_tunnels:\n  alpha: { client_cn: [""] }\n', /client_cn: an empty name matches no certificate/],
    ];
    for (const [i, [extra, re]] of cases.entries()) {
      const f = path.join(dir, `bad${i}.yaml`);
      writeFileSync(f, base + extra);
      const r = await postern(['edge', '-c', f], { timeoutMs: 10000 });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, re);
    }
    // mtls_listen alone is valid but serves no tunnel: the edge says so at start.
    const lone = path.join(dir, 'lone.yaml');
    const lp = { connector: await freePort(), client: await freePort(), metrics: await freePort(), mtls: await freePort() };
    writeFileSync(lone, base.replace(/connector_listen: .*/, `connector_listen: 127.0.0.1:${lp.connector}`)
      .replace(/client_listen: .*/, `client_listen: 127.0.0.1:${lp.client}`)
      .replace(/metrics_listen: .*/, `metrics_listen: 127.0.0.1:${lp.metrics}`)
      .replace(/mtls_listen: .*/, `mtls_listen: 127.0.0.1:${lp.mtls}`));
    const e2 = start(process.env.POSTERN_BIN, ['edge', '-c', lone], { name: 'edge-lone' });
    await e2.waitFor(/level=warn comp=edge msg="mtls_listen without mtls_tunnels: every mTLS client will be refused"/);
    // No wait for "edge listening": a SIGTERM while the daemon starts must drain it too (exit 0).
    const ex = await e2.kill("SIGTERM", 10000); assert.equal(ex.code, 0, JSON.stringify(ex) + e2.log);
    const f = path.join(dir, 'bad-nomtls.yaml');
    writeFileSync(f, base.replace(/mtls_listen: .*\n/, '').replace(/client_ca_file: .*\n/, '') + 'mtls_tunnels:\n  alpha: { client_cn: [x] }\n');
    const r = await postern(['edge', '-c', f], { timeoutMs: 10000 });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /mtls_tunnels: needs mtls_listen/);
  });
});
