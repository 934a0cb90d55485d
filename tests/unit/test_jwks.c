/* proxy/jwks: the jwks_url fetcher against a small HTTP server on 127.0.0.1 in this process (libuv): the first
 * fetch loads the keys, failures (HTTP 500, a redirect, not JSON, over 1 MiB, nothing listening) keep the
 * last good set and say why, the refresh interval, the unknown-kid refetch and its rate limit, and jwks_free
 * while a fetch hangs (the fetch is aborted; nothing touches the freed auth). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "guard/auth.h"
#include "jwt_testkeys.h"
#include "proxy/jwks.h"
#include "uvtest.h"

#define NOW 1700000000LL
#define RES "https://files.example.com/"
#define MAXC 8

struct sconn {
	uv_tcp_t h;
	char buf[4096];
	size_t len;
	bool used, answered;
	uv_write_t wr;
	char *out;
};

static struct {
	uv_tcp_t tcp;
	int port;
	int requests;
	int status;
	char *body;
	bool hold, no_length; /* no_length: the body runs until the close */
	struct sconn c[MAXC];
} srv;

static EVP_PKEY *k1, *k2;
static char *set1, *set2;

static void conn_closed(uv_handle_t *h)
{
	struct sconn *c = h->data;
	free(c->out);
	c->out = NULL;
	c->used = false;
}

static void conn_close(struct sconn *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->h))
		uv_close((uv_handle_t *)&c->h, conn_closed);
}

static void wrote(uv_write_t *w, int st)
{
	(void)st;
	conn_close(w->data);
}

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	struct sconn *c = h->data;
	(void)sz;
	b->base = c->buf + c->len;
	b->len = sizeof c->buf - c->len - 1;
}

static void answer(struct sconn *c)
{
	const char *body = srv.body ? srv.body : "";
	size_t bl = strlen(body), n = bl + 512;
	uv_buf_t b;
	c->out = malloc(n);
	char cl[64] = "";
	if (!srv.no_length)
		snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", bl);
	b.len = (size_t)snprintf(c->out, n, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%s%s"
				 "Connection: close\r\n\r\n%s", srv.status, cl,
				 srv.status == 302 ? "Location: http://127.0.0.1:1/elsewhere\r\n" : "", body);
	b.base = c->out;
	c->wr.data = c;
	uv_write(&c->wr, (uv_stream_t *)&c->h, &b, 1, wrote);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct sconn *c = s->data;
	(void)b;
	if (n < 0) {
		conn_close(c);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = 0;
	if (!c->answered && strstr(c->buf, "\r\n\r\n")) {
		c->answered = true;
		srv.requests++;
		if (!srv.hold)
			answer(c);
	}
}

static void on_conn(uv_stream_t *s, int st)
{
	struct sconn *c = NULL;
	(void)st;
	for (int i = 0; i < MAXC && !c; i++)
		if (!srv.c[i].used)
			c = &srv.c[i];
	assert_non_null(c);
	memset(c, 0, sizeof *c);
	c->used = true;
	uv_tcp_init(loop, &c->h);
	c->h.data = c;
	assert_int_equal(uv_accept(s, (uv_stream_t *)&c->h), 0);
	uv_read_start((uv_stream_t *)&c->h, alloc_cb, on_read);
}

static int open_conns(void)
{
	int n = 0;
	for (int i = 0; i < MAXC; i++)
		n += srv.c[i].used;
	return n;
}

static int group_setup(void **st)
{
	struct sockaddr_in sa;
	struct sockaddr_storage ss;
	int len = sizeof ss;
	(void)st;
	uvt_init(NULL);
	uv_ip4_addr("127.0.0.1", 0, &sa);
	uv_tcp_init(loop, &srv.tcp);
	if (uv_tcp_bind(&srv.tcp, (struct sockaddr *)&sa, 0) || uv_listen((uv_stream_t *)&srv.tcp, 16, on_conn))
		return -1;
	uv_tcp_getsockname(&srv.tcp, (struct sockaddr *)&ss, &len);
	srv.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	uvt_keep(&srv.tcp);
	k1 = tk_rsa(2048);
	k2 = tk_p256();
	set1 = tk_jwks(tk_jwk(k1, "r1", NULL), NULL);
	set2 = tk_jwks(tk_jwk(k1, "r1", NULL), tk_jwk(k2, "e2", NULL), NULL);
	return 0;
}

static int group_teardown(void **st)
{
	(void)st;
	uvt_fini();
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	free(set1);
	free(set2);
	free(srv.body);
	return 0;
}

static void serve(int status, const char *body)
{
	free(srv.body);
	srv.body = body ? strdup(body) : NULL;
	srv.status = status;
}

static auth *route(int port)
{
	char y[300], e[300];
	cfg_doc *d;
	auth *a = NULL;
	snprintf(y, sizeof y, "auth:\n  jwt:\n    issuer: https://idp.example.com/\n    jwks_url: http://127.0.0.1:%d/jwks\n",
		 port);
	assert_non_null(d = cfg_load_string("r.yaml", y, strlen(y), e, sizeof e));
	assert_int_equal(auth_from_cfg(d, cfg_get(cfg_root(d), "auth"), &a), 0);
	cfg_free(d);
	return a;
}

static jwks *J;

static bool ok_at_least(void *ud)
{
	jwks_stats s;
	jwks_get_stats(J, &s);
	return s.ok >= (uint64_t)(intptr_t)ud && !s.busy;
}

static bool failed_at_least(void *ud)
{
	jwks_stats s;
	jwks_get_stats(J, &s);
	return s.failed >= (uint64_t)(intptr_t)ud && !s.busy;
}

static jwks_stats stats(void)
{
	jwks_stats s;
	jwks_get_stats(J, &s);
	return s;
}

static int check(const auth *a, EVP_PKEY *k, const char *kid, auth_result *r)
{
	char h[100], c[300], *t, hdr[4096];
	int rc;
	snprintf(h, sizeof h, "{\"alg\":\"%s\",\"kid\":\"%s\"}", EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA ? "RS256" : "ES256",
		 kid);
	snprintf(c, sizeof c, "{\"iss\":\"https://idp.example.com/\",\"aud\":\"%s\",\"sub\":\"eve\",\"exp\":%lld}", RES,
		 NOW + 60);
	t = tk_sign(k, h, c);
	snprintf(hdr, sizeof hdr, "Bearer %s", t);
	rc = auth_check(a, hdr, RES, NOW, r);
	free(t);
	return rc;
}

static void finish(auth *a)
{
	jwks_free(J);
	J = NULL;
	auth_free(a);
	run_for(30);
}

static void test_first_fetch(void **st)
{
	auth *a = route(srv.port);
	auth_result r;
	char err[200];
	(void)st;
	serve(200, set1);
	srv.requests = 0;
	assert_int_equal(check(a, k1, "r1", &r), -EACCES);
	assert_string_equal(r.reason, "signing keys not loaded yet");
	assert_int_equal(jwks_new(loop, a, NULL, &J, err, sizeof err), 0);
	assert_true(run_until(ok_at_least, (void *)1, 5000));
	assert_int_equal(srv.requests, 1);
	assert_int_equal(auth_jwks_count(a), 1);
	assert_int_equal(check(a, k1, "r1", &r), 0);
	assert_string_equal(r.subject, "eve");
	assert_null(stats().last_error);
	finish(a);
}

static void fails_with(const char *why, int n)
{
	jwks_kick(J);
	assert_true(run_until(failed_at_least, (void *)(intptr_t)n, 5000));
	if (!stats().last_error || !strstr(stats().last_error, why))
		fail_msg("want \"%s\", got \"%s\"", why, stats().last_error ? stats().last_error : "(none)");
}

static void test_failures_keep_the_set(void **st)
{
	jwks_opts o = { .min_refetch_ms = 20, .retry_ms = 100000 };
	auth *a = route(srv.port);
	auth_result r;
	char err[200], *big;
	(void)st;
	serve(200, set1);
	assert_int_equal(jwks_new(loop, a, &o, &J, err, sizeof err), 0);
	assert_true(run_until(ok_at_least, (void *)1, 5000));
	serve(500, "{}");
	run_for(25);
	fails_with("HTTP status 500", 1);
	assert_int_equal(check(a, k1, "r1", &r), 0);
	serve(302, "");
	run_for(25);
	fails_with("HTTP status 302 (200 expected; redirects are not followed)", 2);
	serve(200, "nope");
	run_for(25);
	fails_with("JWKS is not JSON", 3);
	serve(200, "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}");
	run_for(25);
	fails_with("no usable signing key", 4);
	big = malloc(JWT_MAX_JWKS + 100);
	memset(big, ' ', JWT_MAX_JWKS + 99);
	big[JWT_MAX_JWKS + 99] = 0;
	serve(200, big);
	free(big);
	run_for(25);
	fails_with("over 1048576 bytes (Content-Length)", 5);
	srv.no_length = true; /* the cap holds on the bytes too */
	run_for(25);
	fails_with("the JWKS is over 1048576 bytes", 6);
	assert_null(strstr(stats().last_error, "Content-Length"));
	srv.no_length = false;
	assert_int_equal(auth_jwks_count(a), 1);
	assert_int_equal(check(a, k1, "r1", &r), 0);
	/* recovery */
	serve(200, set2);
	run_for(25);
	jwks_kick(J);
	assert_true(run_until(ok_at_least, (void *)2, 5000));
	assert_null(stats().last_error);
	assert_int_equal(auth_jwks_count(a), 2);
	finish(a);
}

static void test_nothing_listening(void **st)
{
	jwks_opts o = { .retry_ms = 100000 };
	auth *a = route(1);
	char err[200];
	(void)st;
	assert_int_equal(jwks_new(loop, a, &o, &J, err, sizeof err), 0);
	assert_true(run_until(failed_at_least, (void *)1, 5000));
	assert_non_null(strstr(stats().last_error, "connect"));
	assert_int_equal(auth_jwks_count(a), 0);
	finish(a);
}

static void test_unknown_kid_refetch_rate_limited(void **st)
{
	jwks_opts o = { .min_refetch_ms = 400 };
	auth *a = route(srv.port);
	auth_result r;
	char err[200];
	(void)st;
	serve(200, set1);
	srv.requests = 0;
	assert_int_equal(jwks_new(loop, a, &o, &J, err, sizeof err), 0);
	assert_true(run_until(ok_at_least, (void *)1, 5000));
	/* the IdP rotates: e2 appears; a token with kid e2 asks for a refetch */
	serve(200, set2);
	assert_int_equal(check(a, k2, "e2", &r), -EACCES);
	assert_true(r.refetch_keys);
	for (int i = 0; i < 5; i++)
		jwks_kick(J);
	run_for(200);
	assert_int_equal(stats().fetches, 1); /* inside the 400 ms window */
	assert_true(run_until(ok_at_least, (void *)2, 5000));
	assert_int_equal(stats().fetches, 2); /* the five kicks made one fetch */
	assert_int_equal(srv.requests, 2);
	assert_int_equal(check(a, k2, "e2", &r), 0);
	assert_false(r.refetch_keys);
	finish(a);
}

static void test_refresh_interval(void **st)
{
	jwks_opts o = { .refresh_ms = 100 };
	auth *a = route(srv.port);
	char err[200];
	(void)st;
	serve(200, set1);
	assert_int_equal(jwks_new(loop, a, &o, &J, err, sizeof err), 0);
	run_for(470);
	assert_true(stats().fetches >= 3);
	assert_true(stats().fetches <= 6);
	assert_int_equal(stats().failed, 0);
	finish(a);
}

static bool no_conns(void *ud)
{
	(void)ud;
	return open_conns() == 0;
}

static void test_free_while_fetching(void **st)
{
	auth *a = route(srv.port);
	char err[200];
	uint64_t t0;
	(void)st;
	srv.hold = true;
	srv.requests = 0;
	assert_int_equal(jwks_new(loop, a, NULL, &J, err, sizeof err), 0);
	while (srv.requests == 0 && uv_run(loop, UV_RUN_ONCE))
		;
	assert_true(stats().busy);
	t0 = uv_now(loop);
	jwks_free(J);
	J = NULL;
	auth_free(a); /* at once: the fetch never touches it again */
	assert_true(run_until(no_conns, NULL, 5000));
	assert_true(uv_now(loop) - t0 < 3000); /* aborted, not waited out (total timeout 10 s) */
	srv.hold = false;
	run_for(50);
}

static void test_no_url(void **st)
{
	char y[300], e[300];
	cfg_doc *d;
	auth *a = NULL;
	jwks *j = (void *)1;
	(void)st;
	snprintf(y, sizeof y, "auth: passthrough\n");
	assert_non_null(d = cfg_load_string("r.yaml", y, strlen(y), e, sizeof e));
	assert_int_equal(auth_from_cfg(d, cfg_get(cfg_root(d), "auth"), &a), 0);
	assert_int_equal(jwks_new(loop, a, NULL, &j, e, sizeof e), -EINVAL);
	assert_null(j);
	assert_string_equal(e, "the route has no jwks_url");
	jwks_free(NULL);
	cfg_free(d);
	auth_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		UVT_TEST(test_first_fetch),
		UVT_TEST(test_failures_keep_the_set),
		UVT_TEST(test_nothing_listening),
		UVT_TEST(test_unknown_kid_refetch_rate_limited),
		UVT_TEST(test_refresh_interval),
		UVT_TEST(test_free_while_fetching),
		UVT_TEST(test_no_url),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
