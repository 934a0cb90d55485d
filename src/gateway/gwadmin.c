/* The approvals and pins endpoints (gateway/gwadmin.h). */
#include "gateway/gwadmin.h"

#include <errno.h>
#include <jansson.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/utf8.h"

struct gwa {
	apv *a;
	pin_table *pins;
	char *pins_file;
	gwa_accept_cb on_accept;
	void *on_accept_ud;
};

gwa *gwa_new(apv *a, pin_table *pins, const char *pins_file)
{
	gwa *g = calloc(1, sizeof *g);
	if (!g)
		return NULL;
	g->a = a;
	g->pins = pins;
	if (pins_file && *pins_file && !(g->pins_file = strdup(pins_file))) {
		free(g);
		return NULL;
	}
	return g;
}

void gwa_on_accept(gwa *g, gwa_accept_cb cb, void *ud)
{
	g->on_accept = cb;
	g->on_accept_ud = ud;
}

void gwa_free(gwa *g)
{
	if (!g)
		return;
	free(g->pins_file);
	free(g);
}

void gwa_who(const adm_req *q, char *out, size_t len)
{
	struct passwd pw, *res = NULL;
	char buf[1024];
	if (!q->peer_unix) {
		snprintf(out, len, "http %s", q->peer);
		return;
	}
	/* The name is for people reading the log; the uid is the kernel's word. */
	if (getpwuid_r(q->peer_uid, &pw, buf, sizeof buf, &res) == 0 && res)
		snprintf(out, len, "uid %u (%s)", (unsigned)q->peer_uid, res->pw_name);
	else
		snprintf(out, len, "uid %u", (unsigned)q->peer_uid);
}

/* Answers with j (taken) as compact JSON. */
static void reply_json(adm_resp *r, int status, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!s) {
		adm_reply(r, 500, "application/json", "{\"error\":\"out of memory\"}\n", 26);
		return;
	}
	adm_reply(r, status, "application/json", s, strlen(s));
	free(s);
}

static void reply_err(adm_resp *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reply_err(adm_resp *r, int status, const char *fmt, ...)
{
	char m[512];
	size_t n = 0, len, k;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof m, fmt, ap);
	va_end(ap);
	/* A cut may have split a character: JSON strings are UTF-8, so end before it. */
	len = strlen(m);
	while (n < len && (k = utf8_seq_len((const unsigned char *)m + n, len - n)))
		n += k;
	m[n] = 0;
	reply_json(r, status, json_pack("{s:s}", "error", m));
}

/* The request body as a JSON object; NULL (answered 400) when it is not one. An empty body is {} when
 * empty_ok. */
static json_t *body_object(const adm_req *q, adm_resp *r, bool empty_ok)
{
	json_error_t je;
	json_t *j;
	if (!q->body_len && empty_ok)
		return json_object();
	if (!q->body_len) {
		reply_err(r, 400, "a JSON object body is required");
		return NULL;
	}
	if (!(j = json_loadb(q->body, q->body_len, JSON_REJECT_DUPLICATES, &je)) || !json_is_object(j)) {
		reply_err(r, 400, "the body is not a JSON object%s%s", j ? "" : ": ", j ? "" : je.text);
		json_decref(j);
		return NULL;
	}
	return j;
}

static void h_approvals(const adm_req *q, adm_resp *r, void *ud)
{
	gwa *g = ud;
	char *out = NULL;
	size_t len = 0;
	(void)q;
	if (!g->a) {
		adm_reply(r, 200, "application/json", "[]", 2);
		return;
	}
	if (apv_list_json(g->a, &out, &len) < 0) {
		reply_err(r, 500, "out of memory");
		return;
	}
	adm_reply(r, 200, "application/json", out, len);
	free(out);
}

/* POST /approvals/ID/approve|deny */
static void h_decide(const adm_req *q, adm_resp *r, void *ud)
{
	gwa *g = ud;
	const char *rest = q->path + strlen("/approvals/"), *slash = strchr(rest, '/'), *act, *reason = NULL;
	char id[64], who[128], by[APV_MAX_BY + 1], err[256], qr[300], qw[200];
	json_t *b, *jr;
	bool approve;

	if (!slash || slash == rest || (size_t)(slash - rest) >= sizeof id ||
	    (strcmp(slash + 1, "approve") && strcmp(slash + 1, "deny"))) {
		reply_err(r, 404, "unknown endpoint %s (want POST /approvals/ID/approve or /approvals/ID/deny)", q->path);
		return;
	}
	if (strcmp(q->method, "POST")) {
		reply_err(r, 405, "%s decides with POST", q->path);
		return;
	}
	memcpy(id, rest, (size_t)(slash - rest));
	id[slash - rest] = 0;
	act = slash + 1;
	approve = !strcmp(act, "approve");
	if (!(b = body_object(q, r, true)))
		return;
	jr = json_object_get(b, "reason");
	if (jr && !json_is_string(jr) && !json_is_null(jr)) {
		json_decref(b);
		reply_err(r, 400, "reason: want a string");
		return;
	}
	reason = json_string_value(jr);
	if (reason && strlen(reason) > GWA_MAX_REASON) {
		json_decref(b);
		reply_err(r, 400, "reason: over %d bytes", GWA_MAX_REASON);
		return;
	}
	gwa_who(q, who, sizeof who);
	if (reason && *reason)
		snprintf(by, sizeof by, "%s: %s", who, reason);
	else
		snprintf(by, sizeof by, "%s", who);
	if (!g->a || apv_decide(g->a, id, approve, by, err, sizeof err) < 0) {
		if (!g->a)
			snprintf(err, sizeof err, "no held call with id %s: unknown, already decided or timed out", id);
		json_decref(b);
		reply_err(r, 404, "%s", err);
		return;
	}
	log_info("msg=\"approval decided over the admin API\" id=%s outcome=%s by=%s reason=%s", id,
		 approve ? "approved" : "denied", log_quote(who, qw, sizeof qw), log_quote(reason ? reason : "", qr, sizeof qr));
	reply_json(r, 200, json_pack("{s:s,s:s,s:s}", "id", id, "outcome", approve ? "approved" : "denied", "by", by));
	json_decref(b);
}

static void h_pins(const adm_req *q, adm_resp *r, void *ud)
{
	gwa *g = ud;
	json_t *arr = json_array();
	(void)q;
	for (size_t i = 0; arr && g->pins && i < pin_count(g->pins); i++) {
		const char *route, *tool, *hex, *pending;
		json_t *e;
		pin_at(g->pins, i, &route, &tool, &hex, &pending);
		e = json_pack("{s:s,s:s,s:s,s:o}", "route", route, "tool", tool, "sha256", hex, "pending",
			      pending ? json_string(pending) : json_null());
		if (!e || json_array_append_new(arr, e) < 0) {
			json_decref(e);
			json_decref(arr);
			arr = NULL;
		}
	}
	reply_json(r, 200, arr);
}

static void h_accept(const adm_req *q, adm_resp *r, void *ud)
{
	gwa *g = ud;
	const char *route, *tool, *hex = NULL;
	char who[128], err[512], q1[300], q2[300], qw[200];
	bool saved = false;
	json_t *b;
	int rc;

	if (!(b = body_object(q, r, false)))
		return;
	route = json_string_value(json_object_get(b, "route"));
	tool = json_string_value(json_object_get(b, "tool"));
	if (!route || !tool || !*route || !*tool) {
		reply_err(r, 400, "want {\"route\": \"...\", \"tool\": \"...\"} (see GET /pins)");
		goto done;
	}
	rc = g->pins ? pin_accept(g->pins, route, tool) : -ENOENT;
	if (rc == -ENOENT) {
		reply_err(r, 404, "no pin for route %s tool %s (see GET /pins)", route, tool);
		goto done;
	}
	if (rc == -EALREADY) {
		reply_err(r, 409, "route %s tool %s has no changed definition pending: nothing to accept", route,
			  tool);
		goto done;
	}
	pin_get(g->pins, route, tool, &hex, NULL);
	gwa_who(q, who, sizeof who);
	log_warn("msg=\"changed tool definition accepted\" route=%s tool=%s sha256=%s by=%s",
		 log_quote(route, q1, sizeof q1), log_quote(tool, q2, sizeof q2), hex, log_quote(who, qw, sizeof qw));
	if (g->pins_file) {
		if ((rc = pin_save(g->pins, g->pins_file, err, sizeof err)) < 0) {
			log_error("msg=\"cannot save the pins file\" detail=%s", log_quote(err, q1, sizeof q1));
			reply_err(r, 500, "accepted in memory but not saved: %s", err);
			goto done;
		}
		saved = true;
	}
	if (g->on_accept)
		g->on_accept(g->on_accept_ud, route, tool, hex, who);
	reply_json(r, 200, json_pack("{s:s,s:s,s:s,s:b}", "route", route, "tool", tool, "sha256", hex, "saved", saved));
done:
	json_decref(b);
}

int gwa_register(adm_server *s, gwa *g, char *err, size_t errlen)
{
	int rc;
	if ((rc = adm_handle_ex(s, "/approvals", ADM_GET, h_approvals, g)) < 0 ||
	    (rc = adm_handle_ex(s, "/approvals/", ADM_GET | ADM_POST | ADM_PREFIX, h_decide, g)) < 0 ||
	    (rc = adm_handle_ex(s, "/pins", ADM_GET, h_pins, g)) < 0 ||
	    (rc = adm_handle_ex(s, "/pins/accept", ADM_POST, h_accept, g)) < 0)
		snprintf(err, errlen, "the admin endpoints: %s", strerror(-rc));
	return rc;
}
