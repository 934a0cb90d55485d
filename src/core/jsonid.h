/* The id of a JSON-RPC message too long to keep (no I/O). A reader drops a line past its cap as it streams
 * by, but the sender waits for an answer that carries its own id: JSON-RPC clients (the MCP SDKs) match
 * answers by id and cannot pair a null-id error with their call, so they wait for their own timeout.
 * jid keeps the first and the last JID_KEEP bytes of the line and looks for the id among the top-level
 * members at either end (the Python SDK writes it first, the TypeScript SDK last); jansson decodes each
 * member, so there is no JSON parser here, only the separators between members. */
#ifndef POSTERN_CORE_JSONID_H
#define POSTERN_CORE_JSONID_H

#include <jansson.h>
#include <stddef.h>

#define JID_KEEP 4096

typedef struct jid_scan {
	char head[JID_KEEP], tail[JID_KEEP];
	size_t hlen, tlen;   /* bytes held in each */
	unsigned long long total; /* bytes of the line seen */
} jid_scan;

void jid_reset(jid_scan *s);
/* The next bytes of the line (without its newline). */
void jid_feed(jid_scan *s, const void *p, size_t n);
/* The id (a new reference: a string or an integer), or NULL when neither end shows one for certain. */
json_t *jid_recover(const jid_scan *s);

#endif
