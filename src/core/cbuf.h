/* The one capped growable byte buffer (a queue: append at the back, consume from the front). It grows by
 * doubling from `first` bytes, moves its data to the front before it grows, never holds more than `max`
 * bytes (-ENOBUFS instead), and frees its memory whenever it runs empty, so an idle connection holds none.
 * A NUL always follows the data once memory is held, so text users can read cbuf_str(). Not thread-safe.
 * A secret buffer (cbuf_set_secret: decrypted plaintext) leaves no copy behind: consumed bytes, the bytes a
 * compaction moves away from, the old block on every growth (never realloc) and the memory it frees are wiped
 * (OPENSSL_cleanse; its memory comes from OPENSSL_malloc and goes back through OPENSSL_clear_free). */
#ifndef POSTERN_CORE_CBUF_H
#define POSTERN_CORE_CBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cbuf {
	uint8_t *p;
	size_t off, len, cap; /* data at p[off, off+len); cap bytes usable (one more is allocated for the NUL) */
	size_t first, max;    /* first allocation; most bytes held at once */
	bool secret;          /* wipe every byte before it is let go (cbuf_set_secret) */
} cbuf;

/* max is the buffer's cap; a queue bounded by its owner's high-water mark may pass SIZE_MAX / 2. */
#define CBUF_INIT(first_, max_) { .first = (first_), .max = (max_) }
void cbuf_init(cbuf *b, size_t first, size_t max);
/* Makes b a secret buffer (see above). Only while it holds no memory: -EBUSY otherwise. */
int cbuf_set_secret(cbuf *b);

/* Room for n more bytes after the data: *at is where they go (then cbuf_commit). 0, -ENOBUFS when len + n
 * would pass max, -ENOMEM. Nothing changes on error. */
int cbuf_reserve(cbuf *b, size_t n, uint8_t **at);
void cbuf_commit(cbuf *b, size_t n);
int cbuf_append(cbuf *b, const void *p, size_t n);
/* Appends formatted text (without its NUL). 0, -ENOBUFS (nothing appended), -ENOMEM, -EINVAL (format). */
int cbuf_printf(cbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops n bytes from the front (all of them when n >= len, and then the memory too). */
void cbuf_consume(cbuf *b, size_t n);
/* Moves up to cap bytes from the front into out; returns how many. */
size_t cbuf_take(cbuf *b, void *out, size_t cap);
/* The allocation cbuf_append(b, ., n) would leave (for owners that budget memory across buffers). */
size_t cbuf_cap_after(const cbuf *b, size_t n);
/* Frees the memory; first and max stay, so the buffer can be used again. */
void cbuf_free(cbuf *b);

static inline uint8_t *cbuf_data(const cbuf *b) { return b->p ? b->p + b->off : NULL; }
static inline const char *cbuf_str(const cbuf *b) { return b->p ? (const char *)b->p + b->off : ""; }

#endif
