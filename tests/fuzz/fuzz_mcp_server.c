/* Fuzzes the MCP server protocol face: the input is fed in chunks whose sizes come from the first
 * byte; every output line must be one valid JSON value. Tool calls go to a stub. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/mcp/mcp_server.h"

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

/* Asynchronous mode: calls are parked here and completed after each feed. */
static json_t *parked_id, *parked_args;

static int stub_start(void *ud, json_t *id, const char *tool, json_t *args)
{
	(void)ud;
	if (strcmp(tool, "bash") != 0)
		return -ENOENT;
	if (parked_id)
		return -EBUSY;
	parked_id = id;
	parked_args = args;
	return 0;
}

static void stub_cancel(void *ud, json_t *rid)
{
	(void)ud;
	if (!json_is_string(rid) && !json_is_integer(rid))
		abort();
}

static void complete_parked(mcps *m)
{
	if (!parked_id)
		return;
	mcps_complete(m, parked_id, 0, mcps_text_result("ok", 2, false));
	json_decref(parked_id);
	json_decref(parked_args);
	parked_id = parked_args = NULL;
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
	if (data[0] & 0x80) {
		c.start = stub_start;
		c.cancel = stub_cancel;
	}
	m = mcps_new(&c);
	if (!m)
		return 0;
	chunk = (size_t)data[0] % 64 + 1;
	while (i < size) {
		size_t n = size - i < chunk ? size - i : chunk;
		mcps_feed(m, (const char *)data + i, n);
		complete_parked(m);
		check_output(m);
		i += n;
	}
	mcps_finish(m);
	complete_parked(m);
	check_output(m);
	mcps_free(m);
	return 0;
}
