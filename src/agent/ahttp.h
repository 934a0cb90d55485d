/* The agent's blocking HTTP client: one request at a time on libcurl's easy interface (through core/curlx),
 * with a timeout on every call, a body cap, the headers the agent reads (Content-Type, Mcp-Session-Id), an
 * optional streaming sink (SSE of the Messages API) and a process-wide cancel flag (SIGINT) that aborts a
 * transfer within ~100 ms. The agent runs one step at a time, so blocking here is what it means. */
#ifndef POSTERN_AGENT_AHTTP_H
#define POSTERN_AGENT_AHTTP_H
#include <signal.h>
#include <stddef.h>

typedef struct ahttp_req {
	const char *method;          /* "GET" or "POST" */
	const char *url;
	const char *const *headers;  /* NULL-terminated "Name: value" lines, may be NULL */
	const char *body;            /* POST body (JSON), may be NULL */
	long timeout_ms;             /* the whole transfer */
	const char *ca_file;         /* CA bundle, NULL = system */
	const char *connect_to;      /* "HOST:PORT:ADDR:PORT" (CURLOPT_CONNECT_TO), NULL = none */
	size_t max_body;             /* response cap; 0 = 8 MiB */
	/* When set, response bytes go here instead of the buffer; a non-zero return aborts (err from it). */
	int (*sink)(void *arg, const char *p, size_t n);
	void *arg;
	/* When set, the transfer runs on *conn (made on first use; ahttp_conn_free) so its connection, and the
	 * TLS session, are kept for the next request to the same server. */
	void **conn;
} ahttp_req;

typedef struct ahttp_resp {
	long status;
	char *body;       /* NUL-terminated (empty with a sink) */
	size_t len;
	char ctype[128];  /* Content-Type, lower-cased */
	char session[256]; /* Mcp-Session-Id */
} ahttp_resp;

/* 0 with *out filled (any HTTP status), or -errno with err: -ETIMEDOUT, -ECANCELED (the cancel flag),
 * -E2BIG (over max_body), -EIO (transport, curl's text). */
int ahttp_do(const ahttp_req *r, ahttp_resp *out, char *err, size_t errlen);
void ahttp_resp_free(ahttp_resp *out);
void ahttp_conn_free(void *conn);
/* The flag every transfer watches; set from a signal handler. */
extern volatile sig_atomic_t ahttp_cancel;

#endif
