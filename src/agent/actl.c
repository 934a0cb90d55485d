/* See actl.h. */
#include "agent/actl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/ahttp.h"
#include "core/sse.h"

#define ACTL_BETA "anthropic-beta: managed-agents-2026-04-01"

struct actl {
	char *base;
	char *ca_file; /* NULL: the system's CAs */
	char keyhdr[600];
	char session[128];
	char last_id[32];
	void (*tap)(void *arg, json_t *ev);
	void *tap_arg;
};

actl *actl_new(const char *base_url, const char *api_key, const char *ca_file, char *err, size_t errlen)
{
	if (strncmp(base_url, "http://", 7) && strncmp(base_url, "https://", 8)) {
		snprintf(err, errlen, "--control %s: not an http:// or https:// URL", base_url);
		return NULL;
	}
	if (strlen(api_key) > 512 || strpbrk(api_key, "\r\n")) {
		snprintf(err, errlen, "the API key is not one line of at most 512 bytes");
		return NULL;
	}
	actl *c = calloc(1, sizeof *c);
	if (!c || !(c->base = strdup(base_url)) || (ca_file && !(c->ca_file = strdup(ca_file)))) {
		if (c)
			free(c->base);
		free(c);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	size_t n = strlen(c->base);
	while (n && c->base[n - 1] == '/')
		c->base[--n] = 0;
	snprintf(c->keyhdr, sizeof c->keyhdr, "x-api-key: %s", api_key);
	snprintf(c->last_id, sizeof c->last_id, "0");
	return c;
}

void actl_free(actl *c)
{
	if (!c)
		return;
	explicit_bzero(c->keyhdr, sizeof c->keyhdr);
	free(c->base);
	free(c->ca_file);
	free(c);
}

void actl_set_tap(actl *c, void (*tap)(void *arg, json_t *ev), void *arg)
{
	c->tap = tap;
	c->tap_arg = arg;
}

const char *actl_session(const actl *c)
{
	return c->session;
}

/* One JSON call; *out the parsed answer of a 2xx. An error answer's message is in err. */
static int call(actl *c, const char *path, json_t *body, long timeout_ms, json_t **out, char *err, size_t errlen)
{
	char url[1024], e[256];
	const char *hdrs[] = { c->keyhdr, ACTL_BETA, NULL };
	char *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
	ahttp_resp resp;
	int rc;
	snprintf(url, sizeof url, "%s%s", c->base, path);
	ahttp_req r = { .method = b ? "POST" : "GET", .url = url, .headers = hdrs, .body = b, .timeout_ms = timeout_ms,
			.ca_file = c->ca_file };
	if ((rc = ahttp_do(&r, &resp, e, sizeof e))) {
		snprintf(err, errlen, "control plane %s: %s", path, e);
		goto out;
	}
	json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
	if (resp.status < 200 || resp.status > 299) {
		const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
		snprintf(err, errlen, "control plane %s: HTTP %ld: %.300s", path, resp.status, m ? m : resp.body);
		json_decref(j);
		rc = resp.status == 401 || resp.status == 403 ? -EACCES : -EPROTO;
	} else if (!j) {
		snprintf(err, errlen, "control plane %s: the answer is not JSON", path);
		rc = -EPROTO;
	} else if (out) {
		*out = j;
	} else {
		json_decref(j);
	}
	ahttp_resp_free(&resp);
out:
	free(b);
	return rc;
}

int actl_session_create(actl *c, const char *env_id, const char *title, char *err, size_t errlen)
{
	json_t *s = NULL;
	json_t *b = json_pack("{s:s,s:s,s:s%}", "agent", "postern-agent", "environment_id", env_id, "title", title,
			      strlen(title) > 500 ? (size_t)500 : strlen(title));
	int rc = call(c, "/v1/sessions?beta=true", b, 15000, &s, err, errlen);
	json_decref(b);
	if (rc)
		return rc;
	const char *id = json_string_value(json_object_get(s, "id"));
	if (!id || strlen(id) >= sizeof c->session) {
		snprintf(err, errlen, "control plane: the session answer has no id");
		rc = -EPROTO;
	} else {
		snprintf(c->session, sizeof c->session, "%s", id);
	}
	json_decref(s);
	return rc;
}

int actl_post(actl *c, json_t *ev, json_t **stored, char *err, size_t errlen)
{
	char path[256];
	json_t *a = NULL;
	json_t *b = json_pack("{s:[O]}", "events", ev);
	snprintf(path, sizeof path, "/v1/sessions/%s/events?beta=true", c->session);
	int rc = call(c, path, b, 15000, &a, err, errlen);
	json_decref(b);
	if (rc)
		return rc;
	if (stored) {
		json_t *e = json_array_get(json_object_get(a, "data"), 0);
		*stored = e ? json_incref(e) : json_object();
	}
	json_decref(a);
	return 0;
}

int actl_terminate(actl *c, char *err, size_t errlen)
{
	char path[256];
	if (!c->session[0])
		return 0;
	json_t *b = json_object();
	snprintf(path, sizeof path, "/v1/sessions/%s/archive?beta=true", c->session);
	int rc = call(c, path, b, 10000, NULL, err, errlen);
	json_decref(b);
	return rc;
}

struct waiter {
	actl *c;
	const char *id;
	sse_dec dec;
	json_t *result;
	int ended;
};

static int on_stream(void *arg, const char *p, size_t n)
{
	struct waiter *w = arg;
	sse_event ev;
	size_t used;
	char e[96];
	while (n) {
		int r = sse_dec_next(&w->dec, (const uint8_t *)p, n, &used, &ev, e, sizeof e);
		p += used, n -= used;
		if (r < 0)
			return -EPROTO;
		if (!r)
			break;
		if (ev.id && strlen(ev.id) < sizeof w->c->last_id)
			snprintf(w->c->last_id, sizeof w->c->last_id, "%s", ev.id);
		if (!ev.has_data)
			continue;
		json_t *j = json_loadb(ev.data, ev.data_len, 0, NULL);
		if (!j)
			continue;
		if (w->c->tap)
			w->c->tap(w->c->tap_arg, j);
		const char *t = json_string_value(json_object_get(j, "type"));
		const char *tid = json_string_value(json_object_get(j, "tool_use_id"));
		if (t && !strcmp(t, "user.tool_result") && tid && !strcmp(tid, w->id)) {
			w->result = j;
			return 1; /* found: stop the transfer */
		}
		if (t && (!strcmp(t, "session.status_terminated") || !strcmp(t, "session.deleted")))
			w->ended = 1;
		json_decref(j);
		if (w->ended)
			return 1;
	}
	return 0;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int actl_wait_result(actl *c, const char *tool_use_id, long timeout_ms, json_t **result, char *err, size_t errlen)
{
	char url[1024], lh[64], e[256];
	const char *hdrs[] = { c->keyhdr, ACTL_BETA, "Accept: text/event-stream", lh, NULL };
	long deadline = now_ms() + timeout_ms;
	int rc = -ETIMEDOUT;
	snprintf(url, sizeof url, "%s/v1/sessions/%s/events/stream?beta=true", c->base, c->session);
	/* The server ends a stream now and then (keep-alive limits, a restart): reopen from the last id. */
	for (int tries = 0; tries < 1000; tries++) {
		long left = deadline - now_ms();
		if (left <= 0)
			break;
		struct waiter w = { .c = c, .id = tool_use_id };
		sse_dec_init(&w.dec, 0, 0);
		snprintf(lh, sizeof lh, "Last-Event-ID: %s", c->last_id);
		ahttp_req r = { .method = "GET", .url = url, .headers = hdrs, .timeout_ms = left, .sink = on_stream, .arg = &w,
				.ca_file = c->ca_file };
		ahttp_resp resp;
		int hr = ahttp_do(&r, &resp, e, sizeof e);
		sse_dec_free(&w.dec);
		if (!hr)
			ahttp_resp_free(&resp);
		if (w.result) {
			*result = w.result;
			return 0;
		}
		if (w.ended) {
			snprintf(err, errlen, "the session was terminated while waiting for the result of %s", tool_use_id);
			return -EPIPE;
		}
		if (hr == -ECANCELED) {
			snprintf(err, errlen, "interrupted while waiting for the result of %s", tool_use_id);
			return hr;
		}
		if (hr == -ETIMEDOUT)
			break;
		if (!hr && resp.status >= 400) {
			snprintf(err, errlen, "control plane: the event stream answered HTTP %ld", resp.status);
			return -EPROTO;
		}
		struct timespec ts = { 0, 100 * 1000000L };
		nanosleep(&ts, NULL);
	}
	snprintf(err, errlen, "no result for %s within %ld ms (the worker did not answer)", tool_use_id, timeout_ms);
	return rc;
}
