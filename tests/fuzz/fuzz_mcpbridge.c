/* libFuzzer: JSON-RPC classification of messages crossing the stdio bridge. */
#include <stddef.h>
#include <stdint.h>

#include "proxy/mcpbridge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char id[160], m[128], why[200];
	(void)mbr_classify((const char *)data, size, id, sizeof id, m, sizeof m, why, sizeof why);
	return 0;
}
