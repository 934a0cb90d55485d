/* The sandbox tools (see tools.h). */
#include "sandbox/tools.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <grp.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "sandbox/mcp_server.h"
#include "sandbox/tool_text.h"

struct tool_session {
	struct tool_backend b;
	void *shell; /* backend proc of the persistent shell, NULL when none */
	int shell_in, shell_out;
};

tool_session *tool_session_new(const struct tool_backend *b)
{
	tool_session *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->b = *b;
	if (!t->b.default_timeout_ms)
		t->b.default_timeout_ms = TOOL_BASH_DEFAULT_TIMEOUT_MS;
	if (!t->b.file_timeout_ms)
		t->b.file_timeout_ms = TOOL_FILE_TIMEOUT_MS;
	if (!t->b.cwd)
		t->b.cwd = "/";
	t->shell_in = t->shell_out = -1;
	return t;
}

static void shell_drop(tool_session *t, bool kill)
{
	if (!t->shell)
		return;
	if (kill)
		t->b.shell_kill(t->b.ud, t->shell);
	t->b.shell_free(t->b.ud, t->shell);
	t->shell = NULL;
	t->shell_in = t->shell_out = -1;
}

void tool_session_free(tool_session *t)
{
	if (!t)
		return;
	shell_drop(t, true);
	free(t);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- growing text ----------------------------------------------------------------------------- */

struct text {
	char *p;
	size_t len, cap, limit;
	bool full;
};

static void text_addn(struct text *t, const char *s, size_t n)
{
	if (t->full)
		return;
	if (t->limit && t->len + n > t->limit) {
		n = ttx_utf8_prefix(s, t->limit - t->len);
		t->full = true;
	}
	if (t->len + n + 1 > t->cap) {
		size_t nc = t->cap ? t->cap : 256;
		while (nc < t->len + n + 1)
			nc *= 2;
		char *np = realloc(t->p, nc);
		if (!np) {
			t->full = true;
			return;
		}
		t->p = np;
		t->cap = nc;
	}
	memcpy(t->p + t->len, s, n);
	t->len += n;
	t->p[t->len] = 0;
}

static void text_add(struct text *t, const char *s)
{
	text_addn(t, s, strlen(s));
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(struct text *t, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n > 0)
		text_addn(t, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static char *dupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dupf(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* ---- bash ------------------------------------------------------------------------------------- */

struct bash_sink {
	struct ttx_ansi ansi;
	struct ttx_tail tail;
};

static void bash_emit(void *ud, const char *data, size_t len)
{
	struct bash_sink *s = ud;
	char buf[4096];

	while (len) {
		size_t n = len < sizeof buf ? len : sizeof buf;
		memcpy(buf, data, n);
		ttx_tail_push(&s->tail, buf, ttx_ansi_strip(&s->ansi, buf, n));
		data += n;
		len -= n;
	}
}

static int make_nonce(char out[TTX_NONCE_LEN + 1])
{
	unsigned char r[TTX_NONCE_LEN / 2];
	static const char hex[] = "0123456789abcdef";
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
		return -EIO;
	for (size_t i = 0; i < sizeof r; i++) {
		out[2 * i] = hex[r[i] >> 4];
		out[2 * i + 1] = hex[r[i] & 15];
	}
	out[TTX_NONCE_LEN] = 0;
	return 0;
}

static char *bash_result(struct bash_sink *s, const char *note, bool *is_error, bool err)
{
	size_t len, clen;
	bool trunc;
	char *raw = ttx_tail_take(&s->tail, &len, &trunc), *clean, *out;

	if (!raw)
		return NULL;
	clean = ttx_utf8_clean(raw, len, &clen);
	free(raw);
	if (!clean)
		return NULL;
	out = dupf("%s%s%s%s", trunc ? "[output truncated]\n" : "", clean,
		   note && clen && clean[clen - 1] != '\n' ? "\n" : "", note ? note : "");
	free(clean);
	*is_error = err;
	return out;
}

char *tool_bash(tool_session *t, const char *cmd, size_t cmdlen, bool restart, unsigned timeout_ms, bool *is_error)
{
	struct bash_sink sink = { 0 };
	struct ttx_frame fr;
	char nonce[TTX_NONCE_LEN + 1], *wrap = NULL, *res = NULL, note[256];
	size_t wlen = 0, woff = 0;
	uint64_t deadline;
	int rc, ws;

	*is_error = true;
	if (restart) {
		shell_drop(t, true);
		if (t->b.kill_all)
			t->b.kill_all(t->b.ud);
		if (!cmd) {
			*is_error = false;
			return dupf("shell restarted");
		}
	}
	if (!cmd)
		return dupf("bash: 'command' is required unless 'restart' is true");
	if (cmdlen > TOOL_BASH_MAX_COMMAND)
		return dupf("bash: command longer than %u bytes", TOOL_BASH_MAX_COMMAND);
	if (!timeout_ms)
		timeout_ms = t->b.default_timeout_ms;
	do {
		if (make_nonce(nonce) < 0)
			return dupf("bash: no randomness for the sentinel");
		free(wrap);
		wrap = NULL;
		rc = ttx_bash_wrap(cmd, cmdlen, nonce, &wrap, &wlen);
	} while (rc == -EAGAIN);
	if (rc == -EINVAL)
		return dupf("bash: the command holds a NUL byte");
	if (rc < 0)
		return dupf("bash: cannot frame the command (%s)", strerror(-rc));
	if (!t->shell) {
		rc = t->b.shell_spawn(t->b.ud, &t->shell, &t->shell_in, &t->shell_out);
		if (rc < 0) {
			t->shell = NULL;
			free(wrap);
			return dupf("bash: cannot start the shell in the sandbox: %s", strerror(-rc));
		}
	}
	if (ttx_tail_init(&sink.tail, TOOL_BASH_OUTPUT_CAP) < 0) {
		free(wrap);
		return NULL;
	}
	ttx_frame_init(&fr, nonce);
	deadline = now_ms() + timeout_ms;
	for (;;) {
		struct pollfd p[3] = { { t->shell_out, POLLIN, 0 },
				       { woff < wlen ? t->shell_in : -1, POLLOUT, 0 },
				       { t->b.cancel_fd ? *t->b.cancel_fd : -1, POLLIN, 0 } };
		uint64_t now = now_ms();
		char buf[65536];
		ssize_t n;

		if (now >= deadline) {
			shell_drop(t, true);
			snprintf(note, sizeof note, "[command timed out after %u ms; its process group was killed and the shell "
				 "restarts on the next call]", timeout_ms);
			res = bash_result(&sink, note, is_error, true);
			break;
		}
		rc = poll(p, 3, (int)(deadline - now < 1000 ? deadline - now : 1000));
		if (rc < 0 && errno != EINTR)
			break;
		if (p[2].revents & POLLIN) {
			shell_drop(t, true);
			res = bash_result(&sink, "[cancelled by the client; the command's process group was killed and the "
						 "shell restarts on the next call]",
					  is_error, true);
			break;
		}
		/* A shell that exited while a background job still holds its output pipe never gives EOF:
		 * check for its exit on quiet ticks. */
		if (rc == 0 && t->b.shell_wait(t->b.ud, t->shell, 0, &ws) == 1) {
			while ((n = read(t->shell_out, buf, sizeof buf)) > 0 && !ttx_frame_feed(&fr, buf, (size_t)n, bash_emit, &sink))
				;
			ttx_frame_flush(&fr, bash_emit, &sink);
			snprintf(note, sizeof note, "[shell ended (status %d); a new shell starts on the next call]", ws);
			shell_drop(t, true);
			res = bash_result(&sink, note, is_error, true);
			break;
		}
		if (p[1].revents & (POLLOUT | POLLERR | POLLHUP)) {
			n = write(t->shell_in, wrap + woff, wlen - woff);
			if (n > 0)
				woff += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				woff = wlen; /* the shell is gone; EOF on output tells the rest */
		}
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = read(t->shell_out, buf, sizeof buf);
		if (n > 0) {
			if (ttx_frame_feed(&fr, buf, (size_t)n, bash_emit, &sink)) {
				if (fr.code != 0)
					snprintf(note, sizeof note, "[exit code %d]", fr.code);
				res = bash_result(&sink, fr.code ? note : NULL, is_error, fr.code != 0);
				break;
			}
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		/* EOF: the shell exited (`exit N`, killed). */
		ttx_frame_flush(&fr, bash_emit, &sink);
		ws = 0;
		rc = t->b.shell_wait(t->b.ud, t->shell, 2000, &ws);
		if (rc == 1 && WIFEXITED(ws))
			snprintf(note, sizeof note, "[shell exited with code %d; a new shell starts on the next call]",
				 WEXITSTATUS(ws));
		else if (rc == 1 && WIFSIGNALED(ws))
			snprintf(note, sizeof note, "[shell killed by signal %d; a new shell starts on the next call]",
				 WTERMSIG(ws));
		else
			snprintf(note, sizeof note, "[shell closed its output; a new shell starts on the next call]");
		shell_drop(t, true);
		res = bash_result(&sink, note, is_error, !(rc == 1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0));
		break;
	}
	ttx_tail_free(&sink.tail);
	free(wrap);
	return res ? res : dupf("bash: internal error");
}

/* ---- file tools: a capability-less child per call ---------------------------------------------- */

struct fres {
	bool err;
	struct text t;
};

typedef void (*file_fn)(const tool_session *s, json_t *args, struct fres *r);

static void ferr(struct fres *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ferr(struct fres *r, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	r->err = true;
	r->t.len = 0;
	r->t.full = false;
	text_add(&r->t, buf);
}

static void drop_privileges(const struct tool_backend *b)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	if (b->set_ids && (setgroups(0, NULL) != 0 || setresgid(b->gid, b->gid, b->gid) != 0 ||
			   setresuid(b->uid, b->uid, b->uid) != 0))
		_exit(122);
	memset(d, 0, sizeof d);
	/* Without capabilities the child has exactly the file access of the sandbox's own processes, which
	 * run as the same uid with no capabilities. */
	if (syscall(SYS_capset, &h, d) != 0)
		_exit(120);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		_exit(121);
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
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

#define FILE_RESULT_CAP (2u << 20)

/* Runs fn in a forked child without capabilities; returns the text (malloc'd, valid UTF-8). */
static char *run_file_tool(const tool_session *s, file_fn fn, json_t *args, bool *is_error)
{
	int pfd[2], ws;
	pid_t pid;
	struct text out = { .limit = FILE_RESULT_CAP };
	uint64_t deadline;
	bool timed_out = false, cancelled = false;
	char *clean;

	*is_error = true;
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return dupf("internal error: pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return dupf("internal error: fork: %s", strerror(errno));
	}
	if (pid == 0) {
		struct fres r = { .t = { .limit = FILE_RESULT_CAP - 1 } };
		close(pfd[0]);
		drop_privileges(&s->b);
		fn(s, args, &r);
		char e = r.err ? 1 : 0;
		write_all(pfd[1], &e, 1);
		if (r.t.len)
			write_all(pfd[1], r.t.p, r.t.len);
		_exit(0);
	}
	close(pfd[1]);
	deadline = now_ms() + s->b.file_timeout_ms;
	for (;;) {
		struct pollfd p[2] = { { pfd[0], POLLIN, 0 }, { s->b.cancel_fd ? *s->b.cancel_fd : -1, POLLIN, 0 } };
		uint64_t now = now_ms();
		char buf[65536];
		ssize_t n;
		if (now >= deadline) {
			timed_out = true;
			break;
		}
		if (poll(p, 2, (int)(deadline - now)) < 0 && errno != EINTR)
			break;
		if (p[1].revents & POLLIN) {
			cancelled = true;
			break;
		}
		if (!p[0].revents)
			continue;
		n = read(pfd[0], buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		text_addn(&out, buf, (size_t)n);
	}
	close(pfd[0]);
	if (timed_out || cancelled)
		kill(pid, SIGKILL);
	while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
		;
	if (timed_out || cancelled) {
		free(out.p);
		return cancelled ? dupf("cancelled by the client") : dupf("file tool timed out after %u ms", s->b.file_timeout_ms);
	}
	if (out.len == 0 || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
		free(out.p);
		return dupf("internal error: file tool worker failed (status %d)", ws);
	}
	*is_error = out.p[0] != 0;
	clean = ttx_utf8_clean(out.p + 1, out.len - 1, NULL);
	free(out.p);
	return clean;
}

/* ---- path resolution (in the child) ------------------------------------------------------------- */

static int open_in_root(const tool_session *s, const char *spath, uint64_t flags)
{
	struct open_how how = { .flags = flags | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
	long fd = syscall(SYS_openat2, s->b.root_fd, spath, &how, sizeof how);
	return fd < 0 ? -errno : (int)fd;
}

static const char *errtext(int e)
{
	switch (e) {
	case ELOOP:
		return "too many levels of symbolic links, or a link that cannot be followed inside the sandbox";
	case EXDEV:
		return "path crosses out of the sandbox";
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
static int tool_path(const tool_session *s, json_t *v, char *out, size_t outlen, struct fres *r, const char *what)
{
	int rc;
	if (!json_is_string(v)) {
		ferr(r, "'%s' must be a string", what);
		return -EINVAL;
	}
	if (json_string_length(v) == 0) {
		ferr(r, "'%s' is empty", what);
		return -EINVAL;
	}
	if (memchr(json_string_value(v), 0, json_string_length(v))) {
		ferr(r, "'%s' holds a NUL byte", what);
		return -EINVAL;
	}
	rc = ttx_path_norm(s->b.cwd, json_string_value(v), json_string_length(v), out, outlen);
	if (rc < 0)
		ferr(r, "'%s' is not a usable path (%s)", what, strerror(-rc));
	return rc;
}

/* Opens a regular file for reading without open() side effects: O_PATH first, check the type, then reopen
 * that very inode through /proc/self/fd (no second path walk, so no race). */
static int open_regular(const tool_session *s, const char *spath, struct stat *st, struct fres *r)
{
	char proc[64];
	int pfd = open_in_root(s, spath, O_PATH), fd;

	if (pfd < 0) {
		ferr(r, "%s: %s", spath, errtext(-pfd));
		return pfd;
	}
	if (fstat(pfd, st) < 0 || !S_ISREG(st->st_mode)) {
		ferr(r, "%s: is %s; only regular files can be read%s", spath, ftype(st->st_mode),
		     S_ISDIR(st->st_mode) ? " (use glob to list it)" : "");
		close(pfd);
		return -EINVAL;
	}
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
	fd = open(proc, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	close(pfd);
	if (fd < 0) {
		ferr(r, "%s: %s", spath, strerror(errno));
		return -errno;
	}
	return fd;
}

/* Reads up to cap+1 bytes; *len > cap means the file is larger than cap. */
static char *read_capped(int fd, size_t cap, size_t *len)
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

static void read_fn(const tool_session *s, json_t *a, struct fres *r)
{
	json_t *vr = json_object_get(a, "view_range");
	char spath[PATH_MAX];
	long start = 1, end = 0;
	bool ranged = false;
	struct stat st;
	int fd;

	if (tool_path(s, json_object_get(a, "file_path"), spath, sizeof spath, r, "file_path") < 0)
		return;
	if (vr && !json_is_null(vr)) {
		if (!json_is_array(vr) || json_array_size(vr) != 2 || !json_is_integer(json_array_get(vr, 0)) ||
		    !json_is_integer(json_array_get(vr, 1))) {
			ferr(r, "'view_range' must be [start, end] (1-indexed, inclusive; end <= 0 reads to the end)");
			return;
		}
		json_int_t a0 = json_integer_value(json_array_get(vr, 0)), a1 = json_integer_value(json_array_get(vr, 1));
		if (a0 < 1 || a0 > LONG_MAX / 2 || a1 > LONG_MAX / 2 || (a1 > 0 && a1 < a0)) {
			ferr(r, "'view_range' [%lld, %lld] is not a valid range", (long long)a0, (long long)a1);
			return;
		}
		start = (long)a0;
		end = (long)a1;
		ranged = true;
	}
	fd = open_regular(s, spath, &st, r);
	if (fd < 0)
		return;
	if (!ranged || (size_t)st.st_size <= TOOL_READ_CAP) {
		size_t len, off, n;
		char *b;
		if ((size_t)st.st_size > TOOL_READ_CAP) {
			ferr(r, "%s: file is %lld bytes, over the %u KiB read limit; pass view_range or use bash (head, sed -n)",
			     spath, (long long)st.st_size, TOOL_READ_CAP / 1024);
			goto out;
		}
		b = read_capped(fd, TOOL_READ_CAP, &len);
		if (!b) {
			ferr(r, "out of memory");
			goto out;
		}
		if (len > TOOL_READ_CAP && !ranged) {
			ferr(r, "%s: file grew over the %u KiB read limit; pass view_range or use bash", spath,
			     TOOL_READ_CAP / 1024);
		} else if (len > TOOL_READ_CAP) {
			ferr(r, "%s: the file is larger than it said; use bash for it", spath);
		} else if (ttx_line_range(b, len, start, end, &off, &n) < 0) {
			size_t lines = 0;
			for (size_t i = 0; i < len; i++)
				lines += b[i] == '\n';
			if (len && b[len - 1] != '\n')
				lines++;
			ferr(r, "%s: view_range starts at line %ld but the file has %zu lines", spath, start, lines);
		} else {
			text_addn(&r->t, b + off, n);
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
					if (r->t.len >= TOOL_READ_CAP) {
						over = true;
						break;
					}
					text_addn(&r->t, buf + i, 1);
				}
				if (buf[i] == '\n')
					line++;
			}
			if (over || (end > 0 && line > end) || scanned >= TOOL_READ_SCAN_CAP)
				break;
		}
		if (over)
			ferr(r, "%s: the requested lines are over the %u KiB read limit; ask for fewer lines", spath,
			     TOOL_READ_CAP / 1024);
		else if (line < start || (line == start && r->t.len == 0))
			ferr(r, "%s: view_range starts at line %ld but the file has %ld lines%s", spath, start, line - 1,
			     scanned >= TOOL_READ_SCAN_CAP ? " within the scanned part" : "");
	}
out:
	close(fd);
}

/* ---- write and edit ---------------------------------------------------------------------------- */

/* Opens (creating as needed) the directory spath inside the root; returns an O_PATH|O_DIRECTORY fd. */
static int mkdirs_in_root(const tool_session *s, const char *spath, struct fres *r)
{
	char pfx[PATH_MAX];
	int fd = open_in_root(s, spath, O_PATH | O_DIRECTORY), parent = -1;
	size_t len = strlen(spath);

	if (fd >= 0 || fd != -ENOENT) {
		if (fd < 0)
			ferr(r, "%s: %s", spath, errtext(-fd));
		return fd;
	}
	/* Walk the prefixes; each missing one is made with mkdirat() in its parent's fd and then reopened
	 * through the root, so a racing symlink is still resolved inside the sandbox. */
	parent = open_in_root(s, "/", O_PATH | O_DIRECTORY);
	for (size_t i = 1; i <= len; i++) {
		if (i < len && spath[i] != '/')
			continue;
		memcpy(pfx, spath, i);
		pfx[i] = 0;
		fd = open_in_root(s, pfx, O_PATH | O_DIRECTORY);
		if (fd == -ENOENT && parent >= 0) {
			const char *comp = strrchr(pfx, '/') + 1;
			if (mkdirat(parent, comp, 0755) < 0 && errno != EEXIST) {
				ferr(r, "cannot create directory %s: %s", pfx, strerror(errno));
				close(parent);
				return -errno;
			}
			fd = open_in_root(s, pfx, O_PATH | O_DIRECTORY);
		}
		if (fd < 0) {
			ferr(r, "%s: %s", pfx, errtext(-fd));
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
static int resolve_target(const tool_session *s, char *spath, bool create_dirs, int *dirfd, const char **base,
			  struct stat *st, bool *exists, struct fres *r)
{
	for (int hops = 0;; hops++) {
		char *slash = strrchr(spath, '/');
		char dir[PATH_MAX], target[PATH_MAX], next[PATH_MAX];
		ssize_t tl;
		int dfd;

		if (!slash || slash[1] == 0) {
			ferr(r, "%s: is a directory", spath);
			return -EISDIR;
		}
		if (slash == spath)
			snprintf(dir, sizeof dir, "/");
		else
			snprintf(dir, sizeof dir, "%.*s", (int)(slash - spath), spath);
		if (create_dirs) {
			dfd = mkdirs_in_root(s, dir, r);
		} else {
			dfd = open_in_root(s, dir, O_PATH | O_DIRECTORY);
			if (dfd < 0)
				ferr(r, "%s: %s", dir, errtext(-dfd));
		}
		if (dfd < 0)
			return dfd;
		if (fstatat(dfd, slash + 1, st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT) {
				ferr(r, "%s: %s", spath, strerror(errno));
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
				ferr(r, "%s: is %s; only regular files can be written", spath, ftype(st->st_mode));
				close(dfd);
				return -EINVAL;
			}
			*exists = true;
			*dirfd = dfd;
			*base = slash + 1;
			return 0;
		}
		if (hops >= 40) {
			ferr(r, "%s: too many levels of symbolic links", spath);
			close(dfd);
			return -ELOOP;
		}
		tl = readlinkat(dfd, slash + 1, target, sizeof target - 1);
		close(dfd);
		if (tl <= 0) {
			ferr(r, "%s: unreadable symbolic link", spath);
			return -EINVAL;
		}
		target[tl] = 0;
		/* The link text is a sandbox path (absolute ones start at the sandbox root). */
		if (ttx_path_norm(dir, target, (size_t)tl, next, sizeof next) < 0) {
			ferr(r, "%s: symbolic link target is not usable", spath);
			return -EINVAL;
		}
		snprintf(spath, PATH_MAX, "%s", next);
	}
}

/* Atomically replaces dirfd/base with data: temp file in the same directory, fsync, rename. */
static int replace_file(int dirfd, const char *base, const char *data, size_t len, mode_t mode, const char *spath,
			struct fres *r)
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
		ferr(r, "%s: cannot create a temporary file: %s", spath, strerror(errno));
		return -errno;
	}
	if (fchmod(fd, mode) < 0 || !write_all(fd, data, len) || fsync(fd) < 0) {
		rc = -errno;
		ferr(r, "%s: write failed: %s", spath, strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = -errno;
		ferr(r, "%s: write failed: %s", spath, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (renameat(dirfd, tmp, dirfd, base) < 0) {
		rc = -errno;
		ferr(r, "%s: %s", spath, strerror(errno));
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlinkat(dirfd, tmp, 0);
	return rc;
}

static void write_fn(const tool_session *s, json_t *a, struct fres *r)
{
	json_t *c = json_object_get(a, "content");
	char spath[PATH_MAX];
	const char *base;
	struct stat st;
	bool exists;
	int dfd;
	mode_t mode = 0644;

	if (tool_path(s, json_object_get(a, "file_path"), spath, sizeof spath, r, "file_path") < 0)
		return;
	if (!json_is_string(c)) {
		ferr(r, "'content' must be a string");
		return;
	}
	if (json_string_length(c) > TOOL_WRITE_CAP) {
		ferr(r, "'content' is over the %u MiB write limit", TOOL_WRITE_CAP >> 20);
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
		text_printf(&r->t, "wrote %zu bytes to %s", json_string_length(c), spath);
	close(dfd);
}

static void edit_fn(const tool_session *s, json_t *a, struct fres *r)
{
	json_t *o = json_object_get(a, "old_string"), *n = json_object_get(a, "new_string");
	json_t *all = json_object_get(a, "replace_all");
	char spath[PATH_MAX], *buf = NULL, *out = NULL;
	const char *base;
	struct stat st, st2;
	bool exists;
	size_t len, outlen, count;
	int dfd, fd, rc;

	if (tool_path(s, json_object_get(a, "file_path"), spath, sizeof spath, r, "file_path") < 0)
		return;
	if (!json_is_string(o) || !json_is_string(n)) {
		ferr(r, "'old_string' and 'new_string' must be strings");
		return;
	}
	if (all && !json_is_boolean(all) && !json_is_null(all)) {
		ferr(r, "'replace_all' must be a boolean");
		return;
	}
	if (json_string_length(o) == 0) {
		ferr(r, "'old_string' is empty; use write to create or overwrite a file");
		return;
	}
	if (resolve_target(s, spath, false, &dfd, &base, &st, &exists, r) < 0)
		return;
	if (!exists) {
		ferr(r, "%s: No such file or directory", spath);
		goto out;
	}
	fd = openat(dfd, base, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st2) < 0 || !S_ISREG(st2.st_mode) || st2.st_ino != st.st_ino || st2.st_dev != st.st_dev) {
		ferr(r, "%s: changed while opening it, or not a regular file", spath);
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if ((size_t)st2.st_size > TOOL_EDIT_CAP) {
		ferr(r, "%s: file is over the %u MiB edit limit; use bash", spath, TOOL_EDIT_CAP >> 20);
		close(fd);
		goto out;
	}
	buf = read_capped(fd, TOOL_EDIT_CAP, &len);
	close(fd);
	if (!buf || len > TOOL_EDIT_CAP) {
		ferr(r, "%s: cannot read it within the %u MiB edit limit", spath, TOOL_EDIT_CAP >> 20);
		goto out;
	}
	rc = ttx_edit(buf, len, json_string_value(o), json_string_length(o), json_string_value(n), json_string_length(n),
		      json_is_true(all), TOOL_EDIT_CAP, &out, &outlen, &count);
	if (rc == -ENOENT) {
		ferr(r, "%s: old_string not found in the file; nothing was changed", spath);
	} else if (rc == -EEXIST) {
		ferr(r, "%s: old_string occurs %zu times; add context to make it unique or set replace_all", spath, count);
	} else if (rc == -EFBIG) {
		ferr(r, "%s: the result would be over the %u MiB edit limit", spath, TOOL_EDIT_CAP >> 20);
	} else if (rc < 0) {
		ferr(r, "%s: %s", spath, strerror(-rc));
	} else if (replace_file(dfd, base, out, outlen, st.st_mode & 07777, spath, r) == 0) {
		text_printf(&r->t, "replaced %zu occurrence%s in %s", count, count == 1 ? "" : "s", spath);
	}
out:
	free(buf);
	free(out);
	close(dfd);
}

/* ---- glob and grep walks -------------------------------------------------------------------------- */

struct walk {
	size_t entries;
	bool capped;
	uint64_t deadline;
	void (*visit)(struct walk *w, int dirfd, const char *name, const char *rel, const struct stat *st);
	void *ud;
	bool stop;
};

static void walk_dir(struct walk *w, int dfd, const char *rel, int depth)
{
	DIR *d;
	struct dirent *e;
	int fd = dup(dfd);

	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while (!w->stop && (e = readdir(d))) {
		char child[PATH_MAX];
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (++w->entries > TOOL_WALK_ENTRIES || now_ms() > w->deadline) {
			w->capped = true;
			w->stop = true;
			break;
		}
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (snprintf(child, sizeof child, "%s%s%s", rel, *rel ? "/" : "", e->d_name) >= (int)sizeof child)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int cfd;
			if (!strcmp(e->d_name, ".git") || !strcmp(e->d_name, "node_modules"))
				continue;
			if (depth + 1 > TOOL_WALK_DEPTH) {
				w->capped = true;
				continue;
			}
			/* One component, no symlink followed: a swapped-in link is simply not descended. */
			cfd = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (cfd < 0)
				continue;
			walk_dir(w, cfd, child, depth + 1);
			close(cfd);
		} else {
			w->visit(w, dfd, e->d_name, child, &st);
		}
	}
	closedir(d);
}

static int open_search_root(const tool_session *s, json_t *a, char *spath, struct fres *r)
{
	json_t *p = json_object_get(a, "path");
	int fd;
	if (p && !json_is_null(p)) {
		if (tool_path(s, p, spath, PATH_MAX, r, "path") < 0)
			return -EINVAL;
	} else {
		snprintf(spath, PATH_MAX, "%s", s->b.cwd);
	}
	fd = open_in_root(s, spath, O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		if (fd == -ENOTDIR)
			return fd;
		ferr(r, "%s: %s", spath, errtext(-fd));
	}
	return fd;
}

struct gmatch {
	char *path;
	int64_t mtime_ns;
};

struct glob_state {
	char **pats;
	struct gmatch *m;
	size_t n, cap;
	bool oom;
};

static void glob_visit(struct walk *w, int dirfd, const char *name, const char *rel, const struct stat *st)
{
	struct glob_state *g = w->ud;
	(void)dirfd;
	(void)name;
	for (char **p = g->pats; *p; p++) {
		if (!ttx_glob_match(*p, rel))
			continue;
		if (g->n == g->cap) {
			size_t nc = g->cap ? g->cap * 2 : 64;
			struct gmatch *nm = realloc(g->m, nc * sizeof *nm);
			if (!nm) {
				g->oom = w->stop = true;
				return;
			}
			g->m = nm;
			g->cap = nc;
		}
		g->m[g->n].path = strdup(rel);
		g->m[g->n].mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
		if (g->m[g->n].path)
			g->n++;
		return;
	}
}

static int gmatch_cmp(const void *a, const void *b)
{
	const struct gmatch *x = a, *y = b;
	if (x->mtime_ns != y->mtime_ns)
		return x->mtime_ns > y->mtime_ns ? -1 : 1;
	return strcmp(x->path, y->path);
}

static void glob_fn(const tool_session *s, json_t *a, struct fres *r)
{
	json_t *p = json_object_get(a, "pattern");
	char spath[PATH_MAX], err[160];
	struct glob_state g = { 0 };
	struct walk w = { .visit = glob_visit, .ud = &g, .deadline = now_ms() + s->b.file_timeout_ms * 2 / 3 };
	size_t n;
	int fd;

	if (!json_is_string(p)) {
		ferr(r, "'pattern' must be a string");
		return;
	}
	if (ttx_glob_check(json_string_value(p), json_string_length(p), err, sizeof err) < 0) {
		ferr(r, "pattern: %s", err);
		return;
	}
	if (ttx_glob_expand(json_string_value(p), &g.pats, &n) < 0) {
		ferr(r, "pattern: too many {} alternatives");
		return;
	}
	fd = open_search_root(s, a, spath, r);
	if (fd == -ENOTDIR)
		ferr(r, "%s: not a directory", spath);
	if (fd < 0)
		goto out;
	walk_dir(&w, fd, "", 0);
	close(fd);
	if (g.n)
		qsort(g.m, g.n, sizeof *g.m, gmatch_cmp);
	for (size_t i = 0; i < g.n && i < TOOL_GLOB_RESULTS; i++)
		text_printf(&r->t, "%s%s%s\n", spath, strcmp(spath, "/") ? "/" : "", g.m[i].path);
	if (g.n > TOOL_GLOB_RESULTS)
		text_printf(&r->t, "[%zu more matches not shown; newest %u listed]\n", g.n - TOOL_GLOB_RESULTS,
			    TOOL_GLOB_RESULTS);
	if (g.n == 0)
		text_add(&r->t, "No files matched\n");
	if (w.capped)
		text_printf(&r->t, "[search stopped at the walk limit (%u entries, depth %d or time)]\n", TOOL_WALK_ENTRIES,
			    TOOL_WALK_DEPTH);
out:
	for (size_t i = 0; i < g.n; i++)
		free(g.m[i].path);
	free(g.m);
	ttx_strv_free(g.pats);
}

struct grep_state {
	regex_t re;
	const char *root; /* sandbox path of the search root */
	struct text *out;
	size_t matches, skipped;
};

static void grep_buf(struct grep_state *g, const char *spath, char *b, size_t len, struct walk *w)
{
	size_t i = 0;
	long line = 1;

	while (i < len && !g->out->full) {
		char *nl = memchr(b + i, '\n', len - i);
		size_t e = nl ? (size_t)(nl - b) : len;
		char saved = b[e];
		b[e] = 0;
		if (regexec(&g->re, b + i, 0, NULL, 0) == 0) {
			size_t tl = e - i;
			if (tl > TOOL_GREP_LINE)
				tl = ttx_utf8_prefix(b + i, TOOL_GREP_LINE);
			text_printf(g->out, "%s:%ld:", spath, line);
			text_addn(g->out, b + i, tl);
			text_add(g->out, "\n");
			g->matches++;
		}
		b[e] = saved;
		i = e + 1;
		line++;
	}
	if (g->out->full && w)
		w->stop = true;
}

static void grep_fd(struct grep_state *g, int fd, const char *spath, struct walk *w)
{
	size_t len;
	char *b;
	struct stat st;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > TOOL_GREP_FILE_CAP) {
		g->skipped++;
		return;
	}
	b = read_capped(fd, TOOL_GREP_FILE_CAP, &len);
	if (!b)
		return;
	/* Binary files (a NUL early on) are skipped, as grep -I does. */
	if (len > TOOL_GREP_FILE_CAP || memchr(b, 0, len < 8192 ? len : 8192))
		g->skipped++;
	else
		grep_buf(g, spath, b, len, w);
	free(b);
}

static void grep_visit(struct walk *w, int dirfd, const char *name, const char *rel, const struct stat *st)
{
	struct grep_state *g = w->ud;
	char spath[PATH_MAX];
	int fd;

	if (!S_ISREG(st->st_mode))
		return;
	fd = openat(dirfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return;
	snprintf(spath, sizeof spath, "%s%s%s", g->root, strcmp(g->root, "/") ? "/" : "", rel);
	grep_fd(g, fd, spath, w);
	close(fd);
}

static void grep_fn(const tool_session *s, json_t *a, struct fres *r)
{
	json_t *p = json_object_get(a, "pattern");
	char spath[PATH_MAX];
	struct grep_state g = { .out = &r->t };
	struct walk w = { .visit = grep_visit, .ud = &g, .deadline = now_ms() + s->b.file_timeout_ms * 2 / 3 };
	int fd, rc;

	if (!json_is_string(p) || json_string_length(p) == 0 || memchr(json_string_value(p), 0, json_string_length(p))) {
		ferr(r, "'pattern' must be a non-empty string without NUL bytes");
		return;
	}
	rc = regcomp(&g.re, json_string_value(p), REG_EXTENDED | REG_NOSUB | REG_NEWLINE);
	if (rc != 0) {
		char e[160];
		regerror(rc, &g.re, e, sizeof e);
		ferr(r, "pattern: invalid regular expression: %s", e);
		return;
	}
	r->t.limit = TOOL_GREP_CAP;
	g.root = spath;
	fd = open_search_root(s, a, spath, r);
	if (fd == -ENOTDIR) {
		struct stat st;
		fd = open_regular(s, spath, &st, r);
		if (fd >= 0) {
			grep_fd(&g, fd, spath, NULL);
			close(fd);
		}
		fd = -1;
		if (r->err)
			goto out;
	} else if (fd < 0) {
		goto out;
	} else {
		walk_dir(&w, fd, "", 0);
		close(fd);
	}
	if (r->t.full) {
		r->t.full = false;
		r->t.limit = 0;
		text_printf(&r->t, "\n[output truncated at %u KiB]\n", TOOL_GREP_CAP / 1024);
	} else if (g.matches == 0) {
		text_add(&r->t, "No matches found\n");
	}
	if (w.capped)
		text_printf(&r->t, "[search stopped at the walk limit (%u entries, depth %d or time)]\n", TOOL_WALK_ENTRIES,
			    TOOL_WALK_DEPTH);
out:
	regfree(&g.re);
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

static json_t *result_of(char *text, bool is_error)
{
	json_t *r;
	if (!text)
		return mcps_text_result("internal error: out of memory", 29, true);
	r = mcps_text_result(text, strlen(text), is_error);
	free(text);
	return r;
}

int tool_call(void *session, const char *name, json_t *args, json_t **result)
{
	tool_session *t = session;
	file_fn fn = NULL;
	bool is_error = true;
	char *text;

	if (!strcmp(name, "bash")) {
		json_t *c = json_object_get(args, "command"), *rs = json_object_get(args, "restart");
		json_t *to = json_object_get(args, "timeout_ms");
		unsigned tmo = 0;
		if ((c && !json_is_string(c) && !json_is_null(c)) || (rs && !json_is_boolean(rs) && !json_is_null(rs))) {
			*result = result_of(dupf("bash: 'command' must be a string and 'restart' a boolean"), true);
			return 0;
		}
		if (to && !json_is_null(to)) {
			if (!json_is_integer(to) || json_integer_value(to) < 1 ||
			    json_integer_value(to) > TOOL_BASH_MAX_TIMEOUT_MS) {
				*result = result_of(dupf("bash: 'timeout_ms' must be an integer from 1 to %u",
							 TOOL_BASH_MAX_TIMEOUT_MS),
						    true);
				return 0;
			}
			tmo = (unsigned)json_integer_value(to);
		}
		text = tool_bash(t, json_is_string(c) ? json_string_value(c) : NULL, json_is_string(c) ? json_string_length(c) : 0,
				 json_is_true(rs), tmo, &is_error);
		*result = result_of(text, is_error);
		return 0;
	}
	if (!strcmp(name, "read"))
		fn = read_fn;
	else if (!strcmp(name, "write"))
		fn = write_fn;
	else if (!strcmp(name, "edit"))
		fn = edit_fn;
	else if (!strcmp(name, "glob"))
		fn = glob_fn;
	else if (!strcmp(name, "grep"))
		fn = grep_fn;
	else
		return -ENOENT;
	text = run_file_tool(t, fn, args, &is_error);
	*result = result_of(text, is_error);
	return 0;
}

json_t *tool_list_json(void)
{
	return json_pack(
		"[{s:s,s:s,s:{s:s,s:{s:{s:s,s:s},s:{s:s,s:s},s:{s:s,s:i,s:i,s:s}}}},"
		"{s:s,s:s,s:{s:s,s:{s:{s:s,s:s},s:{s:s,s:{s:s},s:i,s:i,s:s}},s:[s]}},"
		"{s:s,s:s,s:{s:s,s:{s:{s:s,s:s},s:{s:s,s:s}},s:[s,s]}},"
		"{s:s,s:s,s:{s:s,s:{s:{s:s,s:s},s:{s:s,s:s},s:{s:s,s:s},s:{s:s,s:s}},s:[s,s,s]}},"
		"{s:s,s:s,s:{s:s,s:{s:{s:s,s:s},s:{s:s,s:s}},s:[s]}},"
		"{s:s,s:s,s:{s:s,s:{s:{s:s,s:s},s:{s:s,s:s}},s:[s]}}]",
		/* bash */
		"name", "bash", "description",
		"Run a command in a persistent bash shell inside the sandbox. State (cwd, variables) persists between "
		"calls. stdin is /dev/null, stderr is merged into stdout, output is capped at 100 KiB (the tail is "
		"kept) and ANSI escapes are stripped. A non-zero exit code is an error. Default timeout 120 s.",
		"inputSchema", "type", "object", "properties", "command", "type", "string", "description",
		"The command to run.", "restart", "type", "boolean", "description",
		"Kill the shell and every process of the sandbox, then start a fresh shell.", "timeout_ms", "type",
		"integer", "minimum", 1, "maximum", (int)TOOL_BASH_MAX_TIMEOUT_MS, "description",
		"Timeout for this command in milliseconds (default 120000).",
		/* read */
		"name", "read", "description",
		"Read a text file in the sandbox. Optional view_range [start, end] is 1-indexed and inclusive; end <= 0 "
		"reads to the end of the file. Files over 256 KiB need a view_range.",
		"inputSchema", "type", "object", "properties", "file_path", "type", "string", "description",
		"Path of the file (absolute, or relative to the workspace).", "view_range", "type", "array", "items",
		"type", "integer", "minItems", 2, "maxItems", 2, "description", "[start_line, end_line]", "required",
		"file_path",
		/* write */
		"name", "write", "description",
		"Write a file atomically (temporary file + rename), creating parent directories. Replaces the file if it "
		"exists.",
		"inputSchema", "type", "object", "properties", "file_path", "type", "string", "description",
		"Path of the file (absolute, or relative to the workspace).", "content", "type", "string", "description",
		"The complete new content.", "required", "file_path", "content",
		/* edit */
		"name", "edit", "description",
		"Replace old_string with new_string in a file. old_string must occur exactly once unless replace_all is "
		"true. The file is rewritten atomically.",
		"inputSchema", "type", "object", "properties", "file_path", "type", "string", "description",
		"Path of the file (absolute, or relative to the workspace).", "old_string", "type", "string", "description",
		"Exact text to replace.", "new_string", "type", "string", "description", "Replacement text.", "replace_all",
		"type", "boolean", "description", "Replace every occurrence.", "required", "file_path", "old_string",
		"new_string",
		/* glob */
		"name", "glob", "description",
		"Find files by glob pattern (** for any depth, {a,b} alternatives). Relative patterns only, no '..'. "
		"Skips .git and node_modules. Returns at most 200 paths, newest first.",
		"inputSchema", "type", "object", "properties", "pattern", "type", "string", "description",
		"Glob pattern, e.g. **/*.c", "path", "type", "string", "description",
		"Directory to search (default: the workspace).", "required", "pattern",
		/* grep */
		"name", "grep", "description",
		"Search file contents with a POSIX extended regular expression. Output lines are path:line:text, capped "
		"at 100 KiB; binary files are skipped.",
		"inputSchema", "type", "object", "properties", "pattern", "type", "string", "description",
		"Regular expression (POSIX ERE).", "path", "type", "string", "description",
		"File or directory to search (default: the workspace).", "required", "pattern");
}
