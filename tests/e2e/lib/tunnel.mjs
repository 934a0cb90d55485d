// A whole tunnel on loopback for tests: edge PKI, edge(s) sharing one state_dir, a tunnel, customer PKI,
// gateway. Every wait is bounded. Config keys follow docs/internals.md and issue 3.
import { writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { start, postern, freePort, tmpdir, rmrf, waitUntil } from './proc.mjs';

export const EDGE_DOMAIN = 'tunnel.test';

async function ok(args) {
  const r = await postern(args);
  if (r.code !== 0) throw new Error(`postern ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

export async function getStatus(url) {
  try { return (await fetch(url)).status; } catch { return 0; }
}

// Creates the edge side (no process yet). Returns ctx with dir, edgeYaml(i), startEdge(i), createTunnel().
// mtlsTunnels: the edge config's mtls_tunnels value (flow YAML), which tunnels mTLS clients may reach.
export async function makeEdges(n = 1, { dir = tmpdir('postern-tun-'), mtlsCa, mtlsTunnels } = {}) {
  await ok(['certs', 'init', '--domain', 'edge.test', '--out', path.join(dir, 'edge-pki')]);
  const edges = [];
  for (let i = 0; i < n; i++) {
    const e = { connector: await freePort(), client: await freePort(), metrics: await freePort(), mtls: await freePort() };
    e.yaml = path.join(dir, `edge${i}.yaml`);
    e.lines = [
      `state_dir: ${path.join(dir, 'edge-state')}`,
      `domain: ${EDGE_DOMAIN}`,
      `connector_listen: 127.0.0.1:${e.connector}`,
      `connector_tls: { cert_file: ${path.join(dir, 'edge-pki', 'server.pem')}, key_file: ${path.join(dir, 'edge-pki', 'server.key')} }`,
      `client_listen: 127.0.0.1:${e.client}`,
      `metrics_listen: 127.0.0.1:${e.metrics}`,
      ...(mtlsCa ? [`mtls_listen: 127.0.0.1:${e.mtls}`, `client_ca_file: ${mtlsCa}`] : []),
      ...(mtlsTunnels ? [`mtls_tunnels: ${mtlsTunnels}`] : []),
    ];
    writeFileSync(e.yaml, e.lines.join('\n') + '\n');
    e.start = async () => {
      e.proc = start(process.env.POSTERN_BIN, ['edge', '-c', e.yaml], { name: `edge${i}` });
      await waitUntil(async () => (await getStatus(`http://127.0.0.1:${e.metrics}/healthz`)) === 200, 10000, 50, `edge${i} /healthz`);
      return e.proc;
    };
    edges.push(e);
  }
  return { dir, edges, edgeCa: path.join(dir, 'edge-pki', 'ca.pem'), cleanup: () => rmrf(dir) };
}

export async function createTunnel(ctx, name = 'test') {
  const t = JSON.parse(await ok(['tunnel', 'create', name, '-c', ctx.edges[0].yaml]));
  t.tokenFile = path.join(ctx.dir, `${name}.token`);
  writeFileSync(t.tokenFile, t.token + '\n', { mode: 0o600 });
  chmodSync(t.tokenFile, 0o600);
  const pki = path.join(ctx.dir, `${name}-pki`);
  await ok(['certs', 'init', '--domain', t.domain, '--out', pki]);
  t.ca = path.join(pki, 'ca.pem');
  t.cert = path.join(pki, 'server.pem');
  t.key = path.join(pki, 'server.key');
  return t;
}

// Writes and starts a gateway for tunnel t with routes {name: url}. extra: more YAML lines. wait: false
// returns at once, before /ready is 200 (e.g. while no edge runs yet).
export async function startGateway(ctx, t, routes, { connections = 2, edgeAddrs, extra = [], name = 'gateway', wait = true } = {}) {
  const metrics = await freePort();
  const addrs = edgeAddrs || ctx.edges.map((e) => `127.0.0.1:${e.connector}`);
  const yaml = path.join(ctx.dir, `${name}.yaml`);
  writeFileSync(yaml, [
    `token_file: ${t.tokenFile}`,
    `edges: [${addrs.map((a) => `"${a}"`).join(', ')}]`,
    `edge_ca_file: ${ctx.edgeCa}`,
    `edge_server_name: connect.edge.test`,
    `connections: ${connections}`,
    `metrics_listen: 127.0.0.1:${metrics}`,
    `tunnel_domain: ${t.domain}`,
    `tls: { cert_file: ${t.cert}, key_file: ${t.key} }`,
    `routes:`,
    ...Object.entries(routes).map(([k, v]) => `  ${k}: ${v}`),
    `upstream:`,
    `  allowed_ips: ["127.0.0.0/8"]`,
    ...extra,
  ].join('\n') + '\n');
  const proc = start(process.env.POSTERN_BIN, ['gateway', '-c', yaml], { name });
  const gw = { proc, metrics, yaml, ready: () => getStatus(`http://127.0.0.1:${metrics}/ready`) };
  if (wait) await waitUntil(async () => (await gw.ready()) === 200, 15000, 50, 'gateway /ready');
  return gw;
}
