/* Routing for the inner proxy: route values (`scheme://host:port` today; `stdio:` and `sandbox:` later)
 * parsed into a tagged struct, and Host-header lookup. Pure functions, no I/O. */
#ifndef POSTERN_ROUTE_H
#define POSTERN_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum route_kind {
	ROUTE_HTTP = 1, /* http://host:port */
	ROUTE_HTTPS,    /* https://host:port (TLS to the upstream, verified against upstream.tls) */
	ROUTE_STDIO,    /* stdio:CMD ARGS: a stdio MCP server spawned per MCP session (mcpbridge) */
	ROUTE_SANDBOX,  /* sandbox: the built-in sandbox MCP server, one sandbox per MCP session */
} route_kind;

#define ROUTE_NAME_MAX 253
#define ROUTE_HOST_MAX 253

typedef struct route {
	char *name;  /* lowercase; a DNS label or a full host name */
	route_kind kind;
	char *host;  /* upstream host: a DNS name or an IPv4 literal, as written */
	uint16_t port;
	char *value; /* the value as configured, for logs */
	/* ROUTE_STDIO: the command (argv[0] is a path); ROUTE_SANDBOX: the route's sandbox: options for
	 * `sandbox serve`, unparsed (`--option KEY=VALUE` pairs, core/optmap.h). NULL-terminated, may be NULL. */
	char **argv;
	char *workspace_root;     /* sandbox: per-session workspaces under this host directory; NULL = tmpfs */
	unsigned max_sessions;    /* stdio/sandbox: concurrent MCP sessions; 0 = default */
	uint32_t idle_timeout_ms; /* stdio/sandbox: end an idle session; 0 = default (30 min) */
	uint32_t reclaim_idle_ms; /* stdio/sandbox: near the session cap, end sessions idle this long; 0 = 60 s */
} route;

typedef struct route_table {
	route *v;
	size_t n, cap;
} route_table;

/* Parses a route value. Accepts exactly `http://host:port` or `https://host:port`: no path (not even "/"),
 * query, fragment or user info; `stdio:CMD [ARG]...` (split on blanks; CMD an absolute path); or `sandbox:`
 * (defaults; options come from the mapping form in the config). 0, or -EINVAL with a short reason in why.
 * out->name is left alone. */
int route_parse_value(const char *value, route *out, char *why, size_t whylen);
/* A route name: 1..253 characters of letters, digits, '-', '.', '_'; no empty labels. */
bool route_name_valid(const char *name);

/* Normalises a Host header value or an SNI name for lookup: strips ":port" (and the brackets of an IPv6
 * literal), one trailing dot, lowercases. 0, or -EINVAL when it is empty or not a host. */
int route_host_normalize(const char *host, size_t n, char *out, size_t outlen);
/* Exact host first, then the part left of ".<tunnel_domain>" (tunnel_domain may be NULL).
 * host must be normalised. NULL when no route matches. */
const route *route_lookup(const route_table *t, const char *tunnel_domain, const char *host);

void route_table_init(route_table *t);
/* Takes a copy of name (lowercased) and the strings of r. -EEXIST when the name is taken
 * (case-insensitively), -ENOMEM, or -EINVAL for a bad name. */
int route_table_add(route_table *t, const char *name, const route *r);
void route_table_free(route_table *t);

const char *route_kind_name(route_kind k);
/* True for routes served by the stdio bridge (stdio:, sandbox:). */
bool route_is_mcp(const route *r);
void route_free_fields(route *r);
/* True when a and b are stdio/sandbox routes the bridge serves alike: same kind, command (or sandbox options),
 * workspace_root and session settings. A reload keeps the bridge (and its sessions) of such a route. */
bool route_same_process(const route *a, const route *b);

#endif
