/* Fuzzes the MCP server protocol face: the input is fed in chunks whose sizes come from the first
 * byte; every output line must be one valid JSON value. Tool calls go to a stub. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/mcp_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int stub_call(void *ud, const char *tool, json_t *args, json_t **result)
{
	(void)ud;
	(void)args;
	if (strcmp(tool, "bash") != 0)
		return -ENOENT;
	*result = mcps_text_result("ok", 2, false);
	return 0;
}

static void check_output(mcps *m)
{
	size_t len, i = 0;
	const char *out = mcps_output(m, &len);

	while (i < len) {
		const char *nl = memchr(out + i, '\n', len - i);
		json_error_t e;
		json_t *j;
		if (!nl)
			abort(); /* output is whole lines only */
		j = json_loadb(out + i, (size_t)(nl - out) - i, JSON_DECODE_ANY, &e);
		if (!j)
			abort();
		json_decref(j);
		i = (size_t)(nl - out) + 1;
	}
	mcps_consume(m, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static json_t *tools;
	struct mcps_config c = { .call = stub_call, .max_message = 4096 };
	size_t chunk, i = 1;
	mcps *m;

	if (size < 1)
		return 0;
	if (!tools)
		tools = json_pack("[{s:s,s:{s:s}}]", "name", "bash", "inputSchema", "type", "object");
	c.tools = tools;
	m = mcps_new(&c);
	if (!m)
		return 0;
	chunk = (size_t)data[0] % 64 + 1;
	while (i < size) {
		size_t n = size - i < chunk ? size - i : chunk;
		mcps_feed(m, (const char *)data + i, n);
		check_output(m);
		i += n;
	}
	mcps_finish(m);
	check_output(m);
	mcps_free(m);
	return 0;
}
