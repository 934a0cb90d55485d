/* `postern edge`. One libuv loop; three listeners (connector, SNI client, optional outer mTLS) and the admin
 * server. Protocol: docs/internals.md, "Connector link".
 *
 * Objects and lifetimes:
 *  - tunnel: in-memory record of a tunnel id seen at registration, with its live connector connections.
 *    Kept until exit (it carries the tunnel's metrics).
 *  - cconn: one connector connection. Registration line first, then an nghttp2 CLIENT session.
 *    Freed when its tconn has closed and its timer handle is closed.
 *  - relay: one client connection (SNI or mTLS entry) and, once routed, one HTTP/2 stream. A relay
 *    stays allocated while its stream exists (the stream's user data points at it), so nghttp2 never
 *    holds a dangling pointer: freed when its tconn closed, its timer closed and its stream is gone. */
#include "tunnel/edge.h"

#include <errno.h>
#include <http_parser.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "core/admin.h"
#include "core/cli.h"
#include "core/log.h"
#include "core/tconn.h"
#include "core/tlsio.h"
#include "tunnel/reg.h"
#include "tunnel/sni.h"
#include "tunnel/tokstore.h"

#define STREAM_WINDOW (1024 * 1024)       /* per-stream receive window (docs/internals.md) */
#define CONN_WINDOW (32 * 1024 * 1024)     /* connection window: many streams, each bounded above */
#define UP_CAP (64 * 1024)                 /* client bytes queued toward the connector before reads pause */
#define HELLO_TIMEOUT_MS 10000             /* ClientHello / CONNECT head deadline */
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

struct tunnel {
	struct tunnel *next;
	char id[TOK_ID_LEN + 1];
	char domain[TOK_DOMAIN_MAX];
	struct cconn *conns;
	adm_metric *m_conns, *m_streams, *m_active, *m_up, *m_down;
};

struct cconn {
	struct cconn *next, **pprev; /* in its tunnel's list, or E.pending */
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
	char peer[NA_FMT_MAX];
	bool registered, goaway, closing, tc_closed, flushing;
};

enum entry { ENTRY_SNI, ENTRY_MTLS };
enum rstate { RS_HELLO, RS_HEAD, RS_OPENING, RS_OPEN, RS_DONE };

struct mtls_head {
	http_parser hp;
	char url[512];
	size_t urllen, seen;
	bool url_long, done;
};

struct relay {
	struct relay *next, **pprev;   /* E.relays */
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
	uint8_t *buf;
	size_t off, len, cap;
	size_t unconsumed;
	uint64_t up, down, t0;
	size_t charge; /* bytes of buf counted in E.hello_bytes */
	int status;
	bool pending; /* accepted, not routed yet: counted in E.npending */
	bool cli_eof, up_eof_sent, down_eof, paused, deferred, on_resume, tc_closed, timer_closed, aborted;
	char host[SNI_NAME_MAX];
	char peer[NA_FMT_MAX];
};

static struct edge {
	uv_loop_t *loop;
	edge_config cfg;
	tok_store *tok;
	SSL_CTX *cctx, *mctx;
	uv_tcp_t lsn_conn, lsn_cli, lsn_mtls;
	bool have_mtls;
	adm_server *adm;
	uv_signal_t sigterm, sigint;
	uv_timer_t recheck; /* drops the links of tunnels deleted since they registered */
	struct tunnel *tunnels;
	struct cconn *pending;
	struct relay *relays;
	int nrelays;
	int npending;        /* relays not routed yet (cfg.client_pending_max) */
	uint64_t hello_bytes; /* their buffered bytes (cfg.client_hello_budget) */
	struct shed_log { uint64_t last; unsigned skipped; bool any; } shed_clients, shed_pending, shed_budget;
	bool stopping;
	adm_metric *m_reg_ok, *m_reg_rej, *m_clients_sni, *m_clients_mtls, *m_pending, *m_hello_bytes;
} E;

static void cconn_close(struct cconn *cc, const char *why);
static void cconn_flush(struct cconn *cc);
static void relay_abort(struct relay *r);
static void relay_maybe_free(struct relay *r);
static void relay_unpend(struct relay *r);
static void relay_timeout(uv_timer_t *t);

static const char *q(const char *s, char *buf, size_t len) { return log_quote(s, buf, len); }

/* ------------------------------------------------------------------ tunnels and metrics */

static void reject_metric(const char *entry, const char *reason)
{
	char l[128];
	snprintf(l, sizeof l, "entry=\"%s\",reason=\"%s\"", entry, reason);
	adm_add(adm_counter("postern_edge_client_rejects_total", "Client connections refused, by entry and reason", l), 1);
}

/* Load shedding comes in bursts: at most one line a second per cause; suppressed= counts the rejections of
 * that cause not logged since the previous line. */
static void log_shed(struct shed_log *sl, const char *entry, const char *reason, const char *peer)
{
	uint64_t now = uv_now(E.loop);
	if (sl->any && now - sl->last < 1000) {
		sl->skipped++;
		return;
	}
	log_warn("msg=\"client rejected\" entry=%s reason=\"%s\" peer=%s suppressed=%u", entry, reason, peer, sl->skipped);
	sl->any = true;
	sl->last = now;
	sl->skipped = 0;
}

static struct tunnel *tunnel_find(const char *id)
{
	for (struct tunnel *t = E.tunnels; t; t = t->next)
		if (!strcmp(t->id, id))
			return t;
	return NULL;
}

static struct tunnel *tunnel_get(const tok_tunnel *tt)
{
	struct tunnel *t = tunnel_find(tt->id);
	char l[64];
	if (t)
		return t;
	if (!(t = calloc(1, sizeof *t)))
		return NULL;
	snprintf(t->id, sizeof t->id, "%s", tt->id);
	snprintf(t->domain, sizeof t->domain, "%s", tt->domain);
	adm_label(l, sizeof l, "tunnel", t->id);
	t->m_conns = adm_gauge("postern_edge_connector_connections", "Registered connector connections", l);
	t->m_streams = adm_counter("postern_edge_streams_total", "Streams opened to connectors", l);
	t->m_active = adm_gauge("postern_edge_streams_active", "Streams open now", l);
	{
		char l2[96];
		snprintf(l2, sizeof l2, "%s,direction=\"to_connector\"", l);
		t->m_up = adm_counter("postern_edge_bytes_total", "Relayed bytes (ciphertext), by direction", l2);
		snprintf(l2, sizeof l2, "%s,direction=\"to_client\"", l);
		t->m_down = adm_counter("postern_edge_bytes_total", NULL, l2);
	}
	t->next = E.tunnels;
	E.tunnels = t;
	return t;
}

static void list_unlink_cc(struct cconn *cc)
{
	if (!cc->pprev)
		return;
	*cc->pprev = cc->next;
	if (cc->next)
		cc->next->pprev = cc->pprev;
	cc->pprev = NULL;
	cc->next = NULL;
}

static void list_link_cc(struct cconn **head, struct cconn *cc)
{
	cc->next = *head;
	if (*head)
		(*head)->pprev = &cc->next;
	*head = cc;
	cc->pprev = head;
}

/* The live connection of t with the fewest active streams. */
static struct cconn *tunnel_pick(struct tunnel *t)
{
	struct cconn *best = NULL;
	if (!t)
		return NULL;
	for (struct cconn *cc = t->conns; cc; cc = cc->next)
		if (cc->registered && !cc->goaway && !cc->closing && (!best || cc->nstreams < best->nstreams))
			best = cc;
	return best;
}

/* ------------------------------------------------------------------ relays: client side */

static void relay_unlink_stream(struct relay *r)
{
	if (!r->spprev)
		return;
	*r->spprev = r->snext;
	if (r->snext)
		r->snext->spprev = r->spprev;
	r->spprev = NULL;
	r->snext = NULL;
}

/* The HTTP/2 stream is gone (closed, never sent, or its connection died). */
static void relay_stream_gone(struct relay *r, bool clean)
{
	struct cconn *cc = r->cc;
	if (!cc)
		return;
	relay_unlink_stream(r);
	if (r->on_resume) {
		struct relay **pp = &cc->resume;
		while (*pp && *pp != r)
			pp = &(*pp)->rnext;
		if (*pp)
			*pp = r->rnext;
		r->on_resume = false;
	}
	cc->nstreams--;
	if (r->tun)
		adm_add(r->tun->m_active, -1);
	/* Bytes held back for a slow client still count against the connection window: return them. */
	if (cc->h2 && r->unconsumed) {
		nghttp2_session_consume_connection(cc->h2, r->unconsumed);
		r->unconsumed = 0;
	}
	/* Later callbacks for this stream (if nghttp2 still has one) must not find the relay. */
	if (cc->h2 && r->sid > 0)
		nghttp2_session_set_stream_user_data(cc->h2, r->sid, NULL);
	r->cc = NULL;
	r->sid = -1;
	/* A relay already answered (alert or HTTP error) closes once that answer is out. */
	if (r->tc && r->st != RS_DONE) {
		if (clean) {
			/* Both directions ended: the client gets what is queued, within a bound. */
			tconn_close_after_flush(r->tc);
			uv_timer_start(&r->timer, relay_timeout, LINGER_MS, 0);
		} else {
			tconn_close(r->tc);
		}
	}
	relay_maybe_free(r);
}

static void relay_timer_closed(uv_handle_t *h)
{
	struct relay *r = h->data;
	r->timer_closed = true;
	relay_maybe_free(r);
}

static void relay_maybe_free(struct relay *r)
{
	if (!r->tc_closed || !r->timer_closed || r->cc)
		return;
	free(r->buf);
	free(r->head);
	free(r);
}

static void relay_on_close(tconn *c, int err, void *ud)
{
	struct relay *r = ud;
	char hb[300];
	(void)c;
	(void)err;
	r->tc = NULL;
	r->tc_closed = true;
	relay_unpend(r);
	if (r->pprev) {
		*r->pprev = r->next;
		if (r->next)
			r->next->pprev = r->pprev;
		r->pprev = NULL;
		E.nrelays--;
		adm_add(r->entry == ENTRY_SNI ? E.m_clients_sni : E.m_clients_mtls, -1);
	}
	if (r->st == RS_OPEN || r->st == RS_OPENING)
		log_info("msg=\"client closed\" entry=%s tunnel=%s host=%s peer=%s up_bytes=%llu down_bytes=%llu ms=%llu",
			 r->entry == ENTRY_SNI ? "sni" : "mtls", r->tun ? r->tun->id : "-", q(r->host, hb, sizeof hb),
			 r->peer, (unsigned long long)r->up, (unsigned long long)r->down,
			 (unsigned long long)(uv_now(E.loop) - r->t0));
	r->st = RS_DONE;
	/* The stream, if any, is reset; the relay lives on until nghttp2 is done with it. */
	if (r->cc && r->sid > 0 && r->cc->h2) {
		struct cconn *cc = r->cc;
		r->aborted = true;
		if (!(r->up_eof_sent && r->down_eof))
			nghttp2_submit_rst_stream(cc->h2, NGHTTP2_FLAG_NONE, r->sid, NGHTTP2_CANCEL);
		cconn_flush(cc);
	}
	uv_close((uv_handle_t *)&r->timer, relay_timer_closed);
}

/* Closes the client; a stream it had is reset. */
static void relay_abort(struct relay *r)
{
	if (r->tc)
		tconn_close(r->tc);
}

static void relay_timeout(uv_timer_t *t)
{
	struct relay *r = t->data;
	char hb[300];
	const char *entry = r->entry == ENTRY_SNI ? "sni" : "mtls";
	switch (r->st) {
	case RS_HELLO:
	case RS_HEAD:
		log_info("msg=\"client rejected\" entry=%s reason=\"nothing usable within %ds\" peer=%s", entry,
			 HELLO_TIMEOUT_MS / 1000, r->peer);
		reject_metric(entry, "timeout");
		break;
	case RS_OPENING:
		log_warn("msg=\"connector did not answer the stream\" entry=%s tunnel=%s host=%s peer=%s", entry,
			 r->tun ? r->tun->id : "-", q(r->host, hb, sizeof hb), r->peer);
		reject_metric(entry, "connector_timeout");
		break;
	default:
		break;
	}
	relay_abort(r);
}

/* Buffered bytes of a relay that is not routed yet count against cfg.client_hello_budget. */
static void hello_charge(struct relay *r, size_t bytes)
{
	E.hello_bytes = E.hello_bytes - r->charge + bytes;
	adm_add(E.m_hello_bytes, (int64_t)bytes - (int64_t)r->charge);
	r->charge = bytes;
}

/* The relay is routed, answered or gone: it no longer counts as pending. */
static void relay_unpend(struct relay *r)
{
	if (!r->pending)
		return;
	r->pending = false;
	E.npending--;
	adm_add(E.m_pending, -1);
	hello_charge(r, 0);
}

/* A client answered before it was routed: what it buffered is of no further use. */
static void relay_drop_unrouted(struct relay *r)
{
	if (!r->pending)
		return;
	relay_unpend(r);
	free(r->buf);
	r->buf = NULL;
	r->off = r->len = r->cap = 0;
}

/* Answers an mTLS client with an HTTP error and closes after it is sent. */
static void mtls_error(struct relay *r, int status, const char *reason, const char *text)
{
	char resp[512];
	int n = snprintf(resp, sizeof resp,
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n%s\n",
			 status, reason, strlen(text) + 1, text);
	relay_drop_unrouted(r);
	r->st = RS_DONE;
	if (!r->tc)
		return;
	tconn_write(r->tc, (const uint8_t *)resp, (size_t)n);
	tconn_shutdown(r->tc);
	tconn_close_after_flush(r->tc);
	uv_timer_start(&r->timer, relay_timeout, CLOSE_GRACE_MS, 0);
}

/* Refuses an SNI client with a TLS alert. */
static void sni_refuse(struct relay *r, uint8_t alert)
{
	uint8_t a[SNI_ALERT_LEN];
	relay_drop_unrouted(r);
	r->st = RS_DONE;
	if (!r->tc)
		return;
	sni_alert(a, alert);
	tconn_write(r->tc, a, sizeof a);
	tconn_shutdown(r->tc);
	tconn_close_after_flush(r->tc);
	uv_timer_start(&r->timer, relay_timeout, CLOSE_GRACE_MS, 0);
}

static bool buf_append(struct relay *r, const uint8_t *p, size_t n, size_t cap)
{
	if (r->len + n > cap)
		return false;
	if (r->off && r->off + r->len + n > r->cap) {
		memmove(r->buf, r->buf + r->off, r->len);
		r->off = 0;
	}
	if (r->off + r->len + n > r->cap) {
		size_t ncap = r->cap ? r->cap : 4096;
		uint8_t *nb;
		while (ncap < r->off + r->len + n)
			ncap *= 2;
		if (!(nb = realloc(r->buf, ncap)))
			return false;
		r->buf = nb;
		r->cap = ncap;
	}
	memcpy(r->buf + r->off + r->len, p, n);
	r->len += n;
	return true;
}

/* What r->cap becomes when buf_append adds n bytes (it grows only when len + n exceeds it). */
static size_t buf_cap_after(const struct relay *r, size_t n)
{
	size_t need = r->len + n, cap = r->cap ? r->cap : 4096;
	if (need <= r->cap)
		return r->cap;
	while (cap < need)
		cap *= 2;
	return cap;
}

/* ------------------------------------------------------------------ relays: stream side */

static ssize_t up_read(nghttp2_session *s, int32_t sid, uint8_t *out, size_t length, uint32_t *flags,
		       nghttp2_data_source *src, void *ud)
{
	struct relay *r = src->ptr;
	struct cconn *cc = ud;
	size_t k;
	(void)s;
	(void)sid;
	if (r->aborted)
		return NGHTTP2_ERR_DEFERRED; /* an RST_STREAM is on its way */
	k = r->len < length ? r->len : length;
	if (k) {
		memcpy(out, r->buf + r->off, k);
		r->off += k;
		r->len -= k;
		if (!r->len) {
			/* An idle relay keeps no buffer: memory per idle client stays small. */
			free(r->buf);
			r->buf = NULL;
			r->off = r->cap = 0;
		}
		r->up += k;
		if (r->tun)
			adm_add(r->tun->m_up, (int64_t)k);
	}
	if (!r->len && r->cli_eof) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		r->up_eof_sent = true;
	} else if (!k) {
		r->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (r->paused && r->len < UP_CAP / 2 && !r->on_resume) {
		/* Resumed after the send pass: tconn_resume may deliver data synchronously. */
		r->on_resume = true;
		r->rnext = cc->resume;
		cc->resume = r;
	}
	return (ssize_t)k;
}

/* New client bytes (or EOF) for a routed relay. */
static void relay_kick(struct relay *r)
{
	if (r->cc && r->deferred && r->sid > 0) {
		r->deferred = false;
		nghttp2_session_resume_data(r->cc->h2, r->sid);
	}
	if (r->cc)
		cconn_flush(r->cc);
}

static void relay_open_stream(struct relay *r, struct cconn *cc)
{
	char authority[SNI_NAME_MAX + 8];
	nghttp2_data_provider prd = { .source.ptr = r, .read_callback = up_read };
	const char *entry = r->entry == ENTRY_SNI ? "sni" : "mtls";
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"CONNECT", 7, 7, NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)":authority", (uint8_t *)authority, 10, 0, NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"postern-client-addr", (uint8_t *)r->peer, 19, strlen(r->peer), NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"postern-entry", (uint8_t *)entry, 13, strlen(entry), NGHTTP2_NV_FLAG_NONE },
	};
	int32_t sid;
	nv[1].valuelen = (size_t)snprintf(authority, sizeof authority, "%s:443", r->host);
	/* The buffered ClientHello goes out with the request: no round trip is spent waiting for the 200. */
	sid = nghttp2_submit_request(cc->h2, NULL, nv, sizeof nv / sizeof nv[0], &prd, r);
	if (sid < 0) {
		log_warn("msg=\"cannot open stream\" tunnel=%s peer=%s err=\"%s\"", r->tun->id, r->peer,
			 nghttp2_strerror(sid));
		if (r->entry == ENTRY_SNI)
			sni_refuse(r, SNI_ALERT_INTERNAL_ERROR);
		else
			mtls_error(r, 502, "Bad Gateway", "cannot open a stream to the tunnel");
		return;
	}
	r->sid = sid;
	r->cc = cc;
	r->snext = cc->relays;
	if (cc->relays)
		cc->relays->spprev = &r->snext;
	cc->relays = r;
	r->spprev = &cc->relays;
	cc->nstreams++;
	adm_add(r->tun->m_streams, 1);
	adm_add(r->tun->m_active, 1);
	r->st = RS_OPENING;
	uv_timer_start(&r->timer, relay_timeout, OPEN_TIMEOUT_MS, 0);
	cconn_flush(cc);
}

/* Routes a relay whose host is known, or answers the client with why not. */
static void relay_route(struct relay *r)
{
	char id[TOK_ID_LEN + 8], hb[300];
	const char *entry = r->entry == ENTRY_SNI ? "sni" : "mtls";
	struct tunnel *t = NULL;
	struct cconn *cc = NULL;

	if (sni_split(r->host, E.cfg.domain, NULL, 0, id, sizeof id) < 0) {
		log_info("msg=\"client rejected\" entry=%s reason=\"host is not <route>.<tunnel id>.%s\" host=%s peer=%s",
			 entry, E.cfg.domain, q(r->host, hb, sizeof hb), r->peer);
		reject_metric(entry, "foreign_host");
		if (r->entry == ENTRY_SNI)
			sni_refuse(r, SNI_ALERT_UNRECOGNIZED_NAME);
		else
			mtls_error(r, 403, "Forbidden", "host is not <route>.<tunnel id> under this edge's domain");
		return;
	}
	t = tunnel_find(id);
	if (!(cc = tunnel_pick(t))) {
		log_info("msg=\"client rejected\" entry=%s reason=\"%s\" host=%s peer=%s", entry,
			 t ? "tunnel has no live connection" : "unknown tunnel", q(r->host, hb, sizeof hb), r->peer);
		reject_metric(entry, t ? "no_connection" : "unknown_tunnel");
		if (r->entry == ENTRY_SNI)
			sni_refuse(r, SNI_ALERT_UNRECOGNIZED_NAME);
		else if (!t)
			mtls_error(r, 404, "Not Found", "no such tunnel (or it never connected to this edge)");
		else
			mtls_error(r, 502, "Bad Gateway", "tunnel has no live connection");
		return;
	}
	r->tun = t;
	relay_open_stream(r, cc);
	/* Routed (a refusal above freed the buffer already): the stream's flow control bounds it from here. */
	relay_unpend(r);
}

/* ------------------------------------------------------------------ client connections */

static void sni_on_data(struct relay *r, const uint8_t *p, size_t n)
{
	char hb[300];
	size_t cap;
	int res;
	/* Many clients holding partial hellos must not add up to more than the budget: the one whose bytes would
	 * cross it is closed (the budget held by the others drains within HELLO_TIMEOUT_MS). */
	if (r->len + n <= HELLO_HOLD && (cap = buf_cap_after(r, n)) > r->charge &&
	    E.hello_bytes - r->charge + cap > E.cfg.client_hello_budget) {
		log_shed(&E.shed_budget, "sni", "ClientHello buffer budget exhausted", r->peer);
		reject_metric("sni", "hello_budget");
		relay_abort(r);
		return;
	}
	if (!buf_append(r, p, n, HELLO_HOLD)) {
		log_info("msg=\"client rejected\" entry=sni reason=\"ClientHello too large\" peer=%s", r->peer);
		reject_metric("sni", "too_large");
		relay_abort(r);
		return;
	}
	hello_charge(r, r->cap);
	res = sni_parse(r->buf + r->off, r->len, r->host, sizeof r->host);
	switch (res) {
	case SNI_NEED_MORE:
		return;
	case SNI_FOUND:
		uv_timer_stop(&r->timer);
		relay_route(r);
		return;
	case SNI_NONE:
		log_info("msg=\"client rejected\" entry=sni reason=\"no server name in ClientHello\" peer=%s", r->peer);
		reject_metric("sni", "no_sni");
		sni_refuse(r, SNI_ALERT_UNRECOGNIZED_NAME);
		return;
	default:
		log_info("msg=\"client rejected\" entry=sni reason=%s peer=%s", q(sni_result_str(res), hb, sizeof hb),
			 r->peer);
		reject_metric("sni", res == SNI_TOO_LARGE ? "too_large" : "malformed");
		relay_abort(r);
	}
}

static int head_url(http_parser *hp, const char *at, size_t len)
{
	struct mtls_head *h = hp->data;
	if (h->urllen + len >= sizeof h->url) {
		h->url_long = true;
		return 0;
	}
	memcpy(h->url + h->urllen, at, len);
	h->urllen += len;
	h->url[h->urllen] = 0;
	return 0;
}

static int head_done(http_parser *hp)
{
	struct mtls_head *h = hp->data;
	h->done = true;
	return 2; /* for CONNECT: stop here, what follows is the tunnel */
}

static const http_parser_settings head_settings = { .on_url = head_url, .on_headers_complete = head_done };

static void mtls_on_data(struct relay *r, const uint8_t *p, size_t n)
{
	struct mtls_head *h = r->head;
	char hb[600], *colon, *end;
	size_t used;
	long port;

	used = http_parser_execute(&h->hp, &head_settings, (const char *)p, n);
	h->seen += used;
	if (!h->done) {
		if (HTTP_PARSER_ERRNO(&h->hp) != HPE_OK) {
			log_info("msg=\"client rejected\" entry=mtls reason=\"bad CONNECT request: %s\" peer=%s",
				 http_errno_name(HTTP_PARSER_ERRNO(&h->hp)), r->peer);
			reject_metric("mtls", "bad_request");
			mtls_error(r, 400, "Bad Request", "malformed HTTP request");
		} else if (h->seen > HEAD_MAX) {
			reject_metric("mtls", "too_large");
			mtls_error(r, 431, "Request Header Fields Too Large", "CONNECT request head too large");
		}
		return;
	}
	uv_timer_stop(&r->timer);
	if (h->hp.method != HTTP_CONNECT) {
		log_info("msg=\"client rejected\" entry=mtls reason=\"method %s, not CONNECT\" peer=%s",
			 http_method_str((enum http_method)h->hp.method), r->peer);
		reject_metric("mtls", "bad_request");
		mtls_error(r, 405, "Method Not Allowed", "only CONNECT <route>.<tunnel domain>:443 is served here");
		return;
	}
	if (h->url_long || !(colon = strrchr(h->url, ':')) || colon == h->url ||
	    (size_t)(colon - h->url) >= sizeof r->host) {
		log_info("msg=\"client rejected\" entry=mtls reason=\"bad CONNECT target\" target=%s peer=%s",
			 q(h->url, hb, sizeof hb), r->peer);
		reject_metric("mtls", "bad_request");
		mtls_error(r, 400, "Bad Request", "CONNECT target must be host:443");
		return;
	}
	/* The host is held to the rule an SNI name is held to: what reaches the connector as :authority is a
	 * plain DNS name whichever entry it came through (no userinfo, brackets, escapes or trailing dot). */
	if (!sni_valid_host(h->url, (size_t)(colon - h->url))) {
		log_info("msg=\"client rejected\" entry=mtls reason=\"bad CONNECT host\" target=%s peer=%s",
			 q(h->url, hb, sizeof hb), r->peer);
		reject_metric("mtls", "bad_request");
		mtls_error(r, 400, "Bad Request", "CONNECT host must be a DNS name (letters, digits, '-', '_', '.')");
		return;
	}
	/* 1 to 5 digits, 1..65535: strtol alone would take signs, blanks and overflow. */
	port = 0;
	for (end = colon + 1; *end >= '0' && *end <= '9' && end - colon <= 5; end++)
		port = port * 10 + (*end - '0');
	if (*end || end == colon + 1 || port < 1 || port > 65535) {
		log_info("msg=\"client rejected\" entry=mtls reason=\"bad CONNECT port\" target=%s peer=%s",
			 q(h->url, hb, sizeof hb), r->peer);
		reject_metric("mtls", "bad_request");
		mtls_error(r, 400, "Bad Request", "CONNECT port must be a number (443)");
		return;
	}
	memcpy(r->host, h->url, (size_t)(colon - h->url));
	r->host[colon - h->url] = 0;
	for (char *c = r->host; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c + 32);
	if (port != 443) {
		log_info("msg=\"client rejected\" entry=mtls reason=\"port is not 443\" target=%s peer=%s",
			 q(h->url, hb, sizeof hb), r->peer);
		reject_metric("mtls", "forbidden");
		mtls_error(r, 403, "Forbidden", "only port 443 is relayed");
		return;
	}
	/* Bytes after the head already belong to the tunnel (a client may send its ClientHello at once). */
	if (used < n && !buf_append(r, p + used, n - used, UP_CAP)) {
		relay_abort(r);
		return;
	}
	free(r->head);
	r->head = NULL;
	relay_route(r);
}

static void relay_on_data(tconn *c, const uint8_t *p, size_t n, void *ud)
{
	struct relay *r = ud;
	switch (r->st) {
	case RS_HELLO:
		sni_on_data(r, p, n);
		return;
	case RS_HEAD:
		mtls_on_data(r, p, n);
		return;
	case RS_OPENING:
	case RS_OPEN:
		if (!buf_append(r, p, n, UP_CAP + 64 * 1024)) {
			relay_abort(r); /* reads pause at UP_CAP: more than a read past it is a bug */
			return;
		}
		if (r->len >= UP_CAP && !r->paused) {
			r->paused = true;
			tconn_pause(c);
		}
		relay_kick(r);
		return;
	default:
		return; /* answered already; input is ignored */
	}
}

static void relay_on_eof(tconn *c, void *ud)
{
	struct relay *r = ud;
	(void)c;
	if (r->st == RS_OPENING || r->st == RS_OPEN) {
		r->cli_eof = true;
		relay_kick(r);
		return;
	}
	if (r->st == RS_HELLO || r->st == RS_HEAD) {
		log_info("msg=\"client rejected\" entry=%s reason=\"closed before %s\" peer=%s",
			 r->entry == ENTRY_SNI ? "sni" : "mtls", r->st == RS_HELLO ? "a complete ClientHello" : "a CONNECT request",
			 r->peer);
		reject_metric(r->entry == ENTRY_SNI ? "sni" : "mtls", "incomplete");
		relay_abort(r);
	}
}

static void relay_on_drain(tconn *c, void *ud)
{
	struct relay *r = ud;
	(void)c;
	if (r->cc && r->unconsumed && r->sid > 0) {
		nghttp2_session_consume(r->cc->h2, r->sid, r->unconsumed);
		r->unconsumed = 0;
		cconn_flush(r->cc);
	}
}

static void relay_on_open(tconn *c, int status, void *ud)
{
	struct relay *r = ud;
	if (status < 0) {
		/* Only the mTLS entry has a handshake: a missing or untrusted client certificate ends here. */
		log_info("msg=\"client rejected\" entry=mtls reason=\"TLS handshake failed: %s\" peer=%s", tconn_errstr(c),
			 r->peer);
		reject_metric("mtls", "handshake");
		return;
	}
	if (r->entry == ENTRY_MTLS && r->st == RS_HEAD)
		uv_timer_start(&r->timer, relay_timeout, HELLO_TIMEOUT_MS, 0);
}

static const tconn_cbs relay_cbs = {
	.on_open = relay_on_open,
	.on_data = relay_on_data,
	.on_eof = relay_on_eof,
	.on_drain = relay_on_drain,
	.on_close = relay_on_close,
};

static void refused_closed(uv_handle_t *h) { free(h); }

/* Takes the pending connection off the listener and closes it: returning without uv_accept would leave it
 * queued and libuv would stop reading this listener. */
static void accept_and_drop(uv_stream_t *lsn)
{
	uv_tcp_t *t = malloc(sizeof *t);
	if (!t || uv_tcp_init(E.loop, t) < 0) {
		free(t);
		return;
	}
	uv_accept(lsn, (uv_stream_t *)t);
	uv_close((uv_handle_t *)t, refused_closed);
}

static void on_client(uv_stream_t *lsn, int status)
{
	enum entry entry = lsn == (uv_stream_t *)&E.lsn_mtls ? ENTRY_MTLS : ENTRY_SNI;
	const char *ename = entry == ENTRY_SNI ? "sni" : "mtls";
	struct relay *r;
	int rc;
	if (status < 0) {
		log_warn("msg=\"accept failed\" entry=%s err=\"%s\"", ename, uv_strerror(status));
		return;
	}
	if (E.stopping)
		return;
	if (!(r = calloc(1, sizeof *r))) {
		accept_and_drop(lsn);
		return;
	}
	r->entry = entry;
	r->st = entry == ENTRY_SNI ? RS_HELLO : RS_HEAD;
	r->sid = -1;
	r->t0 = uv_now(E.loop);
	uv_timer_init(E.loop, &r->timer);
	r->timer.data = r;
	if (entry == ENTRY_MTLS) {
		if (!(r->head = calloc(1, sizeof *r->head))) {
			r->tc_closed = true;
			uv_close((uv_handle_t *)&r->timer, relay_timer_closed);
			return;
		}
		http_parser_init(&r->head->hp, HTTP_REQUEST);
		r->head->hp.data = r->head;
	}
	if ((rc = tconn_accept(lsn, entry == ENTRY_MTLS ? E.mctx : NULL, &relay_cbs, r, &r->tc)) < 0) {
		log_warn("msg=\"accept failed\" entry=%s err=\"%s\"", ename, uv_strerror(rc));
		r->tc = NULL;
		r->tc_closed = true;
		uv_close((uv_handle_t *)&r->timer, relay_timer_closed);
		return;
	}
	na_format(tconn_peer_addr(r->tc), r->peer, sizeof r->peer);
	r->next = E.relays;
	if (E.relays)
		E.relays->pprev = &r->next;
	E.relays = r;
	r->pprev = &E.relays;
	E.nrelays++;
	adm_add(entry == ENTRY_SNI ? E.m_clients_sni : E.m_clients_mtls, 1);
	if (E.cfg.have_allowed && !na_cidrs_match(&E.cfg.client_allowed, tconn_peer_addr(r->tc))) {
		log_info("msg=\"client rejected\" entry=%s reason=\"address not in client_allowed_ips\" peer=%s", ename,
			 r->peer);
		reject_metric(ename, "ip_not_allowed");
		r->st = RS_DONE;
		tconn_close(r->tc);
		return;
	}
	if (E.nrelays > MAX_CLIENTS) {
		log_shed(&E.shed_clients, ename, "too many clients", r->peer);
		reject_metric(ename, "overload");
		r->st = RS_DONE;
		tconn_close(r->tc);
		return;
	}
	/* Clients that have not said where they go cost a deadline, a buffer and (mTLS) a TLS session each. */
	if (E.npending >= E.cfg.client_pending_max) {
		log_shed(&E.shed_pending, ename, "too many clients not routed yet", r->peer);
		reject_metric(ename, "pending");
		r->st = RS_DONE;
		tconn_close(r->tc);
		return;
	}
	r->pending = true;
	E.npending++;
	adm_add(E.m_pending, 1);
	/* SNI: the ClientHello deadline starts now. mTLS: tconn bounds the handshake, then on_open arms it. */
	if (entry == ENTRY_SNI)
		uv_timer_start(&r->timer, relay_timeout, HELLO_TIMEOUT_MS, 0);
}

/* ------------------------------------------------------------------ connector connections: HTTP/2 */

static void cconn_flush(struct cconn *cc)
{
	const uint8_t *data;
	ssize_t n;
	if (!cc->h2 || cc->closing || cc->flushing)
		return;
	/* The link's queue is full: on_drain calls back; pulling more DATA now would only grow it. */
	if (tconn_over_high_water(cc->tc))
		return;
	cc->flushing = true;
	/* Frames are gathered so that TLS and the socket see one write per batch, not one per frame. */
	for (;;) {
		static uint8_t batch[64 * 1024];
		size_t blen = 0;
		bool more = true;
		while (blen < sizeof batch / 2 && (n = nghttp2_session_mem_send(cc->h2, &data)) != 0) {
			if (n < 0) {
				cc->flushing = false;
				cconn_close(cc, nghttp2_strerror((int)n));
				return;
			}
			if (blen + (size_t)n > sizeof batch) {
				if ((blen && tconn_write(cc->tc, batch, blen) < 0) || tconn_write(cc->tc, data, (size_t)n) < 0)
					goto fail;
				blen = 0;
				continue;
			}
			memcpy(batch + blen, data, (size_t)n);
			blen += (size_t)n;
		}
		if (blen < sizeof batch / 2)
			more = false;
		if (blen && tconn_write(cc->tc, batch, blen) < 0)
			goto fail;
		if (!more || tconn_over_high_water(cc->tc))
			break;
	}
	cc->flushing = false;
	/* Client reads that up_read freed room for; resuming may deliver data (and flush) at once. */
	while (cc->resume) {
		struct relay *r = cc->resume;
		cc->resume = r->rnext;
		r->on_resume = false;
		if (r->paused && r->tc) {
			r->paused = false;
			tconn_resume(r->tc);
		}
	}
	if (!nghttp2_session_want_read(cc->h2) && !nghttp2_session_want_write(cc->h2))
		cconn_close(cc, "HTTP/2 session finished");
	return;
fail:
	cc->flushing = false;
	cconn_close(cc, "write failed");
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
			const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct relay *r;
	(void)flags;
	(void)ud;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_RESPONSE)
		return 0;
	r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (r && namelen == 7 && !memcmp(name, ":status", 7)) {
		r->status = 0;
		for (size_t i = 0; i < valuelen && i < 3; i++)
			r->status = r->status * 10 + (value[i] - '0');
	}
	return 0;
}

static int h2_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct cconn *cc = ud;
	struct relay *r;
	char hb[300];
	if (f->hd.type == NGHTTP2_GOAWAY) {
		cc->goaway = true;
		log_info("msg=\"connector draining\" tunnel=%s connector_id=%s slot=%u", cc->tun ? cc->tun->id : "-",
			 cc->connector_id, cc->slot);
		return 0;
	}
	if (f->hd.stream_id <= 0 || !(r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id)))
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_RESPONSE && r->st == RS_OPENING) {
		uv_timer_stop(&r->timer);
		if (r->status == 200) {
			r->st = RS_OPEN;
			if (r->entry == ENTRY_MTLS && r->tc) {
				static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
				tconn_write(r->tc, (const uint8_t *)ok, sizeof ok - 1);
			}
			log_info("msg=\"client relayed\" entry=%s tunnel=%s host=%s peer=%s stream=%d",
				 r->entry == ENTRY_SNI ? "sni" : "mtls", r->tun->id, q(r->host, hb, sizeof hb), r->peer,
				 r->sid);
		} else {
			log_warn("msg=\"connector refused stream\" tunnel=%s host=%s status=%d peer=%s", r->tun->id,
				 q(r->host, hb, sizeof hb), r->status, r->peer);
			reject_metric(r->entry == ENTRY_SNI ? "sni" : "mtls", "connector_refused");
			nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, r->sid, NGHTTP2_CANCEL);
			r->aborted = true;
			if (r->entry == ENTRY_SNI)
				sni_refuse(r, SNI_ALERT_INTERNAL_ERROR);
			else
				mtls_error(r, 502, "Bad Gateway", "the tunnel refused the connection");
			return 0;
		}
	}
	if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    !r->down_eof) {
		r->down_eof = true;
		if (r->tc && r->st == RS_OPEN)
			tconn_shutdown(r->tc);
	}
	return 0;
}

static int h2_on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len, void *ud)
{
	struct relay *r = nghttp2_session_get_stream_user_data(s, sid);
	(void)flags;
	(void)ud;
	if (!r || !r->tc || r->st != RS_OPEN || r->aborted) {
		/* Nobody will take these bytes: give the window back at once. */
		nghttp2_session_consume(s, sid, len);
		return 0;
	}
	if (tconn_write(r->tc, data, len) < 0) {
		nghttp2_session_consume(s, sid, len);
		relay_abort(r);
		return 0;
	}
	r->down += len;
	adm_add(r->tun->m_down, (int64_t)len);
	/* Window returns only while the client keeps up; otherwise on_drain returns it. */
	if (tconn_over_high_water(r->tc)) {
		r->unconsumed += len;
	} else {
		nghttp2_session_consume(s, sid, len + r->unconsumed);
		r->unconsumed = 0;
	}
	return 0;
}

static int h2_on_stream_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
	struct relay *r = nghttp2_session_get_stream_user_data(s, sid);
	(void)ud;
	if (r)
		relay_stream_gone(r, code == NGHTTP2_NO_ERROR && r->down_eof);
	return 0;
}

static int h2_on_not_send(nghttp2_session *s, const nghttp2_frame *f, int err, void *ud)
{
	struct relay *r;
	(void)err;
	(void)ud;
	/* A request that never went out (cancelled, or refused after GOAWAY) gets no stream-close callback. */
	if (f->hd.type == NGHTTP2_HEADERS && (r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id)))
		relay_stream_gone(r, false);
	return 0;
}

static int h2_start(struct cconn *cc)
{
	nghttp2_session_callbacks *cbs = NULL;
	nghttp2_option *opt = NULL;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 0 }, /* the connector never opens streams */
	};
	int rc = -ENOMEM;
	if (nghttp2_session_callbacks_new(&cbs) || nghttp2_option_new(&opt))
		goto out;
	nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h2_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_on_stream_close);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, h2_on_not_send);
	/* Window is returned by hand, when bytes have left for the client (docs/internals.md, step 4). */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	if (nghttp2_session_client_new2(&cc->h2, cbs, cc, opt))
		goto out;
	if (nghttp2_submit_settings(cc->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) ||
	    nghttp2_session_set_local_window_size(cc->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW))
		goto out;
	rc = 0;
out:
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	return rc;
}

/* ------------------------------------------------------------------ connector connections: registration */

static void cconn_timer_closed(uv_handle_t *h)
{
	struct cconn *cc = h->data;
	free(cc);
}

static void cconn_on_close(tconn *c, int err, void *ud)
{
	struct cconn *cc = ud;
	(void)err;
	if (!cc->closing && cc->registered)
		log_info("msg=\"connector disconnected\" tunnel=%s connector_id=%s slot=%u peer=%s reason=\"%s\"",
			 cc->tun->id, cc->connector_id, cc->slot, cc->peer, tconn_errstr(c));
	cc->closing = true;
	cc->tc_closed = true;
	/* Streams die with their connection; their clients are closed. */
	while (cc->relays)
		relay_stream_gone(cc->relays, false);
	if (cc->registered && cc->tun)
		adm_add(cc->tun->m_conns, -1);
	list_unlink_cc(cc);
	if (cc->h2)
		nghttp2_session_del(cc->h2);
	cc->h2 = NULL;
	if (cc->lb) {
		OPENSSL_cleanse(cc->lb, sizeof *cc->lb);
		free(cc->lb);
	}
	free(cc->early);
	uv_close((uv_handle_t *)&cc->timer, cconn_timer_closed);
}

static void cconn_close(struct cconn *cc, const char *why)
{
	if (cc->closing)
		return;
	cc->closing = true;
	if (cc->registered)
		log_info("msg=\"connector disconnected\" tunnel=%s connector_id=%s slot=%u peer=%s reason=\"%s\"",
			 cc->tun->id, cc->connector_id, cc->slot, cc->peer, why);
	tconn_close(cc->tc);
}

static void cconn_keepalive(uv_timer_t *t)
{
	struct cconn *cc = t->data;
	uint64_t idle = uv_now(E.loop) - cc->last_recv;
	if (!cc->registered) {
		log_info("msg=\"connector rejected\" reason=\"no registration within %ds\" peer=%s", REG_TIMEOUT_MS / 1000,
			 cc->peer);
		adm_add(E.m_reg_rej, 1);
		tconn_close(cc->tc);
		return;
	}
	if (idle >= DEAD_MS) {
		cconn_close(cc, "no frames from the connector for 30s");
		return;
	}
	if (idle >= KEEPALIVE_MS && cc->h2) {
		nghttp2_submit_ping(cc->h2, NGHTTP2_FLAG_NONE, NULL);
		cconn_flush(cc);
	}
}

static void reg_reply_error(struct cconn *cc, const char *error)
{
	reg_response resp;
	char line[REG_MAX_LINE + 2];
	int n;
	memset(&resp, 0, sizeof resp);
	snprintf(resp.error, sizeof resp.error, "%s", error);
	n = reg_response_encode(&resp, line, sizeof line);
	if (n > 0)
		tconn_write(cc->tc, (const uint8_t *)line, (size_t)n);
	tconn_shutdown(cc->tc);
	tconn_close_after_flush(cc->tc);
	cc->closing = true; /* no more input is read into it; the registration timer bounds the flush */
	adm_add(E.m_reg_rej, 1);
}

static void cconn_register(struct cconn *cc)
{
	reg_request req;
	reg_response resp;
	tok_tunnel tt;
	char err[256], id[TOK_ID_LEN + 1], line[REG_MAX_LINE + 2];
	struct tunnel *t;
	int rc, n;

	if (reg_request_parse(cc->lb->buf, &req, err, sizeof err) < 0) {
		log_info("msg=\"connector rejected\" reason=\"bad registration line: %s\" peer=%s", err, cc->peer);
		reg_reply_error(cc, "malformed registration");
		goto out;
	}
	if (req.v != REG_PROTO_VERSION) {
		log_info("msg=\"connector rejected\" reason=\"protocol version %d\" peer=%s", req.v, cc->peer);
		reg_reply_error(cc, "unsupported protocol version");
		goto out;
	}
	if (tok_token_tunnel_id(req.token, id) < 0)
		snprintf(id, sizeof id, "-");
	/* The store waits TOK_LOOP_BUSY_MS at most for a lock (this is the event loop): a locked or failing
	 * store is no verdict on the token, and the connector is told so and retries. */
	rc = tok_verify(E.tok, req.token, &tt);
	if (rc == -EBUSY || rc == -EIO) {
		log_warn("msg=\"connector rejected\" reason=\"token store unavailable: %s\" tunnel=%s connector_id=%s slot=%u peer=%s",
			 tok_errstr(E.tok), id, req.connector_id, req.slot, cc->peer);
		reg_reply_error(cc, REG_ERR_STORE_UNAVAILABLE);
		goto out;
	}
	if (rc < 0) {
		log_info("msg=\"connector rejected\" reason=\"%s\" tunnel=%s connector_id=%s slot=%u peer=%s",
			 rc == -EINVAL ? "malformed token" : "invalid or expired token", id, req.connector_id, req.slot, cc->peer);
		reg_reply_error(cc, "invalid or expired token");
		goto out;
	}
	if (!(t = tunnel_get(&tt))) {
		reg_reply_error(cc, "out of memory");
		goto out;
	}
	snprintf(cc->connector_id, sizeof cc->connector_id, "%s", req.connector_id);
	cc->slot = req.slot;
	/* The same (tunnel, connector, slot) registering again means the old link is stale: it goes now. */
	for (struct cconn *o = t->conns; o; o = o->next)
		if (!o->closing && o->slot == cc->slot && !strcmp(o->connector_id, cc->connector_id)) {
			log_info("msg=\"registration replaced\" tunnel=%s connector_id=%s slot=%u old_peer=%s new_peer=%s",
				 t->id, cc->connector_id, cc->slot, o->peer, cc->peer);
			cconn_close(o, "replaced by a new registration");
			break;
		}
	memset(&resp, 0, sizeof resp);
	resp.ok = true;
	snprintf(resp.tunnel_id, sizeof resp.tunnel_id, "%s", t->id);
	snprintf(resp.domain, sizeof resp.domain, "%s", t->domain);
	snprintf(resp.edge_id, sizeof resp.edge_id, "%s", E.cfg.edge_id);
	if ((n = reg_response_encode(&resp, line, sizeof line)) < 0 || tconn_write(cc->tc, (const uint8_t *)line, (size_t)n) < 0 ||
	    h2_start(cc) < 0) {
		log_warn("msg=\"connector setup failed\" tunnel=%s peer=%s", t->id, cc->peer);
		tconn_close(cc->tc);
		goto out;
	}
	list_unlink_cc(cc);
	list_link_cc(&t->conns, cc);
	cc->tun = t;
	cc->registered = true;
	adm_add(t->m_conns, 1);
	adm_add(E.m_reg_ok, 1);
	log_info("msg=\"connector registered\" tunnel=%s name=%s connector_id=%s slot=%u version=%s peer=%s", t->id, tt.name,
		 cc->connector_id, cc->slot, req.version, cc->peer);
	uv_timer_start(&cc->timer, cconn_keepalive, KEEPALIVE_MS, KEEPALIVE_MS);
	OPENSSL_cleanse(cc->lb, sizeof *cc->lb);
	free(cc->lb);
	cc->lb = NULL;
	if (cc->early_len) {
		ssize_t used = nghttp2_session_mem_recv(cc->h2, cc->early, cc->early_len);
		free(cc->early);
		cc->early = NULL;
		cc->early_len = 0;
		if (used < 0) {
			cconn_close(cc, nghttp2_strerror((int)used));
			goto out;
		}
	}
	cconn_flush(cc);
out:
	reg_request_wipe(&req);
}

static void cconn_on_data(tconn *c, const uint8_t *p, size_t n, void *ud)
{
	struct cconn *cc = ud;
	ssize_t used;
	(void)c;
	if (cc->closing)
		return;
	cc->last_recv = uv_now(E.loop);
	if (cc->h2) {
		used = nghttp2_session_mem_recv(cc->h2, p, n);
		if (used < 0) {
			cconn_close(cc, nghttp2_strerror((int)used));
			return;
		}
		cconn_flush(cc);
		return;
	}
	if (!cc->lb)
		return;
	used = reg_line_feed(cc->lb, p, n);
	if (used < 0) {
		log_info("msg=\"connector rejected\" reason=\"registration line over %d bytes\" peer=%s", REG_MAX_LINE, cc->peer);
		reg_reply_error(cc, "registration line too long");
		return;
	}
	if (!cc->lb->done)
		return;
	if ((size_t)used < n) {
		/* HTTP/2 bytes pipelined after the line: kept for the session. */
		if (!(cc->early = malloc(n - (size_t)used))) {
			tconn_close(cc->tc);
			return;
		}
		memcpy(cc->early, p + used, n - (size_t)used);
		cc->early_len = n - (size_t)used;
	}
	cconn_register(cc);
}

static void cconn_on_eof(tconn *c, void *ud)
{
	struct cconn *cc = ud;
	(void)c;
	if (!cc->registered && !cc->closing)
		log_info("msg=\"connector rejected\" reason=\"closed before registering\" peer=%s", cc->peer);
	cconn_close(cc, "connector closed the connection");
}

static void cconn_on_drain(tconn *c, void *ud)
{
	(void)c;
	cconn_flush(ud);
}

static void cconn_on_open(tconn *c, int status, void *ud)
{
	struct cconn *cc = ud;
	if (status < 0) {
		log_info("msg=\"connector rejected\" reason=\"TLS handshake failed: %s\" peer=%s", tconn_errstr(c), cc->peer);
		adm_add(E.m_reg_rej, 1);
		return;
	}
	cc->last_recv = uv_now(E.loop);
}

static const tconn_cbs cconn_cbs = {
	.on_open = cconn_on_open,
	.on_data = cconn_on_data,
	.on_eof = cconn_on_eof,
	.on_drain = cconn_on_drain,
	.on_close = cconn_on_close,
};

static void on_connector(uv_stream_t *lsn, int status)
{
	struct cconn *cc;
	int rc, pending = 0;
	if (status < 0) {
		log_warn("msg=\"accept failed\" entry=connector err=\"%s\"", uv_strerror(status));
		return;
	}
	if (E.stopping)
		return;
	/* Unregistered links cost a TLS session each for up to REG_TIMEOUT_MS: bound them. */
	for (struct cconn *p = E.pending; p && pending < MAX_PENDING_CONNECTORS; p = p->next)
		pending++;
	if (pending >= MAX_PENDING_CONNECTORS) {
		log_warn("msg=\"connector refused\" reason=\"%d connections waiting to register\"", pending);
		adm_add(E.m_reg_rej, 1);
		accept_and_drop(lsn);
		return;
	}
	if (!(cc = calloc(1, sizeof *cc)) || !(cc->lb = calloc(1, sizeof *cc->lb))) {
		free(cc);
		accept_and_drop(lsn);
		return;
	}
	uv_timer_init(E.loop, &cc->timer);
	cc->timer.data = cc;
	if ((rc = tconn_accept(lsn, E.cctx, &cconn_cbs, cc, &cc->tc)) < 0) {
		log_warn("msg=\"accept failed\" entry=connector err=\"%s\"", uv_strerror(rc));
		free(cc->lb);
		cc->lb = NULL;
		uv_close((uv_handle_t *)&cc->timer, cconn_timer_closed);
		return;
	}
	na_format(tconn_peer_addr(cc->tc), cc->peer, sizeof cc->peer);
	list_link_cc(&E.pending, cc);
	/* Handshake and registration together get REG_TIMEOUT_MS (tconn bounds the handshake alone too). */
	uv_timer_start(&cc->timer, cconn_keepalive, REG_TIMEOUT_MS, 0);
}

/* ------------------------------------------------------------------ setup and main */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		       unsigned int inlen, void *arg)
{
	const unsigned char *want = arg;
	(void)ssl;
	if (SSL_select_next_proto((unsigned char **)out, outlen, want, want[0] + 1u, in, inlen) == OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	/* The connector link speaks only postern/1; the mTLS entry continues without ALPN. */
	return want[1] == 'p' ? SSL_TLSEXT_ERR_ALERT_FATAL : SSL_TLSEXT_ERR_NOACK;
}

static unsigned char alpn_postern[] = "\x09postern/1";
static unsigned char alpn_http11[] = "\x08http/1.1";

static int make_ctx(char *err, size_t errlen)
{
	const char *mc = E.cfg.mtls_cert ? E.cfg.mtls_cert : E.cfg.connector_cert;
	const char *mk = E.cfg.mtls_key ? E.cfg.mtls_key : E.cfg.connector_key;
	char buf[200];
	STACK_OF(X509_NAME) *names;
	if (!(E.cctx = tio_server_ctx(E.cfg.connector_cert, E.cfg.connector_key, true, err, errlen)))
		return -EINVAL;
	/* A handful of busy links: keeping TLS record buffers saves a malloc and free per record. */
	SSL_CTX_clear_mode(E.cctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_alpn_select_cb(E.cctx, alpn_select, alpn_postern);
	if (!E.cfg.mtls_listen)
		return 0;
	if (!(E.mctx = tio_server_ctx(mc, mk, false, err, errlen)))
		return -EINVAL;
	SSL_CTX_set_alpn_select_cb(E.mctx, alpn_select, alpn_http11);
	ERR_clear_error();
	if (SSL_CTX_load_verify_locations(E.mctx, E.cfg.client_ca_file, NULL) != 1 ||
	    !(names = SSL_load_client_CA_file(E.cfg.client_ca_file))) {
		snprintf(err, errlen, "%s: cannot load client_ca_file: %s", E.cfg.client_ca_file, tio_ssl_errors(buf, sizeof buf));
		return -EINVAL;
	}
	SSL_CTX_set_client_CA_list(E.mctx, names);
	/* No certificate, or one the CA did not sign: the handshake fails. */
	SSL_CTX_set_verify(E.mctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(E.mctx, 4);
	SSL_CTX_set_session_id_context(E.mctx, (const unsigned char *)"postern-mtls", 12);
	return 0;
}

static int listen_on(uv_tcp_t *h, const char *addr, uv_connection_cb cb, char *bound, size_t blen, char *err,
		     size_t errlen)
{
	struct sockaddr_storage ss;
	int len = sizeof ss, rc;
	if ((rc = na_parse_sockaddr(addr, true, &ss)) < 0) {
		snprintf(err, errlen, "'%s' is not a listen address", addr);
		return rc;
	}
	if ((rc = uv_tcp_bind(h, (struct sockaddr *)&ss, 0)) < 0 || (rc = uv_listen((uv_stream_t *)h, 1024, cb)) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr, uv_strerror(rc));
		return rc;
	}
	if (uv_tcp_getsockname(h, (struct sockaddr *)&ss, &len) == 0)
		na_format((struct sockaddr *)&ss, bound, blen);
	return 0;
}

/* Tokens are checked only at registration (rotation must not cut open links), but a deleted tunnel (the
 * answer to a leaked token) must stop carrying traffic: its links are closed within RECHECK_MS. */
#define RECHECK_MS 15000
static void on_recheck(uv_timer_t *t)
{
	(void)t;
	for (struct tunnel *tun = E.tunnels; tun; tun = tun->next) {
		if (!tun->conns || tok_get_by_id(E.tok, tun->id, NULL) != -ENOENT)
			continue;
		log_warn("msg=\"tunnel deleted: closing its connector links\" tunnel=%s", tun->id);
		for (struct cconn *cc = tun->conns, *next; cc; cc = next) {
			next = cc->next;
			cconn_close(cc, "tunnel deleted");
		}
	}
}

static void stop(void)
{
	if (E.stopping)
		return;
	E.stopping = true;
	log_info("msg=\"edge stopping\"");
	uv_close((uv_handle_t *)&E.recheck, NULL);
	uv_close((uv_handle_t *)&E.lsn_conn, NULL);
	uv_close((uv_handle_t *)&E.lsn_cli, NULL);
	if (E.have_mtls)
		uv_close((uv_handle_t *)&E.lsn_mtls, NULL);
	uv_close((uv_handle_t *)&E.sigterm, NULL);
	uv_close((uv_handle_t *)&E.sigint, NULL);
	adm_free(E.adm);
	E.adm = NULL;
	for (struct relay *r = E.relays; r; r = r->next)
		if (r->tc)
			tconn_close(r->tc);
	for (struct cconn *cc = E.pending; cc; cc = cc->next)
		tconn_close(cc->tc);
	for (struct tunnel *t = E.tunnels; t; t = t->next)
		for (struct cconn *cc = t->conns; cc; cc = cc->next) {
			if (cc->h2 && !cc->closing) {
				nghttp2_submit_goaway(cc->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(cc->h2),
						      NGHTTP2_NO_ERROR, NULL, 0);
				cconn_flush(cc);
			}
			cconn_close(cc, "edge stopping");
		}
}

static void on_signal(uv_signal_t *s, int sig)
{
	(void)s;
	(void)sig;
	stop();
}

static void usage(FILE *f)
{
	fprintf(f, "usage: postern edge -c edge.yaml\n\n"
		   "The public relay: connectors register on connector_listen (TLS 1.3, tunnel token), MCP clients\n"
		   "connect to client_listen with TLS SNI <route>.<tunnel id>.<domain> (relayed, never decrypted),\n"
		   "or through the outer mTLS entry (mtls_listen: HTTP CONNECT with a client certificate).\n\n"
		   "config keys: state_dir, domain, edge_id, connector_listen (:7844), connector_tls.cert_file/key_file,\n"
		   "  client_listen (:443), client_allowed_ips, metrics_listen (127.0.0.1:20241), mtls_listen,\n"
		   "  client_ca_file, mtls_tls.cert_file/key_file (default: connector_tls), client_hello_budget (64M),\n"
		   "  client_pending_max (16384), log_level\n");
}

int edge_main(int argc, char **argv)
{
	const char *path = NULL;
	char err[512], a1[NA_FMT_MAX] = "", a2[NA_FMT_MAX] = "", a3[NA_FMT_MAX] = "-";
	int rc = 1;

	{
		int a = cli_config_path(argc, argv, "postern edge", usage, &path);
		if (a)
			return a == CLI_EXIT_HELP ? 0 : 2;
	}
	memset(&E, 0, sizeof E);
	if (edge_config_load(path, &E.cfg, err, sizeof err) < 0) {
		fprintf(stderr, "postern edge: %s\n", err);
		return 1;
	}
	log_set_level((enum log_level)E.cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	{
		/* A relay holds two descriptors' worth of state per client: use all the descriptors allowed. */
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	E.loop = uv_default_loop();
	if (tok_open(E.cfg.state_dir, E.cfg.domain, &E.tok, err, sizeof err) < 0 || make_ctx(err, sizeof err) < 0) {
		log_error("msg=\"cannot start\" err=\"%s\"", err);
		goto out;
	}
	E.m_reg_ok = adm_counter("postern_edge_registrations_total", "Connector registrations, by result", "result=\"ok\"");
	E.m_reg_rej = adm_counter("postern_edge_registrations_total", NULL, "result=\"rejected\"");
	E.m_clients_sni = adm_gauge("postern_edge_client_connections", "Client connections open now, by entry", "entry=\"sni\"");
	E.m_clients_mtls = adm_gauge("postern_edge_client_connections", NULL, "entry=\"mtls\"");
	E.m_pending = adm_gauge("postern_edge_clients_pending",
				"Client connections not routed yet (at most client_pending_max)", NULL);
	E.m_hello_bytes = adm_gauge("postern_edge_client_hello_bytes",
				    "Bytes buffered for client connections not routed yet (at most client_hello_budget)", NULL);
	/* Every handle is initialised first so that stop() can close them all whatever failed. */
	uv_tcp_init(E.loop, &E.lsn_conn);
	uv_tcp_init(E.loop, &E.lsn_cli);
	if ((E.have_mtls = E.cfg.mtls_listen != NULL))
		uv_tcp_init(E.loop, &E.lsn_mtls);
	uv_signal_init(E.loop, &E.sigterm);
	uv_signal_init(E.loop, &E.sigint);
	uv_timer_init(E.loop, &E.recheck);
	if (listen_on(&E.lsn_conn, E.cfg.connector_listen, on_connector, a1, sizeof a1, err, sizeof err) < 0 ||
	    listen_on(&E.lsn_cli, E.cfg.client_listen, on_client, a2, sizeof a2, err, sizeof err) < 0 ||
	    (E.have_mtls && listen_on(&E.lsn_mtls, E.cfg.mtls_listen, on_client, a3, sizeof a3, err, sizeof err) < 0)) {
		log_error("msg=\"cannot start\" err=\"%s\"", err);
		goto stop;
	}
	if (!(E.adm = adm_new(E.loop)) || adm_listen(E.adm, E.cfg.metrics_listen, err, sizeof err) < 0) {
		log_error("msg=\"cannot start\" err=\"metrics_listen: %s\"", E.adm ? err : "out of memory");
		goto stop;
	}
	uv_signal_start(&E.sigterm, on_signal, SIGTERM);
	uv_signal_start(&E.sigint, on_signal, SIGINT);
	uv_timer_start(&E.recheck, on_recheck, RECHECK_MS, RECHECK_MS);
	log_info("msg=\"edge listening\" edge_id=%s domain=%s connector=%s client=%s mtls=%s metrics=127.0.0.1:%d",
		 E.cfg.edge_id, E.cfg.domain, a1, a2, a3, adm_port(E.adm));
	rc = 0;
	uv_run(E.loop, UV_RUN_DEFAULT);
	goto done;
stop:
	rc = 1;
	stop();
	uv_run(E.loop, UV_RUN_DEFAULT);
done:
	while (E.tunnels) {
		struct tunnel *t = E.tunnels;
		E.tunnels = t->next;
		free(t);
	}
out:
	uv_loop_close(E.loop);
	SSL_CTX_free(E.cctx);
	SSL_CTX_free(E.mctx);
	tok_close(E.tok);
	edge_config_free(&E.cfg);
	adm_metrics_reset();
	if (rc == 0)
		log_info("msg=\"edge stopped\"");
	return rc;
}
