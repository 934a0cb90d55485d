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
#include "proxy/proxy_int.h"
#include "core/err.h"
#include "guard/pins.h"
#include "proxy/auditlog.h"

/* ---- small helpers ---------------------------------------------------------------------------------- */

static void px_final_free(px *p)
{
	pxi_gen_release(p); /* the configs last: p->cfg stayed valid until now */
	pin_free(p->pins);
	SSL_CTX_free(p->sctx);
	free(p);
}

void pxi_unref(px *p)
{
	if (--p->refs == 0)
		px_final_free(p);
}

void pxi_handle_closed(uv_handle_t *h) { pxi_unref(h->data); }


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

SSL_CTX *pxi_load_server_ctx(const px_config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = tio_server_ctx(cfg->cert_file, cfg->key_file, false, err, errlen);
	if (!ctx)
		return NULL;
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	/* An idle client connection then costs a few hundred bytes of TLS state instead of ~13 KiB. */
	tio_enable_handoff(ctx);
	return ctx;
}

void pxi_file_id_get(const char *path, struct file_id *f)
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

void pxi_cert_summary(SSL_CTX *ctx, char *buf, size_t len)
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

	pxi_file_id_get(p->cfg->cert_file, &c);
	pxi_file_id_get(p->cfg->key_file, &k);
	if (file_id_eq(&c, &p->cert_id) && file_id_eq(&k, &p->key_id))
		return;
	/* Remember what we tried, good or bad: a broken pair is reported once, not every poll. */
	p->cert_id = c;
	p->key_id = k;
	n = pxi_load_server_ctx(p->cfg, err, sizeof err);
	/* A pair that loads but no longer covers the routes would fail every client: keep the old one. */
	if (n && px_cert_check_domain(p->cfg, n, err, sizeof err) < 0) {
		SSL_CTX_free(n);
		n = NULL;
	}
	if (!n) {
		p->st.cert_reload_failures++;
		log_error("msg=\"certificate reload failed, keeping the current certificate\" err=%s",
			  log_quote(err, q, sizeof q));
		return;
	}
	SSL_CTX_free(p->sctx);
	p->sctx = n;
	p->st.cert_reloads++;
	pxi_cert_summary(n, sum, sizeof sum);
	log_info("msg=\"certificate reloaded\" cert_file=%s %s", log_quote(p->cfg->cert_file, q, sizeof q), sum);
}

/* ---- px lifecycle ----------------------------------------------------------------------------------- */

static int audit_sink(void *ud, const struct aud_rec *r)
{
	/* NULL: a reload could not reopen the sinks; refusing the call beats forwarding it unrecorded. */
	return ud ? alog_write(ud, r) : -EIO;
}

void pxi_audit_use(px *p, const px_config *cfg)
{
	if (cfg->audit)
		px_set_audit(p, audit_sink, p->alog, alog_config_redact(cfg->audit), alog_config_log_arguments(cfg->audit));
	else
		px_set_audit(p, NULL, NULL, NULL, false);
}

px *px_new(uv_loop_t *loop, const px_config *cfg, char *err, size_t errlen)
{
	px *p = calloc(1, sizeof *p);
	char sum[400];
	pxgen *g = NULL;

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->loop = loop;
	p->cfg = cfg;
	p->pins_file = cfg->pins_file;
	p->refs = 1;
	pxi_file_id_get(cfg->cert_file, &p->cert_id);
	pxi_file_id_get(cfg->key_file, &p->key_id);
	if (!(p->sctx = pxi_load_server_ctx(cfg, err, errlen)))
		goto fail;
	if (!(g = pxi_gen_build(p, cfg, NULL, NULL, err, errlen)))
		goto fail;
	if (cfg->audit) {
		char aerr[300];
		if (!(p->alog = alog_new(loop, cfg->audit, aerr, sizeof aerr))) {
			snprintf(err, errlen, "audit: %s", aerr);
			goto fail;
		}
		pxi_audit_use(p, cfg);
	}
	if (pin_new(&p->pins) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (cfg->pins_file) {
		char perr[300];
		if (pin_load(p->pins, cfg->pins_file, perr, sizeof perr) < 0) {
			snprintf(err, errlen, "pins_file %s: %s", cfg->pins_file, perr);
			goto fail;
		}
		log_info("msg=\"tool pins loaded\" file=%s pins=%zu", cfg->pins_file, pin_count(p->pins));
	}
	pxi_gen_commit(p, g, NULL, NULL);
	pxi_metrics_start(p);
	uv_timer_init(loop, &p->reload);
	uv_timer_init(loop, &p->dtimer);
	uv_timer_init(loop, &p->gtimer);
	p->reload.data = p->dtimer.data = p->gtimer.data = p;
	pxi_ref(p);
	pxi_ref(p);
	pxi_ref(p);
	uv_timer_start(&p->reload, on_reload_timer, cfg->reload_interval_ms, cfg->reload_interval_ms);
	uv_unref((uv_handle_t *)&p->reload); /* the watcher alone must not keep the loop alive */
	pxi_cert_summary(p->sctx, sum, sizeof sum);
	log_info("msg=\"proxy ready\" routes=%zu ip_validation=%s %s", cfg->routes.n,
		 cfg->disable_ip_validation ? "off" : "on", sum);
	return p;
fail:
	p->freeing = true; /* what goes now goes at once, not from a timer that was never made */
	pxi_gen_discard(g);
	alog_free(p->alog);
	pin_free(p->pins);
	SSL_CTX_free(p->sctx);
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

void pxi_on_drained_timer(uv_timer_t *t)
{
	px *p = t->data;
	if (p->drained_called || !p->dcb)
		return;
	p->drained_called = true;
	log_info("msg=\"proxy drained\"");
	p->dcb(p, p->dud);
}
/* ---- drain and teardown ----------------------------------------------------------------------------- */

static void on_drain_timeout(uv_timer_t *t)
{
	px *p = t->data;
	px_conn *c, *next;
	log_warn("msg=\"shutdown timeout: aborting remaining connections\" count=%zu", p->nconns);
	for (c = p->conns; c; c = next) {
		next = c->next;
		pxi_enter(c);
		pxi_conn_finish(c, false);
		pxi_leave(c);
	}
	if (p->nconns == 0)
		uv_timer_start(&p->dtimer, pxi_on_drained_timer, 0, 0);
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
		uv_close((uv_handle_t *)&p->lsock, pxi_handle_closed);
	}
	log_info("msg=\"proxy draining\" connections=%zu timeout_ms=%lld", p->nconns,
		 (long long)p->cfg->shutdown_timeout_ms);
	for (c = p->conns; c; c = next) {
		next = c->next;
		pxi_enter(c);
		if (c->st == C_HANDSHAKE)
			pxi_conn_finish(c, false);
		else if (c->st == C_HEAD && (!c->x || !h1_started(&c->x->req)) && !c->pend.len)
			pxi_conn_finish(c, true);
		pxi_leave(c);
	}
	/* GET streams of the stdio bridge never end by themselves: they end now (POST streams end with their
	 * response). Their connections then close as they would after any exchange while draining. */
	pxi_gen_drain(p);
	if (p->nconns == 0)
		uv_timer_start(&p->dtimer, pxi_on_drained_timer, 0, 0);
	else
		uv_timer_start(&p->dtimer, on_drain_timeout, (uint64_t)p->cfg->shutdown_timeout_ms, 0);
}

void px_free(px *p)
{
	pxl *g;
	if (!p || p->freeing)
		return;
	p->freeing = true;
	pxi_metrics_stop(p);
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
		uv_close((uv_handle_t *)&p->lsock, pxi_handle_closed);
	}
	uv_close((uv_handle_t *)&p->reload, pxi_handle_closed);
	uv_close((uv_handle_t *)&p->dtimer, pxi_handle_closed);
	uv_close((uv_handle_t *)&p->gtimer, pxi_handle_closed);
	pxi_gen_free_all(p);
	alog_free(p->alog); /* after the connections: their last lines are written */
	p->alog = NULL;
	pxi_unref(p);
}
