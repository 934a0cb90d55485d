/* The admin commands of `postern control`: keys and a look at the store, opened from the config directly
 * (SQLite in WAL mode lets the running daemon and a command share the file). Output is JSON on stdout; a key
 * is printed once, at create, and never logged. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "control/control_int.h"
#include "control/ctl_api.h"
#include "control/ctl_store.h"

static const char *const cmds[] = { "env", "apikey", "key", "session", NULL };

bool cti_is_cli(int argc, char **argv)
{
	if (argc < 2)
		return false;
	for (size_t i = 0; cmds[i]; i++)
		if (!strcmp(argv[1], cmds[i]))
			return true;
	return false;
}

static int usage_err(const char *msg)
{
	fprintf(stderr, "postern control: %s (see postern control --help)\n", msg);
	return 2;
}

static void print_json(json_t *o)
{
	char *t = json_dumps(o, JSON_COMPACT);
	if (t)
		printf("%s\n", t);
	free(t);
}

static int open_store(const char *path, control_config *c, ctl_store **s)
{
	char err[512];
	if (control_config_load(path, c, err, sizeof err) < 0) {
		fprintf(stderr, "postern control: %s\n", err);
		return 1;
	}
	if (ctl_store_open(c->store, c->state_dir, c->redis_password, s, err, sizeof err) < 0) {
		fprintf(stderr, "postern control: %s\n", err);
		control_config_free(c);
		return 1;
	}
	return 0;
}

static int env_create(ctl_store *s, const char *name)
{
	char id[40], kid[40], key[96], now[40], err[512];
	uint8_t h[32];
	json_t *e;
	int rc;
	if (!*name || strlen(name) > 256)
		return usage_err("env create: NAME must be 1 to 256 bytes");
	if (ctl_new_id("env", id, sizeof id) < 0 || ctl_new_id("key", kid, sizeof kid) < 0 ||
	    capi_key_new("env", key, sizeof key, h) < 0) {
		fprintf(stderr, "postern control: no random bytes\n");
		return 1;
	}
	ctl_now(now, sizeof now);
	e = json_pack("{s:s,s:s,s:s,s:n,s:{s:s},s:{},s:s,s:s,s:n,s:s}", "id", id, "type", "environment", "name", name,
		      "description", "config", "type", "self_hosted", "metadata", "created_at", now, "updated_at", now,
		      "archived_at", "scope", "organization");
	rc = s->ops->env_put(s, id, e, err, sizeof err);
	json_decref(e);
	if (rc == 0)
		rc = s->ops->key_add(s, "env", kid, name, id, h, err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "postern control: env create: %s\n", err);
		OPENSSL_cleanse(key, sizeof key);
		return 1;
	}
	e = json_pack("{s:s,s:s,s:s,s:s}", "id", id, "name", name, "key", key, "key_id", kid);
	print_json(e);
	json_decref(e);
	OPENSSL_cleanse(key, sizeof key);
	return 0;
}

static int apikey_create(ctl_store *s, const char *name)
{
	char kid[40], key[96], err[512];
	uint8_t h[32];
	json_t *o;
	if (!*name || strlen(name) > 256)
		return usage_err("apikey create: NAME must be 1 to 256 bytes");
	if (ctl_new_id("key", kid, sizeof kid) < 0 || capi_key_new("api", key, sizeof key, h) < 0) {
		fprintf(stderr, "postern control: no random bytes\n");
		return 1;
	}
	if (s->ops->key_add(s, "api", kid, name, NULL, h, err, sizeof err) < 0) {
		fprintf(stderr, "postern control: apikey create: %s\n", err);
		return 1;
	}
	o = json_pack("{s:s,s:s,s:s}", "id", kid, "name", name, "key", key);
	print_json(o);
	json_decref(o);
	OPENSSL_cleanse(key, sizeof key);
	return 0;
}

/* Every page of a list, printed as one JSON array. */
static int list_all(ctl_store *s, bool sessions)
{
	char cursor[64] = "", err[512];
	json_t *all = json_array();
	int rc = 0;
	for (int pages = 0; pages < 100000; pages++) {
		ctl_page p = { 0 };
		rc = sessions ? s->ops->session_list(s, cursor, 1000, &p, err, sizeof err)
			      : s->ops->env_list(s, cursor, 1000, &p, err, sizeof err);
		if (rc < 0) {
			fprintf(stderr, "postern control: %s\n", err);
			break;
		}
		size_t i;
		json_t *o;
		json_array_foreach(p.data, i, o)
			if (!json_is_true(json_object_get(o, "deleted")))
				json_array_append(all, o);
		if (!ctl_page_next(&p, cursor, sizeof cursor))
			break;
	}
	if (rc == 0)
		print_json(all);
	json_decref(all);
	return rc < 0 ? 1 : 0;
}

static int session_events(ctl_store *s, const char *id)
{
	char err[512];
	uint64_t after = 0, last;
	json_t *all = json_array(), *o = NULL;
	int rc = s->ops->session_get(s, id, &o, err, sizeof err);
	json_decref(o);
	for (int pages = 0; rc == 0 && pages < 100000; pages++) {
		json_t *evs = NULL, *e;
		size_t i;
		if ((rc = s->ops->event_read(s, id, after, 1000, &evs, &last, err, sizeof err)) < 0)
			break;
		json_array_foreach(evs, i, e) {
			json_object_del(e, "_seq");
			json_array_append(all, e);
		}
		size_t got = json_array_size(evs);
		json_decref(evs);
		after = last;
		if (got < 1000)
			break;
	}
	if (rc < 0)
		fprintf(stderr, "postern control: session events: %s\n", err);
	else
		print_json(all);
	json_decref(all);
	return rc < 0 ? 1 : 0;
}

int cti_cli(int argc, char **argv)
{
	const char *path = NULL, *pos[3] = { NULL, NULL, NULL };
	int npos = 0, rc = 1;
	control_config c;
	ctl_store *s = NULL;
	char err[512];
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
			if (++i >= argc)
				return usage_err("-c needs a FILE");
			path = argv[i];
		} else if (argv[i][0] == '-')
			return usage_err("unknown option");
		else if (npos < 3)
			pos[npos++] = argv[i];
		else
			return usage_err("too many arguments");
	}
	if (!path)
		return usage_err("-c FILE (the control config) is required");
	if (npos < 2)
		return usage_err("missing the subcommand");
	bool env_create_c = !strcmp(pos[0], "env") && !strcmp(pos[1], "create");
	bool env_list_c = !strcmp(pos[0], "env") && !strcmp(pos[1], "list");
	bool api_c = !strcmp(pos[0], "apikey") && !strcmp(pos[1], "create");
	bool revoke_c = !strcmp(pos[0], "key") && !strcmp(pos[1], "revoke");
	bool sl = !strcmp(pos[0], "session") && !strcmp(pos[1], "list");
	bool se = !strcmp(pos[0], "session") && !strcmp(pos[1], "events");
	bool st = !strcmp(pos[0], "session") && !strcmp(pos[1], "terminate");
	if (!(env_create_c || env_list_c || api_c || revoke_c || sl || se || st))
		return usage_err("unknown subcommand");
	if ((env_create_c || api_c || revoke_c || se || st) && !pos[2])
		return usage_err(env_create_c || api_c ? "NAME is required" : "ID is required");
	if ((env_list_c || sl) && pos[2])
		return usage_err("too many arguments");
	if (open_store(path, &c, &s))
		return 1;
	if (env_create_c)
		rc = env_create(s, pos[2]);
	else if (api_c)
		rc = apikey_create(s, pos[2]);
	else if (env_list_c || sl)
		rc = list_all(s, sl);
	else if (se)
		rc = session_events(s, pos[2]);
	else if (revoke_c) {
		if (s->ops->key_revoke(s, pos[2], err, sizeof err) < 0)
			fprintf(stderr, "postern control: key revoke: %s\n", err);
		else {
			json_t *o = json_pack("{s:s,s:b}", "id", pos[2], "revoked", 1);
			print_json(o);
			json_decref(o);
			rc = 0;
		}
	} else if (st) {
		if (capi_session_end(s, NULL, pos[2], false, err, sizeof err) < 0)
			fprintf(stderr, "postern control: session terminate: %s\n", err);
		else {
			json_t *o = json_pack("{s:s,s:s}", "id", pos[2], "status", "terminated");
			print_json(o);
			json_decref(o);
			rc = 0;
		}
	}
	ctl_store_close(s);
	control_config_free(&c);
	return rc;
}
