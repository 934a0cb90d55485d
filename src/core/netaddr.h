/* Network addresses: "host:port" parsing and CIDR allowlists (IPv4 and IPv6). Pure functions, no I/O:
 * used for listen addresses, the edge's client_allowed_ips and the proxy's upstream SSRF check. */
#ifndef POSTERN_NETADDR_H
#define POSTERN_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NA_HOST_MAX 256 /* host buffer size for na_split_hostport (DNS names are at most 253) */

/* "host:port", ":port" (host ""), "[v6]:port". host gets the name without brackets. Port 1..65535, or 0
 * when allow_zero (ephemeral listen port). Returns 0 or -EINVAL. */
int na_split_hostport(const char *s, bool allow_zero, char *host, size_t hostlen, uint16_t *port);

/* A numeric address for listening or connecting: "1.2.3.4:80", "[::1]:80", ":80" (= 0.0.0.0:80).
 * Names are refused (-EINVAL): resolve them yourself. */
int na_parse_sockaddr(const char *s, bool allow_zero, struct sockaddr_storage *out);

/* Formats "ip:port" ("[v6]:port"); IPv4-mapped IPv6 is shown as IPv4. Returns buf. */
const char *na_format(const struct sockaddr *sa, char *buf, size_t len);
/* The address only, no port. Returns buf. */
const char *na_format_ip(const struct sockaddr *sa, char *buf, size_t len);
#define NA_FMT_MAX 64 /* enough for "[v6%scope]:port" */

/* A CIDR list. Families are kept apart: ::/0 does not match IPv4. IPv4-mapped IPv6 addresses
 * (::ffff:a.b.c.d), given as a CIDR or as an address to match, are treated as the IPv4 address. */
typedef struct na_cidr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t bits;
	uint8_t addr[16]; /* network address, host bits cleared; IPv4 in the first 4 bytes */
} na_cidr;

typedef struct na_cidrs {
	na_cidr *v;
	size_t n, cap;
} na_cidrs;

#define NA_CIDRS_MAX 4096 /* cap on list length: configs are not data sets */

/* Parses "10.0.0.0/8", "fd00::/8", or a bare address (a /32 or /128). Host bits are cleared.
 * Returns 0 or -EINVAL. */
int na_cidr_parse(const char *s, na_cidr *out);
/* Formats "a.b.c.d/n" or "v6/n". */
const char *na_cidr_format(const na_cidr *c, char *buf, size_t len);

void na_cidrs_init(na_cidrs *l);
void na_cidrs_free(na_cidrs *l);
/* Adds one entry. 0, -EINVAL (bad text), -ENOMEM or -E2BIG (over NA_CIDRS_MAX). */
int na_cidrs_add(na_cidrs *l, const char *cidr);
/* The RFC 1918 private ranges: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16. */
int na_cidrs_add_rfc1918(na_cidrs *l);

bool na_cidr_match(const na_cidr *c, const struct sockaddr *sa);
bool na_cidrs_match(const na_cidrs *l, const struct sockaddr *sa);
/* The same for a textual address ("10.1.2.3", "::ffff:10.1.2.3", "fe80::1"); false if not an address. */
bool na_cidrs_match_str(const na_cidrs *l, const char *ip);

#endif
