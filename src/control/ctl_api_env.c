/* Environments: create, retrieve, update, list, delete, archive (the SDK's EnvironmentsResource). Only
 * self_hosted environments: this control plane runs no cloud sandboxes. A deleted environment stays in the
 * store as a tombstone ({"id","deleted":true}: the store seam has no delete for environments), answered 404. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "control/ctl_api_int.h"

static bool tombstone(json_t *e) { return json_is_true(json_object_get(e, "deleted")); }

/* The environment of caps[0] for an API-key caller, or an answered error and NULL. */
static json_t *get_env(cai_ctx *c)
{
	ctl_store *s = c->a->o.store;
	char err[256];
	json_t *e = NULL;
	int rc = s->ops->env_get(s, c->caps[0], &e, err, sizeof err);
	if (rc < 0) {
		cai_store_error(c, rc, err);
		return NULL;
	}
	if (tombstone(e)) {
		json_decref(e);
		cai_error(c, 404, json_pack("{s:s}", "error_code", "environment_not_found"), "no environment %s",
			  c->caps[0]);
		return NULL;
	}
	return e;
}

static bool config_ok(cai_ctx *c, json_t *cfg)
{
	const char *t;
	if (!cfg || json_is_null(cfg))
		return true;
	t = json_string_value(json_object_get(cfg, "type"));
	if (!json_is_object(cfg) || !t) {
		cai_error(c, 400, NULL, "config: must be an object with a type (\"self_hosted\")");
		return false;
	}
	if (strcmp(t, "self_hosted")) {
		cai_error(c, 400, NULL, "config.type: \"%s\" is not served here: this control plane runs self_hosted "
			  "environments only", t);
		return false;
	}
	return true;
}

static bool str_field(cai_ctx *c, json_t *body, const char *k, size_t max, bool nullable, bool required)
{
	json_t *v = json_object_get(body, k);
	if (!v) {
		if (required)
			cai_error(c, 400, NULL, "%s: required", k);
		return !required;
	}
	if (json_is_null(v) && nullable)
		return true;
	if (!json_is_string(v) || json_string_length(v) > max || (required && json_string_length(v) == 0)) {
		cai_error(c, 400, NULL, "%s: must be a string of %s%zu bytes%s", k, required ? "1 to " : "at most ", max,
			  nullable ? " or null" : "");
		return false;
	}
	return true;
}

static bool scope_ok(cai_ctx *c, json_t *body)
{
	json_t *v = json_object_get(body, "scope");
	const char *s = json_string_value(v);
	if (!v || json_is_null(v) || (s && (!strcmp(s, "organization") || !strcmp(s, "account"))))
		return true;
	cai_error(c, 400, NULL, "scope: must be \"organization\", \"account\" or null");
	return false;
}

void cai_env_create(cai_ctx *c)
{
	json_t *b = cai_body(c), *e = NULL, *md;
	char id[40], now[40];
	const char *scope;
	int rc;
	if (!b)
		return;
	if (!str_field(c, b, "name", 256, false, true) || !str_field(c, b, "description", 2048, true, false) ||
	    !config_ok(c, json_object_get(b, "config")) || !scope_ok(c, b))
		goto out;
	md = json_object_get(b, "metadata");
	if (md && !cai_metadata_ok(c, md, false, "metadata"))
		goto out;
	if ((rc = ctl_new_id("env", id, sizeof id)) < 0) {
		cai_store_error(c, -EIO, "no random bytes for an id");
		goto out;
	}
	ctl_now(now, sizeof now);
	scope = json_string_value(json_object_get(b, "scope"));
	e = json_pack("{s:s,s:s,s:O,s:O?,s:{s:s},s:O,s:s,s:s,s:n,s:s}", "id", id, "type", "environment", "name",
		      json_object_get(b, "name"), "description", json_object_get(b, "description"), "config", "type",
		      "self_hosted", "metadata", md ? md : json_object(), "created_at", now, "updated_at", now,
		      "archived_at", "scope", scope ? scope : "organization");
	cai_save_reply(c, false, id, e);
out:
	json_decref(e);
	json_decref(b);
}

void cai_env_retrieve(cai_ctx *c)
{
	json_t *e = get_env(c);
	if (e)
		cai_reply(c, 200, e);
}

void cai_env_update(cai_ctx *c)
{
	json_t *b = cai_body(c), *e = NULL, *v, *md;
	char now[40];
	if (!b || !(e = get_env(c)))
		goto out;
	if (!json_is_null(json_object_get(e, "archived_at"))) {
		cai_error(c, 400, json_pack("{s:s}", "error_code", "environment_archived"),
			  "environment %s is archived: it cannot be changed", c->caps[0]);
		goto out;
	}
	if (!str_field(c, b, "description", 2048, true, false) || !config_ok(c, json_object_get(b, "config")) ||
	    !scope_ok(c, b))
		goto out;
	if ((v = json_object_get(b, "name")) && !json_is_null(v)) {
		if (!str_field(c, b, "name", 256, false, true))
			goto out;
		json_object_set(e, "name", v);
	}
	if ((v = json_object_get(b, "description")))
		json_object_set(e, "description", v);
	if ((v = json_object_get(b, "scope")) && !json_is_null(v))
		json_object_set(e, "scope", v);
	if ((md = json_object_get(b, "metadata")) && !json_is_null(md)) {
		if (!cai_metadata_ok(c, md, true, "metadata"))
			goto out;
		ctl_merge_patch(json_object_get(e, "metadata"), md);
	}
	json_object_set_new(e, "updated_at", json_string(ctl_now(now, sizeof now)));
	cai_save_reply(c, false, c->caps[0], e);
out:
	json_decref(e);
	json_decref(b);
}

void cai_env_list(cai_ctx *c)
{
	ctl_store *s = c->a->o.store;
	ctl_page p = { 0 };
	char page[64], err[256], arch[8];
	unsigned limit;
	bool include_archived;
	int rc;
	size_t i;
	json_t *e;
	if (cai_page_params(c, 20, 100, &limit, page, sizeof page) < 0)
		return;
	include_archived = hsrv_query_get(hsrv_query(c->r), "include_archived", arch, sizeof arch) > 0 && !strcmp(arch, "true");
	if ((rc = s->ops->env_list(s, page, limit, &p, err, sizeof err)) < 0) {
		cai_store_error(c, rc, err);
		return;
	}
	json_array_foreach(p.data, i, e) {
		if (tombstone(e) || (!include_archived && !json_is_null(json_object_get(e, "archived_at")))) {
			json_array_remove(p.data, i);
			i--;
		}
	}
	cai_reply(c, 200, cai_page_json(&p, false));
}

void cai_env_delete(cai_ctx *c)
{
	ctl_store *s = c->a->o.store;
	json_t *e = get_env(c), *t;
	char err[256];
	int rc;
	if (!e)
		return;
	json_decref(e);
	t = json_pack("{s:s,s:b}", "id", c->caps[0], "deleted", 1);
	if ((rc = s->ops->env_put(s, c->caps[0], t, err, sizeof err)) < 0)
		cai_store_error(c, rc, err);
	else
		cai_reply(c, 200, json_pack("{s:s,s:s}", "id", c->caps[0], "type", "environment_deleted"));
	json_decref(t);
}

void cai_env_archive(cai_ctx *c)
{
	json_t *e = get_env(c);
	char now[40];
	if (!e)
		return;
	if (json_is_null(json_object_get(e, "archived_at"))) {
		ctl_now(now, sizeof now);
		json_object_set_new(e, "archived_at", json_string(now));
		json_object_set_new(e, "updated_at", json_string(now));
	}
	cai_save_reply(c, false, c->caps[0], e);
	json_decref(e);
}
