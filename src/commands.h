/* The subcommand table: one line per command. Add yours here, keeping the order of `postern --help`. */
#ifndef POSTERN_COMMANDS_H
#define POSTERN_COMMANDS_H

int check_main(int argc, char **argv);
int certs_main(int argc, char **argv);
int sandbox_main(int argc, char **argv);
int tunnel_main(int argc, char **argv);
int edge_main(int argc, char **argv);
int proxy_main(int argc, char **argv);
int gateway_main(int argc, char **argv);
int audit_main(int argc, char **argv);
int auth_main(int argc, char **argv);
int approvals_main(int argc, char **argv);
int pins_main(int argc, char **argv);
int boundary_main(int argc, char **argv);
int worker_main(int argc, char **argv);
int control_main(int argc, char **argv);
int agent_main(int argc, char **argv);

#define POSTERN_COMMANDS \
	{ "check", check_main, "validate a config file without starting (-c FILE)" }, \
	{ "certs", certs_main, "customer CA and server certificate: init, renew" }, \
	{ "sandbox", sandbox_main, "isolated command execution: run, serve (MCP tools)" }, \
	{ "tunnel", tunnel_main, "tunnel records and tokens on the edge: create, rotate, list, delete" }, \
	{ "edge", edge_main, "the public relay: connector links, SNI and mTLS client entries (-c edge.yaml)" }, \
	{ "gateway", gateway_main, "customer side: connector to the edges + inner proxy (-c gateway.yaml)" }, \
	{ "proxy", proxy_main, "the inner proxy alone on listen_addr (gateway without a connector)" }, \
	{ "audit", audit_main, "the MCP audit log: verify FILE... (the hash chain across rotated files)" }, \
	{ "auth", auth_main, "client authentication of proxy routes: hash-token SUBJECT (a tokens_file line)" }, \
	{ "approvals", approvals_main, "held tool calls: list, approve ID, deny ID (the gateway's admin socket)" }, \
	{ "pins", pins_main, "tool-definition pins: list, accept ROUTE TOOL (the gateway's admin socket)" }, \
	{ "boundary", boundary_main, "who can see what, from a gateway config: text or Mermaid (-c FILE)" }, \
	{ "worker", worker_main, "self-hosted sandbox worker: runs sessions' tools from an environment's queue (-c worker.yaml)" }, \
	{ "control", control_main, "the control plane of self-hosted sandboxes: environments API (-c control.yaml)" }, \
	{ "agent", agent_main, "an agent loop on a control plane: sandbox tools via the worker, MCP via an edge (--plan or a model)" },

#endif
