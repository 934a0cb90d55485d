// Disk (issue 8 finding 9): a scratch workspace (a route's per-session one, `--scratch-workspace`) started
// by root is an ext4 file system of exactly --disk in an unlinked file on a loop device; unprivileged it is
// a tmpfs of --disk within the memory limit. Filling either gives ENOSPC inside, the host file system keeps
// its space, and nothing stays (no loop device, no file) after the session, even when postern is SIGKILLed.
// A shared --workspace gets a btrfs qgroup limit (a subvolume with quotas on) or a project quota (ext4/XFS
// prjquota) as root; where neither is possible an explicit --disk is refused with what to do, --disk none
// accepts a per-file cap, and the default starts with a warning. Bad values are refused by name.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, statSync, statfsSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { rmrf, waitUntil } from './lib/proc.mjs';
import { sbxMode, sbxRun } from './lib/sandbox.mjs';
import { makeMode, connect, call, ok } from './lib/mcp_sandbox.mjs';

// Two files of 40M: a disk of 64M fills up on the second (one file alone would stop at the per-file cap).
const FILL2 = 'for f in a b; do dd if=/dev/zero of=/workspace/$f bs=1M count=40 2>&1 | grep -E -o "No space left on device|File too large|File size limit exceeded|Disk quota exceeded" | head -1; done; ' +
  'echo size=$(( $(stat -c %s /workspace/a) + $(stat -c %s /workspace/b) )); df -k /workspace | tail -1 | awk \'{print "dfsize=" $2}\'';
const FILL = 'dd if=/dev/zero of=/workspace/fill bs=1M count=200 2>&1 | grep -E -o "No space left on device|File too large|File size limit exceeded" | head -1; ' +
  'echo size=$(stat -c %s /workspace/fill); df -k /workspace | tail -1 | awk \'{print "dfsize=" $2}\'';

// Loop devices whose backing file lies in dir (a deleted O_TMPFILE shows as "dir/#ino (deleted)").
const loopsIn = (dir) => execFileSync('losetup', ['-a', '--list', '-n', '-O', 'BACK-FILE'], { encoding: 'utf8' })
  .split('\n').filter((l) => l.startsWith(dir + '/'));
const freeBytes = (dir) => { const s = statfsSync(dir); return s.bavail * s.bsize; };
const limitsOf = (stderr) => (stderr.match(/limits="([^"]*)"/) || [])[1] || '';
// The mount options of the file system holding dir: project quotas are on where they name prjquota/pquota.
const mountOf = (dir) => {
  const [fstype, options] = execFileSync('findmnt', ['-n', '-o', 'FSTYPE,OPTIONS', '--target', dir], { encoding: 'utf8' }).trim().split(/\s+/);
  return { fstype, prjquota: /(^|,)(prjquota|pquota)(,|$)/.test(options) };
};

for (const unpriv of [false, true]) {
  const mode = sbxMode(unpriv, 'sbx-disk-');
  describe(`workspace disk as ${mode.name}`, () => {
    before(() => mode.setup());
    after(() => rmrf(mode.dir));

    test('a scratch workspace: filling it stops at --disk inside; the host keeps its space; nothing stays', async () => {
      const ws = mode.newWorkspace('scratch');
      const before = freeBytes(mode.dir);
      const r = await sbxRun(mode, ['--scratch-workspace', ws, '--disk', '64M', '--', 'sh', '-c', FILL2], { quiet: false });
      assert.equal(r.code, 0, r.stderr);
      const size = Number(r.stdout.match(/size=(\d+)/)[1]);
      // Root: an ext4 image on a loop device. Unprivileged (no loop device): a tmpfs of the cap, which the
      // memory limit (2G, /tmp 1G) leaves whole.
      assert.match(limitsOf(r.stderr), unpriv ? /disk=tmpfs:67108864/ : /disk=ext4-image:67108864/);
      assert.match(r.stdout, /No space left on device/);
      assert.doesNotMatch(r.stdout, /File (too large|size limit exceeded)/);
      assert.ok(size > 48 << 20 && size <= 64 << 20, `filled ${size} bytes of a 64M disk`);
      const df = Number(r.stdout.match(/dfsize=(\d+)/)[1]) * 1024;
      assert.ok(df > 48 << 20 && df <= 64 << 20, `df inside says ${df} bytes`);
      // The workspace directory on the host holds nothing: the disk was an unlinked file, or memory.
      assert.deepEqual(readdirSync(ws).filter((f) => f !== 'probe'), []);
      assert.deepEqual(loopsIn(ws), [], 'a loop device is left behind');
      assert.ok(Math.abs(freeBytes(mode.dir) - before) < 16 << 20, 'host free space changed for good');
    });

    test('unprivileged scratch disk within the memory limit: a tmpfs never holds more than memory leaves', async () => {
      const ws = mode.newWorkspace('scratch-mem');
      const r = await sbxRun(mode, ['--scratch-workspace', ws, '--memory', '256M', '--', 'sh', '-c', 'df -k /workspace | tail -1 | awk \'{print "dfsize=" $2}\''], { quiet: false });
      assert.equal(r.code, 0, r.stderr);
      if (unpriv) {
        // 256M of memory, /tmp 128M of it: the 10G default disk becomes a 128M tmpfs, and a line says why.
        assert.match(limitsOf(r.stderr), /disk=tmpfs:134217728 /);
        assert.match(r.stderr, /the workspace is a tmpfs \(memory\): its size is the disk cap lowered to what the memory limit leaves after \/tmp" disk=10737418240 memory=268435456 tmp=134217728 size=134217728/);
        assert.equal(r.stdout.trim(), `dfsize=${128 * 1024}`);
      } else {
        assert.match(limitsOf(r.stderr), /disk=ext4-image:10737418240 /);
        assert.ok(Number(r.stdout.match(/dfsize=(\d+)/)[1]) > 9 * 1024 * 1024, r.stdout);
      }
    });

    test('a shared --workspace: an explicit --disk is a total cap or a refusal; none and the default cap each file', async () => {
      const ws = mode.newWorkspace('shared');
      const m = mountOf(ws);
      const r = await sbxRun(mode, ['--workspace', ws, '--disk', '32M', '--', 'sh', '-c', FILL], { quiet: false });
      if (!unpriv && m.prjquota) {
        // The host offers project quotas here: a total cap of 32M, EDQUOT past it.
        assert.equal(r.code, 0, r.stderr);
        assert.match(limitsOf(r.stderr), /disk=project-quota:33554432/);
        assert.match(r.stdout, /Disk quota exceeded/);
        rmrf(path.join(ws, 'fill'));
      } else {
        // No total cap is possible: refused, naming the workspace, its file system, why and what to do.
        assert.equal(r.code, 125, r.stderr);
        const why = unpriv ? 'a quota on a shared directory needs root' : `${m.fstype === 'ext4' ? 'ext4' : '[a-z0-9]+'}.*(without project quotas|neither)`;
        assert.match(r.stderr, new RegExp(`--disk: workspace ${ws} \\(${m.fstype === 'ext4' ? 'ext4' : '[a-z0-9]+'}\\) can have no total disk cap: ${why}.*` +
          'Mount it with project quotas .* use a scratch workspace \\(--scratch-workspace\\), or give --disk none to accept a per-file cap only'));
        assert.doesNotMatch(r.stderr, /sandbox started/);
        assert.deepEqual(readdirSync(ws), ['probe']);
      }
      // --disk none: no total cap wanted; each file is capped at the 10G default, no warning.
      const n = await sbxRun(mode, ['--workspace', ws, '--disk', 'none', '--', 'grep', 'Max file size', '/proc/self/limits'], { quiet: false });
      assert.equal(n.code, 0, n.stderr);
      if (!(!unpriv && m.prjquota)) {
        assert.match(limitsOf(n.stderr), /disk=file-size-only:10737418240/);
        assert.match(n.stderr, /no total disk cap on this workspace \(--disk none\)/);
        assert.doesNotMatch(n.stderr, /level=warn[^\n]*disk cap/);
      }
      assert.match(n.stdout, /^Max file size\s+10737418240\s+10737418240\s+bytes/);
      // The default (no --disk): starts with a per-file cap of 10G and a warning saying why.
      const d = await sbxRun(mode, ['--workspace', ws, '--', 'true'], { quiet: false });
      assert.equal(d.code, 0, d.stderr);
      if (!(!unpriv && m.prjquota)) {
        assert.match(limitsOf(d.stderr), /disk=file-size-only:10737418240/);
        assert.match(d.stderr, /level=warn[^\n]*no total disk cap on this workspace: each file is capped at the disk size" workspace="[^"]*" fs=\S+ reason="/);
      }
    });

    test('bad --disk values and two workspaces are refused by name', async () => {
      for (const [args, re] of [
        [['--disk', '1M'], /--disk 1M: expected a size from 16M to 16T, like 2G, or none/],
        [['--disk', 'lots'], /--disk lots: expected a size/],
        [['--disk', '17T'], /--disk 17T: expected a size from 16M to 16T/],
        [['--workspace', mode.ws, '--scratch-workspace', mode.ws], /--scratch-workspace: one workspace only/],
      ]) {
        const r = await sbxRun(mode, [...args, '--', 'true']);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, re);
      }
    });
  });
}

describe('workspace disk, root only', () => {
  const mode = sbxMode(false, 'sbx-disk-root-');
  before(() => mode.setup());
  after(() => rmrf(mode.dir));

  test('SIGKILL of postern mid-session: the disk and its loop device still go away', { skip: process.getuid() !== 0 && 'needs root (loop devices)' }, async () => {
    const ws = mode.newWorkspace('killed');
    const child = spawn(mode.bin, ['sandbox', 'run', '--scratch-workspace', ws, '--disk', '64M', '--',
      'sh', '-c', 'dd if=/dev/zero of=/workspace/f bs=1M count=8 2>/dev/null; sleep 60'], { stdio: 'ignore' });
    try {
      await waitUntil(() => loopsIn(ws).length === 1, 10000, 20, 'the session\'s loop device');
    } finally {
      child.kill('SIGKILL');
    }
    await waitUntil(() => loopsIn(ws).length === 0, 10000, 50, 'the loop device to detach after SIGKILL');
  });

  // Where the image cannot be made (here: the scratch directory is on a read-only bind mount, so no O_TMPFILE)
  // the scratch workspace is a tmpfs of the cap, not the bare directory, and a warning says why.
  test('root scratch workspace whose disk image fails: a tmpfs of --disk instead, ENOSPC at the cap', { skip: process.getuid() !== 0 && 'needs root (bind mounts)' }, async () => {
    const ro = path.join(mode.dir, 'ro');
    mkdirSync(path.join(ro, 'ws'), { recursive: true });
    execFileSync('mount', ['--bind', ro, ro]);
    try {
      execFileSync('mount', ['-o', 'remount,bind,ro', ro]);
      const r = await sbxRun(mode, ['--scratch-workspace', path.join(ro, 'ws'), '--disk', '64M', '--', 'sh', '-c', FILL2], { quiet: false });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /level=warn [^\n]*msg="scratch workspace without a disk image: a tmpfs instead" workspace="[^"]*" reason="disk image in the workspace directory: Read-only file system"/);
      assert.match(limitsOf(r.stderr), /disk=tmpfs:67108864/);
      assert.match(r.stdout, /No space left on device/);
      assert.match(r.stdout, new RegExp(`dfsize=${64 * 1024}\\b`));
    } finally {
      execFileSync('umount', [ro]);
    }
  });

  // A shared workspace on btrfs: the subvolume's qgroup carries the cap for the session and gets its own
  // limit back at the end. The file system is a loop-mounted image the test makes (btrfs-progs, from
  // scripts/deps.sh); a host without btrfs in its kernel fails here rather than skipping.
  test('a shared btrfs subvolume with quotas: EDQUOT at --disk, the limit put back after; refusals say why', { skip: process.getuid() !== 0 && 'needs root (loop devices, qgroups)' }, async (t) => {
    // A modular kernel lists btrfs once it is loaded; a kernel without it at all is said, not passed over.
    const hasBtrfs = () => readFileSync('/proc/filesystems', 'utf8').includes('btrfs');
    if (!hasBtrfs()) { try { execFileSync('modprobe', ['btrfs'], { stdio: 'ignore' }); } catch { /* checked next */ } }
    if (!hasBtrfs()) { t.skip('this kernel has no btrfs (neither built in nor a module)'); return; }
    const img = path.join(mode.dir, 'bt.img'), mnt = path.join(mode.dir, 'bt');
    mkdirSync(mnt);
    writeFileSync(img, '');
    truncateSync(img, 400 << 20);
    execFileSync('mkfs.btrfs', ['-q', img], { stdio: 'pipe' });
    execFileSync('mount', ['-o', 'loop', img, mnt]);
    const qlimit = () => execFileSync('btrfs', ['qgroup', 'show', '-re', '--raw', mnt], { encoding: 'utf8' })
      .split('\n').find((l) => l.startsWith('0/256 '))?.trim().split(/\s+/)[3];
    try {
      const sub = path.join(mnt, 'ws'), plain = path.join(mnt, 'plain');
      execFileSync('btrfs', ['subvolume', 'create', sub], { stdio: 'pipe' });
      mkdirSync(plain);
      const fill = 'dd if=/dev/zero of=/workspace/fill bs=1M count=200 2>&1 | grep -E -o "No space left on device|File too large|Disk quota exceeded" | head -1; echo size=$(stat -c %s /workspace/fill)';
      // Quotas off: no total cap, so an explicit --disk is refused and says what to run.
      let r = await sbxRun(mode, ['--workspace', sub, '--disk', '64M', '--', 'true']);
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, new RegExp(`workspace ${sub} \\(btrfs\\) can have no total disk cap: btrfs quotas are off on it \\(btrfs quota enable MOUNTPOINT\\)`));
      execFileSync('btrfs', ['quota', 'enable', mnt]);
      // A plain directory is not a subvolume: its qgroup would be the whole file system's.
      r = await sbxRun(mode, ['--workspace', plain, '--disk', '64M', '--', 'true']);
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, /\(btrfs\) can have no total disk cap: it is not a btrfs subvolume of its own \(btrfs subvolume create makes one\)/);
      // The subvolume: a cap of 64M, EDQUOT inside, the file on the host stops there too.
      r = await sbxRun(mode, ['--workspace', sub, '--disk', '64M', '--', 'sh', '-c', fill], { quiet: false });
      assert.equal(r.code, 0, r.stderr);
      assert.match(limitsOf(r.stderr), /disk=btrfs-qgroup:67108864/);
      assert.match(r.stdout, /Disk quota exceeded/);
      const size = Number(r.stdout.match(/size=(\d+)/)[1]);
      assert.ok(size > 48 << 20 && size <= 64 << 20, `filled ${size} bytes under a 64M qgroup`);
      assert.equal(statSync(path.join(sub, 'fill')).size, size);
      assert.equal(qlimit(), 'none', 'the qgroup limit was not put back');
      // A smaller limit of the owner's is kept during the session (never raised) and after it.
      rmrf(path.join(sub, 'fill'));
      execFileSync('btrfs', ['qgroup', 'limit', String(24 << 20), sub]);
      r = await sbxRun(mode, ['--workspace', sub, '--disk', '64M', '--', 'sh', '-c', fill]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Disk quota exceeded/);
      assert.ok(Number(r.stdout.match(/size=(\d+)/)[1]) <= 24 << 20, r.stdout);
      assert.equal(qlimit(), String(24 << 20));
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  test('route option disk: a value out of range is a config error naming the key; a size or none loads', async () => {
    const yaml = path.join(mode.dir, 'gw.yaml');
    writeFileSync(yaml, 'listen_addr: 127.0.0.1:1\ntunnel_domain: t.test\ntls: { cert_file: /x, key_file: /y }\n' +
      'routes:\n  box:\n    sandbox:\n      disk: 1M\n      workspace_root: /tmp\n');
    let out = '';
    try { execFileSync(mode.bin, ['check', '-c', yaml], { encoding: 'utf8', stdio: 'pipe' }); } catch (e) { out = e.stderr + e.stdout; }
    assert.match(out, /disk.*'1M' is not a size from 16M to 16T/);
    // A route's workspaces are scratch (always a disk of their own), so a size or none loads whatever
    // file system workspace_root is on.
    const pki = path.join(mode.dir, 'pki');
    execFileSync(mode.bin, ['certs', 'init', '--domain', 't.test', '--out', pki], { stdio: 'pipe' });
    for (const disk of ['64M', 'none']) {
      writeFileSync(yaml, `listen_addr: 127.0.0.1:1\ntunnel_domain: t.test\ntls: { cert_file: ${pki}/server.pem, key_file: ${pki}/server.key }\n` +
        `routes:\n  box:\n    sandbox:\n      disk: ${disk}\n      workspace_root: ${mode.dir}\n`);
      assert.match(execFileSync(mode.bin, ['check', '-c', yaml], { encoding: 'utf8', stdio: 'pipe' }), /gw\.yaml: ok \(proxy\)/);
    }
  });
});

// A worker's sessions get shared workspaces (--workspace DIR under workspace_root, kept across a session's
// children): a disk it asks for must be possible there, so `postern check` and the worker refuse the config.
describe('worker config: disk needs a total cap under workspace_root', () => {
  const mode = sbxMode(false, 'sbx-disk-wk-');
  before(() => mode.setup());
  after(() => rmrf(mode.dir));

  test('disk: SIZE without project quotas there is refused at load; none and the default load', async () => {
    const root = path.join(mode.dir, 'wsroot'), key = path.join(mode.dir, 'key');
    mkdirSync(root);
    writeFileSync(key, 'sk-test\n', { mode: 0o600 });
    const yaml = path.join(mode.dir, 'worker.yaml');
    const cfg = (disk) => 'base_url: https://api.example.test\nenvironment_id: env_1\n' +
      `environment_key_file: ${key}\nworkspace_root: ${root}\n` + (disk ? `sandbox:\n  memory: 1G\n  disk: ${disk}\n` : '');
    const check = (disk) => {
      writeFileSync(yaml, cfg(disk));
      try {
        return { code: 0, out: execFileSync(mode.bin, ['check', '-c', yaml], { encoding: 'utf8', stdio: 'pipe' }) };
      } catch (e) { return { code: e.status, out: e.stderr + e.stdout }; }
    };
    const m = mountOf(root);
    const r = check('64M');
    if (m.prjquota && process.getuid() === 0) {
      assert.equal(r.code, 0, r.out);
    } else {
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, new RegExp(`worker\\.yaml:7: disk: each session's workspace is a new directory under ${root} \\(${m.fstype === 'ext4' ? 'ext4' : '[a-z0-9]+'}\\), ` +
        "which can have no total disk cap: .*Mount it with project quotas \\(ext4 prjquota, XFS pquota\\), or set disk: none to accept a per-file cap only"));
    }
    for (const ok of ['none', null]) {
      const v = check(ok);
      assert.equal(v.code, 0, v.out);
      assert.match(v.out, /: ok \(worker\)/);
    }
  });
});

// The file tools write through the session's own processes: on a full disk the write tool reports the
// error (the tool worker gets ENOSPC; it ignores SIGXFSZ too) and the session goes on. Root: only a disk
// image can fill up within the tools' own size caps (a write is at most a 4M message here).
describe('write tool on a full disk (root)', () => {
  const mode = makeMode(false);
  before(() => mode.setup());
  after(() => rmrf(mode.dir));

  test('write on a full --disk fails with a clear error; the next call works', async () => {
    const s = await connect(mode, { scratch: true, args: ['--disk', '16M'] });
    try {
      await ok(s, 'bash', { command: 'dd if=/dev/zero of=/workspace/fill bs=1M count=64 2>/dev/null; true' });
      const r = await call(s, 'write', { file_path: '/workspace/big.txt', content: 'x'.repeat(3 << 20) });
      assert.equal(r.isError, true, `write of 3M on a full disk succeeded: ${r.text.slice(0, 200)}`);
      assert.match(r.text, /No space left on device/);
      assert.match(await ok(s, 'bash', { command: 'rm /workspace/fill; echo alive' }), /alive/);
      assert.match(await ok(s, 'write', { file_path: '/workspace/big.txt', content: 'x'.repeat(3 << 20) }), /wrote 3145728 bytes/);
    } finally {
      await s.close();
    }
  });
});
