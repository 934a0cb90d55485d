/* The connector against an in-process fake edge: TLS 1.3 listener (tconn), the registration line, then an
 * nghttp2 CLIENT that opens CONNECT streams, as the real edge does. The stream backend is an echo (or a
 * holder that never consumes) with the stream_backend semantics of core/stream.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/admin.h"
#include "core/log.h"
#include "core/tconn.h"
#include "core/tlsio.h"
#include "gateway/certs.h"
#include "tunnel/connector.h"
#include "tunnel/reg.h"
#include "uvtest.h"

static char tmpd[64];

/* ------------------------------------------------------------------ echo / hold backend */

struct fpc {
	const stream_ops *ops;
	void *ctx;
	struct fpc *next;
	size_t fed, echoed;
	bool hold, eof, closing;
	int drained;
};

static struct {
	struct fpc *conns;
	int opened, aborted, closed, drained;
	bool hold;       /* new streams keep what they are fed and never report it consumed */
	bool refuse;     /* open returns NULL */
	size_t write_n;  /* on open, write this many bytes toward the edge (then shut down once fed EOF) */
	bool ignore_high; /* the bulk write ignores high water (a faulty backend); a failed write closes */
	int write_rc;    /* last ops->write result of the bulk write */
	bool saw_high;
	uv_timer_t closer;
} be;

static void be_remove(struct fpc *f)
{
	for (struct fpc **pp = &be.conns; *pp; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			return;
		}
}

static void closer_cb(uv_timer_t *t)
{
	struct fpc *f, *next;
	(void)t;
	for (f = be.conns; f; f = next) {
		next = f->next;
		if (f->closing) {
			be_remove(f);
			be.closed++;
			f->ops->close(f->ctx);
			free(f);
		}
	}
}

static void bulk_write(struct fpc *f)
{
	static uint8_t chunk[16384];
	while (f->echoed < be.write_n && (be.ignore_high || !f->ops->over_high_water(f->ctx))) {
		size_t n = be.write_n - f->echoed < sizeof chunk ? be.write_n - f->echoed : sizeof chunk;
		memset(chunk, 'a' + (int)(f->echoed / sizeof chunk) % 26, n);
		be.write_rc = f->ops->write(f->ctx, chunk, n);
		if (be.write_rc < 0) {
			/* Fatal for the connection (core/stream.h): close it, from the loop. */
			f->closing = true;
			uv_timer_start(&be.closer, closer_cb, 1, 0);
			return;
		}
		f->echoed += n;
	}
	if (f->ops->over_high_water(f->ctx))
		be.saw_high = true;
}

static stream_conn *be_open(void *ud, const stream_ops *ops, void *ctx, const char *client_addr)
{
	struct fpc *f;
	(void)ud;
	assert_non_null(client_addr);
	assert_string_equal(client_addr, "192.0.2.7:5555");
	if (be.refuse)
		return NULL;
	f = calloc(1, sizeof *f);
	f->ops = ops;
	f->ctx = ctx;
	f->hold = be.hold;
	f->next = be.conns;
	be.conns = f;
	be.opened++;
	return (stream_conn *)f;
}

static void be_feed(stream_conn *c, const uint8_t *p, size_t n)
{
	struct fpc *f = (struct fpc *)c;
	f->fed += n;
	if (f->hold || be.write_n)
		return;
	assert_int_equal(f->ops->write(f->ctx, p, n), 0);
	f->ops->consumed(f->ctx, n);
}

static void be_eof(stream_conn *c)
{
	struct fpc *f = (struct fpc *)c;
	f->eof = true;
	if (f->hold)
		return; /* a holder only records it: the test resets the stream */
	if (be.write_n) {
		bulk_write(f);
		return;
	}
	f->ops->shutdown(f->ctx);
	f->closing = true;
	uv_timer_start(&be.closer, closer_cb, 1, 0);
}

static void be_drained(stream_conn *c)
{
	struct fpc *f = (struct fpc *)c;
	f->drained++;
	be.drained++;
	if (be.write_n) {
		bulk_write(f);
		if (f->echoed >= be.write_n && !f->closing) {
			f->ops->shutdown(f->ctx);
			f->closing = true;
			uv_timer_start(&be.closer, closer_cb, 1, 0);
		}
	}
}

static void be_abort(stream_conn *c)
{
	struct fpc *f = (struct fpc *)c;
	be_remove(f);
	be.aborted++;
	free(f);
}

/* Releases n held bytes of every holding stream. */
static void be_release(void)
{
	for (struct fpc *f = be.conns; f; f = f->next)
		if (f->hold && f->fed > f->echoed) {
			size_t n = f->fed - f->echoed;
			f->echoed += n;
			f->ops->consumed(f->ctx, n);
		}
}

static const stream_backend echo_backend = { be_open, be_feed, be_eof, be_drained, be_abort, NULL };

/* ------------------------------------------------------------------ fake edge */

#define MAXS 16

struct fstream {
	int32_t id;
	int status;
	size_t got;
	uint8_t *data;
	size_t cap;
	bool closed, eof;
	uint32_t close_code;
	const uint8_t *send;
	size_t send_len, sent;
	bool send_eof;
};

struct fedge;

struct fconn {
	struct fedge *e;
	tconn *tc;
	reg_linebuf lb;
	reg_request req;
	nghttp2_session *h2;
	bool registered, closed, goaway;
	int pings_unacked;      /* manual_ping: PINGs received, not acknowledged yet */
	uint8_t ping_opaque[8]; /* the last one's payload, echoed in the ACK */
	uint8_t fbuf[1 << 20];  /* open_on_notice: bytes of an incomplete frame */
	size_t flen;
	struct fstream *late;   /* open_on_notice: the stream opened after the drain notice */
	struct fstream st[MAXS];
	int nst;
	struct fconn *next;
};

struct fedge {
	uv_tcp_t lsn;
	int port;
	SSL_CTX *tls;
	const char *answer; /* registration answer; NULL = never answer */
	struct fconn *conns;
	int accepted, registrations;
	bool auto_consume;
	bool manual_ping;    /* PINGs are acknowledged by e_on_data, after anything it opens */
	bool open_on_notice; /* on a drain notice, open a stream before acknowledging the PING that came with it */
	char last_token[512];
	uint32_t last_slot;
	bool listening;
};

static struct fstream *fs_get(struct fconn *fc, int32_t id)
{
	for (int i = 0; i < fc->nst; i++)
		if (fc->st[i].id == id)
			return &fc->st[i];
	return NULL;
}

static ssize_t e_send(nghttp2_session *h2, const uint8_t *d, size_t n, int flags, void *ud)
{
	struct fconn *fc = ud;
	(void)h2;
	(void)flags;
	if (fc->closed || !fc->tc)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	if (tconn_write(fc->tc, d, n) < 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return (ssize_t)n;
}

static int e_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
		    const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct fconn *fc = ud;
	struct fstream *s = fs_get(fc, f->hd.stream_id);
	(void)h2;
	(void)flags;
	(void)valuelen;
	if (s && namelen == 7 && !memcmp(name, ":status", 7))
		s->status = atoi((const char *)value);
	return 0;
}

static int e_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *d, size_t n, void *ud)
{
	struct fconn *fc = ud;
	struct fstream *s = fs_get(fc, id);
	(void)flags;
	if (!s)
		return 0;
	if (s->got + n > s->cap) {
		s->cap = (s->got + n) * 2;
		s->data = realloc(s->data, s->cap);
	}
	memcpy(s->data + s->got, d, n);
	s->got += n;
	if (fc->e->auto_consume)
		nghttp2_session_consume(h2, id, n);
	return 0;
}

static int e_frame(nghttp2_session *h2, const nghttp2_frame *f, void *ud)
{
	struct fconn *fc = ud;
	struct fstream *s = fs_get(fc, f->hd.stream_id);
	(void)h2;
	if (s && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && (f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS))
		s->eof = true;
	if (f->hd.type == NGHTTP2_GOAWAY)
		fc->goaway = true;
	if (f->hd.type == NGHTTP2_PING && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
		fc->pings_unacked++;
		memcpy(fc->ping_opaque, f->ping.opaque_data, 8);
	}
	return 0;
}

static int e_close(nghttp2_session *h2, int32_t id, uint32_t code, void *ud)
{
	struct fconn *fc = ud;
	struct fstream *s = fs_get(fc, id);
	(void)h2;
	if (s) {
		s->closed = true;
		s->close_code = code;
	}
	return 0;
}

static void e_flush(struct fconn *fc)
{
	if (fc->h2 && !fc->closed)
		nghttp2_session_send(fc->h2);
}

static struct fstream *e_open_stream(struct fconn *fc, const void *data, size_t n, bool eof);

static void e_on_data(tconn *tc, const uint8_t *p, size_t n, void *ud)
{
	struct fconn *fc = ud;
	(void)tc;
	if (!fc->registered) {
		ssize_t used = reg_line_feed(&fc->lb, p, n);
		char err[128], line[600];
		nghttp2_session_callbacks *cb;
		nghttp2_option *opt;
		assert_true(used >= 0);
		if (!fc->lb.done)
			return;
		assert_int_equal(reg_request_parse(fc->lb.buf, &fc->req, err, sizeof err), 0);
		snprintf(fc->e->last_token, sizeof fc->e->last_token, "%s", fc->req.token);
		fc->e->last_slot = fc->req.slot;
		if (!fc->e->answer)
			return;
		snprintf(line, sizeof line, "%s\n", fc->e->answer);
		tconn_write(tc, (const uint8_t *)line, strlen(line));
		if (!strstr(fc->e->answer, "\"ok\":true")) {
			tconn_shutdown(tc);
			return;
		}
		fc->registered = true;
		fc->e->registrations++;
		nghttp2_session_callbacks_new(&cb);
		nghttp2_session_callbacks_set_send_callback(cb, e_send);
		nghttp2_session_callbacks_set_on_header_callback(cb, e_header);
		nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, e_data);
		nghttp2_session_callbacks_set_on_frame_recv_callback(cb, e_frame);
		nghttp2_session_callbacks_set_on_stream_close_callback(cb, e_close);
		nghttp2_option_new(&opt);
		nghttp2_option_set_no_auto_window_update(opt, 1);
		if (fc->e->manual_ping)
			nghttp2_option_set_no_auto_ping_ack(opt, 1);
		nghttp2_session_client_new2(&fc->h2, cb, fc, opt);
		nghttp2_option_del(opt);
		nghttp2_session_callbacks_del(cb);
		nghttp2_submit_settings(fc->h2, NGHTTP2_FLAG_NONE, NULL, 0);
		p += used;
		n -= (size_t)used;
	}
	if (n && fc->h2 && fc->e->open_on_notice && !fc->late) {
		/* Frame by frame, to open a stream just before the drain notice is read: an edge whose stream was
		 * already on the wire when the connector decided to drain. */
		assert_true(fc->flen + n <= sizeof fc->fbuf);
		memcpy(fc->fbuf + fc->flen, p, n);
		fc->flen += n;
		n = 0;
		while (fc->flen >= 9 && fc->h2) {
			size_t fl = 9 + ((size_t)fc->fbuf[0] << 16 | (size_t)fc->fbuf[1] << 8 | fc->fbuf[2]);
			if (fc->flen < fl)
				break;
			if (fc->fbuf[3] == NGHTTP2_GOAWAY && !fc->late)
				fc->late = e_open_stream(fc, "late", 4, false);
			assert_true(nghttp2_session_mem_recv(fc->h2, fc->fbuf, fl) >= 0);
			memmove(fc->fbuf, fc->fbuf + fl, fc->flen - fl);
			fc->flen -= fl;
		}
		if (fc->late && fc->flen) {
			assert_true(nghttp2_session_mem_recv(fc->h2, fc->fbuf, fc->flen) >= 0);
			fc->flen = 0;
		}
	}
	if (n && fc->h2)
		assert_true(nghttp2_session_mem_recv(fc->h2, p, n) >= 0);
	e_flush(fc);
	if (fc->e->manual_ping && fc->pings_unacked) {
		for (; fc->pings_unacked > 0; fc->pings_unacked--)
			nghttp2_submit_ping(fc->h2, NGHTTP2_FLAG_ACK, fc->ping_opaque);
		e_flush(fc);
	}
}

static void e_on_close(tconn *tc, int err, void *ud)
{
	struct fconn *fc = ud;
	(void)tc;
	(void)err;
	fc->closed = true;
	fc->tc = NULL;
}

static void e_on_eof(tconn *tc, void *ud)
{
	(void)ud;
	tconn_close(tc);
}

static const tconn_cbs e_cbs = { NULL, e_on_data, e_on_eof, NULL, e_on_close };

static void e_on_conn(uv_stream_t *lsn, int status)
{
	struct fedge *e = lsn->data;
	struct fconn *fc = calloc(1, sizeof *fc);
	assert_int_equal(status, 0);
	fc->e = e;
	assert_int_equal(tconn_accept(lsn, e->tls, &e_cbs, fc, &fc->tc), 0);
	fc->next = e->conns;
	e->conns = fc;
	e->accepted++;
}

static void e_listen(struct fedge *e)
{
	struct sockaddr_in sa;
	struct sockaddr_storage got;
	int len = sizeof got;
	uv_tcp_init(loop, &e->lsn);
	e->lsn.data = e;
	uv_ip4_addr("127.0.0.1", e->port, &sa);
	assert_int_equal(uv_tcp_bind(&e->lsn, (struct sockaddr *)&sa, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&e->lsn, 64, e_on_conn), 0);
	uv_tcp_getsockname(&e->lsn, (struct sockaddr *)&got, &len);
	e->port = ntohs(((struct sockaddr_in *)&got)->sin_port);
	e->listening = true;
}

static void e_init(struct fedge *e, const char *pki, const char *answer)
{
	char cert[256], key[256], err[256];
	memset(e, 0, sizeof *e);
	snprintf(cert, sizeof cert, "%s/%s", pki, CERTS_SERVER_CERT);
	snprintf(key, sizeof key, "%s/%s", pki, CERTS_SERVER_KEY);
	e->tls = tio_server_ctx(cert, key, true, err, sizeof err);
	assert_non_null(e->tls);
	e->answer = answer;
	e->auto_consume = true;
	e_listen(e);
}

static void e_lsn_closed(uv_handle_t *h) { ((struct fedge *)h->data)->listening = false; }

static void e_stop_listening(struct fedge *e)
{
	if (e->listening)
		uv_close((uv_handle_t *)&e->lsn, e_lsn_closed);
}

static void e_drop_conns(struct fedge *e)
{
	for (struct fconn *fc = e->conns; fc; fc = fc->next)
		if (!fc->closed && fc->tc)
			tconn_close(fc->tc);
}

static bool e_all_closed(void *ud)
{
	struct fedge *e = ud;
	for (struct fconn *fc = e->conns; fc; fc = fc->next)
		if (!fc->closed)
			return false;
	return !e->listening;
}

static void e_free(struct fedge *e);

static ssize_t e_read_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *ud)
{
	struct fstream *s = src->ptr;
	size_t n = s->send_len - s->sent;
	(void)h2;
	(void)id;
	(void)ud;
	if (n > len)
		n = len;
	if (!n && !s->send_eof)
		return NGHTTP2_ERR_DEFERRED;
	memcpy(buf, s->send + s->sent, n);
	s->sent += n;
	if (s->sent == s->send_len && s->send_eof)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* Opens a CONNECT stream carrying data (eof: END_STREAM after it). */
static struct fstream *e_open_stream(struct fconn *fc, const void *data, size_t n, bool eof)
{
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"CONNECT", 7, 7, 0 },
		{ (uint8_t *)":authority", (uint8_t *)"mcp.abc.tun.test:443", 10, 20, 0 },
		{ (uint8_t *)"postern-client-addr", (uint8_t *)"192.0.2.7:5555", 19, 14, 0 },
		{ (uint8_t *)"postern-entry", (uint8_t *)"sni", 13, 3, 0 },
	};
	struct fstream *s = &fc->st[fc->nst];
	nghttp2_data_provider dp;
	assert_true(fc->nst < MAXS);
	memset(s, 0, sizeof *s);
	s->send = data;
	s->send_len = n;
	s->send_eof = eof;
	dp.source.ptr = s;
	dp.read_callback = e_read_cb;
	s->id = nghttp2_submit_request(fc->h2, NULL, nv, 4, &dp, NULL);
	assert_true(s->id > 0);
	fc->nst++;
	e_flush(fc);
	return s;
}

/* ------------------------------------------------------------------ harness */

static bool is_ready(void *ud) { return ctr_ready(ud); }
static bool not_ready(void *ud) { return !ctr_ready(ud); }

static char pki[128], pki_other[128], tokfile[128];

static int group_setup(void **st)
{
	certs_result r;
	char err[256];
	FILE *f;
	(void)st;
	log_set_level(getenv("TEST_VERBOSE") ? LOG_DEBUG : LOG_OFF);
	uvt_init(tmpd);
	uv_timer_init(loop, &be.closer);
	uvt_keep(&be.closer);
	snprintf(tmpd, sizeof tmpd, "/tmp/postern-ctr-XXXXXX");
	if (!mkdtemp(tmpd))
		return -1;
	snprintf(pki, sizeof pki, "%s/edge", tmpd);
	snprintf(pki_other, sizeof pki_other, "%s/other", tmpd);
	if (certs_init(pki, "edge.test", time(NULL), &r, err, sizeof err) < 0 ||
	    certs_init(pki_other, "edge.test", time(NULL), &r, err, sizeof err) < 0)
		return -1;
	snprintf(tokfile, sizeof tokfile, "%s/token", tmpd);
	f = fopen(tokfile, "w");
	fputs("pt1_secret-token-value\n", f);
	fclose(f);
	chmod(tokfile, 0600);
	return 0;
}

static char *edge_list[4];
static char edge_bufs[4][64];

static void cfg_for(ctr_config *cfg, struct fedge **edges, int n, const char *ca_pki)
{
	static char ca[256];
	assert_int_equal(ctr_config_init(cfg), 0);
	for (int i = 0; i < n; i++) {
		snprintf(edge_bufs[i], sizeof edge_bufs[i], "127.0.0.1:%d", edges[i]->port);
		edge_list[i] = edge_bufs[i];
	}
	edge_list[n] = NULL;
	cfg->edges = edge_list;
	cfg->n_edges = (size_t)n;
	snprintf(ca, sizeof ca, "%s/%s", ca_pki, CERTS_CA_CERT);
	cfg->edge_ca_file = ca;
	cfg->edge_server_name = "connect.edge.test";
	cfg->token_file = tokfile;
	cfg->connections = 1;
	cfg->ping_interval_ms = 200;
	cfg->ping_timeout_ms = 400;
	cfg->backoff_base_ms = 50;
	cfg->backoff_cap_ms = 200;
	cfg->shutdown_timeout_ms = 2000;
}

static void cfg_release(ctr_config *cfg)
{
	free(cfg->metrics_listen);
}

static void ctr_stop(ctr *c)
{
	ctr_free(c);
	run_for(30);
}

static void e_free(struct fedge *e)
{
	struct fconn *fc, *next;
	e_stop_listening(e);
	e_drop_conns(e);
	run_until(e_all_closed, e, 2000);
	for (fc = e->conns; fc; fc = next) {
		next = fc->next;
		for (int i = 0; i < fc->nst; i++)
			free(fc->st[i].data);
		if (fc->h2)
			nghttp2_session_del(fc->h2);
		reg_request_wipe(&fc->req);
		free(fc);
	}
	SSL_CTX_free(e->tls);
	e->conns = NULL;
}

static struct fconn *live_conn(struct fedge *e)
{
	for (struct fconn *fc = e->conns; fc; fc = fc->next)
		if (fc->registered && !fc->closed)
			return fc;
	return NULL;
}

static bool stream_done(void *ud)
{
	struct fstream *s = ud;
	return s->closed;
}

static void reset_backend(void)
{
	assert_null(be.conns);
	be.opened = be.aborted = be.closed = be.drained = 0;
	be.hold = be.refuse = be.saw_high = be.ignore_high = false;
	be.write_n = 0;
	be.write_rc = 0;
}

/* ------------------------------------------------------------------ tests */

static const char *OK = "{\"ok\":true,\"tunnel_id\":\"t1\",\"domain\":\"t1.tun.test\",\"edge_id\":\"e1\"}";

static void test_register_and_echo(void **st)
{
	struct fedge e, *ev[] = { &e };
	ctr_config cfg;
	char err[256];
	ctr *c;
	struct fconn *fc;
	struct fstream *s;
	ctr_stats stats;
	static const char msg[] = "hello through the tunnel";
	(void)st;
	reset_backend();
	e_init(&e, pki, OK);
	cfg_for(&cfg, ev, 1, pki);
	c = ctr_new(loop, &cfg, &echo_backend, err, sizeof err);
	assert_non_null(c);
	assert_false(ctr_ready(c));
	assert_int_equal(ctr_start(c), 0);
	assert_true(run_until(is_ready, c, 3000));
	assert_string_equal(e.last_token, "pt1_secret-token-value");
	assert_int_equal(e.last_slot, 0);
	fc = live_conn(&e);
	assert_non_null(fc);
	assert_int_equal(fc->req.v, 1);
	assert_int_equal(strlen(fc->req.connector_id), 36);
	assert_string_equal(fc->req.connector_id, ctr_connector_id(c));

	s = e_open_stream(fc, msg, sizeof msg - 1, true);
	assert_true(run_until(stream_done, s, 3000));
	assert_int_equal(s->status, 200);
	assert_true(s->eof);
	assert_int_equal(s->close_code, 0);
	assert_int_equal(s->got, sizeof msg - 1);
	assert_memory_equal(s->data, msg, sizeof msg - 1);
	run_for(20);
	assert_int_equal(be.opened, 1);
	assert_int_equal(be.closed, 1);
	assert_int_equal(be.aborted, 0);
	ctr_get_stats(c, &stats);
	assert_int_equal(stats.streams_total, 1);
	assert_int_equal(stats.streams_active, 0);
	assert_int_equal(stats.bytes_in, sizeof msg - 1);
	assert_int_equal(stats.bytes_out, sizeof msg - 1);
	assert_true(stats.pings_ok >= 1);

	/* Refused by the backend: 503. */
	be.refuse = true;
	s = e_open_stream(fc, "x", 1, true);
	assert_true(run_until(stream_done, s, 3000));
	assert_int_equal(s->status, 503);
	be.refuse = false;

	/* The edge resets a stream: the backend is aborted. */
	be.hold = true;
	s = e_open_stream(fc, "abc", 3, false);
	run_for(50);
	assert_int_equal(s->status, 200);
	nghttp2_submit_rst_stream(fc->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
	e_flush(fc);
	run_for(50);
	assert_int_equal(be.aborted, 1);
	assert_null(be.conns);

	ctr_stop(c);
	e_free(&e);
	cfg_release(&cfg);
}

static bool edge_window_zero(void *ud)
{
	struct fconn *fc = ud;
	return fc->nst && nghttp2_session_get_stream_remote_window_size(fc->h2, fc->st[fc->nst - 1].id) == 0;
}

static bool all_sent(void *ud)
{
	struct fstream *s = ud;
	return s->sent == s->send_len;
}

static void test_flow_control_bounds_memory(void **st)
{
	struct fedge e, *ev[] = { &e };
	ctr_config cfg;
	char err[256];
	ctr *c;
	struct fconn *fc;
	struct fstream *s;
	size_t big = 1024 * 1024;
	uint8_t *buf = malloc(big);
	(void)st;
	reset_backend();
	memset(buf, 'z', big);
	e_init(&e, pki, OK);
	cfg_for(&cfg, ev, 1, pki);
	c = ctr_new(loop, &cfg, &echo_backend, err, sizeof err);
	assert_non_null(c);
	ctr_start(c);
	assert_true(run_until(is_ready, c, 3000));
	fc = live_conn(&e);

	/* A backend that does not consume: the edge can send exactly one stream window, no more. */
	be.hold = true;
	s = e_open_stream(fc, buf, big, true);
	assert_true(run_until(edge_window_zero, fc, 3000));
	run_for(100);
	assert_non_null(be.conns);
	assert_int_equal(be.conns->fed, cfg.stream_window);
	assert_int_equal(s->sent, cfg.stream_window);
	/* Consumed bytes reopen the window: everything arrives eventually. */
	for (int i = 0; i < 100 && s->sent < big; i++) {
		be_release();
		run_for(10);
	}
	assert_true(run_until(all_sent, s, 3000));
	be_release();
	run_for(20);
	assert_int_equal(be.conns->fed, big);
	nghttp2_submit_rst_stream(fc->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
	e_flush(fc);
	run_for(30);
	assert_null(be.conns);
	be.hold = false;

	/* Output: the backend writes 2 MiB; the edge reads slowly; the backend sees high water and drained. */
	e.auto_consume = false;
	be.write_n = 2 * 1024 * 1024;
	s = e_open_stream(fc, "go", 2, true);
	run_for(100);
	assert_true(be.saw_high);
	assert_int_equal(be.write_rc, 0);
	/* The edge consumes in steps: the stream drains and the backend continues. */
	{
		size_t done = 0;
		for (int i = 0; i < 1000 && !s->closed; i++) {
			size_t n = s->got - done > 64 * 1024 ? 64 * 1024 : s->got - done;
			if (n) {
				nghttp2_session_consume(fc->h2, s->id, n);
				done += n;
			}
			e_flush(fc);
			run_for(5);
		}
	}
	assert_true(run_until(stream_done, s, 3000));
	assert_int_equal(s->got, be.write_n);
	assert_true(be.drained >= 1);
	assert_int_equal(s->status, 200);
	e.auto_consume = true;

	free(buf);
	be.write_n = 0;
	run_for(20);
	ctr_stop(c);
	e_free(&e);
	cfg_release(&cfg);
}

static void test_rejected_token_backs_off(void **st)
{
	struct fedge e, *ev[] = { &e };
	ctr_config cfg;
	char err[256];
	ctr *c;
	ctr_stats stats;
	(void)st;
	reset_backend();
	e_init(&e, pki, "{\"ok\":false,\"error\":\"invalid tunnel token\"}");
	cfg_for(&cfg, ev, 1, pki);
	cfg.backoff_base_ms = 100;
	cfg.backoff_cap_ms = 400;
	c = ctr_new(loop, &cfg, &echo_backend, err, sizeof err);
	ctr_start(c);
	run_for(1500);
	ctr_get_stats(c, &stats);
	assert_false(ctr_ready(c));
	assert_int_equal(stats.registrations, 0);
	assert_true(stats.rejections >= 2);
	/* Full jitter over 100, 200, 400, 400 ... ms: a handful of attempts, never a storm. */
	assert_true(stats.dials <= 20);
	assert_true(e.accepted == (int)stats.dials || e.accepted == (int)stats.dials - 1);
	ctr_stop(c);
	e_free(&e);
	cfg_release(&cfg);
}

/* An edge whose token store is locked or failing has not refused the token: the connector says so (warn,
 * not the "rejected the tunnel token" error an operator would act on) and keeps retrying on its backoff. */
static void test_store_unavailable_is_retried(void **st)
{
	struct fedge e, *ev[] = { &e };
	ctr_config cfg;
	char err[256], path[160], *logs;
	enum log_level lvl = log_get_level();
	ctr *c;
	ctr_stats stats;
	FILE *f;
	long n;
	int saved, fd;
	bool ready;
	(void)st;
	reset_backend();
	e_init(&e, pki, "{\"ok\":false,\"error\":\"" REG_ERR_STORE_UNAVAILABLE "\"}");
	cfg_for(&cfg, ev, 1, pki);
	cfg.backoff_base_ms = 100;
	cfg.backoff_cap_ms = 400;
	snprintf(path, sizeof path, "%s/store-unavailable.log", tmpd);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	log_set_level(LOG_WARN);
	c = ctr_new(loop, &cfg, &echo_backend, err, sizeof err);
	ctr_start(c);
	run_for(1500);
	ctr_get_stats(c, &stats);
	ready = ctr_ready(c);
	ctr_stop(c);
	log_set_level(lvl);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);
	/* Torn down before any assertion, so that a failure here leaves nothing running for the next test. */
	e_free(&e);
	cfg_release(&cfg);

	assert_false(ready);
	assert_true(stats.rejections >= 2);
	assert_true(stats.dials <= 20);
	assert_non_null(f = fopen(path, "r"));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	assert_non_null(logs = calloc(1, (size_t)n + 1));
	assert_int_equal(fread(logs, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	{
		/* The line says it at warn level. */
		const char *m = strstr(logs, "msg=\"edge could not check the tunnel token now; will retry\" edge=127.0.0.1:"), *b;
		assert_non_null(m);
		for (b = m; b > logs && b[-1] != '\n'; b--)
			;
		assert_non_null(strstr(b, "level=warn "));
		assert_true(strstr(b, "level=warn ") < m);
	}
	assert_non_null(strstr(logs, "reason=\"token store unavailable\""));
	assert_non_null(strstr(logs, "msg=\"will retry registration\""));
	assert_null(strstr(logs, "rejected the tunnel token"));
	assert_null(strstr(logs, "level=error"));
	free(logs);
}

static void test_wrong_edge_certificate(void **st)
{
	struct fedge e, *ev[] = { &e };
	ctr_config cfg;
	char err[256];
	ctr *c;
	ctr_stats stats;
	(void)st;
	reset_backend();
	e_init(&e, pki, OK);
	cfg_for(&cfg, ev, 1, pki_other); /* trusts another CA */
	c = ctr_new(loop, &cfg, &echo_backend, err, sizeof err);
	ctr_start(c);
	run_for(800);
	ctr_get_stats(c, &stats);
	assert_false(ctr_ready(c));
	assert_int_equal(e.registrations, 0);
	assert_true(stats.dial_failures >= 1);
	assert_true(stats.dials <= 15);
	assert_string_equal(e.last_token, ""); /* the token never went to an unverified edge */
	ctr_stop(c);
	e_free(&e);
	cfg_release(&cfg);
}

static void test_ping_timeout_redials(void **st)
{
	struct fedge e, *ev[] = { &e };
	ctr_config cfg;
	char err[256];
	ctr *c;
	ctr_stats stats;
	struct fconn *fc;
	(void)st;
	reset_backend();
	e_init(&e, pki, OK);
	cfg_for(&cfg, ev, 1, pki);
	c = ctr_new(loop, &cfg, &echo_backend, err, sizeof err);
	ctr_start(c);
	assert_true(run_until(is_ready, c, 3000));
	/* The edge stops reading (a stopped process): PINGs go unanswered. */
	fc = live_conn(&e);
	tconn_pause(fc->tc);
	assert_true(run_until(not_ready, c, (int)(cfg.ping_interval_ms + cfg.ping_timeout_ms + 300)));
	ctr_get_stats(c, &stats);
	assert_true(stats.ping_timeouts >= 1);
	/* It redials and is ready again on a new connection. */
	assert_true(run_until(is_ready, c, 3000));
	assert_true(e.registrations >= 2);
	ctr_stop(c);
	e_free(&e);
	cfg_release(&cfg);
}

static int live_count(struct fedge *e)
{
	int n = 0;
	for (struct fconn *fc = e->conns; fc; fc = fc->next)
		if (fc->registered && !fc->closed && !fc->goaway)
			n++;
	return n;
}

struct two {
	struct fedge *a, *b;
	int want_a, want_b;
};

static bool spread_is(void *ud)
{
	struct two *t = ud;
	return live_count(t->a) == t->want_a && live_count(t->b) == t->want_b;
}

static void test_failover_and_return_home(void **st)
{
	struct fedge a, b, *ev[] = { &a, &b };
	ctr_config cfg;
	char err[256];
	ctr *c;
	struct two t = { &a, &b, 2, 2 };
	int port_a;
	(void)st;
	reset_backend();
	e_init(&a, pki, OK);
	e_init(&b, pki, OK);
	b.manual_ping = true;
	cfg_for(&cfg, ev, 2, pki);
	cfg.connections = 4;
	c = ctr_new(loop, &cfg, &echo_backend, err, sizeof err);
	ctr_start(c);
	/* Round-robin: 2 connections on each edge. */
	assert_true(run_until(spread_is, &t, 3000));

	/* Edge A goes away (listener and connections): its slots move to B. */
	port_a = a.port;
	e_stop_listening(&a);
	e_drop_conns(&a);
	t.want_a = 0;
	t.want_b = 4;
	assert_true(run_until(spread_is, &t, 4000));
	assert_true(ctr_ready(c));

	/* A comes back on the same port: the slots return home within about a second and a half. */
	{
		struct fconn *fc, *next;
		run_until(e_all_closed, &a, 1000);
		for (fc = a.conns; fc; fc = next) {
			next = fc->next;
			if (fc->h2)
				nghttp2_session_del(fc->h2);
			reg_request_wipe(&fc->req);
			free(fc);
		}
		a.conns = NULL;
		a.port = port_a;
		b.open_on_notice = true;
		e_listen(&a);
	}
	t.want_a = 2;
	t.want_b = 2;
	uint64_t t0 = uv_now(loop);
	assert_true(run_until(spread_is, &t, 3000));
	assert_true(uv_now(loop) - t0 < 2500);
	/* Each stand-in on B was told to drain while its edge had just opened a stream: that stream, sent
	 * before the edge saw the notice, is served (not refused) and finishes before the connection closes. */
	{
		int late = 0;
		run_for(300);
		for (struct fconn *fc = b.conns; fc; fc = fc->next) {
			if (!fc->late)
				continue;
			late++;
			if (fc->late->status != 200) print_message("late stream: status %d closed %d code %u\n", fc->late->status, fc->late->closed, fc->late->close_code);
			assert_int_equal(fc->late->status, 200);
			assert_true(fc->late->got >= 4);
			assert_memory_equal(fc->late->data, "late", 4);
			fc->late->send_eof = true;
			nghttp2_session_resume_data(fc->h2, fc->late->id);
			e_flush(fc);
		}
		assert_int_equal(late, 2);
	}
	/* The stand-ins on B got GOAWAY and close once idle. */
	run_for(cfg.ping_timeout_ms + 1200);
	{
		int open_b = 0;
		for (struct fconn *fc = b.conns; fc; fc = fc->next)
			open_b += !fc->closed;
		assert_int_equal(open_b, 2);
	}
	ctr_stop(c);
	e_free(&a);
	e_free(&b);
	cfg_release(&cfg);
}

static int done_calls;
static void on_done(ctr *c, void *ud)
{
	(void)c;
	(void)ud;
	done_calls++;
}

static bool done_fired(void *ud) { (void)ud; return done_calls > 0; }
static bool got_goaway(void *ud) { return ((struct fconn *)ud)->goaway; }

static void test_graceful_shutdown(void **st)
{
	struct fedge e, *ev[] = { &e };
	ctr_config cfg;
	char err[256];
	ctr *c;
	struct fconn *fc;
	struct fstream *s;
	(void)st;
	reset_backend();
	e_init(&e, pki, OK);
	cfg_for(&cfg, ev, 1, pki);
	c = ctr_new(loop, &cfg, &echo_backend, err, sizeof err);
	ctr_start(c);
	assert_true(run_until(is_ready, c, 3000));
	fc = live_conn(&e);
	/* A stream in flight: it keeps working through the drain. */
	s = e_open_stream(fc, "part one ", 9, false);
	run_for(50);
	assert_int_equal(s->status, 200);
	done_calls = 0;
	ctr_begin_shutdown(c, on_done, NULL);
	assert_true(run_until(got_goaway, fc, 2000));
	assert_false(ctr_ready(c));
	run_for(100);
	assert_int_equal(done_calls, 0); /* the stream is still open */
	s->send = (const uint8_t *)"part one and two";
	s->send_len = 16;
	s->send_eof = true;
	nghttp2_session_resume_data(fc->h2, s->id);
	e_flush(fc);
	assert_true(run_until(stream_done, s, 2000));
	assert_int_equal(s->got, 16);
	assert_memory_equal(s->data, "part one and two", 16);
	assert_true(run_until(done_fired, NULL, 3000));
	assert_int_equal(be.aborted, 0);
	ctr_stop(c);
	e_free(&e);
	cfg_release(&cfg);
}

static void test_shutdown_timeout_resets_streams(void **st)
{
	struct fedge e, *ev[] = { &e };
	ctr_config cfg;
	char err[256];
	ctr *c;
	struct fconn *fc;
	struct fstream *s;
	(void)st;
	reset_backend();
	e_init(&e, pki, OK);
	cfg_for(&cfg, ev, 1, pki);
	cfg.shutdown_timeout_ms = 300;
	c = ctr_new(loop, &cfg, &echo_backend, err, sizeof err);
	ctr_start(c);
	assert_true(run_until(is_ready, c, 3000));
	fc = live_conn(&e);
	s = e_open_stream(fc, "never ends", 10, false);
	run_for(50);
	assert_int_equal(s->status, 200);
	done_calls = 0;
	ctr_begin_shutdown(c, on_done, NULL);
	assert_true(run_until(done_fired, NULL, 2000));
	assert_int_equal(be.aborted, 1);
	run_for(50);
	assert_true(fc->closed); /* the connection is gone, and the stream with it */
	ctr_stop(c);
	e_free(&e);
	cfg_release(&cfg);
}

/* The per-stream backstop: a backend that ignores high water hits the stream queue's cap. The write fails,
 * the stream is reset, one warn line names tunnel, stream and reason, and the metric counts it. */
static void test_backstop_abort_is_logged_and_counted(void **st)
{
	struct fedge e, *ev[] = { &e };
	ctr_config cfg;
	char err[256], path[160], line[64], *logs, *m, *b, *eol;
	enum log_level lvl = log_get_level();
	adm_metric *aborts = adm_counter("postern_connector_stream_aborts_total", NULL, "reason=\"queue_overflow\"");
	int64_t before = adm_value(aborts);
	ctr *c;
	struct fconn *fc;
	struct fstream *s, *s2;
	ctr_stats stats;
	FILE *f;
	long n;
	int saved, fd;
	bool done1, done2, eof;
	int status, sid;
	uint32_t close_code;
	size_t got2;
	(void)st;
	reset_backend();
	e_init(&e, pki, OK);
	cfg_for(&cfg, ev, 1, pki);
	snprintf(path, sizeof path, "%s/backstop.log", tmpd);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	log_set_level(LOG_WARN);
	c = ctr_new(loop, &cfg, &echo_backend, err, sizeof err);
	assert_non_null(c);
	ctr_start(c);
	assert_true(run_until(is_ready, c, 3000));
	fc = live_conn(&e);
	/* The edge reads nothing; the backend writes 8 MiB without looking at high water. */
	e.auto_consume = false;
	be.ignore_high = true;
	be.write_n = 8 * 1024 * 1024;
	s = e_open_stream(fc, "go", 2, true);
	done1 = run_until(stream_done, s, 3000);
	run_for(20);
	be.ignore_high = false;
	be.write_n = 0;
	e.auto_consume = true;
	nghttp2_session_consume_connection(fc->h2, s->got); /* what the edge received of it, never read */
	e_flush(fc);
	/* A well-behaved stream on the same connection still works, and is not counted. */
	s2 = e_open_stream(fc, "still fine", 10, true);
	done2 = run_until(stream_done, s2, 3000);
	ctr_get_stats(c, &stats);
	/* The streams live in the fake edge's connection: what is asserted is copied before it goes. */
	status = s->status;
	close_code = s->close_code;
	eof = s->eof;
	sid = s->id;
	got2 = s2->got;
	ctr_stop(c);
	log_set_level(lvl);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);
	e_free(&e);
	cfg_release(&cfg);

	assert_true(done1);
	assert_true(done2);
	assert_int_equal(be.write_rc, -ENOBUFS);
	assert_int_equal(status, 200);
	assert_int_equal(close_code, NGHTTP2_CANCEL);
	assert_false(eof);
	assert_int_equal(got2, 10);
	assert_int_equal(stats.stream_aborts, 1);
	assert_int_equal(adm_value(aborts) - before, 1);
	assert_non_null(f = fopen(path, "r"));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	assert_non_null(logs = calloc(1, (size_t)n + 1));
	assert_int_equal(fread(logs, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	m = strstr(logs, "msg=\"stream aborted: the backend wrote past the stream's queue cap\"");
	assert_non_null(m);
	assert_null(strstr(m + 1, "msg=\"stream aborted")); /* one line, however many writes failed */
	for (b = m; b > logs && b[-1] != '\n'; b--)
		;
	assert_non_null(eol = strchr(m, '\n'));
	*eol = 0;
	assert_non_null(strstr(b, "level=warn "));
	assert_non_null(strstr(m, " tunnel=\"t1\" "));
	snprintf(line, sizeof line, " stream=%d ", sid);
	assert_non_null(strstr(m, line));
	assert_non_null(strstr(m, " reason=queue_overflow "));
	snprintf(line, sizeof line, " cap=%zu ", 4 * (size_t)cfg.stream_high_water + 64 * 1024);
	assert_non_null(strstr(m, line));
	free(logs);
}

static void test_config_load(void **st)
{
	static const char *y = "edges: [\"a.example:7844\", \"10.0.0.2:7844\"]\nconnections: 6\nping_interval: 2s\n"
			       "ping_timeout: 3s\nedge_server_name: connect.example\n";
	char err[256], path[256];
	cfg_doc *d;
	ctr_config *c = NULL;
	(void)st;
	setenv("POSTERN_TOKEN", "pt1_env", 1);
	d = cfg_load_string("g.yaml", y, strlen(y), err, sizeof err);
	assert_int_equal(ctr_config_load(d, cfg_root(d), &c), 0);
	assert_int_equal(c->n_edges, 2);
	assert_int_equal(c->connections, 6);
	assert_int_equal(c->ping_interval_ms, 2000);
	assert_int_equal(c->ping_timeout_ms, 3000);
	assert_string_equal(c->metrics_listen, "127.0.0.1:20251");
	ctr_config_free(c);
	cfg_free(d);

	static const struct {
		const char *yaml, *want;
	} bad[] = {
		{ "edges: [\"nohost\"]\n", "g.yaml:1: edges: 'nohost' is not host:port" },
		{ "edges: [\"a:1\", \"a:1\"]\n", "listed twice" },
		{ "edges: [\"a:1\"]\nconnections: 0\n", "g.yaml:2: connections:" },
		{ "edges: [\"a:1\"]\nping_timeout: soon\n", "g.yaml:2: ping_timeout:" },
		{ "edges: [\"a:1\"]\ntoken_file: /nonexistent/token\n", "g.yaml:2: token_file: cannot open /nonexistent/token: No such file or directory" },
		{ "edges: a:1\n", "expected a list" },
		{ "metrics_listen: localhost:1\n", "g.yaml:1: metrics_listen:" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		d = cfg_load_string("g.yaml", bad[i].yaml, strlen(bad[i].yaml), err, sizeof err);
		assert_non_null(d);
		c = NULL;
		assert_int_equal(ctr_config_load(d, cfg_root(d), &c), -EINVAL);
		if (!strstr(cfg_error(d), bad[i].want))
			fail_msg("case %zu: '%s' does not contain '%s'", i, cfg_error(d), bad[i].want);
		cfg_free(d);
	}
	/* No token at all. */
	unsetenv("POSTERN_TOKEN");
	d = cfg_load_string("g.yaml", "edges: [\"a:1\"]\n", 15, err, sizeof err);
	assert_int_equal(ctr_config_load(d, cfg_root(d), &c), -EINVAL);
	assert_non_null(strstr(cfg_error(d), "no tunnel token"));
	cfg_free(d);
	/* Empty token file. */
	snprintf(path, sizeof path, "%s/empty", tmpd);
	fclose(fopen(path, "w"));
	{
		char yy[400];
		snprintf(yy, sizeof yy, "edges: [\"a:1\"]\ntoken_file: %s\n", path);
		d = cfg_load_string("g.yaml", yy, strlen(yy), err, sizeof err);
		assert_int_equal(ctr_config_load(d, cfg_root(d), &c), -EINVAL);
		assert_non_null(strstr(cfg_error(d), "empty: it should hold the tunnel token"));
		cfg_free(d);
		/* A symbolic link to a good token file is refused (core/secfile opens with O_NOFOLLOW). */
		char link[300];
		snprintf(link, sizeof link, "%s/tlink", tmpd);
		FILE *f = fopen(path, "w");
		fputs("pt1_x\n", f);
		fclose(f);
		assert_int_equal(symlink(path, link), 0);
		snprintf(yy, sizeof yy, "edges: [\"a:1\"]\ntoken_file: %s\n", link);
		d = cfg_load_string("g.yaml", yy, strlen(yy), err, sizeof err);
		assert_int_equal(ctr_config_load(d, cfg_root(d), &c), -EINVAL);
		assert_non_null(strstr(cfg_error(d), "is a symbolic link"));
		cfg_free(d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		UVT_TEST(test_config_load),
		UVT_TEST(test_register_and_echo),
		UVT_TEST(test_flow_control_bounds_memory),
		UVT_TEST(test_rejected_token_backs_off),
		UVT_TEST(test_store_unavailable_is_retried),
		UVT_TEST(test_wrong_edge_certificate),
		UVT_TEST(test_ping_timeout_redials),
		UVT_TEST(test_failover_and_return_home),
		UVT_TEST(test_graceful_shutdown),
		UVT_TEST(test_shutdown_timeout_resets_streams),
		UVT_TEST(test_backstop_abort_is_logged_and_counted),
	};
	return cmocka_run_group_tests(tests, group_setup, uvt_group_teardown);
}
