// Two `postern control` replicas on one Redis (store: redis://…, a redis-server of the test's own): one
// environment's queue served through both, worker ids polling through both, every item delivered exactly once
// (after acks), a lease lost on one replica re-offered through the other, and a kill -9 of a replica losing
// nothing it acknowledged (Redis holds it; the other replica answers for it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { postern, rmrf, sleep, tmpdir, waitUntil } from './lib/proc.mjs';
import { startRedis, command } from './lib/redis.mjs';
import { startControl } from './lib/control.mjs';

let redis, env, apiKey;
const replicas = [];

// A replica on the test's Redis; the first one's environment and API key serve for all (they share the store).
async function startReplica(name) {
  const c = await startControl({ store: 'redis', redisUrl: redis.url, name, envName: name,
    config: { lease_ttl: '2s', reclaim_after: '1s' } });
  if (!env) {
    env = { id: c.envId, key: c.envKey };
    apiKey = c.apiKey;
  }
  return c;
}

const call = (rep, method, p, { bearer, key, worker, body } = {}) =>
  rep.api(p, { method, bearer, key, body, headers: worker ? { 'Anthropic-Worker-ID': worker } : {} });

const poll = (rep, worker, reclaim = 60000) =>
  call(rep, 'GET', `/v1/environments/${env.id}/work/poll?reclaim_older_than_ms=${reclaim}`, { bearer: env.key, worker });
const ack = (rep, wid) => call(rep, 'POST', `/v1/environments/${env.id}/work/${wid}/ack`, { bearer: env.key });
const beat = (rep, wid, expected, ttl) => call(rep, 'POST',
  `/v1/environments/${env.id}/work/${wid}/heartbeat?expected_last_heartbeat=${encodeURIComponent(expected)}&desired_ttl_seconds=${ttl}`,
  { bearer: env.key });
// The worker is done: stopped, so an acknowledged item never beaten does not come back after lease_ttl.
const finish = async (rep, wid) => assert.equal((await call(rep, 'POST', `/v1/environments/${env.id}/work/${wid}/stop`,
  { bearer: env.key, body: { force: true } })).status, 200);
const getWork = (rep, wid) => call(rep, 'GET', `/v1/environments/${env.id}/work/${wid}`, { key: apiKey });

async function newSession(rep) {
  const r = await call(rep, 'POST', '/v1/sessions', { key: apiKey, body: { environment_id: env.id, agent: 'agent_e2e' } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.id;
}

before(async () => {
  redis = await startRedis();
  replicas.push(await startReplica('control-a'), await startReplica('control-b'));
});

after(async () => {
  for (const c of replicas) await c.stop();
  if (redis) await redis.cleanup();
});

test('two replicas, one queue: N items through both, each delivered exactly once', async () => {
  const [A, B] = replicas;
  const N = 12;
  const sessions = new Set();
  for (let i = 0; i < N; i++) sessions.add(await newSession(i % 2 ? A : B));
  const delivered = new Map(); // work id -> times delivered
  const workers = ['worker-1', 'worker-2', 'worker-3'];
  for (let i = 0; i < 4 * N && delivered.size < N; i++) {
    const via = replicas[i % 2], other = replicas[(i + 1) % 2];
    const r = await poll(via, workers[i % 3]);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    if (r.body === null) continue;
    assert.ok(sessions.has(r.body.data.id), `a session of this test: ${r.body.data.id}`);
    assert.equal(typeof r.body.secret, 'string');
    delivered.set(r.body.id, (delivered.get(r.body.id) || 0) + 1);
    const a = await ack(other, r.body.id); // acknowledged through the other replica
    assert.equal(a.status, 200, JSON.stringify(a.body));
    await finish(via, r.body.id);
  }
  assert.equal(delivered.size, N);
  for (const [id, n] of delivered) assert.equal(n, 1, `${id} delivered ${n} times`);
  // nothing left for anyone, through either replica
  for (const rep of replicas) assert.equal((await poll(rep, 'worker-4')).body, null);
  const st = await call(B, 'GET', `/v1/environments/${env.id}/work/stats`, { key: apiKey });
  assert.equal(st.status, 200, JSON.stringify(st.body));
  assert.equal(st.body.depth, 0);
  assert.equal(st.body.pending, 0);
  assert.ok(st.body.workers_polling >= 3, `workers_polling ${st.body.workers_polling}`);
});

test('a missed ack on one replica is re-offered through the other', async () => {
  const [A, B] = replicas;
  await newSession(A);
  const r = await poll(A, 'worker-1', 60000);
  assert.ok(r.body && r.body.id);
  assert.equal((await poll(B, 'worker-2', 60000)).body, null); // delivered a moment ago: not yet
  await sleep(600);
  const again = await poll(B, 'worker-2', 500);
  assert.equal(again.body && again.body.id, r.body.id);
  assert.equal((await ack(B, r.body.id)).status, 200);
  assert.equal((await ack(A, r.body.id)).status === 200, false); // once only
  await finish(A, r.body.id);
});

test('a lease lost on one replica is re-offered through the other', async () => {
  const [A, B] = replicas;
  await newSession(B);
  const r = await poll(A, 'worker-1');
  const wid = r.body.id;
  assert.equal((await ack(A, wid)).status, 200);
  const b1 = await beat(A, wid, 'NO_HEARTBEAT', 1);
  assert.equal(b1.status, 200, JSON.stringify(b1.body));
  assert.equal(b1.body.lease_extended, true);
  // worker-1 goes silent: after the 1 s lease a replica's expiry timer puts the item back
  let offered = null;
  await waitUntil(async () => {
    const p = await poll(B, 'worker-2');
    if (p.body) offered = p.body;
    return offered !== null;
  }, 15000, 200, 'the expired item offered through the other replica');
  assert.equal(offered.id, wid); // the only item of this environment not stopped
  assert.equal(offered.state, 'queued');
  assert.equal((await ack(B, wid)).status, 200);
  const b2 = await beat(B, wid, 'NO_HEARTBEAT', 30);
  assert.equal(b2.status, 200, JSON.stringify(b2.body));
  // the old holder's echo is stale on either replica: 412 with the lease as it is now
  for (const rep of replicas) {
    const old = await beat(rep, wid, b1.body.last_heartbeat, 30);
    assert.equal(old.status, 412, JSON.stringify(old.body));
    assert.equal(old.body.error.details.current_state.state, 'active');
    assert.equal(old.body.error.details.current_state.last_heartbeat, b2.body.last_heartbeat);
  }
  await finish(B, wid);
});

test('kill -9 of a replica loses nothing it acknowledged', async () => {
  const [A, B] = replicas;
  const sid = await newSession(A);
  const p = await poll(A, 'worker-1');
  const wid = p.body.id;
  assert.equal((await ack(A, wid)).status, 200);
  assert.equal((await beat(A, wid, 'NO_HEARTBEAT', 600)).status, 200); // a lease that outlives the test
  const ev = await call(A, 'POST', `/v1/sessions/${sid}/events`, {
    key: apiKey, body: { events: [{ type: 'user.message', content: [{ type: 'text', text: 'kept' }] }] },
  });
  assert.equal(ev.status, 200, JSON.stringify(ev.body));
  await A.kill9();
  const w = await getWork(B, wid);
  assert.equal(w.status, 200, JSON.stringify(w.body));
  assert.equal(w.body.state, 'active');
  assert.ok(w.body.acknowledged_at);
  const list = await call(B, 'GET', `/v1/sessions/${sid}/events`, { key: apiKey });
  assert.equal(list.status, 200, JSON.stringify(list.body));
  assert.ok(list.body.data.some((e) => e.type === 'user.message' && JSON.stringify(e).includes('kept')));
  // a new replica in its place serves the same state
  // the killed replica back on its config serves the same state
  await A.restart();
  assert.equal((await getWork(A, wid)).body.state, 'active');
});

test('consumers whose workers are gone leave the group: idle with nothing pending; one holding an item stays', async () => {
  // its own environment and database, lease_ttl 1s: a sweep every second, consumers idle over 5 s go
  const c = await startControl({ store: 'redis', redisUrl: `${redis.url}/7`, name: 'control-sweep', envName: 'sweep',
    config: { lease_ttl: '1s' } });
  replicas.push(c);
  const q = `postern:q:${c.envId}`;
  const consumers = async () => {
    // one connection per command: the script selects the database itself
    return command(redis.port, ['EVAL', "redis.call('SELECT', 7) return cjson.encode(redis.call('XINFO', 'CONSUMERS', KEYS[1], 'workers'))", '1', q]);
  };
  const cpoll = (worker) => c.api(`/v1/environments/${c.envId}/work/poll?block_ms=1&reclaim_older_than_ms=600000`,
    { bearer: c.envKey, headers: { 'Anthropic-Worker-ID': worker } });
  await c.createSession();
  const done = await cpoll('w-done');
  assert.ok(done.body?.id, JSON.stringify(done.body));
  assert.equal((await c.api(`/v1/environments/${c.envId}/work/${done.body.id}/ack`, { bearer: c.envKey, method: 'POST' })).status, 200);
  await c.createSession();
  const held = await cpoll('w-holding'); // delivered, never acked: pending on w-holding
  assert.ok(held.body?.id, JSON.stringify(held.body));
  const before = await consumers();
  for (const w of ['w-done', 'w-holding']) assert.ok(before.includes(`"name","${w}"`), `${w} in ${before}`);
  // (a poll that gets nothing makes no consumer, so only workers that were given an item are in the group)
  let after = '';
  for (let i = 0; i < 40; i++) {
    after = await consumers();
    if (!after.includes('"name","w-done"')) break;
    await sleep(500);
  }
  assert.ok(!after.includes('"name","w-done"'), `the idle consumer stayed: ${after}`);
  assert.match(after, /"name","w-holding","pending",1/, 'a consumer with a pending entry stays');
  assert.match(c.allLogs(), /msg="idle consumers removed" count=\d+/);
  // the item w-holding has is still re-offered to another worker (the group's pending list kept it)
  const again = await c.api(`/v1/environments/${c.envId}/work/poll?block_ms=1&reclaim_older_than_ms=0`,
    { bearer: c.envKey, headers: { 'Anthropic-Worker-ID': 'w-new' } });
  assert.equal(again.body?.id, held.body.id);
});

test('Redis AUTH: redis_password_file (0600) for requirepass and for an ACL user; refusals say why, never the password', async () => {
  const pw = 'top-secret-pw-1234';
  const upw = 'user-secret-pw-5678';
  const r = await startRedis(['--requirepass', pw, '--user', 'postern', 'on', `>${upw}`, '~*', '&*', '+@all']);
  const dir = tmpdir('postern-redis-auth-');
  const live = [];
  try {
    const file = (name, text, mode = 0o600) => { const p = path.join(dir, name); writeFileSync(p, text, { mode }); chmodSync(p, mode); return p; };
    const pwf = file('pw', `${pw}\n`);
    const upwf = file('upw', `${upw}\n`);
    // the default user with requirepass, and an ACL user named in the URL
    for (const [url, f] of [[`${r.url}/1`, pwf], [`redis://postern@127.0.0.1:${r.port}/2`, upwf]]) {
      const c = await startControl({ store: 'redis', redisUrl: url, name: 'control-auth', config: { redis_password_file: f } });
      live.push(c);
      const s = await c.createSession();
      const ev = await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey,
        body: { events: [{ type: 'agent.message', content: [{ type: 'text', text: 'authed' }] }] } });
      assert.equal(ev.status, 200, JSON.stringify(ev.body));
    }
    // refusals, each by the admin command (the daemon's loader and store open)
    const cfg = (url, extra = []) => file(`c${Math.random()}.yaml`, [`listen_addr: 127.0.0.1:1`, `state_dir: ${path.join(dir, 'st')}`,
      `store: ${JSON.stringify(url)}`, ...extra].join('\n') + '\n', 0o644);
    const refused = async (c, re) => {
      const out = await postern(['control', 'env', 'list', '-c', c], { timeoutMs: 20000 });
      assert.notEqual(out.code, 0, out.stdout);
      assert.match(out.stderr, re);
      for (const secret of [pw, upw]) assert.ok(!out.stderr.includes(secret), `the password is in: ${out.stderr}`);
    };
    await refused(cfg(`${r.url}/1`), /NOAUTH/);
    await refused(cfg(`${r.url}/1`, [`redis_password_file: ${file('bad', 'not-it\n')}`]), /AUTH refused: WRONGPASS/);
    await refused(cfg(`redis://postern@127.0.0.1:${r.port}/2`, [`redis_password_file: ${pwf}`]), /AUTH as postern refused: WRONGPASS/);
    await refused(cfg(`${r.url}/1`, [`redis_password_file: ${file('open', `${pw}\n`, 0o644)}`]), /open\S* is readable by all users \(mode 0644\): it holds a secret; run chmod 600 /);
    await refused(cfg(`redis://postern:${upw}@127.0.0.1:${r.port}/2`), /a password in the URL is refused/);
    await refused(cfg(`redis://postern@127.0.0.1:${r.port}/2`), /a user without a password/);
    await refused(cfg('sqlite', [`redis_password_file: ${pwf}`]), /only for a redis:\/\/ store/);
    for (const c of live) for (const secret of [pw, upw]) assert.ok(!c.allLogs().includes(secret), 'a password in the log');
  } finally {
    for (const c of live) await c.stop();
    await r.cleanup();
    rmrf(dir);
  }
});
