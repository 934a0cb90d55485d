// `postern control` against Anthropic's own SDK (@anthropic-ai/sdk 1.10.0, pinned), the peer nobody here wrote:
// (a) the SDK's EnvironmentWorker, unmodified, claims work from postern control and completes a session (poll,
// ack, heartbeat, event stream, results) with its reference tools; (b) the SDK's typed resources call every
// endpoint of postern control and parse the answers; (c) postern worker answers the same calls through postern
// control with the result shapes the SDK's tools give, but for the differences listed in lib/sdk.mjs
// (POSTERN_VS_SDK) and docs/worker.md. All on loopback, SQLite store in a temp state_dir.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { stopAll, tmpdir, rmrf, sleep } from './lib/proc.mjs';
import { startControl } from './lib/control.mjs';
import { startSdkWorker, startPosternWorker, runToolCases, checkToolCases, compareResults, resultText, TOOL_CASES,
  POSTERN_VS_SDK } from './lib/sdk.mjs';

const dirs = [];
after(async () => {
  for (const c of controls) await c.stop();
  await stopAll();
  for (const d of dirs) rmrf(d);
});

// postern control (tests/e2e/lib/control.mjs: a temp state_dir, an environment and an API key made by its CLI).
const controls = [];
async function control({ leaseTtl = '4s', reclaimAfter = '1s' } = {}) {
  const c = await startControl({ config: { lease_ttl: leaseTtl, reclaim_after: reclaimAfter }, envName: 'sdk-env' });
  controls.push(c);
  return c;
}

// The fields the SDK 1.10.0 types declare required (not `?`) on each answer (src/resources/beta/...).
const REQUIRED = {
  environment: ['id', 'archived_at', 'config', 'created_at', 'description', 'metadata', 'name', 'type', 'updated_at'],
  session: ['id', 'agent', 'archived_at', 'budget', 'created_at', 'environment_id', 'metadata', 'outcome_evaluations',
    'resources', 'stats', 'status', 'title', 'type', 'updated_at', 'usage', 'vault_ids'],
  agent: ['id', 'description', 'execution_identity', 'mcp_servers', 'model', 'multiagent', 'name', 'skills', 'system',
    'tools', 'type', 'version'],
  work: ['id', 'acknowledged_at', 'created_at', 'data', 'environment_id', 'latest_heartbeat_at', 'metadata', 'secret',
    'started_at', 'state', 'stop_requested_at', 'stopped_at', 'type'],
  heartbeat: ['last_heartbeat', 'lease_extended', 'state', 'ttl_seconds', 'type'],
  stats: ['depth', 'oldest_queued_at', 'pending', 'type', 'workers_polling'],
  event: ['id', 'type', 'processed_at'],
};
function hasFields(obj, kind) {
  const missing = REQUIRED[kind].filter((k) => !(k in obj));
  assert.deepEqual(missing, [], `${kind} answer lacks fields the SDK types require: ${JSON.stringify(obj).slice(0, 300)}`);
}

const sdk = (url, cred) => new Anthropic({ baseURL: url, maxRetries: 0, logLevel: 'off', ...cred });

// Tool calls through postern control: agent events posted with the API key, results read from the event list.
function controlDriver(api, sid) {
  const post = async (ev) => (await api.beta.sessions.events.send(sid, { events: [ev] })).data[0].id;
  return {
    toolUse: (name, input, permission = 'allow') => post({ type: 'agent.tool_use', name, input, evaluated_permission: permission }),
    customToolUse: (name, input) => post({ type: 'agent.custom_tool_use', name, input }),
    confirm: (id, result) => post({ type: 'user.tool_confirmation', tool_use_id: id, result }),
    idle: () => post({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } }),
    async events() {
      const all = [];
      for await (const e of api.beta.sessions.events.list(sid, { limit: 1000 })) all.push(e);
      return all;
    },
    async find(id) {
      return (await this.events()).find((e) => (e.type === 'user.tool_result' && e.tool_use_id === id) ||
        (e.type === 'user.custom_tool_result' && e.custom_tool_use_id === id));
    },
    async result(id, timeoutMs = 30000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const r = await this.find(id);
        if (r) return r;
        if (Date.now() > deadline) throw new Error(`no result for ${id} in ${timeoutMs} ms`);
        await sleep(50);
      }
    },
  };
}

async function waitWork(worker, envId, workId, state, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const w = (await worker.beta.environments.work.list(envId, { limit: 100 })).data.find((x) => x.id === workId);
    if (w?.state === state) return w;
    if (Date.now() > deadline) throw new Error(`work ${workId} not ${state} in ${timeoutMs} ms (is ${w?.state})`);
    await sleep(50);
  }
}

// The session's work item (made by sessions.create), seen with the environment key.
async function workOf(worker, envId, sid) {
  for (const w of (await worker.beta.environments.work.list(envId, { limit: 100 })).data) if (w.data.id === sid) return w;
  throw new Error(`no work item for ${sid}`);
}

test('(a) the SDK EnvironmentWorker claims work from postern control and completes a session', async () => {
  const c = await control();
  const api = sdk(c.url, { apiKey: c.apiKey });
  const worker = sdk(c.url, { apiKey: null, authToken: c.envKey });
  const wd = tmpdir('postern-ctlsdk-wd-');
  dirs.push(wd);
  const p = await startSdkWorker({ baseURL: c.url, environmentId: c.envId, environmentKey: c.envKey, workdir: wd });
  try {
    const s = await api.beta.sessions.create({ agent: 'agent_sdk_test', environment_id: c.envId, metadata: { case: 'a' } });
    const work = await workOf(worker, c.envId, s.id);
    await waitWork(worker, c.envId, work.id, 'active');
    const d = controlDriver(api, s.id);
    checkToolCases(await runToolCases(d), wd, wd);

    const asked = await d.toolUse('bash', { command: 'echo confirmed' }, 'ask');
    const denied = await d.toolUse('write', { file_path: 'denied.txt', content: 'no' }, 'deny');
    const unowned = await d.customToolUse('someone_elses_tool', {});
    await sleep(300);
    assert.equal(await d.find(asked), undefined, 'an ask call is held until confirmed');
    await d.confirm(asked, 'allow');
    assert.equal(resultText(await d.result(asked)), 'confirmed');
    assert.equal(await d.find(denied), undefined);
    assert.equal(await d.find(unowned), undefined);
    assert.equal(existsSync(path.join(wd, 'denied.txt')), false);

    await d.idle();
    const stopped = await waitWork(worker, c.envId, work.id, 'stopped');
    assert.equal(typeof stopped.stopped_at, 'string');
    const posted = (await d.events()).filter((e) => e.type === 'user.tool_result' || e.type === 'user.custom_tool_result');
    assert.equal(posted.length, TOOL_CASES.length + 1, 'one result per answered call');
    assert.deepEqual(p.logs().filter((l) => l.level === 'error'), [], 'the SDK worker logged no error');
  } finally {
    assert.deepEqual(await p.kill('SIGTERM'), { code: 0, signal: null });
    await c.stop();
  }
});

test('(a) a stop, an archived session and a revoked key reach the SDK worker through postern control', async () => {
  const c = await control({ leaseTtl: '2s' }); // a heartbeat every second
  const api = sdk(c.url, { apiKey: c.apiKey });
  const worker = sdk(c.url, { apiKey: null, authToken: c.envKey });
  const wd = tmpdir('postern-ctlsdk-wd-');
  dirs.push(wd);
  const p = await startSdkWorker({ baseURL: c.url, environmentId: c.envId, environmentKey: c.envKey, workdir: wd, maxIdleMs: 0 });
  try {
    // A graceful stop from the platform: the SDK sees `stopping` on its next heartbeat and force-stops the item.
    const s1 = await api.beta.sessions.create({ agent: 'agent_a2', environment_id: c.envId });
    const w1 = await workOf(worker, c.envId, s1.id);
    await waitWork(worker, c.envId, w1.id, 'active');
    assert.equal((await api.beta.environments.work.stop(w1.id, { environment_id: c.envId })).state, 'stopping');
    await waitWork(worker, c.envId, w1.id, 'stopped');
    assert.ok(p.logs().some((l) => l.msg === 'heartbeat signals shutdown' && l.fields?.state === 'stopping'), 'seen on a heartbeat');

    // Archiving terminates the session: its runner ends on session.status_terminated and the item is stopped.
    const s2 = await api.beta.sessions.create({ agent: 'agent_a2', environment_id: c.envId });
    const w2 = await workOf(worker, c.envId, s2.id);
    await waitWork(worker, c.envId, w2.id, 'active');
    const d = controlDriver(api, s2.id);
    assert.equal(resultText(await d.result(await d.toolUse('bash', { command: 'echo before' }))), 'before');
    await api.beta.sessions.archive(s2.id);
    await waitWork(worker, c.envId, w2.id, 'stopped');
    assert.ok(p.logs().some((l) => l.msg === 'session terminated' && l.fields?.session_id === s2.id));

    // A revoked environment key: the next poll is a 401 and the SDK worker ends with it.
    assert.match(c.envKeyId, /^key_/, 'env create names the key id');
    await c.cli(['key', 'revoke', c.envKeyId]);
    const exit = await Promise.race([p.exited, sleep(15000).then(() => 'still running')]);
    assert.deepEqual(exit, { code: 1, signal: null }, 'run() failed: a fatal 401 ends the poller');
    assert.match(p.log, /run failed: .*401/);
    assert.deepEqual(p.logs().filter((l) => l.level === 'error').map((l) => l.msg), ['poll failed permanently, stopping poller']);
  } finally {
    await p.kill('SIGTERM');
    await c.stop();
  }
});

test('(b) the SDK typed resources call every postern control endpoint and parse the answers', async () => {
  const c = await control({ leaseTtl: '30s' });
  const api = sdk(c.url, { apiKey: c.apiKey });
  const worker = sdk(c.url, { apiKey: null, authToken: c.envKey });
  try {
    // environments
    const env = await api.beta.environments.retrieve(c.envId);
    assert.deepEqual([env.id, env.type, env.name, env.config.type], [c.envId, 'environment', 'sdk-env', 'self_hosted']);
    hasFields(env, 'environment');
    const e2 = await api.beta.environments.create({ name: 'second', config: { type: 'self_hosted' }, metadata: { k: 'v' } });
    assert.match(e2.id, /^env_/);
    assert.deepEqual(e2.metadata, { k: 'v' });
    const listed = [];
    for await (const e of api.beta.environments.list({ limit: 1 })) listed.push(e.id);
    assert.deepEqual(listed.sort(), [c.envId, e2.id].sort(), 'the cursor pages through both');
    const upd = await api.beta.environments.update(e2.id, { description: 'changed' });
    assert.equal(upd.description, 'changed');
    const arch = await api.beta.environments.archive(e2.id);
    assert.equal(typeof arch.archived_at, 'string');
    const del = await api.beta.environments.delete(e2.id);
    assert.deepEqual(del, { id: e2.id, type: 'environment_deleted' });
    await assert.rejects(api.beta.environments.retrieve(e2.id), (e) => e instanceof Anthropic.NotFoundError && e.type === 'not_found_error');

    // sessions and their work item
    const s = await api.beta.sessions.create({ agent: 'agent_b', environment_id: c.envId, metadata: { case: 'b' } });
    assert.deepEqual([s.type, s.environment_id, s.metadata.case], ['session', c.envId, 'b']);
    assert.ok(Array.isArray(s.resources) && Array.isArray(s.agent.skills), 'the fields the SDK worker reads');
    hasFields(s, 'session');
    hasFields(s.agent, 'agent');
    const stats = await worker.beta.environments.work.stats(c.envId);
    assert.equal(stats.type, 'work_queue_stats');
    hasFields(stats, 'stats');
    assert.equal(stats.depth, 1);
    assert.equal(typeof stats.oldest_queued_at, 'string');
    const polled = await worker.beta.environments.work.poll(c.envId, { 'Anthropic-Worker-ID': 'typed-1', block_ms: 500 });
    assert.deepEqual([polled.type, polled.state, polled.data.type, polled.data.id], ['work', 'queued', 'session', s.id]);
    hasFields(polled, 'work');
    const secret = JSON.parse(Buffer.from(polled.secret, 'base64url').toString());
    assert.equal(typeof secret.sessions_token, 'string');
    const item = sdk(c.url, { apiKey: null, authToken: secret.sessions_token });
    assert.equal(await worker.beta.environments.work.poll(c.envId, { 'Anthropic-Worker-ID': 'typed-1', block_ms: 50 }), null,
      'an empty queue answers null');
    assert.equal((await worker.beta.environments.work.stats(c.envId)).workers_polling, 1);
    const acked = await worker.beta.environments.work.ack(polled.id, { environment_id: c.envId });
    assert.equal(acked.state, 'starting');
    assert.equal(acked.secret, null);
    await assert.rejects(worker.beta.environments.work.ack(polled.id, { environment_id: c.envId }), (e) => e.status === 409);
    const hb = await item.beta.environments.work.heartbeat(polled.id, { environment_id: c.envId, expected_last_heartbeat: 'NO_HEARTBEAT' });
    assert.deepEqual([hb.type, hb.state, hb.lease_extended, hb.ttl_seconds], ['work_heartbeat', 'active', true, 30]);
    hasFields(hb, 'heartbeat');
    const hb2 = await item.beta.environments.work.heartbeat(polled.id, { environment_id: c.envId, expected_last_heartbeat: hb.last_heartbeat, desired_ttl_seconds: 20 });
    assert.equal(hb2.ttl_seconds, 20);
    await assert.rejects(item.beta.environments.work.heartbeat(polled.id, { environment_id: c.envId, expected_last_heartbeat: hb.last_heartbeat }), (e) => {
      assert.ok(e instanceof Anthropic.Beta.Environments.Work.BetaHeartbeatPreconditionFailedError, e.constructor.name);
      assert.equal(e.errorCode, 'heartbeat_precondition_failed');
      assert.equal(e.details.current_state.last_heartbeat, hb2.last_heartbeat);
      assert.equal(e.details.current_state.state, 'active');
      assert.match(e.requestID, /^req_/);
      return true;
    });
    const got = await api.beta.environments.work.retrieve(polled.id, { environment_id: c.envId });
    assert.deepEqual([got.state, got.latest_heartbeat_at, got.secret], ['active', hb2.last_heartbeat, null]);
    const wu = await api.beta.environments.work.update(polled.id, { environment_id: c.envId, metadata: { run: '7' } });
    assert.equal(wu.metadata.run, '7');
    const wl = [];
    for await (const w of worker.beta.environments.work.list(c.envId)) wl.push(w.id);
    assert.deepEqual(wl, [polled.id]);

    // session I/O
    assert.equal((await item.beta.sessions.retrieve(s.id)).id, s.id);
    const sl = [];
    for await (const x of api.beta.sessions.list()) sl.push(x.id);
    assert.ok(sl.includes(s.id));
    assert.equal((await api.beta.sessions.update(s.id, { title: 'typed' })).title, 'typed');
    const stream = await item.beta.sessions.events.stream(s.id);
    const tu = (await api.beta.sessions.events.send(s.id, { events: [
      { type: 'agent.tool_use', name: 'bash', input: { command: 'true' }, evaluated_permission: 'allow' }] })).data[0];
    assert.match(tu.id, /^sevt_/);
    hasFields(tu, 'event');
    assert.equal(typeof tu.processed_at, 'string');
    const sent = await item.beta.sessions.events.send(s.id, { events: [
      { type: 'user.tool_result', tool_use_id: tu.id, content: [{ type: 'text', text: 'ok' }], is_error: false }] });
    assert.equal(sent.data[0].type, 'user.tool_result');
    const seen = [];
    for await (const ev of stream) { seen.push(ev); if (seen.length === 2) break; }
    assert.deepEqual(seen.map((e) => e.id), [tu.id, sent.data[0].id], 'the stream delivers both, in order');
    const ev = [];
    for await (const e of item.beta.sessions.events.list(s.id, { limit: 1 })) ev.push(e.type);
    assert.deepEqual(ev.filter((t) => t.startsWith('agent.') || t.startsWith('user.')), ['agent.tool_use', 'user.tool_result']);
    await assert.rejects(item.beta.sessions.events.send(s.id, { events: [{ type: 'user.tool_result', content: [] }] }),
      (e) => e instanceof Anthropic.BadRequestError && /tool_use_id/.test(e.message));
    await assert.rejects(worker.beta.environments.work.poll(c.envId, { block_ms: 5000 }), (e) => e instanceof Anthropic.BadRequestError);
    await assert.rejects(item.beta.environments.work.poll(c.envId), (e) => e.status === 401 || e.status === 403);

    const stopped = await item.beta.environments.work.stop(polled.id, { environment_id: c.envId, force: true });
    assert.equal(stopped.state, 'stopped');
    await assert.rejects(item.beta.environments.work.stop(polled.id, { environment_id: c.envId }), (e) => e instanceof Anthropic.ConflictError);
    const archived = await api.beta.sessions.archive(s.id);
    assert.equal(archived.id, s.id);
    const gone = await api.beta.sessions.delete(s.id);
    assert.deepEqual([gone.id, gone.type], [s.id, 'session_deleted']);
    await assert.rejects(api.beta.sessions.retrieve(s.id), (e) => e instanceof Anthropic.NotFoundError);
    await assert.rejects(sdk(c.url, { apiKey: 'pst_api_wrong' }).beta.sessions.list().then((p) => p.data),
      (e) => e instanceof Anthropic.AuthenticationError && e.type === 'authentication_error');
  } finally {
    await c.stop();
  }
});

test('(c) postern worker through postern control answers like the SDK reference tools, but for the listed differences', async (t) => {
  const c = await control();
  const api = sdk(c.url, { apiKey: c.apiKey });
  const worker = sdk(c.url, { apiKey: null, authToken: c.envKey });
  // A second environment (the CLI makes it with its key) so the two workers do not take each other's items.
  const ours = await c.cli(['env', 'create', 'postern-worker-env']);
  const wd = tmpdir('postern-ctlsdk-wd-');
  dirs.push(wd);
  const wdir = tmpdir('postern-ctlsdk-pw-');
  dirs.push(wdir);
  const sw = await startSdkWorker({ baseURL: c.url, environmentId: c.envId, environmentKey: c.envKey, workdir: wd });
  const pw = await startPosternWorker({ baseURL: c.url, environmentId: ours.id, environmentKey: ours.key, dir: wdir });
  try {
    const a = await api.beta.sessions.create({ agent: 'agent_c', environment_id: c.envId });
    const b = await api.beta.sessions.create({ agent: 'agent_c', environment_id: ours.id });
    await waitWork(worker, c.envId, (await workOf(worker, c.envId, a.id)).id, 'active');
    const ourWorker = sdk(c.url, { apiKey: null, authToken: ours.key });
    await waitWork(ourWorker, ours.id, (await workOf(ourWorker, ours.id, b.id)).id, 'active');
    await sleep(500); // postern worker attaches its stream after the lease starts
    const sdkResults = await runToolCases(controlDriver(api, a.id));
    checkToolCases(sdkResults, wd, wd);
    const db = controlDriver(api, b.id);
    const ourResults = await runToolCases(db, TOOL_CASES.filter((x) => !x.custom));
    const custom = await db.customToolUse('lookup', { key: 'k1' });
    const seen = compareResults(sdkResults, ourResults, wd, '/workspace', (l) => t.diagnostic(l));
    await sleep(500);
    assert.equal(await db.find(custom), undefined, 'postern worker owns no custom tool: left pending');
    assert.deepEqual(seen, POSTERN_VS_SDK, 'a difference changed: update POSTERN_VS_SDK and docs/worker.md');
  } finally {
    await sw.kill('SIGTERM');
    await pw.kill('SIGTERM');
    await c.stop();
  }
});
