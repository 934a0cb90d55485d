// Opens N TLS connections (inner TLS, through the edge) and holds them idle; prints "held N".
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
const [host, port, servername, n, caFile] = process.argv.slice(2);
const ca = readFileSync(caFile);
let ok = 0, failed = 0;
const socks = [];
function one() {
  return new Promise((resolve) => {
    const s = tls.connect({ host, port: Number(port), servername, ca }, () => { ok++; resolve(); });
    s.on('error', () => { failed++; resolve(); });
    socks.push(s);
  });
}
for (let i = 0; i < Number(n); i += 50) await Promise.all(Array.from({ length: Math.min(50, Number(n) - i) }, one));
console.log(`held ${ok} failed ${failed}`);
setInterval(() => {}, 1 << 30);
