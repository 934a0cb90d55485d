// A real Debian rsyslogd for audit tests, started on loopback as a foreground process with its own config and
// work dir: imtcp (octet-counted RFC 5424), imudp, and (with tls) imtcp on the ossl stream driver (RFC 5425).
// Every message goes to <wd>/out.log as "pri|version|hostname|app|procid|msgid|sd|msg".
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import path from 'node:path';
import { start, freePort, waitForPort } from './proc.mjs';

// The directory holding rsyslog's input modules, found from the installed package (not assumed).
export function findModDir() {
  const cands = [];
  try {
    const files = execFileSync('dpkg', ['-L', 'rsyslog'], { encoding: 'utf8' }).split('\n');
    const f = files.find((l) => l.endsWith('/imtcp.so'));
    if (f) cands.push(path.dirname(f));
  } catch { /* not a dpkg system */ }
  cands.push('/usr/lib/x86_64-linux-gnu/rsyslog', '/usr/lib/aarch64-linux-gnu/rsyslog', '/usr/lib/rsyslog');
  return cands.find((d) => existsSync(path.join(d, 'imtcp.so')));
}

// Checks what the host has (rsyslog 8 and its modules) and fails with what to install; returns the module dir.
export function requireRsyslog(modules = ['imtcp.so', 'imudp.so']) {
  const v = execFileSync('rsyslogd', ['-v'], { encoding: 'utf8' });
  assert.match(v, /rsyslogd\s+8\./, 'rsyslogd -v: rsyslog 8 expected (scripts/deps.sh installs it)');
  const modDir = findModDir();
  assert.ok(modDir, 'rsyslog input modules (imtcp.so) not found: run scripts/deps.sh');
  for (const m of modules) assert.ok(existsSync(path.join(modDir, m)), `${modDir}/${m} missing (rsyslog, rsyslog-openssl)`);
  return modDir;
}

// tls: {ca, leaf} (certificate files) to add the TLS input; ports: reuse given ports (a restart).
export async function startRsyslog(dir, modDir, name, { ports, tls } = {}) {
  const wd = path.join(dir, `rs-${name}`);
  mkdirSync(path.join(wd, 'work'), { recursive: true });
  const p = ports || { tcp: await freePort(), udp: await freePort(), tls: tls ? await freePort() : 0 };
  const out = path.join(wd, 'out.log'), conf = path.join(wd, 'rsyslog.conf');
  writeFileSync(conf, `
global(workDirectory="${wd}/work" maxMessageSize="256k")
module(load="imtcp" maxSessions="20")
module(load="imudp")
template(name="t" type="string" string="%pri%|%protocol-version%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n")
ruleset(name="r") { action(type="omfile" file="${out}" template="t") }
input(type="imtcp" port="${p.tcp}" address="127.0.0.1" ruleset="r")
input(type="imudp" port="${p.udp}" address="127.0.0.1" ruleset="r")
${tls ? `input(type="imtcp" port="${p.tls}" address="127.0.0.1" ruleset="r" streamDriver.name="ossl" streamDriver.mode="1"
      streamDriver.authMode="anon" streamDriver.CAFile="${tls.ca.cert}" streamDriver.CertFile="${tls.leaf.cert}"
      streamDriver.KeyFile="${tls.leaf.key}")` : ''}
`);
  const proc = start('rsyslogd', ['-n', '-M', modDir, '-f', conf, '-i', path.join(wd, 'pid')], { name: `rsyslogd-${name}` });
  await waitForPort(p.tcp);
  if (tls) await waitForPort(p.tls);
  return { proc, ports: p, out, name };
}

// What rsyslog wrote for one sender host name.
export function received(rs, host) {
  if (!existsSync(rs.out)) return [];
  return readFileSync(rs.out, 'utf8').split('\n').filter(Boolean).map((l) => {
    const f = l.split('|');
    return { pri: +f[0], ver: f[1], host: f[2], app: f[3], procid: f[4], msgid: f[5], sd: f[6], msg: f.slice(7).join('|') };
  }).filter((r) => r.host === host);
}
