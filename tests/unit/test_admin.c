#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <uv.h>

#include "core/admin.h"

static void test_registry_render(void **st)
{
	char lb[128], *out;
	size_t len = 0;
	adm_metric *a, *b;
	(void)st;
	a = adm_counter("x_total", "Things done", adm_label(lb, sizeof lb, "tunnel", "t\"1\\\n"));
	assert_non_null(a);
	assert_string_equal(lb, "tunnel=\"t\\\"1\\\\\\n\"");
	adm_add(a, 3);
	adm_add(a, -5); /* counters never go down */
	assert_int_equal(adm_value(a), 3);
	b = adm_counter("x_total", NULL, lb);
	assert_ptr_equal(a, b);
	adm_counter_add("x_total", "tunnel=\"b\"", 2);
	adm_gauge_set("g", NULL, 7);
	adm_gauge_add("g", NULL, -9);
	assert_null(adm_gauge("x_total", NULL, NULL)); /* a counter family is not a gauge */
	out = adm_metrics_render(&len);
	assert_non_null(out);
	assert_string_equal(out, "# HELP x_total Things done\n# TYPE x_total counter\n"
				 "x_total{tunnel=\"t\\\"1\\\\\\n\"} 3\nx_total{tunnel=\"b\"} 2\n"
				 "# TYPE g gauge\ng -2\n");
	assert_int_equal(len, strlen(out));
	free(out);
	adm_metric_drop(adm_counter("x_total", NULL, "tunnel=\"b\""));
	adm_counter_add("x_total", "tunnel=\"c\"", 1); /* appended after a drop of the tail */
	out = adm_metrics_render(&len);
	assert_null(strstr(out, "tunnel=\"b\""));
	assert_non_null(strstr(out, "x_total{tunnel=\"c\"} 1\n"));
	free(out);
	adm_metrics_reset();
	out = adm_metrics_render(&len);
	assert_int_equal(len, 0);
	free(out);
}

/* ---- the server, driven by a blocking client in a thread ---- */

struct client {
	int port;
	const char *req;
	size_t reqlen;
	char resp[16384];
	size_t resplen;
	uv_async_t *done;
};

static void client_run(void *arg)
{
	struct client *c = arg;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)c->port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ssize_t n;
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
		size_t off = 0;
		while (off < c->reqlen && (n = send(fd, c->req + off, c->reqlen - off, MSG_NOSIGNAL)) > 0)
			off += (size_t)n;
		while (c->resplen < sizeof c->resp - 1 &&
		       (n = read(fd, c->resp + c->resplen, sizeof c->resp - 1 - c->resplen)) > 0)
			c->resplen += (size_t)n;
	}
	c->resp[c->resplen] = 0;
	close(fd);
	uv_async_send(c->done);
}

static void on_done(uv_async_t *a)
{
	uv_close((uv_handle_t *)a, NULL);
	uv_stop(a->loop);
}

static void ready(const char *method, const char *path, adm_resp *r, void *ud)
{
	int *n = ud;
	(*n)++;
	adm_reply(r, 503, "application/json", "{\"ready\":false}", 15);
}

static void roundtrip(adm_server *s, uv_loop_t *loop, const char *req, size_t reqlen, struct client *c)
{
	uv_async_t done;
	uv_thread_t th;
	memset(c, 0, sizeof *c);
	c->port = adm_port(s);
	c->req = req;
	c->reqlen = reqlen;
	c->done = &done;
	uv_async_init(loop, &done, on_done);
	uv_thread_create(&th, client_run, c);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_thread_join(&th);
}

static void test_server(void **st)
{
	uv_loop_t loop;
	adm_server *s;
	struct client c;
	char err[200];
	int calls = 0;
	char *big;
	(void)st;
	uv_loop_init(&loop);
	s = adm_new(&loop);
	assert_non_null(s);
	assert_int_equal(adm_listen(s, "nonsense", err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "not an address"));
	assert_int_equal(adm_listen(s, "127.0.0.1:0", err, sizeof err), 0);
	assert_true(adm_port(s) > 0);
	assert_int_equal(adm_handle(s, "/ready", ready, &calls), 0);
	adm_counter_add("req_total", NULL, 41);

	roundtrip(s, &loop, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 35, &c);
	assert_non_null(strstr(c.resp, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(c.resp, "Connection: close\r\n"));
	assert_non_null(strstr(c.resp, "\r\n\r\n# TYPE req_total counter\nreq_total 41\n"));

	roundtrip(s, &loop, "GET /healthz?x=1 HTTP/1.1\r\n\r\n", 29, &c);
	assert_non_null(strstr(c.resp, "200 OK"));
	assert_non_null(strstr(c.resp, "\r\n\r\nok\n"));

	roundtrip(s, &loop, "GET /ready HTTP/1.1\r\n\r\n", 23, &c);
	assert_int_equal(calls, 1);
	assert_non_null(strstr(c.resp, "HTTP/1.1 503 "));
	assert_non_null(strstr(c.resp, "{\"ready\":false}"));

	roundtrip(s, &loop, "HEAD /healthz HTTP/1.1\r\n\r\n", 26, &c);
	assert_non_null(strstr(c.resp, "Content-Length: 3\r\n"));
	assert_null(strstr(c.resp, "\r\n\r\nok"));

	roundtrip(s, &loop, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 46, &c);
	assert_non_null(strstr(c.resp, "HTTP/1.1 405 "));

	roundtrip(s, &loop, "GET /nope HTTP/1.1\r\n\r\n", 22, &c);
	assert_non_null(strstr(c.resp, "HTTP/1.1 404 "));

	roundtrip(s, &loop, "\x16\x03\x01garbage\r\n\r\n", 14, &c);
	assert_non_null(strstr(c.resp, "HTTP/1.1 400 "));

	big = malloc(20000);
	memset(big, 'a', 20000);
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	roundtrip(s, &loop, big, 20000, &c);
	assert_non_null(strstr(c.resp, "HTTP/1.1 431 "));
	free(big);

	/* Hostile heads: bare LF, folding, space before the colon, HTTP/0.9, a control byte in the target are
	 * 400; a request pipelined after a chunked one is not answered (one request per connection). */
	{
		static const char *const bad[] = {
			"GET /metrics HTTP/1.1\n\n",
			"GET /metrics HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
			"GET /metrics HTTP/1.1\r\nX : a\r\n\r\n",
			"GET /metrics\r\n\r\n",
			"GET /met\trics HTTP/1.1\r\n\r\n",
			"GET /metrics HTTP/1.1\r\n\rX",
		};
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			roundtrip(s, &loop, bad[i], strlen(bad[i]), &c);
			if (!strstr(c.resp, "HTTP/1.1 400 "))
				fail_msg("request %zu: %s", i, c.resp);
		}
		roundtrip(s, &loop,
			  "GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /ready HTTP/1.1\r\n\r\n", 81,
			  &c);
		assert_non_null(strstr(c.resp, "\r\n\r\nok\n"));
		assert_int_equal(calls, 1);
	}

	adm_free(s);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	adm_metrics_reset();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry_render),
		cmocka_unit_test(test_server),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
