// `postern agent` attacked from the model's side (a FAKE Messages API, fixtures/fake_messages.mjs, playing a
// hostile or compromised endpoint) and from tool output: content block indexes out of range, a flood of text
// deltas, terminal control sequences in the model's text and in a command's output, and a permission prompt
// whose input is too long to show. Each ends in a clear line, fast, and nothing raw reaches the terminal.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BIN, start, run, stopAll, tmpdir, rmrf } from './lib/proc.mjs';
import { startControl } from './lib/control.mjs';
import { startFakeMessages } from './fixtures/fake_messages.mjs';

let c, dir, worker, fake, apiKeyFile;

before(async () => {
  c = await startControl({ store: 'sqlite' });
  dir = tmpdir('postern-agent-red-');
  const ws = path.join(dir, 'ws');
  mkdirSync(ws);
  const envKey = path.join(dir, 'env.key');
  writeFileSync(envKey, `${c.envKey}\n`, { mode: 0o600 });
  apiKeyFile = path.join(dir, 'api.key');
  writeFileSync(apiKeyFile, `${c.apiKey}\n`, { mode: 0o600 });
  const cfg = path.join(dir, 'worker.yaml');
  writeFileSync(cfg, [`base_url: ${c.url}`, `environment_id: ${c.envId}`, `environment_key_file: ${envKey}`,
    `workspace_root: ${ws}`, 'pool_size: 1', 'max_sessions: 3', 'max_idle: 0'].join('\n') + '\n');
  worker = start(BIN, ['worker', '-c', cfg], { name: 'worker' });
  await worker.waitFor(/msg="worker started"/, 10000);
  fake = await startFakeMessages();
});

after(async () => {
  await fake?.close();
  await worker?.kill('SIGTERM', 30000);
  await stopAll();
  await c?.stop();
  if (dir) rmrf(dir);
});

const agentArgs = (task, extra = []) => ['agent', '--control', c.url, '--api-key-file', apiKeyFile, '--env', c.envId, ...extra, task];
const modelEnv = () => ({ ...process.env, ANTHROPIC_API_KEY: 'sk-fake-key-for-tests', ANTHROPIC_BASE_URL: fake.url });

for (const [scenario, re] of [
  ['hostile-index', /model error: the model's stream: a content block index that is not 0-63/],
  ['hostile-negative', /model error: the model's stream: a content block index that is not 0-63/],
  ['hostile-flood', /model error: the model's answer is over 8 MiB of text and tool input/],
]) {
  test(`${scenario}: refused with a clear line, promptly, the session terminated`, async () => {
    const t0 = Date.now();
    const r = await run(BIN, agentArgs(`scenario:${scenario}`), { env: modelEnv(), timeoutMs: 60000 });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, re);
    assert.match(r.stdout, /session sesn_\w+ terminated/);
    // a quadratic copy per delta or an array sized by the index would take far longer than this
    assert.ok(Date.now() - t0 < 20000, `took ${Date.now() - t0} ms`);
  });
}

test('control sequences in a file the sandbox read and in the model\'s text reach the terminal escaped', async () => {
  const r = await run(BIN, agentArgs('scenario:hostile-ansi'), { env: modelEnv(), timeoutMs: 60000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = r.stdout + r.stderr;
  assert.doesNotMatch(out, /[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f\u202a-\u202e\u2066-\u2069]/, 'a raw control character reached the terminal');
  assert.match(r.stdout, /file \\x1b\[2J\\x1b\]0;owned\\x07 end/);
  assert.match(r.stdout, /model \\x1b\[31mred\\x1b\[0m \\u202eexe\.txt \\u009b done/);
});

test('a permission prompt whose input is too long to show is denied, not shown cut', async () => {
  const env = modelEnv();
  const cmd = [BIN, ...agentArgs('scenario:hostile-long-ask', ['--permission', 'bash=ask'])]
    .map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const a = start('script', ['-qfec', cmd, '/dev/null'], { env, name: 'agent-long-ask' });
  const ex = await Promise.race([a.exited, new Promise((r) => setTimeout(() => r({ code: 'hang' }), 60000))]);
  assert.notEqual(ex.code, 'hang', a.log);
  assert.match(a.log, /permission ask for bash: its input is \d+ bytes, more than the 16384 a prompt shows, so denied/);
  assert.doesNotMatch(a.log, /allow bash/);
  assert.doesNotMatch(a.log, /hidden-part\n/);
  const id = a.log.match(/session (sesn_\w+) created/)[1];
  const r = await c.api(`/v1/sessions/${id}/events?limit=1000`, { key: c.apiKey });
  const conf = r.body.data.find((e) => e.type === 'user.tool_confirmation');
  assert.equal(conf.result, 'deny');
  assert.ok(!r.body.data.some((e) => e.type === 'user.tool_result' && JSON.stringify(e).includes('hidden-part')));
});
