/* The init's network namespace, made in parallel with its mounts (see sbxnet.h). */
#include "sandbox/engine/sbxnet.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The thread shares the init's memory and TLS (it is no libc thread): it makes raw system calls only (a
 * failing one sets errno, which nobody reads meanwhile), reports through net_fd/net_err and has exited
 * before sbxnet_join() reads them. */
static char net_stack[32768] __attribute__((aligned(64)));
static volatile pid_t net_tid; /* set at the clone, cleared and futex-woken by the kernel at its exit */
static int net_fd = -1, net_err;
static const char *net_what = "";
static struct ifreq net_ifr; /* "lo", filled in before the thread starts */

static int __attribute__((no_sanitize_address)) net_thread(void *arg)
{
	(void)arg;
	long s = -1;
	if (syscall(SYS_unshare, CLONE_NEWNET) < 0)
		net_what = "unshare", net_err = errno;
	else if ((s = syscall(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0 ||
		 syscall(SYS_ioctl, (int)s, SIOCGIFFLAGS, &net_ifr) < 0)
		net_what = "lo", net_err = errno;
	else if (net_ifr.ifr_flags |= IFF_UP | IFF_RUNNING, syscall(SYS_ioctl, (int)s, SIOCSIFFLAGS, &net_ifr) < 0)
		net_what = "lo up", net_err = errno;
	else if ((net_fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) < 0)
		net_what = "open", net_err = errno;
	if (s >= 0)
		syscall(SYS_close, (int)s);
	return 0;
}

int sbxnet_start(void)
{
	memcpy(net_ifr.ifr_name, "lo", 3);
	if (clone(net_thread, net_stack + sizeof net_stack,
		  CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
			  CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID,
		  NULL, &net_tid, NULL, &net_tid) < 0)
		return -errno;
	return 0;
}

int sbxnet_join(const char **what)
{
	pid_t t;
	int rc = 0;
	*what = "wait";
	for (int i = 0; (t = net_tid) != 0; i++) {
		struct timespec ts = { 5, 0 };
		if (i > 2)
			return -ETIMEDOUT;
		syscall(SYS_futex, &net_tid, FUTEX_WAIT, t, &ts, NULL, 0);
	}
	if (net_err) {
		*what = net_what;
		rc = -net_err;
	} else if (setns(net_fd, CLONE_NEWNET) < 0) {
		*what = "setns";
		rc = -errno;
	}
	if (net_fd >= 0)
		close(net_fd);
	net_fd = -1;
	return rc;
}
