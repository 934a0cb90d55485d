/* Streamable HTTP in front of a stdio MCP server, both eras: 2025-03-26 .. 2025-11-25 sessions (one child
 * process per MCP session, below) and 2026-07-28 stateless requests (a few shared children per route, at the
 * end of this comment).
 *
 * The proxy hands each complete HTTP request for a `stdio:` or `sandbox:` route to mbr_handle(). A POST
 * without Mcp-Session-Id must carry `initialize`: a child is spawned and the response carries a fresh
 * Mcp-Session-Id. Later POSTs are written to that child's stdin as one line. A request is answered with the
 * response line of the same id: as application/json when the response is the first thing the child sends for
 * it, else (when the client accepts text/event-stream) as an SSE stream that carries the request's progress
 * notifications, other server messages routed to it, and then the response. Notifications and responses
 * (the client's answers to server requests; ids are the child's own, not rewritten) get 202.
 * GET with Accept: text/event-stream opens the session's one standalone SSE stream (a second: 409) for
 * server-initiated messages. Every SSE event has an id `<stream>-<seq>` (stream 0 = the GET stream, n = the
 * n-th SSE POST of the session) and sits in a bounded per-session replay buffer; GET with Last-Event-ID
 * replays what followed on that stream and then carries it on. Routing of child messages: docs/proxy.md.
 * DELETE ends the session. A session ends on DELETE, child exit, idle timeout, or reclaim (idle sessions,
 * oldest first, once the route nears its session cap); its child is killed (SIGTERM, SIGKILL after 5 s).
 *
 * 2026-07-28 (modern): a POST without Mcp-Session-Id whose body is one request carrying
 * _meta["io.modelcontextprotocol/protocolVersion"] (or a notification whose MCP-Protocol-Version header names
 * 2026-07-28 or later) is served statelessly. The stdio child still speaks the legacy protocol: the bridge
 * keeps up to modern_children shared children per route, initializes each once itself, answers
 * server/discover from the cached initialize result, writes each request with its id and progress token
 * rewritten to bridge-unique ones (mapped back on the way out), and answers with JSON, or SSE scoped to the
 * request. Closing that stream cancels the request (notifications/cancelled to the child). Server requests
 * of a shared child are refused by the bridge; GET/DELETE from a modern client get 405. docs/proxy.md.
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
	const char *name;            /* route name, for logs and metrics */
	const char *const *argv;     /* the stdio MCP server command; copied */
	const char *workspace_root;  /* sandbox routes: each session gets <root>/<session id>, passed as
					--workspace after argv; NULL = none */
	unsigned max_sessions;       /* 0 = 16 */
	uint32_t idle_timeout_ms;    /* end a session idle this long; 0 = 30 min */
	uint32_t reclaim_idle_ms;    /* near the cap, end sessions idle this long; 0 = 60 s (at most idle) */
	uint32_t request_timeout_ms; /* wait for a response line; 0 = 15 min */
	size_t max_message;          /* request body and response line cap; 0 = 4 MiB */
	unsigned modern_children;    /* 2026-07-28 clients: shared children of the route, at most; 0 = 2 */
	unsigned max_modern;         /* 2026-07-28 requests in flight on the route (more: 429); 0 = 64 */
} mbr_opts;

typedef struct mbr_response {
	int status;
	const char *content_type; /* NULL when no body */
	const char *session_id;   /* Mcp-Session-Id to send, or NULL */
	const char *allow;        /* Allow header for 405, or NULL */
	const char *extra;        /* more header lines ("Name: value\r\n" each; the guard's WWW-Authenticate), or NULL */
	const char *body;
	size_t body_len;
} mbr_response;

/* The caller's side of one exchange. Either respond() once (a whole response), or stream_head() once, then
 * stream_data() any number of times, then stream_end() once. respond() and stream_end() are the last call
 * (the mbr_req is gone when they run, so the caller must not cancel it after). stream_data() returning <0
 * (the client is gone) also ends the exchange: the bridge forgets the request and calls nothing more.
 * full() tells whether the caller's output queue is over its high-water mark: the bridge then stops
 * writing to it (and reading the child's output) until mbr_req_resume(). Calls come from the loop or from
 * inside mbr_handle / mbr_req_resume; r and bytes are valid only during the call. */
typedef struct mbr_sink {
	void (*respond)(void *ud, const mbr_response *r);
	int (*stream_head)(void *ud, int status, const char *session_id); /* text/event-stream */
	int (*stream_data)(void *ud, const char *p, size_t n);
	void (*stream_end)(void *ud);
	bool (*full)(void *ud);
} mbr_sink;

/* One HTTP request as the bridge needs it. */
typedef struct mbr_http {
	const char *method;        /* "POST", "GET", "DELETE", ... */
	const char *session_id;    /* Mcp-Session-Id, or NULL */
	const char *last_event_id; /* Last-Event-ID, or NULL */
	bool accept_sse;           /* Accept lists text/event-stream */
	/* The 2026-07-28 request-metadata headers (NULL when absent): the era is told by the body's _meta or by
	 * protocol_version, and a modern request's headers are checked against its body (-32020). */
	const char *protocol_version; /* MCP-Protocol-Version */
	const char *mcp_method;       /* Mcp-Method */
	const char *mcp_name;         /* Mcp-Name */
	const uint8_t *body;
	size_t body_len;
} mbr_http;

mbr *mbr_new(uv_loop_t *loop, const mbr_opts *o, char *err, size_t errlen);
/* Kills every session's child; handles close on the loop. */
void mbr_free(mbr *b);
/* Answers h through sink (ud is passed back). *out (may be NULL) is the handle while the exchange waits or
 * streams, NULL when it was answered inside the call. 0, or <0 (no callback then). */
int mbr_handle(mbr *b, const mbr_http *h, const mbr_sink *sink, void *ud, mbr_req **out);
/* The client went away: no more callbacks. A request in flight stays in flight (its SSE events stay in
 * the replay buffer for a GET with Last-Event-ID). */
void mbr_req_cancel(mbr_req *r);
/* The caller's output fell below its low-water mark after full() was true. */
void mbr_req_resume(mbr_req *r);
unsigned mbr_sessions(const mbr *b);
/* Another bridge of the same route name shares its metric series (a reload's, proxy_gen.c): b stops updating
 * them and mbr_free leaves them in the registry. */
void mbr_forget_metrics(mbr *b);
/* The gateway drains: GET streams end (a client would reconnect, and is refused), POST streams go on to
 * their response. Sessions stay until mbr_free. */
void mbr_drain(mbr *b);

typedef struct mbr_stats {
	unsigned sessions, max_sessions, get_streams, post_streams;
	uint64_t started, reclaimed, refused, events, events_dropped;
	/* 2026-07-28: shared children alive, requests in flight, served (written or answered by the bridge),
	 * refused at the in-flight cap, cancelled (stream closed, notifications/cancelled, timeout), server
	 * requests of a shared child refused */
	unsigned modern_children, modern_inflight;
	uint64_t modern_requests, modern_refused, modern_cancelled, modern_server_requests;
} mbr_stats;
void mbr_get_stats(const mbr *b, mbr_stats *out);

/* JSON-RPC message classification (pure; unit-tested and fuzzed). */
typedef enum mbr_kind { MBR_INVALID = 0, MBR_REQUEST, MBR_NOTIFICATION, MBR_RESPONSE } mbr_kind;

#define MBR_KEY_MAX 160
/* What routing needs from one message. Keys are canonical ("n:5", "s:abc"); empty when absent. */
typedef struct mbr_msg {
	mbr_kind kind;
	char idkey[MBR_KEY_MAX];    /* requests and responses: the id */
	char method[128];           /* requests and notifications */
	char progress[MBR_KEY_MAX]; /* requests: params._meta.progressToken; notifications/progress: params.progressToken */
	char related[MBR_KEY_MAX];  /* notifications/cancelled: params.requestId */
} mbr_msg;
/* Fills m from one JSON-RPC message; MBR_INVALID with a reason in why. */
mbr_kind mbr_inspect(const char *json, size_t n, mbr_msg *m, char *why, size_t whylen);
/* Classifies one JSON-RPC message. For requests and responses, idkey (cap idlen) gets a canonical form of the
 * id ("n:5", "s:abc") and, for requests, method (cap mlen) the method name. why gets a reason when invalid. */
mbr_kind mbr_classify(const char *json, size_t n, char *idkey, size_t idlen, char *method, size_t mlen,
		      char *why, size_t whylen);

/* 2026-07-28 requests on a shared legacy child (pure; unit-tested and fuzzed). All out strings are malloc'd
 * compact JSON with no newline (one stdio line); each function returns 0, -EINVAL (why says what) or -ENOMEM. */
#define MBR_MODERN_VERSION "2026-07-28"  /* the one stateless revision the bridge serves */
#define MBR_LEGACY_VERSION "2025-11-25"  /* what it asks of the child in its initialize */
#define MBR_DISCOVER_TTL_MS 300000       /* ttlMs of the server/discover result */
/* A client request as the child gets it: "id" becomes bid; params._meta.progressToken, when present, becomes
 * bid too (unique among the child's requests in flight, as the spec asks of tokens). *cid gets the client's
 * id and *ctoken its token (NULL when none), as JSON text, to map the answers back. */
int mbr_modern_to_child(const char *json, size_t n, long long bid, char **out, char **cid, char **ctoken,
			char *why, size_t whylen);
/* A message of the child for one request, as its client gets it. A response gets the client's id back (cid)
 * and, when its result is an object, "resultType":"complete" if it has none; the results of the cacheable
 * methods (method: tools/list, prompts/list, resources/list, resources/templates/list, resources/read) get
 * "ttlMs":0 and "cacheScope":"private" when they lack them (the bridge cannot know when a legacy list
 * changes). notifications/progress gets the client's token back (ctoken; unchanged when NULL). Anything
 * else comes back unchanged. *code (may be NULL) gets error.code of an error response, else 0. */
int mbr_modern_from_child(const char *json, size_t n, const char *method, const char *cid, const char *ctoken,
			  char **out, int *code, char *why, size_t whylen);
/* The server/discover response for the request id cid (JSON text) from a legacy initialize result object:
 * resultType "complete", supportedVersions [MBR_MODERN_VERSION], the child's capabilities less what the
 * bridge does not carry to modern clients (listChanged, resources.subscribe, tasks), its instructions,
 * _meta["io.modelcontextprotocol/serverInfo"] = its serverInfo, ttlMs MBR_DISCOVER_TTL_MS, cacheScope public. */
int mbr_modern_discover(const char *init_result, size_t n, const char *cid, char **out, char *why, size_t whylen);

#endif
