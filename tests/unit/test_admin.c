#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

static void test_histogram(void **st)
{
	static const double b[] = { 0.005, 0.01, 0.1, 1 };
	static const double bad1[] = { 0.1, 0.1 }, bad2[] = { 1, 0.5 };
	double bad3[] = { 0.1, 0 };
	char *out;
	size_t len = 0;
	adm_metric *h, *h2;
	(void)st;
	bad3[1] = 1.0 / 0.0; /* +Inf is implicit: never a bound */
	assert_null(adm_histogram("h_seconds", NULL, NULL, bad1, 2));
	assert_null(adm_histogram("h_seconds", NULL, NULL, bad2, 2));
	assert_null(adm_histogram("h_seconds", NULL, NULL, bad3, 2));
	assert_null(adm_histogram("h_seconds", NULL, NULL, b, 0));
	h = adm_histogram("h_seconds", "Latency", "route=\"a\"", b, 4);
	assert_non_null(h);
	assert_null(adm_histogram("h_seconds", NULL, "route=\"a\"", bad1, 2)); /* bad bounds: refused even now */
	assert_ptr_equal(adm_histogram("h_seconds", NULL, "route=\"a\"", b + 1, 3), h); /* good ones: ignored */
	assert_null(adm_counter("h_seconds", NULL, NULL)); /* a histogram family is not a counter */
	adm_observe(h, 0.001);  /* first bucket */
	adm_observe(h, 0.005);  /* a bound holds its own value: le is "less or equal" */
	adm_observe(h, 0.05);   /* third */
	adm_observe(h, 2.0);    /* past every bound: +Inf only */
	adm_observe(h, 0.0 / 0.0); /* NaN: ignored */
	adm_add(h, 5);          /* not a counter: ignored */
	assert_int_equal(adm_value(h), 4);
	assert_true(adm_hist_sum(h) > 2.0559 && adm_hist_sum(h) < 2.0561);
	/* A series without labels; the family's buckets stay those of its first call. */
	h2 = adm_histogram("h_seconds", NULL, NULL, (const double[]){ 7 }, 1);
	assert_non_null(h2);
	adm_observe(h2, 0.5);
	out = adm_metrics_render(&len);
	assert_non_null(out);
	assert_string_equal(out, "# HELP h_seconds Latency\n# TYPE h_seconds histogram\n"
				 "h_seconds_bucket{route=\"a\",le=\"0.005\"} 2\n"
				 "h_seconds_bucket{route=\"a\",le=\"0.01\"} 2\n"
				 "h_seconds_bucket{route=\"a\",le=\"0.1\"} 3\n"
				 "h_seconds_bucket{route=\"a\",le=\"1\"} 3\n"
				 "h_seconds_bucket{route=\"a\",le=\"+Inf\"} 4\n"
				 "h_seconds_sum{route=\"a\"} 2.056\n"
				 "h_seconds_count{route=\"a\"} 4\n"
				 "h_seconds_bucket{le=\"0.005\"} 0\n"
				 "h_seconds_bucket{le=\"0.01\"} 0\n"
				 "h_seconds_bucket{le=\"0.1\"} 0\n"
				 "h_seconds_bucket{le=\"1\"} 1\n"
				 "h_seconds_bucket{le=\"+Inf\"} 1\n"
				 "h_seconds_sum 0.5\n"
				 "h_seconds_count 1\n");
	assert_int_equal(len, strlen(out));
	free(out);
	/* A sum that %.15g cannot carry exactly keeps every bit. */
	h2 = adm_histogram("h_seconds", NULL, "route=\"b\"", b, 4);
	adm_observe(h2, 0.1);
	adm_observe(h2, 0.2);
	out = adm_metrics_render(&len);
	assert_non_null(strstr(out, "h_seconds_sum{route=\"b\"} 0.30000000000000004\n"));
	free(out);
	adm_metrics_reset();
}

static void set_from_live(void *ud)
{
	int *live = ud;
	adm_gauge_set("live_things", NULL, *live);
}

static void noop(void *ud) { (void)ud; }

static void test_collectors(void **st)
{
	int live = 3, other = 0;
	char *out;
	size_t len;
	(void)st;
	assert_int_equal(adm_collector_add(set_from_live, &live), 0);
	out = adm_metrics_render(&len);
	assert_string_equal(out, "# TYPE live_things gauge\nlive_things 3\n"); /* gathered before the render */
	free(out);
	live = 5;
	out = adm_metrics_render(&len);
	assert_non_null(strstr(out, "live_things 5\n"));
	free(out);
	adm_collector_remove(set_from_live, &live);
	live = 9;
	out = adm_metrics_render(&len);
	assert_non_null(strstr(out, "live_things 5\n")); /* no longer asked */
	free(out);
	for (int i = 0; i < ADM_MAX_COLLECTORS; i++)
		assert_int_equal(adm_collector_add(noop, &other), 0);
	assert_int_equal(adm_collector_add(noop, &other), -ENOSPC);
	adm_metrics_reset(); /* removes them all */
	assert_int_equal(adm_collector_add(set_from_live, &live), 0);
	out = adm_metrics_render(&len);
	assert_string_equal(out, "# TYPE live_things gauge\nlive_things 9\n");
	free(out);
	adm_metrics_reset();
}

static void test_process_and_build_info(void **st)
{
	char *out, *p;
	size_t len = 0;
	double fds;
	(void)st;
	adm_build_info("1.2.3", NULL);
	adm_build_info("1.2.3", "abc\"d"); /* another series: commit escaped */
	out = adm_metrics_render(&len);
	assert_null(strstr(out, "process_")); /* off until asked for */
	assert_non_null(strstr(out, "# TYPE postern_build_info gauge\npostern_build_info{version=\"1.2.3\"} 1\n"
				    "postern_build_info{version=\"1.2.3\",commit=\"abc\\\"d\"} 1\n"));
	free(out);
	adm_process_metrics();
	out = adm_metrics_render(&len);
	for (const char *n = "process_cpu_seconds_total counter\0process_open_fds gauge\0process_max_fds gauge\0"
			     "process_virtual_memory_bytes gauge\0process_resident_memory_bytes gauge\0"
			     "process_start_time_seconds gauge\0";
	     *n; n += strlen(n) + 1) {
		char want[128];
		snprintf(want, sizeof want, "# TYPE %s\n", n);
		assert_non_null(strstr(out, want));
	}
	/* This test holds stdin, stdout, stderr open at least, far fewer than the limit. */
	p = strstr(out, "\nprocess_open_fds ");
	assert_non_null(p);
	fds = strtod(p + strlen("\nprocess_open_fds "), NULL);
	assert_true(fds >= 3 && fds < 1000);
	p = strstr(out, "\nprocess_resident_memory_bytes ");
	assert_non_null(p);
	assert_true(strtod(p + strlen("\nprocess_resident_memory_bytes "), NULL) > 100000);
	p = strstr(out, "\nprocess_start_time_seconds ");
	assert_non_null(p);
	{
		double t = strtod(p + strlen("\nprocess_start_time_seconds "), NULL), now = (double)time(NULL);
		assert_true(t > now - 3600 && t <= now + 2);
	}
	free(out);
	adm_metrics_reset(); /* also turns the process series off */
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

/* ---- POST, prefixes, bodies, the unix listener and the client ---- */

static void echo(const adm_req *q, adm_resp *r, void *ud)
{
	char out[512];
	int n = snprintf(out, sizeof out, "%s %s q=%s body=%.40s len=%zu unix=%d", q->method, q->path, q->query, q->body,
			 q->body_len, q->peer_unix);
	(void)ud;
	if (q->peer_unix)
		n += snprintf(out + n, sizeof out - (size_t)n, " uid=%d pid=%d", (int)q->peer_uid, (int)q->peer_pid);
	adm_reply(r, 200, "text/plain", out, (size_t)n);
}

static void test_post_prefix(void **st)
{
	uv_loop_t loop;
	adm_server *s;
	struct client c;
	char err[200], req[512];
	int calls = 0;
	(void)st;
	uv_loop_init(&loop);
	s = adm_new(&loop);
	assert_int_equal(adm_listen(s, "127.0.0.1:0", err, sizeof err), 0);
	assert_int_equal(adm_handle_ex(s, "/echo", ADM_GET | ADM_POST, echo, NULL), 0);
	assert_int_equal(adm_handle_ex(s, "/items/", ADM_POST | ADM_PREFIX, echo, NULL), 0);
	assert_int_equal(adm_handle_ex(s, "/items/special", ADM_GET, echo, NULL), 0);
	assert_int_equal(adm_handle(s, "/ready", ready, &calls), 0);
	assert_int_equal(adm_handle_ex(s, "/x", 0, echo, NULL), -EINVAL);

	roundtrip(s, &loop, "POST /echo?a=1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 51, &c);
	assert_non_null(strstr(c.resp, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(c.resp, "\r\n\r\nPOST /echo q=a=1 body=hello len=5 unix=0"));

	roundtrip(s, &loop, "GET /echo HTTP/1.1\r\n\r\n", 22, &c);
	assert_non_null(strstr(c.resp, "\r\n\r\nGET /echo q= body= len=0 unix=0"));

	/* the longest prefix, an exact route over a prefix one, methods per route */
	roundtrip(s, &loop, "POST /items/ab12/approve HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 58, &c);
	assert_non_null(strstr(c.resp, "\r\n\r\nPOST /items/ab12/approve q= body={} len=2"));
	roundtrip(s, &loop, "GET /items/ab12/approve HTTP/1.1\r\n\r\n", 36, &c);
	assert_non_null(strstr(c.resp, "HTTP/1.1 405 "));
	assert_non_null(strstr(c.resp, "GET is not allowed here (POST)"));
	roundtrip(s, &loop, "GET /items/special HTTP/1.1\r\n\r\n", 31, &c);
	assert_non_null(strstr(c.resp, "\r\n\r\nGET /items/special"));
	roundtrip(s, &loop, "POST /ready HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 44, &c);
	assert_non_null(strstr(c.resp, "HTTP/1.1 405 "));
	assert_int_equal(calls, 0);
	roundtrip(s, &loop, "POST /items HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 44, &c);
	assert_non_null(strstr(c.resp, "HTTP/1.1 405 ")); /* no route: GET and HEAD only */
	roundtrip(s, &loop, "DELETE /echo HTTP/1.1\r\n\r\n", 25, &c);
	assert_non_null(strstr(c.resp, "HTTP/1.1 405 "));

	/* bodies: Content-Length only, capped */
	snprintf(req, sizeof req, "POST /echo HTTP/1.1\r\nContent-Length: %u\r\n\r\nxx", ADM_MAX_BODY + 1);
	roundtrip(s, &loop, req, strlen(req), &c);
	assert_non_null(strstr(c.resp, "HTTP/1.1 413 "));
	roundtrip(s, &loop, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n", 63, &c);
	assert_non_null(strstr(c.resp, "HTTP/1.1 411 "));
	{
		size_t blen = ADM_MAX_BODY, hl;
		char *big = malloc(blen + 100);
		hl = (size_t)sprintf(big, "POST /items/x HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", blen);
		memset(big + hl, 'b', blen);
		roundtrip(s, &loop, big, hl + blen, &c);
		assert_non_null(strstr(c.resp, "HTTP/1.1 200 "));
		assert_non_null(strstr(c.resp, "len=65536"));
		free(big);
	}
	adm_free(s);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

struct creq {
	const char *target, *method, *path, *body;
	size_t max;
	int rc, status;
	char *resp;
	size_t len;
	char err[256];
	uv_async_t *done;
};

static void creq_run(void *arg)
{
	struct creq *q = arg;
	q->rc = adm_client_request(q->target, q->method, q->path, q->body, q->body ? strlen(q->body) : 0, 5000,
				   q->max ? q->max : 65536, &q->status, &q->resp, &q->len, q->err, sizeof q->err);
	uv_async_send(q->done);
}

static void client_roundtrip(uv_loop_t *loop, struct creq *q)
{
	uv_async_t done;
	uv_thread_t th;
	q->done = &done;
	q->resp = NULL;
	uv_async_init(loop, &done, on_done);
	uv_thread_create(&th, creq_run, q);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_thread_join(&th);
}

static void test_unix(void **st)
{
	uv_loop_t loop;
	adm_server *s, *s2, *s3;
	char dir[] = "/tmp/test_admin_XXXXXX", path[256], path2[256], expect[128], err[256];
	struct stat sb;
	struct creq q;
	int fd;
	(void)st;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/run/postern/gw.sock", dir);
	uv_loop_init(&loop);
	s = adm_new(&loop);
	assert_int_equal(adm_handle_ex(s, "/echo", ADM_GET | ADM_POST, echo, NULL), 0);
	assert_int_equal(adm_listen_unix(s, path, 0, err, sizeof err), 0);
	assert_int_equal(lstat(path, &sb), 0);
	assert_true(S_ISSOCK(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0600);
	assert_int_equal(adm_listen_unix(s, path, 0, err, sizeof err), -EALREADY);

	/* The peer's credentials come from the kernel. */
	memset(&q, 0, sizeof q);
	q.target = path, q.method = "POST", q.path = "/echo?z", q.body = "{\"reason\":\"ok\"}";
	client_roundtrip(&loop, &q);
	assert_int_equal(q.rc, 0);
	assert_int_equal(q.status, 200);
	snprintf(expect, sizeof expect, "POST /echo q=z body={\"reason\":\"ok\"} len=15 unix=1 uid=%d pid=%d",
		 (int)getuid(), (int)getpid());
	assert_string_equal(q.resp, expect);
	free(q.resp);

	/* 404 is an answer; an answer over the cap is not taken. */
	memset(&q, 0, sizeof q);
	q.target = path, q.method = "GET", q.path = "/nope";
	client_roundtrip(&loop, &q);
	assert_int_equal(q.rc, 0);
	assert_int_equal(q.status, 404);
	assert_string_equal(q.resp, "not found\n");
	free(q.resp);
	memset(&q, 0, sizeof q);
	q.target = path, q.method = "GET", q.path = "/echo", q.max = 8;
	client_roundtrip(&loop, &q);
	assert_int_equal(q.rc, -EMSGSIZE);
	assert_null(q.resp);

	/* A live socket is not taken over; a file that is not a socket is not removed. */
	s2 = adm_new(&loop);
	assert_int_equal(adm_listen_unix(s2, path, 0, err, sizeof err), -EADDRINUSE);
	assert_non_null(strstr(err, "another process is listening"));
	snprintf(path2, sizeof path2, "%s/plain", dir);
	close(open(path2, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(adm_listen_unix(s2, path2, 0, err, sizeof err), -EEXIST);
	assert_non_null(strstr(err, "is not a socket"));
	unlink(path2);
	/* A stale socket (bound, nobody listening) is replaced; the mode asked for is set. */
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		strcpy(sa.sun_path, path2);
		assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
		close(fd);
	}
	assert_int_equal(adm_listen_unix(s2, path2, 0660, err, sizeof err), 0);
	assert_int_equal(lstat(path2, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0660);
	memset(&q, 0, sizeof q);
	q.target = path2, q.method = "GET", q.path = "/healthz";
	client_roundtrip(&loop, &q);
	assert_int_equal(q.rc, 0);
	assert_string_equal(q.resp, "ok\n");
	free(q.resp);

	{
		char lng[200];
		memset(lng, 'a', sizeof lng - 1);
		lng[0] = '/';
		lng[sizeof lng - 1] = 0;
		assert_int_equal(adm_listen_unix(s2, lng, 0, err, sizeof err), -EALREADY);
		s3 = adm_new(&loop);
		assert_int_equal(adm_listen_unix(s3, lng, 0, err, sizeof err), -ENAMETOOLONG);
		adm_free(s3);
	}
	adm_free(s);
	adm_free(s2);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	/* adm_free took the socket files away */
	assert_int_equal(lstat(path, &sb), -1);
	assert_int_equal(lstat(path2, &sb), -1);

	/* The client's errors: no file, nobody listening. */
	assert_int_equal(adm_client_request(path, "GET", "/", NULL, 0, 1000, 100, &q.status, &q.resp, &q.len, err,
					    sizeof err), -ENOENT);
	assert_non_null(strstr(err, "cannot connect to"));
	assert_int_equal(adm_client_request("127.0.0.1:1", "GET", "/", NULL, 0, 1000, 100, &q.status, &q.resp,
					    &q.len, err, sizeof err), -ECONNREFUSED);
	snprintf(path, sizeof path, "%s/run/postern", dir);
	rmdir(path);
	snprintf(path, sizeof path, "%s/run", dir);
	rmdir(path);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry_render),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_collectors),
		cmocka_unit_test(test_process_and_build_info),
		cmocka_unit_test(test_server),
		cmocka_unit_test(test_post_prefix),
		cmocka_unit_test(test_unix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
