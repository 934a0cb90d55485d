/* The in-sandbox init: builds the root inside the fresh namespaces (sbxroot.c), then serves commands as pid 1.
 * Runs in a raw clone of a possibly multithreaded host process, so it uses no malloc and no stdio:
 * static buffers only, errors reported as text over the control socket. */
#include "sandbox/engine/sbx_proto.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/engine/sandbox.h"
#include "sandbox/engine/sbxroot.h"
#include "sandbox/engine/seccomp_policy.h"

#define MAX_CMDS 256

static const struct sbxi_params *P;
static struct sbxr_state root;
static char msgbuf[SBXP_MAX_PAYLOAD + 1];

static struct {
	uint32_t id;
	pid_t pid;
	bool last;
} cmds[MAX_CMDS];
static int killall_pending;
static bool rlimit_as, rlimit_nproc;
static struct sock_filter bpf[SBXP_MAX_PAYLOAD / sizeof(struct sock_filter)];
static struct sock_fprog prog;

/* The session's v1 cgroups, before anything is forked: "0" moves the writing thread, which is all of
 * us (the init is single-threaded), without the kernel's global threadgroup lock (cgroup.h). The host
 * opened the files, so its credentials decide. A failed join falls back to the rlimit, as the host's
 * own fallback would, and is reported in SBXP_READY. */
static unsigned join_failed;
static int join_errno;

static void join_cgroups(unsigned joins, const int *fds)
{
	int k = 0;
	for (unsigned bit = 1; bit <= SBXP_JOIN_CPU; bit <<= 1) {
		if (!(joins & bit))
			continue;
		if (write(fds[k], "0", 1) != 1) {
			join_failed |= bit;
			join_errno = errno;
			rlimit_as |= bit == SBXP_JOIN_MEMORY;
			rlimit_nproc |= bit == SBXP_JOIN_PIDS;
		}
		close(fds[k++]);
	}
}

/* ---- serving ---------------------------------------------------------------------------------------- */

static const char *env_get(char *const *env, const char *name)
{
	size_t nl = strlen(name);
	for (; env && *env; env++)
		if (!strncmp(*env, name, nl) && (*env)[nl] == '=')
			return *env + nl + 1;
	return NULL;
}

/* Command child: never returns. Only async-signal-safe calls from here on. */
#if defined(__SANITIZE_ADDRESS__)
#define SBXI_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SBXI_ASAN 1
#endif
#endif

/* exe_fd >= 0: the executable to run (SBXP_EXEC_FD), else argv[0] from the image. */
static void __attribute__((noreturn)) child(char **argv, char **envp, const char *cwd, int in_fd, int out_fd, int exe_fd)
{
	bool self = exe_fd >= 0;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setsid();
	if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
		_exit(126);
	/* The executable's fd survives as 3 (close-on-exec) for execveat. */
	if (self && (exe_fd != 3 ? dup3(exe_fd, 3, O_CLOEXEC) : fcntl(3, F_SETFD, FD_CLOEXEC)) < 0)
		_exit(126);
	syscall(SYS_close_range, self ? 4 : 3, ~0u, 0);
	if (cwd && *cwd && chdir(cwd) < 0) {
		dprintf(2, "postern-sandbox: cd %s: %s\n", cwd, strerror(errno));
		_exit(126);
	}
	struct rlimit rl = { 0, 0 };
	setrlimit(RLIMIT_CORE, &rl);
	if (rlimit_as) {
		rl.rlim_cur = rl.rlim_max = P->memory_bytes;
#ifdef SBXI_ASAN
		/* A sanitizer build of ourselves reserves terabytes of shadow address space (test builds). */
		if (self)
			rl.rlim_cur = rl.rlim_max = RLIM_INFINITY;
#endif
		setrlimit(RLIMIT_AS, &rl);
	}
	if (rlimit_nproc) {
		rl.rlim_cur = rl.rlim_max = P->pids;
		setrlimit(RLIMIT_NPROC, &rl);
	}
	/* POSIX message queue bytes are a per-user budget too (charged up the namespace chain). */
	rl.rlim_cur = rl.rlim_max = SBX_NS_MQUEUE_BYTES;
	setrlimit(RLIMIT_MSGQUEUE, &rl);
	/* No one file outgrows the disk cap, whatever holds the total (ws_quota.h). */
	if (P->fsize_bytes) {
		rl.rlim_cur = rl.rlim_max = P->fsize_bytes;
		setrlimit(RLIMIT_FSIZE, &rl);
	}
	const char *cmd = argv[0];
	int err = ENOENT;
	if (self) {
		/* A program from the host, whatever the image holds (static: no loader needed): the tool worker. */
		syscall(SYS_execveat, 3, "", argv, envp, AT_EMPTY_PATH);
		err = errno;
	} else if (strchr(cmd, '/')) {
		execve(cmd, argv, envp);
		err = errno;
	} else {
		const char *path = env_get(envp, "PATH");
		char full[4096];
		for (const char *p = path ? path : "/usr/bin:/bin"; p && *p;) {
			const char *c = strchr(p, ':');
			size_t l = c ? (size_t)(c - p) : strlen(p);
			if (l && l + strlen(cmd) + 2 < sizeof full) {
				memcpy(full, p, l);
				full[l] = '/';
				strcpy(full + l + 1, cmd);
				execve(full, argv, envp);
				if (errno != ENOENT && errno != ENOTDIR)
					err = errno;
			}
			p = c ? c + 1 : NULL;
		}
	}
	dprintf(2, "postern-sandbox: %s: %s\n", cmd, err == ENOENT ? "command not found" : strerror(err));
	_exit(err == ENOENT ? 127 : 126);
}

/* vfork: no page-table copy of the init (itself a copy of the host process); the child only makes
 * system calls on its own task (session, fds, cwd, rlimits, seccomp) before execve. Kept apart so that
 * nothing but the result is live across vfork(). */
static pid_t __attribute__((noinline)) start_child(char **argv, char **envp, const char *cwd, int in_fd, int out_fd,
							int exe_fd)
{
	pid_t pid = vfork();
	if (pid == 0)
		child(argv, envp, cwd, in_fd, out_fd, exe_fd);
	return pid;
}

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void do_exec(const struct sbxp_hdr *h, int devnull, int *fds, int nfds)
{
	static char *argv[SBX_MAX_ARGS + 1];
	static char *envp[SBX_MAX_ENV * 2 + 1];
	uint32_t argc, envc;
	bool want_in = h->a & SBXP_EXEC_STDIN, by_fd = h->a & SBXP_EXEC_FD;
	int err = EINVAL;
	if (nfds != (want_in ? 2 : 1) + (by_fd ? 1 : 0) || h->len < 9)
		goto bad;
	memcpy(&argc, msgbuf, 4);
	memcpy(&envc, msgbuf + 4, 4);
	if (argc < 1 || argc > SBX_MAX_ARGS || envc > SBX_MAX_ENV)
		goto bad;
	msgbuf[h->len] = 0;
	char *p = msgbuf + 8, *end = msgbuf + h->len;
	const char *cwd = p;
	p += strlen(p) + 1;
	for (uint32_t i = 0; i < argc; i++) {
		if (p >= end)
			goto bad;
		argv[i] = p;
		p += strlen(p) + 1;
	}
	argv[argc] = NULL;
	/* Session environment, overridden by the command's own variables. */
	size_t n = 0;
	char *extra[SBX_MAX_ENV];
	for (uint32_t i = 0; i < envc; i++) {
		if (p >= end)
			goto bad;
		extra[i] = p;
		p += strlen(p) + 1;
	}
	for (char *const *e = P->env; e && *e && n < SBX_MAX_ENV; e++) {
		const char *eq = strchr(*e, '=');
		bool over = false;
		for (uint32_t i = 0; eq && i < envc; i++)
			if (!strncmp(extra[i], *e, (size_t)(eq - *e) + 1))
				over = true;
		if (!over)
			envp[n++] = *e;
	}
	for (uint32_t i = 0; i < envc; i++)
		envp[n++] = extra[i];
	envp[n] = NULL;

	int slot = -1;
	for (int i = 0; i < MAX_CMDS; i++)
		if (!cmds[i].pid) {
			slot = i;
			break;
		}
	if (slot < 0) {
		err = EMFILE;
		goto bad;
	}
	pid_t pid = start_child(argv, envp, cwd, want_in ? fds[1] : devnull, fds[0], by_fd ? fds[nfds - 1] : -1);
	if (pid < 0) {
		err = errno;
		goto bad;
	}
	/* The detached scratch tmpfs: its last close dissolves that mount and waits for an RCU grace period
	 * (0.1-0.8 ms here). Done once the first command runs (vfork returned: it has exec'd), so the wait
	 * overlaps the command instead of delaying its start after SBXP_READY. */
	if (root.scratch_fd >= 0) {
		close(root.scratch_fd);
		root.scratch_fd = -1;
	}
	cmds[slot].id = h->id;
	cmds[slot].pid = pid;
	cmds[slot].last = h->a & SBXP_EXEC_LAST;
	close_fds(fds, nfds);
	if (!(h->a & SBXP_EXEC_NOSTART))
		(void)sbxp_send(P->ctl, SBXP_STARTED, h->id, pid, 0, NULL, 0, NULL, 0);
	return;
bad:
	close_fds(fds, nfds);
	(void)sbxp_send(P->ctl, SBXP_EXEC_ERR, h->id, err, 0, NULL, 0, NULL, 0);
}

static void do_kill(const struct sbxp_hdr *h)
{
	for (int i = 0; i < MAX_CMDS; i++)
		if (cmds[i].pid && cmds[i].id == h->id) {
			/* The child may not have reached setsid() yet: signal both the group and the process. */
			kill(-cmds[i].pid, h->a);
			kill(cmds[i].pid, h->a);
		}
}

static int count_procs(void)
{
	static char dents[16384];
	int fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC), n = 0;
	if (fd < 0)
		return -errno;
	for (;;) {
		long r = syscall(SYS_getdents64, fd, dents, sizeof dents);
		if (r <= 0)
			break;
		for (long off = 0; off < r;) {
			struct dirent64 *d = (struct dirent64 *)(dents + off);
			off += d->d_reclen;
			if (d->d_name[0] >= '1' && d->d_name[0] <= '9' && strcmp(d->d_name, "1"))
				n++;
		}
	}
	close(fd);
	return n;
}

static void do_listen(const struct sbxp_hdr *h)
{
	msgbuf[h->len] = 0;
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	int fd = -1, rc = 0, one = 1;
	if (inet_pton(AF_INET, msgbuf, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)h->a);
		sl = sizeof *s4;
	} else if (inet_pton(AF_INET6, msgbuf, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)h->a);
		sl = sizeof *s6;
	} else {
		rc = -EINVAL;
		goto out;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 128) < 0)
		rc = -errno;
out:
	(void)sbxp_send(P->ctl, SBXP_LISTEN_R, h->id, rc, 0, NULL, 0, rc == 0 ? &fd : NULL, rc == 0 ? 1 : 0);
	if (fd >= 0)
		close(fd);
}

static void reap(void)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (int i = 0; i < MAX_CMDS; i++)
			if (cmds[i].pid == pid) {
				(void)sbxp_send(P->ctl, SBXP_EXITED, cmds[i].id, st, pid, NULL, 0, NULL, 0);
				cmds[i].pid = 0;
				/* A one-shot session: our end (pid 1: the kernel kills what is left) overlaps the
				 * host's reading of the result instead of following its SIGKILL. */
				if (cmds[i].last)
					_exit(0);
			}
	}
	if (killall_pending && pid < 0 && errno == ECHILD) {
		(void)sbxp_send(P->ctl, SBXP_KILLALL_R, 0, killall_pending - 1, 0, NULL, 0, NULL, 0);
		killall_pending = 0;
	}
}

static void __attribute__((noreturn)) serve(void)
{
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (sfd < 0 || devnull < 0)
		sbxr_fail(errno, "init setup: %s", strerror(errno));
	/* The init takes the commands' filter itself: every command inherits it through vfork without a
	 * per-command attach (and BPF JIT), and the init's own surface shrinks to the same allowlist. */
	int rc = secpol_install(&prog);
	if (rc < 0)
		sbxr_fail(-rc, "seccomp: %s", strerror(-rc));
	(void)sbxp_send(P->ctl, SBXP_READY, 0,
			(root.sys_empty ? SBXP_READY_SYS_EMPTY : 0) | (root.landlocked ? SBXP_READY_LANDLOCK : 0),
			(int32_t)(join_failed | (unsigned)join_errno << 8), NULL, 0, NULL, 0);
	for (;;) {
		struct pollfd pf[2] = { { P->ctl, POLLIN, 0 }, { sfd, POLLIN, 0 } };
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			_exit(1);
		if (pf[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) > 0)
				;
			reap();
		}
		if (!(pf[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		struct sbxp_hdr h;
		int fds[3], nfds = 3;
		int r = sbxp_recv(P->ctl, &h, msgbuf, fds, &nfds, MSG_DONTWAIT);
		if (r == -EAGAIN || r == -EINTR)
			continue;
		if (r <= 0)
			_exit(0); /* the host went away: the kernel kills the rest of the namespace with us */
		switch (h.type) {
		case SBXP_EXEC:
			do_exec(&h, devnull, fds, nfds);
			break;
		case SBXP_KILL:
			do_kill(&h);
			close_fds(fds, nfds);
			break;
		case SBXP_KILLALL:
			close_fds(fds, nfds);
			/* pid 1's kill(-1) reaches every process of the namespace but itself. */
			killall_pending = 1 + count_procs();
			kill(-1, SIGKILL);
			reap();
			break;
		case SBXP_LISTEN:
			close_fds(fds, nfds);
			do_listen(&h);
			break;
		case SBXP_NPROCS:
			close_fds(fds, nfds);
			(void)sbxp_send(P->ctl, SBXP_NPROCS_R, h.id, count_procs(), 0, NULL, 0, NULL, 0);
			break;
		default:
			close_fds(fds, nfds);
			break;
		}
	}
}

void sbxi_main(const struct sbxi_params *params)
{
	P = params;
	/* Signal dispositions come from the host process: start clean, SIGCHLD only through the signalfd. */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	for (int s = 1; s < NSIG; s++)
		(void)sigaction(s, &sa, NULL);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_SETMASK, &chld, NULL);
	/* Only the control socket: the host's other fds (its end of our socketpair, its stdout...) would keep
	 * us alive after it dies and hold its pipes open. */
	if (P->ctl > 3)
		syscall(SYS_close_range, 3, P->ctl - 1, 0);
	syscall(SYS_close_range, P->ctl + 1, ~0u, 0);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0), dup2(null, 1), dup2(null, 2);
		if (null > 2)
			close(null);
	}
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);

	sbxr_build(P, &root, msgbuf);
	struct sbxp_hdr h;
	int fds[SBXP_MAX_FDS], nfds = SBXP_MAX_FDS;
	unsigned joins = 0;
	if (sbxp_recv(P->ctl, &h, msgbuf, fds, &nfds, 0) <= 0 || h.type != SBXP_GO ||
	    (joins = (unsigned)h.b) & ~(unsigned)(SBXP_JOIN_MEMORY | SBXP_JOIN_PIDS | SBXP_JOIN_CPU) ||
	    nfds != __builtin_popcount(joins) || !h.len || h.len % sizeof(struct sock_filter) || h.len > sizeof bpf)
		_exit(1);
	memcpy(bpf, msgbuf, h.len);
	prog.len = (unsigned short)(h.len / sizeof(struct sock_filter));
	prog.filter = bpf;
	rlimit_as = h.a & SBXP_GO_RLIMIT_AS;
	rlimit_nproc = h.a & SBXP_GO_RLIMIT_NPROC;
	join_cgroups(joins, fds);
	sbxr_harden();
	serve();
}
