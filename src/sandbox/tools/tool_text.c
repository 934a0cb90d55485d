/* Pure text helpers of the sandbox tools (see tool_text.h). */
#include "sandbox/tools/tool_text.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arr.h"

/* ---- ANSI ---------------------------------------------------------------------------------------- */

enum { A_NORMAL, A_ESC, A_CSI, A_ESC_INT, A_STR, A_STR_ESC };

/* Unterminated control strings must not swallow the rest of the output. */
#define ANSI_CSI_MAX 64
#define ANSI_STR_MAX 4096

size_t ttext_ansi_strip(struct ttext_ansi *a, char *buf, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];
		switch (a->state) {
		case A_NORMAL:
			if (c == 0x1b) {
				a->state = A_ESC;
				a->seqlen = 0;
			} else {
				buf[o++] = (char)c;
			}
			break;
		case A_ESC:
			if (c == '[') {
				a->state = A_CSI;
			} else if (c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_') {
				a->state = A_STR;
			} else if (c >= 0x20 && c <= 0x2f) {
				a->state = A_ESC_INT;
			} else if (c == 0x1b) {
				a->state = A_ESC;
			} else if (c >= 0x30 && c <= 0x7e) {
				a->state = A_NORMAL;
			} else {
				a->state = A_NORMAL;
				buf[o++] = (char)c;
			}
			break;
		case A_CSI:
			if (c >= 0x40 && c <= 0x7e) {
				a->state = A_NORMAL;
			} else if (c >= 0x20 && c <= 0x3f && ++a->seqlen < ANSI_CSI_MAX) {
				/* parameter and intermediate bytes */
			} else {
				a->state = A_NORMAL;
				if (c == '\n' || c == '\t')
					buf[o++] = (char)c;
			}
			break;
		case A_ESC_INT:
			if (c >= 0x20 && c <= 0x2f && ++a->seqlen < ANSI_CSI_MAX)
				break;
			a->state = A_NORMAL;
			if (c < 0x20 || c > 0x7e)
				buf[o++] = (char)c;
			break;
		case A_STR:
			if (c == 0x07 || ++a->seqlen >= ANSI_STR_MAX)
				a->state = A_NORMAL;
			else if (c == 0x1b)
				a->state = A_STR_ESC;
			break;
		case A_STR_ESC:
			a->state = c == '\\' ? A_NORMAL : A_STR;
			break;
		}
	}
	return o;
}

/* ---- tail ---------------------------------------------------------------------------------------- */

int ttext_tail_init(struct ttext_tail *t, size_t cap)
{
	memset(t, 0, sizeof *t);
	if (cap == 0)
		return -EINVAL;
	t->buf = malloc(cap);
	if (!t->buf)
		return -ENOMEM;
	t->cap = cap;
	return 0;
}

void ttext_tail_push(struct ttext_tail *t, const char *data, size_t len)
{
	t->total += len;
	if (len >= t->cap) {
		memcpy(t->buf, data + len - t->cap, t->cap);
		t->head = 0;
		t->len = t->cap;
		return;
	}
	while (len) {
		size_t tail = (t->head + t->len) % t->cap;
		size_t room = t->cap - tail;
		size_t n = len < room ? len : room;
		memcpy(t->buf + tail, data, n);
		data += n;
		len -= n;
		t->len += n;
		if (t->len > t->cap) {
			t->head = (t->head + (t->len - t->cap)) % t->cap;
			t->len = t->cap;
		}
	}
}

char *ttext_tail_take(const struct ttext_tail *t, size_t *len, bool *truncated)
{
	char *out = malloc(t->len + 1);
	size_t first, skip = 0;

	if (!out)
		return NULL;
	first = t->cap - t->head < t->len ? t->cap - t->head : t->len;
	memcpy(out, t->buf + t->head, first);
	memcpy(out + first, t->buf, t->len - first);
	*truncated = t->total > t->len;
	if (*truncated)
		while (skip < 3 && skip < t->len && ((unsigned char)out[skip] & 0xc0) == 0x80)
			skip++;
	memmove(out, out + skip, t->len - skip);
	*len = t->len - skip;
	out[*len] = 0;
	return out;
}

void ttext_tail_free(struct ttext_tail *t)
{
	free(t->buf);
	memset(t, 0, sizeof *t);
}

/* ---- sentinel framing ----------------------------------------------------------------------------- */

void ttext_frame_init(struct ttext_frame *f, const char *nonce)
{
	memset(f, 0, sizeof *f);
	f->marker[0] = '\n';
	memcpy(f->marker + 1, nonce, TTEXT_NONCE_LEN);
	f->mlen = TTEXT_NONCE_LEN + 1;
}

static bool code_byte(const struct ttext_frame *f, char c)
{
	size_t n = f->hlen - f->mlen;
	if (n >= 11)
		return false;
	return (c >= '0' && c <= '9') || (c == '-' && n == 0);
}

bool ttext_frame_feed(struct ttext_frame *f, const char *data, size_t len, ttext_emit_fn emit, void *ud)
{
	size_t run = 0; /* start of the bytes not yet emitted nor held */

	if (f->done)
		return true;
	for (size_t i = 0; i < len; i++) {
		char c = data[i];
	again:
		if (f->in_code) {
			if (c == '\n' && f->hlen > f->mlen && !(f->hlen == f->mlen + 1 && f->hold[f->mlen] == '-')) {
				f->hold[f->hlen] = 0;
				f->code = (int)strtol(f->hold + f->mlen, NULL, 10);
				f->done = true;
				f->hlen = 0;
				return true;
			}
			if (code_byte(f, c)) {
				f->hold[f->hlen++] = c;
				run = i + 1;
				continue;
			}
			/* Not our sentinel after all: what was held is output. */
			f->in_code = false;
			emit(ud, f->hold, f->hlen);
			f->hlen = 0;
			run = i;
			goto again;
		}
		if (f->hlen > 0) {
			if (c == f->marker[f->hlen]) {
				f->hold[f->hlen++] = c;
				run = i + 1;
				if (f->hlen == f->mlen)
					f->in_code = true;
				continue;
			}
			emit(ud, f->hold, f->hlen);
			f->hlen = 0;
			run = i;
		}
		if (c == '\n') {
			/* A possible marker start: emit what precedes it, hold the newline. */
			if (i > run)
				emit(ud, data + run, i - run);
			f->hold[0] = c;
			f->hlen = 1;
			run = i + 1;
		}
	}
	if (len > run && f->hlen == 0)
		emit(ud, data + run, len - run);
	return false;
}

void ttext_frame_flush(struct ttext_frame *f, ttext_emit_fn emit, void *ud)
{
	if (f->hlen)
		emit(ud, f->hold, f->hlen);
	f->hlen = 0;
	f->in_code = false;
}

int ttext_bash_wrap(const char *cmd, size_t cmdlen, const char *nonce, char **out, size_t *outlen)
{
	/* `command` (not bash's `builtin`) keeps a function named read, eval or printf out of the framing in
	 * bash and in a minimal image's POSIX shell alike (busybox ash has no `builtin`). The text is read line by
	 * line into a command substitution (linear, builtins only): dash, a Debian image's /bin/sh, has no
	 * `read -d`. The here-document feeds the group, not the substitution, which bash once parsed badly. The
	 * first line is a plain `:` because bash (5.2), after an eval that failed to parse, does not take a
	 * reserved word or `{` at the start of the next line read from its input. */
	static const char fmt[] =
		":\n"
		"{ __postern_cmd=$(IFS=; while command read -r __postern_l; do command printf '%%s\\n' "
		"\"$__postern_l\"; done); } <<'__POSTERN_%.*s'\n"
		"%s\n"
		"__POSTERN_%.*s\n"
		"{ command eval \"$__postern_cmd\"; } </dev/null 2>&1; command printf '\\n%.*s%%d\\n' \"$?\"\n";
	char *c, *buf;
	size_t cap;
	int n;

	if (memchr(cmd, 0, cmdlen))
		return -EINVAL;
	if (cmdlen >= INT_MAX / 2)
		return -EFBIG;
	c = malloc(cmdlen + 1);
	if (!c)
		return -ENOMEM;
	memcpy(c, cmd, cmdlen);
	c[cmdlen] = 0;
	/* The here-document ends at a line equal to its delimiter: a command holding it could not be sent
	 * intact (only by chance with a random nonce; the caller draws another). */
	if (strstr(c, nonce)) {
		free(c);
		return -EAGAIN;
	}
	cap = cmdlen + sizeof fmt + 4 * TTEXT_NONCE_LEN;
	buf = malloc(cap);
	if (!buf) {
		free(c);
		return -ENOMEM;
	}
	n = snprintf(buf, cap, fmt, TTEXT_NONCE_LEN, nonce, c, TTEXT_NONCE_LEN, nonce, TTEXT_NONCE_LEN, nonce);
	free(c);
	if (n < 0 || (size_t)n >= cap) {
		free(buf);
		return -EOVERFLOW;
	}
	*out = buf;
	*outlen = (size_t)n;
	return 0;
}

/* ---- UTF-8 --------------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1-4) or 0 when invalid or incomplete. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

char *ttext_utf8_clean(const char *in, size_t len, size_t *outlen)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0, bad = 0, i = 0;
	char *out;

	/* Count first so the common (valid) case is one allocation of the right size. */
	while (i < len) {
		size_t n = utf8_seq(s + i, len - i);
		if (n == 0) {
			bad++;
			i++;
		} else {
			i += n;
		}
	}
	if (bad > (SIZE_MAX - len - 1) / 2)
		return NULL;
	out = malloc(len + 2 * bad + 1);
	if (!out)
		return NULL;
	for (i = 0; i < len;) {
		size_t n = utf8_seq(s + i, len - i);
		if (n == 0) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(out + o, s + i, n);
			o += n;
			i += n;
		}
	}
	out[o] = 0;
	if (outlen)
		*outlen = o;
	return out;
}

size_t ttext_utf8_prefix(const char *s, size_t len)
{
	size_t i = len, back = 0;

	while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
		i--;
		back++;
	}
	if (i == 0)
		return len;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	if (need > 1 && back + 1 < need)
		return i - 1;
	return len;
}

/* ---- line ranges --------------------------------------------------------------------------------- */

int ttext_line_range(const char *buf, size_t len, long start, long end, size_t *off, size_t *n)
{
	long line = 1;
	size_t i = 0, b;

	if (start < 1 || (end > 0 && end < start))
		return -ERANGE;
	while (line < start) {
		const char *nl = memchr(buf + i, '\n', len - i);
		if (!nl)
			return -ERANGE;
		i = (size_t)(nl - buf) + 1;
		line++;
	}
	if (i >= len && !(start == 1 && len == 0))
		return -ERANGE;
	b = i;
	if (end <= 0) {
		i = len;
	} else {
		while (line <= end && i < len) {
			const char *nl = memchr(buf + i, '\n', len - i);
			i = nl ? (size_t)(nl - buf) + 1 : len;
			line++;
		}
	}
	*off = b;
	*n = i - b;
	return 0;
}

/* ---- edit ---------------------------------------------------------------------------------------- */

int ttext_edit(const char *buf, size_t len, const char *old, size_t oldlen, const char *new_, size_t newlen, bool all,
	       size_t maxlen, char **out, size_t *outlen, size_t *count)
{
	size_t cnt = 0, o = 0, i = 0, total;
	const char *p;
	char *res;

	*count = 0;
	if (oldlen == 0)
		return -EINVAL;
	for (p = buf; (size_t)(p - buf) + oldlen <= len;) {
		const char *m = memmem(p, len - (size_t)(p - buf), old, oldlen);
		if (!m)
			break;
		cnt++;
		p = m + oldlen;
	}
	*count = cnt;
	if (cnt == 0)
		return -ENOENT;
	if (cnt > 1 && !all)
		return -EEXIST;
	if (newlen > oldlen && (newlen - oldlen) > (SIZE_MAX - len) / cnt)
		return -EFBIG;
	total = len - cnt * oldlen + cnt * newlen;
	if (total > maxlen)
		return -EFBIG;
	res = malloc(total + 1);
	if (!res)
		return -ENOMEM;
	while (i < len) {
		const char *m = i + oldlen <= len ? memmem(buf + i, len - i, old, oldlen) : NULL;
		size_t upto = m ? (size_t)(m - buf) : len;
		memcpy(res + o, buf + i, upto - i);
		o += upto - i;
		if (!m)
			break;
		memcpy(res + o, new_, newlen);
		o += newlen;
		i = upto + oldlen;
	}
	res[o] = 0;
	*out = res;
	*outlen = o;
	return 0;
}

/* ---- glob ---------------------------------------------------------------------------------------- */

static void seterr(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
}

int ttext_glob_check(const char *pat, size_t len, char *err, size_t errlen)
{
	int depth = 0, groups = 0;
	size_t seg = 0;

	if (!pat || len == 0) {
		seterr(err, errlen, "empty pattern");
		return -EINVAL;
	}
	if (len > TTEXT_GLOB_MAX || memchr(pat, 0, len)) {
		seterr(err, errlen, "pattern too long or holds a NUL byte");
		return -EINVAL;
	}
	if (pat[0] == '/' || pat[0] == '~') {
		seterr(err, errlen, "absolute patterns are not allowed (use a relative pattern and the path argument)");
		return -EINVAL;
	}
	for (size_t i = 0; i <= len; i++) {
		if (i == len || pat[i] == '/' || pat[i] == ',' || pat[i] == '{' || pat[i] == '}') {
			/* ".." as a segment (also inside a brace alternative) could climb out of the search root. */
			if (i - seg == 2 && pat[seg] == '.' && pat[seg + 1] == '.') {
				seterr(err, errlen, "'..' is not allowed in patterns");
				return -EINVAL;
			}
			seg = i + 1;
		}
		if (i == len)
			break;
		if (pat[i] == '\\' && i + 1 < len) {
			i++;
			continue;
		}
		if (pat[i] == '{') {
			if (++depth > 4 || ++groups > 8) {
				seterr(err, errlen, "too many or too deeply nested {} groups");
				return -EINVAL;
			}
		} else if (pat[i] == '}' && --depth < 0) {
			seterr(err, errlen, "unbalanced '}'");
			return -EINVAL;
		}
	}
	if (depth != 0) {
		seterr(err, errlen, "unbalanced '{'");
		return -EINVAL;
	}
	return 0;
}

#define GLOB_EXPAND_MAX 64

struct strv {
	char **v;
	size_t n, cap;
};

static int strv_add(struct strv *s, char *str)
{
	/* n + 1: the array ends with a NULL. */
	if (ARR_RESERVE(s->v, s->n + 1, s->cap, 8) < 0) {
		free(str);
		return -ENOMEM;
	}
	s->v[s->n++] = str;
	s->v[s->n] = NULL;
	return 0;
}

void ttext_strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static int expand_one(const char *pat, struct strv *acc)
{
	size_t len = strlen(pat), open = SIZE_MAX, close = 0;
	int depth = 0;

	for (size_t i = 0; i < len; i++) {
		if (pat[i] == '\\' && i + 1 < len) {
			i++;
		} else if (pat[i] == '{') {
			if (depth++ == 0)
				open = i;
		} else if (pat[i] == '}' && depth > 0 && --depth == 0) {
			close = i;
			break;
		}
	}
	if (open == SIZE_MAX || close == 0) {
		char *c;
		if (acc->n >= GLOB_EXPAND_MAX)
			return -E2BIG;
		c = strdup(pat);
		return c ? strv_add(acc, c) : -ENOMEM;
	}
	/* Each top-level alternative between open and close, spliced into prefix+alt+suffix, recursively. */
	size_t start = open + 1;
	depth = 0;
	for (size_t i = open + 1; i <= close; i++) {
		if (pat[i] == '\\' && i + 1 < close) {
			i++;
			continue;
		}
		if (pat[i] == '{')
			depth++;
		else if (pat[i] == '}' && i != close)
			depth--;
		if ((pat[i] == ',' && depth == 0) || i == close) {
			size_t alen = i - start;
			size_t tot = open + alen + (len - close - 1);
			char *s = malloc(tot + 1);
			int rc;
			if (!s)
				return -ENOMEM;
			memcpy(s, pat, open);
			memcpy(s + open, pat + start, alen);
			memcpy(s + open + alen, pat + close + 1, len - close - 1);
			s[tot] = 0;
			rc = expand_one(s, acc);
			free(s);
			if (rc < 0)
				return rc;
			start = i + 1;
		}
	}
	return 0;
}

int ttext_glob_expand(const char *pat, char ***out, size_t *n)
{
	struct strv acc = { 0 };
	int rc = expand_one(pat, &acc);

	if (rc < 0) {
		ttext_strv_free(acc.v);
		return rc;
	}
	*out = acc.v;
	*n = acc.n;
	return 0;
}

/* [...] class at p (after '['); *adv is set to the length consumed including ']'. -1 when malformed
 * (then '[' is a literal). */
static int class_match(const char *p, const char *pend, char c, size_t *adv)
{
	const char *q = p;
	bool neg = false, hit = false;

	if (q < pend && (*q == '!' || *q == '^')) {
		neg = true;
		q++;
	}
	const char *first = q;
	while (q < pend && (*q != ']' || q == first)) {
		char lo = *q, hi;
		if (lo == '\\' && q + 1 < pend)
			lo = *++q;
		hi = lo;
		if (q + 2 < pend && q[1] == '-' && q[2] != ']') {
			hi = q[2];
			if (hi == '\\' && q + 3 < pend) {
				hi = q[3];
				q++;
			}
			q += 2;
		}
		if ((unsigned char)c >= (unsigned char)lo && (unsigned char)c <= (unsigned char)hi)
			hit = true;
		q++;
	}
	if (q >= pend)
		return -1; /* -1: not a class: the [ is literal */
	*adv = (size_t)(q - p) + 1;
	return hit != neg;
}

/* One segment (no '/'), iterative with a single backtrack point per '*': linear-ish, no blowup. */
static bool seg_match(const char *p, const char *pend, const char *s, const char *send)
{
	const char *star_p = NULL, *star_s = NULL;

	while (s < send) {
		if (p < pend && *p == '*') {
			while (p < pend && *p == '*')
				p++;
			star_p = p;
			star_s = s;
			continue;
		}
		if (p < pend) {
			size_t adv = 1;
			bool ok;
			if (*p == '?') {
				ok = true;
			} else if (*p == '[') {
				int r = class_match(p + 1, pend, *s, &adv);
				if (r < 0) {
					ok = *s == '[';
					adv = 1;
				} else {
					ok = r == 1;
					adv += 1;
				}
			} else if (*p == '\\' && p + 1 < pend) {
				ok = p[1] == *s;
				adv = 2;
			} else {
				ok = *p == *s;
			}
			if (ok) {
				p += adv;
				s++;
				continue;
			}
		}
		if (!star_p)
			return false;
		p = star_p;
		s = ++star_s;
	}
	while (p < pend && *p == '*')
		p++;
	return p == pend;
}

#define GLOB_SEGS 128

static int split(const char *s, const char **b, const char **e)
{
	int n = 0;
	const char *p = s;

	while (*p) {
		const char *q = p;
		while (*q && *q != '/')
			q++;
		if (q > p && !(q - p == 1 && *p == '.')) {
			if (n == GLOB_SEGS)
				return -E2BIG;
			b[n] = p;
			e[n] = q;
			n++;
		}
		p = *q ? q + 1 : q;
	}
	return n;
}

struct gm {
	const char **pb, **pe, **sb, **se;
	int np, ns;
	unsigned char *memo; /* 0 unknown, 1 false, 2 true */
};

static bool gm_run(struct gm *g, int pi, int si)
{
	unsigned char *m = &g->memo[pi * (g->ns + 1) + si];
	bool r;

	if (*m)
		return *m == 2;
	if (pi == g->np) {
		r = si == g->ns;
	} else if (g->pe[pi] - g->pb[pi] == 2 && g->pb[pi][0] == '*' && g->pb[pi][1] == '*') {
		r = gm_run(g, pi + 1, si) || (si < g->ns && gm_run(g, pi, si + 1));
	} else {
		r = si < g->ns && seg_match(g->pb[pi], g->pe[pi], g->sb[si], g->se[si]) && gm_run(g, pi + 1, si + 1);
	}
	*m = r ? 2 : 1;
	return r;
}

bool ttext_glob_match(const char *pat, const char *path)
{
	const char *pb[GLOB_SEGS], *pe[GLOB_SEGS], *sb[GLOB_SEGS], *se[GLOB_SEGS];
	unsigned char memo[(GLOB_SEGS + 1) * (GLOB_SEGS + 1)];
	struct gm g = { pb, pe, sb, se, 0, 0, memo };

	g.np = split(pat, pb, pe);
	g.ns = split(path, sb, se);
	if (g.np < 0 || g.ns < 0)
		return false;
	memset(memo, 0, (size_t)(g.np + 1) * (size_t)(g.ns + 1));
	return gm_run(&g, 0, 0);
}

/* ---- paths --------------------------------------------------------------------------------------- */

static int push_segs(char *out, size_t outlen, size_t *o, const char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t j = i;
		while (j < len && p[j] != '/')
			j++;
		size_t sl = j - i;
		if (sl == 0 || (sl == 1 && p[i] == '.')) {
			/* skip */
		} else if (sl == 2 && p[i] == '.' && p[i + 1] == '.') {
			while (*o > 0 && out[*o - 1] != '/')
				(*o)--;
			if (*o > 0)
				(*o)--;
		} else {
			if (*o + 1 + sl + 1 > outlen)
				return -ENAMETOOLONG;
			out[(*o)++] = '/';
			memcpy(out + *o, p + i, sl);
			*o += sl;
		}
		i = j + 1;
	}
	return 0;
}

int ttext_path_norm(const char *cwd, const char *path, size_t pathlen, char *out, size_t outlen)
{
	size_t o = 0;
	int rc;

	if (!path || pathlen == 0 || memchr(path, 0, pathlen) || outlen < 2)
		return -EINVAL;
	if (path[0] != '/') {
		if (!cwd || cwd[0] != '/')
			return -EINVAL;
		rc = push_segs(out, outlen, &o, cwd, strlen(cwd));
		if (rc < 0)
			return rc;
	}
	rc = push_segs(out, outlen, &o, path, pathlen);
	if (rc < 0)
		return rc;
	if (o == 0)
		out[o++] = '/';
	out[o] = 0;
	return 0;
}
