/* Frames of the file tool worker (see tool_wire.h). */
#include "sandbox/tools/tool_wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char MAGIC[4] = { 'P', 'T', 'W', '1' };

void twire_dec_init(struct twire_dec *d, size_t cap)
{
	memset(d, 0, sizeof *d);
	d->cap = cap;
}

void twire_dec_reset(struct twire_dec *d)
{
	free(d->payload);
	twire_dec_init(d, d->cap);
}

void twire_header(uint8_t out[TWIRE_HDR], uint8_t flags, uint32_t len)
{
	memcpy(out, MAGIC, 4);
	out[4] = flags;
	out[5] = (uint8_t)(len >> 24);
	out[6] = (uint8_t)(len >> 16);
	out[7] = (uint8_t)(len >> 8);
	out[8] = (uint8_t)len;
}

int twire_dec_feed(struct twire_dec *d, const char *p, size_t n, size_t *used)
{
	size_t u = 0;
	int rc = 0;

	while (d->hlen < TWIRE_HDR && u < n) {
		d->hdr[d->hlen] = (uint8_t)p[u++];
		/* Refuse at the first wrong byte: a stray text (a loader error) is reported as it is. */
		if (d->hlen < 4 && d->hdr[d->hlen] != (uint8_t)MAGIC[d->hlen]) {
			rc = -EBADMSG;
			goto out;
		}
		if (++d->hlen == TWIRE_HDR) {
			d->flags = d->hdr[4];
			d->len = (uint32_t)d->hdr[5] << 24 | (uint32_t)d->hdr[6] << 16 | (uint32_t)d->hdr[7] << 8 |
				 d->hdr[8];
			if (d->flags & ~TWIRE_F_ERROR) {
				rc = -EBADMSG;
				goto out;
			}
			if (d->len > d->cap) {
				rc = -EMSGSIZE;
				goto out;
			}
			d->payload = malloc((size_t)d->len + 1);
			if (!d->payload) {
				rc = -ENOMEM;
				goto out;
			}
		}
	}
	if (d->hlen == TWIRE_HDR) {
		size_t k = n - u < d->len - d->have ? n - u : d->len - d->have;
		memcpy(d->payload + d->have, p + u, k);
		d->have += k;
		u += k;
		if (d->have == d->len) {
			d->payload[d->len] = 0;
			rc = 1;
		}
	}
out:
	*used = u;
	return rc;
}
