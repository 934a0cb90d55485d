/* Cross-process sandbox slots (see slot.h). */
#include "sandbox/engine/slot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

const char *slot_default_dir(char *buf, size_t len)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	if (rt && rt[0] == '/')
		snprintf(buf, len, "%s/postern-sandboxes", rt);
	else
		snprintf(buf, len, "/tmp/postern-sandboxes-%u", (unsigned)getuid());
	return buf;
}

int slot_acquire(const char *dir, unsigned max, char *err, size_t errlen)
{
	struct stat st;
	int dfd, rc = -EBUSY;

	if (max == 0 || max > SLOT_MAX) {
		snprintf(err, errlen, "slot count %u out of range 1..%d", max, SLOT_MAX);
		return -EINVAL;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return rc;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 || fstat(dfd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return rc;
	}
	/* In a shared /tmp another user could pre-create the directory and hold every slot. */
	if (st.st_uid != geteuid() || (st.st_mode & 022)) {
		snprintf(err, errlen, "%s: not owned by us or writable by others", dir);
		close(dfd);
		return -EPERM;
	}
	for (unsigned i = 0; i < max; i++) {
		char name[32];
		int fd;
		snprintf(name, sizeof name, "slot-%u", i);
		fd = openat(dfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s/%s: %s", dir, name, strerror(errno));
			break;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			close(dfd);
			return fd;
		}
		close(fd);
	}
	if (rc == -EBUSY)
		snprintf(err, errlen, "sandbox limit reached: %u sandboxes are running (--max-sandboxes); try again later",
			 max);
	close(dfd);
	return rc;
}

void slot_release(int fd)
{
	if (fd >= 0)
		close(fd);
}
