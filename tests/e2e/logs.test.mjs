// Logs are data for operators' pipelines: with `log_format: json` (or --log-format json) every line the edge
// and the gateway write, at debug level, through good and hostile traffic, is one JSON object with time,
// level, comp and msg, and no peer-supplied value breaks out of its field. The JSON form is derived from
// the logfmt fragments, so a value a caller forgot to quote shows up here as "log line not in key=value
// form": this test is the check for the whole class (every log call on these paths), not for one line.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { writeFileSync, readFileSync } from 'node:fs';
import { freePort, stopAll, sleep } from './lib/proc.mjs';
import { makeEdges, createTunnel, startGateway } from './lib/tunnel.mjs';
import { pinnedFetch } from './lib/mcp.mjs';

let ctx, t, gw, edge, srv, upPort;

before(async () => {
  srv = http.createServer((req, res) => { req.resume(); req.on('end', () => { res.writeHead(200); res.end('ok'); }); });
  upPort = await freePort();
  await new Promise((r) => srv.listen(upPort, '127.0.0.1', r));
  ctx = await makeEdges(1);
  edge = ctx.edges[0];
  writeFileSync(edge.yaml, [...edge.lines, 'log_level: debug', 'log_format: json'].join('\n') + '\n');
  await edge.start();
  t = await createTunnel(ctx, 'logs');
  gw = await startGateway(ctx, t, { up: `http://127.0.0.1:${upPort}` }, { extra: ['log_level: debug', 'log_format: json'] });
});

after(async () => { await stopAll(); srv?.close(); ctx?.cleanup(); });

// Raw bytes to the edge's client port (a hostile client), then wait for the close.
function raw(bytes, { servername } = {}) {
  return new Promise((resolve) => {
    const s = servername
      ? tls.connect({ host: '127.0.0.1', port: edge.client, servername, rejectUnauthorized: false })
      : net.connect(edge.client, '127.0.0.1');
    s.on('error', () => {});
    s.setTimeout(3000, () => s.destroy());
    s.on(servername ? 'secureConnect' : 'connect', () => { if (bytes) s.write(bytes); });
    s.on('close', resolve);
    if (!servername) setTimeout(() => s.end(), 200);
  });
}

// One request through the whole tunnel with a hostile head (the gateway parses and logs it).
function through(head) {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: edge.client, servername: `up.${t.domain}`, ca: readFileSync(t.ca) }, () => s.write(head));
    let got = '';
    s.on('data', (c) => { got += c; });
    s.on('error', () => resolve(got));
    s.setTimeout(3000, () => s.destroy());
    s.on('close', () => resolve(got));
  });
}

test('every edge and gateway line is a JSON object, hostile values included', async () => {
  // good traffic
  const f = pinnedFetch({ ca: t.ca });
  try {
    const r = await f(`https://up.${t.domain}:${edge.client}/echo?q="x y"`, { method: 'POST', body: 'hi', signal: AbortSignal.timeout(5000) });
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'ok');
  } finally { await f.close(); }
  // hostile clients: SNI with spaces, quotes and key=value, an unknown tunnel, garbage, a bare TLS record
  await raw(null, { servername: 'a b="c" level=error.tunnel.test' });
  await raw(null, { servername: `nope.zzzz.${'tunnel.test'}` });
  await raw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  await raw(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00]));
  // hostile requests inside the tunnel: odd paths, hosts and methods
  const answers = [
    await through('GET /a%20b"c\\ d=e HTTP/1.1\r\nHost: up.' + t.domain + '\r\nConnection: close\r\n\r\n'),
    await through('GET / HTTP/1.1\r\nHost: no such="route" x=y\r\nConnection: close\r\n\r\n'),
    await through('BR"EW / HTTP/1.1\r\nHost: up.' + t.domain + '\r\n\r\n'),
    await through('GET / HTTP/1.1\r\nHost: nope.' + t.domain + '\r\nConnection: close\r\n\r\n'),
  ];
  assert.match(answers[3], /HTTP\/1\.1 404/);
  await sleep(500);
  const lines = { edge: edge.proc.log, gateway: gw.proc.log };
  for (const [who, text] of Object.entries(lines)) {
    const all = text.split('\n').filter(Boolean);
    assert.ok(all.length > 10, `${who} logged only ${all.length} lines`);
    for (const l of all) {
      let o;
      try { o = JSON.parse(l); } catch (e) { assert.fail(`${who}: not a JSON line: ${l}`); }
      assert.equal(typeof o.time, 'string', l);
      assert.match(o.level, /^(debug|info|warn|error)$/, l);
      assert.equal(typeof o.comp, 'string', l);
      assert.equal(typeof o.msg, 'string', l);
      assert.notEqual(o.msg, 'log line not in key=value form', `${who}: an unquoted value: ${o.raw}`);
      // a peer's "level=error" stays inside its value: no key came from a peer
      for (const k of Object.keys(o)) assert.doesNotMatch(k, /^(c|d|x|level=.*)$/, `${who}: a key from a peer: ${l}`);
    }
  }
  // the events happened and carry their values as strings
  const gwEv = lines.gateway.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const req = gwEv.find((o) => o.msg === 'request' && o.status === 200);
  assert.ok(req, 'the good request is logged');
  assert.equal(typeof req.client, 'string');
  assert.ok(gwEv.some((o) => o.msg === 'no route for host'), 'the unknown route is logged');
  const edgeEv = lines.edge.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.ok(edgeEv.some((o) => o.msg === 'client rejected'), 'a rejected client is logged');
  assert.ok(edgeEv.some((o) => o.msg === 'client relayed'), 'the relayed client is logged');
});
