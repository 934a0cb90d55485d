/* libFuzzer: the audit verifier over arbitrary bytes split into two "files" at the first byte's offset,
 * chain resume on the same bytes, and the traceparent parser on the first line. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guard/audit.h"
#include "guard/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	aud_verify *v;
	aud_chain *c;
	aud_report r;
	size_t cut = size ? data[0] % (size + 1) : 0, keep, nl;
	char tp[128];
	trc_ctx t;

	if (aud_verify_new(size & 1, &v) == 0) {
		aud_verify_feed(v, "a", (const char *)data, cut);
		aud_verify_end_file(v);
		aud_verify_feed(v, "b", (const char *)data + cut, size - cut);
		aud_verify_end_file(v);
		aud_verify_report(v, &r);
		aud_verify_free(v);
	}
	if (aud_chain_new(&c) == 0) {
		(void)aud_chain_resume(c, (const char *)data, size, &keep);
		if (keep > size)
			abort();
		aud_chain_free(c);
	}
	nl = size < sizeof tp - 1 ? size : sizeof tp - 1;
	memcpy(tp, data, nl);
	tp[nl] = 0;
	if (trc_parse(tp, &t) == 0) {
		char out[TRC_HEADER_LEN + 1];
		trc_format(&t, out);
		if (memcmp(out + 2, tp + 2, TRC_HEADER_LEN - 2))
			abort(); /* what parsed formats back */
	}
	return 0;
}
