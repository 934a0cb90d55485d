/* The connector registration line (docs/internals.md, "Connector link" step 2): one JSON line each way
 * before HTTP/2 starts. Pure encode/parse plus a capped line accumulator: no I/O, shared by edge and
 * connector. Tokens pass through here: callers wipe reg_request with reg_request_wipe when done. */
#ifndef POSTERN_REG_H
#define POSTERN_REG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define REG_MAX_LINE 4096 /* bytes, without the '\n' */
#define REG_PROTO_VERSION 1
#define REG_TIMEOUT_MS 10000 /* the edge waits this long for the line; the connector for the answer */
#define REG_ALPN "postern/1"
/* The edge could not check the token (its token store was locked or failed): neither accepted nor refused.
 * The connector retries on its usual backoff and does not report the token as wrong. */
#define REG_ERR_STORE_UNAVAILABLE "token store unavailable"
/* Too many failed registrations came from the connector's address (/32, /64): refused for a while without a
 * token lookup, whatever the token. Also retried on backoff; the connector says why. */
#define REG_ERR_RATE_LIMITED "too many failed registrations from this address; retry later"

typedef struct reg_request {
	int v;
	char token[512];
	char connector_id[64];
	uint32_t slot;
	char version[32];
} reg_request;

typedef struct reg_response {
	bool ok;
	char tunnel_id[128];
	char domain[256];
	char edge_id[128];
	char error[256]; /* when !ok */
} reg_response;

typedef struct reg_linebuf {
	char buf[REG_MAX_LINE + 1];
	size_t len;
	bool done;
} reg_linebuf;

/* Takes bytes up to and including the first '\n'. Returns how many of the n bytes it consumed (the rest
 * belongs to what follows the line, e.g. HTTP/2), or -E2BIG when the line exceeds REG_MAX_LINE. When the
 * line is complete lb->done is set and lb->buf holds it NUL-terminated, without the '\n' (and '\r'). */
ssize_t reg_line_feed(reg_linebuf *lb, const uint8_t *p, size_t n);

/* Encodes "{...}\n" into out; returns its length or -ENOSPC / -EINVAL. */
int reg_request_encode(const reg_request *r, char *out, size_t outlen);
int reg_response_encode(const reg_response *r, char *out, size_t outlen);
/* Parse one line (without '\n'). 0 or -EINVAL with a reason in err (never containing the token). */
int reg_request_parse(const char *line, reg_request *out, char *err, size_t errlen);
int reg_response_parse(const char *line, reg_response *out, char *err, size_t errlen);
void reg_request_wipe(reg_request *r);

#endif
