// `postern worker` as a drop-in for Anthropic's SDK worker: the same tool calls (tests/e2e/lib/sdk.mjs), run by
// the SDK's EnvironmentWorker with its reference agent_toolset_20260401 tools and by `postern worker` (tools in a
// `postern sandbox serve` child), both served by the FAKE environments API (fixtures/fake_environments.mjs, not
// Anthropic's service), must give the same result shapes. Every difference is listed in EXPECTED below and in
// docs/worker.md ("Differences from the SDK worker") with its reason; the test fails when either side changes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { BIN, start, stopAll, tmpdir, rmrf } from './lib/proc.mjs';
import { startFakeEnvironments } from './fixtures/fake_environments.mjs';
import { startSdkWorker, runToolCases, checkToolCases, resultText, TOOL_CASES } from './lib/sdk.mjs';

const dirs = [];
after(async () => {
  await stopAll();
  for (const d of dirs) rmrf(d);
});

// How postern's answer compares with the SDK's, per case: 'same'; 'newline' (equal but for one trailing newline,
// after the workspace path is normalized); 'text' (same kind of result, other wording); 'kind' (error vs
// success); 'unanswered' (postern leaves the call pending).
const EXPECTED = {
  seed: 'newline', 'bash-ok': 'newline', 'bash-pwd': 'newline', 'bash-fail': 'text', read: 'same',
  'read-range': 'newline', 'read-missing': 'text', write: 'text', edit: 'text', 'edit-missing': 'text',
  glob: 'newline', grep: 'newline', 'read-outside': 'kind', custom: 'unanswered',
};

function compare(sdk, ours, sdkWd, ourWd) {
  if (!ours) return 'unanswered';
  if (sdk.is_error !== ours.is_error) return 'kind';
  assert.equal(ours.type, sdk.type);
  assert.deepEqual(ours.content.map((b) => b.type), sdk.content.map((b) => b.type), 'content block types');
  const a = resultText(sdk).split(sdkWd).join('<WD>');
  const b = resultText(ours).split(ourWd).join('<WD>');
  if (a === b) return 'same';
  if (a.replace(/\n$/, '') === b.replace(/\n$/, '')) return 'newline';
  return 'text';
}

async function startPosternWorker(fake, env, dir) {
  const ws = path.join(dir, 'ws');
  mkdirSync(ws);
  const keyFile = path.join(dir, 'env.key');
  writeFileSync(keyFile, `${env.key}\n`, { mode: 0o600 });
  chmodSync(keyFile, 0o600);
  const cfg = path.join(dir, 'worker.yaml');
  writeFileSync(cfg, [`base_url: ${fake.baseURL}`, `environment_id: ${env.id}`, `environment_key_file: ${keyFile}`,
    'worker_id: postern-compare', `workspace_root: ${ws}`, 'max_sessions: 2', 'pool_size: 1', 'log_level: info'].join('\n') + '\n');
  const w = start(BIN, ['worker', '-c', cfg], { name: 'worker' });
  await w.waitFor(/msg="worker started"/, 10000);
  return w;
}

test('the SDK reference tools and postern worker answer the same calls with the same shapes', async (t) => {
  const fake = await startFakeEnvironments({ ttlSeconds: 10 });
  const dir = tmpdir('postern-compare-');
  dirs.push(dir);
  const sdkWd = path.join(dir, 'sdk');
  mkdirSync(sdkWd);
  const ourEnv = fake.addEnvironment();
  const ours = await startPosternWorker(fake, ourEnv, dir);
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

    const seen = {};
    for (const s of sdkResults) {
      const o = ourResults.find((r) => r.id === s.id);
      seen[s.id] = compare(s.result, o?.result, sdkWd, '/workspace');
      t.diagnostic(`${s.id.padEnd(13)} ${seen[s.id].padEnd(10)} sdk=${JSON.stringify(resultText(s.result)).slice(0, 70)}` +
        (o ? ` postern=${JSON.stringify(resultText(o.result)).slice(0, 70)}` : ''));
    }
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(fake.resultFor(b.sessionId, custom), undefined, 'postern worker owns no custom tool: left pending');
    assert.deepEqual(seen, EXPECTED, 'a difference changed: update EXPECTED and docs/worker.md');
    assert.deepEqual(fake.violations, []);
  } finally {
    await sdk.kill('SIGTERM');
    await ours.kill('SIGTERM');
    await fake.close();
  }
});
