#include "core/tconn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tlsio.h"

struct tconn {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_timer_t timer; /* connect + handshake deadline */
	tio *tls;
	tconn_cbs cbs;
	void *ud;
	bool server, open, closing, paused, high, reading, eof_seen;
	bool close_flushed, shut_pending;
	int handles;
	int close_err;
	size_t queued;
	uint64_t in, out;
	char peer[64];
	struct sockaddr_storage peer_sa;
	char err[256];
};

struct wreq {
	uv_write_t req;
	tconn *c;
	size_t len;
	uint8_t data[];
};

static void finish_open(tconn *c);
static int flush_tls(tconn *c);

static void handle_closed(uv_handle_t *h)
{
	tconn *c = h->data;
	if (--c->handles > 0)
		return;
	if (c->cbs.on_close)
		c->cbs.on_close(c, c->close_err, c->ud);
	tio_free(c->tls);
	free(c);
}

void tconn_close(tconn *c)
{
	if (!c || c->closing)
		return;
	c->closing = true;
	uv_close((uv_handle_t *)&c->timer, handle_closed);
	uv_close((uv_handle_t *)&c->tcp, handle_closed);
}

static void fail(tconn *c, int err, const char *what)
{
	if (c->closing)
		return;
	if (!c->err[0])
		snprintf(c->err, sizeof c->err, "%s", what);
	c->close_err = err ? err : -EIO;
	if (!c->open && c->cbs.on_open) {
		c->open = true; /* report the failure once, through on_open */
		c->cbs.on_open(c, c->close_err, c->ud);
	}
	tconn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static _Thread_local char rbuf[64 * 1024];
	(void)h;
	(void)hint;
	buf->base = rbuf;
	buf->len = sizeof rbuf;
}

static void write_done(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	tconn *c = w->c;
	c->queued -= w->len;
	free(w);
	if (c->closing)
		return;
	if (status < 0) {
		fail(c, status, uv_strerror(status));
		return;
	}
	if (c->close_flushed && c->queued == 0 && !c->shut_pending) {
		tconn_close(c);
		return;
	}
	if (c->high && c->queued <= TCONN_LOW_WATER) {
		c->high = false;
		if (c->cbs.on_drain)
			c->cbs.on_drain(c, c->ud);
	}
}

/* Queues w (len bytes in w->data) on the socket; takes ownership of w. */
static int submit(tconn *c, struct wreq *w)
{
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
	int r;
	w->c = c;
	r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_done);
	if (r < 0) {
		free(w);
		return r;
	}
	c->queued += w->len;
	c->out += w->len;
	if (c->queued > TCONN_HIGH_WATER)
		c->high = true;
	return 0;
}

static int raw_write(tconn *c, const uint8_t *p, size_t n)
{
	struct wreq *w;
	if (!n)
		return 0;
	if (c->queued + n > TCONN_HARD_CAP)
		return -ENOBUFS;
	w = malloc(sizeof *w + n);
	if (!w)
		return -ENOMEM;
	w->len = n;
	memcpy(w->data, p, n);
	return submit(c, w);
}

static int flush_tls(tconn *c)
{
	size_t n;
	/* All pending ciphertext goes out as one write, read straight into the request: one copy, one
	 * syscall for many records, instead of one per 16 KiB record. */
	while ((n = tio_out_pending(c->tls)) > 0) {
		struct wreq *w;
		if (c->queued + n > TCONN_HARD_CAP)
			return -ENOBUFS;
		if (!(w = malloc(sizeof *w + n)))
			return -ENOMEM;
		w->len = tio_out_take(c->tls, w->data, n);
		if (!w->len) {
			free(w);
			return -EIO;
		}
		if (submit(c, w) < 0)
			return -EIO;
	}
	return 0;
}

static void deliver_plain(tconn *c)
{
	uint8_t buf[16 * 1024];
	int r;
	/* A paused reader still gets what TLS already decrypted only once resumed. */
	while (!c->closing && !c->paused) {
		r = tio_read(c->tls, buf, sizeof buf);
		if (flush_tls(c) < 0) {
			fail(c, -EIO, "write failed");
			return;
		}
		if (r > 0) {
			if (!c->open)
				finish_open(c);
			if (c->closing)
				return;
			c->cbs.on_data(c, buf, (size_t)r, c->ud);
			continue;
		}
		if (r == 0) {
			if (!c->open && tio_handshake_done(c->tls))
				finish_open(c);
			return;
		}
		if (r == TIO_EOF) {
			if (!c->eof_seen) {
				c->eof_seen = true;
				if (c->cbs.on_eof)
					c->cbs.on_eof(c, c->ud);
			}
			return;
		}
		fail(c, -EPROTO, tio_errstr(c->tls));
		return;
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	tconn *c = s->data;
	if (c->closing)
		return;
	if (nread > 0) {
		c->in += (uint64_t)nread;
		if (!c->tls) {
			c->cbs.on_data(c, (const uint8_t *)buf->base, (size_t)nread, c->ud);
			return;
		}
		if (tio_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread) < 0) {
			fail(c, -ENOMEM, "out of memory");
			return;
		}
		deliver_plain(c);
		return;
	}
	if (nread == UV_EOF) {
		uv_read_stop(s);
		c->reading = false;
		if (!c->open) {
			fail(c, -ECONNRESET, c->tls ? "connection closed during TLS handshake" : "connection closed");
			return;
		}
		if (!c->eof_seen) {
			c->eof_seen = true;
			if (c->cbs.on_eof)
				c->cbs.on_eof(c, c->ud);
		}
		return;
	}
	if (nread < 0)
		fail(c, (int)nread, uv_strerror((int)nread));
}

static void start_reading(tconn *c)
{
	if (c->reading || c->paused || c->closing || c->eof_seen)
		return;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
		c->reading = true;
}

void tconn_pause(tconn *c)
{
	c->paused = true;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
}

void tconn_resume(tconn *c)
{
	if (!c->paused || c->closing)
		return;
	c->paused = false;
	if (c->tls && c->open)
		deliver_plain(c);
	start_reading(c);
}

static void on_deadline(uv_timer_t *t)
{
	tconn *c = t->data;
	fail(c, -ETIMEDOUT, c->tls ? "TLS handshake timed out" : "connect timed out");
}

static void finish_open(tconn *c)
{
	uv_timer_stop(&c->timer);
	c->open = true;
	if (c->cbs.on_open)
		c->cbs.on_open(c, 0, c->ud);
}

static void set_peer(tconn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	char ip[INET6_ADDRSTRLEN] = "?";
	memset(&ss, 0, sizeof ss);
	int port = 0;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	}
	snprintf(c->peer, sizeof c->peer, ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
	c->peer_sa = ss;
}

static tconn *alloc(uv_loop_t *loop, const tconn_cbs *cbs, void *ud)
{
	tconn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->cbs = *cbs;
	c->ud = ud;
	if (uv_tcp_init(loop, &c->tcp) < 0) {
		free(c);
		return NULL;
	}
	uv_timer_init(loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles = 2;
	return c;
}

int tconn_start_tls(tconn *c, SSL_CTX *tls, bool server, const char *sni)
{
	c->tls = tio_new(tls, server, sni);
	if (!c->tls)
		return -ENOMEM;
	c->server = server;
	c->open = false;
	uv_timer_start(&c->timer, on_deadline, 10000, 0);
	if (!server) {
		tio_handshake(c->tls);
		if (flush_tls(c) < 0)
			return -EIO;
	}
	start_reading(c);
	return 0;
}

int tconn_accept(uv_stream_t *server, SSL_CTX *tls, const tconn_cbs *cbs, void *ud, tconn **out)
{
	tconn *c = alloc(server->loop, cbs, ud);
	int r;
	if (!c)
		return -ENOMEM;
	if ((r = uv_accept(server, (uv_stream_t *)&c->tcp)) < 0) {
		c->cbs.on_close = NULL; /* never reported to the caller */
		tconn_close(c);
		return r;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	set_peer(c);
	*out = c;
	if (tls)
		return tconn_start_tls(c, tls, true, NULL);
	c->open = true;
	start_reading(c);
	return 0;
}

static void on_connected(uv_connect_t *req, int status)
{
	tconn *c = req->data;
	if (c->closing)
		return;
	if (status < 0) {
		fail(c, status, uv_strerror(status));
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	set_peer(c);
	if (!c->tls) {
		finish_open(c);
		start_reading(c);
		return;
	}
	tio_handshake(c->tls);
	if (flush_tls(c) < 0) {
		fail(c, -EIO, "write failed");
		return;
	}
	start_reading(c);
}

int tconn_connect(uv_loop_t *loop, const struct sockaddr *addr, SSL_CTX *tls, const char *sni,
		  uint32_t timeout_ms, const tconn_cbs *cbs, void *ud, tconn **out)
{
	tconn *c = alloc(loop, cbs, ud);
	int r;
	if (!c)
		return -ENOMEM;
	if (tls && !(c->tls = tio_new(tls, false, sni))) {
		r = -ENOMEM;
		goto fail;
	}
	c->creq.data = c;
	if ((r = uv_tcp_connect(&c->creq, &c->tcp, addr, on_connected)) < 0)
		goto fail;
	uv_timer_start(&c->timer, on_deadline, timeout_ms ? timeout_ms : 30000, 0);
	*out = c;
	return 0;
fail:
	c->cbs.on_close = NULL;
	tconn_close(c);
	return r;
}

int tconn_adopt(uv_loop_t *loop, int fd, SSL_CTX *tls, bool server, const char *sni, const tconn_cbs *cbs,
		void *ud, tconn **out)
{
	tconn *c = alloc(loop, cbs, ud);
	int r;
	if (!c)
		return -ENOMEM;
	if ((r = uv_tcp_open(&c->tcp, fd)) < 0) {
		c->cbs.on_close = NULL;
		tconn_close(c);
		return r;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	set_peer(c);
	*out = c;
	if (tls)
		return tconn_start_tls(c, tls, server, sni);
	c->open = true;
	start_reading(c);
	return 0;
}

int tconn_write(tconn *c, const uint8_t *p, size_t n)
{
	int r;
	if (c->closing)
		return -EPIPE;
	if (!c->tls)
		return raw_write(c, p, n);
	if (c->queued + n > TCONN_HARD_CAP)
		return -ENOBUFS;
	if ((r = tio_write(c->tls, p, n)) < 0)
		return r;
	return flush_tls(c);
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
	tconn *c = req->data;
	(void)status;
	free(req);
	c->shut_pending = false;
	if (c->close_flushed && !c->closing)
		tconn_close(c);
}

int tconn_shutdown(tconn *c)
{
	uv_shutdown_t *req;
	int r;
	if (c->closing)
		return -EPIPE;
	if (c->tls) {
		tio_shutdown(c->tls);
		if ((r = flush_tls(c)) < 0)
			return r;
	}
	req = malloc(sizeof *req);
	if (!req)
		return -ENOMEM;
	req->data = c;
	/* libuv runs the shutdown after queued writes complete. */
	if ((r = uv_shutdown(req, (uv_stream_t *)&c->tcp, shutdown_done)) < 0)
		free(req);
	else
		c->shut_pending = true;
	return r;
}

void tconn_close_after_flush(tconn *c)
{
	if (!c || c->closing)
		return;
	if (c->queued == 0 && !c->shut_pending)
		tconn_close(c);
	else
		c->close_flushed = true;
}

void tconn_set_userdata(tconn *c, void *ud) { c->ud = ud; }
SSL *tconn_ssl(tconn *c) { return c->tls ? tio_ssl(c->tls) : NULL; }
uv_loop_t *tconn_loop(tconn *c) { return c->tcp.loop; }
const char *tconn_peer(const tconn *c) { return c->peer; }
const struct sockaddr *tconn_peer_addr(const tconn *c) { return (const struct sockaddr *)&c->peer_sa; }
const char *tconn_errstr(const tconn *c) { return c->err[0] ? c->err : "closed"; }
size_t tconn_queued(const tconn *c) { return c->queued; }
bool tconn_over_high_water(const tconn *c) { return c->queued > TCONN_HIGH_WATER; }
uint64_t tconn_bytes_in(const tconn *c) { return c->in; }
uint64_t tconn_bytes_out(const tconn *c) { return c->out; }
