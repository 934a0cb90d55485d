/* libFuzzer: JSON-RPC classification of messages crossing the stdio bridge, and the routing keys taken
 * from them (progress tokens, the request a notifications/cancelled names): mbr_inspect must agree with
 * mbr_classify, keep every key NUL-terminated within its buffer, and give keys only where routing uses them.
 * The 2026-07-28 rewrites on the same input: a request rewritten for the child is one line that the bridge
 * reads back as a request with the bridge's id (and its token when the client gave one), and mapping it back
 * (as if the child answered with it) restores the client's id; a child's message mapped for a client, and a
 * discover result made from the input as an initialize result, are one line each. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/mcpbridge.h"

static void one_line(const char *s)
{
	if (s && strchr(s, '\n'))
		abort();
}

/* k: the input's own classification (the bridge rewrites only what it took for a request). */
static void modern(const uint8_t *data, size_t size, mbr_kind k)
{
	char *out = NULL, *cid = NULL, *tok = NULL, *back = NULL, why[200];
	mbr_msg m;
	int code;
	if (mbr_modern_to_child((const char *)data, size, 77, &out, &cid, &tok, why, sizeof why) == 0 && k == MBR_REQUEST) {
		one_line(out);
		if (mbr_inspect(out, strlen(out), &m, why, sizeof why) != MBR_REQUEST || strcmp(m.idkey, "n:77") ||
		    (tok && strcmp(m.progress, "n:77")))
			abort();
		/* A response made of it (the id slot is all that matters) gets the client's id back. */
		static const char resp[] = "{\"jsonrpc\":\"2.0\",\"id\":77,\"result\":{}}";
		if (mbr_modern_from_child(resp, sizeof resp - 1, m.method, cid, tok, &back, &code, why, sizeof why) != 0 ||
		    !strstr(back, cid) || !strstr(back, "\"resultType\":\"complete\""))
			abort();
		one_line(back);
	}
	free(out), free(cid), free(tok), free(back);
	out = back = NULL;
	if (mbr_modern_from_child((const char *)data, size, "tools/list", "\"c\"", "5", &out, &code, why, sizeof why) == 0)
		one_line(out);
	free(out);
	out = NULL;
	if (mbr_modern_discover((const char *)data, size, "1", &out, why, sizeof why) == 0) {
		one_line(out);
		if (!strstr(out, "\"supportedVersions\":[\"2026-07-28\"]"))
			abort();
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char id[MBR_KEY_MAX], m[128], why[200];
	mbr_msg msg;
	mbr_kind k = mbr_classify((const char *)data, size, id, sizeof id, m, sizeof m, why, sizeof why);
	mbr_kind k2 = mbr_inspect((const char *)data, size, &msg, why, sizeof why);
	modern(data, size, k);
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
