/* The Redis store's event logs (ctl_redis_int.h): a Stream per session whose entry ids are 0-<seq>, the
 * counter that numbers them, and the index of tool calls and their results. The append is one script, so a
 * batch is stored whole or not at all. The key layout is in docs/control.md, "Redis store". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_redis_int.h"
#include "core/err.h"

#define P CTL_REDIS_PREFIX

/* ---- event logs: postern:ev:<session> a Stream with entry ids 0-<seq>, postern:evseq:<session> the counter,
 * postern:tool:<session> a hash indexing tool calls (u:<use id> -> seq of the agent.tool_use or
 * agent.custom_tool_use, r:<id> / c:<id> -> seq of the first user.tool_result / user.custom_tool_result for it).
 * The script takes the batch's numbers from the counter and appends them in one go: all or none. */

#define CRE_EVENT_BATCH 1000 /* the API's cap of one POST */

static ctl_redis_script cre_append_lua = {
	.src = "if redis.call('EXISTS', KEYS[1]) == 0 then return {'ENOENT'} end\n"
	       "local n = #ARGV / 2\n"
	       /* a counter lost while its log stayed (an operator's DEL) starts after the log's last entry, so the
	        * XADDs below cannot fail half way */
	       "if redis.call('EXISTS', KEYS[3]) == 0 then\n"
	       "  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)\n"
	       "  if last[1] then redis.call('SET', KEYS[3], string.sub(last[1][1], 3)) end\n"
	       "end\n"
	       /* one result per call, in the step that appends: a result whose call is answered already (by
	        * another replica a moment ago) stores nothing and names the event */
	       "local seen = {}\n"
	       "for i = 1, n do\n"
	       "  local tag = ARGV[n + i]\n"
	       "  local k = string.sub(tag, 1, 2)\n"
	       "  if k == 'r:' or k == 'c:' then\n"
	       "    if seen[tag] or redis.call('HEXISTS', KEYS[4], tag) == 1 then return {'EEXIST', string.format('%d', i - 1)} end\n"
	       "    seen[tag] = true\n"
	       "  end\n"
	       "end\n"
	       "local seq = redis.call('INCRBY', KEYS[3], n) - n\n"
	       "for i = 1, n do\n"
	       "  local id = string.format('%d', seq + i)\n"
	       "  redis.call('XADD', KEYS[2], '0-' .. id, 'e', ARGV[i])\n"
	       "  local tag = ARGV[n + i]\n"
	       "  if tag ~= '' then redis.call('HSETNX', KEYS[4], tag, id) end\n"
	       "end\n"
	       "return {'OK', string.format('%d', seq + n)}\n"};

#define CRE_TAG_MAX 140 /* "u:" + an id of at most 128 bytes (the API's cap) */

/* The event's entry in the session's tool index ("" when it has none; an over-long id is left out: the API
 * never lets one through). */
static void cre_tool_tag(json_t *e, char tag[CRE_TAG_MAX])
{
	const char *t = json_string_value(json_object_get(e, "type")), *id = NULL, *k = NULL;
	tag[0] = 0;
	if (!t)
		return;
	if (!strcmp(t, "agent.tool_use") || !strcmp(t, "agent.custom_tool_use"))
		k = "u", id = json_string_value(json_object_get(e, "id"));
	else if (!strcmp(t, "user.tool_result"))
		k = "r", id = json_string_value(json_object_get(e, "tool_use_id"));
	else if (!strcmp(t, "user.custom_tool_result"))
		k = "c", id = json_string_value(json_object_get(e, "custom_tool_use_id"));
	if (k && id && strlen(id) <= 128)
		snprintf(tag, CRE_TAG_MAX, "%s:%s", k, id);
}

int ctl_redis_event_append(ctl_store *s, const char *session_id, json_t *events, uint64_t *seq_out, char *err,
			    size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char k1[256], k2[256], k3[256], k4[256], ts[40];
	redisReply *rep = NULL;
	size_t n = json_array_size(events);
	int rc = 0;
	if (!json_is_array(events) || n == 0)
		return err_set(err, errlen, -EINVAL, "events: expected a non-empty array");
	if (n > CRE_EVENT_BATCH)
		return err_set(err, errlen, -EINVAL, "events: %zu in one batch (at most %d)", n, CRE_EVENT_BATCH);
	for (size_t i = 0; i < n; i++) {
		if (!json_is_object(json_array_get(events, i)))
			return err_set(err, errlen, -EINVAL, "events[%zu]: expected an object", i);
	}
	const char **a = calloc(4 + 2 * n, sizeof *a);
	char **txt = calloc(n, sizeof *txt);
	char (*tags)[CRE_TAG_MAX] = calloc(n, sizeof *tags);
	if (!a || !txt || !tags) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	snprintf(k1, sizeof k1, P "sesn:%s", session_id);
	snprintf(k2, sizeof k2, P "ev:%s", session_id);
	snprintf(k3, sizeof k3, P "evseq:%s", session_id);
	snprintf(k4, sizeof k4, P "tool:%s", session_id);
	a[0] = k1, a[1] = k2, a[2] = k3, a[3] = k4;
	ctl_now(ts, sizeof ts);
	/* the ids and processed_at go into the caller's objects (the API answers with them) */
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(events, i);
		char id[40];
		rc = ctl_new_id("sevt", id, sizeof id);
		if (rc || json_object_set_new(e, "id", json_string(id)) ||
		    json_object_set_new(e, "processed_at", json_string(ts)) || !(txt[i] = json_dumps(e, JSON_COMPACT))) {
			rc = err_set(err, errlen, rc ? rc : -ENOMEM, "events[%zu]: out of memory or no random id", i);
			goto out;
		}
		a[4 + i] = txt[i];
		cre_tool_tag(e, tags[i]);
		a[4 + n + i] = tags[i];
	}
	rc = ctl_redis_eval(r, &cre_append_lua, 4, 4 + 2 * (int)n, a, NULL, &rep, err, errlen);
	if (rc)
		goto out;
	rc = ctl_redis_status(rep, session_id, err, errlen);
	if (rc == -ENOENT)
		rc = err_set(err, errlen, -ENOENT, "no session %s", session_id);
	if (rc == -EEXIST) {
		const char *ix = ctl_redis_str(rep, 1);
		size_t i = ix ? strtoul(ix, NULL, 10) : 0;
		rc = err_set(err, errlen, -EEXIST, "events[%zu].%s: %s is already answered", i,
			     i < n && tags[i][0] == 'c' ? "custom_tool_use_id" : "tool_use_id",
			     i < n ? tags[i] + 2 : "?");
	}
	if (!rc && seq_out)
		*seq_out = strtoull(ctl_redis_str(rep, 1) ? ctl_redis_str(rep, 1) : "0", NULL, 10);
out:
	for (size_t i = 0; txt && i < n; i++)
		free(txt[i]);
	free(txt);
	free(tags);
	free(a);
	if (rep)
		freeReplyObject(rep);
	return rc;
}

int ctl_redis_event_read(ctl_store *s, const char *session_id, uint64_t after_seq, unsigned limit,
			  json_t **events, uint64_t *last_seq, char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char k[256], from[48], cnt[16];
	redisReply *rep = NULL;
	*events = NULL;
	*last_seq = after_seq;
	snprintf(k, sizeof k, P "ev:%s", session_id);
	snprintf(from, sizeof from, "(0-%llu", (unsigned long long)after_seq);
	snprintf(cnt, sizeof cnt, "%u", limit ? limit : 1);
	const char *a[] = {"XRANGE", k, from, "+", "COUNT", cnt};
	int rc = ctl_redis_cmd(r, 6, a, NULL, &rep, err, errlen);
	if (rc)
		return rc;
	json_t *arr = json_array();
	if (!arr) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if (rep->elements == 0) {
		/* an empty log or no session: tell them apart */
		json_t *o = NULL;
		rc = ctl_redis_get_json(r, P "sesn:", session_id, &o, err, errlen);
		json_decref(o);
		if (rc)
			goto out;
	}
	for (size_t i = 0; i < rep->elements; i++) {
		redisReply *e = rep->element[i];
		const char *id = ctl_redis_str(e, 0);
		redisReply *f = e->elements == 2 ? e->element[1] : NULL;
		json_t *o = NULL;
		if (!id || strncmp(id, "0-", 2) || !f || f->type != REDIS_REPLY_ARRAY || f->elements < 2 ||
		    !(o = json_loads(ctl_redis_str(f, 1) ? ctl_redis_str(f, 1) : "", 0, NULL))) {
			rc = err_set(err, errlen, -EIO, "redis %s: %s holds an entry that is not an event", r->addr, k);
			goto out;
		}
		*last_seq = strtoull(id + 2, NULL, 10);
		json_object_set_new(o, "_seq", json_integer((json_int_t)*last_seq));
		json_array_append_new(arr, o);
	}
	*events = arr;
	arr = NULL;
out:
	json_decref(arr);
	freeReplyObject(rep);
	if (rc)
		*last_seq = after_seq;
	return rc;
}

/* The event at sequence seq (NULL when the log has none there), without "_seq". */
static int cre_event_at(ctl_store *s, const char *session_id, const char *seq, json_t **out, char *err, size_t errlen)
{
	uint64_t n = seq ? strtoull(seq, NULL, 10) : 0, last;
	json_t *evs = NULL, *e;
	int rc;
	*out = NULL;
	if (!n)
		return 0;
	if ((rc = ctl_redis_event_read(s, session_id, n - 1, 1, &evs, &last, err, errlen)) < 0)
		return rc;
	e = json_array_get(evs, 0);
	if (e && (uint64_t)json_integer_value(json_object_get(e, "_seq")) == n) {
		json_object_del(e, "_seq");
		*out = json_incref(e);
	}
	json_decref(evs);
	return 0;
}

/* The stream's last entry id (XREVRANGE COUNT 1: O(log N)), not the counter: the log is what a reader gets. */
int ctl_redis_event_last(ctl_store *s, const char *session_id, uint64_t *seq, char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char k[256];
	redisReply *rep = NULL;
	int rc;
	*seq = 0;
	snprintf(k, sizeof k, P "ev:%s", session_id);
	const char *a[] = {"XREVRANGE", k, "+", "-", "COUNT", "1"};
	if ((rc = ctl_redis_cmd(r, 6, a, NULL, &rep, err, errlen)) < 0)
		return rc;
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1) {
		const char *id = ctl_redis_str(rep->element[0], 0);
		if (!id || strncmp(id, "0-", 2))
			rc = err_set(err, errlen, -EIO, "redis %s: %s holds an entry that is not an event", r->addr, k);
		else
			*seq = strtoull(id + 2, NULL, 10);
	}
	freeReplyObject(rep);
	return rc;
}

int ctl_redis_event_tool(ctl_store *s, const char *session_id, const char *use_id, bool custom, json_t **use,
			  json_t **result, char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char k[256], fu[CRE_TAG_MAX], fr[CRE_TAG_MAX];
	redisReply *rep = NULL;
	int rc;
	*use = *result = NULL;
	snprintf(k, sizeof k, P "tool:%s", session_id);
	snprintf(fu, sizeof fu, "u:%s", use_id);
	snprintf(fr, sizeof fr, "%s:%s", custom ? "c" : "r", use_id);
	const char *a[] = {"HMGET", k, fu, fr};
	if ((rc = ctl_redis_cmd(r, 4, a, NULL, &rep, err, errlen)) < 0)
		return rc;
	if ((rc = cre_event_at(s, session_id, ctl_redis_str(rep, 0), use, err, errlen)) == 0 &&
	    (rc = cre_event_at(s, session_id, ctl_redis_str(rep, 1), result, err, errlen)) < 0) {
		json_decref(*use);
		*use = NULL;
	}
	freeReplyObject(rep);
	return rc;
}
