// Proves the FAKE environments API (fixtures/fake_environments.mjs) speaks the protocol of Anthropic's own SDK
// (@anthropic-ai/sdk 1.10.0, pinned): the SDK's EnvironmentWorker with its SessionToolRunner and the reference
// agent_toolset_20260401 tools claims work from the fake and completes sessions, its lease logic reacts to the
// fake's faults the way the SDK documents, and the SDK's typed resources parse every answer the fake gives.
// Everything runs on loopback; the tools run benign commands in a temp workdir.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { startFakeEnvironments, SERVER_NAME, BETA } from './fixtures/fake_environments.mjs';
import { tmpdir, rmrf } from './lib/proc.mjs';
import { startSdkWorker, runToolCases, checkToolCases, resultText, TOOL_CASES } from './lib/sdk.mjs';

const verbose = !!process.env.POSTERN_TEST_VERBOSE;
const dirs = [];
after(() => { for (const d of dirs) rmrf(d); });

function workdir() {
  const d = tmpdir('postern-sdk-wd-');
  dirs.push(d);
  return d;
}

// An SDK client whose log lines are kept (and printed with POSTERN_TEST_VERBOSE).
function sdkClient(fake, extra = {}) {
  const logs = [];
  const keep = (level) => (msg, ...rest) => {
    logs.push({ level, msg, rest });
    if (verbose) console.error(`[sdk ${level}] ${msg}`, ...rest);
  };
  const client = new Anthropic({
    apiKey: fake.apiKey, baseURL: fake.baseURL, logLevel: 'info', maxRetries: 2,
    logger: { debug: keep('debug'), info: keep('info'), warn: keep('warn'), error: keep('error') }, ...extra,
  });
  return { client, logs };
}

// Starts the SDK's EnvironmentWorker polling the fake's default environment; stop() aborts it and waits.
function startWorker(fake, { tools, maxIdleMs = 400, key = fake.environmentKey } = {}) {
  const wd = workdir();
  const { client, logs } = sdkClient(fake);
  const ac = new AbortController();
  const worker = client.beta.environments.work.worker({
    environmentId: fake.environmentId, environmentKey: key, workdir: wd, maxIdleMs, workerId: 'sdk-worker-1',
    ...(tools ? { tools } : {}),
  });
  const done = worker.run(ac.signal).then(() => null, (e) => e);
  return {
    wd, logs, done,
    async stop() {
      ac.abort();
      return Promise.race([done, new Promise((_, j) => setTimeout(() => j(new Error('worker did not stop in 10 s')), 10000))]);
    },
  };
}

const text = resultText;

// A fake with an in-process SDK worker serving one session: `before(fake)` runs before the session is queued,
// `fn({fake, w, workId, sessionId, sessionsToken})` once its item is active; both are torn down after.
async function withActiveSession({ ttlSeconds = 2, maxIdleMs = 0, before, activeMs = 10000 }, fn) {
  const fake = await startFakeEnvironments({ ttlSeconds });
  const w = startWorker(fake, { maxIdleMs });
  try {
    if (before) before(fake);
    const item = fake.enqueueSession();
    await fake.waitFor(() => fake.work(item.workId).state === 'active', { timeoutMs: activeMs, what: 'the item active' });
    await fn({ fake, w, ...item });
  } finally {
    await w.stop();
    await fake.close();
  }
}
const routesFor = (fake, workId) => fake.requests.filter((r) => r.path.includes(workId)).map((r) => r.route);

test('the SDK worker (its own process) claims a session from the fake and answers every reference tool', async () => {
  const fake = await startFakeEnvironments({ ttlSeconds: 4 });
  const wd = tmpdir('postern-sdk-wd-');
  dirs.push(wd);
  const p = await startSdkWorker({ baseURL: fake.baseURL, environmentId: fake.environmentId, environmentKey: fake.environmentKey, workdir: wd });
  try {
    const { workId, sessionId, sessionsToken } = fake.enqueueSession();
    assert.ok(sessionsToken.startsWith('sk-ant-req-fake-'));
    await fake.waitFor(() => fake.work(workId).state === 'active', { timeoutMs: 15000, what: 'the work item to go active' });

    const driver = {
      toolUse: (name, input) => fake.toolUse(sessionId, name, input).id,
      customToolUse: (name, input) => fake.customToolUse(sessionId, name, input).id,
      result: (id) => fake.waitForResult(sessionId, id, 20000),
    };
    checkToolCases(await runToolCases(driver), wd, wd);

    // An `ask` call waits for its confirmation; a denied one never runs; an unowned tool is left pending.
    const asked = fake.toolUse(sessionId, 'bash', { command: 'echo confirmed' }, { permission: 'ask' });
    const refused = fake.toolUse(sessionId, 'bash', { command: 'echo refused' }, { permission: 'ask' });
    const denied = fake.toolUse(sessionId, 'write', { file_path: 'denied.txt', content: 'no' }, { permission: 'deny' });
    const odd = fake.toolUse(sessionId, 'write', { file_path: 'odd.txt', content: 'no' }, { permission: 'sometimes' });
    const unowned = fake.customToolUse(sessionId, 'someone_elses_tool', {});
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(fake.resultFor(sessionId, asked.id), undefined, 'an ask call is held until confirmed');
    fake.confirm(sessionId, refused.id, 'deny', 'not now');
    fake.confirm(sessionId, asked.id, 'allow');
    assert.equal(resultText(await fake.waitForResult(sessionId, asked.id, 20000)), 'confirmed');
    for (const e of [refused, denied, odd, unowned]) assert.equal(fake.resultFor(sessionId, e.id), undefined, `${e.name} ${e.id} unanswered`);
    assert.equal(existsSync(path.join(wd, 'denied.txt')) || existsSync(path.join(wd, 'odd.txt')), false, 'denied calls never run');

    // An unknown permission is held like `ask` by the SDK (and blocks the idle stop until resolved): deny it.
    fake.confirm(sessionId, odd.id, 'deny');
    // End of turn: the worker stops after maxIdleMs and force-stops the item.
    fake.idle(sessionId);
    await fake.waitFor(() => fake.work(workId).state === 'stopped', { what: 'the worker to stop the item' });
    assert.equal(existsSync(path.join(wd, 'odd.txt')), false);
    const results = fake.workerEvents(sessionId);
    assert.equal(results.length, TOOL_CASES.length + 1, 'one result per answered call, nothing else');
    assert.ok(results.every((e) => e.type === 'user.tool_result' || e.type === 'user.custom_tool_result'));

    // Poll and ack ride the environment key, every per-item call the sessions token.
    for (const q of fake.requests) {
      const expect = q.route === 'poll' || q.route === 'ack' ? 'env' : 'session';
      assert.equal(q.auth, expect, `${q.method} ${q.path} used ${q.auth}`);
    }
    const routes = routesFor(fake, workId);
    assert.deepEqual(routes.slice(0, 2), ['ack', 'heartbeat']);
    assert.equal(routes.at(-1), 'stop');
    assert.ok(fake.requests.some((q) => q.route === 'poll' && q.workerId === 'sdk-worker-1'));
    assert.deepEqual(fake.violations, []);
    assert.equal(p.logs().filter((l) => l.level === 'error').length, 0, JSON.stringify(p.logs().filter((l) => l.level === 'error')));
  } finally {
    assert.deepEqual(await p.kill('SIGTERM'), { code: 0, signal: null }, 'the SDK worker exits 0 on SIGTERM');
    await fake.close();
  }
});

test('the SDK worker skips a terminated session and a healthcheck item but stops both', async () => {
  const fake = await startFakeEnvironments();
  const w = startWorker(fake);
  try {
    const { workId, sessionId } = fake.enqueueSession({ status: 'terminated' });
    const hc = fake.enqueueHealthcheck();
    await fake.waitFor(() => fake.work(workId).state === 'stopped' && fake.work(hc.workId).state === 'stopped',
      { timeoutMs: 15000, what: 'both items stopped' });
    assert.equal(fake.requests.some((q) => q.route === 'events.stream' && q.path.includes(sessionId)), false,
      'no tools run for a terminated session');
    assert.deepEqual(fake.violations, []);
  } finally {
    await w.stop();
    await fake.close();
  }
});

test('a 412 heartbeat loses the lease: the SDK worker releases the item without stopping it', async () => {
  await withActiveSession({ ttlSeconds: 2 /* a beat every 1 s */ }, async ({ fake, w, workId }) => {
    fake.failNextHeartbeat412();
    await fake.waitFor(() => w.logs.find((l) => l.msg.startsWith('lease lost')), { what: 'the lease-lost log line' });
    const lost = w.logs.find((l) => l.msg.startsWith('lease lost'));
    assert.equal(lost.rest[0].server_state, 'active', 'the SDK read error.details.current_state');
    assert.equal(lost.rest[0].server_ttl_seconds, 2);
    await fake.waitFor(() => w.logs.find((l) => l.msg.startsWith('lease lost; released')), { what: 'the release' });
    assert.equal(routesFor(fake, workId).includes('stop'), false, 'a lost lease is not stopped');
    assert.equal(fake.work(workId).state, 'active');
  });
});

test('a sessions token revoked mid-session: the SDK worker gives the item up, and takes it again with a fresh token', async () => {
  await withActiveSession({}, async ({ fake, ...first }) => {
    fake.revokeKey(first.sessionsToken);
    // Whichever per-item call comes next (heartbeat, event stream, send) is refused, and the worker gives up.
    await fake.waitFor(() => fake.requests.some((q) => q.status === 401 && q.auth === 'refused'), { what: 'a refused call' });
    // The lease lapses after its TTL; the fake re-queues the item with a new sessions token.
    await fake.waitFor(() => fake.work(first.workId).deliveries === 2 && fake.work(first.workId).state === 'active',
      { timeoutMs: 15000, what: 'the item re-delivered and active' });
    assert.notEqual(fake.work(first.workId).sessionsToken, first.sessionsToken);
    const ev = fake.toolUse(first.sessionId, 'bash', { command: 'echo still serving' });
    assert.equal(text(await fake.waitForResult(first.sessionId, ev.id)), 'still serving');
  });
});

test('a control-plane stop reaches the SDK worker on its next heartbeat', async () => {
  await withActiveSession({}, async ({ fake, w, workId }) => {
    assert.equal(fake.stopWork(workId).state, 'stopping');
    await fake.waitFor(() => fake.work(workId).state === 'stopped', { what: 'the worker to force-stop it' });
    assert.ok(w.logs.some((l) => l.msg === 'heartbeat signals shutdown' && l.rest[0].state === 'stopping'));
    assert.deepEqual(fake.violations, []);
  });
});

test('the SDK worker rides out 5xx answers and a closed event stream', async () => {
  const before = (fake) => fake.fail5xx(2, { route: 'poll', status: 529 });
  await withActiveSession({ ttlSeconds: 4, before, activeMs: 20000 }, async ({ fake, workId, sessionId }) => {
    assert.equal(fake.requests.filter((q) => q.route === 'poll' && q.status === 529).length, 2);

    fake.fail5xx(1, { route: 'events.send', status: 503 });
    let ev = fake.toolUse(sessionId, 'bash', { command: 'echo one' });
    assert.equal(text(await fake.waitForResult(sessionId, ev.id)), 'one');
    assert.ok(fake.requests.some((q) => q.route === 'events.send' && q.status === 503));

    const streams = () => fake.requests.filter((q) => q.route === 'events.stream').length;
    const before = streams();
    fake.closeStreams(sessionId);
    ev = fake.toolUse(sessionId, 'bash', { command: 'echo two' }); // posted while no stream is open
    assert.equal(text(await fake.waitForResult(sessionId, ev.id)), 'two', 'reconnect + history reconcile');
    assert.ok(streams() > before, 'the runner reopened the stream');

    fake.closeStreams(sessionId, { abrupt: true });
    ev = fake.toolUse(sessionId, 'bash', { command: 'echo three' });
    assert.equal(text(await fake.waitForResult(sessionId, ev.id)), 'three');
    assert.equal(fake.workerEvents(sessionId).length, 3, 'no call answered twice');
    fake.terminate(sessionId);
    await fake.waitFor(() => fake.work(workId).state === 'stopped', { what: 'stop after terminate' });
    assert.deepEqual(fake.violations, []);
  });
});

test('a revoked environment key ends the SDK poller with an authentication error', async () => {
  const fake = await startFakeEnvironments();
  fake.revokeKey(fake.environmentKey);
  const w = startWorker(fake);
  try {
    const err = await Promise.race([w.done, new Promise((r) => setTimeout(() => r('still running'), 10000))]);
    assert.ok(err instanceof Anthropic.AuthenticationError, `got ${err}`);
    assert.equal(err.status, 401);
    assert.equal(err.type, 'authentication_error');
    assert.match(err.requestID, /^req_fake_/);
  } finally {
    await w.stop();
    await fake.close();
  }
});

test('the SDK typed resources parse every answer of the fake', async () => {
  const fake = await startFakeEnvironments({ ttlSeconds: 30 });
  const { client } = sdkClient(fake);
  const env = fake.environmentId;
  const worker = client.withOptions({ apiKey: null, authToken: fake.environmentKey });
  try {
    const { workId, sessionId, sessionsToken } = fake.enqueueSession({ metadata: { team: 'qa' } });
    const item = client.withOptions({ apiKey: null, authToken: sessionsToken });
    const work = worker.beta.environments.work;

    const stats0 = await work.stats(env);
    assert.deepEqual({ ...stats0, oldest_queued_at: typeof stats0.oldest_queued_at },
      { type: 'work_queue_stats', depth: 1, pending: 0, oldest_queued_at: 'string', workers_polling: 0 });

    const polled = await work.poll(env, { 'Anthropic-Worker-ID': 'typed-1', block_ms: 50, reclaim_older_than_ms: 60000 });
    assert.equal(polled.id, workId);
    assert.equal(polled.type, 'work');
    assert.equal(polled.state, 'queued');
    assert.deepEqual(polled.data, { type: 'session', id: sessionId });
    assert.deepEqual(polled.metadata, { team: 'qa' });
    const secret = JSON.parse(Buffer.from(polled.secret, 'base64url').toString());
    assert.deepEqual(secret, { sessions_token: sessionsToken, api_base_url: fake.baseURL });
    assert.equal(await work.poll(env, { 'Anthropic-Worker-ID': 'typed-1', block_ms: 20, reclaim_older_than_ms: 60000 }), null,
      'an empty queue answers JSON null');
    const stats1 = await work.stats(env);
    assert.equal(stats1.depth, 0);
    assert.equal(stats1.pending, 1);
    assert.equal(stats1.workers_polling, 1);

    const acked = await work.ack(workId, { environment_id: env });
    assert.equal(acked.state, 'starting');
    assert.equal(acked.secret, null, 'the secret is only in the poll answer');
    assert.equal(typeof acked.acknowledged_at, 'string');
    await assert.rejects(work.ack(workId, { environment_id: env }), (e) => e instanceof Anthropic.ConflictError && e.type === 'conflict_error');

    const hb = await item.beta.environments.work.heartbeat(workId, { environment_id: env, expected_last_heartbeat: 'NO_HEARTBEAT', desired_ttl_seconds: 20 });
    assert.equal(hb.type, 'work_heartbeat');
    assert.equal(hb.lease_extended, true);
    assert.equal(hb.state, 'active');
    assert.equal(hb.ttl_seconds, 20);
    const hb2 = await item.beta.environments.work.heartbeat(workId, { environment_id: env, expected_last_heartbeat: hb.last_heartbeat });
    assert.ok(hb2.last_heartbeat > hb.last_heartbeat);
    await assert.rejects(item.beta.environments.work.heartbeat(workId, { environment_id: env, expected_last_heartbeat: hb.last_heartbeat }), (e) => {
      assert.ok(e instanceof Anthropic.Beta.Environments.Work.BetaHeartbeatPreconditionFailedError, e.constructor.name);
      assert.equal(e.status, 412);
      assert.equal(e.errorCode, 'heartbeat_precondition_failed');
      assert.deepEqual(e.details.current_state, { state: 'active', ttl_seconds: 20, last_heartbeat: hb2.last_heartbeat, lease_extended: false });
      return true;
    });

    const got = await client.beta.environments.work.retrieve(workId, { environment_id: env });
    assert.equal(got.state, 'active');
    assert.equal(got.latest_heartbeat_at, hb2.last_heartbeat);
    assert.equal(got.secret, null);
    await assert.rejects(worker.beta.environments.work.retrieve(workId, { environment_id: env }),
      (e) => e instanceof Anthropic.PermissionDeniedError && e.type === 'permission_error');
    const upd = await client.beta.environments.work.update(workId, { environment_id: env, metadata: { team: null, run: '7' } });
    assert.deepEqual(upd.metadata, { run: '7' });

    fake.enqueueSession();
    fake.enqueueSession();
    const ids = [];
    for await (const w of work.list(env, { limit: 2 })) ids.push(w.id);
    assert.equal(ids.length, 3, 'the cursor pages through all items');
    assert.equal(ids[0], workId);

    // Sessions: retrieve, list (paged), send, stream.
    const s = await item.beta.sessions.retrieve(sessionId);
    assert.equal(s.id, sessionId);
    assert.equal(s.type, 'session');
    assert.equal(s.environment_id, env);
    assert.deepEqual(s.agent.skills, []);
    assert.deepEqual(s.resources, []);
    const t1 = fake.toolUse(sessionId, 'bash', { command: 'true' });
    const t2 = fake.toolUse(sessionId, 'read', { file_path: 'x' }, { permission: 'ask' });
    const stream = await item.beta.sessions.events.stream(sessionId);
    const sent = await item.beta.sessions.events.send(sessionId, { events: [
      { type: 'user.tool_result', tool_use_id: t1.id, content: [{ type: 'text', text: 'ok' }], is_error: false }] });
    assert.equal(sent.data.length, 1);
    assert.equal(sent.data[0].type, 'user.tool_result');
    assert.match(sent.data[0].id, /^sevt_/);
    const seen = [];
    for await (const ev of stream) { seen.push(ev); if (seen.length === 1) break; }
    assert.equal(seen[0].id, sent.data[0].id, 'the stream delivers events posted after it opened');
    const listed = [];
    for await (const ev of item.beta.sessions.events.list(sessionId, { limit: 1 })) listed.push(ev);
    assert.deepEqual(listed.map((e) => e.type), ['agent.tool_use', 'agent.tool_use', 'user.tool_result']);
    assert.equal(listed[1].evaluated_permission, 'ask');
    assert.equal(listed[1].id, t2.id);
    const desc = await item.beta.sessions.events.list(sessionId, { limit: 10, order: 'desc' });
    assert.equal(desc.data[0].type, 'user.tool_result');

    // Errors the SDK maps to its classes, all with a request id.
    await assert.rejects(item.beta.sessions.events.send(sessionId, { events: [
      { type: 'user.tool_result', tool_use_id: 'sevt_nope', content: [{ type: 'text', text: 'x' }] }] }),
    (e) => e instanceof Anthropic.BadRequestError && e.type === 'invalid_request_error' && /sevt_nope/.test(e.message));
    await assert.rejects(item.beta.sessions.retrieve('sesn_other'), (e) => e instanceof Anthropic.NotFoundError);
    await assert.rejects(work.poll(env, { block_ms: 5000 }), (e) => e instanceof Anthropic.BadRequestError && /block_ms/.test(e.message));
    await assert.rejects(item.beta.environments.work.poll(env), (e) => e instanceof Anthropic.PermissionDeniedError);

    const stopped = await item.beta.environments.work.stop(workId, { environment_id: env, force: true });
    assert.equal(stopped.state, 'stopped');
    assert.equal(typeof stopped.stopped_at, 'string');
    await assert.rejects(item.beta.environments.work.stop(workId, { environment_id: env }), (e) => e instanceof Anthropic.ConflictError);
    const hb3 = await item.beta.environments.work.heartbeat(workId, { environment_id: env, expected_last_heartbeat: 'anything' });
    assert.deepEqual([hb3.state, hb3.lease_extended], ['stopped', false], 'a stopped item is not compared, not extended');

    // The violations here were ours: the deliberate result for an unknown call, the heartbeat after our stop.
    assert.deepEqual(fake.violations.map((v) => v.rule), ['result-pairing', 'heartbeat-after-stop']);
  } finally {
    await fake.close();
  }
});

test('the fake marks itself and records protocol mistakes', async () => {
  const fake = await startFakeEnvironments();
  try {
    const base = { authorization: `Bearer ${fake.environmentKey}`, 'anthropic-beta': BETA };
    let r = await fetch(`${fake.baseURL}/v1/environments/${fake.environmentId}/work/stats?beta=true`, { headers: base });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('server'), SERVER_NAME);
    assert.match(r.headers.get('request-id'), /^req_fake_/);

    r = await fetch(`${fake.baseURL}/v1/environments/${fake.environmentId}/work/poll`, { headers: { authorization: base.authorization } });
    assert.equal(r.status, 400);
    assert.deepEqual(Object.keys(await r.json()), ['type', 'error']);
    r = await fetch(`${fake.baseURL}/v1/environments/${fake.environmentId}/work/poll`, { headers: base });
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'null');
    r = await fetch(`${fake.baseURL}/v1/nowhere`, { headers: base });
    assert.equal(r.status, 404);
    assert.equal((await r.json()).error.type, 'not_found_error');
    r = await fetch(`${fake.baseURL}/v1/environments/${fake.environmentId}/work/stats`,
      { headers: { ...base, 'x-api-key': fake.apiKey } });
    assert.equal(r.status, 200);
    assert.deepEqual(fake.violations.map((v) => v.rule), ['beta-header', 'worker-id', 'path', 'one-credential']);
  } finally {
    await fake.close();
  }
});

// Reads SSE frames from a fetch response until `want` frames arrived (bounded by the signal).
async function readFrames(res, want) {
  const dec = new TextDecoder();
  let buf = '';
  const frames = [];
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const f = {};
      for (const line of buf.slice(0, i).split('\n')) {
        const c = line.indexOf(':');
        f[line.slice(0, c)] = line.slice(c + 1).trimStart();
      }
      frames.push(f);
      buf = buf.slice(i + 2);
    }
    if (frames.length >= want) break;
  }
  return frames;
}

test('the fake event stream resumes after Last-Event-ID, pings, and caps request bodies', async () => {
  const fake = await startFakeEnvironments({ pingMs: 100, maxBody: 4096 });
  try {
    const { sessionId, sessionsToken } = fake.enqueueSession();
    const headers = { authorization: `Bearer ${sessionsToken}`, 'anthropic-beta': BETA };
    const a = fake.toolUse(sessionId, 'bash', { command: 'true' });
    const b = fake.toolUse(sessionId, 'bash', { command: 'false' });
    const url = `${fake.baseURL}/v1/sessions/${sessionId}/events/stream`;
    let res = await fetch(url, { headers: { ...headers, 'last-event-id': '1' }, signal: AbortSignal.timeout(5000) });
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    let frames = await readFrames(res, 1);
    assert.deepEqual([frames[0].event, frames[0].id, JSON.parse(frames[0].data).id], ['agent.tool_use', '2', b.id],
      'the replay starts right after the given id');
    await res.body.cancel();

    res = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
    const reading = readFrames(res, 3);
    await fake.waitFor(() => fake.session(sessionId).streams.size === 1, { what: 'the stream attached' });
    const c = fake.idle(sessionId);
    fake.injectRaw(sessionId, 'event: agent.tool_use\ndata: {not json\n\n');
    frames = (await reading).filter((f) => f.event !== 'ping');
    assert.deepEqual(frames.map((f) => f.event), ['session.status_idle', 'agent.tool_use'], 'no replay without Last-Event-ID');
    assert.equal(JSON.parse(frames[0].data).id, c.id);
    assert.equal(frames[0].id, '3');
    assert.equal(frames[1].data, '{not json');
    await res.body.cancel();
    res = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
    frames = await readFrames(res, 1);
    assert.equal(frames[0].event, 'ping');
    await res.body.cancel();

    res = await fetch(url, { headers: { ...headers, 'last-event-id': '99' } });
    assert.equal(res.status, 400);
    assert.match((await res.json()).error.message, /Last-Event-ID/);

    res = await fetch(`${fake.baseURL}/v1/sessions/${sessionId}/events`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify({ events: [{ type: 'user.tool_result', tool_use_id: a.id, content: [{ type: 'text', text: 'x'.repeat(8192) }] }] }) });
    assert.equal(res.status, 413);
    const err = await res.json();
    assert.equal(err.error.type, 'request_too_large');
    assert.match(err.error.message, /truncate/);
    assert.equal(fake.resultFor(sessionId, a.id), undefined);
    assert.deepEqual(fake.violations, []);
  } finally {
    await fake.close();
  }
});
