/* libFuzzer: JSON-RPC classification of messages crossing the stdio bridge, and the routing keys taken
 * from them (progress tokens, the request a notifications/cancelled names): mbr_inspect must agree with
 * mbr_classify, keep every key NUL-terminated within its buffer, and give keys only where routing uses them. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/mcpbridge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char id[MBR_KEY_MAX], m[128], why[200];
	mbr_msg msg;
	mbr_kind k = mbr_classify((const char *)data, size, id, sizeof id, m, sizeof m, why, sizeof why);
	mbr_kind k2 = mbr_inspect((const char *)data, size, &msg, why, sizeof why);
	if (k != k2 || msg.kind != k)
		abort();
	if (!memchr(msg.idkey, 0, sizeof msg.idkey) || !memchr(msg.method, 0, sizeof msg.method) ||
	    !memchr(msg.progress, 0, sizeof msg.progress) || !memchr(msg.related, 0, sizeof msg.related))
		abort();
	if (k == MBR_INVALID)
		return 0;
	if ((k == MBR_REQUEST || k == MBR_RESPONSE) && strcmp(id, msg.idkey))
		abort();
	if (k != MBR_RESPONSE && strcmp(m, msg.method))
		abort();
	if (msg.related[0] && (k != MBR_NOTIFICATION || strcmp(msg.method, "notifications/cancelled")))
		abort();
	if (msg.progress[0] && k != MBR_REQUEST && strcmp(msg.method, "notifications/progress"))
		abort();
	return 0;
}
