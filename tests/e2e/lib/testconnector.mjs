// A minimal connector written from docs/internals.md with Node's tls + http2, independent of the C
// connector: dials the edge, sends the registration line, reads the answer, then serves HTTP/2 (roles
// reversed: the edge opens CONNECT streams). Used to test the edge alone, and as a second implementation
// of the wire protocol.
import tls from 'node:tls';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';

// opts: {port, host='127.0.0.1', ca, servername='connect.edge.test', token, connectorId, slot=0,
//        onStream(stream, headers) (default: answers 200 and echoes), timeoutMs=10000}
// Resolves {reply, socket, server, session(): Promise<Http2Session>, close()} or rejects with the edge's
// error reply ({reply} attached) / a TLS error.
export function connectTestConnector(opts) {
  const {
    port, host = '127.0.0.1', ca, servername = 'connect.edge.test', token, connectorId = 'test-connector',
    slot = 0, onStream, timeoutMs = 10000, alpn = ['postern/1'], minVersion = 'TLSv1.3', line,
  } = opts;
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host, port, ca: ca ? readFileSync(ca) : undefined, servername, ALPNProtocols: alpn, minVersion });
    let buf = Buffer.alloc(0);
    let done = false;
    const timer = setTimeout(() => finish(new Error(`no registration answer within ${timeoutMs}ms`)), timeoutMs);
    const finish = (err, val) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) { sock.destroy(); reject(err); } else resolve(val);
    };
    sock.once('error', (e) => finish(e));
    sock.once('close', () => finish(Object.assign(new Error(`edge closed the connection; got: ${buf.toString()}`), { reply: parseLine(buf) })));
    sock.once('secureConnect', () => {
      sock.write(line ?? JSON.stringify({ v: 1, token, connector_id: connectorId, slot, version: 'test-js' }) + '\n');
    });
    const onData = (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(10);
      if (nl < 0) return;
      sock.removeListener('data', onData);
      sock.pause();
      const reply = JSON.parse(buf.subarray(0, nl).toString());
      const rest = buf.subarray(nl + 1);
      if (!reply.ok) {
        sock.removeAllListeners('close');
        finish(Object.assign(new Error(`registration refused: ${reply.error}`), { reply }));
        return;
      }
      // HTTP/2 bytes that came with the answer go back into the socket for the session to read.
      if (rest.length) sock.unshift(rest);
      const server = http2.createServer();
      const sessions = [];
      server.on('session', (s) => sessions.push(s));
      server.on('stream', onStream || echoStream);
      sock.removeAllListeners('close');
      sock.removeAllListeners('error');
      sock.on('error', () => {});
      server.emit('connection', sock);
      finish(null, {
        reply, socket: sock, server, sessions,
        close: () => { for (const s of sessions) s.destroy(); sock.destroy(); },
        goaway: () => { for (const s of sessions) s.goaway(); },
      });
    };
    sock.on('data', onData);
  });
}

function parseLine(b) {
  const nl = b.indexOf(10);
  try { return JSON.parse(b.subarray(0, nl < 0 ? b.length : nl).toString()); } catch { return null; }
}

// Answers 200 and echoes the bytes back; half-closes when the edge does.
export function echoStream(stream, headers) {
  stream.respond({ ':status': 200 });
  stream.pipe(stream);
}

// Answers 200 and terminates the inner TLS with cert/key, then hands the plaintext socket to handler(socket, headers).
export function tlsTerminatingStream({ cert, key }, handler) {
  const secureContext = tls.createSecureContext({ cert: readFileSync(cert), key: readFileSync(key) });
  return (stream, headers) => {
    stream.respond({ ':status': 200 });
    const t = new tls.TLSSocket(stream, { isServer: true, secureContext });
    t.on('error', () => stream.destroy());
    handler(t, headers);
  };
}
