/* Host-side egress proxy for sandboxes (see egress_proxy.h). */
#include "sandbox/egress/egress_proxy.h"

#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "core/h1.h"
#include "core/list.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/tconn.h"
#include "sandbox/engine/sandbox.h"

#define MAX_ADDRS 16
#define MAX_HEADERS 100
#define URL_MAX 8192
#define WQ_HIGH (1u << 20) /* stop reading a side while the other's write queue is above this */
#define WQ_LOW (256u << 10) /* and read it again once that queue is down to this */

struct egx {
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_async_t stop;
	pthread_t thread;
	egp_policy *pol;
	struct egx_config c;
	struct conn *conns;
	size_t nconns;
	bool listener_open;
	struct egx_stats st;
};

/* C_REPLIED: an error answer is on its way to the client; the connection ends once it is written. */
enum cstate { C_HEAD, C_RESOLVE, C_CONNECT, C_RELAY, C_REPLIED, C_CLOSING };

struct conn {
	egx *x;
	struct conn *next, **pprev; /* x->conns */
	enum cstate state;
	tconn *client, *up; /* NULL once their on_close ran */
	uv_timer_t timer;
	uv_getaddrinfo_t gai;
	int open_handles; /* the timer and each tconn not closed yet */
	bool gai_pending;
	bool client_eof, up_eof, client_paused, up_paused, client_shut;
	/* request head: raw bytes (hend of them parsed), then the first request's body through h1 */
	char *head;
	size_t hlen, hend;
	h1 req;
	char url[URL_MAX + 1];
	char *hdrs; /* h1's "name\0value\0" pairs */
	bool msg_done, parse_err;
	bool is_connect;
	/* target */
	char host[NA_HOST_MAX], norm[EGP_MAX_HOST + 1], path[URL_MAX + 1];
	uint16_t port;
	struct egp_addr addrs[MAX_ADDRS];
	int naddr, addr_i, cerr;
	char rule[192];
	char peer[NA_FMT_MAX];
};

static const char *const proxy_env[] = {
	"HTTP_PROXY=" EGX_PROXY_URL,  "HTTPS_PROXY=" EGX_PROXY_URL,	  "http_proxy=" EGX_PROXY_URL,
	"https_proxy=" EGX_PROXY_URL, "NO_PROXY=localhost,127.0.0.1,::1", "no_proxy=localhost,127.0.0.1,::1",
	NULL,
};

const char *const *egx_proxy_env(void)
{
	return proxy_env;
}

void egx_get_stats(const egx *x, struct egx_stats *st)
{
	*st = x->st;
}

/* ---- teardown ---------------------------------------------------------------------------------- */

static void conn_maybe_free(struct conn *c)
{
	if (c->open_handles > 0 || c->gai_pending)
		return;
	LIST_UNLINK(c, next, pprev);
	c->x->nconns--;
	free(c->head);
	free(c->hdrs);
	free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	c->open_handles--;
	conn_maybe_free(c);
}

static void conn_close(struct conn *c)
{
	if (c->state == C_CLOSING)
		return;
	c->state = C_CLOSING;
	if (c->gai_pending)
		uv_cancel((uv_req_t *)&c->gai);
	tconn_close(c->client);
	tconn_close(c->up);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void arm_timer(struct conn *c, unsigned ms);

/* Ends the client connection once what is queued for it is out. The FIN goes first: tconn closes after
 * flush from the shutdown's completion, a callback a write finished at once would not give. */
static void client_finish(struct conn *c)
{
	if (!c->client_shut && tconn_shutdown(c->client) < 0) {
		conn_close(c);
		return;
	}
	c->client_shut = true;
	tconn_close_after_flush(c->client);
}

/* ---- answers ------------------------------------------------------------------------------------- */

static void reply_error(struct conn *c, int code, const char *status, const char *reason, const char *body)
{
	char buf[1024];
	int blen = (int)strlen(body), n;

	if (c->state == C_CLOSING || c->state == C_REPLIED)
		return;
	n = snprintf(buf, sizeof buf,
		     "HTTP/1.1 %d %s\r\nX-Proxy-Error: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
		     "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
		     code, status, reason, blen, body);
	if (n < 0 || (size_t)n >= sizeof buf)
		n = snprintf(buf, sizeof buf, "HTTP/1.1 %d %s\r\nX-Proxy-Error: %s\r\nContent-Length: 0\r\n\r\n", code,
			     status, reason);
	c->state = C_REPLIED;
	tconn_pause(c->client);
	if (c->up)
		tconn_pause(c->up);
	if (tconn_write(c->client, (const uint8_t *)buf, (size_t)n) < 0) {
		conn_close(c);
		return;
	}
	/* The client's on_close ends the rest; the timer bounds a client that does not read the answer. */
	client_finish(c);
	arm_timer(c, c->x->c.header_timeout_ms);
}

static void refuse(struct conn *c, const struct egp_decision *d)
{
	char body[512], qh[300], qr[300], qq[300];

	c->x->st.refused++;
	log_warn("msg=\"egress refused\" host=%s requested=%s port=%u stage=%s reason=%s rule=%s client=%s",
		 log_quote(c->norm[0] ? c->norm : c->host, qh, sizeof qh), log_quote(c->host, qq, sizeof qq), c->port,
		 d->stage == EGP_STAGE_NAME ? "name" : "address", d->reason, log_quote(d->rule, qr, sizeof qr), c->peer);
	snprintf(body, sizeof body, "Connection blocked by network policy: %s (%s)\n", d->reason, d->rule);
	reply_error(c, 403, "Forbidden", d->reason, body);
}

static void fail(struct conn *c, int code, const char *status, const char *reason, const char *detail)
{
	char body[512], qh[300], qd[300];
	c->x->st.failed++;
	log_warn("msg=\"egress failed\" host=%s port=%u reason=%s detail=%s client=%s",
		 log_quote(c->norm[0] ? c->norm : c->host, qh, sizeof qh), c->port, reason,
		 log_quote(detail, qd, sizeof qd), c->peer);
	snprintf(body, sizeof body, "%s: %s\n", reason, detail);
	reply_error(c, code, status, reason, body);
}

/* ---- relay (both sides on tconn; each side's reads pause while the other's queue is over WQ_HIGH) ---- */

static void head_data(struct conn *c, const uint8_t *d, size_t n);

/* Plain HTTP: forwards the rest of the first request (its body) and nothing after it. */
static size_t body_part(struct conn *c, const uint8_t *d, size_t n)
{
	size_t used = 0;
	h1_ev ev;
	if (c->msg_done || n == 0)
		return 0;
	ev = h1_parse(&c->req, d, n, &used);
	if (ev == H1_ERR) {
		c->parse_err = true;
		return 0;
	}
	if (ev == H1_DONE)
		c->msg_done = true;
	return used;
}

/* n bytes read from `from` go to `to`; `from` pauses (*paused) while to's queue is over WQ_HIGH. */
static void forward(struct conn *c, tconn *from, tconn *to, const uint8_t *p, size_t n, bool *paused)
{
	if (tconn_write(to, p, n) < 0) {
		conn_close(c);
		return;
	}
	if (tconn_over_high_water(to)) {
		*paused = true;
		tconn_pause(from);
	}
}

static void client_data(tconn *tc, const uint8_t *p, size_t n, void *ud)
{
	struct conn *c = ud;
	size_t fwd = n;

	if (c->state == C_HEAD) {
		head_data(c, p, n);
		return;
	}
	if (c->state != C_RELAY)
		return;
	arm_timer(c, c->x->c.idle_timeout_ms);
	if (!c->is_connect) {
		fwd = body_part(c, p, n);
		if (c->parse_err) {
			conn_close(c);
			return;
		}
		if (c->msg_done)
			tconn_pause(tc);
	}
	forward(c, tc, c->up, p, fwd, &c->client_paused);
}

static void client_eof(tconn *tc, void *ud)
{
	struct conn *c = ud;
	(void)tc;
	if (c->state == C_HEAD) {
		conn_close(c);
		return;
	}
	if (c->state != C_RELAY)
		return;
	c->client_eof = true;
	if (c->up_eof || tconn_shutdown(c->up) < 0)
		conn_close(c);
}

/* The client's queue is down to WQ_LOW: the upstream may be read again. */
static void client_drain(tconn *tc, void *ud)
{
	struct conn *c = ud;
	(void)tc;
	if (c->state == C_RELAY && c->up_paused && !c->up_eof) {
		c->up_paused = false;
		tconn_resume(c->up);
	}
}

static void client_closed(tconn *tc, int err, void *ud)
{
	struct conn *c = ud;
	(void)tc;
	(void)err;
	c->client = NULL;
	c->open_handles--;
	conn_close(c);
	conn_maybe_free(c);
}

static void up_data(tconn *tc, const uint8_t *p, size_t n, void *ud)
{
	struct conn *c = ud;
	if (c->state != C_RELAY)
		return;
	arm_timer(c, c->x->c.idle_timeout_ms);
	forward(c, tc, c->client, p, n, &c->up_paused);
}

static void up_eof(tconn *tc, void *ud)
{
	struct conn *c = ud;
	(void)tc;
	if (c->state != C_RELAY)
		return;
	c->up_eof = true;
	/* Plain HTTP ends with the upstream's response; a tunnel half-closes towards the client. */
	if (c->client_eof || !c->is_connect) {
		client_finish(c);
	} else if (tconn_shutdown(c->client) < 0) {
		conn_close(c);
	} else {
		c->client_shut = true;
	}
}

/* The upstream's queue is down to WQ_LOW: the client may be read again. */
static void up_drain(tconn *tc, void *ud)
{
	struct conn *c = ud;
	(void)tc;
	if (c->state == C_RELAY && c->client_paused && !c->client_eof && (c->is_connect || !c->msg_done)) {
		c->client_paused = false;
		tconn_resume(c->client);
	}
}

static void try_connect(struct conn *c);
static void start_relay(struct conn *c);

static void up_open(tconn *tc, int status, void *ud)
{
	struct conn *c = ud;
	(void)tc;
	if (c->state != C_CONNECT)
		return;
	if (status < 0) {
		c->cerr = status; /* up_closed follows: the next address, or 502 */
		return;
	}
	start_relay(c);
}

static void up_closed(tconn *tc, int err, void *ud)
{
	struct conn *c = ud;
	(void)tc;
	(void)err;
	c->up = NULL;
	c->open_handles--;
	switch (c->state) {
	case C_CONNECT:
		if (++c->addr_i < c->naddr)
			try_connect(c);
		else
			fail(c, 502, "Bad Gateway", "connect-failed", uv_strerror(c->cerr ? c->cerr : -ECONNRESET));
		return;
	case C_RELAY:
		/* The upstream failed: what it sent still goes to the client, then the connection ends. */
		client_finish(c);
		return;
	default:
		conn_maybe_free(c);
		return;
	}
}

static const tconn_cbs client_cbs = {
	.on_data = client_data,
	.on_eof = client_eof,
	.on_drain = client_drain,
	.on_close = client_closed,
};

static const tconn_cbs up_cbs = {
	.on_open = up_open,
	.on_data = up_data,
	.on_eof = up_eof,
	.on_drain = up_drain,
	.on_close = up_closed,
};

/* ---- timers ------------------------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
	struct conn *c = t->data;
	switch (c->state) {
	case C_HEAD:
		fail(c, 408, "Request Timeout", "request-timeout", "no complete request head in time");
		break;
	case C_RESOLVE:
		fail(c, 504, "Gateway Timeout", "dns-timeout", "name resolution timed out");
		break;
	case C_CONNECT:
		fail(c, 504, "Gateway Timeout", "connect-timeout", "connect timed out");
		break;
	case C_RELAY:
	case C_REPLIED:
		conn_close(c);
		break;
	default:
		break;
	}
}

static void arm_timer(struct conn *c, unsigned ms)
{
	uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* ---- connect ------------------------------------------------------------------------------------ */

static void start_relay(struct conn *c)
{
	char qh[300], ab[64], qr[300];
	size_t early = c->hlen - c->hend;
	const uint8_t *rest = (const uint8_t *)c->head + c->hend;

	c->state = C_RELAY;
	c->x->st.allowed++;
	log_info("msg=\"egress allowed\" host=%s port=%u address=%s rule=%s method=%s client=%s",
		 log_quote(c->norm, qh, sizeof qh), c->port, egp_addr_str(&c->addrs[c->addr_i], ab, sizeof ab),
		 log_quote(c->rule, qr, sizeof qr),
		 c->is_connect ? "CONNECT" : h1_method_name(&c->req), c->peer);
	arm_timer(c, c->x->c.idle_timeout_ms);
	tconn_set_water(c->client, WQ_HIGH, WQ_LOW);
	tconn_set_water(c->up, WQ_HIGH, WQ_LOW);
	if (c->is_connect) {
		static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
		if (tconn_write(c->client, (const uint8_t *)ok, sizeof ok - 1) < 0 || tconn_write(c->up, rest, early) < 0) {
			conn_close(c);
			return;
		}
	} else {
		/* Request line in origin form, headers minus hop-by-hop and Proxy-*, our Host, Connection: close. */
		static const char *const drop[] = { "host", "connection", "proxy-connection", "keep-alive", "proxy-authorization",
						    "proxy-authenticate", "te", "trailer", "upgrade", NULL };
		/* A kept field is "name\0value\0" and goes out as "name: value\r\n", two bytes more each: without
		 * them 100 fields overran the buffer by a few bytes, which were then sent upstream. */
		size_t cap = c->req.hdrs_len + 2 * (size_t)c->req.nheaders + strlen(c->path) + strlen(c->host) + 256, o = 0,
		       pos = 0, fwd;
		char *req = malloc(cap);
		const char *name, *val;
		int rc;
		if (!req) {
			conn_close(c);
			return;
		}
		o += (size_t)snprintf(req + o, cap - o, "%s %s HTTP/1.1\r\n", h1_method_name(&c->req), c->path);
		while (h1_header_next(&c->req, &pos, &name, &val)) {
			bool skip = false;
			for (const char *const *d = drop; *d; d++)
				if (!strcasecmp(name, *d))
					skip = true;
			if (!skip)
				o += (size_t)snprintf(req + o, cap - o, "%s: %s\r\n", name, val);
		}
		if (c->port == 80)
			o += (size_t)snprintf(req + o, cap - o, "Host: %s%s%s\r\n", strchr(c->host, ':') ? "[" : "", c->host,
					      strchr(c->host, ':') ? "]" : "");
		else
			o += (size_t)snprintf(req + o, cap - o, "Host: %s%s%s:%u\r\n", strchr(c->host, ':') ? "[" : "",
					      c->host, strchr(c->host, ':') ? "]" : "", c->port);
		o += (size_t)snprintf(req + o, cap - o, "Connection: close\r\n\r\n");
		rc = o < cap ? tconn_write(c->up, (const uint8_t *)req, o) : -ENOBUFS; /* never a cut head */
		free(req);
		if (rc < 0) {
			conn_close(c);
			return;
		}
		fwd = body_part(c, rest, early);
		if (c->parse_err || tconn_write(c->up, rest, fwd) < 0) {
			conn_close(c);
			return;
		}
	}
	free(c->head);
	c->head = NULL;
	if (c->is_connect || !c->msg_done)
		tconn_resume(c->client);
}

static void try_connect(struct conn *c)
{
	struct sockaddr_storage ss;
	const struct egp_addr *a = &c->addrs[c->addr_i];
	int rc;

	memset(&ss, 0, sizeof ss);
	if (a->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(c->port);
		memcpy(&s4->sin_addr, a->b, 4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(c->port);
		memcpy(&s6->sin6_addr, a->b, 16);
	}
	c->state = C_CONNECT;
	c->cerr = 0;
	arm_timer(c, c->x->c.connect_timeout_ms);
	/* Our own timer answers 504 first; tconn's deadline, a second later, only backs it up. */
	rc = tconn_connect(&c->x->loop, (struct sockaddr *)&ss, NULL, NULL, c->x->c.connect_timeout_ms + 1000, &up_cbs,
			   c, &c->up);
	if (rc < 0) {
		fail(c, 502, "Bad Gateway", "connect-failed", uv_strerror(rc));
		return;
	}
	c->open_handles++;
}

/* Keeps only the allowed addresses; refuses when none is. */
static void check_addrs(struct conn *c, const struct egp_addr *in, int n)
{
	struct egp_decision d, first = { 0 };
	bool have_first = false;

	c->naddr = 0;
	for (int i = 0; i < n; i++) {
		if (egp_check_addr(c->x->pol, c->norm, &in[i], c->port, &d) < 0)
			continue;
		if (d.allow) {
			bool dup = false;
			for (int j = 0; j < c->naddr; j++)
				dup |= !memcmp(&c->addrs[j], &in[i], sizeof in[i]);
			if (!dup && c->naddr < MAX_ADDRS) {
				if (c->naddr == 0)
					snprintf(c->rule, sizeof c->rule, "%s", d.rule);
				c->addrs[c->naddr++] = in[i];
			}
		} else if (!have_first) {
			first = d;
			have_first = true;
		}
	}
	if (c->naddr == 0) {
		if (!have_first) {
			fail(c, 502, "Bad Gateway", "dns-failed", "no usable address");
			return;
		}
		refuse(c, &first);
		return;
	}
	c->addr_i = 0;
	try_connect(c);
}

static void on_resolved(uv_getaddrinfo_t *r, int status, struct addrinfo *res)
{
	struct conn *c = r->data;
	struct egp_addr addrs[MAX_ADDRS];
	int n = 0;

	c->gai_pending = false;
	if (c->state != C_RESOLVE) {
		/* Closed, or answered already (the lookup timed out): the result is not wanted. */
		uv_freeaddrinfo(res);
		conn_maybe_free(c);
		return;
	}
	if (status < 0) {
		fail(c, 502, "Bad Gateway", "dns-failed", uv_strerror(status));
		uv_freeaddrinfo(res);
		return;
	}
	for (struct addrinfo *a = res; a && n < MAX_ADDRS; a = a->ai_next)
		if (egp_addr_from_sockaddr(a->ai_addr, &addrs[n]) == 0)
			n++;
	uv_freeaddrinfo(res);
	check_addrs(c, addrs, n);
}

/* ---- request head ------------------------------------------------------------------------------- */

static void handle_head(struct conn *c)
{
	struct egp_decision d;
	struct egp_addr ip;
	char why[96];

	if (c->req.target_long) {
		fail(c, 400, "Bad Request", "bad-request", "request target too long");
		return;
	}
	c->is_connect = c->req.method == HTTP_CONNECT;
	if (c->is_connect) {
		if (na_split_hostport(c->url, false, c->host, sizeof c->host, &c->port) < 0 || !c->host[0]) {
			fail(c, 400, "Bad Request", "bad-request", "CONNECT needs host:port");
			return;
		}
	} else if (h1_absolute_target(c->url, c->req.target_len, c->host, sizeof c->host, &c->port, c->path,
				      sizeof c->path, why, sizeof why) < 0) {
		fail(c, 400, "Bad Request", "bad-request", why);
		return;
	}
	/* Policy on the name as asked, before any lookup. */
	egp_check_host(c->x->pol, c->host, strlen(c->host), c->port, c->norm, sizeof c->norm, &ip, &d);
	if (!d.allow) {
		refuse(c, &d);
		return;
	}
	if (ip.family) {
		check_addrs(c, &ip, 1);
		return;
	}
	{
		struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG };
		int rc;
		c->state = C_RESOLVE;
		arm_timer(c, c->x->c.dns_timeout_ms);
		c->gai.data = c;
		rc = uv_getaddrinfo(&c->x->loop, &c->gai, on_resolved, c->norm, NULL, &hints);
		if (rc < 0) {
			fail(c, 502, "Bad Gateway", "dns-failed", uv_strerror(rc));
			return;
		}
		c->gai_pending = true;
	}
}

/* An h1 error before the head ended. */
static void head_error(struct conn *c)
{
	if (c->req.err == H1_E_HEAD_TOO_LARGE)
		fail(c, 431, "Request Header Fields Too Large", "header-too-large",
		     c->req.nheaders > MAX_HEADERS ? "too many header fields" : "request head over the size limit");
	else
		fail(c, 400, "Bad Request", "bad-request", c->req.errstr);
}

static void head_data(struct conn *c, const uint8_t *d, size_t n)
{
	size_t cap = c->x->c.max_header, used;
	h1_ev ev;

	if (c->hlen + n > cap + 65536) {
		fail(c, 431, "Request Header Fields Too Large", "header-too-large", "request head over the size limit");
		return;
	}
	memcpy(c->head + c->hlen, d, n);
	c->hlen += n;
	ev = h1_parse(&c->req, (const uint8_t *)c->head + c->hend, c->hlen - c->hend, &used);
	c->hend += used;
	if (ev == H1_MORE)
		return;
	if (ev == H1_ERR) {
		head_error(c);
		return;
	}
	/* H1_HEAD leaves the head's last LF (it is there: it ended the head); taking it alone ends a message
	 * without a body (CONNECT, GET) and leaves hend where the body or the tunnel starts. */
	if ((ev = h1_parse(&c->req, (const uint8_t *)c->head + c->hend, 1, &used)) == H1_ERR) {
		head_error(c);
		return;
	}
	c->hend += used;
	c->msg_done = ev == H1_DONE;
	tconn_pause(c->client); /* until the upstream is connected */
	handle_head(c);
}

/* ---- accept and lifecycle -------------------------------------------------------------------------- */

static void on_conn(uv_stream_t *srv, int status)
{
	egx *x = srv->data;
	struct conn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof *c);
	if (!c)
		return;
	c->x = x;
	uv_timer_init(&x->loop, &c->timer);
	c->timer.data = c;
	c->open_handles = 1;
	LIST_PUSH(x->conns, c, next, pprev);
	x->nconns++;
	if (tconn_accept(srv, NULL, &client_cbs, c, &c->client) < 0) {
		conn_close(c); /* tconn released the socket: only the timer is left */
		return;
	}
	c->open_handles++;
	x->st.accepted++;
	na_format(tconn_peer_addr(c->client), c->peer, sizeof c->peer);
	if (x->nconns > x->c.max_conns) {
		fail(c, 503, "Service Unavailable", "too-many-connections", "the sandbox has too many proxy connections");
		return;
	}
	c->head = malloc(x->c.max_header + 65536);
	c->hdrs = malloc(x->c.max_header + 2 * MAX_HEADERS + 2);
	if (!c->head || !c->hdrs) {
		conn_close(c);
		return;
	}
	/* The head cap counts its last LF, which h1 leaves out of its own count: hence max_header - 1. The
	 * proxy routes on the target, not Host. */
	h1_init(&c->req, true, (uint32_t)(x->c.max_header - 1));
	h1_any_host(&c->req);
	h1_keep_target(&c->req, c->url, sizeof c->url);
	h1_keep_headers(&c->req, c->hdrs, x->c.max_header + 2 * MAX_HEADERS + 2, MAX_HEADERS);
	arm_timer(c, x->c.header_timeout_ms);
}

static void on_walk_close(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void on_stop(uv_async_t *a)
{
	egx *x = a->data;
	struct conn *c, *next;
	for (c = x->conns; c; c = next) {
		next = c->next;
		conn_close(c);
	}
	if (x->listener_open)
		uv_close((uv_handle_t *)&x->listener, NULL);
	x->listener_open = false;
	uv_close((uv_handle_t *)&x->stop, NULL);
}

static void *thread_main(void *arg)
{
	egx *x = arg;
	uv_run(&x->loop, UV_RUN_DEFAULT);
	/* Anything left (a cancelled lookup racing the stop) is closed and run out. */
	uv_walk(&x->loop, on_walk_close, NULL);
	uv_run(&x->loop, UV_RUN_DEFAULT);
	return NULL;
}

static void add_local_addrs(egp_policy *p)
{
	struct ifaddrs *ifa, *i;
	if (getifaddrs(&ifa) < 0)
		return;
	for (i = ifa; i; i = i->ifa_next) {
		struct egp_addr a;
		if (i->ifa_addr && egp_addr_from_sockaddr(i->ifa_addr, &a) == 0)
			egp_add_local_addr(p, &a);
	}
	freeifaddrs(ifa);
}

egx *egx_start(const struct egx_config *c, char *err, size_t errlen)
{
	egx *x = calloc(1, sizeof *x);
	int rc;

	if (!x || !c->policy || c->listen_fd < 0) {
		snprintf(err, errlen, "egress proxy: %s", x ? "no policy or socket" : "out of memory");
		goto fail_early;
	}
	x->c = *c;
	x->pol = c->policy;
	if (!x->c.header_timeout_ms)
		x->c.header_timeout_ms = 10000;
	if (!x->c.dns_timeout_ms)
		x->c.dns_timeout_ms = 5000;
	if (!x->c.connect_timeout_ms)
		x->c.connect_timeout_ms = 10000;
	if (!x->c.idle_timeout_ms)
		x->c.idle_timeout_ms = 300000;
	if (!x->c.max_header)
		x->c.max_header = 16384;
	if (!x->c.max_conns)
		x->c.max_conns = 256;
	if (!c->skip_local_addrs)
		add_local_addrs(x->pol);
	if ((rc = uv_loop_init(&x->loop)) < 0) {
		snprintf(err, errlen, "egress proxy: %s", uv_strerror(rc));
		goto fail_early;
	}
	uv_tcp_init(&x->loop, &x->listener);
	x->listener.data = x;
	x->listener_open = true;
	if ((rc = uv_tcp_open(&x->listener, c->listen_fd)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)&x->listener, 128, on_conn)) < 0) {
		snprintf(err, errlen, "egress proxy: listen: %s", uv_strerror(rc));
		goto fail_loop;
	}
	uv_async_init(&x->loop, &x->stop, on_stop);
	x->stop.data = x;
	if ((rc = pthread_create(&x->thread, NULL, thread_main, x)) != 0) {
		snprintf(err, errlen, "egress proxy: thread: %s", strerror(rc));
		uv_close((uv_handle_t *)&x->stop, NULL);
		goto fail_loop;
	}
	log_info("msg=\"egress proxy started\" allow_rules=%zu", egp_allow_count(x->pol));
	return x;
fail_loop:
	/* The listener owns the fd once opened; closing the handle closes it. */
	uv_close((uv_handle_t *)&x->listener, NULL);
	uv_run(&x->loop, UV_RUN_DEFAULT);
	uv_loop_close(&x->loop);
	egp_free(x->pol);
	free(x);
	return NULL;
fail_early:
	if (c->listen_fd >= 0)
		close(c->listen_fd);
	egp_free(c->policy);
	free(x);
	return NULL;
}

void egx_stop(egx *x)
{
	if (!x)
		return;
	uv_async_send(&x->stop);
	pthread_join(x->thread, NULL);
	uv_loop_close(&x->loop);
	egp_free(x->pol);
	free(x);
}

int egx_start_for_sandbox(struct sbx *s, egp_policy *policy, egx **out, char *err, size_t errlen)
{
	struct egx_config c = { .policy = policy, .listen_fd = -1 };
	int rc = sbx_netns_listen(s, EGX_PROXY_ADDR, EGX_PROXY_PORT, &c.listen_fd);

	if (rc < 0) {
		snprintf(err, errlen, "proxy socket in the sandbox: %s", strerror(-rc));
		egp_free(policy);
		return rc;
	}
	*out = egx_start(&c, err, errlen);
	return *out ? 0 : -EIO;
}

/* ---- the engine's `sandbox run --allow-domain` hook -------------------------------------------------- */

struct egx_run {
	egx *x;
};

struct egx_run *egx_run_start(int listen_fd, const char *const *allow, char *err, size_t errlen)
{
	struct egx_config c = { .listen_fd = listen_fd };
	struct egx_run *e;

	c.policy = egp_new();
	if (!c.policy) {
		close(listen_fd);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (; allow && *allow; allow++)
		if (egp_allow(c.policy, *allow, err, errlen) < 0) {
			close(listen_fd);
			egp_free(c.policy);
			return NULL;
		}
	e = calloc(1, sizeof *e);
	if (!e) {
		close(listen_fd);
		egp_free(c.policy);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->x = egx_start(&c, err, errlen);
	if (!e->x) {
		free(e);
		return NULL;
	}
	return e;
}

void egx_run_stop(struct egx_run *e)
{
	if (!e)
		return;
	egx_stop(e->x);
	free(e);
}
