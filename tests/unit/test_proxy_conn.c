/* The px_conn seam as the connector uses it: an in-memory owner (ops table) feeding a TLS client's bytes,
 * an in-process upstream on loopback. Checks the contract: ops->close never from inside a px_conn_* call,
 * consumed adds up to what was fed, abort from inside an ops callback is safe, graceful ends half-close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <uv.h>

#include "core/admin.h"
#include "core/log.h"
#include "core/tlsio.h"
#include "selfsigned.h"
#include "proxy/proxy.h"

static char certf[64], keyf[64];

static void make_cert(void)
{
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	FILE *f;
	int fd;
	assert_int_equal(selfsigned_make("t", 3600, &x, &k), 0);
	strcpy(certf, "/tmp/pxconn-crt-XXXXXX");
	strcpy(keyf, "/tmp/pxconn-key-XXXXXX");
	fd = mkstemp(certf);
	f = fdopen(fd, "w");
	PEM_write_X509(f, x);
	fclose(f);
	fd = mkstemp(keyf);
	f = fdopen(fd, "w");
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(k);
}

/* ---- a tiny upstream: answers every request head with a fixed response ---- */
struct upsrv {
	uv_tcp_t srv;
	int port;
	int requests;
};

struct upc {
	uv_tcp_t h;
	struct upsrv *s;
	char buf[8192];
	size_t len;
};

static void up_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	static char rb[65536];
	(void)h;
	(void)sz;
	*b = uv_buf_init(rb, sizeof rb);
}

static void up_closed(uv_handle_t *h) { free(h->data); }

static void up_written(uv_write_t *w, int st)
{
	(void)st;
	free(w);
}

static void up_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct upc *u = st->data;
	static char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	if (n < 0) {
		uv_close((uv_handle_t *)st, up_closed);
		return;
	}
	if ((size_t)n > sizeof u->buf - u->len)
		n = (ssize_t)(sizeof u->buf - u->len);
	memcpy(u->buf + u->len, b->base, (size_t)n);
	u->len += (size_t)n;
	while (u->len >= 4) {
		char *e = memmem(u->buf, u->len, "\r\n\r\n", 4);
		uv_write_t *w;
		uv_buf_t ob = uv_buf_init(resp, sizeof resp - 1);
		if (!e)
			break;
		u->len = 0; /* requests here have no body and are not pipelined */
		w = malloc(sizeof *w);
		uv_write(w, st, &ob, 1, up_written);
		u->s->requests++;
	}
}

static void up_conn(uv_stream_t *srv, int st)
{
	struct upc *u = calloc(1, sizeof *u);
	(void)st;
	u->s = srv->data;
	uv_tcp_init(srv->loop, &u->h);
	u->h.data = u;
	uv_accept(srv, (uv_stream_t *)&u->h);
	uv_read_start((uv_stream_t *)&u->h, up_alloc, up_read);
}

static void upsrv_start(uv_loop_t *loop, struct upsrv *s)
{
	struct sockaddr_in a;
	struct sockaddr_storage ss;
	int len = sizeof ss;
	uv_ip4_addr("127.0.0.1", 0, &a);
	uv_tcp_init(loop, &s->srv);
	s->srv.data = s;
	assert_int_equal(uv_tcp_bind(&s->srv, (struct sockaddr *)&a, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&s->srv, 16, up_conn), 0);
	uv_tcp_getsockname(&s->srv, (struct sockaddr *)&ss, &len);
	s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Whatever is still open now is an upstream-side test connection (struct upc). */
static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, up_closed);
}

/* ---- the owner ---- */
struct owner {
	px_conn *pc;
	tio *cli;
	uv_timer_t pump;
	int in_call;       /* inside a px_conn_* call */
	bool closed, shut, close_in_call, abort_on_write, ops_after_abort, aborted;
	uint64_t fed, consumed;
	char got[4096];
	size_t got_len;
	const char *request;
	bool sent;
};

static int o_write(void *ctx, const uint8_t *p, size_t n)
{
	struct owner *o = ctx;
	if (o->aborted)
		o->ops_after_abort = true;
	tio_feed(o->cli, p, n);
	if (o->abort_on_write && !o->aborted) {
		o->aborted = true;
		px_conn_abort(o->pc);
		o->pc = NULL;
	}
	return 0;
}
static int o_shutdown(void *ctx)
{
	struct owner *o = ctx;
	if (o->aborted)
		o->ops_after_abort = true;
	o->shut = true;
	return 0;
}
static void o_close(void *ctx)
{
	struct owner *o = ctx;
	if (o->aborted)
		o->ops_after_abort = true;
	if (o->in_call)
		o->close_in_call = true;
	o->closed = true;
	o->pc = NULL;
}
static void o_consumed(void *ctx, size_t n)
{
	struct owner *o = ctx;
	if (o->aborted)
		o->ops_after_abort = true;
	o->consumed += n;
}
static bool o_over(void *ctx)
{
	(void)ctx;
	return false;
}
static const stream_ops ops = { o_write, o_shutdown, o_close, o_consumed, o_over };

/* When set, the client's last ciphertext is cut this many bytes short and followed by EOF. */
static size_t g_cut;

static void on_pump(uv_timer_t *t)
{
	struct owner *o = t->data;
	uint8_t buf[32768];
	size_t n;
	int r;
	if (!o->pc)
		return;
	r = tio_read(o->cli, buf, sizeof buf);
	while (r > 0) {
		memcpy(o->got + o->got_len, buf, (size_t)r < sizeof o->got - o->got_len ? (size_t)r : sizeof o->got - o->got_len);
		o->got_len += (size_t)r;
		r = tio_read(o->cli, buf, sizeof buf);
	}
	if (tio_handshake_done(o->cli) && !o->sent) {
		tio_write(o->cli, (const uint8_t *)o->request, strlen(o->request));
		o->sent = true;
	}
	while (o->pc && (n = tio_out_take(o->cli, buf, sizeof buf)) > 0) {
		bool cut = g_cut && o->sent && n > g_cut;
		if (cut)
			n -= g_cut;
		o->fed += n;
		o->in_call++;
		px_conn_feed(o->pc, buf, n);
		if (cut && o->pc)
			px_conn_eof(o->pc);
		o->in_call--;
		if (cut)
			g_cut = 0;
	}
}

static const char *g_client = "test:1"; /* the client address the owner hands the proxy */

static px_config *config(int port, const char *extra)
{
	char y[1024], err[256];
	cfg_doc *d;
	px_config *c = NULL;
	snprintf(y, sizeof y,
		 "tunnel_domain: t.example\ntls: {cert_file: %s, key_file: %s}\n"
		 "routes: {up: \"http://127.0.0.1:%d\"}\nupstream: {allowed_ips: [127.0.0.0/8]}\n%s",
		 certf, keyf, port, extra);
	d = cfg_load_string("t.yaml", y, strlen(y), err, sizeof err);
	assert_non_null(d);
	assert_int_equal(px_config_load(d, cfg_root(d), &c), 0);
	cfg_free(d);
	return c;
}

static void run_case(struct owner *o, const char *request, bool abort_on_write, int *upstream_requests)
{
	uv_loop_t loop;
	struct upsrv us;
	px_config *cfg;
	px *p;
	char err[256];
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	uint64_t deadline;

	memset(o, 0, sizeof *o);
	memset(&us, 0, sizeof us);
	uv_loop_init(&loop);
	upsrv_start(&loop, &us);
	cfg = config(us.port, "");
	p = px_new(&loop, cfg, err, sizeof err);
	assert_non_null(p);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	o->cli = tio_new(cctx, false, "up.t.example");
	o->request = request;
	o->abort_on_write = abort_on_write;
	o->pc = px_conn_new(p, &ops, o, g_client);
	assert_non_null(o->pc);
	tio_handshake(o->cli);
	uv_timer_init(&loop, &o->pump);
	o->pump.data = o;
	uv_timer_start(&o->pump, on_pump, 0, 1);
	deadline = uv_now(&loop) + 5000;
	while (!o->closed && !o->aborted && uv_now(&loop) < deadline) {
		uv_run(&loop, UV_RUN_ONCE);
		if (strstr(o->got, "\r\n\r\nok"))
			break;
	}
	{ /* what arrived just before close */
		uint8_t buf[4096];
		int r;
		while ((r = tio_read(o->cli, buf, sizeof buf)) > 0 && o->got_len + (size_t)r < sizeof o->got) {
			memcpy(o->got + o->got_len, buf, (size_t)r);
			o->got_len += (size_t)r;
		}
	}
	*upstream_requests = us.requests;
	if (o->pc) {
		px_conn_abort(o->pc);
		o->pc = NULL;
	}
	px_free(p);
	uv_close((uv_handle_t *)&o->pump, NULL);
	uv_close((uv_handle_t *)&us.srv, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	uv_walk(&loop, close_walk, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	tio_free(o->cli);
	SSL_CTX_free(cctx);
	px_config_free(cfg);
}

static void test_exchange(void **st)
{
	struct owner o;
	int n = 0;
	(void)st;
	run_case(&o, "GET /x HTTP/1.1\r\nHost: up.t.example\r\n\r\n", false, &n);
	assert_int_equal(n, 1);
	assert_non_null(strstr(o.got, "HTTP/1.1 200 OK"));
	assert_non_null(strstr(o.got, "\r\n\r\nok"));
	assert_false(o.close_in_call);
	/* everything fed was processed and reported */
	assert_true(o.fed > 0);
	assert_int_equal(o.consumed, o.fed);
	/* counted once, under its route and status class, with its duration and bytes */
	assert_int_equal(adm_value(adm_counter("postern_proxy_requests_total", NULL, "route=\"up\",code=\"2xx\"")), 1);
	assert_int_equal(adm_value(adm_histogram("postern_proxy_request_duration_seconds", NULL, "route=\"up\"",
						 (const double[]){ 1 }, 1)), 1);
	assert_true(adm_value(adm_counter("postern_proxy_request_bytes_total", NULL, "route=\"up\"")) >=
		    (int64_t)strlen("GET /x HTTP/1.1\r\nHost: up.t.example\r\n\r\n"));
	assert_true(adm_value(adm_counter("postern_proxy_response_bytes_total", NULL, "route=\"up\"")) > 0);
	adm_metrics_reset();
}

static void test_no_route_closes_gracefully(void **st)
{
	struct owner o;
	int n = 0;
	(void)st;
	run_case(&o, "GET /x HTTP/1.1\r\nHost: nope.t.example\r\n\r\n", false, &n);
	assert_int_equal(n, 0);
	assert_non_null(strstr(o.got, "HTTP/1.1 404 Not Found"));
	assert_non_null(strstr(o.got, "\r\n\r\nno route for host"));
	assert_true(o.closed);
	assert_true(o.shut); /* graceful: shutdown came before close */
	assert_false(o.close_in_call);
	/* the client's host name is no label: no route is "-" */
	assert_int_equal(adm_value(adm_counter("postern_proxy_requests_total", NULL, "route=\"-\",code=\"4xx\"")), 1);
	{
		size_t len;
		char *m = adm_metrics_render(&len);
		assert_non_null(m);
		assert_null(strstr(m, "nope"));
		free(m);
	}
	adm_metrics_reset();
}

/* The client address comes from the edge (postern-client-addr): whatever it holds, every log line keeps it
 * inside one quoted value, so it cannot add keys or split the line. */
static void test_client_addr_is_quoted_in_logs(void **st)
{
	struct owner o;
	int n = 0, saved = dup(STDERR_FILENO);
	char path[] = "/tmp/postern-pxlog-XXXXXX", text[8192];
	int fd = mkstemp(path);
	ssize_t got;
	(void)st;
	assert_true(fd >= 0 && saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	g_client = "1.2.3.4:5 route=evil msg=\"forged\"\nlevel=error";
	run_case(&o, "GET /x HTTP/1.1\r\nHost: nope.t.example\r\n\r\n", false, &n);
	g_client = "test:1";
	dup2(saved, STDERR_FILENO);
	close(saved);
	got = pread(fd, text, sizeof text - 1, 0);
	close(fd);
	unlink(path);
	assert_true(got > 0);
	text[got] = 0;
	assert_non_null(strstr(text, "msg=\"no route for host\""));
	assert_non_null(strstr(text, "client=\"1.2.3.4:5 route=evil msg=\\\"forged\\\"\\x0alevel=error\""));
	assert_null(strstr(text, " route=evil msg=\"forged\""));
	assert_null(strstr(text, "\nlevel=error\n"));
}

static void test_truncated_record_then_eof_closes_at_once(void **st)
{
	struct owner o;
	int n = 0;
	uint64_t t0 = uv_hrtime();
	(void)st;
	/* The request's record ends 5 bytes short and the client is gone: nothing more can arrive, so the
	 * connection ends now rather than at the idle timeout (120 s), also once the record layer took over. */
	g_cut = 5;
	run_case(&o, "GET /x HTTP/1.1\r\nHost: up.t.example\r\n\r\n", false, &n);
	assert_int_equal(g_cut, 0);
	assert_int_equal(n, 0);
	assert_true(o.closed);
	assert_true((uv_hrtime() - t0) / 1000000 < 3000);
}

static void test_abort_inside_write(void **st)
{
	struct owner o;
	int n = 0;
	(void)st;
	run_case(&o, "GET /x HTTP/1.1\r\nHost: up.t.example\r\n\r\n", true, &n);
	assert_true(o.aborted);
	assert_false(o.ops_after_abort);
	assert_false(o.closed);
}

/* Requests an upstream could frame otherwise than the proxy (smuggling through the relayed head) are
 * answered 400 and never reach the upstream; so is an absolute-form target naming another host than Host,
 * while one naming the same host goes through. */
static void test_smuggling_refused(void **st)
{
	static const char *const bad[] = {
		"POST /x HTTP/1.1\r\nHost: up.t.example\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\nGET /s HTTP/1.1\r\nHost: up.t.example\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: up.t.example\r\nContent-Length: 0\r\nTransfer-Encoding : chunked\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: up.t.example\r\nHost : evil.t.example\r\n\r\n",
		"POST /x HTTP/1.0\r\nHost: up.t.example\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /s HTTP/1.0\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: up.t.example\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
		"GET /x HTTP/1.1\nHost: up.t.example\n\n",
		"GET /x HTTP/1.1\r\nHost: up.t.example\r\n\rXGET /s HTTP/1.1\r\nHost: up.t.example\r\n\r\n",
		"GET http://other.t.example/x HTTP/1.1\r\nHost: up.t.example\r\n\r\n",
		"GET http://up.t.example@other.t.example/x HTTP/1.1\r\nHost: up.t.example\r\n\r\n",
		/* issue 11's own examples: invalid codings, and a fold on a header the proxy does not frame by */
		"POST /x HTTP/1.1\r\nHost: up.t.example\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: up.t.example\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: up.t.example\r\nX-Note: one\r\n two\r\n\r\n",
	};
	struct owner o;
	int n = 0;
	(void)st;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		run_case(&o, bad[i], false, &n);
		if (n != 0 || !strstr(o.got, "HTTP/1.1 400 Bad Request\r\n"))
			fail_msg("request %zu: %d upstream requests, answer %.120s", i, n, o.got);
	}
	run_case(&o, "GET http://UP.t.example:443/x HTTP/1.1\r\nHost: up.t.example\r\n\r\n", false, &n);
	assert_int_equal(n, 1);
	assert_non_null(strstr(o.got, "\r\n\r\nok"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exchange),
		cmocka_unit_test(test_no_route_closes_gracefully),
		cmocka_unit_test(test_client_addr_is_quoted_in_logs),
		cmocka_unit_test(test_abort_inside_write),
		cmocka_unit_test(test_truncated_record_then_eof_closes_at_once),
		cmocka_unit_test(test_smuggling_refused),
	};
	int rc;
	log_set_level(LOG_WARN);
	make_cert();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(certf);
	unlink(keyf);
	return rc;
}
