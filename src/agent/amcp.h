/* The agent's MCP client over Streamable HTTP (one server, one session): initialize, tools/list, tools/call,
 * with the same inner TLS as any client of a postern edge (the route's hostname is the SNI and the name
 * checked against the customer CA; an optional connect address sends the TCP connection elsewhere, for
 * loopback). Answers may be JSON or an SSE stream (the answer with our id is taken from it). */
#ifndef POSTERN_AGENT_AMCP_H
#define POSTERN_AGENT_AMCP_H
#include <jansson.h>
#include <stddef.h>

typedef struct amcp amcp;

/* url: https://HOST[:PORT]/PATH (http:// for a plain local server). ca_file and connect_addr may be NULL. */
amcp *amcp_new(const char *name, const char *url, const char *ca_file, const char *connect_addr, char *err, size_t errlen);
void amcp_free(amcp *m);
const char *amcp_name(const amcp *m);
/* initialize + notifications/initialized. */
int amcp_open(amcp *m, long timeout_ms, char *err, size_t errlen);
/* *tools: the tools array of tools/list (caller's reference). */
int amcp_list(amcp *m, long timeout_ms, json_t **tools, char *err, size_t errlen);
/* *result: the CallToolResult, or a JSON-RPC error turned into {"isError":true,"content":[{text}]}
 * (a guard's deny is such an error); -errno only for transport failures and timeouts. */
int amcp_call(amcp *m, const char *tool, json_t *args, long timeout_ms, json_t **result, char *err, size_t errlen);

#endif
