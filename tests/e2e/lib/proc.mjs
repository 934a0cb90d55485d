// Process helpers for integration tests: spawn with captured logs, wait for a log line or a port
// (always with a timeout), free ports, temp dirs, and cleanup of everything a test started.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const BIN = process.env.POSTERN_BIN;
if (!BIN) throw new Error('POSTERN_BIN must name the postern binary (make integration sets it)');

const live = new Set();

export function tmpdir(prefix = 'postern-test-') {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  return d;
}

export function rmrf(d) {
  rmSync(d, { recursive: true, force: true });
}

// Starts cmd; .log holds stdout+stderr so far; .exited resolves to {code, signal}.
export function start(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
  const p = { child, log: '', stdout: '', name: opts.name || path.basename(cmd) };
  const waiters = [];
  const feed = (chunk, isOut) => {
    const s = chunk.toString();
    p.log += s;
    if (isOut) p.stdout += s;
    if (process.env.POSTERN_TEST_VERBOSE) process.stderr.write(`[${p.name}] ${s}`);
    for (const w of [...waiters]) w();
  };
  child.stdout.on('data', (c) => feed(c, true));
  child.stderr.on('data', (c) => feed(c, false));
  p.exited = new Promise((resolve) => child.on('exit', (code, signal) => { live.delete(p); resolve({ code, signal }); for (const w of [...waiters]) w(); }));
  p.waitFor = (re, timeoutMs = 10000, from = 0) => new Promise((resolve, reject) => {
    const check = () => {
      const m = p.log.slice(from).match(re);
      if (m) { cleanup(); resolve(m); return true; }
      if (child.exitCode !== null || child.signalCode !== null) {
        cleanup(); reject(new Error(`${p.name} exited (${child.exitCode ?? child.signalCode}) before ${re}; log:\n${p.log}`));
        return true;
      }
      return false;
    };
    const timer = setTimeout(() => { cleanup(); reject(new Error(`timeout ${timeoutMs}ms waiting for ${re} in ${p.name}; log:\n${p.log}`)); }, timeoutMs);
    const w = () => check();
    const cleanup = () => { clearTimeout(timer); const i = waiters.indexOf(w); if (i >= 0) waiters.splice(i, 1); };
    if (!check()) waiters.push(w);
  });
  p.kill = async (sig = 'SIGTERM', timeoutMs = 5000) => {
    if (child.exitCode !== null || child.signalCode !== null) return p.exited;
    child.kill(sig);
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const r = await p.exited;
    clearTimeout(t);
    return r;
  };
  live.add(p);
  return p;
}

// Runs cmd to completion (timeout enforced); resolves {code, signal, stdout, stderr}.
export function run(cmd, args, opts = {}) {
  const { input, timeoutMs = 30000, ...rest } = opts;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...rest });
    let stdout = '', stderr = '';
    child.stdout.on('data', (c) => { stdout += c; });
    child.stderr.on('data', (c) => { stderr += c; });
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${cmd} ${args.join(' ')} timed out after ${timeoutMs}ms`)); }, timeoutMs);
    child.on('error', (e) => { clearTimeout(t); reject(e); });
    child.on('exit', (code, signal) => { clearTimeout(t); resolve({ code, signal, stdout, stderr }); });
    if (input !== undefined) child.stdin.end(input); else child.stdin.end();
  });
}

export const postern = (args, opts) => run(BIN, args, opts);

// A port that was free a moment ago (the kernel picks it); never the same one twice in this process, so
// several ports taken in a row for one set-up cannot collide.
const handedOut = new Set();
export async function freePort() {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => { const a = s.address(); s.close(() => resolve(a.port)); });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('freePort: no fresh port after 50 tries');
}

export async function waitForPort(port, host = '127.0.0.1', timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ port, host });
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`timeout waiting for ${host}:${port}`);
    await sleep(50);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitUntil(fn, timeoutMs = 10000, stepMs = 50, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`timeout waiting for ${what}`);
    await sleep(stepMs);
  }
}

// Kills everything still running (call from after()).
export async function stopAll() {
  await Promise.all([...live].map((p) => p.kill('SIGKILL')));
}

process.on('exit', () => { for (const p of live) try { p.child.kill('SIGKILL'); } catch { /* gone */ } });
