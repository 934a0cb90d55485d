/* hsrv's protocol pieces: path patterns, query parameters, reason phrases, JSON escaping. No I/O. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/hex.h"
#include "core/hsrv.h"
#include "core/utf8.h"

static bool cap_byte(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
	       c == '.';
}

bool hsrv_match(const char *pattern, const char *path, char caps[][HSRV_CAP_MAX], unsigned *ncaps)
{
	const char *p = pattern, *s = path;
	unsigned n = 0;
	while (*p) {
		if (p[0] == '{' && p[1] == '}') {
			size_t len = 0;
			while (s[len] && s[len] != '/') {
				if (!cap_byte(s[len]))
					return false;
				len++;
			}
			if (len == 0 || len >= HSRV_CAP_MAX || n >= HSRV_MAX_CAPS)
				return false;
			memcpy(caps[n], s, len);
			caps[n][len] = 0;
			n++;
			s += len;
			p += 2;
			continue;
		}
		if (*p != *s)
			return false;
		p++;
		s++;
	}
	if (*s)
		return false;
	*ncaps = n;
	return true;
}

/* Percent-decodes [p, e) ('+' as space) into out (cap outlen): the length, -E2BIG, -EINVAL. */
static int decode(const char *p, const char *e, char *out, size_t outlen)
{
	size_t o = 0;
	while (p < e) {
		char c = *p++;
		if (c == '+')
			c = ' ';
		else if (c == '%') {
			int hi, lo;
			if (e - p < 2 || (hi = hex_val(p[0])) < 0 || (lo = hex_val(p[1])) < 0)
				return -EINVAL;
			c = (char)(hi * 16 + lo);
			p += 2;
		}
		if (o + 1 >= outlen)
			return -E2BIG;
		out[o++] = c;
	}
	out[o] = 0;
	return (int)o;
}

int hsrv_query_next(const char *query, size_t *pos, char *key, size_t keylen, char *val, size_t vallen)
{
	const char *q = (query ? query : "") + *pos;
	while (*q == '&')
		q++;
	if (!*q)
		return 0;
	const char *end = strchr(q, '&'), *eq;
	size_t seg = end ? (size_t)(end - q) : strlen(q);
	int rk, rv;
	eq = memchr(q, '=', seg);
	*pos = (size_t)(q + seg - (query ? query : ""));
	rk = decode(q, eq ? eq : q + seg, key, keylen);
	rv = decode(eq ? eq + 1 : q + seg, q + seg, val, vallen);
	if (rk < 0)
		return rk;
	return rv < 0 ? rv : 1;
}

int hsrv_query_get(const char *query, const char *name, char *out, size_t outlen)
{
	size_t pos = 0;
	char key[64];
	int r;
	/* keys longer than any name we look for are skipped, not errors; a bad value of the asked one is */
	for (int guard = 0; guard < 10000; guard++) {
		size_t before = pos;
		r = hsrv_query_next(query, &pos, key, sizeof key, out, outlen);
		if (r == 0)
			return -ENOENT;
		if (r == 1 && !strcmp(key, name))
			return (int)strlen(out);
		if (r < 0) {
			/* which part failed: decode the key alone to tell whether it was the name asked for */
			const char *q = (query ? query : "") + before, *e;
			while (*q == '&')
				q++;
			e = q + strcspn(q, "&=");
			if (decode(q, e, key, sizeof key) >= 0 && !strcmp(key, name))
				return r;
		}
	}
	return -ENOENT;
}

const char *hsrv_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

const char *hsrv_json_escape(const char *s, char *out, size_t outlen)
{
	size_t o = 0;
	if (!outlen)
		return out;
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		char tmp[8];
		size_t n;
		if (*p == '"' || *p == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)*p;
			n = 2;
		} else if (*p < 0x20) {
			n = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", *p);
		} else if (*p >= 0x80) {
			size_t l = utf8_seq_len(p, strlen((const char *)p));
			if (l == 0) {
				p++; /* not UTF-8: dropped, never passed on */
				continue;
			}
			if (o + l + 1 > outlen)
				break;
			memcpy(out + o, p, l);
			o += l;
			p += l;
			continue;
		} else {
			tmp[0] = (char)*p;
			n = 1;
		}
		if (o + n + 1 > outlen)
			break;
		memcpy(out + o, tmp, n);
		o += n;
		p++;
	}
	out[o] = 0;
	return out;
}
