// Disk (issue 8 finding 9): a scratch workspace (a route's per-session one, `--scratch-workspace`) started
// by root is an ext4 file system of exactly --disk in an unlinked file on a loop device: filling it gives
// ENOSPC inside, the host file system keeps its space, and nothing stays (no loop device, no file) after
// the session, even when postern is SIGKILLed. Where no such disk can be had (unprivileged; a shared
// --workspace) each file is capped at --disk and the limits line says so. Bad values are refused by name.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, statfsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { rmrf, waitUntil } from './lib/proc.mjs';
import { sbxMode, sbxRun } from './lib/sandbox.mjs';
import { makeMode, connect, call, ok } from './lib/mcp_sandbox.mjs';

const FILL = 'dd if=/dev/zero of=/workspace/fill bs=1M count=200 2>&1 | grep -E -o "No space left on device|File too large|File size limit exceeded" | head -1; ' +
  'echo size=$(stat -c %s /workspace/fill); df -k /workspace | tail -1 | awk \'{print "dfsize=" $2}\'';

// Loop devices whose backing file lies in dir (a deleted O_TMPFILE shows as "dir/#ino (deleted)").
const loopsIn = (dir) => execFileSync('losetup', ['-a', '--list', '-n', '-O', 'BACK-FILE'], { encoding: 'utf8' })
  .split('\n').filter((l) => l.startsWith(dir + '/'));
const freeBytes = (dir) => { const s = statfsSync(dir); return s.bavail * s.bsize; };
const limitsOf = (stderr) => (stderr.match(/limits="([^"]*)"/) || [])[1] || '';

for (const unpriv of [false, true]) {
  const mode = sbxMode(unpriv, 'sbx-disk-');
  describe(`workspace disk as ${mode.name}`, () => {
    before(() => mode.setup());
    after(() => rmrf(mode.dir));

    test('a scratch workspace: filling it stops at --disk inside; the host keeps its space; nothing stays', async () => {
      const ws = mode.newWorkspace('scratch');
      const before = freeBytes(mode.dir);
      const r = await sbxRun(mode, ['--scratch-workspace', ws, '--disk', '64M', '--', 'sh', '-c', FILL], { quiet: false });
      assert.equal(r.code, 0, r.stderr);
      const size = Number(r.stdout.match(/size=(\d+)/)[1]);
      if (!unpriv) {
        assert.match(limitsOf(r.stderr), /disk=ext4-image:67108864/);
        assert.match(r.stdout, /No space left on device/);
        assert.ok(size > 32 << 20 && size <= 64 << 20, `filled ${size} bytes of a 64M disk`);
        const df = Number(r.stdout.match(/dfsize=(\d+)/)[1]) * 1024;
        assert.ok(df > 48 << 20 && df <= 64 << 20, `df inside says ${df} bytes`);
        // The workspace directory on the host holds nothing: the disk was an unlinked file.
        assert.deepEqual(readdirSync(ws).filter((f) => f !== 'probe'), []);
      } else {
        // No loop device without root: each file is capped, and the limits line and a warning say so.
        assert.match(limitsOf(r.stderr), /disk=file-size-only:67108864/);
        assert.match(r.stderr, /scratch workspace without a disk image: only each file is capped.*needs root|disk image needs root/);
        assert.match(r.stdout, /File (too large|size limit exceeded)/);
        assert.equal(size, 64 << 20);
        rmrf(path.join(ws, 'fill'));
      }
      assert.deepEqual(loopsIn(ws), [], 'a loop device is left behind');
      assert.ok(Math.abs(freeBytes(mode.dir) - before) < 16 << 20, 'host free space changed for good');
    });

    test('a shared --workspace: each file is capped at --disk (no total cap), and the limits line says so', async () => {
      const ws = mode.newWorkspace('shared');
      const r = await sbxRun(mode, ['--workspace', ws, '--disk', '32M', '--', 'sh', '-c', FILL], { quiet: false });
      assert.equal(r.code, 0, r.stderr);
      assert.match(limitsOf(r.stderr), /disk=file-size-only:33554432/);
      assert.match(r.stderr, /no total disk cap on this workspace: each file is capped at the disk size/);
      assert.match(r.stdout, /File (too large|size limit exceeded)/);
      assert.equal(Number(r.stdout.match(/size=(\d+)/)[1]), 32 << 20);
      assert.equal(execFileSync('stat', ['-c', '%s', path.join(ws, 'fill')], { encoding: 'utf8' }).trim(), String(32 << 20));
      // The default is 10G, stated without a warning.
      const d = await sbxRun(mode, ['--workspace', ws, '--', 'true'], { quiet: false });
      assert.match(limitsOf(d.stderr), /disk=file-size-only:10737418240/);
      assert.doesNotMatch(d.stderr, /no total disk cap/);
    });

    test('bad --disk values and two workspaces are refused by name', async () => {
      for (const [args, re] of [
        [['--disk', '1M'], /--disk 1M: expected a size from 16M to 16T/],
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

  test('route option disk: a value out of range is a config error naming the key', async () => {
    const yaml = path.join(mode.dir, 'gw.yaml');
    writeFileSync(yaml, 'listen_addr: 127.0.0.1:1\ntunnel_domain: t.test\ntls: { cert_file: /x, key_file: /y }\n' +
      'routes:\n  box:\n    sandbox:\n      disk: 1M\n      workspace_root: /tmp\n');
    let out = '';
    try { execFileSync(mode.bin, ['check', '-c', yaml], { encoding: 'utf8', stdio: 'pipe' }); } catch (e) { out = e.stderr + e.stdout; }
    assert.match(out, /disk.*'1M' is not a size from 16M to 16T/);
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
