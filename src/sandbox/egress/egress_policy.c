/* Egress policy: pure decisions on names and addresses (see egress_policy.h for the rule syntax). */
#include "sandbox/egress/egress_policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/arr.h"
#include "core/hex.h"

enum rule_kind { R_ANY, R_EXACT, R_WILD, R_NET };

struct rule {
	enum rule_kind kind;
	int prefix;		  /* R_NET */
	uint16_t port;		  /* 0 = any port */
	struct egp_addr net;	  /* R_NET */
	char name[EGP_MAX_HOST + 1]; /* R_EXACT: the name; R_WILD: the suffix without "*." */
	char text[128];		  /* the pattern as given, for decisions */
};

struct rule_list {
	struct rule *v;
	size_t n, cap;
};

struct egp_policy {
	struct rule_list allow, deny;
	struct egp_addr *local;
	size_t nlocal, caplocal;
};

egp_policy *egp_new(void)
{
	return calloc(1, sizeof(egp_policy));
}

void egp_free(egp_policy *p)
{
	if (!p)
		return;
	free(p->allow.v);
	free(p->deny.v);
	free(p->local);
	free(p);
}

size_t egp_allow_count(const egp_policy *p)
{
	return p ? p->allow.n : 0;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- addresses --------------------------------------------------------------------------------- */

/* One part of a lax IPv4 literal: decimal, 0-prefixed octal or 0x-prefixed hex. Caps at 2^32. */
static int v4_part(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	unsigned base = 10;
	size_t i = 0;

	if (len == 0)
		return -EINVAL;
	if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	} else if (len >= 2 && s[0] == '0') {
		base = 8;
		i = 1;
	}
	for (; i < len; i++) {
		int d = hex_val(s[i]);
		if (d < 0 || (unsigned)d >= base)
			return -EINVAL;
		v = v * base + (unsigned)d;
		if (v > 0xffffffffull)
			return -EINVAL;
	}
	*out = v;
	return 0;
}

static int parse_v4_lax(const char *s, size_t len, struct egp_addr *out)
{
	uint64_t parts[4];
	size_t np = 0, start = 0;
	uint32_t v = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			if (np == 4 || v4_part(s + start, i - start, &parts[np]) < 0)
				return -EINVAL;
			np++;
			start = i + 1;
		}
	}
	for (size_t i = 0; i + 1 < np; i++) {
		if (parts[i] > 255)
			return -EINVAL;
		v |= (uint32_t)parts[i] << (24 - 8 * i);
	}
	/* The last part fills the remaining bytes: "127.1" is 127.0.0.1, "2130706433" too. */
	if (parts[np - 1] > (0xffffffffull >> (8 * (np - 1))))
		return -EINVAL;
	v |= (uint32_t)parts[np - 1];
	memset(out, 0, sizeof *out);
	out->family = AF_INET;
	out->b[0] = (uint8_t)(v >> 24);
	out->b[1] = (uint8_t)(v >> 16);
	out->b[2] = (uint8_t)(v >> 8);
	out->b[3] = (uint8_t)v;
	return 0;
}

/* IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) fold to IPv4: they reach the same
 * IPv4 host, so the IPv4 rules must apply. */
static void fold_v6(struct egp_addr *a)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const uint8_t zero[12] = { 0 };
	uint8_t v4[4];

	if (a->family != AF_INET6)
		return;
	if (memcmp(a->b, mapped, 12) == 0 ||
	    (memcmp(a->b, zero, 12) == 0 && (a->b[12] | a->b[13] | a->b[14]) != 0)) {
		memcpy(v4, a->b + 12, 4);
		memset(a, 0, sizeof *a);
		a->family = AF_INET;
		memcpy(a->b, v4, 4);
	}
}

int egp_parse_ip(const char *s, size_t len, struct egp_addr *out)
{
	char buf[64];
	struct in6_addr a6;

	if (!s || len == 0 || len >= sizeof buf || memchr(s, 0, len))
		return -EINVAL;
	if (s[0] == '[') {
		if (len < 3 || s[len - 1] != ']')
			return -EINVAL;
		s++;
		len -= 2;
	}
	if (memchr(s, ':', len)) {
		memcpy(buf, s, len);
		buf[len] = 0;
		if (inet_pton(AF_INET6, buf, &a6) != 1)
			return -EINVAL;
		memset(out, 0, sizeof *out);
		out->family = AF_INET6;
		memcpy(out->b, &a6, 16);
		fold_v6(out);
		return 0;
	}
	return parse_v4_lax(s, len, out);
}

const char *egp_addr_str(const struct egp_addr *a, char *out, size_t outlen)
{
	if (!a || (a->family != AF_INET && a->family != AF_INET6) ||
	    !inet_ntop(a->family, a->b, out, (socklen_t)outlen)) {
		if (outlen)
			snprintf(out, outlen, "?");
	}
	return out;
}

int egp_addr_from_sockaddr(const struct sockaddr *sa, struct egp_addr *out)
{
	memset(out, 0, sizeof *out);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		out->family = AF_INET;
		memcpy(out->b, &s4->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		out->family = AF_INET6;
		memcpy(out->b, &s6->sin6_addr, 16);
		fold_v6(out);
		return 0;
	}
	return -EAFNOSUPPORT;
}

static bool addr_in(const struct egp_addr *a, const struct egp_addr *net, int prefix)
{
	int full = prefix / 8, rest = prefix % 8;

	if (a->family != net->family)
		return false;
	if (memcmp(a->b, net->b, (size_t)full) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));
		if ((a->b[full] & mask) != (net->b[full] & mask))
			return false;
	}
	return true;
}

/* ---- names ------------------------------------------------------------------------------------- */

/* A name whose last label looks numeric is an IPv4 literal or nothing (as URL parsers treat it):
 * "1.2.3.4.5" and "0x7g" must not be sent to a resolver as names. */
static bool last_label_numeric(const char *s, size_t len)
{
	size_t i = len;
	while (i > 0 && s[i - 1] != '.')
		i--;
	const char *l = s + i;
	size_t n = len - i;
	if (n == 0)
		return false;
	if (n >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X')) {
		for (size_t j = 2; j < n; j++)
			if (hex_val(l[j]) < 0)
				return false;
		return true;
	}
	for (size_t j = 0; j < n; j++)
		if (l[j] < '0' || l[j] > '9')
			return false;
	return true;
}

/* Lowercase LDH (plus '_') labels of 1-63 bytes, no leading or trailing '-', total <= 253. */
static bool valid_dns_name(const char *s, size_t len)
{
	size_t lab = 0;

	if (len == 0 || len > EGP_MAX_HOST)
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			if (lab == 0 || lab > 63 || s[i - lab] == '-' || s[i - 1] == '-')
				return false;
			lab = 0;
			continue;
		}
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
		lab++;
	}
	return true;
}

enum host_kind { HOST_INVALID, HOST_NAME, HOST_IP };

/* Normalises a requested host into out: lowercase, one trailing dot dropped; IP literals parsed. */
static enum host_kind normalise(const char *host, size_t len, char *out, size_t outlen, struct egp_addr *ip)
{
	memset(ip, 0, sizeof *ip);
	if (!host || len == 0 || len > EGP_MAX_HOST + 2 || outlen < EGP_MAX_HOST + 1 || memchr(host, 0, len))
		return HOST_INVALID;
	if (host[0] == '[' || memchr(host, ':', len)) {
		/* Brackets and colons only ever mean IPv6 ("[1.2.3.4]" and "host:80" are not hosts). */
		if (!memchr(host, ':', len) || egp_parse_ip(host, len, ip) < 0)
			return HOST_INVALID;
		egp_addr_str(ip, out, outlen);
		return HOST_IP;
	}
	if (host[len - 1] == '.')
		len--;
	if (len == 0 || len > EGP_MAX_HOST)
		return HOST_INVALID;
	for (size_t i = 0; i < len; i++) {
		char c = host[i];
		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[len] = 0;
	if (last_label_numeric(out, len)) {
		if (parse_v4_lax(out, len, ip) < 0)
			return HOST_INVALID;
		egp_addr_str(ip, out, outlen);
		return HOST_IP;
	}
	return valid_dns_name(out, len) ? HOST_NAME : HOST_INVALID;
}

/* ---- rules ------------------------------------------------------------------------------------- */

static int parse_port(const char *s, size_t len, uint16_t *port)
{
	unsigned v = 0;
	if (len == 0 || len > 5)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

static int parse_net(const char *s, size_t len, struct rule *r)
{
	const char *slash = memchr(s, '/', len);
	size_t alen = slash ? (size_t)(slash - s) : len;
	int max;

	if (egp_parse_ip(s, alen, &r->net) < 0)
		return -EINVAL;
	max = r->net.family == AF_INET ? 32 : 128;
	r->prefix = max;
	if (slash) {
		const char *p = slash + 1;
		size_t plen = len - alen - 1;
		int v = 0;
		if (plen == 0 || plen > 3)
			return -EINVAL;
		for (size_t i = 0; i < plen; i++) {
			if (p[i] < '0' || p[i] > '9')
				return -EINVAL;
			v = v * 10 + (p[i] - '0');
		}
		/* A mapped IPv6 range folded to IPv4 keeps its meaning: ::ffff:10.0.0.0/104 is 10.0.0.0/8. */
		if (r->net.family == AF_INET && memchr(s, ':', alen))
			v -= 96;
		if (v < 0 || v > max)
			return -EINVAL;
		r->prefix = v;
	}
	r->kind = R_NET;
	return 0;
}

static int parse_rule(const char *pat, struct rule *r, char *err, size_t errlen)
{
	size_t len;
	const char *host;
	size_t hlen;
	char norm[EGP_MAX_HOST + 1];
	struct egp_addr ip;

	memset(r, 0, sizeof *r);
	if (!pat || !*pat) {
		seterr(err, errlen, "empty pattern");
		return -EINVAL;
	}
	len = strlen(pat);
	if (len >= sizeof r->text) {
		seterr(err, errlen, "pattern longer than %zu bytes", sizeof r->text - 1);
		return -EINVAL;
	}
	memcpy(r->text, pat, len + 1);
	if (strstr(pat, "://")) {
		seterr(err, errlen, "'%s': a domain pattern has no scheme", pat);
		return -EINVAL;
	}
	host = pat;
	hlen = len;
	if (pat[0] == '[') {
		const char *rb = strchr(pat, ']');
		if (!rb) {
			seterr(err, errlen, "'%s': missing ']'", pat);
			return -EINVAL;
		}
		host = pat + 1;
		hlen = (size_t)(rb - pat) - 1;
		if (rb[1] == ':') {
			if (parse_port(rb + 2, strlen(rb + 2), &r->port) < 0)
				goto badport;
		} else if (rb[1]) {
			seterr(err, errlen, "'%s': unexpected text after ']'", pat);
			return -EINVAL;
		}
		if (parse_net(host, hlen, r) < 0 || r->net.family != AF_INET6)
			goto badaddr;
		return 0;
	}
	const char *colon = strchr(pat, ':');
	if (colon && !strchr(colon + 1, ':')) {
		hlen = (size_t)(colon - pat);
		if (parse_port(colon + 1, len - hlen - 1, &r->port) < 0)
			goto badport;
	} else if (colon) {
		/* Several colons: a bare IPv6 address or range, no port. */
		if (parse_net(pat, len, r) < 0)
			goto badaddr;
		return 0;
	}
	if (hlen == 1 && host[0] == '*') {
		r->kind = R_ANY;
		return 0;
	}
	if (hlen > 2 && host[0] == '*' && host[1] == '.') {
		if (normalise(host + 2, hlen - 2, norm, sizeof norm, &ip) != HOST_NAME) {
			seterr(err, errlen, "'%s': the part after '*.' is not a DNS name", pat);
			return -EINVAL;
		}
		r->kind = R_WILD;
		memcpy(r->name, norm, strnlen(norm, EGP_MAX_HOST) + 1);
		return 0;
	}
	if (memchr(host, '*', hlen)) {
		seterr(err, errlen, "'%s': '*' is only allowed as a whole leading label ('*.example.com')", pat);
		return -EINVAL;
	}
	if (memchr(host, '/', hlen)) {
		if (parse_net(host, hlen, r) < 0)
			goto badaddr;
		return 0;
	}
	switch (normalise(host, hlen, norm, sizeof norm, &ip)) {
	case HOST_NAME:
		r->kind = R_EXACT;
		memcpy(r->name, norm, strnlen(norm, EGP_MAX_HOST) + 1);
		return 0;
	case HOST_IP:
		r->kind = R_NET;
		r->net = ip;
		r->prefix = ip.family == AF_INET ? 32 : 128;
		return 0;
	default:
		seterr(err, errlen, "'%s' is not a domain, '*.domain', IP address or CIDR range", pat);
		return -EINVAL;
	}
badport:
	seterr(err, errlen, "'%s': bad port", pat);
	return -EINVAL;
badaddr:
	seterr(err, errlen, "'%s': bad IP address or range", pat);
	return -EINVAL;
}

static int add_rule(struct rule_list *l, const char *pat, char *err, size_t errlen)
{
	struct rule r;
	int rc = parse_rule(pat, &r, err, errlen);

	if (rc < 0)
		return rc;
	if (l->n >= EGP_MAX_RULES) {
		seterr(err, errlen, "more than %d rules", EGP_MAX_RULES);
		return -ENOSPC;
	}
	if (ARR_RESERVE(l->v, l->n, l->cap, 8) < 0) {
		seterr(err, errlen, "out of memory");
		return -ENOMEM;
	}
	l->v[l->n++] = r;
	return 0;
}

int egp_allow(egp_policy *p, const char *pattern, char *err, size_t errlen)
{
	return p ? add_rule(&p->allow, pattern, err, errlen) : -EINVAL;
}

int egp_deny(egp_policy *p, const char *pattern, char *err, size_t errlen)
{
	return p ? add_rule(&p->deny, pattern, err, errlen) : -EINVAL;
}

int egp_add_local_addr(egp_policy *p, const struct egp_addr *a)
{
	if (!p || !a || (a->family != AF_INET && a->family != AF_INET6))
		return -EINVAL;
	if (p->nlocal >= EGP_MAX_RULES)
		return -ENOSPC;
	if (ARR_RESERVE(p->local, p->nlocal, p->caplocal, 8) < 0)
		return -ENOMEM;
	p->local[p->nlocal++] = *a;
	return 0;
}

static bool rule_matches_host(const struct rule *r, enum host_kind k, const char *norm, const struct egp_addr *ip,
			      uint16_t port)
{
	size_t nl, sl;

	if (r->port && r->port != port)
		return false;
	switch (r->kind) {
	case R_ANY:
		return k == HOST_NAME;
	case R_EXACT:
		return k == HOST_NAME && strcmp(norm, r->name) == 0;
	case R_WILD:
		if (k != HOST_NAME)
			return false;
		nl = strlen(norm);
		sl = strlen(r->name);
		return nl > sl + 1 && norm[nl - sl - 1] == '.' && strcmp(norm + nl - sl, r->name) == 0;
	case R_NET:
		return k == HOST_IP && addr_in(ip, &r->net, r->prefix);
	}
	return false;
}

/* The first rule of l that matches, or NULL. An address (k HOST_IP, ip) matches only the address rules. */
static const struct rule *first_match(const struct rule_list *l, enum host_kind k, const char *norm,
				      const struct egp_addr *ip, uint16_t port)
{
	for (size_t i = 0; i < l->n; i++)
		if (rule_matches_host(&l->v[i], k, norm, ip, port))
			return &l->v[i];
	return NULL;
}

static void decide(struct egp_decision *d, bool allow, enum egp_stage st, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void decide(struct egp_decision *d, bool allow, enum egp_stage st, const char *reason, const char *fmt, ...)
{
	va_list ap;
	d->allow = allow;
	d->stage = st;
	d->reason = reason;
	va_start(ap, fmt);
	vsnprintf(d->rule, sizeof d->rule, fmt, ap);
	va_end(ap);
}

static bool reserved_name(const char *norm)
{
	size_t n = strlen(norm);
	/* RFC 6761: .invalid never resolves, so a lookup would only leak the query. */
	return strcmp(norm, "invalid") == 0 || (n > 8 && strcmp(norm + n - 8, ".invalid") == 0);
}

int egp_check_host(const egp_policy *p, const char *host, size_t hostlen, uint16_t port, char *norm, size_t normlen,
		   struct egp_addr *ip, struct egp_decision *d)
{
	const struct rule *rl;
	enum host_kind k;

	if (!p || !norm || !ip || !d || normlen < EGP_MAX_HOST + 1)
		return -EINVAL;
	norm[0] = 0;
	k = normalise(host, hostlen, norm, normlen, ip);
	if (k == HOST_INVALID) {
		norm[0] = 0;
		decide(d, false, EGP_STAGE_NAME, "invalid-host", "builtin host syntax");
		return 0;
	}
	if ((rl = first_match(&p->deny, k, norm, ip, port))) {
		decide(d, false, EGP_STAGE_NAME, "blocked-by-denylist", "deny %s", rl->text);
		return 0;
	}
	if (k == HOST_NAME && reserved_name(norm)) {
		decide(d, false, EGP_STAGE_NAME, "reserved-name", "builtin reserved name .invalid (RFC 6761)");
		return 0;
	}
	if (p->allow.n == 0) {
		decide(d, false, EGP_STAGE_NAME, "no-network", "default (empty allowlist: no network)");
		return 0;
	}
	if ((rl = first_match(&p->allow, k, norm, ip, port))) {
		decide(d, true, EGP_STAGE_NAME, "allowed", "allow %s", rl->text);
		return 0;
	}
	if (k == HOST_IP)
		decide(d, false, EGP_STAGE_NAME, "ip-literal-not-allowed",
		       "default (an IP literal needs an explicit address rule)");
	else
		decide(d, false, EGP_STAGE_NAME, "blocked-by-allowlist", "default (no allow rule matched)");
	return 0;
}

struct range {
	const char *what;
	const char *cidr;
	int family;
	uint8_t b[16];
	int prefix;
};

/* Specific entries first so the decision names the most telling rule. */
static const struct range builtin[] = {
	{ "metadata", "169.254.169.254/32", AF_INET, { 169, 254, 169, 254 }, 32 },
	{ "metadata", "fd00:ec2::254/128", AF_INET6, { 0xfd, 0, 0x0e, 0xc2, [15] = 0x54, [14] = 0x02 }, 128 },
	{ "loopback", "127.0.0.0/8", AF_INET, { 127 }, 8 },
	{ "loopback", "::1/128", AF_INET6, { [15] = 1 }, 128 },
	{ "unspecified", "0.0.0.0/8", AF_INET, { 0 }, 8 },
	{ "unspecified", "::/128", AF_INET6, { 0 }, 128 },
	{ "link-local", "169.254.0.0/16", AF_INET, { 169, 254 }, 16 },
	{ "link-local", "fe80::/10", AF_INET6, { 0xfe, 0x80 }, 10 },
	{ "private", "10.0.0.0/8", AF_INET, { 10 }, 8 },
	{ "private", "172.16.0.0/12", AF_INET, { 172, 16 }, 12 },
	{ "private", "192.168.0.0/16", AF_INET, { 192, 168 }, 16 },
	{ "private", "100.64.0.0/10", AF_INET, { 100, 64 }, 10 },
	{ "private", "fc00::/7", AF_INET6, { 0xfc }, 7 },
	{ "private", "fec0::/10", AF_INET6, { 0xfe, 0xc0 }, 10 },
	{ "reserved", "192.0.0.0/24", AF_INET, { 192, 0, 0 }, 24 },
	{ "reserved", "198.18.0.0/15", AF_INET, { 198, 18 }, 15 },
	{ "reserved", "240.0.0.0/4", AF_INET, { 240 }, 4 },
	{ "reserved", "100::/64", AF_INET6, { 0x01 }, 64 },
	{ "multicast", "224.0.0.0/4", AF_INET, { 224 }, 4 },
	{ "multicast", "ff00::/8", AF_INET6, { 0xff }, 8 },
};

static const struct range *builtin_match(const struct egp_addr *a)
{
	for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++) {
		struct egp_addr net = { .family = builtin[i].family };
		memcpy(net.b, builtin[i].b, 16);
		if (addr_in(a, &net, builtin[i].prefix))
			return &builtin[i];
	}
	return NULL;
}

/* IPv6 forms that carry an IPv4 address a gateway would reach: NAT64 64:ff9b::/96 and 6to4 2002::/16. */
static bool embedded_v4(const struct egp_addr *a, struct egp_addr *v4)
{
	static const uint8_t nat64[12] = { 0, 0x64, 0xff, 0x9b };
	if (a->family != AF_INET6)
		return false;
	memset(v4, 0, sizeof *v4);
	v4->family = AF_INET;
	if (memcmp(a->b, nat64, 12) == 0) {
		memcpy(v4->b, a->b + 12, 4);
		return true;
	}
	if (a->b[0] == 0x20 && a->b[1] == 0x02) {
		memcpy(v4->b, a->b + 2, 4);
		return true;
	}
	return false;
}

int egp_check_addr(const egp_policy *p, const char *norm, const struct egp_addr *addr, uint16_t port,
		   struct egp_decision *d)
{
	struct egp_addr a, v4;
	const struct range *r;
	const struct rule *rl;
	char s[64];

	(void)norm;
	if (!p || !addr || !d || (addr->family != AF_INET && addr->family != AF_INET6))
		return -EINVAL;
	a = *addr;
	fold_v6(&a);
	egp_addr_str(&a, s, sizeof s);
	if ((rl = first_match(&p->deny, HOST_IP, NULL, &a, port))) {
		decide(d, false, EGP_STAGE_ADDR, "blocked-by-denylist", "deny %s (address %s)", rl->text, s);
		return 0;
	}
	if ((rl = first_match(&p->allow, HOST_IP, NULL, &a, port))) {
		decide(d, true, EGP_STAGE_ADDR, "allowed", "allow %s (address %s)", rl->text, s);
		return 0;
	}
	r = builtin_match(&a);
	if (!r && embedded_v4(&a, &v4))
		r = builtin_match(&v4);
	if (r) {
		decide(d, false, EGP_STAGE_ADDR, "blocked-resolved-address", "builtin %s %s (address %s)", r->what,
		       r->cidr, s);
		return 0;
	}
	for (size_t i = 0; i < p->nlocal; i++) {
		struct egp_addr l = p->local[i];
		fold_v6(&l);
		if (l.family == a.family && memcmp(l.b, a.b, 16) == 0) {
			decide(d, false, EGP_STAGE_ADDR, "blocked-resolved-address", "builtin own-interface (address %s)",
			       s);
			return 0;
		}
	}
	decide(d, true, EGP_STAGE_ADDR, "allowed", "default (public address %s)", s);
	return 0;
}
