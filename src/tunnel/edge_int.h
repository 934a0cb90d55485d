/* Internal to the edge, shared by edge.c (tunnels, metrics, set-up and main), edge_relay.c (relays),
 * edge_client.c (SNI and mTLS entries), edge_src.c (pending clients by source), edge_link.c (connector links)
 * and edge_admin.c (/ready, /tunnels). Nothing outside src/tunnel
 * includes it. */
#ifndef POSTERN_TUNNEL_EDGE_INT_H
#define POSTERN_TUNNEL_EDGE_INT_H

#include "tunnel/edge.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/admin.h"
#include "core/cbuf.h"
#include "core/h1.h"
#include "core/list.h"
#include "core/daemon.h"
#include "core/log.h"
#include "core/srclim.h"
#include "core/tconn.h"
#include "core/tlsio.h"
#include "tunnel/reg.h"
#include "tunnel/sni.h"
#include "tunnel/tokstore.h"
#define STREAM_WINDOW (1024 * 1024)       /* per-stream receive window (docs/internals.md) */
#define CONN_WINDOW (32 * 1024 * 1024)     /* connection window: many streams, each bounded above */
#define UP_CAP (64 * 1024)                 /* client bytes queued toward the connector before reads pause */
#define OPEN_TIMEOUT_MS 10000              /* connector must answer a stream within this */
#define CLOSE_GRACE_MS 10000               /* a rejected client gets this long to take its answer */
#define KEEPALIVE_MS 10000                 /* idle connector link: PING after this */
#define DEAD_MS 30000                      /* nothing from a connector for this long: closed */
#define HEAD_MAX (8 * 1024)                /* CONNECT request head cap */
#define MAX_CLIENTS 100000                 /* relays at once; more are refused at accept */
#define MAX_PENDING_CONNECTORS 256         /* TLS connections that have not registered yet */
#define LINGER_MS 60000                    /* a finished relay's last bytes must reach the client by then */
#define HELLO_HOLD (SNI_MAX_INPUT + UP_CAP) /* an SNI client's bytes held until its hello is complete */

struct relay;
struct edge_src;

/* What the TLS keys of the config build: replaced as one on reload. SSL objects hold a reference on their
 * context, so connections made with an old one keep it until they close. */
struct edge_tls {
	SSL_CTX *cctx, *mctx;
	X509_STORE **bind_ca; /* per cfg.mtls_binds entry: its client_ca_file, or NULL */
};

struct tunnel {
	struct tunnel *next;
	char id[TOK_ID_LEN + 1];
	char domain[TOK_DOMAIN_MAX];
	char name[TOK_NAME_MAX];
	int bind; /* its entry in cfg.mtls_binds, -1 when it has none (then no mTLS client reaches it) */
	struct cconn *conns;
	adm_metric *m_conns, *m_streams, *m_active, *m_up, *m_down;
};

struct cconn {
	struct edge *e;
	struct cconn *next, **pprev; /* in its tunnel's list, or e->pending */
	tconn *tc;
	struct tunnel *tun;
	reg_linebuf *lb;
	uint8_t *early; /* bytes that followed the registration line */
	size_t early_len;
	nghttp2_session *h2;
	uv_timer_t timer;
	uint64_t last_recv;
	int nstreams;
	struct relay *relays;  /* streams on this connection */
	struct relay *resume;  /* relays whose client reads can resume (after a send pass) */
	char connector_id[64];
	uint32_t slot;
	char version[32];   /* the connector's, from its registration line */
	int64_t since_ms;   /* wall clock (ms since the epoch) at registration, for `postern tunnel list` */
	char peer[NA_FMT_MAX];
	bool registered, goaway, closing, tc_closed, flushing;
};

enum entry { ENTRY_SNI, ENTRY_MTLS };
enum rstate { RS_HELLO, RS_HEAD, RS_OPENING, RS_OPEN, RS_DONE };

struct mtls_head {
	h1 req;
	char url[512]; /* the CONNECT target (h1_keep_target) */
};

struct relay {
	struct edge *e;
	struct relay *next, **pprev;   /* e->relays */
	struct relay *snext, **spprev; /* cc->relays */
	struct relay *rnext;           /* cc->resume */
	enum entry entry;
	enum rstate st;
	tconn *tc;
	uv_timer_t timer;
	struct cconn *cc;
	int32_t sid;
	struct tunnel *tun;
	struct mtls_head *head;
	cbuf in; /* client bytes not sent on the stream yet; its max is the cap of the relay's phase */
	size_t unconsumed;
	uint64_t up, down, t0;
	size_t charge; /* bytes of in's allocation counted in e->hello_bytes */
	int status;
	bool pending; /* accepted, not routed yet: counted in e->npending, on e->pend_first..pend_last */
	struct relay *pend_prev, *pend_next; /* pending relays, oldest first */
	struct edge_src *src_ip, *src_net;   /* its source's counts (edge_src.c) */
	uint32_t hello_ms;                   /* its ClientHello / CONNECT head deadline */
	bool cli_eof, up_eof_sent, down_eof, paused, deferred, on_resume, tc_closed, timer_closed, aborted;
	char host[SNI_NAME_MAX];
	char peer[NA_FMT_MAX];
};

struct edge {
	uv_loop_t *loop;
	edge_config cfg;
	tok_store *tok;
	struct edge_tls tls; /* swapped whole by a reload (edge_reload.c) */
	uv_tcp_t lsn_conn, lsn_cli, lsn_mtls;
	bool have_mtls;
	adm_server *adm;
	uv_timer_t recheck; /* drops the links of tunnels deleted since they registered */
	srl *reglim;        /* failed registrations per source (cfg.reg_*) */
	uv_timer_t reglim_tick; /* their aggregated log lines */
	struct tunnel *tunnels;
	struct cconn *pending;
	struct relay *relays;
	int nrelays;
	int npending;        /* relays not routed yet (cfg.client_pending_max) */
	uint64_t hello_bytes; /* their buffered bytes (cfg.client_hello_budget) */
	struct relay *pend_first, *pend_last; /* the pending relays, oldest first */
	struct edge_src **srcs;               /* pending relays by source address and network (edge_src.c) */
	size_t nsrcs;                         /* buckets, a power of two */
	uint64_t src_seed[2];
	struct shed_log { uint64_t last; unsigned skipped; bool any; } shed_clients, shed_pending, shed_budget, shed_src;
	/* Open listeners and timers, relays and connector links: the edge is released when the last is gone
	 * after edge_free (edgi_unref). */
	int refs;
	char addr_conn[NA_FMT_MAX], addr_cli[NA_FMT_MAX], addr_mtls[NA_FMT_MAX];
	bool stopping;
	adm_metric *m_reg_ok, *m_reg_rej, *m_reg_limited, *m_clients_sni, *m_clients_mtls, *m_pending, *m_hello_bytes;
	adm_metric *m_tunnels; /* tunnels with at least one registered connection */
};


static inline const char *q(const char *s, char *buf, size_t len) { return log_quote(s, buf, len); }

/* edge.c */
void edgi_reject_metric(const char *entry, const char *reason);
void edgi_log_shed(struct edge *e, struct shed_log *sl, const char *entry, const char *reason, const char *peer);
struct tunnel *edgi_tunnel_find(struct edge *e, const char *id);
struct tunnel *edgi_tunnel_get(struct edge *e, const tok_tunnel *tt);
struct cconn *edgi_tunnel_pick(struct tunnel *t);
void edgi_unref(struct edge *e); /* one of e->refs is gone */
int edgi_tls_make(const edge_config *cfg, struct edge_tls *t, char *err, size_t errlen);
void edgi_tls_free(struct edge_tls *t, size_t nbinds);
void edgi_recheck(struct edge *e); /* closes the links of tunnels deleted since they registered */
int edgi_reglim_new(const edge_config *cfg, srl **out, char *err, size_t errlen);
void edgi_reglim_start(struct edge *e); /* (re)arms the aggregated-lines tick for cfg.reg_window_ms */

/* edge_relay.c */
void edgi_relay_stream_gone(struct relay *r, bool clean);
void edgi_relay_timer_closed(uv_handle_t *h);
void edgi_relay_on_close(tconn *c, int err, void *ud);
void edgi_relay_abort(struct relay *r);
void edgi_relay_timeout(uv_timer_t *t);
void edgi_hello_charge(struct relay *r, size_t bytes);
void edgi_mtls_error(struct relay *r, int status, const char *reason, const char *text);
void edgi_sni_refuse(struct relay *r, uint8_t alert);
void edgi_relay_kick(struct relay *r);
void edgi_relay_route(struct relay *r);
void edgi_relay_unpend(struct relay *r);
void edgi_relay_drop_unrouted(struct relay *r);

/* edge_src.c */
int edgi_src_init(struct edge *e, char *err, size_t errlen);
void edgi_src_free(struct edge *e);
/* Counts r (accepted, r->tc set) as pending under its address and network: 0, or -EAGAIN with *why
 * "per_address" / "per_network" when its source is at its cap (nothing counted), or -ENOMEM. */
int edgi_pend_add(struct relay *r, const char **why);
void edgi_pend_del(struct relay *r); /* no-op when r is not pending */

/* edge_client.c */
void edgi_accept_and_drop(struct edge *e, uv_stream_t *lsn);
void edgi_on_client(uv_stream_t *lsn, int status);
/* mTLS entry: true when the client's certificate may reach t (cfg.mtls_binds); otherwise the client is
 * answered 403, the refusal logged, and false returned. */
bool edgi_mtls_bound(struct relay *r, struct tunnel *t);

/* edge_admin.c: /ready and /tunnels on the metrics listener */
int edgi_admin_routes(struct edge *e);
int64_t edgi_wall_ms(void); /* ms since the epoch; 0 when the clock cannot be read */

/* edge_link.c */
void edgi_cconn_flush(struct cconn *cc);
void edgi_cconn_close(struct cconn *cc, const char *why);
void edgi_on_connector(uv_stream_t *lsn, int status);
void edgi_reglim_tick(uv_timer_t *t); /* the aggregated lines of failed registrations that are due */

#endif
