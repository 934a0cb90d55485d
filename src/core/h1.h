/* HTTP/1.1 message framing on top of http-parser, the one HTTP/1 parser of the tree (the proxy, the admin
 * server, the edge's mTLS CONNECT entry, the sandbox egress proxy). It does not copy or rewrite the stream: it
 * tells the caller how many of the given bytes belong to the current message part and when a head or a whole
 * message ends, so a relay forwards exactly the bytes it was sent. It captures the head fields its users need
 * (method, target, Host, status, keep-alive, upgrade) and, on request, every header field. No I/O.
 * H1_HEAD leaves the head's last LF unused: the next h1_parse call takes it (and reports H1_DONE there for a
 * message without a body, a CONNECT among them), so a caller always has at least one byte to give it.
 * Requests come from untrusted peers and some users relay their bytes unchanged, so a request is held to the
 * RFC 9112 grammar where http-parser (built without HTTP_PARSER_STRICT) is lenient: every line ends in CRLF
 * (no bare CR or LF), no obsolete line folding, no whitespace in or after a header name, no control byte or
 * doubled space in the request line, chunked framing exactly as written (CRLF after each chunk's data), and
 * Transfer-Encoding only as one "chunked" header on HTTP/1.1. Anything else is H1_E_SYNTAX
 * (docs/threat-model.md, "HTTP/1 heads from untrusted peers"). */
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
	char *target;      /* target_buf or the caller's (h1_keep_target); NUL-terminated, cut at target_cap - 1 */
	size_t target_len, target_cap;
	bool target_long;  /* the target did not fit: what is kept is cut */
	char target_buf[H1_TARGET_KEEP + 1];
	char host[H1_HOST_KEEP + 1];
	size_t host_len;
	unsigned host_count;
	bool host_too_long;
	/* header name tracking across split callbacks */
	char field[18];
	size_t field_len;
	bool field_is_host, field_is_te, in_value;
	/* Transfer-Encoding of a request: how many headers, the first one's value (cut: te_long) */
	char te[16];
	size_t te_len;
	unsigned te_count;
	bool te_long;
	/* the request grammar check on the raw bytes (h1.c, scan): state, request line space, chunk size left */
	struct h1_scan {
		uint8_t st, digits;
		bool sp, trailer;
		uint64_t left;
	} scan;
	bool any_host; /* h1_any_host: no Host rules */
	/* h1_keep_headers: "name\0value\0" per field */
	char *hdrs;
	size_t hdrs_len, hdrs_cap;
	unsigned hdrs_max, nheaders;
	int hdr_state; /* 0 none open, 1 in a name, 2 in a value */
	h1_err err;
	const char *errstr;
	/* Optional: decoded body bytes (chunked framing removed) of the current message; reset by h1_next. */
	void (*body_cb)(void *ud, const char *at, size_t n);
	void *body_ud;
} h1;

void h1_init(h1 *h, bool request, uint32_t max_head);
/* Options, each after h1_init; they hold across h1_next. */
/* The request target goes to buf (cap bytes with the NUL) instead of the built-in H1_TARGET_KEEP bytes. */
void h1_keep_target(h1 *h, char *buf, size_t cap);
/* Every header field of a request or response is kept in buf as "name\0value\0" (walk them with
 * h1_header_next once the head is parsed). More than max fields or more than cap bytes is H1_E_HEAD_TOO_LARGE
 * ("too many header fields" / "header fields over the size limit"); a CR, LF or NUL inside a name or value
 * (obsolete line folding) is H1_E_SYNTAX. */
void h1_keep_headers(h1 *h, char *buf, size_t cap, unsigned max);
/* The caller routes on no Host header: a missing, repeated or long one is not an error. */
void h1_any_host(h1 *h);

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
/* The next kept header field from *pos (start at 0): 1 with name and value set, 0 after the last one. */
int h1_header_next(const h1 *h, size_t *pos, const char **name, const char **value);
/* Splits an absolute-form request target (what a forward proxy is sent: http://host[:port][/path][?query])
 * into host (cap hostcap), port (80 when absent) and the origin-form path with its query ("/" when empty,
 * cap pathcap). Only http:// is taken. Returns 0, or -EINVAL with err saying what is wrong. */
int h1_absolute_target(const char *url, size_t len, char *host, size_t hostcap, uint16_t *port, char *path,
		       size_t pathcap, char *err, size_t errlen);
/* Finds header name (case-insensitive) in a raw head; copies its trimmed value into out (cap outlen).
 * Returns the value length, -ENOENT when absent, -E2BIG when longer than outlen - 1. */
int h1_head_value(const uint8_t *head, size_t len, const char *name, char *out, size_t outlen);
/* Copies a raw head (as h1 accepted it) into out with every field named in drop (NULL-terminated,
 * case-insensitive; every occurrence) left out, then the preformatted lines of add ("Name: value\r\n"...,
 * may be NULL), then the blank line. Line ends become CRLF. 0, or cbuf_append's -ENOBUFS / -ENOMEM. */
struct cbuf;
int h1_head_rewrite(const uint8_t *head, size_t len, const char *const *drop, const char *add, struct cbuf *out);

#endif
