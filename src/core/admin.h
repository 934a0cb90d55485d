/* A tiny HTTP/1.1 admin server (libuv + http-parser) for Prometheus /metrics, /healthz and handlers the
 * caller registers (e.g. the gateway's /ready), plus a process-wide metrics registry.
 *
 * Server: GET/HEAD only, one request per connection (answers carry Connection: close), request head capped
 * at ADM_MAX_REQUEST bytes (431 beyond), ADM_TIMEOUT_MS to send it (then closed), at most ADM_MAX_CONNS
 * connections at once (more are closed at accept). Bind it to loopback: there is no authentication.
 *
 * Metrics: single-threaded (use from the loop thread only). A series is a family name plus a label set.
 *   adm_metric *m = adm_counter("postern_edge_streams_total", "Streams opened", "tunnel=\"abc\"");
 *   adm_add(m, 1);
 * The label set is the text between the braces, already formatted; adm_label() builds one pair with the
 * value escaped. The same (name, labels) returns the same handle, so callers may cache it or look it up
 * each time with the one-shot helpers adm_counter_add()/adm_gauge_set(). Handles stay valid until
 * adm_metric_drop() or adm_metrics_reset(). */
#ifndef POSTERN_ADMIN_H
#define POSTERN_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define ADM_MAX_REQUEST (8u * 1024)
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
/* Frees every family and series (tests, shutdown). */
void adm_metrics_reset(void);

/* ---- server ---- */
typedef struct adm_server adm_server;
typedef struct adm_resp adm_resp;

/* Called for a registered path (exact match, query string ignored) with method "GET" or "HEAD". It must
 * answer synchronously with adm_reply(); without one the client gets 500. */
typedef void (*adm_handler)(const char *method, const char *path, adm_resp *r, void *ud);

/* Copies body (len bytes). ctype NULL means "text/plain; charset=utf-8". Last call wins. */
void adm_reply(adm_resp *r, int status, const char *ctype, const char *body, size_t len);

adm_server *adm_new(uv_loop_t *loop);
/* Registers a handler; overrides the built-in /metrics or /healthz when path matches. 0 or -errno. */
int adm_handle(adm_server *s, const char *path, adm_handler fn, void *ud);
/* Binds and listens. addr is numeric "ip:port", "[v6]:port" or ":port" (all interfaces); port 0 = ephemeral.
 * On failure returns -errno and writes a reason to err. */
int adm_listen(adm_server *s, const char *addr, char *err, size_t errlen);
/* The bound port (after adm_listen), else 0. */
int adm_port(const adm_server *s);
/* Closes the listener and every open connection; memory is released as the loop runs the close callbacks.
 * No handler is called afterwards. */
void adm_free(adm_server *s);

#endif
