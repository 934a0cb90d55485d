// The pinned MCP tooling in .mcp-tools/ (scripts/mcp-tools.sh): the conformance suite and the Inspector CLI
// run under Node 22, their results read from the suite's own checks.json files.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './proc.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const TOOLS = process.env.MCP_TOOLS || path.join(root, '.mcp-tools');
export const toolBin = (name) => path.join(TOOLS, 'bin', name);
export const CLIENT_PRELOAD = path.join(root, 'tests/e2e/lib/client-preload.cjs');
export const LISTEN_LOOPBACK = path.join(root, 'tests/e2e/lib/listen-loopback.cjs');
export const SERVER_EVERYTHING = path.join(root, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');

// Throws a message saying how to install when a tool is missing (no silent skip).
export function requireTools(names) {
  const missing = names.filter((n) => !existsSync(toolBin(n)));
  if (missing.length) {
    throw new Error(`MCP tools missing in ${TOOLS}/bin: ${missing.join(', ')}; install them with scripts/mcp-tools.sh ` +
      '(make deps runs it)');
  }
}

// Env for a client reaching routes under `suffix` at 127.0.0.1 with the route CA `ca` and extra `headers`.
export function clientEnv({ suffix, ca, headers } = {}) {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // node --test's marker: the child is not a test runner
  delete env.NODE_OPTIONS;
  env.NODE_OPTIONS = `--require ${CLIENT_PRELOAD}`;
  if (suffix) env.POSTERN_TEST_RESOLVE = `${suffix}=127.0.0.1`;
  if (ca) env.NODE_EXTRA_CA_CERTS = ca;
  if (headers) env.POSTERN_TEST_HEADERS = JSON.stringify(headers);
  return env;
}

// Reads an output dir of `conformance server -o DIR`: one `server-<scenario>-<timestamp>/checks.json` per
// scenario. Returns {scenarios, checks: [{key, scenario, id, status, errorMessage}]}; key is
// "<scenario> :: <check id>" (numbered "#2", "#3" when a scenario repeats an id).
export function readChecks(dir) {
  const scenarios = [];
  const checks = [];
  for (const d of readdirSync(dir).sort()) {
    const m = d.match(/^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/);
    const f = path.join(dir, d, 'checks.json');
    if (!m || !existsSync(f)) continue;
    const scenario = m[1];
    scenarios.push(scenario);
    const seen = new Map();
    for (const c of JSON.parse(readFileSync(f, 'utf8'))) {
      const n = (seen.get(c.id) || 0) + 1;
      seen.set(c.id, n);
      checks.push({ key: `${scenario} :: ${c.id}${n > 1 ? `#${n}` : ''}`, scenario, id: c.id, status: c.status,
        errorMessage: c.errorMessage });
    }
  }
  return { scenarios, checks };
}

export const passing = (r) => r.checks.filter((c) => c.status === 'SUCCESS').map((c) => c.key).sort();

// Runs one suite (`tool` from .mcp-tools/bin) in server mode against url; returns readChecks() of its output
// plus the exit code and log. The suite exits 1 when any check fails; anything else is a crash.
export async function runSuite(tool, url, args, outDir, env, timeoutMs = 60000) {
  rmSync(outDir, { recursive: true, force: true }); // a kept dir from an earlier run would add its scenarios
  const t0 = performance.now();
  const r = await run(toolBin(tool), ['server', '--url', url, ...args, '-o', outDir], { env, timeoutMs });
  const ms = performance.now() - t0;
  if (r.code !== 0 && r.code !== 1) throw new Error(`${tool} ${args.join(' ')} against ${url} crashed (${r.code ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  if (!existsSync(outDir)) throw new Error(`${tool} wrote no results to ${outDir}:\n${r.stdout}\n${r.stderr}`);
  return { ...readChecks(outDir), code: r.code, log: r.stdout + r.stderr, ms };
}

// Inspector CLI call; returns {code, json (parsed stdout or null), stdout, stderr}.
export async function inspector(url, args, env, timeoutMs = 30000) {
  const r = await run(toolBin('mcp-inspector'), ['--cli', url, '--transport', 'http', '--format', 'json', ...args],
    { env, timeoutMs });
  let json = null;
  try { json = JSON.parse(r.stdout); } catch { /* left null: the caller shows stdout */ }
  return { ...r, json };
}
