// Preload (node --require) for third-party clients that take only a URL (the MCP conformance suite, the
// Inspector CLI): makes test names resolve to loopback and adds headers to requests for those names.
//   POSTERN_TEST_RESOLVE="SUFFIX=ADDR"   e.g. ".tunnel.test=127.0.0.1": every name ending in SUFFIX is ADDR
//   POSTERN_TEST_HEADERS='{"authorization":"Bearer ..."}'   added to every undici request (Node's fetch, the
//     undici package) whose host ends in SUFFIX; other hosts (the direct run) get nothing
// Trust for the route's certificate comes from NODE_EXTRA_CA_CERTS. Nothing here touches other names.
'use strict';
const dns = require('node:dns');
const dc = require('node:diagnostics_channel');

const spec = process.env.POSTERN_TEST_RESOLVE || '';
const eq = spec.indexOf('=');
const suffix = eq > 0 ? spec.slice(0, eq).toLowerCase() : '';
const addr = eq > 0 ? spec.slice(eq + 1) : '';
const ours = (host) => !!suffix && typeof host === 'string' && host.toLowerCase().endsWith(suffix);

if (suffix) {
  const orig = dns.lookup;
  // net and tls read dns.lookup at connect time, so replacing the property covers every socket.
  dns.lookup = function lookup(host, opts, cb) {
    if (typeof opts === 'function') { cb = opts; opts = {}; }
    if (!ours(host)) return orig.call(this, host, opts, cb);
    const all = typeof opts === 'object' && opts !== null && opts.all;
    process.nextTick(() => (all ? cb(null, [{ address: addr, family: 4 }]) : cb(null, addr, 4)));
    return undefined;
  };
}

const headers = process.env.POSTERN_TEST_HEADERS ? JSON.parse(process.env.POSTERN_TEST_HEADERS) : {};
if (Object.keys(headers).length) {
  // undici (inside Node's fetch and as a package) announces each request here before it is sent; the
  // channel is global by name, so one subscriber sees both copies.
  dc.subscribe('undici:request:create', ({ request }) => {
    let host = '';
    try { host = new URL(request.origin).hostname; } catch { return; }
    if (!ours(host)) return;
    for (const [k, v] of Object.entries(headers)) request.addHeader(k, v);
  });
}
