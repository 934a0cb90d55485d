/* libFuzzer: the SSE decoder on any bytes, with small caps. The events must not depend on how the input is
 * split (whole, then in pieces chosen by the first byte); every byte is taken; and every decoded event
 * encodes again and decodes to the same id, type and data. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXEV 64

typedef struct rec {
	int n;
	unsigned long h[MAXEV];
	int rc;
} rec;

static unsigned long hash(const sse_event *ev)
{
	unsigned long h = 5381;
	const char *parts[3] = { ev->id ? ev->id : "\x01", ev->event ? ev->event : "\x01", NULL };
	for (int k = 0; k < 2; k++)
		for (const char *s = parts[k]; *s; s++)
			h = h * 33 + (unsigned char)*s;
	for (size_t i = 0; i < ev->data_len; i++)
		h = h * 33 + (unsigned char)ev->data[i];
	return h * 33 + (unsigned long)ev->has_data + (unsigned long)(ev->retry + 1) * 7;
}

static void check_round_trip(const sse_event *ev)
{
	cbuf b = CBUF_INIT(64, 1 << 16);
	sse_event in = *ev, out;
	sse_dec d;
	size_t used;
	char err[96];
	/* The decoder hands out data with LF line ends and no CR, and ids and types without line ends. */
	if (!in.has_data)
		in.data = NULL;
	if (!in.id && !in.event && in.retry < 0 && !in.data)
		return; /* a block with only an ignored id: nothing to write */
	if (sse_encode(&b, &in) < 0) {
		cbuf_free(&b);
		return;
	}
	sse_dec_init(&d, 1 << 16, 1 << 16);
	if (sse_dec_next(&d, cbuf_data(&b), b.len, &used, &out, err, sizeof err) != 1 || used != b.len)
		abort();
	if (ev->has_data != out.has_data || ev->data_len != out.data_len ||
	    (ev->data_len && memcmp(ev->data, out.data, ev->data_len)) || ev->retry != out.retry ||
	    !ev->id != !out.id || (ev->id && strcmp(ev->id, out.id)) || !ev->event != !out.event ||
	    (ev->event && strcmp(ev->event, out.event)))
		abort();
	sse_dec_free(&d);
	cbuf_free(&b);
}

static void run(const uint8_t *p, size_t n, size_t step, rec *r, bool check)
{
	sse_dec d;
	size_t off = 0;
	sse_dec_init(&d, 200, 1000);
	memset(r, 0, sizeof *r);
	while (off < n && r->rc >= 0) {
		size_t len = step && n - off > step ? step : n - off;
		const uint8_t *q = p + off;
		for (;;) {
			sse_event ev;
			size_t used;
			char err[96];
			int rc = sse_dec_next(&d, q, len, &used, &ev, err, sizeof err);
			if (rc < 0) {
				r->rc = rc;
				break;
			}
			if (used > len || (rc == 0 && used != len))
				abort();
			q += used;
			len -= used;
			off += used;
			if (rc == 0)
				break;
			if (check)
				check_round_trip(&ev);
			if (r->n < MAXEV)
				r->h[r->n++] = hash(&ev);
		}
	}
	sse_dec_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rec a, b;
	size_t step;
	if (size < 1)
		return 0;
	step = 1 + data[0] % 7;
	run(data + 1, size - 1, 0, &a, true);
	run(data + 1, size - 1, step, &b, false);
	/* an error may come at a different event only if a cap was crossed: compare up to it */
	if (a.rc == 0 && b.rc == 0 && (a.n != b.n || memcmp(a.h, b.h, sizeof a.h[0] * (size_t)a.n)))
		abort();
	if ((a.rc == 0) != (b.rc == 0))
		abort();
	return 0;
}
