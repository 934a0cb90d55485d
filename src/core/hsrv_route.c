/* hsrv's protocol pieces: path patterns, query parameters, reason phrases, JSON escaping. No I/O. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

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

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1; /* -1: not a hex digit */
}

int hsrv_query_get(const char *query, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	const char *q = query ? query : "";
	while (*q) {
		const char *end = strchr(q, '&'), *eq;
		size_t seg = end ? (size_t)(end - q) : strlen(q);
		eq = memchr(q, '=', seg);
		size_t klen = eq ? (size_t)(eq - q) : seg;
		if (klen == nl && !memcmp(q, name, nl)) {
			const char *v = eq ? eq + 1 : q + seg;
			const char *ve = q + seg;
			size_t o = 0;
			while (v < ve) {
				char c = *v++;
				if (c == '+')
					c = ' ';
				else if (c == '%') {
					int hi, lo;
					if (ve - v < 2 || (hi = hexval(v[0])) < 0 || (lo = hexval(v[1])) < 0)
						return -EINVAL;
					c = (char)(hi * 16 + lo);
					v += 2;
				}
				if (o + 1 >= outlen)
					return -E2BIG;
				out[o++] = c;
			}
			out[o] = 0;
			return (int)o;
		}
		q += seg;
		if (*q == '&')
			q++;
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
