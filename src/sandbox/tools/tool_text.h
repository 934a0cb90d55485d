/* Pure text helpers of the sandbox tools (no I/O, unit-tested): ANSI escape stripping, a tail-keeping
 * output buffer, the bash exit-code sentinel framer, UTF-8 cleaning, line ranges, the edit replacement,
 * doublestar glob matching and path normalisation. */
#ifndef POSTERN_TOOL_TEXT_H
#define POSTERN_TOOL_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- ANSI escapes (streaming: a sequence split across chunks is still removed) ---- */
struct ttext_ansi {
	int state;
	size_t seqlen;
};
/* Strips escape sequences from buf in place across calls; returns the new length. */
size_t ttext_ansi_strip(struct ttext_ansi *a, char *buf, size_t len);

/* ---- tail buffer: keeps the last cap bytes ---- */
struct ttext_tail {
	char *buf;
	size_t cap, len, head; /* ring: data starts at head */
	uint64_t total;
};
int ttext_tail_init(struct ttext_tail *t, size_t cap);
void ttext_tail_push(struct ttext_tail *t, const char *data, size_t len);
/* Linear copy of what is kept (malloc'd, NUL-terminated). When bytes were dropped, the copy starts at a
 * UTF-8 character boundary and *truncated is set. */
char *ttext_tail_take(const struct ttext_tail *t, size_t *len, bool *truncated);
void ttext_tail_free(struct ttext_tail *t);

/* ---- bash sentinel framing ----
 * Each command is sent as tool-generated wrapper text that ends by printing "\n<nonce><exit code>\n".
 * The framer passes every output byte before that marker to emit() and stops at it. */
#define TTEXT_NONCE_LEN 32
struct ttext_frame {
	char marker[TTEXT_NONCE_LEN + 2]; /* "\n" + nonce */
	size_t mlen;
	char hold[TTEXT_NONCE_LEN + 16];
	size_t hlen;
	bool in_code;
	bool done;
	int code;
};
void ttext_frame_init(struct ttext_frame *f, const char *nonce);
typedef void (*ttext_emit_fn)(void *ud, const char *data, size_t len);
/* Feeds output; returns true once the sentinel was seen (f->code holds the exit code). Bytes after the
 * sentinel are ignored. */
bool ttext_frame_feed(struct ttext_frame *f, const char *data, size_t len, ttext_emit_fn emit, void *ud);
/* At EOF before the sentinel: hands back held bytes (a partial marker is output after all). */
void ttext_frame_flush(struct ttext_frame *f, ttext_emit_fn emit, void *ud);
/* Builds the text written to the shell for one command (malloc'd). -EINVAL when cmd holds a NUL. */
int ttext_bash_wrap(const char *cmd, size_t cmdlen, const char *nonce, char **out, size_t *outlen);

/* ---- UTF-8 ---- */
/* Copy of in with every invalid sequence replaced by U+FFFD (malloc'd, NUL-terminated). */
char *ttext_utf8_clean(const char *in, size_t len, size_t *outlen);
/* Length of the longest prefix of s[0..len) that does not end inside a multi-byte character. */
size_t ttext_utf8_prefix(const char *s, size_t len);

/* ---- read ranges: 1-indexed, inclusive; end <= 0 means to the end ---- */
/* Sets [*off, *off + *n) to the lines start..end of buf. -ERANGE when start < 1, end < start (end > 0),
 * or start is past the last line. */
int ttext_line_range(const char *buf, size_t len, long start, long end, size_t *off, size_t *n);

/* ---- edit ---- */
/* Replaces old (non-empty) by new in buf: exactly one occurrence unless all. *out is malloc'd.
 * -ENOENT when old does not occur, -EEXIST when it occurs more than once and !all (*count says how
 * often), -EINVAL when old is empty, -EFBIG when the result would exceed maxlen. */
int ttext_edit(const char *buf, size_t len, const char *old, size_t oldlen, const char *new_, size_t newlen, bool all,
	       size_t maxlen, char **out, size_t *outlen, size_t *count);

/* ---- glob ---- */
#define TTEXT_GLOB_MAX 1024
/* Checks a glob pattern: relative, no ".." segment, no NUL, not empty, braces balanced and bounded.
 * -EINVAL with a reason. */
int ttext_glob_check(const char *pat, size_t len, char *err, size_t errlen);
/* Expands {a,b} alternatives (at most 64 results); *out is a NULL-terminated malloc'd vector. */
int ttext_glob_expand(const char *pat, char ***out, size_t *n);
void ttext_strv_free(char **v);
/* Matches a brace-free pattern against a '/'-separated relative path: '*' and '?' and '[...]' within one
 * segment, '**' as a whole segment for zero or more segments, '\\' escapes. */
bool ttext_glob_match(const char *pat, const char *path);

/* ---- paths ---- */
/* Lexically normalises a sandbox path: relative paths are taken from cwd (absolute); "." and empty
 * segments dropped, ".." removes the previous segment (never above "/"). -EINVAL for empty, NUL inside,
 * or longer than outlen-1 (PATH_MAX). */
int ttext_path_norm(const char *cwd, const char *path, size_t pathlen, char *out, size_t outlen);

#endif
