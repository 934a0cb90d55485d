// The sandbox MCP server (`postern sandbox serve --stdio`) driven by the official MCP TypeScript SDK client
// over stdio: every tool, the file-tool escape battery of issue 4, egress through the sandbox's proxy,
// session lifecycle (teardown, idle timeout, concurrency cap) and protocol errors. Each group runs as
// root and as an unprivileged user (uid 65534 via setpriv, on a world-readable copy of the binary).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, linkSync, mkdirSync, readFileSync, statSync,
  symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { BIN, rmrf, sleep, tmpdir, waitUntil } from './lib/proc.mjs';

import { NOBODY, bash, call, connect, err, makeMode, ok } from './lib/mcp_sandbox.mjs';

const alive = (pid) => existsSync(`/proc/${pid}`);

for (const unpriv of [false, true]) {
  const mode = makeMode(unpriv);

  describe(`sandbox tools over MCP as ${mode.name}`, () => {
    let s;
    before(async () => { mode.setup(); s = await connect(mode); });
    after(async () => { if (s) await s.close(); rmrf(mode.dir); });

    test('initialize and tools/list: six tools with object input schemas', async () => {
      assert.equal(s.client.getServerVersion().name, 'postern-sandbox');
      const { tools } = await s.client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), ['bash', 'edit', 'glob', 'grep', 'read', 'write']);
      for (const t of tools) {
        assert.equal(t.inputSchema.type, 'object');
        assert.ok(t.description.length > 20);
      }
      const read = tools.find((t) => t.name === 'read');
      assert.deepEqual(read.inputSchema.required, ['file_path']);
      assert.equal(read.inputSchema.properties.view_range.type, 'array');
    });

    test('bash: persistent state, merged stderr, exit codes, stdin /dev/null, ANSI stripped', async () => {
      assert.equal(await bash(s, 'mkdir -p sub && cd sub && export V=persist && W=local && echo done'), 'done\n');
      assert.equal(await bash(s, 'echo "$PWD $V $W"'), '/workspace/sub persist local\n');
      assert.equal(await bash(s, 'echo out; echo err >&2; echo out2'), 'out\nerr\nout2\n');
      assert.equal(await err(s, 'bash', { command: 'echo partial; exit_fn() { return 3; }; exit_fn' }, /\[exit code 3\]/),
        'partial\n[exit code 3]');
      assert.equal(await bash(s, 'cat; echo after-cat'), 'after-cat\n');
      assert.equal(await bash(s, 'printf "\\033[1;31mred\\033[0m \\033]0;title\\007plain\\n"'), 'red plain\n');
      await err(s, 'bash', { command: 'echo "unterminated' }, /unexpected EOF/);
      assert.equal(await bash(s, 'cd /workspace && echo $V'), 'persist\n'); // a syntax error kept the shell
      const id = await bash(s, 'id -u');
      assert.equal(id.trim(), unpriv ? String(NOBODY) : '0');
    });

    test('bash: output capped at 100 KiB keeping the tail, 200 MB without newlines does not stall', async () => {
      const t0 = Date.now();
      const out = await bash(s, "head -c 200000000 /dev/zero | tr '\\0' a; echo; echo THE-END", { timeout_ms: 120000 });
      assert.ok(out.startsWith('[output truncated]\n'), out.slice(0, 50));
      assert.ok(out.endsWith('aaaa\nTHE-END\n'));
      assert.ok(out.length <= 100 * 1024 + 30, `length ${out.length}`);
      assert.ok(Date.now() - t0 < 60000);
    });

    test('bash: timeout kills the command\'s group and the next call gets a fresh shell', async () => {
      await bash(s, 'export BEFORE=1');
      const t0 = Date.now();
      const r = await err(s, 'bash', { command: 'echo started; sleep 60', timeout_ms: 700 }, /timed out after 700 ms/);
      assert.match(r, /^started\n/);
      assert.ok(Date.now() - t0 < 10000);
      assert.equal(await bash(s, 'echo "[$BEFORE]"; pgrep -x sleep || echo no-sleep'), '[]\nno-sleep\n');
      await err(s, 'bash', { command: 'true', timeout_ms: 0 }, /timeout_ms/);
    });

    test('bash: restart kills every process and resets state', async () => {
      await bash(s, 'export R=1; setsid sleep 300 >/dev/null 2>&1 & echo bg');
      // Until the background job has exec'd sleep.
      assert.match(await bash(s, 'for i in $(seq 50); do pgrep -x sleep >/dev/null && break; sleep 0.1; done; pgrep -x sleep | wc -l'), /^1\n/);
      assert.equal(await ok(s, 'bash', { restart: true }), 'shell restarted');
      assert.equal(await bash(s, 'echo "[$R]"; pgrep -x sleep | wc -l'), '[]\n0\n');
      await err(s, 'bash', {}, /'command' is required/);
      assert.match(await err(s, 'bash', { command: 'exit 4' }), /shell exited with code 4/);
      assert.equal(await bash(s, 'echo alive'), 'alive\n');
    });

    test('during a call pings are answered; a cancelled call kills its command', async () => {
      const long = s.client.callTool({ name: 'bash', arguments: { command: 'sleep 3; echo slept' } }, undefined, { timeout: 30000 });
      await sleep(300);
      const t0 = Date.now();
      await s.client.ping({ timeout: 5000 });
      assert.ok(Date.now() - t0 < 1000, `ping took ${Date.now() - t0} ms while a tool ran`);
      assert.equal((await long).content[0].text, 'slept\n');
      const ac = new AbortController();
      const cancelled = s.client.callTool({ name: 'bash', arguments: { command: 'echo started; sleep 120' } }, undefined,
        { signal: ac.signal, timeout: 200000 });
      await sleep(500);
      ac.abort('test cancels');
      await assert.rejects(cancelled);
      const t1 = Date.now();
      assert.equal(await bash(s, 'pgrep -x sleep | wc -l'), '0\n');
      assert.ok(Date.now() - t1 < 5000);
      await waitUntil(() => /tool call cancelled by the client" id="\d+" state=running/.test(s.log()), 5000, 50, 'cancel log');
    });

    test('read: whole file, line ranges, caps, errors', async () => {
      writeFileSync(path.join(s.ws, 'lines.txt'), 'one\ntwo\nthree\nfour\n');
      assert.equal(await ok(s, 'read', { file_path: 'lines.txt' }), 'one\ntwo\nthree\nfour\n');
      assert.equal(await ok(s, 'read', { file_path: '/workspace/lines.txt', view_range: [2, 3] }), 'two\nthree\n');
      assert.equal(await ok(s, 'read', { file_path: 'lines.txt', view_range: [3, -1] }), 'three\nfour\n');
      assert.equal(await ok(s, 'read', { file_path: 'lines.txt', view_range: [4, 100] }), 'four\n');
      await err(s, 'read', { file_path: 'lines.txt', view_range: [9, 10] }, /has 4 lines/);
      await err(s, 'read', { file_path: 'lines.txt', view_range: [0, 2] }, /view_range/);
      await err(s, 'read', { file_path: 'nope.txt' }, /No such file/);
      await err(s, 'read', { file_path: '/workspace' }, /directory/);
      await bash(s, "for i in $(seq 1 20000); do echo \"line $i of a file well over the read cap\"; done > big.txt");
      await err(s, 'read', { file_path: 'big.txt' }, /over the 256 KiB read limit/);
      assert.equal(await ok(s, 'read', { file_path: 'big.txt', view_range: [15000, 15001] }),
        'line 15000 of a file well over the read cap\nline 15001 of a file well over the read cap\n');
      await err(s, 'read', { file_path: 'big.txt', view_range: [1, 0] }, /fewer lines/);
    });

    test('write over the 4 MiB message cap fails at once with its own id, the cap and how to split; the session goes on', async () => {
      const t0 = Date.now();
      await assert.rejects(
        s.client.callTool({ name: 'write', arguments: { file_path: 'over-the-cap.txt', content: 'y'.repeat(5 << 20) } }, undefined, { timeout: 60000 }),
        (e) => {
          assert.equal(e.code, -32600, String(e));
          assert.match(e.message, /over this server's limit of 4194304 bytes \(4096 KiB\)/);
          assert.match(e.message, /write the first part, then append the rest in further calls/);
          return true;
        });
      const took = Date.now() - t0;
      assert.ok(took < 5000, `the over-cap call took ${took} ms`);
      // Nothing of it ran, and the next message on the stream is read as usual.
      assert.equal(await bash(s, 'test -e over-the-cap.txt && echo there || echo absent'), 'absent\n');
      assert.match(await ok(s, 'write', { file_path: 'under-the-cap.txt', content: 'z'.repeat(3 << 20) }), /under-the-cap\.txt/);
      assert.equal(await bash(s, 'wc -c < under-the-cap.txt'), `${3 << 20}\n`);
    });

    test('write: atomic replace, parent directories, mode kept, read-only image refused', async () => {
      assert.equal(await ok(s, 'write', { file_path: 'w/deep/er/a.txt', content: 'v1\n' }), 'wrote 3 bytes to /workspace/w/deep/er/a.txt');
      const p = path.join(s.ws, 'w/deep/er/a.txt');
      assert.equal(readFileSync(p, 'utf8'), 'v1\n');
      await bash(s, 'chmod 640 w/deep/er/a.txt');
      const ino = statSync(p).ino;
      // A reader holding the old file keeps seeing the old content: the new file is renamed into place.
      await bash(s, 'exec 7<w/deep/er/a.txt');
      await ok(s, 'write', { file_path: '/workspace/w/deep/er/a.txt', content: 'v2 longer\n' });
      assert.equal(await bash(s, 'cat <&7; exec 7<&-'), 'v1\n');
      assert.equal(readFileSync(p, 'utf8'), 'v2 longer\n');
      assert.notEqual(statSync(p).ino, ino);
      assert.equal(statSync(p).mode & 0o777, 0o640);
      assert.equal(await bash(s, 'ls -A w/deep/er'), 'a.txt\n'); // no temporary file left
      await err(s, 'write', { file_path: '/etc/postern-test', content: 'x' }, /Read-only file system/);
      await err(s, 'write', { file_path: '/workspace/w', content: 'x' }, /directory/);
      await err(s, 'write', { file_path: 'x.txt' }, /content/);
      // Doors (.git/config, hooks, rc files) through the file tools: sandbox_files.test.mjs (existing ones
      // stay read-only) and sandbox_git.test.mjs (ones the session makes are moved aside at its end).
    });

    test('edit: unique match, not found, not unique, replace_all', async () => {
      await ok(s, 'write', { file_path: 'e.txt', content: 'alpha beta alpha gamma\n' });
      await err(s, 'edit', { file_path: 'e.txt', old_string: 'alpha', new_string: 'A' }, /occurs 2 times/);
      await err(s, 'edit', { file_path: 'e.txt', old_string: 'delta', new_string: 'D' }, /not found/);
      await err(s, 'edit', { file_path: 'e.txt', old_string: '', new_string: 'D' }, /empty/);
      assert.match(await ok(s, 'edit', { file_path: 'e.txt', old_string: 'beta', new_string: 'B' }), /replaced 1 occurrence in/);
      assert.match(await ok(s, 'edit', { file_path: 'e.txt', old_string: 'alpha', new_string: 'A', replace_all: true }), /replaced 2 occurrences/);
      assert.equal(readFileSync(path.join(s.ws, 'e.txt'), 'utf8'), 'A B A gamma\n');
      await err(s, 'edit', { file_path: 'missing.txt', old_string: 'a', new_string: 'b' }, /No such file/);
    });

    test('glob: ** patterns, newest first, 200 results, .git/node_modules skipped, rejections', async () => {
      await bash(s, 'mkdir -p g/a/b g/node_modules g/.hidden && echo x > g/a/b/deep.c && echo y > g/a/mid.h && echo z > g/top.c' +
        ' && echo n > g/node_modules/skip.c && echo h > g/.hidden/dot.c' +
        ' && touch -d 2001-01-01 g/a/mid.h && touch -d 2002-01-01 g/a/b/deep.c && touch -d 2003-01-01 g/.hidden/dot.c');
      assert.equal(await ok(s, 'glob', { pattern: '**/*.{c,h}', path: 'g' }),
        '/workspace/g/top.c\n/workspace/g/.hidden/dot.c\n/workspace/g/a/b/deep.c\n/workspace/g/a/mid.h\n');
      assert.equal(await ok(s, 'glob', { pattern: 'g/*.c' }), '/workspace/g/top.c\n');
      assert.match(await ok(s, 'glob', { pattern: '*.zzz' }), /No files matched/);
      await bash(s, 'mkdir -p many && cd many && for i in $(seq 1 260); do : > f$i.txt; done; touch -d 2030-01-01 f77.txt; cd ..');
      const lines = (await ok(s, 'glob', { pattern: 'many/*.txt' })).trim().split('\n');
      assert.equal(lines.length, 201);
      assert.equal(lines[0], '/workspace/many/f77.txt');
      assert.match(lines[200], /\[60 more matches not shown/);
      await err(s, 'glob', { pattern: '/etc/*' }, /absolute/);
      await err(s, 'glob', { pattern: '../*' }, /'\.\.'/);
      await err(s, 'glob', { pattern: 'a/../../*' }, /'\.\.'/);
      await err(s, 'glob', { pattern: '{x,..}/*' }, /'\.\.'/);
    });

    test('grep: path:line:text, regex errors, 100 KiB cap, binary skipped', async () => {
      await bash(s, 'mkdir -p gr && printf "foo\\nbar baz\\nfoo again\\n" > gr/one.txt && printf "nothing\\n" > gr/two.txt' +
        ' && printf "foo\\0binary" > gr/bin.dat');
      assert.equal(await ok(s, 'grep', { pattern: '^foo', path: 'gr' }).then((t) => t.split('\n').sort().join('\n')),
        ['', '/workspace/gr/one.txt:1:foo', '/workspace/gr/one.txt:3:foo again'].join('\n'));
      assert.equal(await ok(s, 'grep', { pattern: 'ba[rz]', path: '/workspace/gr/one.txt' }), '/workspace/gr/one.txt:2:bar baz\n');
      assert.match(await ok(s, 'grep', { pattern: 'zzzz', path: 'gr' }), /No matches found/);
      await err(s, 'grep', { pattern: 'a(b' }, /invalid regular expression/);
      await bash(s, 'for i in $(seq 1 10000); do echo "needle $i padding padding padding"; done > gr/many.txt');
      const big = await ok(s, 'grep', { pattern: 'needle', path: 'gr/many.txt' });
      assert.ok(big.length < 100 * 1024 + 100);
      assert.match(big, /\[output truncated at 100 KiB\]\n$/);
    });

    test('escape battery: .., absolute, NUL, symlinks, loops, /proc/self/root in every file tool', async () => {
      const secretBefore = readFileSync(mode.secret, 'utf8');
      // Links made inside the sandbox, pointing at host paths (which inside are sandbox paths).
      await bash(s, `ln -s ${mode.secret} abs-link && ln -s ../../../../..${mode.secret} rel-link && ` +
        `ln -s ${mode.hostdir} dir-link && ln -s loop2 loop1 && ln -s loop1 loop2 && ln -s /proc/self/root proc-root && ` +
        'ln -s /proc/1/root init-root');
      const paths = [mode.secret, `../../../../../..${mode.secret}`, `/workspace/../..${mode.secret}`, 'abs-link', 'rel-link',
        'dir-link/f', `/proc/self/root${mode.secret}`, `proc-root${mode.secret}`, `/proc/1/root${mode.secret}`, `init-root${mode.secret}`];
      // Reads, greps and globs first (before anything was written through these paths inside the sandbox).
      for (const p of paths) {
        const r = await call(s, 'read', { file_path: p });
        assert.equal(r.isError, true, `read ${p}: ${r.text}`);
        assert.doesNotMatch(r.text, /HOST-SECRET/);
        const g = await call(s, 'grep', { pattern: 'HOST', path: p });
        assert.equal(g.isError, true, `grep ${p}: ${g.text}`);
        assert.doesNotMatch(g.text, /HOST-SECRET/, `grep ${p}`);
        const gl = await call(s, 'glob', { pattern: '**/*', path: path.dirname(p) });
        assert.doesNotMatch(gl.text, /host-only-marker|host-secret/, `glob in ${path.dirname(p)}`);
      }
      // Writes and edits through the same paths never touch the host files.
      for (const p of paths) {
        await call(s, 'edit', { file_path: p, old_string: 'HOST', new_string: 'PWNED' });
        await call(s, 'write', { file_path: p, content: 'PWNED\n' });
        const gl = await call(s, 'glob', { pattern: '**/*', path: path.dirname(p) });
        // The sandbox's view of that directory (its /tmp is a tmpfs), never the host's.
        assert.doesNotMatch(gl.text, /host-only-marker/, `glob in ${path.dirname(p)}`);
      }
      await err(s, 'read', { file_path: 'loop1' }, /symbolic links/);
      await err(s, 'write', { file_path: 'loop1', content: 'x' }, /symbolic links/);
      await err(s, 'edit', { file_path: 'loop1', old_string: 'a', new_string: 'b' });
      for (const tool of ['read', 'write', 'edit']) {
        await err(s, tool, { file_path: 'a\u0000b', content: 'x', old_string: 'a', new_string: 'b' }, /NUL/);
      }
      await err(s, 'grep', { pattern: 'x', path: 'a\u0000b' }, /NUL/);
      await err(s, 'glob', { pattern: '*', path: 'a\u0000b' }, /NUL/);
      await err(s, 'glob', { pattern: 'a\u0000b' }, /NUL/);
      assert.equal(readFileSync(mode.secret, 'utf8'), secretBefore);
      assert.equal(readFileSync(path.join(mode.hostdir, 'f'), 'utf8'), 'HOST-SECRET\n');
      // What the tools wrote through links landed inside the sandbox (its /tmp is a tmpfs), never on the host.
      assert.match(await bash(s, `cat ${mode.secret} 2>/dev/null || echo absent`), /PWNED|absent/);
    });

    test('escape battery: directory swapped for a symlink while read and write run', async () => {
      await bash(s, 'mkdir -p race/d && echo inside > race/d/f');
      // Swap race/d between the real directory and a link to the host directory, as fast as possible.
      // (Self-healing: a write may create race/d while it is briefly absent.)
      await bash(s, `cd race && (while :; do mv -T d d.real && ln -s ${mode.hostdir} d && rm -f d && mv -T d.real d; ` +
        '[ -d d.real ] && { rm -rf d; mv -T d.real d; }; done) >/dev/null 2>&1 & echo $! > /tmp/racer.pid; cd /workspace');
      const seen = { inside: 0, error: 0 };
      for (let i = 0; i < 150; i++) {
        const r = await call(s, 'read', { file_path: 'race/d/f' });
        assert.doesNotMatch(r.text, /HOST-SECRET/);
        if (r.isError) seen.error++; else { assert.equal(r.text, 'inside\n'); seen.inside++; }
        await call(s, 'write', { file_path: 'race/d/w', content: `write ${i}\n` });
        await call(s, 'edit', { file_path: 'race/d/f', old_string: 'inside', new_string: 'inside' });
      }
      await bash(s, 'kill $(cat /tmp/racer.pid); wait $(cat /tmp/racer.pid) 2>/dev/null; true');
      assert.ok(seen.inside > 0, JSON.stringify(seen));
      assert.equal(readFileSync(path.join(mode.hostdir, 'f'), 'utf8'), 'HOST-SECRET\n');
      assert.equal(existsSync(path.join(mode.hostdir, 'w')), false);
    });

    test('escape battery: hard links, FIFO, /dev/zero, devices', async () => {
      // Inside the sandbox a hard link to a file outside the workspace cannot be made (another mount).
      const r = await call(s, 'bash', { command: 'ln /etc/hostname hl 2>&1' });
      assert.equal(r.isError, true);
      assert.match(r.text, /cross-device|Invalid cross-device|Operation not permitted|Read-only/i);
      // One made from the host: write and edit replace the link, the outside file is untouched.
      const outside = path.join(mode.dir, `outside-${unpriv ? 'u' : 'r'}.txt`);
      writeFileSync(outside, 'OUTSIDE original\n');
      if (unpriv) chownSync(outside, NOBODY, NOBODY);
      linkSync(outside, path.join(s.ws, 'hard'));
      assert.equal(await ok(s, 'read', { file_path: 'hard' }), 'OUTSIDE original\n');
      await ok(s, 'edit', { file_path: 'hard', old_string: 'original', new_string: 'edited' });
      await ok(s, 'write', { file_path: 'hard', content: 'rewritten\n' });
      assert.equal(readFileSync(outside, 'utf8'), 'OUTSIDE original\n');
      assert.equal(readFileSync(path.join(s.ws, 'hard'), 'utf8'), 'rewritten\n');
      // A FIFO nobody writes and endless devices: refused at once, never read. FIFOs exist only in the
      // session's own tmpfs (none in the workspace the host shares: sandbox_syscalls.test.mjs).
      await bash(s, 'mkfifo /tmp/fifo');
      const t0 = Date.now();
      await err(s, 'read', { file_path: '/tmp/fifo' }, /FIFO/);
      await err(s, 'edit', { file_path: '/tmp/fifo', old_string: 'a', new_string: 'b' }, /FIFO|regular/);
      await err(s, 'write', { file_path: '/tmp/fifo', content: 'x' }, /FIFO/);
      await err(s, 'grep', { pattern: 'x', path: '/tmp/fifo' }, /FIFO/);
      await err(s, 'read', { file_path: '/dev/zero' }, /character device/);
      await err(s, 'read', { file_path: '/dev/urandom' }, /character device/);
      await err(s, 'read', { file_path: '/dev/tty' });
      await err(s, 'grep', { pattern: 'x', path: '/dev/zero' }, /character device/);
      assert.match(await ok(s, 'grep', { pattern: 'zzz-nothing', path: '/tmp' }), /No matches|truncated|\//); // walks past the FIFO
      assert.ok(Date.now() - t0 < 15000, `took ${Date.now() - t0} ms`);
      // procfs files report size 0 but are read with the cap.
      assert.match(await ok(s, 'read', { file_path: '/proc/1/status' }), /Name:/);
      // The reader is a process of the sandbox: a child of its init in its pid namespace, no
      // capabilities, no new privileges, under the session's seccomp filter.
      const st = await ok(s, 'read', { file_path: '/proc/self/status' });
      assert.match(st, /^PPid:\s+1$/m);
      assert.match(st, /^CapEff:\s+0+$/m);
      assert.match(st, /^CapPrm:\s+0+$/m);
      assert.match(st, /^NoNewPrivs:\s+1$/m);
      assert.match(st, /^Seccomp:\s+2$/m);
    });
  });

  describe(`sandbox session lifecycle as ${mode.name}`, () => {
    before(() => mode.setup());
    after(() => rmrf(mode.dir));

    test('stdin EOF tears the sandbox down: no init, no processes left', async () => {
      const s = await connect(mode);
      await bash(s, 'setsid sleep 300 >/dev/null 2>&1 & (sleep 301 &) ; echo ok');
      const init = s.initPid();
      assert.ok(init && alive(init));
      const pid = s.pid;
      await s.close();
      await waitUntil(() => !alive(pid) && !alive(init), 5000, 50, 'server and sandbox init to exit');
      assert.match(s.log(), /sandbox session ended/);
    });

    test('idle timeout ends the session', async () => {
      const s = await connect(mode, { args: ['--idle-timeout', '1500ms'] });
      await bash(s, 'echo hi');
      const init = s.initPid();
      await waitUntil(() => !alive(s.pid), 8000, 100, 'idle timeout');
      assert.match(s.log(), /reason="idle timeout"/);
      assert.equal(alive(init), false);
      await s.close();
    });

    test('cap on concurrent sandboxes gives a clear error, and frees on session end', async () => {
      const slots = mode.slots();
      const a = await connect(mode, { slots, args: ['--max-sandboxes', '1'] });
      const b = await connect(mode, { slots, args: ['--max-sandboxes', '1'] });
      await bash(a, 'echo a');
      const r = await call(b, 'bash', { command: 'echo b' });
      assert.equal(r.isError, true);
      assert.match(r.text, /sandbox unavailable: sandbox limit reached: 1 sandboxes are running/);
      await a.close();
      await waitUntil(async () => !(await call(b, 'bash', { command: 'echo b' })).isError, 5000, 100, 'slot to free');
      await b.close();
    });
  });
}

// Raw JSON-RPC lines to the server (no SDK): version negotiation and error replies.
function rawSession(lines, extra = []) {
  return new Promise((resolve, reject) => {
    const ws = tmpdir('sbx-raw-');
    const child = spawn(BIN, ['sandbox', 'serve', '--stdio', '--workspace', ws, '--slots-dir', path.join(ws, '.slots'), ...extra],
      { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let errlog = '';
    child.stdout.on('data', (c) => { out += c; });
    child.stderr.on('data', (c) => { errlog += c; });
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('raw session timed out')); }, 30000);
    child.on('close', (code) => {
      clearTimeout(t);
      rmrf(ws);
      if (/Sanitizer|runtime error:/.test(errlog) || code !== 0) { reject(new Error(`server exited ${code}: ${errlog}`)); return; }
      resolve(out.split('\n').filter(Boolean).map((l) => JSON.parse(l)));
    });
    for (const l of lines) child.stdin.write(typeof l === 'string' ? l + '\n' : JSON.stringify(l) + '\n');
    child.stdin.end();
  });
}

describe('sandbox MCP protocol (raw JSON-RPC)', () => {
  const init = (v, id = 0) => ({ jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: v, capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });

  test('protocol version negotiation: 2025-03-26, 2025-06-18, 2025-11-25; unknown gets the latest', async () => {
    for (const v of ['2025-03-26', '2025-06-18', '2025-11-25']) {
      const [r] = await rawSession([init(v)]);
      assert.equal(r.result.protocolVersion, v);
      assert.deepEqual(r.result.capabilities, { tools: { listChanged: false } });
    }
    const [r] = await rawSession([init('2099-01-01')]);
    assert.equal(r.result.protocolVersion, '2025-11-25');
  });

  test('errors: parse, invalid request, method not found, invalid params, size cap; ping', async () => {
    const big = JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'ping', params: { pad: 'x'.repeat(5 << 20) } });
    const rs = await rawSession([
      '{"jsonrpc":"2.0","id":1,"method":"tools/list"}', // before initialize
      init('2025-06-18'),
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      'this is not json',
      '[1,2,3]',
      '{"jsonrpc":"2.0","id":2}',
      '{"jsonrpc":"2.0","id":3,"method":"resources/list"}',
      '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope","arguments":{}}}',
      '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"arguments":{}}}',
      big,
      '{"jsonrpc":"2.0","id":6,"method":"ping"}',
      '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read","arguments":{"file_path":5}}}',
    ]);
    const byId = (id) => rs.find((r) => r.id === id);
    assert.equal(rs[0].error.code, -32600);
    assert.match(rs[0].error.message, /not initialized/);
    const nulls = rs.filter((r) => r.id === null).map((r) => r.error.code);
    assert.deepEqual(nulls, [-32700, -32600]); // parse error, batch refused
    assert.equal(byId(9).error.code, -32600); // over the size cap: answered with its own id
    assert.match(byId(9).error.message, /exceeds the size limit: \d+ bytes, over this server's limit of 4194304 bytes/);
    assert.ok(byId(9).error.data.size > 5 << 20);
    assert.equal(byId(2).error.code, -32600);
    assert.equal(byId(3).error.code, -32601);
    assert.equal(byId(4).error.code, -32602);
    assert.equal(byId(5).error.code, -32602);
    assert.deepEqual(byId(6).result, {});
    assert.equal(byId(7).result.isError, true);
    assert.match(byId(7).result.content[0].text, /file_path/);
  });
});

// Egress: a server on the host's loopback that the sandbox may only reach through its proxy.
for (const unpriv of [false, true]) describe(`sandbox egress through the proxy as ${unpriv ? 'unprivileged (uid 65534)' : 'root'}`, () => {
  const mode = makeMode(unpriv);
  let srv, port, sA, sB, sN;
  before(async () => {
    mode.setup();
    srv = http.createServer((req, res) => { res.end(`egress-ok ${req.method} ${req.url} host=${req.headers.host}\n`); });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    port = srv.address().port;
    // A: the name and, explicitly, the loopback address it resolves to.
    sA = await connect(mode, { args: ['--allow-domain', 'localhost', '--allow-domain', '127.0.0.1'] });
    // B: names only (loopback after resolution must be refused), wildcards and a deny rule.
    sB = await connect(mode, { args: ['--allow-domain', 'LOCALHOST', '--allow-domain', '*.example.com', '--allow-domain', '*.invalid',
      '--deny-domain', 'bad.example.com'] });
    // N: no egress at all.
    sN = await connect(mode);
  });
  after(async () => {
    for (const s of [sA, sB, sN]) if (s) await s.close();
    if (srv) srv.close();
    rmrf(mode.dir);
  });

  // Sends a raw request to the proxy from inside the sandbox and returns the answer.
  const raw = (s, req) => bash(s, `exec 3<>/dev/tcp/127.0.0.1/3128 && printf '${req}' >&3 && timeout 10 cat <&3; exec 3<&-; true`);

  test('allowed name + explicitly allowed address: plain HTTP and CONNECT reach the host server', async () => {
    assert.match(await bash(sA, 'echo $HTTP_PROXY $HTTPS_PROXY'), /^http:\/\/127\.0\.0\.1:3128 http:\/\/127\.0\.0\.1:3128\n$/);
    const plain = await bash(sA, `curl -s --noproxy '' -x "$HTTP_PROXY" http://localhost:${port}/plain`);
    assert.equal(plain, `egress-ok GET /plain host=localhost:${port}\n`);
    const tunnel = await bash(sA, `curl -s -p --noproxy '' -x "$HTTP_PROXY" http://localhost:${port}/tunnel`);
    assert.equal(tunnel, `egress-ok GET /tunnel host=localhost:${port}\n`);
    assert.match(sA.log(), /msg="egress allowed" host="localhost" port=\d+ address=127\.0\.0\.1 rule="allow 127\.0\.0\.1/);
  });

  test('allowed name resolving to loopback is refused after resolution (403, X-Proxy-Error, rule logged)', async () => {
    const r = await raw(sB, `GET http://localhost:${port}/ HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n`);
    assert.match(r, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(r, /X-Proxy-Error: blocked-resolved-address\r\n/);
    assert.match(r, /builtin loopback 127\.0\.0\.0\/8/);
    assert.match(sB.log(), /msg="egress refused" host="localhost" requested="localhost" port=\d+ stage=address reason=blocked-resolved-address/);
    // curl through the proxy variables gets the same 403.
    const code = await bash(sB, `curl -s -o /dev/null -w '%{http_code}' --noproxy '' -x "$HTTP_PROXY" http://localhost:${port}/`);
    assert.equal(code, '403');
  });

  test('IP literal bypass attempts are refused before any connection', async () => {
    for (const h of ['127.0.0.1', '2130706433', '0x7f000001', '0177.0.0.1', '127.1', '[::1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]',
      '169.254.169.254', '[fd00:ec2::254]', '0x7f.1']) {
      const r = await raw(sB, `GET http://${h}:${port}/ HTTP/1.1\\r\\n\\r\\n`);
      assert.match(r, /^HTTP\/1\.1 403 /, `host ${h}: ${r}`);
      assert.match(r, /X-Proxy-Error: ip-literal-not-allowed/, `host ${h}`);
      const c = await raw(sB, `CONNECT ${h}:${port} HTTP/1.1\\r\\n\\r\\n`);
      assert.match(c, /X-Proxy-Error: ip-literal-not-allowed/, `CONNECT ${h}`);
    }
  });

  test('names: deny first, wildcard excludes the apex, suffix tricks, case and trailing dot, .invalid', async () => {
    const reason = async (target) => {
      const r = await raw(sB, `CONNECT ${target} HTTP/1.1\\r\\n\\r\\n`);
      const m = r.match(/X-Proxy-Error: ([a-z-]+)/);
      return m ? m[1] : r;
    };
    assert.equal(await reason('bad.example.com:443'), 'blocked-by-denylist');
    assert.equal(await reason('BAD.Example.COM.:443'), 'blocked-by-denylist');
    assert.equal(await reason('example.com:443'), 'blocked-by-allowlist');
    assert.equal(await reason('example.com.evil:443'), 'blocked-by-allowlist');
    assert.equal(await reason('evilexample.com:443'), 'blocked-by-allowlist');
    assert.equal(await reason('other.org:443'), 'blocked-by-allowlist');
    assert.equal(await reason('foo.invalid:443'), 'reserved-name');
    assert.equal(await reason(`LocalHost.:${port}`), 'blocked-resolved-address'); // the name matched, the address did not
    assert.equal(await reason('a..example.com:443'), 'invalid-host');
    // Refusals on the name are logged at stage=name: no lookup happened for them.
    assert.match(sB.log(), /host="foo\.invalid" requested="foo\.invalid" port=443 stage=name reason=reserved-name/);
    assert.match(sB.log(), /host="example\.com\.evil" requested="example\.com\.evil" port=443 stage=name reason=blocked-by-allowlist rule="default \(no allow rule matched\)"/);
    assert.match(sB.log(), /host="bad\.example\.com" requested="BAD\.Example\.COM\." port=443 stage=name reason=blocked-by-denylist rule="deny bad\.example\.com"/);
  });

  test('ignoring the proxy variables reaches nothing; no egress means no proxy at all', async () => {
    const direct = await call(sA, 'bash', { command: `curl -sS --noproxy '*' --max-time 5 http://127.0.0.1:${port}/ 2>&1` });
    assert.equal(direct.isError, true);
    assert.match(direct.text, /Could not connect|Connection refused|Failed to connect/);
    const out = await call(sA, 'bash', { command: 'exec 3<>/dev/tcp/192.0.2.1/80 2>&1' });
    assert.equal(out.isError, true);
    assert.match(out.text, /Network is unreachable/);
    const dns = await call(sA, 'bash', { command: 'getent hosts example.org' });
    assert.equal(dns.isError, true);
    assert.equal(await bash(sN, 'echo "[$HTTP_PROXY]"'), '[]\n');
    const none = await call(sN, 'bash', { command: 'exec 3<>/dev/tcp/127.0.0.1/3128 2>&1' });
    assert.equal(none.isError, true);
    assert.match(none.text, /Connection refused/);
  });
});
