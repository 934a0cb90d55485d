// Identity (issue 8 findings 5 and 6): a session never runs as host uid 0, and cannot exhaust a host
// user's per-user kernel budgets (its namespace caps them; as root it is owned by a dedicated id). As root, the sandbox's processes are
// host uid/gid 65534 (uid_map inside says so); on a workspace filesystem that cannot be idmapped (a ramfs
// here) the session is refused with a clear error instead of falling back to host root, unless the
// workspace is owned by the sandbox's host ids already. Unprivileged, processes are the caller. /etc/shadow
// is masked (empty), so only a non-empty read counts.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, chmodSync, chownSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { rmrf } from './lib/proc.mjs';
import { NOBODY, sbxMode, sbxRun } from './lib/sandbox.mjs';

// Host ids that the sandbox's inside ids map to, from /proc/self/uid_map and gid_map inside.
const hostIds = (map) => map.trim().split('\n').map((l) => Number(l.trim().split(/\s+/)[1]));
const SCRIPT = 'cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --; ' +
  'for f in /etc/shadow- /etc/gshadow- /etc/shadow; do head -c1 $f 2>/dev/null | grep -q . && echo "$f readable"; done; echo end';

// The session's inotify instance cap from its start line (limits=... inotify=<how>:<instances>/<watches>).
const inotifyCap = (log) => Number(log.match(/inotify=[a-z-]+:(\d+)\/\d+/)?.[1]);

function checkNotRoot(r, want) {
  assert.equal(r.code, 0, r.stderr);
  const [uids, gids, rest] = r.stdout.split('--\n');
  assert.deepEqual(hostIds(uids), [want], `uid_map: ${uids}`);
  assert.deepEqual(hostIds(gids), [want], `gid_map: ${gids}`);
  assert.equal(rest.trim(), 'end', `root-only files readable: ${rest}`);
}

// Starts `sandbox run` (its output comes at the end) and resolves once the probe inside has written
// "ready" to `file` in the workspace, i.e. while it holds what it took; `done` resolves at its end.
function startHolding(mode, args, file) {
  const argv = ['sandbox', 'run', ...args];
  const child = mode.unpriv
    ? spawn('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', mode.bin, ...argv])
    : spawn(mode.bin, argv);
  let log = '';
  child.stderr.on('data', (c) => { log += c; });
  child.stdout.on('data', () => {});
  const done = new Promise((r) => child.on('close', () => r(log)));
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      let held = '';
      try { held = readFileSync(file, 'utf8'); } catch { /* not yet */ }
      if (held.includes('ready')) return resolve({ held, log: () => log, done });
      if (Date.now() - t0 > 20000) return reject(new Error(`no ready: ${log}`));
      setTimeout(tick, 20);
    };
    tick();
  });
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

    test('per-user kernel budgets: a session exhausting inotify leaves the host user and a second session theirs', async () => {
      const held = path.join(mode.ws, 'held.txt');
      const a = await startHolding(mode, ['--workspace', mode.ws, '--', 'sh', '-c', './probe inotify 100000 6000 > held.txt'], held);
      const m = a.held.match(/inotify=(\d+) stop=(.*)/);
      assert.ok(m, a.held);
      // The cap the start line states: 32 as root (an owner id of its own), a share of the caller's budget
      // unprivileged (the next describe); the session got exactly that.
      const cap = inotifyCap(a.log());
      assert.ok(cap >= 1 && cap <= 32, a.log());
      assert.equal(Number(m[1]), cap, `one session took ${m[1]} inotify instances`);
      assert.match(m[2], /Too many open files/);
      // While it holds them: a second session, and the host user that started both, get what they ask.
      const want = Math.min(16, cap);
      const b = await sbxRun(mode, ['--workspace', mode.ws, '--', './probe', 'inotify', String(want), '0']);
      assert.match(b.stdout, new RegExp(`inotify=${want} stop=none`), b.stderr);
      const host = execFileSync(mode.unpriv ? 'setpriv' : mode.probe, mode.unpriv
        ? ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', mode.probe, 'inotify', '16', '0']
        : ['inotify', '16', '0'], { encoding: 'utf8' });
      assert.match(host, /inotify=16 stop=none/);
      // Whom the kernel charges: the owner of the session's user namespace, seen from the host.
      const init = a.log().match(/init_pid=(\d+)/);
      assert.ok(init, a.log());
      const said = execFileSync(mode.probe, ['nsowner', init[1]], { encoding: 'utf8' });
      const owner = Number(said.match(/nsowner=(\d+)/)?.[1]);
      if (mode.unpriv) assert.equal(owner, NOBODY); // the caller: all it can be
      else assert.ok(owner >= 2147418112 && owner < 2147418112 + 65536, `namespace owner ${owner}, not a dedicated id (${said})`);
      await a.done;
    });
  });
}

// Unprivileged, every session's namespace is owned by the caller, so their inotify caps add up against the
// caller's own limit (128 by default). Sessions take a share of the caller's budget (a quarter kept back);
// past it a session is refused with a clear error, and the caller keeps its reserve however many sessions
// run. Before, each took 32: four sessions used all 128 and the fifth, and the user's own processes, got
// none. Run as a uid of its own (no other suite uses 64123), so that suites running as 65534 at the same
// time are not starved by this one.
describe('inotify budget of an unprivileged caller across many sessions', () => {
  const U = 64123;
  const mode = sbxMode(false, 'sbx-ident-budget-');
  let ws;
  const running = [];
  before(() => {
    mode.setup();
    ws = mode.newWorkspace('ws-budget');
    for (const f of ['', 'probe']) chownSync(path.join(ws, f), U, U);
  });
  after(() => { for (const c of running) c.kill('SIGKILL'); rmrf(mode.dir); });

  // A session as uid U holding up to n instances for 60 s: resolves when its probe is ready, or when the
  // session ends first (refused).
  const hold = (k) => new Promise((resolve) => {
    const child = spawn('setpriv', ['--reuid', String(U), '--regid', String(U), '--clear-groups', '--', mode.bin,
      'sandbox', 'run', '--workspace', ws, '--', 'sh', '-c', `./probe inotify 100000 60000 > held-${k}.txt`],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH, HOME: '/nonexistent' } });
    running.push(child);
    let log = '', done = false;
    child.stderr.on('data', (c) => { log += c; });
    child.on('close', (code) => { if (!done) { done = true; resolve({ code, log }); } });
    const t0 = Date.now();
    const tick = () => {
      if (done) return;
      let held = '';
      try { held = readFileSync(path.join(ws, `held-${k}.txt`), 'utf8'); } catch { /* not yet */ }
      // Ready, and its start line read: the probe can be ready before node has read the stderr chunk.
      if ((held.includes('ready') && /inotify=/.test(log)) || Date.now() - t0 > 20000) {
        done = true;
        return resolve({ held, log });
      }
      setTimeout(tick, 20);
    };
    tick();
  });

  test('sessions past the budget are refused; the caller keeps its reserve', async () => {
    const limit = Number(readFileSync('/proc/sys/user/max_inotify_instances', 'utf8'));
    const reserve = Math.max(Math.floor(limit / 4), 8);
    let total = 0, sessions = 0, refused = null;
    const caps = []; // [instances got, the cap its start line states]
    for (let k = 0; k < 200 && !refused; k++) { // bounded: at 128, 32 sessions of 3 fit
      const r = await hold(k);
      if (r.code !== undefined) { refused = r; break; }
      const m = r.held.match(/inotify=(\d+) stop=(.*)/);
      assert.ok(m, `session ${k}: ${r.held} ${r.log}`);
      const got = Number(m[1]);
      assert.ok(got > 0, `session ${k} got no inotify instance: the caller's budget is exhausted (${total} held by ${sessions})`);
      caps.push([got, inotifyCap(r.log)]);
      total += got;
      sessions++;
    }
    for (const [got, cap] of caps) assert.equal(got, cap, 'each session gets exactly its stated share');
    assert.ok(refused, 'no session was refused');
    assert.equal(refused.code, 125, refused.log);
    assert.match(refused.log, /the caller's inotify budget is spent: its other sessions hold \d+ of the \d+ inotify instances/);
    assert.ok(sessions > 4, `only ${sessions} sessions ran`);
    assert.ok(total <= limit - reserve, `${sessions} sessions hold ${total} of ${limit}`);
    // While they all hold theirs, the caller's own processes still get the reserve.
    const host = execFileSync('setpriv', ['--reuid', String(U), '--regid', String(U), '--clear-groups', '--',
      mode.probe, 'inotify', String(reserve), '0'], { encoding: 'utf8' });
    assert.match(host, new RegExp(`inotify=${reserve} stop=none`));
    for (const c of running) c.kill('SIGKILL');
  });
});

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
