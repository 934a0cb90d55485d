/* Session cgroups. v2 is used under a configured parent, in our own cgroup when it is delegated to us
 * (its processes move into a leaf child first: the no-internal-processes rule), or at the v2 root;
 * otherwise each v1 controller is used where mounted and writable (a configured v1 directory, or our
 * own v1 cgroup). */
#include "sandbox/engine/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <linux/magic.h>
#include <unistd.h>

#include "core/log.h"

static const char *const ctrl_names[CGR_NCTRL] = { "memory", "pids", "cpu" };

const char *cgr_ctrl_name(enum cgr_ctrl c)
{
	return c < CGR_NCTRL ? ctrl_names[c] : "?";
}

/* Copies the n-th space-separated field of line (which ends at '\n' or NUL). */
static int field(const char *line, int n, char *out, size_t outlen)
{
	const char *p = line;
	for (int i = 0; i < n; i++) {
		while (*p && *p != ' ' && *p != '\n')
			p++;
		if (*p != ' ')
			return -EINVAL;
		p++;
	}
	size_t len = 0;
	while (p[len] && p[len] != ' ' && p[len] != '\n')
		len++;
	if (len >= outlen)
		return -ENAMETOOLONG;
	memcpy(out, p, len);
	out[len] = 0;
	return 0;
}

static bool has_opt(const char *opts, const char *name)
{
	size_t nl = strlen(name);
	for (const char *p = opts; *p;) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		if (l == nl && !memcmp(p, name, nl))
			return true;
		if (!c)
			break;
		p = c + 1;
	}
	return false;
}

int cgr_parse_mountinfo(const char *text, struct cgr_mounts *m)
{
	memset(m, 0, sizeof *m);
	for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		const char *sep = strstr(line, " - ");
		const char *eol = strchr(line, '\n');
		if (!sep || (eol && sep > eol))
			continue;
		char root[CGR_PATH_MAX], mnt[CGR_PATH_MAX], fstype[64], super[512];
		if (field(line, 3, root, sizeof root) || field(line, 4, mnt, sizeof mnt) ||
		    field(sep + 3, 0, fstype, sizeof fstype) || field(sep + 3, 2, super, sizeof super))
			continue;
		if (!strcmp(fstype, "cgroup2")) {
			if (!m->v2_mount[0]) {
				snprintf(m->v2_mount, sizeof m->v2_mount, "%s", mnt);
				snprintf(m->v2_root, sizeof m->v2_root, "%s", root);
			}
		} else if (!strcmp(fstype, "cgroup")) {
			for (int c = 0; c < CGR_NCTRL; c++)
				if (has_opt(super, ctrl_names[c]) && !m->v1_mount[c][0]) {
					snprintf(m->v1_mount[c], sizeof m->v1_mount[c], "%s", mnt);
					snprintf(m->v1_root[c], sizeof m->v1_root[c], "%s", root);
				}
		}
	}
	return 0;
}

/* path as seen from a mount whose root is root: strip the root prefix. */
static void rel_path(char *out, size_t outlen, const char *path, const char *root)
{
	size_t rl = strlen(root);
	if (rl > 1 && !strncmp(path, root, rl) && (path[rl] == '/' || !path[rl]))
		path += rl;
	snprintf(out, outlen, "%s", *path ? path : "/");
}

int cgr_parse_proc_cgroup(const char *text, struct cgr_mounts *m)
{
	for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		const char *c1 = strchr(line, ':');
		const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		const char *eol = strchr(line, '\n');
		if (!c2 || (eol && c2 > eol))
			continue;
		char ctrls[256], path[CGR_PATH_MAX];
		size_t cl = (size_t)(c2 - c1 - 1), pl = eol ? (size_t)(eol - c2 - 1) : strlen(c2 + 1);
		if (cl >= sizeof ctrls || pl >= sizeof path)
			continue;
		memcpy(ctrls, c1 + 1, cl);
		ctrls[cl] = 0;
		memcpy(path, c2 + 1, pl);
		path[pl] = 0;
		if (!strncmp(line, "0::", 3)) {
			rel_path(m->v2_path, sizeof m->v2_path, path, m->v2_root);
			continue;
		}
		for (int c = 0; c < CGR_NCTRL; c++)
			if (has_opt(ctrls, ctrl_names[c]))
				rel_path(m->v1_path[c], sizeof m->v1_path[c], path, m->v1_root[c]);
	}
	return 0;
}

unsigned cgr_parse_controllers(const char *text)
{
	unsigned mask = 0;
	char buf[512];
	snprintf(buf, sizeof buf, "%s", text);
	for (char *save = NULL, *t = strtok_r(buf, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
		for (int c = 0; c < CGR_NCTRL; c++)
			if (!strcmp(t, ctrl_names[c]))
				mask |= 1u << c;
	return mask;
}

uint64_t cgr_parse_keyed(const char *text, const char *key)
{
	size_t kl = strlen(key);
	for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, key, kl) && line[kl] == ' ')
			return strtoull(line + kl + 1, NULL, 10);
	return 0;
}

/* ---- I/O ---------------------------------------------------------------------------------------- */

struct cgr {
	enum cgr_kind kind[CGR_NCTRL];
	char v2_dir[CGR_PATH_MAX];           /* "" when unused */
	char v1_dir[CGR_NCTRL][CGR_PATH_MAX]; /* "" when unused */
	int v1_err[CGR_NCTRL];               /* why a v1 controller could not be used (errno) */
	char why[640];                       /* why v2 was not used, for the log */
};

static int read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, len - 1);
	int e = errno;
	close(fd);
	if (n < 0)
		return -e;
	buf[n] = 0;
	return 0;
}

static int write_file(const char *dir, const char *file, const char *val)
{
	char path[CGR_PATH_MAX + 64];
	snprintf(path, sizeof path, "%s/%s", dir, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, val, strlen(val));
	int e = errno;
	close(fd);
	return n < 0 ? -e : 0;
}

static int read_slurp(const char *path, char **out)
{
	size_t cap = 16384;
	char *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	size_t len = 0;
	for (;;) {
		if (len + 1 >= cap) {
			if (cap >= (1u << 22))
				break;
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = 0;
	*out = buf;
	return 0;
}

static bool detect(struct cgr_mounts *m)
{
	char *mi = NULL, *pc = NULL;
	bool ok = false;
	if (read_slurp("/proc/self/mountinfo", &mi) == 0 && read_slurp("/proc/self/cgroup", &pc) == 0) {
		cgr_parse_mountinfo(mi, m);
		cgr_parse_proc_cgroup(pc, m);
		ok = true;
	}
	free(mi);
	free(pc);
	return ok;
}

static void v2_setup(cgr *g, const char *dir, const struct cgr_limits *l)
{
	char buf[512];
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		log_debug("msg=\"cgroup v2 mkdir failed\" dir=%s err=%d", dir, errno);
		return;
	}
	snprintf(g->v2_dir, sizeof g->v2_dir, "%s", dir);
	if (read_file(strcat(strcpy(buf, dir), "/cgroup.controllers"), buf, sizeof buf) < 0)
		return;
	unsigned have = cgr_parse_controllers(buf);
	char v[64];
	if (have & (1u << CGR_MEMORY)) {
		snprintf(v, sizeof v, "%llu", (unsigned long long)l->memory_bytes);
		if (write_file(dir, "memory.max", v) == 0) {
			(void)write_file(dir, "memory.swap.max", "0");
			g->kind[CGR_MEMORY] = CGR_V2;
		}
	}
	if (have & (1u << CGR_PIDS)) {
		snprintf(v, sizeof v, "%u", l->pids);
		if (write_file(dir, "pids.max", v) == 0)
			g->kind[CGR_PIDS] = CGR_V2;
	}
	if ((have & (1u << CGR_CPU)) && l->cpu_millis) {
		snprintf(v, sizeof v, "%u 100000", l->cpu_millis * 100);
		if (write_file(dir, "cpu.max", v) == 0)
			g->kind[CGR_CPU] = CGR_V2;
	}
}

/* One v1 controller's session cgroup in base (a directory of that controller's hierarchy). */
static void v1_one(cgr *g, int c, const char *base, const char *name, const struct cgr_limits *l)
{
	char dir[CGR_PATH_MAX], v[64];
	if (g->kind[c] != CGR_NONE || (c == CGR_CPU && !l->cpu_millis))
		return;
	if ((size_t)snprintf(dir, sizeof dir, "%s/%s", base, name) >= sizeof dir)
		return;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		g->v1_err[c] = errno;
		return;
	}
	int rc;
	if (c == CGR_MEMORY) {
		snprintf(v, sizeof v, "%llu", (unsigned long long)l->memory_bytes);
		rc = write_file(dir, "memory.limit_in_bytes", v);
		if (rc == 0)
			(void)write_file(dir, "memory.memsw.limit_in_bytes", v);
	} else if (c == CGR_PIDS) {
		snprintf(v, sizeof v, "%u", l->pids);
		rc = write_file(dir, "pids.max", v);
	} else {
		snprintf(v, sizeof v, "%u", l->cpu_millis * 100);
		rc = write_file(dir, "cpu.cfs_period_us", "100000");
		if (rc == 0)
			rc = write_file(dir, "cpu.cfs_quota_us", v);
	}
	if (rc < 0) {
		g->v1_err[c] = -rc;
		rmdir(dir);
		return;
	}
	snprintf(g->v1_dir[c], sizeof g->v1_dir[c], "%s", dir);
	g->kind[c] = CGR_V1;
}

/* Our own cgroup of each v1 controller: usable where it is writable (root, or a directory delegated to
 * us with chown, as cgcreate -a/-t does). v1 has no rule against children of a cgroup holding processes. */
static void v1_setup(cgr *g, const struct cgr_mounts *m, const char *name, const struct cgr_limits *l)
{
	for (int c = 0; c < CGR_NCTRL; c++) {
		char base[CGR_PATH_MAX];
		if (!m->v1_mount[c][0])
			continue;
		const char *p = m->v1_path[c][0] ? m->v1_path[c] : "/";
		if ((size_t)snprintf(base, sizeof base, "%s%s", m->v1_mount[c], strcmp(p, "/") ? p : "") < sizeof base)
			v1_one(g, c, base, name, l);
	}
}

/* Empty cgroups of sessions whose host process died without cleaning up (SIGKILL, crash): removed by
 * the next process that creates one in the same place. A live pid, even a reused one, keeps its dirs. */
static void sweep_stale(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));) {
		int pid = 0;
		if (sscanf(e->d_name, "postern-%d-", &pid) != 1 || pid <= 0 || pid == (int)getpid())
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		char path[CGR_PATH_MAX + 300];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (rmdir(path) == 0)
			log_info("msg=\"removed stale sandbox cgroup\" dir=%s", path);
	}
	closedir(d);
}

/* Walks a ':'-separated list of directories (a cgroup parent A:B): copies the next one that is neither
 * empty nor too long for dir into dir and returns where the rest starts; NULL when none is left. */
static const char *next_dir(const char *p, char *dir, size_t dirlen)
{
	while (p && *p) {
		const char *e = strchr(p, ':');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		const char *rest = e ? e + 1 : "";
		if (n && n < dirlen) {
			memcpy(dir, p, n);
			dir[n] = 0;
			return rest;
		}
		p = rest;
	}
	return NULL;
}

static void sweep_all(const struct cgr_mounts *m, const char *parent, const char *own_v2)
{
	char dir[CGR_PATH_MAX * 2];
	for (const char *p = parent; (p = next_dir(p, dir, sizeof dir));)
		sweep_stale(dir);
	if (own_v2 && *own_v2)
		sweep_stale(own_v2);
	for (int c = 0; c < CGR_NCTRL; c++)
		if (m->v1_mount[c][0]) {
			const char *p = m->v1_path[c][0] ? m->v1_path[c] : "/";
			snprintf(dir, sizeof dir, "%s%s", m->v1_mount[c], strcmp(p, "/") ? p : "");
			sweep_stale(dir);
		}
}

static atomic_flag swept = ATOMIC_FLAG_INIT;

#define LEAF "postern-leaf"

static unsigned wanted(const struct cgr_limits *l)
{
	return 1u << CGR_MEMORY | 1u << CGR_PIDS | (l->cpu_millis ? 1u << CGR_CPU : 0);
}

/* A v2 directory is delegated to us when we may create children in it and move our processes there:
 * owned by our euid (systemd's Delegate= for a user manager, or a chown by the administrator), or, for
 * root, marked delegated by systemd (the trusted.delegate / user.delegate xattr). */
static bool v2_delegated(const char *dir)
{
	char path[CGR_PATH_MAX + 32], v[8];
	struct stat st;
	if (stat(dir, &st) < 0)
		return false;
	if (geteuid() != 0) {
		snprintf(path, sizeof path, "%s/cgroup.procs", dir);
		if (st.st_uid != geteuid() || access(path, W_OK) < 0)
			return false;
		snprintf(path, sizeof path, "%s/cgroup.subtree_control", dir);
		return access(path, W_OK) == 0;
	}
	return (getxattr(dir, "trusted.delegate", v, sizeof v) == 1 && v[0] == '1') ||
	       (getxattr(dir, "user.delegate", v, sizeof v) == 1 && v[0] == '1');
}

/* Makes the delegated v2 directory dir a parent for session cgroups: its controllers enabled for
 * children. A cgroup holding processes (ours, the gateway's that started us) cannot do that ("no
 * internal processes"), so, as systemd's delegation document asks of a delegated subtree, its processes
 * move into a leaf child first. 0, or -errno with the reason in why. */
static int v2_make_parent(const char *dir, unsigned want, char *why, size_t whylen)
{
	static char procs[65536];
	char buf[512], path[CGR_PATH_MAX + 32], leaf[CGR_PATH_MAX + 32], v[64];
	int rc;
	snprintf(path, sizeof path, "%s/cgroup.controllers", dir);
	if ((rc = read_file(path, buf, sizeof buf)) < 0) {
		snprintf(why, whylen, "%.400s: %s", path, strerror(-rc));
		return rc;
	}
	unsigned have = cgr_parse_controllers(buf) & want;
	if (!(have & (1u << CGR_MEMORY | 1u << CGR_PIDS))) {
		snprintf(why, whylen, "cgroup v2 %.400s offers no memory or pids controller", dir);
		return -EOPNOTSUPP;
	}
	snprintf(path, sizeof path, "%s/cgroup.subtree_control", dir);
	if ((rc = read_file(path, buf, sizeof buf)) < 0) {
		snprintf(why, whylen, "%.400s: %s", path, strerror(-rc));
		return rc;
	}
	unsigned todo = have & ~cgr_parse_controllers(buf);
	if (!todo)
		return 0;
	v[0] = 0;
	for (int c = 0; c < CGR_NCTRL; c++)
		if (todo & (1u << c))
			snprintf(v + strlen(v), sizeof v - strlen(v), "%s+%s", v[0] ? " " : "", ctrl_names[c]);
	snprintf(leaf, sizeof leaf, "%s/" LEAF, dir);
	if (mkdir(leaf, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		snprintf(why, whylen, "mkdir %.400s: %s", leaf, strerror(errno));
		return rc;
	}
	/* Processes forked meanwhile land in dir again: a few rounds. */
	for (int round = 0; round < 4; round++) {
		snprintf(path, sizeof path, "%s/cgroup.procs", dir);
		if (read_file(path, procs, sizeof procs) == 0)
			for (char *save = NULL, *t = strtok_r(procs, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
				(void)write_file(leaf, "cgroup.procs", t);
		if ((rc = write_file(dir, "cgroup.subtree_control", v)) == 0)
			return 0;
		if (rc != -EBUSY)
			break;
	}
	snprintf(why, whylen, "enable %s in %.400s: %s", v, dir, strerror(-rc));
	return rc;
}

/* Session cgroups under one configured parent directory: a v2 directory (every controller it offers) or
 * a v1 controller's directory (that controller). */
static void parent_setup(cgr *g, const struct cgr_mounts *m, const char *dir, const char *name,
			 const struct cgr_limits *l)
{
	struct statfs sf;
	char sub[CGR_PATH_MAX];
	if (statfs(dir, &sf) < 0) {
		snprintf(g->why, sizeof g->why, "cgroup parent %.400s: %s", dir, strerror(errno));
		return;
	}
	if (sf.f_type == CGROUP2_SUPER_MAGIC) {
		if (g->v2_dir[0])
			return;
		/* Without controllers the directory still holds the session (cgroup.kill); why says so. */
		(void)v2_make_parent(dir, wanted(l), g->why, sizeof g->why);
		if ((size_t)snprintf(sub, sizeof sub, "%s/%s", dir, name) < sizeof sub)
			v2_setup(g, sub, l);
		return;
	}
	if (sf.f_type == CGROUP_SUPER_MAGIC) {
		for (int c = 0; c < CGR_NCTRL; c++) {
			size_t ml = strlen(m->v1_mount[c]);
			if (ml && !strncmp(dir, m->v1_mount[c], ml) && (dir[ml] == '/' || !dir[ml]))
				v1_one(g, c, dir, name, l);
		}
		return;
	}
	snprintf(g->why, sizeof g->why, "cgroup parent %.400s: not a cgroup directory", dir);
}

cgr *cgr_new(const char *parent, const char *name, const struct cgr_limits *l, bool disable)
{
	cgr *g = calloc(1, sizeof *g);
	struct cgr_mounts m;
	char dir[CGR_PATH_MAX], own[CGR_PATH_MAX] = "";
	if (!g)
		return NULL;
	if (disable) {
		snprintf(g->why, sizeof g->why, "cgroups disabled (--no-cgroup)");
		return g;
	}
	if (!detect(&m)) {
		snprintf(g->why, sizeof g->why, "cannot read /proc/self/mountinfo or /proc/self/cgroup");
		return g;
	}
	if (m.v2_mount[0] && strcmp(m.v2_path, "/")) {
		/* Our own v2 cgroup; a previous session of this process may have moved us into its leaf. */
		if ((size_t)snprintf(own, sizeof own, "%s%s", m.v2_mount, m.v2_path) >= sizeof own)
			own[0] = 0;
		size_t ol = strlen(own);
		if (ol > sizeof LEAF && !strcmp(own + ol - sizeof LEAF, "/" LEAF))
			own[ol - sizeof LEAF] = 0;
	}
	bool own_ok = !(parent && *parent) && own[0] && v2_delegated(own);
	if (!atomic_flag_test_and_set(&swept))
		sweep_all(&m, parent, own_ok ? own : NULL);
	if (parent && *parent) {
		for (const char *p = parent; (p = next_dir(p, dir, sizeof dir));)
			parent_setup(g, &m, dir, name, l);
	} else if (own_ok) {
		if (v2_make_parent(own, wanted(l), g->why, sizeof g->why) == 0 &&
		    (size_t)snprintf(dir, sizeof dir, "%s/%s", own, name) < sizeof dir)
			v2_setup(g, dir, l);
	} else if (m.v2_mount[0] && !strcmp(m.v2_path, "/")) {
		/* Only when the root hands controllers down: a bare v2 directory adds nothing (killing the
		 * sandbox's pid 1 already ends every process) and costs a mkdir, a move and an rmdir. */
		char sc[512], path[CGR_PATH_MAX + 32];
		snprintf(path, sizeof path, "%s/cgroup.subtree_control", m.v2_mount);
		if (read_file(path, sc, sizeof sc) == 0 && cgr_parse_controllers(sc) &&
		    (size_t)snprintf(dir, sizeof dir, "%s/%s", m.v2_mount, name) < sizeof dir)
			v2_setup(g, dir, l);
		else
			snprintf(g->why, sizeof g->why, "the cgroup v2 root enables no memory or pids controller");
	} else if (m.v2_mount[0]) {
		snprintf(g->why, sizeof g->why, "own cgroup v2 %.400s is not delegated to this user", own);
	} else {
		snprintf(g->why, sizeof g->why, "no cgroup v2 mount");
	}
	/* A v2 directory that got no controller is still useful for cgroup.kill, but v1 may do better. */
	v1_setup(g, &m, name, l);
	return g;
}

const char *cgr_why(const cgr *g, enum cgr_ctrl c, char *buf, size_t len)
{
	if (!g || c >= CGR_NCTRL || g->kind[c] != CGR_NONE)
		return "";
	if (g->v1_err[c])
		snprintf(buf, len, "%s; cgroup v1 %s: %s", g->why, ctrl_names[c], strerror(g->v1_err[c]));
	else
		snprintf(buf, len, "%s; no usable cgroup v1 %s", g->why, ctrl_names[c]);
	return buf;
}

enum cgr_kind cgr_kind_of(const cgr *g, enum cgr_ctrl c)
{
	return g && c < CGR_NCTRL ? g->kind[c] : CGR_NONE;
}

int cgr_attach(cgr *g, pid_t pid)
{
	char v[32];
	int rc = 0;
	snprintf(v, sizeof v, "%d", (int)pid);
	if (g->v2_dir[0]) {
		int r = write_file(g->v2_dir, "cgroup.procs", v);
		if (r < 0) {
			/* Unusable (e.g. not delegated to us): forget it and its limits. */
			snprintf(g->why, sizeof g->why, "move into %.400s: %s", g->v2_dir, strerror(-r));
			for (int c = 0; c < CGR_NCTRL; c++)
				if (g->kind[c] == CGR_V2)
					g->kind[c] = CGR_NONE, rc = r;
			rmdir(g->v2_dir);
			g->v2_dir[0] = 0;
		}
	}
	return rc;
}

static void v1_unusable(cgr *g, int c, int err)
{
	g->v1_err[c] = err;
	g->kind[c] = CGR_NONE;
}

int cgr_join_fds(cgr *g, int fds[CGR_NCTRL], unsigned *ctrls)
{
	char path[CGR_PATH_MAX + 16];
	int n = 0;
	*ctrls = 0;
	for (int c = 0; c < CGR_NCTRL; c++) {
		if (!g->v1_dir[c][0] || g->kind[c] != CGR_V1)
			continue;
		snprintf(path, sizeof path, "%s/tasks", g->v1_dir[c]);
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0) {
			v1_unusable(g, c, errno);
			continue;
		}
		fds[n++] = fd;
		*ctrls |= 1u << c;
	}
	return n;
}

void cgr_join_failed(cgr *g, unsigned ctrls, int err)
{
	for (int c = 0; c < CGR_NCTRL; c++)
		if (ctrls & (1u << c) && g->kind[c] == CGR_V1)
			v1_unusable(g, c, err ? err : EIO);
}

void cgr_events(const cgr *g, uint64_t *oom_kills, uint64_t *pids_max_hits)
{
	char buf[2048], path[CGR_PATH_MAX + 32];
	*oom_kills = *pids_max_hits = 0;
	if (!g)
		return;
	if (g->kind[CGR_MEMORY] == CGR_V2) {
		snprintf(path, sizeof path, "%s/memory.events", g->v2_dir);
		if (read_file(path, buf, sizeof buf) == 0)
			*oom_kills = cgr_parse_keyed(buf, "oom_kill");
	} else if (g->kind[CGR_MEMORY] == CGR_V1) {
		snprintf(path, sizeof path, "%s/memory.oom_control", g->v1_dir[CGR_MEMORY]);
		if (read_file(path, buf, sizeof buf) == 0)
			*oom_kills = cgr_parse_keyed(buf, "oom_kill");
	}
	const char *pd = g->kind[CGR_PIDS] == CGR_V2 ? g->v2_dir : g->kind[CGR_PIDS] == CGR_V1 ? g->v1_dir[CGR_PIDS] : NULL;
	if (pd) {
		snprintf(path, sizeof path, "%s/pids.events", pd);
		if (read_file(path, buf, sizeof buf) == 0)
			*pids_max_hits = cgr_parse_keyed(buf, "max");
	}
}

static int kill_procs(const char *dir)
{
	char path[CGR_PATH_MAX + 32], buf[8192];
	snprintf(path, sizeof path, "%s/cgroup.procs", dir);
	if (read_file(path, buf, sizeof buf) < 0)
		return 0;
	int n = 0;
	for (char *save = NULL, *t = strtok_r(buf, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
		pid_t p = (pid_t)atoi(t);
		if (p > 0 && kill(p, SIGKILL) == 0)
			n++;
	}
	return n;
}

static void remove_dir(const char *dir, bool v2)
{
	if (!dir[0])
		return;
	if (v2)
		(void)write_file(dir, "cgroup.kill", "1");
	/* Processes take a moment to leave after SIGKILL: retry for up to ~2 s. */
	for (int i = 0; i < 200; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return;
		if (errno != EBUSY)
			break;
		kill_procs(dir);
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	log_warn("msg=\"cgroup not removed\" dir=%s err=%d", dir, errno);
}

void cgr_free(cgr *g)
{
	if (!g)
		return;
	remove_dir(g->v2_dir, true);
	for (int c = 0; c < CGR_NCTRL; c++)
		remove_dir(g->v1_dir[c], false);
	free(g);
}
