/* Streamable HTTP in front of a stdio MCP server: one child process per MCP session.
 *
 * The proxy hands each complete HTTP request for a `stdio:` or `sandbox:` route to mbr_handle(). A POST
 * without Mcp-Session-Id must carry `initialize`: a child is spawned and the response carries a fresh
 * Mcp-Session-Id. Later POSTs are written to that child's stdin as one line; a request waits for the
 * response line with the same id (application/json), notifications and responses get 202. DELETE ends the
 * session; GET (server-initiated stream) is 405, which the spec allows. A session ends on DELETE, child
 * exit, or idle timeout; its child is killed (SIGTERM, SIGKILL after 5 s).
 * Everything runs on the caller's libuv loop. */
#ifndef POSTERN_MCPBRIDGE_H
#define POSTERN_MCPBRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct mbr mbr;
typedef struct mbr_req mbr_req;

typedef struct mbr_opts {
	const char *name;            /* route name, for logs */
	const char *const *argv;     /* the stdio MCP server command; copied */
	const char *workspace_root;  /* sandbox routes: each session gets <root>/<session id>, passed as
					--workspace after argv; NULL = none */
	unsigned max_sessions;       /* 0 = 16 */
	uint32_t idle_timeout_ms;    /* 0 = 30 min */
	uint32_t request_timeout_ms; /* wait for a response line; 0 = 15 min */
	size_t max_message;          /* request body and response line cap; 0 = 4 MiB */
} mbr_opts;

typedef struct mbr_response {
	int status;
	const char *content_type; /* NULL when no body */
	const char *session_id;   /* Mcp-Session-Id to send, or NULL */
	const char *allow;        /* Allow header for 405, or NULL */
	const char *body;
	size_t body_len;
} mbr_response;

/* Called once per mbr_handle that returned 0, from the loop or from inside mbr_handle; r is valid only
 * during the call. Not called after mbr_req_cancel. */
typedef void (*mbr_done_cb)(void *ud, const mbr_response *r);

mbr *mbr_new(uv_loop_t *loop, const mbr_opts *o, char *err, size_t errlen);
/* Kills every session's child; handles close on the loop. */
void mbr_free(mbr *b);
/* method: "POST", "GET", "DELETE", ...; session_id: the Mcp-Session-Id header or NULL. *out (may be NULL)
 * lets the caller cancel while waiting. 0, or <0 (no callback then). */
int mbr_handle(mbr *b, const char *method, const char *session_id, const uint8_t *body, size_t n,
	       mbr_done_cb cb, void *ud, mbr_req **out);
/* The client went away: the callback will not fire. */
void mbr_req_cancel(mbr_req *r);
unsigned mbr_sessions(const mbr *b);

/* JSON-RPC message classification (pure; unit-tested and fuzzed). */
typedef enum mbr_kind { MBR_INVALID = 0, MBR_REQUEST, MBR_NOTIFICATION, MBR_RESPONSE } mbr_kind;
/* Classifies one JSON-RPC message. For requests and responses, idkey (cap idlen) gets a canonical form of the
 * id ("n:5", "s:abc") and, for requests, method (cap mlen) the method name. why gets a reason when invalid. */
mbr_kind mbr_classify(const char *json, size_t n, char *idkey, size_t idlen, char *method, size_t mlen,
		      char *why, size_t whylen);

#endif
