/* A client connection of the proxy: inner TLS on owner-fed bytes, one HTTP/1.1 exchange at a time, timers,
 * and the stream seam (px_conn_*, px_stream_backend). */
#include "proxy/proxy_int.h"
/* ---- client side output ----------------------------------------------------------------------------- */

int pxi_flush_tls(px_conn *c)
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

#define PX_CORK_MAX (64u << 10)

int pxi_cwrite(px_conn *c, const uint8_t *p, size_t n)
{
	int rc = 0;
	if (c->aborted || c->closing || c->out_shut) {
		cbuf_free(&c->corked);
		return -EPIPE;
	}
	if (c->corked.len && (!n || cbuf_append(&c->corked, p, n) == 0)) {
		p = cbuf_data(&c->corked); /* what was held and these bytes: one record */
		n = c->corked.len;
	} else if (c->corked.len && tio_write(c->tls, cbuf_data(&c->corked), c->corked.len) < 0) {
		rc = -EPROTO;
	}
	if (rc == 0 && n && tio_write(c->tls, p, n) < 0)
		rc = -EPROTO;
	cbuf_free(&c->corked);
	return rc < 0 ? rc : pxi_flush_tls(c);
}

int pxi_cwrite_later(px_conn *c, const uint8_t *p, size_t n)
{
	if (!c->corked.max)
		cbuf_init(&c->corked, 1024, PX_CORK_MAX);
	if (c->aborted || c->closing || c->out_shut)
		return -EPIPE;
	if (cbuf_append(&c->corked, p, n) == 0)
		return 0;
	return pxi_cwrite(c, p, n);
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

void pxi_log_request(px_conn *c, const char *err)
{
	char qp[H1_TARGET_KEEP + 40], qr[300], qe[200];
	size_t plen;
	if (!c->in_exchange || c->logged)
		return;
	c->logged = true;
	pxi_guard_flush(c, err ? "no_response" : NULL);
	pxi_metrics_request(c);
	plen = strcspn(c->x->path, "?");
	c->x->path[plen] = 0; /* the query may carry secrets: never logged */
	if (err)
		log_warn("msg=\"request\" route=%s method=%s path=%s status=%u req_bytes=%llu resp_bytes=%llu "
			 "duration_ms=%.1f client=%s error=%s",
			 c->rt ? log_quote(c->rt->name, qr, sizeof qr) : "-", c->x->method, log_quote(c->x->path, qp, sizeof qp),
			 c->status, (unsigned long long)c->req_bytes, (unsigned long long)c->resp_bytes, pxi_ms_since(c->t0),
			 c->client, log_quote(err, qe, sizeof qe));
	else
		log_info("msg=\"request\" route=%s method=%s path=%s status=%u req_bytes=%llu resp_bytes=%llu "
			 "duration_ms=%.1f client=%s",
			 c->rt ? log_quote(c->rt->name, qr, sizeof qr) : "-", c->x->method, log_quote(c->x->path, qp, sizeof qp),
			 c->status, (unsigned long long)c->req_bytes, (unsigned long long)c->resp_bytes, pxi_ms_since(c->t0),
			 c->client);
}

static void conn_freed(uv_handle_t *h)
{
	px_conn *c = h->data;
	px *p = c->px;
	free(c->x);
	free(c);
	pxi_unref(p);
}


static void destroy(px_conn *c)
{
	px *p = c->px;
	LIST_UNLINK(c, next, pprev);
	p->nconns--;
	pxi_up_detach(c);
	mbr_req_cancel(c->mreq);
	c->mreq = NULL;
	pxi_guard_free(c);
	pxi_gen_leave(c);
	cbuf_free(&c->mbody);
	tio_free(c->tls);
	cbuf_free(&c->pend);
	cbuf_free(&c->head);
	cbuf_free(&c->corked);
	c->tls = NULL;
	uv_close((uv_handle_t *)&c->timer, conn_freed);
	if (p->draining && p->nconns == 0 && !p->freeing)
		uv_timer_start(&p->dtimer, pxi_on_drained_timer, 0, 0);
}

void pxi_leave(px_conn *c)
{
	if (--c->busy == 0 && c->aborted)
		destroy(c);
}

void px_conn_abort(px_conn *c)
{
	if (!c || c->aborted)
		return;
	if (c->in_exchange && !c->logged)
		pxi_log_request(c, "client went away");
	c->aborted = true;
	if (c->busy == 0)
		destroy(c);
}

static void on_conn_timer(uv_timer_t *t);

/* Ends the connection: graceful sends close_notify and asks the owner to half-close first; ops->close
 * always comes later from the loop. */
void pxi_conn_finish(px_conn *c, bool graceful)
{
	if (c->closing || c->aborted)
		return;
	if (c->in_exchange && !c->logged)
		pxi_log_request(c, graceful ? "connection closed" : "aborted");
	if (graceful && !c->out_shut) {
		if (tio_handshake_done(c->tls))
			tio_shutdown(c->tls);
		pxi_flush_tls(c);
		if (!c->aborted)
			c->ops->shutdown(c->ctx);
		c->out_shut = true;
	}
	c->closing = true;
	c->st = C_CLOSED;
	pxi_up_detach(c);
	mbr_req_cancel(c->mreq);
	c->mreq = NULL;
	pxi_set_timer(c, T_CLOSE, 0);
}

/* A response made by the proxy itself (no upstream involved); then the connection closes. */
void pxi_respond(px_conn *c, unsigned code, const char *reason, const char *body)
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
		pxi_cwrite(c, (const uint8_t *)buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
	}
	pxi_log_request(c, code >= 500 ? body : NULL);
	pxi_conn_finish(c, true);
}

void pxi_upstream_fail(px_conn *c, unsigned code, const char *reason, const char *why)
{
	c->px->st.upstream_failures++;
	pxi_up_detach(c);
	if (!c->resp_started)
		pxi_respond(c, code, reason, why);
	else
		pxi_conn_finish(c, false);
}

/* ---- timers ----------------------------------------------------------------------------------------- */

void pxi_set_timer(px_conn *c, enum tkind k, uint64_t ms)
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
	pxi_enter(c);
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
		pxi_conn_finish(c, false);
		break;
	case T_IDLE:
		pxi_conn_finish(c, true);
		break;
	case T_HEAD:
		c->in_exchange = true;
		snprintf(c->x->method, sizeof c->x->method, "-");
		pxi_respond(c, 408, "Request Timeout", "request head not received in time");
		break;
	case T_BODY:
		pxi_respond(c, 408, "Request Timeout", "request body not received in time");
		break;
	case T_CONNECT:
		log_warn("msg=\"upstream connect timed out\" route=%s upstream=%s", c->rt ? c->rt->name : "-",
			 c->rt ? c->rt->value : "-");
		pxi_upstream_fail(c, 504, "Gateway Timeout", "upstream connect timed out");
		break;
	case T_NONE:
		break;
	}
	pxi_leave(c);
}

/* ---- exchanges -------------------------------------------------------------------------------------- */

static void begin_exchange(px_conn *c)
{
	px *p = c->px;
	const px_config *cfg;
	char host[ROUTE_HOST_MAX + 1], q[400];
	const char *h = NULL;
	size_t hlen = 0;

	pxi_gen_enter(c); /* the newest config serves this request to its end, whatever reloads meanwhile */
	cfg = pxi_cfg(c);
	if (!c->mbody.p) /* mcp_limits.max_body may have changed since the connection came */
		cbuf_init(&c->mbody, 4096, cfg->max_body);
	pxi_set_timer(c, T_NONE, 0);
	p->st.requests_total++;
	c->in_exchange = true;
	c->logged = c->req_done = c->resp_done = c->resp_started = false;
	cbuf_free(&c->corked); /* nothing of an earlier answer goes out with this one */
	c->status = 0;
	c->req_bytes = c->resp_bytes = 0;
	c->rt = NULL;
	pxi_guard_free(c);
	c->head_req = c->x->req.method == HTTP_HEAD;
	snprintf(c->x->method, sizeof c->x->method, "%s", h1_method_name(&c->x->req));
	snprintf(c->x->path, sizeof c->x->path, "%s", c->x->req.target);
	if (c->x->req.method == HTTP_CONNECT) {
		pxi_respond(c, 405, "Method Not Allowed", "CONNECT is not supported");
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
		pxi_respond(c, 400, "Bad Request", "missing Host header");
		return;
	}
	if (route_host_normalize(h, hlen, host, sizeof host) < 0) {
		pxi_respond(c, 400, "Bad Request", "invalid Host header");
		return;
	}
	/* The target goes upstream as sent, and a server takes the host of an absolute-form target over Host
	 * (RFC 9112 3.2.2): routed on Host, "GET http://other/ HTTP/1.1" with "Host: this" would reach this
	 * route's upstream asking for other. So such a target must name the host routed on. */
	if (c->x->req.target[0] != '/' && strcmp(c->x->req.target, "*")) {
		struct http_parser_url u;
		char th[ROUTE_HOST_MAX + 1];
		const char *t = c->x->req.target;
		http_parser_url_init(&u);
		if (http_parser_parse_url(t, c->x->req.target_len, 0, &u) != 0 || !(u.field_set & (1 << UF_HOST)) ||
		    route_host_normalize(t + u.field_data[UF_HOST].off, u.field_data[UF_HOST].len, th, sizeof th) < 0 ||
		    strcmp(th, host)) {
			pxi_respond(c, 400, "Bad Request", "request target names another host than Host");
			return;
		}
	}
	c->rt = route_lookup(&cfg->routes, cfg->tunnel_domain, host);
	if (!c->rt) {
		log_warn("msg=\"no route for host\" host=%s client=%s", log_quote(host, q, sizeof q), c->client);
		pxi_respond(c, 404, "Not Found", "no route for host");
		return;
	}
	pxi_gen_route(c);
	if (pxi_guarded(c)) {
		unsigned m = c->x->req.method;
		/* The guard reads every message: no way around it through an upgraded connection or a method
		 * MCP does not use (an upstream may treat a PUT with a JSON-RPC body like a POST). */
		if (c->x->req.upgrade) {
			pxi_respond(c, 501, "Not Implemented", "protocol upgrades are not relayed on a guarded route");
			return;
		}
		if (m != HTTP_POST && m != HTTP_GET && m != HTTP_DELETE && m != HTTP_HEAD && m != HTTP_OPTIONS) {
			pxi_respond(c, 405, "Method Not Allowed", "a guarded MCP route takes POST, GET, DELETE, HEAD and OPTIONS");
			return;
		}
		if (pxi_guard_begin(c) != 0)
			return; /* answered at the head: metadata, 401, 403 */
		pxi_start_mcp(c);
		return;
	}
	if (route_is_mcp(c->rt)) {
		pxi_start_mcp(c);
		return;
	}
	pxi_up_begin(c);
}

void pxi_up_begin(px_conn *c)
{
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
		pxi_up_send_head(c);
		return;
	}
	pxi_up_detach(c);
	pxi_start_upstream(c);
}

void pxi_end_exchange(px_conn *c)
{
	px *p = c->px;
	bool keep = c->x->req.keep_alive && c->x->resp.keep_alive && !c->x->req.upgrade && !p->draining && !c->client_done;

	if (c->corked.len) /* held bytes belong to this exchange's answer (its sender normally sent them) */
		(void)pxi_cwrite(c, NULL, 0);
	pxi_log_request(c, NULL);
	pxi_guard_free(c);
	cbuf_free(&c->head); /* an exchange answered here never sent it */
	cbuf_free(&c->mbody);
	c->in_exchange = false;
	if (c->gen != p->gen)
		pxi_up_detach(c); /* dialled for a route of an older config: the next request dials afresh */
	pxi_gen_leave(c);
	if (c->up) {
		if (!keep || !c->up->reusable || c->up->eof)
			pxi_up_detach(c);
		else
			c->up->idle_since = uv_hrtime();
		if (c->up && c->up_paused) {
			tconn_resume(c->up->tc); /* read on, to notice the upstream closing while idle */
			c->up_paused = false;
		}
	}
	if (!keep) {
		pxi_conn_finish(c, true);
		return;
	}
	free(c->x);
	c->x = NULL;
	c->st = C_HEAD;
	pxi_set_timer(c, T_IDLE, p->cfg->idle_timeout_ms);
	pxi_drive(c);
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
		pxi_respond(c, 431, "Request Header Fields Too Large", "request head too large");
	} else {
		char body[200];
		snprintf(body, sizeof body, "bad request: %s", why);
		pxi_respond(c, 400, "Bad Request", body);
	}
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
			pxi_conn_finish(c, false);
			return n;
		}
		if (!h1_started(&c->x->req)) {
			c->t0 = uv_hrtime();
			pxi_set_timer(c, T_HEAD, c->px->cfg->head_timeout_ms);
		}
		ev = h1_parse(&c->x->req, p, n, &used);
		if (ev == H1_ERR) {
			bad_request(c);
			return n;
		}
		if (cbuf_append(&c->head, p, used) < 0) {
			pxi_conn_finish(c, false);
			return n;
		}
		if (ev == H1_HEAD)
			begin_exchange(c);
		return used;
	case C_BODY:
		ev = h1_parse(&c->x->req, p, n, &used);
		if (ev == H1_ERR) {
			if (!c->resp_started) {
				pxi_up_detach(c);
				bad_request(c);
			} else {
				pxi_conn_finish(c, false);
			}
			return n;
		}
		if (pxi_up_write(c, p, used) < 0) {
			pxi_upstream_fail(c, 502, "Bad Gateway", "upstream write failed");
			return n;
		}
		if (ev == H1_DONE) {
			c->req_done = true;
			c->st = C_WAIT;
			if (c->resp_done)
				pxi_end_exchange(c);
		}
		return used;
	case C_TUNNEL:
		if (pxi_up_write(c, p, n) < 0)
			pxi_conn_finish(c, false);
		return n;
	case C_MBODY:
		ev = h1_parse(&c->x->req, p, n, &used);
		if (ev == H1_ERR) {
			bad_request(c);
			return n;
		}
		if (ev == H1_DONE)
			pxi_finish_mcp_request(c);
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
		pxi_conn_finish(c, true);
		break;
	case C_BODY:
		if (h1_eof(&c->x->req) != H1_DONE)
			pxi_conn_finish(c, false);
		break;
	case C_MBODY:
		if (h1_eof(&c->x->req) == H1_DONE)
			pxi_finish_mcp_request(c);
		else
			pxi_conn_finish(c, false);
		break;
	case C_TUNNEL:
		if (c->up && c->up->tc)
			tconn_shutdown(c->up->tc);
		if (c->out_shut)
			pxi_conn_finish(c, true);
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
			if (pxi_flush_tls(c) < 0) {
				pxi_conn_finish(c, false);
				return;
			}
			if (r < 0) {
				c->px->st.tls_failures++;
				log_warn("msg=\"tls handshake failed\" client=%s err=%s", c->client,
					 log_quote(tio_errstr(c->tls), q, sizeof q));
				pxi_conn_finish(c, true);
				return;
			}
			if (r == 0) {
				if (input_exhausted(c))
					pxi_conn_finish(c, false);
				return;
			}
			log_debug("msg=\"tls handshake done\" client=%s record_layer=%s", c->client,
				  tio_handed_off(c->tls) ? "postern" : "openssl");
			c->st = C_HEAD;
			pxi_set_timer(c, T_IDLE, c->px->cfg->idle_timeout_ms);
			continue;
		}
		if (!can_read(c))
			return;
		from_pend = c->pend.len > 0;
		if (from_pend) {
			data = cbuf_data(&c->pend);
			n = c->pend.len;
		} else {
			int r = tio_read(c->tls, buf, sizeof buf);
			if (pxi_flush_tls(c) < 0) {
				pxi_conn_finish(c, false);
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
				pxi_conn_finish(c, false);
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
			cbuf_consume(&c->pend, used); /* empty (and freed) if process finished the connection */
		} else if (used < n && !c->closing && cbuf_append(&c->pend, data + used, n - used) < 0) {
			pxi_conn_finish(c, false);
			return;
		}
		if (used == 0 && c->st == before)
			return; /* nothing moved: wait for an event */
	}
}

void pxi_drive(px_conn *c)
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
	cbuf_init(&c->pend, 1024, PX_READ_CHUNK);
	/* h1 refuses a head over max_head_bytes before it gets here: this cap is the backstop. */
	cbuf_init(&c->head, 1024, (size_t)p->cfg->max_head_bytes + PX_READ_CHUNK);
	cbuf_init(&c->mbody, 4096, p->cfg->max_body);
	c->ops = ops;
	c->ctx = ctx;
	log_quote(client_addr && *client_addr ? client_addr : "-", c->client, sizeof c->client);
	snprintf(c->client_raw, sizeof c->client_raw, "%s", client_addr ? client_addr : "");
	uv_timer_init(p->loop, &c->timer);
	c->timer.data = c;
	c->st = C_HANDSHAKE;
	pxi_set_timer(c, T_HANDSHAKE, p->cfg->handshake_timeout_ms);
	LIST_PUSH(p->conns, c, next, pprev);
	p->nconns++;
	p->st.conns_total++;
	pxi_ref(p);
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
	pxi_enter(c);
	c->fed += n;
	if (c->closing) {
		/* Nobody will read it; keep the owner's window moving until close arrives. */
		c->reported += n;
		c->ops->consumed(c->ctx, n);
	} else if (tio_feed(c->tls, p, n) < 0) {
		c->reported += n;
		pxi_conn_finish(c, false);
	} else {
		pxi_drive(c);
	}
	pxi_leave(c);
}

void px_conn_eof(px_conn *c)
{
	if (!c || c->aborted || c->in_eof)
		return;
	pxi_enter(c);
	c->in_eof = true;
	if (!c->closing && c->st == C_WAIT && c->mreq && c->x && c->x->req.method == HTTP_GET) {
		/* A GET stream of the stdio bridge has no end of its own: the client's FIN is its end (the request
		 * is not read while it waits, so drive would not see it). */
		c->client_done = true;
		pxi_conn_finish(c, true);
	} else if (!c->closing) {
		pxi_drive(c);
	}
	pxi_leave(c);
}

void px_conn_drained(px_conn *c)
{
	if (!c || c->aborted)
		return;
	pxi_enter(c);
	if (c->up_paused && c->up && c->up->tc) {
		c->up_paused = false;
		tconn_resume(c->up->tc);
	}
	if (c->mreq)
		mbr_req_resume(c->mreq); /* an SSE stream of the stdio bridge waits for room */
	pxi_leave(c);
}
