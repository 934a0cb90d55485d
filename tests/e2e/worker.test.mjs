// `postern worker` against the FAKE of Anthropic's environments API (tests/e2e/fixtures/fake_environments.mjs:
// a test fixture built from the SDK's shapes, not Anthropic's service). Each test starts the fake and a worker
// whose sessions run in real `postern sandbox serve` children.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readdirSync, chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { BIN, start, stopAll, tmpdir, rmrf, sleep, run, freePort } from './lib/proc.mjs';
import { startFakeEnvironments } from './fixtures/fake_environments.mjs';

const dirs = [];
const fakes = [];
after(async () => {
  await stopAll();
  for (const f of fakes) await f.close().catch(() => {});
  for (const d of dirs) rmrf(d);
});

// A worker against fake with extra config lines; returns {w, dir, fake, cfgPath}.
async function setup(t, { fakeOpts = {}, extra = '', key, args = [], waitReady = true, maxSessions = 3 } = {}) {
  const fake = await startFakeEnvironments({ ttlSeconds: 10, ...fakeOpts });
  fakes.push(fake);
  const dir = tmpdir('postern-worker-');
  dirs.push(dir);
  const ws = path.join(dir, 'ws');
  mkdirSync(ws);
  const keyFile = path.join(dir, 'env.key');
  writeFileSync(keyFile, `${key ?? fake.environmentKey}\n`, { mode: 0o600 });
  chmodSync(keyFile, 0o600);
  const cfgPath = path.join(dir, 'worker.yaml');
  writeFileSync(cfgPath, [
    `base_url: ${fake.baseURL}`,
    `environment_id: ${fake.environmentId}`,
    `environment_key_file: ${keyFile}`,
    'worker_id: test-worker-1',
    `workspace_root: ${ws}`,
    `max_sessions: ${maxSessions}`,
    'pool_size: 1',
    'log_level: debug',
    extra,
  ].join('\n') + '\n');
  const w = start(BIN, ['worker', '-c', cfgPath, ...args], { name: 'worker' });
  if (waitReady) await w.waitFor(/msg="worker started"/, 10000);
  return { w, dir, fake, cfgPath, ws, keyFile };
}

function text(result) {
  return (result.content ?? []).map((b) => b.text ?? '').join('');
}

function assertNoSecrets(log, ...secrets) {
  for (const s of secrets) if (s) assert.ok(!log.includes(s), `a secret (${s.slice(0, 12)}...) reached the log`);
}

test('a session end to end: all six tools, results posted with their content', async (t) => {
  const mport = await freePort();
  const { w, fake } = await setup(t, { extra: `metrics_listen: 127.0.0.1:${mport}` });
  await w.waitFor(/msg="pool child ready"/, 15000);
  const { sessionId, workId, sessionsToken } = fake.enqueueSession();
  await w.waitFor(/msg="item claimed" work=\S+ type=session/, 15000);
  // The stream is open once the worker read the history; calls posted after that arrive live.
  await fake.waitFor(() => fake.requests.some((r) => r.route === 'events.list' && r.path.includes(sessionId)), { what: 'history read' });
  const calls = [
    ['write', { file_path: '/workspace/a.txt', content: 'alpha\nbeta\ngamma\n' }],
    ['read', { file_path: '/workspace/a.txt' }],
    ['edit', { file_path: '/workspace/a.txt', old_string: 'beta', new_string: 'BETA' }],
    ['bash', { command: 'cat /workspace/a.txt; echo exit-ok' }],
    ['glob', { pattern: '*.txt', path: '/workspace' }],
    ['grep', { pattern: 'BETA', path: '/workspace' }],
    ['bash', { command: 'exit 3' }],
  ];
  const results = [];
  for (const [name, input] of calls) {
    const ev = fake.toolUse(sessionId, name, input);
    results.push(await fake.waitForResult(sessionId, ev.id, 30000));
  }
  assert.equal(results[0].is_error, false, JSON.stringify(results[0]));
  assert.match(text(results[1]), /alpha/);
  assert.match(text(results[1]), /gamma/);
  assert.equal(results[2].is_error, false, JSON.stringify(results[2]));
  assert.match(text(results[3]), /alpha\nBETA\ngamma\n/);
  assert.match(text(results[3]), /exit-ok/);
  assert.match(text(results[4]), /a\.txt/);
  assert.match(text(results[5]), /BETA/);
  assert.equal(results[6].is_error, true, 'a non-zero exit is an error result');
  for (const r of results) assert.equal(r.type, 'user.tool_result');
  // The session's sandbox came from the warm pool, in under a millisecond.
  const take = w.log.match(/msg="sandbox taken from the warm pool" work=\S+ pid=\d+ take_us=([\d.]+)/);
  assert.ok(take, 'the session took a pooled sandbox');
  assert.ok(Number(take[1]) < 1000, `take_us=${take[1]}`);
  const metrics = await (await fetch(`http://127.0.0.1:${mport}/metrics`)).text();
  assert.match(metrics, /postern_worker_tool_calls_total\{tool="bash",outcome="ok"\} 1\b/);
  assert.match(metrics, /postern_worker_tool_calls_total\{tool="bash",outcome="error"\} 1\b/);
  assert.match(metrics, /postern_worker_tool_calls_total\{tool="grep",outcome="ok"\} 1\b/);
  assert.match(metrics, /postern_worker_sessions_active 1\b/);
  assert.match(metrics, /postern_worker_pool_size 1\b/);
  fake.terminate(sessionId);
  await w.waitFor(/msg="item done" work=\S+ session=\S+ reason="session.status_terminated"/, 15000);
  await fake.waitFor(() => fake.work(workId).state === 'stopped', { what: 'work stopped' });
  assert.deepEqual(fake.violations, []);
  assertNoSecrets(w.log, fake.environmentKey, sessionsToken);
  await w.kill('SIGTERM');
});

async function claimed(fake, w, opts = {}) {
  const item = fake.enqueueSession(opts);
  await fake.waitFor(() => fake.requests.some((r) => r.route === 'events.list' && r.path.includes(item.sessionId)),
    { what: 'the worker read the session history', timeoutMs: 15000 });
  return item;
}

test('permissions: ask held until allow, ask then deny never runs, server deny never runs, unknown tool and custom tool stay pending', async (t) => {
  const { w, fake } = await setup(t);
  const { sessionId, sessionsToken } = await claimed(fake, w);
  const ask = fake.toolUse(sessionId, 'bash', { command: 'echo asked > /workspace/ask.txt; echo ran-ask' }, { permission: 'ask' });
  await w.waitFor(new RegExp(`tool_use_id="?${ask.id}"? tool="?bash"? reason="awaiting user.tool_confirmation"`), 10000);
  await sleep(500);
  assert.equal(fake.resultFor(sessionId, ask.id), undefined, 'an ask call is held');
  fake.confirm(sessionId, ask.id, 'allow');
  const r = await fake.waitForResult(sessionId, ask.id, 15000);
  assert.match(text(r), /ran-ask/);

  const askDeny = fake.toolUse(sessionId, 'bash', { command: 'touch /workspace/denied1' }, { permission: 'ask' });
  await w.waitFor(new RegExp(`tool_use_id="?${askDeny.id}"? tool="?bash"? reason="awaiting`), 10000);
  fake.confirm(sessionId, askDeny.id, 'deny', 'no');
  const deny = fake.toolUse(sessionId, 'bash', { command: 'touch /workspace/denied2' }, { permission: 'deny' });
  const odd = fake.toolUse(sessionId, 'bash', { command: 'touch /workspace/denied3' }, { permission: 'maybe' });
  const foreign = fake.toolUse(sessionId, 'web_fetch', { url: 'https://example.com' });
  const custom = fake.customToolUse(sessionId, 'lookup_customer', { id: 7 });
  await w.waitFor(new RegExp(`tool_use_id="?${custom.id}"? tool="?lookup_customer"? reason="a tool the worker does not own`), 10000);
  await w.waitFor(new RegExp(`tool_use_id="?${deny.id}"? tool="?bash"? reason="denied by the server`), 10000);
  await w.waitFor(new RegExp(`tool_use_id="?${odd.id}"? tool="?bash"? reason="unknown evaluated_permission`), 10000);
  await w.waitFor(new RegExp(`tool_use_id="?${foreign.id}"? tool="?web_fetch"? reason="a tool the worker does not own`), 10000);
  // The files the denied calls would make are not there: a later call lists the workspace.
  const ls = fake.toolUse(sessionId, 'bash', { command: 'ls /workspace' });
  const lr = await fake.waitForResult(sessionId, ls.id, 15000);
  assert.match(text(lr), /ask\.txt/);
  assert.doesNotMatch(text(lr), /denied/);
  for (const ev of [askDeny, deny, odd, foreign, custom])
    assert.equal(fake.resultFor(sessionId, ev.id), undefined, `${ev.name} got no reply`);
  assert.deepEqual(fake.violations, []);
  assertNoSecrets(w.log, fake.environmentKey, sessionsToken);
  await w.kill('SIGTERM');
});

test('per-tool timeout posts an error result; the session keeps working', async (t) => {
  const { w, fake } = await setup(t, { extra: 'tool_timeout: 1500ms' });
  const { sessionId } = await claimed(fake, w);
  const slow = fake.toolUse(sessionId, 'bash', { command: 'sleep 30' });
  const t0 = Date.now();
  const r = await fake.waitForResult(sessionId, slow.id, 15000);
  assert.ok(Date.now() - t0 < 10000, 'the timeout fired');
  assert.equal(r.is_error, true);
  assert.match(text(r), /timed out/);
  const next = fake.toolUse(sessionId, 'bash', { command: 'echo next-ok' });
  assert.match(text(await fake.waitForResult(sessionId, next.id, 15000)), /next-ok/);
  await w.kill('SIGTERM');
});

test('a 100 MB tool output is capped and says so; the session keeps working', async (t) => {
  const { w, fake } = await setup(t);
  const { sessionId } = await claimed(fake, w);
  const big = fake.toolUse(sessionId, 'bash', { command: "head -c 100000000 /dev/zero | tr '\\0' x" });
  const br = await fake.waitForResult(sessionId, big.id, 30000);
  assert.match(text(br), /truncated/);
  assert.ok(text(br).length < 5 * 1024 * 1024, 'capped');
  const after_ = fake.toolUse(sessionId, 'bash', { command: 'echo still-here' });
  assert.match(text(await fake.waitForResult(sessionId, after_.id, 15000)), /still-here/);
  await w.kill('SIGTERM');
});

test('malformed and unknown events are logged and skipped; the worker keeps serving its sessions', async (t) => {
  const { w, fake } = await setup(t);
  const a = await claimed(fake, w);
  const b = await claimed(fake, w);
  for (const st of fake.session(a.sessionId).streams) st.write('event: agent.tool_use\ndata: {"type":"agent.tool_use", oops\n\n');
  fake.postEvent(a.sessionId, { type: 'vendor.strange_event', payload: 1 });
  fake.postEvent(a.sessionId, { type: 'agent.tool_use', name: 'bash' }); // no input, but has an id from the fake
  await w.waitFor(/msg="event skipped: malformed JSON"/, 10000);
  await w.waitFor(/msg="event skipped: unknown type" work=\S+ type="?vendor.strange_event/, 10000);
  const ea = fake.toolUse(a.sessionId, 'bash', { command: 'echo a-ok' });
  const eb = fake.toolUse(b.sessionId, 'bash', { command: 'echo b-ok' });
  assert.match(text(await fake.waitForResult(a.sessionId, ea.id, 15000)), /a-ok/);
  assert.match(text(await fake.waitForResult(b.sessionId, eb.id, 15000)), /b-ok/);
  await w.kill('SIGTERM');
});

test('412 on a heartbeat releases the item without stop', async (t) => {
  const { w, fake } = await setup(t, { fakeOpts: { ttlSeconds: 2 } });
  const { workId } = await claimed(fake, w);
  fake.failNextHeartbeat412(1);
  await w.waitFor(new RegExp(`msg="lease released without stop" work=${workId}`), 10000);
  await w.waitFor(new RegExp(`msg="item done" work=${workId}`), 10000);
  await sleep(300);
  assert.equal(fake.requests.filter((r) => r.route === 'stop' && r.path.includes(workId)).length, 0, 'no stop after a 412');
  await w.kill('SIGTERM');
});

test('SIGTERM cancels the running tool, posts its error result, stops the lease and exits within 30 s', async (t) => {
  const { w, fake } = await setup(t);
  const { sessionId, workId, sessionsToken } = await claimed(fake, w);
  const ev = fake.toolUse(sessionId, 'bash', { command: 'sleep 120' });
  await w.waitFor(new RegExp(`msg="tool call started" work=\\S+ tool=bash tool_use_id="?${ev.id}"?`), 10000);
  const t0 = Date.now();
  w.child.kill('SIGTERM');
  const ex = await w.exited;
  assert.ok(Date.now() - t0 < 30000, `exited in ${Date.now() - t0} ms`);
  assert.equal(ex.code, 0, w.log);
  const r = fake.resultFor(sessionId, ev.id);
  assert.ok(r, 'the in-flight call got a result');
  assert.equal(r.is_error, true);
  assert.match(text(r), /shutting down/);
  assert.equal(fake.work(workId).state, 'stopped');
  assert.ok(fake.requests.some((q) => q.route === 'stop' && q.path.includes(workId)), 'stop {force:true} was sent');
  assertNoSecrets(w.log, fake.environmentKey, sessionsToken);
});

test('a wrong environment key is a fatal 401: polling stops with a clear log line', async (t) => {
  const { w, fake } = await setup(t, { key: 'sk-ant-oat01-wrong-key-000' });
  await w.waitFor(/level=error comp=worker msg="poll refused: the worker stops polling" status=401 .*hint="the environment key is wrong or revoked/, 10000);
  const n = fake.requests.filter((r) => r.route === 'poll').length;
  await sleep(2500);
  assert.equal(fake.requests.filter((r) => r.route === 'poll').length, n, 'no poll after the fatal 401');
  assertNoSecrets(w.log, 'sk-ant-oat01-wrong-key-000');
  await w.kill('SIGTERM');
});

test('healthcheck items are probed and stopped; --on-work runs per item with the work on stdin', async (t) => {
  const out = tmpdir('postern-onwork-');
  dirs.push(out);
  const script = `cat > ${out}/work-$ANTHROPIC_WORK_ID.json; env | grep ^ANTHROPIC_ > ${out}/env-$ANTHROPIC_WORK_ID`;
  const { w, fake } = await setup(t, { args: ['--on-work', script] });
  const { workId } = fake.enqueueHealthcheck();
  await w.waitFor(new RegExp(`msg="healthcheck passed" work=${workId}`), 15000);
  await fake.waitFor(() => fake.work(workId).state === 'stopped', { what: 'healthcheck stopped' });
  await fake.waitFor(() => readdirSync(out).includes(`env-${workId}`), { what: 'on-work ran' });
  await sleep(200);
  const { readFileSync } = await import('node:fs');
  const env = readFileSync(path.join(out, `env-${workId}`), 'utf8');
  assert.match(env, new RegExp(`ANTHROPIC_WORK_ID=${workId}`));
  assert.match(env, new RegExp(`ANTHROPIC_ENVIRONMENT_ID=${fake.environmentId}`));
  assert.doesNotMatch(env, /ANTHROPIC_ENVIRONMENT_KEY|sk-ant/);
  assert.equal(JSON.parse(readFileSync(path.join(out, `work-${workId}.json`), 'utf8')).id, workId);
  await w.kill('SIGTERM');
});

test('config checks: a key file readable by others is refused naming the file and the fix', async (t) => {
  const { w, keyFile, cfgPath } = await setup(t);
  await w.kill('SIGTERM');
  const ok = await run(BIN, ['check', '-c', cfgPath]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /: ok \(worker\)/);
  const { readFileSync } = await import('node:fs');
  const good = readFileSync(cfgPath, 'utf8');
  const variant = async (text) => { writeFileSync(cfgPath, text); return run(BIN, ['check', '-c', cfgPath]); };
  let v = await variant(good.replace(/^base_url: .*$/m, 'base_url: http://127.0.0.1.example.com'));
  assert.equal(v.code, 1);
  assert.match(v.stderr, /:1: base_url: must be https:\/\/ \(plain http:\/\/ only to 127\.0\.0\.1, localhost or \[::1\]\)/);
  v = await variant(good + 'sandbox:\n  memroy: 1G\n');
  assert.equal(v.code, 1);
  assert.match(v.stderr, /worker\.yaml:\d+: unknown key 'memroy' in sandbox/);
  v = await variant(good.replace(/^pool_size: .*$/m, 'pool_size: 9'));
  assert.match(v.stderr, /pool_size: is more than max_sessions \(3\)/);
  writeFileSync(cfgPath, good);
  chmodSync(keyFile, 0o644);
  const bad = await run(BIN, ['check', '-c', cfgPath]);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout + bad.stderr, /is readable by all users \(mode 0644\): it holds a secret; run chmod 600/);
  const r = await run(BIN, ['worker', '-c', cfgPath]);
  assert.equal(r.code, 1);
  const esc = keyFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.match(r.stderr, new RegExp(`environment_key_file: ${esc} is readable by all users \\(mode 0644\\).*chmod 600 ${esc}`));
});

test('sandbox serve --prestart makes the sandbox before the first message', async () => {
  const ws = tmpdir('postern-prestart-');
  dirs.push(ws);
  const p = start(BIN, ['sandbox', 'serve', '--stdio', '--prestart', '--workspace', ws], { name: 'serve' });
  const m = await p.waitFor(/msg="sandbox MCP server ready".* prestarted=(\w+)/, 15000);
  assert.equal(m[1], 'true');
  assert.match(p.log, /msg="sandbox session started"/, 'the sandbox exists before any message was read');
  p.child.stdin.end();
  await p.exited;
});

test('resilience: a 5xx on posting is retried, a dropped stream reconnects, a revoked sessions token ends only its session', async (t) => {
  const { w, fake } = await setup(t);
  const a = await claimed(fake, w);
  const b = await claimed(fake, w);
  fake.fail5xx(2, { status: 503, route: 'events.send' });
  const e1 = fake.toolUse(a.sessionId, 'bash', { command: 'echo retried' });
  assert.match(text(await fake.waitForResult(a.sessionId, e1.id, 20000)), /retried/);
  assert.match(w.log, /msg="posting a result failed: retrying" work=\S+ status=503/);
  const streams = fake.requests.filter((r) => r.route === 'events.stream' && r.path.includes(a.sessionId)).length;
  fake.closeStreams(a.sessionId, { abrupt: true });
  await fake.waitFor(() => fake.requests.filter((r) => r.route === 'events.stream' && r.path.includes(a.sessionId)).length > streams,
    { what: 'the stream reopened', timeoutMs: 15000 });
  const e2 = fake.toolUse(a.sessionId, 'bash', { command: 'echo after-reconnect' });
  assert.match(text(await fake.waitForResult(a.sessionId, e2.id, 20000)), /after-reconnect/);
  fake.revokeKey(a.sessionsToken);
  await w.waitFor(new RegExp(`msg="lease ended" work=${a.workId} reason="heartbeat answered 401`), 20000);
  await w.waitFor(new RegExp(`msg="item done" work=${a.workId}`), 20000);
  const e3 = fake.toolUse(b.sessionId, 'bash', { command: 'echo b-still-served' });
  assert.match(text(await fake.waitForResult(b.sessionId, e3.id, 20000)), /b-still-served/);
  assertNoSecrets(w.log, fake.environmentKey, a.sessionsToken, b.sessionsToken);
  assert.deepEqual(fake.violations, []);
  await w.kill('SIGTERM');
});

test('lifecycle: an end_turn idle ends the session after max_idle; a control-plane stop ends it', async (t) => {
  const { w, fake } = await setup(t, { extra: 'max_idle: 1s' });
  const a = await claimed(fake, w);
  const e = fake.toolUse(a.sessionId, 'bash', { command: 'echo one' });
  await fake.waitForResult(a.sessionId, e.id, 15000);
  fake.idle(a.sessionId, 'requires_action');
  await sleep(1800);
  assert.doesNotMatch(w.log, new RegExp(`msg="item done" work=${a.workId}`), 'requires_action keeps it');
  fake.idle(a.sessionId, 'end_turn');
  await w.waitFor(new RegExp(`msg="item done" work=${a.workId} session=\\S+ reason="idle after end_turn`), 10000);
  await fake.waitFor(() => fake.work(a.workId).state === 'stopped', { what: 'stopped after idle' });
  const b = await claimed(fake, w);
  fake.stopWork(b.workId);
  await w.waitFor(new RegExp(`msg="item done" work=${b.workId} session=\\S+ reason="the lease ended"`), 40000);
  await w.kill('SIGTERM');
});

test('the secret never reaches a log, also on error paths (5xx everywhere, no secret, debug level)', async (t) => {
  const { w, fake } = await setup(t);
  fake.fail5xx(1, { status: 500, route: 'poll' });
  fake.fail5xx(1, { status: 503, route: 'ack' });
  const a = fake.enqueueSession();
  const b = fake.enqueueSession({ secret: false }); // the environment key is the bearer of its calls
  await w.waitFor(new RegExp(`msg="item claimed" work=${b.workId} type=session session=\\S+ credential=environment_key`), 30000);
  await w.waitFor(new RegExp(`msg="item claimed" work=${a.workId} type=session session=\\S+ credential=sessions_token`), 30000);
  await fake.waitFor(() => fake.requests.some((q) => q.route === 'events.list' && q.path.includes(a.sessionId) && q.status === 200),
    { what: 'the history of a read', timeoutMs: 20000 });
  fake.fail5xx(2, { status: 500, route: 'heartbeat' });
  fake.fail5xx(1, { status: 502, route: 'events.stream' });
  fake.fail5xx(1, { status: 500, route: 'events.list' });
  fake.closeStreams(a.sessionId, { abrupt: true });
  await fake.waitFor(() => fake.requests.filter((r) => r.route === 'events.stream' && r.path.includes(a.sessionId)).length >= 3,
    { what: 'stream retries', timeoutMs: 20000 });
  const e = fake.toolUse(a.sessionId, 'bash', { command: 'env | grep -c ANTHROPIC_ || true' });
  const r = await fake.waitForResult(a.sessionId, e.id, 20000);
  assert.match(text(r), /^0\n?$/, 'no ANTHROPIC_* variable reaches the sandbox');
  await w.kill('SIGTERM');
  assertNoSecrets(w.log, fake.environmentKey, a.sessionsToken, a.secret, b.sessionsToken);
  assert.match(w.log, /level=warn/, 'the error paths were taken');
});

test('the pool and the sessions never exceed max_sessions', async (t) => {
  const mport = await freePort();
  const { w, fake } = await setup(t, { extra: `metrics_listen: 127.0.0.1:${mport}`, maxSessions: 1 });
  await w.waitFor(/msg="pool child ready"/, 15000);
  const a = await claimed(fake, w);
  const b = fake.enqueueSession();
  await sleep(2500);
  assert.doesNotMatch(w.log, new RegExp(`msg="item claimed" work=${b.workId}`), 'no second item while one runs');
  const m = await (await fetch(`http://127.0.0.1:${mport}/metrics`)).text();
  assert.match(m, /postern_worker_sessions_active 1\b/);
  assert.match(m, /postern_worker_pool_size 0\b/);
  assert.equal((w.log.match(/msg="pool child ready"/g) || []).length, 1, 'the pool did not refill past max_sessions');
  fake.terminate(a.sessionId);
  await w.waitFor(new RegExp(`msg="item claimed" work=${b.workId}`), 20000);
  await w.kill('SIGTERM');
});

test('an event over the cap (9 MiB) is refused and skipped; the session goes on', async (t) => {
  const { w, fake } = await setup(t);
  const a = await claimed(fake, w);
  const big = JSON.stringify({ type: 'agent.message', content: [{ type: 'text', text: 'x'.repeat(9 << 20) }] });
  for (const st of fake.session(a.sessionId).streams) st.write(`event: agent.message\ndata: ${big}\n\n`);
  await w.waitFor(/msg="event stream refused: reconnecting at the tail/, 15000);
  const e = fake.toolUse(a.sessionId, 'bash', { command: 'echo after-big' });
  assert.match(text(await fake.waitForResult(a.sessionId, e.id, 20000)), /after-big/);
  await w.kill('SIGTERM');
});
