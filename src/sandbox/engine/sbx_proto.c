/* The control protocol's framing (see sbx_proto.h): one header + payload per SOCK_SEQPACKET message, fds
 * with SCM_RIGHTS. Both ends use it: the host side (sandbox.c) and the init (sbxinit.c). */
#include "sandbox/engine/sbx_proto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

int sbxp_send(int sock, uint32_t type, uint32_t id, int32_t a, int32_t b, const void *payload, uint32_t len,
	      const int *fds, int nfds)
{
	struct sbxp_hdr h = { type, id, a, b, len };
	struct iovec iov[2] = { { &h, sizeof h }, { (void *)payload, len } };
	union {
		char buf[CMSG_SPACE(SBXP_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	if (nfds > SBXP_MAX_FDS)
		return -EINVAL;
	if (nfds > 0) {
		memset(&u, 0, sizeof u);
		m.msg_control = u.buf;
		m.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	for (;;) {
		if (sendmsg(sock, &m, MSG_NOSIGNAL) >= 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

int sbxp_recv(int sock, struct sbxp_hdr *h, void *buf, int *fds, int *nfds, int flags)
{
	int maxfds = *nfds;
	union {
		char b[CMSG_SPACE(SBXP_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov[2] = { { h, sizeof *h }, { buf, SBXP_MAX_PAYLOAD } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = u.b, .msg_controllen = sizeof u.b };
	*nfds = 0;
	ssize_t n;
	do
		n = recvmsg(sock, &m, flags | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (n == 0)
		return 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			int got[SBXP_MAX_FDS];
			memcpy(got, CMSG_DATA(c), (size_t)k * sizeof(int));
			for (int i = 0; i < k; i++) {
				if (*nfds < maxfds)
					fds[(*nfds)++] = got[i];
				else
					close(got[i]);
			}
		}
	if ((size_t)n < sizeof *h || (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || h->len != (size_t)n - sizeof *h) {
		for (int i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
		return -EBADMSG;
	}
	return 1;
}
