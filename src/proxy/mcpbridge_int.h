/* Internal to the stdio bridge, shared by its parts: mcpbridge.c (the API, HTTP dispatch, sessions, reclaim,
 * metrics, message inspection), mcpbridge_proc.c (the child process: spawn, stdin lines, stdout lines,
 * exit, kill), mcpbridge_stream.c (routing of the child's messages, the replay buffer, SSE streams to
 * the caller's sinks), mcpbridge_modern.c (2026-07-28 requests on shared children) and mcpbridge_wire.c
 * (their pure rewrites). Nothing outside src/proxy/mcpbridge*.c includes it. */
#ifndef POSTERN_MCPBRIDGE_INT_H
#define POSTERN_MCPBRIDGE_INT_H

#include "proxy/mcpbridge.h"

#include <jansson.h>

#include "core/admin.h"
#include "core/cbuf.h"

#define MBR_MAX_PENDING 32       /* requests in flight per session (more: 429) */
#define MBR_KILL_GRACE_MS 5000   /* SIGTERM, then SIGKILL */
#define MBR_TICK_MS 1000
#define MBR_KEEPALIVE_MS 15000   /* an SSE comment on a stream silent this long */
/* The replay buffer of a session: every SSE event it sent or holds, oldest dropped first past either cap.
 * An event that falls out before anyone received it is counted (events_dropped) and logged. */
#define MBR_REPLAY_MAX_EVENTS 256
#define MBR_REPLAY_MAX_BYTES (1u << 20)
/* Sessions: at or above this high-water mark, sessions idle for reclaim_idle are ended, oldest first,
 * down to it; at the cap a new session takes the place of the oldest idle one. */
#define MBR_RECLAIM_MARK(max) ((max) - (max) / 4)
/* 2026-07-28: a request goes to the least-loaded shared child; another one is started (up to the route's
 * modern_children) when every one has this many in flight. */
#define MBR_MODERN_SPAWN_LOAD 8
#define MBR_MODERN_INIT_MS 60000         /* the child's answer to the bridge's initialize */
/* Events of one modern request waiting while its client's output is full; past either cap further
 * notifications are dropped (counted, logged), the response never is. */
#define MBR_MODERN_QUEUE_EVENTS 64
#define MBR_MODERN_QUEUE_BYTES (256u << 10)
#define MBR_INIT_ID "postern-init"       /* the id of the bridge's own initialize (request ids are integers) */

typedef struct sess sess;
typedef struct mbri_pend mbri_pend;
typedef struct mbri_mp mbri_mp;

/* A request written to the child, waiting for its response line. */
struct mbri_pend {
	char idkey[MBR_KEY_MAX], progress[MBR_KEY_MAX];
	uint32_t stream; /* its SSE stream; 0 when its client takes JSON only */
	mbr_req *conn;   /* the exchange that carries it; NULL once that client went away */
	uint64_t deadline;
	bool init;
	mbri_pend *next;
};

/* An exchange the caller holds: a POST waiting for its response, or a GET stream. */
struct mbr_req {
	mbr *b;
	sess *s;
	const mbr_sink *sink;
	void *ud;
	mbri_pend *p;     /* the request it carries (POST, or a GET resuming a POST's stream), or NULL */
	uint32_t stream;  /* the SSE stream it writes: 0 = the standalone GET stream */
	uint64_t cursor;  /* the last event seq written to it */
	uint64_t last_write;
	bool get, sse, streaming, blocked, standalone;
	bool modern;      /* the first member of an mbri_mp (mcpbridge_modern.c); none of the above is used */
	mbr_req *next;    /* s->conns */
};

/* An SSE event of a modern request, encoded. */
typedef struct mbri_mq {
	struct mbri_mq *next;
	size_t len;
	bool final;
	char data[];
} mbri_mq;

/* A 2026-07-28 request: one exchange, one request on a shared child, the same lifetime. */
struct mbri_mp {
	mbr_req q;          /* first: the caller's handle (q.modern) */
	sess *s;            /* the child it went (or goes) to */
	long long bid;      /* its id on the child, and its progress token there when the client gave one */
	char *cid, *ctoken; /* the client's id and token, JSON text */
	char method[64];
	char *line;         /* the rewritten request, held until the child is initialized */
	bool discover;      /* server/discover waiting for the child's initialize result */
	bool loglevel;      /* the client asked for log messages (_meta logLevel) */
	bool answered;      /* the response is queued: the rest goes out whatever the caller's high-water mark */
	uint64_t deadline;
	mbri_mq *qhead, **qtail;
	unsigned nq;
	size_t qbytes;
	mbri_mp *next;      /* s->mreqs */
};

typedef struct mbri_ev {
	uint64_t seq;
	uint32_t stream;
	bool delivered, final; /* final: the response that ends its stream */
	cbuf bytes;            /* the encoded event */
} mbri_ev;

struct sess {
	mbr *b;
	char id[33];
	uv_process_t proc;
	uv_pipe_t in, out;
	uv_timer_t tick;
	int open_handles;
	bool exited, ending, initialized, out_paused, out_closed;
	int64_t exit_status;
	uint64_t last_active, kill_at;
	char *line;
	size_t line_len;
	bool line_overflow;
	struct jid_scan *big; /* the ends of a line over max_msg, for its id (while one is dropped) */
	mbri_pend *pending; /* oldest first */
	unsigned npending;
	mbr_req *conns;     /* exchanges attached to this session */
	mbr_req *get;       /* the standalone GET stream, if open */
	mbri_ev *ring;      /* MBR_REPLAY_MAX_EVENTS slots, allocated with the first event */
	unsigned ring_head, ring_n;
	size_t ring_bytes;
	uint64_t next_seq;
	uint32_t next_stream;
	char *workspace;
	/* a shared child of 2026-07-28 clients: no session id handed out, no legacy conns or pending */
	bool modern;
	uint64_t init_deadline;
	mbri_mp *mreqs;
	unsigned nmreqs;
	sess *next;
};

struct mbr {
	uv_loop_t *loop;
	char *name;
	char **argv;
	size_t argc;
	char *workspace_root;
	unsigned max_sessions, nsessions;
	uint32_t idle_ms, reclaim_ms, req_ms;
	size_t max_msg;
	sess *sessions;
	bool freeing;
	uint64_t last_reclaim_check;
	mbr_stats st;
	adm_metric *m_sessions, *m_max, *m_started, *m_reclaimed, *m_refused, *m_streams_get, *m_streams_post,
		*m_dropped, *m_events;
	/* 2026-07-28 */
	unsigned modern_children, max_modern;
	long long next_bid;
	char *init_result; /* the last initialize result of a shared child, JSON text (server/discover) */
	adm_metric *m_modern_requests, *m_modern_refused, *m_modern_cancelled, *m_modern_children, *m_modern_inflight;
};

/* mcpbridge.c */
static inline uint64_t mbri_now(const mbr *b) { return uv_now(b->loop); }
void mbri_metrics(mbr *b);
void mbri_reply(const mbr_sink *k, void *ud, int status, const char *sid, const char *ctype, const char *body);
void mbri_reply_rpc_error(const mbr_sink *k, void *ud, int status, int code, const char *msg);
/* A JSON-RPC error response for idkey (the canonical key), malloc'd text. */
char *mbri_error_line(const char *idkey, int code, const char *msg);
/* Near the cap: ends idle sessions, oldest first (at most once a second unless force). */
void mbri_reclaim(mbr *b, bool force);
void mbri_handle_closed(uv_handle_t *h);

/* mcpbridge_proc.c */
/* A child: a legacy session's, or (modern) a shared one of 2026-07-28 clients. */
int mbri_spawn(mbr *b, bool modern, sess **out, char *why, size_t whylen);
/* Starts the end of a session: streams end, pending requests fail, the child gets SIGTERM, then SIGKILL. */
void mbri_end(sess *s, const char *why);
void mbri_close_all(sess *s);
int mbri_write(sess *s, json_t *msg);
int mbri_write_text(sess *s, const char *txt, size_t n); /* one line: the newline is added */
/* Stops or restarts reading the child's output, by whether an attached stream is blocked. */
void mbri_flow(sess *s);

/* mcpbridge_stream.c */
/* One line from the child: routed to its request, its stream, the GET stream, or held for the next one. */
void mbri_deliver(sess *s, char *line, size_t n);
/* A new exchange attached to s (POST: p set; GET: standalone or resuming). */
mbr_req *mbri_conn_new(sess *s, const mbr_sink *k, void *ud);
/* Writes what q has not had yet; may end q (the final event) or forget it (client gone). */
void mbri_flush_stream(sess *s, uint32_t stream);
/* GET: attaches q, sends the head, replays. last: the Last-Event-ID, or NULL. */
int mbri_open_get(sess *s, const mbr_sink *k, void *ud, const char *last, mbr_req **out);
/* Ends every attached exchange (session end): SSE streams end, waiting requests get why as 502. */
void mbri_end_conns(sess *s, const char *why);
/* The tick: request deadlines and keep-alives. */
void mbri_stream_tick(sess *s, uint64_t now);
void mbri_ring_free(sess *s);
void mbri_pend_free(sess *s, mbri_pend *p);

/* mcpbridge_modern.c */
/* A POST without a live Mcp-Session-Id: 1 when it was of the 2026-07-28 era and is answered (or waits: *out), 0 when
 * it is legacy (the caller goes on), <0 (no callback). */
int mbri_modern_post(mbr *b, const mbr_http *h, const mbr_sink *k, void *ud, mbr_req **out);
/* One line from a shared child. */
void mbri_modern_deliver(sess *s, const char *line, size_t n);
/* The child ends: every request of it gets its JSON-RPC error. */
void mbri_modern_end(sess *s, const char *why);
/* Initialize and request deadlines, keep-alives. */
void mbri_modern_tick(sess *s, uint64_t now);
void mbri_modern_cancel(mbr_req *q);
void mbri_modern_resume(mbr_req *q);
/* The bridge writes its initialize to a new shared child. */
int mbri_modern_start(sess *s);

#endif
