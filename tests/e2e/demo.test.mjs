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

test('postern check validates edge, gateway and proxy configs with their own loaders', async () => {
  const { tmpdir, rmrf, postern } = await import('./lib/proc.mjs');
  const { writeFileSync } = await import('node:fs');
  const d = tmpdir('postern-check-');
  try {
    const cases = [
      ['edge.yaml', 'state_dir: /tmp/x\ndomain: t.test\nconnector_tls: {cert_file: /a, key_file: /b}\nbogus: 1\n', /edge\.yaml:4: unknown key 'bogus' in the edge config/],
      ['gw.yaml', 'token_file: /t\nedges: ["127.0.0.1:1"]\nconnections: lots\nroutes: {a: "http://10.0.0.1:1"}\ntls: {cert_file: /a, key_file: /b}\n', /gw\.yaml:3: connections:/],
      ['px.yaml', 'listen_addr: 127.0.0.1:0\ntls: {cert_file: /a, key_file: /b}\nroutes: {a: "http://10.0.0.1:1/mcp"}\n', /px\.yaml:3: a: invalid upstream \(must be scheme:\/\/host:port\)/],
    ];
    for (const [name, yaml, re] of cases) {
      writeFileSync(`${d}/${name}`, yaml);
      const r = await postern(['check', '-c', `${d}/${name}`]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, re);
    }
    const u = await postern(['check']);
    assert.equal(u.code, 2);
    assert.match(u.stderr, /-c FILE is required/);
  } finally {
    rmrf(d);
  }
});
