#include "core/cbuf.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cbuf_init(cbuf *b, size_t first, size_t max)
{
	memset(b, 0, sizeof *b);
	b->first = first ? first : 256;
	b->max = max;
}

int cbuf_set_secret(cbuf *b)
{
	if (b->p)
		return -EBUSY; /* memory taken from the other allocator */
	b->secret = true;
	return 0;
}

/* A new block of cap + 1 bytes holding the data; a secret buffer never reallocs, which could leave the old
 * block's copy behind unwiped. */
static uint8_t *grow(cbuf *b, size_t cap)
{
	uint8_t *q;
	if (!b->secret)
		return realloc(b->p, cap + 1);
	if (!(q = OPENSSL_malloc(cap + 1)))
		return NULL;
	if (b->p) {
		memcpy(q, b->p, b->len);
		OPENSSL_clear_free(b->p, b->cap + 1);
	}
	return q;
}

size_t cbuf_cap_after(const cbuf *b, size_t n)
{
	size_t need = b->len + n, cap = b->cap ? b->cap : (b->first ? b->first : 256);
	if (need <= b->cap)
		return b->cap;
	while (cap < need)
		cap *= 2;
	return cap;
}

int cbuf_reserve(cbuf *b, size_t n, uint8_t **at)
{
	if (n > b->max || b->len > b->max - n)
		return -ENOBUFS;
	if (b->off + b->len + n > b->cap) {
		if (b->off) {
			memmove(b->p, b->p + b->off, b->len);
			if (b->secret)
				OPENSSL_cleanse(b->p + b->len, b->off); /* where the tail of the data was */
			b->off = 0;
			b->p[b->len] = 0;
		}
		if (b->len + n > b->cap) {
			size_t cap = cbuf_cap_after(b, n);
			uint8_t *q = grow(b, cap);
			if (!q)
				return -ENOMEM;
			b->p = q;
			b->cap = cap;
			b->p[b->len] = 0;
		}
	}
	*at = b->p + b->off + b->len;
	return 0;
}

void cbuf_commit(cbuf *b, size_t n)
{
	b->len += n;
	b->p[b->off + b->len] = 0;
}

int cbuf_append(cbuf *b, const void *p, size_t n)
{
	uint8_t *at;
	int rc;
	if (!n)
		return 0;
	if ((rc = cbuf_reserve(b, n, &at)) < 0)
		return rc;
	memcpy(at, p, n);
	cbuf_commit(b, n);
	return 0;
}

int cbuf_printf(cbuf *b, const char *fmt, ...)
{
	va_list ap;
	uint8_t *at;
	int n, rc;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if (n == 0)
		return 0;
	/* vsnprintf's NUL lands in the byte allocated after cap, which cbuf_commit rewrites anyway. */
	if ((rc = cbuf_reserve(b, (size_t)n, &at)) < 0)
		return rc;
	va_start(ap, fmt);
	vsnprintf((char *)at, (size_t)n + 1, fmt, ap);
	va_end(ap);
	cbuf_commit(b, (size_t)n);
	return 0;
}

void cbuf_consume(cbuf *b, size_t n)
{
	if (n >= b->len) {
		cbuf_free(b);
		return;
	}
	if (b->secret)
		OPENSSL_cleanse(b->p + b->off, n);
	b->off += n;
	b->len -= n;
}

size_t cbuf_take(cbuf *b, void *out, size_t cap)
{
	size_t k = cap < b->len ? cap : b->len;
	if (!k)
		return 0;
	memcpy(out, b->p + b->off, k);
	cbuf_consume(b, k);
	return k;
}

void cbuf_free(cbuf *b)
{
	if (b->secret && b->p)
		OPENSSL_clear_free(b->p, b->cap + 1);
	else
		free(b->p);
	b->p = NULL;
	b->off = b->len = b->cap = 0;
}
