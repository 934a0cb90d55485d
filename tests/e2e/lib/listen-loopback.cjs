// Preload (node --require): listen(port) without a host binds 127.0.0.1 (or $LISTEN_HOST). For servers
// that bind every interface and have no option for it (server-everything: app.listen(PORT)).
'use strict';
const net = require('node:net');
const host = process.env.LISTEN_HOST || '127.0.0.1';
const orig = net.Server.prototype.listen;
net.Server.prototype.listen = function listen(...args) {
  const a0 = args[0];
  const isPort = typeof a0 === 'number' || (typeof a0 === 'string' && /^\d+$/.test(a0));
  if (isPort && typeof args[1] !== 'string') args.splice(1, 0, host);
  else if (a0 && typeof a0 === 'object' && !('path' in a0) && !('fd' in a0) && !('_handle' in a0) && a0.host === undefined)
    args[0] = { ...a0, host };
  return orig.apply(this, args);
};
