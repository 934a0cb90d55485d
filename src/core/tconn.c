#include "core/tconn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tls13rec.h"
#include "core/tlsio.h"

struct tconn {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_timer_t timer; /* connect + handshake deadline */
	/* Writes are staged and go to the socket once per loop turn: prepare catches what timers and pending
	 * callbacks wrote before the loop blocks in poll, check what I/O callbacks wrote after it. */
	uv_prepare_t prep;
	uv_check_t check;
	tio *tls;
	struct wreq *stg; /* staged bytes: plaintext for TLS (encrypted at flush, so records come out full) */
	size_t inflight;  /* bytes handed to libuv, not yet written */
	size_t tls_out;   /* ciphertext in the TLS engine, not yet handed to libuv */
	tconn_cbs cbs;
	void *ud;
	bool server, open, closing, paused, high, reading, eof_seen;
	bool close_flushed, shut_pending, armed;
	int handles;
	int close_err;
	size_t high_water, low_water; /* TCONN_*_WATER unless tconn_set_water */
	uint64_t in, out;
	char peer[64];
	struct sockaddr_storage peer_sa;
	char err[256];
};

struct wreq {
	uv_write_t req;
	tconn *c;
	size_t len, cap, off;
	uint8_t *ext; /* bytes held elsewhere (ciphertext taken from the TLS engine), freed with the request */
	uint8_t data[];
};

static uint8_t *wbytes(struct wreq *w) { return w->ext ? w->ext : w->data; }

static void wfree(struct wreq *w)
{
	free(w->ext);
	free(w);
}

/* Staging grows to this before it is encrypted or written without waiting for the loop turn. */
#define STAGE_MAX (64u * 1024)

/* Set while our check/prepare callbacks run: a write made then (from a failure callback) flushes at once,
 * since a handle started during the check phase would only run after the next poll. */
static _Thread_local bool in_flush_phase;

static void finish_open(tconn *c);
static int flush_now(tconn *c);
static void arm(tconn *c);

static size_t queued(const tconn *c) { return c->inflight + c->tls_out + (c->stg ? c->stg->len : 0); }

static void handle_closed(uv_handle_t *h)
{
	tconn *c = h->data;
	if (--c->handles > 0)
		return;
	if (c->cbs.on_close)
		c->cbs.on_close(c, c->close_err, c->ud);
	tio_free(c->tls);
	free(c->stg);
	free(c);
}

void tconn_close(tconn *c)
{
	if (!c || c->closing)
		return;
	/* Bytes staged this turn (an answer, an alert) would have gone out synchronously before writes were
	 * staged: try once, never block, and only when nothing is in flight so the order holds. */
	if (!c->inflight) {
		if (c->tls) {
			const uint8_t *p;
			size_t n;
			int k;
			if (c->stg && c->stg->len && tio_handshake_done(c->tls) &&
			    tio_write(c->tls, c->stg->data, c->stg->len) == 0)
				c->stg->len = 0;
			if ((n = tio_out_peek(c->tls, &p)) > 0) {
				uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
				if ((k = uv_try_write((uv_stream_t *)&c->tcp, &b, 1)) > 0)
					tio_out_consume(c->tls, (size_t)k);
			}
		} else if (c->stg && c->stg->len) {
			uv_buf_t b = uv_buf_init((char *)c->stg->data, (unsigned)c->stg->len);
			(void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		}
	}
	c->closing = true;
	uv_close((uv_handle_t *)&c->prep, handle_closed);
	uv_close((uv_handle_t *)&c->check, handle_closed);
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
	c->inflight -= w->len - w->off;
	wfree(w);
	if (c->closing)
		return;
	if (status < 0) {
		fail(c, status, uv_strerror(status));
		return;
	}
	if (c->close_flushed && queued(c) == 0 && !c->shut_pending) {
		tconn_close(c);
		return;
	}
	if (c->high && queued(c) <= c->low_water) {
		c->high = false;
		if (c->cbs.on_drain)
			c->cbs.on_drain(c, c->ud);
	}
}

/* Sends w (len bytes in w->data); takes ownership of w. Tries the socket first when nothing is in flight,
 * so the common case neither waits for a writable event nor keeps the buffer. */
static int submit_tried(tconn *c, struct wreq *w, bool tried);
static int submit(tconn *c, struct wreq *w) { return submit_tried(c, w, false); }

static int submit_tried(tconn *c, struct wreq *w, bool tried)
{
	uv_buf_t b;
	int r;
	w->c = c;
	w->off = 0;
	c->out += w->len;
	if (!c->inflight && !tried) {
		b = uv_buf_init((char *)wbytes(w), (unsigned)w->len);
		r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		if (r == (int)w->len) {
			wfree(w);
			return 0;
		}
		if (r > 0)
			w->off = (size_t)r;
		else if (r != UV_EAGAIN) {
			wfree(w);
			return r;
		}
	}
	b = uv_buf_init((char *)wbytes(w) + w->off, (unsigned)(w->len - w->off));
	r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_done);
	if (r < 0) {
		wfree(w);
		return r;
	}
	c->inflight += w->len - w->off;
	return 0;
}

/* Room for n more staged bytes; a new staging buffer is sized to what is asked, up to STAGE_MAX. */
static int stage_reserve(tconn *c, size_t n)
{
	struct wreq *w = c->stg;
	size_t need = (w ? w->len : 0) + n, cap;
	if (w && need <= w->cap)
		return 0;
	cap = w ? w->cap * 2 : 4096;
	while (cap < need)
		cap *= 2;
	if (!(w = realloc(w, sizeof *w + cap)))
		return -ENOMEM;
	if (!c->stg) {
		w->len = 0;
		w->ext = NULL;
	}
	w->cap = cap;
	c->stg = w;
	return 0;
}

/* Encrypts staged plaintext into the TLS engine. */
static int seal_staged(tconn *c)
{
	size_t before;
	int r;
	if (!c->stg || !c->stg->len)
		return 0;
	before = tio_out_pending(c->tls);
	if ((r = tio_write(c->tls, c->stg->data, c->stg->len)) < 0)
		return r;
	c->stg->len = 0;
	c->tls_out += tio_out_pending(c->tls) - before;
	return 0;
}

/* Everything staged to the socket now. */
static int flush_now(tconn *c)
{
	int r;
	if (c->closing)
		return 0;
	if (!c->tls) {
		struct wreq *w = c->stg;
		if (!w || !w->len)
			return 0;
		c->stg = NULL;
		return submit(c, w);
	}
	if ((r = seal_staged(c)) < 0)
		return r;
	c->tls_out = 0;
	/* All pending ciphertext goes out as one write, straight from the TLS engine's queue; what the socket
	 * does not take is handed to libuv without a copy. */
	if (tio_out_pending(c->tls)) {
		struct wreq *w;
		const uint8_t *p;
		size_t n = tio_out_peek(c->tls, &p);
		if (!c->inflight) {
			uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
			int k = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
			if (k < 0 && k != UV_EAGAIN)
				return k;
			if (k > 0) {
				c->out += (size_t)k;
				tio_out_consume(c->tls, (size_t)k);
			}
		}
		if (tio_out_pending(c->tls)) {
			if (!(w = malloc(sizeof *w)))
				return -ENOMEM;
			w->ext = tio_out_detach(c->tls, &w->len);
			w->cap = w->len;
			if ((r = submit_tried(c, w, true)) < 0)
				return r;
		}
	}
	free(c->stg); /* sealed, so empty: an idle connection keeps no buffer */
	c->stg = NULL;
	return 0;
}

static void disarm(tconn *c)
{
	if (!c->armed)
		return;
	c->armed = false;
	uv_prepare_stop(&c->prep);
	uv_check_stop(&c->check);
}

static void flush_phase(tconn *c)
{
	int r;
	disarm(c);
	if (c->closing)
		return;
	in_flush_phase = true;
	r = flush_now(c);
	if (r < 0)
		fail(c, r, r == -ENOMEM ? "out of memory" : uv_strerror(r));
	in_flush_phase = false;
}

static void on_prepare(uv_prepare_t *h) { flush_phase(h->data); }
static void on_check(uv_check_t *h) { flush_phase(h->data); }

/* Staged bytes go out at the end of this loop turn. */
static void arm(tconn *c)
{
	if (c->armed || c->closing)
		return;
	if (in_flush_phase) {
		int r = flush_now(c);
		if (r < 0)
			fail(c, r, r == -ENOMEM ? "out of memory" : uv_strerror(r));
		return;
	}
	c->armed = true;
	uv_prepare_start(&c->prep, on_prepare);
	uv_check_start(&c->check, on_check);
}

static void note_high(tconn *c)
{
	if (queued(c) > c->high_water)
		c->high = true;
}

static int raw_write(tconn *c, const uint8_t *p, size_t n)
{
	int r;
	if (!n)
		return 0;
	if (queued(c) + n > TCONN_HARD_CAP)
		return -ENOBUFS;
	if ((r = stage_reserve(c, n)) < 0)
		return r;
	memcpy(c->stg->data + c->stg->len, p, n);
	c->stg->len += n;
	note_high(c);
	if (c->stg->len >= STAGE_MAX)
		return flush_now(c);
	arm(c);
	return 0;
}

static void deliver_plain(tconn *c)
{
	uint8_t buf[TREC_MAX_CIPHER]; /* a whole record body opens straight into it: no spill copy */
	int r;
	/* A paused reader still gets what TLS already decrypted only once resumed. */
	while (!c->closing && !c->paused) {
		r = tio_read(c->tls, buf, sizeof buf);
		if (tio_out_pending(c->tls))
			arm(c); /* handshake flight, alerts, key updates */
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
			/* Nothing after close_notify is ever read: stop feeding TLS, or its input grows unbounded. */
			if (c->reading) {
				uv_read_stop((uv_stream_t *)&c->tcp);
				c->reading = false;
			}
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
	c->high_water = TCONN_HIGH_WATER;
	c->low_water = TCONN_LOW_WATER;
	if (uv_tcp_init(loop, &c->tcp) < 0) {
		free(c);
		return NULL;
	}
	uv_timer_init(loop, &c->timer);
	uv_prepare_init(loop, &c->prep);
	uv_check_init(loop, &c->check);
	/* Armed only for the rest of a loop turn: they must not keep the loop alive on their own. */
	uv_unref((uv_handle_t *)&c->prep);
	uv_unref((uv_handle_t *)&c->check);
	c->tcp.data = c->timer.data = c->prep.data = c->check.data = c;
	c->handles = 4;
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
		arm(c);
	}
	start_reading(c);
	return 0;
}

/* c is connected (accepted or adopted): starts TLS or reading. On failure c is closed without any callback
 * (the caller never saw it) and *out stays NULL; its descriptor goes with the handle. */
static int start_owned(tconn *c, SSL_CTX *tls, bool server, const char *sni, tconn **out)
{
	int r;
	uv_tcp_nodelay(&c->tcp, 1);
	set_peer(c);
	if (tls) {
		if ((r = tconn_start_tls(c, tls, server, sni)) < 0) {
			c->cbs.on_close = NULL;
			tconn_close(c);
			return r;
		}
	} else {
		c->open = true;
		start_reading(c);
	}
	*out = c;
	return 0;
}

int tconn_accept(uv_stream_t *server, SSL_CTX *tls, const tconn_cbs *cbs, void *ud, tconn **out)
{
	tconn *c;
	int r;
	*out = NULL;
	if (!(c = alloc(server->loop, cbs, ud)))
		return -ENOMEM;
	if ((r = uv_accept(server, (uv_stream_t *)&c->tcp)) < 0) {
		c->cbs.on_close = NULL; /* never reported to the caller */
		tconn_close(c);
		return r;
	}
	return start_owned(c, tls, true, NULL, out);
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
	arm(c);
	start_reading(c);
}

int tconn_connect(uv_loop_t *loop, const struct sockaddr *addr, SSL_CTX *tls, const char *sni,
		  uint32_t timeout_ms, const tconn_cbs *cbs, void *ud, tconn **out)
{
	tconn *c;
	int r;
	*out = NULL;
	if (!(c = alloc(loop, cbs, ud)))
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
	tconn *c;
	int r;
	*out = NULL;
	if (!(c = alloc(loop, cbs, ud))) {
		close(fd); /* ownership was taken: a failure must not leak it */
		return -ENOMEM;
	}
	if ((r = uv_tcp_open(&c->tcp, fd)) < 0) {
		if (r != UV_EEXIST)
			close(fd); /* not taken by the handle (EEXIST: another handle of this loop has it) */
		c->cbs.on_close = NULL;
		tconn_close(c);
		return r;
	}
	return start_owned(c, tls, server, sni, out);
}

int tconn_write(tconn *c, const uint8_t *p, size_t n)
{
	int r;
	if (c->closing)
		return -EPIPE;
	if (!c->tls)
		return raw_write(c, p, n);
	if (!n)
		return 0;
	if (queued(c) + n > TCONN_HARD_CAP)
		return -ENOBUFS;
	/* Plaintext is staged and sealed in bulk so that small frames share full records. */
	if (c->stg && c->stg->len + n > STAGE_MAX && (r = seal_staged(c)) < 0)
		return r;
	if (n >= STAGE_MAX) {
		size_t before = tio_out_pending(c->tls);
		if ((r = tio_write(c->tls, p, n)) < 0)
			return r;
		c->tls_out += tio_out_pending(c->tls) - before;
	} else {
		if ((r = stage_reserve(c, n)) < 0)
			return r;
		memcpy(c->stg->data + c->stg->len, p, n);
		c->stg->len += n;
	}
	note_high(c);
	if (c->tls_out >= STAGE_MAX)
		return flush_now(c);
	arm(c);
	return 0;
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
		if ((r = seal_staged(c)) < 0)
			return r;
		tio_shutdown(c->tls);
	}
	/* libuv orders the shutdown after the writes it holds: staged bytes must be handed over first. */
	if ((r = flush_now(c)) < 0)
		return r;
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
	if (queued(c) == 0 && !c->shut_pending)
		tconn_close(c);
	else
		c->close_flushed = true;
}

void tconn_set_userdata(tconn *c, void *ud) { c->ud = ud; }
SSL *tconn_ssl(tconn *c) { return c->tls ? tio_ssl(c->tls) : NULL; }

void tconn_alpn(tconn *c, const uint8_t **p, unsigned *len)
{
	if (c->tls) {
		tio_alpn(c->tls, p, len);
		return;
	}
	*p = NULL;
	*len = 0;
}
uv_loop_t *tconn_loop(tconn *c) { return c->tcp.loop; }
const char *tconn_peer(const tconn *c) { return c->peer; }
const struct sockaddr *tconn_peer_addr(const tconn *c) { return (const struct sockaddr *)&c->peer_sa; }
const char *tconn_errstr(const tconn *c) { return c->err[0] ? c->err : "closed"; }
size_t tconn_queued(const tconn *c) { return queued(c); }
bool tconn_over_high_water(const tconn *c) { return queued(c) > c->high_water; }

void tconn_set_water(tconn *c, size_t high, size_t low)
{
	c->high_water = high;
	c->low_water = low;
}
uint64_t tconn_bytes_in(const tconn *c) { return c->in; }
uint64_t tconn_bytes_out(const tconn *c) { return c->out; }
