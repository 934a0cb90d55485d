/* A generic HTTP/1.1 server on core/tconn (TCP or TLS) and core/h1 (the one HTTP/1 parser), for APIs that
 * outgrow the admin server: keep-alive, request bodies capped (Content-Length or chunked; 413 with a JSON
 * error over the cap), answers the handler completes later (a long poll) or streams into (SSE, chunked, with
 * the connection's write queue high-water mark as backpressure), idle / head / body timeouts and a cap on
 * connections. One request at a time per connection: reading pauses while one is being answered, so a
 * pipelining peer is served in order without buffering more than one head.
 *
 * Lifetime: the handler gets an hsrv_req that stays valid until it is completed (hsrv_reply, hsrv_stream_end)
 * or until the gone callback fires (the peer left or the server is freed first); after either, the handler
 * must not touch it. Single-threaded: everything runs on the loop.
 *
 * The protocol pieces (route patterns, query parameters) are pure functions in hsrv_route.c, unit-tested. */
#ifndef POSTERN_CORE_HSRV_H
#define POSTERN_CORE_HSRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include <uv.h>

typedef struct hsrv hsrv;
typedef struct hsrv_req hsrv_req;

typedef struct hsrv_opts {
	size_t max_body;       /* request body cap (bytes); over it: 413 */
	uint32_t max_head;     /* request head cap (bytes); over it: 431 */
	uint32_t idle_ms;      /* keep-alive connection with no request */
	uint32_t head_ms;      /* from a request's first byte to its end (head and body) */
	unsigned max_conns;    /* more are closed at accept */
	SSL_CTX *tls;          /* NULL: plain TCP (the caller keeps it alive while the server runs) */
	/* The body of the 413/431/400/408 answers the server gives itself: writes the JSON for status and the
	 * message (plain text) into out and returns its length (< cap); NULL gives {"error":"..."}. The API uses
	 * it for its own error shape. */
	size_t (*error_body)(char *out, size_t cap, int status, const char *msg);
	/* Headers added to every answer the server gives itself ("Name: value\r\n"...), e.g. a request id. */
	void (*error_headers)(char *out, size_t cap);
} hsrv_opts;

typedef void (*hsrv_handler)(hsrv_req *r, void *ud);

/* 0 with *out, or -errno with err. */
int hsrv_new(uv_loop_t *loop, const hsrv_opts *o, hsrv_handler fn, void *ud, hsrv **out, char *err, size_t errlen);
/* Binds and listens on a numeric "ip:port" / "[v6]:port" (port 0: ephemeral). 0 or -errno with err. */
int hsrv_listen(hsrv *s, const char *addr, char *err, size_t errlen);
int hsrv_port(const hsrv *s);
/* Stops accepting; open connections stay (drain). */
void hsrv_stop_accepting(hsrv *s);
unsigned hsrv_conns(const hsrv *s);
/* Closes the listener and every connection (gone callbacks fire); memory goes as the loop runs. */
void hsrv_free(hsrv *s);

/* ---- the request (valid until completed or gone) ---- */
const char *hsrv_method(const hsrv_req *r); /* "GET", "POST", ... */
const char *hsrv_path(const hsrv_req *r);   /* the target without the query */
const char *hsrv_query(const hsrv_req *r);  /* after '?', "" when none */
/* A header's value (case-insensitive name), NULL when absent; the first one when repeated. */
const char *hsrv_header(const hsrv_req *r, const char *name);
/* How many times a header is present (case-insensitive name): a caller that must not pick "the first" of two
 * credentials refuses more than one. */
unsigned hsrv_header_count(const hsrv_req *r, const char *name);
const char *hsrv_body(const hsrv_req *r, size_t *len); /* NUL-terminated, "" when none */
const char *hsrv_peer(const hsrv_req *r);
/* Called once when the request goes away before it was completed (peer closed, server freed). */
void hsrv_on_gone(hsrv_req *r, void (*fn)(hsrv_req *r, void *ud), void *ud);
/* Called when a stream's write queue fell below its low-water mark after being over its high-water mark. */
void hsrv_on_drain(hsrv_req *r, void (*fn)(hsrv_req *r, void *ud));

/* A whole answer: status, content type (NULL: application/json), extra headers ("Name: value\r\n"... or
 * NULL), body. Completes the request. 0 or -errno (the connection is closed then; the request is complete). */
int hsrv_reply(hsrv_req *r, int status, const char *ctype, const char *headers, const void *body, size_t len);
/* A streamed answer (chunked): begin, write (any number), end (completes). Bytes past the connection's
 * high-water mark wait in its outbox (in order, fed as it drains; so an answer bigger than tconn's hard cap
 * goes out too): a writer checks hsrv_stream_congested and waits for the drain callback before writing more. */
int hsrv_stream_begin(hsrv_req *r, int status, const char *ctype, const char *headers);
int hsrv_stream_write(hsrv_req *r, const void *p, size_t n);
bool hsrv_stream_congested(const hsrv_req *r);
void hsrv_stream_end(hsrv_req *r);

/* ---- protocol pieces, no I/O (hsrv_route.c) ---- */
#define HSRV_MAX_CAPS 4
#define HSRV_CAP_MAX 128
/* Matches path against a pattern of literal segments and "{}" captures ("/v1/environments/{}/work/{}/ack"):
 * true with each capture (1..HSRV_CAP_MAX-1 bytes of [A-Za-z0-9_.-], percent-decoding not applied) copied into
 * caps[i] and *ncaps set. A capture with other bytes, an empty segment or a longer one does not match. */
bool hsrv_match(const char *pattern, const char *path, char caps[][HSRV_CAP_MAX], unsigned *ncaps);
/* The value of query parameter name (key and value percent-decoded, '+' as space) into out (cap outlen): its length,
 * -ENOENT when absent, -E2BIG when longer than outlen - 1, -EINVAL on a bad percent escape. The first one
 * wins when repeated. */
int hsrv_query_get(const char *query, const char *name, char *out, size_t outlen);
/* The next parameter from *pos (start at 0), key and value percent-decoded: 1 with both set, 0 at the end,
 * -E2BIG / -EINVAL for this one (*pos moves past it either way). */
int hsrv_query_next(const char *query, size_t *pos, char *key, size_t keylen, char *val, size_t vallen);
/* The reason phrase of a status ("Not Found"); "Unknown" for others. */
const char *hsrv_reason(int status);
/* JSON-escapes s into out (cap outlen, cut on a UTF-8 boundary when it does not fit); returns out. */
const char *hsrv_json_escape(const char *s, char *out, size_t outlen);

#endif
