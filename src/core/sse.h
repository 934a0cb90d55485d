/* Server-Sent Events framing (the WHATWG "text/event-stream" format), both directions, with no I/O.
 *
 * Encoder: one event (id, event type, data, retry) or a comment, appended whole to a cbuf or not at all.
 * Data is split on CRLF, LF and CR into one `data:` line each, so any payload survives the round trip.
 *
 * Decoder: bytes in, events out (pull: sse_dec_next), for reading an upstream's SSE. Lines end with CRLF, LF
 * or CR (a CRLF split between two feeds is one line end), a UTF-8 BOM at the start is skipped, comments and
 * unknown fields are ignored, one leading space of a value is dropped, `id` with a NUL is ignored, `retry`
 * counts only when all digits. Every line is capped (max_line) and so is an event's data (max_event): past
 * a cap the decoder fails with -E2BIG and stays failed. Unlike a browser's EventSource, an event is handed
 * out whenever its block had a field (id, event, retry or data), also with no data (a priming event that
 * only carries an id); `has_data` tells them apart. */
#ifndef POSTERN_CORE_SSE_H
#define POSTERN_CORE_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cbuf.h"

#define SSE_ID_MAX 255        /* longest id the decoder keeps (longer: -E2BIG) and the encoder accepts */
#define SSE_TYPE_MAX 127      /* longest event type */
#define SSE_DEF_MAX_LINE (64u * 1024)
#define SSE_DEF_MAX_EVENT (4u << 20)

typedef struct sse_event {
	const char *id;    /* NULL = none; encoder: no CR, LF or NUL; decoder: the last event id so far */
	const char *event; /* NULL = none ("message"); no CR, LF or NUL */
	const char *data;  /* may hold newlines; NULL with data_len 0 = no data field */
	size_t data_len;
	long retry;        /* reconnection time in ms; < 0 = none */
	bool has_data;     /* decoder: the block had at least one data line */
} sse_event;

/* Appends the encoded event to out: `id:`, `event:`, `retry:`, one `data:` line per line of data, then the
 * blank line. 0, -EINVAL (id or event with CR, LF or NUL, or over their caps), -ENOBUFS (out's cap), -ENOMEM;
 * nothing is appended on error. */
int sse_encode(cbuf *out, const sse_event *ev);
/* The bytes sse_encode would append for ev (0 when it would refuse it with -EINVAL). */
size_t sse_encoded_len(const sse_event *ev);
/* A comment line (`: text`), as keep-alive; text without CR or LF (may be NULL). Same returns. */
int sse_comment(cbuf *out, const char *text);

typedef struct sse_dec {
	size_t max_line, max_event;
	cbuf line, data;  /* the line being read; the event's data so far */
	char id[SSE_ID_MAX + 1], type[SSE_TYPE_MAX + 1];
	long retry;
	bool have_id, any_field, emitted, cr, started, failed;
	char err[96];
} sse_dec;

/* max_line / max_event of 0 take SSE_DEF_MAX_LINE / SSE_DEF_MAX_EVENT. */
void sse_dec_init(sse_dec *d, size_t max_line, size_t max_event);
void sse_dec_free(sse_dec *d);
/* Reads from p[0..n): returns 1 with *ev filled (valid until the next call) after *used bytes, 0 when all
 * n bytes were taken and no event is complete (*used == n), or <0 (-E2BIG over a cap, -ENOMEM) with the
 * reason in err; after an error every call fails the same way. Call again with the rest after an event. */
int sse_dec_next(sse_dec *d, const uint8_t *p, size_t n, size_t *used, sse_event *ev, char *err, size_t errlen);

#endif
