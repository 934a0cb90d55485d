/* `postern tunnel create|rotate|list|delete NAME -c edge.yaml`: provisioning on the edge's state_dir.
 * Results are JSON on stdout (the only place a token ever appears); errors are one line on stderr. */
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"
#include "tunnel/edge.h"
#include "tunnel/tokstore.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: postern tunnel create NAME -c edge.yaml\n"
		   "       postern tunnel rotate NAME -c edge.yaml [--grace 10m]\n"
		   "       postern tunnel list -c edge.yaml\n"
		   "       postern tunnel delete NAME -c edge.yaml\n\n"
		   "Tunnel records and tokens live in the edge's state_dir (SQLite). create and rotate print\n"
		   "{\"id\",\"name\",\"domain\",\"token\"} as JSON on stdout; the token is shown only then.\n"
		   "rotate issues a new token; older ones stay valid for --grace (default 10m, 0 ends them now).\n"
		   "Connections already registered are never dropped by a rotation.\n");
}

static json_t *tunnel_json(const tok_tunnel *t)
{
	return json_pack("{s:s,s:s,s:s,s:I,s:i}", "id", t->id, "name", t->name, "domain", t->domain, "created_ms",
			 (json_int_t)t->created_ms, "tokens", t->tokens);
}

static int print_json(json_t *o)
{
	char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	if (!s) {
		fprintf(stderr, "postern tunnel: out of memory\n");
		return 1;
	}
	printf("%s\n", s);
	fflush(stdout);
	OPENSSL_cleanse(s, strlen(s));
	free(s);
	return 0;
}

static int list_one(const tok_tunnel *t, void *ud)
{
	return json_array_append_new(ud, tunnel_json(t)) ? -ENOMEM : 0;
}

static int fail(const char *name, int r, tok_store *s)
{
	switch (r) {
	case -EINVAL:
		fprintf(stderr, "postern tunnel: '%s' is not a valid tunnel name (1-63 of A-Z a-z 0-9 . _ -)\n", name);
		break;
	case -EEXIST:
		fprintf(stderr, "postern tunnel: a tunnel named '%s' already exists\n", name);
		break;
	case -ENOENT:
		fprintf(stderr, "postern tunnel: no tunnel named '%s'\n", name);
		break;
	default:
		fprintf(stderr, "postern tunnel: %s\n", tok_errstr(s));
	}
	return 1;
}

int tunnel_main(int argc, char **argv)
{
	const char *verb = NULL, *name = NULL, *path = NULL, *grace_s = NULL;
	char err[512], token[TOK_TOKEN_MAX];
	int64_t grace = TOK_DEFAULT_GRACE_MS;
	edge_config cfg;
	tok_store *s = NULL;
	tok_tunnel t;
	json_t *o;
	int r, rc = 1;
	bool have_cfg = false;

	for (int i = 1; i < argc; i++) {
		if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
			path = argv[++i];
		} else if (!strcmp(argv[i], "--grace") && i + 1 < argc) {
			grace_s = argv[++i];
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "postern tunnel: unknown option '%s' (see postern tunnel --help)\n", argv[i]);
			return 2;
		} else if (!verb) {
			verb = argv[i];
		} else if (!name) {
			name = argv[i];
		} else {
			fprintf(stderr, "postern tunnel: unexpected argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!verb || (strcmp(verb, "create") && strcmp(verb, "rotate") && strcmp(verb, "list") && strcmp(verb, "delete"))) {
		fprintf(stderr, verb ? "postern tunnel: unknown action '%s'\n" : "postern tunnel: an action is required%s\n",
			verb ? verb : "");
		usage(stderr);
		return 2;
	}
	if (strcmp(verb, "list") && !name) {
		fprintf(stderr, "postern tunnel %s: NAME is required\n", verb);
		return 2;
	}
	if (!strcmp(verb, "list") && name) {
		fprintf(stderr, "postern tunnel list: unexpected argument '%s'\n", name);
		return 2;
	}
	if (grace_s && (strcmp(verb, "rotate") || cfg_parse_duration_ms(grace_s, &grace) < 0 || grace < 0)) {
		fprintf(stderr, strcmp(verb, "rotate") ? "postern tunnel: --grace only applies to rotate\n"
						       : "postern tunnel: --grace: '%s' is not a duration (e.g. 30s, 10m, 1h)\n",
			grace_s);
		return 2;
	}
	if (!path) {
		fprintf(stderr, "postern tunnel: -c edge.yaml is required\n");
		return 2;
	}
	if (edge_config_load(path, &cfg, err, sizeof err) < 0) {
		fprintf(stderr, "postern tunnel: %s\n", err);
		return 1;
	}
	have_cfg = true;
	if (tok_open(cfg.state_dir, cfg.domain, &s, err, sizeof err) < 0) {
		fprintf(stderr, "postern tunnel: %s\n", err);
		goto out;
	}
	if (!strcmp(verb, "list")) {
		json_t *a = json_array();
		if (!a || (r = tok_list(s, list_one, a)) != 0) {
			json_decref(a);
			rc = fail("", -EIO, s);
			goto out;
		}
		rc = print_json(a);
		json_decref(a);
		goto out;
	}
	if (!strcmp(verb, "delete")) {
		if ((r = tok_get(s, name, &t)) < 0 || (r = tok_delete(s, name)) < 0) {
			rc = fail(name, r, s);
			goto out;
		}
		o = json_pack("{s:s,s:s,s:s,s:b}", "id", t.id, "name", t.name, "domain", t.domain, "deleted", 1);
		rc = print_json(o);
		json_decref(o);
		goto out;
	}
	r = !strcmp(verb, "create") ? tok_create(s, name, &t, token) : tok_rotate(s, name, grace, &t, token);
	if (r < 0) {
		rc = fail(name, r, s);
		goto out;
	}
	o = json_pack("{s:s,s:s,s:s,s:s}", "id", t.id, "name", t.name, "domain", t.domain, "token", token);
	if (o && !strcmp(verb, "rotate"))
		json_object_set_new(o, "previous_tokens_expire_in_ms", json_integer((json_int_t)grace));
	rc = print_json(o);
	json_decref(o);
out:
	OPENSSL_cleanse(token, sizeof token);
	tok_close(s);
	if (have_cfg)
		edge_config_free(&cfg);
	return rc;
}
