// The audit log's sinks against a real Debian rsyslogd (scripts/deps.sh installs rsyslog and
// rsyslog-openssl), started here on loopback as a foreground process with its own config and work dir:
// imtcp (octet-counted RFC 5424), imudp, and imtcp with the ossl stream driver (RFC 5425 TLS). Records are
// written by `postern audit emit` (proxy/auditlog through its real sinks); what rsyslog received must equal
// the file's lines. Also: rsyslog stopped mid-run (records dropped and counted once the queue is full, every
// drop logged, alog_write never blocked), restarted (delivery resumes), and a kill -9 right after record N
// was acknowledged (the file holds all N lines and verifies; the next start continues the chain).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, appendFileSync } from 'node:fs';
import path from 'node:path';
import { BIN, start, run, postern, tmpdir, rmrf, freePort, waitForPort, waitUntil, sleep, stopAll } from './lib/proc.mjs';
import { makeCA, makeLeaf } from './lib/certs.mjs';
import { requireRsyslog, startRsyslog as startRsyslogIn, received } from './lib/rsyslog.mjs';

let dir, modDir, ca, leaf, otherCa, rs;

// One rsyslogd: TCP, UDP and TLS inputs on fresh ports (or the given ones).
const startRsyslog = (name, ports) => startRsyslogIn(dir, modDir, name, { ports, tls: { ca, leaf } });

before(async () => {
  modDir = requireRsyslog(['imtcp.so', 'imudp.so', 'lmnsd_ossl.so']);
  dir = tmpdir('postern-audit-');
  ca = makeCA(dir, 'siem-ca');
  leaf = makeLeaf(dir, ca, 'siem', ['DNS:localhost', 'IP:127.0.0.1']);
  otherCa = makeCA(dir, 'other-ca');
  rs = await startRsyslog('main');
});

after(async () => { await stopAll(); if (dir) rmrf(dir); });

function config(name, lines) {
  const file = path.join(dir, `${name}.jsonl`);
  const yaml = path.join(dir, `${name}.yaml`);
  writeFileSync(yaml, ['audit:', `  file: ${file}`, `  syslog_hostname: ${name}`, ...lines.map((l) => `  ${l}`)].join('\n') + '\n');
  return { yaml, file };
}

async function emit(yaml, args = [], opts = {}) {
  const r = await postern(['audit', 'emit', '-c', yaml, ...args], { timeoutMs: 60000, ...opts });
  const m = r.stderr.match(/^\{"emit":"done".*\}$/m);
  return { ...r, sum: m ? JSON.parse(m[0]) : null };
}

const fileLines = (f) => readFileSync(f, 'utf8').split('\n').filter(Boolean);

test('TCP, UDP and TLS: rsyslog receives exactly the file lines, RFC 5424 fields', async () => {
  for (const [proto, url, extra, args] of [
    ['tcp', `tcp://127.0.0.1:${rs.ports.tcp}`, [], []],
    ['udp', `udp://127.0.0.1:${rs.ports.udp}`, [], ['--interval-ms', '1']],
    ['tls', `tls://localhost:${rs.ports.tls}`, [`syslog_ca_file: ${ca.cert}`], []],
  ]) {
    const name = `t-${proto}`;
    const { yaml, file } = config(name, [`syslog: ${url}`, 'syslog_facility: local0', ...extra]);
    const N = 200;
    const r = await emit(yaml, ['--count', String(N), ...args]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.sum.written, N);
    assert.equal(r.sum.syslog_sent, N, `${proto}: sent`);
    assert.equal(r.sum.syslog_dropped, 0);
    const lines = fileLines(file);
    assert.equal(lines.length, N);
    await waitUntil(() => received(rs, name).length >= N, 10000, 50, `${proto}: ${N} messages at rsyslog`);
    await sleep(200);
    const got = received(rs, name);
    assert.equal(got.length, N, `${proto}: exactly N messages`);
    assert.deepEqual(got.map((g) => g.msg), lines, `${proto}: each message is the file's line`);
    for (const g of got) {
      const rec = JSON.parse(g.msg);
      assert.equal(g.ver, '1');
      assert.equal(g.app, 'postern');
      assert.equal(g.msgid, 'mcp');
      assert.equal(g.sd, '-');
      assert.equal(g.pri, 16 * 8 + (rec.decision === 'deny' ? 4 : 6), `${proto}: PRI local0 + severity`);
      assert.equal(rec.args.password, '[REDACTED]');
    }
    const v = await postern(['audit', 'verify', file]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
  }
});

test('TLS with a CA that did not sign the SIEM: no connection, records dropped at shutdown and counted', async () => {
  const { yaml } = config('t-badca', [`syslog: tls://localhost:${rs.ports.tls}`, `syslog_ca_file: ${otherCa.cert}`]);
  const r = await emit(yaml, ['--count', '5', '--drain-ms', '1500']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.sum.written, 5);
  assert.equal(r.sum.syslog_sent, 0);
  assert.equal(r.sum.syslog_queued, 5, 'still queued when the drain gave up');
  assert.match(r.stderr, /audit syslog connect failed.*certificate verify failed/);
  // dropped at shutdown (after the summary): each is in a drop line
  const logged = [...r.stderr.matchAll(/audit records dropped" sink=syslog count=(\d+) seq_first=(\d+) seq_last=(\d+) reason=shutdown/g)];
  assert.equal(logged.reduce((a, m) => a + +m[1], 0), 5, r.stderr);
  assert.equal(+logged[0][2], 0);
  assert.equal(+logged[logged.length - 1][3], 4);
  assert.equal(received(rs, 't-badca').length, 0);
});

test('stdout sink: the same lines as the file', async () => {
  const { yaml, file } = config('t-stdout', ['stdout: true']);
  const r = await emit(yaml, ['--count', '50']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.sum.stdout_written, 50);
  assert.deepEqual(r.stdout.split('\n').filter(Boolean), fileLines(file));
});

test('rsyslog stopped mid-run: drops counted and logged once the queue is full, writes never block; restarted: delivery resumes', async () => {
  const down = await startRsyslog('flap');
  const name = 't-flap', N = 1500;
  const { yaml, file } = config(name, [`syslog: tcp://127.0.0.1:${down.ports.tcp}`, 'queue: 100']);
  const em = start(BIN, ['audit', 'emit', '-c', yaml, '--count', String(N), '--interval-ms', '2', '--drain-ms', '20000'], { name: 'emit' });
  await waitUntil(() => received(down, name).length >= 100, 10000, 20, 'first records at rsyslog');
  await down.proc.kill('SIGTERM');
  const before = received(down, name).length;
  await em.waitFor(/audit syslog connection lost/, 10000);
  await em.waitFor(/audit records dropped" sink=syslog/, 15000);
  await sleep(300);
  const up = await startRsyslog('flap', down.ports); // same ports, same output file
  await em.waitFor(/audit syslog connected/, 40000, em.log.lastIndexOf('connection lost'));
  const res = await em.exited;
  assert.equal(res.code, 0, em.log);
  const sum = JSON.parse(em.log.match(/^\{"emit":"done".*\}$/m)[0]);
  assert.equal(sum.written, N);
  assert.ok(sum.syslog_dropped > 0, 'records were dropped while rsyslog was down');
  assert.equal(sum.syslog_sent + sum.syslog_dropped, N, 'every record is sent or counted as dropped');
  // every drop has its log line: the counts in the coalesced lines add up to the counter
  const logged = [...em.log.matchAll(/audit records dropped" sink=syslog count=(\d+)/g)].reduce((a, m) => a + +m[1], 0);
  assert.equal(logged, sum.syslog_dropped, 'the drop log lines account for every dropped record');
  assert.ok(sum.max_write_us < 500000, `alog_write took ${sum.max_write_us} us at most: it must not wait for the sink`);
  const lines = fileLines(file);
  assert.equal(lines.length, N);
  await waitUntil(() => received(up, name).length >= sum.syslog_sent - 50, 10000, 50, 'records after the restart');
  await sleep(300);
  const got = received(up, name);
  console.log(`flap: sent ${sum.syslog_sent} dropped ${sum.syslog_dropped} received ${got.length} max_write_us ${sum.max_write_us}`);
  const bySeq = new Map(lines.map((l) => [JSON.parse(l).seq, l]));
  for (const g of got) assert.equal(g.msg, bySeq.get(JSON.parse(g.msg).seq), 'a received message is its file line');
  const seqs = got.map((g) => JSON.parse(g.msg).seq);
  assert.equal(new Set(seqs).size, seqs.length, 'no duplicates');
  assert.ok(got.length > before, 'delivery resumed after the restart');
  assert.ok(Math.max(...seqs) === N - 1, 'the last record reached the restarted rsyslog');
  // sent but not received: only what was in flight on the connection rsyslog closed
  assert.ok(got.length <= sum.syslog_sent && got.length >= sum.syslog_sent - 50,
    `received ${got.length} of ${sum.syslog_sent} sent`);
  await up.proc.kill('SIGTERM');
});

test('kill -9 right after record N is acknowledged: the file has all N lines and verifies; the chain continues', async () => {
  const { yaml, file } = config('t-kill', ['rotate_bytes: 16K', 'keep: 100']);
  const N = 300;
  const r = await emit(yaml, ['--count', String(N), '--kill-after', String(N), '--acks']);
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  assert.match(r.stderr, new RegExp(`^ack ${N}$`, 'm'));
  assert.doesNotMatch(r.stderr, /"emit":"done"/);
  const files = () => {
    const out = [];
    for (let i = 100; i >= 1; i--) if (existsSync(`${file}.${i}`)) out.push(`${file}.${i}`);
    return [...out, file];
  };
  const all = files().flatMap(fileLines);
  assert.equal(all.length, N, 'every acknowledged line is in the files');
  assert.equal(JSON.parse(all[N - 1]).seq, N - 1);
  let v = await postern(['audit', 'verify', ...files()]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.ok(files().length > 1, 'the run rotated');
  // a torn last line (a crash inside write) is cut on the next start, and the chain goes on
  appendFileSync(file, '{"prev":"abc","seq":');
  const r2 = await emit(yaml, ['--count', '10']);
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stderr, /truncated a torn last line/);
  v = await postern(['audit', 'verify', ...files()]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, new RegExp(`${N + 10} record\\(s\\).*seq 0\\.\\.${N + 9}`));
});
