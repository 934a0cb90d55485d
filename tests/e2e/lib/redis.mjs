// A redis-server of the test's own: a free loopback port, a temp dir, AOF with fsync on every write (what
// docs/control.md promises durability for), no RDB snapshots. start() throws naming the Debian package when
// redis-server is missing: a test that needs Redis fails, it does not pass without it.
import { execFileSync } from 'node:child_process';
import { freePort, rmrf, start, tmpdir, waitUntil } from './proc.mjs';
import net from 'node:net';

function haveRedis() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// One PING over a fresh connection: true when the server answers +PONG within 500 ms.
export function ping(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const t = setTimeout(() => { s.destroy(); resolve(false); }, 500);
    s.once('connect', () => s.write('PING\r\n'));
    s.once('data', (d) => { clearTimeout(t); s.destroy(); resolve(d.toString().startsWith('+PONG')); });
    s.once('error', () => { clearTimeout(t); resolve(false); });
  });
}

// Sends one command (an array of strings) and resolves the raw RESP answer text.
export function command(port, args) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let out = '';
    const t = setTimeout(() => { s.destroy(); reject(new Error(`redis ${args[0]}: no answer in 2 s`)); }, 2000);
    s.once('connect', () => s.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')));
    s.on('data', (d) => { out += d; if (out.endsWith('\r\n')) { clearTimeout(t); s.end(); resolve(out); } });
    s.once('error', (e) => { clearTimeout(t); reject(e); });
  });
}

// A test that ends without cleanup (a failed before()) still leaves no temp dir (proc.mjs kills the server).
const dirs = new Set();
process.on('exit', () => { for (const d of dirs) try { rmrf(d); } catch { /* gone */ } });

// extraArgs: more redis-server arguments (['--requirepass', 'pw']); ping() then answers NOAUTH, so the wait
// for the server is on its log line instead.
export async function startRedis(extraArgs = []) {
  if (!haveRedis()) throw new Error('redis-server is not installed: install the Debian package redis-server (scripts/deps.sh does)');
  const dir = tmpdir('postern-redis-');
  const port = await freePort();
  const r = { dir, port, url: `redis://127.0.0.1:${port}`, proc: null };
  r.start = async () => {
    r.proc = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes',
      '--appendfsync', 'always', '--dir', dir, '--daemonize', 'no', '--databases', '256', ...extraArgs], { name: `redis:${port}` });
    if (extraArgs.length) await r.proc.waitFor(/Ready to accept connections/, 10000);
    else await waitUntil(() => ping(port), 10000, 50, `redis-server on ${port}`);
  };
  r.stop = async (sig = 'SIGTERM') => { if (r.proc) await r.proc.kill(sig); r.proc = null; };
  r.cleanup = async () => { await r.stop(); rmrf(dir); dirs.delete(dir); };
  dirs.add(dir);
  await r.start();
  return r;
}
