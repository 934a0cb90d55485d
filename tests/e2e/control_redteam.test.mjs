// `postern control` attacked (the red team of issue 13): a hostile worker or client tries other tenants'
// work and sessions, odd path ids, query and cursor abuse, forged Last-Event-IDs, duplicate credential
// headers and HTTP framing tricks. Each case runs on every store in `stores`. docs/threat-model.md, "The
// control plane and worker (attacked)", lists the classes and the results.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startControl, stores, sessionsToken, stopSharedRedis } from './lib/control.mjs';
import { stopAll, sleep } from './lib/proc.mjs';

const live = [];
async function ctl(store, config) {
  const c = await startControl({ store, config });
  live.push(c);
  return c;
}
after(async () => {
  for (const c of live) {
    const r = await c.stop();
    if (r) assert.equal(r.code, 0, `control exited ${r.code ?? r.signal} after SIGTERM:\n${c.allLogs().slice(-3000)}`);
  }
  await stopAll();
  await stopSharedRedis();
});

// One raw request on a fresh connection: the whole answer as text (until the server closes or 3 s pass).
function raw(c, text, waitMs = 3000) {
  return new Promise((resolve, reject) => {
    const s = net.connect(c.port, '127.0.0.1');
    let out = '';
    const t = setTimeout(() => { s.destroy(); resolve(out); }, waitMs);
    s.on('data', (d) => { out += d.toString('latin1'); });
    s.on('end', () => { clearTimeout(t); s.destroy(); resolve(out); });
    s.on('error', (e) => { clearTimeout(t); if (out) resolve(out); else reject(e); });
    s.write(text);
  });
}
const statusOf = (answer) => Number((/^HTTP\/1\.1 (\d{3})/.exec(answer) || [])[1] || 0);

// A session with its work acked by w-1: {session, work, token}.
async function claimed(c) {
  const session = await c.createSession();
  const r = await c.poll();
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.data.id, session.id);
  const ack = await c.api(`/v1/environments/${c.envId}/work/${r.body.id}/ack`, { bearer: c.envKey, method: 'POST' });
  assert.equal(ack.status, 200, JSON.stringify(ack.body));
  return { session, work: r.body, token: sessionsToken(r.body) };
}

for (const store of stores) {
  test(`${store}: cross-tenant: another environment's key and another session's token are 403`, async () => {
    const c = await ctl(store);
    const other = await c.cli(['env', 'create', 'other-env']);
    const a = await claimed(c);
    const b = await claimed(c);
    const wa = `/v1/environments/${c.envId}/work/${a.work.id}`;
    // the other environment's key on this environment's queue, work and sessions
    for (const [p, method] of [[`/v1/environments/${c.envId}/work/poll?block_ms=1`, 'GET'], [`/v1/environments/${c.envId}/work`, 'GET'],
      [`${wa}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT`, 'POST'], [`${wa}/stop`, 'POST'],
      [`/v1/sessions/${a.session.id}`, 'GET'], [`/v1/sessions/${a.session.id}/events`, 'GET']]) {
      const r = await c.api(p, { bearer: other.key, method });
      assert.equal(r.status, 403, `${method} ${p} with another environment's key: ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.type, 'permission_error');
    }
    // session b's token on session a's work and events
    for (const [p, method, body] of [[`${wa}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT`, 'POST'], [`${wa}/stop`, 'POST'],
      [`/v1/sessions/${a.session.id}`, 'GET'], [`/v1/sessions/${a.session.id}/events`, 'GET'],
      [`/v1/sessions/${a.session.id}/events`, 'POST', { events: [{ type: 'user.tool_result', tool_use_id: 'toolu_x' }] }]]) {
      const r = await c.api(p, { bearer: b.token, method, body });
      assert.equal(r.status, 403, `${method} ${p} with another session's token: ${r.status} ${JSON.stringify(r.body)}`);
    }
    const st = await c.stream(a.session.id, { bearer: b.token });
    assert.equal(st.status, 403);
    st.close();
    // a sessions token is not an environment key: no poll, no list; not an API key: no agent events
    assert.equal((await c.poll('block_ms=1', 'w-x', a.token)).status, 401);
    const ag = await c.api(`/v1/sessions/${a.session.id}/events`, { bearer: a.token,
      body: { events: [{ type: 'agent.tool_use', id: 'toolu_1', name: 'bash', input: { command: 'id' } }] } });
    assert.equal(ag.status, 403, JSON.stringify(ag.body));
    // nor may a worker approve an "ask" call: user.tool_confirmation is the user's (an API key's)
    for (const bearer of [a.token, c.envKey]) {
      const cf = await c.api(`/v1/sessions/${a.session.id}/events`, { bearer,
        body: { events: [{ type: 'user.tool_confirmation', tool_use_id: 'toolu_1', result: 'allow' }] } });
      assert.equal(cf.status, 403, `a worker credential posted a confirmation: ${JSON.stringify(cf.body)}`);
      assert.match(cf.body.error.message, /API key/);
    }
    // an environment key cannot create sessions or post agent events (x-api-key with it: 401)
    assert.equal((await c.api('/v1/sessions', { bearer: c.envKey, body: { agent: 'a', environment_id: c.envId } })).status, 401);
    assert.equal((await c.api('/v1/sessions', { key: c.envKey, body: { agent: 'a', environment_id: c.envId } })).status, 401);
    // nothing reached session a's log
    const evs = await c.api(`/v1/sessions/${a.session.id}/events`, { key: c.apiKey });
    assert.equal(evs.body.data.length, 0, JSON.stringify(evs.body));
  });

  test(`${store}: forged Last-Event-ID and page cursors are refused, not read as "from the start"`, async () => {
    const c = await ctl(store);
    const s = await c.createSession();
    const ev = { type: 'agent.message', content: [{ type: 'text', text: 'secret history' }] };
    assert.equal((await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey, body: { events: [ev, ev] } })).status, 200);
    for (const lei of ['18446744073709551615', '9223372036854775808', '99999999999999999999999', '-1', '+1', '1e3',
      'abc', '0x10']) {
      const st = await c.stream(s.id, { key: c.apiKey }, lei);
      assert.equal(st.status, 400, `Last-Event-ID ${JSON.stringify(lei)}: ${st.status}`);
      st.close();
    }
    for (const page of ['18446744073709551615', '9223372036854775808', '-1', '+1', '%201', '1x']) {
      const r = await c.api(`/v1/sessions/${s.id}/events?page=${page}`, { key: c.apiKey });
      assert.equal(r.status, 400, `page=${page}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.match(r.body.error.message, /page/);
    }
    // a Last-Event-ID past the log's end would wait for ids that never come: 400 naming the last one
    const far = await c.stream(s.id, { key: c.apiKey }, '4000000000');
    assert.equal(far.status, 400);
    const body = JSON.parse(await far.res.text());
    assert.match(body.error.message, /past the session's last event/);
    // a well-formed resume still works
    const ok = await c.stream(s.id, { key: c.apiKey }, '0');
    assert.equal(ok.status, 200);
    const first = await ok.sse.next(5000);
    assert.equal(first.data.content[0].text, 'secret history');
    ok.close();
  });

  test(`${store}: odd ids in paths and abused query parameters: 404 / 400, never a match`, async () => {
    const c = await ctl(store);
    const s = await c.createSession();
    for (const id of ['..', '%2e%2e', '.%2e', s.id + '%00', s.id + '%2f..', 'x'.repeat(128), '%C3%A9', 'é', s.id + '/']) {
      const r = await c.api(`/v1/sessions/${id}`, { key: c.apiKey });
      assert.ok(r.status === 404 || r.status === 400, `session id ${id}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.notEqual(r.body?.id, s.id);
    }
    for (const q of ['block_ms=0', 'block_ms=1000', 'block_ms=-1', 'block_ms=abc', 'block_ms=1e3', 'block_ms=%31%30%30%30',
      'block_ms=18446744073709551617', 'reclaim_older_than_ms=-5']) {
      const r = await c.poll(q);
      assert.equal(r.status, 400, `${q}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    for (const q of ['limit=0', 'limit=1001', 'limit=-1', 'limit=1.5']) {
      const r = await c.api(`/v1/sessions/${s.id}/events?${q}`, { key: c.apiKey });
      assert.equal(r.status, 400, `${q}: ${r.status}`);
      assert.match(r.body.error.message, /limit/);
    }
    const wid = await c.poll('block_ms=1', 'w'.repeat(4000));
    assert.equal(wid.status, 400);
  });

  test(`${store}: duplicate credential headers are refused (no first-one-wins confusion)`, async () => {
    const c = await ctl(store);
    const other = await c.cli(['env', 'create', 'other-env']);
    const head = (lines) => `GET /v1/environments/${c.envId}/work/poll?block_ms=1 HTTP/1.1\r\nHost: x\r\n${lines}` +
      'Connection: close\r\n\r\n';
    const two = await raw(c, head(`Authorization: Bearer ${c.envKey}\r\nAuthorization: Bearer ${other.key}\r\n`));
    assert.equal(statusOf(two), 400, two.slice(0, 300));
    assert.match(two, /Authorization/i);
    const mixed = await raw(c, head(`x-api-key: ${c.apiKey}\r\nx-api-key: nope\r\n`));
    assert.equal(statusOf(mixed), 400, mixed.slice(0, 300));
    const one = await raw(c, head(`Authorization: Bearer ${c.envKey}\r\n`));
    assert.equal(statusOf(one), 200, one.slice(0, 300));
  });

  test(`${store}: HTTP framing tricks (CL+TE, two CLs, obs-fold, chunk extensions) are refused`, async () => {
    const c = await ctl(store);
    const s = await c.createSession();
    const body = JSON.stringify({ events: [{ type: 'agent.message', content: [{ type: 'text', text: 'smuggled' }] }] });
    const pre = `POST /v1/sessions/${s.id}/events HTTP/1.1\r\nHost: x\r\nx-api-key: ${c.apiKey}\r\ncontent-type: application/json\r\n`;
    const cases = {
      'CL+TE': `${pre}Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
      'two CLs': `${pre}Content-Length: ${body.length}\r\nContent-Length: 5\r\n\r\n${body}`,
      'obs-fold TE': `${pre}Transfer-Encoding:\r\n chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
      'TE gzip, chunked': `${pre}Transfer-Encoding: gzip, chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
      'bare LF chunk size': `${pre}Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\n${body}\r\n0\r\n\r\n`,
      'CL with sign': `${pre}Content-Length: +${body.length}\r\n\r\n${body}`,
    };
    for (const [name, text] of Object.entries(cases)) {
      const a = await raw(c, text);
      assert.equal(statusOf(a), 400, `${name}: ${a.slice(0, 300)}`);
    }
    const evs = await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey });
    assert.equal(evs.body.data.length, 0, `a framing trick stored an event: ${JSON.stringify(evs.body)}`);
  });

  test(`${store}: slowloris, connection floods, huge and deep bodies: caps and timeouts hold`, async () => {
    const c = await ctl(store, { request_timeout: '1s', idle_timeout: '1s', max_connections: 8, max_body: '64K' });
    const s = await c.createSession();
    // a head trickled a byte at a time: 408 and closed at request_timeout, not held open
    const t0 = Date.now();
    const slow = await new Promise((resolve) => {
      const so = net.connect(c.port, '127.0.0.1');
      let out = '';
      let i = 0;
      const head = 'GET /v1/sessions HTTP/1.1\r\nHost: x\r\nX-Slow: ';
      const iv = setInterval(() => { if (!so.destroyed) so.write(i < head.length ? head[i++] : 'a'); }, 50);
      const t = setTimeout(() => { clearInterval(iv); so.destroy(); resolve(out + '[timeout]'); }, 8000);
      so.on('data', (d) => { out += d; });
      so.on('close', () => { clearInterval(iv); clearTimeout(t); resolve(out); });
      so.on('error', () => {});
    });
    assert.equal(statusOf(slow), 408, slow.slice(0, 200));
    assert.ok(Date.now() - t0 < 5000, `the slow head was held ${Date.now() - t0} ms`);
    // a flood of idle connections: those past max_connections are closed at accept; the rest go at idle_timeout
    const socks = [];
    let closedEarly = 0;
    for (let i = 0; i < 20; i++) {
      const so = net.connect(c.port, '127.0.0.1');
      so.on('error', () => {});
      so.on('close', () => { if (Date.now() - t1 < 700) closedEarly++; });
      socks.push(so);
    }
    const t1 = Date.now();
    await sleep(2500);
    assert.ok(closedEarly >= 12, `only ${closedEarly} of 20 connections were refused at accept (max_connections 8)`);
    assert.ok(socks.every((so) => so.destroyed || so.readableEnded), 'an idle connection outlived idle_timeout');
    for (const so of socks) so.destroy();
    // the server still answers
    assert.equal((await c.api(`/v1/sessions/${s.id}`, { key: c.apiKey })).status, 200);
    // a body over max_body: 413 at the head (Content-Length) and once a chunked body passes it
    const pre = `POST /v1/sessions/${s.id}/events HTTP/1.1\r\nHost: x\r\nx-api-key: ${c.apiKey}\r\ncontent-type: application/json\r\n`;
    assert.equal(statusOf(await raw(c, `${pre}Content-Length: 1000000000000\r\n\r\n`)), 413);
    const chunk = 'x'.repeat(32768);
    const big = await raw(c, `${pre}Transfer-Encoding: chunked\r\n\r\n` + `8000\r\n${chunk}\r\n`.repeat(3) + '0\r\n\r\n');
    assert.equal(statusOf(big), 413, big.slice(0, 200));
    // JSON nested deeper than the parser takes: 400, no crash
    const deep = '{"events":' + '['.repeat(30000) + ']'.repeat(30000) + '}';
    const d = await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey, body: deep, headers: { 'content-type': 'application/json' } });
    assert.equal(d.status, 400, JSON.stringify(d.body).slice(0, 200));
    assert.match(d.body.error.message, /not JSON|depth|nest/i);
    assert.equal((await c.api(`/v1/sessions/${s.id}`, { key: c.apiKey })).status, 200);
  });
}
