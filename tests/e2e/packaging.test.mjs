// Packaging (issue 11): `make install` lays out exactly the expected files with their modes, the systemd units
// pass `systemd-analyze verify` and score as hardened, the gateway unit's directives leave sandbox: routes
// working (and the ones it omits are shown to break them), `make deb` builds a package whose control data,
// contents and conffiles are as stated (lintian clean), which unpacks into a throwaway root with dpkg and runs,
// and the Containerfile is consistent with `make install` (its image is built and run by container.test.mjs; the
// package booted under systemd is `make deb-boot-check`, docs/operations.md).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync, readdirSync, lstatSync, mkdirSync, chmodSync, chownSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, start, freePort, tmpdir, rmrf, BIN } from './lib/proc.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VERSION = readFileSync(path.join(root, 'VERSION'), 'utf8').trim();
// The package is built from the release flavour (static libraries); under the ASan pass POSTERN_BIN is a
// sanitizer build that links its libraries dynamically, which `make deb` refuses by design.
const PKG_BIN = existsSync(path.join(root, 'build/gcc/postern')) ? path.join(root, 'build/gcc/postern') : BIN;
const docs = ['README.md', 'BENCHMARKS.md', ...readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md'))];
const have = async (cmd) => (await run('sh', ['-c', `command -v ${cmd}`])).code === 0;
const isRoot = process.getuid() === 0;
let d;

before(() => { d = tmpdir('postern-pkg-'); });
after(() => rmrf(d));

const make = (args, opts = {}) => run('make', ['-s', '--no-print-directory', '-C', root, `INSTALL_BIN=${PKG_BIN}`, ...args],
  { timeoutMs: 60000, ...opts });

// Every file and directory under dir: {rel: mode} (symlinks would show as 'link').
function tree(dir) {
  const out = {};
  const walk = (p) => {
    for (const e of readdirSync(p)) {
      const f = path.join(p, e), st = lstatSync(f), rel = path.relative(dir, f);
      out[rel] = st.isSymbolicLink() ? 'link' : (st.mode & 0o7777).toString(8) + (st.isDirectory() ? '/' : '');
      if (st.isDirectory()) walk(f);
    }
  };
  walk(dir);
  return out;
}

test('make install DESTDIR= PREFIX=/usr/local: exactly these files, these modes; configs kept; uninstall', async () => {
  const dest = path.join(d, 'dest');
  let r = await make(['install', `DESTDIR=${dest}`]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const want = {
    'etc/': '755/', 'etc/postern': '755/', 'etc/postern/edge.yaml': '644', 'etc/postern/gateway.yaml': '644',
    'etc/postern/worker.yaml': '644', 'etc/postern/control.yaml': '644',
    'usr/': '755/', 'usr/local': '755/', 'usr/local/bin': '755/', 'usr/local/bin/postern': '755',
    'usr/local/lib': '755/', 'usr/local/lib/systemd': '755/', 'usr/local/lib/systemd/system': '755/',
    'usr/local/lib/systemd/system/postern-edge.service': '644', 'usr/local/lib/systemd/system/postern-gateway.service': '644',
    'usr/local/lib/systemd/system/postern-worker.service': '644', 'usr/local/lib/systemd/system/postern-control.service': '644',
    'usr/local/lib/sysusers.d': '755/', 'usr/local/lib/sysusers.d/postern.conf': '644',
    'usr/local/share': '755/', 'usr/local/share/doc': '755/', 'usr/local/share/doc/postern': '755/',
    'usr/local/share/doc/postern/commands.txt': '644', 'usr/local/share/doc/postern/examples': '755/',
    'usr/local/share/doc/postern/examples/edge.yaml': '644', 'usr/local/share/doc/postern/examples/gateway.yaml': '644',
    'usr/local/share/doc/postern/examples/worker.yaml': '644', 'usr/local/share/doc/postern/examples/control.yaml': '644',
  };
  for (const f of docs) want[`usr/local/share/doc/postern/${f}`] = '644';
  const got = tree(dest);
  const norm = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k.replace(/\/$/, ''), v]).sort());
  assert.deepEqual(norm(got), norm(want));

  const unit = readFileSync(path.join(dest, 'usr/local/lib/systemd/system/postern-gateway.service'), 'utf8');
  assert.match(unit, /^ExecStart=\/usr\/local\/bin\/postern gateway -c \/etc\/postern\/gateway\.yaml$/m);
  assert.doesNotMatch(unit, /@[A-Z]+@/, 'every placeholder substituted');
  for (const k of ['worker', 'control']) {
    const u = readFileSync(path.join(dest, `usr/local/lib/systemd/system/postern-${k}.service`), 'utf8');
    assert.match(u, new RegExp(`^ExecStart=/usr/local/bin/postern ${k} -c /etc/postern/${k}\\.yaml$`, 'm'));
    assert.doesNotMatch(u, /@[A-Z]+@/, `${k}: every placeholder substituted`);
  }
  assert.equal(readFileSync(path.join(dest, 'usr/local/bin/postern')).equals(readFileSync(PKG_BIN)), true);
  // the --help of every command `postern --help` lists, in one file
  const help = readFileSync(path.join(dest, 'usr/local/share/doc/postern/commands.txt'), 'utf8');
  const cmds = (await run(PKG_BIN, ['--help'])).stdout.split('commands:')[1].split('\n').filter((l) => /^  [a-z]/.test(l)).map((l) => l.trim().split(/\s+/)[0]);
  assert.ok(cmds.length >= 8 && cmds.includes('gateway') && cmds.includes('edge'), cmds.join());
  for (const c of cmds) assert.match(help, new RegExp(`^==== postern ${c} --help$`, 'm'), c);
  assert.match(help, /usage: postern gateway/);

  // a second install keeps the operator's config, and says so
  const conf = path.join(dest, 'etc/postern/gateway.yaml');
  writeFileSync(conf, '# mine\n');
  r = await make(['install', `DESTDIR=${dest}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(conf, 'utf8'), '# mine\n');
  assert.match(r.stdout, /gateway\.yaml exists: kept/);

  r = await make(['uninstall', `DESTDIR=${dest}`]);
  assert.equal(r.code, 0, r.stderr);
  const left = Object.keys(tree(dest)).filter((k) => !k.endsWith('/') && lstatSync(path.join(dest, k)).isFile());
  assert.deepEqual(left.sort(), ['etc/postern/control.yaml', 'etc/postern/edge.yaml', 'etc/postern/gateway.yaml', 'etc/postern/worker.yaml']);

  r = await make(['install', `DESTDIR=${path.join(d, 'nobin')}`, 'INSTALL_BIN=/nonexistent/postern']);
  assert.notEqual(r.code, 0);
});

test('the example configs pass postern check once their files exist', async () => {
  // The examples name /etc/postern/...: point them at a scratch tree, make the files the comments say to make.
  const etc = path.join(d, 'ex');
  mkdirSync(etc, { recursive: true });
  for (const [dom, out] of [['edge.example.net', 'edge-pki'], ['my-tools.tunnel.example.net', 'pki'], ['control.example.net', 'control-pki']]) {
    const r = await run(PKG_BIN, ['certs', 'init', '--domain', dom, '--out', path.join(etc, out)]);
    assert.equal(r.code, 0, r.stderr);
  }
  writeFileSync(path.join(etc, 'token'), 'pt_example\n', { mode: 0o600 });
  writeFileSync(path.join(etc, 'env.key'), 'example-environment-key\n', { mode: 0o600 });
  mkdirSync(path.join(d, 'state', 'worker'), { recursive: true }); // the unit's StateDirectory makes it
  for (const f of ['edge.yaml', 'gateway.yaml', 'worker.yaml', 'control.yaml']) {
    const y = readFileSync(path.join(root, 'deploy/examples', f), 'utf8').replaceAll('/etc/postern', etc)
      .replaceAll('/var/lib/postern', path.join(d, 'state'));
    writeFileSync(path.join(etc, f), y);
    const r = await run(PKG_BIN, ['check', '-c', path.join(etc, f)]);
    assert.equal(r.code, 0, `${f}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`${f}: ok \\(${f.replace('.yaml', '')}\\)`));
  }
});

test('systemd units: systemd-analyze verify passes, security exposure stays low, the directives are there', async (t) => {
  const units = ['postern-edge.service', 'postern-gateway.service', 'postern-worker.service', 'postern-control.service'];
  const text = Object.fromEntries(units.map((u) => [u, readFileSync(path.join(root, 'deploy/systemd', `${u}.in`), 'utf8')]));
  const dirs = (u) => Object.fromEntries(text[u].split('\n').filter((l) => /^[A-Z]\w+=/.test(l)).map((l) => [l.split('=')[0], l.slice(l.indexOf('=') + 1)]));
  const e = dirs('postern-edge.service'), g = dirs('postern-gateway.service');
  const w = dirs('postern-worker.service'), c = dirs('postern-control.service');
  for (const x of [e, g, w, c]) {
    for (const [k, v] of Object.entries({ User: 'postern', NoNewPrivileges: 'yes', ProtectSystem: 'strict', ProtectHome: 'yes',
      PrivateTmp: 'yes', PrivateDevices: 'yes', Restart: 'on-failure', ExecReload: '/bin/kill -HUP $MAINPID', LimitNOFILE: '1048576',
      UMask: '0077' })) assert.equal(x[k], v, k);
    assert.match(x.StateDirectory, /^postern( |$)/);
  }
  assert.equal(e.CapabilityBoundingSet, 'CAP_NET_BIND_SERVICE');
  assert.equal(e.AmbientCapabilities, 'CAP_NET_BIND_SERVICE');
  assert.equal(g.CapabilityBoundingSet, '', 'the gateway holds no capability');
  assert.equal(g.LogsDirectory, 'postern');
  assert.equal(g.RuntimeDirectory, 'postern');
  assert.equal(g.Delegate, 'yes');
  for (const x of [g, w])
    for (const k of ['ProtectKernelTunables', 'ProtectKernelLogs', 'ProtectControlGroups', 'RestrictNamespaces', 'ProtectHostname', 'MemoryDenyWriteExecute', 'PrivateUsers'])
      assert.equal(x[k], undefined, `${k} would break sandboxes (or stdio: routes)`);
  for (const x of [e, c])
    for (const k of ['ProtectKernelTunables', 'ProtectKernelLogs', 'ProtectControlGroups', 'RestrictNamespaces', 'MemoryDenyWriteExecute', 'ProtectHostname'])
      assert.equal(x[k], 'yes', k);
  // the worker runs sandboxes: delegated cgroups, no capability, netlink for the sandbox's loopback
  assert.equal(w.Delegate, 'yes');
  assert.equal(w.CapabilityBoundingSet, '');
  assert.equal(w.StateDirectory, 'postern postern/worker');
  assert.match(w.RestrictAddressFamilies, /AF_NETLINK/);
  assert.match(w.SystemCallFilter, /^~/, 'the worker has a deny list only');
  // control: its state directory and its port, nothing more
  assert.equal(c.StateDirectory, 'postern postern/control');
  assert.equal(c.CapabilityBoundingSet, 'CAP_NET_BIND_SERVICE');
  assert.equal(c.Delegate, undefined);
  assert.equal(c.RestrictAddressFamilies, 'AF_UNIX AF_INET AF_INET6');

  if (!(await have('systemd-analyze'))) { t.skip('systemd-analyze is not installed: directives checked as text only'); return; }
  // installed with a real prefix (no DESTDIR) so that ExecStart names an executable that exists
  const pre = path.join(d, 'prefix');
  const r = await make(['install', `PREFIX=${pre}`, `SYSCONFDIR=${pre}/etc`]);
  assert.equal(r.code, 0, r.stderr);
  const paths = units.map((u) => path.join(pre, 'lib/systemd/system', u));
  const v = await run('systemd-analyze', ['verify', ...paths]);
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.stderr.trim(), '', 'verify prints nothing for a clean unit');
  const limits = { 'postern-edge.service': 2.0, 'postern-gateway.service': 4.5, 'postern-worker.service': 4.5, 'postern-control.service': 2.0 };
  for (const p of paths) {
    const s = await run('systemd-analyze', ['security', '--offline=yes', p]);
    const m = s.stdout.match(/Overall exposure level for (\S+): ([\d.]+)/);
    assert.ok(m, s.stdout + s.stderr);
    t.diagnostic(`${m[1]} exposure ${m[2]}`);
    assert.ok(Number(m[2]) <= limits[m[1]], `${m[1]} exposure ${m[2]} > ${limits[m[1]]}`);
  }
});

// The worker and control units, started the way systemd would (systemd is not PID 1 here; the booted check is
// `make deb-boot-check`): the installed unit's ExecStart= run as is, with the config it names, under the unit's
// User= (the host's postern user, or uid 65534 standing in for it when the host has none), with its
// NoNewPrivileges=, capability sets and UMask=, in directories made as StateDirectory= makes them. The control
// plane answers, the worker fills its warm pool of sandboxes and polls it with its environment key, and
// /proc shows the credentials the unit asks for.
test('worker and control units: ExecStart as installed, as the unit\'s user and capabilities, serves', async (t) => {
  if (!isRoot) { t.skip('needs root to run as another user with a chosen capability set'); return; }
  const pw = await run('getent', ['passwd', 'postern']);
  const uid = pw.code === 0 ? Number(pw.stdout.split(':')[2]) : 65534;
  const gid = pw.code === 0 ? Number(pw.stdout.split(':')[3]) : 65534;
  t.diagnostic(pw.code === 0 ? `as the host's postern user (uid ${uid})` : 'the host has no postern user: uid 65534 stands in for it');
  const top = tmpdir('postern-units-');
  chmodSync(top, 0o755); // traversed by the unit's user, like /etc and /var/lib
  const pre = path.join(top, 'prefix');
  try {
    const r = await make(['install', `PREFIX=${pre}`, `SYSCONFDIR=${pre}/etc`]);
    assert.equal(r.code, 0, r.stderr);
    const unit = (k) => {
      const text = readFileSync(path.join(pre, 'lib/systemd/system', `postern-${k}.service`), 'utf8');
      return Object.fromEntries(text.split('\n').filter((l) => /^[A-Z]\w+=/.test(l)).map((l) => [l.split('=')[0], l.slice(l.indexOf('=') + 1)]));
    };
    const w = unit('worker'), c = unit('control');
    for (const [k, u] of [['worker', w], ['control', c]]) {
      assert.equal(u.ExecStart, `${pre}/bin/postern ${k} -c ${pre}/etc/postern/${k}.yaml`);
      assert.equal(u.User, 'postern');
      assert.equal(u.NoNewPrivileges, 'yes');
    }
    // StateDirectory=postern postern/<k>, StateDirectoryMode=: owned by the user, that mode
    const state = path.join(top, 'var-lib-postern');
    const stateDir = (sub, mode) => {
      const p = path.join(state, sub);
      mkdirSync(p, { recursive: true });
      chownSync(p, uid, gid);
      chmodSync(p, parseInt(mode, 8));
      return p;
    };
    stateDir('', w.StateDirectoryMode);
    const ws = stateDir('worker', w.StateDirectoryMode), cs = stateDir('control', c.StateDirectoryMode);
    // setpriv from the unit's lines: user, no-new-privs, the bounding and ambient sets, umask
    const caps = (u) => (u.CapabilityBoundingSet || '').split(/\s+/).filter(Boolean).map((x) => x.replace(/^CAP_/, '').toLowerCase());
    const asUnit = (u, argv) => {
      const bnd = caps(u), amb = (u.AmbientCapabilities || '').split(/\s+/).filter(Boolean).map((x) => x.replace(/^CAP_/, '').toLowerCase());
      const set = (l) => ['-all', ...l.map((x) => `+${x}`)].join(',');
      return ['sh', ['-c', `umask ${u.UMask}; exec setpriv --reuid=${uid} --regid=${gid} --clear-groups --no-new-privs ` +
        `--bounding-set=${set(bnd)} --inh-caps=${set(amb)} ${amb.length ? `--ambient-caps=${set(amb)} ` : ''}"$@"`, 'unit', ...argv]];
    };
    const cport = await freePort(), cmetrics = await freePort(), wmetrics = await freePort();
    writeFileSync(path.join(pre, 'etc/postern/control.yaml'), [`listen_addr: 127.0.0.1:${cport}`, `state_dir: ${cs}`, 'store: sqlite',
      `metrics_listen: 127.0.0.1:${cmetrics}`].join('\n') + '\n');
    // the admin command as the unit's user, so that the store it makes is the daemon's
    const [ecmd, eargs] = asUnit(c, [`${pre}/bin/postern`, 'control', 'env', 'create', 'units-env', '-c', `${pre}/etc/postern/control.yaml`]);
    const e = await run(ecmd, eargs, { timeoutMs: 20000 });
    assert.equal(e.code, 0, e.stderr);
    const env = JSON.parse(e.stdout);
    const keyFile = path.join(pre, 'etc/postern/env.key');
    writeFileSync(keyFile, `${env.key}\n`, { mode: 0o600 });
    chownSync(keyFile, uid, gid); // install -o postern -g postern -m 0600, as the example says
    writeFileSync(path.join(pre, 'etc/postern/worker.yaml'), [`base_url: http://127.0.0.1:${cport}`, `environment_id: ${env.id}`,
      `environment_key_file: ${keyFile}`, `workspace_root: ${ws}`, 'max_sessions: 2', 'pool_size: 1',
      'sandbox: { memory: 256M, pids: 128 }', `metrics_listen: 127.0.0.1:${wmetrics}`].join('\n') + '\n');

    const [ccmd, cargs] = asUnit(c, c.ExecStart.split(' '));
    const cp = start(ccmd, cargs, { name: 'unit-control' });
    await cp.waitFor(/msg="control plane listening"/, 15000);
    const [wcmd, wargs] = asUnit(w, w.ExecStart.split(' '));
    const wp = start(wcmd, wargs, { name: 'unit-worker' });
    const metrics = async (port) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    let wm = '';
    for (let i = 0; i < 100 && !/^postern_worker_pool_size 1$/m.test(wm); i++) {
      await new Promise((res) => setTimeout(res, 150));
      wm = await metrics(wmetrics).catch(() => '');
    }
    assert.match(wm, /^postern_worker_pool_size 1$/m, `the warm sandbox started under the unit's credentials\n${wp.log.slice(-3000)}`);
    assert.match(wm, /^postern_worker_poll_errors_total 0$/m);
    // a poll is a long poll: counted when answered (block_ms under 1 s)
    const polled = /^postern_control_requests_total\{endpoint="work\.poll",status="200"\} [1-9]/m;
    let cm = '';
    for (let i = 0; i < 50 && !polled.test(cm); i++) {
      cm = await metrics(cmetrics);
      if (!polled.test(cm)) await new Promise((res) => setTimeout(res, 200));
    }
    assert.match(cm, polled, cm);
    const q = await fetch(`http://127.0.0.1:${cport}/v1/environments/${env.id}/work/stats`,
      { headers: { authorization: `Bearer ${env.key}`, 'anthropic-beta': 'managed-agents-2026-04-01' } });
    assert.equal(q.status, 200);
    assert.equal((await q.json()).type, 'work_queue_stats');
    // the credentials the units ask for: uid, no-new-privs, capabilities (control: CAP_NET_BIND_SERVICE = bit 10)
    const status = (p) => Object.fromEntries(readFileSync(`/proc/${p.child.pid}/status`, 'utf8').split('\n').map((l) => l.split(':\t')));
    const sc = status(cp), sw = status(wp);
    for (const s of [sc, sw]) {
      assert.equal(s.Uid.split('\t')[1], String(uid));
      assert.equal(s.NoNewPrivs, '1');
    }
    assert.equal(sc.CapBnd, '0000000000000400');
    assert.equal(sc.CapAmb, '0000000000000400');
    assert.equal(sc.CapEff, '0000000000000400');
    assert.equal(sw.CapBnd, '0000000000000000');
    assert.equal(sw.CapEff, '0000000000000000');
    // what the daemons wrote is private to the user (UMask=0077)
    const db = readdirSync(cs).filter((f) => !f.startsWith('.'));
    assert.ok(db.length > 0, 'the store is in state_dir');
    for (const f of db) assert.equal(lstatSync(path.join(cs, f)).mode & 0o077, 0, `${f} is private`);
    assert.equal(lstatSync(path.join(cs, db[0])).uid, uid);
    // ExecReload= is kill -HUP: both stay up
    cp.child.kill('SIGHUP');
    wp.child.kill('SIGHUP');
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(cp.child.exitCode, null);
    assert.equal(wp.child.exitCode, null);
    assert.equal((await wp.kill('SIGTERM', 30000)).code, 0, wp.log.slice(-2000));
    assert.equal((await cp.kill('SIGTERM', 30000)).code, 0, cp.log.slice(-2000));
  } finally {
    rmrf(top);
  }
});

// What ProtectSystem=strict, ProtectHome, PrivateTmp and ProtectKernelTunables do to the mount namespace, done by
// hand (systemd is not PID 1 here), and the gateway's user, no-new-privileges and empty bounding set: a sandbox
// still runs under the first three, and does not under the fourth, which is why the gateway unit omits it.
test('gateway hardening, emulated: a sandbox runs under the unit\'s mounts and credentials; not with ProtectKernelTunables', async (t) => {
  if (!isRoot) { t.skip('needs root to build the mount namespace (the unprivileged case is the same sandbox code)'); return; }
  const mounts = {
    strict: 'mount -o remount,bind,ro / && for m in $(awk \'$5 ~ "^/(usr|etc|boot|var|opt|srv|work)" {print $5}\' /proc/self/mountinfo); do mount -o remount,bind,ro "$m" 2>/dev/null || true; done',
    home: 'for p in /home /root; do [ -d $p ] && mount -t tmpfs -o ro,mode=000 tmpfs $p; done; true',
    tmp: 'mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /var/tmp',
    tunables: 'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys',
  };
  const ws = path.join(d, 'ws');
  mkdirSync(ws, { recursive: true });
  const emulate = (sets) => run('unshare', ['-m', 'sh', '-c', [
    'set -e', 'mount --make-rprivate /', `mount -t tmpfs tmpfs /mnt && mkdir /mnt/bin /mnt/ws && chmod 777 /mnt/ws && cp ${BIN} /mnt/bin/postern`,
    ...sets.map((s) => mounts[s]),
    'exec setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs --bounding-set=-all --inh-caps=-all ' +
      '/mnt/bin/postern sandbox run --workspace /mnt/ws --timeout 10s --quiet -- sh -c \'echo ran-as-$(id -u); touch /workspace/w && echo wrote\'',
  ].join('\n')], { timeoutMs: 20000 });
  let r = await emulate(['strict', 'home', 'tmp']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /ran-as-65534\nwrote/);
  r = await emulate(['strict', 'home', 'tmp', 'tunables']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /mount proc on proc: Operation not permitted/);
});

test('make deb: control, contents, conffiles, maintainer scripts; lintian clean; unpacks with dpkg and runs', async (t) => {
  const out = path.join(d, 'deb');
  const r = await make(['deb', `DEB_OUT=${out}`]);
  assert.equal(r.code, 0, r.stderr);
  const arch = (await run('dpkg', ['--print-architecture'])).stdout.trim();
  const deb = path.join(out, `postern_${VERSION}_${arch}.deb`);
  assert.ok(existsSync(deb), `${deb} built`);
  assert.ok(r.stdout.trim().endsWith(`postern_${VERSION}_${arch}.deb`), r.stdout);

  const info = await run('dpkg-deb', ['-I', deb]);
  assert.equal(info.code, 0, info.stderr);
  const field = (k) => (info.stdout.match(new RegExp(`^ ${k}: (.*)$`, 'm')) || [])[1];
  assert.equal(field('Package'), 'postern');
  assert.equal(field('Version'), VERSION);
  assert.equal(field('Architecture'), arch);
  assert.match(field('Depends'), /^libc6 \(>= 2\.\d+\), adduser$/);
  for (const s of ['postinst', 'prerm', 'postrm', 'conffiles', 'md5sums']) assert.match(info.stdout, new RegExp(`\\s${s}\\s`), s);
  const conffiles = (await run('dpkg-deb', ['-I', deb, 'conffiles'])).stdout.trim().split('\n');
  assert.deepEqual(conffiles, ['/etc/postern/control.yaml', '/etc/postern/edge.yaml', '/etc/postern/gateway.yaml', '/etc/postern/worker.yaml']);
  const postinst = (await run('dpkg-deb', ['-I', deb, 'postinst'])).stdout;
  assert.match(postinst, /adduser --system --group .*postern|adduser --system --group[^\n]*\\\n[^\n]*postern/);

  const c = await run('dpkg-deb', ['-c', deb]);
  const entries = Object.fromEntries(c.stdout.trim().split('\n').map((l) => { const f = l.split(/\s+/); return [f[5].replace(/^\.\//, '/').replace(/\/$/, '') || '/', { mode: f[0], owner: f[1] }]; }));
  for (const [p, mode] of Object.entries({ '/usr/bin/postern': '-rwxr-xr-x', '/lib/systemd/system/postern-edge.service': '-rw-r--r--',
    '/lib/systemd/system/postern-gateway.service': '-rw-r--r--', '/etc/postern/gateway.yaml': '-rw-r--r--', '/etc/postern/edge.yaml': '-rw-r--r--',
    '/lib/systemd/system/postern-worker.service': '-rw-r--r--', '/lib/systemd/system/postern-control.service': '-rw-r--r--',
    '/etc/postern/worker.yaml': '-rw-r--r--', '/etc/postern/control.yaml': '-rw-r--r--',
    '/usr/lib/sysusers.d/postern.conf': '-rw-r--r--', '/usr/share/doc/postern/copyright': '-rw-r--r--', '/usr/share/doc/postern/changelog.gz': '-rw-r--r--',
    '/usr/share/doc/postern/commands.txt': '-rw-r--r--', '/usr/share/doc/postern/examples/gateway.yaml': '-rw-r--r--' })) {
    assert.ok(entries[p], `${p} in the package`);
    assert.equal(entries[p].mode, mode, p);
  }
  for (const [p, e] of Object.entries(entries)) assert.equal(e.owner, 'root/root', p);
  assert.ok(!Object.keys(entries).some((p) => p.startsWith('/usr/local')), 'nothing under /usr/local');

  // dpkg's own unpack into a throwaway root with its own database (no maintainer script runs: none at unpack)
  const droot = path.join(d, 'root');
  for (const sub of ['var/lib/dpkg/info', 'var/lib/dpkg/updates']) mkdirSync(path.join(droot, sub), { recursive: true });
  writeFileSync(path.join(droot, 'var/lib/dpkg/status'), '');
  const u = await run('dpkg', [`--root=${droot}`, '--force-depends', '--force-not-root', '--unpack', deb], { timeoutMs: 30000 });
  assert.equal(u.code, 0, u.stderr + u.stdout);
  const q = await run('dpkg-query', [`--admindir=${droot}/var/lib/dpkg`, '-W', '-f=${Package} ${Version} ${Conffiles}', 'postern']);
  assert.match(q.stdout, new RegExp(`^postern ${VERSION.replace(/\./g, '\\.')} `));
  assert.match(q.stdout, /\/etc\/postern\/gateway\.yaml newconffile/, "dpkg records the conffiles (unpacked, not yet configured)");
  const ver = await run(path.join(droot, 'usr/bin/postern'), ['--version']);
  assert.equal(ver.code, 0, ver.stderr);
  assert.equal(ver.stdout.trim(), `postern ${VERSION}`);
  const x = path.join(d, 'x');
  assert.equal((await run('dpkg-deb', ['-x', deb, x])).code, 0);
  for (const k of ['gateway', 'edge', 'worker', 'control'])
    assert.match(readFileSync(path.join(x, `lib/systemd/system/postern-${k}.service`), 'utf8'), new RegExp(`^ExecStart=/usr/bin/postern ${k} -c /etc/postern/${k}\\.yaml$`, 'm'));
  const prerm = (await run('dpkg-deb', ['-I', deb, 'prerm'])).stdout;
  for (const k of ['edge', 'gateway', 'worker', 'control']) assert.match(prerm, new RegExp(`postern-${k}\\.service`), `prerm stops postern-${k}`);

  if (!(await have('lintian'))) { t.skip('lintian is not installed (scripts/deps.sh installs it): dpkg-deb -I/-c checks only'); return; }
  const l = await run('lintian', ['--tag-display-limit', '0', deb], { timeoutMs: 60000 });
  const tags = (l.stdout + l.stderr).split('\n').filter((s) => /^[EWI]: /.test(s));
  assert.deepEqual(tags, [], tags.join('\n'));
  assert.equal(l.code, 0, l.stdout + l.stderr);
});

// The container file as text (no container engine runs in CI): its structure, that the install step it runs
// produces every path it copies, and that the binary needs no library the slim runtime image lacks. The image
// itself is built from it and run by tests/e2e/container.test.mjs (make oci, runc).
test('Containerfile: multi-stage Debian 12, non-root, its install step yields every path it copies', async () => {
  const src = readFileSync(path.join(root, 'Containerfile'), 'utf8');
  const ins = src.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
    .map((l) => { const i = l.indexOf(' '); return { op: l.slice(0, i).toUpperCase(), arg: l.slice(i + 1).trim() }; });
  const known = new Set(['FROM', 'RUN', 'COPY', 'ENV', 'WORKDIR', 'USER', 'VOLUME', 'EXPOSE', 'ENTRYPOINT', 'CMD', 'ARG', 'LABEL']);
  for (const i of ins) assert.ok(known.has(i.op), `unknown instruction ${i.op}`);
  const froms = ins.map((x, n) => [x, n]).filter(([x]) => x.op === 'FROM');
  assert.equal(froms.length, 2);
  assert.match(froms[0][0].arg, /^debian:12 AS build$/);
  assert.match(froms[1][0].arg, /^debian:12-slim$/);
  const stages = new Set(froms.map(([x]) => (x.arg.match(/ AS (\S+)$/) || [])[1]).filter(Boolean));
  const last = ins.slice(froms[1][1]);
  const build = ins.slice(0, froms[1][1]);
  assert.ok(!ins.some((x) => x.op === 'ADD'), 'COPY only (no ADD of URLs or archives)');
  assert.ok(!/curl[^\n|]*\|\s*(ba)?sh/.test(src), 'nothing piped from the network into a shell');
  assert.ok(build.some((x) => x.op === 'RUN' && x.arg.includes('scripts/deps.sh --build')), 'the build deps come from scripts/deps.sh');
  const user = last.filter((x) => x.op === 'USER').pop();
  assert.ok(user && !/^(root|0)(:|$)/.test(user.arg), 'the runtime stage ends as a non-root user');
  assert.match(last.find((x) => x.op === 'RUN').arg, /useradd --system .*postern/);
  const ep = JSON.parse(last.find((x) => x.op === 'ENTRYPOINT').arg);
  const cmd = JSON.parse(last.find((x) => x.op === 'CMD').arg);
  assert.deepEqual(ep, ['/usr/bin/postern']);
  assert.deepEqual(cmd, ['gateway', '-c', '/etc/postern/gateway.yaml']);

  // the build stage's `make install ...` with its DESTDIR moved here and the binary given
  const run1 = build.filter((x) => x.op === 'RUN').map((x) => x.arg).find((a) => a.includes('make install'));
  const inst = run1.split('&&').map((s) => s.trim()).find((s) => s.startsWith('make install'));
  const outDir = path.join(d, 'container-out');
  const args = inst.split(/\s+/).slice(2).map((a) => a.replace(/^DESTDIR=\/out$/, `DESTDIR=${outDir}`).replace(/^INSTALL_BIN=.*/, `INSTALL_BIN=${PKG_BIN}`));
  assert.ok(args.includes(`DESTDIR=${outDir}`), inst);
  const r = await make(['install', ...args]);
  assert.equal(r.code, 0, r.stderr);
  const copies = last.filter((x) => x.op === 'COPY');
  assert.ok(copies.length >= 3);
  for (const c of copies) {
    const m = c.arg.match(/^--from=(\S+) (\S+) (\S+)$/);
    assert.ok(m, `COPY ${c.arg}: from a stage`);
    assert.ok(stages.has(m[1]), `stage ${m[1]} declared`);
    assert.ok(m[2].startsWith('/out/') && existsSync(path.join(outDir, m[2].slice(5))), `${m[2]} produced by the install step`);
  }
  assert.ok(existsSync(path.join(outDir, cmd[2])), 'the default config is in the image');
  // what the slim image must provide: glibc only (the other libraries are linked into the binary)
  const od = await run('objdump', ['-p', path.join(outDir, 'usr/bin/postern')]);
  const needed = [...od.stdout.matchAll(/NEEDED\s+(\S+)/g)].map((m) => m[1]);
  for (const n of needed) assert.match(n, /^(libc|libm|libpthread|libdl|ld-linux[^.]*)\.so/, `needs ${n}`);
  const ignore = readFileSync(path.join(root, '.dockerignore'), 'utf8').split('\n');
  for (const p of ['build/', 'node_modules/', '.git/']) assert.ok(ignore.includes(p), `.dockerignore: ${p}`);
});
