// Helpers for the sandbox engine tests: run `postern sandbox run --json` as root or as uid 65534 (setpriv,
// on a world-readable copy of the binary), parse the probe's name=RESULT lines, build the probe.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, tmpdir } from './proc.mjs';

export const NOBODY = 65534;
export const PROBE_SRC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'sandbox_probe.c');

// Resolves with the exit status, stdout, stderr and the JSON summary (last stderr line starting with '{').
export function sbxRun(mode, args, { timeoutMs = 60000, env = {}, quiet = true } = {}) {
  const argv = ['sandbox', 'run', '--json', ...(quiet ? ['-q'] : []), ...args];
  const cmd = mode.unpriv ? 'setpriv' : mode.bin;
  const full = mode.unpriv ? ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', mode.bin, ...argv] : argv;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, full, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, HOME: '/nonexistent', ...env } });
    const out = [], err = [];
    child.stdout.on('data', (c) => out.push(c));
    child.stderr.on('data', (c) => err.push(c));
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`sandbox run ${args.join(' ')} timed out`)); }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(t);
      const stderr = Buffer.concat(err).toString();
      const line = stderr.split('\n').reverse().find((l) => l.startsWith('{'));
      resolve({ code, signal, stdout: Buffer.concat(out).toString('latin1'), stderr, json: line ? JSON.parse(line) : null });
    });
  });
}

export function kv(stdout) {
  const m = {};
  for (const l of stdout.split('\n')) { const i = l.indexOf('='); if (i > 0) m[l.slice(0, i)] = l.slice(i + 1); }
  return m;
}

// A test context: mode.dir (0755), mode.bin, mode.ws (owned by the runner), mode.probe (host path).
export function sbxMode(unpriv, prefix) {
  const mode = { unpriv, name: unpriv ? 'unprivileged (uid 65534)' : 'root' };
  mode.setup = () => {
    mode.dir = tmpdir(prefix);
    chmodSync(mode.dir, 0o755);
    mode.bin = path.join(mode.dir, 'postern');
    copyFileSync(BIN, mode.bin);
    chmodSync(mode.bin, 0o755);
    mode.probe = path.join(mode.dir, 'probe');
    execFileSync('gcc', ['-O1', '-o', mode.probe, PROBE_SRC]);
    mode.ws = mode.newWorkspace('ws');
  };
  // A fresh workspace directory holding a copy of the probe, owned by whoever runs the sandbox.
  mode.newWorkspace = (name) => {
    const ws = path.join(mode.dir, name);
    mkdirSync(ws);
    copyFileSync(mode.probe, path.join(ws, 'probe'));
    if (unpriv) for (const f of ['', 'probe']) chownSync(path.join(ws, f), NOBODY, NOBODY);
    return ws;
  };
  return mode;
}
