/* The inner proxy: TLS termination on owner-fed bytes, HTTP/1.1 relay by Host, streaming both ways.
 *
 * The relay is transparent: request and response bytes are forwarded exactly as received (h1 only tells
 * where messages end), so method, target, headers (Host included) and body reach the upstream unchanged and
 * every response chunk or SSE event is written to the client as soon as it arrives. One exchange at a time per
 * client connection; the upstream connection is kept for the next request when both sides allow it.
 *
 * Backpressure: client bytes are read out of TLS only while the upstream write queue is below its high-water
 * mark (unread ciphertext stays in the TLS input buffer and is not reported as consumed, so the owner's window
 * closes); the upstream is paused while the owner reports over_high_water. */
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

#include "core/log.h"
#include "core/tconn.h"
#include "core/tls13rec.h"
#include "core/tlsio.h"
#include "proxy/h1.h"
#include "proxy/mcpbridge.h"

#define PX_READ_CHUNK TRL_MAX_CIPHER /* a whole record body opens straight into it, with no spill copy */
#define PX_REUSE_MAX_IDLE_MS 2000   /* older idle upstream connections may be closing: dial a fresh one */
#define PXL_WINDOW (256 * 1024)     /* listener: unconsumed bytes before the socket read pauses */
#define PXL_LINGER_MS 5000          /* listener: wait this long for the client's FIN after ours */
#define PXL_LINGER_TICK_MS 20
#define PX_MAX_LISTENER_CONNS 20000

typedef struct pxu pxu;
typedef struct pxl pxl;

struct file_id {
	bool ok;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim;
};

struct px {
	uv_loop_t *loop;
	const px_config *cfg;
	SSL_CTX *sctx; /* customer certificate; swapped on reload (live SSLs keep their own reference) */
	SSL_CTX *uctx; /* upstream https client */
	uv_timer_t reload, dtimer;
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
	mbr **bridges; /* per route index: the stdio bridge of stdio:/sandbox: routes, else NULL */
};

enum cst { C_HANDSHAKE, C_HEAD, C_CONNECTING, C_BODY, C_MBODY, C_WAIT, C_TUNNEL, C_CLOSED };
enum tkind { T_NONE, T_HANDSHAKE, T_IDLE, T_HEAD, T_CONNECT, T_CLOSE };

struct px_conn {
	px *px;
	px_conn *prev, *next;
	const stream_ops *ops;
	void *ctx;
	char client[NA_FMT_MAX];
	tio *tls;
	uv_timer_t timer;
	enum tkind tkind;
	enum cst st;
	struct px_exch *x; /* parsers and names of the current exchange; NULL between requests */
	uint8_t *pend; /* plaintext read out of TLS but not parsed yet (held while paused) */
	size_t pend_len, pend_off;
	uint8_t *head; /* request head gathered until the upstream is chosen and connected */
	size_t head_len, head_cap;
	uint64_t fed, reported;
	int busy;
	bool in_eof, client_done, out_shut, closing, aborted, driving, redrive;
	bool up_full, up_paused;
	/* current exchange */
	bool in_exchange, req_done, resp_done, resp_started, head_req, logged;
	const route *rt;
	pxu *up;
	uint64_t t0, req_bytes, resp_bytes;
	unsigned status;
	/* stdio:/sandbox: routes: the request body is gathered, then answered by the bridge */
	uint8_t *mbody;
	size_t mbody_len, mbody_cap;
	bool mbody_over;
	mbr_req *mreq;
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
	pxl *prev, *next;
	tconn *tc;
	px_conn *pc;
	uv_timer_t linger;
	size_t outstanding;
	unsigned linger_ms;
	bool paused, shut, peer_eof;
	int handles;
};

static void drive(px_conn *c);
static void conn_finish(px_conn *c, bool graceful);
static void end_exchange(px_conn *c);
static void start_mcp(px_conn *c);
static void finish_mcp_request(px_conn *c);

/* ---- small helpers ---------------------------------------------------------------------------------- */

static void px_ref(px *p) { p->refs++; }

static void px_final_free(px *p)
{
	SSL_CTX_free(p->sctx);
	SSL_CTX_free(p->uctx);
	free(p);
}

static void px_unref(px *p)
{
	if (--p->refs == 0)
		px_final_free(p);
}

static void px_handle_closed(uv_handle_t *h) { px_unref(h->data); }

static double ms_since(uint64_t t0) { return (double)(uv_hrtime() - t0) / 1e6; }

static void set_timer(px_conn *c, enum tkind k, uint64_t ms);

/* ---- TLS server context ------------------------------------------------------------------------------ */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		       unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	/* Only HTTP/1.1 is spoken here: pick it when offered, else carry on without ALPN. */
	for (unsigned i = 0; i + 1 <= inlen;) {
		unsigned l = in[i];
		if (i + 1 + l > inlen)
			break;
		if (l == 8 && !memcmp(in + i + 1, "http/1.1", 8)) {
			*out = in + i + 1;
			*outlen = 8;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + l;
	}
	return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *load_server_ctx(const px_config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = tio_server_ctx(cfg->cert_file, cfg->key_file, false, err, errlen);
	if (!ctx)
		return NULL;
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	/* An idle client connection then costs a few hundred bytes of TLS state instead of ~13 KiB. */
	tio_enable_handoff(ctx);
	return ctx;
}

static void file_id_get(const char *path, struct file_id *f)
{
	struct stat st;
	memset(f, 0, sizeof *f);
	if (stat(path, &st) != 0)
		return;
	f->ok = true;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->size = st.st_size;
	f->mtim = st.st_mtim;
}

static bool file_id_eq(const struct file_id *a, const struct file_id *b)
{
	return a->ok == b->ok && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec;
}

static void cert_summary(SSL_CTX *ctx, char *buf, size_t len)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);
	char subj[256] = "?";
	char qs[300];
	const ASN1_TIME *na;
	struct tm tm;
	if (!x) {
		snprintf(buf, len, "subject=?");
		return;
	}
	X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof subj);
	na = X509_get0_notAfter(x);
	if (na && ASN1_TIME_to_tm(na, &tm) == 1)
		snprintf(buf, len, "subject=%s not_after=%04d-%02d-%02dT%02d:%02d:%02dZ", log_quote(subj, qs, sizeof qs),
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	else
		snprintf(buf, len, "subject=%s", log_quote(subj, qs, sizeof qs));
}

static void on_reload_timer(uv_timer_t *t)
{
	px *p = t->data;
	struct file_id c, k;
	char err[512], sum[400], q[600];
	SSL_CTX *n;

	file_id_get(p->cfg->cert_file, &c);
	file_id_get(p->cfg->key_file, &k);
	if (file_id_eq(&c, &p->cert_id) && file_id_eq(&k, &p->key_id))
		return;
	/* Remember what we tried, good or bad: a broken pair is reported once, not every poll. */
	p->cert_id = c;
	p->key_id = k;
	n = load_server_ctx(p->cfg, err, sizeof err);
	if (!n) {
		p->st.cert_reload_failures++;
		log_error("msg=\"certificate reload failed, keeping the current certificate\" err=%s",
			  log_quote(err, q, sizeof q));
		return;
	}
	SSL_CTX_free(p->sctx);
	p->sctx = n;
	p->st.cert_reloads++;
	cert_summary(n, sum, sizeof sum);
	log_info("msg=\"certificate reloaded\" cert_file=%s %s", log_quote(p->cfg->cert_file, q, sizeof q), sum);
}

/* ---- px lifecycle ----------------------------------------------------------------------------------- */

static bool any_https(const px_config *cfg)
{
	for (size_t i = 0; i < cfg->routes.n; i++)
		if (cfg->routes.v[i].kind == ROUTE_HTTPS)
			return true;
	return false;
}

static void free_bridges(px *p)
{
	for (size_t i = 0; p->bridges && i < p->cfg->routes.n; i++)
		mbr_free(p->bridges[i]);
	free(p->bridges);
	p->bridges = NULL;
}

/* stdio: routes run their command; sandbox: routes run this binary's `sandbox serve --stdio`. */
static int make_bridges(px *p, char *err, size_t errlen)
{
	const route_table *t = &p->cfg->routes;
	char exe[4096];
	ssize_t n;

	p->bridges = calloc(t->n ? t->n : 1, sizeof *p->bridges);
	if (!p->bridges) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->n; i++) {
		const route *r = &t->v[i];
		const char *argv[80];
		char idle[32];
		size_t na = 0;
		mbr_opts o;

		if (!route_is_mcp(r))
			continue;
		memset(&o, 0, sizeof o);
		if (r->kind == ROUTE_SANDBOX) {
			n = readlink("/proc/self/exe", exe, sizeof exe - 1);
			if (n <= 0) {
				snprintf(err, errlen, "route %s: cannot find the postern binary: %s", r->name, strerror(errno));
				return -EIO;
			}
			exe[n] = 0;
			argv[na++] = exe;
			argv[na++] = "sandbox";
			argv[na++] = "serve";
			argv[na++] = "--stdio";
			/* The bridge ends idle sessions; the server's own idle timer must not fire first. */
			snprintf(idle, sizeof idle, "%ums", (r->idle_timeout_ms ? r->idle_timeout_ms : 30u * 60 * 1000) + 60000u);
			argv[na++] = "--idle-timeout";
			argv[na++] = idle;
		}
		for (size_t k = 0; r->argv && r->argv[k] && na < 78; k++)
			argv[na++] = r->argv[k];
		argv[na] = NULL;
		o.name = r->name;
		o.argv = argv;
		o.workspace_root = r->workspace_root;
		o.max_sessions = r->max_sessions;
		o.idle_timeout_ms = r->idle_timeout_ms;
		if (!(p->bridges[i] = mbr_new(p->loop, &o, err, errlen)))
			return -EINVAL;
		log_info("msg=\"mcp route ready\" route=%s kind=%s command=%s", r->name, route_kind_name(r->kind), argv[0]);
	}
	return 0;
}

px *px_new(uv_loop_t *loop, const px_config *cfg, char *err, size_t errlen)
{
	px *p = calloc(1, sizeof *p);
	char sum[400], buf[200];

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->loop = loop;
	p->cfg = cfg;
	p->refs = 1;
	file_id_get(cfg->cert_file, &p->cert_id);
	file_id_get(cfg->key_file, &p->key_id);
	if (!(p->sctx = load_server_ctx(cfg, err, errlen)))
		goto fail;
	if (any_https(cfg)) {
		p->uctx = tio_client_ctx(cfg->upstream_ca_file, NULL, NULL, false, err, errlen);
		if (!p->uctx)
			goto fail;
		if (cfg->upstream_ca_file && cfg->include_system_cas && SSL_CTX_set_default_verify_paths(p->uctx) != 1) {
			snprintf(err, errlen, "cannot load the system CA store: %s", tio_ssl_errors(buf, sizeof buf));
			goto fail;
		}
		SSL_CTX_set_alpn_protos(p->uctx, (const unsigned char *)"\x08http/1.1", 9);
	}
	if (make_bridges(p, err, errlen) < 0)
		goto fail;
	uv_timer_init(loop, &p->reload);
	uv_timer_init(loop, &p->dtimer);
	p->reload.data = p->dtimer.data = p;
	px_ref(p);
	px_ref(p);
	uv_timer_start(&p->reload, on_reload_timer, cfg->reload_interval_ms, cfg->reload_interval_ms);
	uv_unref((uv_handle_t *)&p->reload); /* the watcher alone must not keep the loop alive */
	cert_summary(p->sctx, sum, sizeof sum);
	log_info("msg=\"proxy ready\" routes=%zu ip_validation=%s %s", cfg->routes.n,
		 cfg->disable_ip_validation ? "off" : "on", sum);
	return p;
fail:
	free_bridges(p);
	SSL_CTX_free(p->sctx);
	SSL_CTX_free(p->uctx);
	free(p);
	return NULL;
}

const char *px_listen_addr(const px *p) { return p->laddr[0] ? p->laddr : NULL; }
bool px_draining(const px *p) { return p->draining; }

void px_get_stats(const px *p, px_stats *out)
{
	*out = p->st;
	out->conns_active = p->nconns;
}

/* ---- client side output ----------------------------------------------------------------------------- */

static int flush_tls(px_conn *c)
{
	uint8_t *p;
	size_t k;
	/* The ciphertext block is handed over whole, without a copy: the owner may call back into us. */
	while ((p = tio_out_detach(c->tls, &k)) != NULL) {
		int r = c->aborted ? -EPIPE : c->ops->write(c->ctx, p, k);
		free(p);
		if (r < 0)
			return -EPIPE;
	}
	return c->aborted ? -EPIPE : 0;
}

static int cwrite(px_conn *c, const uint8_t *p, size_t n)
{
	if (c->aborted || c->closing || c->out_shut)
		return -EPIPE;
	if (tio_write(c->tls, p, n) < 0)
		return -EPROTO;
	return flush_tls(c);
}

static void report_consumed(px_conn *c)
{
	size_t inbio;
	uint64_t done;
	if (c->aborted)
		return;
	inbio = tio_in_pending(c->tls);
	done = c->fed - inbio;
	if (done > c->reported) {
		size_t n = (size_t)(done - c->reported);
		c->reported = done;
		c->ops->consumed(c->ctx, n);
	}
}

/* ---- connection lifetime ---------------------------------------------------------------------------- */

static void log_request(px_conn *c, const char *err)
{
	char qp[H1_TARGET_KEEP + 40], qr[300], qe[200];
	size_t plen;
	if (!c->in_exchange || c->logged)
		return;
	c->logged = true;
	plen = strcspn(c->x->path, "?");
	c->x->path[plen] = 0; /* the query may carry secrets: never logged */
	if (err)
		log_warn("msg=\"request\" route=%s method=%s path=%s status=%u req_bytes=%llu resp_bytes=%llu "
			 "duration_ms=%.1f client=%s error=%s",
			 c->rt ? log_quote(c->rt->name, qr, sizeof qr) : "-", c->x->method, log_quote(c->x->path, qp, sizeof qp),
			 c->status, (unsigned long long)c->req_bytes, (unsigned long long)c->resp_bytes, ms_since(c->t0),
			 c->client, log_quote(err, qe, sizeof qe));
	else
		log_info("msg=\"request\" route=%s method=%s path=%s status=%u req_bytes=%llu resp_bytes=%llu "
			 "duration_ms=%.1f client=%s",
			 c->rt ? log_quote(c->rt->name, qr, sizeof qr) : "-", c->x->method, log_quote(c->x->path, qp, sizeof qp),
			 c->status, (unsigned long long)c->req_bytes, (unsigned long long)c->resp_bytes, ms_since(c->t0),
			 c->client);
}

static void up_on_open(tconn *tc, int status, void *ud);
static void up_on_data(tconn *tc, const uint8_t *p, size_t n, void *ud);
static void up_on_eof(tconn *tc, void *ud);
static void up_on_drain(tconn *tc, void *ud);
static void up_on_close(tconn *tc, int err, void *ud);

static const tconn_cbs up_cbs = {
	.on_open = up_on_open,
	.on_data = up_on_data,
	.on_eof = up_on_eof,
	.on_drain = up_on_drain,
	.on_close = up_on_close,
};

/* Lets the upstream go: it frees itself from its own callbacks. */
static void up_detach(px_conn *c)
{
	pxu *u = c->up;
	if (!u)
		return;
	c->up = NULL;
	c->up_full = c->up_paused = false;
	u->c = NULL;
	if (u->gai_busy)
		uv_cancel((uv_req_t *)&u->gai);
	else if (u->tc)
		tconn_close(u->tc);
	else
		free(u);
}

static void conn_freed(uv_handle_t *h)
{
	px_conn *c = h->data;
	px *p = c->px;
	free(c->x);
	free(c);
	px_unref(p);
}

static void on_drained_timer(uv_timer_t *t)
{
	px *p = t->data;
	if (p->drained_called || !p->dcb)
		return;
	p->drained_called = true;
	log_info("msg=\"proxy drained\"");
	p->dcb(p, p->dud);
}

static void destroy(px_conn *c)
{
	px *p = c->px;
	if (c->prev)
		c->prev->next = c->next;
	else
		p->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	p->nconns--;
	up_detach(c);
	mbr_req_cancel(c->mreq);
	c->mreq = NULL;
	free(c->mbody);
	tio_free(c->tls);
	free(c->pend);
	free(c->head);
	c->tls = NULL;
	uv_close((uv_handle_t *)&c->timer, conn_freed);
	if (p->draining && p->nconns == 0 && !p->freeing)
		uv_timer_start(&p->dtimer, on_drained_timer, 0, 0);
}

static void enter(px_conn *c) { c->busy++; }

static void leave(px_conn *c)
{
	if (--c->busy == 0 && c->aborted)
		destroy(c);
}

void px_conn_abort(px_conn *c)
{
	if (!c || c->aborted)
		return;
	if (c->in_exchange && !c->logged)
		log_request(c, "client went away");
	c->aborted = true;
	if (c->busy == 0)
		destroy(c);
}

static void on_conn_timer(uv_timer_t *t);

/* Ends the connection: graceful sends close_notify and asks the owner to half-close first; ops->close
 * always comes later from the loop. */
static void conn_finish(px_conn *c, bool graceful)
{
	if (c->closing || c->aborted)
		return;
	if (c->in_exchange && !c->logged)
		log_request(c, graceful ? "connection closed" : "aborted");
	if (graceful && !c->out_shut) {
		if (tio_handshake_done(c->tls))
			tio_shutdown(c->tls);
		flush_tls(c);
		if (!c->aborted)
			c->ops->shutdown(c->ctx);
		c->out_shut = true;
	}
	c->closing = true;
	c->st = C_CLOSED;
	up_detach(c);
	mbr_req_cancel(c->mreq);
	c->mreq = NULL;
	set_timer(c, T_CLOSE, 0);
}

/* A response made by the proxy itself (no upstream involved); then the connection closes. */
static void respond(px_conn *c, unsigned code, const char *reason, const char *body)
{
	char buf[1024];
	int n;
	c->status = code;
	n = snprintf(buf, sizeof buf,
		     "HTTP/1.1 %u %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
		     "Connection: close\r\n\r\n%s",
		     code, reason, strlen(body), c->head_req ? "" : body);
	if (n > 0 && !c->resp_started) {
		c->resp_bytes += (size_t)n;
		cwrite(c, (const uint8_t *)buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
	}
	log_request(c, code >= 500 ? body : NULL);
	conn_finish(c, true);
}

static void upstream_fail(px_conn *c, unsigned code, const char *reason, const char *why)
{
	c->px->st.upstream_failures++;
	up_detach(c);
	if (!c->resp_started)
		respond(c, code, reason, why);
	else
		conn_finish(c, false);
}

/* ---- timers ----------------------------------------------------------------------------------------- */

static void set_timer(px_conn *c, enum tkind k, uint64_t ms)
{
	if (c->tkind == T_CLOSE)
		return; /* closing wins */
	c->tkind = k;
	if (k == T_NONE)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

static void on_conn_timer(uv_timer_t *t)
{
	px_conn *c = t->data;
	enum tkind k = c->tkind;
	enter(c);
	c->tkind = T_NONE;
	switch (k) {
	case T_CLOSE: {
		const stream_ops *ops = c->ops;
		c->aborted = true; /* the owner hears nothing more after close */
		ops->close(c->ctx);
		break;
	}
	case T_HANDSHAKE:
		log_debug("msg=\"tls handshake timed out\" client=%s", c->client);
		c->px->st.tls_failures++;
		conn_finish(c, false);
		break;
	case T_IDLE:
		conn_finish(c, true);
		break;
	case T_HEAD:
		c->in_exchange = true;
		snprintf(c->x->method, sizeof c->x->method, "-");
		respond(c, 408, "Request Timeout", "request head not received in time");
		break;
	case T_CONNECT:
		log_warn("msg=\"upstream connect timed out\" route=%s upstream=%s", c->rt ? c->rt->name : "-",
			 c->rt ? c->rt->value : "-");
		upstream_fail(c, 504, "Gateway Timeout", "upstream connect timed out");
		break;
	case T_NONE:
		break;
	}
	leave(c);
}

/* ---- upstream ---------------------------------------------------------------------------------------- */

static int up_write(px_conn *c, const uint8_t *p, size_t n)
{
	int r;
	if (!n)
		return 0;
	if (!c->up || !c->up->tc)
		return -EPIPE;
	if ((r = tconn_write(c->up->tc, p, n)) < 0)
		return r;
	c->req_bytes += n;
	if (tconn_over_high_water(c->up->tc))
		c->up_full = true;
	return 0;
}

static void up_send_head(px_conn *c)
{
	int r = up_write(c, c->head, c->head_len);
	free(c->head);
	c->head = NULL;
	c->head_len = c->head_cap = 0;
	if (r < 0)
		upstream_fail(c, 502, "Bad Gateway", "upstream write failed");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	pxu *u = req->data;
	px_conn *c = u->c;
	const px_config *cfg;
	struct addrinfo *ai, *pick = NULL, *bad = NULL;
	char ip[NA_FMT_MAX];
	int r;

	u->gai_busy = false;
	if (!c) {
		uv_freeaddrinfo(res);
		free(u);
		return;
	}
	enter(c);
	cfg = c->px->cfg;
	if (status < 0) {
		log_warn("msg=\"upstream name resolution failed\" route=%s host=%s err=\"%s\"", u->rt->name, u->rt->host,
			 uv_strerror(status));
		uv_freeaddrinfo(res);
		upstream_fail(c, 502, "Bad Gateway", "upstream name resolution failed");
		goto out;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET)
			continue;
		if (cfg->disable_ip_validation || na_cidrs_match(&cfg->allowed_ips, ai->ai_addr)) {
			pick = ai;
			break;
		}
		if (!bad)
			bad = ai;
	}
	if (!pick) {
		if (bad) {
			na_format_ip(bad->ai_addr, ip, sizeof ip);
			c->px->st.ip_rejected++;
			log_error("msg=\"IP validation failed: %s is not an allowed address\" route=%s upstream=%s", ip,
				  u->rt->name, u->rt->value);
		} else {
			log_warn("msg=\"upstream has no IPv4 address\" route=%s host=%s", u->rt->name, u->rt->host);
		}
		uv_freeaddrinfo(res);
		upstream_fail(c, 502, "Bad Gateway", bad ? "upstream address not allowed" : "upstream has no IPv4 address");
		goto out;
	}
	na_format(pick->ai_addr, u->addr, sizeof u->addr);
	r = tconn_connect(c->px->loop, pick->ai_addr, u->rt->kind == ROUTE_HTTPS ? c->px->uctx : NULL, u->rt->host,
			  c->px->cfg->connect_timeout_ms, &up_cbs, u, &u->tc);
	uv_freeaddrinfo(res);
	if (r < 0) {
		u->tc = NULL;
		log_warn("msg=\"upstream connect failed\" route=%s upstream=%s addr=%s err=\"%s\"", u->rt->name,
			 u->rt->value, u->addr, uv_strerror(r));
		upstream_fail(c, 502, "Bad Gateway", "upstream connect failed");
	}
out:
	leave(c);
}

static void start_upstream(px_conn *c)
{
	pxu *u = calloc(1, sizeof *u);
	struct addrinfo hints;
	char port[8];
	int r;

	if (!u) {
		upstream_fail(c, 502, "Bad Gateway", "out of memory");
		return;
	}
	u->c = c;
	u->rt = c->rt;
	u->reusable = true;
	u->gai.data = u;
	c->up = u;
	c->st = C_CONNECTING;
	set_timer(c, T_CONNECT, c->px->cfg->connect_timeout_ms);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_INET; /* upstreams are IPv4, as in Anthropic's proxy */
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof port, "%u", (unsigned)c->rt->port);
	r = uv_getaddrinfo(c->px->loop, &u->gai, on_resolved, c->rt->host, port, &hints);
	if (r < 0) {
		log_warn("msg=\"upstream name resolution failed\" route=%s host=%s err=\"%s\"", c->rt->name, c->rt->host,
			 uv_strerror(r));
		upstream_fail(c, 502, "Bad Gateway", "upstream name resolution failed");
		return;
	}
	u->gai_busy = true;
}

static void up_on_open(tconn *tc, int status, void *ud)
{
	pxu *u = ud;
	px_conn *c = u->c;
	(void)tc;
	if (!c)
		return;
	enter(c);
	if (status < 0) {
		log_warn("msg=\"upstream connect failed\" route=%s upstream=%s addr=%s err=\"%s\"", u->rt->name,
			 u->rt->value, u->addr, tconn_errstr(tc));
		upstream_fail(c, 502, "Bad Gateway", "upstream connect failed");
		goto out;
	}
	u->open = true;
	set_timer(c, T_NONE, 0);
	log_debug("msg=\"upstream connected\" route=%s addr=%s", u->rt->name, u->addr);
	c->st = C_BODY;
	up_send_head(c);
	drive(c);
out:
	leave(c);
}

static void pause_if_owner_full(px_conn *c)
{
	if (c->aborted || c->closing || !c->up || !c->up->tc || c->up_paused)
		return;
	if (c->ops->over_high_water(c->ctx)) {
		tconn_pause(c->up->tc);
		c->up_paused = true;
	}
}

static void start_tunnel(px_conn *c)
{
	c->st = C_TUNNEL;
	log_request(c, NULL);
	drive(c); /* client bytes that followed the upgrade request */
}

static void up_on_data(tconn *tc, const uint8_t *p, size_t n, void *ud)
{
	pxu *u = ud;
	px_conn *c = u->c;
	bool finished = false;
	(void)tc;
	if (!c)
		return;
	enter(c);
	if (c->st == C_TUNNEL) {
		c->resp_bytes += n;
		if (cwrite(c, p, n) < 0)
			conn_finish(c, false);
		pause_if_owner_full(c);
		goto out;
	}
	if (!c->in_exchange || c->resp_done) {
		/* Bytes nobody asked for: this connection cannot be trusted for another request. */
		u->reusable = false;
		if (!c->in_exchange)
			up_detach(c);
		goto out;
	}
	while (n > 0 && !c->closing && !c->aborted) {
		size_t used = 0;
		h1_ev ev;
		if (c->resp_done) {
			u->reusable = false;
			break;
		}
		ev = h1_parse(&c->x->resp, p, n, &used);
		if (ev == H1_ERR) {
			log_warn("msg=\"invalid response from upstream\" route=%s err=\"%s\"", u->rt->name, c->x->resp.errstr);
			u->reusable = false;
			upstream_fail(c, 502, "Bad Gateway", "invalid response from upstream");
			goto out;
		}
		if (used) {
			c->resp_started = true;
			c->resp_bytes += used;
			if (cwrite(c, p, used) < 0) {
				conn_finish(c, false);
				goto out;
			}
		}
		p += used;
		n -= used;
		if (ev == H1_HEAD)
			c->status = c->x->resp.status;
		if (ev == H1_DONE) {
			unsigned s = c->x->resp.status;
			if (s == 101 && c->x->req.upgrade) {
				c->status = 101;
				c->resp_done = c->req_done = true;
				u->reusable = false;
				if (n && cwrite(c, p, n) < 0) {
					conn_finish(c, false);
					goto out;
				}
				c->resp_bytes += n;
				n = 0;
				start_tunnel(c);
				goto out;
			}
			if (s / 100 == 1) {
				/* 100 Continue and friends: the final response follows. */
				h1_next(&c->x->resp);
				if (c->head_req)
					h1_skip_body(&c->x->resp);
				continue;
			}
			c->status = s;
			c->resp_done = true;
			finished = true;
		}
	}
	if (n > 0)
		u->reusable = false;
	pause_if_owner_full(c);
	if (finished && c->req_done && !c->closing && !c->aborted)
		end_exchange(c);
out:
	leave(c);
}

static void up_on_eof(tconn *tc, void *ud)
{
	pxu *u = ud;
	px_conn *c = u->c;
	(void)tc;
	u->eof = true;
	u->reusable = false;
	if (!c)
		return;
	enter(c);
	if (c->st == C_TUNNEL) {
		if (!c->out_shut) {
			tio_shutdown(c->tls);
			flush_tls(c);
			if (!c->aborted)
				c->ops->shutdown(c->ctx);
			c->out_shut = true;
		}
		if (c->client_done)
			conn_finish(c, true);
		goto out;
	}
	if (!c->in_exchange) {
		up_detach(c);
		goto out;
	}
	if (!c->resp_done) {
		h1_ev ev = h1_eof(&c->x->resp);
		if (ev == H1_DONE) {
			c->status = c->x->resp.status;
			c->resp_done = true;
			if (c->req_done)
				end_exchange(c);
			else
				conn_finish(c, true); /* close-delimited response: the client needs the close too */
		} else if (!c->resp_started) {
			log_warn("msg=\"upstream closed the connection before responding\" route=%s", u->rt->name);
			upstream_fail(c, 502, "Bad Gateway", "upstream closed the connection");
		} else {
			conn_finish(c, false);
		}
	}
out:
	leave(c);
}

static void up_on_drain(tconn *tc, void *ud)
{
	pxu *u = ud;
	px_conn *c = u->c;
	(void)tc;
	if (!c || !c->up_full)
		return;
	enter(c);
	c->up_full = false;
	drive(c);
	leave(c);
}

static void up_on_close(tconn *tc, int err, void *ud)
{
	pxu *u = ud;
	px_conn *c = u->c;
	(void)err;
	(void)tc;
	if (!c) {
		free(u);
		return;
	}
	enter(c);
	c->up = NULL;
	c->up_full = c->up_paused = false;
	u->c = NULL;
	if (c->st == C_TUNNEL) {
		conn_finish(c, c->out_shut);
	} else if (c->in_exchange && !c->resp_done) {
		if (!c->resp_started) {
			log_warn("msg=\"upstream connection failed\" route=%s err=\"%s\"", u->rt->name, tconn_errstr(tc));
			upstream_fail(c, 502, "Bad Gateway", "upstream connection failed");
		} else {
			conn_finish(c, false);
		}
	} else if (c->in_exchange && c->resp_done && !c->req_done) {
		/* The upstream answered and left while the request was still coming: the answer stands. */
		conn_finish(c, true);
	}
	free(u);
	leave(c);
}

/* ---- stdio: and sandbox: routes ---------------------------------------------------------------------- */

#define PX_MCP_MAX_BODY (4u << 20)

static void mbody_sink(void *ud, const char *at, size_t n)
{
	px_conn *c = ud;
	if (c->mbody_over || !n)
		return;
	if (c->mbody_len + n > PX_MCP_MAX_BODY) {
		c->mbody_over = true;
		return;
	}
	if (c->mbody_len + n > c->mbody_cap) {
		size_t cap = c->mbody_cap ? c->mbody_cap : 4096;
		uint8_t *nb;
		while (cap < c->mbody_len + n)
			cap *= 2;
		if (!(nb = realloc(c->mbody, cap))) {
			c->mbody_over = true;
			return;
		}
		c->mbody = nb;
		c->mbody_cap = cap;
	}
	memcpy(c->mbody + c->mbody_len, at, n);
	c->mbody_len += n;
}

static void start_mcp(px_conn *c)
{
	free(c->mbody);
	c->mbody = NULL;
	c->mbody_len = c->mbody_cap = 0;
	c->mbody_over = false;
	c->x->req.body_cb = mbody_sink;
	c->x->req.body_ud = c;
	c->st = C_MBODY;
}

static void mcp_done(void *ud, const mbr_response *r)
{
	px_conn *c = ud;
	char head[512];
	int n;
	bool keep = c->x->req.keep_alive && !c->px->draining && !c->client_done;

	c->mreq = NULL;
	if (c->closing || c->aborted)
		return;
	enter(c);
	c->status = (unsigned)r->status;
	n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n%s%s%s%s%s%s%s%s%sContent-Length: %zu\r\nCache-Control: no-store\r\n%s\r\n",
		     r->status, http_status_str((enum http_status)r->status),
		     r->content_type ? "Content-Type: " : "", r->content_type ? r->content_type : "",
		     r->content_type ? "\r\n" : "", r->session_id ? "Mcp-Session-Id: " : "",
		     r->session_id ? r->session_id : "", r->session_id ? "\r\n" : "", r->allow ? "Allow: " : "",
		     r->allow ? r->allow : "", r->allow ? "\r\n" : "", r->body_len,
		     keep ? "" : "Connection: close\r\n");
	if (n > 0 && (size_t)n < sizeof head && cwrite(c, (const uint8_t *)head, (size_t)n) == 0 &&
	    (!r->body_len || cwrite(c, (const uint8_t *)r->body, r->body_len) == 0)) {
		c->resp_started = true;
		c->resp_bytes = (size_t)n + r->body_len;
		c->req_done = c->resp_done = true;
		/* end_exchange decides keep-alive from both messages: this response keeps it when the request does. */
		c->x->resp.keep_alive = keep;
		c->x->req.upgrade = false;
		end_exchange(c);
	} else {
		conn_finish(c, false);
	}
	leave(c);
}

static void finish_mcp_request(px_conn *c)
{
	mbr *b = c->px->bridges[c->rt - c->px->cfg->routes.v];
	char sid[128];
	const char *sidp = NULL;
	int r;

	c->st = C_WAIT;
	c->x->req.body_cb = NULL;
	if (c->mbody_over) {
		respond(c, 413, "Content Too Large", "MCP message too large (cap 4 MiB)");
		return;
	}
	r = h1_head_value(c->head, c->head_len, "Mcp-Session-Id", sid, sizeof sid);
	if (r == -E2BIG) {
		respond(c, 400, "Bad Request", "Mcp-Session-Id too long");
		return;
	}
	if (r >= 0)
		sidp = sid;
	free(c->head);
	c->head = NULL;
	c->head_len = c->head_cap = 0;
	r = mbr_handle(b, c->x->method, sidp, c->mbody, c->mbody_len, mcp_done, c, &c->mreq);
	if (r < 0)
		respond(c, 500, "Internal Server Error", "MCP bridge failure");
}

/* ---- exchanges -------------------------------------------------------------------------------------- */

static void begin_exchange(px_conn *c)
{
	px *p = c->px;
	const px_config *cfg = p->cfg;
	char host[ROUTE_HOST_MAX + 1], q[400];
	const char *h = NULL;
	size_t hlen = 0;

	set_timer(c, T_NONE, 0);
	p->st.requests_total++;
	c->in_exchange = true;
	c->logged = c->req_done = c->resp_done = c->resp_started = false;
	c->status = 0;
	c->req_bytes = c->resp_bytes = 0;
	c->rt = NULL;
	c->head_req = c->x->req.method == HTTP_HEAD;
	snprintf(c->x->method, sizeof c->x->method, "%s", h1_method_name(&c->x->req));
	snprintf(c->x->path, sizeof c->x->path, "%s", c->x->req.target);
	if (c->x->req.method == HTTP_CONNECT) {
		respond(c, 405, "Method Not Allowed", "CONNECT is not supported");
		return;
	}
	if (c->x->req.host_len) {
		h = c->x->req.host;
		hlen = c->x->req.host_len;
	} else {
		/* HTTP/1.0 without Host: the TLS server name is the next best thing. */
		h = tio_servername(c->tls);
		hlen = h ? strlen(h) : 0;
	}
	if (!h || !hlen) {
		respond(c, 400, "Bad Request", "missing Host header");
		return;
	}
	if (route_host_normalize(h, hlen, host, sizeof host) < 0) {
		respond(c, 400, "Bad Request", "invalid Host header");
		return;
	}
	c->rt = route_lookup(&cfg->routes, cfg->tunnel_domain, host);
	if (!c->rt) {
		log_warn("msg=\"no route for host\" host=%s client=%s", log_quote(host, q, sizeof q), c->client);
		respond(c, 404, "Not Found", "no route for host");
		return;
	}
	if (route_is_mcp(c->rt)) {
		start_mcp(c);
		return;
	}
	h1_next(&c->x->resp);
	if (c->head_req)
		h1_skip_body(&c->x->resp);
	if (c->up && c->up->rt == c->rt && c->up->open && c->up->reusable && !c->up->eof &&
	    (uv_hrtime() - c->up->idle_since) / 1000000 < PX_REUSE_MAX_IDLE_MS) {
		if (c->up_paused) {
			tconn_resume(c->up->tc);
			c->up_paused = false;
		}
		c->st = C_BODY;
		up_send_head(c);
		return;
	}
	up_detach(c);
	start_upstream(c);
}

static void end_exchange(px_conn *c)
{
	px *p = c->px;
	bool keep = c->x->req.keep_alive && c->x->resp.keep_alive && !c->x->req.upgrade && !p->draining && !c->client_done;

	log_request(c, NULL);
	c->in_exchange = false;
	if (c->up) {
		if (!keep || !c->up->reusable || c->up->eof)
			up_detach(c);
		else
			c->up->idle_since = uv_hrtime();
		if (c->up && c->up_paused) {
			tconn_resume(c->up->tc); /* read on, to notice the upstream closing while idle */
			c->up_paused = false;
		}
	}
	if (!keep) {
		conn_finish(c, true);
		return;
	}
	free(c->x);
	c->x = NULL;
	c->st = C_HEAD;
	set_timer(c, T_IDLE, p->cfg->idle_timeout_ms);
	drive(c);
}

static void bad_request(px_conn *c)
{
	char q[200];
	const char *why = c->x->req.errstr ? c->x->req.errstr : "malformed request";
	c->in_exchange = true;
	snprintf(c->x->method, sizeof c->x->method, "%s", c->x->req.head_done ? h1_method_name(&c->x->req) : "-");
	snprintf(c->x->path, sizeof c->x->path, "%s", c->x->req.target);
	log_debug("msg=\"bad request\" client=%s err=%s", c->client, log_quote(why, q, sizeof q));
	if (c->x->req.err == H1_E_HEAD_TOO_LARGE) {
		respond(c, 431, "Request Header Fields Too Large", "request head too large");
	} else {
		char body[200];
		snprintf(body, sizeof body, "bad request: %s", why);
		respond(c, 400, "Bad Request", body);
	}
}

static int head_append(px_conn *c, const uint8_t *p, size_t n)
{
	if (c->head_len + n > c->head_cap) {
		size_t cap = c->head_cap ? c->head_cap : 1024;
		uint8_t *nh;
		while (cap < c->head_len + n)
			cap *= 2;
		if (!(nh = realloc(c->head, cap)))
			return -ENOMEM;
		c->head = nh;
		c->head_cap = cap;
	}
	memcpy(c->head + c->head_len, p, n);
	c->head_len += n;
	return 0;
}

static int exch_new(px_conn *c)
{
	uint32_t max_head = c->px->cfg->max_head_bytes;
	if (!(c->x = malloc(sizeof *c->x)))
		return -ENOMEM;
	h1_init(&c->x->req, true, max_head);
	h1_init(&c->x->resp, false, max_head);
	c->x->method[0] = c->x->path[0] = 0;
	return 0;
}

/* Handles plaintext from the client; returns how much was used (the rest waits). */
static size_t process(px_conn *c, const uint8_t *p, size_t n)
{
	size_t used = 0;
	h1_ev ev;

	switch (c->st) {
	case C_HEAD:
		if (!c->x && exch_new(c) < 0) {
			conn_finish(c, false);
			return n;
		}
		if (!h1_started(&c->x->req)) {
			c->t0 = uv_hrtime();
			set_timer(c, T_HEAD, c->px->cfg->head_timeout_ms);
		}
		ev = h1_parse(&c->x->req, p, n, &used);
		if (ev == H1_ERR) {
			bad_request(c);
			return n;
		}
		if (head_append(c, p, used) < 0) {
			conn_finish(c, false);
			return n;
		}
		if (ev == H1_HEAD)
			begin_exchange(c);
		return used;
	case C_BODY:
		ev = h1_parse(&c->x->req, p, n, &used);
		if (ev == H1_ERR) {
			if (!c->resp_started) {
				up_detach(c);
				bad_request(c);
			} else {
				conn_finish(c, false);
			}
			return n;
		}
		if (up_write(c, p, used) < 0) {
			upstream_fail(c, 502, "Bad Gateway", "upstream write failed");
			return n;
		}
		if (ev == H1_DONE) {
			c->req_done = true;
			c->st = C_WAIT;
			if (c->resp_done)
				end_exchange(c);
		}
		return used;
	case C_TUNNEL:
		if (up_write(c, p, n) < 0)
			conn_finish(c, false);
		return n;
	case C_MBODY:
		ev = h1_parse(&c->x->req, p, n, &used);
		if (ev == H1_ERR) {
			bad_request(c);
			return n;
		}
		if (ev == H1_DONE)
			finish_mcp_request(c);
		return used;
	default:
		return 0;
	}
}

static void client_eof(px_conn *c)
{
	if (c->client_done)
		return;
	c->client_done = true;
	switch (c->st) {
	case C_HEAD:
		if (c->x && h1_started(&c->x->req))
			log_debug("msg=\"client closed inside a request head\" client=%s", c->client);
		conn_finish(c, true);
		break;
	case C_BODY:
		if (h1_eof(&c->x->req) != H1_DONE)
			conn_finish(c, false);
		break;
	case C_MBODY:
		if (h1_eof(&c->x->req) == H1_DONE)
			finish_mcp_request(c);
		else
			conn_finish(c, false);
		break;
	case C_TUNNEL:
		if (c->up && c->up->tc)
			tconn_shutdown(c->up->tc);
		if (c->out_shut)
			conn_finish(c, true);
		break;
	default:
		/* The request is complete: the response still goes out, then the connection closes. */
		break;
	}
}

static bool can_read(const px_conn *c)
{
	switch (c->st) {
	case C_HEAD:
		return true;
	case C_MBODY:
		return true;
	case C_BODY:
	case C_TUNNEL:
		return c->up && c->up->open && !c->up_full;
	default:
		return false;
	}
}

static bool input_exhausted(px_conn *c)
{
	/* After the hand-off the queue keeps a record cut short by the EOF (OpenSSL would have taken it in):
	 * a read that found no whole record then means nothing more can come. */
	return c->in_eof && tio_plain_pending(c->tls) == 0 &&
	       (tio_in_pending(c->tls) == 0 || tio_handed_off(c->tls));
}

static void drive_once(px_conn *c)
{
	uint8_t buf[PX_READ_CHUNK];
	char q[300];

	while (!c->closing && !c->aborted) {
		const uint8_t *data;
		size_t n, used;
		bool from_pend;
		enum cst before;

		if (c->st == C_HANDSHAKE) {
			int r = tio_handshake(c->tls);
			if (flush_tls(c) < 0) {
				conn_finish(c, false);
				return;
			}
			if (r < 0) {
				c->px->st.tls_failures++;
				log_warn("msg=\"tls handshake failed\" client=%s err=%s", c->client,
					 log_quote(tio_errstr(c->tls), q, sizeof q));
				conn_finish(c, true);
				return;
			}
			if (r == 0) {
				if (input_exhausted(c))
					conn_finish(c, false);
				return;
			}
			log_debug("msg=\"tls handshake done\" client=%s record_layer=%s", c->client,
				  tio_handed_off(c->tls) ? "postern" : "openssl");
			c->st = C_HEAD;
			set_timer(c, T_IDLE, c->px->cfg->idle_timeout_ms);
			continue;
		}
		if (!can_read(c))
			return;
		from_pend = c->pend != NULL;
		if (from_pend) {
			data = c->pend + c->pend_off;
			n = c->pend_len - c->pend_off;
		} else {
			int r = tio_read(c->tls, buf, sizeof buf);
			if (flush_tls(c) < 0) {
				conn_finish(c, false);
				return;
			}
			if (r == 0) {
				if (input_exhausted(c))
					client_eof(c);
				return;
			}
			if (r == TIO_EOF) {
				client_eof(c);
				return;
			}
			if (r < 0) {
				log_debug("msg=\"client TLS error\" client=%s err=%s", c->client,
					  log_quote(tio_errstr(c->tls), q, sizeof q));
				conn_finish(c, false);
				return;
			}
			data = buf;
			n = (size_t)r;
		}
		before = c->st;
		used = process(c, data, n);
		if (c->aborted)
			return;
		if (from_pend) {
			if (c->pend) { /* process may have freed it by finishing */
				c->pend_off += used;
				if (c->pend_off >= c->pend_len) {
					free(c->pend);
					c->pend = NULL;
					c->pend_len = c->pend_off = 0;
				}
			}
		} else if (used < n && !c->closing) {
			c->pend = malloc(n - used);
			if (!c->pend) {
				conn_finish(c, false);
				return;
			}
			memcpy(c->pend, data + used, n - used);
			c->pend_len = n - used;
			c->pend_off = 0;
		}
		if (used == 0 && c->st == before)
			return; /* nothing moved: wait for an event */
	}
}

static void drive(px_conn *c)
{
	if (c->driving) {
		c->redrive = true;
		return;
	}
	c->driving = true;
	do {
		c->redrive = false;
		drive_once(c);
	} while (c->redrive && !c->closing && !c->aborted);
	c->driving = false;
	if (!c->closing)
		report_consumed(c);
}

/* ---- the stream seam -------------------------------------------------------------------------------- */

px_conn *px_conn_new(px *p, const stream_ops *ops, void *ctx, const char *client_addr)
{
	px_conn *c;
	if (!p || p->draining || p->freeing)
		return NULL;
	c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->tls = tio_new(p->sctx, true, NULL);
	if (!c->tls) {
		free(c);
		return NULL;
	}
	c->px = p;
	c->ops = ops;
	c->ctx = ctx;
	snprintf(c->client, sizeof c->client, "%s", client_addr && *client_addr ? client_addr : "-");
	uv_timer_init(p->loop, &c->timer);
	c->timer.data = c;
	c->st = C_HANDSHAKE;
	set_timer(c, T_HANDSHAKE, p->cfg->handshake_timeout_ms);
	c->next = p->conns;
	if (p->conns)
		p->conns->prev = c;
	p->conns = c;
	p->nconns++;
	p->st.conns_total++;
	px_ref(p);
	return c;
}

/* The stream_backend face: a stream_conn handed to the transport is a px_conn. */
static stream_conn *sb_open(void *ud, const stream_ops *ops, void *ctx, const char *client_addr)
{
	return (stream_conn *)px_conn_new(ud, ops, ctx, client_addr);
}
static void sb_feed(stream_conn *c, const uint8_t *p, size_t n) { px_conn_feed((px_conn *)c, p, n); }
static void sb_eof(stream_conn *c) { px_conn_eof((px_conn *)c); }
static void sb_drained(stream_conn *c) { px_conn_drained((px_conn *)c); }
static void sb_abort(stream_conn *c) { px_conn_abort((px_conn *)c); }

void px_stream_backend(px *p, stream_backend *out)
{
	*out = (stream_backend){ sb_open, sb_feed, sb_eof, sb_drained, sb_abort, p };
}

void px_conn_feed(px_conn *c, const uint8_t *p, size_t n)
{
	if (!c || c->aborted || !n)
		return;
	enter(c);
	c->fed += n;
	if (c->closing) {
		/* Nobody will read it; keep the owner's window moving until close arrives. */
		c->reported += n;
		c->ops->consumed(c->ctx, n);
	} else if (tio_feed(c->tls, p, n) < 0) {
		c->reported += n;
		conn_finish(c, false);
	} else {
		drive(c);
	}
	leave(c);
}

void px_conn_eof(px_conn *c)
{
	if (!c || c->aborted || c->in_eof)
		return;
	enter(c);
	c->in_eof = true;
	if (!c->closing)
		drive(c);
	leave(c);
}

void px_conn_drained(px_conn *c)
{
	if (!c || c->aborted)
		return;
	enter(c);
	if (c->up_paused && c->up && c->up->tc) {
		c->up_paused = false;
		tconn_resume(c->up->tc);
	}
	leave(c);
}

/* ---- plain listener --------------------------------------------------------------------------------- */

static void pxl_unlink_free(pxl *g)
{
	px *p = g->px;
	if (g->prev)
		g->prev->next = g->next;
	else
		p->glues = g->next;
	if (g->next)
		g->next->prev = g->prev;
	p->nglues--;
	free(g);
	px_unref(p);
}

static void pxl_handle_gone(pxl *g)
{
	if (--g->handles == 0)
		pxl_unlink_free(g);
}

static void pxl_timer_closed(uv_handle_t *h) { pxl_handle_gone(h->data); }

static int pxl_write(void *ctx, const uint8_t *p, size_t n)
{
	pxl *g = ctx;
	return g->tc ? tconn_write(g->tc, p, n) : -EPIPE;
}

static int pxl_shutdown(void *ctx)
{
	pxl *g = ctx;
	g->shut = true;
	return g->tc ? tconn_shutdown(g->tc) : -EPIPE;
}

/* Closes once our bytes are out and the client sent its FIN, or when the linger time is up. */
static void pxl_linger_tick(uv_timer_t *t)
{
	pxl *g = t->data;
	g->linger_ms += PXL_LINGER_TICK_MS;
	if (g->tc && ((g->peer_eof && tconn_queued(g->tc) == 0) || g->linger_ms >= PXL_LINGER_MS)) {
		uv_timer_stop(t);
		tconn_close(g->tc);
	}
}

static void pxl_close(void *ctx)
{
	pxl *g = ctx;
	g->pc = NULL;
	if (!g->tc)
		return;
	if (!g->shut) {
		tconn_close(g->tc); /* an abort */
		return;
	}
	/* Our FIN is queued: let the bytes out and read (and drop) until the client's FIN, so the kernel does
	 * not reset the connection under data the client has not read yet; bounded by the linger time. */
	if (g->paused) {
		g->paused = false;
		tconn_resume(g->tc);
	}
	uv_timer_start(&g->linger, pxl_linger_tick, 0, PXL_LINGER_TICK_MS);
}

static void pxl_consumed(void *ctx, size_t n)
{
	pxl *g = ctx;
	g->outstanding = n > g->outstanding ? 0 : g->outstanding - n;
	if (g->paused && g->outstanding <= PXL_WINDOW / 2 && g->tc) {
		g->paused = false;
		tconn_resume(g->tc);
	}
}

static bool pxl_over(void *ctx)
{
	pxl *g = ctx;
	return g->tc && tconn_over_high_water(g->tc);
}

static const stream_ops pxl_ops = {
	.write = pxl_write,
	.shutdown = pxl_shutdown,
	.close = pxl_close,
	.consumed = pxl_consumed,
	.over_high_water = pxl_over,
};

static void pxl_on_data(tconn *tc, const uint8_t *p, size_t n, void *ud)
{
	pxl *g = ud;
	if (!g->pc)
		return; /* lingering: dropped */
	g->outstanding += n;
	px_conn_feed(g->pc, p, n);
	if (g->pc && g->outstanding > PXL_WINDOW && !g->paused) {
		g->paused = true;
		tconn_pause(tc);
	}
}

static void pxl_on_eof(tconn *tc, void *ud)
{
	pxl *g = ud;
	(void)tc;
	g->peer_eof = true;
	if (g->pc)
		px_conn_eof(g->pc);
}

static void pxl_on_drain(tconn *tc, void *ud)
{
	pxl *g = ud;
	(void)tc;
	if (g->pc)
		px_conn_drained(g->pc);
}

static void pxl_on_close(tconn *tc, int err, void *ud)
{
	pxl *g = ud;
	(void)tc;
	(void)err;
	g->tc = NULL;
	if (g->pc) {
		px_conn_abort(g->pc);
		g->pc = NULL;
	}
	uv_close((uv_handle_t *)&g->linger, pxl_timer_closed);
	pxl_handle_gone(g);
}

static const tconn_cbs pxl_cbs = {
	.on_data = pxl_on_data,
	.on_eof = pxl_on_eof,
	.on_drain = pxl_on_drain,
	.on_close = pxl_on_close,
};

static void on_accept(uv_stream_t *server, int status)
{
	px *p = server->data;
	pxl *g;
	if (status < 0) {
		log_warn("msg=\"accept failed\" err=\"%s\"", uv_strerror(status));
		return;
	}
	g = calloc(1, sizeof *g);
	if (!g)
		return;
	g->px = p;
	if (tconn_accept(server, NULL, &pxl_cbs, g, &g->tc) < 0) {
		free(g);
		return;
	}
	uv_timer_init(p->loop, &g->linger);
	g->linger.data = g;
	g->handles = 2;
	g->next = p->glues;
	if (p->glues)
		p->glues->prev = g;
	p->glues = g;
	p->nglues++;
	px_ref(p);
	if (p->nglues > PX_MAX_LISTENER_CONNS || !(g->pc = px_conn_new(p, &pxl_ops, g, tconn_peer(g->tc))))
		tconn_close(g->tc);
}

int px_listen(px *p, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int len = sizeof ss, r;

	if (!p->cfg->listen_addr) {
		snprintf(err, errlen, "listen_addr is not set");
		return -EINVAL;
	}
	if (p->listening) {
		snprintf(err, errlen, "already listening");
		return -EALREADY;
	}
	if (na_parse_sockaddr(p->cfg->listen_addr, true, &ss) < 0) {
		snprintf(err, errlen, "listen_addr '%s' is not an address", p->cfg->listen_addr);
		return -EINVAL;
	}
	uv_tcp_init(p->loop, &p->lsock);
	p->lsock.data = p;
	px_ref(p);
	p->listening = true;
	if ((r = uv_tcp_bind(&p->lsock, (struct sockaddr *)&ss, 0)) < 0 ||
	    (r = uv_listen((uv_stream_t *)&p->lsock, 511, on_accept)) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", p->cfg->listen_addr, uv_strerror(r));
		p->listening = false;
		uv_close((uv_handle_t *)&p->lsock, px_handle_closed);
		return r;
	}
	uv_tcp_getsockname(&p->lsock, (struct sockaddr *)&ss, &len);
	na_format((struct sockaddr *)&ss, p->laddr, sizeof p->laddr);
	log_info("msg=\"proxy listening\" addr=%s", p->laddr);
	return 0;
}

/* ---- drain and teardown ----------------------------------------------------------------------------- */

static void on_drain_timeout(uv_timer_t *t)
{
	px *p = t->data;
	px_conn *c, *next;
	log_warn("msg=\"shutdown timeout: aborting remaining connections\" count=%zu", p->nconns);
	for (c = p->conns; c; c = next) {
		next = c->next;
		enter(c);
		conn_finish(c, false);
		leave(c);
	}
	if (p->nconns == 0)
		uv_timer_start(&p->dtimer, on_drained_timer, 0, 0);
}

void px_begin_shutdown(px *p, px_drained_cb cb, void *ud)
{
	px_conn *c, *next;
	if (p->draining || p->freeing)
		return;
	p->draining = true;
	p->dcb = cb;
	p->dud = ud;
	if (p->listening) {
		p->listening = false;
		uv_close((uv_handle_t *)&p->lsock, px_handle_closed);
	}
	log_info("msg=\"proxy draining\" connections=%zu timeout_ms=%lld", p->nconns,
		 (long long)p->cfg->shutdown_timeout_ms);
	for (c = p->conns; c; c = next) {
		next = c->next;
		enter(c);
		if (c->st == C_HANDSHAKE)
			conn_finish(c, false);
		else if (c->st == C_HEAD && (!c->x || !h1_started(&c->x->req)) && !c->pend)
			conn_finish(c, true);
		leave(c);
	}
	if (p->nconns == 0)
		uv_timer_start(&p->dtimer, on_drained_timer, 0, 0);
	else
		uv_timer_start(&p->dtimer, on_drain_timeout, (uint64_t)p->cfg->shutdown_timeout_ms, 0);
}

void px_free(px *p)
{
	pxl *g;
	if (!p || p->freeing)
		return;
	p->freeing = true;
	for (g = p->glues; g; g = g->next) {
		if (g->pc) {
			px_conn *pc = g->pc;
			g->pc = NULL;
			px_conn_abort(pc);
		}
		if (g->tc)
			tconn_close(g->tc);
	}
	for (px_conn *c = p->conns, *next; c; c = next) {
		next = c->next;
		px_conn_abort(c); /* owners must not touch them any more */
	}
	if (p->listening) {
		p->listening = false;
		uv_close((uv_handle_t *)&p->lsock, px_handle_closed);
	}
	uv_close((uv_handle_t *)&p->reload, px_handle_closed);
	uv_close((uv_handle_t *)&p->dtimer, px_handle_closed);
	free_bridges(p);
	px_unref(p);
}
