// Sandbox engine through `postern sandbox run`: the escape battery of issue 4 that concerns the engine
// (syscalls, sockets, TIOCSTI, fds, /proc, signals, limits, timeouts, output cap, network, teardown),
// each run as root and as an unprivileged user (uid 65534 via setpriv, on a copy of the binary).
// Probes are compiled by the test from tests/e2e/fixtures/sandbox_probe.c into the workspace.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync,
  writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, rmrf, tmpdir } from './lib/proc.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROBE_SRC = path.join(HERE, 'fixtures', 'sandbox_probe.c');
const NOBODY = 65534;
const isRoot = process.getuid() === 0;

// Runs `postern sandbox run --json ARGS` (as nobody when mode.unpriv); resolves with the exit status,
// stdout, stderr and the JSON summary (last stderr line starting with '{').
function sbx(mode, args, { timeoutMs = 60000, env = {}, extraFd = false } = {}) {
  const argv = ['sandbox', 'run', '--json', '-q', ...args];
  const cmd = mode.unpriv ? 'setpriv' : mode.bin;
  const full = mode.unpriv ? ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', mode.bin, ...argv] : argv;
  return new Promise((resolve, reject) => {
    const stdio = ['ignore', 'pipe', 'pipe'];
    if (extraFd) stdio.push('pipe'); // an fd the sandbox must not inherit
    const child = spawn(cmd, full, { stdio, env: { PATH: process.env.PATH, HOME: mode.unpriv ? '/nonexistent' : process.env.HOME, ...env } });
    const out = [], err = [];
    let outLen = 0;
    child.stdout.on('data', (c) => { outLen += c.length; if (outLen < (8 << 20)) out.push(c); });
    child.stderr.on('data', (c) => err.push(c));
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`sandbox run ${args.join(' ')} timed out`)); }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(t);
      const stdout = Buffer.concat(out).toString('latin1');
      const stderr = Buffer.concat(err).toString();
      const line = stderr.split('\n').reverse().find((l) => l.startsWith('{'));
      resolve({ code, signal, stdout, stderr, json: line ? JSON.parse(line) : null, pid: child.pid, outLen });
    });
  });
}

function kv(stdout) {
  const m = {};
  for (const l of stdout.split('\n')) { const i = l.indexOf('='); if (i > 0) m[l.slice(0, i)] = l.slice(i + 1); }
  return m;
}

// Everything a session could leave behind on the host, for the postern process `pid`.
function leftovers(pid, initPid) {
  const found = [];
  if (initPid && existsSync(`/proc/${initPid}`)) found.push(`init process ${initPid} still exists`);
  const roots = ['/sys/fs/cgroup/memory', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/cpu', '/sys/fs/cgroup/unified', '/sys/fs/cgroup'];
  const walk = (d, depth) => {
    let ents = [];
    try { ents = readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of ents) {
      if (!e.isDirectory()) continue;
      if (e.name.startsWith(`postern-${pid}-`)) found.push(`cgroup ${d}/${e.name}`);
      if (depth < 3) walk(path.join(d, e.name), depth + 1);
    }
  };
  for (const r of roots) walk(r, 0);
  const mi = readFileSync('/proc/self/mountinfo', 'utf8');
  if (/postern|sbx-ws/.test(mi)) found.push('a mount mentioning postern in the host mount table');
  return found;
}

function hostProcsMatching(marker) {
  const hits = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cl = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cl.includes(marker) && !cl.includes('node')) hits.push(`${p}: ${cl}`);
    } catch { /* gone */ }
  }
  return hits;
}

function makeMode(unpriv) {
  const mode = { unpriv, name: unpriv ? 'unprivileged (uid 65534)' : 'root' };
  mode.setup = () => {
    mode.dir = tmpdir('sbx-eng-');
    chmodSync(mode.dir, 0o755);
    if (unpriv) { // a world-readable copy of the binary: the original may sit under a private home
      mode.bin = path.join(mode.dir, 'postern');
      copyFileSync(BIN, mode.bin);
      chmodSync(mode.bin, 0o755);
    } else {
      mode.bin = BIN;
    }
    mode.ws = path.join(mode.dir, 'sbx-ws');
    mkdirSync(mode.ws);
    execFileSync('gcc', ['-O1', '-o', path.join(mode.ws, 'probe'), PROBE_SRC]);
    // A setuid-root copy of the probe: must not gain anything inside.
    copyFileSync(path.join(mode.ws, 'probe'), path.join(mode.ws, 'suid-probe'));
    chownSync(path.join(mode.ws, 'suid-probe'), 0, 0);
    chmodSync(path.join(mode.ws, 'suid-probe'), 0o4755);
    if (unpriv) {
      for (const f of ['', 'probe']) chownSync(path.join(mode.ws, f), NOBODY, NOBODY);
    }
  };
  return mode;
}

for (const unpriv of [false, true]) {
  const mode = makeMode(unpriv);
  describe(`sandbox engine as ${mode.name}`, () => {
    before(() => {
      if (!isRoot) throw new Error('these tests create the unprivileged user context with setpriv and a setuid probe: run them as root');
      mode.setup();
    });
    after(() => rmrf(mode.dir));

    const W = () => ['--workspace', mode.ws];

    test('exit codes: the command\'s, 128+N on signal, 124 on timeout; teardown leaves nothing', async () => {
      let r = await sbx(mode, ['--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
      assert.equal(r.code, 7);
      assert.equal(r.stdout, 'out\nerr\n'); // stdout and stderr merged, in order
      assert.equal(r.json.exit_code, 7);
      assert.deepEqual(leftovers(r.pid, r.json.init_pid), []);
      r = await sbx(mode, ['--', 'sh', '-c', 'kill -TERM $$']);
      assert.equal(r.code, 128 + 15);
      assert.equal(r.json.signal, 15);
      r = await sbx(mode, ['--', 'no-such-command-xyz']);
      assert.equal(r.code, 127);
      assert.match(r.stdout, /no-such-command-xyz: command not found/);
    });

    test('limits in force are reported', async () => {
      const r = await sbx(mode, ['--memory', '512M', '--pids', '100', '--', 'true']);
      assert.equal(r.code, 0);
      const [mem, pids] = mode.unpriv ? ['rlimit-as-per-process', 'rlimit-nproc'] : ['cgroup-v1', 'cgroup-v1'];
      assert.match(r.json.limits, new RegExp(`memory=${mem}:536870912 pids=${pids}:100 `));
      assert.match(r.json.limits, /seccomp=on net=loopback-only/);
    });

    test('blocked system calls: mount, unshare, ptrace, keyctl, bpf, io_uring, open_by_handle_at, x32, int 0x80', async (t) => {
      const r = await sbx(mode, [...W(), '--', './probe', 'syscalls']);
      assert.equal(r.code, 0, r.stderr);
      const m = kv(r.stdout);
      for (const k of ['mount', 'umount', 'unshare_user', 'unshare_ns', 'setns', 'ptrace', 'keyctl', 'add_key', 'bpf',
        'perf_event_open', 'userfaultfd', 'io_uring_setup', 'io_uring_enter', 'open_by_handle_at', 'kexec_load',
        'init_module', 'chroot', 'pivot_root', 'clone_newuser', 'x32_getpid']) {
        assert.equal(m[k], 'EPERM', `${k}: ${m[k]}`);
      }
      // int 0x80 exists only where the kernel has the i386 entry: ask the host first (outside any
      // sandbox), then expect the filter's EPERM there and the kernel's absence elsewhere.
      const host = kv(execFileSync(path.join(mode.ws, 'probe'), ['int80']).toString());
      const want = host.int80_getpid === 'ok' ? 'EPERM' : 'unavailable';
      if (want === 'unavailable') t.diagnostic(`this kernel has no i386 syscall entry (host probe: ${host.int80_getpid})`);
      for (const k of ['int80_getpid', 'int80_mount', 'int80_socketcall']) assert.equal(m[k], want, `${k}: ${m[k]}`);
      // A kernel without the entry kills the caller: the probe survives that and says so.
      const f = await sbx(mode, [...W(), '--env', 'PROBE_NO_INT80=1', '--', './probe', 'int80']);
      assert.equal(f.code, 0, f.stderr);
      assert.deepEqual(kv(f.stdout), { int80_getpid: 'unavailable', int80_mount: 'unavailable', int80_socketcall: 'unavailable' });
      assert.equal(m.clone3, 'ENOSYS'); // libc falls back to clone, whose flags are checked
      assert.equal(m.fork, 'ok');
      // The unshare(1) tool fails too.
      const u = await sbx(mode, ['--', 'sh', '-c', 'unshare -r true; echo rc=$?']);
      assert.match(u.stdout, /unshare failed: Operation not permitted\nrc=1/);
    });

    test('sockets: no new AF_UNIX, AF_NETLINK, AF_PACKET (high bits included); IP and socketpair work', async () => {
      const m = kv((await sbx(mode, [...W(), '--', './probe', 'sockets'])).stdout);
      for (const k of ['socket_unix', 'socket_unix_dgram', 'socket_netlink', 'socket_packet', 'socket_unix_highbits'])
        assert.equal(m[k], 'EPERM', k);
      assert.equal(m.socket_inet, 'ok');
      assert.equal(m.socketpair_unix, 'ok');
    });

    test('TIOCSTI refused on any terminal, other ioctls work; no controlling terminal', async () => {
      const m = kv((await sbx(mode, [...W(), '--', './probe', 'tiocsti'])).stdout);
      assert.equal(m.tiocsti_stdin, 'EPERM');
      assert.equal(m.tiocsti_highbits, 'EPERM');
      assert.equal(m.pts_tcgetattr, 'ok');
      assert.equal(m.pts_tiocsti, 'EPERM');
      assert.equal(m.open_dev_tty, 'ENXIO'); // setsid: no controlling tty
    });

    test('only fds 0-2 inside, even when the caller leaks one; environment scrubbed', async () => {
      const r = await sbx(mode, [...W(), '--', './probe', 'fds'], { extraFd: true, env: { AWS_SECRET_ACCESS_KEY: 'leak-me-123', LANG: 'C.UTF-8' } });
      assert.equal(kv(r.stdout).fds, '0,1,2,');
      const e = await sbx(mode, ['--env', 'FOO=bar', '--', 'env'], { env: { AWS_SECRET_ACCESS_KEY: 'leak-me-123', LANG: 'C.UTF-8' } });
      assert.doesNotMatch(e.stdout, /leak-me-123|AWS_SECRET/);
      assert.match(e.stdout, /^FOO=bar$/m);
      assert.match(e.stdout, /^LANG=C.UTF-8$/m);
      assert.match(e.stdout, /^PATH=/m);
    });

    test('setuid binary gains nothing: no capabilities, no_new_privs, seccomp on', async () => {
      const r = await sbx(mode, [...W(), '--', './suid-probe', 'ids']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const uid = mode.unpriv ? NOBODY : 0;
      assert.match(r.stdout, new RegExp(`uid=${uid} euid=${uid}\n`));
      for (const c of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.match(r.stdout, new RegExp(`${c}:\\s+0000000000000000`));
      assert.match(r.stdout, /NoNewPrivs:\s+1/);
      assert.match(r.stdout, /Seccomp:\s+2/);
      const su = await sbx(mode, ['--', 'sh', '-c', 'ls -l /usr/bin/su /bin/su 2>/dev/null | head -1; su -c id root </dev/null; echo rc=$?']);
      assert.doesNotMatch(su.stdout, /rc=0/);
    });

    test('the sandbox never holds host root: root-only files unreadable, unprivileged host uid', async () => {
      const secret = `/var/tmp/sbx-secret-${process.pid}-${mode.unpriv ? 1 : 0}`;
      writeFileSync(secret, 'topsecret\n', { mode: 0o600 });
      try {
        const r = await sbx(mode, ['--', 'sh', '-c', `cat ${secret}; cat /proc/self/uid_map /proc/self/gid_map`]);
        assert.match(r.stdout, /Permission denied/);
        assert.doesNotMatch(r.stdout, /topsecret/);
        // started as root: inside uid 0 is host 65534; unprivileged: the caller's uid mapped to itself
        const host = mode.unpriv ? NOBODY : 65534;
        const inside = mode.unpriv ? NOBODY : 0;
        assert.match(r.stdout, new RegExp(`^\\s*${inside}\\s+${host}\\s+1\\n\\s*${inside}\\s+${host}\\s+1\\n$`, 'm'));
      } finally {
        rmrf(secret);
      }
    });

    test('host processes are invisible in /proc; kill -9 -1 harms nothing outside', async () => {
      const marker = `4711.${process.pid}${mode.unpriv ? 1 : 0}`;
      const victim = mode.unpriv
        ? spawn('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', 'sleep', marker], { stdio: 'ignore' })
        : spawn('sleep', [marker], { stdio: 'ignore' });
      try {
        await new Promise((r) => setTimeout(r, 100));
        const r = await sbx(mode, ['--', 'sh', '-c', `ls /proc | grep -E '^[0-9]+$' | wc -l; cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c '[${marker[0]}]${marker.slice(1)}'; kill -9 -1; echo survived`]);
        const [n, seen] = r.stdout.split('\n');
        assert.ok(Number(n) <= 6, `sandbox sees ${n} processes`);
        assert.equal(seen, '0');
        assert.equal(victim.exitCode, null);
        assert.equal(victim.signalCode, null);
        process.kill(victim.pid, 0); // still there
      } finally {
        victim.kill('SIGKILL');
      }
    });

    test('fork bomb is contained by the pids limit and reported', async () => {
      const r = await sbx(mode, [...W(), '--pids', '64', '--timeout', '20s', '--', './probe', 'forkbomb']);
      const m = r.stdout.match(/forks=(\d+) errno=(\w+)/);
      assert.ok(m, r.stdout + r.stderr);
      assert.ok(Number(m[1]) < 64, `forks=${m[1]}`);
      assert.equal(m[2], 'EAGAIN');
      if (!mode.unpriv) {
        assert.equal(r.json.pids_limited, true);
        assert.match(r.stderr, /process limit reached/);
      }
      assert.deepEqual(leftovers(r.pid, r.json.init_pid), []);
    });

    test('memory balloon is contained by the memory limit and reported', async () => {
      const r = await sbx(mode, [...W(), '--memory', '256M', '--timeout', '30s', '--', './probe', 'balloon']);
      assert.doesNotMatch(r.stdout, /balloon_done/);
      if (mode.unpriv) { // RLIMIT_AS: the allocation fails inside
        const m = r.stdout.match(/malloc_failed_mb=(\d+)/);
        assert.ok(m && Number(m[1]) <= 256, r.stdout.slice(-200));
        assert.equal(r.code, 3);
      } else { // cgroup: the kernel's OOM killer, seen in the cgroup's events
        assert.equal(r.code, 137);
        assert.equal(r.json.oom_killed, true);
        assert.match(r.stderr, /memory limit reached \(OOM kill\)/);
        const mb = [...r.stdout.matchAll(/mb=(\d+)/g)].map((x) => Number(x[1]));
        assert.ok(Math.max(...mb) <= 256, `reached ${Math.max(...mb)} MB`);
      }
      assert.deepEqual(leftovers(r.pid, r.json.init_pid), []);
    });

    test('timeout kills a setsid double-forked daemon; zero processes remain', async () => {
      const marker = `4242.${process.pid}${mode.unpriv ? 1 : 0}`;
      const t0 = Date.now();
      const r = await sbx(mode, ['--timeout', '1s', '--', 'sh', '-c', `setsid sh -c 'sleep ${marker} &' ; (setsid sleep ${marker}5 &); sleep ${marker}9`]);
      assert.equal(r.code, 124);
      assert.equal(r.json.timed_out, true);
      assert.match(r.stderr, /timed out after 1000 ms/);
      assert.ok(Date.now() - t0 < 5000);
      assert.deepEqual(hostProcsMatching(marker), []);
      assert.deepEqual(leftovers(r.pid, r.json.init_pid), []);
    });

    test('the host process killed with SIGKILL: the whole sandbox dies with it; its cgroups go next time', async () => {
      const marker = `5151.${process.pid}${mode.unpriv ? 1 : 0}`;
      const argv = ['sandbox', 'run', '-q', '--', 'sh', '-c', `setsid sh -c 'sleep ${marker} &'; sleep ${marker}7`];
      const child = mode.unpriv
        ? spawn('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', mode.bin, ...argv], { stdio: 'ignore' })
        : spawn(mode.bin, argv, { stdio: 'ignore' });
      const sleeps = () => hostProcsMatching(marker).filter((l) => / sleep /.test(` ${l.split(': ')[1]}`.slice(0, 8)));
      const deadline = Date.now() + 5000;
      while (sleeps().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(sleeps().length, 2, 'the sandboxed sleeps started');
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
      const until = Date.now() + 3000;
      while (hostProcsMatching(marker).length && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(hostProcsMatching(marker), []);
      // The dead process could not remove its cgroups; the next session sweeps them.
      const r = await sbx(mode, ['--', 'true']);
      assert.equal(r.code, 0);
      assert.deepEqual(leftovers(child.pid, 0), []);
    });

    test('cpu quota: --cpus 0.25 gives a busy loop a quarter of a CPU (cgroup), or says it is not enforced', async () => {
      const r = await sbx(mode, ['--cpus', '0.25', '--', 'bash', '-c', 'TIMEFORMAT="%U %R"; time timeout 2 sh -c "while :; do :; done"']);
      if (mode.unpriv) {
        assert.match(r.json.limits, / cpu=none\(no cgroup\) /);
      } else {
        assert.match(r.json.limits, / cpu=cgroup-v1 /);
        const [user, real] = r.stdout.trim().split(' ').map(Number);
        assert.ok(real >= 1.9 && user < 0.25 * real + 0.2 && user > 0.1, `user ${user}s of ${real}s`);
      }
    });

    test('a delegated cgroup v2 parent holds the session and is cleaned up', async () => {
      // Delegation as systemd does it: a directory owned by the user, with the caller already inside it.
      const parent = `/sys/fs/cgroup/unified/sbx-deleg-${process.pid}-${mode.unpriv ? 1 : 0}`;
      mkdirSync(parent);
      try {
        if (mode.unpriv) for (const f of ['', 'cgroup.procs', 'cgroup.subtree_control', 'cgroup.threads']) chownSync(path.join(parent, f), NOBODY, NOBODY);
        const inner = mode.unpriv ? `exec setpriv --reuid ${NOBODY} --regid ${NOBODY} --clear-groups -- ${mode.bin}` : `exec ${mode.bin}`;
        const child = spawn('sh', ['-c', `echo $$ > ${parent}/cgroup.procs && ${inner} sandbox run -q --cgroup-parent ${parent} -- sleep 1.5`], { stdio: 'ignore' });
        let seen = '';
        const deadline = Date.now() + 5000;
        while (!seen && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
          for (const d of readdirSync(parent)) if (d.startsWith('postern-')) seen = readFileSync(path.join(parent, d, 'cgroup.procs'), 'utf8');
        }
        assert.match(seen, /^\d+\n/, 'the session cgroup under the delegated parent holds the sandbox');
        const code = await new Promise((r) => child.on('exit', r));
        assert.equal(code, 0);
        assert.deepEqual(readdirSync(parent).filter((d) => d.startsWith('postern-')), []);
      } finally {
        for (const p of readFileSync(path.join(parent, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) writeFileSync('/sys/fs/cgroup/unified/cgroup.procs', p);
        execFileSync('rmdir', [parent]);
      }
    });

    test('1 GB of output without newlines: tail kept, capped, no deadlock', async () => {
      const r = await sbx(mode, ['--output-cap', '64K', '--timeout', '120s', '--', 'sh', '-c', 'head -c 1073741824 /dev/zero | tr "\\0" a; printf END'], { timeoutMs: 150000 });
      assert.equal(r.code, 0);
      assert.equal(r.json.output_total, 1073741827);
      assert.equal(r.json.truncated, true);
      assert.equal(r.stdout.length, 65536);
      assert.ok(r.stdout.endsWith('aaaaEND'));
      assert.match(r.stdout, /^a+END$/);
    });

    test('network: only lo; no TCP, UDP, DNS or ICMP out; host loopback unreachable', async () => {
      const net = await import('node:net');
      const srv = net.createServer((s) => s.end('host-secret\n'));
      await new Promise((r) => srv.listen(0, '127.0.0.1', r));
      try {
        const m = kv((await sbx(mode, [...W(), '--', './probe', 'net', String(srv.address().port)])).stdout);
        assert.equal(m.tcp_out, 'ENETUNREACH');
        assert.equal(m.udp_out, 'ENETUNREACH');
        assert.equal(m.tcp6_out, 'ENETUNREACH');
        assert.equal(m.dns, 'fail');
        assert.equal(m.icmp_ping_socket, 'EACCES');
        assert.equal(m.icmp_raw_socket, 'EPERM');
        assert.equal(m.host_loopback, 'ECONNREFUSED');
        const d = await sbx(mode, ['--', 'sh', '-c', "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"]);
        assert.equal(d.stdout, 'lo\n');
      } finally {
        srv.close();
      }
    });

    test('run --allow-domain: the proxy socket inside the namespace is the only way out', async () => {
      const http = await import('node:http');
      const srv = http.createServer((req, res) => res.end(`hello-from-host ${req.url}\n`));
      await new Promise((r) => srv.listen(0, '127.0.0.1', r));
      const port = srv.address().port;
      try {
        const r = await sbx(mode, ['--allow-domain', `127.0.0.1:${port}`, '--', 'sh', '-c',
          `curl -s --noproxy '' -x "$HTTP_PROXY" http://127.0.0.1:${port}/via-proxy; ` +
          'curl -s -D - -o /dev/null http://not-allowed.invalid/ | grep -i x-proxy-error; ' +
          `curl -s --noproxy '*' -m 3 http://127.0.0.1:${port}/direct; echo direct_rc=$?`]);
        assert.match(r.stdout, /^hello-from-host \/via-proxy\n/);
        assert.match(r.stdout, /X-Proxy-Error: reserved-name/i);
        assert.match(r.stdout, /direct_rc=7\n$/); // connection refused: the host's loopback is not there
        assert.doesNotMatch(r.stdout, /\/direct/);
      } finally {
        srv.close();
      }
    });

    test('filesystem: read-only image, secrets hidden, /proc/sys read-only, tmpfs /tmp capped', async () => {
      const r = await sbx(mode, ['--tmp', '8M', '--', 'sh', '-c',
        'touch /usr/x 2>&1; echo 1 > /proc/sys/kernel/domainname 2>&1 || echo procsys=ro; wc -c < /etc/shadow; ls -A /root | wc -l;' +
        ' dd if=/dev/zero of=/tmp/big bs=1M count=16 2>&1 | grep -o "No space left on device"; rm /tmp/big; echo w > /tmp/ok && cat /tmp/ok; pwd']);
      assert.match(r.stdout, /touch: cannot touch '\/usr\/x': Read-only file system/);
      assert.match(r.stdout, /procsys=ro/);
      assert.match(r.stdout, /\n0\n0\n/); // /etc/shadow empty, /root empty
      assert.match(r.stdout, /No space left on device/);
      assert.match(r.stdout, /\nw\n\/workspace\n$/);
    });

    test('workspace writable; existing doors read-only, doors the session made moved aside at the end', async () => {
      const ws = path.join(mode.dir, `ws-prot-${Date.now()}`);
      mkdirSync(path.join(ws, '.git'), { recursive: true });
      writeFileSync(path.join(ws, '.git', 'HEAD'), 'ref: refs/heads/main\n');
      writeFileSync(path.join(ws, '.git', 'config'), '');
      if (mode.unpriv) execFileSync('chown', ['-R', `${NOBODY}:${NOBODY}`, ws]);
      const r = await sbx(mode, ['--workspace', ws, '--', 'sh', '-c',
        'echo data > file.txt && echo wrote;' +
        ' (echo "[core]" >> .git/config) 2>/dev/null || echo config=ro;' +
        ' mv .git .git-moved 2>/dev/null || echo mv=refused;' +
        ' rm -rf .git 2>/dev/null; test -d .git && echo git=kept;' +
        ' echo ok > .git/HEAD && echo head=rw;' +
        ' mkdir -p .git/hooks && echo evil > .git/hooks/pre-commit && echo hooks=made;' +
        ' echo x >> .bashrc && echo bashrc=made']);
      assert.equal(r.stdout, 'wrote\nconfig=ro\nmv=refused\ngit=kept\nhead=rw\nhooks=made\nbashrc=made\n');
      assert.equal(readFileSync(path.join(ws, 'file.txt'), 'utf8'), 'data\n');
      assert.equal(existsSync(path.join(ws, '.git', 'hooks')), false);
      assert.equal(readFileSync(path.join(ws, '.git', 'hooks.postern-quarantine-1', 'pre-commit'), 'utf8'), 'evil\n');
      assert.equal(existsSync(path.join(ws, '.bashrc')), false);
      assert.equal(readFileSync(path.join(ws, '.bashrc.postern-quarantine-1'), 'utf8'), 'x\n');
      assert.equal(readFileSync(path.join(ws, '.git', 'config'), 'utf8'), '');
      assert.equal(readFileSync(path.join(ws, '.git', 'HEAD'), 'utf8'), 'ok\n');
      assert.equal(statSync(path.join(ws, 'file.txt')).uid, mode.unpriv ? NOBODY : 0);
    });
  });
}
