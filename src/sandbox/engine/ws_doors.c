/* Workspace doors (see ws_doors.h). */
#include "sandbox/engine/ws_doors.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/log.h"

#define GIT_BIT (1ull << 63)

const char *const ws_doors_default[] = {
	/* git: what runs code or decides where config comes from */
	".git/config", ".git/config.worktree", ".git/hooks/", ".git/commondir", ".git/info/", ".git/modules/",
	".git/worktrees/", ".git/objects/info/alternates",
	/* shells started there with it as $HOME, or sourcing from it */
	".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile", ".zshrc", ".zshenv", ".zprofile",
	".zlogin", ".zlogout", NULL,
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

static int move_aside(int wsfd, const char *rel, const char *ws_name)
{
	char base[256], to[300];
	int d = open_parent(wsfd, rel, base, sizeof base), rc = -EEXIST;
	if (d < 0)
		return d;
	for (int n = 1; n < 100 && rc == -EEXIST; n++) {
		snprintf(to, sizeof to, "%s.postern-quarantine-%d", base, n);
		/* RENAME_NOREPLACE: never over anything, never through a link (the names are in d). */
		rc = syscall(SYS_renameat2, d, base, d, to, 1 /* RENAME_NOREPLACE */) < 0 ? -errno : 0;
	}
	close(d);
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

int ws_doors_quarantine(int wsfd, const char *const *doors, uint64_t before, const char *ws_name)
{
	int moved = 0;
	if (!(before & GIT_BIT) && exists(wsfd, ".git"))
		moved += move_aside(wsfd, ".git", ws_name) == 0;
	for (int i = 0; doors && doors[i] && i < WS_DOORS_MAX; i++)
		if (!(before & (1ull << i)) && exists(wsfd, doors[i]))
			moved += move_aside(wsfd, doors[i], ws_name) == 0;
	return moved;
}
