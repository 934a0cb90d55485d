/* The sandbox tools (see tools.h). */
#include "sandbox/tools/tools.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "sandbox/tools/tool_text.h"
#include "sandbox/tools/tool_wire.h"

struct tool_session {
	struct tool_backend b;
	void *shell; /* backend proc of the persistent shell, NULL when none */
	int shell_in, shell_out;
	void *worker; /* backend proc of the file tool worker, NULL when none */
	int worker_in, worker_out;
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
	t->shell_in = t->shell_out = t->worker_in = t->worker_out = -1;
	return t;
}

static void worker_drop(tool_session *t);

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
	worker_drop(t);
	free(t);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
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
	struct ttext_ansi ansi;
	struct ttext_tail tail;
};

static void bash_emit(void *ud, const char *data, size_t len)
{
	struct bash_sink *s = ud;
	char buf[4096];

	while (len) {
		size_t n = len < sizeof buf ? len : sizeof buf;
		memcpy(buf, data, n);
		ttext_tail_push(&s->tail, buf, ttext_ansi_strip(&s->ansi, buf, n));
		data += n;
		len -= n;
	}
}

static int make_nonce(char out[TTEXT_NONCE_LEN + 1])
{
	unsigned char r[TTEXT_NONCE_LEN / 2];
	static const char hex[] = "0123456789abcdef";
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
		return -EIO;
	for (size_t i = 0; i < sizeof r; i++) {
		out[2 * i] = hex[r[i] >> 4];
		out[2 * i + 1] = hex[r[i] & 15];
	}
	out[TTEXT_NONCE_LEN] = 0;
	return 0;
}

static char *bash_result(struct bash_sink *s, const char *note, bool *is_error, bool err)
{
	size_t len, clen;
	bool trunc;
	char *raw = ttext_tail_take(&s->tail, &len, &trunc), *clean, *out;

	if (!raw)
		return NULL;
	clean = ttext_utf8_clean(raw, len, &clen);
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
	struct ttext_frame fr;
	char nonce[TTEXT_NONCE_LEN + 1], *wrap = NULL, *res = NULL, note[256];
	size_t wlen = 0, woff = 0;
	uint64_t deadline;
	int rc, ws;

	*is_error = true;
	if (restart) {
		shell_drop(t, true);
		worker_drop(t); /* kill_all ends it too */
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
		rc = ttext_bash_wrap(cmd, cmdlen, nonce, &wrap, &wlen);
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
	if (ttext_tail_init(&sink.tail, TOOL_BASH_OUTPUT_CAP) < 0) {
		free(wrap);
		return NULL;
	}
	ttext_frame_init(&fr, nonce);
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
			while ((n = read(t->shell_out, buf, sizeof buf)) > 0 &&
			       !ttext_frame_feed(&fr, buf, (size_t)n, bash_emit, &sink))
				;
			ttext_frame_flush(&fr, bash_emit, &sink);
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
			if (ttext_frame_feed(&fr, buf, (size_t)n, bash_emit, &sink)) {
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
		ttext_frame_flush(&fr, bash_emit, &sink);
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
	ttext_tail_free(&sink.tail);
	free(wrap);
	return res ? res : dupf("bash: internal error");
}

/* ---- file tools: requests to the tool worker inside the sandbox -------------------------------- */

static void worker_drop(tool_session *t)
{
	if (!t->worker)
		return;
	t->b.shell_kill(t->b.ud, t->worker);
	t->b.shell_free(t->b.ud, t->worker);
	t->worker = NULL;
	t->worker_in = t->worker_out = -1;
}

/* Why the worker stopped answering, for the error text. */
static char *worker_gone(tool_session *t, const char *what)
{
	int ws = 0, rc = t->b.shell_wait(t->b.ud, t->worker, 1000, &ws);
	char st[96];
	if (rc == 1 && WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL)
		snprintf(st, sizeof st, "killed (SIGKILL: the session's memory limit, or a restart)");
	else if (rc == 1 && WIFSIGNALED(ws))
		snprintf(st, sizeof st, "killed by signal %d", WTERMSIG(ws));
	else if (rc == 1)
		snprintf(st, sizeof st, "exited with code %d", WEXITSTATUS(ws));
	else
		snprintf(st, sizeof st, "still running");
	worker_drop(t);
	return dupf("file tool failed: %s; the tool worker %s and restarts on the next call", what, st);
}

/* Stray bytes where a reply frame should be (a loader error, a sanitizer report): shown, cleaned and
 * capped, never trusted. */
static char *worker_garbage(tool_session *t, const char *first, size_t n)
{
	char buf[512], *clean, *res;
	size_t len = n < sizeof buf ? n : sizeof buf;
	memcpy(buf, first, len);
	for (int i = 0; i < 10 && len < sizeof buf; i++) {
		struct pollfd p = { t->worker_out, POLLIN, 0 };
		if (poll(&p, 1, 50) <= 0)
			break;
		ssize_t k = read(t->worker_out, buf + len, sizeof buf - len);
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	clean = ttext_utf8_clean(buf, len, NULL);
	res = worker_gone(t, clean ? clean : "unreadable output");
	free(clean);
	return res;
}

static int worker_start(tool_session *t, char **res)
{
	int rc;
	if (t->worker)
		return 0;
	if (!t->b.worker_spawn) {
		*res = dupf("file tools are not available in this session");
		return -ENOTSUP;
	}
	rc = t->b.worker_spawn(t->b.ud, &t->worker, &t->worker_in, &t->worker_out);
	if (rc < 0) {
		t->worker = NULL;
		*res = dupf("file tool failed: cannot start the tool worker in the sandbox: %s", strerror(-rc));
		return rc;
	}
	/* Our end of its stdin: non-blocking, so the deadline holds while a large request goes out. */
	(void)fcntl(t->worker_in, F_SETFL, fcntl(t->worker_in, F_GETFL) | O_NONBLOCK);
	return 0;
}

/* One request, one reply, within the file timeout; a timeout or a cancel kills the worker. */
static char *run_file_tool(tool_session *t, const char *name, json_t *args, bool *is_error)
{
	json_t *req = json_pack("{s:s,s:s,s:I,s:O}", "tool", name, "cwd", t->b.cwd, "timeout_ms",
				(json_int_t)t->b.file_timeout_ms, "args", args);
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL, *res = NULL;
	size_t blen = body ? strlen(body) : 0, off = 0;
	uint8_t hdr[TWIRE_HDR];
	struct twire_dec d;
	uint64_t deadline = now_ms() + t->b.file_timeout_ms;

	*is_error = true;
	twire_dec_init(&d, TWIRE_REPLY_CAP);
	json_decref(req);
	if (!body) {
		res = dupf("internal error: out of memory");
		goto out;
	}
	if (blen > TWIRE_REQ_CAP) {
		res = dupf("%s: the arguments are %zu bytes encoded, over the %u MiB request limit", name, blen,
			   TWIRE_REQ_CAP >> 20);
		goto out;
	}
	if (worker_start(t, &res) < 0)
		goto out;
	twire_header(hdr, 0, (uint32_t)blen);
	for (;;) {
		struct pollfd p[3] = { { t->worker_out, POLLIN, 0 },
				       { off < TWIRE_HDR + blen ? t->worker_in : -1, POLLOUT, 0 },
				       { t->b.cancel_fd ? *t->b.cancel_fd : -1, POLLIN, 0 } };
		uint64_t now = now_ms();
		char buf[65536];
		ssize_t n;

		if (now >= deadline) {
			worker_drop(t);
			res = dupf("file tool timed out after %u ms; the tool worker was killed and restarts on the next call",
				   t->b.file_timeout_ms);
			break;
		}
		if (poll(p, 3, (int)(deadline - now)) < 0 && errno != EINTR) {
			res = worker_gone(t, strerror(errno));
			break;
		}
		if (p[2].revents & POLLIN) {
			worker_drop(t);
			res = dupf("cancelled by the client");
			break;
		}
		if (p[1].revents & (POLLOUT | POLLERR | POLLHUP)) {
			n = off < TWIRE_HDR ? write(t->worker_in, hdr + off, TWIRE_HDR - off)
					    : write(t->worker_in, body + off - TWIRE_HDR, blen - (off - TWIRE_HDR));
			if (n > 0)
				off += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				off = TWIRE_HDR + blen; /* gone: EOF on its output tells the rest */
		}
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = read(t->worker_out, buf, sizeof buf);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			res = worker_gone(t, "the tool worker closed its output");
			break;
		}
		size_t used;
		int rc = twire_dec_feed(&d, buf, (size_t)n, &used);
		if (rc == -EBADMSG) {
			res = worker_garbage(t, buf, (size_t)n);
			break;
		}
		if (rc < 0) {
			res = worker_gone(t, rc == -EMSGSIZE ? "the reply is over the size limit" : strerror(-rc));
			break;
		}
		if (rc == 1) {
			if (used != (size_t)n || off < TWIRE_HDR + blen) {
				res = worker_gone(t, "the reply came out of turn");
				break;
			}
			*is_error = d.flags & TWIRE_F_ERROR;
			res = ttext_utf8_clean(d.payload, d.len, NULL);
			break;
		}
	}
out:
	twire_dec_reset(&d);
	free(body);
	return res;
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

json_t *tool_result(const char *text, size_t len, bool is_error)
{
	json_t *t = json_stringn(text, len);
	if (!t)
		return NULL;
	return json_pack("{s:[{s:s,s:o}],s:b}", "content", "type", "text", "text", t, "isError", is_error);
}

static json_t *result_of(char *text, bool is_error)
{
	json_t *r;
	if (!text)
		return tool_result("internal error: out of memory", 29, true);
	r = tool_result(text, strlen(text), is_error);
	free(text);
	return r;
}

/* bash's arguments; invalid ones are error results, so that a model can correct itself. */
static char *bash_call(tool_session *t, const struct tool_def *d, json_t *args, bool *is_error)
{
	json_t *c = json_object_get(args, "command"), *rs = json_object_get(args, "restart");
	json_t *to = json_object_get(args, "timeout_ms");
	unsigned tmo = 0;

	(void)d;
	*is_error = true;
	if ((c && !json_is_string(c) && !json_is_null(c)) || (rs && !json_is_boolean(rs) && !json_is_null(rs)))
		return dupf("bash: 'command' must be a string and 'restart' a boolean");
	if (to && !json_is_null(to)) {
		if (!json_is_integer(to) || json_integer_value(to) < 1 || json_integer_value(to) > TOOL_BASH_MAX_TIMEOUT_MS)
			return dupf("bash: 'timeout_ms' must be an integer from 1 to %u", TOOL_BASH_MAX_TIMEOUT_MS);
		tmo = (unsigned)json_integer_value(to);
	}
	return tool_bash(t, json_is_string(c) ? json_string_value(c) : NULL, json_is_string(c) ? json_string_length(c) : 0,
			 json_is_true(rs), tmo, is_error);
}

static char *file_call(tool_session *t, const struct tool_def *d, json_t *args, bool *is_error)
{
	return run_file_tool(t, d->name, args, is_error);
}

int tool_call(void *session, const char *name, json_t *args, json_t **result)
{
	const struct tool_def *d = tool_find(name);
	bool is_error = true;
	char *text;

	if (!d)
		return -ENOENT;
	text = d->call(session, d, args, &is_error); /* before result_of reads is_error */
	*result = result_of(text, is_error);
	return 0;
}

/* ---- the table ---------------------------------------------------------------------------------- */

#define PATH_PROP "{\"type\":\"string\",\"description\":\"Path of the file (absolute, or relative to the workspace).\"}"

const struct tool_def tool_table[] = {
	{ "bash",
	  "Run a command in a persistent bash shell inside the sandbox. State (cwd, variables) persists between "
	  "calls. stdin is /dev/null, stderr is merged into stdout, output is capped at 100 KiB (the tail is "
	  "kept) and ANSI escapes are stripped. A non-zero exit code is an error. Default timeout 120 s.",
	  "{\"type\":\"object\",\"properties\":{"
	  "\"command\":{\"type\":\"string\",\"description\":\"The command to run.\"},"
	  "\"restart\":{\"type\":\"boolean\",\"description\":"
	  "\"Kill the shell and every process of the sandbox, then start a fresh shell.\"},"
	  "\"timeout_ms\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":" TOOL_BASH_MAX_TIMEOUT_TEXT ",\"description\":"
	  "\"Timeout for this command in milliseconds (default 120000).\"}}}",
	  0, bash_call, NULL },
	{ "read",
	  "Read a text file in the sandbox. Optional view_range [start, end] is 1-indexed and inclusive; end <= 0 "
	  "reads to the end of the file. Files over 256 KiB need a view_range.",
	  "{\"type\":\"object\",\"properties\":{\"file_path\":" PATH_PROP ","
	  "\"view_range\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":2,"
	  "\"description\":\"[start_line, end_line]\"}},\"required\":[\"file_path\"]}",
	  TOOL_F_WORKER, file_call, tfile_read },
	{ "write",
	  "Write a file atomically (temporary file + rename), creating parent directories. Replaces the file if it "
	  "exists.",
	  "{\"type\":\"object\",\"properties\":{\"file_path\":" PATH_PROP ","
	  "\"content\":{\"type\":\"string\",\"description\":\"The complete new content.\"}},"
	  "\"required\":[\"file_path\",\"content\"]}",
	  TOOL_F_WORKER, file_call, tfile_write },
	{ "edit",
	  "Replace old_string with new_string in a file. old_string must occur exactly once unless replace_all is "
	  "true. The file is rewritten atomically.",
	  "{\"type\":\"object\",\"properties\":{\"file_path\":" PATH_PROP ","
	  "\"old_string\":{\"type\":\"string\",\"description\":\"Exact text to replace.\"},"
	  "\"new_string\":{\"type\":\"string\",\"description\":\"Replacement text.\"},"
	  "\"replace_all\":{\"type\":\"boolean\",\"description\":\"Replace every occurrence.\"}},"
	  "\"required\":[\"file_path\",\"old_string\",\"new_string\"]}",
	  TOOL_F_WORKER, file_call, tfile_edit },
	{ "glob",
	  "Find files by glob pattern (** for any depth, {a,b} alternatives). Relative patterns only, no '..'. "
	  "Skips .git and node_modules. Returns at most 200 paths, newest first.",
	  "{\"type\":\"object\",\"properties\":{"
	  "\"pattern\":{\"type\":\"string\",\"description\":\"Glob pattern, e.g. **/*.c\"},"
	  "\"path\":{\"type\":\"string\",\"description\":\"Directory to search (default: the workspace).\"}},"
	  "\"required\":[\"pattern\"]}",
	  TOOL_F_WORKER, file_call, tsearch_glob },
	{ "grep",
	  "Search file contents with a Perl-compatible regular expression (PCRE2). Output lines are path:line:text, capped "
	  "at 100 KiB; binary files are skipped. A pattern that needs too much backtracking stops with an error.",
	  "{\"type\":\"object\",\"properties\":{"
	  "\"pattern\":{\"type\":\"string\",\"description\":\"Regular expression (PCRE2 syntax).\"},"
	  "\"path\":{\"type\":\"string\",\"description\":\"File or directory to search (default: the workspace).\"}},"
	  "\"required\":[\"pattern\"]}",
	  TOOL_F_WORKER, file_call, tsearch_grep },
	{ NULL, NULL, NULL, 0, NULL, NULL },
};

const struct tool_def *tool_find(const char *name)
{
	for (const struct tool_def *d = tool_table; name && d->name; d++)
		if (!strcmp(d->name, name))
			return d;
	return NULL;
}

json_t *tool_list_json(void)
{
	json_t *list = json_array();

	for (const struct tool_def *d = tool_table; list && d->name; d++) {
		json_t *schema = json_loads(d->input_schema, 0, NULL);
		json_t *e = schema ? json_pack("{s:s,s:s,s:o}", "name", d->name, "description", d->description,
					       "inputSchema", schema)
				   : NULL;
		if (!e || json_array_append_new(list, e) < 0) {
			json_decref(list);
			list = NULL;
		}
	}
	return list;
}
