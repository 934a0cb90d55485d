/* One link of the connector: TLS to an edge, the registration line, then HTTP/2 with roles reversed, and
 * the CONNECT streams it carries into the stream backend (core/stream.h). */
#include "tunnel/connector_int.h"

static void stream_maybe_free(struct stream *s);
/* ------------------------------------------------------------------ streams */

static void stream_unlink_free(struct stream *s)
{
	struct link *l = s->l;
	LIST_UNLINK(s, next, pprev);
	l->nstreams--;
	if (s->accepted && l->c->st.streams_active > 0)
		l->c->st.streams_active--;
	cbuf_free(&s->q);
	free(s);
}

/* A stream is freed once both HTTP/2 and the backend are done with it. */
static void stream_maybe_free(struct stream *s)
{
	struct link *l = s->l;
	if (!s->h2_closed || s->sc)
		return;
	stream_unlink_free(s);
	ctri_metrics_refresh(l->c);
	/* The last stream of a draining connection: ctri_link_flush ends it. */
	if (l->goaway == 2 && !l->nstreams)
		ctri_link_flush(l);
}

/* The per-stream backstop fired: the write fails, which the backend takes as fatal (it closes, ops_close
 * resets the stream). Told once per stream, with what an operator needs to find the backend at fault. */
static void stream_backstop(struct stream *s, const char *reason, size_t n)
{
	struct link *l = s->l;
	char qt[300], qa[300];
	if (s->aborted)
		return;
	s->aborted = true;
	l->c->st.stream_aborts++;
	adm_add(l->c->m.stream_aborts_queue, 1);
	log_warn("msg=\"stream aborted: the backend wrote past the stream's queue cap\" tunnel=%s stream=%d "
		 "reason=%s slot=%d queued=%zu write=%zu cap=%zu authority=%s",
		 log_quote(l->tunnel_id[0] ? l->tunnel_id : "-", qt, sizeof qt), s->id, reason, l->s->idx, s->q.len, n,
		 s->q.max, log_quote(s->authority[0] ? s->authority : "-", qa, sizeof qa));
}

static bool ops_over_high_water(void *ctx)
{
	struct stream *s = ctx;
	return s->q.len > s->l->c->cfg->stream_high_water;
}

static int ops_write(void *ctx, const uint8_t *p, size_t n)
{
	struct stream *s = ctx;
	struct link *l = s->l;
	const ctr_config *cfg = l->c->cfg;
	int rc;
	if (l->closing || s->h2_closed || s->out_eof)
		return -EPIPE;
	if (!n)
		return 0;
	/* The backend must stop at high water; the queue's max only catches one that does not (-ENOBUFS). */
	if ((rc = cbuf_append(&s->q, p, n)) < 0) {
		if (rc == -ENOBUFS)
			stream_backstop(s, "queue_overflow", n);
		return rc;
	}
	if (s->q.len > cfg->stream_high_water)
		s->high = true;
	if (s->deferred) {
		s->deferred = false;
		nghttp2_session_resume_data(l->h2, s->id);
	}
	ctri_link_flush(l);
	return 0;
}

static int ops_shutdown(void *ctx)
{
	struct stream *s = ctx;
	struct link *l = s->l;
	if (l->closing || s->h2_closed)
		return -EPIPE;
	s->out_eof = true;
	if (s->deferred) {
		s->deferred = false;
		nghttp2_session_resume_data(l->h2, s->id);
	}
	ctri_link_flush(l);
	return 0;
}

static void ops_consumed(void *ctx, size_t n)
{
	struct stream *s = ctx;
	struct link *l = s->l;
	if (n > s->unconsumed)
		n = s->unconsumed;
	s->unconsumed -= n;
	if (l->closing || !n)
		return;
	nghttp2_session_consume(l->h2, s->id, n);
	ctri_link_flush(l);
}

static void ops_close(void *ctx)
{
	struct stream *s = ctx;
	struct link *l = s->l;
	s->sc = NULL;
	if (!l->closing && !s->h2_closed) {
		/* Bytes the backend will never report: give the window back. */
		if (s->unconsumed) {
			nghttp2_session_consume(l->h2, s->id, s->unconsumed);
			s->unconsumed = 0;
		}
		if (!s->out_eof) {
			nghttp2_submit_rst_stream(l->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
		} else if (s->eof_sent && !nghttp2_session_get_stream_remote_close(l->h2, s->id)) {
			/* Our side is complete and nobody reads what the edge would still send. */
			nghttp2_submit_rst_stream(l->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
		}
		/* Sending the reset closes the stream and frees s from ctri_on_stream_close: s is not used after. */
		ctri_link_flush(l);
		return;
	}
	stream_maybe_free(s);
}

static const stream_ops strm_ops = {
	.write = ops_write,
	.shutdown = ops_shutdown,
	.close = ops_close,
	.consumed = ops_consumed,
	.over_high_water = ops_over_high_water,
};

/* The bytes of a DATA frame are not copied into nghttp2's frame buffer (NGHTTP2_DATA_FLAG_NO_COPY): read_cb
 * only sizes the frame, and ctri_send_data writes the header and the bytes from the stream queue straight to
 * the link (one copy fewer per bulk byte; the gateway's one thread is the limit of the tunnel). */
static ssize_t read_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		       nghttp2_data_source *src, void *ud)
{
	struct stream *s = src->ptr;
	size_t n;
	(void)h2;
	(void)id;
	(void)buf;
	(void)ud;
	if (s->q.len == 0) {
		if (s->out_eof) {
			*flags |= NGHTTP2_DATA_FLAG_EOF;
			s->eof_sent = true;
			return 0;
		}
		s->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	n = s->q.len < len ? s->q.len : len;
	*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (n == s->q.len && s->out_eof) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		s->eof_sent = true;
	}
	return (ssize_t)n;
}

int ctri_send_data(nghttp2_session *h2, nghttp2_frame *f, const uint8_t *framehd, size_t length,
		   nghttp2_data_source *src, void *ud)
{
	static const uint8_t zeros[256];
	struct stream *s = src->ptr;
	struct link *l = ud;
	size_t pad = f->data.padlen;
	uint8_t padlen = (uint8_t)(pad ? pad - 1 : 0);
	(void)h2;
	if (length > s->q.len || pad > sizeof zeros + 1)
		return NGHTTP2_ERR_CALLBACK_FAILURE; /* read_cb sized it from this queue: cannot happen */
	/* A failed write closes the link (tconn reports it); nghttp2 must not think the frame went out. */
	if (tconn_write(l->tc, framehd, 9) < 0 || (pad && tconn_write(l->tc, &padlen, 1) < 0) ||
	    tconn_write(l->tc, cbuf_data(&s->q), length) < 0 || (padlen && tconn_write(l->tc, zeros, padlen) < 0))
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	/* An idle stream keeps no queue buffer (cbuf frees it when empty): memory per idle client stays small. */
	cbuf_consume(&s->q, length);
	l->c->st.bytes_out += length;
	adm_add(l->c->m.bytes_out, (int64_t)length);
	if (s->high && s->q.len <= l->c->cfg->stream_low_water) {
		/* Told after the send loop: the backend may write again from its drained call. */
		s->high = false;
		s->want_drained = true;
	}
	return 0;
}

/* ------------------------------------------------------------------ HTTP/2 callbacks */

int ctri_on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *ud)
{
	struct link *l = ud;
	struct stream *s;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (!(s = calloc(1, sizeof *s)))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 resets the stream */
	s->l = l;
	cbuf_init(&s->q, 16 * 1024, 4 * (size_t)l->c->cfg->stream_high_water + 64 * 1024);
	s->id = f->hd.stream_id;
	LIST_PUSH(l->streams, s, next, pprev);
	l->nstreams++;
	nghttp2_session_set_stream_user_data(h2, s->id, s);
	return 0;
}

static void copy_capped(char *dst, size_t cap, const uint8_t *v, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, v, n);
	dst[n] = 0;
}

int ctri_on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
		     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct stream *s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
	(void)flags;
	(void)ud;
	if (!s || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (namelen == 7 && !memcmp(name, ":method", 7))
		copy_capped(s->method, sizeof s->method, value, valuelen);
	else if (namelen == 10 && !memcmp(name, ":authority", 10))
		copy_capped(s->authority, sizeof s->authority, value, valuelen);
	else if (namelen == 19 && !memcmp(name, "postern-client-addr", 19))
		copy_capped(s->client_addr, sizeof s->client_addr, value, valuelen);
	return 0;
}

static void refuse(struct link *l, struct stream *s, const char *status)
{
	nghttp2_nv nv = { (uint8_t *)":status", (uint8_t *)status, 7, strlen(status), NGHTTP2_NV_FLAG_NONE };
	l->c->st.streams_refused++;
	adm_add(l->c->m.streams_refused, 1);
	nghttp2_submit_response(l->h2, s->id, &nv, 1, NULL);
}

static void accept_stream(struct link *l, struct stream *s, bool end_stream)
{
	ctr *c = l->c;
	nghttp2_nv nv = { (uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE };
	nghttp2_data_provider dp = { .source.ptr = s, .read_callback = read_cb };

	c->st.streams_total++;
	adm_add(c->m.streams_total, 1);
	if (strcmp(s->method, "CONNECT") != 0) {
		refuse(l, s, "405");
		return;
	}
	/* A draining link still serves what the edge sent before it saw the notice: until the final GOAWAY
	 * (goaway 2) names the last stream, such a stream is in flight, not new. */
	if ((l->st != L_LIVE && !(l->st == L_DRAINING && l->goaway == 1)) || c->shutting) {
		refuse(l, s, "503");
		return;
	}
	s->sc = c->be.open(c->be.ud, &strm_ops, s, s->client_addr[0] ? s->client_addr : NULL);
	if (!s->sc) {
		refuse(l, s, "503");
		return;
	}
	s->accepted = true;
	c->st.streams_active++;
	ctri_metrics_refresh(c);
	if (log_get_level() <= LOG_DEBUG) {
		/* Both come from the edge's HEADERS: quoted, whatever they hold. */
		char qa[300], qc[300];
		log_debug("msg=\"stream opened\" slot=%d stream=%d authority=%s client=%s", l->s->idx, s->id,
			  log_quote(s->authority[0] ? s->authority : "-", qa, sizeof qa),
			  log_quote(s->client_addr[0] ? s->client_addr : "-", qc, sizeof qc));
	}
	nghttp2_submit_response(l->h2, s->id, &nv, 1, &dp);
	if (end_stream)
		c->be.eof(s->sc);
}

int ctri_on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *ud)
{
	struct link *l = ud;
	ctr *c = l->c;
	struct stream *s = f->hd.stream_id ? nghttp2_session_get_stream_user_data(h2, f->hd.stream_id) : NULL;

	switch (f->hd.type) {
	case NGHTTP2_HEADERS:
		if (s && f->headers.cat == NGHTTP2_HCAT_REQUEST)
			accept_stream(l, s, f->hd.flags & NGHTTP2_FLAG_END_STREAM);
		break;
	case NGHTTP2_DATA:
		if (s && s->sc && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
			c->be.eof(s->sc);
		break;
	case NGHTTP2_PING:
		if ((f->hd.flags & NGHTTP2_FLAG_ACK) && l->ping_out) {
			uint64_t now = now_ms(c), rtt = now - l->ping_sent_at;
			l->ping_out = false;
			if (!l->acked_once)
				log_info("msg=\"edge connection ready\" slot=%d edge=%s rtt_ms=%llu", l->s->idx,
					 c->edges[l->edge].text, (unsigned long long)rtt);
			l->acked_once = true;
			l->next_ping_at = now + (uint64_t)c->cfg->ping_interval_ms;
			c->st.pings_ok++;
			adm_add(c->m.pings_ok, 1);
			adm_set(c->m.rtt, (int64_t)rtt);
			if (l->goaway == 1) {
				nghttp2_submit_goaway(h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h2),
						      NGHTTP2_NO_ERROR, NULL, 0);
				l->goaway = 2;
			}
			ctri_metrics_refresh(c);
		}
		break;
	case NGHTTP2_GOAWAY:
		/* The edge is going away: stop using this connection for new streams and redial. */
		log_info("msg=\"edge sent GOAWAY\" slot=%d edge=%s code=%u", l->s->idx, c->edges[l->edge].text,
			 f->goaway.error_code);
		if (l->st == L_LIVE) {
			l->st = L_DRAINING;
			if (l->goaway == 0) {
				nghttp2_submit_goaway(h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h2),
						      NGHTTP2_NO_ERROR, NULL, 0);
				l->goaway = 2;
			}
		}
		/* Let the streams finish here, and dial the slot's replacement now rather than when they are done. */
		if (!l->retired && l->s->link == l && !c->shutting) {
			struct slot *sl = l->s;
			int n = (int)c->cfg->n_edges;
			l->retired = true;
			sl->link = NULL;
			if (n > 1)
				sl->cur = (l->edge + 1) % n;
			snprintf(l->err, sizeof l->err, "edge sent GOAWAY");
			if (!sl->pr)
				ctri_slot_retry_later(sl, l, false);
		}
		break;
	default:
		break;
	}
	return 0;
}

int ctri_on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
	struct link *l = ud;
	struct stream *s = nghttp2_session_get_stream_user_data(h2, id);
	(void)flags;
	l->c->st.bytes_in += len;
	adm_add(l->c->m.bytes_in, (int64_t)len);
	if (!s || !s->sc) {
		/* Nobody will read it: return the window at once. */
		nghttp2_session_consume(h2, id, len);
		return 0;
	}
	s->unconsumed += len;
	l->c->be.feed(s->sc, data, len);
	return 0;
}

int ctri_on_stream_close(nghttp2_session *h2, int32_t id, uint32_t code, void *ud)
{
	struct link *l = ud;
	struct stream *s = nghttp2_session_get_stream_user_data(h2, id);
	(void)l;
	if (!s)
		return 0;
	s->h2_closed = true;
	if (s->sc) {
		/* A clean end after the backend finished its side: let the backend close on its own. */
		if (!(code == NGHTTP2_NO_ERROR && s->out_eof && s->eof_sent)) {
			stream_conn *sc = s->sc;
			s->sc = NULL;
			l->c->be.abort(sc);
		}
	}
	if (s->unconsumed) {
		nghttp2_session_consume_connection(h2, s->unconsumed);
		s->unconsumed = 0;
	}
	stream_maybe_free(s);
	return 0;
}

/* ------------------------------------------------------------------ link I/O */

void ctri_link_send_ping(struct link *l)
{
	uint8_t opaque[8];
	uint64_t now = now_ms(l->c);
	memcpy(opaque, &now, sizeof opaque);
	if (nghttp2_submit_ping(l->h2, NGHTTP2_FLAG_NONE, opaque) == 0) {
		l->ping_out = true;
		l->ping_sent_at = now;
	}
}

/* Graceful end of the connection once nothing is left on it. */
static void link_maybe_finish(struct link *l)
{
	if (l->closing || l->goaway != 2 || l->nstreams || l->close_deadline)
		return;
	if (nghttp2_session_want_write(l->h2))
		return;
	tconn_shutdown(l->tc);
	l->close_deadline = now_ms(l->c) + CLOSE_LINGER_MS;
	ctri_schedule(l->c);
}

void ctri_link_flush(struct link *l)
{
	bool fatal = false;
	if (l->closing || !l->h2)
		return;
	if (l->flushing) {
		l->flush_pending = true;
		return;
	}
	l->flushing = true;
	do {
		l->flush_pending = false;
		while (!tconn_over_high_water(l->tc)) {
			const uint8_t *d;
			ssize_t n = nghttp2_session_mem_send(l->h2, &d);
			if (n < 0) {
				snprintf(l->err, sizeof l->err, "HTTP/2: %s", nghttp2_strerror((int)n));
				fatal = true;
				break;
			}
			if (n == 0)
				break;
			if (tconn_write(l->tc, d, (size_t)n) < 0) {
				snprintf(l->err, sizeof l->err, "write failed");
				fatal = true;
				break;
			}
		}
		if (fatal)
			break;
		for (struct stream *s = l->streams; s; s = s->next)
			if (s->want_drained) {
				s->want_drained = false;
				if (s->sc)
					l->c->be.drained(s->sc);
			}
	} while (l->flush_pending && !l->closing);
	l->flushing = false;
	if (fatal) {
		ctri_link_close(l, l->err);
		return;
	}
	if (l->closing)
		return;
	/* Reading more would only queue more frames (acks, window updates) we cannot send yet. */
	if (tconn_over_high_water(l->tc) && !l->paused) {
		l->paused = true;
		tconn_pause(l->tc);
	}
	if (!nghttp2_session_want_read(l->h2) && !nghttp2_session_want_write(l->h2)) {
		/* HTTP/2 is done, but a backend may still be finishing a stream the edge has closed. */
		if (l->nstreams)
			return;
		if (l->goaway != 2) {
			ctri_link_close(l, "HTTP/2 session ended");
			return;
		}
	}
	link_maybe_finish(l);
}

static int h2_start(struct link *l, const uint8_t *rest, size_t n)
{
	ctr *c = l->c;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->cfg->max_streams },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c->cfg->stream_window },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16 * 1024 },
	};
	if (nghttp2_session_server_new2(&l->h2, c->cbs, l, c->opt) != 0)
		return -ENOMEM;
	if (nghttp2_submit_settings(l->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
	    nghttp2_session_set_local_window_size(l->h2, NGHTTP2_FLAG_NONE, 0, (int32_t)c->cfg->conn_window) != 0)
		return -ENOMEM;
	ctri_link_send_ping(l);
	if (n) {
		ssize_t r;
		l->flushing = true;
		r = nghttp2_session_mem_recv(l->h2, rest, n);
		l->flushing = false;
		if (r < 0) {
			snprintf(l->err, sizeof l->err, "HTTP/2: %s", nghttp2_strerror((int)r));
			return -EPROTO;
		}
	}
	ctri_link_flush(l);
	return 0;
}


static void handle_registration(struct link *l, const uint8_t *p, size_t n)
{
	ctr *c = l->c;
	reg_response r;
	char err[128], q[300];
	ssize_t used = reg_line_feed(l->lb, p, n);

	if (used < 0) {
		ctri_link_close(l, "edge answered the registration with an over-long line");
		return;
	}
	if (!l->lb->done)
		return;
	if (reg_response_parse(l->lb->buf, &r, err, sizeof err) < 0) {
		snprintf(l->err, sizeof l->err, "edge answered the registration with garbage: %s", err);
		ctri_link_close(l, l->err);
		return;
	}
	free(l->lb);
	l->lb = NULL;
	if (!r.ok) {
		l->rejected = true;
		c->st.rejections++;
		adm_add(c->m.reg_rejected, 1);
		log_quote(r.error, q, sizeof q);
		snprintf(l->err, sizeof l->err, "registration rejected: %s", r.error);
		/* The most likely operator mistake gets the clearest line; the token itself never appears. An edge
		 * that could not check the token has not refused it: a passing condition, retried on backoff. */
		if (!strcmp(r.error, REG_ERR_STORE_UNAVAILABLE))
			log_warn("msg=\"edge could not check the tunnel token now; will retry\" edge=%s slot=%d reason=%s",
				 c->edges[l->edge].text, l->s->idx, q);
		else if (!strcmp(r.error, REG_ERR_RATE_LIMITED))
			log_warn("msg=\"edge refuses registrations from this address for a while (too many failed ones from "
				 "it: another connector here with a wrong token?); will retry\" edge=%s slot=%d reason=%s",
				 c->edges[l->edge].text, l->s->idx, q);
		else if (strstr(r.error, "token"))
			log_error("msg=\"edge rejected the tunnel token\" edge=%s slot=%d reason=%s", c->edges[l->edge].text,
				  l->s->idx, q);
		else
			log_error("msg=\"edge rejected the registration\" edge=%s slot=%d reason=%s",
				  c->edges[l->edge].text, l->s->idx, q);
		ctri_link_close(l, NULL);
		return;
	}
	snprintf(l->tunnel_id, sizeof l->tunnel_id, "%s", r.tunnel_id);
	snprintf(l->edge_id, sizeof l->edge_id, "%s", r.edge_id);
	l->st = L_LIVE;
	l->registered_at = now_ms(c);
	c->st.registrations++;
	adm_add(c->m.reg_ok, 1);
	log_info("msg=\"registered with edge\" slot=%d edge=%s edge_id=%s tunnel=%s domain=%s record_layer=%s",
		 l->s->idx, c->edges[l->edge].text, r.edge_id[0] ? r.edge_id : "-", r.tunnel_id[0] ? r.tunnel_id : "-",
		 r.domain[0] ? r.domain : "-", tconn_ssl(l->tc) ? "openssl" : "postern");
	ctri_slot_registered(l);
	if (h2_start(l, p + used, n - (size_t)used) < 0) {
		ctri_link_close(l, l->err[0] ? l->err : "cannot start HTTP/2");
		return;
	}
	ctri_schedule(c);
}

static void on_data(tconn *tc, const uint8_t *p, size_t n, void *ud)
{
	struct link *l = ud;
	ssize_t r;
	(void)tc;
	if (l->closing)
		return;
	if (l->st == L_REGISTERING) {
		handle_registration(l, p, n);
		return;
	}
	if (!l->h2)
		return;
	l->flushing = true;
	r = nghttp2_session_mem_recv(l->h2, p, n);
	l->flushing = false;
	if (r < 0) {
		snprintf(l->err, sizeof l->err, "HTTP/2 protocol error from edge: %s", nghttp2_strerror((int)r));
		ctri_link_close(l, l->err);
		return;
	}
	ctri_link_flush(l);
}

static void on_eof(tconn *tc, void *ud)
{
	struct link *l = ud;
	(void)tc;
	l->eof = true;
	if (l->closing)
		return;
	if (l->st == L_REGISTERING)
		ctri_link_close(l, "edge closed the connection before answering the registration");
	else if (l->goaway == 2 && l->nstreams == 0)
		ctri_link_close(l, NULL);
	else
		ctri_link_close(l, "edge closed the connection");
}

static void on_drain(tconn *tc, void *ud)
{
	struct link *l = ud;
	if (l->closing)
		return;
	if (l->paused) {
		l->paused = false;
		tconn_resume(tc);
	}
	ctri_link_flush(l);
}

static int current_token(ctr *c)
{
	char *t = NULL, err[600], warn[600];
	int rc;
	if (!c->cfg->token_file)
		return c->token ? 0 : -ENOENT;
	rc = ctri_read_token_file(c->cfg->token_file, &t, err, sizeof err, warn, sizeof warn);
	if (rc < 0) {
		/* Keep the last good token: a rotation in progress may have the file briefly missing. */
		log_warn("msg=\"cannot read the token file; using the last token read\" file=\"%s\" err=\"%s\"",
			 c->cfg->token_file, err);
		return c->token ? 0 : rc;
	}
	if (c->token) {
		OPENSSL_cleanse(c->token, strlen(c->token));
		free(c->token);
	}
	c->token = t;
	return 0;
}

static void on_open(tconn *tc, int status, void *ud)
{
	struct link *l = ud;
	ctr *c = l->c;
	reg_request rq;
	char line[REG_MAX_LINE + 2];
	const uint8_t *alpn = NULL;
	unsigned int alpn_len = 0;
	int n;

	if (status < 0) {
		l->failed_open = true;
		l->refused = status == UV_ECONNREFUSED;
		snprintf(l->err, sizeof l->err, "%s", tconn_errstr(tc));
		return; /* on_close follows */
	}
	tconn_alpn(tc, &alpn, &alpn_len);
	if (alpn_len && (alpn_len != strlen(REG_ALPN) || memcmp(alpn, REG_ALPN, alpn_len))) {
		l->failed_open = true;
		ctri_link_close(l, "edge selected another application protocol (ALPN)");
		return;
	}
	if (current_token(c) < 0) {
		ctri_link_close(l, "no tunnel token");
		return;
	}
	memset(&rq, 0, sizeof rq);
	rq.v = REG_PROTO_VERSION;
	snprintf(rq.token, sizeof rq.token, "%s", c->token);
	snprintf(rq.connector_id, sizeof rq.connector_id, "%s", c->id);
	rq.slot = (uint32_t)l->s->idx;
	snprintf(rq.version, sizeof rq.version, "%s", POSTERN_VERSION);
	n = reg_request_encode(&rq, line, sizeof line);
	reg_request_wipe(&rq);
	if (n < 0 || !(l->lb = calloc(1, sizeof *l->lb))) {
		OPENSSL_cleanse(line, sizeof line);
		ctri_link_close(l, "cannot encode the registration");
		return;
	}
	if (tconn_write(tc, (const uint8_t *)line, (size_t)n) < 0) {
		OPENSSL_cleanse(line, sizeof line);
		ctri_link_close(l, "write failed");
		return;
	}
	OPENSSL_cleanse(line, sizeof line);
	l->st = L_REGISTERING;
	l->reg_deadline = now_ms(c) + REG_TIMEOUT_MS;
	ctri_metrics_refresh(c);
	ctri_schedule(c);
}


/* The one place a link ends: tconn's on_close, or a dial that never got a tconn. */
static void link_finished(struct link *l)
{
	ctr *c = l->c;
	struct stream *s;

	while ((s = l->streams)) {
		if (s->sc) {
			stream_conn *sc = s->sc;
			s->sc = NULL;
			c->be.abort(sc);
		}
		stream_unlink_free(s);
	}
	if (l->h2)
		nghttp2_session_del(l->h2);
	l->h2 = NULL;
	free(l->lb);
	l->lb = NULL;
	LIST_UNLINK(l, next, pprev);
	if (!c->freeing)
		ctri_slot_link_closed(l);
	free(l);
	if (!c->freeing) {
		ctri_metrics_refresh(c);
		ctri_schedule(c);
	}
}

static void on_close(tconn *tc, int err, void *ud)
{
	struct link *l = ud;
	ctr *c = l->c;
	(void)tc;
	(void)err;
	l->tc = NULL;
	l->closing = true;
	link_finished(l);
	ctr_unref(c);
}

void ctri_link_close(struct link *l, const char *why)
{
	if (l->closing)
		return;
	if (why && why != l->err)
		snprintf(l->err, sizeof l->err, "%s", why);
	l->closing = true;
	if (l->dns) {
		l->dns->l = NULL;
		uv_cancel((uv_req_t *)&l->dns->req);
		l->dns = NULL;
	}
	if (l->tc)
		tconn_close(l->tc); /* link_finished runs from on_close */
	else
		link_finished(l);
}

static const tconn_cbs link_cbs = {
	.on_open = on_open,
	.on_data = on_data,
	.on_eof = on_eof,
	.on_drain = on_drain,
	.on_close = on_close,
};

void ctri_link_connect(struct link *l, const struct sockaddr *sa)
{
	ctr *c = l->c;
	int r;
	l->st = L_CONNECTING;
	r = tconn_connect(c->loop, sa, c->tls, c->edges[l->edge].name, c->cfg->dial_timeout_ms, &link_cbs, l, &l->tc);
	if (r < 0) {
		l->tc = NULL;
		l->failed_open = true;
		l->refused = r == UV_ECONNREFUSED;
		snprintf(l->err, sizeof l->err, "connect: %s", uv_strerror(r));
		ctri_link_close(l, NULL);
		return;
	}
	c->refs++;
}

void ctri_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct dns *d = (struct dns *)req;
	struct link *l = d->l;
	ctr *c = d->c;
	if (l) {
		l->dns = NULL;
		if (status < 0 || !res) {
			l->failed_open = true;
			snprintf(l->err, sizeof l->err, "cannot resolve %s: %s", c->edges[l->edge].host,
				 uv_strerror(status < 0 ? status : UV_EAI_NONAME));
			ctri_link_close(l, NULL);
		} else {
			struct addrinfo *ai = res;
			unsigned n = 0, pick;
			for (; ai; ai = ai->ai_next)
				n++;
			pick = c->edges[l->edge].rr++ % n;
			for (ai = res; pick--; ai = ai->ai_next)
				;
			ctri_link_connect(l, ai->ai_addr);
		}
	}
	uv_freeaddrinfo(res);
	free(d);
	ctr_unref(c);
}
