// `postern control` as a black box over HTTP: the work queue (re-offer, lease, 412), durability across kill -9,
// the SSE stream's resume, credentials, and every kind of bad input. Each case runs on every store in
// `stores` (SQLite, and Redis on a redis-server the test starts).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { writeFileSync, readFileSync } from 'node:fs';
import { startControl, stores, sessionsToken, stopSharedRedis, BETA } from './lib/control.mjs';
import https from 'node:https';
import { makeCA, makeLeaf } from './lib/certs.mjs';
import { postern, tmpdir, rmrf, sleep, stopAll, freePort } from './lib/proc.mjs';

const live = [];
async function ctl(store, opts = {}) {
  const c = await startControl({ store, ...opts });
  live.push(c);
  return c;
}
after(async () => {
  for (const c of live) {
    const log = c.allLogs();
    const r = await c.stop();
    if (r) assert.equal(r.code, 0, `control exited ${r.code ?? r.signal} after SIGTERM:\n${c.allLogs().slice(-3000) || log}`);
  }
  await stopAll();
  await stopSharedRedis();
});

// A session's work item, delivered (not acked) to worker w.
async function claim(c, w = 'w-1', q = 'block_ms=999') {
  const r = await c.poll(q, w);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.ok(r.body && r.body.id, `no work for ${w}: ${JSON.stringify(r.body)}`);
  return r.body;
}

const wpath = (c, w, tail = '') => `/v1/environments/${c.envId}/work/${w.id}${tail}`;

for (const store of stores) {
  test(`${store}: a session's work item: poll, ack, heartbeat, stop, the secret only in the poll`, async () => {
    const c = await ctl(store);
    const s = await c.createSession();
    assert.equal(s.type, 'session');
    assert.equal(s.environment_id, c.envId);
    const w = await claim(c);
    assert.equal(w.type, 'work');
    assert.deepEqual(w.data, { type: 'session', id: s.id });
    assert.equal(w.state, 'queued');
    const tok = sessionsToken(w);
    assert.match(tok, /^pst_sess_/);
    const ack = await c.api(wpath(c, w, '/ack'), { bearer: tok, method: 'POST' });
    assert.equal(ack.status, 200, JSON.stringify(ack.body));
    assert.equal(ack.body.state, 'starting');
    assert.equal(ack.body.secret, null);
    assert.ok(ack.body.acknowledged_at);
    const again = await c.api(wpath(c, w, '/ack'), { bearer: tok, method: 'POST' });
    assert.equal(again.status, 409, 'a second ack conflicts');
    const hb = await c.api(wpath(c, w, '/heartbeat?expected_last_heartbeat=NO_HEARTBEAT'), { bearer: tok, method: 'POST' });
    assert.equal(hb.status, 200, JSON.stringify(hb.body));
    assert.equal(hb.body.type, 'work_heartbeat');
    assert.equal(hb.body.state, 'active');
    assert.equal(hb.body.lease_extended, true);
    assert.equal(hb.body.ttl_seconds, 90);
    const hb2 = await c.api(wpath(c, w, `/heartbeat?expected_last_heartbeat=${encodeURIComponent(hb.body.last_heartbeat)}&desired_ttl_seconds=30`),
      { bearer: tok, method: 'POST' });
    assert.equal(hb2.status, 200);
    assert.equal(hb2.body.ttl_seconds, 30);
    const got = await c.api(wpath(c, w), { key: c.apiKey });
    assert.equal(got.status, 200);
    assert.equal(got.body.secret, null, 'the secret is only in the poll answer');
    assert.equal(got.body.state, 'active');
    const list = await c.api(`/v1/environments/${c.envId}/work`, { bearer: c.envKey });
    assert.equal(list.status, 200);
    assert.ok(list.body.data.every((x) => x.secret === null));
    const stats = await c.api(`/v1/environments/${c.envId}/work/stats`, { bearer: c.envKey });
    assert.equal(stats.status, 200);
    assert.equal(stats.body.type, 'work_queue_stats');
    assert.equal(stats.body.depth, 0);
    assert.equal(stats.body.workers_polling, 1);
    const stop = await c.api(wpath(c, w, '/stop'), { bearer: tok, body: {} });
    assert.equal(stop.status, 200);
    assert.equal(stop.body.state, 'stopping');
    const hb3 = await c.api(wpath(c, w, `/heartbeat?expected_last_heartbeat=${encodeURIComponent(hb2.body.last_heartbeat)}`), { bearer: tok, method: 'POST' });
    assert.equal(hb3.status, 200);
    assert.equal(hb3.body.state, 'stopping');
    assert.equal(hb3.body.lease_extended, false, 'a stopping item is not extended');
    const force = await c.api(wpath(c, w, '/stop'), { bearer: tok, body: { force: true } });
    assert.equal(force.body.state, 'stopped');
    const twice = await c.api(wpath(c, w, '/stop'), { bearer: tok, body: { force: true } });
    assert.equal(twice.status, 409, 'stopping a stopped item conflicts');
    assert.equal(twice.body.error.type, 'conflict_error');
    const empty = await c.poll('block_ms=50');
    assert.equal(empty.status, 200);
    assert.equal(empty.body, null, 'an empty queue answers null');
    assert.ok(empty.headers.get('request-id'), 'every answer has a request-id');
  });

  test(`${store}: a session created with a user message is running and has exactly one work item`, async () => {
    const c = await ctl(store);
    const s = await c.createSession({ initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'go' }] }] });
    assert.equal(s.status, 'running');
    const w = await claim(c);
    assert.equal(w.data.id, s.id);
    assert.equal((await c.poll('block_ms=50', 'w-2')).body, null, 'one item, not two');
    const ev = await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey });
    assert.deepEqual(ev.body.data.map((e) => e.type), ['user.message', 'session.status_running']);
    const bad = await c.api('/v1/sessions', { key: c.apiKey, body: { agent: 'a', environment_id: c.envId, initial_events: [{ type: 'user.message' }] } });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /initial_events\[0\]\.content/);
  });

  test(`${store}: a missed ack is offered again after reclaim_older_than_ms, not before`, async () => {
    const c = await ctl(store);
    await c.createSession();
    const w1 = await claim(c, 'w-a');
    const none = await c.poll('block_ms=100', 'w-b');
    assert.equal(none.body, null, 'delivered and not acked: not offered within the default 5 s');
    await sleep(300);
    const w2 = await claim(c, 'w-b', 'block_ms=999&reclaim_older_than_ms=200');
    assert.equal(w2.id, w1.id, 'the same item, re-offered');
    const stats = await c.api(`/v1/environments/${c.envId}/work/stats`, { key: c.apiKey });
    assert.equal(stats.body.depth, 1);
    assert.equal(stats.body.pending, 1);
    assert.equal(stats.body.workers_polling, 2);
  });

  test(`${store}: a long poll wakes at once on an enqueue`, async () => {
    const c = await ctl(store);
    const t0 = Date.now();
    const p = c.poll('block_ms=999');
    await sleep(100);
    await c.createSession();
    const r = await p;
    assert.ok(r.body && r.body.id);
    assert.ok(Date.now() - t0 < 900, `answered after ${Date.now() - t0} ms`);
  });

  test(`${store}: a stale heartbeat is 412 with the lease's current state`, async () => {
    const c = await ctl(store);
    await c.createSession();
    const w = await claim(c);
    const tok = sessionsToken(w);
    await c.api(wpath(c, w, '/ack'), { bearer: tok, method: 'POST' });
    const hb = await c.api(wpath(c, w, '/heartbeat?expected_last_heartbeat=NO_HEARTBEAT'), { bearer: tok, method: 'POST' });
    assert.equal(hb.status, 200);
    const stale = await c.api(wpath(c, w, '/heartbeat?expected_last_heartbeat=NO_HEARTBEAT'), { bearer: c.envKey, method: 'POST' });
    assert.equal(stale.status, 412);
    assert.equal(stale.body.type, 'error');
    assert.equal(stale.body.error.details.error_code, 'heartbeat_precondition_failed');
    assert.deepEqual(stale.body.error.details.current_state,
      { state: 'active', ttl_seconds: 90, last_heartbeat: hb.body.last_heartbeat, lease_extended: false });
    const missing = await c.api(wpath(c, w, '/heartbeat'), { bearer: tok, method: 'POST' });
    assert.equal(missing.status, 400);
    assert.match(missing.body.error.message, /expected_last_heartbeat/);
    const ttl = await c.api(wpath(c, w, `/heartbeat?expected_last_heartbeat=x&desired_ttl_seconds=0`), { bearer: tok, method: 'POST' });
    assert.equal(ttl.status, 400);
    assert.match(ttl.body.error.message, /desired_ttl_seconds/);
  });

  test(`${store}: a lease that runs out puts the item back; another worker takes it; the old one gets 412`, async () => {
    const c = await ctl(store, { config: { lease_ttl: '2s' } });
    await c.createSession();
    const w = await claim(c, 'w-old');
    const tok = sessionsToken(w);
    await c.api(wpath(c, w, '/ack'), { bearer: tok, method: 'POST' });
    const hb = await c.api(wpath(c, w, '/heartbeat?expected_last_heartbeat=NO_HEARTBEAT'), { bearer: tok, method: 'POST' });
    assert.equal(hb.body.ttl_seconds, 2);
    let again = null;
    for (let i = 0; i < 12 && !again; i++) {
      const r = await c.poll('block_ms=500', 'w-new');
      if (r.body) again = r.body;
    }
    assert.ok(again, 'the item came back within 6 s');
    assert.equal(again.id, w.id);
    assert.equal(again.state, 'queued');
    assert.equal(again.latest_heartbeat_at, null);
    const old = await c.api(wpath(c, w, `/heartbeat?expected_last_heartbeat=${encodeURIComponent(hb.body.last_heartbeat)}`), { bearer: tok, method: 'POST' });
    assert.equal(old.status, 412, 'the old holder lost the lease');
    await c.api(wpath(c, again, '/ack'), { bearer: sessionsToken(again), method: 'POST' });
    const nb = await c.api(wpath(c, again, '/heartbeat?expected_last_heartbeat=NO_HEARTBEAT'), { bearer: sessionsToken(again), method: 'POST' });
    assert.equal(nb.status, 200);
    assert.match(c.allLogs(), /leases expired/);
  });

  test(`${store}: kill -9 and restart lose no acknowledged session, event or work item`, async () => {
    const c = await ctl(store);
    const s = await c.createSession({ metadata: { k: 'v' } });
    const w = await claim(c);
    const tok = sessionsToken(w);
    assert.equal((await c.api(wpath(c, w, '/ack'), { bearer: tok, method: 'POST' })).status, 200);
    const posted = [];
    for (let i = 0; i < 20; i++) {
      const r = await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey,
        body: { events: [{ type: 'agent.tool_use', name: 'bash', input: { command: `echo ${i}` } }] } });
      assert.equal(r.status, 200);
      posted.push(r.body.data[0].id);
    }
    const res = await c.api(`/v1/sessions/${s.id}/events`, { bearer: tok, body: { events: [{ type: 'user.tool_result', tool_use_id: posted[0], content: [{ type: 'text', text: 'ok' }] }] } });
    assert.equal(res.status, 200);
    posted.push(res.body.data[0].id);
    await c.kill9();
    await c.restart();
    const only = await c.api(`/v1/sessions/${s.id}/events?limit=5&types%5B%5D=user.tool_result`, { bearer: tok });
    assert.deepEqual(only.body.data.map((e) => e.type), ['user.tool_result'], 'types[] filters');
    const pg = await c.api(`/v1/sessions/${s.id}/events?limit=7&types[]=agent.tool_use`, { bearer: tok });
    assert.equal(pg.body.data.length, 7);
    const pg2 = await c.api(`/v1/sessions/${s.id}/events?limit=100&types[]=agent.tool_use&page=${pg.body.next_page}`, { bearer: tok });
    assert.equal(pg2.body.data.length, 13, 'the cursor goes on after a filtered page');
    assert.equal(pg2.body.next_page, null);
    const badt = await c.api(`/v1/sessions/${s.id}/events?types[]=nope`, { bearer: tok });
    assert.equal(badt.status, 400);
    const gs = await c.api(`/v1/sessions/${s.id}`, { key: c.apiKey });
    assert.equal(gs.status, 200);
    assert.deepEqual(gs.body.metadata, { k: 'v' });
    const ev = await c.api(`/v1/sessions/${s.id}/events?limit=1000`, { bearer: tok });
    assert.equal(ev.status, 200);
    const ids = ev.body.data.map((e) => e.id);
    for (const id of posted) assert.ok(ids.includes(id), `event ${id} survived`);
    const gw = await c.api(wpath(c, w), { key: c.apiKey });
    assert.equal(gw.body.state, 'starting');
    assert.ok(gw.body.acknowledged_at);
    const hb = await c.api(wpath(c, w, '/heartbeat?expected_last_heartbeat=NO_HEARTBEAT'), { bearer: tok, method: 'POST' });
    assert.equal(hb.status, 200, 'the sessions token still works after the restart');
  });

  test(`${store}: the SSE stream resumes after Last-Event-ID with no gap and no duplicate`, async () => {
    const c = await ctl(store);
    const s = await c.createSession();
    const w = await claim(c);
    const tok = sessionsToken(w);
    const st = await c.stream(s.id, { bearer: tok });
    assert.equal(st.status, 200);
    assert.match(st.res.headers.get('content-type'), /text\/event-stream/);
    const post = (n) => c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey,
      body: { events: [{ type: 'agent.tool_use', name: 'bash', input: { command: `n${n}` } }] } });
    for (let i = 0; i < 3; i++) await post(i);
    const seen = [];
    for (let i = 0; i < 3; i++) seen.push(await st.sse.next());
    assert.deepEqual(seen.map((e) => e.data.input.command), ['n0', 'n1', 'n2']);
    assert.ok(seen.every((e) => e.event === 'agent.tool_use' && e.data.type === 'agent.tool_use' && /^\d+$/.test(e.id)));
    st.close();
    for (let i = 3; i < 6; i++) await post(i);
    const st2 = await c.stream(s.id, { bearer: tok }, seen[1].id);
    const got = [];
    for (let i = 0; i < 4; i++) got.push(await st2.sse.next());
    assert.deepEqual(got.map((e) => e.data.input.command), ['n2', 'n3', 'n4', 'n5'], 'exactly what followed the id');
    assert.deepEqual(got.map((e) => Number(e.id)), [1, 2, 3, 4].map((k) => Number(seen[1].id) + k));
    await assert.rejects(st2.sse.next(600), /no event in time/, 'no duplicate after the last one');
    st2.close();
    const bad = await c.stream(s.id, { bearer: tok }, 'abc');
    assert.equal(bad.status, 400);
  });

  test(`${store}: a tool result bigger than a connection's write queue reaches the stream and the list whole`, async () => {
    const c = await ctl(store);
    const s = await c.createSession();
    const w = await claim(c);
    const tok = sessionsToken(w);
    const st = await c.stream(s.id, { key: c.apiKey });
    const text = 'r'.repeat(9 * 1024 * 1024) + 'END';
    // a result answers a tool use of the session (the server refuses one for an id the log has no call of)
    const tu = await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey,
      body: { events: [{ type: 'agent.tool_use', name: 'bash', input: { command: 'big' } }] } });
    assert.equal(tu.status, 200);
    assert.equal((await st.sse.next(5000)).event, 'agent.tool_use');
    const r = await c.api(`/v1/sessions/${s.id}/events`, { bearer: tok, timeoutMs: 30000,
      body: { events: [{ type: 'user.tool_result', tool_use_id: tu.body.data[0].id, content: [{ type: 'text', text }] }] } });
    assert.equal(r.status, 200);
    const after = await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey,
      body: { events: [{ type: 'agent.message', content: [{ type: 'text', text: 'next' }] }] } });
    assert.equal(after.status, 200);
    const e = await st.sse.next(20000);
    assert.equal(e.event, 'user.tool_result');
    assert.equal(e.data.content[0].text.length, text.length);
    assert.ok(e.data.content[0].text.endsWith('END'));
    assert.equal((await st.sse.next(5000)).event, 'agent.message', 'and what follows it, in order');
    st.close();
    const l = await c.api(`/v1/sessions/${s.id}/events?limit=1000`, { key: c.apiKey, timeoutMs: 30000 });
    assert.equal(l.status, 200);
    assert.equal(l.body.data.find((x) => x.type === 'user.tool_result').content[0].text.length, text.length);
  });

  test(`${store}: user input on an idle session with no live work item enqueues a new one`, async () => {
    const c = await ctl(store);
    const s = await c.createSession();
    const w = await claim(c);
    const tok = sessionsToken(w);
    const st = await c.stream(s.id, { bearer: tok });
    await c.api(wpath(c, w, '/ack'), { bearer: tok, method: 'POST' });
    const idle = await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey,
      body: { events: [{ type: 'session.status_idle', stop_reason: { type: 'end_turn' } }] } });
    assert.equal(idle.status, 200, JSON.stringify(idle.body));
    assert.equal((await st.sse.next()).event, 'session.status_idle');
    assert.equal((await c.api(`/v1/sessions/${s.id}`, { key: c.apiKey })).body.status, 'idle');
    await c.api(wpath(c, w, '/stop'), { bearer: tok, body: { force: true } });
    const msg = await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey,
      body: { events: [{ type: 'user.message', content: [{ type: 'text', text: 'again' }] }] } });
    assert.equal(msg.status, 200);
    assert.equal((await st.sse.next()).event, 'user.message');
    assert.equal((await st.sse.next()).event, 'session.status_running');
    const w2 = await claim(c);
    assert.notEqual(w2.id, w.id);
    assert.deepEqual(w2.data, { type: 'session', id: s.id });
    assert.notEqual(sessionsToken(w2), tok, 'a fresh secret per item');
    const arch = await c.api(`/v1/sessions/${s.id}/archive`, { key: c.apiKey, method: 'POST' });
    assert.equal(arch.status, 200);
    assert.equal(arch.body.status, 'terminated');
    assert.equal((await st.sse.next()).event, 'session.status_terminated');
    const del = await c.api(`/v1/sessions/${s.id}`, { key: c.apiKey, method: 'DELETE' });
    assert.deepEqual(del.body, { id: s.id, type: 'session_deleted' });
    assert.equal((await st.sse.next()).event, 'session.deleted');
    st.close();
    assert.equal((await c.api(`/v1/sessions/${s.id}`, { key: c.apiKey })).status, 404);
  });

  test(`${store}: credentials: wrong, revoked, and of the wrong kind`, async () => {
    const c = await ctl(store, { config: { log_level: 'debug' } });
    const s = await c.createSession();
    const bogus = await c.poll('block_ms=1', 'w', 'pst_env_not-a-key');
    assert.equal(bogus.status, 401);
    assert.equal(bogus.body.error.type, 'authentication_error');
    const none = await c.api(`/v1/environments/${c.envId}/work/poll`);
    assert.equal(none.status, 401);
    const apiOnPoll = await c.api(`/v1/environments/${c.envId}/work/poll`, { key: c.apiKey });
    assert.equal(apiOnPoll.status, 401, 'an API key is not a worker credential');
    assert.match(apiOnPoll.body.error.message, /environment key/);
    const apiAsBearer = await c.api(`/v1/sessions/${s.id}`, { bearer: c.apiKey });
    assert.equal(apiAsBearer.status, 200, 'the SDK sends its apiKey as Authorization: Bearer');
    const apiBearerOnPoll = await c.api(`/v1/environments/${c.envId}/work/poll`, { bearer: c.apiKey });
    assert.equal(apiBearerOnPoll.status, 401, 'an API key is no worker credential, however it is sent');
    const envOnCreate = await c.api('/v1/environments', { bearer: c.envKey, body: { name: 'x' } });
    assert.equal(envOnCreate.status, 401, 'an environment key is not an API key');
    const envOnSessCreate = await c.api('/v1/sessions', { bearer: c.envKey, body: { agent: 'a', environment_id: c.envId } });
    assert.equal(envOnSessCreate.status, 401);
    // another environment's key
    const other = await c.cli(['env', 'create', 'other']);
    const cross = await c.poll('block_ms=1', 'w', other.key);
    assert.equal(cross.status, 403);
    const crossSess = await c.api(`/v1/sessions/${s.id}`, { bearer: other.key });
    assert.equal(crossSess.status, 403);
    // a worker may post tool results, not agent events
    const w = await claim(c);
    const tok = sessionsToken(w);
    const agent = await c.api(`/v1/sessions/${s.id}/events`, { bearer: tok, body: { events: [{ type: 'agent.message', content: [{ type: 'text', text: 'x' }] }] } });
    assert.equal(agent.status, 403);
    assert.match(agent.body.error.message, /user\.tool_result/);
    // revoked keys
    const r1 = await c.cli(['key', 'revoke', c.envKeyId]);
    assert.equal(r1.revoked, true);
    const revoked = await c.poll('block_ms=1');
    assert.equal(revoked.status, 401);
    await c.cli(['key', 'revoke', c.apiKeyId]);
    assert.equal((await c.api(`/v1/sessions/${s.id}`, { key: c.apiKey })).status, 401);
    const unknown = await postern(['control', 'key', 'revoke', 'key_nope', '-c', c.cfgPath]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no key key_nope/);
    // keys never reach the log
    await c.api(`/v1/sessions/${s.id}`, { bearer: tok });
    assert.match(c.allLogs(), /msg="request" endpoint=sessions.retrieve method=GET status=200/, 'debug logs every request');
    for (const secret of [c.envKey, c.apiKey, tok, w.secret, other.key]) assert.ok(!c.allLogs().includes(secret), 'a key in the log');
  });

  test(`${store}: bad input: malformed and unknown events, block_ms, bodies, paths`, async () => {
    const c = await ctl(store, { config: { max_body: '64K' } });
    const s = await c.createSession();
    const post = (events, o = { key: c.apiKey }) => c.api(`/v1/sessions/${s.id}/events`, { ...o, body: { events } });
    const cases = [
      [[{ type: 'user.tool_result' }], /events\[0\]\.tool_use_id: required/],
      [[{ type: 'user.message', content: [] }], /events\[0\]\.content/],
      [[{ type: 'user.message', content: [{ type: 'text' }] }], /content\[0\]\.text/],
      [[{ type: 'user.tool_confirmation', tool_use_id: 'x', result: 'maybe' }], /events\[0\]\.result/],
      [[{ type: 'agent.tool_use', name: 'bash' }], /events\[0\]\.input/],
      [[{ type: 'session.status_idle' }], /events\[0\]\.stop_reason/],
      [[{ content: 'x' }], /events\[0\]\.type: required/],
      [['x'], /events\[0\]: an event must be an object/],
      [[{ type: 'user.message', content: [{ type: 'text', text: 'ok' }] }, { type: 'user.tool_result', tool_use_id: 'a'.repeat(200) }], /events\[1\]\.tool_use_id/],
      [[], /1 to 1000 events/],
      [[{ type: 'session.deleted' }], /written by the server/],
    ];
    for (const [events, re] of cases) {
      const r = await post(events);
      assert.equal(r.status, 400, `${JSON.stringify(events).slice(0, 80)} -> ${r.status}`);
      assert.equal(r.body.error.type, 'invalid_request_error');
      assert.match(r.body.error.message, re);
    }
    const unk = await post([{ type: 'agent.telepathy' }]);
    assert.equal(unk.status, 400);
    assert.match(unk.body.error.message, /unknown event type "agent\.telepathy"/);
    const list = await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey });
    assert.ok(!list.body.data.some((e) => e.type === 'user.message'), 'a batch with a bad event stores none of it');
    for (const q of ['block_ms=0', 'block_ms=1000', 'block_ms=abc', 'block_ms=-1', 'reclaim_older_than_ms=x']) {
      const r = await c.poll(q);
      assert.equal(r.status, 400, q);
      assert.match(r.body.error.message, /block_ms|reclaim_older_than_ms/);
    }
    const notJson = await c.api('/v1/sessions', { key: c.apiKey, body: '{"agent": ', headers: { 'content-type': 'application/json' } });
    assert.equal(notJson.status, 400);
    assert.match(notJson.body.error.message, /not JSON/);
    const noEnv = await c.api('/v1/sessions', { key: c.apiKey, body: { agent: 'a', environment_id: 'env_nope' } });
    assert.equal(noEnv.status, 400);
    assert.match(noEnv.body.error.message, /environment_id/);
    const cloud = await c.api('/v1/environments', { key: c.apiKey, body: { name: 'c', config: { type: 'cloud' } } });
    assert.equal(cloud.status, 400);
    assert.match(cloud.body.error.message, /self_hosted/);
    // a tool result over max_body: 413, and the message says to truncate
    const w = await claim(c);
    const big = await post([{ type: 'user.tool_result', tool_use_id: 'x', content: [{ type: 'text', text: 'y'.repeat(100 * 1024) }] }], { bearer: sessionsToken(w) });
    assert.equal(big.status, 413);
    assert.equal(big.body.error.type, 'request_too_large');
    assert.match(big.body.error.message, /truncate/);
    const nf = await c.api('/v1/nothing', { key: c.apiKey });
    assert.equal(nf.status, 404);
    assert.equal(nf.body.error.type, 'not_found_error');
    const method = await c.api(`/v1/environments/${c.envId}/work/poll`, { bearer: c.envKey, method: 'DELETE' });
    assert.equal(method.status, 405);
    const ws = await c.api(`/v1/sessions/sesn_nope`, { key: c.apiKey });
    assert.equal(ws.status, 404);
  });

  test(`${store}: environments: create, retrieve, update, list, archive, delete`, async () => {
    const c = await ctl(store);
    const r = await c.api('/v1/environments', { key: c.apiKey, body: { name: 'e2', config: { type: 'self_hosted' }, metadata: { a: '1' } } });
    assert.equal(r.status, 200);
    assert.equal(r.body.type, 'environment');
    assert.deepEqual(r.body.config, { type: 'self_hosted' });
    const id = r.body.id;
    const u = await c.api(`/v1/environments/${id}`, { key: c.apiKey, body: { description: 'd', metadata: { a: null, b: '2' } } });
    assert.equal(u.body.description, 'd');
    assert.deepEqual(u.body.metadata, { b: '2' });
    const l = await c.api('/v1/environments?limit=1', { key: c.apiKey });
    assert.equal(l.body.data.length, 1);
    assert.ok(l.body.next_page);
    const l2 = await c.api(`/v1/environments?limit=1&page=${l.body.next_page}`, { key: c.apiKey });
    assert.notEqual(l2.body.data[0].id, l.body.data[0].id);
    const a = await c.api(`/v1/environments/${id}/archive`, { key: c.apiKey, method: 'POST' });
    assert.ok(a.body.archived_at);
    const s = await c.api('/v1/sessions', { key: c.apiKey, body: { agent: 'a', environment_id: id } });
    assert.equal(s.status, 400);
    assert.equal(s.body.error.details.error_code, 'environment_archived');
    const d = await c.api(`/v1/environments/${id}`, { key: c.apiKey, method: 'DELETE' });
    assert.deepEqual(d.body, { id, type: 'environment_deleted' });
    assert.equal((await c.api(`/v1/environments/${id}`, { key: c.apiKey })).status, 404);
    const dk = await c.cli(['env', 'create', 'doomed']);
    assert.equal((await c.poll('block_ms=1', 'w', dk.key)).status, 403, 'a key of its own environment only');
    const dd = await c.api(`/v1/environments/${dk.id}`, { key: c.apiKey, method: 'DELETE' });
    assert.equal(dd.status, 200);
    const gone = await c.api(`/v1/environments/${dk.id}/work/poll`, { bearer: dk.key });
    assert.equal(gone.status, 401, 'the key of a deleted environment works no more');
    const envs = await c.cli(['env', 'list']);
    assert.ok(envs.some((e) => e.id === c.envId) && !envs.some((e) => e.id === id));
  });
}

test('plain HTTP on a non-loopback address is refused at start, naming tls', async () => {
  const d = tmpdir('postern-control-refuse-');
  try {
    const f = path.join(d, 'c.yaml');
    writeFileSync(f, `listen_addr: 0.0.0.0:${await freePort()}\nstate_dir: ${d}/state\nstore: sqlite\n`);
    const r = await postern(['control', '-c', f], { timeoutMs: 10000 });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /listen_addr: 0\.0\.0\.0:\d+ is not a loopback address and there is no tls: .*add tls:/);
    const chk = await postern(['check', '-c', f]);
    assert.equal(chk.code, 1);
    assert.match(chk.stderr, /add tls/);
    writeFileSync(f, `listen_addr: 127.0.0.1:0\nstate_dir: ${d}/state\nstore: sqlite\nlease_ttl: 90s\n`);
    const ok = await postern(['check', '-c', f]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /ok \(control\)/);
    writeFileSync(path.join(d, 'bad.pem'), 'not a certificate\n');
    writeFileSync(f, `listen_addr: 127.0.0.1:0\nstate_dir: ${d}/state\nstore: sqlite\ntls: {cert_file: ${d}/bad.pem, key_file: ${d}/bad.pem}\n`);
    const badTls = await postern(['check', '-c', f]);
    assert.equal(badTls.code, 1);
    assert.match(badTls.stderr, /c\.yaml:4: tls: .*bad\.pem/);
    writeFileSync(f, `listen_addr: 127.0.0.1:0\nstate_dir: ${d}/state\nstore: mongo\n`);
    const bad = await postern(['check', '-c', f]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /store: required: "sqlite" or "redis:/);
  } finally { rmrf(d); }
});

test('the metrics listener counts requests by endpoint and status, and the queue', async () => {
  const c = await ctl('sqlite');
  await c.createSession();
  await c.poll('block_ms=1', 'w', 'bad');
  const m = await (await fetch(c.metricsUrl)).text();
  assert.match(m, /postern_control_requests_total\{endpoint="sessions.create",status="200"\} 1/);
  assert.match(m, /postern_control_requests_total\{endpoint="work.poll",status="401"\} 1/);
  assert.match(m, /postern_control_queue_depth 1/);
  assert.match(m, /postern_control_sessions 1/);
  assert.match(m, /postern_control_sse_streams 0/);
});

test('TLS from tls: {cert_file, key_file}: a non-loopback listen_addr is served over TLS only', async () => {
  const pki = tmpdir('postern-control-pki-');
  try {
    const ca = makeCA(pki);
    const leaf = makeLeaf(pki, ca, 'control', ['IP:127.0.0.1', 'DNS:localhost']);
    const port = await freePort();
    const c = await ctl('sqlite', { listen: `0.0.0.0:${port}`, config: { tls: `{cert_file: ${leaf.cert}, key_file: ${leaf.key}}` } });
    assert.match(c.allLogs(), /tls=on/);
    const get = (p, headers) => new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path: p, ca: readFileSync(ca.cert), headers, timeout: 5000 }, (res) => {
        let b = '';
        res.on('data', (d) => { b += d; });
        res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(b), headers: res.headers }));
      });
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.end();
    });
    const r = await get(`/v1/environments/${c.envId}?beta=true`, { 'x-api-key': c.apiKey, 'anthropic-beta': BETA });
    assert.equal(r.status, 200);
    assert.equal(r.body.id, c.envId);
    assert.ok(r.headers['request-id']);
    await assert.rejects(fetch(`http://127.0.0.1:${port}/v1/environments`, { signal: AbortSignal.timeout(3000) }),
      'plain HTTP on the TLS port gets no answer');
  } finally { rmrf(pki); }
});

test('SIGTERM drains: a waiting long poll is answered null, a stream ends, exit 0', async () => {
  const c = await ctl('sqlite');
  const s = await c.createSession();
  await claim(c);
  const st = await c.stream(s.id, { key: c.apiKey });
  const poll = c.poll('block_ms=999');
  await sleep(100);
  const proc = c.proc;
  const exited = proc.kill('SIGTERM');
  const r = await poll;
  assert.equal(r.status, 200);
  assert.equal(r.body, null);
  assert.equal(await st.sse.next(3000), null, 'the stream ended');
  const ex = await exited;
  assert.equal(ex.code, 0, proc.log);
  assert.match(proc.log, /msg="draining"/);
  c.logs += proc.log;
  c.proc = null;
});
