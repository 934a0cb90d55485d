/* Sandbox engine, host side: prepares the session (env, seccomp program, cgroups, protected paths), clones
 * the init into fresh namespaces and ends it. Commands and the control socket: sandbox_proc.c. See sandbox.h. */
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
#include "sandbox/engine/sandbox_int.h"
#include "sandbox/engine/sbx_proto.h"
#include "sandbox/engine/seccomp_policy.h"
#include "sandbox/engine/ws_doors.h"
#include "sandbox/engine/ws_quota.h"

_Static_assert(SBXP_JOIN_MEMORY == 1u << CGR_MEMORY && SBXP_JOIN_PIDS == 1u << CGR_PIDS &&
		       SBXP_JOIN_CPU == 1u << CGR_CPU && CGR_NCTRL <= SBXP_MAX_FDS,
	       "the init's join bits are the cgroup controllers'");

static const char *const default_env_allow[] = { "PATH", "LANG", "LC_*", "TERM", "TZ", NULL };
static const char *const default_hide[] = { "/root", "/home", "/etc/shadow", "/etc/gshadow", "/etc/sudoers",
					    "/etc/sudoers.d", "/etc/ssh", "/run/secrets", "/var/run/secrets",
					    "/var/lib/postern", NULL };
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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

/* Kills the init behind pidfd, reaps it and closes pidfd. pid 1 dying makes the kernel kill and reap the
 * whole pid namespace before we can reap it. */
static void kill_init(int pidfd)
{
	siginfo_t si;
	if (pidfd < 0)
		return;
	(void)pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
	while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR)
		;
	close(pidfd);
}

/* Kills a half-started init and forgets it. */
static void stop_init(sbx *s)
{
	if (s->ctl >= 0)
		close(s->ctl);
	kill_init(s->pidfd);
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
			   CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_PIDFD |
				   SIGCHLD, /* the network namespace is made by the init (in parallel with its mounts),
					     * the cgroup namespace after the move (sbxinit) */
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
		/* A scratch workspace becomes a disk of its own, of the cap; failing that, a tmpfs the init
		 * makes (ws_quota.h), with a warning. */
		if (s->disk == WSQ_EXT4_IMAGE) {
			tree = ws_quota_image_mount(s->ws_fd, c->disk_bytes, im->in_uid, im->in_gid, im->in_mode, why,
					            sizeof why);
			if (tree < 0) {
				s->disk = WSQ_TMPFS;
				log_warn("msg=\"scratch workspace without a disk image: a tmpfs instead\" "
					 "workspace=\"%s\" reason=\"%s\"", c->workspace, why);
			}
		}
		if (s->disk == WSQ_TMPFS)
			goto maps;
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
maps:
	if ((rc = sbxp_send(s->ctl, SBXP_MAPS, 0, s->disk == WSQ_TMPFS ? SBXP_MAPS_TMPFS : 0, 0, NULL, 0,
			    tree >= 0 ? &tree : NULL, tree >= 0 ? 1 : 0)) < 0) {
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

/* Chooses how the workspace's disk is capped (ws_quota.h) and sets a shared workspace's quota. A workspace
 * that can have no total cap is refused when the caller asked for one (asked: --disk SIZE, not none). */
static int disk_plan(sbx *s, const sbx_config *c, int ws, bool asked, bool none, char *err, size_t errlen)
{
	struct ws_quota_host h = { .root = geteuid() == 0 };
	char why[300] = "", fsn[24];
	int d = -1, rc = 0;
	bool scratch = c->flags & SBX_F_SCRATCH;

	if (c->workspace && !scratch && (d = openat(ws, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0)
		(void)ws_quota_probe(d, &h); /* what it could not read counts as not offered */
	s->disk = ws_quota_choose(&h, c->workspace != NULL, scratch, why, sizeof why);
	if ((s->disk == WSQ_BTRFS_QGROUP || s->disk == WSQ_PROJECT) &&
	    ws_quota_apply(d, &h, s->disk, c->disk_bytes, &s->quota, why, sizeof why) < 0)
		s->disk = WSQ_FILE_SIZE;
	if (s->disk == WSQ_FILE_SIZE && asked) {
		snprintf(err, errlen,
			 "--disk: workspace %s (%s) can have no total disk cap: %s. Mount it with project quotas "
			 "(ext4 prjquota, XFS pquota) or make it a btrfs subvolume with quotas on, use a scratch "
			 "workspace (--scratch-workspace), or give --disk none to accept a per-file cap only",
			 c->workspace, ws_quota_fs_name(h.fs_type, fsn, sizeof fsn), why);
		rc = -EPERM;
	} else if (s->disk == WSQ_FILE_SIZE) {
		if (none)
			log_info("msg=\"no total disk cap on this workspace (--disk none): each file is capped at the "
				 "disk size\" workspace=\"%s\"", c->workspace);
		else
			log_warn("msg=\"no total disk cap on this workspace: each file is capped at the disk size\" "
				 "workspace=\"%s\" fs=%s reason=\"%s\"", c->workspace,
				 ws_quota_fs_name(h.fs_type, fsn, sizeof fsn), why);
	}
	if (d >= 0)
		close(d);
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
	s->keeper.pidfd = s->keeper.pipe_w = -1;
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
	bool disk_none = c.disk_bytes == WS_QUOTA_NONE, disk_asked = c.disk_bytes && !disk_none;
	if (!c.disk_bytes || disk_none)
		c.disk_bytes = WS_QUOTA_DEFAULT_BYTES;
	if (c.disk_bytes < WS_QUOTA_MIN_BYTES) {
		snprintf(err, errlen, "disk %llu bytes: at least %lluM", (unsigned long long)c.disk_bytes,
			 (unsigned long long)(WS_QUOTA_MIN_BYTES >> 20));
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
		s->doors = c.protected_paths ? c.protected_paths : ws_doors_default;
		s->doors_before = ws_doors_snapshot(ws, s->doors);
		clock_gettime(CLOCK_REALTIME_COARSE, &s->doors_t0);
		if ((s->ws_fd = fcntl(ws, F_DUPFD_CLOEXEC, 3)) < 0 || !(s->ws_name = strdup(c.workspace)))
			goto oom;
	}
	if (disk_plan(s, &c, ws, disk_asked, disk_none, err, errlen) < 0)
		goto fail;
	/* A tmpfs disk is memory: within what the memory limit leaves after /tmp (ws_quota.h). */
	uint64_t ws_tmpfs_bytes = ws_quota_tmpfs_bytes(c.disk_bytes, c.memory_bytes, c.tmp_bytes);

	struct sbxi_params ip = {
		.image = c.image,
		.workspace = c.workspace,
		.uid = geteuid(),
		.gid = getegid(),
		.mount_point = c.mount_point,
		.hostname = c.hostname,
		.tmp_bytes = c.tmp_bytes,
		.hide = (const char *const *)hide,
		.protect = c.protected_paths ? c.protected_paths : ws_doors_default,
		.env = env,
		.memory_bytes = c.memory_bytes,
		.ws_tmpfs = s->disk == WSQ_TMPFS,
		.ws_tmpfs_bytes = ws_tmpfs_bytes,
		.ws_mode = wst.st_mode & 0777,
		.fsize_bytes = c.disk_bytes,
		.pids = c.pids,
		.inotify_instances = SBX_NS_INOTIFY_INSTANCES,
		.inotify_watches = SBX_NS_INOTIFY_WATCHES,
		/* Test hook: the fallback for kernels without Landlock, on a kernel with it. */
		.no_landlock = getenv("POSTERN_SANDBOX_NO_LANDLOCK") != NULL,
	};
	struct idmap im = { .in_uid = c.workspace ? wst.st_uid : 0, .in_gid = c.workspace ? wst.st_gid : 0,
			    .run_uid = c.run_uid ? c.run_uid : 65534, .run_gid = c.run_gid ? c.run_gid : 65534,
			    .in_mode = c.workspace ? wst.st_mode : 0755 };
	/* One owner id per session, out of the range people and packages use. */
	im.owner_uid = SBX_OWNER_UID_BASE + ((unsigned)getpid() * 64u + atomic_load(&session_counter)) % 65536u;
	/* Unprivileged, every session's namespace is the caller's: their caps are a share of its budget. */
	if (geteuid() != 0) {
		int b = nsb_take(NULL, c.budget_sessions, &s->budget, err, errlen);
		if (b < 0)
			goto fail;
		ip.inotify_instances = s->budget.n;
		ip.inotify_watches = s->budget.z.watches;
	}
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
	/* v1: the init joins its cgroups itself (cgroup.h says why that is 5-18 ms faster). */
	int join[CGR_NCTRL];
	unsigned joins = 0;
	int njoin = cgr_join_fds(s->cg, join, &joins);
	const struct sock_fprog *prog = secpol_program(err, errlen);
	if (!prog) {
		while (njoin > 0)
			close(join[--njoin]);
		goto fail;
	}
	int go = (cgr_kind_of(s->cg, CGR_MEMORY) == CGR_NONE ? SBXP_GO_RLIMIT_AS : 0) |
		 (cgr_kind_of(s->cg, CGR_PIDS) == CGR_NONE ? SBXP_GO_RLIMIT_NPROC : 0);
	what = "start";
	e = sbxp_send(s->ctl, SBXP_GO, 0, go, (int32_t)joins, prog->filter,
		      (uint32_t)(prog->len * sizeof(struct sock_filter)), join, njoin);
	while (njoin > 0)
		close(join[--njoin]);
	if (e < 0)
		goto sys_e;
	/* The door-keeper, before any command can run (none does before we return), while the init finishes
	 * its set-up: it ends the doors even if this process is killed. */
	if (s->ws_fd >= 0) {
		struct ws_doors_end de = { .wsfd = s->ws_fd, .init_pidfd = s->pidfd, .doors = s->doors,
					   .before = s->doors_before, .t0 = s->doors_t0, .ws_name = s->ws_name };
		if (ws_doors_keeper_start(&s->keeper, &de, err, errlen) < 0)
			goto fail;
	}
	{
		struct sbxp_hdr h;
		int fds[2], nfds = 2;
		struct pollfd pf = { s->ctl, POLLIN, 0 };
		int pr = poll(&pf, 1, 10000);
		int r = pr > 0 ? sbxp_recv(s->ctl, &h, s->buf, fds, &nfds, MSG_DONTWAIT) : -ETIMEDOUT;
		if (r > 0 && h.type == SBXP_READY) {
			sys_empty = h.a & SBXP_READY_SYS_EMPTY, landlocked = h.a & SBXP_READY_LANDLOCK;
			unsigned failed = (unsigned)h.b & joins & 0xff;
			if (failed) {
				cgr_join_failed(s->cg, failed, (int)((unsigned)h.b >> 8));
				log_warn("msg=\"cgroup join failed; rlimits stand in\" reason=\"%s\"",
					 strerror((int)((unsigned)h.b >> 8)));
			}
		}
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
		 "cgroupns=session specialfiles=%s inotify=%s:%u/%llu",
		 mem_cg ? kind_name(cgr_kind_of(s->cg, CGR_MEMORY)) : "rlimit-as-per-process",
		 (unsigned long long)c.memory_bytes, pids_cg ? kind_name(cgr_kind_of(s->cg, CGR_PIDS)) : "rlimit-nproc",
		 c.pids,
		 !c.cpu_millis ? "none" : cgr_kind_of(s->cg, CGR_CPU) == CGR_NONE ? "none(no cgroup)"
		 : cgr_kind_of(s->cg, CGR_CPU) == CGR_V2 ? "cgroup-v2" : "cgroup-v1",
		 (unsigned long long)c.tmp_bytes,
		 ws_quota_kind_name(s->disk),
		 (unsigned long long)(s->disk == WSQ_TMPFS ? ws_tmpfs_bytes : s->disk == WSQ_TMPFS_SHARED ? c.tmp_bytes
												 : c.disk_bytes),
		 "loopback-only",
		 sys_empty ? "empty" : "netns",
		 landlocked ? "landlock" : "seccomp-mknod", geteuid() ? "caller-share" : "owner-id", ip.inotify_instances,
		 ip.inotify_watches);
	if (!mem_cg) {
		/* The host's state, not the session's: a warning once per process (a worker starts thousands of
		 * sessions), then debug lines; the start line's limits= says it for every session. */
		static bool warned;
		char why[900];
		if (!warned)
			log_warn("msg=\"no memory cgroup: the memory limit applies to each process, not to the session\" "
				 "reason=\"%s\" note=\"said once per process\"", cgr_why(s->cg, CGR_MEMORY, why, sizeof why));
		else
			log_debug("msg=\"no memory cgroup\" reason=\"%s\"", cgr_why(s->cg, CGR_MEMORY, why, sizeof why));
		warned = true;
	}
	if (s->disk == WSQ_TMPFS && ws_tmpfs_bytes < c.disk_bytes)
		log_emit(disk_asked ? LOG_WARN : LOG_INFO,
			  "msg=\"the workspace is a tmpfs (memory): its size is the disk cap lowered to what the memory "
			  "limit leaves after /tmp\" disk=%llu memory=%llu tmp=%llu size=%llu",
			  (unsigned long long)c.disk_bytes, (unsigned long long)c.memory_bytes,
			  (unsigned long long)c.tmp_bytes, (unsigned long long)ws_tmpfs_bytes);
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
	kill_init(s->pidfd);
	ws_quota_restore(&s->quota); /* no process of the session is left to write */
	nsb_release(&s->budget); /* the namespace's inotify instances went with its processes */
	cgr_free(s->cg);
	/* Every process of the session is gone: nothing races the moves, which the keeper does; if it had died
	 * (someone killed it), they are done here. */
	if (ws_doors_keeper_finish(&s->keeper, s->ws_name) < 0 && s->ws_fd >= 0) {
		log_warn("msg=\"door-keeper gone; moving the session's doors here\" workspace=\"%s\"", s->ws_name);
		ws_doors_end(s->ws_fd, s->doors, s->doors_before, &s->doors_t0, s->ws_name);
	}
	if (s->ws_fd >= 0)
		close(s->ws_fd);
	free(s->ws_name);
	free(s->mount_point);
	free(s->buf);
	free(s);
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
