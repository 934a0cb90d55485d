/* libFuzzer: the guard's JSON-RPC inspector: parse under caps, classify, era, header checks (the first
 * line of the input, split on '|', gives MCP-Protocol-Version, Mcp-Method and Mcp-Name), error bodies, and
 * the tools/list filter. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guard/jrpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool keep_odd(void *ctx, json_t *item)
{
	(void)item;
	return ++*(unsigned *)ctx & 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t hl = nl ? (size_t)(nl - data) : 0;
	char *hdr = malloc(hl + 1), *f[3] = { NULL, NULL, NULL }, *p, *out = NULL, err[200], dec[64];
	const uint8_t *body = nl ? nl + 1 : data;
	size_t blen = nl ? size - hl - 1 : size, n, removed;
	jrpc_limits lim = { .max_body = 1 << 16, .max_batch = 16, .max_depth = 32 };
	jrpc_body *b = NULL;
	unsigned cnt = 0;

	if (!hdr)
		return 0;
	memcpy(hdr, data, hl);
	hdr[hl] = 0;
	p = hdr;
	for (int i = 0; i < 3 && p; i++) {
		f[i] = p;
		if ((p = strchr(p, '|')))
			*p++ = 0;
	}
	(void)jrpc_hdr_decode(hdr, dec, sizeof dec);
	(void)jrpc_hdr_encode(hdr, strlen(hdr), dec, sizeof dec);
	if (jrpc_new(body, blen, &lim, &b, err, sizeof err) == 0) {
		jrpc_param_hdr ph = { "a", f[2] };
		jrpc_headers h = { f[0], f[1], f[2], &ph, 1 };
		(void)jrpc_era_of(b, f[0]);
		for (size_t i = 0; i < jrpc_count(b); i++) {
			const jrpc_msg *m = jrpc_at(b, i);
			jrpc_mismatch mm;
			if (jrpc_check_headers(m, &h, &mm) < 0 && jrpc_mismatch_body(m, &mm, &out, &n) == 0)
				free(out);
			if (jrpc_error_body(m->id, -32001, m->method, m->params, &out, &n) == 0)
				free(out);
		}
		jrpc_free(b);
	}
	if (jrpc_filter_list(body, blen, &lim, "tools", keep_odd, &cnt, &out, &n, &removed, err, sizeof err) == 0)
		free(out);
	free(hdr);
	return 0;
}
