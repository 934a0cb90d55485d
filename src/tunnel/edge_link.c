/* Connector links on the edge: TLS, the registration line against the token store, then an HTTP/2 client
 * session whose streams carry relays. */
#include "tunnel/edge_int.h"
/* ------------------------------------------------------------------ connector connections: HTTP/2 */

void edgi_cconn_flush(struct cconn *cc)
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
				edgi_cconn_close(cc, nghttp2_strerror((int)n));
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
		edgi_cconn_close(cc, "HTTP/2 session finished");
	return;
fail:
	cc->flushing = false;
	edgi_cconn_close(cc, "write failed");
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
			edgi_reject_metric(r->entry == ENTRY_SNI ? "sni" : "mtls", "connector_refused");
			nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, r->sid, NGHTTP2_CANCEL);
			r->aborted = true;
			if (r->entry == ENTRY_SNI)
				edgi_sni_refuse(r, SNI_ALERT_INTERNAL_ERROR);
			else
				edgi_mtls_error(r, 502, "Bad Gateway", "the tunnel refused the connection");
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
		edgi_relay_abort(r);
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
		edgi_relay_stream_gone(r, code == NGHTTP2_NO_ERROR && r->down_eof);
	return 0;
}

static int h2_on_not_send(nghttp2_session *s, const nghttp2_frame *f, int err, void *ud)
{
	struct relay *r;
	(void)err;
	(void)ud;
	/* A request that never went out (cancelled, or refused after GOAWAY) gets no stream-close callback. */
	if (f->hd.type == NGHTTP2_HEADERS && (r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id)))
		edgi_relay_stream_gone(r, false);
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
	struct edge *e = cc->e;
	free(cc);
	edgi_unref(e);
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
		edgi_relay_stream_gone(cc->relays, false);
	if (cc->registered && cc->tun) {
		adm_add(cc->tun->m_conns, -1);
		if (adm_value(cc->tun->m_conns) == 0)
			adm_add(cc->e->m_tunnels, -1);
	}
	LIST_UNLINK(cc, next, pprev);
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

void edgi_cconn_close(struct cconn *cc, const char *why)
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
	struct edge *e = cc->e;
	uint64_t idle = uv_now(e->loop) - cc->last_recv;
	if (!cc->registered) {
		log_info("msg=\"connector rejected\" reason=\"no registration within %ds\" peer=%s", REG_TIMEOUT_MS / 1000,
			 cc->peer);
		adm_add(e->m_reg_rej, 1);
		tconn_close(cc->tc);
		return;
	}
	if (idle >= DEAD_MS) {
		edgi_cconn_close(cc, "no frames from the connector for 30s");
		return;
	}
	if (idle >= KEEPALIVE_MS && cc->h2) {
		nghttp2_submit_ping(cc->h2, NGHTTP2_FLAG_NONE, NULL);
		edgi_cconn_flush(cc);
	}
}

static void reg_reply_error_counted(struct cconn *cc, const char *error, adm_metric *m)
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
	adm_add(m, 1);
}

static void reg_reply_error(struct cconn *cc, const char *error) { reg_reply_error_counted(cc, error, cc->e->m_reg_rej); }

/* A failed registration (a bad token or line: what a guesser or a hammering client produces), counted for
 * its source. Only the first of the source's interval is logged in full (the caller does, when this says
 * so); the rest come as one line per source and interval from edgi_reglim_tick. */
static bool reg_failed(struct cconn *cc)
{
	struct edge *e = cc->e;
	const struct sockaddr *sa = tconn_peer_addr(cc->tc);
	char src[SRL_SOURCE_MAX];
	int f;
	if (!sa)
		return true;
	f = srl_fail(e->reglim, sa, uv_now(e->loop));
	if (f & SRL_BLOCKED)
		log_warn("msg=\"connector registrations refused from one source\" source=%s "
			 "reason=\"%lld failed registrations within %llds\" block_s=%lld peer=%s",
			 srl_source(sa, src, sizeof src), (long long)e->cfg.reg_failures,
			 (long long)e->cfg.reg_window_ms / 1000, (long long)e->cfg.reg_block_ms / 1000, cc->peer);
	return (f & SRL_LOG) != 0;
}

static void reglim_line(const srl_report *r, void *ud)
{
	(void)ud;
	log_warn("msg=\"failed connector registrations from one source\" source=%s failures=%u refused=%u "
		 "interval_s=%u blocked=%s", r->source, r->failures, r->refused, r->interval_ms / 1000,
		 r->blocked ? "true" : "false");
}

void edgi_reglim_tick(uv_timer_t *t)
{
	struct edge *e = t->data;
	srl_report_due(e->reglim, uv_now(e->loop), reglim_line, e);
}

static void cconn_register(struct cconn *cc)
{
	struct edge *e = cc->e;
	reg_request req;
	reg_response resp;
	tok_tunnel tt;
	char err[256], id[TOK_ID_LEN + 1], line[REG_MAX_LINE + 2];
	struct tunnel *t;
	const struct sockaddr *sa = tconn_peer_addr(cc->tc);
	int rc, n;

	memset(&req, 0, sizeof req);
	/* A source over its limit is refused before anything is parsed or looked up (counted, logged in the
	 * aggregate). A good token from it waits too: telling it from a bad one would take the lookup. */
	if (sa && srl_refused(e->reglim, sa, uv_now(e->loop))) {
		reg_reply_error_counted(cc, REG_ERR_RATE_LIMITED, e->m_reg_limited);
		goto out;
	}
	if (reg_request_parse(cc->lb->buf, &req, err, sizeof err) < 0) {
		if (reg_failed(cc))
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
	rc = tok_verify(e->tok, req.token, &tt);
	if (rc == -EBUSY || rc == -EIO) {
		log_warn("msg=\"connector rejected\" reason=\"token store unavailable: %s\" tunnel=%s connector_id=%s slot=%u peer=%s",
			 tok_errstr(e->tok), id, req.connector_id, req.slot, cc->peer);
		reg_reply_error(cc, REG_ERR_STORE_UNAVAILABLE);
		goto out;
	}
	if (rc < 0) {
		if (reg_failed(cc))
			log_info("msg=\"connector rejected\" reason=\"%s\" tunnel=%s connector_id=%s slot=%u peer=%s",
				 rc == -EINVAL ? "malformed token" : "invalid or expired token", id, req.connector_id, req.slot,
				 cc->peer);
		reg_reply_error(cc, "invalid or expired token");
		goto out;
	}
	if (!(t = edgi_tunnel_get(e, &tt))) {
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
			edgi_cconn_close(o, "replaced by a new registration");
			break;
		}
	memset(&resp, 0, sizeof resp);
	resp.ok = true;
	snprintf(resp.tunnel_id, sizeof resp.tunnel_id, "%s", t->id);
	snprintf(resp.domain, sizeof resp.domain, "%s", t->domain);
	snprintf(resp.edge_id, sizeof resp.edge_id, "%s", e->cfg.edge_id);
	if ((n = reg_response_encode(&resp, line, sizeof line)) < 0 || tconn_write(cc->tc, (const uint8_t *)line, (size_t)n) < 0 ||
	    h2_start(cc) < 0) {
		log_warn("msg=\"connector setup failed\" tunnel=%s peer=%s", t->id, cc->peer);
		tconn_close(cc->tc);
		goto out;
	}
	LIST_UNLINK(cc, next, pprev);
	LIST_PUSH(t->conns, cc, next, pprev);
	cc->tun = t;
	cc->registered = true;
	snprintf(cc->version, sizeof cc->version, "%s", req.version);
	cc->since_ms = edgi_wall_ms();
	adm_add(t->m_conns, 1);
	if (adm_value(t->m_conns) == 1)
		adm_add(e->m_tunnels, 1);
	adm_add(e->m_reg_ok, 1);
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
			edgi_cconn_close(cc, nghttp2_strerror((int)used));
			goto out;
		}
	}
	edgi_cconn_flush(cc);
out:
	reg_request_wipe(&req);
}

static void cconn_on_data(tconn *c, const uint8_t *p, size_t n, void *ud)
{
	struct cconn *cc = ud;
	struct edge *e = cc->e;
	ssize_t used;
	(void)c;
	if (cc->closing)
		return;
	cc->last_recv = uv_now(e->loop);
	if (cc->h2) {
		used = nghttp2_session_mem_recv(cc->h2, p, n);
		if (used < 0) {
			edgi_cconn_close(cc, nghttp2_strerror((int)used));
			return;
		}
		edgi_cconn_flush(cc);
		return;
	}
	if (!cc->lb)
		return;
	used = reg_line_feed(cc->lb, p, n);
	if (used < 0) {
		if (reg_failed(cc))
			log_info("msg=\"connector rejected\" reason=\"registration line over %d bytes\" peer=%s", REG_MAX_LINE,
				 cc->peer);
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
	edgi_cconn_close(cc, "connector closed the connection");
}

static void cconn_on_drain(tconn *c, void *ud)
{
	(void)c;
	edgi_cconn_flush(ud);
}

static void cconn_on_open(tconn *c, int status, void *ud)
{
	struct cconn *cc = ud;
	struct edge *e = cc->e;
	if (status < 0) {
		log_info("msg=\"connector rejected\" reason=\"TLS handshake failed: %s\" peer=%s", tconn_errstr(c), cc->peer);
		adm_add(e->m_reg_rej, 1);
		return;
	}
	cc->last_recv = uv_now(e->loop);
}

static const tconn_cbs cconn_cbs = {
	.on_open = cconn_on_open,
	.on_data = cconn_on_data,
	.on_eof = cconn_on_eof,
	.on_drain = cconn_on_drain,
	.on_close = cconn_on_close,
};

void edgi_on_connector(uv_stream_t *lsn, int status)
{
	struct edge *e = lsn->data;
	struct cconn *cc;
	int rc, pending = 0;
	if (status < 0) {
		log_warn("msg=\"accept failed\" entry=connector err=\"%s\"", uv_strerror(status));
		return;
	}
	if (e->stopping)
		return;
	/* Unregistered links cost a TLS session each for up to REG_TIMEOUT_MS: bound them. */
	for (struct cconn *p = e->pending; p && pending < MAX_PENDING_CONNECTORS; p = p->next)
		pending++;
	if (pending >= MAX_PENDING_CONNECTORS) {
		log_warn("msg=\"connector refused\" reason=\"%d connections waiting to register\"", pending);
		adm_add(e->m_reg_rej, 1);
		edgi_accept_and_drop(e, lsn);
		return;
	}
	if (!(cc = calloc(1, sizeof *cc)) || !(cc->lb = calloc(1, sizeof *cc->lb))) {
		free(cc);
		edgi_accept_and_drop(e, lsn);
		return;
	}
	cc->e = e;
	e->refs++; /* released in cconn_timer_closed */
	uv_timer_init(e->loop, &cc->timer);
	cc->timer.data = cc;
	if ((rc = tconn_accept(lsn, e->tls.cctx, &cconn_cbs, cc, &cc->tc)) < 0) {
		log_warn("msg=\"accept failed\" entry=connector err=\"%s\"", uv_strerror(rc));
		free(cc->lb);
		cc->lb = NULL;
		uv_close((uv_handle_t *)&cc->timer, cconn_timer_closed);
		return;
	}
	na_format(tconn_peer_addr(cc->tc), cc->peer, sizeof cc->peer);
	LIST_PUSH(e->pending, cc, next, pprev);
	/* Handshake and registration together get REG_TIMEOUT_MS (tconn bounds the handshake alone too). */
	uv_timer_start(&cc->timer, cconn_keepalive, REG_TIMEOUT_MS, 0);
}
