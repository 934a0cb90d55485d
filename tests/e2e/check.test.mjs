// `postern check` checks what the daemon will need, not only the keys: every case below was "ok" once and
// then failed at start-up (or at the first request). Each error names file, line and key; what may be
// intended is a warning with exit 0. The daemon's own load says the same (it uses the same preflight).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { writeFileSync, readFileSync, chmodSync, mkdirSync, statSync, existsSync } from 'node:fs';
import { tmpdir, rmrf, postern, start, stopAll } from './lib/proc.mjs';

let d, pki, other;

before(async () => {
  d = tmpdir('postern-check-');
  // a fresh host has no /etc/postern: certs init makes the parents (0755) and the key directory (0700)
  const out = path.join(d, 'etc', 'postern', 'edge-pki');
  const r = await postern(['certs', 'init', '--domain', 't.test', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(statSync(path.join(d, 'etc', 'postern')).mode & 0o777, 0o755);
  assert.equal(statSync(out).mode & 0o777, 0o700);
  pki = { cert: path.join(out, 'server.pem'), key: path.join(out, 'server.key'), ca: path.join(out, 'ca.key') };
  const r2 = await postern(['certs', 'init', '--domain', 'other.test', '--out', path.join(d, 'other')]);
  assert.equal(r2.code, 0, r2.stderr);
  other = { cert: path.join(d, 'other', 'server.pem'), key: path.join(d, 'other', 'server.key') };
  writeFileSync(path.join(d, 'tok'), 'abc\n', { mode: 0o600 });
  chmodSync(path.join(d, 'tok'), 0o600);
  writeFileSync(path.join(d, 'tok-open'), 'abc\n');
  chmodSync(path.join(d, 'tok-open'), 0o644);
  writeFileSync(path.join(d, 'plain'), 'x');
});
after(async () => { await stopAll(); rmrf(d); });

const px = (tls, ...rest) => ['listen_addr: 127.0.0.1:0', 'tunnel_domain: t.test', `tls: {${tls}}`, ...rest].join('\n') + '\n';
const gw = (tok, ...rest) => ['edges: ["127.0.0.1:1"]', `token_file: ${path.join(d, tok)}`, 'tunnel_domain: t.test',
  `tls: {cert_file: ${pki.cert}, key_file: ${pki.key}}`, ...rest].join('\n') + '\n';

async function check(name, yaml) {
  const f = path.join(d, name);
  writeFileSync(f, yaml);
  return { f, ...(await postern(['check', '-c', f], { timeoutMs: 10000 })) };
}

test('errors: each names file, line and key, and the daemon refuses the same file', async () => {
  const good = `cert_file: ${pki.cert}, key_file: ${pki.key}`;
  const cases = [
    ['cert.yaml', px(`cert_file: ${d}/nope.pem, key_file: ${pki.key}`, 'routes: {a: "http://10.0.0.1:1"}'),
      /cert\.yaml:3: cert_file: .*nope\.pem: No such file or directory/],
    ['key.yaml', px(`cert_file: ${pki.cert}, key_file: ${d}/nope.key`, 'routes: {a: "http://10.0.0.1:1"}'),
      /key\.yaml:3: key_file: .*nope\.key: No such file or directory/],
    ['mismatch.yaml', px(`cert_file: ${pki.cert}, key_file: ${pki.ca}`, 'routes: {a: "http://10.0.0.1:1"}'),
      /mismatch\.yaml:3: tls: .*cannot load private key: key values mismatch/],
    ['domain.yaml', px(`cert_file: ${other.cert}, key_file: ${other.key}`, 'routes: {a: "http://10.0.0.1:1"}'),
      /domain\.yaml:3: cert_file: .*does not cover a\.t\.test \(route 'a' under tunnel_domain t\.test\): issue it for \*\.t\.test/],
    ['stdio.yaml', px(good, 'routes:', '  a:', '    stdio: ["/usr/bin/no-such-mcp-server", "--x"]'),
      /stdio\.yaml:6: stdio: route 'a': command '\/usr\/bin\/no-such-mcp-server': No such file or directory/],
    ['stdio-str.yaml', px(good, 'routes:', '  a: "stdio:/nonexistent/server arg"'),
      /stdio-str\.yaml:5: a: command '\/nonexistent\/server': No such file or directory/],
    ['noexec.yaml', px(good, 'routes:', '  a:', `    stdio: ["${d}/plain"]`),
      /noexec\.yaml:6: stdio: route 'a': command '.*plain' .*is not an executable file/],
    ['ws-file.yaml', px(good, 'routes:', '  box:', '    sandbox:', `      workspace_root: ${d}/plain`),
      /ws-file\.yaml:7: workspace_root: .*plain: not a directory/],
    ['hello.yaml', 'hello: world\n', /hello\.yaml:1: hello: unknown key: this is not an edge config/],
    ['empty.yaml', '# nothing here yet\n\n', /empty\.yaml: the file is empty: a config is a mapping of keys/],
    ['zero.yaml', '', /zero\.yaml: the file is empty/],
    ['gw-cert.yaml', gw('tok', 'routes: {a: "http://10.0.0.1:1"}').replace(pki.cert, `${d}/gone.pem`),
      /gw-cert\.yaml:4: cert_file: .*gone\.pem: No such file or directory/],
  ];
  for (const [name, yaml, re] of cases) {
    const r = await check(name, yaml);
    assert.equal(r.code, 1, `${name}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, re, name);
    assert.doesNotMatch(r.stderr, /Bad file descriptor|system lib|Inappropriate ioctl/, name);
    if (name === 'hello.yaml' || name.startsWith('empty') || name === 'zero.yaml') continue;
    // the daemon refuses the same file with the same words, before it listens anywhere
    const cmd = name.startsWith('gw-') ? 'gateway' : 'proxy';
    const g = await postern([cmd, '-c', r.f], { timeoutMs: 10000 });
    assert.equal(g.code, 1, `${name}: ${g.stderr}`);
    assert.match(g.stderr, re, `${cmd} ${name}`);
  }
  const dirr = await postern(['check', '-c', d]);
  assert.equal(dirr.code, 1);
  assert.match(dirr.stderr, /not a regular file \(a directory\)/);
});

test('warnings: printed with file, line and key, exit 0, and logged by the daemon', async () => {
  const good = `cert_file: ${pki.cert}, key_file: ${pki.key}`;
  const cases = [
    ['tok.yaml', gw('tok-open', 'routes: {a: "http://10.0.0.1:1"}'),
      /warning: .*tok\.yaml:2: token_file: .*tok-open is readable by all users \(mode 0644\).*chmod 600/],
    ['dotted.yaml', gw('tok', 'routes: {a.b: "http://10.0.0.1:1"}'),
      /warning: .*dotted\.yaml:5: a\.b: the certificate .* covers neither a\.b nor a\.b\.t\.test: .*a wildcard covers one label/],
    ['loop.yaml', px(good, 'routes: {a: "http://127.0.0.1:8080"}'),
      /warning: .*loop\.yaml:4: a: upstream 127\.0\.0\.1 is outside upstream\.allowed_ips: every request will get 502.*allowed_ips: \[127\.0\.0\.1\/32\]/],
    ['ws.yaml', px(good, 'routes:', '  box:', '    sandbox:', `      workspace_root: ${d}/ws/a`),
      /warning: .*ws\.yaml:7: workspace_root: .*ws\/a does not exist: the gateway creates it \(mode 0700\)/],
  ];
  for (const [name, yaml, re] of cases) {
    const r = await check(name, yaml);
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`${name.replace('.', '\\.')}: ok`));
    assert.match(r.stderr, re, name);
  }
  // no warning on a clean file: a test that warnings can also be absent
  const clean = await check('clean.yaml', gw('tok', 'routes: {a: "http://10.0.0.1:1"}'));
  assert.equal(clean.code, 0, clean.stderr);
  assert.equal(clean.stderr, '');
  // the proxy logs its warnings at start and makes the workspace root it was given
  assert.equal(existsSync(path.join(d, 'ws')), false);
  const p = start(process.env.POSTERN_BIN, ['proxy', '-c', path.join(d, 'ws.yaml')], { name: 'check-ws' });
  await p.waitFor(/level=warn .*msg="config warning" detail=".*workspace_root: .*does not exist/, 10000);
  await p.waitFor(/msg="created the workspace root" route=box dir=".*ws\/a" mode=0700/, 10000);
  await p.waitFor(/msg="proxy listening"/, 10000);
  assert.equal(statSync(path.join(d, 'ws', 'a')).mode & 0o777, 0o700);
  p.child.kill('SIGTERM');
  await p.exited;
});

// The edge's connector_tls (and mTLS files): what `postern edge` will load at start, checked by postern check
// and by the edge itself before it listens (also at SIGHUP: tests/e2e/edge_reload.test.mjs).
const edge = (tls, ...rest) => [`state_dir: ${d}/edge-state`, 'domain: tunnel.test', 'connector_listen: 127.0.0.1:0',
  `connector_tls: {${tls}}`, 'client_listen: 127.0.0.1:0', 'metrics_listen: 127.0.0.1:0', ...rest].join('\n') + '\n';

test('edge: connector_tls and the mTLS files are checked the way the edge will load them', async () => {
  const good = `cert_file: ${pki.cert}, key_file: ${pki.key}`;
  const errors = [
    ['e-cert.yaml', edge(`cert_file: ${d}/nope.pem, key_file: ${pki.key}`), /e-cert\.yaml:4: cert_file: .*nope\.pem: No such file or directory/],
    ['e-key.yaml', edge(`cert_file: ${pki.cert}, key_file: ${d}/nope.key`), /e-key\.yaml:4: key_file: .*nope\.key: No such file or directory/],
    ['e-mismatch.yaml', edge(`cert_file: ${pki.cert}, key_file: ${pki.ca}`), /e-mismatch\.yaml:4: connector_tls: .*ca\.key: cannot load private key: key values mismatch/],
    ['e-notcert.yaml', edge(`cert_file: ${d}/plain, key_file: ${pki.key}`), /e-notcert\.yaml:4: connector_tls: .*plain: cannot load certificate/],
    ['e-state.yaml', edge(good).replace(`${d}/edge-state`, `${d}/plain`), /e-state\.yaml:1: state_dir: .*plain: not a directory/],
    ['e-ca.yaml', edge(good, 'mtls_listen: 127.0.0.1:0', `client_ca_file: ${d}/plain`, 'mtls_tunnels: {t: {client_cn: [a]}}'),
      /e-ca\.yaml:8: client_ca_file: .*plain: not a CA bundle/],
    ['e-bindca.yaml', edge(good, 'mtls_listen: 127.0.0.1:0', `client_ca_file: ${pki.cert}`, `mtls_tunnels: {t: {client_ca_file: ${d}/nope-ca.pem}}`),
      /e-bindca\.yaml:9: client_ca_file: .*nope-ca\.pem: No such file or directory/],
  ];
  for (const [name, yaml, re] of errors) {
    const r = await check(name, yaml);
    assert.equal(r.code, 1, `${name}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, re, name);
    const g = await postern(['edge', '-c', r.f], { timeoutMs: 10000 });
    assert.equal(g.code, 1, `${name}: ${g.stderr}`);
    assert.match(g.stderr, re, `edge ${name}`);
    assert.doesNotMatch(g.stderr, /edge listening/, name);
  }
  // a clean edge config: ok, no warning
  const clean = await check('e-clean.yaml', edge(good));
  assert.equal(clean.code, 0, clean.stderr);
  assert.match(clean.stdout, /e-clean\.yaml: ok \(edge\)/);
  assert.equal(clean.stderr, '');
  // a key readable by others: a warning (exit 0), logged by the edge at start
  const open = path.join(d, 'open.key');
  writeFileSync(open, readFileSync(pki.key));
  chmodSync(open, 0o644);
  const w = await check('e-open.yaml', edge(`cert_file: ${pki.cert}, key_file: ${open}`));
  assert.equal(w.code, 0, w.stderr);
  assert.match(w.stderr, /warning: .*e-open\.yaml:4: key_file: .*open\.key is readable by all users \(mode 0644\): chmod 600/);
  const p = start(process.env.POSTERN_BIN, ['edge', '-c', w.f], { name: 'check-edge' });
  await p.waitFor(/level=warn .*msg="config warning" detail=".*key_file: .*open\.key is readable by all users/, 10000);
  await p.waitFor(/msg="edge listening"/, 10000);
  p.child.kill('SIGTERM');
  assert.equal((await p.exited).code, 0);
});

test('certs init makes missing parents; a parent that is a file is named', async () => {
  const r = await postern(['certs', 'init', '--domain', 't.test', '--out', path.join(d, 'plain', 'pki')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /certs init: .*\/plain: exists and is not a directory/);
  mkdirSync(path.join(d, 'deep'), { recursive: true });
  const r2 = await postern(['certs', 'init', '--domain', 't.test', '--out', path.join(d, 'deep', 'a', 'b', 'c')]);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(statSync(path.join(d, 'deep', 'a', 'b')).mode & 0o777, 0o755);
  assert.equal(statSync(path.join(d, 'deep', 'a', 'b', 'c')).mode & 0o777, 0o700);
});

test('SIGHUP: the config is loaded again; a broken one is logged and the daemon keeps running', async () => {
  const yaml = path.join(d, 'hup.yaml');
  const good = px(`cert_file: ${pki.cert}, key_file: ${pki.key}`, 'routes: {a: "http://10.0.0.1:1"}');
  writeFileSync(yaml, good);
  const p = start(process.env.POSTERN_BIN, ['proxy', '-c', yaml], { name: 'hup' });
  await p.waitFor(/msg="proxy listening"/, 10000);
  let mark = p.log.length;
  p.child.kill('SIGHUP');
  await p.waitFor(/level=info .*msg="config reloaded" file=".*hup\.yaml"/, 5000, mark);
  // a broken file: the error names file, line and key; the process stays up
  writeFileSync(yaml, good.replace('tunnel_domain: t.test', 'tunnel_domain: "not a domain"'));
  mark = p.log.length;
  p.child.kill('SIGHUP');
  await p.waitFor(/level=error .*msg="config reload failed, keeping the running config" err=".*hup\.yaml:2: tunnel_domain:/, 5000, mark);
  assert.equal(p.child.exitCode, null);
  // a new log_format applies at once
  writeFileSync(yaml, good + 'log_format: json\n');
  mark = p.log.length;
  p.child.kill('SIGHUP');
  await p.waitFor(/\{"time":"[^"]+","level":"info","comp":"proxy","msg":"config reloaded"/, 5000, mark);
  p.child.kill('SIGTERM');
  const ex = await p.exited;
  assert.equal(ex.code, 0);
});
