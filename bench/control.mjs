// postern control latencies (bench/control.sh): one client, sequential calls over keep-alive HTTP on loopback.
//   work: session create -> poll (the item) -> ack -> first heartbeat, per item; then heartbeats of one lease.
//   events: append of one agent.tool_use event; list of the last page; SSE delivery (append -> event on an
//   open stream). Prints p50/p99 in ms per step. The tool-call round trip needs a worker: bench/worker.mjs.
import { startControl, sessionsToken, stopSharedRedis } from '../tests/e2e/lib/control.mjs';

const N = Number(process.env.CONTROL_BENCH_N || 300);
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const t = async (f) => { const t0 = performance.now(); const r = await f(); return [performance.now() - t0, r]; };
const row = (name, a) => console.log(`${name.padEnd(28)} p50 ${pct(a, 0.5).toFixed(2).padStart(7)} ms  p99 ${pct(a, 0.99).toFixed(2).padStart(7)} ms  (n=${a.length})`);

const c = await startControl({ store: process.env.CONTROL_BENCH_STORE || 'sqlite' });
try {
  const m = { create: [], poll: [], ack: [], hb1: [], hb: [], append: [], list: [], sse: [] };
  let last;
  for (let i = 0; i < N; i++) {
    const [dc, s] = await t(() => c.createSession());
    const [dp, w] = await t(() => c.poll('block_ms=999', 'bench'));
    const tok = sessionsToken(w.body);
    const wp = `/v1/environments/${c.envId}/work/${w.body.id}`;
    const [da] = await t(() => c.api(`${wp}/ack`, { bearer: tok, method: 'POST' }));
    const [dh, hb] = await t(() => c.api(`${wp}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT`, { bearer: tok, method: 'POST' }));
    m.create.push(dc); m.poll.push(dp); m.ack.push(da); m.hb1.push(dh);
    last = { s, tok, wp, lh: hb.body.last_heartbeat };
  }
  for (let i = 0; i < N; i++) {
    const [d, hb] = await t(() => c.api(`${last.wp}/heartbeat?expected_last_heartbeat=${encodeURIComponent(last.lh)}`, { bearer: last.tok, method: 'POST' }));
    last.lh = hb.body.last_heartbeat;
    m.hb.push(d);
  }
  const st = await c.stream(last.s.id, { bearer: last.tok });
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    await c.api(`/v1/sessions/${last.s.id}/events`, { key: c.apiKey, body: { events: [{ type: 'agent.tool_use', name: 'bash', input: { command: `echo ${i}` } }] } });
    m.append.push(performance.now() - t0);
    await st.sse.next(5000);
    m.sse.push(performance.now() - t0);
    const [dl] = await t(() => c.api(`/v1/sessions/${last.s.id}/events?limit=100`, { bearer: last.tok }));
    m.list.push(dl);
  }
  st.close();
  row('session create', m.create); row('work poll (item ready)', m.poll); row('work ack', m.ack);
  row('first heartbeat', m.hb1); row('heartbeat', m.hb); row('event append', m.append);
  row('append -> SSE delivery', m.sse); row('events list (100)', m.list);
} finally { await c.stop(); await stopSharedRedis(); }
