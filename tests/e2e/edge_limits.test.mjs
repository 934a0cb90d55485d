// Unauthenticated connector connections are bounded: past 256 waiting to register, more are closed at once,
// the edge keeps serving, and a real gateway registers once the flood is gone.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { stopAll, sleep } from './lib/proc.mjs';
import { makeEdges, createTunnel, startGateway } from './lib/tunnel.mjs';

let ctx;
after(async () => { await stopAll(); ctx?.cleanup(); });

test('connections waiting to register are capped; the edge recovers', async () => {
  ctx = await makeEdges(1);
  const edge = await ctx.edges[0].start();
  const socks = [];
  let closedEarly = 0;
  for (let i = 0; i < 300; i++) {
    const s = net.connect({ port: ctx.edges[0].connector, host: '127.0.0.1' });
    s.on('error', () => {});
    s.on('close', () => { closedEarly++; });
    socks.push(s);
    if (i % 50 === 49) await sleep(50);
  }
  await sleep(1000);
  assert.ok(closedEarly >= 40, `expected the connections past the cap to be closed, got ${closedEarly}`);
  assert.ok(closedEarly <= 60, `only the connections past the cap may be closed, got ${closedEarly}`);
  await edge.waitFor(/msg="connector refused" reason="256 connections waiting to register"/);
  for (const s of socks) s.destroy();
  await sleep(200);
  const t = await createTunnel(ctx);
  await startGateway(ctx, t, { x: 'http://127.0.0.1:9' }, { connections: 1 });
});
