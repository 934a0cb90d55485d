/* Workspace doors (see ws_doors.h). */
#include "sandbox/engine/ws_doors.h"

#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"

#define GIT_BIT (1ull << 63)

const char *const ws_doors_default[] = {
	/* git: what runs code or decides where config comes from */
	".git/config", ".git/config.worktree", ".git/hooks/", ".git/commondir", ".git/info/", ".git/modules/",
	".git/worktrees/", ".git/objects/info/alternates",
	/* a stopped rebase's to-do list: `git rebase --continue` runs its exec lines */
	".git/rebase-merge/", ".git/sequencer/",
	/* with the workspace as $HOME: git's global config, and shells started there or sourcing from it
	 * (readline's key bindings can type and run a command) */
	".gitconfig", ".config/git/", ".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile",
	".zshrc", ".zshenv", ".zprofile", ".zlogin", ".zlogout", ".inputrc", ".kshrc", ".mkshrc", ".cshrc",
	".tcshrc", ".login", ".logout",
	/* what those source in turn (Debian's and Fedora's skeleton .bashrc, bash-completion), fish's own, and
	 * ssh's (ProxyCommand: git over ssh where the workspace is the home) */
	".bash_aliases", ".bash_completion", ".bashrc.d/", ".local/share/bash-completion/", ".config/fish/",
	".ssh/",
	/* where whole repositories from below the top go: read-only in later sessions (not restorable) */
	WS_DOORS_QDIR "/", NULL,
};

/* The parent directory of rel (beneath wsfd, no symlink on the way) and the last component. */
static int open_parent(int wsfd, const char *rel, char *base, size_t baselen)
{
	char dir[512];
	size_t l = strlen(rel);
	while (l && rel[l - 1] == '/')
		l--;
	if (!l || l >= sizeof dir)
		return -EINVAL;
	memcpy(dir, rel, l);
	dir[l] = 0;
	char *slash = strrchr(dir, '/');
	const char *b = slash ? slash + 1 : dir;
	if (strlen(b) >= baselen)
		return -ENAMETOOLONG;
	memcpy(base, b, strlen(b) + 1);
	if (!slash) {
		int fd = fcntl(wsfd, F_DUPFD_CLOEXEC, 0);
		return fd < 0 ? -errno : fd;
	}
	*slash = 0;
	struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
	long fd = syscall(SYS_openat2, wsfd, dir, &how, sizeof how);
	return fd < 0 ? -errno : (int)fd;
}

static bool exists(int wsfd, const char *rel)
{
	char base[256];
	struct stat st;
	int d = open_parent(wsfd, rel, base, sizeof base);
	if (d < 0)
		return false;
	bool e = fstatat(d, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
	close(d);
	return e;
}

uint64_t ws_doors_snapshot(int wsfd, const char *const *doors)
{
	uint64_t m = exists(wsfd, ".git") ? GIT_BIT : 0;
	for (int i = 0; doors && doors[i] && i < WS_DOORS_MAX; i++)
		if (exists(wsfd, doors[i]))
			m |= 1ull << i;
	return m;
}

/* The quarantine name of base, try n: "<base>.postern-quarantine-<n>"; base is cut so that the name stays a
 * valid one (255 bytes), since a session picks the names of what the sweep moves. Past the first 99 (which a
 * session can take beforehand) the suffix is random: no name it made can stand in the way. */
static void q_name(char *to, size_t tolen, const char *base, int n)
{
	char sfx[64];
	if (n < 100) {
		snprintf(sfx, sizeof sfx, ".postern-quarantine-%d", n);
	} else {
		uint64_t r = 0;
		if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			r = (uint64_t)ts.tv_nsec * 2654435761u ^ (uint64_t)getpid() << 32 ^ (uint64_t)n;
		}
		snprintf(sfx, sizeof sfx, ".postern-quarantine-%016llx", (unsigned long long)r);
	}
	int keep = (int)(NAME_MAX - strlen(sfx));
	snprintf(to, tolen, "%.*s%s", keep, base, sfx);
}

/* Renames base (in d, no link followed: the name is d's own) to its quarantine name; logs it as rel. */
static int move_in(int d, const char *base, const char *rel, const char *ws_name)
{
	char to[NAME_MAX + 1];
	int rc = -EEXIST;
	for (int n = 1; n < 100 + 8 && rc == -EEXIST; n++) {
		q_name(to, sizeof to, base, n);
		/* RENAME_NOREPLACE: never over anything. */
		rc = syscall(SYS_renameat2, d, base, d, to, 1 /* RENAME_NOREPLACE */) < 0 ? -errno : 0;
	}
	const char *slash = strrchr(rel, '/');
	int dirlen = 0;
	while (slash && slash > rel && slash[1] == 0) /* "x/" names a directory: its own slash is not the parent's */
		slash = memrchr(rel, '/', (size_t)(slash - rel));
	if (slash)
		dirlen = (int)(slash - rel) + 1;
	if (rc == 0)
		log_warn("msg=\"the session made a file that steers host tools; moved aside\" workspace=\"%s\" "
			 "path=\"%s\" now=\"%.*s%s\" hint=\"review it before renaming it back\"",
			 ws_name, rel, dirlen, rel, to);
	else
		log_error("msg=\"could not move aside a file the session made that steers host tools\" "
			  "workspace=\"%s\" path=\"%s\" err=\"%s\"", ws_name, rel, strerror(-rc));
	return rc;
}

static int move_aside(int wsfd, const char *rel, const char *ws_name)
{
	char base[256];
	int d = open_parent(wsfd, rel, base, sizeof base);
	if (d < 0)
		return d;
	int rc = move_in(d, base, rel, ws_name);
	close(d);
	return rc;
}

int ws_doors_quarantine(int wsfd, const char *const *doors, uint64_t before, const char *ws_name)
{
	int moved = 0;
	if (!(before & GIT_BIT) && exists(wsfd, ".git"))
		moved += move_aside(wsfd, ".git", ws_name) == 0;
	for (int i = 0; doors && doors[i] && i < WS_DOORS_MAX; i++)
		if (!(before & (1ull << i)) && strcmp(doors[i], WS_DOORS_QDIR "/") && exists(wsfd, doors[i]))
			moved += move_aside(wsfd, doors[i], ws_name) == 0;
	return moved;
}

static bool changed_since(const struct stat *st, const struct timespec *t0);
static bool tree_changed(int dfd, const char *name, const struct timespec *t0, int depth, long *budget);

/* A door beyond a symlink on its way (".config" -> "cfg", holding cfg/git/config): the host's tools follow
 * it, the checks above do not. A link the session made is moved aside; beyond an older one, the door it
 * reaches inside the workspace (resolved beneath it, no magic link) is moved aside when it changed. */
static int door_link(int wsfd, const char *door, const struct timespec *t0, const char *ws_name)
{
	char path[512];
	size_t l = strlen(door);
	while (l && door[l - 1] == '/')
		l--;
	if (!l || l >= sizeof path)
		return 0;
	memcpy(path, door, l);
	path[l] = 0;
	int d = fcntl(wsfd, F_DUPFD_CLOEXEC, 0), moved = 0;
	for (char *c = path, *slash; d >= 0 && (slash = strchr(c, '/'));) {
		struct stat st;
		*slash = 0;
		if (fstatat(d, c, &st, AT_SYMLINK_NOFOLLOW) < 0)
			break; /* nothing there: no door beyond */
		if (S_ISLNK(st.st_mode)) {
			if (changed_since(&st, t0)) {
				moved = move_in(d, c, path, ws_name) == 0;
				break;
			}
			*slash = '/';
			struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
						.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
			char *last = strrchr(path, '/');
			*last = 0;
			long pd = syscall(SYS_openat2, wsfd, path, &how, sizeof how);
			*last = '/';
			long budget = 4096;
			if (pd >= 0 && tree_changed((int)pd, last + 1, t0, 0, &budget))
				moved = move_in((int)pd, last + 1, door, ws_name) == 0;
			if (pd >= 0)
				close((int)pd);
			break;
		}
		int n = S_ISDIR(st.st_mode) ? openat(d, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
		close(d);
		d = n;
		*slash = '/';
		c = slash + 1;
	}
	if (d >= 0)
		close(d);
	return moved;
}

int ws_doors_end(int wsfd, const char *const *doors, uint64_t before, const struct timespec *t0,
		 const char *ws_name)
{
	int moved = 0;
	/* Links on the way to a door first: what they hide is then looked at where the host's tools find it. */
	for (int i = 0; doors && doors[i] && i < WS_DOORS_MAX; i++)
		if (!(before & (1ull << i)) && strchr(doors[i], '/') && strcmp(doors[i], WS_DOORS_QDIR "/"))
			moved += door_link(wsfd, doors[i], t0, ws_name);
	/* A quarantine directory that was not there is the session's: aside first, the sweep makes ours. */
	for (int i = 0; doors && doors[i] && i < WS_DOORS_MAX; i++)
		if (!strcmp(doors[i], WS_DOORS_QDIR "/") && !(before & (1ull << i)) && exists(wsfd, WS_DOORS_QDIR))
			moved += move_aside(wsfd, WS_DOORS_QDIR, ws_name) == 0;
	/* The sweep before the top's moves: it must not look into a `.git` moved aside at the top. */
	moved += ws_doors_sweep(wsfd, doors, t0, ws_name);
	return moved + ws_doors_quarantine(wsfd, doors, before, ws_name);
}

/* ---- the sweep below the top ------------------------------------------------------------------------- */

struct sweep {
	const char *const *doors;
	struct timespec t0;
	const char *ws_name;
	long entries;
	int moved;
	const char *cut; /* why the sweep stopped early, NULL while it has not */
	int wsfd, qfd;   /* the workspace; WS_DOORS_QDIR once made (-1 before) */
	char rel[4096];  /* the directory being swept, relative to the workspace ("" at the top) */
};

/* Changed since t0: its inode change time, set by the kernel on every change (write, chmod, rename, link)
 * and which no process can set back. On a filesystem of whole seconds the same second counts as changed. */
static bool changed_since(const struct stat *st, const struct timespec *t0)
{
	if (st->st_ctim.tv_sec != t0->tv_sec)
		return st->st_ctim.tv_sec > t0->tv_sec;
	return st->st_ctim.tv_nsec == 0 || st->st_ctim.tv_nsec >= t0->tv_nsec;
}

static bool is_dot(const char *n)
{
	return n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2]));
}

/* name (in dfd) or anything beneath it changed since t0; what cannot be looked at counts as changed. */
static bool tree_changed(int dfd, const char *name, const struct timespec *t0, int depth, long *budget)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno != ENOENT;
	if (changed_since(&st, t0))
		return true;
	if (!S_ISDIR(st.st_mode))
		return false;
	int fd = depth < 8 && --*budget >= 0 ? openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	bool ch = !d;
	if (!d && fd >= 0)
		close(fd);
	for (struct dirent *e; !ch && d && (e = readdir(d));)
		if (!is_dot(e->d_name))
			ch = --*budget < 0 || tree_changed(dirfd(d), e->d_name, t0, depth + 1, budget);
	if (d)
		closedir(d);
	return ch;
}

/* rel + "/" + name into sw->rel; the new length, or 0 when it does not fit. */
static size_t rel_push(struct sweep *sw, size_t rl, const char *name)
{
	int n = snprintf(sw->rel + rl, sizeof sw->rel - rl, "%s%s", rl ? "/" : "", name);
	if (n < 0 || (size_t)n >= sizeof sw->rel - rl) {
		sw->rel[rl] = 0;
		return 0;
	}
	return rl + (size_t)n;
}

static void sweep_move(struct sweep *sw, int dfd, size_t rl, const char *name)
{
	if (!rel_push(sw, rl, name)) {
		sw->cut = "path too long";
		return;
	}
	sw->moved += move_in(dfd, name, sw->rel, sw->ws_name) == 0;
	sw->rel[rl] = 0;
}

/* A whole repository from below the top (what = ".git"), or a directory beyond the sweep's depth or path
 * caps, goes to WS_DOORS_QDIR, as "sub%.git-<n>": there it is read-only in later sessions, which therefore
 * cannot rename it back (in place, it would look older than their start). Where that fails (another
 * filesystem, a directory we may not move), it is moved aside in place. */
static void sweep_move_q(struct sweep *sw, int dfd, size_t rl, const char *what)
{
	char name[256], to[300], rel[sizeof sw->rel + NAME_MAX + 2];
	int rc = -EEXIST;
	snprintf(rel, sizeof rel, "%.*s%s%s", (int)rl, sw->rel, rl ? "/" : "", what);
	size_t l = strlen(rel), off = l > 200 ? l - 200 : 0; /* the tail names it best */
	snprintf(name, sizeof name, "%s", rel + off);
	for (char *c = name; *c; c++)
		if (*c == '/')
			*c = '%';
	if (sw->qfd < 0) {
		if (mkdirat(sw->wsfd, WS_DOORS_QDIR, 0700) < 0 && errno != EEXIST)
			log_warn("msg=\"could not make the quarantine directory\" workspace=\"%s\" err=\"%s\"", sw->ws_name,
				 strerror(errno));
		sw->qfd = openat(sw->wsfd, WS_DOORS_QDIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	for (int n = 1; sw->qfd >= 0 && n < 100 && rc == -EEXIST; n++) {
		snprintf(to, sizeof to, "%s-%d", name, n);
		rc = syscall(SYS_renameat2, dfd, what, sw->qfd, to, 1 /* RENAME_NOREPLACE */) < 0 ? -errno : 0;
	}
	if (rc == 0) {
		sw->moved++;
		log_warn("msg=\"the session made a file that steers host tools; moved aside\" workspace=\"%s\" "
			 "path=\"%s\" now=\"" WS_DOORS_QDIR "/%s\" hint=\"review it before moving it back\"", sw->ws_name,
			 rel, to);
		return;
	}
	sweep_move(sw, dfd, rl, what);
}

/* The doors of an older git directory gfd (sw->rel names it): each one changed since t0 is moved aside. */
static void sweep_doors(struct sweep *sw, int gfd, size_t rl)
{
	for (int i = 0; sw->doors && sw->doors[i] && i < WS_DOORS_MAX; i++) {
		if (strncmp(sw->doors[i], ".git/", 5))
			continue;
		char base[256];
		long budget = 4096;
		int d = open_parent(gfd, sw->doors[i] + 5, base, sizeof base);
		if (d < 0)
			continue; /* no such parent (or a link on the way, which git would not follow either) */
		if (tree_changed(d, base, &sw->t0, 0, &budget)) {
			char rel[sizeof sw->rel + 64];
			snprintf(rel, sizeof rel, "%.*s%s%s", (int)rl, sw->rel, rl ? "/" : "", sw->doors[i] + 5);
			sw->moved += move_in(d, base, rel, sw->ws_name) == 0;
		}
		close(d);
	}
}

/* HEAD that git would take for one: a symlink, or "ref:" or a hexadecimal object name. */
static bool head_like(int dfd)
{
	char b[80];
	struct stat st;
	if (fstatat(dfd, "HEAD", &st, AT_SYMLINK_NOFOLLOW) < 0)
		return false;
	if (S_ISLNK(st.st_mode))
		return true;
	int fd = S_ISREG(st.st_mode) ? openat(dfd, "HEAD", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) : -1;
	ssize_t n = fd >= 0 ? read(fd, b, sizeof b - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n < 4)
		return false;
	b[n] = 0;
	size_t hex = strspn(b, "0123456789abcdef");
	return !strncmp(b, "ref:", 4) || hex >= 40;
}

/* A `.git` the session made. A directory's change time moves with the session's own git work in it (lock
 * files, index): its birth time, which nothing can set, says when it was made; where the filesystem keeps
 * none, the change time stands in (an older repository the session worked in is then moved aside too). A
 * `.git` file or link: its change time (made, or renamed here). */
static bool git_new(int dfd, const struct stat *st, const struct timespec *t0)
{
	struct statx sx;
	if (S_ISDIR(st->st_mode) && statx(dfd, ".git", AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx) == 0 &&
	    (sx.stx_mask & STATX_BTIME)) {
		struct stat b = { 0 };
		b.st_ctim.tv_sec = sx.stx_btime.tv_sec;
		b.st_ctim.tv_nsec = sx.stx_btime.tv_nsec;
		return changed_since(&b, t0);
	}
	return changed_since(st, t0);
}

#define H_GIT 1u
#define H_HEAD 2u
#define H_OBJ 4u
#define H_REFS 8u
#define H_COMMON 16u

/* Returns true when dfd is an older git directory (not to be looked into). */
static bool sweep_repo_here(struct sweep *sw, int dfd, size_t rl, int depth, unsigned has)
{
	struct stat st;
	if ((has & H_GIT) && depth > 0 && fstatat(dfd, ".git", &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (git_new(dfd, &st, &sw->t0)) {
			sweep_move_q(sw, dfd, rl, ".git"); /* made, or moved here: a repository of the session's */
		} else if (S_ISDIR(st.st_mode)) {
			int g = openat(dfd, ".git", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			size_t l = g >= 0 ? rel_push(sw, rl, ".git") : 0;
			if (l)
				sweep_doors(sw, g, l);
			sw->rel[rl] = 0;
			if (g >= 0)
				close(g);
		}
	}
	/* git takes a directory with HEAD and objects and refs (or commondir) for a bare repository. */
	if (!(has & H_HEAD) || !((has & H_OBJ && has & H_REFS) || has & H_COMMON) || !head_like(dfd))
		return false;
	struct stat hs, os, rs;
	bool head_new = fstatat(dfd, "HEAD", &hs, AT_SYMLINK_NOFOLLOW) == 0 && changed_since(&hs, &sw->t0);
	bool shape_new = fstatat(dfd, "objects", &os, AT_SYMLINK_NOFOLLOW) == 0 && changed_since(&os, &sw->t0) &&
			 fstatat(dfd, "refs", &rs, AT_SYMLINK_NOFOLLOW) == 0 && changed_since(&rs, &sw->t0);
	if (head_new || shape_new) {
		sweep_move(sw, dfd, rl, "HEAD"); /* without HEAD git does not take it for a repository */
		return false;
	}
	sweep_doors(sw, dfd, rl);
	return true;
}

static void sweep_dir(struct sweep *sw, int fd, size_t rl, int depth)
{
	DIR *d = fdopendir(fd);
	char *subs = NULL;
	size_t slen = 0, scap = 0;
	unsigned has = 0;
	if (!d) {
		close(fd);
		sw->cut = "out of memory";
		return;
	}
	for (struct dirent *e; (e = readdir(d));) {
		const char *n = e->d_name;
		if (is_dot(n))
			continue;
		if (++sw->entries > WS_DOORS_SWEEP_MAX_ENTRIES) {
			sw->cut = "entry cap";
			break;
		}
		if (!depth && !strcmp(n, WS_DOORS_QDIR))
			continue; /* ours (read-only to the session when it was there; made just now if not) */
		if (!strcmp(n, ".git")) {
			has |= H_GIT; /* never looked into: its doors are checked by name */
			continue;
		}
		has |= !strcmp(n, "HEAD") ? H_HEAD : !strcmp(n, "objects") ? H_OBJ : !strcmp(n, "refs") ? H_REFS
		     : !strcmp(n, "commondir") ? H_COMMON : 0;
		struct stat st;
		if (e->d_type != DT_DIR && (e->d_type != DT_UNKNOWN || fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
					    !S_ISDIR(st.st_mode)))
			continue;
		size_t l = strlen(n) + 1;
		if (slen + l > scap) {
			size_t nc = scap ? scap * 2 : 4096;
			char *t = nc >= slen + l ? realloc(subs, nc) : NULL;
			if (!t) {
				sw->cut = "out of memory";
				break;
			}
			subs = t, scap = nc;
		}
		memcpy(subs + slen, n, l);
		slen += l;
	}
	int dfd = dirfd(d);
	bool gitdir = sweep_repo_here(sw, dfd, rl, depth, has);
	for (size_t o = 0; !gitdir && o < slen; o += strlen(subs + o) + 1) {
		const char *n = subs + o;
		size_t l = rel_push(sw, rl, n);
		if (!l || depth + 1 > WS_DOORS_SWEEP_MAX_DEPTH) {
			sw->cut = l ? "depth cap" : "path too long";
			sw->rel[rl] = 0;
			/* Unchecked, it could hold a repository a person reaches through a link: not left in place. */
			sweep_move_q(sw, dfd, rl, n);
			continue;
		}
		/* Readable but not searchable (0444), .git inside cannot be looked at: as unreadable. */
		int c = faccessat(dfd, n, R_OK | X_OK, AT_EACCESS | AT_SYMLINK_NOFOLLOW) == 0
				? openat(dfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
				: -1;
		if (c >= 0) {
			sweep_dir(sw, c, l, depth + 1);
		} else if (errno == EACCES || errno == EPERM) {
			/* A directory we cannot read could hide a repository: moved aside whole (fail closed). */
			log_warn("msg=\"a directory the sweep cannot read is moved aside whole\" workspace=\"%s\" path=\"%s\"",
				 sw->ws_name, sw->rel);
			sw->rel[rl] = 0;
			sweep_move(sw, dfd, rl, n);
		}
		sw->rel[rl] = 0;
	}
	free(subs);
	closedir(d);
}

int ws_doors_sweep(int wsfd, const char *const *doors, const struct timespec *t0, const char *ws_name)
{
	struct sweep *sw = calloc(1, sizeof *sw);
	int fd = openat(wsfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), moved;
	if (!sw || fd < 0) {
		log_error("msg=\"the sweep for repositories the session made could not start: review the workspace "
			  "before running git there\" workspace=\"%s\" err=\"%s\"", ws_name,
			  strerror(sw ? errno : ENOMEM));
		if (fd >= 0)
			close(fd);
		free(sw);
		return -ENOMEM;
	}
	sw->doors = doors, sw->t0 = *t0, sw->ws_name = ws_name, sw->wsfd = wsfd, sw->qfd = -1;
	sweep_dir(sw, fd, 0, 0);
	if (sw->qfd >= 0)
		close(sw->qfd);
	if (sw->cut)
		log_warn("msg=\"the sweep for repositories the session made stopped early: what it found is moved "
			 "aside, the rest is unchecked; review the workspace before running git there\" "
			 "workspace=\"%s\" reason=\"%s\" entries=%ld", ws_name, sw->cut, sw->entries);
	moved = sw->moved;
	free(sw);
	return moved;
}

/* ---- the door-keeper ---------------------------------------------------------------------------------- */

static int put_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), rc = 0;
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		rc = -errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Unprivileged, the keeper is the owner of what the session wrote, and the session can take the owner's
 * rights away (chmod 0 of the top, 0555 over a new .git, 0444 over a directory holding one). In a user
 * namespace of its own that maps just its ids to 0, root's override of the permission bits holds for
 * exactly the inodes with those ids, as a rootless runtime deletes what its containers left: the keeper
 * then sees and moves all the session made, and nothing more (no host mount or id is gained). */
static int keeper_own_ns(void)
{
	char m[64];
	uid_t u = geteuid();
	gid_t g = getegid();
	int rc = 0;
	if (unshare(CLONE_NEWUSER) < 0)
		return -errno;
	snprintf(m, sizeof m, "0 %u 1", (unsigned)u);
	if ((rc = put_file("/proc/self/uid_map", m)) < 0 || (rc = put_file("/proc/self/setgroups", "deny")) < 0)
		return rc;
	snprintf(m, sizeof m, "0 %u 1", (unsigned)g);
	return put_file("/proc/self/gid_map", m);
}

/* Only what the moves need: root keeps reading, searching and renaming in any directory of the workspace
 * (the session may leave one it made unreadable); nothing else (no CAP_SYS_ADMIN, no setuid, no kill). */
static int keeper_drop_rights(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof d);
	if (geteuid() == 0)
		d[0].effective = d[0].permitted = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH) | (1u << CAP_FOWNER);
	if (syscall(SYS_capset, &h, d) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return -errno;
	return 0;
}

/* The session can take the workspace's own rights away from its owner (chmod 0 /workspace): an unprivileged
 * keeper could then neither look nor move. What the top had at the start is put back (it is the workspace,
 * not a host file); the keeper is forked before any command runs, so `start` is the host's. */
static void top_restore(int wsfd, const struct stat *start, const char *ws_name)
{
	struct stat now;
	char self[32];
	if (!start || fstat(wsfd, &now) < 0 || (now.st_mode & 07777) == (start->st_mode & 07777) ||
	    faccessat(wsfd, ".", R_OK | W_OK | X_OK, AT_EACCESS) == 0)
		return;
	snprintf(self, sizeof self, "/proc/self/fd/%d", wsfd);
	int rc = chmod(self, start->st_mode & 07777) < 0 ? -errno : 0;
	log_emit(rc ? LOG_ERROR : LOG_WARN,
		 "msg=\"the session took the workspace's own permissions away; %s\" workspace=\"%s\" mode=%04o "
		 "start=%04o err=\"%s\"", rc ? "could not put them back: review the workspace before running git there"
					  : "put back as they were at the start",
		 ws_name, (unsigned)(now.st_mode & 07777), (unsigned)(start->st_mode & 07777), rc ? strerror(-rc) : "");
}

/* In the forked child: fds 3 workspace, 4 the init's pidfd, 5 the pipe; nothing else of the host's. */
static _Noreturn void keeper_main(const struct ws_doors_end *e, int rfd)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	for (int s = 1; s < NSIG; s++)
		(void)sigaction(s, &sa, NULL);
	/* Not stopped by what reaches the host's terminal or process group: the pipe says when to act. */
	sa.sa_handler = SIG_IGN;
	static const int ign[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2 };
	for (size_t i = 0; i < sizeof ign / sizeof ign[0]; i++)
		(void)sigaction(ign[i], &sa, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	(void)setsid();
	(void)prctl(PR_SET_NAME, "postern-doors", 0, 0, 0);
	int a = fcntl(e->wsfd, F_DUPFD_CLOEXEC, 10), b = fcntl(e->init_pidfd, F_DUPFD_CLOEXEC, 10),
	    c = fcntl(rfd, F_DUPFD_CLOEXEC, 10), null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (a < 0 || b < 0 || c < 0 || null < 0 || dup3(a, 3, O_CLOEXEC) < 0 || dup3(b, 4, O_CLOEXEC) < 0 ||
	    dup3(c, 5, O_CLOEXEC) < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0)
		_exit(111);
	syscall(SYS_close_range, 6, ~0u, 0);
	struct stat top;
	bool have_top = fstat(3, &top) == 0;
	int rc = geteuid() != 0 ? keeper_own_ns() : 0;
	if (rc < 0)
		log_warn("msg=\"door-keeper: no user namespace of its own; what the session made unreadable to its "
			 "owner may stay unchecked\" err=\"%s\"", strerror(-rc));
	rc = keeper_drop_rights();
	if (rc < 0)
		log_error("msg=\"door-keeper: could not drop its rights\" err=\"%s\"", strerror(-rc));
	/* The host never writes: end of file is sbx_free closing it, or the host dying. */
	for (;;) {
		struct pollfd p = { 5, POLLIN, 0 };
		char ch;
		int r = poll(&p, 1, 3600 * 1000);
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0 && read(5, &ch, 1) <= 0)
			break;
	}
	alarm(WS_DOORS_KEEPER_MAX_S); /* the end is bounded: SIGALRM ends the keeper */
	/* The init's exit means its pid namespace, so every process of the session, is gone (the kernel kills
	 * and reaps them first); it has PDEATHSIG, so it goes when a killed host goes. */
	struct pollfd p = { 4, POLLIN, 0 };
	int r;
	while ((r = poll(&p, 1, 10000)) < 0 && errno == EINTR)
		;
	if (r <= 0)
		log_error("msg=\"door-keeper: the session's processes are not gone after 10 s; moving its doors anyway\" "
			  "workspace=\"%s\"", e->ws_name);
	top_restore(3, have_top ? &top : NULL, e->ws_name);
	ws_doors_end(3, e->doors, e->before, &e->t0, e->ws_name);
	_exit(0);
}

int ws_doors_keeper_start(ws_doors_keeper *k, const struct ws_doors_end *e, char *err, size_t errlen)
{
	int p[2], rc = 0;
	k->pid = 0;
	k->pidfd = k->pipe_w = -1;
	if (pipe2(p, O_CLOEXEC) < 0) {
		rc = -errno;
		snprintf(err, errlen, "door-keeper pipe: %s", strerror(-rc));
		return rc;
	}
	/* No host signal handler may run in the child before it resets the dispositions. fork(), not a raw
	 * clone: glibc resets its locks (malloc) for the child of a threaded process. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[1]);
		keeper_main(e, p[0]);
	}
	if (pid < 0)
		rc = -errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(p[0]);
	int pidfd = pid > 0 ? pidfd_open(pid, 0) : -1;
	if (pid > 0 && pidfd < 0) { /* our own unreaped child: cannot be another process */
		rc = -errno;
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (rc < 0) {
		close(p[1]);
		snprintf(err, errlen, "door-keeper: %s", strerror(-rc));
		return rc;
	}
	k->pid = pid, k->pidfd = pidfd, k->pipe_w = p[1];
	return 0;
}

int ws_doors_keeper_finish(ws_doors_keeper *k, const char *ws_name)
{
	int rc = 0;
	if (k->pid <= 0)
		return 0;
	close(k->pipe_w);
	struct pollfd p = { k->pidfd, POLLIN, 0 };
	int r;
	while ((r = poll(&p, 1, (WS_DOORS_KEEPER_MAX_S + 10) * 1000)) < 0 && errno == EINTR)
		;
	if (r == 0) {
		log_error("msg=\"door-keeper did not finish; killed: review the workspace before running git there\" "
			  "workspace=\"%s\"", ws_name);
		(void)pidfd_send_signal(k->pidfd, SIGKILL, NULL, 0);
		rc = -ETIMEDOUT;
	}
	siginfo_t si = { 0 };
	int w;
	while ((w = waitid(P_PIDFD, (id_t)k->pidfd, &si, WEXITED)) < 0 && errno == EINTR)
		;
	if (rc == 0 && w == 0 && (si.si_code != CLD_EXITED || si.si_status != 0)) {
		log_error("msg=\"door-keeper ended abnormally\" workspace=\"%s\" code=%d status=%d", ws_name,
			  si.si_code, si.si_status);
		rc = -ECHILD;
	}
	close(k->pidfd);
	k->pid = 0;
	k->pidfd = k->pipe_w = -1;
	return rc;
}
