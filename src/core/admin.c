#include "core/admin.h"
#include "core/admin_int.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/cbuf.h"
#include "core/dirs.h"
#include "core/err.h"
#include "core/h1.h"
#include "core/list.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/tconn.h"

/* ---------------------------------------------------------------- metrics registry */

static struct family *g_fams, **g_fams_tail = &g_fams;

struct family *admi_family_get(const char *name, const char *help, enum mtype type)
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

adm_metric *admi_series_get(const char *name, const char *help, const char *labels, enum mtype type)
{
	struct family *f = admi_family_get(name, help, type);
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
	if (!m || !(m->labels = strdup(labels)) || (f->nb && !(m->hb = calloc(f->nb, sizeof *m->hb)))) {
		if (m)
			free(m->labels);
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
	return admi_series_get(name, help, labels, M_COUNTER);
}

adm_metric *adm_gauge(const char *name, const char *help, const char *labels)
{
	return admi_series_get(name, help, labels, M_GAUGE);
}

void adm_add(adm_metric *m, int64_t v)
{
	if (!m || m->fam->type == M_HISTOGRAM || (m->fam->type == M_COUNTER && v < 0))
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
	free(m->hb);
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

static const char *type_name(enum mtype t)
{
	return t == M_COUNTER ? "counter" : t == M_GAUGE ? "gauge" : "histogram";
}

char *adm_metrics_render(size_t *len)
{
	cbuf b = CBUF_INIT(4096, SIZE_MAX / 2);
	char *out = NULL;
	int rc = 0;
	admi_collect();
	for (struct family *f = g_fams; f && rc == 0; f = f->next) {
		if (f->help[0])
			rc = cbuf_printf(&b, "# HELP %s %s\n", f->name, f->help);
		if (rc == 0)
			rc = cbuf_printf(&b, "# TYPE %s %s\n", f->name, type_name(f->type));
		for (adm_metric *m = f->series; m && rc == 0; m = m->next) {
			if (f->type == M_HISTOGRAM)
				rc = admi_render_histogram(&b, f, m);
			else if (m->labels[0])
				rc = cbuf_printf(&b, "%s{%s} %lld\n", f->name, m->labels, (long long)m->v);
			else
				rc = cbuf_printf(&b, "%s %lld\n", f->name, (long long)m->v);
		}
	}
	if (rc == 0)
		rc = admi_process_render(&b);
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
			free(m->hb);
			free(m);
		}
		free(f->bounds);
		free(f->name);
		free(f->help);
		free(f);
	}
	g_fams = NULL;
	g_fams_tail = &g_fams;
	admi_process_off();
}

/* ---------------------------------------------------------------- server */

struct route {
	char *path;
	unsigned flags;
	adm_handler fn;	    /* adm_handle */
	adm_handler_ex fnx; /* adm_handle_ex */
	void *ud;
};

struct adm_server {
	uv_loop_t *loop;
	uv_tcp_t lsn;
	uv_pipe_t ulsn;		/* adm_listen_unix */
	bool listening, closing, unix_init;
	char *unix_path;	/* the socket file, unlinked at adm_free when it is still ours */
	dev_t unix_dev;
	ino_t unix_ino;
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
	tconn *c;	   /* TCP; NULL on the unix listener */
	bool is_unix;	   /* pipe is in use */
	uv_pipe_t pipe;
	uv_shutdown_t sreq;
	uid_t uid;
	pid_t pid;
	char rbuf[4096];
	uv_timer_t timer;
	h1 req;
	cbuf body;
	bool body_over;
	size_t seen;
	char url[1024];
	bool answered;
};

static void server_release(adm_server *s)
{
	if (--s->pending > 0)
		return;
	for (size_t i = 0; i < s->nroutes; i++)
		free(s->routes[i].path);
	free(s->routes);
	free(s->unix_path);
	free(s);
}

static void conn_timer_closed(uv_handle_t *h)
{
	struct aconn *a = h->data;
	adm_server *s = a->srv;
	cbuf_free(&a->body);
	free(a);
	server_release(s);
}

/* The transport is gone (tconn's on_close, or the pipe's close callback): the timer last. */
static void conn_gone(struct aconn *a)
{
	LIST_UNLINK(a, next, pprev);
	a->srv->nconns--;
	a->c = NULL;
	uv_close((uv_handle_t *)&a->timer, conn_timer_closed);
}

static void conn_on_close(tconn *c, int err, void *ud)
{
	(void)c;
	(void)err;
	conn_gone(ud);
}

static void pipe_closed(uv_handle_t *h)
{
	conn_gone(h->data);
}

static void conn_close(struct aconn *a)
{
	if (a->is_unix) {
		if (!uv_is_closing((uv_handle_t *)&a->pipe))
			uv_close((uv_handle_t *)&a->pipe, pipe_closed);
	} else if (a->c) {
		tconn_close(a->c);
	}
}

static void conn_timeout(uv_timer_t *t)
{
	conn_close(t->data);
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
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

struct pwrite {
	uv_write_t w;
	char data[];
};

static void pipe_written(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static void pipe_shut(uv_shutdown_t *req, int status)
{
	(void)status;
	/* The answer is in the peer's receive queue (a unix socket queues there): closing loses nothing. */
	conn_close(req->data);
}

/* One write of head and body, then the write side shut. */
static int pipe_send(struct aconn *a, const char *hdr, size_t n, const char *body, size_t len)
{
	struct pwrite *pw = malloc(sizeof *pw + n + len);
	uv_buf_t b;
	int r;
	if (!pw)
		return -ENOMEM;
	memcpy(pw->data, hdr, n);
	if (len)
		memcpy(pw->data + n, body, len);
	b = uv_buf_init(pw->data, (unsigned)(n + len));
	if ((r = uv_write(&pw->w, (uv_stream_t *)&a->pipe, &b, 1, pipe_written)) < 0) {
		free(pw);
		return r;
	}
	a->sreq.data = a;
	return uv_shutdown(&a->sreq, (uv_stream_t *)&a->pipe, pipe_shut);
}

static void send_resp(struct aconn *a, adm_resp *r, bool head)
{
	char hdr[512];
	int n;
	if (a->answered || (!a->c && !a->is_unix))
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
		conn_close(a); /* a content type too long for the head: never send a cut one */
		return;
	}
	if (a->is_unix) {
		if (pipe_send(a, hdr, (size_t)n, r->body, head ? 0 : r->len) < 0)
			conn_close(a);
	} else if (tconn_write(a->c, (const uint8_t *)hdr, (size_t)n) < 0 ||
		   (!head && r->len && tconn_write(a->c, (const uint8_t *)r->body, r->len) < 0) ||
		   tconn_shutdown(a->c) < 0) {
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

/* The route for path: an exact match, else the longest prefix route; NULL when none. */
static const struct route *route_find(const adm_server *s, const char *path)
{
	const struct route *best = NULL;
	size_t best_len = 0;
	for (size_t i = 0; i < s->nroutes; i++) {
		const struct route *rt = &s->routes[i];
		size_t n = strlen(rt->path);
		if (!strcmp(rt->path, path))
			return rt;
		if ((rt->flags & ADM_PREFIX) && n > best_len && !strncmp(rt->path, path, n)) {
			best = rt;
			best_len = n;
		}
	}
	return best;
}

/* The request is whole (head and any body): one answer, then the connection ends. */
static void answer(struct aconn *a)
{
	adm_server *s = a->srv;
	const char *method = h1_method_name(&a->req);
	bool head = a->req.method == HTTP_HEAD, get = a->req.method == HTTP_GET || head;
	bool post = a->req.method == HTTP_POST;
	const struct route *rt;
	char *q;
	adm_req rq;
	adm_resp r = { 0 };

	if (a->req.target_long) {
		simple(a, 431, "request URL too long\n");
		goto out;
	}
	if ((q = strchr(a->url, '?')))
		*q++ = 0;
	rt = route_find(s, a->url);
	if (!rt) {
		if (!get) {
			simple(a, 405, "only GET and HEAD\n");
			goto out;
		}
		if (!strcmp(a->url, "/metrics"))
			builtin_metrics(method, a->url, &r, NULL);
		else if (!strcmp(a->url, "/healthz"))
			builtin_healthz(method, a->url, &r, NULL);
		else
			adm_reply(&r, 404, NULL, "not found\n", 10);
		send_resp(a, &r, head);
		goto out;
	}
	if (!((get && (rt->flags & ADM_GET)) || (post && (rt->flags & ADM_POST)))) {
		char m[128];
		snprintf(m, sizeof m, "%s is not allowed here (%s%s%s)\n", method, rt->flags & ADM_GET ? "GET" : "",
			 (rt->flags & ADM_GET) && (rt->flags & ADM_POST) ? ", " : "", rt->flags & ADM_POST ? "POST" : "");
		simple(a, 405, m);
		goto out;
	}
	if (rt->fn) {
		rt->fn(method, a->url, &r, rt->ud);
	} else {
		rq = (adm_req){ .method = method, .path = a->url, .query = q ? q : "", .body = cbuf_str(&a->body),
				.body_len = a->body.len, .peer = "unix", .peer_unix = a->is_unix, .peer_uid = a->uid,
				.peer_pid = a->pid };
		if (!a->is_unix && a->c)
			rq.peer = tconn_peer(a->c);
		rt->fnx(&rq, &r, rt->ud);
	}
	send_resp(a, &r, head);
out:
	free(r.ctype);
	free(r.body);
}

static void body_bytes(void *ud, const char *at, size_t n)
{
	struct aconn *a = ud;
	if (!a->body_over && cbuf_append(&a->body, at, n) < 0)
		a->body_over = true;
}

/* After the head: a POST body is taken only with a Content-Length, any body only within ADM_MAX_BODY. */
static bool head_ok(struct aconn *a)
{
	uint64_t cl = a->req.p.content_length;
	if (a->req.te_count && a->req.method == HTTP_POST) {
		simple(a, 411, "send the body with Content-Length (no chunked encoding)\n");
		return false;
	}
	if (cl != ULLONG_MAX && cl > ADM_MAX_BODY) {
		char m[96];
		snprintf(m, sizeof m, "request body over %u bytes\n", ADM_MAX_BODY);
		simple(a, 413, m);
		return false;
	}
	a->req.body_cb = body_bytes;
	a->req.body_ud = a;
	return true;
}

static void conn_data(struct aconn *a, const uint8_t *p, size_t n)
{
	size_t used;
	h1_ev ev;
	if (a->answered)
		return; /* one request per connection; the rest is ignored */
	if (a->seen + n > ADM_MAX_REQUEST + ADM_MAX_BODY) {
		simple(a, 413, "request too large\n");
		return;
	}
	a->seen += n;
	/* Past the head (its last LF is left for the next call), on to the end of the message. */
	while ((ev = h1_parse(&a->req, p, n, &used)) == H1_HEAD) {
		p += used;
		n -= used;
		if (!head_ok(a))
			return;
	}
	if (ev == H1_DONE && a->body_over)
		simple(a, 413, "request body too large\n");
	else if (ev == H1_DONE)
		answer(a);
	else if (ev == H1_ERR)
		simple(a, a->req.err == H1_E_HEAD_TOO_LARGE ? 431 : 400,
		       a->req.err == H1_E_HEAD_TOO_LARGE ? "request head too large\n" : "bad request\n");
}

static void conn_on_data(tconn *c, const uint8_t *p, size_t n, void *ud)
{
	(void)c;
	conn_data(ud, p, n);
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

static void pipe_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct aconn *a = h->data;
	(void)hint;
	*b = uv_buf_init(a->rbuf, sizeof a->rbuf);
}

static void pipe_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct aconn *a = st->data;
	if (n > 0) {
		conn_data(a, (const uint8_t *)b->base, (size_t)n);
		return;
	}
	/* EOF before an answer: the request is incomplete. After one, the shutdown callback closes. */
	if (n < 0 && !a->answered)
		conn_close(a);
	else if (n < 0)
		uv_read_stop(st);
}

static struct aconn *conn_new(adm_server *s)
{
	struct aconn *a = calloc(1, sizeof *a);
	if (!a)
		return NULL;
	a->srv = s;
	uv_timer_init(s->loop, &a->timer);
	a->timer.data = a;
	cbuf_init(&a->body, 1024, ADM_MAX_BODY);
	/* The admin server routes on the path alone: no Host rules; the request cap is ADM_MAX_REQUEST. */
	h1_init(&a->req, true, ADM_MAX_REQUEST);
	h1_any_host(&a->req);
	h1_keep_target(&a->req, a->url, sizeof a->url);
	a->uid = (uid_t)-1;
	a->pid = -1; /* -1: no peer credentials (TCP) */
	s->pending++;
	s->nconns++;
	LIST_PUSH(s->conns, a, next, pprev);
	return a;
}

static void on_conn(uv_stream_t *lsn, int status)
{
	adm_server *s = lsn->data;
	struct aconn *a;
	int r;
	if (status < 0 || s->closing || !(a = conn_new(s)))
		return;
	if ((r = tconn_accept(lsn, NULL, &conn_cbs, a, &a->c)) < 0) {
		/* tconn reports no close for a failed accept: undo by hand. */
		a->c = NULL;
		conn_gone(a);
		return;
	}
	if (s->nconns > ADM_MAX_CONNS) {
		tconn_close(a->c);
		return;
	}
	uv_timer_start(&a->timer, conn_timeout, ADM_TIMEOUT_MS, 0);
}

static void on_unix_conn(uv_stream_t *lsn, int status)
{
	adm_server *s = lsn->data;
	struct ucred uc;
	socklen_t ul = sizeof uc;
	struct aconn *a;
	uv_os_fd_t fd;
	if (status < 0 || s->closing || !(a = conn_new(s)))
		return;
	a->is_unix = true;
	uv_pipe_init(s->loop, &a->pipe, 0);
	a->pipe.data = a;
	if (uv_accept(lsn, (uv_stream_t *)&a->pipe) < 0 || s->nconns > ADM_MAX_CONNS) {
		conn_close(a);
		return;
	}
	/* Who is asking, from the kernel: a handler records it (an approval's decider). */
	if (uv_fileno((uv_handle_t *)&a->pipe, &fd) < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) < 0) {
		conn_close(a);
		return;
	}
	a->uid = uc.uid;
	a->pid = uc.pid;
	if (uv_read_start((uv_stream_t *)&a->pipe, pipe_alloc, pipe_read) < 0) {
		conn_close(a);
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

static int add_route(adm_server *s, const char *path, unsigned flags, adm_handler fn, adm_handler_ex fnx, void *ud)
{
	struct route *nr = realloc(s->routes, (s->nroutes + 1) * sizeof *nr);
	if (!nr)
		return -ENOMEM;
	s->routes = nr;
	if (!(nr[s->nroutes].path = strdup(path)))
		return -ENOMEM;
	nr[s->nroutes].flags = flags;
	nr[s->nroutes].fn = fn;
	nr[s->nroutes].fnx = fnx;
	nr[s->nroutes].ud = ud;
	s->nroutes++;
	return 0;
}

int adm_handle(adm_server *s, const char *path, adm_handler fn, void *ud)
{
	return add_route(s, path, ADM_GET, fn, NULL, ud);
}

int adm_handle_ex(adm_server *s, const char *path, unsigned flags, adm_handler_ex fn, void *ud)
{
	if (!fn || !(flags & (ADM_GET | ADM_POST)))
		return -EINVAL;
	return add_route(s, path, flags, NULL, fn, ud);
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

/* A socket file at path: replaced when nobody listens on it (a crashed run left it), else an error. */
static int unix_clear(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, rc;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : err_set(err, errlen, -errno, "%s: %s", path, strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return err_set(err, errlen, -EEXIST, "%s exists and is not a socket: remove it or choose another "
						     "admin_socket", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return err_set(err, errlen, -errno, "socket: %s", strerror(errno));
	rc = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? -EADDRINUSE : -errno;
	close(fd);
	if (rc == -EADDRINUSE)
		return err_set(err, errlen, rc, "%s: another process is listening on it (a gateway already running?)",
			       path);
	if (rc != -ECONNREFUSED)
		return err_set(err, errlen, rc, "%s: %s", path, strerror(-rc));
	if (unlink(path) < 0 && errno != ENOENT)
		return err_set(err, errlen, -errno, "cannot remove the stale socket %s: %s", path, strerror(errno));
	return 0;
}

int adm_listen_unix(adm_server *s, const char *path, mode_t mode, char *err, size_t errlen)
{
	static unsigned seq;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char tmp[sizeof sa.sun_path], *dirc = NULL;
	struct stat st;
	int fd = -1, rc;
	bool bound = false;

	if (s->unix_init)
		return err_set(err, errlen, -EALREADY, "this server already has a unix listener%s%s",
			       s->unix_path ? " on " : "", s->unix_path ? s->unix_path : "");
	if (!path || !*path || strlen(path) > ADM_UNIX_PATH_MAX)
		return err_set(err, errlen, -ENAMETOOLONG, "admin socket path %s: empty or over %d bytes",
			       path ? path : "(null)", ADM_UNIX_PATH_MAX);
	if (!mode)
		mode = 0600;
	if (!(dirc = strdup(path))) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = dirs_make(dirname(dirc), 0755, NULL, err, errlen)) < 0 || (rc = unix_clear(path, err, errlen)) < 0)
		goto done;
	snprintf(tmp, sizeof tmp, "%s.%ld.%u", path, (long)getpid(), seq++);
	memcpy(sa.sun_path, tmp, strlen(tmp) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		rc = err_set(err, errlen, -errno, "socket: %s", strerror(errno));
		goto done;
	}
	(void)unlink(tmp);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		rc = err_set(err, errlen, -errno, "cannot bind %s: %s", tmp, strerror(errno));
		goto done;
	}
	bound = true;
	if (chmod(tmp, mode) < 0) {
		rc = err_set(err, errlen, -errno, "chmod %s: %s", tmp, strerror(errno));
		goto done;
	}
	uv_pipe_init(s->loop, &s->ulsn, 0);
	s->ulsn.data = s;
	s->unix_init = true;
	s->pending++;
	if ((rc = uv_pipe_open(&s->ulsn, fd)) < 0) {
		err_set(err, errlen, rc, "%s: %s", path, uv_strerror(rc));
		goto done;
	}
	fd = -1; /* the handle has it */
	if ((rc = uv_listen((uv_stream_t *)&s->ulsn, 16, on_unix_conn)) < 0) {
		err_set(err, errlen, rc, "cannot listen on %s: %s", path, uv_strerror(rc));
		goto done;
	}
	if (rename(tmp, path) < 0 || lstat(path, &st) < 0) {
		rc = err_set(err, errlen, -errno, "cannot move the socket to %s: %s", path, strerror(errno));
		goto done;
	}
	bound = false;
	if (!(s->unix_path = strdup(path))) {
		(void)unlink(path);
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto done;
	}
	s->unix_dev = st.st_dev;
	s->unix_ino = st.st_ino;
	rc = 0;
done:
	if (fd >= 0)
		close(fd);
	if (bound)
		(void)unlink(tmp);
	free(dirc);
	return rc;
}

static void lsn_closed(uv_handle_t *h)
{
	server_release(h->data);
}

void adm_free(adm_server *s)
{
	struct stat st;
	if (!s || s->closing)
		return;
	s->closing = true;
	for (struct aconn *a = s->conns; a; a = a->next)
		conn_close(a);
	uv_close((uv_handle_t *)&s->lsn, lsn_closed);
	if (s->unix_init)
		uv_close((uv_handle_t *)&s->ulsn, lsn_closed);
	/* Only our own socket file: a successor may have replaced it after we stopped answering. */
	if (s->unix_path && lstat(s->unix_path, &st) == 0 && st.st_dev == s->unix_dev && st.st_ino == s->unix_ino)
		(void)unlink(s->unix_path);
}
