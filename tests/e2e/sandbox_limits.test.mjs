// Issue 8, findings 8 and 10 through `postern sandbox run`, as root and as uid 65534: honest memory
// limits (session total with a delegated cgroup, else said to be per process), one capped tmpfs for
// /tmp and /dev/shm within the memory budget, and what the session can see (cgroup namespace rooted at
// the session, own sysfs, no host path or host environment in pid 1).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { BIN, rmrf, tmpdir } from './lib/proc.mjs';

const NOBODY = 65534;
const CANARY = 'POSTERN_CANARY_SECRET=b8res-canary-7f3a';

function sbx(mode, args, { timeoutMs = 60000 } = {}) {
  const argv = ['sandbox', 'run', '--json', ...args];
  const cmd = mode.unpriv ? 'setpriv' : mode.bin;
  const full = mode.unpriv ? ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', mode.bin, ...argv] : argv;
  return new Promise((resolve, reject) => {
    const [k, v] = CANARY.split('=');
    const child = spawn(cmd, full, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, HOME: '/nonexistent', [k]: v } });
    const out = [], err = [];
    child.stdout.on('data', (c) => out.push(c));
    child.stderr.on('data', (c) => err.push(c));
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`sandbox run ${args.join(' ')} timed out`)); }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(t);
      const stderr = Buffer.concat(err).toString();
      const line = stderr.split('\n').reverse().find((l) => l.startsWith('{'));
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr, json: line ? JSON.parse(line) : null });
    });
  });
}

// A v1 memory cgroup directory delegated to uid 65534 (chown, as cgcreate -a/-t does), or null.
function delegateV1(t) {
  const own = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => /^\d+:memory:/.test(l));
  if (!own || !existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes')) { t.diagnostic('no cgroup v1 memory hierarchy'); return null; }
  const dir = path.join('/sys/fs/cgroup/memory', own.split(':')[2], `b8-deleg-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  for (const f of ['', 'cgroup.procs', 'tasks']) chownSync(path.join(dir, f), NOBODY, NOBODY);
  return dir;
}

const ALLOC = 'for i in 1 2 3 4 5 6; do python3 -c "b=bytearray(100<<20); import time; time.sleep(1.5); print(\'held\')" & done; wait';

for (const unpriv of [false, true]) {
  const mode = { unpriv, name: unpriv ? 'unprivileged (uid 65534)' : 'root' };
  describe(`sandbox limits as ${mode.name}`, () => {
    before(() => {
      mode.dir = tmpdir('sbx-lim-');
      chmodSync(mode.dir, 0o755);
      mode.bin = path.join(mode.dir, 'postern');
      copyFileSync(BIN, mode.bin);
      chmodSync(mode.bin, 0o755);
      mode.ws = path.join(mode.dir, 'host-ws-marker');
      mkdirSync(mode.ws);
      if (unpriv) chownSync(mode.ws, NOBODY, NOBODY);
    });
    after(() => rmrf(mode.dir));

    test('memory: six processes of 100 MB cannot exceed --memory 256M where a cgroup holds the total; else the start line says per process', async (t) => {
      const r = await sbx(mode, ['--memory', '256M', '--', 'sh', '-c', ALLOC]);
      const held = (r.stdout.match(/held/g) || []).length;
      if (/memory=cgroup-v[12]:268435456 /.test(r.json.limits)) {
        assert.ok(held < 6, `all 6 x 100 MB held under a 256 MB session cgroup: ${r.json.limits}`);
        assert.equal(r.json.oom_killed, true);
      } else {
        t.diagnostic(`no memory cgroup: ${r.json.limits}`);
        assert.match(r.json.limits, /memory=rlimit-as-per-process:268435456 /);
        assert.match(r.stderr, /the memory limit applies to each process, not to the session/);
      }
      if (unpriv) { // with a delegated v1 directory the unprivileged session gets a real total
        const dir = delegateV1(t);
        if (dir) {
          try {
            const d = await sbx(mode, ['--memory', '256M', '--cgroup-parent', dir, '--', 'sh', '-c', ALLOC]);
            assert.match(d.json.limits, /memory=cgroup-v1:268435456 /);
            assert.ok((d.stdout.match(/held/g) || []).length < 6, d.stdout);
            assert.equal(d.json.oom_killed, true);
          } finally { try { rmdirSync(dir); } catch { /* busy a moment */ } }
        }
      }
    });

    test('/tmp, /dev/shm and the tmpfs workspace share one cap within the memory budget: ENOSPC at the cap', async () => {
      const r = await sbx(mode, ['--memory', '256M', '--', 'sh', '-c',
        'head -c 100M /dev/zero > /tmp/a; echo tmp=$?; head -c 100M /dev/zero 2>&1 >/dev/shm/b; echo shm=$?;'
        + ' head -c 100M /dev/zero > /workspace/c 2>/dev/null; echo ws=$?; df -k /dev/shm | tail -1']);
      assert.match(r.json.limits, / tmp=tmpfs-shared:134217728 /);
      assert.match(r.stdout, /tmp=0/);
      assert.match(r.stdout, /No space left on device\nshm=1/);
      assert.match(r.stdout, /ws=1/);
      const kb = Number(r.stdout.trim().split('\n').pop().split(/\s+/)[1]);
      assert.ok(kb <= 128 * 1024, `shared tmpfs size ${kb} KiB`);
    });

    test('visibility: cgroup namespace at the session, own sysfs, no host path or host env in pid 1', async () => {
      const hostNics = readdirSync('/sys/class/net').filter((n) => n !== 'lo');
      const r = await sbx(mode, ['--workspace', mode.ws, '--', 'sh', '-c',
        'cat /proc/self/cgroup; echo ==; ls /sys/class/net; echo ==; tr "\\0" " " </proc/1/cmdline; echo; echo ==;'
        + ' cat /proc/1/environ 2>&1 | tr "\\0" " "; echo ==; cat /sys/class/net/*/address; echo ==; ls /sys/fs/cgroup']);
      assert.equal(r.code, 0, r.stderr);
      const [cg, nets, cmdline, environ, macs, cgfs] = r.stdout.split('==\n');
      for (const l of cg.trim().split('\n')) assert.match(l, /^\d+:[^:]*:\/$/, `cgroup line ${l}`);
      assert.deepEqual(nets.trim().split('\n'), ['lo']);
      for (const n of hostNics) {
        const mac = readFileSync(`/sys/class/net/${n}/address`, 'utf8').trim();
        if (mac !== '00:00:00:00:00:00') assert.ok(!macs.includes(mac), `host MAC ${mac} of ${n} visible`);
      }
      assert.equal(cgfs.trim(), '', 'the host cgroup tree is visible under /sys/fs/cgroup');
      assert.ok(!cmdline.includes('host-ws-marker') && !cmdline.includes('postern'), cmdline);
      assert.ok(!environ.includes('b8res-canary'), environ);
      assert.match(r.json.limits, / sysfs=(netns|empty) cgroupns=session/);
    });

    test('mountinfo: the host workspace path appears only as the root field of the workspace mount (documented residue)', async (t) => {
      const r = await sbx(mode, ['--workspace', mode.ws, '--', 'cat', '/proc/self/mountinfo']);
      assert.equal(r.code, 0, r.stderr);
      for (const l of r.stdout.split('\n').filter((x) => x.includes(mode.ws))) {
        const f = l.split(' ');
        assert.ok(f[3].startsWith(mode.ws) && f[4].startsWith('/workspace'), `host path outside the root field: ${l}`);
        t.diagnostic(`residue: root field ${f[3]} of ${f[4]}`);
      }
      assert.ok(!/ \/sys\/fs\/cgroup\//.test(r.stdout), 'host cgroup mounts listed');
    });
  });
}
