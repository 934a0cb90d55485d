// make demo: the whole system on loopback with embedded defaults. An agent (`postern agent`; scripted by a
// plan unless ANTHROPIC_API_KEY is set) reads private records from an MCP server through the tunnel (edge ->
// gateway, guarded and audited at the customer's boundary), writes a script in a self-hosted sandbox through
// the control plane and a worker, runs it and shows the report. Every step is timed; what the edge could see
// (SNI and byte counts) is shown; everything started here is stopped at the end or on Ctrl-C.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { start, run, freePort, tmpdir, rmrf, stopAll, waitUntil, sleep } from '../tests/e2e/lib/proc.mjs';

const BIN = process.env.POSTERN_BIN;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = tmpdir('postern-demo-');
const t0 = Date.now();
let stepNo = 0;

const c = (code, s) => (process.stdout.isTTY ? `\x1b[${code}m${s}\x1b[0m` : s);
async function step(title, fn) {
  stepNo++;
  const s = Date.now();
  process.stdout.write(`${c('1', `[${stepNo}]`)} ${title} ... `);
  try {
    const r = await fn();
    console.log(c('32', 'ok') + c('2', ` (${Date.now() - s} ms)`));
    return r;
  } catch (e) {
    console.log(c('31', 'FAILED'));
    throw e;
  }
}
const show = (s) => console.log(String(s).split('\n').map((l) => `      ${l}`).join('\n'));

async function postern(args) {
  const r = await run(BIN, args, { timeoutMs: 30000 });
  if (r.code !== 0) throw new Error(`postern ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}
const httpGet = async (url) => { const r = await fetch(url); return { status: r.status, body: await r.text() }; };

let stopping = false;
const procs = {};
async function cleanup(code) {
  if (stopping) return;
  stopping = true;
  // The agent first (it terminates its session), then the worker (it removes its sandboxes), then the rest.
  for (const name of ['agent', 'worker'])
    if (procs[name]) await procs[name].kill('SIGTERM', 10000).catch(() => {});
  await stopAll();
  rmrf(dir);
  process.exit(code);
}
process.on('SIGINT', () => { console.log('\ninterrupted: stopping everything the demo started'); cleanup(130); });
process.on('SIGTERM', () => cleanup(143));

// The private records: what only the customer's network holds.
const ORDERS = `order_id,region,customer,amount
1001,north,acme,120.50
1002,south,globex,80.00
1003,north,initech,45.25
1004,east,acme,300.00
1005,south,umbrella,19.99
1006,north,globex,64.26
`;
const SUMMARISE = `#!/bin/sh
# Summarise an orders CSV: orders and revenue per region, and the total.
awk -F, 'NR > 1 { n[$2]++; s[$2] += $4; tn++; ts += $4 }
END {
  print "REPORT orders by region";
  for (r in n) printf "  %-6s %d orders  %8.2f\\n", r, n[r], s[r] | "sort";
  close("sort");
  printf "TOTAL %d orders %.2f\\n", tn, ts
}' "$1"
`;

// POSTERN_DEMO_REPEAT=N (bench/agent.sh): N more MCP and sandbox steps, and the same calls made directly.
const repeat = Number(process.env.POSTERN_DEMO_REPEAT || 0);
function benchSteps(tag) {
  let y = '';
  for (let i = 0; i < repeat; i++) {
    y += `  - {name: ${tag}_mcp_${i}, mcp: everything, tool: echo, args: {message: "m${i}"}}\n`;
    if (tag === 'tunnel') y += `  - {name: ${tag}_sbx_${i}, tool: bash, args: {command: "true"}}\n`;
  }
  return y;
}

async function benchDirect(ports, apiKeyFile, envId) {
  // MCP: the same agent, straight to the server (no edge, no gateway, no guard).
  const plan = path.join(dir, 'direct.yaml');
  writeFileSync(plan, 'steps:\n' + benchSteps('direct'));
  const r = await run(BIN, ['agent', '--control', `http://127.0.0.1:${ports.control}`, '--api-key-file', apiKeyFile, '--env', envId,
    '--plan', plan, '--mcp', `everything=http://127.0.0.1:${ports.mcp}/mcp`, 'direct calls'], { timeoutMs: 120000 });
  if (r.code !== 0) throw new Error(`direct agent: ${r.stdout}${r.stderr}`);
  for (const l of r.stdout.split('\n')) if (/^\[\d+\/\d+\] direct_/.test(l)) console.log(`      ${l}`);
  // Sandbox: one `postern sandbox serve --stdio` child (what the worker runs), called without control plane or worker.
  const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
  const { StdioClientTransport } = await import('@modelcontextprotocol/sdk/client/stdio.js');
  const wsd = path.join(dir, 'direct-ws');
  mkdirSync(wsd);
  const client = new Client({ name: 'bench', version: '1' });
  await client.connect(new StdioClientTransport({ command: BIN, args: ['sandbox', 'serve', '--stdio', '--prestart', '--workspace', wsd] }));
  for (let i = 0; i < repeat; i++) {
    const s = process.hrtime.bigint();
    await client.callTool({ name: 'bash', arguments: { command: 'true' } });
    console.log(`      direct sandbox.bash ${(Number(process.hrtime.bigint() - s) / 1e6).toFixed(1)} ms`);
  }
  await client.close();
}

async function main() {
  const keyed = !!process.env.ANTHROPIC_API_KEY;
  console.log(c('1', 'postern demo') + ` — an agent, a private MCP server through the tunnel, a self-hosted sandbox (work dir ${dir})\n`);
  const ports = { connector: await freePort(), client: await freePort(), edgeMetrics: await freePort(),
    gwMetrics: await freePort(), mcp: await freePort(), control: await freePort(), controlMetrics: await freePort() };
  const edgeDomain = 'tunnel.demo.test';

  await step('edge certificate for the connector port (postern certs init)', () =>
    postern(['certs', 'init', '--domain', 'edge.demo.test', '--out', path.join(dir, 'edge-pki')]));
  const edgeYaml = path.join(dir, 'edge.yaml');
  writeFileSync(edgeYaml, [
    `state_dir: ${path.join(dir, 'edge-state')}`, `domain: ${edgeDomain}`,
    `connector_listen: 127.0.0.1:${ports.connector}`,
    `connector_tls: { cert_file: ${path.join(dir, 'edge-pki', 'server.pem')}, key_file: ${path.join(dir, 'edge-pki', 'server.key')} }`,
    `client_listen: 127.0.0.1:${ports.client}`, `metrics_listen: 127.0.0.1:${ports.edgeMetrics}`,
  ].join('\n') + '\n');
  const tunnel = await step('create a tunnel on the edge (postern tunnel create)', async () =>
    JSON.parse(await postern(['tunnel', 'create', 'demo', '-c', edgeYaml])));
  show(`id=${tunnel.id} domain=${tunnel.domain} token=<${tunnel.token.length} chars, written 0600 to token file>`);
  await step(`customer CA and *.${tunnel.domain} certificate (the key stays on the gateway)`, () =>
    postern(['certs', 'init', '--domain', tunnel.domain, '--out', path.join(dir, 'pki')]));
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, tunnel.token + '\n', { mode: 0o600 });
  chmodSync(tokenFile, 0o600);

  const records = path.join(dir, 'records');
  mkdirSync(records);
  writeFileSync(path.join(records, 'orders.csv'), ORDERS);
  writeFileSync(path.join(records, 'regions.json'), JSON.stringify({ north: 'Oslo', south: 'Lyon', east: 'Graz' }, null, 2) + '\n');

  const mcp = await step('start an MCP server over Streamable HTTP (@modelcontextprotocol/server-everything)', async () => {
    const p = start(process.execPath, [path.join(root, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js'), 'streamableHttp'],
      { env: { ...process.env, PORT: String(ports.mcp) }, name: 'server-everything' });
    await p.waitFor(/listening on port/, 15000);
    return p;
  });
  procs.edge = await step('start the edge (public relay)', async () => {
    const p = start(BIN, ['edge', '-c', edgeYaml], { name: 'edge' });
    await p.waitFor(/listening|started/i, 10000);
    return p;
  });

  const audit = path.join(dir, 'audit', 'audit.jsonl');
  const gwYaml = path.join(dir, 'gateway.yaml');
  const fsServer = path.join(root, 'node_modules/@modelcontextprotocol/server-filesystem/dist/index.js');
  writeFileSync(gwYaml, [
    `token_file: ${tokenFile}`,
    `edges: ["127.0.0.1:${ports.connector}"]`,
    `edge_ca_file: ${path.join(dir, 'edge-pki', 'ca.pem')}`,
    'edge_server_name: connect.edge.demo.test',
    'connections: 2',
    `metrics_listen: 127.0.0.1:${ports.gwMetrics}`,
    `admin_socket: ${path.join(dir, 'gw.sock')}`,
    `tunnel_domain: ${tunnel.domain}`,
    `tls: { cert_file: ${path.join(dir, 'pki', 'server.pem')}, key_file: ${path.join(dir, 'pki', 'server.key')} }`,
    `audit: {file: ${audit}}`,
    `pins_file: ${path.join(dir, 'pins.json')}`,
    'routes:',
    '  records:',
    `    stdio: [${JSON.stringify(process.execPath)}, ${JSON.stringify(fsServer)}, ${JSON.stringify(records)}]`,
    '    policy:',
    '      default: allow',
    '      rules:',
    '        - {name: records-read-only, match: {tool: "write_*"}, action: deny}',
    '        - {name: listing-needs-approval, match: {tool: "list_directory"}, action: approve}',
    '  everything:',
    `    url: http://127.0.0.1:${ports.mcp}`,
    'upstream:',
    '  allowed_ips: ["127.0.0.0/8"]',
  ].join('\n') + '\n');
  procs.gateway = await step('start the gateway: dials out to the edge, no inbound port; routes records (stdio, guarded) and everything (HTTP)', async () => {
    const p = start(BIN, ['gateway', '-c', gwYaml], { name: 'gateway' });
    await waitUntil(async () => (await httpGet(`http://127.0.0.1:${ports.gwMetrics}/ready`).catch(() => ({}))).status === 200, 15000, 100, 'gateway /ready');
    return p;
  });

  const ctlYaml = path.join(dir, 'control.yaml');
  writeFileSync(ctlYaml, [`listen_addr: 127.0.0.1:${ports.control}`, `state_dir: ${path.join(dir, 'control')}`, 'store: sqlite',
    `metrics_listen: 127.0.0.1:${ports.controlMetrics}`].join('\n') + '\n');
  const env = await step('control plane: an environment and an API key (postern control env create, apikey create)', async () => ({
    env: JSON.parse(await postern(['control', 'env', 'create', 'demo', '-c', ctlYaml])),
    api: JSON.parse(await postern(['control', 'apikey', 'create', 'demo-agent', '-c', ctlYaml])),
  }));
  const envKeyFile = path.join(dir, 'env.key');
  const apiKeyFile = path.join(dir, 'api.key');
  writeFileSync(envKeyFile, env.env.key + '\n', { mode: 0o600 });
  writeFileSync(apiKeyFile, env.api.key + '\n', { mode: 0o600 });
  procs.control = await step('start the control plane (postern control, SQLite)', async () => {
    const p = start(BIN, ['control', '-c', ctlYaml], { name: 'control' });
    await p.waitFor(/msg="control plane listening"/, 15000);
    return p;
  });
  const ws = path.join(dir, 'worker-ws');
  mkdirSync(ws);
  const wYaml = path.join(dir, 'worker.yaml');
  writeFileSync(wYaml, [`base_url: http://127.0.0.1:${ports.control}`, `environment_id: ${env.env.id}`,
    `environment_key_file: ${envKeyFile}`, `workspace_root: ${ws}`, 'pool_size: 1', 'max_sessions: 2',
    'sandbox:', '  memory: 512M', '  timeout: 30s'].join('\n') + '\n');
  procs.worker = await step('start the worker (polls the control plane outbound; sandboxes its sessions\' tools)', async () => {
    const p = start(BIN, ['worker', '-c', wYaml], { name: 'worker' });
    await p.waitFor(/msg="worker started"/, 10000);
    return p;
  });

  const plan = path.join(dir, 'plan.yaml');
  writeFileSync(plan, `# The demo's steps (a model chooses its own when ANTHROPIC_API_KEY is set).
steps:
  - name: list_records
    mcp: records
    tool: list_directory
    args: {path: ${JSON.stringify(records)}}
  - name: read_orders
    mcp: records
    tool: read_text_file
    args: {path: ${JSON.stringify(path.join(records, 'orders.csv'))}}
  - name: try_write
    mcp: records
    tool: write_file
    args: {path: ${JSON.stringify(path.join(records, 'orders.csv'))}, content: "tampered"}
    expect: error
  - name: note
    mcp: everything
    tool: echo
    args: {message: "summarising the orders"}
  - name: copy_orders
    tool: write
    args: {file_path: /workspace/orders.csv, content: "\${read_orders.output}"}
  - name: write_script
    tool: write
    args:
      file_path: /workspace/summarise.sh
      content: ${JSON.stringify(SUMMARISE)}
  - name: run_script
    tool: bash
    args: {command: "sh /workspace/summarise.sh /workspace/orders.csv | tee /workspace/report.txt"}
` + benchSteps('tunnel'));
  const task = 'Read the orders from the records server, summarise them per region in the sandbox, and show the report.';
  const agentArgs = ['agent', '--control', `http://127.0.0.1:${ports.control}`, '--api-key-file', apiKeyFile, '--env', env.env.id,
    '--plan', plan, '--mcp', `records=https://records.${tunnel.domain}:${ports.client}/mcp`,
    '--mcp', `everything=https://everything.${tunnel.domain}:${ports.client}/mcp`,
    '--ca-file', path.join(dir, 'pki', 'ca.pem'), '--connect-addr', '127.0.0.1', '--tool-timeout', '60s', task];
  console.log(`\n${c('1', `[${++stepNo}]`)} postern agent ${keyed ? '(model: ANTHROPIC_API_KEY is set)' : '(scripted: no ANTHROPIC_API_KEY)'}: "${task}"`);
  const sAgent = Date.now();
  const agent = procs.agent = start(BIN, agentArgs, { name: 'agent' });
  // The demo plays the person at the approval prompt: `postern approvals approve` for each held call.
  const approved = [];
  let agentDone = false;
  const approver = (async () => {
    while (!agentDone) {
      const r = await run(BIN, ['approvals', 'list', '-c', gwYaml, '--output', 'json'], { timeoutMs: 10000 }).catch(() => null);
      for (const h of r && r.code === 0 ? JSON.parse(r.stdout || '[]') : []) {
        const a = await run(BIN, ['approvals', 'approve', h.id, '-c', gwYaml], { timeoutMs: 10000 });
        if (a.code === 0) approved.push(h);
      }
      await sleep(150);
    }
  })();
  let printed = 0, lineStart = true;
  const flush = () => {
    const chunk = agent.stdout.slice(printed);
    printed += chunk.length;
    for (const ch of chunk) { if (lineStart && ch !== '\n') process.stdout.write('      '); process.stdout.write(ch); lineStart = ch === '\n'; }
  };
  const pump = setInterval(flush, 100);
  const res = await Promise.race([agent.exited, sleep(90000).then(() => ({ code: 'timeout' }))]);
  agentDone = true;
  clearInterval(pump);
  flush();
  await approver;
  if (res.code !== 0) throw new Error(`postern agent exited ${res.code}:\n${agent.log}`);
  console.log(`      ${c('32', 'agent finished')} ${c('2', `(${Date.now() - sAgent} ms)`)}`);
  for (const h of approved) show(`approved held call ${h.id}: ${h.route}/${h.tool} (rule ${h.rule}) via postern approvals approve`);

  if (repeat) await step(`the same calls made directly (${repeat} each)`, () => benchDirect(ports, apiKeyFile, env.env.id));

  const denied = readFileSync(audit, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((l) => l.tool === 'write_file' && l.decision === 'deny');
  await step('the denied call, as the audit recorded it', async () => { if (!denied.length && !keyed) throw new Error('no deny in the audit'); });
  if (!denied.length) show('the model tried no write: nothing was denied this time');
  else { const d = denied[0];
    show(`seq=${d.seq} route=${d.route} method=${d.method} tool=${d.tool} decision=${d.decision} rule=${d.rule} status=${d.status ?? ''} rpc_code=${d.rpc_code ?? ''}`); }

  const seen = await step('what the edge could see: SNI and byte counts only (its log and metrics)', async () => {
    const m = await httpGet(`http://127.0.0.1:${ports.edgeMetrics}/metrics`);
    for (const secret of ['acme', 'globex', 'REPORT'])
      if (procs.edge.log.includes(secret)) throw new Error(`the edge log contains "${secret}": plaintext leaked`);
    return { metrics: m.body.split('\n').filter((l) => /bytes|sni|client_conn/.test(l) && !l.startsWith('#')).slice(0, 10),
      log: procs.edge.log.trim().split('\n').filter((l) => /sni|bytes/.test(l)).slice(-4) };
  });
  show(seen.log.map((l) => `  ${l}`).join('\n') || '  (no per-connection lines at this log level)');
  show(seen.metrics.map((l) => `  ${l}`).join('\n'));
  show("no record content (customer names, the report) appears anywhere in the edge's output");

  const lines = readFileSync(audit, 'utf8').trim().split('\n');
  await step(`the audit log at the boundary: ${lines.length} lines (tail)`, async () => {});
  for (const l of lines.slice(-4)) {
    const j = JSON.parse(l);
    show(`  seq=${j.seq} route=${j.route} dir=${j.dir} method=${j.method ?? ''} tool=${j.tool ?? ''} decision=${j.decision ?? ''} rule=${j.rule ?? ''} prev=${String(j.prev).slice(0, 12)}…`);
  }
  const v = await step('postern audit verify (the hash chain)', () => postern(['audit', 'verify', audit]));
  show(v.trim());

  console.log(`\n${c('1', 'done')} in ${((Date.now() - t0) / 1000).toFixed(1)} s; stopping everything the demo started`);
  void mcp;
  await cleanup(0);
}

main().catch(async (e) => {
  console.error(`\ndemo failed: ${e.stack || e}`);
  for (const [name, p] of Object.entries(procs))
    if (p) console.error(`\n--- ${name} log ---\n${p.log.split('\n').slice(-30).join('\n')}`);
  await cleanup(1);
});
