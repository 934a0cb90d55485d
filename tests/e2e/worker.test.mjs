// `postern worker` against the FAKE of Anthropic's environments API (tests/e2e/fixtures/fake_environments.mjs:
// a test fixture built from the SDK's shapes, not Anthropic's service). Each test starts the fake and a worker
// whose sessions run in real `postern sandbox serve` children.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readdirSync, chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { BIN, start, stopAll, tmpdir, rmrf, sleep, run } from './lib/proc.mjs';
import { startFakeEnvironments } from './fixtures/fake_environments.mjs';

const dirs = [];
const fakes = [];
after(async () => {
  await stopAll();
  for (const f of fakes) await f.close().catch(() => {});
  for (const d of dirs) rmrf(d);
});

// A worker against fake with extra config lines; returns {w, dir, fake, cfgPath}.
async function setup(t, { fakeOpts = {}, extra = '', key, args = [], waitReady = true } = {}) {
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
    'max_sessions: 3',
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
  const { w, fake } = await setup(t);
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
  fake.terminate(sessionId);
  await w.waitFor(/msg="item done" work=\S+ session=\S+ reason="session.status_terminated"/, 15000);
  await fake.waitFor(() => fake.work(workId).state === 'stopped', { what: 'work stopped' });
  assert.deepEqual(fake.violations, []);
  assertNoSecrets(w.log, fake.environmentKey, sessionsToken);
  await w.kill('SIGTERM');
});
