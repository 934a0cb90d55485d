// `postern boundary -c gateway.yaml` (issue 10): who can see what, from the config alone, as text and as a
// Mermaid flowchart, with findings for risky settings. Three configs (a plain tunnel, the full guard, a risky
// one) and bad ones (each a clear error naming file and line).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { tmpdir, rmrf, postern } from './lib/proc.mjs';

let d;
before(() => { d = tmpdir('postern-boundary-'); });
after(() => rmrf(d));

function conf(name, lines) {
  const f = path.join(d, name);
  writeFileSync(f, lines.join('\n') + '\n');
  return f;
}
const report = async (f, ...args) => {
  const r = await postern(['boundary', '-c', f, ...args], { timeoutMs: 10000 });
  return r;
};
// The section of the text report that starts with "== <head>" (up to the next section or the findings).
const section = (out, head) => {
  const i = out.indexOf(`\n== ${head}`);
  assert.ok(i >= 0, `section "${head}" in:\n${out}`);
  const rest = out.slice(i + 1);
  const j = rest.search(/\n(== |findings \()/);
  return j < 0 ? rest : rest.slice(0, j);
};
const findings = (out) => out.slice(out.indexOf('\nfindings (')).split('\n').filter((l) => /^ {2}\[(low|medium|high)\] /.test(l));

// Mermaid, structurally: a flowchart header; every line a node declaration, an edge, or subgraph/end; node ids
// of [A-Za-z0-9_]; quoted labels balanced; every edge between declared nodes. Returns {nodes, edges}.
function parseMermaid(src) {
  const lines = src.trimEnd().split('\n');
  assert.match(lines[0], /^flowchart (LR|TD|TB|RL|BT)$/);
  const nodes = new Map(), edges = [];
  let depth = 0;
  for (const raw of lines.slice(1)) {
    const l = raw.trim();
    let m;
    if ((m = l.match(/^subgraph ([A-Za-z_][A-Za-z0-9_]*)\["[^"]*"\]$/))) { depth++; continue; }
    if (l === 'end') { depth--; assert.ok(depth >= 0, 'end without subgraph'); continue; }
    if ((m = l.match(/^([A-Za-z_][A-Za-z0-9_]*)(\["([^"]*)"\]|\[\("([^"]*)"\)\])$/))) {
      assert.ok(!nodes.has(m[1]), `node ${m[1]} declared twice`);
      nodes.set(m[1], m[3] ?? m[4]);
      continue;
    }
    if ((m = l.match(/^([A-Za-z_][A-Za-z0-9_]*) -- "([^"]*)" --> ([A-Za-z_][A-Za-z0-9_]*)$/))) {
      edges.push({ from: m[1], label: m[2], to: m[3] });
      continue;
    }
    assert.fail(`not a Mermaid flowchart line: ${raw}`);
  }
  assert.equal(depth, 0, 'every subgraph ends');
  for (const e of edges) {
    assert.ok(nodes.has(e.from), `edge from undeclared node ${e.from}`);
    assert.ok(nodes.has(e.to), `edge to undeclared node ${e.to}`);
  }
  return { nodes, edges };
}

test('plain tunnel config: edges see SNI and sizes, the gateway the plaintext, upstreams their own traffic', async () => {
  const f = conf('plain.yaml', [
    'token_file: /etc/postern/token',
    'edges: ["edge.example.net:7844"]',
    'tunnel_domain: t1.tunnel.example.net',
    'tls: { cert_file: /etc/postern/pki/server.pem, key_file: /etc/postern/pki/server.key }',
    'routes:',
    '  tools: http://10.0.0.5:8000',
    '  files:',
    '    stdio: ["/usr/bin/npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv/docs"]',
  ]);
  const r = await report(f);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout;
  assert.match(out, /^postern boundary: .*plain\.yaml: 2 routes, 1 edge\n/);
  const edge = section(out, 'edge edge.example.net:7844');
  assert.match(edge, /SNI host names of client connections \(tools\.t1\.tunnel\.example\.net, files\.t1\.tunnel\.example\.net\)/);
  assert.match(edge, /byte counts and timing/);
  assert.match(edge, /cannot see: MCP plaintext/);
  assert.match(edge, /\/etc\/postern\/pki\/server\.key\) never leaves the gateway host/);
  const gw = section(out, 'gateway');
  assert.match(gw, /sees: the plaintext of every route: tools files/);
  assert.match(gw, /holds: the TLS key \/etc\/postern\/pki\/server\.key, the tunnel token \/etc\/postern\/token/);
  const tools = section(out, 'route tools');
  assert.match(tools, /upstream: http:\/\/10\.0\.0\.5:8000/);
  assert.match(tools, /sees: the plaintext of this route's own MCP traffic only/);
  assert.match(tools, /auth: passthrough \(the default\): the client's Authorization header reaches the upstream/);
  assert.match(tools, /policy: none/);
  assert.match(tools, /network: plaintext HTTP/);
  const files = section(out, 'route files');
  assert.match(files, /runs: \/usr\/bin\/npx -y @modelcontextprotocol\/server-filesystem \/srv\/docs/);
  assert.match(files, /no credential is checked anywhere/);
  assert.match(section(out, 'audit'), /no sink configured/);
  const fs = findings(out);
  assert.deepEqual(fs.map((l) => l.match(/\[(\w+)\] (\S+):/).slice(1).join(' ')).sort(),
    ['high routes.files', 'low audit', 'low routes.tools', 'medium routes.tools'].sort());

  const mm = await report(f, '--format', 'mermaid');
  assert.equal(mm.code, 0, mm.stderr);
  const g = parseMermaid(mm.stdout);
  assert.ok(g.nodes.has('edge0') && g.nodes.has('gateway') && g.nodes.has('clients'));
  assert.deepEqual([...g.nodes.keys()].filter((k) => k.startsWith('route')), ['route0_tools', 'route1_files']);
  assert.ok(g.edges.some((e) => e.from === 'clients' && e.to === 'edge0' && /SNI visible/.test(e.label)));
  assert.ok(g.edges.some((e) => e.from === 'edge0' && e.to === 'gateway' && /ciphertext/.test(e.label)));
  assert.ok(g.edges.some((e) => e.to === 'route0_tools' && /plaintext HTTP, client Authorization forwarded/.test(e.label)));
  assert.match(g.nodes.get('edge0'), /no plaintext/);
});

test('full guard config: bearer/JWT at the gateway, rules, approvals, egress allowlist, redacted audit over TLS', async () => {
  const f = conf('full.yaml', [
    'edges: ["edge1.example.net:7844", "edge2.example.net:7844"]',
    'token_file: /etc/postern/token',
    'edge_ca_file: /etc/postern/edge-ca.pem',
    'tunnel_domain: t1.tunnel.example.net',
    'tls: { cert_file: /etc/postern/pki/server.pem, key_file: /etc/postern/pki/server.key }',
    'pins_file: /var/lib/postern/pins.json',
    'routes:',
    '  docs:',
    '    url: https://10.0.0.5:8443',
    '    auth: passthrough',
    '    policy: {default: deny, rules: [{match: {tool: "search"}, action: allow}]}',
    '  files:',
    '    stdio: ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv/docs"]',
    '    auth: {bearer: {tokens_file: /etc/postern/files.tokens}}',
    '    policy:',
    '      default: allow',
    '      rules:',
    '        - {match: {tool: "write_*"}, action: deny}',
    '        - {match: {tool: "move_file", client: "ops-*"}, action: approve}',
    '  box:',
    '    sandbox: { memory: 2G, allow_domains: ["pypi.org", "files.pythonhosted.org"], workspace_root: /var/lib/postern/ws }',
    '    auth: {jwt: {issuer: "https://idp.example.com", audience: "https://box.t1.tunnel.example.net", jwks_file: /etc/postern/jwks.json}}',
    '    policy: {default: deny, rules: [{match: {tool: "bash"}, action: allow}]}',
    'audit:',
    '  file: /var/log/postern/audit.jsonl',
    '  log_arguments: true',
    '  redact_keys: [password, token, secret, authorization]',
    '  syslog: tls://siem.internal:6514',
  ]);
  const r = await report(f, '--strict');
  assert.equal(r.code, 0, `no medium or high finding: ${r.stdout}${r.stderr}`);
  const out = r.stdout;
  assert.match(out, /3 routes, 2 edges/);
  assert.match(section(out, 'edge edge2.example.net:7844'), /checked against \/etc\/postern\/edge-ca\.pem/);
  const gw = section(out, 'gateway');
  assert.match(gw, /route files's tokens \/etc\/postern\/files\.tokens/);
  assert.match(gw, /route box's JWKS \/etc\/postern\/jwks\.json/);
  assert.match(gw, /tool pins \/var\/lib\/postern\/pins\.json, the audit log \/var\/log\/postern\/audit\.jsonl/);
  const docs = section(out, 'route docs');
  assert.match(docs, /auth: passthrough: the client's Authorization header reaches the upstream/);
  assert.match(docs, /network: TLS between/);
  const files = section(out, 'route files');
  assert.match(files, /auth: bearer tokens checked by the gateway \(tokens_file \/etc\/postern\/files\.tokens\); the credential is not forwarded/);
  assert.match(files, /policy: default allow; 2 rules/);
  assert.match(files, /1\. tool write_\* -> deny\n/);
  assert.match(files, /2\. tool move_file client ops-\* -> approve \(held until approved on the gateway's admin socket \/run\/postern\)/);
  const box = section(out, 'route box');
  assert.match(box, /JWT checked by the gateway \(issuer https:\/\/idp\.example\.com, audience https:\/\/box\.t1\.tunnel\.example\.net, keys \/etc\/postern\/jwks\.json\)/);
  assert.match(box, /boundary: user, pid, mount, net, ipc, uts and cgroup namespaces, seccomp/);
  assert.match(box, /egress: through the gateway's egress proxy, allowlist: pypi\.org files\.pythonhosted\.org/);
  assert.match(section(out, 'audit syslog tls://siem.internal:6514'), /RFC 5424 over tls\)\n {2}readable by: the SIEM\n/);
  const what = section(out, 'what each audit sink receives');
  assert.match(what, /arguments: logged after redaction, by key patterns password, token, secret, authorization and value patterns/);
  assert.match(what, /client identity and address/);
  assert.deepEqual(findings(out), []);
  assert.match(out, /findings \(0\):\n {2}none\n$/);

  const both = await report(f, '--format', 'both');
  assert.equal(both.code, 0, both.stderr);
  const m = both.stdout.match(/\n```mermaid\n([\s\S]*)```\n$/);
  assert.ok(m, 'both: the text, then a mermaid block');
  assert.ok(both.stdout.startsWith(out), 'the same text first');
  const g = parseMermaid(m[1]);
  for (const id of ['edge0', 'edge1', 'gateway', 'route0_docs', 'route1_files', 'route2_box', 'egress2', 'audit_file', 'audit_syslog']) assert.ok(g.nodes.has(id), id);
  assert.ok(g.edges.some((e) => e.from === 'route2_box' && e.to === 'egress2'));
  assert.ok(g.edges.some((e) => e.to === 'audit_syslog' && /arguments redacted over tls/.test(e.label)));
  assert.match(g.nodes.get('route1_files'), /policy enforced, auth at gateway/);
});

test('risky config: each risky setting is a finding naming its key; --strict exits 1', async () => {
  const tok = path.join(d, 'token-open');
  writeFileSync(tok, 'pt_x\n');
  chmodSync(tok, 0o644);
  const tf = path.join(d, 'files.tokens');
  writeFileSync(tf, 'x\n');
  chmodSync(tf, 0o640);
  const f = conf('risky.yaml', [
    `token_file: ${tok}`,
    'edges: ["edge.example.net:7844"]',
    'tunnel_domain: t.example.net',
    'metrics_listen: 0.0.0.0:20251',
    'tls: { cert_file: /x/server.pem, key_file: /x/server.key }',
    'upstream: { disable_ip_validation: true }',
    'routes:',
    '  "tools.v2": http://10.0.0.5:8000',      // a dotted name: its node id must still be valid Mermaid
    '  files:',
    '    stdio: ["npx", "server-filesystem", "/srv"]',
    '    auth: passthrough',
    '  box:',
    '    sandbox: { allow_domains: ["*"] }',
    `    auth: {bearer: {tokens_file: ${tf}}}`,
    '    policy: {default: allow}',
    '  sso:',
    '    url: https://10.0.0.9:443',
    '    auth: {jwt: {issuer: i, audience: a, jwks_url: "http://idp.internal/jwks"}}',
    'audit:',
    '  file: /var/log/postern/a "quoted".jsonl',
    '  syslog: udp://siem.internal:514',
  ]);
  const r = await report(f);
  assert.equal(r.code, 0, r.stderr);
  const fs = findings(r.stdout);
  const has = (sev, key, re) => assert.ok(fs.some((l) => l.startsWith(`  [${sev}] ${key}: `) && re.test(l)), `[${sev}] ${key} ${re} in:\n${fs.join('\n')}`);
  has('high', 'routes.files', /auth passthrough and no policy on a stdio route/);
  has('medium', 'routes.tools.v2', /auth passthrough and no policy/);
  has('low', 'routes.tools.v2', /plain http/);
  has('medium', 'routes.box', /egress allowlist is "\*"/);
  has('medium', 'routes.box', /the tokens file .*files\.tokens is readable by its group \(mode 0640\)/);
  has('high', 'routes.sso', /jwks_url http:\/\/idp\.internal\/jwks is plain http/);
  has('high', 'upstream.disable_ip_validation', /address checks are off/);
  has('high', 'token_file', /readable by all users \(mode 0644\)/);
  has('low', 'metrics_listen', /0\.0\.0\.0:20251, not loopback/);
  has('high', 'audit.syslog', /udp:\/\/siem\.internal:514 sends audit records .* in plaintext over udp: use tls:\/\//);
  has('medium', 'audit.log_arguments', /redact_keys is not set/);
  assert.match(section(r.stdout, 'audit syslog udp://siem.internal:514'), /PLAINTEXT\)\n {2}readable by: the SIEM and anyone on the network path/);
  assert.match(section(r.stdout, 'gateway'), /upstream address checks: OFF/);
  assert.match(section(r.stdout, 'what each audit sink receives'), /\(the built-in ones: redact_keys is not set\)/);

  const s = await report(f, '--strict');
  assert.equal(s.code, 1);
  const mm = await report(f, '--format', 'mermaid');
  assert.equal(mm.code, 0, mm.stderr);
  const g = parseMermaid(mm.stdout);
  assert.ok(g.nodes.has('route0_tools_v2'), [...g.nodes.keys()].join());
  assert.match(g.nodes.get('audit_file'), /a #quot;quoted#quot;\.jsonl/);
  assert.match(g.nodes.get('audit_syslog'), /PLAINTEXT transport/);
  assert.ok(g.edges.some((e) => e.to === 'audit_syslog' && /over udp/.test(e.label)));
});

test('bad configs: a clear error naming file and line, exit 1; bad usage exits 2', async () => {
  const cases = [
    ['syntax.yaml', ['routes:', '  a: [unclosed'], /syntax\.yaml:\d+:\d+: /],
    ['auth.yaml', ['routes:', '  a:', '    url: http://10.0.0.1:80', '    auth: magic'], /auth\.yaml:4: auth: must be passthrough, \{bearer: \{tokens_file\}\} or \{jwt:/],
    ['jwt.yaml', ['routes:', '  a:', '    url: http://10.0.0.1:80', '    auth: {jwt: {issuer: i, audience: a}}'], /jwt\.yaml:4: jwt: needs exactly one of jwks_file and jwks_url/],
    ['policy.yaml', ['routes:', '  a:', '    url: http://10.0.0.1:80', '    policy:', '      default: maybe'], /policy\.yaml:5: default: must be allow, deny or approve/],
    ['syslog.yaml', ['routes:', '  a: http://10.0.0.1:80', 'audit:', '  syslog: ftp://x:1'], /syslog\.yaml:4: syslog: 'ftp:\/\/x:1' must be tcp:\/\/, udp:\/\/ or tls:\/\//],
    ['forms.yaml', ['routes:', '  a:', '    url: http://10.0.0.1:80', '    stdio: ["/bin/cat"]'], /forms\.yaml:2: a: needs exactly one of url:, stdio: and sandbox:/],
    ['noroutes.yaml', ['edges: ["e:1"]'], /noroutes\.yaml: routes: is missing/],
  ];
  for (const [name, lines, re] of cases) {
    const r = await report(conf(name, lines));
    assert.equal(r.code, 1, `${name}: ${r.stdout}`);
    assert.match(r.stderr, new RegExp('^postern boundary: .*' + re.source), name);
    assert.equal(r.stdout, '', `${name}: no partial report`);
  }
  const missing = await report(path.join(d, 'nope.yaml'));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /nope\.yaml: .*No such file/);
  const u = await postern(['boundary', '--format', 'svg', '-c', 'x'], { timeoutMs: 5000 });
  assert.equal(u.code, 2);
  assert.match(u.stderr, /--format must be text, mermaid or both/);
  const n = await postern(['boundary'], { timeoutMs: 5000 });
  assert.equal(n.code, 2);
  assert.match(n.stderr, /-c FILE is required/);
  const h = await postern(['boundary', '--help'], { timeoutMs: 5000 });
  assert.equal(h.code, 0);
  assert.match(h.stdout, /usage: postern boundary -c gateway\.yaml/);
});
