/* libFuzzer: hsrv's protocol pieces over arbitrary bytes: the first line is a request path matched against
 * the control API's patterns, the rest a query string read for its parameters, and all of it JSON-escaped
 * into buffers of several sizes (always NUL-terminated, never past the buffer). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/hsrv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const patterns[] = {
	"/v1/environments", "/v1/environments/{}", "/v1/environments/{}/work/{}/heartbeat",
	"/v1/sessions/{}/events/stream", "/{}/{}/{}/{}", "/{}/{}/{}/{}/{}",
};
static const char *const names[] = { "block_ms", "page", "limit", "expected_last_heartbeat", "" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *nl, caps[HSRV_MAX_CAPS][HSRV_CAP_MAX], out[64], esc[300];
	unsigned n;
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	nl = strchr(s, '\n');
	if (nl)
		*nl = 0;
	for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++)
		if (hsrv_match(patterns[i], s, caps, &n)) {
			if (n > HSRV_MAX_CAPS)
				abort();
			for (unsigned k = 0; k < n; k++)
				if (!caps[k][0] || strlen(caps[k]) >= HSRV_CAP_MAX || strchr(caps[k], '/'))
					abort();
		}
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		int r = hsrv_query_get(nl ? nl + 1 : s, names[i], out, sizeof out);
		if (r >= 0 && ((size_t)r >= sizeof out || strlen(out) > (size_t)r))
			abort();
		if (r < 0 && r != -ENOENT && r != -E2BIG && r != -EINVAL)
			abort();
	}
	for (size_t cap = 1; cap <= sizeof esc; cap += 97)
		if (strlen(hsrv_json_escape(nl ? nl + 1 : s, esc, cap)) >= cap)
			abort();
	free(s);
	return 0;
}
