// make demo: edge, gateway and a real MCP server on loopback; an official MCP SDK client lists and calls
// tools through the tunnel; every step is timed; the edge's view (metadata only) is shown; everything
// started here is stopped at the end or on Ctrl-C.
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { start, run, freePort, tmpdir, rmrf, stopAll, waitUntil, sleep } from '../tests/e2e/lib/proc.mjs';
import { connectMcp } from '../tests/e2e/lib/mcp.mjs';

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
    console.log(c('32', `ok`) + c('2', ` (${Date.now() - s} ms)`));
    return r;
  } catch (e) {
    console.log(c('31', 'FAILED'));
    throw e;
  }
}
const show = (s) => console.log(s.split('\n').map((l) => `      ${l}`).join('\n'));

async function postern(args, what) {
  const r = await run(BIN, args, { timeoutMs: 30000 });
  if (r.code !== 0) throw new Error(`postern ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

async function httpGet(url) {
  const r = await fetch(url);
  return { status: r.status, body: await r.text() };
}

let stopping = false;
let gateway, edgeProc;
async function cleanup(code) {
  if (stopping) return;
  stopping = true;
  await stopAll();
  rmrf(dir);
  process.exit(code);
}
process.on('SIGINT', () => { console.log('\ninterrupted: stopping everything the demo started'); cleanup(130); });
process.on('SIGTERM', () => cleanup(143));

async function main() {
  console.log(c('1', `postern demo`) + ` — MCP tunnel on loopback (work dir ${dir})\n`);
  const ports = { connector: await freePort(), client: await freePort(), edgeMetrics: await freePort(),
    gwMetrics: await freePort(), mcp: await freePort() };
  const edgeDomain = 'tunnel.demo.test';

  await step('edge certificate for the connector port (postern certs init)', () =>
    postern(['certs', 'init', '--domain', 'edge.demo.test', '--out', path.join(dir, 'edge-pki')]));

  const edgeYaml = path.join(dir, 'edge.yaml');
  writeFileSync(edgeYaml, [
    `state_dir: ${path.join(dir, 'edge-state')}`,
    `domain: ${edgeDomain}`,
    `connector_listen: 127.0.0.1:${ports.connector}`,
    `connector_tls: { cert_file: ${path.join(dir, 'edge-pki', 'server.pem')}, key_file: ${path.join(dir, 'edge-pki', 'server.key')} }`,
    `client_listen: 127.0.0.1:${ports.client}`,
    `metrics_listen: 127.0.0.1:${ports.edgeMetrics}`,
  ].join('\n') + '\n');

  const tunnel = await step('create a tunnel on the edge (postern tunnel create)', async () =>
    JSON.parse(await postern(['tunnel', 'create', 'demo', '-c', edgeYaml])));
  show(`id=${tunnel.id} domain=${tunnel.domain} token=<${tunnel.token.length} chars, written 0600 to token file>`);

  await step(`customer CA and *.${tunnel.domain} certificate (the key stays on the gateway)`, () =>
    postern(['certs', 'init', '--domain', tunnel.domain, '--out', path.join(dir, 'pki')]));
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, tunnel.token + '\n', { mode: 0o600 });
  chmodSync(tokenFile, 0o600);

  const mcp = await step('start a real MCP server from npm (@modelcontextprotocol/server-everything, Streamable HTTP)', async () => {
    const p = start(process.execPath, [path.join(root, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js'), 'streamableHttp'],
      { env: { ...process.env, PORT: String(ports.mcp) }, name: 'server-everything' });
    await p.waitFor(/listening on port/, 15000);
    return p;
  });

  const edge = await step('start the edge (public relay)', async () => {
    const p = edgeProc = start(BIN, ['edge', '-c', edgeYaml], { name: 'edge' });
    await p.waitFor(/listening|started/i, 10000);
    return p;
  });

  const gwYaml = path.join(dir, 'gateway.yaml');
  writeFileSync(gwYaml, [
    `token_file: ${tokenFile}`,
    `edges: ["127.0.0.1:${ports.connector}", "localhost:${ports.connector}"]`,
    `edge_ca_file: ${path.join(dir, 'edge-pki', 'ca.pem')}`,
    `edge_server_name: connect.edge.demo.test`,
    `connections: 2`,
    `metrics_listen: 127.0.0.1:${ports.gwMetrics}`,
    `tunnel_domain: ${tunnel.domain}`,
    `tls: { cert_file: ${path.join(dir, 'pki', 'server.pem')}, key_file: ${path.join(dir, 'pki', 'server.key')} }`,
    `routes:`,
    `  everything: http://127.0.0.1:${ports.mcp}`,
    `  sandbox:`,
    `    sandbox:`,
    `      allow_domains: ["example.com"]`,
    `      memory: 512M`,
    `      timeout: 30s`,
    `upstream:`,
    `  allowed_ips: ["127.0.0.0/8"]`,
  ].join('\n') + '\n');

  await step('start the gateway: dials out to the edge, no inbound port (ready = a registered, pinging link)', async () => {
    gateway = start(BIN, ['gateway', '-c', gwYaml], { name: 'gateway' });
    await waitUntil(async () => (await httpGet(`http://127.0.0.1:${ports.gwMetrics}/ready`).catch(() => ({}))).status === 200, 15000, 100, 'gateway /ready');
  });

  const url = `https://everything.${tunnel.domain}:${ports.client}/mcp`;
  const ca = path.join(dir, 'pki', 'ca.pem');
  const session = await step(`MCP client (official TypeScript SDK) connects to ${url}, verifying the customer CA`, () =>
    connectMcp(url, { ca, address: '127.0.0.1' }));
  const tools = await step('tools/list through the tunnel', () => session.client.listTools());
  show(`${tools.tools.length} tools: ${tools.tools.map((t) => t.name).slice(0, 8).join(', ')}${tools.tools.length > 8 ? ', …' : ''}`);
  const marker = `demo-${Date.now()}`;
  const echo = await step('tools/call echo through the tunnel', () => session.client.callTool({ name: 'echo', arguments: { message: marker } }));
  show(`echo -> ${JSON.stringify(echo.content[0].text)}`);
  const sum = await step('tools/call get-sum through the tunnel', () => session.client.callTool({ name: 'get-sum', arguments: { a: 19, b: 23 } }));
  show(`get-sum(19, 23) -> ${JSON.stringify(sum.content[0].text)}`);
  const n = 50, lat = [];
  await step(`${n} sequential echo calls (latency through edge + gateway, both TLS layers)`, async () => {
    for (let i = 0; i < n; i++) {
      const s = process.hrtime.bigint();
      await session.client.callTool({ name: 'echo', arguments: { message: `m${i}` } });
      lat.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
  });
  lat.sort((a, b) => a - b);
  show(`p50 ${lat[Math.floor(n / 2)].toFixed(2)} ms, p99 ${lat[n - 1].toFixed(2)} ms`);
  await session.close();

  const boxUrl = `https://sandbox.${tunnel.domain}:${ports.client}/mcp`;
  const box = await step(`self-hosted sandbox: MCP client connects to the built-in sandbox route ${boxUrl}`, () =>
    connectMcp(boxUrl, { ca, address: '127.0.0.1' }));
  const text = (r) => r.content.map((x) => x.text).join('').trim();
  await step('write a script into the sandbox workspace (tool: write)', () => box.client.callTool({ name: 'write', arguments: {
    file_path: '/workspace/hello.sh',
    content: '#!/bin/sh\necho "hello from $(hostname), uid $(id -u), pid $$"\necho "processes visible: $(ls /proc | grep -c "^[0-9]")"\n' } }));
  const ran = await step('run it (tool: bash; a fresh pid, user, mount and net namespace; seccomp; cgroup limits)', () =>
    box.client.callTool({ name: 'bash', arguments: { command: 'cd /workspace && sh hello.sh > out.txt; echo "exit=$?"' } }));
  show(`bash -> ${text(ran)}`);
  const rd = await step('read its output (tool: read)', () => box.client.callTool({ name: 'read', arguments: { file_path: '/workspace/out.txt' } }));
  show(text(rd));
  const net = await step('try a name outside the allowlist: refused by the egress proxy before any DNS lookup', () =>
    box.client.callTool({ name: 'bash', arguments: { command: 'curl -sS -o /dev/null -w "%{http_code} " -D - https://blocked.example.invalid/ 2>&1 | grep -i -E "^(HTTP|x-proxy-error)|curl:" ; curl -sS --noproxy "*" --max-time 3 http://93.184.215.14/ 2>&1 | head -1' } }));
  show(text(net));
  await box.close();

  const seen = await step('what the edge could see: its log and metrics (metadata only)', async () => {
    const m = await httpGet(`http://127.0.0.1:${ports.edgeMetrics}/metrics`);
    if (edge.log.includes(marker)) throw new Error('the edge log contains the payload marker: plaintext leaked');
    return { metrics: m.body.split('\n').filter((l) => l && !l.startsWith('#')).slice(0, 12), log: edge.log.trim().split('\n').slice(-6) };
  });
  show('edge log (last lines):');
  show(seen.log.map((l) => `  ${l}`).join('\n'));
  show('edge /metrics (excerpt):');
  show(seen.metrics.map((l) => `  ${l}`).join('\n'));
  show(`the payload marker ${marker} appears nowhere in the edge's output`);

  console.log(`\n${c('1', 'done')} in ${((Date.now() - t0) / 1000).toFixed(1)} s; stopping everything the demo started`);
  void mcp;
  await cleanup(0);
}

main().catch(async (e) => {
  console.error(`\ndemo failed: ${e.stack || e}`);
  for (const [name, p] of [['edge', edgeProc], ['gateway', gateway]])
    if (p) console.error(`\n--- ${name} log ---\n${p.log.split('\n').slice(-30).join('\n')}`);
  await cleanup(1);
});
void sleep; void readFileSync;
