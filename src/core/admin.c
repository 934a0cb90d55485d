#include "core/admin.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cbuf.h"
#include "core/h1.h"
#include "core/list.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/tconn.h"

/* ---------------------------------------------------------------- metrics registry */

enum mtype { M_COUNTER, M_GAUGE };

struct family;

struct adm_metric {
	struct adm_metric *next;
	struct family *fam;
	char *labels;
	int64_t v;
};

struct family {
	struct family *next;
	char *name, *help;
	enum mtype type;
	struct adm_metric *series, **tail;
};

static struct family *g_fams, **g_fams_tail = &g_fams;

static struct family *family_get(const char *name, const char *help, enum mtype type)
{
	struct family *f;
	for (f = g_fams; f; f = f->next)
		if (!strcmp(f->name, name))
			return f->type == type ? f : NULL;
	f = calloc(1, sizeof *f);
	if (!f)
		return NULL;
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	if (!f->name || !f->help) {
		free(f->name);
		free(f->help);
		free(f);
		return NULL;
	}
	f->type = type;
	f->tail = &f->series;
	*g_fams_tail = f;
	g_fams_tail = &f->next;
	return f;
}

static adm_metric *series_get(const char *name, const char *help, const char *labels, enum mtype type)
{
	struct family *f = family_get(name, help, type);
	adm_metric *m;
	if (!f)
		return NULL;
	if (!labels)
		labels = "";
	/* The help of a family first created by a one-shot call (empty help) is filled in later. */
	if (help && help[0] && !f->help[0]) {
		char *h = strdup(help);
		if (h) {
			free(f->help);
			f->help = h;
		}
	}
	for (m = f->series; m; m = m->next)
		if (!strcmp(m->labels, labels))
			return m;
	m = calloc(1, sizeof *m);
	if (!m || !(m->labels = strdup(labels))) {
		free(m);
		return NULL;
	}
	m->fam = f;
	*f->tail = m;
	f->tail = &m->next;
	return m;
}

adm_metric *adm_counter(const char *name, const char *help, const char *labels)
{
	return series_get(name, help, labels, M_COUNTER);
}

adm_metric *adm_gauge(const char *name, const char *help, const char *labels)
{
	return series_get(name, help, labels, M_GAUGE);
}

void adm_add(adm_metric *m, int64_t v)
{
	if (!m || (m->fam->type == M_COUNTER && v < 0))
		return;
	m->v += v;
}

void adm_set(adm_metric *m, int64_t v)
{
	if (m && m->fam->type == M_GAUGE)
		m->v = v;
}

int64_t adm_value(const adm_metric *m) { return m ? m->v : 0; }

void adm_metric_drop(adm_metric *m)
{
	struct family *f;
	adm_metric **pp;
	if (!m)
		return;
	f = m->fam;
	for (pp = &f->series; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			if (f->tail == &m->next)
				f->tail = pp;
			break;
		}
	free(m->labels);
	free(m);
}

void adm_counter_add(const char *name, const char *labels, int64_t v) { adm_add(adm_counter(name, NULL, labels), v); }
void adm_gauge_set(const char *name, const char *labels, int64_t v) { adm_set(adm_gauge(name, NULL, labels), v); }
void adm_gauge_add(const char *name, const char *labels, int64_t v) { adm_add(adm_gauge(name, NULL, labels), v); }

const char *adm_label(char *buf, size_t len, const char *key, const char *value)
{
	size_t o;
	int n;
	if (!len)
		return buf;
	n = snprintf(buf, len, "%s=\"", key);
	/* room for at least the closing quote and the NUL */
	if (n < 0 || (size_t)n + 2 > len) {
		buf[0] = 0;
		return buf;
	}
	o = (size_t)n;
	/* Prometheus label values escape backslash, quote and newline. */
	for (const char *p = value ? value : ""; *p && o + 3 < len; p++) {
		if (*p == '\\' || *p == '"') {
			buf[o++] = '\\';
			buf[o++] = *p;
		} else if (*p == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *p;
		}
	}
	buf[o++] = '"';
	buf[o] = 0;
	return buf;
}

char *adm_metrics_render(size_t *len)
{
	cbuf b = CBUF_INIT(4096, SIZE_MAX / 2);
	char *out = NULL;
	int rc = 0;
	for (struct family *f = g_fams; f && rc == 0; f = f->next) {
		if (f->help[0])
			rc = cbuf_printf(&b, "# HELP %s %s\n", f->name, f->help);
		if (rc == 0)
			rc = cbuf_printf(&b, "# TYPE %s %s\n", f->name, f->type == M_COUNTER ? "counter" : "gauge");
		for (adm_metric *m = f->series; m && rc == 0; m = m->next) {
			if (m->labels[0])
				rc = cbuf_printf(&b, "%s{%s} %lld\n", f->name, m->labels, (long long)m->v);
			else
				rc = cbuf_printf(&b, "%s %lld\n", f->name, (long long)m->v);
		}
	}
	/* The caller frees the text: nothing was consumed, so it starts at the buffer's memory, NUL-terminated. */
	if (rc == 0)
		out = b.len ? (char *)b.p : strdup("");
	if (out)
		*len = b.len;
	else
		cbuf_free(&b);
	return out;
}

void adm_metrics_reset(void)
{
	struct family *f, *fn;
	adm_metric *m, *mn;
	for (f = g_fams; f; f = fn) {
		fn = f->next;
		for (m = f->series; m; m = mn) {
			mn = m->next;
			free(m->labels);
			free(m);
		}
		free(f->name);
		free(f->help);
		free(f);
	}
	g_fams = NULL;
	g_fams_tail = &g_fams;
}

/* ---------------------------------------------------------------- server */

struct route {
	char *path;
	adm_handler fn;
	void *ud;
};

struct adm_server {
	uv_loop_t *loop;
	uv_tcp_t lsn;
	bool listening, closing;
	int pending; /* handles and connections not yet released */
	int nconns;
	struct aconn *conns;
	struct route *routes;
	size_t nroutes;
	int port;
};

struct adm_resp {
	int status;
	char *ctype;
	char *body;
	size_t len;
	bool set;
};

struct aconn {
	struct aconn *next, **pprev;
	adm_server *srv;
	tconn *c;
	uv_timer_t timer;
	h1 req;
	size_t seen;
	char url[1024];
	bool answered;
	int closing; /* handles still to close */
};

static void server_release(adm_server *s)
{
	if (--s->pending > 0)
		return;
	for (size_t i = 0; i < s->nroutes; i++)
		free(s->routes[i].path);
	free(s->routes);
	free(s);
}

static void conn_timer_closed(uv_handle_t *h)
{
	struct aconn *a = h->data;
	adm_server *s = a->srv;
	free(a);
	server_release(s);
}

static void conn_on_close(tconn *c, int err, void *ud)
{
	struct aconn *a = ud;
	(void)c;
	(void)err;
	LIST_UNLINK(a, next, pprev);
	a->srv->nconns--;
	a->c = NULL;
	uv_close((uv_handle_t *)&a->timer, conn_timer_closed);
}

static void conn_timeout(uv_timer_t *t)
{
	struct aconn *a = t->data;
	if (a->c)
		tconn_close(a->c);
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Status";
	}
}

void adm_reply(adm_resp *r, int status, const char *ctype, const char *body, size_t len)
{
	free(r->ctype);
	free(r->body);
	r->ctype = strdup(ctype ? ctype : "text/plain; charset=utf-8");
	r->body = malloc(len ? len : 1);
	if (r->body && len)
		memcpy(r->body, body, len);
	r->len = len;
	r->status = status;
	r->set = r->ctype && r->body;
}

static void send_resp(struct aconn *a, adm_resp *r, bool head)
{
	char hdr[512];
	int n;
	if (a->answered || !a->c)
		return;
	a->answered = true;
	if (!r->set) {
		r->status = 500;
		r->len = 0;
	}
	n = snprintf(hdr, sizeof hdr,
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
		     "Connection: close\r\n\r\n",
		     r->status, reason(r->status), r->set ? r->ctype : "text/plain; charset=utf-8", r->len);
	if (n < 0 || (size_t)n >= sizeof hdr) {
		tconn_close(a->c); /* a content type too long for the head: never send a cut one */
		return;
	}
	if (tconn_write(a->c, (const uint8_t *)hdr, (size_t)n) < 0 ||
	    (!head && r->len && tconn_write(a->c, (const uint8_t *)r->body, r->len) < 0) || tconn_shutdown(a->c) < 0) {
		tconn_close(a->c);
		return;
	}
	/* The client closes after reading; the timer bounds a client that never does. */
	uv_timer_start(&a->timer, conn_timeout, ADM_TIMEOUT_MS, 0);
}

static void simple(struct aconn *a, int status, const char *text)
{
	adm_resp r = { 0 };
	adm_reply(&r, status, NULL, text, strlen(text));
	send_resp(a, &r, false);
	free(r.ctype);
	free(r.body);
}

static void builtin_metrics(const char *method, const char *path, adm_resp *r, void *ud)
{
	size_t len = 0;
	char *body = adm_metrics_render(&len);
	(void)method;
	(void)path;
	(void)ud;
	if (!body) {
		adm_reply(r, 500, NULL, "out of memory\n", 14);
		return;
	}
	adm_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
	free(body);
}

static void builtin_healthz(const char *method, const char *path, adm_resp *r, void *ud)
{
	(void)method;
	(void)path;
	(void)ud;
	adm_reply(r, 200, NULL, "ok\n", 3);
}

/* The request is whole (head and any body): one answer, then the connection ends. */
static void answer(struct aconn *a)
{
	adm_server *s = a->srv;
	const char *method = h1_method_name(&a->req);
	bool head = a->req.method == HTTP_HEAD;
	char *q;
	adm_resp r = { 0 };

	if (a->req.target_long) {
		simple(a, 431, "request URL too long\n");
		goto out;
	}
	if (a->req.method != HTTP_GET && !head) {
		simple(a, 405, "only GET and HEAD\n");
		goto out;
	}
	if ((q = strchr(a->url, '?')))
		*q = 0;
	for (size_t i = 0; i < s->nroutes; i++)
		if (!strcmp(s->routes[i].path, a->url)) {
			s->routes[i].fn(method, a->url, &r, s->routes[i].ud);
			send_resp(a, &r, head);
			goto out;
		}
	if (!strcmp(a->url, "/metrics"))
		builtin_metrics(method, a->url, &r, NULL);
	else if (!strcmp(a->url, "/healthz"))
		builtin_healthz(method, a->url, &r, NULL);
	else
		adm_reply(&r, 404, NULL, "not found\n", 10);
	send_resp(a, &r, head);
out:
	free(r.ctype);
	free(r.body);
}

static void conn_on_data(tconn *c, const uint8_t *p, size_t n, void *ud)
{
	struct aconn *a = ud;
	size_t used;
	h1_ev ev;
	(void)c;
	if (a->answered)
		return; /* one request per connection; the rest is ignored */
	if (a->seen + n > ADM_MAX_REQUEST) {
		simple(a, 431, "request too large\n");
		return;
	}
	a->seen += n;
	/* Past the head (its last LF is left for the next call), on to the end of the message. */
	while ((ev = h1_parse(&a->req, p, n, &used)) == H1_HEAD) {
		p += used;
		n -= used;
	}
	if (ev == H1_DONE)
		answer(a);
	else if (ev == H1_ERR)
		simple(a, 400, "bad request\n");
}

static void conn_on_eof(tconn *c, void *ud)
{
	struct aconn *a = ud;
	/* Before an answer a half-closed request is incomplete. After one, close only once the answer is out
	 * (closing drops queued bytes); otherwise the timer ends it. */
	if (!a->answered || tconn_queued(c) == 0)
		tconn_close(c);
}

static const tconn_cbs conn_cbs = {
	.on_data = conn_on_data,
	.on_eof = conn_on_eof,
	.on_close = conn_on_close,
};

static void on_conn(uv_stream_t *lsn, int status)
{
	adm_server *s = lsn->data;
	struct aconn *a;
	int r;
	if (status < 0 || s->closing)
		return;
	a = calloc(1, sizeof *a);
	if (!a)
		return;
	a->srv = s;
	uv_timer_init(s->loop, &a->timer);
	a->timer.data = a;
	/* The admin server routes on the path alone: no Host rules; the request cap is ADM_MAX_REQUEST. */
	h1_init(&a->req, true, ADM_MAX_REQUEST);
	h1_any_host(&a->req);
	h1_keep_target(&a->req, a->url, sizeof a->url);
	s->pending++;
	s->nconns++;
	LIST_PUSH(s->conns, a, next, pprev);
	if ((r = tconn_accept(lsn, NULL, &conn_cbs, a, &a->c)) < 0) {
		/* tconn reports no close for a failed accept: undo by hand. */
		a->c = NULL;
		conn_on_close(NULL, r, a);
		return;
	}
	if (s->nconns > ADM_MAX_CONNS) {
		tconn_close(a->c);
		return;
	}
	uv_timer_start(&a->timer, conn_timeout, ADM_TIMEOUT_MS, 0);
}

adm_server *adm_new(uv_loop_t *loop)
{
	adm_server *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->loop = loop;
	s->pending = 1; /* the listener handle */
	if (uv_tcp_init(loop, &s->lsn) < 0) {
		free(s);
		return NULL;
	}
	s->lsn.data = s;
	return s;
}

int adm_handle(adm_server *s, const char *path, adm_handler fn, void *ud)
{
	struct route *nr = realloc(s->routes, (s->nroutes + 1) * sizeof *nr);
	if (!nr)
		return -ENOMEM;
	s->routes = nr;
	if (!(nr[s->nroutes].path = strdup(path)))
		return -ENOMEM;
	nr[s->nroutes].fn = fn;
	nr[s->nroutes].ud = ud;
	s->nroutes++;
	return 0;
}

int adm_listen(adm_server *s, const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int len = sizeof ss, r;
	memset(&ss, 0, sizeof ss);
	if (na_parse_sockaddr(addr, true, &ss) < 0) {
		snprintf(err, errlen, "'%s' is not an address (host:port, [v6]:port or :port)", addr);
		return -EINVAL;
	}
	if ((r = uv_tcp_bind(&s->lsn, (struct sockaddr *)&ss, 0)) < 0 ||
	    (r = uv_listen((uv_stream_t *)&s->lsn, 64, on_conn)) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr, uv_strerror(r));
		return r;
	}
	s->listening = true;
	if (uv_tcp_getsockname(&s->lsn, (struct sockaddr *)&ss, &len) == 0)
		s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							 : ((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

int adm_port(const adm_server *s) { return s ? s->port : 0; }

static void lsn_closed(uv_handle_t *h)
{
	server_release(h->data);
}

void adm_free(adm_server *s)
{
	if (!s || s->closing)
		return;
	s->closing = true;
	for (struct aconn *a = s->conns; a; a = a->next)
		if (a->c)
			tconn_close(a->c);
	uv_close((uv_handle_t *)&s->lsn, lsn_closed);
}
