#include "core/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arr.h"

static int parse_port(const char *s, bool allow_zero, uint16_t *port)
{
	unsigned long v = 0;
	if (!*s || strlen(s) > 5)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 65535 || (v == 0 && !allow_zero))
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

int na_split_hostport(const char *s, bool allow_zero, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *hs;
	size_t hn;

	if (!s || !host || hostlen == 0)
		return -EINVAL;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		hs = s + 1;
		hn = (size_t)(close - hs);
		colon = close + 1;
		if (hn == 0 || memchr(hs, '[', hn))
			return -EINVAL;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hs = s;
		hn = (size_t)(colon - s);
		/* An unbracketed IPv6 address is ambiguous ("::1:80"): require brackets. */
		if (memchr(hs, ':', hn))
			return -EINVAL;
	}
	if (hn >= hostlen || hn >= NA_HOST_MAX)
		return -EINVAL;
	for (size_t i = 0; i < hn; i++)
		if ((unsigned char)hs[i] <= ' ' || hs[i] == '/' || hs[i] == 0x7f)
			return -EINVAL;
	if (parse_port(colon + 1, allow_zero, port) < 0)
		return -EINVAL;
	memcpy(host, hs, hn);
	host[hn] = 0;
	return 0;
}

int na_parse_sockaddr(const char *s, bool allow_zero, struct sockaddr_storage *out)
{
	char host[NA_HOST_MAX];
	uint16_t port;
	struct sockaddr_in *v4 = (struct sockaddr_in *)out;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;

	if (na_split_hostport(s, allow_zero, host, sizeof host, &port) < 0)
		return -EINVAL;
	memset(out, 0, sizeof *out);
	if (!host[0]) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		v4->sin_addr.s_addr = htonl(INADDR_ANY);
		return 0;
	}
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		return 0;
	}
	if (s[0] == '[' && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		return 0;
	}
	return -EINVAL;
}

static bool is_v4mapped(const uint8_t *a)
{
	static const uint8_t pfx[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	return memcmp(a, pfx, 12) == 0;
}

/* Reduces sa to (family, 16 bytes) with IPv4-mapped IPv6 turned into IPv4. */
static bool norm(const struct sockaddr *sa, int *fam, uint8_t a[16])
{
	memset(a, 0, 16);
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		*fam = AF_INET;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		if (is_v4mapped(b)) {
			memcpy(a, b + 12, 4);
			*fam = AF_INET;
		} else {
			memcpy(a, b, 16);
			*fam = AF_INET6;
		}
		return true;
	}
	return false;
}

const char *na_format_ip(const struct sockaddr *sa, char *buf, size_t len)
{
	uint8_t a[16];
	int fam;
	if (!len)
		return buf;
	if (!norm(sa, &fam, a) || !inet_ntop(fam, a, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

const char *na_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	uint8_t a[16];
	int fam;
	uint16_t port;
	if (!norm(sa, &fam, a)) {
		snprintf(buf, len, "?");
		return buf;
	}
	inet_ntop(fam, a, ip, sizeof ip);
	port = sa->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)sa)->sin_port)
					: ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	snprintf(buf, len, fam == AF_INET ? "%s:%u" : "[%s]:%u", ip, (unsigned)port);
	return buf;
}

static void mask_bits(uint8_t *a, unsigned bits, unsigned total)
{
	for (unsigned i = 0; i < total / 8; i++) {
		unsigned keep = bits >= (i + 1) * 8 ? 8 : bits > i * 8 ? bits - i * 8 : 0;
		a[i] &= (uint8_t)(0xff00u >> keep);
	}
}

int na_cidr_parse(const char *s, na_cidr *out)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash;
	unsigned long bits = 0;
	bool have_bits;
	uint8_t a[16];
	size_t n;

	if (!s || !*s || strlen(s) >= sizeof buf)
		return -EINVAL;
	slash = strchr(s, '/');
	n = slash ? (size_t)(slash - s) : strlen(s);
	memcpy(buf, s, n);
	buf[n] = 0;
	have_bits = slash != NULL;
	if (have_bits) {
		const char *p = slash + 1;
		if (!*p || strlen(p) > 3)
			return -EINVAL;
		for (; *p; p++) {
			if (*p < '0' || *p > '9')
				return -EINVAL;
			bits = bits * 10 + (unsigned long)(*p - '0');
		}
	}
	memset(out, 0, sizeof *out);
	if (inet_pton(AF_INET, buf, a) == 1) {
		if (!have_bits)
			bits = 32;
		if (bits > 32)
			return -EINVAL;
		out->family = AF_INET;
		memcpy(out->addr, a, 4);
	} else if (inet_pton(AF_INET6, buf, a) == 1) {
		if (!have_bits)
			bits = 128;
		if (bits > 128)
			return -EINVAL;
		if (is_v4mapped(a) && bits >= 96) {
			out->family = AF_INET;
			memcpy(out->addr, a + 12, 4);
			bits -= 96;
		} else {
			out->family = AF_INET6;
			memcpy(out->addr, a, 16);
		}
	} else {
		return -EINVAL;
	}
	out->bits = (uint8_t)bits;
	mask_bits(out->addr, out->bits, out->family == AF_INET ? 32 : 128);
	return 0;
}

const char *na_cidr_format(const na_cidr *c, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	if (!inet_ntop(c->family, c->addr, ip, sizeof ip))
		snprintf(ip, sizeof ip, "?");
	snprintf(buf, len, "%s/%u", ip, (unsigned)c->bits);
	return buf;
}

void na_cidrs_init(na_cidrs *l) { memset(l, 0, sizeof *l); }

void na_cidrs_free(na_cidrs *l)
{
	if (!l)
		return;
	free(l->v);
	memset(l, 0, sizeof *l);
}

int na_cidrs_add(na_cidrs *l, const char *cidr)
{
	na_cidr c;
	if (na_cidr_parse(cidr, &c) < 0)
		return -EINVAL;
	if (l->n >= NA_CIDRS_MAX)
		return -E2BIG;
	if (ARR_RESERVE(l->v, l->n, l->cap, 8) < 0)
		return -ENOMEM;
	l->v[l->n++] = c;
	return 0;
}

int na_cidrs_add_rfc1918(na_cidrs *l)
{
	static const char *const r[] = { "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16" };
	for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
		int rc = na_cidrs_add(l, r[i]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static bool match_norm(const na_cidr *c, int fam, const uint8_t a[16])
{
	unsigned full, rest;
	if (c->family != fam)
		return false;
	full = c->bits / 8;
	rest = c->bits % 8;
	if (memcmp(c->addr, a, full) != 0)
		return false;
	if (rest && ((a[full] ^ c->addr[full]) & (uint8_t)(0xff00u >> rest)))
		return false;
	return true;
}

bool na_cidr_match(const na_cidr *c, const struct sockaddr *sa)
{
	uint8_t a[16];
	int fam;
	return norm(sa, &fam, a) && match_norm(c, fam, a);
}

bool na_cidrs_match(const na_cidrs *l, const struct sockaddr *sa)
{
	uint8_t a[16];
	int fam;
	if (!l || !norm(sa, &fam, a))
		return false;
	for (size_t i = 0; i < l->n; i++)
		if (match_norm(&l->v[i], fam, a))
			return true;
	return false;
}

bool na_cidrs_match_str(const na_cidrs *l, const char *ip)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else
		return false;
	return na_cidrs_match(l, (struct sockaddr *)&ss);
}
