/* HTTP/1.1 message framing for a relay, on top of http-parser. It does not copy or rewrite anything: it tells
 * the caller how many of the given bytes belong to the current message part and when a head or a whole
 * message ends, so the caller forwards exactly the bytes it was sent. It captures the few head fields the
 * proxy needs (method, target, Host, status, keep-alive, upgrade). No I/O. */
#ifndef POSTERN_H1_H
#define POSTERN_H1_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum h1_ev {
	H1_MORE = 0, /* all given bytes were used (or more are needed): keep feeding */
	H1_HEAD,     /* the head ended: *used bytes are the (rest of the) head; the next bytes are the body */
	H1_DONE,     /* the message ended after *used bytes; call h1_next before parsing the next one */
	H1_ERR,      /* malformed: see err and errstr */
} h1_ev;

typedef enum h1_err {
	H1_E_NONE = 0,
	H1_E_SYNTAX,        /* 400 */
	H1_E_HEAD_TOO_LARGE, /* 431 */
	H1_E_HOST,          /* missing, repeated or too long Host: 400 */
	H1_E_TRUNCATED,     /* the stream ended inside a message */
} h1_err;

#define H1_TARGET_KEEP 512 /* bytes of the request target kept (for logs) */
#define H1_HOST_KEEP 300   /* Host header value cap */

typedef struct h1 {
	http_parser p;
	bool request;
	uint32_t max_head;
	uint32_t head_bytes;
	bool head_done, done, skip_body, keep_alive, upgrade;
	int ev; /* event raised by a callback */
	/* head fields */
	unsigned method;   /* enum http_method (requests) */
	unsigned status;   /* responses */
	unsigned http_minor;
	char target[H1_TARGET_KEEP + 1];
	size_t target_len;
	char host[H1_HOST_KEEP + 1];
	size_t host_len;
	unsigned host_count;
	bool host_too_long;
	/* header name tracking across split callbacks */
	char field[8];
	size_t field_len;
	bool field_is_host, in_value;
	h1_err err;
	const char *errstr;
	/* Optional: decoded body bytes (chunked framing removed) of the current message; reset by h1_next. */
	void (*body_cb)(void *ud, const char *at, size_t n);
	void *body_ud;
} h1;

void h1_init(h1 *h, bool request, uint32_t max_head);
/* Prepares for the next message on the same connection (after H1_DONE). */
void h1_next(h1 *h);
/* The response being parsed has no body whatever its headers say (it answers a HEAD request). */
void h1_skip_body(h1 *h);
/* Parses up to n bytes; *used tells how many belong to what was reported. */
h1_ev h1_parse(h1 *h, const uint8_t *p, size_t n, size_t *used);
/* The peer closed its side: H1_DONE for a body delimited by the close, H1_MORE when between messages,
 * H1_ERR (H1_E_TRUNCATED) inside a message. */
h1_ev h1_eof(h1 *h);
/* True once any byte of the current message was parsed. */
bool h1_started(const h1 *h);
const char *h1_method_name(const h1 *h);
/* Finds header name (case-insensitive) in a raw head; copies its trimmed value into out (cap outlen).
 * Returns the value length, -ENOENT when absent, -E2BIG when longer than outlen - 1. */
int h1_head_value(const uint8_t *head, size_t len, const char *name, char *out, size_t outlen);

#endif
