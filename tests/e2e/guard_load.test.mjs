// Issue 10, shown under load: 50 concurrent SDK clients make 10,000 tool calls through edge -> gateway on a
// guarded route (policy, audit to a file and to a real rsyslogd over TCP). Every call is in the audit exactly
// once each way, `postern audit verify` passes, deleting or editing one line fails naming it, and syslog
// receives the same lines as the file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { start, postern, freePort, rmrf, stopAll, waitUntil } from './lib/proc.mjs';
import { makeEdges, createTunnel, startGateway } from './lib/tunnel.mjs';
import { pinnedFetch } from './lib/mcp.mjs';
import { requireRsyslog, startRsyslog, received } from './lib/rsyslog.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FIXTURE = path.join(root, 'tests/e2e/fixtures/guard_server.mjs');
const CLIENTS = 50, CALLS = 10000;
let ctx, t, gw, rs, audit, url;

before(async () => {
  const modDir = requireRsyslog();
  ctx = await makeEdges(1);
  await ctx.edges[0].start();
  t = await createTunnel(ctx, 'load');
  rs = await startRsyslog(ctx.dir, modDir, 'load');
  const upPort = await freePort();
  const up = start(process.execPath, [FIXTURE, 'http', String(upPort)], { name: 'upstream' });
  await up.waitFor(/listening/, 10000);
  audit = path.join(ctx.dir, 'audit', 'audit.jsonl');
  gw = await startGateway(ctx, t, {
    load: `{url: "http://127.0.0.1:${upPort}", policy: {default: allow, rules: [{match: {tool: "write_*"}, action: deny}]}}`,
  }, { extra: ['audit:', `  file: ${audit}`, `  syslog: tcp://127.0.0.1:${rs.ports.tcp}`, '  syslog_hostname: postern-load',
    '  queue: 100000', 'log_level: warn'] });
  url = `https://load.${t.domain}:${ctx.edges[0].client}/mcp`;
});

after(async () => {
  await stopAll();
  if (ctx) rmrf(ctx.dir);
});

async function client(calls, results) {
  const f = pinnedFetch({ ca: t.ca });
  const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: f });
  const c = new Client({ name: 'postern-load', version: '1.0.0' });
  await c.connect(transport);
  try {
    for (let i = 0; i < calls; i++) {
      const r = await c.callTool({ name: 'echo', arguments: { text: `n${i}`, password: `secret-${i}` } });
      if (r.content[0].text === `echo:${JSON.stringify({ text: `n${i}`, password: `secret-${i}` })}`) results.ok++;
    }
  } finally {
    await transport.terminateSession().catch(() => {});
    await c.close();
    await f.close();
  }
}

test(`${CLIENTS} clients, ${CALLS} tool calls through the tunnel: one audit line each way per call, chain verifies, syslog has every line`, { timeout: 600000 }, async () => {
  const results = { ok: 0 };
  const t0 = Date.now();
  await Promise.all(Array.from({ length: CLIENTS }, () => client(CALLS / CLIENTS, results)));
  const ms = Date.now() - t0;
  assert.equal(results.ok, CALLS);
  process.stderr.write(`# ${CALLS} calls by ${CLIENTS} clients in ${ms} ms (${Math.round(CALLS / (ms / 1000))} calls/s)\n`);

  const raw = readFileSync(audit, 'utf8');
  const lines = raw.trim().split('\n').map((l) => JSON.parse(l));
  const calls = (dir) => lines.filter((l) => l.dir === dir && l.method === 'tools/call' && l.tool === 'echo');
  assert.equal(calls('in').length, CALLS, 'audit "in" lines for tools/call');
  assert.equal(calls('out').length, CALLS, 'audit "out" lines for tools/call');
  assert.ok(calls('out').every((l) => l.status === 'ok'));
  assert.equal(new Set(calls('in').map((l) => l.trace_id)).size, CALLS, 'each call has its own trace id');
  assert.ok(!raw.includes('secret-'), 'a password argument reached the audit');
  lines.forEach((l, i) => assert.equal(l.seq, i));

  let r = await postern(['audit', 'verify', audit], { timeoutMs: 120000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const text = raw.split('\n');
  const del = path.join(ctx.dir, 'deleted.jsonl');
  writeFileSync(del, [...text.slice(0, 4999), ...text.slice(5000)].join('\n'));
  r = await postern(['audit', 'verify', del], { timeoutMs: 120000 });
  assert.notEqual(r.code, 0);
  assert.match(r.stdout + r.stderr, /deleted\.jsonl:5000: removed/);
  const ed = path.join(ctx.dir, 'edited.jsonl');
  const e = [...text];
  e[7776] = e[7776].replace('"status":"ok"', '"status":"ko"').replace('"decision":"allow"', '"decision":"allaw"');
  writeFileSync(ed, e.join('\n'));
  r = await postern(['audit', 'verify', ed], { timeoutMs: 120000 });
  assert.notEqual(r.code, 0);
  assert.match(r.stdout + r.stderr, /edited\.jsonl:7777: edited/);

  // syslog: the same lines, in order, however long delivery takes under load
  await waitUntil(() => received(rs, 'postern-load').length >= lines.length, 120000, 200, 'rsyslog to receive every line');
  const got = received(rs, 'postern-load').map((x) => x.msg);
  assert.equal(got.length, text.filter(Boolean).length);
  assert.deepEqual(got, text.filter(Boolean));
});
