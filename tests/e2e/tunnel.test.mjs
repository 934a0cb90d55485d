// Issue 3, items 4, 5 and the connector parts of 7: failover across two edges sharing one state_dir,
// half-open edges (SIGSTOP) and /ready, token rotation during a long SSE response, a wrong token and a wrong
// edge certificate (clear errors, backoff, no storm), SIGTERM drain, config errors. Real edge, gateway and
// upstream processes on loopback; every wait is bounded.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { writeFileSync, chmodSync } from 'node:fs';
import { start, postern, freePort, stopAll, waitUntil, sleep, BIN } from './lib/proc.mjs';
import { makeEdges, createTunnel, getStatus } from './lib/tunnel.mjs';
import { pinnedFetch } from './lib/mcp.mjs';

// Upstream: /echo answers at once; /sse sends `n` events `gap` ms apart (query), then ends.
async function startUpstream() {
  const srv = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    if (u.pathname === '/sse') {
      const n = Number(u.searchParams.get('n') || 5), gap = Number(u.searchParams.get('gap') || 300);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      let i = 0;
      const tick = () => {
        res.write(`event: tick\ndata: ${i}\n\n`);
        if (++i >= n) { res.end('event: done\ndata: end\n\n'); return; }
        setTimeout(tick, gap);
      };
      tick();
      return;
    }
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(`echo ${body}`); });
  });
  const port = await freePort();
  await new Promise((r) => srv.listen(port, '127.0.0.1', r));
  return { srv, port };
}

// A gateway without waiting for /ready (lib/tunnel.mjs's startGateway waits, which a refused one never is).
async function spawnGateway(ctx, t, upPort, { name = 'gateway', tokenFile = t.tokenFile, edgeCa = ctx.edgeCa,
  edges = ctx.edges.map((e) => `127.0.0.1:${e.connector}`), connections = 4, extra = [] } = {}) {
  const metrics = await freePort();
  const yaml = path.join(ctx.dir, `${name}.yaml`);
  writeFileSync(yaml, [
    `token_file: ${tokenFile}`,
    `edges: [${edges.map((a) => `"${a}"`).join(', ')}]`,
    `edge_ca_file: ${edgeCa}`,
    'edge_server_name: connect.edge.test',
    `connections: ${connections}`,
    `metrics_listen: 127.0.0.1:${metrics}`,
    `tunnel_domain: ${t.domain}`,
    `tls: { cert_file: ${t.cert}, key_file: ${t.key} }`,
    'routes:',
    `  up: http://127.0.0.1:${upPort}`,
    'upstream:',
    '  allowed_ips: ["127.0.0.0/8"]',
    ...extra,
  ].join('\n') + '\n');
  const proc = start(BIN, ['gateway', '-c', yaml], { name });
  return { proc, metrics, yaml, ready: () => getStatus(`http://127.0.0.1:${metrics}/ready`) };
}

// Registered connector connections of tunnel id on edge e, from the edge's own metrics (0 when unreachable).
async function edgeConns(e, id) {
  try {
    const text = await (await fetch(`http://127.0.0.1:${e.metrics}/metrics`, { signal: AbortSignal.timeout(1000) })).text();
    const m = text.match(new RegExp(`^postern_edge_connector_connections\\{tunnel="${id}"\\} (\\d+)`, 'm'));
    return m ? Number(m[1]) : 0;
  } catch { return -1; }
}

const count = (s, re) => (s.match(new RegExp(re, 'g')) || []).length;

// One request over a fresh TLS connection (so that each one is a new stream routed by the edge).
async function oneRequest(t, e, body) {
  const f = pinnedFetch({ ca: t.ca });
  try {
    const res = await f(`https://up.${t.domain}:${e.client}/echo`, { method: 'POST', body, signal: AbortSignal.timeout(5000) });
    return { status: res.status, text: await res.text() };
  } finally { await f.close(); }
}

after(async () => { await stopAll(); });

describe('failover between two edges sharing one state_dir', () => {
  let ctx, t, up, gw;
  const PING = 500, PING_TIMEOUT = 1000;
  before(async () => {
    up = await startUpstream();
    ctx = await makeEdges(2);
    await ctx.edges[0].start();
    await ctx.edges[1].start();
    t = await createTunnel(ctx, 'ha');
    gw = await spawnGateway(ctx, t, up.port, { connections: 4,
      extra: [`ping_interval: ${PING}ms`, `ping_timeout: ${PING_TIMEOUT}ms`] });
    await waitUntil(async () => (await gw.ready()) === 200, 15000, 50, 'gateway /ready');
  });
  after(async () => { await gw?.proc.kill(); up?.srv.close(); ctx?.cleanup(); });

  test('4 connections spread 2 + 2 over both edges', async () => {
    const [a, b] = ctx.edges;
    await waitUntil(async () => (await edgeConns(a, t.id)) === 2 && (await edgeConns(b, t.id)) === 2, 5000, 50,
      '2 connections on each edge');
  });

  test('kill -9 edge A: requests through B never fail; restart A: reconnected within 3 s, requests through A work', async () => {
    const [a, b] = ctx.edges;
    let stop = false, ok = 0;
    const failures = [];
    const loop = (async () => {
      for (let i = 0; !stop; i++) {
        try {
          const r = await oneRequest(t, b, `b-${i}`);
          if (r.status === 200 && r.text === `echo b-${i}`) ok++; else failures.push(`${r.status} ${r.text}`);
        } catch (err) { failures.push(String(err.cause || err)); }
        await sleep(20);
      }
    })();
    await sleep(300);
    await a.proc.kill('SIGKILL');
    // The gateway moves A's slots to B: all 4 connections there, requests keep flowing meanwhile.
    await waitUntil(async () => (await edgeConns(b, t.id)) === 4, 5000, 50, 'all 4 connections on edge B');
    await sleep(1500);
    const t0 = Date.now();
    await a.start();
    await waitUntil(async () => (await edgeConns(a, t.id)) >= 1, 3000, 25, 'gateway connected to restarted edge A');
    const reconnectMs = Date.now() - t0;
    await sleep(1500);
    stop = true;
    await loop;
    assert.deepEqual(failures, [], `requests through edge B failed: ${failures.join('; ')}`);
    assert.ok(ok >= 20, `only ${ok} requests went through edge B`);
    assert.ok(reconnectMs < 3000, `reconnected to A after ${reconnectMs} ms`);
    // Back to 2 + 2, and A carries requests again.
    await waitUntil(async () => (await edgeConns(a, t.id)) === 2, 5000, 50, '2 connections on A again');
    const r = await oneRequest(t, a, 'via-a');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'echo via-a');
    assert.match(gw.proc.log, /msg="slot back on its home edge; draining the stand-in connection"/);
  });

  test('SIGSTOP both edges: /ready turns 503 within the ping deadline and recovers after SIGCONT', async () => {
    assert.equal(await gw.ready(), 200);
    const t0 = Date.now();
    for (const e of ctx.edges) e.proc.child.kill('SIGSTOP');
    try {
      // Worst case: a PING just answered, the next one PING ms later, unanswered for PING_TIMEOUT ms.
      await waitUntil(async () => (await gw.ready()) === 503, PING + PING_TIMEOUT + 1000, 25, '/ready 503');
      const took = Date.now() - t0;
      assert.ok(took <= PING + PING_TIMEOUT + 500, `/ready took ${took} ms to turn 503`);
      const body = await (await fetch(`http://127.0.0.1:${gw.metrics}/ready`)).json();
      assert.equal(body.status, 'not ready');
      assert.equal(body.ready_connections, 0);
    } finally {
      for (const e of ctx.edges) e.proc.child.kill('SIGCONT');
    }
    await waitUntil(async () => (await gw.ready()) === 200, 15000, 50, '/ready 200 after SIGCONT');
    // Then every slot back, each edge with its own two (the edges may still be dropping the stale ones).
    await waitUntil(async () => {
      const b = await (await fetch(`http://127.0.0.1:${gw.metrics}/ready`)).json();
      return b.ready_connections === 4 && (await edgeConns(ctx.edges[0], t.id)) === 2 && (await edgeConns(ctx.edges[1], t.id)) === 2;
    }, 15000, 50, 'all 4 connections ready again, 2 per edge');
    const r = await oneRequest(t, ctx.edges[1], 'after-cont');
    assert.equal(r.text, 'echo after-cont');
    assert.match(gw.proc.log, /msg="edge did not answer PING in time; closing the connection"/);
    const m = await (await fetch(`http://127.0.0.1:${gw.metrics}/metrics`)).text();
    assert.match(m, /postern_connector_pings_total\{result="timeout"\} [1-9]/);
    assert.match(m, /postern_connector_reconnects_total [1-9]/);
  });
});

describe('token rotation during a long SSE response', () => {
  let ctx, t, up, gw;
  before(async () => {
    up = await startUpstream();
    ctx = await makeEdges(1);
    await ctx.edges[0].start();
    t = await createTunnel(ctx, 'rot');
    gw = await spawnGateway(ctx, t, up.port, { connections: 2 });
    await waitUntil(async () => (await gw.ready()) === 200, 15000, 50, 'gateway /ready');
  });
  after(async () => { await gw?.proc.kill(); up?.srv.close(); ctx?.cleanup(); });

  test('the response completes; a connector with the old token after the grace period is refused', async () => {
    const e = ctx.edges[0];
    const f = pinnedFetch({ ca: t.ca });
    const res = await f(`https://up.${t.domain}:${e.client}/sse?n=12&gap=300`, { signal: AbortSignal.timeout(15000) });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    let text = '';
    const first = await reader.read();
    text += Buffer.from(first.value).toString();
    assert.match(text, /data: 0/);
    // Rotate mid-stream with a short grace period.
    const rot = await postern(['tunnel', 'rotate', 'rot', '-c', e.yaml, '--grace', '1s']);
    assert.equal(rot.code, 0, rot.stderr);
    const newToken = JSON.parse(rot.stdout).token;
    assert.ok(newToken && newToken !== t.token);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    await f.close();
    for (let i = 0; i < 12; i++) assert.match(text, new RegExp(`data: ${i}\\n`));
    assert.match(text, /event: done/);
    // Rotation never dropped the connections already open: same registrations, still ready.
    assert.equal(await gw.ready(), 200);
    assert.equal(count(gw.proc.log, 'msg="registered with edge"'), 2);
    // Both links' outer TLS went over to postern's record layer after the handshake (the stream above too).
    assert.equal(count(gw.proc.log, 'record_layer=postern'), 2);

    // Past the grace period the old token opens nothing new.
    await sleep(1500);
    const stale = await spawnGateway(ctx, t, up.port, { name: 'stale', connections: 1 });
    await stale.proc.waitFor(/msg="edge rejected the tunnel token" edge=127\.0\.0\.1:\d+ slot=0 reason="invalid or expired token"/, 10000);
    assert.equal(await stale.ready(), 503);
    await stale.proc.kill();
    // The new token works, and the first gateway still serves.
    const newFile = path.join(ctx.dir, 'rot-new.token');
    writeFileSync(newFile, newToken + '\n', { mode: 0o600 });
    const fresh = await spawnGateway(ctx, t, up.port, { name: 'fresh', connections: 1, tokenFile: newFile });
    await waitUntil(async () => (await fresh.ready()) === 200, 10000, 50, 'gateway with the new token ready');
    await fresh.proc.kill();
    const r = await oneRequest(t, e, 'still-up');
    assert.equal(r.text, 'echo still-up');
    for (const p of [gw.proc, stale.proc, fresh.proc, e.proc])
      assert.ok(!p.log.includes(t.token) && !p.log.includes(newToken), `a token appears in ${p.name}'s log`);
  });
});

describe('bad credentials: clear errors and backoff', () => {
  let ctx, t, up;
  before(async () => {
    up = await startUpstream();
    ctx = await makeEdges(1);
    await ctx.edges[0].start();
    t = await createTunnel(ctx, 'bad');
  });
  after(async () => { up?.srv.close(); ctx?.cleanup(); });

  test('a wrong token: "edge rejected the tunnel token", never ready, retries back off', async () => {
    const e = ctx.edges[0];
    const wrong = path.join(ctx.dir, 'wrong.token');
    const bogus = t.token.slice(0, -8) + '00000000';
    writeFileSync(wrong, bogus + '\n');
    chmodSync(wrong, 0o600);
    const before = count(e.proc.log, 'msg="connector rejected"');
    const gw = await spawnGateway(ctx, t, up.port, { name: 'wrongtok', connections: 1, tokenFile: wrong });
    await gw.proc.waitFor(/level=error comp=gateway msg="edge rejected the tunnel token" edge=127\.0\.0\.1:\d+ slot=0 reason="[^"]+"/, 10000);
    await sleep(4000);
    assert.equal(await gw.ready(), 503);
    const attempts = count(gw.proc.log, 'msg="edge rejected the tunnel token"');
    // Backoff 1 s, 2 s, 4 s ... with full jitter: a handful of attempts in ~4 s, not a storm.
    assert.ok(attempts >= 2 && attempts <= 10, `${attempts} registration attempts in ~4 s`);
    // The edge logs the first failure of a source's minute in full; the rest come as one aggregated line.
    assert.equal(count(e.proc.log, 'msg="connector rejected"') - before, 1);
    assert.match(gw.proc.log, /msg="will retry registration" slot=0 edge=\S+ retry_in_ms=\d+ attempt=\d+/);
    await gw.proc.kill();
    assert.ok(!gw.proc.log.includes(bogus) && !e.proc.log.includes(bogus), 'the token appears in a log');
  });

  test('a wrong edge certificate: TLS verification error, token never sent, retries back off', async () => {
    const e = ctx.edges[0];
    // Lines that only a registration line can cause (a failed handshake is logged as well, differently).
    const regs = () => count(e.proc.log, 'msg="connector registered"') + count(e.proc.log, 'connector rejected" reason="invalid');
    const before = regs();
    // Trusting the customer CA instead of the edge's: the edge certificate does not verify.
    const gw = await spawnGateway(ctx, t, up.port, { name: 'wrongca', connections: 1, edgeCa: t.ca });
    await gw.proc.waitFor(/msg="edge connection failed" slot=0 edge=127\.0\.0\.1:\d+ err="[^"]*certificate verify failed[^"]*"/, 10000);
    await sleep(3000);
    assert.equal(await gw.ready(), 503);
    const failures = count(gw.proc.log, 'msg="edge connection failed"');
    assert.ok(failures >= 2 && failures <= 10, `${failures} dial attempts in ~3 s`);
    assert.equal(regs(), before, 'the edge saw a registration over an unverified connection');
    assert.match(e.proc.log, /msg="connector rejected" reason="TLS handshake failed/);
    await gw.proc.kill();
  });
});

describe('SIGTERM drains, config errors', () => {
  let ctx, t, up;
  before(async () => {
    up = await startUpstream();
    ctx = await makeEdges(1);
    await ctx.edges[0].start();
    t = await createTunnel(ctx, 'drain');
  });
  after(async () => { up?.srv.close(); ctx?.cleanup(); });

  test('SIGTERM: GOAWAY, /ready 503, the stream in flight completes, exit 0', async () => {
    const e = ctx.edges[0];
    const gw = await spawnGateway(ctx, t, up.port, { name: 'drainer', connections: 2 });
    await waitUntil(async () => (await gw.ready()) === 200, 15000, 50, 'gateway /ready');
    const f = pinnedFetch({ ca: t.ca });
    const res = await f(`https://up.${t.domain}:${e.client}/sse?n=6&gap=250`, { signal: AbortSignal.timeout(15000) });
    const reader = res.body.getReader();
    let text = Buffer.from((await reader.read()).value).toString();
    gw.proc.child.kill('SIGTERM');
    await gw.proc.waitFor(/msg="connector draining"/, 3000);
    assert.equal(await gw.ready(), 503);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    await f.close();
    assert.match(text, /data: 5\n[\s\S]*event: done/);
    const { code, signal } = await Promise.race([gw.proc.exited, sleep(10000).then(() => ({ code: 'timeout' }))]);
    assert.equal(code, 0, `exit ${code} ${signal}; log:\n${gw.proc.log}`);
    assert.match(gw.proc.log, /msg="gateway stopped"/);
    // New clients find no live connection once it is gone.
    await assert.rejects(() => oneRequest(t, e, 'late'));
  });

  test('a second signal exits at once', async () => {
    const e = ctx.edges[0];
    const gw = await spawnGateway(ctx, t, up.port, { name: 'impatient', connections: 1 });
    await waitUntil(async () => (await gw.ready()) === 200, 15000, 50, 'gateway /ready');
    const f = pinnedFetch({ ca: t.ca });
    const res = await f(`https://up.${t.domain}:${e.client}/sse?n=100&gap=200`, { signal: AbortSignal.timeout(15000) });
    await res.body.getReader().read();
    gw.proc.child.kill('SIGTERM');
    await gw.proc.waitFor(/msg="connector draining"/, 3000);
    const t0 = Date.now();
    gw.proc.child.kill('SIGTERM');
    const r = await Promise.race([gw.proc.exited, sleep(3000).then(() => ({ code: 'timeout' }))]);
    assert.notEqual(r.code, 'timeout');
    assert.ok(Date.now() - t0 < 1000);
    assert.match(gw.proc.log, /msg="second signal: exiting now"/);
    await f.close().catch(() => {});
  });

  test('config errors name file, line and key; --help', async () => {
    const bad = path.join(ctx.dir, 'bad.yaml');
    const cases = [
      ['edges: ["127.0.0.1:1"]\ntoken_file: /nonexistent/tok\n', /bad\.yaml:2: token_file: cannot open \/nonexistent\/tok: No such file/],
      [`token_file: ${t.tokenFile}\nedges: "127.0.0.1:1"\n`, /bad\.yaml:2: edges: expected a list/],
      [`token_file: ${t.tokenFile}\nedges: ["127.0.0.1:1"]\nconections: 3\n`, /bad\.yaml:3: unknown key 'conections' in the gateway config/],
      [`token_file: ${t.tokenFile}\nedges: ["127.0.0.1:1"]\nping_timeout: 5x\n`, /bad\.yaml:3: ping_timeout: '5x' is not a duration/],
      [`tls: { cert_file: ${t.cert}, key_file: ${t.key} }\nroutes: { up: "http://127.0.0.1:1" }\n`, /nothing to serve: set edges/],
    ];
    for (const [yaml, re] of cases) {
      writeFileSync(bad, yaml);
      // Without connector keys `check` cannot tell a gateway file from a `postern proxy` one: gateway only.
      const cmds = /nothing to serve/.test(String(re)) ? [['gateway', '-c', bad]] : [['gateway', '-c', bad], ['check', '-c', bad]];
      for (const cmd of cmds) {
        const r = await postern(cmd, { timeoutMs: 5000 });
        assert.equal(r.code, 1, `${cmd[0]}: ${yaml}`);
        assert.match(r.stderr, re);
      }
    }
    const h = await postern(['gateway', '--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /usage: postern gateway -c FILE/);
    assert.match(h.stdout, /ping_timeout/);
  });

  test('without edges the gateway is proxy-only on listen_addr', async () => {
    const listen = await freePort(), metrics = await freePort();
    const yaml = path.join(ctx.dir, 'proxyonly.yaml');
    writeFileSync(yaml, [`listen_addr: 127.0.0.1:${listen}`, `metrics_listen: 127.0.0.1:${metrics}`,
      `tunnel_domain: ${t.domain}`, `tls: { cert_file: ${t.cert}, key_file: ${t.key} }`,
      'routes:', `  up: http://127.0.0.1:${up.port}`, 'upstream:', '  allowed_ips: ["127.0.0.0/8"]'].join('\n') + '\n');
    const gw = start(BIN, ['gateway', '-c', yaml], { name: 'proxyonly' });
    await gw.waitFor(/msg="gateway started" mode=proxy-only/, 5000);
    await waitUntil(async () => (await getStatus(`http://127.0.0.1:${metrics}/ready`)) === 200, 5000, 50, '/ready');
    const f = pinnedFetch({ ca: t.ca });
    const res = await f(`https://up.${t.domain}:${listen}/echo`, { method: 'POST', body: 'direct' });
    assert.equal(await res.text(), 'echo direct');
    await f.close();
    gw.child.kill('SIGTERM');
    const { code } = await gw.exited;
    assert.equal(code, 0);
  });
});
