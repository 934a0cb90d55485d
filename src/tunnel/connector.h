/* The connector: keeps N outbound TLS connections to the edge(s), registers each with the tunnel token,
 * then serves HTTP/2 on them with roles reversed (the edge opens one CONNECT stream per client connection;
 * we answer and pipe the stream's bytes through a stream backend, normally the proxy). See docs/internals.md,
 * "Connector link".
 *
 * HA: slot i prefers edge i % n_edges. A slot whose dial fails moves to the next edge; a slot served by an
 * edge other than its own keeps checking its own edge (about once a second while that edge refuses TCP,
 * with backoff once it answers but fails) and moves back as soon as it registers there, draining the stand-in
 * connection. Every redial waits per slot on exponential backoff with full jitter (1 s .. 30 s), reset only
 * after a connection stayed registered for 2 ping intervals, so an edge that accepts and then drops us, or
 * rejects our token, is never hammered.
 *
 * Liveness: a PING right after registration and every ping_interval; no ACK within ping_timeout closes the
 * connection (and redials). ctr_ready() is true while at least one registered connection has answered a
 * ping and has no overdue one.
 *
 * Everything runs on one libuv loop. */
#ifndef POSTERN_CONNECTOR_H
#define POSTERN_CONNECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/cfg.h"
#include "core/stream.h"

/* ---- configuration ---- */

/* The connector's top-level keys (NULL-terminated). Like px_config_keys, ctr_config_load does not reject
 * unknown keys: the gateway checks the union. */
extern const char *const ctr_config_keys[];

typedef struct ctr_config {
	char *token_file;        /* re-read at every dial, so a rotated token needs no restart */
	char **edges;            /* "host:port", NULL-terminated; NULL or empty = no connector */
	size_t n_edges;
	char *edge_ca_file;      /* NULL: system CAs */
	char *edge_server_name;  /* TLS name to verify; NULL: the host part of each edge address */
	uint32_t connections;    /* default 4 */
	char *metrics_listen;    /* default 127.0.0.1:20251 (cloudflared uses 20241-20245) */
	int64_t ping_interval_ms;    /* default 5 s */
	int64_t ping_timeout_ms;     /* default 10 s */
	int64_t shutdown_timeout_ms; /* default 30 s */

	/* Tunables, not in YAML. */
	uint32_t backoff_base_ms, backoff_cap_ms; /* 1 s, 30 s */
	uint32_t dial_timeout_ms;                 /* DNS + TCP + TLS; 10 s */
	uint32_t stream_window;                   /* per-stream HTTP/2 window; 256 KiB */
	uint32_t conn_window;                     /* connection window; 32 MiB */
	uint32_t max_streams;                     /* concurrent streams per connection; 1000 */
	uint32_t stream_high_water, stream_low_water; /* per-stream output queue; 256 KiB / 64 KiB */
} ctr_config;

int ctr_config_init(ctr_config *c);
/* Reads the connector keys from root. The token comes from token_file or, when absent, $POSTERN_TOKEN; with
 * edges set and neither present it is an error. 0 or -EINVAL (cfg_error(d) names file, line and key). */
int ctr_config_load(cfg_doc *d, cfg_node *root, ctr_config **out);
void ctr_config_free(ctr_config *c);

/* ---- the connector ---- */

typedef struct ctr ctr;

/* cfg and backend must outlive the connector. The token is read now (and again at every dial). NULL with a
 * reason in err (bad CA file, no token). */
ctr *ctr_new(uv_loop_t *loop, const ctr_config *cfg, const stream_backend *backend, char *err, size_t errlen);
/* Starts dialing: slot 0 at once, the others 250 ms apart (no burst at the edge). */
int ctr_start(ctr *c);
/* At least one registered connection answered a ping and has none overdue. */
bool ctr_ready(const ctr *c);
/* Registered connections, and those among them that are ready. */
void ctr_counts(const ctr *c, int *registered, int *ready);
const char *ctr_connector_id(const ctr *c);

/* Graceful stop: no more dials; GOAWAY on every connection (the edge opens no new streams); streams in
 * flight finish; a connection with none left closes. cb runs once from the loop when every connection is
 * closed, or after cfg->shutdown_timeout_ms, when the rest are closed and their streams reset. */
typedef void (*ctr_done_cb)(ctr *c, void *ud);
void ctr_begin_shutdown(ctr *c, ctr_done_cb cb, void *ud);
/* Closes everything now. Handles close on the loop: run it until it returns before uv_loop_close. */
void ctr_free(ctr *c);

/* Exposed for tests: stream and connection statistics. */
typedef struct ctr_stats {
	uint64_t dials, registrations, rejections, dial_failures, connections_lost, ping_timeouts, pings_ok;
	uint64_t streams_total, streams_active, streams_refused, bytes_in, bytes_out;
	uint64_t stream_aborts; /* by the per-stream backstop (a backend writing past the queue cap) */
} ctr_stats;
void ctr_get_stats(const ctr *c, ctr_stats *out);

#endif
