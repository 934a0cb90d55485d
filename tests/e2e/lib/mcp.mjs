// MCP over the tunnel with the official TypeScript SDK: a fetch that resolves every name to a chosen
// address (the tunnel hostnames live under a test domain nobody resolves) and trusts a given CA.
import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Agent, fetch as ufetch } from 'undici';

// opts: {ca: path|undefined, address: '127.0.0.1', port: number|undefined (overrides URL port for dialing)}
export function pinnedFetch({ ca, address = '127.0.0.1', port } = {}) {
  const agent = new Agent({
    connect: {
      ca: ca ? readFileSync(ca) : undefined,
      lookup: (_host, options, cb) => (options && options.all ? cb(null, [{ address, family: 4 }]) : cb(null, address, 4)),
      ...(port ? { port } : {}),
    },
  });
  const f = (url, init = {}) => ufetch(url, { ...init, dispatcher: agent });
  f.close = () => agent.close();
  return f;
}

// Connects an SDK client to url; returns {client, transport, close}.
export async function connectMcp(url, opts = {}) {
  const fetch = pinnedFetch(opts);
  const transport = new StreamableHTTPClientTransport(new URL(url), { fetch });
  const client = new Client({ name: 'postern-test', version: '1.0.0' });
  await client.connect(transport);
  return {
    client,
    transport,
    close: async () => {
      await transport.terminateSession().catch(() => {}); // DELETE: the server frees the session now
      await client.close().catch(() => {});
      await fetch.close().catch(() => {});
    },
  };
}
