/* The transcript's terminal guard (see atty.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/atty.h"
#include "core/utf8.h"

struct atty {
	FILE *under;
	unsigned char carry[4]; /* the start of a UTF-8 sequence split between two writes */
	size_t ncarry;
};

/* Characters shown escaped although well-formed: C1 controls and the bidirectional/line-separator marks
 * that can make printed text read differently from what it is. */
static bool hidden(const unsigned char *s, size_t len)
{
	if (len == 2)
		return s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f;
	if (len == 3 && s[0] == 0xe2 && s[1] == 0x80)
		return (s[2] >= 0xa8 && s[2] <= 0xae) || s[2] == 0x8e || s[2] == 0x8f;
	if (len == 3 && s[0] == 0xe2 && s[1] == 0x81)
		return s[2] >= 0xa6 && s[2] <= 0xa9;
	return false;
}

/* Escapes s[0..n) through put(); returns the bytes of an incomplete final sequence left unconsumed
 * (only when !final). */
static size_t escape(const unsigned char *s, size_t n, bool final, void (*put)(void *, const char *, size_t),
		     void *arg)
{
	size_t i = 0;
	char e[16];
	while (i < n) {
		unsigned char c = s[i];
		if (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f)) {
			size_t j = i;
			while (j < n && (s[j] == '\n' || s[j] == '\t' || (s[j] >= 0x20 && s[j] < 0x7f)))
				j++;
			put(arg, (const char *)s + i, j - i);
			i = j;
			continue;
		}
		if (c >= 0x80) {
			size_t len = utf8_seq_len(s + i, n - i);
			if (!len && !final) {
				/* maybe cut by the write: a lead byte whose sequence runs past n */
				size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0, k = i + 1;
				while (k < n && (s[k] & 0xc0) == 0x80)
					k++;
				if (need && n - i < need && k == n)
					return n - i;
			}
			if (len && !hidden(s + i, len)) {
				put(arg, (const char *)s + i, len);
				i += len;
				continue;
			}
			if (len == 3 || (len == 2 && s[i] == 0xc2)) {
				unsigned cp = len == 2 ? (unsigned)(s[i + 1] & 0x3f) | 0x80
						       : ((unsigned)(s[i] & 0x0f) << 12) | ((unsigned)(s[i + 1] & 0x3f) << 6) |
							 (s[i + 2] & 0x3f);
				int k = snprintf(e, sizeof e, "\\u%04x", cp);
				put(arg, e, (size_t)k);
				i += len;
				continue;
			}
		}
		int k = snprintf(e, sizeof e, "\\x%02x", c);
		put(arg, e, (size_t)k);
		i++;
	}
	return 0;
}

static void put_file(void *arg, const char *p, size_t n)
{
	fwrite(p, 1, n, (FILE *)arg);
}

static ssize_t atty_write(void *cookie, const char *buf, size_t size)
{
	struct atty *t = cookie;
	size_t done = 0;
	/* finish a carried sequence first, one byte at a time until it resolves */
	while (t->ncarry && done < size) {
		t->carry[t->ncarry++] = (unsigned char)buf[done++];
		size_t left = escape(t->carry, t->ncarry, false, put_file, t->under);
		if (!left || t->ncarry == sizeof t->carry) {
			if (left)
				escape(t->carry, t->ncarry, true, put_file, t->under);
			t->ncarry = 0;
		}
	}
	if (!t->ncarry) {
		size_t left = escape((const unsigned char *)buf + done, size - done, false, put_file, t->under);
		memcpy(t->carry, buf + size - left, left);
		t->ncarry = left;
	}
	fflush(t->under);
	return (ssize_t)size;
}

static int atty_close(void *cookie)
{
	struct atty *t = cookie;
	if (t->ncarry)
		escape(t->carry, t->ncarry, true, put_file, t->under);
	fflush(t->under);
	free(t);
	return 0;
}

FILE *atty_open(FILE *under)
{
	struct atty *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->under = under;
	FILE *f = fopencookie(t, "w", (cookie_io_functions_t){ .write = atty_write, .close = atty_close });
	if (!f) {
		free(t);
		return NULL;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	return f;
}

struct sbuf {
	char *out;
	size_t len, cap;
};

static void put_buf(void *arg, const char *p, size_t n)
{
	struct sbuf *b = arg;
	size_t k = n < b->cap - 1 - b->len ? n : b->cap - 1 - b->len;
	memcpy(b->out + b->len, p, k);
	b->len += k;
}

char *atty_escape(const char *s, size_t n, char *out, size_t outlen)
{
	struct sbuf b = { out, 0, outlen };
	if (!outlen)
		return out;
	escape((const unsigned char *)s, n, true, put_buf, &b);
	out[b.len] = 0;
	return out;
}
