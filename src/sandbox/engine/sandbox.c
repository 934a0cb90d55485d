/* Sandbox engine, host side: prepares the session (env, seccomp program, cgroups, protected paths), clones
 * the init into fresh namespaces, and drives it over the control socket. See sandbox.h. */
#include "sandbox/engine/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "sandbox/engine/cgroup.h"
#include "sandbox/engine/sbx_proto.h"
#include "sandbox/engine/seccomp_policy.h"
#include "sandbox/engine/ws_doors.h"
#include "sandbox/engine/ws_quota.h"

static const char *const default_env_allow[] = { "PATH", "LANG", "LC_*", "TERM", "TZ", NULL };
static const char *const default_hide[] = { "/root", "/home", "/etc/shadow", "/etc/gshadow", "/etc/sudoers",
					    "/etc/sudoers.d", "/etc/ssh", "/run/secrets", "/var/run/secrets",
					    "/var/lib/postern", NULL };
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_RECS 256
#define KILL_GRACE_MS 5000

struct rec {
	uint32_t id;
	bool used, started, exited, failed;
	pid_t pid;
	int wstatus, err;
};

struct sbx {
	int ctl;
	pid_t init_pid;
	int pidfd;
	cgr *cg;
	char *mount_point;
	unsigned timeout_ms;
	uint32_t next_id;
	char limits[440];
	bool disk_image; /* the workspace is an ext4 image of the disk cap (ws_quota.h) */
	struct rec recs[MAX_RECS];
	/* replies to synchronous requests */
	bool got_listen, got_killall, got_nprocs;
	int listen_rc, listen_fd, killall_n, nprocs_n;
	char *buf; /* SBXP_MAX_PAYLOAD + 1 */
	int ws_fd; /* O_PATH of the host workspace, for the doors at the end; -1 without one */
	char *ws_name;
	const char *const *doors;
	uint64_t doors_before;
};

struct sbx_proc {
	sbx *s;
	uint32_t id;
	pid_t pid;
	int in_fd, out_fd;
	bool exited;
	int wstatus;
};

/* ---- wire ------------------------------------------------------------------------------------------- */

int sbxp_send(int sock, uint32_t type, uint32_t id, int32_t a, int32_t b, const void *payload, uint32_t len,
	      const int *fds, int nfds)
{
	struct sbxp_hdr h = { type, id, a, b, len };
	struct iovec iov[2] = { { &h, sizeof h }, { (void *)payload, len } };
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
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
		char b[CMSG_SPACE(4 * sizeof(int))];
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
			int got[4];
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

/* ---- helpers ------------------------------------------------------------------------------------------ */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int poll_ms(uint64_t deadline)
{
	uint64_t n = now_ms();
	if (deadline == UINT64_MAX)
		return -1;
	return deadline <= n ? 0 : (int)(deadline - n > 60000 ? 60000 : deadline - n);
}

static struct rec *rec_find(sbx *s, uint32_t id)
{
	for (int i = 0; i < MAX_RECS; i++)
		if (s->recs[i].used && s->recs[i].id == id)
			return &s->recs[i];
	return NULL;
}

static struct rec *rec_new(sbx *s)
{
	for (int i = 0; i < MAX_RECS; i++)
		if (!s->recs[i].used) {
			memset(&s->recs[i], 0, sizeof s->recs[i]);
			s->recs[i].used = true;
			s->recs[i].id = ++s->next_id;
			return &s->recs[i];
		}
	return NULL;
}

/* Handles one message from the init. 1 handled, 0 EOF (the init died), -EAGAIN nothing pending. */
static int handle_one(sbx *s, int flags)
{
	struct sbxp_hdr h;
	int fds[2], nfds = 2;
	int r = sbxp_recv(s->ctl, &h, s->buf, fds, &nfds, flags);
	if (r <= 0)
		return r == -EBADMSG ? 1 : r;
	struct rec *rc = rec_find(s, h.id);
	switch (h.type) {
	case SBXP_STARTED:
		if (rc)
			rc->started = true, rc->pid = h.a;
		break;
	case SBXP_EXEC_ERR:
		if (rc)
			rc->failed = true, rc->err = h.a, rc->exited = true;
		break;
	case SBXP_EXITED:
		if (rc)
			rc->exited = true, rc->wstatus = h.a, rc->pid = h.b;
		break;
	case SBXP_LISTEN_R:
		s->got_listen = true;
		s->listen_rc = h.a;
		s->listen_fd = nfds > 0 ? fds[0] : -1;
		if (nfds > 0)
			nfds--, memmove(fds, fds + 1, sizeof(int));
		break;
	case SBXP_KILLALL_R:
		s->got_killall = true;
		s->killall_n = h.a;
		break;
	case SBXP_NPROCS_R:
		s->got_nprocs = true;
		s->nprocs_n = h.a;
		break;
	default:
		break;
	}
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	return 1;
}

int sbx_pump(sbx *s)
{
	int r;
	while ((r = handle_one(s, MSG_DONTWAIT)) == 1)
		;
	return r == -EAGAIN ? 0 : r == 0 ? -EPIPE : r;
}

int sbx_ctl_fd(const sbx *s)
{
	return s->ctl;
}

/* Waits until *flag or the deadline; -ETIMEDOUT, -EPIPE when the init is gone. */
static int wait_flag(sbx *s, const bool *flag, uint64_t deadline)
{
	while (!*flag) {
		struct pollfd pf = { s->ctl, POLLIN, 0 };
		int t = poll_ms(deadline);
		if (t == 0)
			return -ETIMEDOUT;
		int pr = poll(&pf, 1, t);
		if (pr < 0 && errno != EINTR)
			return -errno;
		if (pr > 0) {
			int r = sbx_pump(s);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* ---- lifecycle ---------------------------------------------------------------------------------------- */

void sbx_config_init(sbx_config *c)
{
	memset(c, 0, sizeof *c);
}

static bool env_allowed(const char *const *allow, const char *entry)
{
	const char *eq = strchr(entry, '=');
	if (!eq)
		return false;
	size_t nl = (size_t)(eq - entry);
	for (; *allow; allow++) {
		size_t al = strlen(*allow);
		if (al && (*allow)[al - 1] == '*') {
			if (nl >= al - 1 && !strncmp(entry, *allow, al - 1))
				return true;
		} else if (al == nl && !strncmp(entry, *allow, nl)) {
			return true;
		}
	}
	return false;
}

/* Session environment: allowed host variables, then env_set, then defaults for PATH and HOME. */
static char **build_env(const sbx_config *c)
{
	extern char **environ;
	const char *const *allow = c->env_allow ? c->env_allow : default_env_allow;
	size_t cap = SBX_MAX_ENV, n = 0;
	char **env = calloc(cap + 1, sizeof *env);
	if (!env)
		return NULL;
	for (char **e = environ; e && *e && n < cap - 8; e++)
		if (env_allowed(allow, *e))
			env[n++] = strdup(*e);
	for (const char *const *e = c->env_set; e && *e && n < cap - 2; e++) {
		const char *eq = strchr(*e, '=');
		if (!eq)
			continue;
		for (size_t i = 0; i < n; i++)
			if (env[i] && !strncmp(env[i], *e, (size_t)(eq - *e) + 1)) {
				free(env[i]);
				env[i] = env[--n];
				env[n] = NULL;
				break;
			}
		env[n++] = strdup(*e);
	}
	bool path = false, home = false;
	for (size_t i = 0; i < n; i++) {
		if (!env[i]) {
			for (size_t j = 0; j < n; j++)
				free(env[j]);
			free(env);
			return NULL;
		}
		path |= !strncmp(env[i], "PATH=", 5);
		home |= !strncmp(env[i], "HOME=", 5);
	}
	if (!path)
		env[n++] = strdup("PATH=" DEFAULT_PATH);
	if (!home)
		env[n++] = strdup("HOME=/tmp");
	return env;
}

static void free_strv(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

static const char *kind_name(enum cgr_kind k)
{
	return k == CGR_V2 ? "cgroup-v2" : k == CGR_V1 ? "cgroup-v1" : "rlimit";
}

static atomic_uint session_counter;

struct idmap {
	uid_t in_uid, run_uid;
	gid_t in_gid, run_gid;
	uid_t owner_uid; /* owner of the session's user namespace (never 0) */
	mode_t in_mode;  /* the workspace directory's mode, for a disk image's root */
};

static int write_map(pid_t pid, const char *file, unsigned in, unsigned out)
{
	char path[64], val[64];
	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
	int n = snprintf(val, sizeof val, "%u %u 1\n", in, out);
	int fd = open(path, O_WRONLY | O_CLOEXEC), rc = 0;
	if (fd < 0 || write(fd, val, (size_t)n) != n)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Kills a half-started init and forgets it. */
static void stop_init(sbx *s)
{
	if (s->ctl >= 0)
		close(s->ctl);
	if (s->pidfd >= 0) {
		(void)pidfd_send_signal(s->pidfd, SIGKILL, NULL, 0);
		siginfo_t si;
		while (waitid(P_PIDFD, (id_t)s->pidfd, &si, WEXITED) < 0 && errno == EINTR)
			;
		close(s->pidfd);
	}
	s->ctl = s->pidfd = -1;
	s->init_pid = 0;
}

/* Clones the init. With im (a root caller): maps it to im's unprivileged host ids and hands it the
 * workspace as a tree idmapped to them; -EPERM when the workspace cannot be idmapped and is not owned by
 * those ids already (the session never runs as host root instead). */
static int start_init(sbx *s, const sbx_config *c, struct sbxi_params *ip, const struct idmap *im, char *err,
		      size_t errlen)
{
	int sv[2], pidfd = -1, uns = -1, tree = -1, rc = 0;
	char why[300];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		return -errno;
	}
	/* The init keeps its end above stdio (it points 0-2 at /dev/null). */
	if (sv[1] < 3) {
		int hi = fcntl(sv[1], F_DUPFD_CLOEXEC, 3);
		close(sv[1]);
		sv[1] = hi;
		if (hi < 0) {
			close(sv[0]);
			snprintf(err, errlen, "dup: %s", strerror(errno));
			return -EMFILE;
		}
	}
	ip->ctl = sv[1];
	ip->host_maps = im != NULL;
	if (im)
		ip->uid = im->in_uid, ip->gid = im->in_gid;
	/* No host signal handler may run in the child before it resets the dispositions. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	/* A root caller's namespace is owned by a dedicated unprivileged id, not by root: per-user kernel
	 * budgets (inotify, message queues...) are charged to the owner in the host's namespace, so a session
	 * cannot exhaust root's or another session's. The raw syscall changes only this thread's effective
	 * uid (the saved uid stays 0 to come back); the child keeps it as the namespace's creator. */
	bool owned = im && syscall(SYS_setresuid, -1, im->owner_uid, -1) == 0;
	long pid = syscall(SYS_clone,
			   CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
				   CLONE_PIDFD | SIGCHLD, /* the cgroup namespace comes after the move (sbxinit) */
			   NULL, &pidfd, NULL, 0);
	if (pid == 0)
		sbxi_main(ip);
	rc = -errno;
	if (owned && syscall(SYS_setresuid, -1, 0, -1) != 0)
		abort(); /* cannot happen: the saved uid is 0 */
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (im && !owned)
		log_warn("msg=\"namespace owned by root: per-user kernel budgets are shared with root\" reason=\"%s\"",
			 strerror(errno));
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		snprintf(err, errlen, "clone: %s", strerror(-rc));
		return rc;
	}
	s->init_pid = (pid_t)pid;
	s->pidfd = pidfd;
	s->ctl = sv[0];
	if (!im)
		return 0;
	char path[64];
	if ((rc = write_map(s->init_pid, "uid_map", im->in_uid, im->run_uid)) < 0 ||
	    (rc = write_map(s->init_pid, "gid_map", im->in_gid, im->run_gid)) < 0) {
		snprintf(err, errlen, "id maps: %s", strerror(-rc));
		goto fail;
	}
	if (c->workspace) {
		snprintf(path, sizeof path, "/proc/%d/ns/user", (int)s->init_pid);
		struct mount_attr a = { .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV };
		/* A scratch workspace becomes a disk of its own, of the cap; failing that, the directory itself
		 * (each file capped) with a warning. */
		if (c->flags & SBX_F_SCRATCH) {
			tree = wsq_image_mount(s->ws_fd, c->disk_bytes, im->in_uid, im->in_gid, im->in_mode, why,
					       sizeof why);
			s->disk_image = tree >= 0;
			if (tree < 0)
				log_warn("msg=\"scratch workspace without a disk image: only each file is capped\" "
					 "workspace=\"%s\" reason=\"%s\"", c->workspace, why);
		}
		if ((uns = open(path, O_RDONLY | O_CLOEXEC)) < 0 ||
		    (tree < 0 &&
		     (tree = open_tree(AT_FDCWD, c->workspace, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)) < 0)) {
			rc = -errno;
			snprintf(err, errlen, "workspace tree: %s", strerror(-rc));
			goto fail;
		}
		a.userns_fd = (uint64_t)uns;
		if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a) < 0) {
			int e = errno;
			if (im->in_uid != im->run_uid || im->in_gid != im->run_gid) {
				snprintf(err, errlen,
					 "workspace %s cannot be idmapped (%s: its filesystem does not support idmapped "
					 "mounts) and the sandbox never runs as host root: put the workspace on a "
					 "filesystem that does (ext4, xfs, btrfs, tmpfs), or chown -R %u:%u it so the "
					 "sandbox's host ids own it, or run postern as the workspace's owner",
					 c->workspace, strerror(e), (unsigned)im->run_uid, (unsigned)im->run_gid);
				rc = -EPERM;
				goto fail;
			}
			/* Owned by the sandbox's host ids already: no idmap needed, the init binds it as it is. */
			log_warn("msg=\"workspace cannot be idmapped; it is owned by the sandbox's host ids and bound "
				 "as it is\" workspace=\"%s\" reason=\"%s\"", c->workspace, strerror(e));
			close(tree);
			tree = -1;
		}
	}
	if ((rc = sbxp_send(s->ctl, SBXP_MAPS, 0, 0, 0, NULL, 0, tree >= 0 ? &tree : NULL, tree >= 0 ? 1 : 0)) < 0) {
		snprintf(err, errlen, "start: %s", strerror(-rc));
		goto fail;
	}
	goto out;
fail:
	stop_init(s);
out:
	if (uns >= 0)
		close(uns);
	if (tree >= 0)
		close(tree);
	return rc;
}

sbx *sbx_new(const sbx_config *cfg, char *err, size_t errlen)
{
	sbx_config c = *cfg;
	sbx *s = calloc(1, sizeof *s);
	char **env = NULL, **hide = NULL;
	int img = -1, ws = -1;
	const char *what = "";
	int e = 0;
	struct stat wst = { 0 };
	bool sys_empty = false, landlocked = false;

	if (!s || !(s->buf = malloc(SBXP_MAX_PAYLOAD + 1))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->ctl = s->pidfd = s->listen_fd = s->ws_fd = -1;
	if (!c.image)
		c.image = "/";
	if (!c.mount_point)
		c.mount_point = "/workspace";
	if (!c.hostname)
		c.hostname = "sandbox";
	if (!c.memory_bytes)
		c.memory_bytes = SBX_DEFAULT_MEMORY;
	if (!c.pids)
		c.pids = SBX_DEFAULT_PIDS;
	if (!c.tmp_bytes)
		c.tmp_bytes = SBX_DEFAULT_TMP;
	if (!c.disk_bytes)
		c.disk_bytes = WSQ_DEFAULT_BYTES;
	if (c.disk_bytes < WSQ_MIN_BYTES) {
		snprintf(err, errlen, "disk %llu bytes: at least %lluM", (unsigned long long)c.disk_bytes,
			 (unsigned long long)(WSQ_MIN_BYTES >> 20));
		goto fail;
	}
	/* /tmp, /dev/shm (and a tmpfs workspace) share one tmpfs, kept within half the memory budget: with a
	 * memory cgroup its pages are charged there anyway, and without one it must not add to what the
	 * processes may hold beyond what the caller granted. */
	if (c.tmp_bytes > c.memory_bytes / 2) {
		if (cfg->tmp_bytes)
			log_warn("msg=\"tmp size lowered to half the memory limit\" tmp=%llu memory=%llu",
				 (unsigned long long)c.tmp_bytes, (unsigned long long)c.memory_bytes);
		c.tmp_bytes = c.memory_bytes / 2;
	}
	if (!c.timeout_ms)
		c.timeout_ms = SBX_DEFAULT_TIMEOUT_MS;
	if (c.mount_point[0] != '/' || !c.mount_point[1] || strstr(c.mount_point, "..") ||
	    !strcmp(c.mount_point, "/proc") || !strcmp(c.mount_point, "/dev") || !strcmp(c.mount_point, "/tmp")) {
		snprintf(err, errlen, "mount point %s: must be an absolute path other than /, /proc, /dev, /tmp",
			 c.mount_point);
		goto fail;
	}
	s->timeout_ms = c.timeout_ms;
	if (!(s->mount_point = strdup(c.mount_point)) || !(env = build_env(&c))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* Hidden paths: the list plus the caller's home directory. */
	{
		const char *const *h = c.hide_paths ? c.hide_paths : default_hide;
		size_t n = 0;
		while (h[n])
			n++;
		hide = calloc(n + 2, sizeof *hide);
		if (!hide)
			goto oom;
		for (size_t i = 0; i < n; i++)
			if (!(hide[i] = strdup(h[i])))
				goto oom;
		const char *home = getenv("HOME");
		if (!c.hide_paths && home && home[0] == '/' && home[1] && strcmp(home, "/tmp") &&
		    !(hide[n] = strdup(home)))
			goto oom;
	}
	what = "open image";
	if ((img = open(c.image, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		goto sys;
	if (c.workspace) {
		what = "open workspace";
		if ((ws = open(c.workspace, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 || fstat(ws, &wst) < 0)
			goto sys;
		/* Doors that exist are bound read-only by the init; the others are noted, to be moved aside at
		 * the end if the session makes them (ws_doors.h). Nothing is created here. */
		s->doors = c.protected_paths ? c.protected_paths : wsd_default;
		s->doors_before = wsd_snapshot(ws, s->doors);
		if ((s->ws_fd = fcntl(ws, F_DUPFD_CLOEXEC, 3)) < 0 || !(s->ws_name = strdup(c.workspace)))
			goto oom;
	}

	struct sbxi_params ip = {
		.image = c.image,
		.workspace = c.workspace,
		.uid = geteuid(),
		.gid = getegid(),
		.mount_point = c.mount_point,
		.hostname = c.hostname,
		.tmp_bytes = c.tmp_bytes,
		.hide = (const char *const *)hide,
		.protect = c.protected_paths ? c.protected_paths : wsd_default,
		.env = env,
		.memory_bytes = c.memory_bytes,
		.fsize_bytes = c.disk_bytes,
		.pids = c.pids,
		/* Test hook: the fallback for kernels without Landlock, on a kernel with it. */
		.no_landlock = getenv("POSTERN_SANDBOX_NO_LANDLOCK") != NULL,
	};
	struct idmap im = { .in_uid = c.workspace ? wst.st_uid : 0, .in_gid = c.workspace ? wst.st_gid : 0,
			    .run_uid = c.run_uid ? c.run_uid : 65534, .run_gid = c.run_gid ? c.run_gid : 65534,
			    .in_mode = c.workspace ? wst.st_mode : 0755 };
	/* One owner id per session, out of the range people and packages use. */
	im.owner_uid = SBX_OWNER_UID_BASE + ((unsigned)getpid() * 64u + atomic_load(&session_counter)) % 65536u;
	/* A root caller's session always runs as an unprivileged host uid: no fallback to host root. */
	int rc = start_init(s, &c, &ip, geteuid() == 0 ? &im : NULL, err, errlen);
	if (rc < 0)
		goto fail;
	/* The init builds its root meanwhile; it forks nothing before SBXP_GO, so the cgroups are in place
	 * before any command exists. */
	char name[64];
	snprintf(name, sizeof name, "postern-%d-%u", (int)getpid(), atomic_fetch_add(&session_counter, 1) + 1);
	struct cgr_limits lim = { c.memory_bytes, c.pids, c.cpu_millis };
	if (!(s->cg = cgr_new(c.cgroup_parent, name, &lim, c.flags & SBX_F_NO_CGROUP)))
		goto oom;
	if (cgr_attach(s->cg, s->init_pid) < 0)
		log_warn("msg=\"cgroup attach failed; rlimits stand in\"");
	const struct sock_fprog *prog = sbxsc_program(err, errlen);
	if (!prog)
		goto fail;
	int go = (cgr_kind_of(s->cg, CGR_MEMORY) == CGR_NONE ? SBXP_GO_RLIMIT_AS : 0) |
		 (cgr_kind_of(s->cg, CGR_PIDS) == CGR_NONE ? SBXP_GO_RLIMIT_NPROC : 0);
	what = "start";
	if ((e = sbxp_send(s->ctl, SBXP_GO, 0, go, 0, prog->filter, (uint32_t)(prog->len * sizeof(struct sock_filter)),
			   NULL, 0)) < 0)
		goto sys_e;
	{
		struct sbxp_hdr h;
		int fds[2], nfds = 2;
		struct pollfd pf = { s->ctl, POLLIN, 0 };
		int pr = poll(&pf, 1, 10000);
		int r = pr > 0 ? sbxp_recv(s->ctl, &h, s->buf, fds, &nfds, MSG_DONTWAIT) : -ETIMEDOUT;
		if (r > 0 && h.type == SBXP_READY)
			sys_empty = h.a & SBXP_READY_SYS_EMPTY, landlocked = h.a & SBXP_READY_LANDLOCK;
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		if (r <= 0) {
			snprintf(err, errlen, "sandbox init did not start: %s", r == 0 ? "exited" : strerror(-r));
			goto fail;
		}
		if (h.type == SBXP_FAIL) {
			s->buf[h.len] = 0;
			snprintf(err, errlen, "sandbox setup failed: %s", s->buf);
			goto fail;
		}
		if (h.type != SBXP_READY) {
			snprintf(err, errlen, "sandbox init: unexpected message %u", h.type);
			goto fail;
		}
	}
	bool mem_cg = cgr_kind_of(s->cg, CGR_MEMORY) != CGR_NONE, pids_cg = cgr_kind_of(s->cg, CGR_PIDS) != CGR_NONE;
	snprintf(s->limits, sizeof s->limits,
		 "memory=%s:%llu pids=%s:%u cpu=%s tmp=tmpfs-shared:%llu disk=%s:%llu seccomp=on net=%s sysfs=%s "
		 "cgroupns=session specialfiles=%s",
		 mem_cg ? kind_name(cgr_kind_of(s->cg, CGR_MEMORY)) : "rlimit-as-per-process",
		 (unsigned long long)c.memory_bytes, pids_cg ? kind_name(cgr_kind_of(s->cg, CGR_PIDS)) : "rlimit-nproc",
		 c.pids,
		 !c.cpu_millis ? "none" : cgr_kind_of(s->cg, CGR_CPU) == CGR_NONE ? "none(no cgroup)"
		 : cgr_kind_of(s->cg, CGR_CPU) == CGR_V2 ? "cgroup-v2" : "cgroup-v1",
		 (unsigned long long)c.tmp_bytes,
		 s->disk_image ? "ext4-image" : c.workspace ? "file-size-only" : "tmpfs-shared",
		 (unsigned long long)(s->disk_image || c.workspace ? c.disk_bytes : c.tmp_bytes), "loopback-only",
		 sys_empty ? "empty" : "netns",
		 landlocked ? "landlock" : "seccomp-mknod");
	if (!mem_cg) {
		char why[900];
		log_warn("msg=\"no memory cgroup: the memory limit applies to each process, not to the session\" "
			 "reason=\"%s\"", cgr_why(s->cg, CGR_MEMORY, why, sizeof why));
	}
	if (c.workspace && !s->disk_image && cfg->disk_bytes)
		log_warn("msg=\"no total disk cap on this workspace: each file is capped at the disk size\" "
			 "workspace=\"%s\" reason=\"%s\"", c.workspace,
			 !(c.flags & SBX_F_SCRATCH) ? "a host directory shared with the host (--workspace) has no "
						       "project quota here; use a scratch workspace for a capped disk"
			 : geteuid() ? "a disk image needs root (loop device)" : "the disk image failed (see above)");
	if (!(c.flags & SBX_F_QUIET))
		log_info("msg=\"sandbox started\" init_pid=%d limits=\"%s\"", (int)s->init_pid, s->limits);
	goto done;

oom:
	snprintf(err, errlen, "out of memory");
	goto fail;
sys:
	e = -errno;
sys_e:
	snprintf(err, errlen, "%s: %s", what, strerror(-e));
fail:
	sbx_free(s);
	s = NULL;
done:
	if (img >= 0)
		close(img);
	if (ws >= 0)
		close(ws);
	free_strv(env);
	free_strv(hide);
	return s;
}

void sbx_free(sbx *s)
{
	if (!s)
		return;
	if (s->ctl >= 0)
		close(s->ctl);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->pidfd >= 0) {
		/* pid 1 dying makes the kernel kill and reap the whole pid namespace before we can reap it. */
		(void)pidfd_send_signal(s->pidfd, SIGKILL, NULL, 0);
		siginfo_t si;
		while (waitid(P_PIDFD, (id_t)s->pidfd, &si, WEXITED) < 0 && errno == EINTR)
			;
		close(s->pidfd);
	}
	cgr_free(s->cg);
	/* Every process of the session is gone: nothing races the move. */
	if (s->ws_fd >= 0) {
		wsd_quarantine(s->ws_fd, s->doors, s->doors_before, s->ws_name);
		close(s->ws_fd);
	}
	free(s->ws_name);
	free(s->mount_point);
	free(s->buf);
	free(s);
}

/* ---- commands ------------------------------------------------------------------------------------------ */

static int send_exec(sbx *s, const sbx_cmd *cmd, struct rec *r, int out_w, int in_r)
{
	char *p = s->buf, *end = s->buf + SBXP_MAX_PAYLOAD;
	uint32_t argc = 0, envc = 0;
	if (!cmd->argv || !cmd->argv[0])
		return -EINVAL;
	while (cmd->argv[argc])
		argc++;
	while (cmd->env && cmd->env[envc])
		envc++;
	if (argc > SBX_MAX_ARGS || envc > SBX_MAX_ENV)
		return -E2BIG;
	memcpy(p, &argc, 4);
	memcpy(p + 4, &envc, 4);
	p += 8;
	const char *cwd = cmd->cwd ? cmd->cwd : s->mount_point;
	size_t l = strlen(cwd) + 1;
	if (l > (size_t)(end - p))
		return -E2BIG;
	memcpy(p, cwd, l);
	p += l;
	for (int pass = 0; pass < 2; pass++)
		for (uint32_t i = 0; i < (pass ? envc : argc); i++) {
			const char *a = pass ? cmd->env[i] : cmd->argv[i];
			l = strlen(a) + 1;
			if (l > (size_t)(end - p))
				return -E2BIG;
			memcpy(p, a, l);
			p += l;
		}
	int fds[2] = { out_w, in_r };
	return sbxp_send(s->ctl, SBXP_EXEC, r->id, (in_r >= 0 ? SBXP_EXEC_STDIN : 0) | (cmd->self_exec ? SBXP_EXEC_SELF : 0), 0, s->buf,
			 (uint32_t)(p - s->buf), fds, in_r >= 0 ? 2 : 1);
}

/* Tail-keeping output buffer. */
struct tail {
	char *buf;
	size_t cap, pos;
	uint64_t total;
};

static ssize_t tail_read(struct tail *t, int fd)
{
	struct iovec iov[2];
	size_t at = t->pos % t->cap;
	iov[0].iov_base = t->buf + at;
	iov[0].iov_len = t->cap - at;
	iov[1].iov_base = t->buf;
	iov[1].iov_len = at;
	ssize_t n = readv(fd, iov, at ? 2 : 1);
	if (n > 0) {
		t->pos += (size_t)n;
		t->total += (uint64_t)n;
	}
	return n;
}

int sbx_run(sbx *s, const sbx_cmd *cmd, sbx_result *res)
{
	int out[2] = { -1, -1 }, rc = 0;
	struct tail t = { 0 };
	struct rec *r = NULL;
	memset(res, 0, sizeof *res);
	res->exit_code = -1;
	t.cap = cmd->output_cap ? cmd->output_cap : SBX_DEFAULT_OUTPUT_CAP;
	if (!(t.buf = malloc(t.cap)) || !(r = rec_new(s))) {
		rc = -ENOMEM;
		goto out;
	}
	if (pipe2(out, O_CLOEXEC) < 0) {
		rc = -errno;
		goto out;
	}
	uint64_t oom0, pids0, t0 = now_us();
	cgr_events(s->cg, &oom0, &pids0);
	rc = send_exec(s, cmd, r, out[1], -1);
	close(out[1]);
	out[1] = -1;
	if (rc < 0)
		goto out;
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	unsigned tmo = cmd->timeout_ms ? cmd->timeout_ms : s->timeout_ms;
	uint64_t deadline = now_ms() + tmo, hard = UINT64_MAX, drain = UINT64_MAX;
	bool eof = false;
	for (;;) {
		if (r->exited && (eof || now_ms() >= drain))
			break;
		if (!r->exited && !res->timed_out && now_ms() >= deadline) {
			res->timed_out = true;
			(void)sbxp_send(s->ctl, SBXP_KILL, r->id, SIGKILL, 0, NULL, 0, NULL, 0);
			hard = now_ms() + KILL_GRACE_MS;
		}
		if (now_ms() >= hard) {
			rc = -ETIMEDOUT; /* the init does not answer */
			goto out;
		}
		struct pollfd pf[2] = { { s->ctl, POLLIN, 0 }, { eof ? -1 : out[0], POLLIN, 0 } };
		uint64_t next = r->exited ? drain : res->timed_out ? hard : deadline;
		int pr = poll(pf, 2, poll_ms(next));
		if (pr < 0 && errno != EINTR) {
			rc = -errno;
			goto out;
		}
		if (pf[1].revents) {
			/* Read until the pipe is empty: 1 GB of output must not wait on the poll loop. */
			for (int i = 0; i < 64; i++) {
				ssize_t n = tail_read(&t, out[0]);
				if (n == 0) {
					eof = true;
					break;
				}
				if (n < 0)
					break;
			}
		}
		if (pf[0].revents) {
			int hr = sbx_pump(s);
			if (hr < 0) {
				rc = hr;
				goto out;
			}
			if (r->exited && !eof && drain == UINT64_MAX)
				drain = now_ms() + 100; /* a background process may hold the pipe: don't wait for it */
		}
	}
	if (r->failed) {
		rc = -r->err;
		goto out;
	}
	res->duration_us = now_us() - t0;
	if (WIFEXITED(r->wstatus))
		res->exit_code = WEXITSTATUS(r->wstatus);
	else if (WIFSIGNALED(r->wstatus))
		res->signal = WTERMSIG(r->wstatus);
	uint64_t oom1, pids1;
	cgr_events(s->cg, &oom1, &pids1);
	res->oom_killed = oom1 > oom0;
	res->pids_limited = pids1 > pids0;
	res->output_total = t.total;
	res->truncated = t.total > t.cap;
	size_t keep = t.total < t.cap ? (size_t)t.total : t.cap;
	if (!(res->output = malloc(keep + 1))) {
		rc = -ENOMEM;
		goto out;
	}
	size_t start = (t.pos - keep) % t.cap;
	size_t first = keep < t.cap - start ? keep : t.cap - start;
	memcpy(res->output, t.buf + start, first);
	memcpy(res->output + first, t.buf, keep - first);
	res->output[keep] = 0;
	res->output_len = keep;
out:
	if (rc < 0 && r && !r->exited && r->id)
		(void)sbxp_send(s->ctl, SBXP_KILL, r->id, SIGKILL, 0, NULL, 0, NULL, 0);
	if (r)
		r->used = false;
	if (out[0] >= 0)
		close(out[0]);
	if (out[1] >= 0)
		close(out[1]);
	free(t.buf);
	return rc;
}

void sbx_result_free(sbx_result *r)
{
	if (r) {
		free(r->output);
		r->output = NULL;
	}
}

int sbx_result_status(const sbx_result *r)
{
	if (r->timed_out)
		return 124;
	if (r->signal)
		return 128 + r->signal;
	return r->exit_code;
}

int sbx_spawn(sbx *s, const sbx_cmd *cmd, sbx_proc **outp)
{
	int out[2] = { -1, -1 }, in[2] = { -1, -1 }, rc = 0;
	sbx_proc *p = calloc(1, sizeof *p);
	struct rec *r = NULL;
	if (!p || !(r = rec_new(s))) {
		free(p);
		return -ENOMEM;
	}
	p->in_fd = p->out_fd = -1;
	if (pipe2(out, O_CLOEXEC) < 0 || (cmd->stdin_pipe && pipe2(in, O_CLOEXEC) < 0)) {
		rc = -errno;
		goto fail;
	}
	rc = send_exec(s, cmd, r, out[1], in[0]);
	close(out[1]);
	if (in[0] >= 0)
		close(in[0]);
	out[1] = in[0] = -1;
	if (rc < 0)
		goto fail;
	uint64_t deadline = now_ms() + 10000;
	while (!r->started && !r->failed) {
		struct pollfd pf = { s->ctl, POLLIN, 0 };
		int t = poll_ms(deadline);
		if (t == 0) {
			rc = -ETIMEDOUT;
			goto fail;
		}
		int pr = poll(&pf, 1, t);
		if (pr < 0 && errno != EINTR) {
			rc = -errno;
			goto fail;
		}
		if (pr > 0 && (rc = sbx_pump(s)) < 0)
			goto fail;
	}
	if (r->failed) {
		rc = -r->err;
		goto fail;
	}
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	p->s = s;
	p->id = r->id;
	p->pid = r->pid;
	p->out_fd = out[0];
	p->in_fd = in[1];
	*outp = p;
	return 0;
fail:
	if (r)
		r->used = false;
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (in[i] >= 0)
			close(in[i]);
	}
	free(p);
	return rc;
}

int sbx_proc_output_fd(const sbx_proc *p)
{
	return p->out_fd;
}

int sbx_proc_stdin_fd(const sbx_proc *p)
{
	return p->in_fd;
}

void sbx_proc_close_stdin(sbx_proc *p)
{
	if (p->in_fd >= 0)
		close(p->in_fd);
	p->in_fd = -1;
}

pid_t sbx_proc_pid(const sbx_proc *p)
{
	return p->pid;
}

int sbx_proc_kill(sbx_proc *p, int sig)
{
	if (p->exited)
		return -ESRCH;
	return sbxp_send(p->s->ctl, SBXP_KILL, p->id, sig, 0, NULL, 0, NULL, 0);
}

int sbx_proc_wait(sbx_proc *p, int timeout_ms, int *wstatus)
{
	if (!p->exited) {
		struct rec *r = rec_find(p->s, p->id);
		if (!r)
			return -ESRCH;
		int rc = wait_flag(p->s, &r->exited, now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0));
		if (rc == -ETIMEDOUT)
			return 0;
		if (rc < 0)
			return rc;
		p->exited = true;
		p->wstatus = r->wstatus;
		r->used = false;
	}
	if (wstatus)
		*wstatus = p->wstatus;
	return 1;
}

void sbx_proc_free(sbx_proc *p)
{
	if (!p)
		return;
	if (!p->exited) {
		(void)sbx_proc_kill(p, SIGKILL);
		(void)sbx_proc_wait(p, KILL_GRACE_MS, NULL);
		struct rec *r = rec_find(p->s, p->id);
		if (r)
			r->used = false;
	}
	if (p->in_fd >= 0)
		close(p->in_fd);
	if (p->out_fd >= 0)
		close(p->out_fd);
	free(p);
}

int sbx_kill_all(sbx *s)
{
	s->got_killall = false;
	int rc = sbxp_send(s->ctl, SBXP_KILLALL, 0, 0, 0, NULL, 0, NULL, 0);
	if (rc < 0)
		return rc;
	rc = wait_flag(s, &s->got_killall, now_ms() + KILL_GRACE_MS);
	return rc < 0 ? rc : s->killall_n;
}

int sbx_nprocs(sbx *s)
{
	s->got_nprocs = false;
	int rc = sbxp_send(s->ctl, SBXP_NPROCS, 0, 0, 0, NULL, 0, NULL, 0);
	if (rc < 0)
		return rc;
	rc = wait_flag(s, &s->got_nprocs, now_ms() + KILL_GRACE_MS);
	return rc < 0 ? rc : s->nprocs_n;
}

int sbx_netns_listen(sbx *s, const char *addr, int port, int *fd_out)
{
	if (!addr || port < 0 || port > 65535 || strlen(addr) > 64)
		return -EINVAL;
	s->got_listen = false;
	int rc = sbxp_send(s->ctl, SBXP_LISTEN, 0, port, 0, addr, (uint32_t)strlen(addr), NULL, 0);
	if (rc < 0)
		return rc;
	rc = wait_flag(s, &s->got_listen, now_ms() + KILL_GRACE_MS);
	if (rc < 0)
		return rc;
	if (s->listen_rc < 0 || s->listen_fd < 0)
		return s->listen_rc < 0 ? s->listen_rc : -EIO;
	*fd_out = s->listen_fd;
	s->listen_fd = -1;
	return 0;
}



const char *sbx_mount_point(const sbx *s)
{
	return s->mount_point;
}

pid_t sbx_init_pid(const sbx *s)
{
	return s->init_pid;
}

unsigned sbx_default_timeout_ms(const sbx *s)
{
	return s->timeout_ms;
}

const char *sbx_limits_describe(const sbx *s)
{
	return s->limits;
}
