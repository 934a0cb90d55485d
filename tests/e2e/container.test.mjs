// The container image, built and run for real without a container engine (issue 11; docs/operations.md,
// "Container"): `make oci` (scripts/oci-image.sh) carries out the Containerfile's instructions into an OCI
// image layout, whose config must say what the Containerfile says (user, entry point, command, volumes,
// ports, working directory); then the image is unpacked with umoci and run with runc: `postern --version`
// as uid 999, and an edge from the image's binary, its config and certificate mounted over /etc/postern as
// the docs say, answers /ready on loopback and exits 0 on SIGTERM. Needs root (debootstrap, chroot, runc);
// the first run makes a Debian 12 minbase rootfs from the Debian mirror (1-3 min), later runs reuse it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync, chmodSync, chownSync, readdirSync, statSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, start, tmpdir, rmrf, freePort, waitUntil, BIN } from './lib/proc.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VERSION = readFileSync(path.join(root, 'VERSION'), 'utf8').trim();
// The image is built from the release flavour, as the Containerfile's build stage makes it (static libraries);
// under the ASan pass POSTERN_BIN links its libraries dynamically, which the slim image does not have.
const PKG_BIN = existsSync(path.join(root, 'build/gcc/postern')) ? path.join(root, 'build/gcc/postern') : BIN;
const isRoot = process.getuid() === 0;
const IMG = path.join(root, 'build/oci/image');
let d;
const ids = [];

before(() => { d = tmpdir('postern-oci-'); });
after(async () => {
  for (const id of ids) await run('runc', ['delete', '-f', id], { timeoutMs: 10000 }).catch(() => {});
  rmrf(d);
});

// The image unpacked into a runc bundle, its config.json changed by edit.
async function bundle(name, edit) {
  const b = path.join(d, name);
  const u = await run('umoci', ['unpack', '--image', `${IMG}:latest`, b], { timeoutMs: 120000 });
  assert.equal(u.code, 0, u.stderr);
  const f = path.join(b, 'config.json');
  const c = JSON.parse(readFileSync(f, 'utf8'));
  c.process.terminal = false;
  edit(c);
  writeFileSync(f, JSON.stringify(c));
  return b;
}

test('make oci builds the Containerfile\'s image; runc runs it: --version as uid 999, an edge answering /ready', async (t) => {
  if (!isRoot) { t.skip('needs root (debootstrap, chroot and runc as root): run as root, as CI does'); return; }
  const mk = await run('make', ['-s', '--no-print-directory', '-C', root, `INSTALL_BIN=${PKG_BIN}`, 'oci'], { timeoutMs: 540000 });
  assert.equal(mk.code, 0, mk.stderr + mk.stdout);
  assert.equal(mk.stdout.trim(), IMG);

  // The layout: both tags on one manifest, whose config is the Containerfile's.
  const index = JSON.parse(readFileSync(path.join(IMG, 'index.json'), 'utf8'));
  const tags = index.manifests.map((m) => m.annotations['org.opencontainers.image.ref.name']).sort();
  assert.deepEqual(tags, [VERSION, 'latest'].sort());
  const blob = (dg) => JSON.parse(readFileSync(path.join(IMG, 'blobs', ...dg.split(':')), 'utf8'));
  const manifest = blob(index.manifests[0].digest);
  const cfg = blob(manifest.config.digest);
  assert.equal(cfg.os, 'linux');
  assert.equal(manifest.layers.length, 1);
  const cf = readFileSync(path.join(root, 'Containerfile'), 'utf8').replace(/\\\n/g, ' ').split('\n').map((l) => l.trim());
  const last = (op) => cf.filter((l) => l.startsWith(`${op} `)).pop().slice(op.length + 1);
  assert.equal(cfg.config.User, last('USER'));
  assert.equal(cfg.config.WorkingDir, last('WORKDIR'));
  assert.deepEqual(cfg.config.Entrypoint, JSON.parse(last('ENTRYPOINT')));
  assert.deepEqual(cfg.config.Cmd, JSON.parse(last('CMD')));
  assert.deepEqual(Object.keys(cfg.config.Volumes).sort(), JSON.parse(last('VOLUME')).sort());
  assert.deepEqual(Object.keys(cfg.config.ExposedPorts).sort(), last('EXPOSE').split(/\s+/).map((p) => `${p}/tcp`).sort());
  assert.ok(cfg.config.Env.includes(last('ENV')), cfg.config.Env.join());

  // postern --version, then id: the image's own user
  const v = await bundle('ver', (c) => { c.process.args = ['/usr/bin/postern', '--version']; });
  ids.push('postern-oci-ver');
  let r = await run('runc', ['run', '-b', v, 'postern-oci-ver'], { timeoutMs: 30000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), `postern ${VERSION}`);
  const u = await bundle('id', (c) => { c.process.args = ['/usr/bin/id']; });
  ids.push('postern-oci-id');
  r = await run('runc', ['run', '-b', u, 'postern-oci-id'], { timeoutMs: 30000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^uid=999\(postern\) gid=999\(postern\)/);
  // what the runtime stage put there: the CA bundle, the docs, the example configs, the state directory
  const rootfs = path.join(u, 'rootfs');
  for (const f of ['etc/ssl/certs/ca-certificates.crt', 'usr/share/doc/postern/commands.txt', 'etc/postern/gateway.yaml', 'etc/postern/edge.yaml'])
    assert.ok(existsSync(path.join(rootfs, f)), f);
  assert.equal(statSync(path.join(rootfs, 'var/lib/postern')).uid, 999);
  assert.equal(readdirSync(path.join(rootfs, 'var/lib/apt/lists')).filter((f) => f !== 'partial' && f !== 'lock').length, 0, 'apt lists removed');

  // An edge: config and certificate mounted over /etc/postern (readable by uid 999), host network (loopback).
  const etc = path.join(d, 'etc-postern');
  const pki = await run(PKG_BIN, ['certs', 'init', '--domain', 'edge.test', '--out', path.join(etc, 'edge-pki')]);
  assert.equal(pki.code, 0, pki.stderr);
  const ports = { connector: await freePort(), client: await freePort(), metrics: await freePort() };
  writeFileSync(path.join(etc, 'edge.yaml'), [
    'state_dir: /var/lib/postern', 'domain: tunnel.test', `connector_listen: 127.0.0.1:${ports.connector}`,
    'connector_tls: { cert_file: /etc/postern/edge-pki/server.pem, key_file: /etc/postern/edge-pki/server.key }',
    `client_listen: 127.0.0.1:${ports.client}`, `metrics_listen: 127.0.0.1:${ports.metrics}`,
  ].join('\n') + '\n');
  for (const f of [etc, path.join(etc, 'edge-pki'), ...readdirSync(path.join(etc, 'edge-pki')).map((x) => path.join(etc, 'edge-pki', x)), path.join(etc, 'edge.yaml')])
    chownSync(f, 999, 999);
  chmodSync(d, 0o755);
  // The image's volumes as an engine would give them: directories of the host owned by the image's user
  // (umoci unpack makes them root-owned tmpfs, which uid 999 cannot write: the edge's preflight says so).
  const state = path.join(d, 'state');
  mkdirSync(state, { mode: 0o750 });
  chownSync(state, 999, 999);
  const e = await bundle('edge', (c) => {
    c.process.args = ['/usr/bin/postern', 'edge', '-c', '/etc/postern/edge.yaml'];
    c.linux.namespaces = c.linux.namespaces.filter((n) => n.type !== 'network');
    c.mounts = c.mounts.filter((m) => m.destination !== '/var/lib/postern');
    c.mounts.push({ destination: '/etc/postern', type: 'bind', source: etc, options: ['rbind', 'ro'] },
      { destination: '/var/lib/postern', type: 'bind', source: state, options: ['rbind', 'rw'] });
  });
  ids.push('postern-oci-edge');
  const p = start('runc', ['run', '-b', e, 'postern-oci-edge'], { name: 'oci-edge' });
  await p.waitFor(/msg="edge listening"/, 20000);
  let ready;
  await waitUntil(async () => {
    try { ready = await fetch(`http://127.0.0.1:${ports.metrics}/ready`); return ready.status === 200; } catch { return false; }
  }, 10000, 100, 'the containerised edge\'s /ready');
  const body = await ready.json();
  assert.equal(body.status, 'ready');
  assert.equal(body.listeners.connector, `127.0.0.1:${ports.connector}`);
  const k = await run('runc', ['kill', 'postern-oci-edge', 'TERM'], { timeoutMs: 10000 });
  assert.equal(k.code, 0, k.stderr);
  const ex = await p.exited;
  assert.equal(ex.code, 0, p.log.slice(-2000));
  assert.match(p.log, /msg="edge stopped"/);
  assert.ok(existsSync(path.join(state, 'tunnels.db')), 'the tunnel database is in the volume');
});
