#include "core/dirs.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define DIRS_PATH_MAX 4096

/* One component: 0 when it is (now) a directory. */
static int make_one(const char *p, mode_t mode, bool *made, char *err, size_t errlen)
{
	struct stat st;
	if (mkdir(p, mode) == 0) {
		if (made)
			*made = true;
		/* mkdir applies the umask; the mode asked for is the mode meant. */
		if (chmod(p, mode) != 0) {
			int e = errno;
			snprintf(err, errlen, "%s: cannot set mode %04o: %s", p, (unsigned)mode, strerror(e));
			return -e;
		}
		return 0;
	}
	if (errno == EEXIST) {
		if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		snprintf(err, errlen, "%s: exists and is not a directory", p);
		return -ENOTDIR;
	}
	{
		int e = errno;
		snprintf(err, errlen, "%s: cannot create directory: %s", p, strerror(e));
		return -e;
	}
}

int dirs_make(const char *path, mode_t mode, bool *made, char *err, size_t errlen)
{
	char p[DIRS_PATH_MAX];
	size_t n = strlen(path);
	int rc;

	if (made)
		*made = false;
	if (n == 0 || n >= sizeof p) {
		snprintf(err, errlen, "%s: %s", path, n ? "path too long" : "empty path");
		return n ? -ENAMETOOLONG : -EINVAL;
	}
	memcpy(p, path, n + 1);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		rc = make_one(p, 0755, made, err, errlen);
		*s = '/';
		if (rc < 0)
			return rc;
	}
	return make_one(p, mode, made, err, errlen);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void dirs_remove_tree(const char *path)
{
	if (path)
		nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}
