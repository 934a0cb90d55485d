/* The HTTP/1.1 server (hsrv.h): connections on tconn, heads and bodies through h1, one request at a time. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/cbuf.h"
#include "core/err.h"
#include "core/h1.h"
#include "core/hsrv.h"
#include "core/list.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/tconn.h"

#define TARGET_MAX 4096
#define MAX_HEADERS 100
#define IN_CAP (1024u * 1024)  /* unparsed bytes held (one read while a request is answered) */
#define CLOSE_GRACE_MS 5000u   /* an answer with Connection: close gets this long to flush */
#define OUT_CHUNK (64u * 1024)  /* outbox bytes handed to tconn at a time */
#define OUT_CAP (1024u * 1024 * 1024) /* an answer bigger than this is not sent */
#define OUT_WAIT_MS 60000u     /* a close waiting for the outbox to drain waits at most this long */
#define LINGER_MS 2000u        /* after refusing a request: how long its remaining bytes are read and dropped */

enum tmode { T_NONE, T_IDLE, T_HEAD, T_CLOSE };

struct hsrv_req {
	struct hconn *hc;
	bool active;
	void (*gone)(hsrv_req *r, void *ud);
	void *gone_ud;
	void (*drain)(hsrv_req *r, void *ud);
	const char *query;
	char path[TARGET_MAX];
};

struct hconn {
	struct hconn *next, **pprev;
	hsrv *s;
	tconn *c;
	uv_timer_t timer;
	enum tmode tmode;
	h1 req;
	char target[TARGET_MAX];
	char *hdrs;
	cbuf in, body;
	cbuf out; /* answer bytes beyond the connection's high-water mark, in order, fed on drain */
	uint64_t out_mark; /* bytes written when the idle timer last looked */
	bool close_when_drained;
	bool body_over, busy, closing, peer_eof, pumping, streaming, closed, discard;
	char peer[NA_FMT_MAX];
	struct hsrv_req r;
};

struct hsrv {
	uv_loop_t *loop;
	uv_tcp_t lsn;
	bool listening, lsn_open, freeing, draining;
	hsrv_opts o;
	hsrv_handler fn;
	void *ud;
	struct hconn *conns;
	unsigned nconns, alive; /* open connections; allocated ones (until their timer is closed) */
	uint64_t refused, refused_logged_at;
	int port;
};

static void maybe_free_server(hsrv *s)
{
	if (s->freeing && !s->lsn_open && !s->alive)
		free(s);
}

static void timer_closed(uv_handle_t *h)
{
	struct hconn *hc = h->data;
	hsrv *s = hc->s;
	free(hc->hdrs);
	cbuf_free(&hc->in);
	cbuf_free(&hc->body);
	cbuf_free(&hc->out);
	free(hc);
	s->alive--;
	maybe_free_server(s);
}

static void set_timer(struct hconn *hc, enum tmode m, uint32_t ms);

static void conn_close(struct hconn *hc)
{
	hc->closing = true;
	if (!hc->closed)
		tconn_close(hc->c);
}

/* Answers written, then closed once they are out (a deadline for a peer that does not read). */
static void close_after_flush(struct hconn *hc)
{
	hc->closing = true;
	if (hc->out.len) { /* the outbox first; out_push comes back here once it is empty */
		hc->close_when_drained = true;
		set_timer(hc, T_CLOSE, OUT_WAIT_MS);
		return;
	}
	set_timer(hc, T_CLOSE, CLOSE_GRACE_MS);
	tconn_close_after_flush(hc->c);
}

/* Feeds the outbox to tconn up to its high-water mark (tconn's drain brings us back). */
static int out_push(struct hconn *hc)
{
	while (hc->out.len && !tconn_over_high_water(hc->c)) {
		size_t k = hc->out.len < OUT_CHUNK ? hc->out.len : OUT_CHUNK;
		int rc = tconn_write(hc->c, cbuf_data(&hc->out), k);
		if (rc < 0)
			return rc;
		cbuf_consume(&hc->out, k);
	}
	if (!hc->out.len && hc->close_when_drained) {
		hc->close_when_drained = false;
		close_after_flush(hc);
	}
	return 0;
}

/* Every answer byte goes through here: straight to tconn while under its high-water mark, else the outbox,
 * so an answer bigger than tconn's hard cap (a long event list, a large event on a stream) still goes out. */
static int send_bytes(struct hconn *hc, const void *p, size_t n)
{
	int rc;
	if (!n)
		return 0;
	if (!hc->out.len && tconn_queued(hc->c) + n <= TCONN_HIGH_WATER)
		return tconn_write(hc->c, p, n);
	if ((rc = cbuf_append(&hc->out, p, n)) < 0)
		return rc;
	return out_push(hc);
}

static void self_answer(struct hconn *hc, int status, const char *msg);

static void on_timer(uv_timer_t *t)
{
	struct hconn *hc = t->data;
	enum tmode m = hc->tmode;
	hc->tmode = T_NONE;
	if (m == T_HEAD && !hc->busy && !hc->closing)
		self_answer(hc, 408, "the request was not received in time: send the whole request within the "
				     "server's head timeout");
	else if (m == T_IDLE && (hc->out.len || tconn_queued(hc->c)) && tconn_bytes_out(hc->c) != hc->out_mark) {
		/* not idle: an answer is still going out; idle again only once it stops moving for idle_ms */
		hc->out_mark = tconn_bytes_out(hc->c);
		set_timer(hc, T_IDLE, hc->s->o.idle_ms);
	} else
		conn_close(hc);
}

static void set_timer(struct hconn *hc, enum tmode m, uint32_t ms)
{
	hc->tmode = m;
	if (m == T_NONE)
		uv_timer_stop(&hc->timer);
	else
		uv_timer_start(&hc->timer, on_timer, ms, 0);
}

static bool keep_alive(const struct hconn *hc)
{
	return hc->req.keep_alive && !hc->closing && !hc->peer_eof && !hc->s->draining && !hc->s->freeing;
}

static int write_head(struct hconn *hc, int status, const char *ctype, const char *headers, const char *framing)
{
	char head[2048], ka[48] = "";
	bool keep = keep_alive(hc);
	int n;
	/* clients that honour the hint (undici) stop reusing the connection before the idle timeout closes it */
	if (keep && hc->s->o.idle_ms >= 2000)
		snprintf(ka, sizeof ka, "Keep-Alive: timeout=%u\r\n", hc->s->o.idle_ms / 1000 - 1);
	n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%s%s%sConnection: %s\r\n\r\n", status,
		     hsrv_reason(status), ctype ? ctype : "application/json", framing, headers ? headers : "", ka,
		     keep ? "keep-alive" : "close");
	if (n < 0 || (size_t)n >= sizeof head)
		return -E2BIG;
	return send_bytes(hc, head, (size_t)n);
}

static void pump(struct hconn *hc);

/* The request is answered: the next one on a kept-alive connection, else close after the answer. */
static void complete(struct hconn *hc, bool ok)
{
	hc->r.active = false;
	hc->r.gone = NULL;
	hc->r.drain = NULL;
	hc->streaming = false;
	if (!ok) {
		conn_close(hc);
		return;
	}
	if (!keep_alive(hc)) {
		close_after_flush(hc);
		return;
	}
	hc->busy = false;
	h1_next(&hc->req);
	cbuf_free(&hc->body);
	hc->body_over = false;
	set_timer(hc, T_IDLE, hc->s->o.idle_ms);
	tconn_resume(hc->c);
	pump(hc);
}

/* An answer the server gives itself (bad or oversized request): JSON, then close. */
static void self_answer(struct hconn *hc, int status, const char *msg)
{
	char body[1024], extra[256] = "";
	size_t n;
	if (hc->s->o.error_body)
		n = hc->s->o.error_body(body, sizeof body, status, msg);
	else {
		char esc[700];
		n = (size_t)snprintf(body, sizeof body, "{\"error\":\"%s\"}", hsrv_json_escape(msg, esc, sizeof esc));
	}
	if (n >= sizeof body)
		n = sizeof body - 1;
	if (hc->s->o.error_headers)
		hc->s->o.error_headers(extra, sizeof extra);
	hc->closing = true; /* Connection: close */
	hc->busy = true;
	char framing[64];
	snprintf(framing, sizeof framing, "Content-Length: %zu\r\n", n);
	set_timer(hc, T_NONE, 0);
	if (write_head(hc, status, NULL, extra, framing) < 0 || send_bytes(hc, body, n) < 0) {
		conn_close(hc);
		return;
	}
	if (hc->out.len) { /* answers before this one still queued: no lingering, close once they are out */
		close_after_flush(hc);
		return;
	}
	if (tconn_shutdown(hc->c) < 0) {
		conn_close(hc);
		return;
	}
	/* A lingering close: the peer may still be sending the body we refused, and closing with its bytes
	 * unread would reset the connection before it reads the answer. So: our FIN after the answer, what it
	 * sends dropped, closed when it closes or after LINGER_MS. */
	hc->discard = true;
	set_timer(hc, T_CLOSE, LINGER_MS);
}

static void body_bytes(void *ud, const char *at, size_t n)
{
	struct hconn *hc = ud;
	if (!hc->body_over && cbuf_append(&hc->body, at, n) < 0)
		hc->body_over = true;
}

static bool expects_continue(const struct hconn *hc)
{
	size_t pos = 0;
	const char *n, *v;
	if (hc->req.http_minor < 1)
		return false;
	while (h1_header_next(&hc->req, &pos, &n, &v) == 1)
		if (!strcasecmp(n, "expect"))
			return !strcasecmp(v, "100-continue");
	return false;
}

static void dispatch(struct hconn *hc)
{
	struct hsrv_req *r = &hc->r;
	const char *q;
	size_t plen;
	hc->busy = true;
	set_timer(hc, T_NONE, 0);
	q = strchr(hc->req.target, '?');
	plen = q ? (size_t)(q - hc->req.target) : strlen(hc->req.target);
	memcpy(r->path, hc->req.target, plen);
	r->path[plen] = 0;
	r->query = q ? q + 1 : "";
	r->active = true;
	r->gone = NULL;
	r->drain = NULL;
	if (!hc->body.p)
		cbuf_append(&hc->body, "", 0);
	hc->s->fn(r, hc->s->ud);
}

static void pump(struct hconn *hc)
{
	if (hc->pumping)
		return;
	hc->pumping = true;
	while (!hc->busy && !hc->closing && hc->in.len) {
		size_t used = 0;
		h1_ev ev;
		if (hc->tmode != T_HEAD)
			set_timer(hc, T_HEAD, hc->s->o.head_ms);
		ev = h1_parse(&hc->req, cbuf_data(&hc->in), hc->in.len, &used);
		cbuf_consume(&hc->in, used);
		if (hc->body_over && ev != H1_ERR) { /* a chunked body past the cap: refused now, not at its end */
			char m[160];
			snprintf(m, sizeof m, "request body is over the limit of %zu bytes", hc->s->o.max_body);
			self_answer(hc, 413, m);
			break;
		}
		if (ev == H1_HEAD) {
			uint64_t cl = hc->req.p.content_length;
			if (hc->req.target_long) {
				self_answer(hc, 400, "the request target is too long");
				break;
			}
			if (cl != ULLONG_MAX && cl > hc->s->o.max_body) {
				char m[160];
				snprintf(m, sizeof m, "request body of %llu bytes is over the limit of %zu bytes",
					 (unsigned long long)cl, hc->s->o.max_body);
				self_answer(hc, 413, m);
				break;
			}
			hc->req.body_cb = body_bytes;
			hc->req.body_ud = hc;
			/* libcurl waits a second for this before it sends a body over 1 KiB; a body over the cap got
			 * its 413 above without being sent. */
			if (expects_continue(hc) &&
			    send_bytes(hc, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0) {
				conn_close(hc);
				break;
			}
		} else if (ev == H1_DONE) {
			dispatch(hc);
		} else if (ev == H1_ERR) {
			bool big = hc->req.err == H1_E_HEAD_TOO_LARGE;
			self_answer(hc, big ? 431 : 400,
				    big ? "request head too large" : (hc->req.errstr ? hc->req.errstr : "malformed request"));
			break;
		}
	}
	hc->pumping = false;
}

static void on_data(tconn *c, const uint8_t *p, size_t n, void *ud)
{
	struct hconn *hc = ud;
	(void)c;
	if (hc->closing || hc->discard)
		return;
	if (cbuf_append(&hc->in, p, n) < 0) {
		conn_close(hc);
		return;
	}
	/* Reading goes on while a request is answered (so a peer that leaves is seen at once); what it sends
	 * meanwhile waits here, and past a head's worth reading pauses until the answer is done. */
	if (hc->busy && hc->in.len > hc->s->o.max_head)
		tconn_pause(hc->c);
	pump(hc);
}

static void on_eof(tconn *c, void *ud)
{
	struct hconn *hc = ud;
	(void)c;
	hc->peer_eof = true;
	/* HTTP clients do not half-close: an end while a request waits (a long poll, a stream) is a peer that
	 * left, and the handler hears of it through the gone callback. */
	if (hc->discard)
		close_after_flush(hc); /* the refused peer is done sending: our answer out, then closed */
	else if (!hc->closing)
		conn_close(hc);
}

static void on_drain(tconn *c, void *ud)
{
	struct hconn *hc = ud;
	(void)c;
	if (out_push(hc) < 0) {
		conn_close(hc);
		return;
	}
	if (!hc->out.len && hc->r.active && hc->r.drain)
		hc->r.drain(&hc->r, hc->r.gone_ud);
}

static void on_close(tconn *c, int e, void *ud)
{
	struct hconn *hc = ud;
	(void)c;
	(void)e;
	hc->closed = true;
	LIST_UNLINK(hc, next, pprev);
	hc->s->nconns--;
	if (hc->r.active) {
		hc->r.active = false;
		if (hc->r.gone)
			hc->r.gone(&hc->r, hc->r.gone_ud);
	}
	uv_timer_stop(&hc->timer);
	uv_close((uv_handle_t *)&hc->timer, timer_closed);
}

static const tconn_cbs conn_cbs = {
	.on_data = on_data,
	.on_eof = on_eof,
	.on_drain = on_drain,
	.on_close = on_close,
};

static void on_conn(uv_stream_t *l, int status)
{
	hsrv *s = l->data;
	struct hconn *hc;
	if (status < 0 || s->freeing)
		return;
	if (!(hc = calloc(1, sizeof *hc)) || !(hc->hdrs = malloc(s->o.max_head + 2 * MAX_HEADERS + 2))) {
		free(hc); /* left in the backlog: the next accept takes it */
		return;
	}
	hc->s = s;
	s->alive++;
	cbuf_init(&hc->in, 4096, IN_CAP);
	cbuf_init(&hc->body, 4096, s->o.max_body + 1);
	cbuf_init(&hc->out, OUT_CHUNK, OUT_CAP);
	h1_init(&hc->req, true, s->o.max_head);
	h1_any_host(&hc->req);
	h1_keep_target(&hc->req, hc->target, sizeof hc->target);
	h1_keep_headers(&hc->req, hc->hdrs, s->o.max_head + 2 * MAX_HEADERS + 2, MAX_HEADERS);
	uv_timer_init(s->loop, &hc->timer);
	hc->timer.data = hc;
	hc->r.hc = hc;
	if (tconn_accept(l, s->o.tls, &conn_cbs, hc, &hc->c) < 0) {
		uv_close((uv_handle_t *)&hc->timer, timer_closed);
		return;
	}
	LIST_PUSH(s->conns, hc, next, pprev);
	s->nconns++;
	na_format(tconn_peer_addr(hc->c), hc->peer, sizeof hc->peer);
	if (s->nconns > s->o.max_conns) {
		/* one line a second at most, however many are refused */
		uint64_t now = uv_now(s->loop);
		s->refused++;
		if (now - s->refused_logged_at >= 1000 || !s->refused_logged_at) {
			log_warn("msg=\"connection refused: too many connections\" peer=%s open=%u max_conns=%u "
				 "refused_since_last_line=%llu", hc->peer, s->nconns - 1, s->o.max_conns,
				 (unsigned long long)s->refused);
			s->refused = 0;
			s->refused_logged_at = now;
		}
		conn_close(hc);
		return;
	}
	set_timer(hc, T_IDLE, s->o.idle_ms);
}

int hsrv_new(uv_loop_t *loop, const hsrv_opts *o, hsrv_handler fn, void *ud, hsrv **out, char *err, size_t errlen)
{
	hsrv *s;
	*out = NULL;
	if (!o->max_head || !o->max_conns || !o->idle_ms || !o->head_ms)
		return err_set(err, errlen, -EINVAL, "hsrv: max_head, max_conns, idle_ms and head_ms must be set");
	if (!(s = calloc(1, sizeof *s)))
		return err_set(err, errlen, -ENOMEM, "out of memory");
	s->loop = loop;
	s->o = *o;
	s->fn = fn;
	s->ud = ud;
	uv_tcp_init(loop, &s->lsn);
	s->lsn.data = s;
	s->lsn_open = true;
	*out = s;
	return 0;
}

int hsrv_listen(hsrv *s, const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int len = sizeof ss, r;
	memset(&ss, 0, sizeof ss);
	if (na_parse_sockaddr(addr, true, &ss) < 0)
		return err_set(err, errlen, -EINVAL, "'%s' is not an address (host:port, [v6]:port or :port)", addr);
	if ((r = uv_tcp_bind(&s->lsn, (struct sockaddr *)&ss, 0)) < 0 ||
	    (r = uv_listen((uv_stream_t *)&s->lsn, 511, on_conn)) < 0)
		return err_set(err, errlen, r, "cannot listen on %s: %s", addr, uv_strerror(r));
	s->listening = true;
	if (uv_tcp_getsockname(&s->lsn, (struct sockaddr *)&ss, &len) == 0)
		s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							 : ((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

int hsrv_port(const hsrv *s) { return s->port; }
unsigned hsrv_conns(const hsrv *s) { return s->nconns; }

static void lsn_closed(uv_handle_t *h)
{
	hsrv *s = h->data;
	s->lsn_open = false;
	maybe_free_server(s);
}

void hsrv_stop_accepting(hsrv *s)
{
	s->draining = true;
	if (s->lsn_open && !uv_is_closing((uv_handle_t *)&s->lsn))
		uv_close((uv_handle_t *)&s->lsn, lsn_closed);
	/* Idle kept-alive connections go now; busy ones after their answer (Connection: close). */
	for (struct hconn *hc = s->conns, *nx; hc; hc = nx) {
		nx = hc->next;
		if (!hc->busy)
			conn_close(hc);
	}
}

void hsrv_free(hsrv *s)
{
	if (!s)
		return;
	s->freeing = true;
	if (s->lsn_open && !uv_is_closing((uv_handle_t *)&s->lsn))
		uv_close((uv_handle_t *)&s->lsn, lsn_closed);
	for (struct hconn *hc = s->conns; hc; hc = hc->next)
		tconn_close(hc->c);
	maybe_free_server(s);
}

/* ---- the request ---- */
const char *hsrv_method(const hsrv_req *r) { return h1_method_name(&r->hc->req); }
const char *hsrv_path(const hsrv_req *r) { return r->path; }
const char *hsrv_query(const hsrv_req *r) { return r->query; }
const char *hsrv_peer(const hsrv_req *r) { return r->hc->peer; }

const char *hsrv_header(const hsrv_req *r, const char *name)
{
	size_t pos = 0;
	const char *n, *v;
	while (h1_header_next(&r->hc->req, &pos, &n, &v) == 1)
		if (!strcasecmp(n, name))
			return v;
	return NULL;
}

unsigned hsrv_header_count(const hsrv_req *r, const char *name)
{
	size_t pos = 0;
	const char *n, *v;
	unsigned k = 0;
	while (h1_header_next(&r->hc->req, &pos, &n, &v) == 1)
		k += !strcasecmp(n, name);
	return k;
}

const char *hsrv_body(const hsrv_req *r, size_t *len)
{
	*len = r->hc->body.len;
	return cbuf_str(&r->hc->body);
}

void hsrv_on_gone(hsrv_req *r, void (*fn)(hsrv_req *r, void *ud), void *ud)
{
	r->gone = fn;
	r->gone_ud = ud;
}

void hsrv_on_drain(hsrv_req *r, void (*fn)(hsrv_req *r, void *ud)) { r->drain = fn; }

int hsrv_reply(hsrv_req *r, int status, const char *ctype, const char *headers, const void *body, size_t len)
{
	struct hconn *hc = r->hc;
	char framing[64];
	int rc;
	if (!r->active)
		return -EINVAL;
	snprintf(framing, sizeof framing, "Content-Length: %zu\r\n", len);
	rc = write_head(hc, status, ctype, headers, framing);
	if (rc == 0 && len)
		rc = send_bytes(hc, body, len);
	complete(hc, rc == 0);
	return rc;
}

int hsrv_stream_begin(hsrv_req *r, int status, const char *ctype, const char *headers)
{
	struct hconn *hc = r->hc;
	int rc;
	if (!r->active || hc->streaming)
		return -EINVAL;
	rc = write_head(hc, status, ctype, headers, "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n");
	if (rc < 0) {
		complete(hc, false);
		return rc;
	}
	hc->streaming = true;
	return 0;
}

int hsrv_stream_write(hsrv_req *r, const void *p, size_t n)
{
	struct hconn *hc = r->hc;
	char sz[24];
	int rc, k;
	if (!r->active || !hc->streaming)
		return -EINVAL;
	if (!n)
		return 0;
	k = snprintf(sz, sizeof sz, "%zx\r\n", n);
	if ((rc = send_bytes(hc, sz, (size_t)k)) < 0 || (rc = send_bytes(hc, p, n)) < 0 ||
	    (rc = send_bytes(hc, "\r\n", 2)) < 0)
		return rc;
	return 0;
}

bool hsrv_stream_congested(const hsrv_req *r) { return r->hc->out.len > 0 || tconn_over_high_water(r->hc->c); }

void hsrv_stream_end(hsrv_req *r)
{
	struct hconn *hc = r->hc;
	if (!r->active)
		return;
	complete(hc, send_bytes(hc, "0\r\n\r\n", 5) == 0);
}
