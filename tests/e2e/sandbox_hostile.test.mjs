// The hostile session (issue 8): while a shell inside the sandbox keeps swapping directories, symlinks
// (to /, .., /proc/self/root, host paths) and hard links, and keeps trying set-id bits and FIFOs, the file
// tools run against the same paths through the official MCP SDK. Each tool call may succeed or fail, but
// none may reach past the sandbox: afterwards a host-side scan of the workspace finds no set-id bit, no
// file capability and no special file, nothing outside the workspace changed, no reply carried a host
// secret, and the session still answers. Root and uid 65534.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { rmrf } from './lib/proc.mjs';
import { PROBE_SRC } from './lib/sandbox.mjs';
import { makeMode, connect, call, ok } from './lib/mcp_sandbox.mjs';

// Every entry under dir but the sessions' own workspaces and slot dirs (lstat: type, mode, size, mtime; file contents hashed).
function snapshot(dir) {
  const out = {};
  const walk = (d) => {
    for (const n of readdirSync(d).sort()) {
      const p = path.join(d, n);
      if (d === dir && /^(ws|slots)\d+$/.test(n)) continue;
      const st = lstatSync(p);
      let h = '';
      if (st.isFile()) h = createHash('sha256').update(readFileSync(p)).digest('hex');
      out[path.relative(dir, p)] = `${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${h}`;
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

const SWAPPER = `
cd /workspace || exit 1
mkdir -p real && echo data > real/f
i=0
while [ $i -lt 3000 ] && [ ! -e stop ]; do
  i=$((i+1)); echo $i > rounds
  mv real tmpd 2>/dev/null
  ln -sfn / real; rm -f real
  ln -sfn /proc/self/root/etc real; rm -f real
  ln -sfn .. real; rm -f real
  ln -sfn "$HOSTDIR" real; rm -f real
  ln tmpd/f hl 2>/dev/null; ln -sf /etc/passwd tmpd/f2 2>/dev/null
  mv tmpd real 2>/dev/null
  chmod 4755 real/f 2>/dev/null; chmod g+s real 2>/dev/null
  mkfifo real/p 2>/dev/null; rm -f real/p hl real/f2
done
echo "swaps=$i" > swapped
`;

for (const unpriv of [false, true]) {
  const mode = makeMode(unpriv);
  describe(`hostile session as ${mode.name}`, () => {
    let probe;
    before(() => {
      mode.setup();
      probe = path.join(mode.dir, 'probe');
      execFileSync('gcc', ['-O1', '-o', probe, PROBE_SRC]);
    });
    after(() => rmrf(mode.dir));

    test('tools racing a swapping shell: no set-id, capability or special file; nothing outside changed', async () => {
      const s = await connect(mode);
      const outside = snapshot(mode.dir);
      const passwd = readFileSync('/etc/passwd', 'utf8');
      const replies = [];
      let answered = 0, refused = 0;
      try {
        // The script goes in through the write tool (no shell quoting); setsid keeps it alive past the call.
        await ok(s, 'write', { file_path: '/workspace/swap.sh', content: SWAPPER.replace('"$HOSTDIR"', mode.hostdir) });
        await ok(s, 'bash', { command: 'setsid sh /workspace/swap.sh </dev/null >/dev/null 2>&1 & sleep 0.2; echo started' });
        const targets = ['real/f', 'real/new', 'real/f2', 'real/../real/f', 'tmpd/f', 'hl', 'real/p'];
        // At least 140 calls, and on until the swapper has done 40 rounds (bounded at 2000 calls).
        const rounds = () => { try { return Number(readFileSync(path.join(s.ws, 'rounds'), 'utf8')); } catch { return 0; } };
        for (let i = 0; i < 2000 && (i < 140 || rounds() < 40); i++) {
          const t = `/workspace/${targets[i % targets.length]}`;
          const calls = [
            ['write', { file_path: t, content: `round ${i}\n` }],
            ['read', { file_path: t }],
            ['edit', { file_path: t, old_string: 'round', new_string: 'ROUND' }],
            ['glob', { pattern: '**/*', path: '/workspace/real' }],
            ['grep', { pattern: 'root|ROUND|SECRET', path: '/workspace/real' }],
            ['write', { file_path: `/workspace/real/${i}.txt`, content: 'x' }],
            ['read', { file_path: '/workspace/real/shadow' }],
          ];
          const [name, args] = calls[i % calls.length];
          const r = await call(s, name, args, 30000);
          replies.push(r.text);
          if (r.isError) refused++; else answered++;
        }
        const swapped = await ok(s, 'bash', { command: 'touch /workspace/stop; for i in $(seq 1 100); do [ -e /workspace/swapped ] && break; sleep 0.1; done; cat /workspace/swapped' });
        const swaps = Number((swapped.match(/swaps=(\d+)/) || [])[1]);
        assert.ok(swaps >= 40, `the swapper ran ${swaps} rounds: ${swapped}`);
        assert.match(await ok(s, 'bash', { command: 'echo alive' }), /alive/);
      } finally {
        await s.close();
      }
      assert.ok(answered > 0 && refused > 0, `answered ${answered}, refused ${refused}: the race did not happen`);
      // The sandbox's own /etc/passwd is the host's, read-only, so only the host-only secret is a leak.
      for (const t of replies) assert.doesNotMatch(t, /HOST-SECRET/, `a reply reached the host: ${t.slice(0, 200)}`);
      const bad = execFileSync('find', [s.ws, '(', '-perm', '/6000', '-o', '-type', 'p', '-o', '-type', 's', '-o', '-type', 'b',
        '-o', '-type', 'c', ')', '-printf', '%M %P\n']).toString().trim();
      assert.equal(bad, '', `set-id or special files on the host: ${bad}`);
      const caps = execFileSync(probe, ['capscan', s.ws]).toString().split('\n').filter((l) => l.startsWith('capability='));
      assert.deepEqual(caps, []);
      assert.deepEqual(snapshot(mode.dir), outside, 'something outside the workspace changed');
      assert.equal(readFileSync('/etc/passwd', 'utf8'), passwd);
    });
  });
}
