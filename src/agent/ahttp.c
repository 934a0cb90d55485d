/* See ahttp.h. */
#include "agent/ahttp.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/curlx.h"

volatile sig_atomic_t ahttp_cancel;

struct xfer {
	const ahttp_req *r;
	ahttp_resp *out;
	size_t cap, max;
	int over, sink_rc;
};

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
	struct xfer *x = arg;
	size_t n = sz * nm;
	if (x->r->sink) {
		if ((x->sink_rc = x->r->sink(x->r->arg, p, n)))
			return 0;
		return n;
	}
	if (x->out->len + n > x->max) {
		x->over = 1;
		return 0;
	}
	if (x->out->len + n + 1 > x->cap) {
		size_t nc = (x->out->len + n + 1) * 2;
		char *nb = realloc(x->out->body, nc);
		if (!nb)
			return 0;
		x->out->body = nb;
		x->cap = nc;
	}
	memcpy(x->out->body + x->out->len, p, n);
	x->out->len += n;
	x->out->body[x->out->len] = 0;
	return n;
}

/* Copies a header's value (trimmed) into dst when its name matches. */
static void header_value(const char *line, size_t n, const char *name, char *dst, size_t dlen, int lower)
{
	size_t nl = strlen(name);
	if (n <= nl + 1 || strncasecmp(line, name, nl) || line[nl] != ':')
		return;
	const char *v = line + nl + 1;
	const char *e = line + n;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
		e--;
	size_t k = (size_t)(e - v) < dlen - 1 ? (size_t)(e - v) : dlen - 1;
	for (size_t i = 0; i < k; i++)
		dst[i] = lower ? (char)tolower((unsigned char)v[i]) : v[i];
	dst[k] = 0;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *arg)
{
	struct xfer *x = arg;
	size_t n = sz * nm;
	header_value(p, n, "content-type", x->out->ctype, sizeof x->out->ctype, 1);
	header_value(p, n, "mcp-session-id", x->out->session, sizeof x->out->session, 0);
	return n;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	(void)arg, (void)a, (void)b, (void)c, (void)d;
	return ahttp_cancel ? 1 : 0;
}

int ahttp_do(const ahttp_req *r, ahttp_resp *out, char *err, size_t errlen)
{
	int rc = 0;
	struct curl_slist *hl = NULL;
	struct curl_slist *ct = NULL;
	CURL *h = NULL;
	memset(out, 0, sizeof *out);
	if (!curlx_load(err, errlen))
		return -ENOSYS;
	if (!(out->body = calloc(1, 1)))
		return -ENOMEM;
	struct xfer x = { .r = r, .out = out, .cap = 1, .max = r->max_body ? r->max_body : (8u << 20) };
	if (r->conn && *r->conn)
		h = *r->conn;
	else if (r->conn && (h = curl_easy_init()))
		*r->conn = h;
	else if (!r->conn)
		h = curl_easy_init();
	if (!h) {
		snprintf(err, errlen, "curl_easy_init failed");
		rc = -ENOMEM;
		goto out;
	}
	for (const char *const *p = r->headers; p && *p; p++)
		hl = curl_slist_append(hl, *p);
	if (r->body)
		hl = curl_slist_append(hl, "Content-Type: application/json");
	hl = curl_slist_append(hl, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, r->url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms > 0 ? r->timeout_ms : 30000L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	if (r->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file);
	if (r->connect_to) {
		ct = curl_slist_append(NULL, r->connect_to);
		curl_easy_setopt(h, CURLOPT_CONNECT_TO, ct);
	}
	if (r->body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(r->body));
	} else {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L); /* a reused handle may have posted before */
		if (r->method && strcmp(r->method, "GET"))
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	}
	CURLcode cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
	if (cc == CURLE_OK)
		goto out;
	if (ahttp_cancel) {
		snprintf(err, errlen, "interrupted");
		rc = -ECANCELED;
	} else if (cc == CURLE_OPERATION_TIMEDOUT) {
		snprintf(err, errlen, "no answer within %ld ms", r->timeout_ms);
		rc = -ETIMEDOUT;
	} else if (x.over) {
		snprintf(err, errlen, "answer over %zu bytes", x.max);
		rc = -E2BIG;
	} else if (x.sink_rc) {
		snprintf(err, errlen, "the stream handler stopped the transfer");
		rc = x.sink_rc < 0 ? x.sink_rc : -EIO;
	} else {
		snprintf(err, errlen, "%s", curl_easy_strerror(cc));
		rc = -EIO;
	}
out:
	if (h && r->conn) {
		/* The lists are ours to free: drop the handle's pointers to them first. */
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
		curl_easy_setopt(h, CURLOPT_CONNECT_TO, (struct curl_slist *)NULL);
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, (char *)NULL);
	} else if (h) {
		curl_easy_cleanup(h);
	}
	curl_slist_free_all(hl);
	curl_slist_free_all(ct);
	if (rc)
		ahttp_resp_free(out);
	return rc;
}

void ahttp_resp_free(ahttp_resp *out)
{
	free(out->body);
	out->body = NULL;
	out->len = 0;
}

void ahttp_conn_free(void *conn)
{
	if (conn && curlx_tab)
		curl_easy_cleanup(conn);
}
