/* The control plane's HTTP API: Anthropic's environments, work and sessions API (the paths, bodies, status
 * codes and error shapes of @anthropic-ai/sdk's beta resources) mapped onto the store seam (ctl_store.h).
 * It is the handler of a core/hsrv server; long polls and SSE streams wait on timers of the given loop.
 * Credentials: `x-api-key` (the platform side) and `Authorization: Bearer` (an environment key or a work
 * item's sessions token), each looked up by SHA-256 in the store. */
#ifndef POSTERN_CTL_API_H
#define POSTERN_CTL_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "control/ctl_store.h"
#include "core/hsrv.h"

typedef struct capi capi;

/* The beta every request must name in `anthropic-beta` (400 otherwise, as Anthropic's API answers). */
#define CAPI_BETA "managed-agents-2026-04-01"

typedef struct capi_opts {
	uv_loop_t *loop;
	ctl_store *store;        /* not owned */
	unsigned lease_ttl;      /* seconds: a heartbeat without desired_ttl_seconds, and expiry */
	unsigned max_ttl;        /* the most desired_ttl_seconds may ask for */
	uint64_t reclaim_ms;     /* reclaim_older_than_ms when a poll gives none */
	size_t max_body;         /* the server's body cap, named in 413 answers */
	const char *api_base_url; /* put in each work secret when set (may be NULL) */
} capi_opts;

int capi_new(const capi_opts *o, capi **out, char *err, size_t errlen);
/* The hsrv handler (ud is the capi). */
void capi_handle(hsrv_req *r, void *ud);
/* hsrv_opts.error_body / error_headers: the server's own answers in the API's error shape. */
size_t capi_error_body(char *out, size_t cap, int status, const char *msg);
void capi_error_headers(char *out, size_t cap);
/* Ends the long polls (answered null) and SSE streams (ended) now: the daemon drains. */
void capi_drain(capi *a);
void capi_free(capi *a);
/* For metrics: SSE streams and long polls open now. */
unsigned capi_streams(const capi *a);
unsigned capi_polls(const capi *a);

/* Ends a session: del, a session.deleted event, its work stopped at once, the session and its log removed;
 * else terminated (archived): a session.status_terminated event, its work asked to stop. a (may be NULL: the
 * CLI) wakes this process's streams. 0 or -errno with err. */
int capi_session_end(ctl_store *s, capi *a, const char *session_id, bool del, char *err, size_t errlen);

/* Keys as the CLI and the API make them: "pst_<kind>_" + 43 base64url characters (32 random bytes), and
 * their SHA-256. 0 or -errno. */
int capi_key_new(const char *kind, char *key, size_t keylen, uint8_t hash[32]);
void capi_key_hash(const char *key, uint8_t hash[32]);

#endif
