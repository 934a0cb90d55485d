// The README's "Expose your own MCP server in 5 minutes" runs as written: its ```sh blocks are taken from
// README.md (so the two cannot drift) and run by bash, as root, in namespaces the test makes: a network
// namespace (its own loopback, so :443 and :7844 are free, and 10.0.0.5 on lo for the MCP server), a pid
// namespace (everything started dies with it), and a mount namespace where /etc and /var/lib are overlays on
// fresh empty upper directories (the blocks create /etc/postern and /var/lib/postern from nothing, and nothing
// reaches the host). Only the placeholders the reader fills in (<domain from step 1>, <token from step 1>)
// are replaced, with what step 1 printed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { run, tmpdir, rmrf } from './lib/proc.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function quickStartBlocks() {
  const md = readFileSync(path.join(root, 'README.md'), 'utf8');
  const start = md.indexOf('## Expose your own MCP server in 5 minutes');
  const end = md.indexOf('\n## ', start + 1);
  assert.ok(start >= 0 && end > start, 'README has the quick-start section');
  const sec = md.slice(start, end);
  // indented fenced blocks inside the numbered steps; the indentation is the list's, not the shell's
  return [...sec.matchAll(/^( *)```sh\n([\s\S]*?)^\1```/gm)].map((m) =>
    m[2].split('\n').map((l) => l.startsWith(m[1]) ? l.slice(m[1].length) : l).join('\n'));
}

test('README quick start: the blocks run as written and the client check gets serverInfo', { timeout: 120000 }, async () => {
  // As root (make check's case) the namespaces are made directly; otherwise a user namespace maps the caller
  // to root inside it, which is enough for the netns, the overlays and port 443 there. No skip either way.
  const asUser = process.getuid() !== 0 ? ['--map-root-user'] : [];
  const blocks = quickStartBlocks();
  assert.equal(blocks.length, 3, 'three blocks: edge, gateway, client check');
  assert.match(blocks[0], /postern tunnel create my-tools/);
  assert.match(blocks[1], /<domain from step 1>/);
  assert.match(blocks[2], /curl .*--cacert \/etc\/postern\/pki\/ca\.pem/);
  const d = tmpdir('postern-readme-');
  try {
    for (const x of ['etc-up', 'etc-work', 'lib-up', 'lib-work', 'home']) mkdirSync(path.join(d, x));
    writeFileSync(path.join(d, 'step1.sh'), blocks[0]);
    writeFileSync(path.join(d, 'step2.tmpl'), blocks[1]);
    writeFileSync(path.join(d, 'step3.sh'), blocks[2]);
    const everything = path.join(root, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
    const bindir = path.dirname(process.env.POSTERN_BIN);
    // `postern` on PATH is the binary under test
    const inner = `set -euo pipefail
ip link set lo up
ip addr add 10.0.0.5/32 dev lo
mount -t overlay overlay -o lowerdir=/etc,upperdir=${d}/etc-up,workdir=${d}/etc-work /etc
mount -t overlay overlay -o lowerdir=/var/lib,upperdir=${d}/lib-up,workdir=${d}/lib-work /var/lib
rm -rf /etc/postern /var/lib/postern
{ cat /etc/hosts; echo '127.0.0.1 edge.example.net'; } > ${d}/hosts && mount --bind ${d}/hosts /etc/hosts
mkdir -p ${d}/bin && ln -sf ${process.env.POSTERN_BIN} ${d}/bin/postern
export PATH=${d}/bin:$PATH
cd ${d}/home
PORT=8000 ${process.execPath} ${everything} streamableHttp > ${d}/mcp.log 2>&1 &
for i in $(seq 100); do (exec 3<>/dev/tcp/10.0.0.5/8000) 2>/dev/null && break; sleep 0.1; done
echo "== step 1"
bash -euo pipefail ${d}/step1.sh > ${d}/step1.out 2> ${d}/step1.err &
for i in $(seq 100); do grep -q '^}' ${d}/step1.out 2>/dev/null && break; sleep 0.1; done
cat ${d}/step1.out
DOM=$(${process.execPath} -e 'const o=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8").match(/^\\{[\\s\\S]*^\\}/m)[0]); process.stdout.write(o.domain)' ${d}/step1.out)
TOK=$(${process.execPath} -e 'const o=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8").match(/^\\{[\\s\\S]*^\\}/m)[0]); process.stdout.write(o.token)' ${d}/step1.out)
sed -e "s|<domain from step 1>|$DOM|g" -e "s|<token from step 1>|$TOK|g" ${d}/step2.tmpl > ${d}/step2.sh
echo "== step 2"
bash -euo pipefail ${d}/step2.sh > ${d}/step2.out 2>&1 &
for i in $(seq 150); do grep -q 'connector registered\\|msg="gateway ready\\|registered' ${d}/step2.out 2>/dev/null && break; sleep 0.1; done
echo "== step 3"
export DOMAIN=$DOM
bash -euo pipefail ${d}/step3.sh
echo
echo "== modes"
stat -c '%a %n' /etc/postern /etc/postern/pki /etc/postern/edge-pki /etc/postern/token /var/lib/postern
`;
    writeFileSync(path.join(d, 'inner.sh'), inner);
    const r = await run('unshare', [...asUser, '--net', '--mount', '--pid', '--fork', '--mount-proc', '--propagation', 'private', 'bash', path.join(d, 'inner.sh')], { timeoutMs: 90000 });
    const logs = ['step1.err', 'step2.out', 'mcp.log'].map((f) => existsSync(path.join(d, f)) ? `--- ${f}\n${readFileSync(path.join(d, f), 'utf8')}` : '').join('\n');
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n${logs}`);
    // step 1 printed the tunnel; step 3 got the MCP server's initialize answer through edge and gateway
    assert.match(r.stdout, /"domain": "[a-z0-9]+\.tunnel\.example\.net"/);
    assert.match(r.stdout, /"serverInfo":\{"name":"[^"]+"/, `${r.stdout}\n${logs}`);
    assert.match(r.stdout, /"protocolVersion":"2025-06-18"/);
    assert.match(r.stdout, /^755 \/etc\/postern$/m);
    assert.match(r.stdout, /^700 \/etc\/postern\/pki$/m);
    assert.match(r.stdout, /^600 \/etc\/postern\/token$/m);
    assert.match(readFileSync(path.join(d, 'step2.out'), 'utf8'), /gateway\.yaml: ok \(gateway\)/);
    // nothing reached the host
    assert.equal(existsSync('/etc/postern/edge.yaml'), false);
    assert.ok(existsSync(path.join(d, 'etc-up', 'postern', 'edge.yaml')), 'the blocks wrote into the overlay');
  } finally {
    rmrf(d);
  }
});
