// `make demo` is the main job: run its script and check each step's content.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './lib/proc.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('make demo: the tunnel and the sandbox, step by step, and nothing left running', async () => {
  const r = await run(process.execPath, [path.join(root, 'scripts/demo.mjs')], { timeoutMs: 120000, env: process.env });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = r.stdout;
  assert.match(out, /tools\/list through the tunnel \.\.\. ok/);
  assert.match(out, /echo -> "Echo: demo-\d+"/);
  assert.match(out, /get-sum\(19, 23\) -> "The sum of 19 and 23 is 42\."/);
  assert.match(out, /hello from sandbox, uid \d+, pid \d+/);
  assert.match(out, /X-Proxy-Error: reserved-name/);
  assert.match(out, /appears nowhere in the edge's output/);
  assert.match(out, /done in [\d.]+ s; stopping everything/);
  const left = await run('pgrep', ['-f', 'postern-demo-']);
  assert.equal(left.stdout.trim(), '', `processes left behind: ${left.stdout}`);
});
