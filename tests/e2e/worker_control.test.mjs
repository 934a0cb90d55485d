// `postern worker` against `postern control` (the platform side of this repository), on each store the
// control tests run on: the same session as against the fake, end to end over real HTTP and a real store.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { BIN, start, stopAll, tmpdir, rmrf, waitUntil } from './lib/proc.mjs';
import { startControl, stores } from './lib/control.mjs';

const cleanups = [];
after(async () => {
  await stopAll();
  for (const f of cleanups.reverse()) await f().catch(() => {});
});

for (const store of stores) {
  test(`a session end to end through postern control (${store}): six tools, ask/deny, a foreign tool pending`, async () => {
    const c = await startControl({ store, config: { lease_ttl: '10s' } });
    cleanups.push(() => c.stop());
    const dir = tmpdir('postern-wctl-');
    cleanups.push(async () => rmrf(dir));
    const ws = path.join(dir, 'ws');
    mkdirSync(ws);
    const keyFile = path.join(dir, 'env.key');
    writeFileSync(keyFile, `${c.envKey}\n`, { mode: 0o600 });
    const cfg = path.join(dir, 'worker.yaml');
    writeFileSync(cfg, [`base_url: ${c.url}`, `environment_id: ${c.envId}`, `environment_key_file: ${keyFile}`,
      `workspace_root: ${ws}`, 'pool_size: 1', 'max_sessions: 2', 'log_level: debug'].join('\n') + '\n');
    const w = start(BIN, ['worker', '-c', cfg], { name: `worker-${store}` });
    await w.waitFor(/msg="worker started"/, 10000);

    const s = await c.createSession();
    await w.waitFor(new RegExp(`msg="item claimed" work=\\S+ type=session session=${s.id}`), 20000);
    // Events posted before the worker's stream is open reach it through the history read; later ones live.
    const post = async (ev) => {
      const r = await c.api(`/v1/sessions/${s.id}/events`, { key: c.apiKey, body: { events: [ev] } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.data[0];
    };
    const events = async () => {
      const out = [];
      let page;
      for (let i = 0; i < 50; i++) {
        const r = await c.api(`/v1/sessions/${s.id}/events?limit=1000${page ? `&page=${encodeURIComponent(page)}` : ''}`, { key: c.apiKey });
        assert.equal(r.status, 200);
        out.push(...r.body.data);
        page = r.body.next_page;
        if (!page) break;
      }
      return out;
    };
    const resultOf = async (id, timeoutMs = 30000) => {
      let found;
      await waitUntil(async () => { found = (await events()).find((e) => e.type === 'user.tool_result' && e.tool_use_id === id); return !!found; },
        timeoutMs, 100, `the result of ${id}`);
      return found;
    };
    const text = (r) => (r.content ?? []).map((b) => b.text ?? '').join('');

    const calls = [
      ['write', { file_path: '/workspace/c.txt', content: 'one\ntwo\n' }],
      ['read', { file_path: '/workspace/c.txt' }],
      ['edit', { file_path: '/workspace/c.txt', old_string: 'two', new_string: 'TWO' }],
      ['bash', { command: 'cat /workspace/c.txt' }],
      ['glob', { pattern: '*.txt', path: '/workspace' }],
      ['grep', { pattern: 'TWO', path: '/workspace' }],
    ];
    const got = [];
    for (const [name, input] of calls) {
      const ev = await post({ type: 'agent.tool_use', name, input, evaluated_permission: 'allow' });
      got.push(await resultOf(ev.id));
    }
    assert.equal(got[0].is_error, false);
    assert.match(text(got[1]), /one/);
    assert.equal(got[2].is_error, false);
    assert.match(text(got[3]), /one\nTWO/);
    assert.match(text(got[4]), /c\.txt/);
    assert.match(text(got[5]), /TWO/);

    const ask = await post({ type: 'agent.tool_use', name: 'bash', input: { command: 'echo approved' }, evaluated_permission: 'ask' });
    const deny = await post({ type: 'agent.tool_use', name: 'bash', input: { command: 'touch /workspace/nope' }, evaluated_permission: 'deny' });
    const foreign = await post({ type: 'agent.tool_use', name: 'web_search', input: { query: 'x' } });
    await w.waitFor(new RegExp(`tool_use_id="?${ask.id}"? tool=bash reason="awaiting`), 15000);
    await post({ type: 'user.tool_confirmation', tool_use_id: ask.id, result: 'allow' });
    assert.match(text(await resultOf(ask.id)), /approved/);
    const ls = await post({ type: 'agent.tool_use', name: 'bash', input: { command: 'ls /workspace' } });
    assert.doesNotMatch(text(await resultOf(ls.id)), /nope/);
    const all = await events();
    for (const id of [deny.id, foreign.id])
      assert.ok(!all.some((e) => e.type === 'user.tool_result' && e.tool_use_id === id), 'no reply');

    const term = await c.api(`/v1/sessions/${s.id}/archive`, { key: c.apiKey, body: {} });
    assert.equal(term.status, 200, JSON.stringify(term.body));
    await w.waitFor(new RegExp(`msg="item done" work=\\S+ session=${s.id}`), 30000);
    assert.ok(!w.log.includes(c.envKey), 'the environment key is not logged');
    await w.kill('SIGTERM');
  });
}
