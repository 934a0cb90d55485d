/* Internal to the proxy, shared by its parts: proxy.c (lifecycle, TLS server context, drain), proxy_gen.c
 * (config generations and live reload),
 * proxy_conn.c (a client connection: TLS, exchanges, timers, the stream seam), proxy_upstream.c (upstream
 * connections, stdio:/sandbox: routes), proxy_listen.c (the plain listen_addr listener) and proxy_metrics.c
 * (per-route request metrics). Nothing outside src/proxy includes it. */
#ifndef POSTERN_PROXY_INT_H
#define POSTERN_PROXY_INT_H

#include "proxy/proxy.h"

#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/cbuf.h"
#include "core/log.h"
#include "core/tconn.h"
#include "core/tls13rec.h"
#include "core/tlsio.h"
#include "core/h1.h"
#include "core/list.h"
#include "proxy/mcpbridge.h"
#include "core/sse.h"
#include "guard/trace.h"

#define PX_READ_CHUNK TREC_MAX_CIPHER /* a whole record body opens straight into it, with no spill copy */
#define PX_MCP_MAX_BODY (4u << 20) /* a stdio:/sandbox: request body */
#define PX_REUSE_MAX_IDLE_MS 2000   /* older idle upstream connections may be closing: dial a fresh one */
#define PXL_WINDOW (256 * 1024)     /* listener: unconsumed bytes before the socket read pauses */
#define PXL_LINGER_MS 5000          /* listener: wait this long for the client's FIN after ours */
#define PXL_LINGER_TICK_MS 20
#define PX_MAX_LISTENER_CONNS 20000

typedef struct pxu pxu;
typedef struct pxl pxl;
struct aud_rec;
struct pin_table;
struct redact;

/* A request of a guarded exchange waiting for its answer (proxy_guard.c). */
typedef struct pxg_req {
	char *id;          /* JSON text of the id */
	char method[64];
	char *tool;        /* tools/call: the tool; prompts/get: the prompt; resources/read: the URI */
	char hash[65];     /* the tool's pinned definition hash, "" when unknown */
	uint64_t t0;
	bool list, done;   /* a tools, prompts or resources list request (its result is filtered); answered (audited) */
} pxg_req;

/* The guard's state of one exchange on a guarded route; NULL on other routes. */
typedef struct pxg {
	char client_id[256]; /* the identity auth established ("" when none) */
	char session[128];   /* Mcp-Session-Id of the request */
	char protocol[32];   /* MCP-Protocol-Version of the request */
	trc_ctx trace;       /* the guard's span (sent upstream as traceparent) */
	char parent_span[17];
	pxg_req *reqs;
	size_t nreqs, capreqs;
	bool modern, forward_body, audit_failed, over, dec_on, held, authed;
	bool sse_started;    /* the guard opened the client's SSE answer (progress while held) */
	bool accept_sse;     /* the request's Accept lists text/event-stream */
	char *ptoken;        /* the held request's progressToken, as JSON text */
	bool lenient;        /* a POST's error or 202 answer: its body may be other than JSON-RPC */
	char hold_id[16];    /* the approval this exchange waits for (held) */
	size_t hold_bytes;   /* its body's share of px.held_bytes */
	char hold_rule[72];
	int rmode;           /* the response: undecided, passed as is, a JSON body, an SSE stream */
	cbuf rhead, rbody;   /* the upstream's head until its mode is known; a JSON body */
	cbuf sse_in;         /* raw bytes of the SSE event being read (released when it is complete) */
	sse_dec dec;
	char *tool_src, *tool_red; /* the last tool name redacted for a line and the result: its "out" line reuses it */
} pxg;

struct file_id {
	bool ok;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim;
};

/* One route's state in a generation (proxy_gen.c). */
typedef struct pxgen_route {
	mbr *bridge;        /* the stdio bridge of a stdio:/sandbox: route, else NULL */
	struct jwks *jwks;  /* the jwks_url fetcher of a jwt route, else NULL */
	unsigned busy;      /* exchanges of this generation on the route */
	bool own_bridge, own_jwks; /* freed by this generation (a carried one belongs to the newer) */
} pxgen_route;

/* A generation: a config and what was built from it. Each exchange holds the one it began on; the px holds
 * the newest (px->gen). An older generation holds the newer one, so that what it handed on (bridges, jwks)
 * outlives every exchange still using it. Freed from the loop (gtimer) once nothing holds it. */
typedef struct pxgen pxgen;
struct pxgen {
	px *px;
	pxgen *next, **pprev; /* px->gens */
	const px_config *cfg;
	px_config *owned;     /* cfg when the px owns it (a reload's); NULL for px_new's */
	unsigned id;          /* 1 for px_new's, then one more per reload: in log lines */
	int refs;
	bool retired;         /* no longer px->gen: its own bridges go once idle */
	SSL_CTX *uctx;        /* upstream https client */
	pxgen_route *r;       /* per route index */
	pxgen *newer;
};

struct px {
	uv_loop_t *loop;
	const px_config *cfg; /* gen->cfg: for what is not an exchange's (listener, timers, drain) */
	pxgen *gen, *gens;    /* the newest; all that are alive */
	unsigned ngen;
	const char *pins_file; /* px_new's pins_file: the pin table stays with it until a restart */
	SSL_CTX *sctx; /* customer certificate; swapped on reload (live SSLs keep their own reference) */
	uv_timer_t reload, dtimer, gtimer;
	struct file_id cert_id, key_id;
	uv_tcp_t lsock;
	bool listening, draining, drained_called, freeing;
	char laddr[NA_FMT_MAX];
	px_drained_cb dcb;
	void *dud;
	px_conn *conns;
	pxl *glues;
	size_t nconns, nglues;
	int refs;
	px_stats st;
	struct pin_table *pins; /* tool-definition pins of every route (pins_file) */
	px_audit_fn audit_fn;   /* the audit sink (px_set_audit); NULL: no audit */
	void *audit_ud;
	const struct redact *redact;
	bool log_args;
	struct alog *alog;      /* the sinks of cfg->audit, when set */
	struct apv *apv;        /* held calls of approve rules (px_set_approvals); NULL: they are refused */
	size_t held_bytes;      /* request bodies of held calls, kept until decided (PXG_HELD_BYTES_MAX) */
};

enum cst { C_HANDSHAKE, C_HEAD, C_CONNECTING, C_BODY, C_MBODY, C_WAIT, C_TUNNEL, C_CLOSED };
enum tkind { T_NONE, T_HANDSHAKE, T_IDLE, T_HEAD, T_BODY, T_CONNECT, T_CLOSE };

struct px_conn {
	px *px;
	px_conn *next, **pprev; /* p->conns */
	const stream_ops *ops;
	void *ctx;
	char client_raw[NA_FMT_MAX + 40]; /* the same, unquoted, for the audit (a JSON string escapes it) */
	char client[NA_FMT_MAX + 40]; /* the client address as the owner gave it, already quoted for logs: an edge
					 * decides what postern-client-addr holds, spaces and key=value included */
	tio *tls;
	uv_timer_t timer;
	enum tkind tkind;
	enum cst st;
	struct px_exch *x; /* parsers and names of the current exchange; NULL between requests */
	cbuf pend; /* plaintext read out of TLS but not parsed yet (held while paused): at most one read */
	cbuf head; /* request head gathered until the upstream is chosen and connected (h1 caps it first) */
	cbuf corked; /* bytes held to go out with the next write, in one TLS record (pxi_cwrite_later) */
	uint64_t fed, reported;
	int busy;
	bool in_eof, client_done, out_shut, closing, aborted, driving, redrive;
	bool up_full, up_paused;
	/* current exchange */
	pxgen *gen; /* the generation it began on (held from the route lookup to its end); rt points into it */
	bool in_exchange, req_done, resp_done, resp_started, head_req, logged;
	const route *rt;
	pxu *up;
	uint64_t t0, req_bytes, resp_bytes;
	unsigned status;
	/* stdio:/sandbox: routes: the request body is gathered, then answered by the bridge */
	cbuf mbody; /* at most PX_MCP_MAX_BODY */
	bool mbody_over;
	bool mchunked; /* the bridge's SSE response goes out chunked */
	mbr_req *mreq;  /* the bridge's exchange while it waits or streams */
	pxg *g;         /* the guard's state of the exchange on a guarded route */
};

/* Allocated when a request's first byte arrives and freed when the exchange ends, so that an idle keep-alive
 * connection holds none of it (~2.4 KiB: the connection's TLS session is what stays). */
struct px_exch {
	h1 req, resp;
	char method[24];
	char path[H1_TARGET_KEEP + 1];
};

struct pxu {
	px_conn *c; /* NULL once detached: then it only waits for its callbacks to free it */
	const route *rt;
	tconn *tc;
	uv_getaddrinfo_t gai;
	bool gai_busy, open, eof, reusable;
	uint64_t idle_since;
	char addr[NA_FMT_MAX];
};

/* A plain TCP connection accepted on listen_addr, carrying one px_conn. */
struct pxl {
	px *px;
	pxl *next, **pprev; /* p->glues */
	tconn *tc;
	px_conn *pc;
	uv_timer_t linger;
	size_t outstanding;
	unsigned linger_ms;
	bool paused, shut, peer_eof;
	int handles;
};

/* proxy.c */
SSL_CTX *pxi_load_server_ctx(const px_config *cfg, char *err, size_t errlen);
void pxi_file_id_get(const char *path, struct file_id *f);
void pxi_cert_summary(SSL_CTX *ctx, char *buf, size_t len);
void pxi_audit_use(px *p, const px_config *cfg); /* px_set_audit for p->alog with cfg's audit settings */
void pxi_unref(px *p);
void pxi_handle_closed(uv_handle_t *h); /* a handle of the proxy closed: drops its reference */
void pxi_on_drained_timer(uv_timer_t *t);
static inline void pxi_ref(px *p) { p->refs++; }
static inline double pxi_ms_since(uint64_t t0) { return (double)(uv_hrtime() - t0) / 1e6; }

/* The config of c's exchange: its generation's, else the newest. */
static inline const px_config *pxi_cfg(const px_conn *c) { return c->gen ? c->gen->cfg : c->px->cfg; }
/* c's exchange's route state (rt set). */
static inline pxgen_route *pxi_rstate(const px_conn *c) { return &c->gen->r[c->rt - c->gen->cfg->routes.v]; }

/* proxy_gen.c */
/* Builds what cfg needs; with old and plan, what plan carries is taken from old (handed over at commit). */
pxgen *pxi_gen_build(px *p, const px_config *cfg, const pxgen *old, const px_route_carry *plan, char *err,
		     size_t errlen);
/* g becomes p->gen and owns owned (may be NULL); the running one retires. Cannot fail. */
void pxi_gen_commit(px *p, pxgen *g, px_config *owned, const px_route_carry *plan);
void pxi_gen_discard(pxgen *g); /* a built generation never committed */
void pxi_gen_enter(px_conn *c); /* c's exchange takes the newest generation (before the route lookup) */
void pxi_gen_route(px_conn *c); /* c->rt was found: counted as busy on it */
void pxi_gen_leave(px_conn *c); /* the exchange is over: c->rt is cleared */
void pxi_gen_drain(px *p);      /* px_begin_shutdown: every bridge ends its GET streams */
void pxi_gen_free_all(px *p);   /* px_free: every bridge and fetcher goes now */
void pxi_gen_release(px *p);    /* px_final_free: the generations themselves */

/* proxy_conn.c */
int pxi_flush_tls(px_conn *c);
int pxi_cwrite(px_conn *c, const uint8_t *p, size_t n);
/* Holds bytes to go out in front of the next pxi_cwrite (n may be 0 there: only what is held goes). The
 * guard holds its answer's head so that head and first event make one TLS record and one socket write
 * rather than two; whoever holds bytes sends them before it returns to the loop. Past 64 KiB, or when they
 * cannot be held, they are written at once. */
int pxi_cwrite_later(px_conn *c, const uint8_t *p, size_t n);
void pxi_log_request(px_conn *c, const char *err);
/* Calls into a connection are bracketed so that it is freed only when the outermost one leaves. */
static inline void pxi_enter(px_conn *c) { c->busy++; }
void pxi_leave(px_conn *c);
void pxi_conn_finish(px_conn *c, bool graceful);
void pxi_respond(px_conn *c, unsigned code, const char *reason, const char *body);
void pxi_upstream_fail(px_conn *c, unsigned code, const char *reason, const char *why);
void pxi_set_timer(px_conn *c, enum tkind k, uint64_t ms);
void pxi_end_exchange(px_conn *c);
void pxi_drive(px_conn *c);

/* proxy_metrics.c: one exchange's requests_total, duration and bytes (called where it is logged); the
 * requests in flight per route, gathered at render time from px_new (start) to px_free (stop) */
void pxi_metrics_request(const px_conn *c);
void pxi_metrics_start(px *p);
void pxi_metrics_stop(px *p);

/* proxy_upstream.c */
void pxi_up_detach(px_conn *c);
int pxi_up_write(px_conn *c, const uint8_t *p, size_t n);
void pxi_up_send_head(px_conn *c);
void pxi_start_upstream(px_conn *c);
void pxi_start_mcp(px_conn *c);
void pxi_finish_mcp_request(px_conn *c);
void pxi_forward_request(px_conn *c); /* the request read whole (and checked) goes upstream or to the bridge */
void pxi_respond_whole(px_conn *c, const mbr_response *r); /* a whole response, keep-alive as the request asks */
int pxi_write_chunk(px_conn *c, const uint8_t *p, size_t n); /* a part of a streamed body (chunked if mchunked) */
void pxi_up_pause_if_full(px_conn *c);
void pxi_up_data_done(px_conn *c, pxu *u, size_t left, bool finished);
int pxi_up_parse(px_conn *c, pxu *u, const uint8_t *p, size_t n, size_t *used, h1_ev *ev);
void pxi_stream_end(px_conn *c); /* the last chunk of an SSE response, then the end of the exchange */
void pxi_up_begin(px_conn *c); /* reuse the route's idle upstream connection or dial one, then send the head */

/* proxy_config_guard.c */
int pxi_config_route_guard(cfg_doc *d, cfg_node *val, px_config *c, size_t i);
int pxi_config_guard_load(cfg_doc *d, cfg_node *root, px_config *c);
void pxi_config_guard_free(px_config *c);

/* proxy_guard.c, proxy_guard_resp.c */
const px_route_guard *pxi_route_guard(const px_conn *c);
bool pxi_guarded(const px_conn *c);
int pxi_guard_begin(px_conn *c);        /* at the head: guard state, auth; 0: read the body; 1: answered */
int pxi_guard_request(px_conn *c);      /* 0: forward; 1: answered (or held) here */
int pxi_guard_upstream_head(px_conn *c); /* the head for an http upstream: Content-Length, traceparent */
int pxi_audit(px_conn *c, struct aud_rec *r);
int pxi_guard_payload(px_conn *c, const char *buf, size_t len, char **out, size_t *outlen);
int pxi_guard_sse_feed(px_conn *c, const uint8_t *p, size_t n);
int pxi_guard_sse_event(px_conn *c, const char *json, size_t len); /* one message as an SSE event chunk */
void pxi_guard_flush(px_conn *c, const char *why);
void pxi_guard_up_data(px_conn *c, pxu *u, const uint8_t *p, size_t n);
void pxi_guard_up_eof(px_conn *c);
void pxi_guard_free(px_conn *c);

#endif
