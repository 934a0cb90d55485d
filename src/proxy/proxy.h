/* The inner proxy: terminates the customer-certificate TLS on a byte stream it is given, parses HTTP/1.1,
 * routes each request by Host to an upstream MCP server and streams the response back without buffering.
 *
 * The proxy never touches the client-side socket. Its owner (a connector HTTP/2 stream, or the plain
 * `listen_addr` listener of px_listen) creates one px_conn per client connection, feeds it ciphertext and
 * writes out what the proxy hands back through stream_ops (core/stream.h). See docs/internals.md, "Stream seam".
 *
 * Threading: everything runs on the px's libuv loop. */
#ifndef POSTERN_PROXY_H
#define POSTERN_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/cfg.h"
#include "core/netaddr.h"
#include "core/stream.h"
#include "proxy/route.h"

/* ---- configuration ------------------------------------------------------------------------------------ */

/* The proxy's top-level keys, NULL-terminated. They share the gateway's YAML file with the connector keys:
 * px_config_load does not reject unknown top-level keys; the caller checks the union of both lists with
 * cfg_check_keys. (log_level and shutdown_timeout are in this list; the gateway may list them too.) */
extern const char *const px_config_keys[];

struct pol;
struct auth;
struct alog_config;
typedef struct px_route_guard {
	struct pol *policy; /* NULL: no policy */
	struct auth *auth;  /* NULL: passthrough (the client's Authorization goes upstream untouched) */
	bool audit;         /* recorded when the proxy has an audit sink; `audit: false` on the route turns it off */
} px_route_guard;

typedef struct px_config {
	char *listen_addr;       /* optional plain listener, "IP:PORT", ":PORT" or "[v6]:PORT"; NULL = none */
	char *tunnel_domain;     /* optional: "<route>.<tunnel_domain>" routes to <route>; lowercase, no dots at ends */
	char *cert_file;         /* tls.cert_file (PEM chain), hot-reloaded */
	char *key_file;          /* tls.key_file */
	route_table routes;      /* routes: name -> upstream */
	na_cidrs allowed_ips;    /* upstream.allowed_ips; the RFC 1918 ranges when not set */
	bool disable_ip_validation; /* upstream.disable_ip_validation */
	char *upstream_ca_file;  /* upstream.tls.ca_file: CAs for https upstreams; NULL = system CAs */
	bool include_system_cas; /* upstream.tls.include_system_cas: system CAs as well as ca_file */
	int64_t shutdown_timeout_ms; /* default 30 s */
	int log_level;           /* enum log_level, or -1 when not set (the caller applies it) */
	int log_format;          /* enum log_format, or -1 when not set (the caller applies it) */

	/* The MCP guard (docs/proxy.md, "MCP guard"): per route (parallel to routes.v) its policy and auth, and
	 * whether the audit sink (given by the owner with px_set_audit) records it; the JSON-RPC caps. */
	px_route_guard *guards;
	size_t nguards;          /* entries of guards (routes.n once loaded) */
	char *pins_file;         /* pins_file: tool-definition pins kept across restarts; NULL = in memory */
	size_t max_body;         /* mcp_limits.max_body: an MCP POST body (stdio, sandbox, guarded routes); 4 MiB */
	unsigned max_batch;      /* mcp_limits.max_batch: messages in one batch; 64 */
	unsigned max_depth;      /* mcp_limits.max_depth: JSON nesting; 64 */
	bool audit_configured;   /* the audit: key is present */
	struct alog_config *audit; /* its sinks (proxy/auditlog.h): px_new opens them; NULL = no audit */

	/* What a reload compares (cfg_node_text): per route (parallel to routes.v) its YAML value, and the audit
	 * block's; NULL when absent. */
	char **route_src;
	char *audit_src;

	/* Tunables, not in YAML (tests and embedding may change them). */
	uint32_t connect_timeout_ms;   /* DNS + TCP connect + upstream TLS; default 30 s */
	uint32_t handshake_timeout_ms; /* client TLS handshake; default 10 s */
	uint32_t head_timeout_ms;      /* from the first byte of a request to the end of its head; default 30 s */
	uint32_t idle_timeout_ms;      /* keep-alive client connection with no request; default 120 s */
	uint32_t max_head_bytes;       /* request (and response) head cap; default 64 KiB, over it: 431 */
	uint32_t reload_interval_ms;   /* certificate file poll interval; default 2 s */
} px_config;

/* Fills a config with defaults (no routes, RFC 1918 allowlist). */
int px_config_init(px_config *c);
/* Reads the proxy keys from root (a mapping) of d. 0, or -EINVAL with the error in cfg_error(d) (file, line,
 * key). *out is malloc'd; free with px_config_free. */
int px_config_load(cfg_doc *d, cfg_node *root, px_config **out);
void px_config_free(px_config *c);
/* What the daemon will need, checked on the host before it starts (by the daemon's load and by postern
 * check): the certificate pair loads and covers the routes under tunnel_domain, each stdio command exists,
 * each workspace_root is a writable directory or can be created, upstream.tls.ca_file is readable. Errors
 * (file, line, key) in cfg_error(d) with -EINVAL; what may be intended becomes a cfg_warn. Changes nothing. */
int px_config_preflight(cfg_doc *d, cfg_node *root, const px_config *c);
/* 0 when the certificate of ctx covers <route>.<tunnel_domain> for every single-label route (always when
 * tunnel_domain is unset), else -EINVAL with the reason in err. Also used when the certificate is reloaded. */
struct ssl_ctx_st;
int px_cert_check_domain(const px_config *c, struct ssl_ctx_st *ctx, char *err, size_t errlen);

/* ---- the proxy ---------------------------------------------------------------------------------------- */

typedef struct px px;
typedef struct px_conn px_conn;

/* cfg must stay valid until px_free (px_reload may exchange equal objects between it and a newer config: the
 * audit sinks' config and a jwks_url route's auth, each freed by the config that then holds it). Loads the
 * certificate pair and starts watching it. Returns NULL with a reason in err. */
px *px_new(uv_loop_t *loop, const px_config *cfg, char *err, size_t errlen);

/* Live reload (SIGHUP, docs/proxy.md "Reload"): builds a new generation from cfg (the certificate pair, checked
 * against tunnel_domain; the https upstream context; the MCP bridges of new or changed stdio/sandbox routes;
 * jwks fetchers; the audit sinks when the audit block changed) and swaps it in for new requests. Exchanges
 * in flight finish on the generation they began on. Carried over from the running generation: the bridge
 * (sessions, children) of a stdio/sandbox route whose command and session settings are unchanged, the auth
 * (with its fetched key set) of a jwks_url route whose YAML is unchanged, the audit sinks when the audit block
 * is unchanged. A removed or changed route's bridge ends its GET streams at once and its sessions once no
 * request of the old generation is in flight on it. listen_addr and pins_file keep their running values
 * (the caller tells the operator they need a restart). On success the px owns cfg (freed when its generation
 * ends); on error nothing changed, cfg is still the caller's and err says why. */
int px_reload(px *p, px_config *cfg, char *err, size_t errlen);

/* How a reload treats each route of the new config (pure, for px_reload and its unit test). */
typedef struct px_route_carry {
	long old;         /* index of the route of that name in the running config; -1: added */
	bool same;        /* its YAML value is unchanged */
	bool keep_bridge; /* stdio/sandbox with the same command and session settings: the bridge carries on */
	bool keep_auth;   /* same and a jwks_url auth: the auth and its fetcher carry on */
} px_route_carry;
/* out has nw->routes.n entries. *removed (may be NULL) gets how many running routes are gone or changed. */
void px_reload_plan(const px_config *old, const px_config *nw, px_route_carry *out, size_t *removed);
/* Aborts every connection left (no ops calls), stops timers and the listener. Handles close on the loop:
 * run the loop afterwards until it has no more handles of the proxy (uv_run(loop, UV_RUN_DEFAULT) returns). */
void px_free(px *p);

/* Starts the plain listener on cfg->listen_addr (each accepted TCP connection becomes a px_conn). 0 or <0
 * with err filled. The bound address (useful with port 0) is logged and given by px_listen_addr. */
int px_listen(px *p, char *err, size_t errlen);
const char *px_listen_addr(const px *p);

/* Graceful drain: the listener closes, px_conn_new refuses new connections, idle keep-alive connections
 * close, busy ones close when their current exchange ends. cb runs once (from the loop) when no connection is
 * left, or when cfg->shutdown_timeout_ms has passed (remaining connections are then aborted, each owner
 * getting ops->close). */
typedef void (*px_drained_cb)(px *p, void *ud);
void px_begin_shutdown(px *p, px_drained_cb cb, void *ud);
bool px_draining(const px *p);

typedef struct px_stats {
	uint64_t conns_total, conns_active, requests_total, tls_failures, upstream_failures, ip_rejected,
		 cert_reloads, cert_reload_failures, audit_failures, guard_dropped;
} px_stats;
void px_get_stats(const px *p, px_stats *out);

/* The audit sink: one record per MCP message crossing a guarded route (guard/audit.h). It runs before the
 * message is released, so a record it returns 0 for was written before the client saw the answer; <0 refuses
 * the call (503) instead of forwarding it unrecorded. r and log_arguments: how arguments are redacted, and
 * whether they are recorded at all. Called from the loop. */
struct aud_rec;
struct redact;
struct pin_table;
typedef int (*px_audit_fn)(void *ud, const struct aud_rec *r);
void px_set_audit(px *p, px_audit_fn fn, void *ud, const struct redact *r, bool log_arguments);
/* Where approve rules hold their calls (proxy/approvals.h); without it such calls are refused. a must
 * outlive the px's connections (free it after px_free). */
struct apv;
void px_set_approvals(px *p, struct apv *a);
/* The tool-definition pins of every route (loaded from pins_file at px_new), for `postern pins`. */
struct pin_table *px_pins(px *p);

/* ---- the stream seam (core/stream.h) ------------------------------------------------------------------- */

/* The proxy as a stream backend: open is px_conn_new, the rest the px_conn_* calls below. */
void px_stream_backend(px *p, stream_backend *out);

/* A new client connection (see stream_backend.open). client_addr ("ip:port", may be NULL) is only for
 * logs. ops must outlive the px_conn. NULL when draining or out of memory. */
px_conn *px_conn_new(px *p, const stream_ops *ops, void *ctx, const char *client_addr);
/* Ciphertext from the client, reported back through ops->consumed once processed. */
void px_conn_feed(px_conn *c, const uint8_t *p, size_t n);
/* The client half-closed its sending side (END_STREAM, FIN). */
void px_conn_eof(px_conn *c);
/* The owner's outgoing queue fell below its low-water mark after over_high_water was true. */
void px_conn_drained(px_conn *c);
/* The owner is going away: the px_conn is freed, its upstream closed, and no ops call happens once this
 * returns. May be called from inside an ops callback. */
void px_conn_abort(px_conn *c);

/* ops->close is never called from inside px_conn_feed/eof/drained/abort (core/stream.h). */

#endif
