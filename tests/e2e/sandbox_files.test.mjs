// The file tools run inside the sandbox (issue 8 findings 1 and 7): each call goes to a tool worker that
// is one of the session's own processes, so write/edit can do exactly what a command could. Checked with
// the host's real git and the host's /proc, as root and unprivileged:
// - write/edit cannot replace a protected .git/config, .bashrc or .profile (they are read-only mount
//   points inside), and the host's `git status` afterwards runs nothing the session chose;
// - the worker is in the session's pid namespace and cgroup, and files it writes have the owner a
//   command's files get;
// - grep with a pathological pattern stops at PCRE2's match limit with a clear error, quickly;
// - with a custom --image that holds nothing but a static busybox (no dynamic loader, no libc), the file
//   tools still work (the worker is a static program from a sealed memfd) and bash runs the image's shell.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync,
  writeFileSync, chownSync } from 'node:fs';
import path from 'node:path';
import { rmrf } from './lib/proc.mjs';
import { NOBODY, bash, call, connect, err, makeMode, ok } from './lib/mcp_sandbox.mjs';

const git = (ws, ...args) => execFileSync('git', ['-c', 'safe.directory=*', '-C', ws, ...args], {
  encoding: 'utf8', env: { PATH: process.env.PATH, HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1' },
  stdio: ['ignore', 'pipe', 'pipe'],
});

// Host processes in the pid namespace of the session's init whose command line holds `needle`.
function sessionProcs(initPid, needle) {
  const ns = readlinkSync(`/proc/${initPid}/ns/pid`);
  const out = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readlinkSync(`/proc/${d}/ns/pid`) !== ns) continue;
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmd.includes(needle)) out.push({ pid: Number(d), cmd, cgroup: readFileSync(`/proc/${d}/cgroup`, 'utf8') });
    } catch { /* gone meanwhile */ }
  }
  return out;
}

for (const unpriv of [false, true]) {
  const mode = makeMode(unpriv);
  describe(`file tools inside the sandbox as ${mode.name}`, () => {
    let s, ws, marker;
    before(async () => {
      mode.setup();
      ws = mode.workspace();
      // A real repository made on the host before the session, as a person's checkout would be.
      git(ws, 'init', '-q');
      writeFileSync(path.join(ws, '.bashrc'), '# host bashrc\n');
      writeFileSync(path.join(ws, '.profile'), '# host profile\n');
      if (unpriv) execFileSync('chown', ['-R', `${NOBODY}:${NOBODY}`, ws]);
      marker = path.join(mode.dir, 'fsmonitor-ran');
      s = await connect(mode, { ws });
    });
    after(async () => { if (s) await s.close(); rmrf(mode.dir); });

    test('write and edit cannot replace protected files; host git runs nothing the session chose', async () => {
      const before = readFileSync(path.join(ws, '.git/config'), 'utf8');
      const hook = `[core]\n\tfsmonitor = "touch ${marker}; false"\n`;
      for (const f of ['.git/config', '.bashrc', '.profile']) {
        await err(s, 'write', { file_path: f, content: hook }, /Device or resource busy|Read-only|Permission denied/);
        await err(s, 'write', { file_path: `/workspace/${f}`, content: hook });
      }
      await err(s, 'edit', { file_path: '.git/config', old_string: '[core]', new_string: hook },
        /Device or resource busy|Read-only|Permission denied/);
      await err(s, 'edit', { file_path: '.bashrc', old_string: 'host', new_string: 'evil' });
      assert.equal(readFileSync(path.join(ws, '.git/config'), 'utf8'), before);
      assert.equal(readFileSync(path.join(ws, '.bashrc'), 'utf8'), '# host bashrc\n');
      assert.equal(readFileSync(path.join(ws, '.profile'), 'utf8'), '# host profile\n');
      // No temporary file was left next to them either.
      assert.deepEqual(readdirSync(ws).filter((n) => n.includes('.postern-')), []);
      assert.deepEqual(readdirSync(path.join(ws, '.git')).filter((n) => n.includes('.postern-')), []);
      git(ws, 'status', '--porcelain');
      assert.equal(existsSync(marker), false, 'host git status ran a command the session wrote');
      // Ordinary files are written as before.
      assert.match(await ok(s, 'write', { file_path: 'src/a.txt', content: 'hello\n' }), /wrote 6 bytes/);
      assert.equal(readFileSync(path.join(ws, 'src/a.txt'), 'utf8'), 'hello\n');
    });

    test('the worker is a process of the session: its pid namespace and cgroup, a command\'s file owner', async () => {
      await ok(s, 'read', { file_path: 'src/a.txt' });
      const init = s.initPid();
      assert.ok(init, 'init pid in the log');
      const workers = sessionProcs(init, 'tool-worker');
      assert.equal(workers.length, 1, JSON.stringify(workers));
      const shells = sessionProcs(init, 'bash');
      await bash(s, 'true');
      const [sh] = sessionProcs(init, 'bash --noprofile');
      assert.ok(sh, `no shell found (${JSON.stringify(shells)})`);
      assert.equal(workers[0].cgroup, sh.cgroup, 'worker and shell share the session cgroup');
      // With cgroups (root here), the session's own; unprivileged without delegation there is none to be in.
      if (!/memory=rlimit/.test(s.log())) assert.notEqual(workers[0].cgroup, readFileSync('/proc/self/cgroup', 'utf8'));
      const hostUid = statSync(`/proc/${workers[0].pid}`).uid;
      assert.equal(hostUid, statSync(`/proc/${sh.pid}`).uid);
      assert.notEqual(hostUid, 0, 'the worker never runs as host root');
      // Inside, the worker is listed like any process; the files it writes get a command's owner.
      assert.match(await bash(s, 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " "'), /tool-worker/);
      await ok(s, 'write', { file_path: 'by-tool.txt', content: 'x' });
      await bash(s, 'echo x > by-shell.txt');
      const a = statSync(path.join(ws, 'by-tool.txt')), b = statSync(path.join(ws, 'by-shell.txt'));
      assert.equal(a.uid, b.uid);
      assert.equal(a.gid, b.gid);
    });

    test('grep: a pathological pattern stops at the match limit with a clear error; the worker goes on', async () => {
      writeFileSync(path.join(ws, 'patho.txt'), `${'a'.repeat(4000)}!\n`.repeat(3));
      if (unpriv) chownSync(path.join(ws, 'patho.txt'), NOBODY, NOBODY);
      const t0 = Date.now();
      const r = await call(s, 'grep', { pattern: '^(a+)+$', path: 'patho.txt' });
      assert.equal(r.isError, true, r.text);
      assert.match(r.text, /grep stopped at \/workspace\/patho.txt:1: the pattern needs more work than grep allows/);
      assert.match(r.text, /match limit exceeded/);
      assert.ok(Date.now() - t0 < 10000, `took ${Date.now() - t0} ms`);
      assert.match(await ok(s, 'grep', { pattern: 'a{4000}!$', path: 'patho.txt' }), /patho.txt:3:a/);
      await err(s, 'grep', { pattern: 'x'.repeat(5000) }, /over the 4096-byte limit/);
    });

    test('a killed worker gives a clear error and the next call starts a new one', async () => {
      await bash(s, 'for p in /proc/[0-9]*; do grep -q tool-worker $p/cmdline 2>/dev/null && kill -9 ${p#/proc/}; done; true');
      const r = await call(s, 'read', { file_path: 'src/a.txt' });
      if (r.isError) assert.match(r.text, /tool worker .*restarts on the next call/);
      assert.equal(await ok(s, 'read', { file_path: 'src/a.txt' }), 'hello\n');
    });
  });
}

// An image with no glibc at all: /bin holds Debian's static busybox (busybox-static, scripts/deps.sh) and
// its applet links, nothing else. Before, the worker was the host's dynamically linked postern executed in
// there: "postern-tool-worker: command not found" (no /lib64/ld-linux-x86-64.so.2).
function busyboxImage(dir) {
  assert.ok(existsSync('/bin/busybox'), 'the static busybox is missing: install busybox-static (make deps)');
  assert.match(readFileSync('/bin/busybox').subarray(0, 4).toString('latin1'), /^\x7fELF/);
  const img = path.join(dir, 'busybox-image');
  mkdirSync(path.join(img, 'bin'), { recursive: true, mode: 0o755 });
  copyFileSync('/bin/busybox', path.join(img, 'bin/busybox'));
  const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', path.join(img, 'bin', a));
  assert.ok(applets.includes('sh'));
  assert.deepEqual(readdirSync(img), ['bin']);
  return img;
}

for (const unpriv of [false, true]) {
  const mode = makeMode(unpriv);
  describe(`file tools in a minimal image without libc (static busybox) as ${mode.name}`, () => {
    let s, ws;
    before(async () => {
      mode.setup();
      ws = mode.workspace();
      s = await connect(mode, { ws, args: ['--image', busyboxImage(mode.dir)] });
    });
    after(async () => { if (s) await s.close(); rmrf(mode.dir); });

    test('write, read, edit, grep and glob work; bash is the image\'s own shell', async () => {
      assert.match(await ok(s, 'write', { file_path: 'src/notes.txt', content: 'alpha\nbeta\ngamma\n' }), /wrote 17 bytes/);
      assert.equal(await ok(s, 'read', { file_path: 'src/notes.txt', view_range: [2, 3] }), 'beta\ngamma\n');
      await ok(s, 'edit', { file_path: '/workspace/src/notes.txt', old_string: 'beta', new_string: 'BETA' });
      assert.equal(await ok(s, 'read', { file_path: 'src/notes.txt' }), 'alpha\nBETA\ngamma\n');
      assert.equal(await ok(s, 'grep', { pattern: '^B[A-Z]+A$' }), '/workspace/src/notes.txt:2:BETA\n');
      assert.match(await ok(s, 'glob', { pattern: '**/*.txt' }), /\/workspace\/src\/notes\.txt/);
      await err(s, 'read', { file_path: 'missing.txt' }, /No such file/);
      // The shell is busybox's: no bash, no loader, no libc anywhere in the view.
      assert.equal(await bash(s, 'readlink /proc/$$/exe; ls /; ls /lib /lib64 /usr 2>&1 | wc -l'),
        '/bin/busybox\nbin\ndev\nproc\nsys\ntmp\nworkspace\n3\n');
      assert.equal(await bash(s, 'cd src && X=kept && cat notes.txt | tr a-z A-Z | head -1'), 'ALPHA\n');
      assert.equal(await bash(s, 'echo "$X $PWD"'), 'kept /workspace/src\n');
      assert.match(await err(s, 'bash', { command: 'exit_fn() { return 3; }; exit_fn' }), /\[exit code 3\]/);
      // The worker is a process of the session here too, with a command's file owner on the host.
      const init = s.initPid();
      assert.ok(init, 'init pid in the log');
      const [w] = sessionProcs(init, 'tool-worker');
      assert.ok(w, 'the tool worker runs in the session\'s pid namespace');
      assert.notEqual(statSync(`/proc/${w.pid}`).uid, 0, 'the worker never runs as host root');
      await bash(s, 'echo x > /workspace/by-shell.txt');
      const a = statSync(path.join(ws, 'src/notes.txt')), b = statSync(path.join(ws, 'by-shell.txt'));
      assert.equal(a.uid, b.uid);
      assert.equal(a.gid, b.gid);
    });
  });
}
