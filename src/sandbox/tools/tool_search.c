/* glob and grep of the file tools (see tool_files.h): bounded walks and a bounded regex engine. */
#include "sandbox/tools/tool_files_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/arr.h"
#include "sandbox/tools/tool_text.h"

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
		if (++w->entries > TOOL_WALK_ENTRIES || tfile_now_ms() > w->deadline) {
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

static int open_search_root(const struct tfctx *s, json_t *a, char *spath, struct tfile_res *r)
{
	json_t *p = json_object_get(a, "path");
	int fd;
	if (p && !json_is_null(p)) {
		if (tfile_path(s, p, spath, PATH_MAX, r, "path") < 0)
			return -EINVAL;
	} else {
		snprintf(spath, PATH_MAX, "%s", s->cwd);
	}
	fd = tfile_open_path(spath, O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		if (fd == -ENOTDIR)
			return fd;
		tfile_err(r, "%s: %s", spath, tfile_errtext(-fd));
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
		if (!ttext_glob_match(*p, rel))
			continue;
		if (ARR_RESERVE(g->m, g->n, g->cap, 64) < 0) {
			g->oom = w->stop = true;
			return;
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

void tsearch_glob(const struct tfctx *s, json_t *a, struct tfile_res *r)
{
	json_t *p = json_object_get(a, "pattern");
	char spath[PATH_MAX], err[160];
	struct glob_state g = { 0 };
	struct walk w = { .visit = glob_visit, .ud = &g, .deadline = tfile_now_ms() + s->budget_ms * 2 / 3 };
	size_t n;
	int fd;

	if (!json_is_string(p)) {
		tfile_err(r, "'pattern' must be a string");
		return;
	}
	if (ttext_glob_check(json_string_value(p), json_string_length(p), err, sizeof err) < 0) {
		tfile_err(r, "pattern: %s", err);
		return;
	}
	if (ttext_glob_expand(json_string_value(p), &g.pats, &n) < 0) {
		tfile_err(r, "pattern: too many {} alternatives");
		return;
	}
	fd = open_search_root(s, a, spath, r);
	if (fd == -ENOTDIR)
		tfile_err(r, "%s: not a directory", spath);
	if (fd < 0)
		goto out;
	walk_dir(&w, fd, "", 0);
	close(fd);
	if (g.n)
		qsort(g.m, g.n, sizeof *g.m, gmatch_cmp);
	for (size_t i = 0; i < g.n && i < TOOL_GLOB_RESULTS; i++)
		tfile_printf(&r->t, "%s%s%s\n", spath, strcmp(spath, "/") ? "/" : "", g.m[i].path);
	if (g.n > TOOL_GLOB_RESULTS)
		tfile_printf(&r->t, "[%zu more matches not shown; newest %u listed]\n", g.n - TOOL_GLOB_RESULTS,
			    TOOL_GLOB_RESULTS);
	if (g.n == 0)
		tfile_add(&r->t, "No files matched\n");
	if (w.capped)
		tfile_printf(&r->t, "[search stopped at the walk limit (%u entries, depth %d or time)]\n", TOOL_WALK_ENTRIES,
			    TOOL_WALK_DEPTH);
out:
	for (size_t i = 0; i < g.n; i++)
		free(g.m[i].path);
	free(g.m);
	ttext_strv_free(g.pats);
}

struct grep_state {
	pcre2_code *re;
	pcre2_match_data *md;
	pcre2_match_context *mc;
	const char *root; /* sandbox path of the search root */
	struct tfile_text *out;
	size_t matches, skipped;
	uint64_t deadline;
	int limit_rc;	  /* a PCRE2 limit that tripped: the search stops with an error */
	char limit_at[PATH_MAX + 32];
	bool timed_out;
};

static void grep_buf(struct grep_state *g, const char *spath, char *b, size_t len, struct walk *w)
{
	size_t i = 0;
	long line = 1;

	while (i < len && !g->out->full && !g->limit_rc) {
		char *nl = memchr(b + i, '\n', len - i);
		size_t e = nl ? (size_t)(nl - b) : len;
		int rc = pcre2_match(g->re, (PCRE2_SPTR)(b + i), e - i, 0, 0, g->md, g->mc);
		if (rc >= 0) {
			size_t tl = e - i;
			if (tl > TOOL_GREP_LINE)
				tl = ttext_utf8_prefix(b + i, TOOL_GREP_LINE);
			tfile_printf(g->out, "%s:%ld:", spath, line);
			tfile_addn(g->out, b + i, tl);
			tfile_add(g->out, "\n");
			g->matches++;
		} else if (rc != PCRE2_ERROR_NOMATCH) {
			g->limit_rc = rc;
			snprintf(g->limit_at, sizeof g->limit_at, "%s:%ld", spath, line);
		}
		i = e + 1;
		/* One line can take a whole match limit: look at the clock every few hundred lines. */
		if (++line % 256 == 0 && tfile_now_ms() > g->deadline) {
			g->timed_out = true;
			break;
		}
	}
	if ((g->out->full || g->limit_rc || g->timed_out) && w)
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
	b = tfile_read_capped(fd, TOOL_GREP_FILE_CAP, &len);
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

/* A regex engine with bounds (PCRE2): a pattern that backtracks exponentially stops at the match limit
 * with an error instead of spinning, and its backtracking memory is capped apart from the session's. */
static int grep_compile(struct grep_state *g, json_t *p, struct tfile_res *r)
{
	PCRE2_SIZE off;
	int ec;
	if (!json_is_string(p) || json_string_length(p) == 0 || memchr(json_string_value(p), 0, json_string_length(p))) {
		tfile_err(r, "'pattern' must be a non-empty string without NUL bytes");
		return -EINVAL;
	}
	if (json_string_length(p) > TFILE_GREP_PATTERN_MAX) {
		tfile_err(r, "'pattern' is %zu bytes, over the %u-byte limit", json_string_length(p), TFILE_GREP_PATTERN_MAX);
		return -EINVAL;
	}
	g->re = pcre2_compile((PCRE2_SPTR)json_string_value(p), json_string_length(p),
			      PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_NEVER_BACKSLASH_C, &ec, &off, NULL);
	if (!g->re) {
		PCRE2_UCHAR msg[160];
		pcre2_get_error_message(ec, msg, sizeof msg);
		tfile_err(r, "pattern: invalid regular expression at offset %zu: %s", (size_t)off, (const char *)msg);
		return -EINVAL;
	}
	g->md = pcre2_match_data_create(1, NULL);
	g->mc = pcre2_match_context_create(NULL);
	if (!g->md || !g->mc) {
		tfile_err(r, "out of memory");
		return -ENOMEM;
	}
	pcre2_set_match_limit(g->mc, TFILE_GREP_MATCH_LIMIT);
	pcre2_set_depth_limit(g->mc, TFILE_GREP_DEPTH_LIMIT);
	pcre2_set_heap_limit(g->mc, TFILE_GREP_HEAP_KIB);
	return 0;
}

static void grep_limit_error(const struct grep_state *g, struct tfile_res *r)
{
	PCRE2_UCHAR msg[160];
	pcre2_get_error_message(g->limit_rc, msg, sizeof msg);
	if (g->limit_rc == PCRE2_ERROR_MATCHLIMIT || g->limit_rc == PCRE2_ERROR_DEPTHLIMIT ||
	    g->limit_rc == PCRE2_ERROR_HEAPLIMIT)
		tfile_err(r,
		     "grep stopped at %s: the pattern needs more work than grep allows (%s; limits: %u match steps, "
		     "depth %u, %u KiB per line); simplify it, nested quantifiers such as (a+)+ backtrack "
		     "exponentially",
		     g->limit_at, (const char *)msg, TFILE_GREP_MATCH_LIMIT, TFILE_GREP_DEPTH_LIMIT, TFILE_GREP_HEAP_KIB);
	else
		tfile_err(r, "grep stopped at %s: %s", g->limit_at, (const char *)msg);
}

void tsearch_grep(const struct tfctx *s, json_t *a, struct tfile_res *r)
{
	char spath[PATH_MAX];
	struct grep_state g = { .out = &r->t, .deadline = tfile_now_ms() + s->budget_ms * 2 / 3 };
	struct walk w = { .visit = grep_visit, .ud = &g, .deadline = g.deadline };
	int fd;

	if (grep_compile(&g, json_object_get(a, "pattern"), r) < 0)
		goto out;
	r->t.limit = TOOL_GREP_CAP;
	g.root = spath;
	fd = open_search_root(s, a, spath, r);
	if (fd == -ENOTDIR) {
		struct stat st;
		fd = tfile_open_regular(s, spath, &st, r);
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
	if (g.limit_rc) {
		grep_limit_error(&g, r);
		goto out;
	}
	if (r->t.full) {
		r->t.full = false;
		r->t.limit = 0;
		tfile_printf(&r->t, "\n[output truncated at %u KiB]\n", TOOL_GREP_CAP / 1024);
	} else if (g.matches == 0) {
		tfile_add(&r->t, g.timed_out ? "No matches found before the time limit\n" : "No matches found\n");
	}
	if (w.capped || g.timed_out)
		tfile_printf(&r->t, "[search stopped at the walk limit (%u entries, depth %d or time)]\n", TOOL_WALK_ENTRIES,
			    TOOL_WALK_DEPTH);
out:
	pcre2_match_context_free(g.mc);
	pcre2_match_data_free(g.md);
	pcre2_code_free(g.re);
}

