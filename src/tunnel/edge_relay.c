/* A relay of the edge: one client connection and, once routed, one HTTP/2 stream on a connector link;
 * bytes both ways with backpressure (client side, stream side). */
#include "tunnel/edge_int.h"

static void relay_maybe_free(struct relay *r);
/* ------------------------------------------------------------------ relays: client side */

/* The HTTP/2 stream is gone (closed, never sent, or its connection died). */
void edgi_relay_stream_gone(struct relay *r, bool clean)
{
	struct cconn *cc = r->cc;
	if (!cc)
		return;
	LIST_UNLINK(r, snext, spprev);
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
			uv_timer_start(&r->timer, edgi_relay_timeout, LINGER_MS, 0);
		} else {
			tconn_close(r->tc);
		}
	}
	relay_maybe_free(r);
}

void edgi_relay_timer_closed(uv_handle_t *h)
{
	struct relay *r = h->data;
	r->timer_closed = true;
	relay_maybe_free(r);
}

static void relay_maybe_free(struct relay *r)
{
	struct edge *e = r->e;
	if (!r->tc_closed || !r->timer_closed || r->cc)
		return;
	cbuf_free(&r->in);
	free(r->head);
	free(r);
	edgi_unref(e);
}

void edgi_relay_on_close(tconn *c, int err, void *ud)
{
	struct relay *r = ud;
	struct edge *e = r->e;
	char hb[300];
	(void)c;
	(void)err;
	r->tc = NULL;
	r->tc_closed = true;
	edgi_relay_unpend(r);
	if (r->pprev) {
		LIST_UNLINK(r, next, pprev);
		e->nrelays--;
		adm_add(r->entry == ENTRY_SNI ? e->m_clients_sni : e->m_clients_mtls, -1);
	}
	if (r->st == RS_OPEN || r->st == RS_OPENING)
		log_info("msg=\"client closed\" entry=%s tunnel=%s host=%s peer=%s up_bytes=%llu down_bytes=%llu ms=%llu",
			 r->entry == ENTRY_SNI ? "sni" : "mtls", r->tun ? r->tun->id : "-", q(r->host, hb, sizeof hb),
			 r->peer, (unsigned long long)r->up, (unsigned long long)r->down,
			 (unsigned long long)(uv_now(e->loop) - r->t0));
	r->st = RS_DONE;
	/* The stream, if any, is reset; the relay lives on until nghttp2 is done with it. */
	if (r->cc && r->sid > 0 && r->cc->h2) {
		struct cconn *cc = r->cc;
		r->aborted = true;
		if (!(r->up_eof_sent && r->down_eof))
			nghttp2_submit_rst_stream(cc->h2, NGHTTP2_FLAG_NONE, r->sid, NGHTTP2_CANCEL);
		edgi_cconn_flush(cc);
	}
	uv_close((uv_handle_t *)&r->timer, edgi_relay_timer_closed);
}

/* Closes the client; a stream it had is reset. */
void edgi_relay_abort(struct relay *r)
{
	if (r->tc)
		tconn_close(r->tc);
}

void edgi_relay_timeout(uv_timer_t *t)
{
	struct relay *r = t->data;
	char hb[300];
	const char *entry = r->entry == ENTRY_SNI ? "sni" : "mtls";
	switch (r->st) {
	case RS_HELLO:
	case RS_HEAD:
		if (r->hello_ms % 1000)
			log_info("msg=\"client rejected\" entry=%s reason=\"nothing usable within %ums\" peer=%s", entry,
				 (unsigned)r->hello_ms, r->peer);
		else
			log_info("msg=\"client rejected\" entry=%s reason=\"nothing usable within %us\" peer=%s", entry,
				 (unsigned)(r->hello_ms / 1000), r->peer);
		edgi_reject_metric(entry, "timeout");
		break;
	case RS_OPENING:
		log_warn("msg=\"connector did not answer the stream\" entry=%s tunnel=%s host=%s peer=%s", entry,
			 r->tun ? r->tun->id : "-", q(r->host, hb, sizeof hb), r->peer);
		edgi_reject_metric(entry, "connector_timeout");
		break;
	default:
		break;
	}
	edgi_relay_abort(r);
}

/* Buffered bytes of a relay that is not routed yet count against cfg.client_hello_budget. */
void edgi_hello_charge(struct relay *r, size_t bytes)
{
	struct edge *e = r->e;
	e->hello_bytes = e->hello_bytes - r->charge + bytes;
	adm_add(e->m_hello_bytes, (int64_t)bytes - (int64_t)r->charge);
	r->charge = bytes;
}

/* The relay is routed, answered or gone: it no longer counts as pending. */
void edgi_relay_unpend(struct relay *r)
{
	if (!r->pending)
		return;
	edgi_pend_del(r);
	edgi_hello_charge(r, 0);
}

/* A client answered before it was routed: what it buffered is of no further use. */
void edgi_relay_drop_unrouted(struct relay *r)
{
	if (!r->pending)
		return;
	edgi_relay_unpend(r);
	cbuf_free(&r->in);
}

/* Answers an mTLS client with an HTTP error and closes after it is sent. */
void edgi_mtls_error(struct relay *r, int status, const char *reason, const char *text)
{
	char resp[512];
	int n = snprintf(resp, sizeof resp,
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n%s\n",
			 status, reason, strlen(text) + 1, text);
	edgi_relay_drop_unrouted(r);
	r->st = RS_DONE;
	if (!r->tc)
		return;
	tconn_write(r->tc, (const uint8_t *)resp, (size_t)n);
	tconn_shutdown(r->tc);
	tconn_close_after_flush(r->tc);
	uv_timer_start(&r->timer, edgi_relay_timeout, CLOSE_GRACE_MS, 0);
}

/* Refuses an SNI client with a TLS alert. */
void edgi_sni_refuse(struct relay *r, uint8_t alert)
{
	uint8_t a[SNI_ALERT_LEN];
	edgi_relay_drop_unrouted(r);
	r->st = RS_DONE;
	if (!r->tc)
		return;
	sni_alert(a, alert);
	tconn_write(r->tc, a, sizeof a);
	tconn_shutdown(r->tc);
	tconn_close_after_flush(r->tc);
	uv_timer_start(&r->timer, edgi_relay_timeout, CLOSE_GRACE_MS, 0);
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
	/* An idle relay keeps no buffer (cbuf frees it when empty): memory per idle client stays small. */
	if ((k = cbuf_take(&r->in, out, length))) {
		r->up += k;
		if (r->tun)
			adm_add(r->tun->m_up, (int64_t)k);
	}
	if (!r->in.len && r->cli_eof) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		r->up_eof_sent = true;
	} else if (!k) {
		r->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (r->paused && r->in.len < UP_CAP / 2 && !r->on_resume) {
		/* Resumed after the send pass: tconn_resume may deliver data synchronously. */
		r->on_resume = true;
		r->rnext = cc->resume;
		cc->resume = r;
	}
	return (ssize_t)k;
}

/* New client bytes (or EOF) for a routed relay. */
void edgi_relay_kick(struct relay *r)
{
	if (r->cc && r->deferred && r->sid > 0) {
		r->deferred = false;
		nghttp2_session_resume_data(r->cc->h2, r->sid);
	}
	if (r->cc)
		edgi_cconn_flush(r->cc);
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
			edgi_sni_refuse(r, SNI_ALERT_INTERNAL_ERROR);
		else
			edgi_mtls_error(r, 502, "Bad Gateway", "cannot open a stream to the tunnel");
		return;
	}
	r->sid = sid;
	r->cc = cc;
	LIST_PUSH(cc->relays, r, snext, spprev);
	cc->nstreams++;
	adm_add(r->tun->m_streams, 1);
	adm_add(r->tun->m_active, 1);
	r->st = RS_OPENING;
	uv_timer_start(&r->timer, edgi_relay_timeout, OPEN_TIMEOUT_MS, 0);
	edgi_cconn_flush(cc);
}

/* Routes a relay whose host is known, or answers the client with why not. */
void edgi_relay_route(struct relay *r)
{
	struct edge *e = r->e;
	char id[TOK_ID_LEN + 8], hb[300];
	const char *entry = r->entry == ENTRY_SNI ? "sni" : "mtls";
	struct tunnel *t = NULL;
	struct cconn *cc = NULL;

	if (sni_split(r->host, e->cfg.domain, NULL, 0, id, sizeof id) < 0) {
		log_info("msg=\"client rejected\" entry=%s reason=\"host is not <route>.<tunnel id>.%s\" host=%s peer=%s",
			 entry, e->cfg.domain, q(r->host, hb, sizeof hb), r->peer);
		edgi_reject_metric(entry, "foreign_host");
		if (r->entry == ENTRY_SNI)
			edgi_sni_refuse(r, SNI_ALERT_UNRECOGNIZED_NAME);
		else
			edgi_mtls_error(r, 403, "Forbidden", "host is not <route>.<tunnel id> under this edge's domain");
		return;
	}
	t = edgi_tunnel_find(e, id);
	/* Before a live connection is looked for: a client not allowed on t learns nothing of its state. */
	if (t && r->entry == ENTRY_MTLS && !edgi_mtls_bound(r, t))
		return;
	if (!(cc = edgi_tunnel_pick(t))) {
		log_info("msg=\"client rejected\" entry=%s reason=\"%s\" host=%s peer=%s", entry,
			 t ? "tunnel has no live connection" : "unknown tunnel", q(r->host, hb, sizeof hb), r->peer);
		edgi_reject_metric(entry, t ? "no_connection" : "unknown_tunnel");
		if (r->entry == ENTRY_SNI)
			edgi_sni_refuse(r, SNI_ALERT_UNRECOGNIZED_NAME);
		else if (!t)
			edgi_mtls_error(r, 404, "Not Found", "no such tunnel (or it never connected to this edge)");
		else
			edgi_mtls_error(r, 502, "Bad Gateway", "tunnel has no live connection");
		return;
	}
	r->tun = t;
	relay_open_stream(r, cc);
	/* Routed (a refusal above freed the buffer already): the stream's flow control bounds it from here. */
	edgi_relay_unpend(r);
}
