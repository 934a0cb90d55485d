// `postern control` attacked (the red team of issue 13): a hostile worker or client tries other tenants'
// work and sessions, odd path ids, query and cursor abuse, forged Last-Event-IDs, duplicate credential
// headers and HTTP framing tricks. Each case runs on every store in `stores`. docs/threat-model.md, "The
// control plane and worker (attacked)", lists the classes and the results.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { startControl, stores, sessionsToken, stopSharedRedis, BETA } from './lib/control.mjs';
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
    const head = (lines) => `GET /v1/environments/${c.envId}/work/poll?block_ms=1 HTTP/1.1\r\nHost: x\r\nanthropic-beta: ${BETA}\r\n${lines}` +
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
    const pre = `POST /v1/sessions/${s.id}/events HTTP/1.1\r\nHost: x\r\nx-api-key: ${c.apiKey}\r\nanthropic-beta: ${BETA}\r\n` +
      'content-type: application/json\r\n';
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

// issue 13 remainders (docs/threat-model.md, "Holes found and fixed").
for (const store of stores) {
  test(`${store}: a sessions token ends with its work item; the session's next item has a token of its own`, async () => {
    const c = await ctl(store);
    const a = await claimed(c);
    const base = `/v1/environments/${c.envId}/work/${a.work.id}`;
    assert.equal((await c.api(`${base}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT`, { bearer: a.token, method: 'POST' })).status, 200);
    // a stop that waits for the worker ("stopping"): the token still works, the worker has to wind down
    const soft = await c.api(`${base}/stop`, { key: c.apiKey, method: 'POST' });
    assert.equal(soft.body.state, 'stopping', JSON.stringify(soft.body));
    assert.equal((await c.api(`/v1/sessions/${a.session.id}`, { bearer: a.token })).status, 200);
    // stopped: every endpoint of the session refuses the token (401, saying why)
    assert.equal((await c.api(`${base}/stop`, { bearer: a.token, method: 'POST', body: { force: true } })).status, 200);
    for (const [p, method, body] of [[`/v1/sessions/${a.session.id}`, 'GET'], [`/v1/sessions/${a.session.id}/events`, 'GET'],
      [`/v1/sessions/${a.session.id}/events`, 'POST', { events: [{ type: 'user.tool_result', tool_use_id: 'sevt_x' }] }],
      [`${base}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT`, 'POST'], [`${base}/ack`, 'POST']]) {
      const r = await c.api(p, { bearer: a.token, method, body });
      assert.equal(r.status, 401, `${method} ${p} with a stopped item's token: ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.type, 'authentication_error');
      assert.match(r.body.error.message, /stopped work item/);
    }
    const st = await c.stream(a.session.id, { bearer: a.token });
    assert.equal(st.status, 401);
    st.close();
    // but it may stop its item again: the 409 a worker exiting with stop {force:true} ignores
    const again = await c.api(`${base}/stop`, { bearer: a.token, method: 'POST', body: { force: true } });
    assert.equal(again.status, 409, JSON.stringify(again.body));
    // user input makes a new item with a new token, which works; the old one still does not
    const um = { type: 'user.message', content: [{ type: 'text', text: 'again' }] };
    assert.equal((await c.api(`/v1/sessions/${a.session.id}/events`, { key: c.apiKey, body: { events: [um] } })).status, 200);
    const r = await c.poll();
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.notEqual(r.body.id, a.work.id);
    const t2 = sessionsToken(r.body);
    assert.notEqual(t2, a.token);
    assert.equal((await c.api(`/v1/sessions/${a.session.id}`, { bearer: t2 })).status, 200);
    assert.equal((await c.api(`/v1/sessions/${a.session.id}`, { bearer: a.token })).status, 401);
    // a deleted session takes its items' tokens along
    assert.equal((await c.api(`/v1/sessions/${a.session.id}`, { key: c.apiKey, method: 'DELETE' })).status, 200);
    assert.equal((await c.api(`/v1/environments/${c.envId}/work/${r.body.id}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT`,
      { bearer: t2, method: 'POST' })).status, 401);
  });

  test(`${store}: a tool result must answer a tool use of its session, once (a retry of the same result is idempotent)`, async () => {
    const c = await ctl(store);
    const a = await claimed(c);
    const ev = (events) => c.api(`/v1/sessions/${a.session.id}/events`, { bearer: a.token, body: { events } });
    const agent = async (e) => (await c.api(`/v1/sessions/${a.session.id}/events`, { key: c.apiKey, body: { events: [e] } })).body.data[0];
    const tu = await agent({ type: 'agent.tool_use', name: 'bash', input: { command: 'id' } });
    const ctu = await agent({ type: 'agent.custom_tool_use', name: 'lookup', input: {} });
    const msg = await agent({ type: 'agent.message', content: [{ type: 'text', text: 'hi' }] });
    const other = await c.createSession();
    const otu = (await c.api(`/v1/sessions/${other.id}/events`, { key: c.apiKey,
      body: { events: [{ type: 'agent.tool_use', name: 'bash', input: { command: 'x' } }] } })).body.data[0];
    // ids the session never had, a message's id, another session's call, the other kind of call: 400 naming the id
    for (const [e, re] of [
      [{ type: 'user.tool_result', tool_use_id: 'sevt_never', content: [] }, /sevt_never is not an agent\.tool_use of session/],
      [{ type: 'user.tool_result', tool_use_id: msg.id }, new RegExp(`${msg.id} is not an agent\\.tool_use`)],
      [{ type: 'user.tool_result', tool_use_id: otu.id }, new RegExp(`${otu.id} is not an agent\\.tool_use of session ${a.session.id}`)],
      [{ type: 'user.tool_result', tool_use_id: ctu.id }, new RegExp(`${ctu.id} is not an agent\\.tool_use`)],
      [{ type: 'user.custom_tool_result', custom_tool_use_id: tu.id }, new RegExp(`${tu.id} is not an agent\\.custom_tool_use`)]]) {
      const r = await ev([e]);
      assert.equal(r.status, 400, `${JSON.stringify(e)}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.type, 'invalid_request_error');
      assert.match(r.body.error.message, re);
    }
    // the first result is stored; the same one again (a retry whose answer was lost) answers the stored event
    const res = { type: 'user.tool_result', tool_use_id: tu.id, content: [{ type: 'text', text: 'uid=0' }], is_error: false };
    const first = await ev([res]);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const retry = await ev([res]);
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal(retry.body.data[0].id, first.body.data[0].id, 'the retry answers the stored result');
    // with other content: 400 (a call takes one result)
    const diff = await ev([{ ...res, content: [{ type: 'text', text: 'other' }] }]);
    assert.equal(diff.status, 400);
    assert.match(diff.body.error.message, new RegExp(`${tu.id} is already answered`));
    // two results for one id in a batch: 400, nothing stored
    const twice = await ev([{ type: 'user.custom_tool_result', custom_tool_use_id: ctu.id },
      { type: 'user.custom_tool_result', custom_tool_use_id: ctu.id }]);
    assert.equal(twice.status, 400);
    assert.match(twice.body.error.message, /answered twice in this batch/);
    // a batch of a retry and a new result: the new one stored, the retry not again
    const mixed = await ev([res, { type: 'user.custom_tool_result', custom_tool_use_id: ctu.id, content: [] }]);
    assert.equal(mixed.status, 200, JSON.stringify(mixed.body));
    assert.equal(mixed.body.data[0].id, first.body.data[0].id);
    const all = (await c.api(`/v1/sessions/${a.session.id}/events?limit=1000`, { key: c.apiKey })).body.data;
    assert.deepEqual(all.map((e) => e.type), ['agent.tool_use', 'agent.custom_tool_use', 'agent.message', 'user.tool_result',
      'user.custom_tool_result'], 'each result stored once');
  });

  test(`${store}: every endpoint needs anthropic-beta: ${BETA} (400 as Anthropic's API answers), wherever it is in the list`, async () => {
    const c = await ctl(store);
    const s = await c.createSession();
    const call = (p, headers, method = 'GET') => fetch(`${c.url}${p}?beta=true`, { method, headers: { 'x-api-key': c.apiKey, ...headers },
      signal: AbortSignal.timeout(5000) }).then(async (r) => ({ status: r.status, body: await r.json() }));
    for (const [p, method] of [['/v1/sessions', 'GET'], [`/v1/sessions/${s.id}`, 'GET'], [`/v1/sessions/${s.id}/events`, 'GET'],
      [`/v1/environments/${c.envId}`, 'GET'], [`/v1/environments/${c.envId}/work/stats`, 'GET'], [`/v1/sessions/${s.id}/events/stream`, 'GET']]) {
      for (const h of [{}, { 'anthropic-beta': 'managed-agents-2025-01-01' }, { 'anthropic-beta': `x${BETA}` }]) {
        const r = await call(p, h, method);
        assert.equal(r.status, 400, `${method} ${p} with ${JSON.stringify(h)}: ${r.status}`);
        assert.equal(r.body.type, 'error');
        assert.equal(r.body.error.type, 'invalid_request_error');
        assert.equal(r.body.error.message, `anthropic-beta: this endpoint needs ${BETA}`);
        assert.match(r.body.request_id, /^req_/);
      }
    }
    for (const v of [BETA, `other-2025-01-01, ${BETA}`, `${BETA},files-api-2025-04-14`]) {
      assert.equal((await call(`/v1/sessions/${s.id}`, { 'anthropic-beta': v })).status, 200, v);
    }
  });

  test(`${store}: a stream opened without Last-Event-ID starts at the log's end without reading the log`, async () => {
    const c = await ctl(store);
    const s = await c.createSession();
    // a 10 MB log: 10 posts of 250 events of 4 KiB
    const text = 'h'.repeat(4096);
    for (let i = 0; i < 10; i++) {
      const events = Array.from({ length: 250 }, () => ({ type: 'agent.message', content: [{ type: 'text', text }] }));
      assert.equal((await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey, body: { events }, timeoutMs: 30000 })).status, 200);
    }
    // bytes the daemon read (files and sockets) while it opened the stream and sent one new event
    const rchar = () => Number(/rchar: (\d+)/.exec(readFileSync(`/proc/${c.proc.child.pid}/io`, 'utf8'))[1]);
    const r0 = rchar();
    const st = await c.stream(s.id, { key: c.apiKey });
    assert.equal(st.status, 200);
    assert.equal((await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey,
      body: { events: [{ type: 'agent.message', content: [{ type: 'text', text: 'after' }] }] } })).status, 200);
    const first = await st.sse.next(5000);
    const read = rchar() - r0;
    st.close();
    assert.equal(first.data.content[0].text, 'after', 'new events only, as before');
    assert.equal(first.id, '2501');
    assert.ok(read < 2 * 1024 * 1024, `opening the stream read ${read} bytes of a 10 MB log`);
  });
}
