// Identity (issue 8 finding 5): a session never runs as host uid 0. As root, the sandbox's processes are
// host uid/gid 65534 (uid_map inside says so); on a workspace filesystem that cannot be idmapped (a ramfs
// here) the session is refused with a clear error instead of falling back to host root, unless the
// workspace is owned by the sandbox's host ids already. Unprivileged, processes are the caller. /etc/shadow
// is masked (empty), so only a non-empty read counts.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, chmodSync, chownSync, statSync } from 'node:fs';
import path from 'node:path';
import { rmrf } from './lib/proc.mjs';
import { NOBODY, sbxMode, sbxRun } from './lib/sandbox.mjs';

// Host ids that the sandbox's inside ids map to, from /proc/self/uid_map and gid_map inside.
const hostIds = (map) => map.trim().split('\n').map((l) => Number(l.trim().split(/\s+/)[1]));
const SCRIPT = 'cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --; ' +
  'for f in /etc/shadow- /etc/gshadow- /etc/shadow; do head -c1 $f 2>/dev/null | grep -q . && echo "$f readable"; done; echo end';

function checkNotRoot(r, want) {
  assert.equal(r.code, 0, r.stderr);
  const [uids, gids, rest] = r.stdout.split('--\n');
  assert.deepEqual(hostIds(uids), [want], `uid_map: ${uids}`);
  assert.deepEqual(hostIds(gids), [want], `gid_map: ${gids}`);
  assert.equal(rest.trim(), 'end', `root-only files readable: ${rest}`);
}

for (const unpriv of [false, true]) {
  const mode = sbxMode(unpriv, 'sbx-ident-');
  describe(`sandbox identity as ${mode.name}`, () => {
    before(() => mode.setup());
    after(() => rmrf(mode.dir));

    test('the sandbox\'s ids map to an unprivileged host uid, never 0; root-only host files stay unreadable', async () => {
      checkNotRoot(await sbxRun(mode, ['--workspace', mode.ws, '--', 'sh', '-c', SCRIPT]), NOBODY);
      checkNotRoot(await sbxRun(mode, ['--', 'sh', '-c', SCRIPT]), NOBODY); // tmpfs workspace
    });
  });
}

describe('sandbox identity on a workspace that cannot be idmapped (root)', () => {
  const mode = sbxMode(false, 'sbx-ident-nomap-');
  let rf;
  before(() => {
    mode.setup();
    rf = path.join(mode.dir, 'ramfs');
    mkdirSync(rf);
    execFileSync('mount', ['-t', 'ramfs', 'postern-test', rf]);
    chmodSync(rf, 0o755);
  });
  after(() => { try { execFileSync('umount', [rf]); } catch { /* not mounted */ } rmrf(mode.dir); });

  test('refused with a clear error, never run as host root', async () => {
    const r = await sbxRun(mode, ['--workspace', rf, '--', 'sh', '-c', 'touch ran-here; cat /proc/self/uid_map']);
    assert.notEqual(r.code, 0, `ran: ${r.stdout}`);
    assert.match(r.stderr, /workspace .*ramfs cannot be idmapped .*never runs as host root: put the workspace on a filesystem that does .*chown -R 65534:65534/);
    assert.equal(existsSync(path.join(rf, 'ran-here')), false);
  });

  test('owned by the sandbox\'s host ids already: bound as it is, files land as 65534', async () => {
    chownSync(rf, NOBODY, NOBODY);
    const r = await sbxRun(mode, ['--workspace', rf, '--', 'sh', '-c', `${SCRIPT}; echo x > made-inside`], { quiet: false });
    checkNotRoot({ ...r, stdout: r.stdout.replace(/end\n[\s\S]*/, 'end\n') }, NOBODY);
    assert.match(r.stderr, /workspace cannot be idmapped; it is owned by the sandbox's host ids and bound as it is/);
    const st = statSync(path.join(rf, 'made-inside'));
    assert.equal(st.uid, NOBODY);
    assert.equal(st.gid, NOBODY);
  });
});
