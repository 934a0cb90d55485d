// `postern worker` as a drop-in for Anthropic's SDK worker: the same tool calls (tests/e2e/lib/sdk.mjs), run by
// the SDK's EnvironmentWorker with its reference agent_toolset_20260401 tools and by `postern worker` (tools in a
// `postern sandbox serve` child), both served by the FAKE environments API (fixtures/fake_environments.mjs, not
// Anthropic's service), must give the same result shapes. Every difference is listed in POSTERN_VS_SDK (lib/sdk.mjs) and in
// docs/worker.md ("Differences from the SDK worker") with its reason; the test fails when either side changes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { stopAll, tmpdir, rmrf } from './lib/proc.mjs';
import { startFakeEnvironments } from './fixtures/fake_environments.mjs';
import { startSdkWorker, startPosternWorker, runToolCases, checkToolCases, compareResults, resultText, TOOL_CASES, POSTERN_VS_SDK } from './lib/sdk.mjs';

const dirs = [];
after(async () => {
  await stopAll();
  for (const d of dirs) rmrf(d);
});

test('the SDK reference tools and postern worker answer the same calls with the same shapes', async (t) => {
  const fake = await startFakeEnvironments({ ttlSeconds: 10 });
  const dir = tmpdir('postern-compare-');
  dirs.push(dir);
  const sdkWd = path.join(dir, 'sdk');
  mkdirSync(sdkWd);
  const ourEnv = fake.addEnvironment();
  const ours = await startPosternWorker({ baseURL: fake.baseURL, environmentId: ourEnv.id, environmentKey: ourEnv.key, dir });
  const sdk = await startSdkWorker({ baseURL: fake.baseURL, environmentId: fake.environmentId, environmentKey: fake.environmentKey, workdir: sdkWd });
  try {
    const a = fake.enqueueSession();
    const b = fake.enqueueSession({ environmentId: ourEnv.id });
    await fake.waitFor(() => fake.work(a.workId).state === 'active' && fake.work(b.workId).state === 'active',
      { timeoutMs: 20000, what: 'both items active' });
    await fake.waitFor(() => fake.requests.some((r) => r.route === 'events.list' && r.path.includes(b.sessionId)),
      { what: 'postern worker read the history' });
    const driver = (sid, timeoutMs) => ({
      toolUse: (n, i) => fake.toolUse(sid, n, i).id,
      customToolUse: (n, i) => fake.customToolUse(sid, n, i).id,
      result: (id) => fake.waitForResult(sid, id, timeoutMs),
    });
    const sdkResults = await runToolCases(driver(a.sessionId, 30000));
    checkToolCases(sdkResults, sdkWd, sdkWd);
    const builtin = TOOL_CASES.filter((c) => !c.custom);
    const ourResults = await runToolCases(driver(b.sessionId, 30000), builtin);
    const custom = fake.customToolUse(b.sessionId, 'lookup', { key: 'k1' }).id;

    const seen = compareResults(sdkResults, ourResults, sdkWd, '/workspace', (l) => t.diagnostic(l));
    // An evaluated_permission neither knows, then an `allow` confirmation: the SDK holds it like `ask` and runs
    // it on the allow; postern worker never runs it (the rule: unknown values fail closed).
    const odd = [a, b].map(({ sessionId }) => {
      const ev = fake.toolUse(sessionId, 'bash', { command: 'echo odd-permission' }, { permission: 'sometimes' });
      fake.confirm(sessionId, ev.id, 'allow');
      return ev.id;
    });
    assert.equal(resultText(await fake.waitForResult(a.sessionId, odd[0])), 'odd-permission', 'the SDK runs it on allow');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(fake.resultFor(b.sessionId, odd[1]), undefined, 'postern worker never runs an unknown permission');
    assert.equal(fake.resultFor(b.sessionId, custom), undefined, 'postern worker owns no custom tool: left pending');
    assert.deepEqual(seen, POSTERN_VS_SDK, 'a difference changed: update EXPECTED and docs/worker.md');
    assert.deepEqual(fake.violations, []);
  } finally {
    await sdk.kill('SIGTERM');
    await ours.kill('SIGTERM');
    await fake.close();
  }
});
