// `postern control`'s last two protocol gaps of issue 13, black box, on every store in `stores`:
// (1) a work item handed out again (a missed ack's re-offer, a lease that ran out, either across a kill -9 of
// the control plane) gets a new sessions token, and the old one is 401 at once, for every call it could make;
// (2) two control processes on one store (two SQLite connections on one file, two replicas on one Redis)
// racing different results for one agent.tool_use store exactly one; the loser gets the 400 naming the call,
// and the same result raced from both is stored once. docs/control.md, "Credentials" and "Input checks".
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startControl, stores, sessionsToken, stopSharedRedis } from './lib/control.mjs';
import { stopAll, sleep } from './lib/proc.mjs';

const live = [];
async function ctl(store, opts = {}) {
  const c = await startControl({ store, ...opts });
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

const wpath = (c, w, tail = '') => `/v1/environments/${c.envId}/work/${w.id}${tail}`;
async function claim(c, worker, q = 'block_ms=999') {
  const r = await c.poll(q, worker);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.ok(r.body && r.body.id, `no work for ${worker}: ${JSON.stringify(r.body)}`);
  return r.body;
}
const toolUse = (id) => ({ type: 'agent.tool_use', id, name: 'bash', input: { command: 'true' } });
const result = (id, text) => ({ type: 'user.tool_result', tool_use_id: id, content: [{ type: 'text', text }] });

// Every call a sessions token could make on its item and session: all must be 401 (a stop too: a 409 would
// mean it may still act on the item, and a 200 would stop the new holder's work), but its item's heartbeat,
// which is the protocol's "lease lost" 412 (the SDK and postern worker release without a stop on it), and
// changes nothing.
async function assertDead(c, w, sid, tok, why) {
  const before = (await c.api(wpath(c, w), { key: c.apiKey })).body;
  for (const expected of ['NO_HEARTBEAT', before.latest_heartbeat_at || 'x']) {
    const hb = await c.api(wpath(c, w, `/heartbeat?expected_last_heartbeat=${encodeURIComponent(expected)}`), { bearer: tok, method: 'POST' });
    assert.equal(hb.status, 412, `${why}: the old holder's heartbeat: ${hb.status} ${JSON.stringify(hb.body)}`);
    assert.equal(hb.body.error.details.error_code, 'heartbeat_precondition_failed');
    assert.equal(hb.body.error.details.current_state.lease_extended, false);
    assert.equal(hb.body.error.details.current_state.state, before.state);
  }
  const afterBeat = (await c.api(wpath(c, w), { key: c.apiKey })).body;
  assert.deepEqual([afterBeat.state, afterBeat.latest_heartbeat_at], [before.state, before.latest_heartbeat_at], 'the beat changed nothing');
  const calls = [
    ['GET', `/v1/sessions/${sid}`], ['GET', `/v1/sessions/${sid}/events`],
    ['POST', `/v1/sessions/${sid}/events`, { events: [result('toolu_dead', 'late')] }],
    ['POST', wpath(c, w, '/ack')], ['POST', wpath(c, w, '/stop'), { force: true }], ['GET', wpath(c, w)],
  ];
  for (const [method, p, body] of calls) {
    const r = await c.api(p, { bearer: tok, method, body });
    assert.equal(r.status, 401, `${why}: ${method} ${p} with the old token: ${r.status} ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.type, 'authentication_error');
    assert.match(r.body.error.message, /offered again/, `${why}: ${JSON.stringify(r.body)}`);
  }
  const st = await c.stream(sid, { bearer: tok });
  assert.equal(st.status, 401, `${why}: the event stream with the old token`);
  st.close();
}

for (const store of stores) {
  test(`${store}: a missed ack's re-offer mints a new sessions token; the first taker's is 401 at once`, async () => {
    const c = await ctl(store);
    const s = await c.createSession();
    const w1 = await claim(c, 'w-a');
    const t1 = sessionsToken(w1);
    assert.equal((await c.api(`/v1/sessions/${s.id}`, { bearer: t1 })).status, 200, 'the first token works while it is the holder\'s');
    const w2 = await claim(c, 'w-b', 'block_ms=999&reclaim_older_than_ms=0');
    assert.equal(w2.id, w1.id, 'the same item, re-offered');
    const t2 = sessionsToken(w2);
    assert.notEqual(t2, t1, 'a re-offer carries a new sessions token');
    await assertDead(c, w1, s.id, t1, 'after a missed ack');
    // the new holder's token works, and the item is still live (the old token's stop did nothing)
    const ack = await c.api(wpath(c, w2, '/ack'), { bearer: t2, method: 'POST' });
    assert.equal(ack.status, 200, JSON.stringify(ack.body));
    const hb = await c.api(wpath(c, w2, '/heartbeat?expected_last_heartbeat=NO_HEARTBEAT'), { bearer: t2, method: 'POST' });
    assert.equal(hb.status, 200, JSON.stringify(hb.body));
    assert.equal(hb.body.state, 'active');
    // the environment key still works for every worker: only the token is bound to the holder
    assert.equal((await c.api(wpath(c, w2), { key: c.apiKey })).body.state, 'active');
  });

  test(`${store}: a lease that ran out: the old holder's token is 401 as soon as the item is queued again`, async () => {
    const c = await ctl(store, { config: { lease_ttl: '2s' } });
    const s = await c.createSession();
    const w1 = await claim(c, 'w-a');
    const t1 = sessionsToken(w1);
    assert.equal((await c.api(wpath(c, w1, '/ack'), { bearer: t1, method: 'POST' })).status, 200);
    const hb = await c.api(wpath(c, w1, '/heartbeat?expected_last_heartbeat=NO_HEARTBEAT&desired_ttl_seconds=1'),
      { bearer: t1, method: 'POST' });
    assert.equal(hb.status, 200, JSON.stringify(hb.body));
    const use = await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey, body: { events: [toolUse('toolu_L1')] } });
    assert.equal(use.status, 200);
    const useId = use.body.data[0].id;
    // the lease runs out (1 s) and the timer (lease_ttl/4) queues the item again: nobody has polled it yet
    let state = '';
    for (let i = 0; i < 100 && state !== 'queued'; i++) {
      await sleep(100);
      state = (await c.api(wpath(c, w1), { key: c.apiKey })).body.state;
    }
    assert.equal(state, 'queued', 'the expired lease put the item back in the queue');
    await assertDead(c, w1, s.id, t1, 'after the lease ran out');
    // the holder that lost the lease cannot answer the call with its token; the next taker can
    const late = await c.api(`/v1/sessions/${s.id}/events`, { bearer: t1, body: { events: [result(useId, 'stale')] } });
    assert.equal(late.status, 401);
    const w2 = await claim(c, 'w-b');
    assert.equal(w2.id, w1.id);
    const t2 = sessionsToken(w2);
    assert.notEqual(t2, t1);
    assert.equal((await c.api(wpath(c, w2, '/ack'), { bearer: t2, method: 'POST' })).status, 200);
    const ok = await c.api(`/v1/sessions/${s.id}/events`, { bearer: t2, body: { events: [result(useId, 'fresh')] } });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const log = await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey });
    const results = log.body.data.filter((e) => e.type === 'user.tool_result');
    assert.deepEqual(results.map((e) => e.content[0].text), ['fresh'], 'only the new holder answered');
    assert.equal((await c.api(wpath(c, w2, '/stop'), { bearer: t2, body: { force: true } })).status, 200);
  });

  test(`${store}: across a kill -9 of the control plane the holder keeps its token, and a re-offer after it still rotates`, async () => {
    const c = await ctl(store);
    const a = await c.createSession();
    const wa = await claim(c, 'w-a');
    const ta = sessionsToken(wa);
    assert.equal((await c.api(wpath(c, wa, '/ack'), { bearer: ta, method: 'POST' })).status, 200);
    const hb = await c.api(wpath(c, wa, '/heartbeat?expected_last_heartbeat=NO_HEARTBEAT'), { bearer: ta, method: 'POST' });
    assert.equal(hb.status, 200);
    const b = await c.createSession();
    const wb = await claim(c, 'w-b');
    assert.equal(wb.data.id, b.id);
    const tb = sessionsToken(wb);
    await c.kill9();
    await c.restart();
    // the live lease and its token survive the restart
    const hb2 = await c.api(wpath(c, wa, `/heartbeat?expected_last_heartbeat=${encodeURIComponent(hb.body.last_heartbeat)}`),
      { bearer: ta, method: 'POST' });
    assert.equal(hb2.status, 200, JSON.stringify(hb2.body));
    assert.equal((await c.api(`/v1/sessions/${a.id}`, { bearer: ta })).status, 200);
    // the delivered, unacknowledged item is re-offered after the restart with a new token
    const wb2 = await claim(c, 'w-c', 'block_ms=999&reclaim_older_than_ms=0');
    assert.equal(wb2.id, wb.id);
    assert.notEqual(sessionsToken(wb2), tb);
    await assertDead(c, wb, b.id, tb, 'after a restart and a re-offer');
    assert.equal((await c.api(wpath(c, wb2, '/ack'), { bearer: sessionsToken(wb2), method: 'POST' })).status, 200);
  });

  test(`${store}: two control processes on one store racing different results for one tool use store one`, async (t) => {
    const a = await ctl(store, { config: { log_level: 'debug' } });
    const cfg = readFileSync(a.cfgPath, 'utf8');
    const keys = { envId: a.envId, envKey: a.envKey, envKeyId: a.envKeyId, apiKey: a.apiKey, apiKeyId: a.apiKeyId };
    // SQLite: a second daemon on the same state_dir (its own connection to the file); Redis: a replica on the same db
    const b = store === 'redis'
      ? await ctl(store, { keys, name: 'control-b', redisUrl: JSON.parse(/^store: (.*)$/m.exec(cfg)[1]), config: { log_level: 'debug' } })
      : await ctl(store, { keys, name: 'control-b', dir: a.dir, config: { log_level: 'debug' } });
    const s = await a.createSession();
    const n = 40;
    const up = await a.api(`/v1/sessions/${s.id}/events`, { key: a.apiKey,
      body: { events: Array.from({ length: 2 * n }, (_, i) => toolUse(`toolu_${i}`)) } });
    assert.equal(up.status, 200, JSON.stringify(up.body));
    // the server names events: a result answers the stored id
    const ids = up.body.data.slice(0, n).map((e) => e.id);
    const same = up.body.data.slice(n).map((e) => e.id);
    const post = (c, ev) => c.api(`/v1/sessions/${s.id}/events`, { bearer: a.envKey, body: { events: [ev] }, timeoutMs: 30000 });
    // every pair at once: a different result through each process
    const diff = await Promise.all(ids.map((id) => Promise.all([post(a, result(id, `from a ${id}`)), post(b, result(id, `from b ${id}`))])));
    // and the same result through both (a retry whose first answer was lost, racing itself)
    const dup = await Promise.all(same.map((id) => Promise.all([post(a, result(id, `one ${id}`)), post(b, result(id, `one ${id}`))])));
    const log = await a.api(`/v1/sessions/${s.id}/events?limit=1000`, { key: a.apiKey });
    assert.equal(log.status, 200);
    const stored = new Map();
    for (const e of log.body.data.filter((x) => x.type === 'user.tool_result')) {
      stored.set(e.tool_use_id, [...(stored.get(e.tool_use_id) || []), e]);
    }
    let both = 0;
    ids.forEach((id, i) => {
      const [ra, rb] = diff[i];
      const got = stored.get(id) || [];
      if (got.length > 1) both++;
      assert.equal(got.length, 1, `${id}: ${got.length} results stored: ${got.map((e) => e.content[0].text).join(' | ')}`);
      const codes = [ra.status, rb.status].sort();
      assert.deepEqual(codes, [200, 400], `${id}: answers ${ra.status} ${JSON.stringify(ra.body)} / ${rb.status} ${JSON.stringify(rb.body)}`);
      const [win, lose] = ra.status === 200 ? [ra, rb] : [rb, ra];
      assert.equal(win.body.data[0].id, got[0].id, `${id}: the 200 is the stored result`);
      assert.equal(got[0].content[0].text, win.body.data[0].content[0].text);
      assert.equal(lose.body.error.type, 'invalid_request_error');
      assert.match(lose.body.error.message, new RegExp(`${id} is already answered`));
    });
    assert.equal(both, 0);
    // how often the store's atomic check, not the API's first look, decided (it varies run to run)
    const raced = (a.allLogs() + b.allLogs()).match(/a result lost a race for its call/g)?.length || 0;
    t.diagnostic(`${store}: ${raced} posts lost the race inside the store and were checked again`);
    same.forEach((id, i) => {
      const [ra, rb] = dup[i];
      const got = stored.get(id) || [];
      assert.equal(got.length, 1, `${id}: the same result raced is stored ${got.length} times`);
      assert.deepEqual([ra.status, rb.status], [200, 200], `${id}: ${JSON.stringify(ra.body)} / ${JSON.stringify(rb.body)}`);
      assert.equal(ra.body.data[0].id, got[0].id);
      assert.equal(rb.body.data[0].id, got[0].id, `${id}: both answers carry the one stored event`);
    });
  });
}
