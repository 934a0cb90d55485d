// `postern agent` against a FAKE Messages API (fixtures/fake_messages.mjs: recorded stream shapes, not a model),
// `postern control` and `postern worker`: a session driven to its end with an MCP tool and sandbox tools; a model
// error, a stream error and a timed-out tool each end in a clear transcript line and a non-zero exit; tool errors
// go back to the model as is_error tool_results and the run goes on; SIGINT mid-step terminates the session and
// leaves no process, cgroup or workspace behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, start, run, stopAll, tmpdir, rmrf, freePort, waitUntil } from './lib/proc.mjs';
import { startControl } from './lib/control.mjs';
import { makeCA, makeLeaf } from './lib/certs.mjs';
import { startFakeMessages } from './fixtures/fake_messages.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let c, dir, ws, worker, fake, mcpUrl, apiKeyFile;

before(async () => {
  c = await startControl({ store: 'sqlite' });
  dir = tmpdir('postern-agent-');
  ws = path.join(dir, 'ws');
  mkdirSync(ws);
  const envKey = path.join(dir, 'env.key');
  writeFileSync(envKey, `${c.envKey}\n`, { mode: 0o600 });
  apiKeyFile = path.join(dir, 'api.key');
  writeFileSync(apiKeyFile, `${c.apiKey}\n`, { mode: 0o600 });
  const cfg = path.join(dir, 'worker.yaml');
  writeFileSync(cfg, [`base_url: ${c.url}`, `environment_id: ${c.envId}`, `environment_key_file: ${envKey}`,
    `workspace_root: ${ws}`, 'pool_size: 1', 'max_sessions: 3', 'max_idle: 0', 'log_level: debug'].join('\n') + '\n');
  worker = start(BIN, ['worker', '-c', cfg], { name: 'worker' });
  await worker.waitFor(/msg="worker started"/, 10000);
  const port = await freePort();
  const mcp = start(process.execPath, [path.join(root, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js'), 'streamableHttp'],
    { env: { ...process.env, PORT: String(port) }, name: 'server-everything' });
  await mcp.waitFor(/listening on port/, 15000);
  mcpUrl = `http://127.0.0.1:${port}/mcp`;
  fake = await startFakeMessages();
});

after(async () => {
  await fake?.close();
  await worker?.kill('SIGTERM', 30000);
  await stopAll();
  await c?.stop();
  if (dir) rmrf(dir);
});

const agentArgs = (task, extra = []) => ['agent', '--control', c.url, '--api-key-file', apiKeyFile, '--env', c.envId,
  '--mcp', `everything=${mcpUrl}`, ...extra, task];
const modelEnv = () => ({ ...process.env, ANTHROPIC_API_KEY: 'sk-fake-key-for-tests', ANTHROPIC_BASE_URL: fake.url });
const sessionOf = (out) => (out.match(/session (sesn_\w+) created/) || [])[1];
async function events(id) {
  const r = await c.api(`/v1/sessions/${id}/events?limit=1000`, { key: c.apiKey });
  assert.equal(r.status, 200);
  return r.body.data;
}

test('a session to its end: the fake model calls an MCP tool and sandbox tools, then ends its turn', async () => {
  const n0 = fake.requests.length;
  const r = await run(BIN, agentArgs('scenario:full add two numbers'), { env: modelEnv(), timeoutMs: 60000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = r.stdout;
  assert.match(out, /model claude-sonnet-4-5 chooses the tools/);
  assert.match(out, /mcp everything: connected, \d+ tools/);
  assert.match(out, /\[1\] everything\.echo \.\.\. ok[\s\S]*Echo: records-123/);
  assert.match(out, /\[2\] sandbox\.write \.\.\. ok/);
  assert.match(out, /\[3\] sandbox\.bash \.\.\. ok \([\d.]+ ms\)\n\s+\| 42/);
  assert.match(out, /The script printed 42\. Done\./);
  assert.match(out, /done: 3 steps in [\d.]+ s \(1 MCP calls \d+ ms, 2 sandbox calls \d+ ms\)/);
  // What the fake was sent: the key, the version, the tools, and each tool's result in the next request.
  const reqs = fake.requests.slice(n0);
  assert.equal(reqs.length, 4);
  assert.equal(reqs[0].headers['x-api-key'], 'sk-fake-key-for-tests');
  assert.equal(reqs[0].headers['anthropic-version'], '2023-06-01');
  assert.equal(reqs[0].body.stream, true);
  const names = reqs[0].body.tools.map((t) => t.name);
  for (const n of ['bash', 'read', 'write', 'edit', 'glob', 'grep', 'everything__echo']) assert.ok(names.includes(n), n);
  const lastResult = (req) => req.body.messages.at(-1).content.find((b) => b.type === 'tool_result');
  assert.match(JSON.stringify(lastResult(reqs[1])), /Echo: records-123/);
  assert.equal(lastResult(reqs[3]).tool_use_id, 'toolu_03');
  assert.match(JSON.stringify(lastResult(reqs[3]).content), /42/);
  // The session's log holds every call, whoever ran it.
  const evs = await events(sessionOf(out));
  const types = evs.map((e) => e.type);
  for (const t of ['user.message', 'agent.mcp_tool_use', 'agent.mcp_tool_result', 'agent.tool_use', 'user.tool_result', 'agent.message',
    'session.status_idle', 'session.status_terminated'])
    assert.ok(types.includes(t), `${t} in ${types}`);
  assert.equal(evs.filter((e) => e.type === 'agent.tool_use').length, 2);
  assert.ok(evs.find((e) => e.type === 'agent.mcp_tool_use').mcp_server_name === 'everything');
  assert.ok(!r.stdout.includes('sk-fake-key') && !r.stderr.includes('sk-fake-key'), 'the model key is not printed');
});

test('tool errors go back to the model as is_error tool_results; the run goes on to end_turn', async () => {
  const n0 = fake.requests.length;
  const r = await run(BIN, agentArgs('scenario:tool-error'), { env: modelEnv(), timeoutMs: 60000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /\[1\] sandbox\.read \.\.\. TOOL ERROR \(sent to the model\)/);
  assert.match(r.stdout, /\[2\] everything\.echo \.\.\. TOOL ERROR \(sent to the model\)/);
  assert.match(r.stdout, /\[3\] sandbox\.python \.\.\. TOOL ERROR \(sent to the model\)[\s\S]*no tool named python/);
  assert.match(r.stdout, /\[4\] sandbox\.bash \.\.\. ok[\s\S]*recovered/);
  assert.match(r.stdout, /The file is missing; I said so\./);
  assert.match(r.stdout, /done: 4 steps in/);
  assert.match(r.stdout, /3 tool error\(s\) went back to the model/);
  const reqs = fake.requests.slice(n0);
  assert.equal(reqs.length, 4, 'four model requests: each error went back and the model answered');
  const results = (req) => req.body.messages.at(-1).content.filter((b) => b.type === 'tool_result');
  const [read] = results(reqs[1]);
  assert.equal(read.tool_use_id, 'toolu_01');
  assert.equal(read.is_error, true);
  assert.match(JSON.stringify(read.content), /does-not-exist|No such file|not found/i);
  const [echo, py] = results(reqs[2]);
  assert.deepEqual([echo.tool_use_id, echo.is_error, py.tool_use_id, py.is_error], ['toolu_02', true, 'toolu_03', true]);
  assert.match(JSON.stringify(py.content), /no tool named python/);
  assert.equal(results(reqs[3])[0].is_error, false);
  // the session logged the failed sandbox call and its result; the unknown tool was never posted
  const evs = await events(sessionOf(r.stdout));
  const uses = evs.filter((e) => e.type === 'agent.tool_use').map((e) => e.name);
  assert.deepEqual(uses, ['read', 'bash']);
  assert.ok(evs.some((e) => e.type === 'user.tool_result' && e.is_error === true));
});

test('--control-ca: an https:// control plane (postern control with tls on loopback) checked against the given CA', async () => {
  const pki = tmpdir('postern-agent-pki-');
  const tc = { c: null };
  try {
    const ca = makeCA(pki);
    const other = makeCA(pki, 'other-ca');
    const leaf = makeLeaf(pki, ca, 'control', ['IP:127.0.0.1', 'DNS:localhost']);
    const port = await freePort();
    tc.c = await startControl({ store: 'sqlite', listen: `127.0.0.1:${port}`, name: 'control-tls',
      config: { tls: `{cert_file: ${leaf.cert}, key_file: ${leaf.key}}` } });
    const key = path.join(pki, 'api.key');
    writeFileSync(key, `${tc.c.apiKey}\n`, { mode: 0o600 });
    const plan = path.join(pki, 'plan.yaml');
    writeFileSync(plan, 'steps:\n  - {name: hello, mcp: everything, tool: echo, args: {message: over-tls}}\n');
    const env = { ...process.env };
    delete env.ANTHROPIC_API_KEY;
    const args = (extra) => ['agent', '--control', `https://127.0.0.1:${port}`, '--api-key-file', key, '--env', tc.c.envId,
      '--mcp', `everything=${mcpUrl}`, '--plan', plan, ...extra, 'a task over TLS'];
    const ok = await run(BIN, args(['--control-ca', ca.cert]), { env, timeoutMs: 60000 });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /Echo: over-tls/);
    const sid = sessionOf(ok.stdout);
    assert.ok(sid, ok.stdout);
    // the session and its events are on the TLS control plane
    const evs = JSON.parse((await run(BIN, ['control', 'session', 'events', sid, '-c', tc.c.cfgPath], { timeoutMs: 20000 })).stdout);
    const list = Array.isArray(evs) ? evs : evs.data;
    assert.ok(list.some((e) => e.type === 'agent.mcp_tool_use'), JSON.stringify(evs).slice(0, 500));
    // without it (the system's CAs) and with another CA: refused at the handshake, nothing created
    for (const extra of [[], ['--control-ca', other.cert]]) {
      const bad = await run(BIN, args(extra), { env, timeoutMs: 60000 });
      assert.notEqual(bad.code, 0, bad.stdout);
      assert.match(bad.stdout + bad.stderr, /certificate|SSL|TLS/i);
      assert.doesNotMatch(bad.stdout, /session sesn_\w+ created/);
    }
    const missing = await run(BIN, args(['--control-ca', path.join(pki, 'nope.pem')]), { env, timeoutMs: 20000 });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--control-ca .*nope\.pem: No such file/);
  } finally {
    await tc.c?.stop();
    rmrf(pki);
  }
});

for (const [scenario, re] of [
  ['model-error', /model error: HTTP 529 overloaded_error: Overloaded/],
  ['stream-error', /model error: api_error: Internal server error/],
]) {
  test(`${scenario}: a clear transcript line, the session terminated, a non-zero exit`, async () => {
    const r = await run(BIN, agentArgs(`scenario:${scenario}`), { env: modelEnv(), timeoutMs: 60000 });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, re);
    assert.match(r.stdout, /postern agent: stopped: /);
    assert.match(r.stdout, /session sesn_\w+ terminated/);
  });
}

test('a timed-out tool: TIMED OUT after --tool-timeout, not a hang', async () => {
  const s = Date.now();
  const r = await run(BIN, agentArgs('scenario:timeout', ['--tool-timeout', '2s']), { env: modelEnv(), timeoutMs: 60000 });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /\[1\] sandbox\.bash \.\.\. TIMED OUT after \d+ ms: no result for \w+ within 2000 ms/);
  assert.match(r.stdout, /session sesn_\w+ terminated/);
  assert.ok(Date.now() - s < 20000, `took ${Date.now() - s} ms`);
});

test('a plan file: SCRIPTED said loudly; a bad plan is refused naming file, line and key', async () => {
  const plan = path.join(dir, 'plan.yaml');
  writeFileSync(plan, 'steps:\n  - {name: hello, mcp: everything, tool: echo, args: {message: hi}}\n  - {name: keep, tool: bash, args: {command: "echo got ${hello.output}"}}\n');
  const env = { ...process.env };
  delete env.ANTHROPIC_API_KEY;
  let r = await run(BIN, agentArgs('a scripted task', ['--plan', plan]), { env, timeoutMs: 60000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /\*\*\* SCRIPTED RUN: following .*plan\.yaml step by step; NO MODEL is involved/);
  assert.match(r.stdout, /\[2\/2\] keep\s+sandbox\.bash \.\.\. ok[\s\S]*\| got Echo: hi/);
  // --json: the session's events on stdout, one per line; the transcript on stderr.
  r = await run(BIN, agentArgs('a scripted task', ['--plan', plan, '--json']), { env, timeoutMs: 60000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const evs = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(evs.some((e) => e.type === 'agent.tool_use' && e.name === 'bash'), r.stdout);
  assert.ok(evs.some((e) => e.type === 'user.tool_result' && JSON.stringify(e.content).includes('got Echo: hi')), r.stdout);
  assert.match(r.stderr, /\[2\/2\] keep/);
  writeFileSync(plan, 'steps:\n  - {tool: bash, args: {command: x}, bogus: 1}\n');
  r = await run(BIN, agentArgs('x', ['--plan', plan]), { env, timeoutMs: 10000 });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /plan\.yaml:2: .*bogus/);
  r = await run(BIN, agentArgs('x'), { env, timeoutMs: 10000 });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no ANTHROPIC_API_KEY and no --plan/);
});

// The sandbox cgroups (postern-<pid>-...) a process is in, from /proc/PID/cgroup (v1 and v2 lines).
function cgroupsOf(pid) {
  let text = '';
  try { text = readFileSync(`/proc/${pid}/cgroup`, 'utf8'); } catch { return []; }
  const out = [];
  for (const l of text.split('\n').filter(Boolean)) {
    const [, ctrl, p] = l.split(':');
    if (!/\/postern-\d+/.test(p)) continue;
    const base = ctrl ? `/sys/fs/cgroup/${ctrl.replace(/^name=/, '')}` : '/sys/fs/cgroup';
    out.push(path.join(base, p.replace(/\/postern-leaf$/, '')));
  }
  return out;
}
const marker = 'sleep 4747';
const markerProcs = () => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
  try { return execFileSync('cat', [`/proc/${p}/cmdline`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).replace(/\0/g, ' ').includes(marker); } catch { return false; }
});

test('SIGINT mid-step: the session is terminated, the worker removes the sandbox; no process, cgroup or workspace left', async () => {
  const plan = path.join(dir, 'slow.yaml');
  writeFileSync(plan, `steps:\n  - {name: mark, tool: write, args: {file_path: /workspace/x, content: x}}\n  - {name: slow, tool: bash, args: {command: "${marker}"}}\n`);
  const env = { ...process.env };
  delete env.ANTHROPIC_API_KEY;
  const wsBefore = new Set(readdirSync(ws));
  const a = start(BIN, agentArgs('interrupt me', ['--plan', plan]), { env, name: 'agent' });
  await a.waitFor(/\[2\/2\] slow\s+sandbox\.bash \.\.\. /, 30000);
  await waitUntil(() => markerProcs().length > 0, 10000, 50, 'the sandboxed command running');
  const ours = markerProcs().flatMap(cgroupsOf);
  if (!ours.length) console.log('# the sandbox ran without a cgroup of its own here (no delegated hierarchy)');
  a.child.kill('SIGINT');
  const ex = await Promise.race([a.exited, new Promise((r) => setTimeout(() => r({ code: 'hang' }), 15000))]);
  assert.equal(ex.code, 130, a.log);
  assert.match(a.log, /INTERRUPTED/);
  assert.match(a.log, /session (sesn_\w+) terminated/);
  assert.match(a.log, /postern agent: interrupted/);
  const id = a.log.match(/session (sesn_\w+) terminated/)[1];
  await worker.waitFor(new RegExp(`msg="item done" work=\\S+ session=${id}`), 30000);
  await waitUntil(() => markerProcs().length === 0, 15000, 100, 'the sandboxed command gone');
  await waitUntil(() => ours.every((g) => !existsSync(g)), 15000, 100, `cgroups ${ours} removed`);
  // The session's workspace goes with it (the pool's next warm child may have made a fresh one).
  await waitUntil(() => {
    const now = readdirSync(ws).filter((d) => !wsBefore.has(d));
    return now.length <= 1;
  }, 15000, 100, 'the session workspace removed');
  const evs = await events(id);
  assert.ok(evs.some((e) => e.type === 'session.status_terminated'));
});

test('--permission bash=ask: the prompt on the terminal, user.tool_confirmation posted; a no stops the run', async () => {
  const plan = path.join(dir, 'ask.yaml');
  writeFileSync(plan, 'steps:\n  - {name: asked, tool: bash, args: {command: "echo asked-and-ran"}}\n');
  const env = { ...process.env };
  delete env.ANTHROPIC_API_KEY;
  // script(1) gives the agent a terminal (/dev/tty) and types the answer into it.
  const cmd = [BIN, ...agentArgs('ask me', ['--plan', plan, '--permission', 'bash=ask'])].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  for (const [answer, code, re] of [['y', 0, /\[1\/1\] asked\s+sandbox\.bash \.\.\. [\s\S]*ok \([\d.]+ ms\)[\s\S]*asked-and-ran/], ['n', 1, /TOOL ERROR[\s\S]*denied at the permission prompt/]]) {
    const a = start('script', ['-qfec', cmd, '/dev/null'], { env, name: `agent-ask-${answer}` });
    await a.waitFor(/allow bash \{"command":"echo asked-and-ran"\}\? \[y\/N\]/, 30000);
    a.child.stdin.write(`${answer}\n`);
    const ex = await Promise.race([a.exited, new Promise((r) => setTimeout(() => r({ code: 'hang' }), 30000))]);
    assert.equal(ex.code, code, a.log);
    assert.match(a.log, re);
    const id = a.log.match(/session (sesn_\w+) created/)[1];
    const evs = await events(id);
    const use = evs.find((e) => e.type === 'agent.tool_use');
    assert.equal(use.evaluated_permission, 'ask');
    const conf = evs.find((e) => e.type === 'user.tool_confirmation');
    assert.equal(conf.result, answer === 'y' ? 'allow' : 'deny');
    assert.equal(conf.tool_use_id, use.id);
  }
});
