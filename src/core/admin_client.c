/* The admin server's client (core/admin.h, "client"): one blocking HTTP/1.1 request over a unix socket or
 * TCP, the answer read until the server closes and parsed by core/h1. For commands, not for the loop. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/admin.h"
#include "core/cbuf.h"
#include "core/err.h"
#include "core/h1.h"
#include "core/netaddr.h"

#define HEAD_MAX (16u * 1024)

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for ev on fd until the deadline: 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short ev, uint64_t deadline)
{
	for (;;) {
		uint64_t now = now_ms();
		struct pollfd p = { .fd = fd, .events = ev };
		int n;
		if (now >= deadline)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)(deadline - now));
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int dial(const char *target, uint64_t deadline, int *out, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, rc, so = 0;
	socklen_t sol = sizeof so;

	memset(&ss, 0, sizeof ss);
	if (target[0] == '/' || target[0] == '.') {
		struct sockaddr_un *su = (struct sockaddr_un *)&ss;
		if (strlen(target) >= sizeof su->sun_path)
			return err_set(err, errlen, -ENAMETOOLONG, "%s: socket path too long", target);
		su->sun_family = AF_UNIX;
		memcpy(su->sun_path, target, strlen(target) + 1);
		sl = sizeof *su;
	} else if (na_parse_sockaddr(target, false, &ss) == 0) {
		sl = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	} else {
		return err_set(err, errlen, -EINVAL, "'%s' is neither a socket path nor ip:port", target);
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return err_set(err, errlen, -errno, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&ss, sl) < 0) {
		if (errno != EINPROGRESS) {
			rc = -errno;
			goto fail;
		}
		if ((rc = wait_fd(fd, POLLOUT, deadline)) < 0)
			goto fail;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sol) < 0 || so) {
			rc = so ? -so : -errno;
			goto fail;
		}
	}
	*out = fd;
	return 0;
fail:
	close(fd);
	return err_set(err, errlen, rc, "cannot connect to %s: %s", target,
		       rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
}

static int send_all(int fd, const char *p, size_t n, uint64_t deadline)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		int rc;
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN)
			return -errno;
		if ((rc = wait_fd(fd, POLLOUT, deadline)) < 0)
			return rc;
	}
	return 0;
}

struct body {
	cbuf b;
	bool over;
};

static void body_bytes(void *ud, const char *at, size_t n)
{
	struct body *bd = ud;
	if (!bd->over && cbuf_append(&bd->b, at, n) < 0)
		bd->over = true;
}

int adm_client_request(const char *target, const char *method, const char *path, const char *body,
		       size_t body_len, uint32_t timeout_ms, size_t max_resp, int *status, char **resp,
		       size_t *resp_len, char *err, size_t errlen)
{
	uint64_t deadline = now_ms() + timeout_ms;
	struct body bd = { .b = CBUF_INIT(1024, max_resp ? max_resp : 1) };
	char head[1024], buf[8192];
	h1 h;
	h1_ev ev = H1_MORE;
	size_t total = 0;
	int fd = -1, rc, n;

	*resp = NULL;
	if ((rc = dial(target, deadline, &fd, err, errlen)) < 0)
		return rc;
	n = snprintf(head, sizeof head,
		     "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: postern/" POSTERN_VERSION "\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
		     method, path, body ? body_len : 0);
	if (n < 0 || (size_t)n >= sizeof head) {
		rc = err_set(err, errlen, -EINVAL, "request path too long");
		goto done;
	}
	if ((rc = send_all(fd, head, (size_t)n, deadline)) < 0 ||
	    (body && body_len && (rc = send_all(fd, body, body_len, deadline)) < 0)) {
		err_set(err, errlen, rc, "%s: cannot send the request: %s", target,
			rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
		goto done;
	}
	h1_init(&h, false, HEAD_MAX);
	h.body_cb = body_bytes;
	h.body_ud = &bd;
	if (!strcmp(method, "HEAD"))
		h1_skip_body(&h);
	/* Read until the server closes (it always does: Connection: close), feeding the parser as bytes come. */
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		const uint8_t *p = (const uint8_t *)buf;
		size_t left, used;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			if ((rc = wait_fd(fd, POLLIN, deadline)) < 0) {
				err_set(err, errlen, rc, "%s: no answer within %u ms", target, timeout_ms);
				goto done;
			}
			continue;
		}
		if (r < 0) {
			rc = err_set(err, errlen, -errno, "%s: %s", target, strerror(errno));
			goto done;
		}
		if (r == 0)
			break;
		total += (size_t)r;
		if (total > HEAD_MAX + max_resp + 64) {
			rc = err_set(err, errlen, -EMSGSIZE, "%s: answer over %zu bytes", target, max_resp);
			goto done;
		}
		left = (size_t)r;
		/* The head's last LF is left for the next call: feed until the bytes are used or the message ends. */
		while (left && ev != H1_DONE && ev != H1_ERR) {
			ev = h1_parse(&h, p, left, &used);
			p += used;
			left -= used;
		}
		if (ev == H1_ERR || ev == H1_DONE)
			break;
	}
	if (ev != H1_DONE && ev != H1_ERR)
		ev = h1_eof(&h);
	if (ev != H1_DONE) {
		rc = err_set(err, errlen, -EPROTO, "%s: not an HTTP answer (%s)", target,
			     h.errstr ? h.errstr : "it ended early");
		goto done;
	}
	if (bd.over) {
		rc = err_set(err, errlen, -EMSGSIZE, "%s: answer over %zu bytes", target, max_resp);
		goto done;
	}
	if (!(*resp = malloc(bd.b.len + 1))) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto done;
	}
	memcpy(*resp, cbuf_str(&bd.b), bd.b.len);
	(*resp)[bd.b.len] = 0;
	*resp_len = bd.b.len;
	*status = (int)h.status;
	rc = 0;
done:
	cbuf_free(&bd.b);
	if (fd >= 0)
		close(fd);
	return rc;
}
