/* libFuzzer harness for the tool worker's frames: the host decodes whatever the worker (a process the
 * session can take over) writes. Arbitrary chunking must give the same frames as one feed, never read
 * past the input, and never accept a payload over the cap. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/tools/tool_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int decode(const uint8_t *data, size_t size, size_t chunk, uint32_t *sum, int *frames)
{
	struct twire_dec d;
	size_t off = 0;
	int rc = 0;
	twire_dec_init(&d, 4096);
	*sum = 0;
	*frames = 0;
	while (off < size) {
		size_t take = size - off < chunk ? size - off : chunk, used;
		rc = twire_dec_feed(&d, (const char *)data + off, take, &used);
		if (used > take)
			abort();
		off += used;
		if (rc < 0)
			break;
		if (rc == 1) {
			if (d.len > 4096 || d.payload[d.len] != 0)
				abort();
			for (uint32_t i = 0; i < d.len; i++)
				*sum = *sum * 31 + (uint8_t)d.payload[i] + d.flags;
			++*frames;
			twire_dec_reset(&d);
		}
	}
	twire_dec_reset(&d);
	return rc < 0 ? rc : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t s1, s2;
	int f1, f2;
	size_t chunk = size ? (size_t)data[0] % 13 + 1 : 1;
	int r1 = decode(data, size, size ? size : 1, &s1, &f1), r2 = decode(data, size, chunk, &s2, &f2);
	if (r1 != r2 || s1 != s2 || f1 != f2)
		abort();
	return 0;
}
