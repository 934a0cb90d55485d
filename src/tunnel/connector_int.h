/* Internal to the connector, shared by connector.c (config, metrics, slots, timer, lifecycle) and
 * connector_link.c (one link: TLS, registration, HTTP/2, streams). Nothing outside src/tunnel includes it. */
#ifndef POSTERN_TUNNEL_CONNECTOR_INT_H
#define POSTERN_TUNNEL_CONNECTOR_INT_H

#include "tunnel/connector.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cbuf.h"
#include "core/err.h"
#include "core/secfile.h"
#include "core/admin.h"
#include "core/backoff.h"
#include "core/list.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/tconn.h"
#include "core/tlsio.h"
#include "tunnel/reg.h"

#define TOKEN_FILE_MAX 4096
#define PROBE_MIN_MS 500u  /* return-home checks while the home edge refuses TCP: 0.5 .. 1.5 s */
#define PROBE_SPAN_MS 1000u
#define CLOSE_LINGER_MS 1000u /* after our close_notify, how long we wait for the edge's */
#define START_STAGGER_MS 250u

/* ------------------------------------------------------------------ types */

enum lstate { L_RESOLVING, L_CONNECTING, L_REGISTERING, L_LIVE, L_DRAINING };

struct link;
struct slot;

struct stream {
	struct stream *next, **pprev; /* l->streams */
	struct link *l;
	int32_t id;
	stream_conn *sc;
	cbuf q; /* backend bytes toward the edge; its max catches a backend that ignores high water */
	size_t unconsumed;  /* fed to the backend, not yet reported consumed: returned to the window on abort */
	bool out_eof;       /* backend shut its sending side */
	bool eof_sent;      /* END_STREAM went out */
	bool deferred;      /* the data provider is waiting for bytes */
	bool high, want_drained;
	bool h2_closed;
	bool accepted;
	bool aborted;       /* the backstop fired (logged and counted once) */
	char method[16];
	char authority[256];
	char client_addr[80];
};

struct dns {
	uv_getaddrinfo_t req;
	struct link *l; /* NULL once the link gave up on it */
	ctr *c;
};

struct link {
	struct link *next, **pprev; /* c->links */
	ctr *c;
	struct slot *s;
	int edge;
	enum lstate st;
	bool probe;         /* a return-home dial for a slot served by another edge */
	bool retired;       /* replaced by a newer link of its slot; drains and closes */
	bool closing;       /* tconn_close called (or about to be): no more I/O */
	bool failed_open, refused, rejected;
	tconn *tc;
	struct dns *dns;
	reg_linebuf *lb;
	nghttp2_session *h2;
	bool flushing, flush_pending, paused, eof;
	uint64_t started_at, registered_at, reg_deadline, close_deadline;
	uint64_t next_ping_at, ping_sent_at, goaway_deadline;
	bool ping_out, acked_once;
	int goaway; /* 0 none, 1 notice sent, 2 final GOAWAY sent */
	struct stream *streams;
	uint32_t nstreams;
	char tunnel_id[128], edge_id[128];
	char err[512];
};

struct slot {
	int idx, home, cur;
	bo *bo, *probe_bo;
	uint64_t retry_at, probe_at;
	bool dialed_before, probe_logged;
	struct link *link;  /* the slot's connection, or its dial in progress */
	struct link *pr;    /* return-home dial in progress */
};

struct edge_addr {
	char host[NA_HOST_MAX];
	uint16_t port;
	const char *name; /* TLS name to verify */
	const char *text; /* as configured, for logs */
	unsigned rr;      /* next resolved address to use: a name with several spreads dials over them */
};

struct ctr {
	uv_loop_t *loop;
	const ctr_config *cfg;
	stream_backend be;
	SSL_CTX *tls;
	char *token;
	char id[40];
	struct edge_addr *edges;
	struct slot *slots;
	int nslots;
	struct link *links;
	uv_timer_t timer;
	int refs;           /* the timer, every tconn and DNS request still open */
	bool started, shutting, done_fired, freeing;
	uint64_t shutdown_deadline;
	ctr_done_cb done_cb;
	void *done_ud;
	ctr_stats st;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	struct {
		adm_metric *conns[4], *ready, *streams_active, *streams_total, *streams_refused, *bytes_in,
			*bytes_out, *dials, *reconnects, *reg_ok, *reg_rejected, *reg_failed, *pings_ok,
			*pings_timeout, *rtt, *stream_aborts_queue;
	} m;
};


static inline uint64_t now_ms(ctr *c) { return uv_now(c->loop); }

static inline uint32_t jitter(uint32_t base, uint32_t span)
{
	uint32_t r = 0;
	if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
		r = (uint32_t)rand();
	return base + r % (span + 1);
}

static inline void ctr_unref(ctr *c)
{
	if (--c->refs == 0 && c->freeing) {
		nghttp2_session_callbacks_del(c->cbs);
		nghttp2_option_del(c->opt);
		SSL_CTX_free(c->tls);
		for (int i = 0; i < c->nslots; i++) {
			bo_free(c->slots[i].bo);
			bo_free(c->slots[i].probe_bo);
		}
		free(c->slots);
		free(c->edges);
		if (c->token) {
			OPENSSL_cleanse(c->token, strlen(c->token));
			free(c->token);
		}
		free(c);
	}
}

/* connector.c */
/* The token file through core/secfile: one line, trimmed; err says why not (naming the file), warn (may be
 * "") what is exposed about it (group or other bits, another owner: a warning, secret volumes are often so). */
int ctri_read_token_file(const char *path, char **out, char *err, size_t errlen, char *warn, size_t warnlen);
void ctri_metrics_refresh(ctr *c);
void ctri_slot_retry_later(struct slot *s, struct link *l, bool probe);
void ctri_slot_link_closed(struct link *l);
void ctri_slot_registered(struct link *l);
void ctri_schedule(ctr *c);

/* connector_link.c */
int ctri_send_data(nghttp2_session *h2, nghttp2_frame *f, const uint8_t *framehd, size_t length,
		   nghttp2_data_source *src, void *ud);
int ctri_on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *ud);
int ctri_on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
		     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud);
int ctri_on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *ud);
int ctri_on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud);
int ctri_on_stream_close(nghttp2_session *h2, int32_t id, uint32_t code, void *ud);
void ctri_link_send_ping(struct link *l);
void ctri_link_flush(struct link *l);
void ctri_link_close(struct link *l, const char *why);
void ctri_link_connect(struct link *l, const struct sockaddr *sa);
void ctri_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

#endif
