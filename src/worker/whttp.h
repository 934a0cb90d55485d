/* The worker's HTTP client: libcurl's multi socket interface driven from the one libuv loop (a uv_poll per
 * socket, one uv_timer for curl's timeouts), libcurl loaded through core/curlx. Every request has a total
 * timeout; answers are capped (max_body: past it the request fails with "answer too large"); a streaming
 * request hands its body to on_data as it comes (the SSE event stream) instead of buffering it.
 * Callbacks run on the loop. whttp_cancel stops a request: no callback follows. */
#ifndef POSTERN_WORKER_WHTTP_H
#define POSTERN_WORKER_WHTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct whttp whttp;
typedef struct whttp_req whttp_req;

typedef struct whttp_result {
	long status;       /* 0: no answer (then err says why) */
	const char *body;  /* NUL-terminated; "" for a streaming request */
	size_t len;
	const char *err;   /* transport error, "" when an answer came */
} whttp_result;

typedef void (*whttp_done_fn)(void *ud, const whttp_result *r);
/* A streaming request's body bytes; return false to stop the request (then done follows with err). */
typedef bool (*whttp_data_fn)(void *ud, const char *p, size_t n);

typedef struct whttp_opts {
	const char *method;          /* GET, POST */
	const char *url;
	const char *bearer;          /* Authorization: Bearer ...; never logged */
	const char *const *headers;  /* more "Name: value" lines, NULL-terminated; may be NULL */
	const char *body;            /* POST body (JSON), may be NULL */
	size_t body_len;
	long timeout_ms;             /* total; required (> 0) */
	size_t max_body;             /* cap on a buffered answer (0: 1 MiB) */
	whttp_data_fn on_data;       /* streaming when set */
	void (*on_head)(void *ud, long status); /* once the answer's head is in (a stream is open) */
	const char *ca_file;         /* NULL: the system's CAs */
} whttp_opts;

/* NULL with err when libcurl cannot be loaded or set up. */
whttp *whttp_new(uv_loop_t *loop, char *err, size_t errlen);
/* Cancels every request and closes the handles on the loop (the memory goes once they closed). */
void whttp_free(whttp *h);
/* 0 and *out (may be NULL), or <0 with err; done fires exactly once later unless cancelled. */
int whttp_start(whttp *h, const whttp_opts *o, whttp_done_fn done, void *ud, whttp_req **out, char *err,
		size_t errlen);
void whttp_cancel(whttp_req *r);
/* Requests in flight. */
size_t whttp_active(const whttp *h);

#endif
