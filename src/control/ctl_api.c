/* The API's routing, credentials, answers and errors (ctl_api.h). Endpoints live in the ctl_api_* parts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "control/ctl_api_int.h"
#include "core/admin.h"
#include "core/err.h"
#include "core/log.h"

struct route {
	const char *method, *pattern, *endpoint;
	unsigned creds;
	void (*fn)(cai_ctx *c);
};

#define OOM_BODY "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"out of memory\"}}"
#define API CAI_API
#define WRK (CAI_ENV | CAI_SESSION)
#define ANY (CAI_API | CAI_ENV | CAI_SESSION)

/* Literal routes before the captures that would also match them (".../work/poll" before ".../work/{}"). */
static const struct route routes[] = {
	{ "POST", "/v1/environments", "environments.create", API, cai_env_create },
	{ "GET", "/v1/environments", "environments.list", API, cai_env_list },
	{ "GET", "/v1/environments/{}/work/poll", "work.poll", CAI_ENV, cai_work_poll },
	{ "GET", "/v1/environments/{}/work/stats", "work.stats", CAI_API | CAI_ENV, cai_work_stats },
	{ "GET", "/v1/environments/{}/work", "work.list", CAI_ENV, cai_work_list },
	{ "POST", "/v1/environments/{}/work/{}/ack", "work.ack", WRK, cai_work_ack },
	{ "POST", "/v1/environments/{}/work/{}/heartbeat", "work.heartbeat", WRK, cai_work_heartbeat },
	{ "POST", "/v1/environments/{}/work/{}/stop", "work.stop", ANY, cai_work_stop },
	{ "GET", "/v1/environments/{}/work/{}", "work.retrieve", API, cai_work_retrieve },
	{ "POST", "/v1/environments/{}/work/{}", "work.update", API, cai_work_update },
	{ "POST", "/v1/environments/{}/archive", "environments.archive", API, cai_env_archive },
	{ "GET", "/v1/environments/{}", "environments.retrieve", API, cai_env_retrieve },
	{ "POST", "/v1/environments/{}", "environments.update", API, cai_env_update },
	{ "DELETE", "/v1/environments/{}", "environments.delete", API, cai_env_delete },
	{ "POST", "/v1/sessions", "sessions.create", API, cai_sess_create },
	{ "GET", "/v1/sessions", "sessions.list", API, cai_sess_list },
	{ "GET", "/v1/sessions/{}/events/stream", "events.stream", ANY, cai_events_stream },
	{ "GET", "/v1/sessions/{}/events", "events.list", ANY, cai_events_list },
	{ "POST", "/v1/sessions/{}/events", "events.send", ANY, cai_events_post },
	{ "POST", "/v1/sessions/{}/archive", "sessions.archive", API, cai_sess_archive },
	{ "GET", "/v1/sessions/{}", "sessions.retrieve", ANY, cai_sess_retrieve },
	{ "POST", "/v1/sessions/{}", "sessions.update", API, cai_sess_update },
	{ "DELETE", "/v1/sessions/{}", "sessions.delete", API, cai_sess_delete },
};

const char *cai_error_kind(int status)
{
	switch (status) {
	case 400: return "invalid_request_error";
	case 401: return "authentication_error";
	case 403: return "permission_error";
	case 404: return "not_found_error";
	case 405: return "invalid_request_error";
	case 408: return "timeout_error";
	case 409: return "conflict_error";
	case 412: return "invalid_request_error";
	case 413: return "request_too_large";
	case 429: return "rate_limit_error";
	case 503: return "overloaded_error";
	default: return status >= 500 ? "api_error" : "invalid_request_error";
	}
}

static json_t *error_json(int status, const char *msg, json_t *details, const char *request_id)
{
	json_t *e = json_pack("{s:s,s:s}", "type", cai_error_kind(status), "message", msg);
	if (details)
		json_object_set_new(e, "details", details);
	json_t *o = json_pack("{s:s,s:o}", "type", "error", "error", e);
	if (request_id)
		json_object_set_new(o, "request_id", json_string(request_id));
	return o;
}

size_t capi_error_body(char *out, size_t cap, int status, const char *msg)
{
	char m[512];
	json_t *o;
	char *t;
	size_t n = 0;
	if (status == 413)
		snprintf(m, sizeof m, "%s (the server's max_body). A worker posting a tool result this large must truncate "
			 "its content and say in it that it did.", msg);
	else
		snprintf(m, sizeof m, "%s", msg);
	o = error_json(status, m, NULL, NULL);
	t = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (t) {
		n = strlen(t);
		if (n >= cap)
			n = 0;
		else
			memcpy(out, t, n + 1);
	}
	free(t);
	json_decref(o);
	if (!n)
		n = (size_t)snprintf(out, cap, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"error\"}}");
	return n;
}

void capi_error_headers(char *out, size_t cap)
{
	char id[40];
	if (ctl_new_id("req", id, sizeof id) < 0)
		snprintf(id, sizeof id, "req_unknown");
	snprintf(out, cap, "request-id: %s\r\n", id);
}

void cai_count(cai_ctx *c, int status)
{
	char l1[96], l2[32], labels[160], st[8];
	snprintf(st, sizeof st, "%d", status);
	snprintf(labels, sizeof labels, "%s,%s", adm_label(l1, sizeof l1, "endpoint", c->endpoint ? c->endpoint : "none"),
		 adm_label(l2, sizeof l2, "status", st));
	adm_counter_add("postern_control_requests_total", labels, 1);
	/* no query, no headers: keys and tokens never reach the log */
	log_debug("msg=\"request\" endpoint=%s method=%s status=%d request_id=%s peer=%s", c->endpoint ? c->endpoint : "none",
		  hsrv_method(c->r), status, c->request_id, hsrv_peer(c->r));
}

void cai_reply(cai_ctx *c, int status, json_t *body)
{
	char hdr[96];
	char *t = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("null");
	snprintf(hdr, sizeof hdr, "request-id: %s\r\n", c->request_id);
	cai_count(c, t ? status : 500);
	if (!t)
		hsrv_reply(c->r, 500, NULL, hdr, OOM_BODY, sizeof OOM_BODY - 1);
	else
		hsrv_reply(c->r, status, NULL, hdr, t, strlen(t));
	free(t);
	json_decref(body);
}

void cai_error(cai_ctx *c, int status, json_t *details, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	cai_reply(c, status, error_json(status, msg, details, c->request_id));
}

void cai_store_error(cai_ctx *c, int rc, const char *err)
{
	switch (rc) {
	case -ENOENT: cai_error(c, 404, NULL, "%s", err); return;
	case -EEXIST:
	case -EALREADY: cai_error(c, 409, NULL, "%s", err); return;
	case -EINVAL: cai_error(c, 400, NULL, "%s", err); return;
	case -ESTALE: cai_error(c, 412, NULL, "%s", err); return;
	default: {
		char q[512];
		log_error("msg=\"store failed\" endpoint=%s request_id=%s err=%s", c->endpoint, c->request_id,
			  log_quote(err, q, sizeof q));
		cai_error(c, 503, NULL, "the store failed (request %s): try again", c->request_id);
	}
	}
}

void cai_save_reply(cai_ctx *c, bool session, const char *id, json_t *obj)
{
	ctl_store *s = c->a->o.store;
	char err[256];
	int rc = session ? s->ops->session_put(s, id, obj, err, sizeof err) : s->ops->env_put(s, id, obj, err, sizeof err);
	if (rc < 0)
		cai_store_error(c, rc, err);
	else
		cai_reply(c, 200, json_incref(obj));
}

json_t *cai_body(cai_ctx *c)
{
	size_t n;
	const char *b = hsrv_body(c->r, &n);
	json_error_t je;
	json_t *o;
	if (!n) {
		cai_error(c, 400, NULL, "the request needs a JSON object body");
		return NULL;
	}
	if (!(o = json_loadb(b, n, JSON_REJECT_DUPLICATES, &je))) {
		cai_error(c, 400, NULL, "the body is not JSON: %s (line %d, column %d)", je.text, je.line, je.column);
		return NULL;
	}
	if (!json_is_object(o)) {
		json_decref(o);
		cai_error(c, 400, NULL, "the body must be a JSON object");
		return NULL;
	}
	return o;
}

int cai_query_uint(cai_ctx *c, const char *name, uint64_t min, uint64_t max, uint64_t *v)
{
	char buf[32], *end;
	int n = hsrv_query_get(hsrv_query(c->r), name, buf, sizeof buf);
	unsigned long long x;
	if (n == -ENOENT)
		return 1;
	if (n <= 0) {
		cai_error(c, 400, NULL, "%s: must be a whole number from %llu to %llu", name, (unsigned long long)min,
			  (unsigned long long)max);
		return -EINVAL; /* answered 400 */
	}
	errno = 0;
	x = strtoull(buf, &end, 10);
	if (*end || errno || buf[0] == '-' || x < min || x > max) {
		cai_error(c, 400, NULL, "%s: must be a whole number from %llu to %llu", name, (unsigned long long)min,
			  (unsigned long long)max);
		return -EINVAL; /* answered 400 */
	}
	*v = x;
	return 0;
}

int cai_page_params(cai_ctx *c, unsigned def, unsigned max, unsigned *limit, char *page, size_t pagelen)
{
	uint64_t l = def;
	int n;
	if (cai_query_uint(c, "limit", 1, max, &l) < 0)
		return -EINVAL; /* answered 400 */
	*limit = (unsigned)l;
	page[0] = 0;
	n = hsrv_query_get(hsrv_query(c->r), "page", page, pagelen);
	if (n < 0 && n != -ENOENT) {
		cai_error(c, 400, NULL, "page: not a cursor this server gave");
		return -EINVAL; /* answered 400 */
	}
	if (n == -ENOENT)
		page[0] = 0;
	return 0;
}

json_t *cai_page_json(ctl_page *p, bool prev)
{
	json_t *o = json_pack("{s:o,s:s?}", "data", p->data ? json_incref(p->data) : json_array(), "next_page", p->next_page);
	if (prev)
		json_object_set_new(o, "prev_page", json_null());
	ctl_page_free(p);
	return o;
}

void cai_list(cai_ctx *c, bool sessions, unsigned max)
{
	ctl_store *s = c->a->o.store;
	ctl_page p = { 0 };
	char page[64], err[256], arch[8];
	unsigned limit;
	bool include_archived;
	size_t i;
	json_t *o;
	int rc;
	if (cai_page_params(c, 20, max, &limit, page, sizeof page) < 0)
		return;
	include_archived = hsrv_query_get(hsrv_query(c->r), "include_archived", arch, sizeof arch) > 0 && !strcmp(arch, "true");
	rc = sessions ? s->ops->session_list(s, page, limit, &p, err, sizeof err)
		      : s->ops->env_list(s, page, limit, &p, err, sizeof err);
	if (rc < 0) {
		cai_store_error(c, rc, err);
		return;
	}
	json_array_foreach(p.data, i, o) {
		if (json_is_true(json_object_get(o, "deleted")) ||
		    (!include_archived && !json_is_null(json_object_get(o, "archived_at")))) {
			json_array_remove(p.data, i);
			i--;
		}
	}
	cai_reply(c, 200, cai_page_json(&p, sessions));
}

bool cai_patch_metadata(cai_ctx *c, json_t *obj, json_t *body)
{
	json_t *md = json_object_get(body, "metadata");
	if (!md || json_is_null(md))
		return true;
	if (!cai_metadata_ok(c, md, true, "metadata"))
		return false;
	ctl_merge_patch(json_object_get(obj, "metadata"), md);
	return true;
}

bool cai_may_env(cai_ctx *c, const char *env_id, unsigned creds)
{
	if ((creds & CAI_API) && c->cred == CAI_API)
		return true;
	if ((creds & CAI_ENV) && c->cred == CAI_ENV && !strcmp(c->scope, env_id))
		return true;
	if (c->cred == CAI_ENV)
		cai_error(c, 403, NULL, "this environment key belongs to another environment, not %s", env_id);
	else
		cai_error(c, 403, NULL, "this credential may not act on environment %s", env_id);
	return false;
}

bool cai_may_session(cai_ctx *c, json_t *s, unsigned creds)
{
	const char *sid = json_string_value(json_object_get(s, "id"));
	const char *env = json_string_value(json_object_get(s, "environment_id"));
	if ((creds & CAI_API) && c->cred == CAI_API)
		return true;
	if ((creds & CAI_SESSION) && c->cred == CAI_SESSION && sid && !strcmp(c->scope, sid))
		return true;
	if ((creds & CAI_ENV) && c->cred == CAI_ENV && env && !strcmp(c->scope, env))
		return true;
	cai_error(c, 403, NULL, "this credential may not act on session %s", sid ? sid : "?");
	return false;
}

bool cai_metadata_ok(cai_ctx *c, json_t *md, bool patch, const char *field)
{
	const char *k;
	json_t *v;
	if (!json_is_object(md)) {
		cai_error(c, 400, NULL, "%s: must be an object of string values", field);
		return false;
	}
	if (json_object_size(md) > 16) {
		cai_error(c, 400, NULL, "%s: at most 16 keys", field);
		return false;
	}
	json_object_foreach(md, k, v) {
		size_t kl = strlen(k);
		if (kl < 1 || kl > 64) {
			cai_error(c, 400, NULL, "%s: keys must be 1 to 64 bytes", field);
			return false;
		}
		if (!(json_is_string(v) || (patch && json_is_null(v)))) {
			cai_error(c, 400, NULL, "%s.%s: must be a string%s", field, k, patch ? " or null" : "");
			return false;
		}
		if (json_is_string(v) && json_string_length(v) > 512) {
			cai_error(c, 400, NULL, "%s.%s: at most 512 bytes", field, k);
			return false;
		}
	}
	return true;
}

/* ---- keys ---- */
void capi_key_hash(const char *key, uint8_t hash[32]) { SHA256((const unsigned char *)key, strlen(key), hash); }

int capi_key_new(const char *kind, char *key, size_t keylen, uint8_t hash[32])
{
	unsigned char r[32], b64[48];
	int n, o;
	if (RAND_bytes(r, sizeof r) != 1)
		return -EIO;
	n = EVP_EncodeBlock(b64, r, sizeof r);
	while (n > 0 && b64[n - 1] == '=')
		n--;
	for (int i = 0; i < n; i++)
		b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	o = snprintf(key, keylen, "pst_%s_%.*s", kind, n, (const char *)b64);
	OPENSSL_cleanse(r, sizeof r);
	if (o < 0 || (size_t)o >= keylen)
		return -ENOSPC;
	capi_key_hash(key, hash);
	return 0;
}

/* ---- credentials ---- */
/* A sessions token works while its work item is not stopped and it is the token of the item's latest delivery:
 * stopping the work (a stop, the end of a stopping lease, the session's delete) ends it, a later item of the
 * session has its own, and handing the item out again revokes it (the store does, with the delivery).
 * Two reads per call with a token (the session for its environment, then the item). */
static bool token_live(ctl_store *s, const char *session_id, const char *work_id)
{
	json_t *so = NULL, *w = NULL;
	char err[128];
	bool live = false;
	const char *env, *st;
	if (!*work_id || s->ops->session_get(s, session_id, &so, err, sizeof err) < 0)
		goto out;
	if (!(env = json_string_value(json_object_get(so, "environment_id"))) ||
	    s->ops->work_get(s, env, work_id, &w, err, sizeof err) < 0)
		goto out;
	st = json_string_value(json_object_get(w, "state"));
	live = st && strcmp(st, "stopped");
out:
	json_decref(so);
	json_decref(w);
	return live;
}

static void who(cai_ctx *c)
{
	const char *xk = hsrv_header(c->r, "x-api-key"), *au = hsrv_header(c->r, "authorization");
	ctl_store *s = c->a->o.store;
	uint8_t h[32];
	int rc;
	c->cred = CAI_NONE;
	if (xk && *xk) {
		capi_key_hash(xk, h);
		if (s->ops->key_check(s, "api", h, c->key_id, sizeof c->key_id, NULL, 0, NULL, 0) == 0)
			c->cred = CAI_API;
		return;
	}
	if (au && !strncasecmp(au, "Bearer ", 7) && au[7]) {
		capi_key_hash(au + 7, h);
		if (s->ops->key_check(s, "env", h, c->key_id, sizeof c->key_id, c->scope, sizeof c->scope, NULL, 0) == 0) {
			/* the key of a deleted environment (a tombstone) works no more */
			json_t *e = NULL;
			char err[128];
			if (s->ops->env_get(s, c->scope, &e, err, sizeof err) == 0 && !json_is_true(json_object_get(e, "deleted")))
				c->cred = CAI_ENV;
			json_decref(e);
		}
		else if ((rc = s->ops->key_check(s, "session", h, c->key_id, sizeof c->key_id, c->scope, sizeof c->scope,
						 c->token_work, sizeof c->token_work)) == 0) {
			if (token_live(s, c->scope, c->token_work))
				c->cred = CAI_SESSION;
			else
				c->stale_token = true;
		}
		/* a session key is revoked only when its item is handed out again (a re-offer, a lease that ran out) */
		else if (rc == -EKEYREVOKED)
			c->superseded = true;
		/* The SDK (1.10.0) sends its apiKey as a bearer too; the hashes of the kinds never meet. */
		else if (s->ops->key_check(s, "api", h, c->key_id, sizeof c->key_id, NULL, 0, NULL, 0) == 0)
			c->cred = CAI_API;
	}
}

static const char *creds_text(unsigned creds)
{
	if (creds == CAI_API)
		return "an API key (x-api-key, or Authorization: Bearer as the SDK sends it); environment keys and work "
		       "secrets are not accepted here";
	if (creds == CAI_ENV)
		return "the environment key (Authorization: Bearer); an API key is not accepted here";
	if (!(creds & CAI_API))
		return "the environment key or the work item's sessions token (Authorization: Bearer); an API key is not "
		       "accepted here";
	return "an API key (x-api-key or Authorization: Bearer) or a worker's bearer token";
}

/* The header is a comma-separated list of beta names (the SDK sends one; a client may send several). */
static bool beta_ok(const char *h)
{
	size_t n = strlen(CAPI_BETA);
	while (h && *h) {
		size_t sp = strspn(h, " \t,"), len;
		h += sp;
		len = strcspn(h, ",");
		while (len && (h[len - 1] == ' ' || h[len - 1] == '\t'))
			len--;
		if (len == n && !memcmp(h, CAPI_BETA, n))
			return true;
		h += strcspn(h, ",");
	}
	return false;
}

void capi_handle(hsrv_req *r, void *ud)
{
	capi *a = ud;
	cai_ctx *c = calloc(1, sizeof *c);
	const struct route *rt = NULL;
	bool path_known = false;
	const char *method = hsrv_method(r), *path = hsrv_path(r);
	if (!c) {
		hsrv_reply(r, 500, NULL, NULL, OOM_BODY, sizeof OOM_BODY - 1);
		return;
	}
	c->a = a;
	c->r = r;
	if (ctl_new_id("req", c->request_id, sizeof c->request_id) < 0)
		snprintf(c->request_id, sizeof c->request_id, "req_unknown");
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		char caps[HSRV_MAX_CAPS][HSRV_CAP_MAX];
		unsigned n;
		if (!hsrv_match(routes[i].pattern, path, caps, &n))
			continue;
		path_known = true;
		if (strcmp(routes[i].method, method))
			continue;
		rt = &routes[i];
		memcpy(c->caps, caps, sizeof caps);
		c->ncaps = n;
		break;
	}
	if (!rt) {
		c->endpoint = "none";
		if (path_known)
			cai_error(c, 405, NULL, "method %s is not allowed on %s", method, path);
		else
			cai_error(c, 404, NULL, "no endpoint %s %s", method, path);
		free(c);
		return;
	}
	c->endpoint = rt->endpoint;
	/* Two credentials (or two of a header the API reads once) would leave "which one counts" to whoever reads
	 * them: a proxy in front may check the last while this server takes the first. */
	static const char *const once[] = { "authorization", "x-api-key", "anthropic-worker-id", "last-event-id" };
	for (size_t i = 0; i < sizeof once / sizeof once[0]; i++)
		if (hsrv_header_count(r, once[i]) > 1) {
			cai_error(c, 400, NULL, "the %s header is repeated: send it once", once[i]);
			free(c);
			return;
		}
	if (!beta_ok(hsrv_header(r, "anthropic-beta"))) {
		cai_error(c, 400, NULL, "anthropic-beta: this endpoint needs %s", CAPI_BETA);
		free(c);
		return;
	}
	who(c);
	/* A stopped item's token may still stop it: the answer is the 409 a worker exiting with "stop {force:true}"
	 * expects and ignores, where a 401 would read as a bad key. */
	if (c->stale_token && rt->fn == cai_work_stop)
		c->cred = CAI_SESSION;
	/* The holder that lost its item to a re-offer learns it from its next beat as the protocol says, a 412 (the
	 * SDK and postern worker then release without a stop); the beat changes nothing. Every other call is 401. */
	if (c->superseded && rt->fn == cai_work_heartbeat && c->ncaps > 1 && !strcmp(c->token_work, c->caps[1]))
		c->cred = CAI_SESSION;
	if (c->cred == CAI_NONE) {
		bool sent = hsrv_header(r, "x-api-key") || hsrv_header(r, "authorization");
		cai_error(c, 401, NULL, "%s: %s takes %s",
			  c->stale_token ? "the sessions token of a stopped work item (a new item has its own)"
			  : c->superseded ? "the sessions token of a work item offered again since (its new holder has its own)"
			  : sent	 ? "invalid, unknown or revoked credential"
					 : "no credential",
			  rt->endpoint, creds_text(rt->creds));
	} else if (!(rt->creds & c->cred))
		cai_error(c, 401, NULL, "%s takes %s", rt->endpoint, creds_text(rt->creds));
	else if (a->draining && !strcmp(rt->endpoint, "work.poll"))
		cai_reply(c, 200, json_null());
	else
		rt->fn(c); /* a handler that keeps the request (long poll, stream) keeps a copy of c */
	free(c);
}

int capi_new(const capi_opts *o, capi **out, char *err, size_t errlen)
{
	capi *a;
	*out = NULL;
	if (!o->loop || !o->store)
		return err_set(err, errlen, -EINVAL, "capi: loop and store are required");
	if (!(a = calloc(1, sizeof *a)))
		return err_set(err, errlen, -ENOMEM, "out of memory");
	a->o = *o;
	if (!a->o.lease_ttl)
		a->o.lease_ttl = 90;
	if (!a->o.max_ttl)
		a->o.max_ttl = 3600;
	*out = a;
	return 0;
}

void capi_drain(capi *a)
{
	a->draining = true;
	cai_polls_end(a);
	cai_streams_end(a);
}

void capi_free(capi *a)
{
	if (!a)
		return;
	capi_drain(a);
	free(a);
}

unsigned capi_streams(const capi *a) { return a->nstreams; }
unsigned capi_polls(const capi *a) { return a->npolls; }
