/* Sessions: create (enqueues the session's work item in its environment), retrieve, update, list, delete
 * (a session.deleted event, its work stopped, then gone), archive (terminated: a session.status_terminated
 * event and its work asked to stop). There is no model here: the platform side (x-api-key) posts the agent's
 * events itself (ctl_api_events.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_api_int.h"

static json_t *agent_of(cai_ctx *c, json_t *ag)
{
	json_t *o;
	if (json_is_string(ag)) {
		if (json_string_length(ag) == 0 || json_string_length(ag) > 256) {
			cai_error(c, 400, NULL, "agent: an agent id of 1 to 256 bytes, or an agent object");
			return NULL;
		}
		return json_pack("{s:s,s:O,s:O,s:i,s:n,s:n,s:n,s:[],s:[],s:[],s:n,s:n}", "type", "agent", "id", ag, "name",
				 ag, "version", 1, "description", "system", "model", "tools", "skills", "mcp_servers",
				 "multiagent", "execution_identity");
	}
	if (!json_is_object(ag)) {
		cai_error(c, 400, NULL, "agent: required, an agent id or an agent object");
		return NULL;
	}
	o = json_deep_copy(ag);
	const char *keys[] = { "tools", "skills", "mcp_servers" };
	for (size_t i = 0; i < 3; i++) {
		json_t *v = json_object_get(o, keys[i]);
		if (!v)
			json_object_set_new(o, keys[i], json_array());
		else if (!json_is_array(v)) {
			json_decref(o);
			cai_error(c, 400, NULL, "agent.%s: must be an array", keys[i]);
			return NULL;
		}
	}
	json_object_set_new(o, "type", json_string("agent"));
	if (!json_object_get(o, "id")) {
		char id[40];
		ctl_new_id("agent", id, sizeof id);
		json_object_set_new(o, "id", json_string(id));
	}
	return o;
}

json_t *cai_session_get(cai_ctx *c, unsigned creds)
{
	ctl_store *s = c->a->o.store;
	json_t *o = NULL;
	char err[256];
	int rc = s->ops->session_get(s, c->caps[0], &o, err, sizeof err);
	if (rc < 0) {
		cai_store_error(c, rc, err);
		return NULL;
	}
	if (!cai_may_session(c, o, creds)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

void cai_sess_create(cai_ctx *c)
{
	ctl_store *s = c->a->o.store;
	json_t *b = cai_body(c), *env = NULL, *ag = NULL, *o = NULL, *v, *init, *res;
	const char *env_id;
	char id[40], now[40], err[256];
	int rc;
	if (!b)
		return;
	env_id = json_string_value(json_object_get(b, "environment_id"));
	if (!env_id || !*env_id) {
		cai_error(c, 400, NULL, "environment_id: required string");
		goto out;
	}
	if ((rc = s->ops->env_get(s, env_id, &env, err, sizeof err)) < 0 || json_is_true(json_object_get(env, "deleted"))) {
		cai_error(c, rc == -ENOENT || rc == 0 ? 400 : 503, NULL, "environment_id: %s",
			  rc == -ENOENT || rc == 0 ? "no such environment" : err);
		goto out;
	}
	if (!json_is_null(json_object_get(env, "archived_at"))) {
		cai_error(c, 400, json_pack("{s:s}", "error_code", "environment_archived"),
			  "environment %s is archived: it takes no new sessions", env_id);
		goto out;
	}
	if (!(ag = agent_of(c, json_object_get(b, "agent"))))
		goto out;
	if ((v = json_object_get(b, "metadata")) && !cai_metadata_ok(c, v, false, "metadata"))
		goto out;
	if ((v = json_object_get(b, "title")) && !json_is_null(v) && (!json_is_string(v) || json_string_length(v) > 512)) {
		cai_error(c, 400, NULL, "title: must be a string of at most 512 bytes or null");
		goto out;
	}
	if ((v = json_object_get(b, "resources")) && (!json_is_array(v) || json_array_size(v) > 100)) {
		cai_error(c, 400, NULL, "resources: must be an array of at most 100 resources");
		goto out;
	}
	init = json_object_get(b, "initial_events");
	if (init && (!json_is_array(init) || json_array_size(init) > 100)) {
		cai_error(c, 400, NULL, "initial_events: must be an array of at most 100 events");
		goto out;
	}
	ctl_new_id("sesn", id, sizeof id);
	ctl_now(now, sizeof now);
	/* usage and vault_ids: required fields of the SDK's BetaManagedAgentsSession type. */
	/* "o" steals: a borrowed metadata/resources gets its own reference, a missing one a fresh empty value. */
	v = json_object_get(b, "metadata");
	res = json_object_get(b, "resources");
	o = json_pack("{s:s,s:s,s:O,s:s,s:o,s:o,s:s,s:O?,s:s,s:s,s:n,s:n,s:[],s:{},s:{},s:[]}", "id", id, "type", "session",
		      "agent", ag, "environment_id", env_id, "metadata", v ? json_incref(v) : json_object(), "resources",
		      res ? json_incref(res) : json_array(), "status", "idle", "title", json_object_get(b, "title"),
		      "created_at", now, "updated_at", now, "archived_at", "budget", "outcome_evaluations", "stats", "usage",
		      "vault_ids");
	if (!json_object_get(o, "title"))
		json_object_set_new(o, "title", json_null());
	if ((rc = s->ops->session_put(s, id, o, err, sizeof err)) < 0) {
		cai_store_error(c, rc, err);
		goto out;
	}
	if (init && json_array_size(init)) {
		/* The same path as a POST of these events by the platform: validated, appended, status set. */
		json_t *copy = json_deep_copy(init);
		char why[512];
		rc = cai_post_events(c->a, id, copy, CAI_API, &o, why, sizeof why);
		json_decref(copy);
		if (rc < 0) {
			char e2[128];
			s->ops->session_delete(s, id, e2, sizeof e2);
			cai_error(c, rc == -EINVAL ? 400 : 503, NULL, "initial_events%s", why);
			goto out;
		}
	}
	/* initial user input enqueued the session's work item already */
	if ((rc = cai_live_work(s, env_id, id, NULL, NULL, err, sizeof err)) < 0 ||
	    (rc == 0 && (rc = cai_enqueue_session(c->a, env_id, id, err, sizeof err)) < 0)) {
		cai_store_error(c, rc, err);
		goto out;
	}
	cai_reply(c, 200, json_incref(o));
out:
	json_decref(o);
	json_decref(ag);
	json_decref(env);
	json_decref(b);
}

void cai_sess_retrieve(cai_ctx *c)
{
	json_t *o = cai_session_get(c, CAI_API | CAI_ENV | CAI_SESSION);
	if (o)
		cai_reply(c, 200, o);
}

void cai_sess_update(cai_ctx *c)
{
	json_t *b = cai_body(c), *o = NULL, *v;
	char now[40];
	if (!b || !(o = cai_session_get(c, CAI_API)))
		goto out;
	if ((v = json_object_get(b, "title"))) {
		if (!json_is_null(v) && (!json_is_string(v) || json_string_length(v) > 512)) {
			cai_error(c, 400, NULL, "title: must be a string of at most 512 bytes or null");
			goto out;
		}
		json_object_set(o, "title", v);
	}
	if ((v = json_object_get(b, "metadata")) && !json_is_null(v)) {
		if (!cai_metadata_ok(c, v, true, "metadata"))
			goto out;
		ctl_merge_patch(json_object_get(o, "metadata"), v);
	}
	json_object_set_new(o, "updated_at", json_string(ctl_now(now, sizeof now)));
	cai_save_reply(c, true, c->caps[0], o);
out:
	json_decref(o);
	json_decref(b);
}

void cai_sess_list(cai_ctx *c)
{
	ctl_store *s = c->a->o.store;
	ctl_page p = { 0 };
	char page[64], err[256], arch[8];
	unsigned limit;
	bool include_archived;
	size_t i;
	json_t *o;
	int rc;
	if (cai_page_params(c, 20, 1000, &limit, page, sizeof page) < 0)
		return;
	include_archived = hsrv_query_get(hsrv_query(c->r), "include_archived", arch, sizeof arch) > 0 && !strcmp(arch, "true");
	if ((rc = s->ops->session_list(s, page, limit, &p, err, sizeof err)) < 0) {
		cai_store_error(c, rc, err);
		return;
	}
	if (!include_archived)
		json_array_foreach(p.data, i, o) {
			if (!json_is_null(json_object_get(o, "archived_at"))) {
				json_array_remove(p.data, i);
				i--;
			}
		}
	cai_reply(c, 200, cai_page_json(&p, true));
}

static void end(cai_ctx *c, bool del)
{
	json_t *o = cai_session_get(c, CAI_API);
	char err[256];
	int rc;
	if (!o)
		return;
	json_decref(o);
	if ((rc = capi_session_end(c->a->o.store, c->a, c->caps[0], del, err, sizeof err)) < 0)
		cai_store_error(c, rc, err);
	else if (del)
		cai_reply(c, 200, json_pack("{s:s,s:s}", "id", c->caps[0], "type", "session_deleted"));
	else if ((o = cai_session_get(c, CAI_API)))
		cai_reply(c, 200, o);
}

void cai_sess_delete(cai_ctx *c) { end(c, true); }
void cai_sess_archive(cai_ctx *c) { end(c, false); }

static int stop_one(ctl_store *s, const char *env_id, const char *work_id, void *ud)
{
	char err[128];
	return s->ops->work_stop(s, env_id, work_id, *(bool *)ud, err, sizeof err); /* -EALREADY from a race is fine */
}

int capi_session_end(ctl_store *s, capi *a, const char *session_id, bool del, char *err, size_t errlen)
{
	json_t *o = NULL, *ev;
	char now[40];
	const char *env;
	int rc;
	if ((rc = s->ops->session_get(s, session_id, &o, err, errlen)) < 0)
		return rc;
	env = json_string_value(json_object_get(o, "environment_id"));
	ctl_now(now, sizeof now);
	if (!del && !strcmp(json_string_value(json_object_get(o, "status")) ?: "", "terminated")) {
		json_decref(o);
		return 0;
	}
	ev = json_pack("[{s:s}]", "type", del ? "session.deleted" : "session.status_terminated");
	rc = s->ops->event_append(s, session_id, ev, NULL, err, errlen);
	json_decref(ev);
	if (rc < 0)
		goto out;
	if (a)
		cai_wake_streams(a, session_id);
	if (env && (rc = cai_live_work(s, env, session_id, stop_one, &del, err, errlen)) < 0)
		goto out;
	if (del)
		rc = s->ops->session_delete(s, session_id, err, errlen);
	else {
		json_object_set_new(o, "status", json_string("terminated"));
		json_object_set_new(o, "archived_at", json_string(now));
		json_object_set_new(o, "updated_at", json_string(now));
		rc = s->ops->session_put(s, session_id, o, err, errlen);
	}
	if (a && del)
		cai_wake_streams(a, session_id);
out:
	json_decref(o);
	return rc;
}
