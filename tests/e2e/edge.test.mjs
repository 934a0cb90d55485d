// postern edge on its own: tunnel CLI, config errors, the registration protocol (driven by a connector
// written in JS from docs/internals.md), SNI relay with half-closes, the outer mTLS entry, bad input on
// every listener while others keep being served, metrics, and what never reaches the logs.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import net from 'node:net';
import http from 'node:http';
import { constants as http2constants } from 'node:http2';
import path from 'node:path';
import { execFile } from 'node:child_process';
import tls from 'node:tls';
import { start, postern, run, freePort, tmpdir, rmrf, waitUntil, sleep, stopAll } from './lib/proc.mjs';
import { makeCA, makeLeaf } from './lib/certs.mjs';
import { connectTestConnector, tlsTerminatingStream, echoStream } from './lib/testconnector.mjs';

const DOMAIN = 'tunnel.test';
const MARK_REQ = 'REQ-MARKER-7f3a9c1e';
const MARK_RESP = 'RESP-MARKER-0b4d2e88';

// A ClientHello record (TLS 1.2 framing) naming sni; pad adds a padding extension of that many bytes.
function clientHello(sni, pad = 0) {
  const name = Buffer.from(sni);
  const sniExt = Buffer.concat([u16(0), u16(name.length + 5), u16(name.length + 3), Buffer.from([0]), u16(name.length), name]);
  const padExt = pad ? Buffer.concat([u16(21), u16(pad), Buffer.alloc(pad)]) : Buffer.alloc(0);
  const exts = Buffer.concat([sniExt, padExt]);
  const body = Buffer.concat([u16(0x0303), Buffer.alloc(32, 7), Buffer.from([0]), u16(2), u16(0x1301), Buffer.from([1, 0]), u16(exts.length), exts]);
  const hs = Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 255, body.length & 255]), body]);
  const recs = [];
  for (let o = 0; o < hs.length; o += 16384) {
    const part = hs.subarray(o, o + 16384);
    recs.push(Buffer.from([22, 3, 1]), u16(part.length), part);
  }
  return Buffer.concat(recs);
}
function u16(v) { return Buffer.from([v >> 8, v & 255]); }

// Connects, writes data (optional), resolves {data, closedMs} when the edge closes; rejects on timeout.
function rawExchange(port, data, { timeoutMs = 15000, end = false } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const s = net.connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`edge did not close within ${timeoutMs}ms`)); }, timeoutMs);
    s.on('connect', () => { if (data) s.write(data); if (end) s.end(); });
    s.on('data', (d) => { got = Buffer.concat([got, d]); });
    s.on('error', () => {});
    s.on('close', () => { clearTimeout(timer); resolve({ data: got, closedMs: Date.now() - t0 }); });
  });
}

function curl(args, timeoutMs = 15000) {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', String(Math.ceil(timeoutMs / 1000)), ...args], { timeout: timeoutMs + 2000 },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
}

async function metrics(port) {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

describe('postern tunnel CLI', () => {
  let dir, yaml;
  before(() => {
    dir = tmpdir('postern-edge-cli-');
    yaml = path.join(dir, 'edge.yaml');
    writeFileSync(yaml, [
      `state_dir: ${path.join(dir, 'state')}`,
      `domain: ${DOMAIN}`,
      'connector_tls: { cert_file: unused.pem, key_file: unused.key }',
    ].join('\n') + '\n');
  });
  after(() => rmrf(dir));

  it('creates, rotates, lists and deletes tunnels, with JSON on stdout and clear errors', async () => {
    const c = await postern(['tunnel', 'create', 'prod-mcp', '-c', yaml]);
    assert.equal(c.code, 0, c.stderr);
    const t = JSON.parse(c.stdout);
    assert.deepEqual(Object.keys(t), ['id', 'name', 'domain', 'token']);
    assert.match(t.id, /^[a-z][a-z2-7]{15}$/);
    assert.equal(t.name, 'prod-mcp');
    assert.equal(t.domain, `${t.id}.${DOMAIN}`);
    assert.match(t.token, new RegExp(`^pt1_${t.id}_[0-9a-f]{64}$`));
    assert.equal(c.stderr, '');

    const dup = await postern(['tunnel', 'create', 'prod-mcp', '-c', yaml]);
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /a tunnel named 'prod-mcp' already exists/);
    assert.equal(dup.stdout, '');

    const r = await postern(['tunnel', 'rotate', 'prod-mcp', '-c', yaml, '--grace', '2m']);
    assert.equal(r.code, 0, r.stderr);
    const rt = JSON.parse(r.stdout);
    assert.equal(rt.id, t.id);
    assert.equal(rt.domain, t.domain);
    assert.notEqual(rt.token, t.token);
    assert.equal(rt.previous_tokens_expire_in_ms, 120000);
    assert.doesNotMatch(r.stderr, /pt1_/);

    const bad = await postern(['tunnel', 'rotate', 'prod-mcp', '-c', yaml, '--grace', 'soon']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--grace: 'soon' is not a duration/);

    const l = await postern(['tunnel', 'list', '-c', yaml, '--output', 'json']);
    assert.equal(l.code, 0);
    const list = JSON.parse(l.stdout);
    assert.equal(list.length, 1);
    assert.equal(list[0].id, t.id);
    assert.equal(list[0].tokens, 2);
    assert.doesNotMatch(l.stdout, /pt1_/);

    const d = await postern(['tunnel', 'delete', 'prod-mcp', '-c', yaml]);
    assert.equal(d.code, 0);
    assert.deepEqual(JSON.parse(d.stdout), { id: t.id, name: 'prod-mcp', domain: t.domain, deleted: true });
    const d2 = await postern(['tunnel', 'delete', 'prod-mcp', '-c', yaml]);
    assert.equal(d2.code, 1);
    assert.match(d2.stderr, /no tunnel named 'prod-mcp'/);
    assert.deepEqual(JSON.parse((await postern(['tunnel', 'list', '-c', yaml, '--output', 'json'])).stdout), []);

    // The name can be used again, but the id and domain are new.
    const again = JSON.parse((await postern(['tunnel', 'create', 'prod-mcp', '-c', yaml])).stdout);
    assert.notEqual(again.id, t.id);
    assert.notEqual(again.domain, t.domain);

    const inval = await postern(['tunnel', 'create', 'no spaces', '-c', yaml]);
    assert.equal(inval.code, 1);
    assert.match(inval.stderr, /not a valid tunnel name/);
    const noname = await postern(['tunnel', 'create', '-c', yaml]);
    assert.equal(noname.code, 2);
    assert.match(noname.stderr, /NAME is required/);
    const help = await postern(['tunnel', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /postern tunnel rotate NAME -c edge.yaml \[--grace 10m\]/);
  });

  it('rejects bad configs naming file, line and key', async () => {
    const cases = [
      [`state_dir: ${dir}/s\ndomain: ${DOMAIN}\nconector_tls: {}\n`, /bad1\.yaml:3: unknown key 'conector_tls'/],
      [`state_dir: ${dir}/s\ndomain: ${DOMAIN}\nconnector_tls: { cert_file: a, key_file: b }\nclient_listen: localhost:x\n`,
        /bad2\.yaml:4: client_listen: 'localhost:x' is not a listen address/],
      [`domain: ${DOMAIN}\nconnector_tls: { cert_file: a, key_file: b }\n`, /bad3\.yaml: state_dir is required/],
      [`state_dir: ${dir}/s\ndomain: ${DOMAIN}\nconnector_tls: { cert_file: a, key_file: b }\nclient_allowed_ips: [10.0.0.0/8, banana]\n`,
        /bad4\.yaml:4: client_allowed_ips: 'banana' is not a CIDR/],
      [`state_dir: ${dir}/s\ndomain: "bad domain"\nconnector_tls: { cert_file: a, key_file: b }\n`, /bad5\.yaml:2: domain: 'bad domain' is not a DNS domain/],
      [`state_dir: ${dir}/s\ndomain: ${DOMAIN}\nconnector_tls: { cert_file: a }\n`, /bad6\.yaml:3: connector_tls: key_file is required/],
      [`state_dir: ${dir}/s\ndomain: ${DOMAIN}\nconnector_tls: { cert_file: a, key_file: b }\nmtls_listen: 127.0.0.1:0\n`,
        /bad7\.yaml:4: mtls_listen: needs client_ca_file/],
      [`state_dir: ${dir}/s\ndomain: ${DOMAIN}\nconnector_tls: { cert_file: a, key_file: b }\nlog_level: loud\n`, /bad8\.yaml:4: log_level/],
      [`state_dir: ${dir}/s\ndomain: ${DOMAIN}\nconnector_tls: { cert_file: a, key_file: b }\nclient_hello_budget: lots\n`,
        /bad9\.yaml:4: client_hello_budget: 'lots' is not a size/],
      [`state_dir: ${dir}/s\ndomain: ${DOMAIN}\nconnector_tls: { cert_file: a, key_file: b }\nclient_hello_budget: 64K\n`,
        /bad10\.yaml:4: client_hello_budget: must be between 128K and 64G/],
      [`state_dir: ${dir}/s\ndomain: ${DOMAIN}\nconnector_tls: { cert_file: a, key_file: b }\n\nclient_pending_max: 0\n`,
        /bad11\.yaml:5: client_pending_max: 0 is out of range \[1, 100000\]/],
    ];
    for (const [i, [text, re]] of cases.entries()) {
      const f = path.join(dir, `bad${i + 1}.yaml`);
      writeFileSync(f, text);
      for (const args of [['edge', '-c', f], ['tunnel', 'list', '-c', f]]) {
        const r = await postern(args, { timeoutMs: 10000 });
        assert.equal(r.code, 1, `${args[0]} ${f}: ${r.stderr}`);
        assert.match(r.stderr, re, `${args[0]} ${f}`);
      }
    }
    const missing = await postern(['edge', '-c', path.join(dir, 'nope.yaml')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nope\.yaml: No such file or directory/);
    const help = await postern(['edge', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /usage: postern edge -c edge.yaml/);
  });
});

describe('postern edge', () => {
  let dir, edge, yaml, ports, tun, cust, plat, other, agent, evil, httpServer, conns = [];
  const edgeCa = () => path.join(dir, 'edge-pki', 'ca.pem');
  const tunnelHost = (route = 'mcp') => `${route}.${tun.domain}`;

  // A connector serving the tunnel's routes with the customer certificate (TLS terminated in the test).
  const connect = (opts = {}) => connectTestConnector({
    port: ports.connector, ca: edgeCa(), token: tun.token,
    onStream: tlsTerminatingStream({ cert: cust.cert, key: cust.key }, (sock) => httpServer.emit('connection', sock)),
    ...opts,
  }).then((c) => { conns.push(c); return c; });

  const viaSni = (route = 'mcp', extra = []) => curl(['--cacert', cust.ca, '--resolve', `${tunnelHost(route)}:${ports.client}:127.0.0.1`,
    ...extra, `https://${tunnelHost(route)}:${ports.client}/hello`]);
  const viaMtls = (target, certArgs, extra = []) => curl(['--proxy', `https://connect.edge.test:${ports.mtls}`,
    '--resolve', `connect.edge.test:${ports.mtls}:127.0.0.1`, '--proxy-cacert', edgeCa(), ...certArgs,
    '--cacert', cust.ca, ...extra, target]);

  // Sends head over TLS with the agent certificate to the mTLS entry; resolves with everything the edge
  // answered once it closes (or after timeoutMs).
  const mtlsRaw = (head, timeoutMs = 8000) => new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: ports.mtls, servername: 'connect.edge.test', ca: readFileSync(edgeCa()),
      cert: readFileSync(agent.cert), key: readFileSync(agent.key) });
    let got = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no close within ${timeoutMs}ms; got: ${JSON.stringify(got)}`)); }, timeoutMs);
    s.on('secureConnect', () => s.write(head));
    s.on('data', (d) => { got += d; });
    s.on('error', (e) => { clearTimeout(timer); reject(e); });
    s.on('close', () => { clearTimeout(timer); resolve(got); });
  });

  before(async () => {
    dir = tmpdir('postern-edge-');
    ports = { connector: await freePort(), client: await freePort(), metrics: await freePort(), mtls: await freePort() };
    const r = await postern(['certs', 'init', '--domain', 'edge.test', '--out', path.join(dir, 'edge-pki')]);
    assert.equal(r.code, 0, r.stderr);
    plat = makeCA(dir, 'platform-ca');
    other = makeCA(dir, 'other-ca');
    agent = makeLeaf(dir, plat, 'agent', [], 'client');
    evil = makeLeaf(dir, other, 'evil', [], 'client');
    yaml = path.join(dir, 'edge.yaml');
    writeFileSync(yaml, [
      `state_dir: ${path.join(dir, 'state')}`,
      `domain: ${DOMAIN}`,
      'edge_id: edge-a',
      `connector_listen: 127.0.0.1:${ports.connector}`,
      `connector_tls: { cert_file: ${path.join(dir, 'edge-pki', 'server.pem')}, key_file: ${path.join(dir, 'edge-pki', 'server.key')} }`,
      `client_listen: 127.0.0.1:${ports.client}`,
      `metrics_listen: 127.0.0.1:${ports.metrics}`,
      `mtls_listen: 127.0.0.1:${ports.mtls}`,
      `client_ca_file: ${plat.cert}`,
      'mtls_tunnels: { test: { client_cn: [agent] } }', // the tunnel created below
    ].join('\n') + '\n');
    const c = await postern(['tunnel', 'create', 'test', '-c', yaml]);
    assert.equal(c.code, 0, c.stderr);
    tun = JSON.parse(c.stdout);
    const pki = path.join(dir, 'cust-pki');
    assert.equal((await postern(['certs', 'init', '--domain', tun.domain, '--out', pki])).code, 0);
    cust = { ca: path.join(pki, 'ca.pem'), cert: path.join(pki, 'server.pem'), key: path.join(pki, 'server.key') };
    httpServer = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => res.end(`route ${req.headers.host} path ${req.url} got ${body.length} ${body.includes(MARK_REQ) ? MARK_RESP : ''}\n`));
    });
    edge = start(process.env.POSTERN_BIN, ['edge', '-c', yaml], { name: 'edge' });
    await edge.waitFor(/msg="edge listening"/, 10000);
  });

  after(async () => {
    for (const c of conns) c.close();
    if (edge) {
      const r = await edge.kill('SIGTERM', 10000);
      assert.equal(r.code, 0, `edge exit: ${JSON.stringify(r)}\n${edge.log}`);
      assert.match(edge.log, /msg="edge stopped"/);
    }
    await stopAll();
    rmrf(dir);
  });

  it('refuses a wrong token with a JSON error and a log line without the token', async () => {
    const bad = tun.token.slice(0, -4) + (tun.token.endsWith('0000') ? '1111' : '0000');
    await assert.rejects(connect({ token: bad }), (e) => {
      assert.deepEqual(e.reply, { ok: false, error: 'invalid or expired token' });
      return true;
    });
    await assert.rejects(connect({ token: 'nonsense' }), (e) => e.reply && e.reply.ok === false);
    await assert.rejects(connect({ line: '{"v":1,\n' }), (e) => e.reply && e.reply.error === 'malformed registration');
    await edge.waitFor(new RegExp(`msg="connector rejected" reason="invalid or expired token" tunnel=${tun.id}`));
    assert.ok(!edge.log.includes(bad.slice(-64)) && !edge.log.includes(tun.token.slice(-64)), 'token in the log');
  });

  it('refuses a connector without TLS 1.3 or with another ALPN', async () => {
    await assert.rejects(connectTestConnector({ port: ports.connector, ca: edgeCa(), token: tun.token, minVersion: 'TLSv1.2',
      timeoutMs: 5000, alpn: ['h2'] }));
    const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${ports.connector}`, '-tls1_2', '-servername', 'connect.edge.test'],
      { input: '', timeoutMs: 10000 });
    assert.match(r.stdout + r.stderr, /alert protocol version|no protocols available|wrong version/i);
  });

  it('registers a connector and relays an SNI client end to end without seeing plaintext', async () => {
    const c = await connect({ connectorId: 'c-1', slot: 0 });
    assert.deepEqual(c.reply, { ok: true, tunnel_id: tun.id, domain: tun.domain, edge_id: 'edge-a' });
    const r = await viaSni('mcp', ['--data-binary', `payload ${MARK_REQ}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `route ${tunnelHost()}:${ports.client} path /hello got ${`payload ${MARK_REQ}`.length} ${MARK_RESP}\n`);
    await edge.waitFor(new RegExp(`msg="client relayed" entry=sni tunnel=${tun.id} host="${tunnelHost()}"`));
    assert.ok(!edge.log.includes(MARK_REQ) && !edge.log.includes(MARK_RESP), 'payload in the edge log');
    const m = await metrics(ports.metrics);
    assert.match(m, new RegExp(`postern_edge_connector_connections\\{tunnel="${tun.id}"\\} 1`));
    assert.match(m, new RegExp(`postern_edge_streams_total\\{tunnel="${tun.id}"\\} [1-9]`));
    assert.match(m, new RegExp(`postern_edge_bytes_total\\{tunnel="${tun.id}",direction="to_client"\\} [1-9]`));
    assert.match(m, /postern_edge_registrations_total\{result="rejected"\} [1-9]/);
    assert.equal(await (await fetch(`http://127.0.0.1:${ports.metrics}/healthz`)).text(), 'ok\n');
  });

  it('carries half-closes both ways and the stream metadata', async () => {
    let seenHeaders;
    const c = await connect({
      connectorId: 'c-echo', slot: 0, onStream: (s, h) => { seenHeaders = h; echoStream(s, h); },
    });
    // Two connectors: pick the one with fewer streams; close the TLS one so the echo one serves.
    for (const o of conns) if (o !== c) o.close();
    await sleep(200);
    const hello = clientHello(`raw.${tun.domain}`);
    const { data } = await rawExchange(ports.client, Buffer.concat([hello, Buffer.from('after-hello')]), { end: true });
    assert.deepEqual(data, Buffer.concat([hello, Buffer.from('after-hello')]), 'echo of everything, then EOF');
    assert.equal(seenHeaders[':method'], 'CONNECT');
    assert.equal(seenHeaders[':authority'], `raw.${tun.domain}:443`);
    assert.equal(seenHeaders['postern-entry'], 'sni');
    assert.match(seenHeaders['postern-client-addr'], /^127\.0\.0\.1:\d+$/);
    c.close();
  });

  it('answers an unknown tunnel or a tunnel without connection with unrecognized_name, logged once', async () => {
    for (const c of conns) c.close();
    await waitUntil(async () => /postern_edge_connector_connections\{[^}]*\} 0/.test(await metrics(ports.metrics)), 5000, 50, 'no connections');
    const from = edge.log.length;
    for (const host of [`mcp.nosuchtunnelxxxx.${DOMAIN}`, tunnelHost('mcp')]) {
      const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${ports.client}`, '-servername', host], { input: '', timeoutMs: 10000 });
      assert.match(r.stdout + r.stderr, /unrecognized name/i, r.stderr);
    }
    await edge.waitFor(/reason="tunnel has no live connection"/, 5000, from);
    const lines = edge.log.slice(from).split('\n').filter((l) => l.includes('nosuchtunnelxxxx'));
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0], /msg="client rejected" entry=sni reason="unknown tunnel"/);
  });

  it('closes garbage, oversized and silent clients on every listener while serving others', async () => {
    await connect({ connectorId: 'c-2', slot: 0 });
    const from = edge.log.length;
    const t0 = Date.now();
    // Silent clients on all three listeners, in parallel with everything else.
    const silent = [ports.client, ports.connector, ports.mtls].map((p) => rawExchange(p, null, { timeoutMs: 20000 }));
    const garbage = await Promise.all([ports.client, ports.connector, ports.mtls].map((p) =>
      rawExchange(p, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(10)))));
    for (const g of garbage) assert.ok(g.closedMs < 5000, `garbage closed after ${g.closedMs}ms`);
    assert.equal(garbage[0].data.length, 0, 'no answer to garbage on the SNI listener');
    const big = await rawExchange(ports.client, clientHello(`mcp.${tun.domain}`, 17000));
    assert.ok(big.closedMs < 5000);
    // A truncated hello followed by EOF, and bogus lengths.
    await rawExchange(ports.client, clientHello(`mcp.${tun.domain}`).subarray(0, 30), { end: true });
    await rawExchange(ports.client, Buffer.from([22, 3, 1, 0, 5, 1, 0xff, 0xff, 0xff, 0]));
    // Meanwhile clients keep being served.
    for (let i = 0; i < 3; i++) {
      const r = await viaSni();
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^route /);
    }
    const s = await Promise.all(silent);
    for (const x of s) {
      assert.ok(x.closedMs >= 9000 && x.closedMs < 16000, `silent client closed after ${x.closedMs}ms`);
    }
    assert.ok(Date.now() - t0 < 20000);
    const log = edge.log.slice(from);
    assert.match(log, /entry=sni reason="not a TLS ClientHello"/);
    assert.match(log, /entry=sni reason="ClientHello too large"/);
    assert.match(log, /entry=sni reason="closed before a complete ClientHello"/);
    assert.match(log, /entry=sni reason="nothing usable within 10s"/);
    assert.match(log, /msg="connector rejected" reason="TLS handshake failed/);
    assert.match(log, /entry=mtls reason="TLS handshake failed/);
    const m = await metrics(ports.metrics);
    assert.match(m, /postern_edge_client_rejects_total\{entry="sni",reason="malformed"\} [1-9]/);
    assert.match(m, /postern_edge_client_rejects_total\{entry="sni",reason="too_large"\} [1-9]/);
    assert.match(m, /postern_edge_client_rejects_total\{entry="sni",reason="timeout"\} [1-9]/);
  });

  it('serves the outer mTLS entry as an HTTPS proxy and refuses missing or foreign client certificates', async () => {
    if (!conns.some((c) => !c.socket.destroyed)) await connect({ connectorId: 'c-3', slot: 0 });
    const good = ['--proxy-cert', agent.cert, '--proxy-key', agent.key];
    const ok = await viaMtls(`https://${tunnelHost('api')}/via-mtls`, good);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, `route ${tunnelHost('api')} path /via-mtls got 0 \n`);
    await edge.waitFor(new RegExp(`msg="client relayed" entry=mtls tunnel=${tun.id} host="${tunnelHost('api')}"`));

    const nocert = await viaMtls(`https://${tunnelHost()}/`, []);
    assert.notEqual(nocert.code, 0);
    assert.match(nocert.stderr, /certificate required|alert|handshake/i);
    const foreign = await viaMtls(`https://${tunnelHost()}/`, ['--proxy-cert', evil.cert, '--proxy-key', evil.key]);
    assert.notEqual(foreign.code, 0);
    assert.match(foreign.stderr, /unknown ca|alert|certificate/i);
    await edge.waitFor(/entry=mtls reason="TLS handshake failed: peer did not return a certificate"/);
    await edge.waitFor(/entry=mtls reason="TLS handshake failed: certificate verify failed/);

    const unknown = await viaMtls(`https://mcp.nosuchtunnelxxxx.${DOMAIN}/`, good, ['-v']);
    assert.match(unknown.stderr, /CONNECT tunnel failed, response 404/);
    const foreignHost = await viaMtls('https://example.com/', good, ['-v']);
    assert.match(foreignHost.stderr, /CONNECT tunnel failed, response 403/);
    const port = await viaMtls(`https://${tunnelHost()}:8443/`, good, ['-v']);
    assert.match(port.stderr, /CONNECT tunnel failed, response 403/);
    // A plain GET to the mTLS entry (not CONNECT).
    const get = await curl(['--cacert', edgeCa(), '--cert', agent.cert, '--key', agent.key, '--resolve',
      `connect.edge.test:${ports.mtls}:127.0.0.1`, `https://connect.edge.test:${ports.mtls}/`, '-w', '%{http_code}']);
    assert.match(get.stdout, /only CONNECT[^]*405$/);
  });

  it('answers a CONNECT target that is not a DNS name or has a malformed port with 400 and a reason', async () => {
    if (!conns.some((c) => !c.socket.destroyed)) await connect({ connectorId: 'c-4', slot: 0 });
    const from = edge.log.length;
    const req = (target) => `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`;
    // Hosts that end in the tunnel's own domain, so the tunnel is found: only the host rule refuses them.
    for (const target of [`bad!route.${tun.domain}:443`, `user@mcp.${tun.domain}:443`, `mcp%2e.${tun.domain}:443`,
      `mcp.${tun.domain}.:443`, '[::1]:443', `mcp..${tun.domain}:443`, `.mcp.${tun.domain}:443`]) {
      const r = await mtlsRaw(req(target));
      assert.match(r, /^HTTP\/1\.1 400 Bad Request\r\n/, `${target}: ${r}`);
      assert.match(r, /\r\n\r\nCONNECT host must be a DNS name \(letters, digits, '-', '_', '\.'\)\n$/, target);
    }
    for (const target of [`mcp.${tun.domain}:4x3`, `mcp.${tun.domain}:+443`, `mcp.${tun.domain}:0443x`, `mcp.${tun.domain}:99999`,
      `mcp.${tun.domain}:`, `mcp.${tun.domain}:000000443`]) {
      const r = await mtlsRaw(req(target));
      assert.match(r, /^HTTP\/1\.1 400 Bad Request\r\n[^]*\r\n\r\nCONNECT port must be a number \(443\)\n$/, `${target}: ${r}`);
    }
    // What was answered before stays: a valid name outside the domain or another port is 403, an unknown tunnel
    // 404, another method 405, and a good target is relayed.
    assert.match(await mtlsRaw(req('example.com:443')), /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(await mtlsRaw(req(`mcp.${tun.domain}:8443`)), /^HTTP\/1\.1 403 Forbidden\r\n[^]*only port 443 is relayed/);
    assert.match(await mtlsRaw(req(`mcp.nosuchtunnelxxxx.${DOMAIN}:443`)), /^HTTP\/1\.1 404 Not Found\r\n/);
    assert.match(await mtlsRaw(`GET / HTTP/1.1\r\nHost: x\r\n\r\n`), /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
    // The head itself: malformed 400, over 8 KiB 431, a target over 511 bytes 400; Host is not required.
    assert.match(await mtlsRaw('CONNECT\x01 x HTTP/1.1\r\n\r\n'), /^HTTP\/1\.1 400 Bad Request\r\n[^]*malformed HTTP request/);
    assert.match(await mtlsRaw(`CONNECT mcp.${tun.domain}:443 HTTP/1.1\r\nX: ${'a'.repeat(8200)}\r\n\r\n`),
      /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n[^]*CONNECT request head too large/);
    assert.match(await mtlsRaw(`CONNECT ${'a'.repeat(520)}.${tun.domain}:443 HTTP/1.1\r\n\r\n`),
      /^HTTP\/1\.1 400 Bad Request\r\n[^]*CONNECT target must be host:443/);
    assert.match(await mtlsRaw(`CONNECT mcp.nosuchtunnelxxxx.${DOMAIN}:443 HTTP/1.1\r\n\r\n`), /^HTTP\/1\.1 404 Not Found\r\n/);
    const ok = await viaMtls(`https://${tunnelHost('api')}/still-ok`, ['--proxy-cert', agent.cert, '--proxy-key', agent.key]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, `route ${tunnelHost('api')} path /still-ok got 0 \n`);
    const log = edge.log.slice(from);
    assert.match(log, /msg="client rejected" entry=mtls reason="bad CONNECT host" target="bad!route\./);
    assert.match(log, /msg="client rejected" entry=mtls reason="bad CONNECT port" target="mcp\.\S+:4x3"/);
    assert.doesNotMatch(log, /msg="client relayed" entry=mtls tunnel=\S+ host="(bad!|user@|mcp%)/);
  });

  it('reads a hostile CONNECT head the same however it is split, at its cap and one over, and refuses framing tricks', async () => {
    // Sends the head in pieces (one TLS write each) to the mTLS entry; resolves with the answer at close.
    const mtlsPieces = (pieces, timeoutMs = 8000) => new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: ports.mtls, servername: 'connect.edge.test', ca: readFileSync(edgeCa()),
        cert: readFileSync(agent.cert), key: readFileSync(agent.key) });
      let got = '';
      const timer = setTimeout(() => { s.destroy(); reject(new Error(`no close within ${timeoutMs}ms; got: ${JSON.stringify(got)}`)); }, timeoutMs);
      s.on('secureConnect', async () => { for (const p of pieces) { s.write(p); await sleep(2); } });
      s.on('data', (d) => { got += d; });
      s.on('error', (e) => { clearTimeout(timer); reject(e); });
      s.on('close', () => { clearTimeout(timer); resolve(got); });
    });
    // A valid name outside the tunnel domain: 403 whole, byte by byte, and cut at a few places.
    const head = 'CONNECT Example.COM:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Connection: keep-alive\r\n\r\n';
    assert.match(await mtlsRaw(head), /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(await mtlsPieces([...head]), /^HTTP\/1\.1 403 Forbidden\r\n/);
    for (const cut of [1, 8, 20, head.length - 2, head.length - 1]) {
      assert.match(await mtlsPieces([head.slice(0, cut), head.slice(cut)]), /^HTTP\/1\.1 403 Forbidden\r\n/, `cut ${cut}`);
    }
    // The head cap is 8 KiB with its last LF: 8192 bytes are read (403), 8193 are 431.
    const padded = (total) => {
      const pre = 'CONNECT example.com:443 HTTP/1.1\r\nX: ';
      return pre + 'a'.repeat(total - pre.length - 4) + '\r\n\r\n';
    };
    assert.match(await mtlsRaw(padded(8192)), /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(await mtlsRaw(padded(8193)), /^HTTP\/1\.1 431 /);
    // Bare LF, bare CR, folding, whitespace before a colon, a control byte or doubled space in the request line.
    for (const bad of ['CONNECT example.com:443 HTTP/1.1\n\n', 'CONNECT example.com:443 HTTP/1.1\r\n\rX',
      'CONNECT example.com:443 HTTP/1.1\r\nX: a\r\n b\r\n\r\n', 'CONNECT example.com:443 HTTP/1.1\r\nHost : a\r\n\r\n',
      'CONNECT example.com:443\t HTTP/1.1\r\n\r\n', 'CONNECT  example.com:443 HTTP/1.1\r\n\r\n']) {
      assert.match(await mtlsRaw(bad), /^HTTP\/1\.1 400 Bad Request\r\n[^]*malformed HTTP request/, JSON.stringify(bad));
    }
  });

  it('replaces the registration of the same connector slot at once', async () => {
    const a = await connect({ connectorId: 'same-gw', slot: 3 });
    const aClosed = new Promise((r) => a.socket.once('close', r));
    const from = edge.log.length;
    const b = await connect({ connectorId: 'same-gw', slot: 3 });
    await Promise.race([aClosed, sleep(3000).then(() => { throw new Error('old registration not closed'); })]);
    await edge.waitFor(/msg="registration replaced" tunnel=\S+ connector_id=same-gw slot=3/, 5000, from);
    assert.ok(!b.socket.destroyed);
    const r = await viaSni();
    assert.equal(r.code, 0, r.stderr);
  });

  it('keeps registered connections across a token rotation and refuses the old token after the grace', async () => {
    for (const c of conns) c.close();
    const old = await connect({ connectorId: 'rot', slot: 0 });
    const rot = await postern(['tunnel', 'rotate', 'test', '-c', yaml, '--grace', '2s']);
    assert.equal(rot.code, 0, rot.stderr);
    const fresh = JSON.parse(rot.stdout).token;
    // Within the grace the old token still registers.
    await connect({ connectorId: 'rot2', slot: 0 });
    await sleep(2500);
    await assert.rejects(connect({ connectorId: 'rot3', slot: 0 }), (e) => e.reply && e.reply.error === 'invalid or expired token');
    // The connection registered with the old token keeps serving.
    assert.ok(!old.socket.destroyed);
    const r = await viaSni();
    assert.equal(r.code, 0, r.stderr);
    const n = await connect({ connectorId: 'rot4', slot: 0, token: fresh });
    assert.equal(n.reply.ok, true);
    tun.token = fresh;
  });

  it('survives clients and connectors dying mid-stream, and its gauges return to zero', async () => {
    for (const c of conns) c.close();
    // Connector streams: refuse, reset, send a lot then end, or echo.
    const chaos = (st) => {
      const r = Math.random();
      if (r < 0.1) { st.respond({ ':status': 503 }); st.end(); return; }
      if (r < 0.2) { st.close(http2constants.NGHTTP2_CANCEL); return; }
      st.respond({ ':status': 200 });
      if (r < 0.4) { st.on('error', () => {}); st.write(Buffer.alloc(300000, 1)); st.end(); return; }
      st.pipe(st);
    };
    const cs = [];
    for (let i = 0; i < 3; i++) cs.push(await connect({ connectorId: 'chaos', slot: i, onStream: chaos }));
    const one = () => new Promise((resolve) => {
      const s = net.connect(ports.client, '127.0.0.1');
      s.on('error', () => {});
      s.on('data', () => {});
      s.on('close', resolve);
      s.write(clientHello(`x.${tun.domain}`));
      const r = Math.random();
      if (r < 0.3) s.write(Buffer.alloc(200000, 2));
      if (r < 0.5) setTimeout(() => s.end(), Math.random() * 50);
      else if (r < 0.8) setTimeout(() => s.destroy(), Math.random() * 50);
      else setTimeout(() => s.destroy(), 300);
    });
    for (let round = 0; round < 6; round++) {
      await Promise.all(Array.from({ length: 40 }, one));
      if (round === 2) cs[0].socket.destroy(); // a connector vanishes mid-stream
    }
    for (const c of cs) c.close();
    await waitUntil(async () => {
      const m = await metrics(ports.metrics);
      return /postern_edge_client_connections\{entry="sni"\} 0\n/.test(m) && /postern_edge_streams_active\{[^}]*\} 0\n/.test(m) &&
        /postern_edge_connector_connections\{[^}]*\} 0\n/.test(m);
    }, 10000, 100, 'gauges back to zero');
    await connect({ connectorId: 'after-chaos', slot: 0 });
    const r = await viaSni();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^route /);
  });

  it('enforces client_allowed_ips at accept', async () => {
    const p = { connector: await freePort(), client: await freePort(), metrics: await freePort() };
    const y = path.join(dir, 'edge-allow.yaml');
    writeFileSync(y, readFileSync(yaml, 'utf8')
      .replace(/connector_listen: .*/, `connector_listen: 127.0.0.1:${p.connector}`)
      .replace(/client_listen: .*/, `client_listen: 127.0.0.1:${p.client}`)
      .replace(/metrics_listen: .*/, `metrics_listen: 127.0.0.1:${p.metrics}`)
      .replace(/mtls_listen: .*\n/, '')
      .replace(/client_ca_file: .*\n/, '').replace(/mtls_tunnels: .*\n/, '') + 'client_allowed_ips: ["10.0.0.0/8", "192.168.0.0/16"]\n');
    const e2 = start(process.env.POSTERN_BIN, ['edge', '-c', y], { name: 'edge-allow' });
    await e2.waitFor(/msg="edge listening"/);
    const r = await rawExchange(p.client, clientHello(`mcp.${tun.domain}`));
    assert.equal(r.data.length, 0);
    await e2.waitFor(/msg="client rejected" entry=sni reason="address not in client_allowed_ips" peer=127\.0\.0\.1:\d+/);
    const x = await e2.kill('SIGTERM');
    assert.equal(x.code, 0);
  });
});

// Clients that have not said where they go yet are bounded twice: the bytes of partial ClientHellos they hold
// (client_hello_budget) and their number (client_pending_max). Small limits here, so that a few sockets reach them.
describe('postern edge load shedding before routing', () => {
  let dir, edge, ports;
  const gauge = async (name) => Number(((await metrics(ports.metrics)).match(new RegExp(`^${name} (\\d+)$`, 'm')) || [])[1]);
  const UNRECOGNIZED_NAME = Buffer.from([21, 3, 3, 0, 2, 2, 112]);
  const open = [];
  // A socket that sends bytes and stays open; .gone tells whether it was closed.
  const hold = (data) => new Promise((resolve) => {
    const s = net.connect(ports.client, '127.0.0.1');
    s.gone = false;
    s.on('error', () => {});
    s.on('close', () => { s.gone = true; });
    s.on('connect', () => { if (data) s.write(data); resolve(s); });
    open.push(s);
  });

  before(async () => {
    dir = tmpdir('postern-edge-shed-');
    ports = { connector: await freePort(), client: await freePort(), metrics: await freePort() };
    assert.equal((await postern(['certs', 'init', '--domain', 'edge.test', '--out', path.join(dir, 'pki')])).code, 0);
    const yaml = path.join(dir, 'edge.yaml');
    writeFileSync(yaml, [
      `state_dir: ${path.join(dir, 'state')}`,
      `domain: ${DOMAIN}`,
      `connector_listen: 127.0.0.1:${ports.connector}`,
      `connector_tls: { cert_file: ${path.join(dir, 'pki', 'server.pem')}, key_file: ${path.join(dir, 'pki', 'server.key')} }`,
      `client_listen: 127.0.0.1:${ports.client}`,
      `metrics_listen: 127.0.0.1:${ports.metrics}`,
      'client_hello_budget: 128K',
      'client_pending_max: 12',
      'client_hello_timeout_busy: 10s', // the busy deadline is the unit test's (test_edge): these hold clients for seconds
    ].join('\n') + '\n');
    edge = start(process.env.POSTERN_BIN, ['edge', '-c', yaml], { name: 'edge-shed' });
    await edge.waitFor(/msg="edge listening"/, 10000);
  });

  after(async () => {
    for (const s of open) s.destroy();
    if (edge) assert.equal((await edge.kill('SIGTERM', 10000)).code, 0, edge.log);
    await stopAll();
    rmrf(dir);
  });

  it('closes the client whose partial ClientHello would cross client_hello_budget, and frees the budget on routing or close', async () => {
    // 8 hellos of ~15 KB, each one byte short: 16 KiB of buffer each, 128 KiB in all.
    const hello = clientHello(`mcp.nosuchtunnelxxxx.${DOMAIN}`, 15000);
    assert.ok(hello.length > 8192 + 1 && hello.length <= 16384, `hello of ${hello.length} bytes`);
    const partial = hello.subarray(0, hello.length - 1);
    const holders = [];
    for (let i = 0; i < 8; i++) holders.push(await hold(partial));
    await waitUntil(async () => (await gauge('postern_edge_client_hello_bytes')) === 131072, 5000, 50, 'budget in use');
    assert.equal(await gauge('postern_edge_clients_pending'), 8);

    const from = edge.log.length;
    const ninth = await rawExchange(ports.client, partial, { timeoutMs: 5000 });
    assert.ok(ninth.closedMs < 3000, `closed after ${ninth.closedMs}ms`);
    assert.equal(ninth.data.length, 0);
    await edge.waitFor(/msg="client rejected" entry=sni reason="ClientHello buffer budget exhausted" peer=127\.0\.0\.1:\d+ suppressed=0/, 5000, from);
    assert.match(await metrics(ports.metrics), /postern_edge_client_rejects_total\{entry="sni",reason="hello_budget"\} 1\n/);
    assert.ok(holders.every((s) => !s.gone), 'the clients within the budget are kept');

    // One holder completes its hello: it is routed (here refused: no such tunnel) and its bytes leave the budget.
    const done = new Promise((resolve) => { let got = Buffer.alloc(0); holders[0].on('data', (d) => { got = Buffer.concat([got, d]); }); holders[0].on('close', () => resolve(got)); });
    holders[0].write(hello.subarray(hello.length - 1));
    assert.deepEqual(await done, UNRECOGNIZED_NAME);
    await waitUntil(async () => (await gauge('postern_edge_client_hello_bytes')) === 7 * 16384, 5000, 50, 'budget released');
    const served = await rawExchange(ports.client, clientHello(`mcp.nosuchtunnelxxxx.${DOMAIN}`), { timeoutMs: 5000 });
    assert.deepEqual(served.data, UNRECOGNIZED_NAME, 'a new client fits again');

    for (const s of holders) s.destroy();
    await waitUntil(async () => (await gauge('postern_edge_client_hello_bytes')) === 0 && (await gauge('postern_edge_clients_pending')) === 0,
      5000, 50, 'budget and pending back to zero');
  });

  it('makes room past client_pending_max by closing the oldest pending clients, logging a burst once', async () => {
    const silent = [];
    for (let i = 0; i < 12; i++) silent.push(await hold(null));
    await waitUntil(async () => (await gauge('postern_edge_clients_pending')) === 12, 5000, 50, '12 pending');
    const from = edge.log.length;
    for (let i = 0; i < 3; i++) silent.push(await hold(null));
    await waitUntil(async () => silent.slice(0, 3).every((s) => s.gone), 3000, 20, 'the 3 oldest closed');
    await sleep(100);
    assert.ok(silent.slice(3).every((s) => !s.gone), 'the newer pending clients, the newcomers among them, are kept');
    assert.equal(await gauge('postern_edge_clients_pending'), 12);
    await edge.waitFor(/msg="client rejected" entry=sni reason="too many clients not routed yet: oldest closed" peer=\S+ suppressed=0/, 5000, from);
    const m = await metrics(ports.metrics);
    assert.match(m, /postern_edge_client_rejects_total\{entry="sni",reason="evicted"\} 3\n/);
    assert.doesNotMatch(m, /postern_edge_client_rejects_total\{entry="sni",reason="pending"\}/);
    assert.equal(edge.log.slice(from).split('\n').filter((l) => l.includes('too many clients not routed yet')).length, 1, 'one line per burst');
    await sleep(1100);
    silent.push(await hold(null));
    await edge.waitFor(/reason="too many clients not routed yet: oldest closed" peer=\S+ suppressed=2/, 5000, from);
    await waitUntil(async () => silent[3].gone, 3000, 20, 'the next oldest closed');
    assert.ok(silent.slice(4).every((s) => !s.gone), 'the pending clients newer than it are kept');

    for (const s of silent) s.destroy();
    await waitUntil(async () => (await gauge('postern_edge_clients_pending')) === 0, 5000, 50, 'pending back to zero');
    const served = await rawExchange(ports.client, clientHello(`mcp.nosuchtunnelxxxx.${DOMAIN}`), { timeoutMs: 5000 });
    assert.deepEqual(served.data, UNRECOGNIZED_NAME);
  });
});
