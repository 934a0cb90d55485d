/* Internal to the file tools (tool_files.c, tool_search.c): the result being built, the call's context,
 * and the shared path and read helpers. */
#ifndef POSTERN_TOOL_FILES_INT_H
#define POSTERN_TOOL_FILES_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <jansson.h>

#include "core/cbuf.h"
#include "sandbox/tools/tool_files.h"

/* Growing text with a cap (limit, 0 = none): at the cap it is cut at a UTF-8 boundary and marked full (a cut,
 * not the cbuf's -ENOBUFS, which is why the cbuf itself is uncapped). Out of memory marks it full too. */
struct tfile_text {
	cbuf b;
	size_t limit;
	bool full;
};
#define TFILE_TEXT_INIT(limit_) { .b = CBUF_INIT(256, SIZE_MAX / 2), .limit = (limit_) }

struct tfile_res {
	bool err;
	struct tfile_text t;
};

struct tfctx {
	const char *cwd;    /* sandbox path relative paths start from */
	unsigned budget_ms; /* time for a walk */
};

uint64_t tfile_now_ms(void);
void tfile_addn(struct tfile_text *t, const char *s, size_t n);
void tfile_add(struct tfile_text *t, const char *s);
void tfile_printf(struct tfile_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Replaces the result with an error text. */
void tfile_err(struct tfile_res *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* open() with O_CLOEXEC|O_NOCTTY: fd or -errno. */
int tfile_open_path(const char *spath, int flags);
const char *tfile_errtext(int e);
/* Normalises a tool path argument (a JSON string) into a sandbox path; an error result otherwise. */
int tfile_path(const struct tfctx *s, json_t *v, char *out, size_t outlen, struct tfile_res *r, const char *what);
/* Opens a regular file for reading without open() side effects (O_PATH, fstat, reopen). */
int tfile_open_regular(const struct tfctx *s, const char *spath, struct stat *st, struct tfile_res *r);
/* Reads up to cap+1 bytes; *len > cap means the file is larger than cap. */
char *tfile_read_capped(int fd, size_t cap, size_t *len);

#endif
