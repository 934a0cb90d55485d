/* W3C Trace Context traceparent (Level 1): parse, generate, and derive the child span the guard injects
 * upstream. "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", lowercase; all-zero ids and version
 * ff are invalid; a later version is read by its first 55 characters when a '-' or the end follows. */
#ifndef POSTERN_GUARD_TRACE_H
#define POSTERN_GUARD_TRACE_H

#include <stdint.h>

#define TRC_HEADER_LEN 55

typedef struct trc_ctx {
	char trace_id[33];
	char span_id[17];
	uint8_t flags; /* bit 0: sampled */
} trc_ctx;

/* 0, or -EINVAL when s is not a valid traceparent. */
int trc_parse(const char *s, trc_ctx *out);
/* A new trace (random ids from OpenSSL RAND, sampled). 0 or -EIO when RAND fails. */
int trc_new(trc_ctx *out);
/* The same trace and flags, a new random span id. 0 or -EIO. */
int trc_child(const trc_ctx *parent, trc_ctx *out);
/* "00-...-...-.." with a NUL. */
void trc_format(const trc_ctx *c, char out[TRC_HEADER_LEN + 1]);

#endif
