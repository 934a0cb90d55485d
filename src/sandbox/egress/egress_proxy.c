/* Host-side egress proxy for sandboxes (see egress_proxy.h). */
#include "sandbox/egress/egress_proxy.h"

#include <errno.h>
#include <http_parser.h>
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

#include "core/log.h"
#include "core/netaddr.h"
#include "sandbox/engine/sandbox.h"

#define MAX_ADDRS 16
#define MAX_HEADERS 100
#define URL_MAX 8192
#define WQ_HIGH (1u << 20) /* stop reading a side while the other's write queue is above this */
#define WQ_LOW (256u << 10)

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

enum cstate { C_HEAD, C_RESOLVE, C_CONNECT, C_RELAY, C_CLOSING };

struct conn {
	egx *x;
	struct conn *prev, *next;
	enum cstate state;
	uv_tcp_t client, up;
	uv_timer_t timer;
	uv_getaddrinfo_t gai;
	uv_connect_t creq;
	int open_handles;
	bool gai_pending, connect_pending, up_init;
	bool client_eof, up_eof, client_paused, up_paused, close_after_write;
	/* request head */
	char *head;
	size_t hlen, hend;
	http_parser parser;
	char url[URL_MAX + 1];
	size_t urllen;
	char *hdrs; /* "name\0value\0" pairs */
	size_t hdrslen;
	int nhdr;
	bool want_value, msg_done, parse_err, too_many;
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
	if (c->prev)
		c->prev->next = c->next;
	else
		c->x->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
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
	uv_close((uv_handle_t *)&c->client, on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	if (c->up_init)
		uv_close((uv_handle_t *)&c->up, on_handle_closed);
}

/* ---- writes ------------------------------------------------------------------------------------- */

struct wreq {
	uv_write_t w;
	struct conn *c;
	bool to_client;
	char data[];
};

static void maybe_resume(struct conn *c);

static void on_written(uv_write_t *w, int status)
{
	struct wreq *r = (struct wreq *)w;
	struct conn *c = r->c;
	bool to_client = r->to_client;
	free(r);
	if (c->state == C_CLOSING)
		return;
	if (status < 0) {
		conn_close(c);
		return;
	}
	if (to_client && c->close_after_write && uv_stream_get_write_queue_size((uv_stream_t *)&c->client) == 0) {
		conn_close(c);
		return;
	}
	maybe_resume(c);
}

static int send_to(struct conn *c, bool to_client, const char *data, size_t len)
{
	struct wreq *r;
	uv_buf_t b;
	int rc;

	if (len == 0)
		return 0;
	r = malloc(sizeof *r + len);
	if (!r)
		return -ENOMEM;
	r->c = c;
	r->to_client = to_client;
	memcpy(r->data, data, len);
	b = uv_buf_init(r->data, (unsigned)len);
	rc = uv_write(&r->w, to_client ? (uv_stream_t *)&c->client : (uv_stream_t *)&c->up, &b, 1, on_written);
	if (rc < 0)
		free(r);
	return rc;
}

static void reply_error(struct conn *c, int code, const char *status, const char *reason, const char *body)
{
	char buf[1024];
	int blen = (int)strlen(body), n;

	n = snprintf(buf, sizeof buf,
		     "HTTP/1.1 %d %s\r\nX-Proxy-Error: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
		     "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
		     code, status, reason, blen, body);
	if (n < 0 || (size_t)n >= sizeof buf)
		n = snprintf(buf, sizeof buf, "HTTP/1.1 %d %s\r\nX-Proxy-Error: %s\r\nContent-Length: 0\r\n\r\n", code,
			     status, reason);
	uv_read_stop((uv_stream_t *)&c->client);
	if (c->up_init)
		uv_read_stop((uv_stream_t *)&c->up);
	c->close_after_write = true;
	if (send_to(c, true, buf, (size_t)n) < 0)
		conn_close(c);
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

/* ---- relay -------------------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *b)
{
	(void)h;
	(void)sugg;
	b->base = malloc(65536);
	b->len = b->base ? 65536 : 0;
}

static void arm_timer(struct conn *c, unsigned ms);
static void head_data(struct conn *c, const char *d, ssize_t n);
static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void on_up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void maybe_resume(struct conn *c)
{
	if (c->state != C_RELAY)
		return;
	if (c->client_paused && !c->client_eof &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&c->up) < WQ_LOW) {
		c->client_paused = false;
		uv_read_start((uv_stream_t *)&c->client, on_alloc, on_client_read);
	}
	if (c->up_paused && !c->up_eof && uv_stream_get_write_queue_size((uv_stream_t *)&c->client) < WQ_LOW) {
		c->up_paused = false;
		uv_read_start((uv_stream_t *)&c->up, on_alloc, on_up_read);
	}
}

static void on_shutdown(uv_shutdown_t *r, int status)
{
	(void)status;
	free(r);
}

static void half_close(struct conn *c, bool to_client)
{
	uv_shutdown_t *r = malloc(sizeof *r);
	if (!r || uv_shutdown(r, to_client ? (uv_stream_t *)&c->client : (uv_stream_t *)&c->up, on_shutdown) < 0) {
		free(r);
		conn_close(c);
	}
}

/* Plain HTTP: forwards the rest of the first request (its body) and nothing after it. */
static int msg_complete_cb(http_parser *p)
{
	struct conn *c = p->data;
	c->msg_done = true;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings body_settings = { .on_message_complete = msg_complete_cb };

static size_t body_part(struct conn *c, const char *d, size_t n)
{
	size_t used;
	if (c->msg_done)
		return 0;
	used = http_parser_execute(&c->parser, &body_settings, d, n);
	if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK && HTTP_PARSER_ERRNO(&c->parser) != HPE_PAUSED) {
		c->parse_err = true;
		return 0;
	}
	return used;
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = s->data;

	if (c->state == C_RELAY && n > 0) {
		size_t fwd = (size_t)n;
		arm_timer(c, c->x->c.idle_timeout_ms);
		if (!c->is_connect) {
			fwd = body_part(c, b->base, (size_t)n);
			if (c->parse_err) {
				free(b->base);
				conn_close(c);
				return;
			}
			if (c->msg_done)
				uv_read_stop(s);
		}
		if (send_to(c, false, b->base, fwd) < 0) {
			free(b->base);
			conn_close(c);
			return;
		}
		if (uv_stream_get_write_queue_size((uv_stream_t *)&c->up) > WQ_HIGH) {
			c->client_paused = true;
			uv_read_stop(s);
		}
	} else if (c->state == C_RELAY && n < 0) {
		c->client_eof = true;
		uv_read_stop(s);
		if (n != UV_EOF || c->up_eof)
			conn_close(c);
		else
			half_close(c, false);
	} else if (c->state == C_HEAD && n != 0) {
		head_data(c, b->base, n);
	}
	free(b->base);
}

static void on_up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = s->data;

	if (c->state == C_RELAY && n > 0) {
		arm_timer(c, c->x->c.idle_timeout_ms);
		if (send_to(c, true, b->base, (size_t)n) < 0) {
			free(b->base);
			conn_close(c);
			return;
		}
		if (uv_stream_get_write_queue_size((uv_stream_t *)&c->client) > WQ_HIGH) {
			c->up_paused = true;
			uv_read_stop(s);
		}
	} else if (c->state == C_RELAY && n < 0) {
		c->up_eof = true;
		uv_read_stop(s);
		if (n != UV_EOF || c->client_eof || !c->is_connect) {
			/* Plain HTTP ends with the upstream's response. */
			c->close_after_write = true;
			if (uv_stream_get_write_queue_size((uv_stream_t *)&c->client) == 0)
				conn_close(c);
		} else {
			half_close(c, true);
		}
	}
	free(b->base);
}

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

static void try_connect(struct conn *c);

static void start_relay(struct conn *c)
{
	char qh[300], ab[64], qr[300];
	size_t early = c->hlen - c->hend;

	c->state = C_RELAY;
	c->x->st.allowed++;
	log_info("msg=\"egress allowed\" host=%s port=%u address=%s rule=%s method=%s client=%s",
		 log_quote(c->norm, qh, sizeof qh), c->port, egp_addr_str(&c->addrs[c->addr_i], ab, sizeof ab),
		 log_quote(c->rule, qr, sizeof qr),
		 c->is_connect ? "CONNECT" : http_method_str((enum http_method)c->parser.method), c->peer);
	arm_timer(c, c->x->c.idle_timeout_ms);
	if (c->is_connect) {
		static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
		if (send_to(c, true, ok, sizeof ok - 1) < 0 || send_to(c, false, c->head + c->hend, early) < 0) {
			conn_close(c);
			return;
		}
	} else {
		/* Request line in origin form, headers minus hop-by-hop and Proxy-*, our Host, Connection: close. */
		static const char *const drop[] = { "host", "connection", "proxy-connection", "keep-alive", "proxy-authorization",
						    "proxy-authenticate", "te", "trailer", "upgrade", NULL };
		size_t cap = c->hdrslen + strlen(c->path) + strlen(c->host) + 256, o = 0;
		char *req = malloc(cap), *p = c->hdrs;
		if (!req) {
			conn_close(c);
			return;
		}
		o += (size_t)snprintf(req + o, cap - o, "%s %s HTTP/1.1\r\n",
				      http_method_str((enum http_method)c->parser.method), c->path);
		for (int i = 0; i < c->nhdr; i++) {
			const char *name = p, *val = p + strlen(p) + 1;
			bool skip = false;
			p = (char *)val + strlen(val) + 1;
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
		int rc = send_to(c, false, req, o);
		free(req);
		if (rc < 0) {
			conn_close(c);
			return;
		}
		size_t fwd = body_part(c, c->head + c->hend, early);
		if (c->parse_err || send_to(c, false, c->head + c->hend, fwd) < 0) {
			conn_close(c);
			return;
		}
	}
	free(c->head);
	c->head = NULL;
	if (c->is_connect || !c->msg_done)
		uv_read_start((uv_stream_t *)&c->client, on_alloc, on_client_read);
	uv_read_start((uv_stream_t *)&c->up, on_alloc, on_up_read);
}

static void on_up_closed_retry(uv_handle_t *h)
{
	struct conn *c = h->data;
	c->open_handles--;
	if (c->state == C_CLOSING) {
		conn_maybe_free(c);
		return;
	}
	if (++c->addr_i < c->naddr)
		try_connect(c);
	else
		fail(c, 502, "Bad Gateway", "connect-failed", uv_strerror(c->cerr));
}

static void on_connected(uv_connect_t *r, int status)
{
	struct conn *c = r->data;
	c->connect_pending = false;
	if (c->state == C_CLOSING)
		return;
	if (status == 0) {
		start_relay(c);
		return;
	}
	/* Next allowed address, once the failed handle is closed (a uv_tcp_t is reused only after close). */
	c->up_init = false;
	c->cerr = status;
	uv_close((uv_handle_t *)&c->up, on_up_closed_retry);
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
	arm_timer(c, c->x->c.connect_timeout_ms);
	uv_tcp_init(&c->x->loop, &c->up);
	c->up.data = c;
	c->up_init = true;
	c->open_handles++;
	c->creq.data = c;
	rc = uv_tcp_connect(&c->creq, &c->up, (struct sockaddr *)&ss, on_connected);
	if (rc < 0) {
		fail(c, 502, "Bad Gateway", "connect-failed", uv_strerror(rc));
		return;
	}
	c->connect_pending = true;
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
	if (c->state == C_CLOSING) {
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

static int hp_url(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	if (c->urllen + len > URL_MAX)
		return 1;
	memcpy(c->url + c->urllen, at, len);
	c->urllen += len;
	c->url[c->urllen] = 0;
	return 0;
}

static int hdr_push(struct conn *c, const char *at, size_t len)
{
	size_t cap = c->x->c.max_header + 2 * MAX_HEADERS + 2;
	if (!c->hdrs && !(c->hdrs = malloc(cap)))
		return 1;
	if (c->hdrslen + len + 1 > cap)
		return 1;
	for (size_t i = 0; i < len; i++)
		if (at[i] == 0 || at[i] == '\r' || at[i] == '\n')
			return 1;
	memcpy(c->hdrs + c->hdrslen, at, len);
	c->hdrslen += len;
	c->hdrs[c->hdrslen++] = 0;
	return 0;
}

/* The head is parsed in one execute call, so each field and value arrives in one callback. */
static int hp_field(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	if (c->want_value && hdr_push(c, "", 0))
		return 1;
	if (++c->nhdr > MAX_HEADERS) {
		c->too_many = true;
		return 1;
	}
	c->want_value = true;
	return hdr_push(c, at, len);
}

static int hp_value(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	if (!c->want_value)
		return 1;
	c->want_value = false;
	return hdr_push(c, at, len);
}

static const http_parser_settings head_settings = {
	.on_url = hp_url,
	.on_header_field = hp_field,
	.on_header_value = hp_value,
	.on_message_complete = msg_complete_cb,
};

static size_t find_head_end(const char *d, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if (d[i] == '\n' && d[i + 1] == '\n')
			return i + 2;
		if (i + 3 < n && d[i] == '\r' && d[i + 1] == '\n' && d[i + 2] == '\r' && d[i + 3] == '\n')
			return i + 4;
	}
	return 0;
}

static void handle_head(struct conn *c)
{
	struct egp_decision d;
	struct egp_addr ip;

	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	http_parser_execute(&c->parser, &head_settings, c->head, c->hend);
	if (c->too_many) {
		fail(c, 431, "Request Header Fields Too Large", "header-too-large", "too many header fields");
		return;
	}
	if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK && HTTP_PARSER_ERRNO(&c->parser) != HPE_PAUSED) {
		fail(c, 400, "Bad Request", "bad-request", http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
		return;
	}
	/* Make the list whole: a field with an empty value may not have had a value callback. */
	if (c->want_value && hdr_push(c, "", 0)) {
		fail(c, 431, "Request Header Fields Too Large", "header-too-large", "request head over the size limit");
		return;
	}
	c->is_connect = c->parser.method == HTTP_CONNECT;
	if (c->is_connect) {
		if (na_split_hostport(c->url, false, c->host, sizeof c->host, &c->port) < 0 || !c->host[0]) {
			fail(c, 400, "Bad Request", "bad-request", "CONNECT needs host:port");
			return;
		}
	} else {
		struct http_parser_url u;
		http_parser_url_init(&u);
		if (c->urllen == 0 || c->url[0] == '/' ||
		    http_parser_parse_url(c->url, c->urllen, 0, &u) != 0 || !(u.field_set & (1 << UF_HOST)) ||
		    !(u.field_set & (1 << UF_SCHEMA))) {
			fail(c, 400, "Bad Request", "bad-request", "a proxy request needs an absolute http:// URL");
			return;
		}
		if (u.field_data[UF_SCHEMA].len != 4 || strncasecmp(c->url + u.field_data[UF_SCHEMA].off, "http", 4)) {
			fail(c, 400, "Bad Request", "bad-request", "only http:// URLs; use CONNECT for https");
			return;
		}
		if (u.field_data[UF_HOST].len >= sizeof c->host) {
			fail(c, 400, "Bad Request", "bad-request", "host too long");
			return;
		}
		memcpy(c->host, c->url + u.field_data[UF_HOST].off, u.field_data[UF_HOST].len);
		c->host[u.field_data[UF_HOST].len] = 0;
		c->port = (u.field_set & (1 << UF_PORT)) ? u.port : 80;
		if (c->port == 0) {
			fail(c, 400, "Bad Request", "bad-request", "bad port");
			return;
		}
		size_t po = (u.field_set & (1 << UF_PATH)) ? u.field_data[UF_PATH].off : c->urllen;
		size_t pe = (u.field_set & (1 << UF_QUERY)) ? u.field_data[UF_QUERY].off + u.field_data[UF_QUERY].len
							     : (u.field_set & (1 << UF_PATH)) ? po + u.field_data[UF_PATH].len : po;
		if (pe > po)
			snprintf(c->path, sizeof c->path, "%.*s", (int)(pe - po), c->url + po);
		else
			snprintf(c->path, sizeof c->path, "/");
		if (c->path[0] != '/') {
			fail(c, 400, "Bad Request", "bad-request", "bad path");
			return;
		}
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

static void head_data(struct conn *c, const char *d, ssize_t n)
{
	size_t cap = c->x->c.max_header;

	if (n < 0) {
		conn_close(c);
		return;
	}
	if (c->hlen + (size_t)n > cap + 65536) {
		fail(c, 431, "Request Header Fields Too Large", "header-too-large", "request head over the size limit");
		return;
	}
	memcpy(c->head + c->hlen, d, (size_t)n);
	c->hlen += (size_t)n;
	c->hend = find_head_end(c->head, c->hlen);
	if (c->hend == 0) {
		if (c->hlen > cap)
			fail(c, 431, "Request Header Fields Too Large", "header-too-large", "request head over the size limit");
		return;
	}
	if (c->hend > cap) {
		fail(c, 431, "Request Header Fields Too Large", "header-too-large", "request head over the size limit");
		return;
	}
	uv_read_stop((uv_stream_t *)&c->client);
	handle_head(c);
}

/* ---- accept and lifecycle -------------------------------------------------------------------------- */

static void on_conn(uv_stream_t *srv, int status)
{
	egx *x = srv->data;
	struct conn *c;
	struct sockaddr_storage ss;
	int sl = sizeof ss;

	if (status < 0)
		return;
	c = calloc(1, sizeof *c);
	if (!c)
		return;
	c->x = x;
	uv_tcp_init(&x->loop, &c->client);
	c->client.data = c;
	uv_timer_init(&x->loop, &c->timer);
	c->timer.data = c;
	c->open_handles = 2;
	c->next = x->conns;
	if (x->conns)
		x->conns->prev = c;
	x->conns = c;
	x->nconns++;
	if (uv_accept(srv, (uv_stream_t *)&c->client) < 0) {
		conn_close(c);
		return;
	}
	x->st.accepted++;
	if (uv_tcp_getpeername(&c->client, (struct sockaddr *)&ss, &sl) == 0)
		na_format((struct sockaddr *)&ss, c->peer, sizeof c->peer);
	else
		snprintf(c->peer, sizeof c->peer, "?");
	uv_tcp_nodelay(&c->client, 1);
	if (x->nconns > x->c.max_conns) {
		fail(c, 503, "Service Unavailable", "too-many-connections", "the sandbox has too many proxy connections");
		return;
	}
	c->head = malloc(x->c.max_header + 65536);
	if (!c->head) {
		conn_close(c);
		return;
	}
	arm_timer(c, x->c.header_timeout_ms);
	uv_read_start((uv_stream_t *)&c->client, on_alloc, on_client_read);
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

struct sandbox_egress {
	egx *x;
};

struct sandbox_egress *sandbox_egress_start(int listen_fd, const char *const *allow, char *err, size_t errlen)
{
	struct egx_config c = { .listen_fd = listen_fd };
	struct sandbox_egress *e;

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

void sandbox_egress_stop(struct sandbox_egress *e)
{
	if (!e)
		return;
	egx_stop(e->x);
	free(e);
}
