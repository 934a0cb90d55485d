// `postern worker` attacked (the red team of issue 13) by a hostile control plane or event author, against the
// FAKE of Anthropic's environments API (tests/e2e/fixtures/fake_environments.mjs: a test fixture, not
// Anthropic's service): a secret's api_base_url and redirects pointing at another host, verdicts that are not
// strings, ids and names that try to forge log lines, tool inputs aimed outside the workspace, and an SSE
// stream that sends garbage and a line that never ends. docs/threat-model.md, "The control plane and worker
// (attacked)", lists the classes and the results.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { makeCA, makeLeaf } from './lib/certs.mjs';
import { writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { BIN, start, stopAll, tmpdir, rmrf, sleep } from './lib/proc.mjs';
import { startFakeEnvironments } from './fixtures/fake_environments.mjs';

const dirs = [];
const fakes = [];
const servers = [];
after(async () => {
  await stopAll();
  for (const f of fakes) await f.close().catch(() => {});
  for (const s of servers) await new Promise((r) => s.close(r));
  for (const d of dirs) rmrf(d);
});

// A loopback HTTP server that records what reaches it (the "other host"); answer(req, res) or a 200 "{}".
async function listener(answer) {
  const hits = [];
  const s = http.createServer((req, res) => {
    hits.push({ method: req.method, url: req.url, auth: req.headers.authorization || '' });
    if (answer) answer(req, res); else { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{}'); }
  });
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  return { hits, url: `http://127.0.0.1:${s.address().port}` };
}

async function setup({ fakeOpts = {}, baseUrl, extra = [] } = {}) {
  const fake = await startFakeEnvironments({ ttlSeconds: 10, ...fakeOpts });
  fakes.push(fake);
  const dir = tmpdir('postern-wred-');
  dirs.push(dir);
  const ws = path.join(dir, 'ws');
  mkdirSync(ws);
  const keyFile = path.join(dir, 'env.key');
  writeFileSync(keyFile, `${fake.environmentKey}\n`, { mode: 0o600 });
  chmodSync(keyFile, 0o600);
  const cfgPath = path.join(dir, 'worker.yaml');
  writeFileSync(cfgPath, [`base_url: ${baseUrl || fake.baseURL}`, `environment_id: ${fake.environmentId}`,
    `environment_key_file: ${keyFile}`, 'worker_id: red-worker', `workspace_root: ${ws}`, 'max_sessions: 2',
    'pool_size: 1', 'log_level: debug', ...extra].join('\n') + '\n');
  const w = start(BIN, ['worker', '-c', cfgPath], { name: 'worker' });
  await w.waitFor(/msg="worker started"/, 10000);
  return { w, dir, fake };
}

async function session(w, fake) {
  const item = fake.enqueueSession();
  await w.waitFor(new RegExp(`msg="item claimed" work=${item.workId}`), 15000);
  await fake.waitFor(() => fake.requests.some((r) => r.route === 'events.list' && r.path.includes(item.sessionId)),
    { what: 'history read' });
  return item;
}
const text = (r) => (r.content ?? []).map((b) => b.text ?? '').join('');

test('a secret whose api_base_url names another host, and redirects to one: the keys never go there', async () => {
  const thief = await listener();
  const { w, fake } = await setup({ fakeOpts: { secretApiBaseUrl: thief.url } });
  const { sessionId, sessionsToken } = await session(w, fake);
  const ev = fake.toolUse(sessionId, 'bash', { command: 'echo served-here' });
  const r = await fake.waitForResult(sessionId, ev.id, 30000);
  assert.match(text(r), /served-here/);
  assert.equal(thief.hits.length, 0, `the worker called the secret's api_base_url: ${JSON.stringify(thief.hits)}`);
  assert.ok(!w.log.includes(sessionsToken), 'the sessions token reached the log');

  // a control plane that answers with redirects to another host: libcurl does not follow them
  const thief2 = await listener();
  const redirector = await listener((req, res) => { res.writeHead(307, { location: `${thief2.url}${req.url}` }); res.end(); });
  const r2 = await setup({ baseUrl: redirector.url });
  await r2.fake.waitFor(() => redirector.hits.length >= 2, { timeoutMs: 15000, what: 'two polls at the redirector' });
  await sleep(500);
  assert.equal(thief2.hits.length, 0, `a redirect was followed: ${JSON.stringify(thief2.hits)}`);
  assert.ok(redirector.hits[0].auth.startsWith('Bearer '), 'the poll carried the environment key to base_url');
});

test('hostile events: non-string verdicts never run; ids and names cannot forge log lines', async () => {
  const { w, fake } = await setup();
  const { sessionId } = await session(w, fake);
  const odd = [['deny'], { allow: true }, 1, true, 'ALLOW'].map((p, i) => fake.postEvent(sessionId, {
    type: 'agent.tool_use', id: `toolu_odd${i}`, name: 'bash', input: { command: `touch /workspace/ran${i}` },
    evaluated_permission: p, session_thread_id: null }));
  for (const e of odd) await w.waitFor(new RegExp(`tool_use_id="?${e.id}"? tool="?bash"? reason="unknown evaluated_permission`), 10000);
  // a name and an id carrying a newline and a forged logfmt line
  const forged = 'x\nlevel=error msg="forged line" secret=leak';
  fake.postEvent(sessionId, { type: 'agent.tool_use', id: `toolu_${forged}`, name: `web_${forged}`, input: {}, session_thread_id: null });
  fake.postEvent(sessionId, { type: `vendor.${forged}`, id: `sevt_${forged}` });
  const ls = fake.toolUse(sessionId, 'bash', { command: 'ls /workspace; echo listed' });
  const r = await fake.waitForResult(sessionId, ls.id, 30000);
  assert.match(text(r), /listed/);
  assert.doesNotMatch(text(r), /ran\d/, `a tool with a non-string verdict ran: ${text(r)}`);
  for (const e of odd) assert.equal(fake.resultFor(sessionId, e.id)?.is_error ?? true, true);
  await sleep(300);
  assert.match(w.log, /forged line/, 'the hostile values were logged (quoted)');
  assert.doesNotMatch(w.log, /msg="forged line"/, 'a peer value forged a log line');
});

test('tool inputs aimed outside the workspace read nothing of the host', async () => {
  const { w, fake, dir } = await setup();
  const marker = path.join(dir, 'host-secret.txt');
  writeFileSync(marker, 'HOST-ONLY-MARKER-7f3a\n');
  const { sessionId } = await session(w, fake);
  const calls = [
    ['read', { file_path: marker }],
    ['read', { file_path: `/workspace/../../../..${marker}` }],
    ['bash', { command: `cat ${marker} 2>&1; cat /proc/1/root${marker} 2>&1; echo done` }],
    ['grep', { pattern: 'HOST-ONLY', path: dir }],
    ['glob', { pattern: '**/host-secret.txt', path: '/' }],
  ];
  for (const [name, input] of calls) {
    const ev = fake.toolUse(sessionId, name, input);
    const r = await fake.waitForResult(sessionId, ev.id, 30000);
    assert.doesNotMatch(JSON.stringify(r), /HOST-ONLY-MARKER/, `${name} ${JSON.stringify(input)} read the host file: ${JSON.stringify(r)}`);
  }
});

test('an SSE stream of garbage and a line that never ends: the worker reconnects and keeps serving', async () => {
  const { w, fake } = await setup();
  const { sessionId } = await session(w, fake);
  fake.injectRaw(sessionId, 'data: {not json\n\n\0\0\xff\xfe\n\nevent: x\ndata: ' + 'A'.repeat(9 << 20));
  await fake.waitFor(() => fake.requests.filter((r) => r.route === 'events.stream' && r.path.includes(sessionId)).length >= 2,
    { timeoutMs: 20000, what: 'a reconnect after the oversized line' });
  const ev = fake.toolUse(sessionId, 'bash', { command: 'echo still-serving' });
  const r = await fake.waitForResult(sessionId, ev.id, 30000);
  assert.match(text(r), /still-serving/);
});

test('TLS: a control plane whose certificate another CA signed is refused; the right ca_file is served', async () => {
  const pki = tmpdir('postern-wred-pki-');
  dirs.push(pki);
  const ca = makeCA(pki, 'right-ca');
  const wrong = makeCA(pki, 'wrong-ca');
  const leaf = makeLeaf(pki, ca, 'control', ['IP:127.0.0.1', 'DNS:localhost']);
  const hits = [];
  const s = https.createServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) }, (req, res) => {
    hits.push({ url: req.url, auth: req.headers.authorization || '' });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('null');
  });
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  const url = `https://127.0.0.1:${s.address().port}`;
  const bad = await setup({ baseUrl: url, extra: [`ca_file: ${wrong.cert}`] });
  await bad.w.waitFor(/poll failed|certificate|SSL/i, 15000);
  await sleep(1500);
  assert.equal(hits.length, 0, `a request went over TLS the wrong CA signed: ${JSON.stringify(hits)}`);
  await bad.w.kill('SIGTERM');
  const good = await setup({ baseUrl: url, extra: [`ca_file: ${ca.cert}`] });
  await good.fake.waitFor(() => hits.length >= 1, { timeoutMs: 15000, what: 'a poll over verified TLS' });
  assert.match(hits[0].url, /\/work\/poll/);
});
