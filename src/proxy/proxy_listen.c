/* The plain listener on listen_addr: each accepted TCP connection carries one px_conn. */
#include "proxy/proxy_int.h"
/* ---- plain listener --------------------------------------------------------------------------------- */

static void pxl_unlink_free(pxl *g)
{
	px *p = g->px;
	LIST_UNLINK(g, next, pprev);
	p->nglues--;
	free(g);
	pxi_unref(p);
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
	LIST_PUSH(p->glues, g, next, pprev);
	p->nglues++;
	pxi_ref(p);
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
	pxi_ref(p);
	p->listening = true;
	if ((r = uv_tcp_bind(&p->lsock, (struct sockaddr *)&ss, 0)) < 0 ||
	    (r = uv_listen((uv_stream_t *)&p->lsock, 511, on_accept)) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", p->cfg->listen_addr, uv_strerror(r));
		p->listening = false;
		uv_close((uv_handle_t *)&p->lsock, pxi_handle_closed);
		return r;
	}
	uv_tcp_getsockname(&p->lsock, (struct sockaddr *)&ss, &len);
	na_format((struct sockaddr *)&ss, p->laddr, sizeof p->laddr);
	log_info("msg=\"proxy listening\" addr=%s", p->laddr);
	return 0;
}
