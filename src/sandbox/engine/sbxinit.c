/* The in-sandbox init: builds the root inside the fresh namespaces, then serves commands as pid 1.
 * Runs in a raw clone of a possibly multithreaded host process, so it uses no malloc and no stdio:
 * static buffers only, errors reported as text over the control socket. */
#include "sandbox/engine/sbx_proto.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/securebits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/engine/landlock.h"
#include "sandbox/engine/sandbox.h"
#include "sandbox/engine/sbxnet.h"
#include "sandbox/engine/seccomp_policy.h"
#include "sandbox/engine/ws_quota.h"

#define MAX_CMDS 256

static const struct sbxi_params *P;
static int image_fd = -1, ws_fd = -1, ws_tree = -1;
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

static void __attribute__((noreturn, format(printf, 2, 3))) fail(int err, const char *fmt, ...)
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
		fail(errno, "write %s: %s", path, strerror(errno));
	close(fd);
}

static void setattr(int dfd, const char *path, unsigned flags, uint64_t set)
{
	struct mount_attr a = { .attr_set = set };
	if (mount_setattr(dfd, path, flags, &a, sizeof a) < 0)
		fail(errno, "mount_setattr %s: %s", path, strerror(errno));
}

/* Clones the tree at (dfd, src), applies set (recursively when rec) and attaches it at dst. */
static void bind_tree(int dfd, const char *src, const char *dst, bool rec, uint64_t set)
{
	unsigned fl = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW | (rec ? AT_RECURSIVE : 0);
	if (!*src)
		fl |= AT_EMPTY_PATH;
	int t = open_tree(dfd, src, fl);
	if (t < 0)
		fail(errno, "open_tree %s: %s", *src ? src : "(fd)", strerror(errno));
	if (set)
		setattr(t, "", AT_EMPTY_PATH | (rec ? AT_RECURSIVE : 0), set);
	if (move_mount(t, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		fail(errno, "move_mount %s: %s", dst, strerror(errno));
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
				fail(errno, "mkdir %s: %s", buf, strerror(errno));
			*p = '/';
		}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		fail(errno, "mkdir %s: %s (the mount point must not be inside a read-only image directory)", buf,
		     strerror(errno));
}

static void touch(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		fail(errno, "create %s: %s", path, strerror(errno));
	close(fd);
}

/* Top-level entries of the image, each bound read-only (recursively) into the new root (cwd). */
static void populate_root(void)
{
	static char dents[32768];
	for (;;) {
		long n = syscall(SYS_getdents64, image_fd, dents, sizeof dents);
		if (n < 0)
			fail(errno, "read image directory: %s", strerror(errno));
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
					fail(errno, "mkdir %s: %s", name, strerror(errno));
				bind_tree(image_fd, name, name, true,
					  MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
			} else if (S_ISLNK(st.st_mode)) {
				static char target[4096];
				ssize_t l = readlinkat(image_fd, name, target, sizeof target - 1);
				if (l < 0)
					continue;
				target[l] = 0;
				if (symlink(target, name) < 0)
					fail(errno, "symlink %s: %s", name, strerror(errno));
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
		fail(errno, "mount %s on %s: %s", type ? type : src, dst, strerror(errno));
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
		fail(errno, "symlinks in /dev: %s", strerror(errno));
	mkdir("dev/shm", 01777);
}

/* /tmp, /dev/shm and a tmpfs workspace are directories of ONE tmpfs, so one size cap (tmp_bytes, which
 * the host keeps within the memory budget) bounds all the memory a session can fill with files. The
 * tmpfs is made detached (fsmount) and only its directories are bound in place. */
static int scratch_fd = -1;

static void scratch_bind(const char *dir, mode_t mode, const char *dst)
{
	if (mkdirat(scratch_fd, dir, mode) < 0 || fchmodat(scratch_fd, dir, mode, 0) < 0)
		fail(errno, "scratch %s: %s", dir, strerror(errno));
	bind_tree(scratch_fd, dir, dst, false, 0);
}

static void build_scratch(void)
{
	char size[32];
	snprintf(size, sizeof size, "%llu", (unsigned long long)P->tmp_bytes);
	int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
	if (fs < 0 || fsconfig(fs, FSCONFIG_SET_STRING, "size", size, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0755", 0) < 0 ||
	    fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0 ||
	    (scratch_fd = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)) < 0)
		fail(errno, "tmpfs for /tmp and /dev/shm: %s", strerror(errno));
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
			fail(errno, "cap %s: %s", caps[i].name, strerror(errno));
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
static bool sys_empty;

static void build_sys(void)
{
	static const char *const mask[] = { "sys/firmware", "sys/devices/virtual/powercap", "sys/kernel/debug",
					    "sys/kernel/tracing", "sys/kernel/security" };
	const unsigned long fl = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
	mkdir("sys", 0555);
	if (mount("sysfs", "sys", "sysfs", fl, NULL) < 0) {
		sys_empty = true;
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
		fail(errno, "/proc/self/stat: %s", strerror(errno));
	ssize_t n = read(fd, st, sizeof st - 1);
	close(fd);
	if (n <= 0)
		fail(EIO, "/proc/self/stat: short read");
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
		fail(EIO, "/proc/self/stat: no argument area");
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
		fail(errno, "securebits: %s", strerror(errno));
	for (int c = 0; c <= 63; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			fail(errno, "capbset drop %d: %s", c, strerror(errno));
	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof d);
	if (syscall(SYS_capset, &h, d) < 0)
		fail(errno, "capset: %s", strerror(errno));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fail(errno, "no_new_privs: %s", strerror(errno));
}

static bool ws_tmpfs; /* the workspace is a tmpfs of our own (P->ws_tmpfs, or SBXP_MAPS_TMPFS from a root host) */

static void setup(void)
{
	char buf[128];
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
			fail(errno, "switch to the mapped ids: %s", strerror(errno));
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
		fail(-rc, "network namespace thread: %s", strerror(-rc));
	mount_or_fail(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if ((image_fd = open(P->image, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		fail(errno, "image %s: %s", P->image, strerror(errno));
	if (P->workspace && ws_tree < 0 && !ws_tmpfs && (ws_fd = open(P->workspace, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		fail(errno, "workspace %s: %s", P->workspace, strerror(errno));
	/* The new root is a small tmpfs over the host's /tmp in our private mount namespace; the image and the
	 * workspace were opened as fds before, so nothing below is resolved through it. */
	mount_or_fail("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m,nr_inodes=4096");
	if (chdir("/tmp") < 0)
		fail(errno, "chdir: %s", strerror(errno));
	populate_root();

	mkdir("proc", 0555);
	mount_or_fail("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	ns_budgets();
	harden_proc();
	build_dev();
	const char *what = "";
	if ((rc = sbxnet_join(&what)) < 0) /* before sysfs: it shows the mounter's network namespace */
		fail(-rc, "network namespace (%s): %s", what, strerror(-rc));
	build_sys();
	build_scratch();

	/* A scratch workspace of memory, of the disk cap (ws_quota.h): the host directory stays empty. */
	if (ws_tmpfs && (ws_tree = ws_quota_tmpfs(P->ws_tmpfs_bytes, P->ws_mode)) < 0)
		fail(-ws_tree, "workspace tmpfs: %s", strerror(-ws_tree));
	const char *mp = P->mount_point + 1; /* relative to the new root */
	mkdir_p(mp, 0755);
	if (ws_tree >= 0) {
		if (move_mount(ws_tree, "", AT_FDCWD, mp, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			fail(errno, "attach workspace: %s", strerror(errno));
	} else if (ws_fd >= 0) {
		bind_tree(ws_fd, "", mp, true, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	}
	else
		scratch_bind("workspace", 0755, mp);
	/* scratch_fd stays open until SBXP_READY is out: its last close dissolves the detached tmpfs mount,
	 * an RCU grace period that then overlaps the host's turn instead of delaying READY. */

	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail(errno, "pivot_root: %s", strerror(errno));
	if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		fail(errno, "detach old root: %s", strerror(errno));

	hide_paths();
	protect_paths();
	mount_or_fail(NULL, "/dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL);
	mount_or_fail(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);

	if (sethostname(P->hostname, strlen(P->hostname)) < 0)
		fail(errno, "sethostname: %s", strerror(errno));
	if (chdir(P->mount_point) < 0)
		fail(errno, "chdir %s: %s", P->mount_point, strerror(errno));
	close(image_fd);
	if (ws_fd >= 0)
		close(ws_fd);
	if (ws_tree >= 0)
		close(ws_tree);
}

/* After SBXP_GO and the joins (we are in the session's cgroups): a cgroup namespace rooted there, so
 * /proc/self/cgroup reads "0::/" and no host cgroup path; then the capabilities go. */
static bool landlocked;

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
			fail(-rc, "landlock (%s): %s", what, strerror(-rc));
		landlocked = true;
		return;
	}
	int rc = secpol_install(secpol_mknod_program());
	if (rc < 0)
		fail(-rc, "seccomp mknod filter: %s", strerror(-rc));
}

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

static void finish(void)
{
	if (unshare(CLONE_NEWCGROUP) < 0)
		fail(errno, "cgroup namespace: %s", strerror(errno));
	scrub_cmdline();
	drop_caps();
	special_files();
	/* Commands share our uid: keep them out of /proc/1/mem and friends. */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
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
		fail(errno, "init setup: %s", strerror(errno));
	/* The init takes the commands' filter itself: every command inherits it through vfork without a
	 * per-command attach (and BPF JIT), and the init's own surface shrinks to the same allowlist. */
	int rc = secpol_install(&prog);
	if (rc < 0)
		fail(-rc, "seccomp: %s", strerror(-rc));
	(void)sbxp_send(P->ctl, SBXP_READY, 0,
			(sys_empty ? SBXP_READY_SYS_EMPTY : 0) | (landlocked ? SBXP_READY_LANDLOCK : 0),
			(int32_t)(join_failed | (unsigned)join_errno << 8), NULL, 0, NULL, 0);
	close(scratch_fd);
	scratch_fd = -1;
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

	setup();
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
	finish();
	serve();
}
