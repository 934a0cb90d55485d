// Issue 10, tests 1 and 2: the official MCP conformance suite (server mode) against server-everything
// directly and through edge -> gateway; every check that passes directly must pass tunnelled. Then the
// Inspector CLI through the tunnel. Tools: .mcp-tools/ (scripts/mcp-tools.sh, pinned; docs/testing.md).
// The suite and the Inspector take only a URL: tests/e2e/lib/client-preload.cjs resolves the tunnel names to
// loopback and adds headers, NODE_EXTRA_CA_CERTS makes them trust the route's CA.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { writeFileSync, readFileSync } from 'node:fs';
import { start, freePort, stopAll, tmpdir, rmrf } from './lib/proc.mjs';
import { makeEdges, createTunnel, startGateway, EDGE_DOMAIN } from './lib/tunnel.mjs';
import { pinnedFetch } from './lib/mcp.mjs';
import { requireTools, toolBin, clientEnv, runSuite, passing, inspector, LISTEN_LOOPBACK, SERVER_EVERYTHING } from './lib/mcptools.mjs';

// ---- the guard on the tunnelled route (issue 10) ---------------------------------------------------------------
// The tunnelled route has auth (a bearer token from a hashed tokens_file), a policy (one tool denied that no
// scenario uses) and the audit to a file; the suite and the Inspector send `Authorization: Bearer <token>` on
// every tunnelled request (the preload adds it to Node's fetch and to the undici package, which between them
// carry all the suite's requests), and the guard-only assertions below (401 without the token, the denied tool
// hidden and refused, audit lines written) run. POSTERN_CONFORMANCE_GUARD=0 runs the route plain.
const GUARD = process.env.POSTERN_CONFORMANCE_GUARD !== '0';
const DENIED_TOOL = 'get-env'; // no conformance scenario uses it (and it returns the server's environment)

// The gateway's route for the server under test, as startGateway() takes it: {routes, extra, guard}.
// guard: null (a plain route) or {tokenFile, token, auditFile, deniedTool}.
function gatewayConfig({ upstream, dir, guard = GUARD }) {
  if (!guard) return { routes: { everything: upstream }, extra: [], guard: null };
  const g = { token: `conf-${process.pid}-${Date.now()}-bearer`, auditFile: path.join(dir, 'audit.jsonl'),
    tokenFile: path.join(dir, 'route.token'), deniedTool: DENIED_TOOL };
  writeFileSync(g.tokenFile, `conformance sha256:${createHash('sha256').update(g.token).digest('hex')}\n`, { mode: 0o600 });
  const route = [
    `url: "${upstream}"`,
    `auth: { bearer: { tokens_file: ${g.tokenFile} } }`,
    `policy: { default: allow, rules: [ { match: { tool: "${g.deniedTool}" }, action: deny } ] }`,
    'audit: true',
  ];
  const extra = ['audit:', `  file: ${g.auditFile}`];
  return { routes: { everything: `{ ${route.join(', ')} }` }, extra, guard: g };
}
// ---- end of the guard's route -------------------------------------------------------------------------------

// Each suite run: [label, tool in .mcp-tools/bin, args]. 0.1.16 is the latest stable release; 0.2.0-alpha.11
// has frozen per-revision requirement sets, the only way to test the 2026-07-28 era.
const SUITES = [
  ['0.1.16 active suite (2025-11-25)', 'conformance-0.1.16', []],
  ['0.2.0-alpha.11 --requirements 2025-11-25', 'conformance-0.2.0-alpha.11', ['--requirements', '2025-11-25']],
  ['0.2.0-alpha.11 --requirements 2026-07-28', 'conformance-0.2.0-alpha.11', ['--requirements', '2026-07-28']],
];
// Genuine passes of server-everything on the 2025 wire (docs/testing.md): all their checks must pass both ways.
const CORE_2025 = ['server-initialize', 'ping', 'tools-list', 'logging-set-level', 'resources-list', 'prompts-list'];
// Scenarios the suite runs only against a localhost URL, with the message it fails them with otherwise. They
// test a local server's own Host/Origin check; through the tunnel the URL is the route's name (the proxy
// routes by Host, so a foreign Host gets 404 there anyway). Left out of the comparison only when the tunnelled
// run failed them for exactly this reason.
const LOCALHOST_ONLY = { 'dns-rebinding-protection': /require a localhost server URL/ };

// POSTERN_CONFORMANCE_OUT=DIR keeps the suite's checks.json files there (they are removed with the temp dir otherwise).
const OUT = process.env.POSTERN_CONFORMANCE_OUT;
let work, everything, mcpPort, ctx, t, gw, cfg, direct, tunnelled, env, inspEnv;
const results = new Map();

before(async () => {
  requireTools(['node', 'conformance-0.1.16', 'conformance-0.2.0-alpha.11', 'mcp-inspector']);
  work = tmpdir('postern-conf-');
  mcpPort = await freePort();
  // server-everything on the pinned Node 22 (as the recipe measured it), held to 127.0.0.1 by the preload.
  everything = start(toolBin('node'), ['--require', LISTEN_LOOPBACK, SERVER_EVERYTHING, 'streamableHttp'],
    { env: { PATH: process.env.PATH, PORT: String(mcpPort) }, name: 'server-everything' });
  await everything.waitFor(/listening on port/, 20000);

  ctx = await makeEdges(1);
  await ctx.edges[0].start();
  t = await createTunnel(ctx, 'conf');
  cfg = gatewayConfig({ upstream: `http://127.0.0.1:${mcpPort}`, dir: work });
  gw = await startGateway(ctx, t, cfg.routes, { connections: 2, extra: cfg.extra, name: 'gateway-conf' });

  direct = `http://127.0.0.1:${mcpPort}/mcp`;
  tunnelled = `https://everything.${t.domain}:${ctx.edges[0].client}/mcp`;
  const headers = cfg.guard ? { authorization: `Bearer ${cfg.guard.token}` } : undefined;
  env = clientEnv({ suffix: `.${EDGE_DOMAIN}`, ca: t.ca, headers });
  // The Inspector keeps a catalog under $HOME: give it a scratch one.
  inspEnv = { ...env, HOME: path.join(work, 'home') };
});

after(async () => {
  await stopAll();
  ctx?.cleanup();
  if (work) rmrf(work);
});

// Requests the gateway logged for the route: proof that a run went through the tunnel.
const gwRequests = () => (gw.proc.log.match(/msg="request" route="everything"/g) || []).length;

function report(label, a, b) {
  const pa = passing(a), pb = new Set(passing(b));
  const localOnly = (k) => Object.keys(LOCALHOST_ONLY).some((s) => k.startsWith(`${s} :: `));
  const lost = pa.filter((k) => !pb.has(k) && !localOnly(k));
  const why = lost.map((k) => {
    const c = b.checks.find((x) => x.key === k);
    return `  ${k}: ${c ? `${c.status} ${c.errorMessage || ''}` : 'not run through the tunnel'}`;
  });
  return { lost, text: `${label}: ${lost.length} check(s) pass directly but not through the tunnel:\n${why.join('\n')}\n` +
    `direct passes (${pa.length}):\n  ${pa.join('\n  ')}\ntunnelled passes (${pb.size}):\n  ${[...pb].sort().join('\n  ')}` };
}

for (const [label, tool, args] of SUITES) {
  test(`conformance ${label}: every check that passes directly passes through edge -> gateway`, async () => {
    const slug = `${tool}${args.length ? '-' + args.at(-1) : ''}`;
    const a = await runSuite(tool, direct, args, path.join(OUT || path.join(work, 'out'), `${slug}-direct`), env);
    const n0 = gwRequests();
    const b = await runSuite(tool, tunnelled, args, path.join(OUT || path.join(work, 'out'), `${slug}-tunnel`), env);
    assert.ok(gwRequests() - n0 >= b.scenarios.length, `the gateway logged ${gwRequests() - n0} requests for the tunnelled run`);
    results.set(label, { a, b });
    const pa = passing(a), pb = passing(b);
    const gained = pb.filter((k) => !pa.includes(k)); // shown: a proxy-made answer could make a check pass
    console.log(`# ${label}: direct ${pa.length}/${a.checks.length} checks passed in ${a.ms.toFixed(0)} ms, ` +
      `tunnelled ${pb.length}/${b.checks.length} in ${b.ms.toFixed(0)} ms` +
      (gained.length ? `; passing only tunnelled: ${gained.join(', ')}` : ''));
    assert.ok(a.scenarios.length >= 10, `direct run has only ${a.scenarios.length} scenarios:\n${a.log}`);
    assert.ok(pa.length > 0, `no check passed directly: the harness is broken\n${a.log}`);
    assert.deepEqual(b.scenarios, a.scenarios, 'both runs must cover the same scenarios');
    for (const [s, why] of Object.entries(LOCALHOST_ONLY)) {
      const cs = b.checks.filter((c) => c.scenario === s);
      assert.ok(cs.every((c) => c.status !== 'SUCCESS' && why.test(c.errorMessage || '')),
        `${s} tunnelled: expected the suite to refuse it as localhost-only: ${JSON.stringify(cs)}`);
    }
    const r = report(label, a, b);
    assert.equal(r.lost.length, 0, r.text);
    if (!args.includes('2026-07-28')) {
      for (const s of CORE_2025) {
        for (const [where, x] of [['direct', a], ['tunnelled', b]]) {
          const cs = x.checks.filter((c) => c.scenario === s);
          assert.ok(cs.length > 0 && cs.every((c) => c.status === 'SUCCESS'),
            `${s} ${where}: ${JSON.stringify(cs.map((c) => [c.id, c.status, c.errorMessage]))}`);
        }
      }
    }
  });
}

test('Inspector CLI through the tunnel: tools/list and tools/call give what the server gives directly', async () => {
  const before = gwRequests();
  // Five separate CLI runs (each one a whole client start-up: initialize, call, close), at once.
  const [viaTunnel, viaDirect, echo, sum, none] = await Promise.all([
    inspector(tunnelled, ['--method', 'tools/list'], inspEnv),
    inspector(direct, ['--method', 'tools/list'], inspEnv),
    inspector(tunnelled, ['--method', 'tools/call', '--tool-name', 'echo', '--tool-arg', `message=through postern ${process.pid}`], inspEnv),
    inspector(tunnelled, ['--method', 'tools/call', '--tool-name', 'get-sum', '--tool-args-json', '{"a":19,"b":23}'], inspEnv),
    inspector(tunnelled, ['--method', 'tools/call', '--tool-name', 'no-such-tool'], inspEnv),
  ]);
  assert.equal(viaTunnel.code, 0, viaTunnel.stdout + viaTunnel.stderr);
  assert.equal(viaDirect.code, 0, viaDirect.stdout + viaDirect.stderr);
  const names = (r) => r.json.result.tools.map((x) => x.name).sort();
  const tn = names(viaTunnel), dn = names(viaDirect);
  for (const n of ['echo', 'get-sum', 'get-tiny-image']) assert.ok(tn.includes(n), `${n} missing from ${tn}`);
  assert.deepEqual(tn, cfg.guard ? dn.filter((n) => n !== cfg.guard.deniedTool) : dn);

  assert.equal(echo.code, 0, echo.stdout + echo.stderr);
  assert.deepEqual(echo.json.result.content, [{ type: 'text', text: `Echo: through postern ${process.pid}` }]);
  assert.equal(sum.code, 0, sum.stdout + sum.stderr);
  assert.match(sum.json.result.content[0].text, /The sum of 19 and 23 is 42\./);
  assert.notEqual(none.code, 0, `an unknown tool must fail: ${none.stdout}`);
  assert.match(none.stdout + none.stderr, /tool_not_found|not found/i);
  assert.ok(gwRequests() - before >= 4 * 3, `the gateway logged ${gwRequests() - before} requests for the Inspector's calls`);
});

// Guard-only checks (GUARD HOOK): they run once gatewayConfig() writes guard keys.
test('guard on: no token is refused, the denied tool is refused, tunnelled calls are audited', { skip: !GUARD && 'POSTERN_CONFORMANCE_GUARD=0: the route runs plain' }, async () => {
  const f = pinnedFetch({ ca: t.ca });
  const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {},
    clientInfo: { name: 'no-token', version: '1' } } };
  const noToken = await f(tunnelled, { method: 'POST', body: JSON.stringify(init),
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' } });
  await f.close();
  assert.equal(noToken.status, 401, 'initialize without the bearer token must get 401');
  assert.match(noToken.headers.get('www-authenticate') || '', /^Bearer/i);
  const denied = await inspector(tunnelled, ['--method', 'tools/call', '--tool-name', cfg.guard.deniedTool], inspEnv);
  assert.ok(denied.code !== 0 || denied.json?.result?.isError, `${cfg.guard.deniedTool} must be refused: ${denied.stdout}`);
  // The Inspector gives up on a tool the filtered list lacks; a client that calls it anyway is refused by the
  // guard at call time, with the rule named, and the refusal is audited.
  const g = pinnedFetch({ ca: t.ca });
  const hdr = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${cfg.guard.token}` };
  const ini = await g(tunnelled, { method: 'POST', headers: hdr, body: JSON.stringify(init) });
  assert.equal(ini.status, 200);
  await ini.text();
  const sid = ini.headers.get('mcp-session-id');
  const call = await g(tunnelled, { method: 'POST', headers: { ...hdr, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: cfg.guard.deniedTool, arguments: {} } }) });
  const callBody = await call.text();
  await g.close();
  assert.match(callBody, /-31001/);
  assert.match(callBody, /denied by policy rule rules\[0\]/);
  const lines = readFileSync(cfg.guard.auditFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.some((l) => JSON.stringify(l).includes(cfg.guard.deniedTool)), 'the denied call is not in the audit log');
  assert.ok(lines.some((l) => JSON.stringify(l).includes('"echo"')), 'the echo call is not in the audit log');
  assert.ok(!readFileSync(cfg.guard.auditFile, 'utf8').includes(cfg.guard.token), 'the bearer token reached the audit log');
});
