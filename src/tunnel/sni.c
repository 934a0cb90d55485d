#include "tunnel/sni.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#define REC_HANDSHAKE 22
#define HS_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define REC_MAX (16u * 1024) /* TLSPlaintext.length limit, 2^14 */

const char *sni_result_str(int r)
{
	switch (r) {
	case SNI_NEED_MORE: return "need more";
	case SNI_FOUND: return "found";
	case SNI_NONE: return "no server name";
	case SNI_MALFORMED: return "not a TLS ClientHello";
	case SNI_TOO_LARGE: return "ClientHello too large";
	default: return "?";
	}
}

struct rd {
	const uint8_t *p;
	size_t n;
};

static bool take(struct rd *r, size_t k, const uint8_t **out)
{
	if (r->n < k)
		return false;
	if (out)
		*out = r->p;
	r->p += k;
	r->n -= k;
	return true;
}

static bool u8(struct rd *r, unsigned *v)
{
	const uint8_t *q;
	if (!take(r, 1, &q))
		return false;
	*v = q[0];
	return true;
}

static bool u16(struct rd *r, unsigned *v)
{
	const uint8_t *q;
	if (!take(r, 2, &q))
		return false;
	*v = (unsigned)q[0] << 8 | q[1];
	return true;
}

/* A vector with a 1- or 2-byte length prefix, as a sub-reader. */
static bool vec(struct rd *r, int lenbytes, struct rd *sub)
{
	unsigned len;
	if (!(lenbytes == 1 ? u8(r, &len) : u16(r, &len)))
		return false;
	sub->p = r->p;
	sub->n = len;
	return take(r, len, NULL);
}

bool sni_valid_host(const char *host, size_t n)
{
	const uint8_t *s = (const uint8_t *)host;
	size_t label = 0;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
			  c == '_';
		/* Empty labels ("a..b", leading or trailing dot) and labels over 63 bytes are no DNS name: a
		 * gateway's route table must never see "a." as a route. */
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!ok || ++label > 63)
			return false;
	}
	return label > 0;
}

/* The body of a complete ClientHello (after the 4-byte handshake header). */
static int parse_hello(const uint8_t *p, size_t n, char *name, size_t namelen)
{
	struct rd r = { p, n }, sub, exts;
	unsigned v;
	bool seen_sni = false;
	int res = SNI_NONE;

	if (!u16(&r, &v) || (v >> 8) != 3)    /* legacy_version */
		return SNI_MALFORMED;
	if (!take(&r, 32, NULL))               /* random */
		return SNI_MALFORMED;
	if (!vec(&r, 1, &sub) || sub.n > 32)   /* legacy_session_id */
		return SNI_MALFORMED;
	if (!vec(&r, 2, &sub) || sub.n < 2 || sub.n % 2) /* cipher_suites */
		return SNI_MALFORMED;
	if (!vec(&r, 1, &sub) || sub.n < 1)    /* legacy_compression_methods */
		return SNI_MALFORMED;
	if (r.n == 0)
		return SNI_NONE; /* no extensions at all (pre-TLS 1.2 style) */
	if (!vec(&r, 2, &exts) || r.n != 0)
		return SNI_MALFORMED;
	while (exts.n > 0) {
		unsigned type;
		struct rd body, list;
		if (!u16(&exts, &type) || !vec(&exts, 2, &body))
			return SNI_MALFORMED;
		if (type != EXT_SERVER_NAME)
			continue;
		if (seen_sni) /* an extension type may appear once */
			return SNI_MALFORMED;
		seen_sni = true;
		if (!vec(&body, 2, &list) || body.n != 0 || list.n == 0)
			return SNI_MALFORMED;
		while (list.n > 0) {
			unsigned nt;
			struct rd hn;
			if (!u8(&list, &nt) || !vec(&list, 2, &hn))
				return SNI_MALFORMED;
			if (nt != 0 || res == SNI_FOUND)
				continue; /* only the first host_name counts */
			if (!sni_valid_host((const char *)hn.p, hn.n) || hn.n + 1 > namelen)
				return SNI_MALFORMED;
			for (size_t i = 0; i < hn.n; i++) {
				uint8_t c = hn.p[i];
				name[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
			}
			name[hn.n] = 0;
			res = SNI_FOUND;
		}
	}
	return res;
}

int sni_parse(const uint8_t *p, size_t n, char *name, size_t namelen)
{
	/* Handshake bytes reassembled from the record payloads, up to the ClientHello's end. */
	uint8_t hs[SNI_MAX_HELLO];
	size_t hlen = 0, off = 0, need = 0;

	if (namelen)
		name[0] = 0;
	/* Bytes past SNI_MAX_INPUT are never looked at: a hello that needs them is too large. */
	if (n > SNI_MAX_INPUT)
		n = SNI_MAX_INPUT;
	while (off < n) {
		size_t avail, rlen, k;
		if (p[off] != REC_HANDSHAKE)
			return SNI_MALFORMED;
		if (n - off >= 2 && p[off + 1] != 3)
			return SNI_MALFORMED;
		if (n - off < 5)
			break;
		rlen = (size_t)p[off + 3] << 8 | p[off + 4];
		if (rlen == 0 || rlen > REC_MAX)
			return SNI_MALFORMED;
		avail = n - off - 5 < rlen ? n - off - 5 : rlen;
		/* Only the ClientHello is collected; a complete one stops the walk below. */
		k = avail;
		if (hlen + k > sizeof hs)
			k = sizeof hs - hlen;
		memcpy(hs + hlen, p + off + 5, k);
		hlen += k;
		if (hlen >= 4 && need == 0) {
			size_t len = (size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3];
			if (hs[0] != HS_CLIENT_HELLO)
				return SNI_MALFORMED;
			if (len + 4 > SNI_MAX_HELLO)
				return SNI_TOO_LARGE;
			need = len + 4;
		}
		if (need && hlen >= need)
			return parse_hello(hs + 4, need - 4, name, namelen);
		if (avail < rlen)
			break; /* the rest of this record has not arrived */
		off += 5 + rlen;
	}
	if (hlen >= 1 && hs[0] != HS_CLIENT_HELLO)
		return SNI_MALFORMED;
	return n == SNI_MAX_INPUT ? SNI_TOO_LARGE : SNI_NEED_MORE;
}

size_t sni_alert(uint8_t out[SNI_ALERT_LEN], uint8_t description)
{
	/* Record type alert, legacy version TLS 1.2, length 2, level fatal. */
	static const uint8_t hdr[5] = { 21, 3, 3, 0, 2 };
	memcpy(out, hdr, sizeof hdr);
	out[5] = 2;
	out[6] = description;
	return SNI_ALERT_LEN;
}

int sni_split(const char *host, const char *edge_domain, char *route, size_t routelen, char *tunnel_id,
	      size_t idlen)
{
	size_t hl = strlen(host), dl = strlen(edge_domain), rest, idstart, i;
	if (dl == 0 || hl < dl + 4 || host[hl - dl - 1] != '.' || strcasecmp(host + hl - dl, edge_domain) != 0)
		return -EINVAL;
	rest = hl - dl - 1; /* host[0..rest) = "<route>.<id>" */
	for (i = rest; i > 0 && host[i - 1] != '.'; i--)
		;
	if (i < 2) /* no dot (no route) or an empty route */
		return -EINVAL;
	idstart = i;
	if (idstart == rest) /* empty id label */
		return -EINVAL;
	if (tunnel_id) {
		if (rest - idstart + 1 > idlen)
			return -EINVAL;
		memcpy(tunnel_id, host + idstart, rest - idstart);
		tunnel_id[rest - idstart] = 0;
	}
	if (route) {
		if (idstart - 1 + 1 > routelen)
			return -EINVAL;
		memcpy(route, host, idstart - 1);
		route[idstart - 1] = 0;
	}
	return 0;
}
