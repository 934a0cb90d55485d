/* tconn constructors: a failure leaves nothing behind (no handle, no descriptor, no callback). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "core/tconn.h"

static int closes, opens;

static void on_open(tconn *c, int status, void *ud)
{
	(void)c;
	(void)status;
	(void)ud;
	opens++;
}

static void on_close(tconn *c, int err, void *ud)
{
	(void)c;
	(void)err;
	(void)ud;
	closes++;
}

static const tconn_cbs cbs = { .on_open = on_open, .on_close = on_close };

/* A connected loopback TCP pair: fds[0] is the accepted side, fds[1] the dialling side. */
static void tcp_pair(int fds[2])
{
	struct sockaddr_in a;
	socklen_t alen = sizeof a;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(l >= 0);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	fds[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fds[1] >= 0);
	assert_int_equal(connect(fds[1], (struct sockaddr *)&a, sizeof a), 0);
	fds[0] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(fds[0] >= 0);
	close(l);
}

/* The peer sees the connection end (EOF or reset) within 2 s. */
static bool peer_sees_close(int fd)
{
	struct timeval tv = { 2, 0 };
	char b;
	ssize_t n;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	n = recv(fd, &b, 1, 0);
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* Starting TLS fails (a client SNI longer than 255 bytes cannot be set): the adopted descriptor is closed,
 * *out is NULL and neither on_open nor on_close fires. tconn_accept goes through the same start path. */
static void test_adopt_tls_failure_closes_fd(void **st)
{
	uv_loop_t loop;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char sni[300];
	tconn *out = (tconn *)&out; /* anything but NULL: the call must clear it */
	int fds[2];
	(void)st;
	assert_non_null(ctx);
	memset(sni, 'a', sizeof sni - 1);
	sni[sizeof sni - 1] = 0;
	assert_int_equal(uv_loop_init(&loop), 0);
	tcp_pair(fds);
	opens = closes = 0;

	assert_true(tconn_adopt(&loop, fds[0], ctx, false, sni, &cbs, NULL, &out) < 0);
	assert_null(out);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(opens, 0);
	assert_int_equal(closes, 0);
	assert_true(fcntl(fds[0], F_GETFD) < 0 && errno == EBADF);
	assert_true(peer_sees_close(fds[1]));
	/* No handle is left open in the loop. */
	assert_int_equal(uv_loop_close(&loop), 0);
	close(fds[1]);
	SSL_CTX_free(ctx);
}

/* The success path still owns the descriptor until tconn_close, and reports the close once. */
static void test_adopt_plain_then_close(void **st)
{
	uv_loop_t loop;
	tconn *out = NULL;
	int fds[2];
	(void)st;
	assert_int_equal(uv_loop_init(&loop), 0);
	tcp_pair(fds);
	opens = closes = 0;

	assert_int_equal(tconn_adopt(&loop, fds[0], NULL, false, NULL, &cbs, NULL, &out), 0);
	assert_non_null(out);
	assert_true(fcntl(fds[0], F_GETFD) >= 0);
	tconn_close(out);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(closes, 1);
	assert_true(peer_sees_close(fds[1]));
	assert_int_equal(uv_loop_close(&loop), 0);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_adopt_tls_failure_closes_fd),
		cmocka_unit_test(test_adopt_plain_then_close),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
