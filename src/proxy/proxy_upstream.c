/* The upstream side of an exchange: TCP/TLS connections to http(s) upstreams (kept for reuse), and the
 * stdio:/sandbox: routes answered by the MCP bridge. */
#include "proxy/proxy_int.h"

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
void pxi_up_detach(px_conn *c)
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

/* ---- upstream ---------------------------------------------------------------------------------------- */

int pxi_up_write(px_conn *c, const uint8_t *p, size_t n)
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

void pxi_up_send_head(px_conn *c)
{
	int r = pxi_up_write(c, cbuf_data(&c->head), c->head.len);
	cbuf_free(&c->head);
	if (r == 0 && c->g && c->g->forward_body) {
		/* A guarded request was read whole and checked: its body follows the rebuilt head. */
		r = pxi_up_write(c, cbuf_data(&c->mbody), c->mbody.len);
		cbuf_free(&c->mbody);
		c->g->forward_body = false;
		c->req_done = true;
		c->st = C_WAIT;
	}
	if (r < 0)
		pxi_upstream_fail(c, 502, "Bad Gateway", "upstream write failed");
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
	pxi_enter(c);
	cfg = pxi_cfg(c);
	if (status < 0) {
		log_warn("msg=\"upstream name resolution failed\" route=%s host=%s err=\"%s\"", u->rt->name, u->rt->host,
			 uv_strerror(status));
		uv_freeaddrinfo(res);
		pxi_upstream_fail(c, 502, "Bad Gateway", "upstream name resolution failed");
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
			log_error("msg=\"IP validation failed: %s is not an allowed address\" route=%s upstream=%s "
				  "key=upstream.allowed_ips hint=\"add %s (or its network) to upstream.allowed_ips in the "
				  "gateway config; the default allows only RFC 1918 addresses\"",
				  ip, u->rt->name, u->rt->value, ip);
		} else {
			log_warn("msg=\"upstream has no IPv4 address\" route=%s host=%s", u->rt->name, u->rt->host);
		}
		uv_freeaddrinfo(res);
		pxi_upstream_fail(c, 502, "Bad Gateway", bad ? "upstream address not allowed" : "upstream has no IPv4 address");
		goto out;
	}
	na_format(pick->ai_addr, u->addr, sizeof u->addr);
	r = tconn_connect(c->px->loop, pick->ai_addr, u->rt->kind == ROUTE_HTTPS ? c->gen->uctx : NULL, u->rt->host,
			  pxi_cfg(c)->connect_timeout_ms, &up_cbs, u, &u->tc);
	uv_freeaddrinfo(res);
	if (r < 0) {
		u->tc = NULL;
		log_warn("msg=\"upstream connect failed\" route=%s upstream=%s addr=%s err=\"%s\"", u->rt->name,
			 u->rt->value, u->addr, uv_strerror(r));
		pxi_upstream_fail(c, 502, "Bad Gateway", "upstream connect failed");
	}
out:
	pxi_leave(c);
}

void pxi_start_upstream(px_conn *c)
{
	pxu *u = calloc(1, sizeof *u);
	struct addrinfo hints;
	char port[8];
	int r;

	if (!u) {
		pxi_upstream_fail(c, 502, "Bad Gateway", "out of memory");
		return;
	}
	u->c = c;
	u->rt = c->rt;
	u->reusable = true;
	u->gai.data = u;
	c->up = u;
	c->st = C_CONNECTING;
	pxi_set_timer(c, T_CONNECT, pxi_cfg(c)->connect_timeout_ms);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_INET; /* upstreams are IPv4, as in Anthropic's proxy */
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof port, "%u", (unsigned)c->rt->port);
	r = uv_getaddrinfo(c->px->loop, &u->gai, on_resolved, c->rt->host, port, &hints);
	if (r < 0) {
		log_warn("msg=\"upstream name resolution failed\" route=%s host=%s err=\"%s\"", c->rt->name, c->rt->host,
			 uv_strerror(r));
		pxi_upstream_fail(c, 502, "Bad Gateway", "upstream name resolution failed");
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
	pxi_enter(c);
	if (status < 0) {
		log_warn("msg=\"upstream connect failed\" route=%s upstream=%s addr=%s err=\"%s\"", u->rt->name,
			 u->rt->value, u->addr, tconn_errstr(tc));
		pxi_upstream_fail(c, 502, "Bad Gateway", "upstream connect failed");
		goto out;
	}
	u->open = true;
	pxi_set_timer(c, T_NONE, 0);
	log_debug("msg=\"upstream connected\" route=%s addr=%s", u->rt->name, u->addr);
	c->st = C_BODY;
	pxi_up_send_head(c);
	pxi_drive(c);
out:
	pxi_leave(c);
}

void pxi_up_pause_if_full(px_conn *c)
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
	pxi_log_request(c, NULL);
	pxi_drive(c); /* client bytes that followed the upgrade request */
}

/* One step of parsing an upstream's response. 0: *ev and *used are set; 1: the response is over, the rest of
 * the bytes are unasked for; <0: it was malformed, and the exchange has been failed (502). */
int pxi_up_parse(px_conn *c, pxu *u, const uint8_t *p, size_t n, size_t *used, h1_ev *ev)
{
	if (c->resp_done) {
		u->reusable = false;
		return 1;
	}
	*ev = h1_parse(&c->x->resp, p, n, used);
	if (*ev != H1_ERR)
		return 0;
	log_warn("msg=\"invalid response from upstream\" route=%s err=\"%s\"", u->rt->name, c->x->resp.errstr);
	u->reusable = false;
	pxi_upstream_fail(c, 502, "Bad Gateway", "invalid response from upstream");
	return -EPROTO;
}

/* After a read of the upstream: bytes past the response make the connection unusable for another request;
 * the owner's queue may want the upstream paused; a finished exchange ends. */
void pxi_up_data_done(px_conn *c, pxu *u, size_t left, bool finished)
{
	if (left > 0)
		u->reusable = false;
	pxi_up_pause_if_full(c);
	if (finished && c->req_done && !c->closing && !c->aborted)
		pxi_end_exchange(c);
}

static void up_on_data(tconn *tc, const uint8_t *p, size_t n, void *ud)
{
	pxu *u = ud;
	px_conn *c = u->c;
	bool finished = false;
	(void)tc;
	if (!c)
		return;
	pxi_enter(c);
	if (c->st == C_TUNNEL) {
		c->resp_bytes += n;
		if (pxi_cwrite(c, p, n) < 0)
			pxi_conn_finish(c, false);
		pxi_up_pause_if_full(c);
		goto out;
	}
	if (c->g && c->in_exchange && !c->resp_done) {
		pxi_guard_up_data(c, u, p, n);
		goto out;
	}
	if (!c->in_exchange || c->resp_done) {
		/* Bytes nobody asked for: this connection cannot be trusted for another request. */
		u->reusable = false;
		if (!c->in_exchange)
			pxi_up_detach(c);
		goto out;
	}
	while (n > 0 && !c->closing && !c->aborted) {
		size_t used = 0;
		h1_ev ev;
		int pr = pxi_up_parse(c, u, p, n, &used, &ev);
		if (pr > 0)
			break;
		if (pr < 0)
			goto out;
		if (used) {
			c->resp_started = true;
			c->resp_bytes += used;
			if (pxi_cwrite(c, p, used) < 0) {
				pxi_conn_finish(c, false);
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
				if (n && pxi_cwrite(c, p, n) < 0) {
					pxi_conn_finish(c, false);
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
	pxi_up_data_done(c, u, n, finished);
out:
	pxi_leave(c);
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
	pxi_enter(c);
	if (c->st == C_TUNNEL) {
		if (!c->out_shut) {
			tio_shutdown(c->tls);
			pxi_flush_tls(c);
			if (!c->aborted)
				c->ops->shutdown(c->ctx);
			c->out_shut = true;
		}
		if (c->client_done)
			pxi_conn_finish(c, true);
		goto out;
	}
	if (!c->in_exchange) {
		pxi_up_detach(c);
		goto out;
	}
	if (!c->resp_done && c->g) {
		pxi_guard_up_eof(c);
	} else if (!c->resp_done) {
		h1_ev ev = h1_eof(&c->x->resp);
		if (ev == H1_DONE) {
			c->status = c->x->resp.status;
			c->resp_done = true;
			if (c->req_done)
				pxi_end_exchange(c);
			else
				pxi_conn_finish(c, true); /* close-delimited response: the client needs the close too */
		} else if (!c->resp_started) {
			log_warn("msg=\"upstream closed the connection before responding\" route=%s", u->rt->name);
			pxi_upstream_fail(c, 502, "Bad Gateway", "upstream closed the connection");
		} else {
			pxi_conn_finish(c, false);
		}
	}
out:
	pxi_leave(c);
}

static void up_on_drain(tconn *tc, void *ud)
{
	pxu *u = ud;
	px_conn *c = u->c;
	(void)tc;
	if (!c || !c->up_full)
		return;
	pxi_enter(c);
	c->up_full = false;
	pxi_drive(c);
	pxi_leave(c);
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
	pxi_enter(c);
	c->up = NULL;
	c->up_full = c->up_paused = false;
	u->c = NULL;
	if (c->st == C_TUNNEL) {
		pxi_conn_finish(c, c->out_shut);
	} else if (c->in_exchange && !c->resp_done) {
		if (!c->resp_started) {
			log_warn("msg=\"upstream connection failed\" route=%s err=\"%s\"", u->rt->name, tconn_errstr(tc));
			pxi_upstream_fail(c, 502, "Bad Gateway", "upstream connection failed");
		} else {
			pxi_conn_finish(c, false);
		}
	} else if (c->in_exchange && c->resp_done && !c->req_done) {
		/* The upstream answered and left while the request was still coming: the answer stands. */
		pxi_conn_finish(c, true);
	}
	free(u);
	pxi_leave(c);
}

/* ---- stdio: and sandbox: routes ---------------------------------------------------------------------- */

static void mbody_sink(void *ud, const char *at, size_t n)
{
	px_conn *c = ud;
	/* Too large (or out of memory): the rest is read and dropped, then answered with an error. */
	if (!c->mbody_over && n && cbuf_append(&c->mbody, at, n) < 0)
		c->mbody_over = true;
}

void pxi_start_mcp(px_conn *c)
{
	cbuf_free(&c->mbody);
	c->mbody_over = false;
	c->x->req.body_cb = mbody_sink;
	c->x->req.body_ud = c;
	c->st = C_MBODY;
	/* The body is held in memory until it is whole (guard, bridge): it gets the head's deadline again, so
	 * a client cannot keep max_body bytes and the connection forever by sending slowly. */
	pxi_set_timer(c, T_BODY, pxi_cfg(c)->head_timeout_ms);
}

/* Writes a whole response (the bridge's, or one the guard made) and ends the exchange. */
void pxi_respond_whole(px_conn *c, const mbr_response *r)
{
	char head[1536];
	int n;
	bool keep = c->x->req.keep_alive && !c->px->draining && !c->client_done;

	c->mreq = NULL;
	if (c->closing || c->aborted)
		return;
	pxi_enter(c);
	c->status = (unsigned)r->status;
	n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n%s%s%s%s%s%s%s%s%s%sContent-Length: %zu\r\nCache-Control: no-store\r\n%s\r\n",
		     r->status, http_status_str((enum http_status)r->status),
		     r->content_type ? "Content-Type: " : "", r->content_type ? r->content_type : "",
		     r->content_type ? "\r\n" : "", r->session_id ? "Mcp-Session-Id: " : "",
		     r->session_id ? r->session_id : "", r->session_id ? "\r\n" : "", r->allow ? "Allow: " : "",
		     r->allow ? r->allow : "", r->allow ? "\r\n" : "", r->extra ? r->extra : "", r->body_len,
		     keep ? "" : "Connection: close\r\n");
	if (n > 0 && (size_t)n < sizeof head && pxi_cwrite(c, (const uint8_t *)head, (size_t)n) == 0 &&
	    (!r->body_len || pxi_cwrite(c, (const uint8_t *)r->body, r->body_len) == 0)) {
		c->resp_started = true;
		c->resp_bytes = (size_t)n + r->body_len;
		c->req_done = c->resp_done = true;
		/* pxi_end_exchange decides keep-alive from both messages: this response keeps it when the request does. */
		c->x->resp.keep_alive = keep;
		c->x->req.upgrade = false;
		pxi_end_exchange(c);
	} else {
		pxi_conn_finish(c, false);
	}
	pxi_leave(c);
}

static void mcp_respond(void *ud, const mbr_response *r)
{
	px_conn *c = ud;
	mbr_response f = *r;
	char *rep = NULL;
	size_t rlen = 0;

	c->mreq = NULL;
	if (c->closing || c->aborted)
		return;
	if (c->g && c->g->sse_started) {
		/* A held call answered its client's progress on SSE already: the answer is the stream's last event. */
		c->status = (unsigned)r->status;
		if (r->body_len && r->content_type && !strncmp(r->content_type, "application/json", 16) &&
		    pxi_guard_payload(c, r->body, r->body_len, &rep, &rlen) != -EIO &&
		    pxi_guard_sse_event(c, rep ? rep : r->body, rep ? rlen : r->body_len) == 0)
			pxi_stream_end(c);
		else
			pxi_conn_finish(c, false);
		free(rep);
		return;
	}
	if (c->g && r->body_len && r->content_type && !strncmp(r->content_type, "application/json", 16)) {
		c->status = (unsigned)r->status;
		if (pxi_guard_payload(c, r->body, r->body_len, &rep, &rlen) == -EIO) {
			pxi_enter(c);
			pxi_respond(c, 503, "Service Unavailable", "the audit log cannot be written");
			pxi_leave(c);
			return;
		}
		if (rep) {
			f.body = rep;
			f.body_len = rlen;
		}
	}
	if (c->g) {
		c->status = (unsigned)r->status;
		pxi_guard_flush(c, NULL);
	}
	pxi_respond_whole(c, &f);
	free(rep);
}

/* The bridge's write failed on our side: the exchange is over and the bridge forgets it. */
static int mcp_stream_fail(px_conn *c)
{
	c->mreq = NULL;
	pxi_conn_finish(c, false);
	return -EPIPE;
}

/* An SSE response: chunked on HTTP/1.1 (the connection stays usable), close-delimited on HTTP/1.0. */
static int mcp_stream_head(void *ud, int status, const char *sid)
{
	px_conn *c = ud;
	char head[512];
	int n, r = 0;
	if (c->closing || c->aborted)
		return -EPIPE;
	if (c->g && c->g->sse_started)
		return 0; /* the guard's stream of a held call is already open: the bridge's events join it */
	pxi_enter(c);
	c->mchunked = c->x->req.http_minor >= 1;
	c->status = (unsigned)status;
	n = snprintf(head, sizeof head,
		     "HTTP/1.1 %d %s\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache, no-store\r\n"
		     "X-Accel-Buffering: no\r\n%s%s%s%s\r\n",
		     status, http_status_str((enum http_status)status), sid ? "Mcp-Session-Id: " : "", sid ? sid : "",
		     sid ? "\r\n" : "", c->mchunked ? "Transfer-Encoding: chunked\r\n" : "Connection: close\r\n");
	if (n <= 0 || (size_t)n >= sizeof head || pxi_cwrite(c, (const uint8_t *)head, (size_t)n) < 0) {
		r = mcp_stream_fail(c);
	} else {
		c->resp_started = true;
		c->resp_bytes += (size_t)n;
	}
	pxi_leave(c);
	return r;
}

int pxi_write_chunk(px_conn *c, const uint8_t *p, size_t n)
{
	char *buf;
	int k = 0, r = 0;
	if (!n)
		return 0;
	if (c->closing || c->aborted)
		return -EPIPE;
	/* One write per event (one TLS record when it fits): chunk size line, the event, CRLF. */
	buf = malloc(n + 24);
	if (buf) {
		if (c->mchunked)
			k = snprintf(buf, 24, "%zx\r\n", n);
		memcpy(buf + k, p, n);
		if (c->mchunked) {
			memcpy(buf + k + n, "\r\n", 2);
			n += 2;
		}
	}
	if (!buf || pxi_cwrite(c, (const uint8_t *)buf, (size_t)k + n) < 0)
		r = -EPIPE;
	else
		c->resp_bytes += (size_t)k + n;
	free(buf);
	return r;
}

static int mcp_stream_data(void *ud, const char *p, size_t n)
{
	px_conn *c = ud;
	int r;
	if (!n)
		return 0;
	if (c->closing || c->aborted)
		return -EPIPE;
	pxi_enter(c);
	r = c->g ? pxi_guard_sse_feed(c, (const uint8_t *)p, n) : pxi_write_chunk(c, (const uint8_t *)p, n);
	if (r < 0)
		r = mcp_stream_fail(c);
	pxi_leave(c);
	return r;
}

static void mcp_stream_end(void *ud)
{
	px_conn *c = ud;
	c->mreq = NULL;
	if (c->closing || c->aborted)
		return;
	pxi_stream_end(c);
}

/* Ends a streamed (SSE) response: the last chunk, then the exchange. */
void pxi_stream_end(px_conn *c)
{
	bool keep = c->mchunked && c->x->req.keep_alive && !c->px->draining && !c->client_done;
	pxi_enter(c);
	if (c->mchunked && pxi_cwrite(c, (const uint8_t *)"0\r\n\r\n", 5) < 0) {
		pxi_conn_finish(c, false);
	} else {
		c->resp_bytes += c->mchunked ? 5 : 0;
		c->req_done = c->resp_done = true;
		c->x->resp.keep_alive = keep;
		c->x->req.upgrade = false;
		pxi_end_exchange(c);
	}
	pxi_leave(c);
}

static bool mcp_full(void *ud)
{
	px_conn *c = ud;
	return c->closing || c->aborted || c->ops->over_high_water(c->ctx);
}

static const mbr_sink mcp_sink = {
	.respond = mcp_respond,
	.stream_head = mcp_stream_head,
	.stream_data = mcp_stream_data,
	.stream_end = mcp_stream_end,
	.full = mcp_full,
};

/* A header of the request head as a string; NULL when absent or over cap (the caller's buffer). */
static const char *head_value(px_conn *c, const char *name, char *buf, size_t cap, int *rc)
{
	*rc = h1_head_value(cbuf_data(&c->head), c->head.len, name, buf, cap);
	return *rc >= 0 ? buf : NULL;
}

void pxi_finish_mcp_request(px_conn *c)
{
	pxi_set_timer(c, T_NONE, 0);
	c->st = C_WAIT;
	c->x->req.body_cb = NULL;
	if (c->g && pxi_guard_request(c) != 0)
		return; /* answered (or held) by the guard */
	pxi_forward_request(c);
}

/* The request, read whole (and checked on a guarded route), goes to its upstream or the stdio bridge. */
void pxi_forward_request(px_conn *c)
{
	mbr *b = pxi_rstate(c)->bridge;
	char sid[128], last[300], accept[1024];
	char ver[64], mmethod[128], mname[1024]; /* 2026-07-28 request-metadata headers */
	const char *a;
	mbr_http h = { 0 };
	int r;

	if (!route_is_mcp(c->rt)) {
		/* A guarded http(s) route: the checked request goes upstream with the head rebuilt for it. */
		if (pxi_guard_upstream_head(c) < 0) {
			pxi_respond(c, 431, "Request Header Fields Too Large", "request head too large");
			return;
		}
		pxi_up_begin(c);
		return;
	}
	if (c->mbody_over) {
		char msg[96];
		snprintf(msg, sizeof msg, "MCP message too large (mcp_limits.max_body is %zu bytes)", pxi_cfg(c)->max_body);
		pxi_respond(c, 413, "Content Too Large", msg);
		return;
	}
	h.session_id = head_value(c, "Mcp-Session-Id", sid, sizeof sid, &r);
	if (r == -E2BIG) {
		pxi_respond(c, 400, "Bad Request", "Mcp-Session-Id too long");
		return;
	}
	h.last_event_id = head_value(c, "Last-Event-ID", last, sizeof last, &r);
	if (r == -E2BIG) {
		pxi_respond(c, 400, "Bad Request", "Last-Event-ID too long");
		return;
	}
	/* An Accept longer than the buffer is read as not listing SSE: the answer is then plain JSON. */
	a = head_value(c, "Accept", accept, sizeof accept, &r);
	h.accept_sse = a && strcasestr(a, "text/event-stream");
	/* The bridge tells the 2026-07-28 era by them and checks them against the body (absent or over cap: NULL). */
	h.protocol_version = head_value(c, "MCP-Protocol-Version", ver, sizeof ver, &r);
	h.mcp_method = head_value(c, "Mcp-Method", mmethod, sizeof mmethod, &r);
	h.mcp_name = head_value(c, "Mcp-Name", mname, sizeof mname, &r);
	cbuf_free(&c->head);
	h.method = c->x->method;
	h.body = cbuf_data(&c->mbody);
	h.body_len = c->mbody.len;
	c->mchunked = false;
	r = mbr_handle(b, &h, &mcp_sink, c, &c->mreq);
	if (r < 0)
		pxi_respond(c, 500, "Internal Server Error", "MCP bridge failure");
}
