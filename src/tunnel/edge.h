/* `postern edge`: the public relay. Connectors (gateways) dial in over TLS 1.3, register with a tunnel
 * token (docs/internals.md) and serve HTTP/2 streams the edge opens; MCP clients connect with TLS whose
 * ClientHello SNI names "<route>.<tunnel id>.<edge domain>" (or through the outer mTLS CONNECT entry) and
 * their bytes are relayed, never decrypted, over one stream each. */
#ifndef POSTERN_EDGE_H
#define POSTERN_EDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/netaddr.h"

/* Which client certificates may reach one tunnel through the mTLS entry (mtls_tunnels.<tunnel name>):
 * every criterion given must hold. ca_file: the certificate chains to this CA (which client_ca_file must
 * also trust); cns / uris: its subject common name, or one of its URI SANs, is one of these exactly. */
typedef struct edge_mtls_bind {
	char *tunnel; /* tunnel name (postern tunnel create NAME) */
	char *ca_file;
	char **cns, **uris; /* NULL-terminated; NULL when not given */
	size_t ncns, nuris;
} edge_mtls_bind;

typedef struct edge_config {
	char *path;
	char *state_dir;
	char *domain;  /* edge domain, lower case; tunnels are <id>.<domain> */
	char *edge_id; /* default: host name */
	char *connector_listen, *client_listen, *metrics_listen, *mtls_listen; /* mtls_listen may be NULL */
	char *connector_cert, *connector_key;
	char *mtls_cert, *mtls_key, *client_ca_file; /* mTLS entry; cert/key default to connector_tls */
	/* A tunnel without an entry here is not reachable through the mTLS entry. */
	edge_mtls_bind *mtls_binds;
	size_t n_mtls_binds;
	na_cidrs client_allowed; /* empty: everyone */
	bool have_allowed;
	/* Clients accepted but not routed yet (SNI: ClientHello not complete; mTLS: handshake or CONNECT head):
	 * at most client_pending_max of them, holding at most client_hello_budget bytes of buffered hello. */
	uint64_t client_hello_budget;
	int64_t client_pending_max;
	/* registration_limit: failed registrations (bad token, malformed line) per source (/32, /64) before it
	 * is refused for block_ms without a token lookup (core/srclim.h); reg_failures 0 turns it off. */
	int64_t reg_failures, reg_window_ms, reg_block_ms;
	/* Of those, one address (IPv4, IPv6) and one network (IPv4 /24, IPv6 /64) may hold at most this many. */
	int64_t client_pending_per_ip, client_pending_per_net;
	/* Deadline for the ClientHello (SNI) or the CONNECT head after the handshake (mTLS); _busy applies to
	 * clients accepted while at least half of client_pending_max are pending. */
	int64_t client_hello_timeout_ms, client_hello_timeout_busy_ms;
	int log_level;
	int log_format; /* enum log_format, or -1 when not set */
} edge_config;

/* Loads and validates an edge config. Unknown keys and bad values fail with "FILE:LINE: key: reason" in
 * err. Files named by the config are not opened here. */
int edge_config_load(const char *path, edge_config *c, char *err, size_t errlen);
/* What the edge will need from the files c names, checked before it starts, at each SIGHUP and by
 * `postern check`: state_dir usable; connector_tls (and mtls_tls) readable, loading, key matching the
 * certificate; client_ca_file and mtls_tunnels' CA files loading. 0, or -EINVAL with "FILE:LINE: key: reason"
 * in err. What may be intended (a certificate expired or naming no host, a key readable by others) is passed
 * to warn, one line each (warn may be NULL). */
int edge_config_preflight(const edge_config *c, void (*warn)(void *ud, const char *w), void *ud, char *err,
			  size_t errlen);

#define EDGE_HELLO_BUDGET_DEFAULT (64ull << 20)
#define EDGE_HELLO_BUDGET_MIN (128ull << 10) /* one ClientHello at its largest fits */
#define EDGE_HELLO_BUDGET_MAX (64ull << 30)
#define EDGE_PENDING_DEFAULT 16384
#define EDGE_PENDING_MAX 100000 /* the edge's cap on clients at once */
#define EDGE_REG_WINDOW_MAX_MS (24ll * 3600 * 1000)
#define EDGE_PENDING_PER_IP_DEFAULT 256
#define EDGE_PENDING_PER_NET_DEFAULT 1024
#define EDGE_HELLO_TIMEOUT_DEFAULT_MS 10000
#define EDGE_HELLO_TIMEOUT_BUSY_DEFAULT_MS 2000
void edge_config_free(edge_config *c);

/* One edge on a loop: token store, TLS contexts, listeners (connector, client, optional mTLS) and the admin
 * server; logs "edge listening". Takes over cfg's contents (cfg is left empty) whether or not it succeeds.
 * On error *out is NULL, err names what failed, and the rest of the edge is released on the loop's next
 * turn (no callback of the caller's fires). Port 0 in a listen address picks a free port (edge_port). */
typedef struct edge edge;
int edge_new(uv_loop_t *loop, edge_config *cfg, edge **out, char *err, size_t errlen);
/* Stops accepting, sends GOAWAY on every connector link and closes every connection; the edge releases
 * itself on the loop once the last of them is closed (so uv_run returns). NULL is a no-op. */
void edge_free(edge *e);
enum edge_addr { EDGE_ADDR_CONNECTOR, EDGE_ADDR_CLIENT, EDGE_ADDR_MTLS, EDGE_ADDR_METRICS };
/* The bound port of a listener; 0 when the edge has none of that kind. */
int edge_port(const edge *e, enum edge_addr which);
/* SIGHUP: applies nc (edge_config_load of the same file again) to a running edge, all of it or nothing.
 * Live: certificates and keys (new connections get them), mtls_tunnels, the client caps and timeouts,
 * client_allowed_ips, registration_limit, edge_id; the links of tunnels deleted since close at once. The
 * listeners, state_dir and domain keep their running values: those that changed are named in restart
 * (comma-separated, "" when none). Takes over nc's contents whether or not it succeeds. 0, or <0 with err
 * and the edge as it was. */
int edge_reload(edge *e, edge_config *nc, char *restart, size_t restartlen, char *err, size_t errlen);

int edge_main(int argc, char **argv);
/* `postern tunnel create|rotate|list|delete` (src/tunnel/tunnelcmd.c). */
int tunnel_main(int argc, char **argv);

#endif
