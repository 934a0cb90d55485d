// `make demo` is the main job: run its script (as `make demo` does, minus the build) and check what it shows:
// the report the sandbox computed from the records read through the tunnel, the deny decision and its rule,
// the audit (count and chain), the edge's view, and nothing left running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './lib/proc.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const demoDirs = () => readdirSync(os.tmpdir()).filter((d) => d.startsWith('postern-demo-'));

test('make demo: an agent reads records through the tunnel, the sandbox summarises them, all audited', async () => {
  const before = new Set(demoDirs());
  const env = { ...process.env };
  delete env.ANTHROPIC_API_KEY; // the scripted run is what is tested here
  const r = await run(process.execPath, [path.join(root, 'scripts/demo.mjs')], { timeoutMs: 120000, env });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = r.stdout;
  assert.match(out, /\*\*\* SCRIPTED RUN: .* NO MODEL is involved/);
  assert.match(out, /mcp records: connected, \d+ tools/);
  // The records came through the tunnel (approval first), then the sandbox ran the script over them.
  assert.match(out, /list_records\s+records\.list_directory \.\.\. ok/);
  assert.match(out, /approved held call \w+: records\/list_directory \(rule listing-needs-approval\) via postern approvals approve/);
  assert.match(out, /read_orders\s+records\.read_text_file \.\.\. ok[\s\S]*1001,north,acme,120\.50/);
  assert.match(out, /try_write\s+records\.write_file \.\.\.\s+error \(expected\)/);
  assert.match(out, /tool "write_file" is denied by policy rule records-read-only of route records/);
  assert.match(out, /Echo: summarising the orders/);
  assert.match(out, /run_script\s+sandbox\.bash \.\.\. ok/);
  assert.match(out, /REPORT orders by region/);
  assert.match(out, /north\s+3 orders\s+230\.01/);
  assert.match(out, /south\s+2 orders\s+99\.99/);
  assert.match(out, /east\s+1 orders\s+300\.00/);
  assert.match(out, /TOTAL 6 orders 630\.00/);
  assert.match(out, /done: 7 steps in [\d.]+ s \(4 MCP calls \d+ ms, 3 sandbox calls \d+ ms\)/);
  assert.match(out, /session sesn_\w+ terminated/);
  // The deny as the audit recorded it, the audit's size and chain.
  assert.match(out, /the denied call, as the audit recorded it \.\.\. ok \(\d+ ms\)\n\s+seq=\d+ route=records method=tools\/call tool=write_file decision=deny rule=records-read-only/);
  const m = out.match(/the audit log at the boundary: (\d+) lines/);
  assert.ok(m, out);
  // initialize, initialized, tools/list on each route (answers of requests recorded both ways), 5 calls: more than 14
  assert.ok(Number(m[1]) >= 14, `audit lines: ${m[1]}`);
  assert.match(out, new RegExp(`audit: intact: ${m[1]} record\\(s\\) in 1 file\\(s\\), seq 0\\.\\.${Number(m[1]) - 1} from the genesis`));
  // The edge saw names and byte counts, no content.
  assert.match(out, /msg="client closed" entry=sni tunnel=\w+ host="records\.[\w.]+" .*up_bytes=\d+ down_bytes=\d+/);
  assert.match(out, /no record content .* appears anywhere in the edge's output/);
  assert.match(out, /done in [\d.]+ s; stopping everything/);
  const left = await run('pgrep', ['-f', 'postern-demo-']);
  assert.equal(left.stdout.trim(), '', `processes left behind: ${left.stdout}`);
  const newDirs = demoDirs().filter((d) => !before.has(d));
  assert.deepEqual(newDirs, [], 'the demo removed its work dir');
});
test('Ctrl-C during the agent step: everything the demo started is stopped and its work dir removed', async () => {
  const { start } = await import('./lib/proc.mjs');
  const before = new Set(demoDirs());
  const env = { ...process.env };
  delete env.ANTHROPIC_API_KEY;
  const d = start(process.execPath, [path.join(root, 'scripts/demo.mjs')], { env, name: 'demo' });
  await d.waitFor(/postern agent \(scripted/, 60000);
  d.child.kill('SIGINT');
  const ex = await Promise.race([d.exited, new Promise((r) => setTimeout(() => r({ code: 'hang' }), 30000))]);
  assert.equal(ex.code, 130, d.log);
  assert.match(d.log, /interrupted: stopping everything the demo started/);
  const left = await run('pgrep', ['-f', 'postern-demo-']);
  assert.equal(left.stdout.trim(), '', `processes left behind: ${left.stdout}`);
  assert.deepEqual(demoDirs().filter((x) => !before.has(x)), [], 'the demo removed its work dir');
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
