/* Secret files: one reader with the checks every secret needs (core/secfile.h). */
#include "core/secfile.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/err.h"

/* The words for a mode with group or other bits: what they allow and to whom. */
static void exposure_words(mode_t mode, const char **what, const char **who)
{
	*what = (mode & 044) ? "readable" : "writable";
	*who = (mode & 007) ? "all users" : "its group";
}

static int owner_ok(uid_t uid)
{
	/* root can change any file anyway; anyone else owning it can swap the secret under us. */
	return uid == geteuid() || uid == 0;
}

int sfile_exposure(const sfile *f, const char *path, char *msg, size_t msglen)
{
	const char *what, *who;
	if (msglen)
		msg[0] = 0;
	if (f->mode & 077) {
		exposure_words(f->mode, &what, &who);
		snprintf(msg, msglen, "%s is %s by %s (mode %04o): it holds a secret; run chmod 600 %s", path, what, who,
			 (unsigned)f->mode, path);
		return 1;
	}
	if (!owner_ok(f->uid)) {
		snprintf(msg, msglen, "%s is owned by uid %u, not by the user running postern (uid %u): it holds a "
			 "secret; run chown %u %s", path, (unsigned)f->uid, (unsigned)geteuid(), (unsigned)geteuid(), path);
		return 1;
	}
	return 0;
}

int sfile_read(const char *path, size_t cap, unsigned flags, sfile *f, char *err, size_t errlen)
{
	struct stat st;
	char *b = NULL;
	size_t got = 0, size = 0;
	int rc = 0, fd;

	memset(f, 0, sizeof *f);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ELOOP)
			return err_set(err, errlen, -ELOOP, "%s is a symbolic link: it holds a secret; point the config at "
				       "the file itself", path);
		return err_set(err, errlen, -errno, "cannot open %s: %s", path, strerror(errno));
	}
	if (fstat(fd, &st) < 0) {
		rc = err_set(err, errlen, -errno, "cannot stat %s: %s", path, strerror(errno));
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = err_set(err, errlen, -EINVAL, "%s is not a regular file", path);
		goto done;
	}
	f->mode = st.st_mode & 07777;
	f->uid = st.st_uid;
	if (!(flags & SFILE_SHARED_OK)) {
		char why[600];
		if (sfile_exposure(f, path, why, sizeof why)) {
			rc = err_set(err, errlen, -EPERM, "%s", why);
			goto done;
		}
	}
	if ((uint64_t)st.st_size > cap) {
		rc = err_set(err, errlen, -EFBIG, "%s is over %zu bytes: is it the right file?", path, cap);
		goto done;
	}
	size = (size_t)st.st_size;
	if (!(b = malloc(size + 1))) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory reading %s", path);
		goto done;
	}
	while (got < size) {
		ssize_t r = read(fd, b + got, size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = err_set(err, errlen, r < 0 ? -errno : -EAGAIN, "cannot read %s: %s", path,
				     r < 0 ? strerror(errno) : "it shrank while being read; try again");
			goto done;
		}
		got += (size_t)r;
	}
	/* A byte past the size seen: the file grew while being read (half a rotation); do not take a part. */
	{
		char extra;
		ssize_t r;
		while ((r = read(fd, &extra, 1)) < 0 && errno == EINTR)
			;
		if (r > 0) {
			rc = err_set(err, errlen, -EAGAIN, "cannot read %s: it grew while being read; try again", path);
			goto done;
		}
	}
	b[got] = 0;
	f->data = b;
	f->len = got;
	b = NULL;
done:
	if (b) {
		OPENSSL_cleanse(b, size + 1);
		free(b);
	}
	close(fd);
	return rc;
}

size_t sfile_first_line(sfile *f)
{
	if (!f->data)
		return 0;
	f->len = strcspn(f->data, "\r\n");
	/* The rest is wiped now: only the line is kept. */
	OPENSSL_cleanse(f->data + f->len, strlen(f->data + f->len));
	return f->len;
}

void sfile_free(sfile *f)
{
	if (!f || !f->data)
		return;
	OPENSSL_cleanse(f->data, f->len);
	free(f->data);
	f->data = NULL;
	f->len = 0;
}
