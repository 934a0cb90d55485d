/* The egress proxy on a loopback listening socket (the engine would create it inside the sandbox's network
 * namespace) against a small upstream HTTP server on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "sandbox/egress/egress_proxy.h"

static int listen_any(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* Upstream: for each connection, reads until a blank line, records what it got, answers. */
static int up_fd;
static uint16_t up_port;
static char up_seen[8192];
static size_t up_seen_len;
static pthread_mutex_t up_mu = PTHREAD_MUTEX_INITIALIZER;

static void *upstream(void *arg)
{
	(void)arg;
	for (;;) {
		int c = accept(up_fd, NULL, NULL);
		char buf[8192];
		size_t n = 0;
		if (c < 0)
			return NULL;
		struct pollfd p = { c, POLLIN, 0 };
		/* Read what arrives within 300 ms (head, body, anything pipelined). */
		while (n < sizeof buf - 1 && poll(&p, 1, 300) > 0) {
			ssize_t k = read(c, buf + n, sizeof buf - 1 - n);
			if (k <= 0)
				break;
			n += (size_t)k;
		}
		buf[n] = 0;
		pthread_mutex_lock(&up_mu);
		memcpy(up_seen, buf, n + 1);
		up_seen_len = n;
		pthread_mutex_unlock(&up_mu);
		if (!strncmp(buf, "RAW", 3)) {
			(void)!write(c, "tunnel-ok", 9);
		} else {
			const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
			(void)!write(c, r, strlen(r));
		}
		close(c);
	}
}

static egx *start(const char *const *allow, const char *const *deny, uint16_t *port, unsigned head_ms)
{
	struct egx_config c = { .header_timeout_ms = head_ms, .skip_local_addrs = 1 };
	char err[200];
	egx *x;
	c.policy = egp_new();
	for (; allow && *allow; allow++)
		assert_int_equal(egp_allow(c.policy, *allow, err, sizeof err), 0);
	for (; deny && *deny; deny++)
		assert_int_equal(egp_deny(c.policy, *deny, err, sizeof err), 0);
	c.listen_fd = listen_any(port);
	x = egx_start(&c, err, sizeof err);
	assert_non_null(x);
	return x;
}

/* Sends req to the proxy, returns everything it answers until close (or 3 s). */
static char *exchange(uint16_t port, const char *req, size_t reqlen)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char *buf = calloc(1, 65536);
	size_t n = 0;
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	if (reqlen)
		assert_int_equal(write(fd, req, reqlen), (ssize_t)reqlen);
	struct pollfd p = { fd, POLLIN, 0 };
	while (n < 65535 && poll(&p, 1, 3000) > 0) {
		ssize_t k = read(fd, buf + n, 65535 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	return buf;
}

static char *get(uint16_t port, const char *req)
{
	return exchange(port, req, strlen(req));
}

static void expect_refused(uint16_t port, const char *req, const char *reason)
{
	char *r = get(port, req), want[128];
	snprintf(want, sizeof want, "X-Proxy-Error: %s\r\n", reason);
	if (strncmp(r, "HTTP/1.1 403 ", 13) != 0 || !strstr(r, want))
		fail_msg("request %.60s: want 403 %s, got: %.300s", req, reason, r);
	free(r);
}

static void test_plain_http_allowed_and_rewritten(void **st)
{
	static const char *const allow[] = { "localhost", "127.0.0.1", NULL };
	uint16_t port;
	char req[512], *r;
	egx *x = start(allow, NULL, &port, 0);
	(void)st;
	snprintf(req, sizeof req,
		 "POST http://localhost:%u/p?q=1 HTTP/1.1\r\nHost: evil.example\r\nProxy-Authorization: x\r\n"
		 "Content-Length: 4\r\nX-Keep: yes\r\n\r\nbodyGET http://evil.example/ HTTP/1.1\r\n\r\n",
		 up_port);
	r = get(port, req);
	assert_non_null(strstr(r, "200 OK"));
	assert_non_null(strstr(r, "hello"));
	free(r);
	pthread_mutex_lock(&up_mu);
	assert_non_null(strstr(up_seen, "POST /p?q=1 HTTP/1.1\r\n"));
	assert_non_null(strstr(up_seen, "X-Keep: yes\r\n"));
	assert_non_null(strstr(up_seen, "Connection: close\r\n"));
	assert_non_null(strstr(up_seen, "\r\n\r\nbody"));
	assert_null(strstr(up_seen, "evil.example")); /* Host rewritten; pipelined request not forwarded */
	assert_null(strstr(up_seen, "Proxy-Authorization"));
	pthread_mutex_unlock(&up_mu);
	egx_stop(x);
}

static void test_connect_tunnel(void **st)
{
	static const char *const allow[] = { "127.0.0.1", NULL };
	uint16_t port;
	char req[256], *r;
	egx *x = start(allow, NULL, &port, 0);
	(void)st;
	snprintf(req, sizeof req, "CONNECT 127.0.0.1:%u HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\nRAW-early-data", up_port,
		 up_port);
	r = get(port, req);
	assert_non_null(strstr(r, "HTTP/1.1 200 Connection Established\r\n\r\ntunnel-ok"));
	free(r);
	pthread_mutex_lock(&up_mu);
	assert_string_equal(up_seen, "RAW-early-data");
	pthread_mutex_unlock(&up_mu);
	egx_stop(x);
}

static void test_refusals(void **st)
{
	static const char *const allow[] = { "*.example.com", "localhost", NULL };
	static const char *const deny[] = { "bad.example.com", NULL };
	uint16_t port;
	char req[256];
	egx *x = start(allow, deny, &port, 0);
	(void)st;
	expect_refused(port, "CONNECT bad.example.com:443 HTTP/1.1\r\n\r\n", "blocked-by-denylist");
	expect_refused(port, "CONNECT other.org:443 HTTP/1.1\r\n\r\n", "blocked-by-allowlist");
	expect_refused(port, "CONNECT example.com:443 HTTP/1.1\r\n\r\n", "blocked-by-allowlist");
	expect_refused(port, "CONNECT example.com.evil:443 HTTP/1.1\r\n\r\n", "blocked-by-allowlist");
	expect_refused(port, "CONNECT foo.invalid:443 HTTP/1.1\r\n\r\n", "reserved-name");
	expect_refused(port, "GET http://127.0.0.1/ HTTP/1.1\r\n\r\n", "ip-literal-not-allowed");
	expect_refused(port, "GET http://2130706433/ HTTP/1.1\r\n\r\n", "ip-literal-not-allowed");
	expect_refused(port, "GET http://0x7f.1/ HTTP/1.1\r\n\r\n", "ip-literal-not-allowed");
	expect_refused(port, "CONNECT [::1]:443 HTTP/1.1\r\n\r\n", "ip-literal-not-allowed");
	expect_refused(port, "CONNECT [::ffff:127.0.0.1]:443 HTTP/1.1\r\n\r\n", "ip-literal-not-allowed");
	expect_refused(port, "GET http://[::ffff:7f00:1]/ HTTP/1.1\r\n\r\n", "ip-literal-not-allowed");
	/* An allowed name that resolves to loopback is refused after resolution. */
	snprintf(req, sizeof req, "GET http://localhost:%u/ HTTP/1.1\r\n\r\n", up_port);
	expect_refused(port, req, "blocked-resolved-address");
	egx_stop(x);
}

static void test_bad_requests(void **st)
{
	uint16_t port;
	char *r, big[20000];
	static const char *const allow[] = { "*", NULL };
	egx *x = start(allow, NULL, &port, 300);
	(void)st;
	r = get(port, "GET /relative HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_non_null(strstr(r, "400 Bad Request"));
	assert_non_null(strstr(r, "X-Proxy-Error: bad-request"));
	free(r);
	r = get(port, "GET https://a.example/ HTTP/1.1\r\n\r\n");
	assert_non_null(strstr(r, "400 Bad Request"));
	free(r);
	r = get(port, "BLAH\r\n\r\n");
	assert_non_null(strstr(r, "400"));
	free(r);
	r = get(port, "CONNECT nohost HTTP/1.1\r\n\r\n");
	assert_non_null(strstr(r, "400"));
	free(r);
	memcpy(big, "GET http://a.example/ HTTP/1.1\r\nX: ", 35);
	memset(big + 35, 'a', sizeof big - 35);
	r = exchange(port, big, sizeof big);
	assert_non_null(strstr(r, "431"));
	assert_non_null(strstr(r, "X-Proxy-Error: header-too-large"));
	free(r);
	r = get(port, "GET http://a.example/ HTTP/1.1\r\n");
	assert_non_null(strstr(r, "408"));
	assert_non_null(strstr(r, "X-Proxy-Error: request-timeout"));
	free(r);
	egx_stop(x);
}

/* The head cap (16384 by default) counts the whole head, its last LF too; a target over 8 KiB is refused by
 * name. A head that passes reaches the policy (403 here). */
static void test_head_cap_boundary(void **st)
{
	static const char *const allow[] = { "only.example", NULL };
	static const char start_line[] = "GET http://b.example/ HTTP/1.1\r\nX: ";
	uint16_t port;
	char *r, *big = malloc(20000);
	size_t fixed = strlen(start_line) + 4; /* "\r\n\r\n" */
	egx *x = start(allow, NULL, &port, 300);
	(void)st;
	for (size_t total = 16383; total <= 16385; total++) {
		memcpy(big, start_line, strlen(start_line));
		memset(big + strlen(start_line), 'a', total - fixed);
		memcpy(big + total - 4, "\r\n\r\n", 4);
		r = exchange(port, big, total);
		if (total <= 16384 ? strncmp(r, "HTTP/1.1 403 ", 13) : strncmp(r, "HTTP/1.1 431 ", 13))
			fail_msg("head of %zu bytes: got %.200s", total, r);
		free(r);
	}
	memcpy(big, "GET http://b.example/", 21);
	memset(big + 21, 'p', 8200);
	memcpy(big + 8221, " HTTP/1.1\r\n\r\n", 13);
	r = exchange(port, big, 8234);
	assert_non_null(strstr(r, "HTTP/1.1 400 "));
	assert_non_null(strstr(r, "request target too long"));
	free(r);
	free(big);
	egx_stop(x);
}

/* A CONNECT tunnel carrying more than the 1 MiB high-water mark each way, to a client that reads late:
 * every byte arrives in order, and each side's half-close reaches the other. */
#define BULK_DOWN (6u << 20)
#define BULK_UP (3u << 20)
static int bulk_fd;
static size_t bulk_got;
static bool bulk_ok;

static void *bulk_upstream(void *arg)
{
	static uint8_t buf[65536];
	size_t off = 0;
	int c = accept(bulk_fd, NULL, NULL);
	(void)arg;
	if (c < 0)
		return NULL;
	bulk_ok = true;
	while (off < BULK_DOWN) {
		size_t n = BULK_DOWN - off < sizeof buf ? BULK_DOWN - off : sizeof buf;
		ssize_t k;
		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)((off + i) % 251);
		if ((k = write(c, buf, n)) <= 0)
			break;
		off += (size_t)k;
	}
	shutdown(c, SHUT_WR);
	for (;;) {
		ssize_t k = read(c, buf, sizeof buf);
		if (k <= 0)
			break;
		for (ssize_t i = 0; i < k; i++)
			if (buf[i] != (uint8_t)((bulk_got + (size_t)i) % 253))
				bulk_ok = false;
		bulk_got += (size_t)k;
	}
	close(c);
	return NULL;
}

static void test_connect_bulk_backpressure(void **st)
{
	static const char *const allow[] = { "127.0.0.1", NULL };
	static uint8_t buf[65536];
	uint16_t port, bport;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char req[256], head[128];
	size_t hn = 0, got = 0, off = 0;
	const char *end;
	pthread_t t;
	int fd;
	egx *x = start(allow, NULL, &port, 0);
	(void)st;
	bulk_fd = listen_any(&bport);
	pthread_create(&t, NULL, bulk_upstream, NULL);
	a.sin_port = htons(port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	snprintf(req, sizeof req, "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", bport);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	/* The answer, byte by byte so that no tunnel byte is taken with it. */
	while (hn < sizeof head - 1 && !(hn >= 4 && !memcmp(head + hn - 4, "\r\n\r\n", 4))) {
		assert_int_equal(read(fd, head + hn, 1), 1);
		hn++;
	}
	head[hn] = 0;
	end = "HTTP/1.1 200 Connection Established\r\n\r\n";
	assert_string_equal(head, end);
	usleep(300 * 1000); /* the upstream fills the proxy's queue towards us: it must pause, not grow */
	for (;;) {
		ssize_t k = read(fd, buf, sizeof buf);
		if (k <= 0)
			break;
		for (ssize_t i = 0; i < k; i++)
			if (buf[i] != (uint8_t)((got + (size_t)i) % 251))
				fail_msg("byte %zu differs", got + (size_t)i);
		got += (size_t)k;
	}
	assert_int_equal(got, BULK_DOWN); /* and then EOF: the upstream's half-close came through */
	while (off < BULK_UP) {
		size_t n = BULK_UP - off < sizeof buf ? BULK_UP - off : sizeof buf;
		ssize_t k;
		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)((off + i) % 253);
		k = write(fd, buf, n);
		assert_true(k > 0);
		off += (size_t)k;
	}
	shutdown(fd, SHUT_WR);
	pthread_join(t, NULL);
	assert_true(bulk_ok);
	assert_int_equal(bulk_got, BULK_UP);
	close(fd);
	close(bulk_fd);
	egx_stop(x);
}

static void test_connect_failure(void **st)
{
	static const char *const allow[] = { "127.0.0.1", NULL };
	uint16_t port, dead;
	int fd = listen_any(&dead);
	char req[128], *r;
	egx *x;
	close(fd); /* nothing listens there any more */
	x = start(allow, NULL, &port, 0);
	(void)st;
	snprintf(req, sizeof req, "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", dead);
	r = get(port, req);
	assert_non_null(strstr(r, "502"));
	assert_non_null(strstr(r, "X-Proxy-Error: connect-failed"));
	free(r);
	egx_stop(x);
}

/* The rebuilt head of a plain request with the most fields (100) and a long method and port: it goes out
 * whole, the buffer it is built in sized for the ": " and CRLF each field gains (it was 2 bytes short: the
 * head was cut and 2 bytes past the buffer were sent). A second request after the first one's body, and one
 * smuggled in a folded or space-before-colon header, never reach the upstream. */
static void test_rebuilt_head_and_smuggling(void **st)
{
	static const char *const allow[] = { "127.0.0.1", NULL };
	uint16_t port;
	char req[4096], *r;
	size_t o;
	egx *x = start(allow, NULL, &port, 300);
	(void)st;
	assert_true(up_port >= 10000); /* 5 digits, as the sizing below assumes */
	o = (size_t)snprintf(req, sizeof req, "UNSUBSCRIBE http://127.0.0.1:%u/ HTTP/1.1\r\n", up_port);
	for (int i = 0; i < 100; i++)
		o += (size_t)snprintf(req + o, sizeof req - o, "h%02d: v\r\n", i);
	o += (size_t)snprintf(req + o, sizeof req - o, "\r\n");
	r = exchange(port, req, o);
	assert_non_null(strstr(r, "200 OK"));
	free(r);
	pthread_mutex_lock(&up_mu);
	assert_non_null(strstr(up_seen, "UNSUBSCRIBE / HTTP/1.1\r\nh00: v\r\n"));
	assert_non_null(strstr(up_seen, "h99: v\r\nHost: 127.0.0.1:"));
	assert_int_equal(strlen(up_seen), up_seen_len); /* no NUL or stray byte sent */
	assert_true(up_seen_len > 25 && !strcmp(up_seen + up_seen_len - 21, "Connection: close\r\n\r\n"));
	pthread_mutex_unlock(&up_mu);

	/* after the first request's body: not forwarded */
	snprintf(req, sizeof req,
		 "POST http://127.0.0.1:%u/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET http://127.0.0.1:%u/smuggled HTTP/1.1\r\n\r\n",
		 up_port, up_port);
	r = get(port, req);
	assert_non_null(strstr(r, "200 OK"));
	free(r);
	pthread_mutex_lock(&up_mu);
	assert_non_null(strstr(up_seen, "\r\n\r\nabc"));
	assert_null(strstr(up_seen, "smuggled"));
	pthread_mutex_unlock(&up_mu);

	/* framing tricks are refused before anything is sent (the upstream keeps what it saw last) */
	static const char *const tricks[] = {
		"POST http://127.0.0.1:%u/ HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
		"POST http://127.0.0.1:%u/ HTTP/1.1\r\nHost : evil.example\r\nContent-Length: 0\r\n\r\n",
		"POST http://127.0.0.1:%u/ HTTP/1.1\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
		"POST http://127.0.0.1:%u/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.0\r\n\r\n",
		"POST http://127.0.0.1:%u/ HTTP/1.1\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
		"GET http://127.0.0.1:%u/ HTTP/1.1\nX: y\n\n",
		"GET http://127.0.0.1:%u/ HTTP/1.1\r\nX: y\r\n\rGET /smuggled HTTP/1.1\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof tricks / sizeof tricks[0]; i++) {
		snprintf(req, sizeof req, tricks[i], up_port);
		r = get(port, req);
		if (strncmp(r, "HTTP/1.1 400 ", 13) != 0)
			fail_msg("trick %zu: want 400, got %.200s", i, r);
		free(r);
	}
	pthread_mutex_lock(&up_mu);
	assert_null(strstr(up_seen, "smuggled"));
	assert_null(strstr(up_seen, "evil"));
	pthread_mutex_unlock(&up_mu);

	/* a chunked body whose chunk is not followed by CRLF: the upstream got the head, not the bad bytes */
	snprintf(req, sizeof req,
		 "POST http://127.0.0.1:%u/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
		 up_port);
	r = get(port, req);
	free(r);
	pthread_mutex_lock(&up_mu);
	assert_null(strstr(up_seen, "abcXX"));
	assert_null(strstr(up_seen, "smuggled"));
	pthread_mutex_unlock(&up_mu);
	egx_stop(x);
}

int main(void)
{
	pthread_t t;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_http_allowed_and_rewritten),
		cmocka_unit_test(test_connect_tunnel),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_head_cap_boundary),
		cmocka_unit_test(test_connect_bulk_backpressure),
		cmocka_unit_test(test_connect_failure),
		cmocka_unit_test(test_rebuilt_head_and_smuggling),
	};
	up_fd = listen_any(&up_port);
	pthread_create(&t, NULL, upstream, NULL);
	pthread_detach(t);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
