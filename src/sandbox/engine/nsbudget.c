/* The inotify budget of an unprivileged caller's sessions (see nsbudget.h). */
#include "sandbox/engine/nsbudget.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CLAIM_WAIT_MS 2000 /* another process taking its share at the same time */

void nsb_sizes(unsigned long long limit, unsigned long long wlimit, unsigned sessions, struct nsb_size *z)
{
	memset(z, 0, sizeof *z);
	z->limit = limit;
	z->wlimit = wlimit;
	/* A quarter stays the caller's own (its editor, its shell's tools, systemd --user): at least 8. */
	z->reserve = limit / 4 < 8 ? 8 : limit / 4;
	z->tokens = limit > z->reserve ? limit - z->reserve : 0;
	z->wreserve = wlimit / 4;
	if (!sessions)
		sessions = NSB_DEFAULT_SESSIONS;
	unsigned long long share = z->tokens / sessions;
	z->share = share < 1 ? 1 : share > NSB_MAX_SHARE ? NSB_MAX_SHARE : (unsigned)share;
	/* Watches in proportion: all tokens held means all of the shared watches, never more. */
	unsigned long long w = z->tokens ? (wlimit - z->wreserve) / z->tokens * z->share : 0;
	z->watches = w > NSB_MAX_WATCHES ? NSB_MAX_WATCHES : w;
}

const char *nsb_default_dir(char *buf, size_t len)
{
	snprintf(buf, len, "/tmp/postern-budget-%u", (unsigned)geteuid());
	return buf;
}

static int read_limit(const char *path, unsigned long long *v, char *err, size_t errlen)
{
	char buf[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
	if (n <= 0) {
		rc = n < 0 ? -errno : -EIO;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
	} else {
		buf[n] = 0;
		*v = strtoull(buf, NULL, 10);
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { 0, (long)ms * 1000000L };
	nanosleep(&ts, NULL);
}

void nsb_release(nsb_share *sh)
{
	for (unsigned i = 0; i < sh->n; i++)
		close(sh->fds[i]);
	sh->n = 0;
}

int nsb_take(const char *dir, unsigned sessions, nsb_share *sh, char *err, size_t errlen)
{
	char dbuf[64];
	unsigned long long lim, wlim;
	struct stat st;
	int dfd = -1, lock = -1, rc;

	sh->n = 0;
	if ((rc = read_limit("/proc/sys/user/max_inotify_instances", &lim, err, errlen)) < 0 ||
	    (rc = read_limit("/proc/sys/user/max_inotify_watches", &wlim, err, errlen)) < 0)
		return rc;
	nsb_sizes(lim, wlim, sessions, &sh->z);
	if (!dir)
		dir = nsb_default_dir(dbuf, sizeof dbuf);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "inotify budget directory %s: %s", dir, strerror(errno));
		return rc;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 || fstat(dfd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "inotify budget directory %s: %s", dir, strerror(errno));
		goto out;
	}
	/* In a shared /tmp another user could pre-create it and hold every token. */
	if (st.st_uid != geteuid() || (st.st_mode & 022)) {
		rc = -EPERM;
		snprintf(err, errlen,
			 "inotify budget directory %s: owned by uid %u, mode %04o; it must be ours (uid %u) and not "
			 "writable by others: another user may have made it first, so nothing in it is used (have "
			 "root remove it)",
			 dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), (unsigned)geteuid());
		goto out;
	}
	/* One claim at a time, so that two sessions starting together cannot each hold half a share. */
	lock = openat(dfd, "claim.lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	for (unsigned waited = 0; lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) < 0; waited += 2) {
		if (errno != EWOULDBLOCK || waited >= CLAIM_WAIT_MS) {
			rc = errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
			snprintf(err, errlen, "inotify budget %s/claim.lock: %s", dir, strerror(-rc));
			goto out;
		}
		sleep_ms(2);
	}
	if (lock < 0) {
		rc = -errno;
		snprintf(err, errlen, "inotify budget %s/claim.lock: %s", dir, strerror(errno));
		goto out;
	}
	for (unsigned long long i = 0; i < sh->z.tokens && sh->n < sh->z.share; i++) {
		char name[32];
		snprintf(name, sizeof name, "inotify-%llu", i);
		int fd = openat(dfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			rc = -errno;
			snprintf(err, errlen, "inotify budget %s/%s: %s", dir, name, strerror(errno));
			goto out;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			sh->fds[sh->n++] = fd;
		else
			close(fd);
	}
	rc = 0;
	if (sh->n < sh->z.share) {
		rc = -EDQUOT;
		snprintf(err, errlen,
			 "the caller's inotify budget is spent: its other sessions hold %llu of the %llu inotify instances "
			 "sessions may use (fs.inotify.max_user_instances=%llu, %llu kept for the user's own processes) and "
			 "a session needs %u; end a session or raise the sysctl",
			 sh->z.tokens - sh->n, sh->z.tokens, sh->z.limit, sh->z.reserve, sh->z.share);
	}
out:
	if (rc < 0)
		nsb_release(sh);
	if (lock >= 0)
		close(lock);
	if (dfd >= 0)
		close(dfd);
	return rc;
}
