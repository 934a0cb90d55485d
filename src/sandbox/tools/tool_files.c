/* The file tools, run by the tool worker inside the sandbox (see tool_files.h). */
#include "sandbox/tools/tool_files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/tools/tool_files_int.h"
#include "sandbox/tools/tool_text.h"

uint64_t tfile_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- growing text ----------------------------------------------------------------------------- */

void tfile_addn(struct tfile_text *t, const char *s, size_t n)
{
	if (t->full)
		return;
	if (t->limit && t->b.len + n > t->limit) {
		n = ttext_utf8_prefix(s, t->limit - t->b.len);
		t->full = true;
	}
	if (cbuf_append(&t->b, s, n) < 0)
		t->full = true;
}

void tfile_add(struct tfile_text *t, const char *s)
{
	tfile_addn(t, s, strlen(s));
}

void tfile_printf(struct tfile_text *t, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n > 0)
		tfile_addn(t, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}


void tfile_err(struct tfile_res *r, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	r->err = true;
	cbuf_consume(&r->t.b, r->t.b.len);
	r->t.full = false;
	tfile_add(&r->t, buf);
}

static bool write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* ---- paths ----------------------------------------------------------------------------------------- */

/* Plain path walks: the worker's root, mounts and rights are the sandbox's own, so the kernel keeps every
 * walk inside it (no RESOLVE_IN_ROOT needed, and openat2 is not in the sandbox's syscall allowlist). */
int tfile_open_path(const char *spath, int flags)
{
	int fd = open(spath, flags | O_CLOEXEC | O_NOCTTY);
	return fd < 0 ? -errno : fd;
}

const char *tfile_errtext(int e)
{
	switch (e) {
	case ELOOP:
		return "too many levels of symbolic links";
	default:
		return strerror(e);
	}
}

static const char *ftype(mode_t m)
{
	if (S_ISDIR(m))
		return "a directory";
	if (S_ISFIFO(m))
		return "a FIFO";
	if (S_ISCHR(m))
		return "a character device";
	if (S_ISBLK(m))
		return "a block device";
	if (S_ISSOCK(m))
		return "a socket";
	if (S_ISLNK(m))
		return "a symbolic link";
	return "not a regular file";
}

/* Normalises a tool path argument into a sandbox path. */
int tfile_path(const struct tfctx *s, json_t *v, char *out, size_t outlen, struct tfile_res *r, const char *what)
{
	int rc;
	if (!json_is_string(v)) {
		tfile_err(r, "'%s' must be a string", what);
		return -EINVAL;
	}
	if (json_string_length(v) == 0) {
		tfile_err(r, "'%s' is empty", what);
		return -EINVAL;
	}
	if (memchr(json_string_value(v), 0, json_string_length(v))) {
		tfile_err(r, "'%s' holds a NUL byte", what);
		return -EINVAL;
	}
	rc = ttext_path_norm(s->cwd, json_string_value(v), json_string_length(v), out, outlen);
	if (rc < 0)
		tfile_err(r, "'%s' is not a usable path (%s)", what, strerror(-rc));
	return rc;
}

/* Opens a regular file for reading without open() side effects: O_PATH first, check the type, then reopen
 * that very inode through /proc/self/fd (no second path walk, so no race). */
int tfile_open_regular(const struct tfctx *s, const char *spath, struct stat *st, struct tfile_res *r)
{
	char proc[64];
	int pfd = tfile_open_path(spath, O_PATH), fd;

	if (pfd < 0) {
		tfile_err(r, "%s: %s", spath, tfile_errtext(-pfd));
		return pfd;
	}
	if (fstat(pfd, st) < 0 || !S_ISREG(st->st_mode)) {
		tfile_err(r, "%s: is %s; only regular files can be read%s", spath, ftype(st->st_mode),
		     S_ISDIR(st->st_mode) ? " (use glob to list it)" : "");
		close(pfd);
		return -EINVAL;
	}
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
	fd = open(proc, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		/* No procfs in this root (the unit tests' chroot): a second walk, checked to be the same inode. */
		struct stat st2;
		fd = open(spath, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0 && (fstat(fd, &st2) < 0 || st2.st_ino != st->st_ino || st2.st_dev != st->st_dev)) {
			close(fd);
			fd = -1;
			errno = ESTALE;
		}
	}
	close(pfd);
	if (fd < 0) {
		tfile_err(r, "%s: %s", spath, strerror(errno));
		return -errno;
	}
	return fd;
}

/* Reads up to cap+1 bytes; *len > cap means the file is larger than cap. */
char *tfile_read_capped(int fd, size_t cap, size_t *len)
{
	char *b = malloc(cap + 2);
	size_t n = 0;
	if (!b)
		return NULL;
	while (n < cap + 1) {
		ssize_t k = read(fd, b + n, cap + 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN)
			break;
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	b[n] = 0;
	*len = n;
	return b;
}

/* ---- read --------------------------------------------------------------------------------------- */

void tfile_read(const struct tfctx *s, json_t *a, struct tfile_res *r)
{
	json_t *vr = json_object_get(a, "view_range");
	char spath[PATH_MAX];
	long start = 1, end = 0;
	bool ranged = false;
	struct stat st;
	int fd;

	if (tfile_path(s, json_object_get(a, "file_path"), spath, sizeof spath, r, "file_path") < 0)
		return;
	if (vr && !json_is_null(vr)) {
		if (!json_is_array(vr) || json_array_size(vr) != 2 || !json_is_integer(json_array_get(vr, 0)) ||
		    !json_is_integer(json_array_get(vr, 1))) {
			tfile_err(r, "'view_range' must be [start, end] (1-indexed, inclusive; end <= 0 reads to the end)");
			return;
		}
		json_int_t a0 = json_integer_value(json_array_get(vr, 0)), a1 = json_integer_value(json_array_get(vr, 1));
		if (a0 < 1 || a0 > LONG_MAX / 2 || a1 > LONG_MAX / 2 || (a1 > 0 && a1 < a0)) {
			tfile_err(r, "'view_range' [%lld, %lld] is not a valid range", (long long)a0, (long long)a1);
			return;
		}
		start = (long)a0;
		end = (long)a1;
		ranged = true;
	}
	fd = tfile_open_regular(s, spath, &st, r);
	if (fd < 0)
		return;
	if (!ranged || (size_t)st.st_size <= TOOL_READ_CAP) {
		size_t len, off, n;
		char *b;
		if ((size_t)st.st_size > TOOL_READ_CAP) {
			tfile_err(r, "%s: file is %lld bytes, over the %u KiB read limit; pass view_range or use bash (head, sed -n)",
			     spath, (long long)st.st_size, TOOL_READ_CAP / 1024);
			goto out;
		}
		b = tfile_read_capped(fd, TOOL_READ_CAP, &len);
		if (!b) {
			tfile_err(r, "out of memory");
			goto out;
		}
		if (len > TOOL_READ_CAP && !ranged) {
			tfile_err(r, "%s: file grew over the %u KiB read limit; pass view_range or use bash", spath,
			     TOOL_READ_CAP / 1024);
		} else if (len > TOOL_READ_CAP) {
			tfile_err(r, "%s: the file is larger than it said; use bash for it", spath);
		} else if (ttext_line_range(b, len, start, end, &off, &n) < 0) {
			size_t lines = 0;
			for (size_t i = 0; i < len; i++)
				lines += b[i] == '\n';
			if (len && b[len - 1] != '\n')
				lines++;
			tfile_err(r, "%s: view_range starts at line %ld but the file has %zu lines", spath, start, lines);
		} else {
			tfile_addn(&r->t, b + off, n);
		}
		free(b);
		goto out;
	}
	/* A line range of a file over the read cap: stream it, keep only the lines asked for. */
	{
		char buf[65536];
		long line = 1;
		size_t scanned = 0;
		bool over = false;
		r->t.limit = TOOL_READ_CAP;
		for (;;) {
			ssize_t k = read(fd, buf, sizeof buf);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				break;
			scanned += (size_t)k;
			for (ssize_t i = 0; i < k; i++) {
				if (line >= start && (end <= 0 || line <= end)) {
					if (r->t.b.len >= TOOL_READ_CAP) {
						over = true;
						break;
					}
					tfile_addn(&r->t, buf + i, 1);
				}
				if (buf[i] == '\n')
					line++;
			}
			if (over || (end > 0 && line > end) || scanned >= TOOL_READ_SCAN_CAP)
				break;
		}
		if (over)
			tfile_err(r, "%s: the requested lines are over the %u KiB read limit; ask for fewer lines", spath,
			     TOOL_READ_CAP / 1024);
		else if (line < start || (line == start && r->t.b.len == 0))
			tfile_err(r, "%s: view_range starts at line %ld but the file has %ld lines%s", spath, start, line - 1,
			     scanned >= TOOL_READ_SCAN_CAP ? " within the scanned part" : "");
	}
out:
	close(fd);
}

/* ---- write and edit ---------------------------------------------------------------------------- */

/* Opens (creating as needed) the directory spath inside the root; returns an O_PATH|O_DIRECTORY fd. */
static int mkdirs_in_root(const struct tfctx *s, const char *spath, struct tfile_res *r)
{
	char pfx[PATH_MAX];
	int fd = tfile_open_path(spath, O_PATH | O_DIRECTORY), parent = -1;
	size_t len = strlen(spath);

	if (fd >= 0 || fd != -ENOENT) {
		if (fd < 0)
			tfile_err(r, "%s: %s", spath, tfile_errtext(-fd));
		return fd;
	}
	/* Walk the prefixes; each missing one is made with mkdirat() in its parent's fd and then reopened
	 * through the root, so a racing symlink is still resolved inside the sandbox. */
	parent = tfile_open_path("/", O_PATH | O_DIRECTORY);
	for (size_t i = 1; i <= len; i++) {
		if (i < len && spath[i] != '/')
			continue;
		memcpy(pfx, spath, i);
		pfx[i] = 0;
		fd = tfile_open_path(pfx, O_PATH | O_DIRECTORY);
		if (fd == -ENOENT && parent >= 0) {
			const char *comp = strrchr(pfx, '/') + 1;
			if (mkdirat(parent, comp, 0755) < 0 && errno != EEXIST) {
				tfile_err(r, "cannot create directory %s: %s", pfx, strerror(errno));
				close(parent);
				return -errno;
			}
			fd = tfile_open_path(pfx, O_PATH | O_DIRECTORY);
		}
		if (fd < 0) {
			tfile_err(r, "%s: %s", pfx, tfile_errtext(-fd));
			if (parent >= 0)
				close(parent);
			return fd;
		}
		if (parent >= 0)
			close(parent);
		parent = fd;
	}
	return parent;
}

/* Resolves spath to (directory fd, final name), following a symlink in the last component within the
 * sandbox (so that writing through a link updates its target, as editors do). */
static int resolve_target(const struct tfctx *s, char *spath, bool create_dirs, int *dirfd, const char **base,
			  struct stat *st, bool *exists, struct tfile_res *r)
{
	for (int hops = 0;; hops++) {
		char *slash = strrchr(spath, '/');
		char dir[PATH_MAX], target[PATH_MAX], next[PATH_MAX];
		ssize_t tl;
		int dfd;

		if (!slash || slash[1] == 0) {
			tfile_err(r, "%s: is a directory", spath);
			return -EISDIR;
		}
		if (slash == spath)
			snprintf(dir, sizeof dir, "/");
		else
			snprintf(dir, sizeof dir, "%.*s", (int)(slash - spath), spath);
		if (create_dirs) {
			dfd = mkdirs_in_root(s, dir, r);
		} else {
			dfd = tfile_open_path(dir, O_PATH | O_DIRECTORY);
			if (dfd < 0)
				tfile_err(r, "%s: %s", dir, tfile_errtext(-dfd));
		}
		if (dfd < 0)
			return dfd;
		if (fstatat(dfd, slash + 1, st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT) {
				tfile_err(r, "%s: %s", spath, strerror(errno));
				close(dfd);
				return -errno;
			}
			*exists = false;
			*dirfd = dfd;
			*base = slash + 1;
			return 0;
		}
		if (!S_ISLNK(st->st_mode)) {
			if (!S_ISREG(st->st_mode)) {
				tfile_err(r, "%s: is %s; only regular files can be written", spath, ftype(st->st_mode));
				close(dfd);
				return -EINVAL;
			}
			*exists = true;
			*dirfd = dfd;
			*base = slash + 1;
			return 0;
		}
		if (hops >= 40) {
			tfile_err(r, "%s: too many levels of symbolic links", spath);
			close(dfd);
			return -ELOOP;
		}
		tl = readlinkat(dfd, slash + 1, target, sizeof target - 1);
		close(dfd);
		if (tl <= 0) {
			tfile_err(r, "%s: unreadable symbolic link", spath);
			return -EINVAL;
		}
		target[tl] = 0;
		/* The link text is a sandbox path (absolute ones start at the sandbox root). */
		if (ttext_path_norm(dir, target, (size_t)tl, next, sizeof next) < 0) {
			tfile_err(r, "%s: symbolic link target is not usable", spath);
			return -EINVAL;
		}
		snprintf(spath, PATH_MAX, "%s", next);
	}
}

/* Atomically replaces dirfd/base with data: temp file in the same directory, fsync, rename. */
static int replace_file(int dirfd, const char *base, const char *data, size_t len, mode_t mode, const char *spath,
			struct tfile_res *r)
{
	char tmp[NAME_MAX + 1], rnd[9];
	unsigned char rb[4];
	int fd = -1, rc = 0;

	if (getrandom(rb, sizeof rb, 0) != sizeof rb)
		memset(rb, 0x5a, sizeof rb);
	snprintf(rnd, sizeof rnd, "%02x%02x%02x%02x", rb[0], rb[1], rb[2], rb[3]);
	snprintf(tmp, sizeof tmp, ".%.200s.postern-%s", base, rnd);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		tfile_err(r, "%s: cannot create a temporary file: %s", spath, strerror(errno));
		return -errno;
	}
	if (fchmod(fd, mode) < 0 || !write_all(fd, data, len) || fsync(fd) < 0) {
		rc = -errno;
		tfile_err(r, "%s: write failed: %s", spath, strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = -errno;
		tfile_err(r, "%s: write failed: %s", spath, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (renameat(dirfd, tmp, dirfd, base) < 0) {
		rc = -errno;
		tfile_err(r, "%s: %s", spath, strerror(errno));
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlinkat(dirfd, tmp, 0);
	return rc;
}

void tfile_write(const struct tfctx *s, json_t *a, struct tfile_res *r)
{
	json_t *c = json_object_get(a, "content");
	char spath[PATH_MAX];
	const char *base;
	struct stat st;
	bool exists;
	int dfd;
	mode_t mode = 0644;

	if (tfile_path(s, json_object_get(a, "file_path"), spath, sizeof spath, r, "file_path") < 0)
		return;
	if (!json_is_string(c)) {
		tfile_err(r, "'content' must be a string");
		return;
	}
	if (json_string_length(c) > TOOL_WRITE_CAP) {
		tfile_err(r, "'content' is over the %u MiB write limit", TOOL_WRITE_CAP >> 20);
		return;
	}
	if (resolve_target(s, spath, true, &dfd, &base, &st, &exists, r) < 0)
		return;
	if (exists)
		mode = st.st_mode & 07777;
	else {
		mode_t um = umask(0);
		umask(um);
		mode = 0666 & ~um;
	}
	if (replace_file(dfd, base, json_string_value(c), json_string_length(c), mode, spath, r) == 0)
		tfile_printf(&r->t, "wrote %zu bytes to %s", json_string_length(c), spath);
	close(dfd);
}

void tfile_edit(const struct tfctx *s, json_t *a, struct tfile_res *r)
{
	json_t *o = json_object_get(a, "old_string"), *n = json_object_get(a, "new_string");
	json_t *all = json_object_get(a, "replace_all");
	char spath[PATH_MAX], *buf = NULL, *out = NULL;
	const char *base;
	struct stat st, st2;
	bool exists;
	size_t len, outlen, count;
	int dfd, fd, rc;

	if (tfile_path(s, json_object_get(a, "file_path"), spath, sizeof spath, r, "file_path") < 0)
		return;
	if (!json_is_string(o) || !json_is_string(n)) {
		tfile_err(r, "'old_string' and 'new_string' must be strings");
		return;
	}
	if (all && !json_is_boolean(all) && !json_is_null(all)) {
		tfile_err(r, "'replace_all' must be a boolean");
		return;
	}
	if (json_string_length(o) == 0) {
		tfile_err(r, "'old_string' is empty; use write to create or overwrite a file");
		return;
	}
	if (resolve_target(s, spath, false, &dfd, &base, &st, &exists, r) < 0)
		return;
	if (!exists) {
		tfile_err(r, "%s: No such file or directory", spath);
		goto out;
	}
	fd = openat(dfd, base, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st2) < 0 || !S_ISREG(st2.st_mode) || st2.st_ino != st.st_ino || st2.st_dev != st.st_dev) {
		tfile_err(r, "%s: changed while opening it, or not a regular file", spath);
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if ((size_t)st2.st_size > TOOL_EDIT_CAP) {
		tfile_err(r, "%s: file is over the %u MiB edit limit; use bash", spath, TOOL_EDIT_CAP >> 20);
		close(fd);
		goto out;
	}
	buf = tfile_read_capped(fd, TOOL_EDIT_CAP, &len);
	close(fd);
	if (!buf || len > TOOL_EDIT_CAP) {
		tfile_err(r, "%s: cannot read it within the %u MiB edit limit", spath, TOOL_EDIT_CAP >> 20);
		goto out;
	}
	rc = ttext_edit(buf, len, json_string_value(o), json_string_length(o), json_string_value(n),
			json_string_length(n), json_is_true(all), TOOL_EDIT_CAP, &out, &outlen, &count);
	if (rc == -ENOENT) {
		tfile_err(r, "%s: old_string not found in the file; nothing was changed", spath);
	} else if (rc == -EEXIST) {
		tfile_err(r, "%s: old_string occurs %zu times; add context to make it unique or set replace_all", spath, count);
	} else if (rc == -EFBIG) {
		tfile_err(r, "%s: the result would be over the %u MiB edit limit", spath, TOOL_EDIT_CAP >> 20);
	} else if (rc < 0) {
		tfile_err(r, "%s: %s", spath, strerror(-rc));
	} else if (replace_file(dfd, base, out, outlen, st.st_mode & 07777, spath, r) == 0) {
		tfile_printf(&r->t, "replaced %zu occurrence%s in %s", count, count == 1 ? "" : "s", spath);
	}
out:
	free(buf);
	free(out);
	close(dfd);
}

/* ---- one file tool ------------------------------------------------------------------------------ */

int tfile_run(const char *name, tfile_fn fn, json_t *args, const char *cwd, unsigned budget_ms, char **out,
	      size_t *len, bool *is_error)
{
	struct tfctx c = { .cwd = cwd && *cwd == '/' ? cwd : "/", .budget_ms = budget_ms ? budget_ms : TOOL_FILE_TIMEOUT_MS };
	struct tfile_res r = { .t = TFILE_TEXT_INIT(TFILE_RESULT_CAP) };

	if (!json_is_object(args))
		tfile_err(&r, "%s: arguments must be an object", name);
	else
		fn(&c, args, &r);
	/* The caller frees the text: only a whole reset ever consumes, so it starts at the buffer's memory. */
	*out = r.t.b.len ? (char *)r.t.b.p : strdup("");
	if (!*out)
		return -ENOMEM;
	*is_error = r.err;
	*len = r.t.b.len;
	return 0;
}
