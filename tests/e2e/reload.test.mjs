// Live reload on SIGHUP (issue 11, docs/proxy.md "Reload"): `postern proxy` with an http route (web), a stdio
// MCP route (files), a plain route (old) and a guard policy. With a keep-alive connection and an MCP session
// open on web and a session on files, the file is rewritten (route fresh added, old removed, web's policy now
// denies write_file, files unchanged) and the process gets SIGHUP: same pid, fresh answers, old is 404, the
// denied tool is refused naming the new rule on the next call of the same session, files keeps its session
// and its child, the keep-alive connection carries on. Then broken files (a YAML error, a missing certificate,
// a certificate that does not cover tunnel_domain): an error naming file, line and key, the old config serving.
// Also: a changed stdio command retires the old bridge and its sessions; listen_addr is named as needing a
// restart; the audit chain goes on across kept and reopened sinks; a call held for approval when its route is
// removed is answered by its own rule; the same through `postern gateway` and an edge, where a connector key
// change is named as needing a restart; and after all that the proxy exits 0 (no leak under ASan).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Agent, fetch as ufetch } from 'undici';
import { start, postern, freePort, tmpdir, rmrf, stopAll } from './lib/proc.mjs';
import { pinnedFetch } from './lib/mcp.mjs';
import { makeEdges, createTunnel, startGateway } from './lib/tunnel.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FIXTURE = path.join(root, 'tests/e2e/fixtures/guard_server.mjs');
const DOMAIN = 'rl.test';
let dir, port, ca, px, upPort, yaml;

const text = (r) => r.content.map((c) => c.text).join('');

function config({ webPolicy, routes }) {
  return [
    `listen_addr: 127.0.0.1:${port}`,
    `tunnel_domain: ${DOMAIN}`,
    'log_level: info',
    'shutdown_timeout: 5s',
    `tls: { cert_file: ${path.join(dir, 'pki', 'server.pem')}, key_file: ${path.join(dir, 'pki', 'server.key')} }`,
    'upstream: {allowed_ips: [127.0.0.1/32]}',
    'routes:',
    '  web:',
    `    url: http://127.0.0.1:${upPort}`,
    '    policy:',
    '      default: allow',
    ...(webPolicy ? ['      rules:', ...webPolicy] : []),
    '  files:',
    `    stdio: ["${process.execPath}", "${FIXTURE}", "stdio"]`,
    '    policy: {default: allow}',
    ...routes,
  ].join('\n') + '\n';
}
const V1 = () => config({ routes: ['  old: "http://127.0.0.1:' + upPort + '"'] });
const V2 = () => config({
  webPolicy: ['        - {name: no-writes, match: {tool: "write_*"}, action: deny}'],
  routes: ['  fresh: "http://127.0.0.1:' + upPort + '"'],
});

// Raw MCP requests that all go over one connection (undici: connections 1); st.connects counts the dials.
function oneConnection(route, at = port) {
  const agent = new Agent({
    connections: 1,
    keepAliveTimeout: 60000,
    connect: {
      ca: readFileSync(ca),
      lookup: (_h, o, cb) => (o && o.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)),
    },
  });
  const st = { connects: 0, sid: undefined };
  agent.on('connect', () => { st.connects++; });
  // One JSON-RPC message in, the answer (a JSON body or the SSE event carrying it) out.
  const rpc = async (msg) => {
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    if (st.sid) Object.assign(headers, { 'mcp-session-id': st.sid, 'mcp-protocol-version': '2025-06-18' });
    const r = await ufetch(`https://${route}.${DOMAIN}:${at}/mcp`, { method: 'POST', headers, body: JSON.stringify(msg), dispatcher: agent });
    st.sid = r.headers.get('mcp-session-id') || st.sid;
    const t = await r.text();
    if (r.status === 202) return { status: 202 };
    const data = t.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
    return { status: r.status, json: JSON.parse(data.length ? data[data.length - 1] : t) };
  };
  const call = (id, name, args) => rpc({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
  return { rpc, call, st, close: () => agent.close() };
}

async function sdk(route, f) {
  const own = !f;
  const pf = f || pinnedFetch({ ca });
  const transport = new StreamableHTTPClientTransport(new URL(`https://${route}.${DOMAIN}:${port}/mcp`), { fetch: pf });
  const client = new Client({ name: 'postern-reload-test', version: '1.0.0' });
  await client.connect(transport);
  return {
    client, transport,
    close: async () => {
      await transport.terminateSession().catch(() => {});
      await client.close().catch(() => {});
      if (own) await pf.close().catch(() => {});
    },
  };
}

// A plain GET on an unguarded route: the fixture answers /.well-known/ with 200, the proxy an unknown route 404.
async function status(route, at = port) {
  const f = pinnedFetch({ ca });
  try {
    const r = await f(`https://${route}.${DOMAIN}:${at}/.well-known/x`);
    await r.text();
    return r.status;
  } finally {
    await f.close();
  }
}

async function hup(re, timeoutMs = 10000) {
  const mark = px.log.length;
  px.child.kill('SIGHUP');
  return px.waitFor(re, timeoutMs, mark);
}

before(async () => {
  dir = tmpdir('postern-reload-');
  const r = await postern(['certs', 'init', '--domain', DOMAIN, '--out', path.join(dir, 'pki')]);
  assert.equal(r.code, 0, r.stderr);
  ca = path.join(dir, 'pki', 'ca.pem');
  port = await freePort();
  upPort = await freePort();
  const up = start(process.execPath, [FIXTURE, 'http', String(upPort)], { name: 'upstream' });
  await up.waitFor(/listening/, 10000);
  yaml = path.join(dir, 'proxy.yaml');
  writeFileSync(yaml, V1());
  px = start(process.env.POSTERN_BIN, ['proxy', '-c', yaml], { name: 'proxy' });
  await px.waitFor(/proxy listening/, 10000);
});

after(async () => {
  await stopAll();
  rmrf(dir);
});

test('SIGHUP applies routes and policy live; sessions of the unchanged route and live connections carry on', async () => {
  const pid = px.child.pid;
  const web = oneConnection('web');
  const files = await sdk('files');
  try {
    // before: write_file is allowed on web, old answers, fresh is unknown
    const init = await web.rpc({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    assert.equal(init.status, 200);
    assert.ok(web.st.sid, 'no session id');
    assert.equal((await web.rpc({ jsonrpc: '2.0', method: 'notifications/initialized' })).status, 202);
    const w1 = await web.call(2, 'write_file', { path: 'a', content: 'x' });
    assert.match(w1.json.result.content[0].text, /^write_file:/);
    const who1 = JSON.parse(text(await files.client.callTool({ name: 'whoami', arguments: {} })));
    const sid1 = files.transport.sessionId;
    assert.ok(sid1 && who1.pid > 0);
    assert.equal(await status('old'), 200);
    assert.equal(await status('fresh'), 404);
    assert.equal(web.st.connects, 1);

    writeFileSync(yaml, V2());
    await hup(/msg="proxy config reloaded" generation=2 routes=3 added="fresh" changed="web" removed="old" unchanged="files" audit=off /);
    await px.waitFor(/level=info .*msg="config reloaded" file=".*proxy\.yaml"/, 5000);
    assert.equal(px.child.pid, pid);
    assert.equal(px.child.exitCode, null);

    // the new rule holds on the next call of the same session, over the same connection
    const w2 = await web.call(3, 'write_file', { path: 'a', content: 'x' });
    assert.equal(w2.json.error.code, -31001);
    assert.match(w2.json.error.message, /write_file.*denied by policy rule no-writes of route web/);
    const e2 = await web.call(4, 'echo', { text: 'still' });
    assert.equal(e2.json.result.content[0].text, 'echo:{"text":"still"}');
    assert.equal(web.st.connects, 1, 'the keep-alive connection was replaced');
    // files: same session, same child
    const who2 = JSON.parse(text(await files.client.callTool({ name: 'whoami', arguments: {} })));
    assert.equal(files.transport.sessionId, sid1);
    assert.equal(who2.pid, who1.pid);
    // fresh answers, old is gone for new requests
    const fresh = await sdk('fresh');
    try {
      assert.equal(text(await fresh.client.callTool({ name: 'echo', arguments: { text: 'new' } })), 'echo:{"text":"new"}');
    } finally {
      await fresh.close();
    }
    assert.equal(await status('old'), 404);
    await px.waitFor(/msg="no route for host" host="old\.rl\.test"/, 5000);
  } finally {
    await files.close();
    await web.close();
  }
});

test('a stdio route whose command changes gets a new bridge: its old sessions end, the log says so', async () => {
  const files = await sdk('files');
  try {
    const who1 = JSON.parse(text(await files.client.callTool({ name: 'whoami', arguments: {} })));
    // the same server under another argv[0] path spelling is a changed command
    writeFileSync(yaml, V2().replace(`"${FIXTURE}", "stdio"`, `"${FIXTURE}", "stdio", "--again"`));
    await hup(/msg="proxy config reloaded" generation=3 .*changed="files" /);
    await px.waitFor(/msg="mcp route retired by a reload: its sessions end" route="files" generation=2 sessions=1/, 10000);
    // the old session is unknown to the new bridge: a new one gets a new child
    const f2 = await sdk('files');
    try {
      const who2 = JSON.parse(text(await f2.client.callTool({ name: 'whoami', arguments: {} })));
      assert.notEqual(who2.pid, who1.pid);
    } finally {
      await f2.close();
    }
  } finally {
    await files.close();
  }
});

test('a config that fails to load or to preflight is logged with file, line and key; the old one serves on', async () => {
  const good = V2();
  const pid = px.child.pid;
  const cases = [
    // a YAML error
    [good.replace('routes:', 'routes: [unclosed'), /level=error .*msg="config reload failed, keeping the running config" err=".*proxy\.yaml:\d+:\d+: /],
    // loads, but the certificate file is missing (preflight)
    [good.replace(path.join(dir, 'pki', 'server.pem'), path.join(dir, 'pki', 'gone.pem')),
      /level=error .*msg="config reload failed, keeping the running config" err=".*proxy\.yaml:5: cert_file: .*gone\.pem: No such file or directory/],
    // a certificate that does not cover the routes under the new tunnel_domain
    [good.replace(`tunnel_domain: ${DOMAIN}`, 'tunnel_domain: other.test'),
      /level=error .*msg="config reload failed, keeping the running config" err=".*proxy\.yaml:5: cert_file: .*does not cover [a-z]+\.other\.test/],
    // an unknown key
    [good + 'routez: {}\n', /level=error .*msg="config reload failed, keeping the running config" err=".*proxy\.yaml:\d+: unknown key 'routez' in the proxy config/],
  ];
  for (const [body, re] of cases) {
    writeFileSync(yaml, body);
    await hup(re);
    assert.equal(px.child.pid, pid);
    assert.equal(px.child.exitCode, null);
    assert.equal(await status('fresh'), 200);
    assert.equal(await status('old'), 404);
  }
  assert.doesNotMatch(px.log, /generation=4/);
  // the deny rule still holds
  const web = await sdk('web');
  try {
    await assert.rejects(web.client.callTool({ name: 'write_file', arguments: { path: 'a', content: 'x' } }), /no-writes/);
  } finally {
    await web.close();
  }
  // and a good file after the bad ones applies
  writeFileSync(yaml, V1());
  await hup(/msg="proxy config reloaded" generation=4 routes=3 added="old" changed="web,files" removed="fresh"/);
  assert.equal(await status('old'), 200);
});

test('a changed listen_addr is named as needing a restart; the rest applies', async () => {
  const other = await freePort();
  writeFileSync(yaml, V1().replace(`listen_addr: 127.0.0.1:${port}`, `listen_addr: 127.0.0.1:${other}`) + 'mcp_limits: {max_body: 64KiB}\n');
  await hup(/level=warn .*msg="config reloaded; changed keys that need a restart keep their running values" file=".*proxy\.yaml" restart_needed_for="listen_addr"/);
  assert.equal(await status('old'), 200); // still on the old port
});

test('audit: an unchanged audit block keeps the running sinks, a changed one reopens them; one chain verifies', async () => {
  const file = path.join(dir, 'audit', 'audit.jsonl');
  const audit = `audit: {file: ${file}}\n`;
  const calls = async (n) => {
    const web = oneConnection('web');
    try {
      await web.rpc({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
      await web.rpc({ jsonrpc: '2.0', method: 'notifications/initialized' });
      const r = await web.call(2, 'echo', { text: `round ${n}` });
      assert.equal(r.json.result.content[0].text, `echo:{"text":"round ${n}"}`);
    } finally {
      await web.close();
    }
  };
  writeFileSync(yaml, V1() + audit);
  await hup(/msg="proxy config reloaded" generation=\d+ .*audit=reopened /);
  await calls(1);
  writeFileSync(yaml, V1().replace('routes:\n', `routes:\n  extra: "http://127.0.0.1:${upPort}"\n`) + audit);
  await hup(/msg="proxy config reloaded" generation=\d+ routes=4 added="extra" .*audit=kept /);
  await calls(2);
  writeFileSync(yaml, V1() + `audit: {file: ${file}, fsync: true}\n`);
  await hup(/msg="proxy config reloaded" generation=\d+ .*removed="extra" .*audit=reopened /);
  await calls(3);
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  lines.forEach((l, i) => assert.equal(l.seq, i));
  const raw = readFileSync(file, 'utf8');
  for (const n of [1, 2, 3]) assert.ok(raw.includes(`round ${n}`), `round ${n} not in the audit`);
  const r = await postern(['audit', 'verify', file]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  // back to no audit: the sinks close
  writeFileSync(yaml, V1());
  await hup(/msg="proxy config reloaded" generation=\d+ .*audit=off /);
});

test('a call in flight across a reload finishes under the config it began on, on a route the reload removed', async () => {
  // approve rules hold calls in a gateway (here proxy-only, its admin socket off: a held call times out)
  const gport = await freePort();
  const base = V1().replace(`listen_addr: 127.0.0.1:${port}`, `listen_addr: 127.0.0.1:${gport}`) + 'admin_socket: ""\nmetrics_listen: ""\n';
  const held = ['  held:', `    url: http://127.0.0.1:${upPort}`, '    policy:', '      default: allow',
    '      approval_timeout: 2s', '      rules:', '        - {name: ask-first, match: {tool: "move_*"}, action: approve}'];
  const gyaml = path.join(dir, 'gateway.yaml');
  writeFileSync(gyaml, base.replace('routes:\n', `routes:\n${held.join('\n')}\n`));
  const gw = start(process.env.POSTERN_BIN, ['gateway', '-c', gyaml], { name: 'gateway-held' });
  await gw.waitFor(/msg="gateway started"/, 10000);
  const c = oneConnection('held', gport);
  try {
    await c.rpc({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    await c.rpc({ jsonrpc: '2.0', method: 'notifications/initialized' });
    const pending = c.call(2, 'move_file', { from: 'a', to: 'b' });
    await gw.waitFor(/msg="call held for approval" route=held .*rule=ask-first/, 5000);
    writeFileSync(gyaml, base);
    const mark = gw.log.length;
    gw.child.kill('SIGHUP');
    await gw.waitFor(/msg="proxy config reloaded" generation=2 routes=3 .*removed="held" /, 10000, mark);
    assert.equal(await status('held', gport), 404); // new requests: no such route
    const r = await pending; // the held one: answered by its own rule when its approval times out
    assert.equal(r.json.error.code, -31001);
    assert.match(r.json.error.message, /move_file.*not approved in time \(policy rule ask-first of route held\)/);
  } finally {
    await c.close();
  }
  const ex = await gw.kill('SIGTERM', 15000);
  assert.equal(ex.code, 0, gw.log.slice(-3000));
  assert.doesNotMatch(gw.log, /Sanitizer|runtime error/);
});

test('the gateway reloads through the edge; a changed connector key is named as needing a restart', async () => {
  const ctx = await makeEdges(1);
  try {
    await ctx.edges[0].start();
    const t = await createTunnel(ctx);
    const gw = await startGateway(ctx, t, { a: `http://127.0.0.1:${upPort}` }, { connections: 1, name: 'gateway' });
    const st = async (r) => {
      const f = pinnedFetch({ ca: t.ca });
      try {
        const res = await f(`https://${r}.${t.domain}:${ctx.edges[0].client}/.well-known/x`);
        await res.text();
        return res.status;
      } finally { await f.close(); }
    };
    assert.equal(await st('b'), 404);
    const y = readFileSync(gw.yaml, 'utf8');
    writeFileSync(gw.yaml, y.replace('routes:\n', `routes:\n  b: http://127.0.0.1:${upPort}\n`).replace('connections: 1', 'connections: 2'));
    const mark = gw.proc.log.length;
    gw.proc.child.kill('SIGHUP');
    await gw.proc.waitFor(/msg="proxy config reloaded" generation=2 routes=2 added="b" /, 10000, mark);
    await gw.proc.waitFor(/restart_needed_for="connections"/, 5000, mark);
    assert.equal(await st('b'), 200);
    assert.equal(await st('a'), 200);
    assert.equal(gw.proc.child.exitCode, null);
  } finally {
    ctx.cleanup();
  }
});

test('after its reloads the proxy drains and exits 0 (under ASan: no leak report)', async () => {
  // eight reloads applied by the tests above, each a new generation that was swapped in
  assert.match(px.log, /msg="proxy config reloaded" generation=9 /);
  const r = await px.kill('SIGTERM', 15000);
  assert.equal(r.code, 0, px.log.slice(-3000));
  assert.doesNotMatch(px.log, /Sanitizer|runtime error/);
});
