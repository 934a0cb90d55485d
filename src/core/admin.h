/* A tiny HTTP/1.1 admin server (libuv + http-parser) for Prometheus /metrics, /healthz and handlers the
 * caller registers (e.g. the gateway's /ready), plus a process-wide metrics registry.
 *
 * Server: GET/HEAD, and POST to handlers registered for it (adm_handle_ex), one request per connection
 * (answers carry Connection: close), request head capped at ADM_MAX_REQUEST bytes (431 beyond), a body only
 * with Content-Length and at most ADM_MAX_BODY bytes (413 beyond; chunked: 411), ADM_TIMEOUT_MS to send it
 * (then closed), at most ADM_MAX_CONNS connections at once (more are closed at accept). TCP has no
 * authentication: bind it to loopback. The unix listener (adm_listen_unix) is guarded by its file mode, and
 * each request carries the peer's kernel credentials (SO_PEERCRED), so a handler can record who asked.
 *
 * Client: adm_client_request, a blocking HTTP/1.1 request over a unix socket or TCP (the CLI's).  *
 * Metrics: single-threaded (use from the loop thread only). A series is a family name plus a label set.
 *   adm_metric *m = adm_counter("postern_edge_streams_total", "Streams opened", "tunnel=\"abc\"");
 *   adm_add(m, 1);
 * The label set is the text between the braces, already formatted; adm_label() builds one pair with the
 * value escaped. The same (name, labels) returns the same handle, so callers may cache it or look it up
 * each time with the one-shot helpers adm_counter_add()/adm_gauge_set(). Handles stay valid until
 * adm_metric_drop() or adm_metrics_reset().
 *
 * Histograms have fixed buckets (upper bounds, the +Inf one implicit) set by the family's first call and
 * render as cumulative NAME_bucket{...,le="B"} lines, le="+Inf", NAME_sum and NAME_count (the Prometheus
 * text format). adm_process_metrics() adds the standard process_* series, read from /proc/self when rendered. */
#ifndef POSTERN_ADMIN_H
#define POSTERN_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#define ADM_MAX_REQUEST (8u * 1024)
#define ADM_MAX_BODY (64u * 1024)
#define ADM_TIMEOUT_MS 10000u
#define ADM_MAX_CONNS 64

/* ---- metrics registry ---- */
typedef struct adm_metric adm_metric;

/* Get-or-create a series. help is used when the family is created (first call wins). labels may be NULL
 * or "" for none. Returns NULL only when out of memory or when name is already a family of the other type. */
adm_metric *adm_counter(const char *name, const char *help, const char *labels);
adm_metric *adm_gauge(const char *name, const char *help, const char *labels);
/* Counters only go up (negative v is ignored for counters); gauges go either way. NULL m is a no-op. */
void adm_add(adm_metric *m, int64_t v);
void adm_set(adm_metric *m, int64_t v); /* gauges only */
int64_t adm_value(const adm_metric *m);
/* Histogram: bounds ascending and finite, 1..ADM_HIST_MAX_BUCKETS of them (copied; a later call's bounds
 * for the same family are ignored). NULL also for bad bounds or a family of another type. */
#define ADM_HIST_MAX_BUCKETS 32
adm_metric *adm_histogram(const char *name, const char *help, const char *labels, const double *bounds, size_t nb);
/* One observation (e.g. seconds). NULL m, a series that is not a histogram, and NaN are no-ops. */
void adm_observe(adm_metric *m, double v);
/* A histogram's sum of observations (its count is adm_value). */
double adm_hist_sum(const adm_metric *m);
/* Removes one series (e.g. a deleted tunnel's); the handle is invalid afterwards. */
void adm_metric_drop(adm_metric *m);
/* One-shot forms: look the series up (creating it with an empty help) and apply v. */
void adm_counter_add(const char *name, const char *labels, int64_t v);
void adm_gauge_set(const char *name, const char *labels, int64_t v);
void adm_gauge_add(const char *name, const char *labels, int64_t v);
/* Writes `key="escaped value"` into buf (cap len, always NUL-terminated); returns buf. */
const char *adm_label(char *buf, size_t len, const char *key, const char *value);
/* Prometheus text exposition of every series; malloc'd, *len set. NULL when out of memory. */
char *adm_metrics_render(size_t *len);
/* Frees every family and series (tests, shutdown); also turns the process_* series off. */
void adm_metrics_reset(void);
/* From now on every render ends with process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds and process_start_time_seconds, read
 * from /proc/self (and getrusage, getrlimit) at render time; one that cannot be read is left out. */
void adm_process_metrics(void);
/* fn(ud) runs at the start of every render, to set gauges from live state (e.g. requests in flight). At most
 * ADM_MAX_COLLECTORS at once: 0, or -ENOSPC. Remove it before ud goes away; adm_metrics_reset removes all. */
#define ADM_MAX_COLLECTORS 16
int adm_collector_add(void (*fn)(void *ud), void *ud);
void adm_collector_remove(void (*fn)(void *ud), void *ud);
/* The gauge postern_build_info{version="…"} 1 (and commit="…" when commit is neither NULL nor empty). */
void adm_build_info(const char *version, const char *commit);

/* ---- server ---- */
typedef struct adm_server adm_server;
typedef struct adm_resp adm_resp;

/* Called for a registered path (exact match, query string ignored) with method "GET" or "HEAD". It must
 * answer synchronously with adm_reply(); without one the client gets 500. */
typedef void (*adm_handler)(const char *method, const char *path, adm_resp *r, void *ud);

/* What adm_handle_ex handlers are given; valid during the call only. */
typedef struct adm_req {
	const char *method;  /* "GET", "HEAD" or "POST" */
	const char *path;    /* without the query */
	const char *query;   /* the text after '?', "" when none */
	const char *body;    /* NUL-terminated ("" when none); at most ADM_MAX_BODY bytes */
	size_t body_len;
	const char *peer;    /* "ip:port" on TCP, "unix" on the unix listener */
	bool peer_unix;      /* true: peer_uid and peer_pid are the kernel's (SO_PEERCRED) */
	uid_t peer_uid;
	pid_t peer_pid;
} adm_req;
typedef void (*adm_handler_ex)(const adm_req *q, adm_resp *r, void *ud);

/* adm_handle_ex flags: the methods a handler takes (a request with another one gets 405) and prefix
 * matching ("/approvals/" takes "/approvals/ID/approve"; an exact match wins, then the longest prefix). */
#define ADM_GET 1u    /* GET and HEAD (a HEAD answer has its body dropped) */
#define ADM_POST 2u
#define ADM_PREFIX 4u

/* Copies body (len bytes). ctype NULL means "text/plain; charset=utf-8". Last call wins. */
void adm_reply(adm_resp *r, int status, const char *ctype, const char *body, size_t len);

adm_server *adm_new(uv_loop_t *loop);
/* Registers a handler; overrides the built-in /metrics or /healthz when path matches. 0 or -errno. */
int adm_handle(adm_server *s, const char *path, adm_handler fn, void *ud);
/* The same with methods, prefix matching and the whole request (adm_req). 0 or -errno. */
int adm_handle_ex(adm_server *s, const char *path, unsigned flags, adm_handler_ex fn, void *ud);
/* Binds and listens. addr is numeric "ip:port", "[v6]:port" or ":port" (all interfaces); port 0 = ephemeral.
 * On failure returns -errno and writes a reason to err. */
int adm_listen(adm_server *s, const char *addr, char *err, size_t errlen);
/* The bound port (after adm_listen), else 0. */
int adm_port(const adm_server *s);
/* Listens on a unix socket at path (at most ADM_UNIX_PATH_MAX bytes) with the file mode given (0 means
 * 0600). A missing directory is made (core/dirs, 0755: the socket's own mode guards it). An existing socket
 * file nobody listens on (a crashed run's) is replaced; a live one is -EADDRINUSE, anything else at path
 * -EEXIST. The socket is bound under a temporary name, given its mode, then renamed into place, so it is
 * never reachable with a wider mode. adm_free unlinks it (if it is still this server's). A server may
 * listen on TCP and on a unix socket at once; both serve the same handlers. 0 or -errno with err. */
#define ADM_UNIX_PATH_MAX 96
int adm_listen_unix(adm_server *s, const char *path, mode_t mode, char *err, size_t errlen);
/* Closes the listeners and every open connection; memory is released as the loop runs the close callbacks.
 * No handler is called afterwards. */
void adm_free(adm_server *s);

/* ---- client ---- */

/* One blocking request (the CLI's): target is a unix socket path (starts with '/' or '.') or a numeric
 * "ip:port"; body may be NULL. Reads the answer until the server closes, at most max_resp bytes of body and
 * timeout_ms in all. On 0: *status, and *resp (malloc'd, NUL-terminated, *resp_len bytes). Errors: -ENOENT
 * (no socket file), -ECONNREFUSED (nobody listens), -EACCES (the socket's mode), -ETIMEDOUT, -EMSGSIZE (answer
 * over max_resp), -EPROTO (not an HTTP answer), each with err naming target and reason. */
int adm_client_request(const char *target, const char *method, const char *path, const char *body,
		       size_t body_len, uint32_t timeout_ms, size_t max_resp, int *status, char **resp,
		       size_t *resp_len, char *err, size_t errlen);

#endif
