/* The init's root: the mounts of the new root, built inside the fresh namespaces before SBXP_GO, and the
 * hardening that follows the cgroup joins (cgroup namespace, argument area, capabilities, special files).
 * Part of the in-sandbox init (sbxinit.c): same rules, no malloc and no stdio, static buffers only, errors
 * reported as text over the control socket. */
#include "sandbox/engine/sbxroot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox/engine/landlock.h"
#include "sandbox/engine/sbxnet.h"
#include "sandbox/engine/seccomp_policy.h"
#include "sandbox/engine/ws_quota.h"

static const struct sbxi_params *P;
static struct sbxr_state *S;
static int image_fd = -1, ws_fd = -1, ws_tree = -1;

void sbxr_fail(int err, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof text)
		n = sizeof text - 1;
	(void)sbxp_send(P->ctl, SBXP_FAIL, 0, err, 0, text, (uint32_t)n, NULL, 0);
	_exit(1);
}

static void write_proc(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, val, strlen(val)) != (ssize_t)strlen(val))
		sbxr_fail(errno, "write %s: %s", path, strerror(errno));
	close(fd);
}

static void setattr(int dfd, const char *path, unsigned flags, uint64_t set)
{
	struct mount_attr a = { .attr_set = set };
	if (mount_setattr(dfd, path, flags, &a, sizeof a) < 0)
		sbxr_fail(errno, "mount_setattr %s: %s", path, strerror(errno));
}

/* Clones the tree at (dfd, src), applies set (recursively when rec) and attaches it at dst. */
static void bind_tree(int dfd, const char *src, const char *dst, bool rec, uint64_t set)
{
	unsigned fl = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW | (rec ? AT_RECURSIVE : 0);
	if (!*src)
		fl |= AT_EMPTY_PATH;
	int t = open_tree(dfd, src, fl);
	if (t < 0)
		sbxr_fail(errno, "open_tree %s: %s", *src ? src : "(fd)", strerror(errno));
	if (set)
		setattr(t, "", AT_EMPTY_PATH | (rec ? AT_RECURSIVE : 0), set);
	if (move_mount(t, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		sbxr_fail(errno, "move_mount %s: %s", dst, strerror(errno));
	close(t);
}

static void mkdir_p(const char *path, mode_t mode)
{
	char buf[4096];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *p = buf + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				sbxr_fail(errno, "mkdir %s: %s", buf, strerror(errno));
			*p = '/';
		}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		sbxr_fail(errno, "mkdir %s: %s (the mount point must not be inside a read-only image directory)", buf,
		     strerror(errno));
}

static void touch(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		sbxr_fail(errno, "create %s: %s", path, strerror(errno));
	close(fd);
}

/* Top-level entries of the image, each bound read-only (recursively) into the new root (cwd). */
static void populate_root(void)
{
	static char dents[32768];
	for (;;) {
		long n = syscall(SYS_getdents64, image_fd, dents, sizeof dents);
		if (n < 0)
			sbxr_fail(errno, "read image directory: %s", strerror(errno));
		if (n == 0)
			break;
		for (long off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(dents + off);
			off += d->d_reclen;
			const char *name = d->d_name;
			if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, "proc") || !strcmp(name, "dev") ||
			    !strcmp(name, "tmp") || !strcmp(name, "sys"))
				continue;
			/* The entry's type from getdents; a stat only where the file system does not say. */
			struct stat st = { .st_mode = d->d_type == DT_DIR ? S_IFDIR : d->d_type == DT_LNK ? S_IFLNK
						      : d->d_type == DT_REG ? S_IFREG : 0 };
			if (d->d_type == DT_UNKNOWN && fstatat(image_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			if (S_ISDIR(st.st_mode)) {
				if (mkdir(name, 0755) < 0)
					sbxr_fail(errno, "mkdir %s: %s", name, strerror(errno));
				bind_tree(image_fd, name, name, true,
					  MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
			} else if (S_ISLNK(st.st_mode)) {
				static char target[4096];
				ssize_t l = readlinkat(image_fd, name, target, sizeof target - 1);
				if (l < 0)
					continue;
				target[l] = 0;
				if (symlink(target, name) < 0)
					sbxr_fail(errno, "symlink %s: %s", name, strerror(errno));
			} else if (S_ISREG(st.st_mode)) {
				touch(name);
				bind_tree(image_fd, name, name, false,
					  MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
			}
		}
	}
}

static void mount_or_fail(const char *src, const char *dst, const char *type, unsigned long fl, const char *data)
{
	if (mount(src, dst, type, fl, data) < 0)
		sbxr_fail(errno, "mount %s on %s: %s", type ? type : src, dst, strerror(errno));
}

static void build_dev(void)
{
	static const char *const nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };
	char path[64];
	mkdir("dev", 0755);
	mount_or_fail("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64");
	for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
		snprintf(path, sizeof path, "dev/%s", nodes[i]);
		touch(path);
		char host[64];
		snprintf(host, sizeof host, "/dev/%s", nodes[i]);
		bind_tree(AT_FDCWD, host, path, false, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
	}
	mkdir("dev/pts", 0755);
	mount_or_fail("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
	if (symlink("pts/ptmx", "dev/ptmx") < 0 || symlink("/proc/self/fd", "dev/fd") < 0 ||
	    symlink("/proc/self/fd/0", "dev/stdin") < 0 || symlink("/proc/self/fd/1", "dev/stdout") < 0 ||
	    symlink("/proc/self/fd/2", "dev/stderr") < 0)
		sbxr_fail(errno, "symlinks in /dev: %s", strerror(errno));
	mkdir("dev/shm", 01777);
}

/* /tmp, /dev/shm and a tmpfs workspace are directories of ONE tmpfs, so one size cap (tmp_bytes, which
 * the host keeps within the memory budget) bounds all the memory a session can fill with files. The
 * tmpfs is made detached (fsmount) and only its directories are bound in place. */

static void scratch_bind(const char *dir, mode_t mode, const char *dst)
{
	if (mkdirat(S->scratch_fd, dir, mode) < 0 || fchmodat(S->scratch_fd, dir, mode, 0) < 0)
		sbxr_fail(errno, "scratch %s: %s", dir, strerror(errno));
	bind_tree(S->scratch_fd, dir, dst, false, 0);
}

static void build_scratch(void)
{
	char size[32];
	snprintf(size, sizeof size, "%llu", (unsigned long long)P->tmp_bytes);
	int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
	if (fs < 0 || fsconfig(fs, FSCONFIG_SET_STRING, "size", size, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0755", 0) < 0 ||
	    fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0 ||
	    (S->scratch_fd = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)) < 0)
		sbxr_fail(errno, "tmpfs for /tmp and /dev/shm: %s", strerror(errno));
	close(fs);
	mkdir("tmp", 01777);
	scratch_bind("tmp", 01777, "tmp");
	scratch_bind("shm", 01777, "dev/shm");
}

/* Mounts over /proc entries that would let a process holding the host-root uid change the host. */
/* Per-user kernel budgets are charged at every user-namespace level: in the host's, to the owner of our
 * namespace. Our own namespace's caps (set while we still hold CAP_SYS_RESOURCE in it, before /proc/sys goes
 * read-only) keep one session from exhausting that owner's budget and every other session's. */
static void ns_budgets(void)
{
	char inst[24], watches[24];
	snprintf(inst, sizeof inst, "%u", P->inotify_instances);
	snprintf(watches, sizeof watches, "%llu", P->inotify_watches);
	const struct { const char *name, *val; } caps[] = {
		{ "proc/sys/user/max_inotify_instances", inst },
		{ "proc/sys/user/max_inotify_watches", watches },
		{ "proc/sys/user/max_fanotify_groups", "0" },
		{ "proc/sys/user/max_fanotify_marks", "0" },
	};
	for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
		int fd = open(caps[i].name, O_WRONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			continue; /* an older kernel without that counter */
		if (fd < 0 || write(fd, caps[i].val, strlen(caps[i].val)) != (ssize_t)strlen(caps[i].val))
			sbxr_fail(errno, "cap %s: %s", caps[i].name, strerror(errno));
		close(fd);
	}
}

static void harden_proc(void)
{
	static const char *const ro[] = { "proc/sys", "proc/sysrq-trigger", "proc/irq", "proc/bus", "proc/fs" };
	for (size_t i = 0; i < sizeof ro / sizeof ro[0]; i++) {
		struct stat st;
		if (lstat(ro[i], &st) < 0)
			continue;
		bind_tree(AT_FDCWD, ro[i], ro[i], true, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
								MOUNT_ATTR_NOEXEC);
	}
}

/* /sys: a sysfs of our own network namespace (only `lo` under class/net, no host NIC), read-only, with the
 * paths runc masks by default (firmware tables, the RAPL energy counters of powercap) covered. Where the
 * kernel refuses the mount, an empty read-only tmpfs: nothing of the host's sysfs is ever bound in. */

static void build_sys(void)
{
	static const char *const mask[] = { "sys/firmware", "sys/devices/virtual/powercap", "sys/kernel/debug",
					    "sys/kernel/tracing", "sys/kernel/security" };
	const unsigned long fl = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
	mkdir("sys", 0555);
	if (mount("sysfs", "sys", "sysfs", fl, NULL) < 0) {
		S->sys_empty = true;
		mount_or_fail("tmpfs", "sys", "tmpfs", fl, "mode=0555,size=4k,nr_inodes=4");
		return;
	}
	for (size_t i = 0; i < sizeof mask / sizeof mask[0]; i++) {
		struct stat st;
		if (lstat(mask[i], &st) == 0 && S_ISDIR(st.st_mode))
			mount_or_fail("tmpfs", mask[i], "tmpfs", fl, "mode=0555,size=4k,nr_inodes=4");
	}
}

/* pid 1 is a clone of the host process: its argument and environment area still hold the host's command
 * line (workspace path, options) and environment (possibly secrets). /proc/1/cmdline is readable by every
 * process of the sandbox, so both areas are cleared (the addresses are fields 48-51 of /proc/self/stat). */
static void scrub_cmdline(void)
{
	static char st[4096];
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		sbxr_fail(errno, "/proc/self/stat: %s", strerror(errno));
	ssize_t n = read(fd, st, sizeof st - 1);
	close(fd);
	if (n <= 0)
		sbxr_fail(EIO, "/proc/self/stat: short read");
	st[n] = 0;
	char *p = strrchr(st, ')');
	unsigned long v[4] = { 0 };
	/* After "pid (comm)" comes field 3; arg_start is field 48. */
	for (int f = 2; p && f <= 51; f++) {
		p = strchr(p + 1, ' ');
		if (p && f + 1 >= 48 && f + 1 <= 51)
			v[f + 1 - 48] = strtoul(p + 1, NULL, 10);
	}
	if (!v[0] || v[1] <= v[0] || !v[2] || v[3] < v[2])
		sbxr_fail(EIO, "/proc/self/stat: no argument area");
	static const char name[] = "sandbox-init";
	memset((void *)v[0], 0, v[1] - v[0]);
	memcpy((void *)v[0], name, sizeof name <= v[1] - v[0] ? sizeof name : v[1] - v[0] - 1);
	memset((void *)v[2], 0, v[3] - v[2]);
	(void)prctl(PR_SET_NAME, name, 0, 0, 0);
}

static void hide_paths(void)
{
	for (const char *const *h = P->hide; h && *h; h++) {
		struct stat st;
		if (stat(*h, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			mount_or_fail("tmpfs", *h, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
				      "mode=0755,size=4k,nr_inodes=4");
		else
			bind_tree(AT_FDCWD, "/dev/null", *h, false, MOUNT_ATTR_RDONLY);
	}
}

/* Protected paths: every ancestor inside the workspace becomes a mount point (so it cannot be renamed
 * or removed to make room for a fresh copy), then the path itself is re-bound read-only. */
/* Each ancestor of a door (.git) is bound onto itself once: a mount point cannot be renamed away. */
static bool ancestor_bound(const char *path)
{
	static char done[8][256];
	static int n;
	for (int i = 0; i < n; i++)
		if (!strcmp(done[i], path))
			return true;
	if (n < 8 && strlen(path) < sizeof done[0])
		strcpy(done[n++], path);
	return false;
}

static void protect_paths(void)
{
	char path[4096];
	const char *mp = P->mount_point;
	if (!P->workspace)
		return;
	for (int pass = 0; pass < 2; pass++)
		for (const char *const *r = P->protect; r && *r; r++) {
			snprintf(path, sizeof path, "%s/%s", mp, *r);
			size_t l = strlen(path);
			while (l > 1 && path[l - 1] == '/')
				path[--l] = 0;
			struct stat st;
			if (lstat(path, &st) < 0 || S_ISLNK(st.st_mode))
				continue; /* the host could not create it safely */
			if (pass == 0) {
				for (char *p = path + strlen(mp) + 1; *p; p++)
					if (*p == '/') {
						*p = 0;
						struct stat ast;
						if (!ancestor_bound(path) && lstat(path, &ast) == 0 && S_ISDIR(ast.st_mode))
							bind_tree(AT_FDCWD, path, path, false, 0);
						*p = '/';
					}
			} else {
				bind_tree(AT_FDCWD, path, path, true, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
			}
		}
	/* A linked worktree's or submodule's `.git` is a file naming its git directory: kept as it is too
	 * (a `.git` directory stays writable for the session's own git; its doors are bound above). */
	struct stat gst;
	snprintf(path, sizeof path, "%s/.git", mp);
	if (lstat(path, &gst) < 0)
		return; /* no repository: nothing to keep (gst is unset, so it must not be looked at) */
	if (S_ISREG(gst.st_mode))
		bind_tree(AT_FDCWD, path, path, false, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	else if (S_ISDIR(gst.st_mode) && !ancestor_bound(path)) /* a mount point: not renamed away, even bare */
		bind_tree(AT_FDCWD, path, path, false, 0);
}


static void drop_caps(void)
{
	if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
					     SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED) < 0)
		sbxr_fail(errno, "securebits: %s", strerror(errno));
	for (int c = 0; c <= 63; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			sbxr_fail(errno, "capbset drop %d: %s", c, strerror(errno));
	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof d);
	if (syscall(SYS_capset, &h, d) < 0)
		sbxr_fail(errno, "capset: %s", strerror(errno));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		sbxr_fail(errno, "no_new_privs: %s", strerror(errno));
}

static bool ws_tmpfs; /* the workspace is a tmpfs of our own (P->ws_tmpfs, or SBXP_MAPS_TMPFS from a root host) */

void sbxr_build(const struct sbxi_params *params, struct sbxr_state *state, char *msgbuf)
{
	char buf[128];
	P = params;
	S = state;
	S->scratch_fd = -1;
	if (P->host_maps) {
		/* A root host maps us to an unprivileged host uid and hands over the workspace as an idmapped
		 * tree. The root caller's supplementary groups (gid 0 among them) must not come along. */
		struct sbxp_hdr h;
		int fds[2], nfds = 2;
		if (sbxp_recv(P->ctl, &h, msgbuf, fds, &nfds, 0) <= 0 || h.type != SBXP_MAPS || nfds > 1)
			_exit(1);
		ws_tree = nfds ? fds[0] : -1;
		ws_tmpfs = h.a & SBXP_MAPS_TMPFS;
		/* Our credentials are still the host's root: take the mapped ids (capabilities in our user
		 * namespace stay until drop_caps()). */
		if (setgroups(0, NULL) < 0 || setresgid(P->gid, P->gid, P->gid) < 0 || setresuid(P->uid, P->uid, P->uid) < 0)
			sbxr_fail(errno, "switch to the mapped ids: %s", strerror(errno));
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); /* a credential change cleared it */
	} else {
		/* The single-line maps an unprivileged user may write for itself. */
		ws_tmpfs = P->ws_tmpfs;
		write_proc("/proc/self/setgroups", "deny");
		snprintf(buf, sizeof buf, "%u %u 1\n", (unsigned)P->uid, (unsigned)P->uid);
		write_proc("/proc/self/uid_map", buf);
		snprintf(buf, sizeof buf, "%u %u 1\n", (unsigned)P->gid, (unsigned)P->gid);
		write_proc("/proc/self/gid_map", buf);
	}

	int rc = sbxnet_start();
	if (rc < 0)
		sbxr_fail(-rc, "network namespace thread: %s", strerror(-rc));
	mount_or_fail(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if ((image_fd = open(P->image, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		sbxr_fail(errno, "image %s: %s", P->image, strerror(errno));
	if (P->workspace && ws_tree < 0 && !ws_tmpfs && (ws_fd = open(P->workspace, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		sbxr_fail(errno, "workspace %s: %s", P->workspace, strerror(errno));
	/* The new root is a small tmpfs over the host's /tmp in our private mount namespace; the image and the
	 * workspace were opened as fds before, so nothing below is resolved through it. */
	mount_or_fail("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m,nr_inodes=4096");
	if (chdir("/tmp") < 0)
		sbxr_fail(errno, "chdir: %s", strerror(errno));
	populate_root();

	mkdir("proc", 0555);
	mount_or_fail("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	ns_budgets();
	harden_proc();
	build_dev();
	const char *what = "";
	if ((rc = sbxnet_join(&what)) < 0) /* before sysfs: it shows the mounter's network namespace */
		sbxr_fail(-rc, "network namespace (%s): %s", what, strerror(-rc));
	build_sys();
	build_scratch();

	/* A scratch workspace of memory, of the disk cap (ws_quota.h): the host directory stays empty. */
	if (ws_tmpfs && (ws_tree = ws_quota_tmpfs(P->ws_tmpfs_bytes, P->ws_mode)) < 0)
		sbxr_fail(-ws_tree, "workspace tmpfs: %s", strerror(-ws_tree));
	const char *mp = P->mount_point + 1; /* relative to the new root */
	mkdir_p(mp, 0755);
	if (ws_tree >= 0) {
		if (move_mount(ws_tree, "", AT_FDCWD, mp, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			sbxr_fail(errno, "attach workspace: %s", strerror(errno));
	} else if (ws_fd >= 0) {
		bind_tree(ws_fd, "", mp, true, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	}
	else
		scratch_bind("workspace", 0755, mp);
	/* The scratch tmpfs fd stays open until the first command runs: its last close dissolves the
	 * detached tmpfs mount, an RCU grace period that then overlaps that command (sbxinit.c). */

	if (syscall(SYS_pivot_root, ".", ".") < 0)
		sbxr_fail(errno, "pivot_root: %s", strerror(errno));
	if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		sbxr_fail(errno, "detach old root: %s", strerror(errno));

	hide_paths();
	protect_paths();
	mount_or_fail(NULL, "/dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL);
	mount_or_fail(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);

	if (sethostname(P->hostname, strlen(P->hostname)) < 0)
		sbxr_fail(errno, "sethostname: %s", strerror(errno));
	if (chdir(P->mount_point) < 0)
		sbxr_fail(errno, "chdir %s: %s", P->mount_point, strerror(errno));
	close(image_fd);
	if (ws_fd >= 0)
		close(ws_fd);
	if (ws_tree >= 0)
		close(ws_tree);
}

/* FIFOs, socket files and devices only in the session's own tmpfs: Landlock where the kernel has it,
 * else a second seccomp filter that refuses FIFO and socket nodes by mknod (bind() of a socket file
 * then stays possible: the limits line says which). */
static void special_files(void)
{
	const char *paths[4] = { "/tmp", "/dev/shm", NULL, NULL };
	const char *what = "";
	if (!P->workspace)
		paths[2] = P->mount_point; /* a tmpfs workspace is scratch too */
	if (!P->no_landlock && landlock_abi() > 0) {
		int rc = landlock_restrict(paths, &what);
		if (rc < 0)
			sbxr_fail(-rc, "landlock (%s): %s", what, strerror(-rc));
		S->landlocked = true;
		return;
	}
	int rc = secpol_install(secpol_mknod_program());
	if (rc < 0)
		sbxr_fail(-rc, "seccomp mknod filter: %s", strerror(-rc));
}

/* After SBXP_GO and the joins (we are in the session's cgroups): a cgroup namespace rooted there, so
 * /proc/self/cgroup reads "0::/" and no host cgroup path; then the capabilities go. */
void sbxr_harden(void)
{
	if (unshare(CLONE_NEWCGROUP) < 0)
		sbxr_fail(errno, "cgroup namespace: %s", strerror(errno));
	scrub_cmdline();
	drop_caps();
	special_files();
	/* Commands share our uid: keep them out of /proc/1/mem and friends. */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
