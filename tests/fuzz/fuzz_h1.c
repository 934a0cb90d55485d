/* libFuzzer harness for the HTTP/1.1 relay framing: any bytes, fed in pieces; every byte is attributed
 * exactly once, a call never stalls, and a message boundary never depends on how the input was split.
 * Bit 1 of the first byte turns on the options (caller's target buffer, kept headers, no Host rules): the
 * kept headers then walk to exactly what was kept, within the caps, and a request target is split as an
 * absolute URL. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/h1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Returns the offsets where messages ended (up to 64), -1 terminated, and the stop offset. */
/* Walks the kept headers: every byte of them once, at most max fields. */
static void check_headers(const h1 *h)
{
	const char *name, *value;
	size_t pos = 0, last = 0;
	unsigned count = 0;
	while (h1_header_next(h, &pos, &name, &value)) {
		if (pos <= last || pos > h->hdrs_len || ++count > h->hdrs_max)
			abort();
		last = pos;
	}
	if (pos != h->hdrs_len || count != h->nheaders)
		abort();
}

static size_t run(const uint8_t *p, size_t n, bool request, bool opts, size_t step, long *ends)
{
	h1 h;
	char target[64], hdrs[512];
	size_t off = 0;
	int ne = 0;
	h1_init(&h, request, 1024);
	if (opts) {
		h1_any_host(&h);
		h1_keep_target(&h, target, sizeof target);
		h1_keep_headers(&h, hdrs, sizeof hdrs, 16);
	}
	while (off < n) {
		size_t piece = n - off < step ? n - off : step, pos = 0;
		while (pos < piece) {
			size_t used = 0;
			h1_ev ev = h1_parse(&h, p + off + pos, piece - pos, &used);
			if (used > piece - pos)
				abort();
			pos += used;
			if (ev == H1_ERR)
				goto stop;
			if (ev == H1_MORE && pos != piece)
				abort(); /* H1_MORE means everything given was taken */
			if (ev == H1_HEAD && opts) {
				check_headers(&h);
				if (h.target_len >= sizeof target || strlen(h.target) != h.target_len)
					abort();
				if (request) {
					char host[32], path[64], err[64];
					uint16_t port;
					if (h1_absolute_target(h.target, h.target_len, host, sizeof host, &port, path, sizeof path,
							       err, sizeof err) == 0 &&
					    (path[0] != '/' || port == 0 || strlen(host) >= sizeof host))
						abort();
				}
			}
			if (ev == H1_DONE) {
				if (ne < 63)
					ends[ne++] = (long)(off + pos);
				if (h.upgrade)
					goto stop;
				h1_next(&h);
			}
		}
		off += piece;
		continue;
	stop:
		off += pos;
		break;
	}
	ends[ne] = -1;
	return off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	long a[64], b[64];
	bool request, opts;
	size_t step;
	if (size < 2)
		return 0;
	request = data[0] & 1;
	opts = data[0] & 2;
	step = (size_t)(data[1] % 64) + 1;
	run(data + 2, size - 2, request, opts, size, a);
	run(data + 2, size - 2, request, opts, step, b);
	for (int i = 0; i < 64; i++) {
		if (a[i] != b[i])
			abort();
		if (a[i] < 0)
			break;
	}
	return 0;
}
