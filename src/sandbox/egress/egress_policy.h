/* Egress policy for sandboxes: which names and which resolved addresses the egress proxy may reach.
 * Pure: no DNS, no sockets, no clock. The proxy asks twice:
 *   1. egp_check_host() on the name the client asked for, BEFORE any lookup;
 *   2. egp_check_addr() on every address the proxy's own resolver returned, before connecting.
 * Every decision names the rule that decided it (for the log line) and a short reason token
 * (for the `X-Proxy-Error` header).
 *
 * Rules (allow and deny lists take the same syntax, one pattern per call):
 *   example.com        that name only (case-insensitive, a trailing dot ignored)
 *   *.example.com      any name below example.com, NOT example.com itself
 *   *                  any DNS name (never an IP literal)
 *   127.0.0.1, ::1     an IP literal; also makes that address acceptable after resolution
 *   10.0.0.0/8, fd00::/8  an address range; same
 *   any of these with :PORT (IPv6 as [addr]:PORT) restricts the rule to that port.
 * Deny rules are checked first. An empty allowlist means no network at all.
 * After resolution, loopback, unspecified, link-local, private (RFC 1918, CGNAT, ULA), multicast,
 * reserved, cloud metadata (169.254.169.254, fd00:ec2::254) and the host's own interface addresses are
 * refused unless an allow rule names the address or a range containing it. */
#ifndef POSTERN_EGRESS_POLICY_H
#define POSTERN_EGRESS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;
typedef struct egp_policy egp_policy;

#define EGP_MAX_RULES 1024
#define EGP_MAX_HOST 253

/* An address in network byte order; IPv4-mapped IPv6 is folded to IPv4 by the parsers. */
struct egp_addr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t b[16];
};

enum egp_stage { EGP_STAGE_NAME = 0, EGP_STAGE_ADDR = 1 };

struct egp_decision {
	bool allow;
	enum egp_stage stage;
	/* Short token for X-Proxy-Error: "allowed", "blocked-by-denylist", "blocked-by-allowlist",
	 * "no-network", "invalid-host", "ip-literal-not-allowed", "reserved-name",
	 * "blocked-resolved-address". Static storage. */
	const char *reason;
	/* The rule that decided, e.g. "deny *.evil.example", "allow example.com:443",
	 * "builtin loopback 127.0.0.0/8", "default (no allow rule matched)". */
	char rule[192];
};

egp_policy *egp_new(void);
void egp_free(egp_policy *p);

/* Add a rule; -EINVAL for a malformed pattern (reason in err when given), -ENOSPC past EGP_MAX_RULES. */
int egp_allow(egp_policy *p, const char *pattern, char *err, size_t errlen);
int egp_deny(egp_policy *p, const char *pattern, char *err, size_t errlen);
/* Addresses of the host's own interfaces: refused after resolution unless explicitly allowed. */
int egp_add_local_addr(egp_policy *p, const struct egp_addr *a);
size_t egp_allow_count(const egp_policy *p);

/* Stage 1. host is the name as requested (brackets around IPv6 accepted), port the requested port.
 * norm (cap normlen, at least EGP_MAX_HOST+1) receives the normalised name to resolve: lowercase,
 * no trailing dot; for an IP literal its canonical text. *ip is set (family != 0) for an IP literal,
 * which the proxy must connect to without any lookup. Returns 0 when a decision was made (see d->allow). */
int egp_check_host(const egp_policy *p, const char *host, size_t hostlen, uint16_t port, char *norm, size_t normlen,
		   struct egp_addr *ip, struct egp_decision *d);

/* Stage 2: an address the proxy resolved for norm (the output of stage 1) and port. */
int egp_check_addr(const egp_policy *p, const char *norm, const struct egp_addr *a, uint16_t port,
		   struct egp_decision *d);

/* Helpers (also used by the proxy and tests). */
/* Parses an IP literal the way a lax resolver would: dotted IPv4 with decimal/octal/hex parts and
 * 1-4 parts ("2130706433", "0x7f.1", "0177.0.0.1"), IPv6 with optional brackets. IPv4-mapped and
 * IPv4-compatible IPv6 fold to IPv4. 0 or -EINVAL. */
int egp_parse_ip(const char *s, size_t len, struct egp_addr *out);
/* Canonical text (inet_ntop style); returns out. */
const char *egp_addr_str(const struct egp_addr *a, char *out, size_t outlen);
int egp_addr_from_sockaddr(const struct sockaddr *sa, struct egp_addr *out);

#endif
