// Two `postern control` replicas on one Redis (store: redis://…, a redis-server of the test's own): one
// environment's queue served through both, worker ids polling through both, every item delivered exactly once
// (after acks), a lease lost on one replica re-offered through the other, and a kill -9 of a replica losing
// nothing it acknowledged (Redis holds it; the other replica answers for it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { BIN, start, postern, freePort, tmpdir, rmrf, waitForPort, sleep, waitUntil, stopAll } from './lib/proc.mjs';
import { startRedis } from './lib/redis.mjs';

const BETA = 'managed-agents-2026-04-01';
let redis, dir, env, apiKey;
const replicas = [];

async function config(name, port) {
  const d = path.join(dir, name);
  mkdirSync(d, { recursive: true });
  const f = path.join(d, 'control.yaml');
  // short lease and reclaim so the test sees expiry and re-offer in seconds
  writeFileSync(f, `listen_addr: 127.0.0.1:${port}\nstate_dir: ${d}\nstore: ${redis.url}\nlease_ttl: 2s\nreclaim_after: 1s\n`);
  return f;
}

async function startReplica(name) {
  const port = await freePort();
  const cfg = await config(name, port);
  const proc = start(BIN, ['control', '-c', cfg], { name });
  await waitForPort(port);
  return { name, port, cfg, proc, base: `http://127.0.0.1:${port}` };
}

// One call; resolves {status, body} (body parsed JSON or null).
async function call(rep, method, p, { bearer, key, worker, body } = {}) {
  const headers = { 'anthropic-beta': BETA };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  if (key) headers['x-api-key'] = key;
  if (worker) headers['anthropic-worker-id'] = worker;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const sep = p.includes('?') ? '&' : '?';
  const r = await fetch(`${rep.base}${p}${sep}beta=true`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(10000),
  });
  const text = await r.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = text; }
  return { status: r.status, body: parsed };
}

const poll = (rep, worker, reclaim = 60000) =>
  call(rep, 'GET', `/v1/environments/${env.id}/work/poll?reclaim_older_than_ms=${reclaim}`, { bearer: env.key, worker });
const ack = (rep, wid) => call(rep, 'POST', `/v1/environments/${env.id}/work/${wid}/ack`, { bearer: env.key });
const beat = (rep, wid, expected, ttl) => call(rep, 'POST',
  `/v1/environments/${env.id}/work/${wid}/heartbeat?expected_last_heartbeat=${encodeURIComponent(expected)}&desired_ttl_seconds=${ttl}`,
  { bearer: env.key });
const getWork = (rep, wid) => call(rep, 'GET', `/v1/environments/${env.id}/work/${wid}`, { key: apiKey });

async function newSession(rep) {
  const r = await call(rep, 'POST', '/v1/sessions', { key: apiKey, body: { environment_id: env.id, agent: 'agent_e2e' } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.id;
}

before(async () => {
  dir = tmpdir('postern-replicas-');
  redis = await startRedis();
  const cfg = await config('admin', await freePort());
  const e = await postern(['control', 'env', 'create', 'replicas', '-c', cfg]);
  assert.equal(e.code, 0, e.stderr);
  env = JSON.parse(e.stdout);
  const k = await postern(['control', 'apikey', 'create', 'replicas', '-c', cfg]);
  assert.equal(k.code, 0, k.stderr);
  apiKey = JSON.parse(k.stdout).key;
  replicas.push(await startReplica('control-a'), await startReplica('control-b'));
});

after(async () => {
  await stopAll();
  if (redis) await redis.cleanup();
  if (dir) rmrf(dir);
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
  assert.equal(offered.id, wid);
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
});

test('kill -9 of a replica loses nothing it acknowledged', async () => {
  const [A, B] = replicas;
  const sid = await newSession(A);
  const p = await poll(A, 'worker-1');
  const wid = p.body.id;
  assert.equal((await ack(A, wid)).status, 200);
  const ev = await call(A, 'POST', `/v1/sessions/${sid}/events`, {
    key: apiKey, body: { events: [{ type: 'user.message', content: [{ type: 'text', text: 'kept' }] }] },
  });
  assert.equal(ev.status, 200, JSON.stringify(ev.body));
  await A.proc.kill('SIGKILL');
  const w = await getWork(B, wid);
  assert.equal(w.status, 200, JSON.stringify(w.body));
  assert.equal(w.body.state, 'starting');
  assert.ok(w.body.acknowledged_at);
  const list = await call(B, 'GET', `/v1/sessions/${sid}/events`, { key: apiKey });
  assert.equal(list.status, 200, JSON.stringify(list.body));
  assert.ok(list.body.data.some((e) => e.type === 'user.message' && JSON.stringify(e).includes('kept')));
  // a new replica in its place serves the same state
  const A2 = await startReplica('control-a2');
  replicas[0] = A2;
  assert.equal((await getWork(A2, wid)).body.state, 'starting');
});
