// The sandbox MCP server (`postern sandbox serve --stdio`) under the official MCP TypeScript SDK client,
// as root or as an unprivileged user (uid 65534 via setpriv, on a world-readable copy of the binary):
// shared by the tool suites.
import assert from 'node:assert/strict';
import { chmodSync, chownSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { BIN, sleep, tmpdir } from './proc.mjs';

export const NOBODY = 65534;
export const isRoot = process.getuid() === 0;
export const PRIV = ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--'];

export function makeMode(unpriv) {
  const mode = { unpriv, name: unpriv ? 'unprivileged (uid 65534)' : 'root' };
  mode.setup = () => {
    if (!isRoot) throw new Error('run as root: the unprivileged half switches to uid 65534 with setpriv');
    mode.dir = tmpdir('sbx-tools-');
    chmodSync(mode.dir, 0o755);
    mode.bin = BIN;
    if (unpriv) { // the original binary may sit under a private directory
      mode.bin = path.join(mode.dir, 'postern');
      copyFileSync(BIN, mode.bin);
      chmodSync(mode.bin, 0o755);
    }
    // Host-side things the sandbox must never reach: a secret file and a directory holding one.
    mode.secret = path.join(mode.dir, 'host-secret.txt');
    writeFileSync(mode.secret, 'HOST-SECRET\n');
    mode.hostdir = path.join(mode.dir, 'hostdir');
    mkdirSync(mode.hostdir);
    writeFileSync(path.join(mode.hostdir, 'f'), 'HOST-SECRET\n');
    writeFileSync(path.join(mode.dir, 'host-only-marker'), 'x');
    mode.n = 0;
  };
  // A fresh workspace (owned by the sandbox user) for one session.
  mode.workspace = () => {
    const ws = path.join(mode.dir, `ws${mode.n++}`);
    mkdirSync(ws);
    if (unpriv) chownSync(ws, NOBODY, NOBODY);
    return ws;
  };
  mode.slots = () => {
    const d = path.join(mode.dir, `slots${mode.n++}`);
    mkdirSync(d, { mode: 0o700 });
    if (unpriv) chownSync(d, NOBODY, NOBODY);
    return d;
  };
  return mode;
}

// Starts a server through the SDK's StdioClientTransport; returns {client, ws, log(), pid, close()}.
export async function connect(mode, { ws = mode.workspace(), slots = mode.slots(), args = [], scratch = false } = {}) {
  const serveArgs = ['sandbox', 'serve', '--stdio', scratch ? '--scratch-workspace' : '--workspace', ws, '--slots-dir', slots, ...args];
  const transport = new StdioClientTransport({
    command: mode.unpriv ? 'setpriv' : mode.bin,
    args: mode.unpriv ? [...PRIV, mode.bin, ...serveArgs] : serveArgs,
    env: { PATH: process.env.PATH, HOME: '/nonexistent' },
    stderr: 'pipe',
  });
  let log = '';
  transport.stderr.on('data', (c) => { log += c; if (process.env.POSTERN_TEST_VERBOSE) process.stderr.write(c); });
  const client = new Client({ name: 'postern-sandbox-test', version: '1.0.0' });
  await client.connect(transport);
  return {
    client, ws, transport,
    log: () => log,
    pid: transport.pid,
    initPid: () => { const m = log.match(/sandbox session started" init_pid=(\d+)/); return m ? Number(m[1]) : null; },
    // Under ASan/UBSan a report lands on stderr: any is a failure.
    close: async () => {
      await client.close();
      await sleep(50);
      assert.doesNotMatch(log, /Sanitizer|runtime error:/, 'sanitizer report in the server log');
    },
  };
}

export async function call(s, name, args, timeout = 60000) {
  const r = await s.client.callTool({ name, arguments: args }, undefined, { timeout });
  return { text: r.content.map((c) => c.text).join(''), isError: !!r.isError };
}
export const ok = async (s, name, args, timeout) => {
  const r = await call(s, name, args, timeout);
  assert.equal(r.isError, false, `${name} ${JSON.stringify(args).slice(0, 200)} failed: ${r.text.slice(0, 500)}`);
  return r.text;
};
export const err = async (s, name, args, re) => {
  const r = await call(s, name, args);
  assert.equal(r.isError, true, `${name} ${JSON.stringify(args).slice(0, 200)} should fail; got: ${r.text.slice(0, 300)}`);
  if (re) assert.match(r.text, re);
  return r.text;
};
export const bash = (s, command, extra = {}) => ok(s, 'bash', { command, ...extra });
