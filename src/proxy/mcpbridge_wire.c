/* The stdio bridge's 2026-07-28 rewrites (pure: JSON text in, JSON text out): a modern client's request for
 * a shared legacy child (bridge-unique id and progress token), the child's answers for the client (its id
 * and token back, resultType and caching hints added), and the server/discover result made from the
 * child's initialize result. */
#include "proxy/mcpbridge_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *load(const char *s, size_t n, char *why, size_t whylen)
{
	json_error_t e;
	json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, &e);
	if (!j)
		snprintf(why, whylen, "invalid JSON at byte %d: %s", e.position, e.text);
	else if (!json_is_object(j)) {
		snprintf(why, whylen, "message is not a JSON object");
		json_decref(j);
		j = NULL;
	}
	return j;
}

/* Compact text of j into *out; 0 or -ENOMEM. */
static int dump(const json_t *j, char **out)
{
	*out = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	return *out ? 0 : -ENOMEM;
}

static bool id_like(const json_t *v) { return json_is_string(v) || json_is_integer(v); }

int mbr_modern_to_child(const char *json, size_t n, long long bid, char **out, char **cid, char **ctoken,
			char *why, size_t whylen)
{
	json_t *j = load(json, n, why, whylen), *id, *params, *meta, *tok = NULL;
	int r = -EINVAL;

	*out = *cid = *ctoken = NULL;
	if (!j)
		return -EINVAL;
	id = json_object_get(j, "id");
	if (!id_like(id) || !json_is_string(json_object_get(j, "method"))) {
		snprintf(why, whylen, "not a request: it needs a method and an id (a string or an integer)");
		goto out;
	}
	params = json_object_get(j, "params");
	meta = json_is_object(params) ? json_object_get(params, "_meta") : NULL;
	if (json_is_object(meta) && (tok = json_object_get(meta, "progressToken")) && !id_like(tok)) {
		snprintf(why, whylen, "params._meta.progressToken must be a string or an integer");
		goto out;
	}
	r = -ENOMEM;
	if (dump(id, cid) < 0 || (tok && dump(tok, ctoken) < 0))
		goto out;
	if (json_object_set_new(j, "id", json_integer(bid)) < 0 ||
	    (tok && json_object_set_new(meta, "progressToken", json_integer(bid)) < 0))
		goto out;
	r = dump(j, out);
out:
	if (r < 0) {
		free(*cid);
		free(*ctoken);
		*cid = *ctoken = NULL;
	}
	json_decref(j);
	return r;
}

/* The methods whose modern results must carry caching hints (server/discover is the bridge's own). */
static bool cacheable(const char *m)
{
	static const char *const v[] = { "tools/list", "prompts/list", "resources/list", "resources/templates/list",
					 "resources/read" };
	for (size_t i = 0; m && i < sizeof v / sizeof v[0]; i++)
		if (!strcmp(m, v[i]))
			return true;
	return false;
}

/* Sets key to v (owned) when absent; 0 or -ENOMEM. */
static int set_missing(json_t *o, const char *key, json_t *v)
{
	if (json_object_get(o, key)) {
		json_decref(v);
		return 0;
	}
	return v && json_object_set_new(o, key, v) == 0 ? 0 : -ENOMEM;
}

/* JSON text of a value (an id or a token) as we stored it. */
static json_t *load_value(const char *s)
{
	return json_loads(s, JSON_DECODE_ANY, NULL);
}

int mbr_modern_from_child(const char *json, size_t n, const char *method, const char *cid, const char *ctoken,
			  char **out, int *code, char *why, size_t whylen)
{
	json_t *j = load(json, n, why, whylen), *res, *err, *meth, *params, *v;
	int r = -ENOMEM;

	*out = NULL;
	if (code)
		*code = 0;
	if (!j)
		return -EINVAL;
	res = json_object_get(j, "result");
	err = json_object_get(j, "error");
	meth = json_object_get(j, "method");
	if (json_object_get(j, "id") && !meth && (res || err)) {
		if (!cid || !(v = load_value(cid)) || json_object_set_new(j, "id", v) < 0)
			goto out;
		if (json_is_object(res)) {
			if (set_missing(res, "resultType", json_string("complete")) < 0)
				goto out;
			if (cacheable(method) && (set_missing(res, "ttlMs", json_integer(0)) < 0 ||
						  set_missing(res, "cacheScope", json_string("private")) < 0))
				goto out;
		}
		if (code && json_is_object(err) && json_is_integer(json_object_get(err, "code")))
			*code = (int)json_integer_value(json_object_get(err, "code"));
	} else if (json_is_string(meth) && !strcmp(json_string_value(meth), "notifications/progress") && ctoken &&
		   json_is_object(params = json_object_get(j, "params"))) {
		if (!(v = load_value(ctoken)) || json_object_set_new(params, "progressToken", v) < 0)
			goto out;
	}
	r = dump(j, out);
out:
	json_decref(j);
	return r;
}

/* What a modern client would read as a promise the bridge cannot keep: list-changed and resource-updated
 * notifications come only on a subscriptions/listen stream, which the bridge does not offer; legacy tasks
 * are not the 2026-07-28 tasks extension. */
static void strip_caps(json_t *caps)
{
	static const char *const lists[] = { "tools", "prompts", "resources" };
	for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
		json_t *c = json_object_get(caps, lists[i]);
		if (json_is_object(c)) {
			json_object_del(c, "listChanged");
			json_object_del(c, "subscribe");
		}
	}
	json_object_del(caps, "tasks");
}

int mbr_modern_discover(const char *init_result, size_t n, const char *cid, char **out, char *why, size_t whylen)
{
	json_t *init = load(init_result, n, why, whylen), *caps = NULL, *res = NULL, *msg = NULL, *id = NULL, *v;
	int r = -ENOMEM;

	*out = NULL;
	if (!init)
		return -EINVAL;
	v = json_object_get(init, "capabilities");
	caps = json_is_object(v) ? json_deep_copy(v) : json_object();
	res = json_pack("{s:s, s:[s]}", "resultType", "complete", "supportedVersions", MBR_MODERN_VERSION);
	if (!caps || !res || !(id = load_value(cid)))
		goto out;
	strip_caps(caps);
	if (json_object_set(res, "capabilities", caps) < 0)
		goto out;
	if (json_is_string(v = json_object_get(init, "instructions")) && json_object_set(res, "instructions", v) < 0)
		goto out;
	if (json_is_object(v = json_object_get(init, "serverInfo"))) {
		json_t *meta = json_object();
		if (!meta || json_object_set(meta, "io.modelcontextprotocol/serverInfo", v) < 0 ||
		    json_object_set_new(res, "_meta", meta) < 0) {
			json_decref(meta);
			goto out;
		}
	}
	if (json_object_set_new(res, "ttlMs", json_integer(MBR_DISCOVER_TTL_MS)) < 0 ||
	    json_object_set_new(res, "cacheScope", json_string("public")) < 0)
		goto out;
	msg = json_pack("{s:s, s:O, s:O}", "jsonrpc", "2.0", "id", id, "result", res);
	r = msg ? dump(msg, out) : -ENOMEM;
out:
	json_decref(msg);
	json_decref(id);
	json_decref(res);
	json_decref(caps);
	json_decref(init);
	return r;
}
