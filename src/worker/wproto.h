/* The worker's protocol decisions with no I/O (docs/worker.md): which HTTP answers are fatal, the per-item
 * secret, Anthropic's error body, and the lease state machine. The worker feeds answers in and acts on what
 * comes out; the unit test drives every branch. */
#ifndef POSTERN_WORKER_WPROTO_H
#define POSTERN_WORKER_WPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WPR_NO_HEARTBEAT "NO_HEARTBEAT"
#define WPR_DEFAULT_TTL_MS 90000
#define WPR_MAX_INTERVAL_MS 30000
#define WPR_MIN_INTERVAL_MS 1000
#define WPR_STAMP_MAX 95 /* longest last_heartbeat kept (longer: the answer is malformed) */

/* A 4xx that ends a loop: every 4xx but 408 (timeout), 409 (conflict) and 429 (rate limit), as the SDK. */
bool wpr_fatal_status(long status);

/* The sessions token of a per-item secret (base64url of JSON {"sessions_token": ...}, padding optional):
 * a malloc'd copy in *token, or 0 with *token NULL when the secret is NULL, undecodable, has no token or one
 * that is not 1..4096 visible ASCII characters (the worker then uses the environment key). -ENOMEM only. The
 * secret and token are never logged. */
int wpr_secret_token(const char *secret, char **token);

/* Anthropic's error body {"type":"error","error":{"type":..,"message":..}}: "kind: message" cut to cap,
 * printable ASCII only (an answer's text goes into log lines); "" when the body is not one. */
void wpr_error_text(const char *body, size_t len, char *out, size_t cap);

enum wpr_lease_act {
	WPR_LEASE_KEEP = 0,   /* extended: beat again after wpr_lease.interval_ms */
	WPR_LEASE_RELEASE,    /* 412: another holder; let go without stop */
	WPR_LEASE_STOP,       /* stopping/stopped/not extended, or a fatal 4xx: end the session, then stop */
	WPR_LEASE_RETRY,      /* transport error, 5xx, 408/409/429, malformed answer: beat again (until lost) */
};

typedef struct wpr_lease {
	char last[WPR_STAMP_MAX + 1]; /* the expected_last_heartbeat to send: NO_HEARTBEAT first */
	int64_t ttl_ms, interval_ms;
	uint64_t last_ok_ms;          /* monotonic time of the last extended beat (or of the claim) */
	char reason[160];             /* why the last answer ended the lease */
} wpr_lease;

void wpr_lease_init(wpr_lease *l, uint64_t now_ms);
/* One heartbeat answer: status 0 = the request failed (timeout, connection); body is the answer (may be
 * NULL). Updates last, ttl, interval (max(1 s, min(ttl/2, 30 s))) and last_ok_ms on success. */
enum wpr_lease_act wpr_lease_answer(wpr_lease *l, long status, const char *body, size_t len, uint64_t now_ms);
/* True when no beat succeeded within the TTL: assume the lease lost (another worker may hold it). */
bool wpr_lease_lost(const wpr_lease *l, uint64_t now_ms);

#endif
