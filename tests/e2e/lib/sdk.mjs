// Anthropic's SDK as a test peer: start its EnvironmentWorker (fixtures/sdk_worker.mjs, under the Node 22 of
// .mcp-tools) against any environments API, and one set of tool calls (all six agent_toolset_20260401 tools plus
// a custom one) with the checks on their results, to run against any worker through any API ("driver"); and
// `postern worker` started the same way, with how its answers differ from the SDK's (POSTERN_VS_SDK).
import { readFileSync, writeFileSync, chmodSync, mkdirSync, accessSync, constants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { BIN, start } from './proc.mjs';
import { toolBin, requireTools } from './mcptools.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SDK_WORKER = path.join(here, '../fixtures/sdk_worker.mjs');

// Starts the SDK worker polling `environmentId`; resolves once it runs. p.logs() parses its JSON log lines.
export async function startSdkWorker({ baseURL, environmentId, environmentKey, workdir, maxIdleMs = 400, workerId = 'sdk-worker-1' }) {
  requireTools(['node']);
  const env = { ...process.env, SDK_BASE_URL: baseURL, SDK_ENVIRONMENT_ID: environmentId, SDK_ENVIRONMENT_KEY: environmentKey,
    SDK_WORKDIR: workdir, SDK_MAX_IDLE_MS: String(maxIdleMs), SDK_WORKER_ID: workerId };
  for (const k of Object.keys(env)) if (k.startsWith('ANTHROPIC_') || k === 'NODE_TEST_CONTEXT' || k === 'NODE_OPTIONS') delete env[k];
  const p = start(toolBin('node'), [SDK_WORKER], { env, name: 'sdk-worker' });
  await p.waitFor(/sdk-worker running/, 15000);
  p.logs = () => p.log.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  return p;
}

// The files the tool cases read are made by the first case (a bash call), so any worker starts from an empty
// workspace; `wd` in the checks is the workspace as the worker sees it, `local` the same dir here (or null).
const SEED = "mkdir -p src && printf 'alpha\\nbeta\\ngamma\\n' > notes.txt && " +
  "printf 'int main(void) { return 0; } /* NEEDLE */\\n' > src/main.c && echo seeded";

export const resultText = (r) => (r.content ?? []).map((b) => b.text ?? '').join('');

// The tool calls, in order (later ones see earlier ones' files). `check(result, wd, local)` asserts what the
// SDK's reference tools answer; `custom` marks agent.custom_tool_use.
export const TOOL_CASES = [
  { id: 'seed', tool: 'bash', input: { command: SEED },
    check: (r) => { assert.equal(r.is_error, false, resultText(r)); assert.equal(resultText(r), 'seeded'); } },
  { id: 'bash-ok', tool: 'bash', input: { command: 'echo "out:$((6*7))"' },
    check: (r) => { assert.equal(r.is_error, false); assert.equal(resultText(r), 'out:42'); } },
  { id: 'bash-pwd', tool: 'bash', input: { command: 'pwd' },
    check: (r, wd) => { assert.equal(r.is_error, false); assert.equal(resultText(r), wd); } },
  { id: 'bash-fail', tool: 'bash', input: { command: 'echo failing >&2; false' },
    check: (r) => { assert.equal(r.is_error, true, 'a non-zero exit is an error result'); assert.match(resultText(r), /failing/); } },
  { id: 'read', tool: 'read', input: { file_path: 'notes.txt' },
    check: (r) => { assert.equal(r.is_error, false); assert.equal(resultText(r), 'alpha\nbeta\ngamma\n'); } },
  { id: 'read-range', tool: 'read', input: { file_path: 'notes.txt', view_range: [2, 3] },
    check: (r) => { assert.equal(r.is_error, false); assert.equal(resultText(r), 'beta\ngamma'); } },
  { id: 'read-missing', tool: 'read', input: { file_path: 'nope.txt' },
    check: (r) => { assert.equal(r.is_error, true); } },
  { id: 'write', tool: 'write', input: { file_path: 'out/new.txt', content: 'written by the tool\n' },
    check: (r, wd, local) => {
      assert.equal(r.is_error, false);
      if (local) assert.equal(readFileSync(path.join(local, 'out', 'new.txt'), 'utf8'), 'written by the tool\n');
    } },
  { id: 'edit', tool: 'edit', input: { file_path: 'notes.txt', old_string: 'beta', new_string: 'BETA' },
    check: (r, wd, local) => {
      assert.equal(r.is_error, false);
      if (local) assert.equal(readFileSync(path.join(local, 'notes.txt'), 'utf8'), 'alpha\nBETA\ngamma\n');
    } },
  { id: 'edit-missing', tool: 'edit', input: { file_path: 'notes.txt', old_string: 'not there', new_string: 'x' },
    check: (r) => { assert.equal(r.is_error, true, 'an edit whose old_string is missing fails'); } },
  { id: 'glob', tool: 'glob', input: { pattern: '**/*.c' },
    check: (r) => { assert.equal(r.is_error, false, resultText(r)); assert.match(resultText(r), /src\/main\.c/); } },
  { id: 'grep', tool: 'grep', input: { pattern: 'NEEDLE' },
    check: (r) => { assert.equal(r.is_error, false, resultText(r)); assert.match(resultText(r), /main\.c:1:.*NEEDLE/); } },
  { id: 'read-outside', tool: 'read', input: { file_path: '../../etc/passwd' },
    check: (r) => { assert.equal(r.is_error, true, 'a path outside the workdir is refused'); } },
  { id: 'custom', tool: 'lookup', custom: true, input: { key: 'k1' },
    check: (r) => { assert.equal(r.type, 'user.custom_tool_result'); assert.equal(resultText(r), 'value-of-k1'); } },
];

// Runs every case through `driver` ({ toolUse(name, input) -> id, customToolUse(name, input) -> id,
// result(id) -> Promise<result event> }); returns [{ id, tool, input, result }].
export async function runToolCases(driver, cases = TOOL_CASES) {
  const out = [];
  for (const c of cases) {
    const id = c.custom ? await driver.customToolUse(c.tool, c.input) : await driver.toolUse(c.tool, c.input);
    const result = await driver.result(id);
    assert.equal(result.type, c.custom ? 'user.custom_tool_result' : 'user.tool_result', c.id);
    assert.equal(c.custom ? result.custom_tool_use_id : result.tool_use_id, id);
    out.push({ id: c.id, tool: c.tool, input: c.input, result });
  }
  return out;
}

// Asserts every case's check; `wd` is the workdir path the worker saw, `local` the same dir here (or null).
export function checkToolCases(results, wd, local) {
  for (const r of results) {
    const c = TOOL_CASES.find((x) => x.id === r.id);
    try { c.check(r.result, wd, local); } catch (e) {
      e.message = `${r.id} (${r.tool} ${JSON.stringify(r.input)}): ${e.message}\nresult: ${JSON.stringify(r.result)}`;
      throw e;
    }
  }
}

// How postern's answer compares with the SDK's, per case: 'same'; 'newline' (equal but for one trailing newline,
// after the workspace path is normalized); 'text' (same kind of result, other wording); 'kind' (error vs
// success); 'unanswered' (postern leaves the call pending).
export const POSTERN_VS_SDK = {
  seed: 'newline', 'bash-ok': 'newline', 'bash-pwd': 'newline', 'bash-fail': 'text', read: 'same',
  'read-range': 'newline', 'read-missing': 'text', write: 'text', edit: 'text', 'edit-missing': 'text',
  glob: 'newline', grep: hostHasRipgrep() ? 'same' : 'newline', 'read-outside': 'kind', custom: 'unanswered',
};

// The SDK's grep runs ripgrep when one is on PATH (its output then ends in a newline, as ours does) and its
// own walker otherwise (no final newline): the expected shape follows the host.
function hostHasRipgrep() {
  return (process.env.PATH || '').split(':').some((d) => { try { accessSync(path.join(d || '.', 'rg'), constants.X_OK); return true; } catch { return false; } });
}

export function compareResult(sdk, ours, sdkWd, ourWd) {
  if (!ours) return 'unanswered';
  if (sdk.is_error !== ours.is_error) return 'kind';
  assert.equal(ours.type, sdk.type);
  assert.deepEqual(ours.content.map((b) => b.type), sdk.content.map((b) => b.type), 'content block types');
  const a = resultText(sdk).split(sdkWd).join('<WD>');
  const b = resultText(ours).split(ourWd).join('<WD>');
  if (a === b) return 'same';
  if (a.replace(/\n$/, '') === b.replace(/\n$/, '')) return 'newline';
  return 'text';
}

// Starts `postern worker` on environmentId with its config and workspace_root under dir.
export async function startPosternWorker({ baseURL, environmentId, environmentKey, dir, workerId = 'postern-compare' }) {
  const ws = path.join(dir, 'ws');
  mkdirSync(ws);
  const keyFile = path.join(dir, 'env.key');
  writeFileSync(keyFile, `${environmentKey}\n`, { mode: 0o600 });
  chmodSync(keyFile, 0o600);
  const cfg = path.join(dir, 'worker.yaml');
  writeFileSync(cfg, [`base_url: ${baseURL}`, `environment_id: ${environmentId}`, `environment_key_file: ${keyFile}`,
    `worker_id: ${workerId}`, `workspace_root: ${ws}`, 'max_sessions: 2', 'pool_size: 1', 'log_level: info'].join('\n') + '\n');
  const w = start(BIN, ['worker', '-c', cfg], { name: 'worker' });
  await w.waitFor(/msg="worker started"/, 10000);
  return w;
}

// Compares every case both workers ran ({id, result} lists); returns {case id: compareResult}, `log` gets a line each.
export function compareResults(sdkResults, ourResults, sdkWd, ourWd, log = () => {}) {
  const seen = {};
  for (const s of sdkResults) {
    const o = ourResults.find((r) => r.id === s.id);
    seen[s.id] = compareResult(s.result, o?.result, sdkWd, ourWd);
    log(`${s.id.padEnd(13)} ${seen[s.id].padEnd(10)} sdk=${JSON.stringify(resultText(s.result)).slice(0, 70)}` +
      (o ? ` postern=${JSON.stringify(resultText(o.result)).slice(0, 70)}` : ''));
  }
  return seen;
}
