// The gateway proxy's stdio bridge: `sandbox:` and `stdio:` routes served over Streamable HTTP with the
// official MCP SDK client (inner TLS verified against the customer CA), one child per MCP session.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { start, postern, freePort, tmpdir, rmrf, stopAll, waitUntil, run } from './lib/proc.mjs';
import { connectMcp, pinnedFetch } from './lib/mcp.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DOMAIN = 'tun.test';
let dir, port, proxy, ca;

before(async () => {
  dir = tmpdir('postern-sbxroute-');
  const r = await postern(['certs', 'init', '--domain', DOMAIN, '--out', path.join(dir, 'pki')]);
  assert.equal(r.code, 0, r.stderr);
  ca = path.join(dir, 'pki', 'ca.pem');
  port = await freePort();
  const yaml = path.join(dir, 'gw.yaml');
  writeFileSync(yaml, [
    `listen_addr: 127.0.0.1:${port}`,
    `tunnel_domain: ${DOMAIN}`,
    `tls: { cert_file: ${path.join(dir, 'pki', 'server.pem')}, key_file: ${path.join(dir, 'pki', 'server.key')} }`,
    'routes:',
    '  box:',
    '    max_sessions: 2',
    '    sandbox:',
    '      memory: 512M',
    '      timeout: 20s',
    '      disk: 64M',
    '      allow_domains: ["example.com"]',
    `      workspace_root: ${dir}`,
    '  echo:',
    `    stdio: ["${process.execPath}", "${path.join(root, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js')}", "stdio"]`,
  ].join('\n') + '\n');
  proxy = start(process.env.POSTERN_BIN, ['proxy', '-c', yaml], { name: 'proxy' });
  await proxy.waitFor(/proxy listening/, 10000);
});

after(async () => {
  await stopAll();
  rmrf(dir);
});

const url = (route) => `https://${route}.${DOMAIN}:${port}/mcp`;
const text = (r) => r.content.map((c) => c.text).join('');

test('sandbox route: every step of a session through the SDK (write, run, read, egress refused before lookup)', async () => {
  const s = await connectMcp(url('box'), { ca });
  try {
    const tools = await s.client.listTools();
    assert.deepEqual(tools.tools.map((t) => t.name).sort(), ['bash', 'edit', 'glob', 'grep', 'read', 'write']);
    await s.client.callTool({ name: 'write', arguments: { file_path: '/workspace/a.sh', content: 'echo "pid=$$ uid=$(id -u) host=$(hostname)"\n' } });
    const ran = await s.client.callTool({ name: 'bash', arguments: { command: 'cd /workspace && sh a.sh > out.txt; export KEEP=42; echo done' } });
    assert.match(text(ran), /done/);
    const state = await s.client.callTool({ name: 'bash', arguments: { command: 'echo "keep=$KEEP cwd=$(pwd)"' } });
    assert.match(text(state), /keep=42 cwd=\/workspace/);
    const rd = await s.client.callTool({ name: 'read', arguments: { file_path: '/workspace/out.txt' } });
    assert.match(text(rd), /pid=\d+ uid=\d+ host=/);
    const net = await s.client.callTool({ name: 'bash', arguments: { command: 'curl -sS -o /dev/null -D - https://blocked.example.invalid/ 2>&1 | tr -d "\\r" | grep -i -E "^(HTTP/|x-proxy-error)"; true' } });
    assert.match(text(net), /403/);
    assert.match(text(net), /x-proxy-error/i);
    // The session's workspace is a disk of its own of `disk` (64M): as root an ext4 image in an unlinked
    // file in <workspace_root>/<session>, else a tmpfs of 64M (within 512M of memory less 256M of /tmp).
    // Either way nothing of it is on the host's file system.
    const df = await s.client.callTool({ name: 'bash', arguments: { command: 'df -k /workspace | tail -1 | awk \'{print "kb=" $2}\'' } });
    const ls = await run('sh', ['-c', `ls -d ${dir}/*/ && ls ${dir}/*/out.txt`]);
    const kb = Number(text(df).match(/kb=(\d+)/)[1]);
    if (process.getuid() === 0) assert.ok(kb > 48 * 1024 && kb <= 64 * 1024, `the session's disk is ${kb} KiB, not 64M`);
    else assert.equal(kb, 64 * 1024, `the session's tmpfs disk is ${kb} KiB, not 64M`);
    assert.notEqual(ls.code, 0, `out.txt is on the host: ${ls.stdout}`);
    assert.match(ls.stdout, new RegExp(`^${dir}/[^/]+/$`, 'm'), 'no per-session workspace directory');
  } finally {
    await s.close();
  }
});

test('sandbox route: sessions are isolated and the cap gives a clear error', async () => {
  const a = await connectMcp(url('box'), { ca });
  const b = await connectMcp(url('box'), { ca });
  try {
    await a.client.callTool({ name: 'bash', arguments: { command: 'echo secret-a > /tmp/x' } });
    const rb = await b.client.callTool({ name: 'bash', arguments: { command: 'cat /tmp/x 2>&1; echo rc=$?' } });
    assert.match(text(rb), /No such file/);
    await assert.rejects(() => connectMcp(url('box'), { ca }), /too many concurrent MCP sessions on route box \(max 2, all busy\)/);
  } finally {
    await a.close();
    await b.close();
  }
});

test('sandbox route: DELETE ends the session and its sandbox processes', async () => {
  const s = await connectMcp(url('box'), { ca });
  const marker = `sleep-${process.pid}-${Date.now()}`;
  await s.client.callTool({ name: 'bash', arguments: { command: `(exec -a ${marker} sleep 300 &) ; echo started` } });
  const count = async () => (await run('pgrep', ['-f', marker])).stdout.trim().split('\n').filter(Boolean).length;
  assert.ok(await count() >= 1, 'background process not visible from the host');
  await s.transport.terminateSession();
  await s.close();
  await waitUntil(async () => (await count()) === 0, 10000, 100, 'sandbox processes to go away');
});

test('bridge protocol errors are JSON-RPC errors with the right HTTP status', async () => {
  const f = pinnedFetch({ ca });
  const post = (body, headers = {}) => f(url('box'), { method: 'POST', body, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers } });
  let r = await post('{not json');
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error.code, -32700);
  r = await post('{"jsonrpc":"2.0","id":1,"method":"tools/list"}');
  assert.equal(r.status, 400);
  assert.match((await r.json()).error.message, /initialize first/);
  r = await post('{"jsonrpc":"2.0","id":1,"method":"tools/list"}', { 'mcp-session-id': 'nope' });
  assert.equal(r.status, 404);
  // GET opens a session's SSE stream: it needs a session
  r = await f(url('box'), { method: 'GET', headers: { accept: 'text/event-stream' } });
  assert.equal(r.status, 400);
  assert.match((await r.json()).error.message, /Mcp-Session-Id/);
  r = await f(url('box'), { method: 'GET', headers: { accept: 'text/event-stream', 'mcp-session-id': 'nope' } });
  assert.equal(r.status, 404);
  await r.text();
  r = await f(url('box'), { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'GET, POST, DELETE');
  await r.text();
  await f.close();
});

test('stdio route: a stdio MCP server from npm behind Streamable HTTP', async () => {
  const s = await connectMcp(url('echo'), { ca });
  try {
    const tools = await s.client.listTools();
    assert.ok(tools.tools.some((t) => t.name === 'echo'));
    const r = await s.client.callTool({ name: 'echo', arguments: { message: 'over stdio' } });
    assert.match(text(r), /over stdio/);
  } finally {
    await s.close();
  }
});

test('bad sandbox and stdio route configs name file, line and key', async () => {
  const cases = [
    ['routes:\n  box:\n    sandbox:\n      memory: lots\n', /bad\.yaml:6: memory: 'lots' is not a size/],
    ['routes:\n  box:\n    sandbox:\n      colour: blue\n', /bad\.yaml:6: unknown key 'colour' in sandbox/],
    ['routes:\n  box:\n    stdio: ["relative/cmd"]\n', /bad\.yaml:5: stdio: must be a list starting with the absolute path/],
    ['routes:\n  box: "sandbox:memory=1G"\n', /bad\.yaml:4: box: .*mapping form/],
  ];
  for (const [routes, re] of cases) {
    const f = path.join(dir, 'bad.yaml');
    writeFileSync(f, `listen_addr: 127.0.0.1:1\ntls: { cert_file: /x, key_file: /y }\n${routes}`);
    const r = await postern(['check', '-c', f]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, re);
  }
});

test('SIGTERM: the proxy ends its MCP sessions and exits 0 with no sanitizer report', async () => {
  const s = await connectMcp(url('box'), { ca });
  await s.client.callTool({ name: 'bash', arguments: { command: 'echo hi' } });
  const { code, signal } = await proxy.kill('SIGTERM', 15000);
  await s.close();
  assert.equal(signal, null, `proxy died by ${signal}`);
  assert.equal(code, 0, proxy.log.slice(-2000));
  assert.doesNotMatch(proxy.log, /AddressSanitizer|LeakSanitizer|runtime error:/);
});
