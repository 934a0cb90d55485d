/* The jwks_url fetcher of a jwt route: libcurl (easy interface) on a uv_queue_work thread, the result handed
 * to auth_jwks_set on the loop thread.
 *
 * - A first fetch starts at jwks_new. Until a set has been loaded, auth_check answers 401 invalid_token
 *   "signing keys not loaded yet" (with refetch_keys set): nothing is held waiting for the IdP.
 * - Then every refresh_ms (the route's jwks_refresh, default 10 min). A failed fetch is retried after
 *   retry_ms (5 s), doubling up to refresh_ms; the last good set stays in use.
 * - jwks_kick (the proxy calls it when auth_check set refetch_keys: an unknown kid after the IdP rotated its
 *   keys) fetches at once, but at most once per min_refetch_ms (30 s) counted from the last fetch's start; a
 *   kick inside that window moves the next fetch to the window's end.
 * - Limits: https:// only (http:// only when the route's URL is loopback, as auth_from_cfg checks), redirects
 *   not followed, connect timeout 5 s, total 10 s, body at most JWT_MAX_JWKS (1 MiB), HTTP 200 only. CAs:
 *   the route's ca_file, else the system's. Environment proxies (https_proxy) apply as libcurl reads them.
 * - Logging: a failure logs once at warn with the URL and why (not again while the same failure repeats);
 *   the recovery logs once at info.
 * A fetch occupies one libuv threadpool thread for at most the total timeout. */
#ifndef POSTERN_PROXY_JWKS_H
#define POSTERN_PROXY_JWKS_H

#include <stdint.h>
#include <uv.h>

#include "guard/auth.h"

#define JWKS_MIN_REFETCH_MS   30000
#define JWKS_RETRY_MS         5000
#define JWKS_CONNECT_TIMEOUT_MS 5000
#define JWKS_TOTAL_TIMEOUT_MS   10000

typedef struct jwks jwks;

/* Timings; a zero field takes its default (refresh_ms: auth_jwks_refresh_ms). Tests shorten them. */
typedef struct jwks_opts {
	int64_t refresh_ms, min_refetch_ms, retry_ms, connect_timeout_ms, total_timeout_ms;
} jwks_opts;

typedef struct jwks_stats {
	uint64_t fetches;   /* started */
	uint64_t ok;        /* loaded into the route */
	uint64_t failed;    /* transport, status, size or JWKS parse failures */
	bool busy;          /* a fetch is running */
	const char *last_error; /* why the last fetch failed, NULL after a success; valid until the next fetch ends */
} jwks_stats;

/* Starts the fetcher for a's jwks_url (a must outlive it). o may be NULL. 0, -EINVAL (a has no jwks_url),
 * -ENOMEM; err says why. */
int jwks_new(uv_loop_t *loop, auth *a, const jwks_opts *o, jwks **out, char *err, size_t errlen);
/* Stops it: from this call on it never touches the auth again (auth_free may follow at once). The memory
 * is released on the loop once a running fetch ends (at most the total timeout). NULL is fine. */
void jwks_free(jwks *j);
/* Refetch soon (rate limited, see above). */
void jwks_kick(jwks *j);
void jwks_get_stats(const jwks *j, jwks_stats *st);

#endif
