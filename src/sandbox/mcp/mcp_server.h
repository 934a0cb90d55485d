/* MCP server protocol face (JSON-RPC 2.0, legacy-era lifecycle), pure: bytes in, response lines out.
 * The stdio framing is one JSON message per line. Tool execution is the caller's callback, so the
 * protocol itself does no I/O and is fuzzable.
 *
 * Supported protocol versions: 2025-03-26 (JSON-RPC batches accepted), 2025-06-18, 2025-11-25.
 * initialize negotiates: the client's version when supported, else our latest.
 * Methods: initialize, notifications/initialized, ping, tools/list, tools/call,
 * notifications/cancelled (passed to the cancel callback in asynchronous mode). Anything else: -32601 for requests,
 * ignored for notifications. Errors: -32700 parse error, -32600 invalid request (also: message over the
 * size cap, not initialized, batch after 2025-03-26), -32601, -32602 invalid params (unknown tool, bad
 * params shape). Tool failures are results with isError: true. */
#ifndef POSTERN_MCP_SERVER_H
#define POSTERN_MCP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

typedef struct mcps mcps;

#define MCPS_DEFAULT_MAX_MESSAGE (4u << 20)
#define MCPS_MAX_OUTPUT (64u << 20)
#define MCPS_LATEST_VERSION "2025-11-25"

/* Runs one tool. args is an object (borrowed). Returns 0 with *result set to a new CallToolResult
 * object ({"content":[...],"isError":bool}), or -ENOENT for an unknown tool name. */
typedef int (*mcps_call_fn)(void *ud, const char *tool, json_t *args, json_t **result);

/* Asynchronous tool calls (optional): tools/call is handed to start() with new references to the request
 * id and the arguments (the callee owns them) and answered later with mcps_complete(). start() returns
 * <0 to refuse (then the references stay with mcps and the request is answered at once: -ENOENT as an
 * unknown tool, anything else as "too many tool calls pending"). cancel() receives the requestId
 * of a notifications/cancelled. A tools/call inside a batch is answered on its own line. */
typedef int (*mcps_start_fn)(void *ud, json_t *id, const char *tool, json_t *args);
typedef void (*mcps_cancel_fn)(void *ud, json_t *request_id);

struct mcps_config {
	const char *server_name;    /* serverInfo.name */
	const char *server_version; /* serverInfo.version */
	const char *instructions;   /* optional */
	json_t *tools;		    /* the tools/list array (borrowed; must outlive the mcps) */
	size_t max_message;	    /* bytes per message; 0 = MCPS_DEFAULT_MAX_MESSAGE */
	mcps_call_fn call;
	mcps_start_fn start; /* when set, used instead of call */
	mcps_cancel_fn cancel;
	void *ud;
};

mcps *mcps_new(const struct mcps_config *c);
void mcps_free(mcps *m);

/* Feeds bytes read from the transport. Complete lines are handled at once (tool calls run inside this
 * call, through the callback). Returns 0, or -ENOBUFS when unread output passed MCPS_MAX_OUTPUT
 * (the caller must drain first). */
int mcps_feed(mcps *m, const char *data, size_t len);
/* At transport EOF: a final line without '\n' is handled as a message. */
int mcps_finish(mcps *m);
/* Pending output: whole lines, each ending in '\n'. */
const char *mcps_output(const mcps *m, size_t *len);
void mcps_consume(mcps *m, size_t n);

/* Handles one message (no framing); the response line, if any, is appended to the output. */
int mcps_handle(mcps *m, const char *msg, size_t len);

bool mcps_initialized(const mcps *m);		/* initialize was answered */
const char *mcps_protocol_version(const mcps *m); /* negotiated, or NULL */
const char *mcps_client_name(const mcps *m);	/* clientInfo.name, or NULL */

/* Answers an asynchronous tools/call: rc 0 with result (stolen), -ENOENT for an unknown tool, other <0
 * for an internal error. id is borrowed. */
int mcps_complete(mcps *m, json_t *id, int rc, json_t *result);

/* Helpers for tool implementations: {"content":[{"type":"text","text":text}],"isError":is_error}.
 * text must be valid UTF-8 (NULL when not). */
json_t *mcps_text_result(const char *text, size_t len, bool is_error);

#endif
