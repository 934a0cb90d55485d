/* The worker's protocol decisions (see wproto.h). */
#include "worker/wproto.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool wpr_fatal_status(long status)
{
	return status >= 400 && status < 500 && status != 408 && status != 409 && status != 429;
}

/* RFC 7230 visible characters, 0x21..0x7e */
#define TOKEN_CHARS "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"

int wpr_secret_token(const char *secret, char **token)
{
	size_t n = secret ? strlen(secret) : 0, m;
	char *b64 = NULL;
	unsigned char *raw = NULL;
	json_t *j = NULL;
	int len, rc = 0;
	const char *t;

	*token = NULL;
	if (!n || n > 16384)
		return 0;
	m = (n + 3) / 4 * 4;
	b64 = malloc(m + 1);
	raw = malloc(m + 1);
	if (!b64 || !raw) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char c = secret[i];
		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (c == '=') {
			if (i + 2 < n)
				goto out; /* padding only at the end */
			m = (i + 3) / 4 * 4;
			n = i;
			break;
		}
		b64[i] = c;
	}
	for (size_t i = n; i < m; i++)
		b64[i] = '=';
	b64[m] = 0;
	if (n % 4 == 1)
		goto out;
	len = EVP_DecodeBlock(raw, (unsigned char *)b64, (int)m);
	if (len < 0)
		goto out;
	len -= (int)(m - n); /* EVP_DecodeBlock counts padding as zero bytes */
	j = json_loadb((const char *)raw, (size_t)len, 0, NULL);
	t = json_string_value(json_object_get(j, "sessions_token"));
	/* It goes into "Authorization: Bearer <t>": only visible ASCII, else a CR LF in it would add headers to
	 * every call of the session (libcurl sends header lines as given). */
	if (t && (!*t || strlen(t) > 4096 || strspn(t, TOKEN_CHARS) != strlen(t)))
		t = NULL;
	if (t && !(*token = strdup(t)))
		rc = -ENOMEM;
out:
	if (b64)
		OPENSSL_cleanse(b64, m);
	if (raw)
		OPENSSL_cleanse(raw, m);
	free(b64);
	free(raw);
	json_decref(j); /* jansson's copy of the token is freed unwiped: its allocator is the process's own */
	return rc;
}

static void printable(const char *s, char *out, size_t cap)
{
	size_t o = 0;
	for (; s && *s && o + 1 < cap; s++)
		out[o++] = (*s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\') ? *s : '?';
	out[o] = 0;
}

void wpr_error_text(const char *body, size_t len, char *out, size_t cap)
{
	json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
	json_t *e = json_object_get(j, "error");
	char kind[64], msg[512];
	out[0] = 0;
	if (cap && json_is_object(e)) {
		printable(json_string_value(json_object_get(e, "type")), kind, sizeof kind);
		printable(json_string_value(json_object_get(e, "message")), msg, sizeof msg);
		snprintf(out, cap, "%s%s%s", kind, *kind && *msg ? ": " : "", msg);
	}
	json_decref(j);
}

static void set_interval(wpr_lease *l)
{
	int64_t half = l->ttl_ms / 2;
	l->interval_ms = half < WPR_MAX_INTERVAL_MS ? half : WPR_MAX_INTERVAL_MS;
	if (l->interval_ms < WPR_MIN_INTERVAL_MS)
		l->interval_ms = WPR_MIN_INTERVAL_MS;
}

void wpr_lease_init(wpr_lease *l, uint64_t now_ms)
{
	memset(l, 0, sizeof *l);
	snprintf(l->last, sizeof l->last, "%s", WPR_NO_HEARTBEAT);
	l->ttl_ms = WPR_DEFAULT_TTL_MS;
	set_interval(l);
	l->last_ok_ms = now_ms;
}

/* The lease fields of a heartbeat answer or of a 412's error.details.current_state. */
static void take_state(wpr_lease *l, json_t *o)
{
	json_t *ttl = json_object_get(o, "ttl_seconds");
	const char *last = json_string_value(json_object_get(o, "last_heartbeat"));
	if (json_is_integer(ttl) && json_integer_value(ttl) > 0 && json_integer_value(ttl) < 86400) {
		l->ttl_ms = json_integer_value(ttl) * 1000;
		set_interval(l);
	}
	if (last && strlen(last) <= WPR_STAMP_MAX)
		snprintf(l->last, sizeof l->last, "%s", last);
}

enum wpr_lease_act wpr_lease_answer(wpr_lease *l, long status, const char *body, size_t len, uint64_t now_ms)
{
	json_t *j = NULL;
	enum wpr_lease_act act = WPR_LEASE_RETRY;
	const char *state;
	json_t *ext;
	char etext[200];

	l->reason[0] = 0;
	if (status == 0) {
		snprintf(l->reason, sizeof l->reason, "heartbeat request failed");
		return WPR_LEASE_RETRY;
	}
	if (status == 412) {
		j = body ? json_loadb(body, len, 0, NULL) : NULL;
		take_state(l, json_object_get(json_object_get(json_object_get(j, "error"), "details"), "current_state"));
		snprintf(l->reason, sizeof l->reason, "heartbeat 412: the lease is held by another heartbeat");
		act = WPR_LEASE_RELEASE;
		goto out;
	}
	if (status < 200 || status > 299) {
		wpr_error_text(body, len, etext, sizeof etext);
		snprintf(l->reason, sizeof l->reason, "heartbeat answered %ld%s%.120s", status, *etext ? " " : "", etext);
		act = wpr_fatal_status(status) ? WPR_LEASE_STOP : WPR_LEASE_RETRY;
		goto out;
	}
	j = body ? json_loadb(body, len, 0, NULL) : NULL;
	state = json_string_value(json_object_get(j, "state"));
	ext = json_object_get(j, "lease_extended");
	if (!json_is_object(j) || !json_is_string(json_object_get(j, "last_heartbeat"))) {
		snprintf(l->reason, sizeof l->reason, "heartbeat answer is not a work_heartbeat object");
		goto out;
	}
	take_state(l, j);
	if ((state && (!strcmp(state, "stopping") || !strcmp(state, "stopped"))) || json_is_false(ext)) {
		snprintf(l->reason, sizeof l->reason, "the control plane ended the lease (state=%s lease_extended=%s)",
			 state && strlen(state) < 16 ? state : "?", json_is_false(ext) ? "false" : "true");
		act = WPR_LEASE_STOP;
		goto out;
	}
	l->last_ok_ms = now_ms;
	act = WPR_LEASE_KEEP;
out:
	json_decref(j);
	return act;
}

bool wpr_lease_lost(const wpr_lease *l, uint64_t now_ms)
{
	return now_ms > l->last_ok_ms + (uint64_t)l->ttl_ms;
}
