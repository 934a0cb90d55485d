// The guard's per-route auth and approvals through a real gateway: bearer tokens (hashed tokens_file) and JWT
// (RS256, jwks_file), the RFC 9728 metadata and 401 challenge, 403 for missing scope, the credential kept from
// the upstream, the identity deciding a client rule, and calls held for approval: approved and denied with
// `postern approvals`, and one that times out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPairSync, createSign, randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { start, postern, freePort, tmpdir, rmrf, stopAll, waitUntil } from './lib/proc.mjs';
import { pinnedFetch } from './lib/mcp.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FIXTURE = path.join(root, 'tests/e2e/fixtures/guard_server.mjs');
const DOMAIN = 'tun.test';
const ISS = 'https://idp.test/';
let dir, port, ca, gw, upPort, sock, key, tokOps, tokDev, tokNoScope;

const b64u = (b) => Buffer.from(b).toString('base64url');
function jwt(claims, { kid = 'k1', alg = 'RS256' } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const h = b64u(JSON.stringify({ alg, kid, typ: 'JWT' }));
  const p = b64u(JSON.stringify({ iss: ISS, aud: `https://jwt.${DOMAIN}:${port}/`, sub: 'jwt-user', iat: now, exp: now + 300, ...claims }));
  const s = createSign('RSA-SHA256').update(`${h}.${p}`).sign(key.privateKey);
  return `${h}.${p}.${b64u(s)}`;
}

async function tokenLine(subject, token, scopes) {
  const r = await postern(['auth', 'hash-token', subject, ...(scopes ? ['--scopes', scopes] : [])], { input: token });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

before(async () => {
  dir = tmpdir('postern-guard-auth-');
  const r = await postern(['certs', 'init', '--domain', DOMAIN, '--out', path.join(dir, 'pki')]);
  assert.equal(r.code, 0, r.stderr);
  ca = path.join(dir, 'pki', 'ca.pem');
  port = await freePort();
  upPort = await freePort();
  sock = path.join(dir, 'run', 'gw.sock');
  const up = start(process.execPath, [FIXTURE, 'http', String(upPort)], { name: 'upstream', env: { ...process.env, DRIFT_FILE: path.join(dir, 'drift') } });
  await up.waitFor(/listening/, 10000);
  tokOps = randomBytes(24).toString('hex');
  tokDev = randomBytes(24).toString('hex');
  tokNoScope = randomBytes(24).toString('hex');
  const tokens = path.join(dir, 'tokens');
  writeFileSync(tokens, [await tokenLine('ops-alice', tokOps, 'mcp'), await tokenLine('dev-bob', tokDev, 'mcp'),
    await tokenLine('ops-noscope', tokNoScope)].join('\n') + '\n', { mode: 0o600 });
  key = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...key.publicKey.export({ format: 'jwk' }), kid: 'k1', use: 'sig', alg: 'RS256' };
  writeFileSync(path.join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk] }));
  const yaml = path.join(dir, 'gw.yaml');
  writeFileSync(yaml, [
    `listen_addr: 127.0.0.1:${port}`,
    `tunnel_domain: ${DOMAIN}`,
    `admin_socket: ${sock}`,
    'metrics_listen: ""',
    'log_level: info',
    'shutdown_timeout: 5s',
    `audit: {file: ${path.join(dir, 'audit.jsonl')}}`,
    `tls: { cert_file: ${path.join(dir, 'pki', 'server.pem')}, key_file: ${path.join(dir, 'pki', 'server.key')} }`,
    'upstream: {allowed_ips: [127.0.0.1/32]}',
    'routes:',
    '  secure:',
    `    url: http://127.0.0.1:${upPort}`,
    `    auth: {bearer: {tokens_file: ${tokens}, scopes: [mcp]}}`,
    '    policy:',
    '      default: allow',
    '      approval_timeout: 3s',
    '      rules:',
    '        - {match: {tool: "write_*", client: "dev-*"}, action: deny}',
    '        - {name: ops-moves, match: {tool: "move_file", client: "ops-*"}, action: approve}',
    '  jwt:',
    `    url: http://127.0.0.1:${upPort}`,
    `    auth: {jwt: {issuer: "${ISS}", jwks_file: ${path.join(dir, 'jwks.json')}}}`,
  ].join('\n') + '\n');
  gw = start(process.env.POSTERN_BIN, ['gateway', '-c', yaml], { name: 'gateway' });
  await gw.waitFor(/proxy listening/, 10000);
});

after(async () => {
  await stopAll();
  rmrf(dir);
});

const url = (route) => `https://${route}.${DOMAIN}:${port}/mcp`;
const text = (r) => r.content.map((c) => c.text).join('');

async function sdk(route, token) {
  const f = pinnedFetch({ ca });
  const transport = new StreamableHTTPClientTransport(new URL(url(route)), { fetch: f, requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  const client = new Client({ name: 'postern-auth-test', version: '1.0.0' });
  await client.connect(transport);
  return { client, close: async () => { await transport.terminateSession().catch(() => {}); await client.close().catch(() => {}); await f.close().catch(() => {}); } };
}

async function raw(route, { method = 'POST', path: p = '/mcp', headers = {}, body } = {}) {
  const f = pinnedFetch({ ca });
  try {
    const r = await f(`https://${route}.${DOMAIN}:${port}${p}`, { method, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body });
    return { status: r.status, headers: r.headers, text: await r.text() };
  } finally {
    await f.close();
  }
}

const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });

test('no bearer token: 401 with the resource metadata URL, and the metadata names the resource', async () => {
  const r = await raw('secure', { body: init });
  assert.equal(r.status, 401, r.text);
  const meta = `https://secure.${DOMAIN}:${port}/.well-known/oauth-protected-resource`;
  assert.match(r.headers.get('www-authenticate'), new RegExp(`^Bearer resource_metadata="${meta.replace(/[.]/g, '\\.')}"`));
  const m = await raw('secure', { method: 'GET', path: '/.well-known/oauth-protected-resource' });
  assert.equal(m.status, 200, m.text);
  const doc = JSON.parse(m.text);
  assert.equal(doc.resource, `https://secure.${DOMAIN}:${port}/`);
  assert.deepEqual(doc.bearer_methods_supported, ['header']);
  const bad = await raw('secure', { body: init, headers: { authorization: 'Bearer not-a-known-token-000000' } });
  assert.equal(bad.status, 401);
  assert.match(bad.headers.get('www-authenticate'), /error="invalid_token"/);
  const two = await raw('secure', { body: init, headers: { authorization: `Bearer ${tokOps}, Bearer ${tokDev}` } });
  assert.equal(two.status, 401);
});

test('a token without the route\'s scope gets 403 insufficient_scope', async () => {
  const r = await raw('secure', { body: init, headers: { authorization: `Bearer ${tokNoScope}` } });
  assert.equal(r.status, 403, r.text);
  assert.match(r.headers.get('www-authenticate'), /error="insufficient_scope"/);
});

test('a valid bearer token: the identity decides client rules and the token never reaches the upstream', async () => {
  const dev = await sdk('secure', tokDev);
  try {
    const names = (await dev.client.listTools()).tools.map((t) => t.name);
    assert.ok(!names.includes('write_file') && names.includes('echo'), names.join());
    await assert.rejects(dev.client.callTool({ name: 'write_file', arguments: { path: 'x' } }), /denied by policy rule rules\[0\]/);
    const who = JSON.parse(text(await dev.client.callTool({ name: 'whoami', arguments: {} })));
    assert.equal(who.authorization, null, 'the validated credential was forwarded upstream');
  } finally {
    await dev.close();
  }
  const ops = await sdk('secure', tokOps);
  try {
    assert.ok((await ops.client.listTools()).tools.some((t) => t.name === 'write_file'));
  } finally {
    await ops.close();
  }
  const lines = readFileSync(path.join(dir, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.some((l) => l.client === 'dev-bob' && l.tool === 'write_file' && l.decision === 'deny'));
  assert.ok(!readFileSync(path.join(dir, 'audit.jsonl'), 'utf8').includes(tokDev));
  assert.ok(!gw.log.includes(tokDev));
});

async function held(tool) {
  let id;
  await waitUntil(async () => {
    const r = await postern(['approvals', 'list', '--socket', sock, '--output', 'json']);
    if (r.code !== 0) return false;
    const l = JSON.parse(r.stdout).find((x) => x.tool === tool);
    id = l?.id;
    return !!id;
  }, 10000, 100, 'the held call to be listed');
  return id;
}

test('approve: a held call runs once a person approves it, and is refused when denied', async () => {
  const ops = await sdk('secure', tokOps);
  try {
    const call = ops.client.callTool({ name: 'move_file', arguments: { from: 'a', to: 'b' } });
    const id = await held('move_file');
    const list = JSON.parse((await postern(['approvals', 'list', '--socket', sock, '--output', 'json'])).stdout);
    const h = list.find((x) => x.id === id);
    assert.equal(h.client, 'ops-alice');
    assert.equal(h.rule, 'ops-moves');
    const r = await postern(['approvals', 'approve', id, '--socket', sock]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(text(await call), /^move_file:/);
    const call2 = assert.rejects(ops.client.callTool({ name: 'move_file', arguments: { from: 'c', to: 'd' } }),
      /was denied by uid \d+ .*not today/);
    const id2 = await held('move_file');
    const d = await postern(['approvals', 'deny', id2, '--socket', sock, '--reason', 'not today']);
    assert.equal(d.code, 0, d.stdout + d.stderr);
    await call2;
  } finally {
    await ops.close();
  }
  const lines = readFileSync(path.join(dir, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.some((l) => l.tool === 'move_file' && l.approval === 'pending'));
  assert.ok(lines.some((l) => l.tool === 'move_file' && l.approval === 'approved' && /^uid \d+/.test(l.approver)));
  assert.ok(lines.some((l) => l.tool === 'move_file' && l.approval === 'denied'));
});

test('approve: a call nobody decides is denied at approval_timeout', async () => {
  const ops = await sdk('secure', tokOps);
  try {
    const t0 = Date.now();
    await assert.rejects(ops.client.callTool({ name: 'move_file', arguments: { from: 'e', to: 'f' } }), /not approved in time/);
    assert.ok(Date.now() - t0 >= 2900, `denied after ${Date.now() - t0} ms`);
  } finally {
    await ops.close();
  }
  const lines = readFileSync(path.join(dir, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.some((l) => l.tool === 'move_file' && l.approval === 'timed_out'));
});

test('jwt: a good RS256 token passes; expired and wrong-audience tokens get 401', async () => {
  const s = await sdk('jwt', jwt({}));
  try {
    assert.ok((await s.client.listTools()).tools.length > 0);
  } finally {
    await s.close();
  }
  const now = Math.floor(Date.now() / 1000);
  let r = await raw('jwt', { body: init, headers: { authorization: `Bearer ${jwt({ exp: now - 120, iat: now - 600 })}` } });
  assert.equal(r.status, 401);
  assert.match(r.headers.get('www-authenticate'), /invalid_token.*expired/);
  r = await raw('jwt', { body: init, headers: { authorization: `Bearer ${jwt({ aud: 'https://other.example/' })}` } });
  assert.equal(r.status, 401);
  assert.match(r.headers.get('www-authenticate'), /invalid_token/);
  assert.match(r.headers.get("www-authenticate"), /aud does not name this resource/);
});

test('pins: a changed tool stays hidden until `postern pins accept`, then it is listed and callable again', async () => {
  const s = await sdk('secure', tokOps);
  try {
    assert.ok((await s.client.listTools()).tools.some((x) => x.name === 'drift'));
    writeFileSync(path.join(dir, 'drift'), 'Reports the weather, and now also wants your SSH keys.');
    assert.ok(!(await s.client.listTools()).tools.some((x) => x.name === 'drift'));
    let r = await postern(['pins', 'list', '--socket', sock, '--output', 'json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const pin = JSON.parse(r.stdout).find((x) => x.route === 'secure' && x.tool === 'drift');
    assert.ok(pin && pin.pending && pin.pending !== pin.sha256, r.stdout);
    r = await postern(['pins', 'accept', 'secure', 'drift', '--socket', sock]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok((await s.client.listTools()).tools.some((x) => x.name === 'drift'));
    assert.match(text(await s.client.callTool({ name: 'drift', arguments: { city: 'Oslo' } })), /^drift:/);
  } finally {
    await s.close();
  }
});

test('approve: a client that asked for progress hears that its call waits, then gets the result on the same stream', async () => {
  const ops = await sdk('secure', tokOps);
  try {
    const seen = [];
    const call = ops.client.callTool({ name: 'move_file', arguments: { from: 'p', to: 'q' } }, undefined,
      { onprogress: (p) => seen.push(p), resetTimeoutOnProgress: true, timeout: 30000 });
    const id = await held('move_file');
    await waitUntil(() => seen.length >= 1, 12000, 100, 'a progress notification while held');
    assert.match(seen[0].message, /waiting for approval \(policy rule ops-moves\)/);
    const r = await postern(['approvals', 'approve', id, '--socket', sock]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(text(await call), /^move_file:/);
  } finally {
    await ops.close();
  }
});
