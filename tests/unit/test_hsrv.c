/* core/hsrv: the pure pieces (route patterns, query parameters, JSON escaping), then a live server on a loop
 * thread driven by a blocking client: keep-alive, chunked bodies, the body cap (413, both framings), a
 * malformed head (400), an answer completed later (long poll), a stream (chunked), the idle timeout, the
 * connection cap, and a peer that leaves while its request waits (the gone callback). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <cmocka.h>
#include <uv.h>

#include "core/hsrv.h"

static void test_match(void **st)
{
	char caps[HSRV_MAX_CAPS][HSRV_CAP_MAX];
	unsigned n = 9;
	(void)st;
	assert_true(hsrv_match("/v1/environments", "/v1/environments", caps, &n));
	assert_int_equal(n, 0);
	assert_true(hsrv_match("/v1/environments/{}/work/{}/ack", "/v1/environments/env_1/work/work_2/ack", caps, &n));
	assert_int_equal(n, 2);
	assert_string_equal(caps[0], "env_1");
	assert_string_equal(caps[1], "work_2");
	assert_false(hsrv_match("/v1/environments/{}", "/v1/environments/", caps, &n));          /* empty capture */
	assert_false(hsrv_match("/v1/environments/{}", "/v1/environments/a/b", caps, &n));       /* extra segment */
	assert_false(hsrv_match("/v1/environments/{}", "/v1/environments/a%2Fb", caps, &n));     /* a byte outside ids */
	assert_false(hsrv_match("/v1/environments/{}/work", "/v1/environments/x/works", caps, &n));
	assert_false(hsrv_match("/v1/sessions", "/v1/sessions/", caps, &n));
	{
		char longp[300] = "/v1/sessions/";
		memset(longp + strlen(longp), 'a', 200);
		longp[13 + 200] = 0;
		assert_false(hsrv_match("/v1/sessions/{}", longp, caps, &n)); /* capture over HSRV_CAP_MAX */
	}
}

static void test_query(void **st)
{
	char v[16];
	(void)st;
	assert_int_equal(hsrv_query_get("block_ms=999&reclaim_older_than_ms=5", "block_ms", v, sizeof v), 3);
	assert_string_equal(v, "999");
	assert_int_equal(hsrv_query_get("a=1&block_ms_x=2", "block_ms", v, sizeof v), -ENOENT);
	assert_int_equal(hsrv_query_get("x=%32%30+1", "x", v, sizeof v), 4);
	assert_string_equal(v, "20 1");
	assert_int_equal(hsrv_query_get("x=%zz", "x", v, sizeof v), -EINVAL);
	assert_int_equal(hsrv_query_get("x=%4", "x", v, sizeof v), -EINVAL);
	assert_int_equal(hsrv_query_get("x=0123456789abcdefghij", "x", v, sizeof v), -E2BIG);
	assert_int_equal(hsrv_query_get("x=1&x=2", "x", v, sizeof v), 1);
	assert_string_equal(v, "1");
	assert_int_equal(hsrv_query_get("flag&y=2", "flag", v, sizeof v), 0);
	assert_int_equal(hsrv_query_get("", "x", v, sizeof v), -ENOENT);
	assert_int_equal(hsrv_query_get(NULL, "x", v, sizeof v), -ENOENT);
	assert_string_equal(hsrv_reason(413), "Content Too Large");
}

static void test_escape(void **st)
{
	char out[32];
	(void)st;
	assert_string_equal(hsrv_json_escape("a\"b\\c\n", out, sizeof out), "a\\\"b\\\\c\\u000a");
	assert_string_equal(hsrv_json_escape("\xc3\xa9\xff", out, sizeof out), "\xc3\xa9"); /* bad UTF-8 dropped */
	assert_string_equal(hsrv_json_escape("abcdef", out, 4), "abc");
}

/* ---- the live server ---- */
static uv_loop_t sloop;
static hsrv *srv;
static uv_async_t stop_async;
static int port;
static int gone_calls;
static uv_timer_t later_t;
static hsrv_req *later_req;

static void later_cb(uv_timer_t *t)
{
	(void)t;
	if (later_req)
		hsrv_reply(later_req, 200, "text/plain", NULL, "late", 4);
	later_req = NULL;
}

static void later_gone(hsrv_req *r, void *ud)
{
	(void)r;
	(void)ud;
	later_req = NULL;
	gone_calls++;
}

static void handler(hsrv_req *r, void *ud)
{
	const char *p = hsrv_path(r);
	size_t n;
	const char *b = hsrv_body(r, &n);
	char out[256];
	(void)ud;
	if (!strcmp(p, "/echo")) {
		int k = snprintf(out, sizeof out, "%s %zu %s q=%s h=%s", hsrv_method(r), n, b, hsrv_query(r),
				 hsrv_header(r, "X-Test") ? hsrv_header(r, "X-Test") : "-");
		hsrv_reply(r, 200, "text/plain", "X-Extra: 1\r\n", out, (size_t)k);
	} else if (!strcmp(p, "/later")) {
		later_req = r;
		hsrv_on_gone(r, later_gone, NULL);
		uv_timer_start(&later_t, later_cb, 100, 0);
	} else if (!strcmp(p, "/stream")) {
		hsrv_stream_begin(r, 200, "text/event-stream", NULL);
		hsrv_stream_write(r, "data: 1\n\n", 9);
		hsrv_stream_write(r, "data: 2\n\n", 9);
		hsrv_stream_end(r);
	} else
		hsrv_reply(r, 404, NULL, NULL, "{}", 2);
}

static void on_stop(uv_async_t *a)
{
	(void)a;
	hsrv_free(srv);
	uv_close((uv_handle_t *)&stop_async, NULL);
	uv_close((uv_handle_t *)&later_t, NULL);
}

static void *loop_main(void *arg)
{
	(void)arg;
	uv_run(&sloop, UV_RUN_DEFAULT);
	return NULL;
}

static pthread_t thr;

static int start_server(void **st)
{
	hsrv_opts o = { .max_body = 1024, .max_head = 4096, .idle_ms = 400, .head_ms = 2000, .max_conns = 4 };
	char err[256];
	(void)st;
	uv_loop_init(&sloop);
	assert_int_equal(hsrv_new(&sloop, &o, handler, NULL, &srv, err, sizeof err), 0);
	assert_int_equal(hsrv_listen(srv, "127.0.0.1:0", err, sizeof err), 0);
	port = hsrv_port(srv);
	uv_async_init(&sloop, &stop_async, on_stop);
	uv_timer_init(&sloop, &later_t);
	pthread_create(&thr, NULL, loop_main, NULL);
	return 0;
}

static int stop_server(void **st)
{
	(void)st;
	uv_async_send(&stop_async);
	pthread_join(thr, NULL);
	uv_loop_close(&sloop);
	return 0;
}

static int dial(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 3 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

static void sendall(int fd, const char *s)
{
	size_t n = strlen(s);
	assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads until want appears (or the peer closes, or 3 s): the bytes so far in buf. */
static size_t read_until(int fd, char *buf, size_t cap, const char *want)
{
	size_t o = 0;
	buf[0] = 0;
	while (o + 1 < cap && !(want && strstr(buf, want))) {
		ssize_t k = recv(fd, buf + o, cap - 1 - o, 0);
		if (k <= 0)
			break;
		o += (size_t)k;
		buf[o] = 0;
	}
	return o;
}

static bool closed_by_peer(int fd)
{
	char c;
	return recv(fd, &c, 1, 0) == 0;
}

static void test_keepalive_and_chunked(void **st)
{
	char buf[4096];
	int fd = dial();
	(void)st;
	sendall(fd, "POST /echo?a=1 HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\nContent-Length: 5\r\n\r\nhello");
	read_until(fd, buf, sizeof buf, "h=yes");
	assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(buf, "Connection: keep-alive"));
	assert_non_null(strstr(buf, "X-Extra: 1"));
	assert_non_null(strstr(buf, "POST 5 hello q=a=1 h=yes"));
	/* Expect: 100-continue gets its interim answer before the body is sent */
	sendall(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
	read_until(fd, buf, sizeof buf, "\r\n\r\n");
	assert_string_equal(buf, "HTTP/1.1 100 Continue\r\n\r\n");
	sendall(fd, "abc");
	read_until(fd, buf, sizeof buf, "POST 3 abc");
	assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
	/* the same connection, a chunked body, pipelined with a GET */
	sendall(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
		    "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
	read_until(fd, buf, sizeof buf, "GET 0");
	assert_non_null(strstr(buf, "POST 5 abcde"));
	assert_non_null(strstr(buf, "GET 0  q= h=-"));
	close(fd);
}

static void test_body_cap_and_bad_head(void **st)
{
	char buf[4096], big[2100];
	int fd = dial();
	(void)st;
	sendall(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
	read_until(fd, buf, sizeof buf, NULL);
	assert_non_null(strstr(buf, "HTTP/1.1 413 Content Too Large"));
	assert_non_null(strstr(buf, "over the limit of 1024 bytes"));
	assert_non_null(strstr(buf, "Connection: close"));
	close(fd);
	/* the whole refused body sent anyway: read and dropped, so the answer arrives (no reset) */
	fd = dial();
	{
		static char huge[300 * 1024];
		memset(huge, 'z', sizeof huge - 1);
		sendall(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 307199\r\n\r\n");
		sendall(fd, huge);
		read_until(fd, buf, sizeof buf, NULL);
		assert_non_null(strstr(buf, "HTTP/1.1 413"));
	}
	close(fd);
	fd = dial();
	memset(big, 'x', 2000);
	big[2000] = 0;
	sendall(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n");
	sendall(fd, big);
	sendall(fd, "\r\n0\r\n\r\n");
	read_until(fd, buf, sizeof buf, NULL);
	assert_non_null(strstr(buf, "HTTP/1.1 413"));
	close(fd);
	fd = dial();
	sendall(fd, "GET /echo HTTP/1.1\nHost: x\n\n");
	read_until(fd, buf, sizeof buf, NULL);
	assert_non_null(strstr(buf, "HTTP/1.1 400"));
	assert_non_null(strstr(buf, "{\"error\":"));
	close(fd);
}

static void test_later_stream_gone(void **st)
{
	char buf[4096];
	int fd = dial();
	(void)st;
	sendall(fd, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
	read_until(fd, buf, sizeof buf, "late");
	assert_non_null(strstr(buf, "HTTP/1.1 200"));
	sendall(fd, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
	read_until(fd, buf, sizeof buf, "0\r\n\r\n");
	assert_non_null(strstr(buf, "Transfer-Encoding: chunked"));
	assert_non_null(strstr(buf, "9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n"));
	/* a peer that leaves while its answer waits: the gone callback, no answer written */
	sendall(fd, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
	usleep(20000);
	close(fd);
	for (int i = 0; i < 100 && !gone_calls; i++)
		usleep(10000);
	assert_int_equal(gone_calls, 1);
}

static void test_idle_and_cap(void **st)
{
	int fds[6];
	(void)st;
	int fd = dial();
	usleep(700000); /* idle_ms 400 */
	assert_true(closed_by_peer(fd));
	close(fd);
	for (int i = 0; i < 6; i++)
		fds[i] = dial();
	usleep(100000);
	assert_true(closed_by_peer(fds[4])); /* max_conns 4 */
	assert_true(closed_by_peer(fds[5]));
	for (int i = 0; i < 6; i++)
		close(fds[i]);
}

int main(void)
{
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_escape),
	};
	const struct CMUnitTest live[] = {
		cmocka_unit_test(test_keepalive_and_chunked),
		cmocka_unit_test(test_body_cap_and_bad_head),
		cmocka_unit_test(test_later_stream_gone),
		cmocka_unit_test(test_idle_and_cap),
	};
	int rc = cmocka_run_group_tests(pure, NULL, NULL);
	return rc | cmocka_run_group_tests(live, start_server, stop_server);
}
