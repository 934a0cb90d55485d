// The gateway's control API and its commands: `postern approvals` and `postern pins` against a running
// gateway's admin_socket (0600, removed at exit), their table and JSON output and errors, and the TCP
// metrics port, which serves none of it unless admin_http says so. (Held calls end to end need the proxy's
// guard: the lead's tests; the hold/decide path itself is covered in tests/unit/test_gwadmin.c.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { statSync, existsSync, writeFileSync, chmodSync } from 'node:fs';
import { start, postern, freePort, stopAll, tmpdir, rmrf, waitUntil } from './lib/proc.mjs';

const DOMAIN = 'abcd.tunnel.test';
let dir, gw, sock, cfg, metricsPort;

function gatewayConfig(name, extra) {
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(file, [
    'listen_addr: "127.0.0.1:0"',
    `tunnel_domain: ${DOMAIN}`,
    `tls:\n  cert_file: ${path.join(dir, 'pki', 'server.pem')}\n  key_file: ${path.join(dir, 'pki', 'server.key')}`,
    'routes:',
    '  up: http://127.0.0.1:9',
    'upstream:',
    '  allowed_ips: [127.0.0.0/8]',
    ...extra,
  ].join('\n') + '\n');
  return file;
}

async function startGateway(name, file) {
  const p = start(process.env.POSTERN_BIN, ['gateway', '-c', file], { name });
  await p.waitFor(/msg="gateway started"/, 10000);
  return p;
}

function httpReq(port, method, reqPath, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: reqPath, timeout: 5000,
      headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end(body);
  });
}

before(async () => {
  dir = tmpdir('postern-approvals-');
  chmodSync(dir, 0o755); // the permission test runs a client as another user
  const r = await postern(['certs', 'init', '--domain', DOMAIN, '--out', path.join(dir, 'pki')]);
  assert.equal(r.code, 0, r.stderr);
  sock = path.join(dir, 'run', 'postern', 'gateway.sock'); // its directory does not exist yet
  metricsPort = await freePort();
  cfg = gatewayConfig('gw', [`metrics_listen: "127.0.0.1:${metricsPort}"`, `admin_socket: ${sock}`]);
  gw = await startGateway('gateway', cfg);
});

after(async () => {
  await stopAll();
  rmrf(dir);
});

test('the admin socket is a socket, mode 0600, in a directory made for it', () => {
  const st = statSync(sock);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600);
  assert.match(gw.log, /msg="admin socket listening" path=".*gateway\.sock"/);
});

test('approvals list: empty, as a table and as JSON, from -c FILE or --socket', async () => {
  let r = await postern(['approvals', 'list', '-c', cfg]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'no calls waiting for approval\n');
  r = await postern(['approvals', 'list', '--socket', sock, '--output', 'json']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), []);
});

test('pins list: empty, as a table and as JSON', async () => {
  let r = await postern(['pins', 'list', '-c', cfg]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'no tools pinned yet\n');
  r = await postern(['pins', 'list', '--output', 'json', '--socket', sock]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), []);
});

test('approve or deny of an unknown id, accept of an unknown pin: a clear error, exit 1', async () => {
  let r = await postern(['approvals', 'approve', 'abcdefghijkl', '-c', cfg]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /HTTP 404\): no held call with id abcdefghijkl: unknown, already decided or timed out/);
  r = await postern(['approvals', 'deny', 'abcdefghijkl', '--reason', 'no', '--socket', sock]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no held call with id abcdefghijkl/);
  r = await postern(['pins', 'accept', 'files', 'read_file', '-c', cfg]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no pin for route files tool read_file \(see GET \/pins\)/);
});

test('usage errors exit 2 and say what is wrong', async () => {
  let r = await postern(['approvals']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no subcommand \(want list, approve ID or deny ID/);
  r = await postern(['approvals', 'approve', '--socket', sock]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /wants one ID/);
  r = await postern(['pins', 'accept', 'onlyroute', '--socket', sock]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /wants ROUTE TOOL/);
  r = await postern(['approvals', 'list', '--output', 'yaml', '--socket', sock]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--output: want table or json/);
  r = await postern(['approvals', 'approve', '../x', '--socket', sock]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /'\.\.\/x' is not an approval id/);
  r = await postern(['approvals', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /postern approvals approve ID \[--reason TEXT\]/);
});

test('no gateway on the socket: the error says so', async () => {
  const r = await postern(['approvals', 'list', '--socket', path.join(dir, 'none.sock')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot reach the gateway: .*No such file or directory \(is the gateway running\? admin_socket=.*none\.sock\)/);
});

test('another user cannot use the socket (mode 0600): the error says whom to run as', { skip: process.getuid() !== 0 && 'needs root to run a client as another user' }, async () => {
  const r = await postern(['approvals', 'list', '--socket', sock], { uid: 65534, gid: 65534 });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /permission denied on the admin socket .* \(run as the gateway's user or root\)/);
});

test('the TCP metrics port serves no approvals or pins API (admin_http is off)', async () => {
  let r = await httpReq(metricsPort, 'POST', '/approvals/abcdefghijkl/approve', '{}');
  assert.notEqual(r.status, 200);
  assert.ok([404, 405].includes(r.status), `status ${r.status}`);
  r = await httpReq(metricsPort, 'GET', '/approvals');
  assert.equal(r.status, 404);
  r = await httpReq(metricsPort, 'POST', '/pins/accept', '{"route":"a","tool":"b"}');
  assert.ok([404, 405].includes(r.status), `status ${r.status}`);
  r = await httpReq(metricsPort, 'GET', '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.text, /^postern_approvals_pending 0$/m);
});

test('a second gateway on the same admin_socket is refused; the live socket stays', async () => {
  const file = gatewayConfig('gw2', ['metrics_listen: ""', `admin_socket: ${sock}`]);
  const p = start(process.env.POSTERN_BIN, ['gateway', '-c', file], { name: 'gateway2' });
  const { code } = await p.exited;
  assert.notEqual(code, 0);
  assert.match(p.log, /admin_socket .*gateway\.sock: .*another process is listening on it/);
  const r = await postern(['approvals', 'list', '--socket', sock]);
  assert.equal(r.code, 0, r.stderr);
});

test('admin_http: the API on a loopback metrics_listen, decisions answered; never on a public address', async () => {
  const port = await freePort();
  const file = gatewayConfig('gw3', [`metrics_listen: "127.0.0.1:${port}"`, 'admin_http: true', `admin_socket: ${path.join(dir, 'gw3.sock')}`]);
  const p = await startGateway('gateway3', file);
  let r = await httpReq(port, 'GET', '/approvals');
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.text), []);
  r = await httpReq(port, 'POST', '/approvals/abcdefghijkl/deny', '{"reason":"x"}');
  assert.equal(r.status, 404);
  assert.match(JSON.parse(r.text).error, /no held call with id abcdefghijkl/);
  r = await postern(['approvals', 'list', '--socket', `127.0.0.1:${port}`, '--output', 'json']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), []);
  await p.kill();

  const bad = gatewayConfig('gw4', ['metrics_listen: "0.0.0.0:20999"', 'admin_http: true']);
  r = await postern(['check', '-c', bad]);
  assert.notEqual(r.code, 0);
  assert.match(r.stdout + r.stderr, /admin_http: needs metrics_listen on a loopback address \(it is "0\.0\.0\.0:20999"\)/);
  const rel = gatewayConfig('gw5', ['admin_socket: run/gw.sock']);
  r = await postern(['check', '-c', rel]);
  assert.notEqual(r.code, 0);
  assert.match(r.stdout + r.stderr, /admin_socket: want an absolute path/);
});

test('SIGTERM: the gateway removes its socket', async () => {
  const { code } = await gw.kill('SIGTERM');
  assert.equal(code, 0);
  await waitUntil(() => !existsSync(sock), 2000, 20, 'the socket file to go');
});
