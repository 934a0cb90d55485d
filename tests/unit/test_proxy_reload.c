/* The reload plan (px_reload_plan): which routes of a new config are added, unchanged or changed, which keep
 * their MCP bridge (route_same_process) and which their jwks_url auth; the texts it compares (cfg_node_text)
 * ignore layout and comments. The live swap itself is tested end to end (tests/e2e/reload.test.mjs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/cfg.h"
#include "proxy/proxy.h"
#include "proxy/route.h"

static px_config *load(const char *yaml, cfg_doc **doc)
{
	char err[300];
	px_config *c = NULL;
	cfg_doc *d = cfg_load_string("t.yaml", yaml, strlen(yaml), err, sizeof err);
	assert_non_null(d);
	if (px_config_load(d, cfg_root(d), &c) < 0)
		fail_msg("%s", cfg_error(d));
	*doc = d;
	return c;
}

#define TLS "tls: {cert_file: /x.pem, key_file: /x.key}\n"
#define JWT "auth: {jwt: {issuer: \"https://idp.example.com/\", jwks_url: \"http://127.0.0.1:8/k\"}}"

static const char *const OLD =
	TLS "routes:\n"
	"  web:\n"
	"    url: http://10.0.0.1:80   # the docs server\n"
	"    policy: {default: allow}\n"
	"  files: {stdio: [/bin/cat, -u], max_sessions: 4}\n"
	"  box: {sandbox: {workspace_root: /srv/ws}}\n"
	"  gone: http://10.0.0.2:80\n"
	"  idp:\n"
	"    url: http://10.0.0.3:80\n"
	"    " JWT "\n"
	"  idp2:\n"
	"    url: http://10.0.0.4:80\n"
	"    " JWT "\n";

/* Same routes in another layout, web's policy changed, files' policy added (same command), box's workspace
 * moved, gone removed, fresh added, idp unchanged, idp2's audit flag changed. */
static const char *const NEW =
	TLS "routes:\n"
	"  fresh: http://10.0.0.9:80\n"
	"  idp: {url: \"http://10.0.0.3:80\", " JWT "}\n"
	"  idp2: {url: \"http://10.0.0.4:80\", audit: false, " JWT "}\n"
	"  web: {url: http://10.0.0.1:80, policy: {default: deny}}\n"
	"  files: {stdio: [/bin/cat, -u], max_sessions: 4, policy: {default: allow}}\n"
	"  box: {sandbox: {workspace_root: /srv/ws2}}\n";

static const px_route_carry *find(const px_config *c, const px_route_carry *k, const char *name)
{
	for (size_t i = 0; i < c->routes.n; i++)
		if (!strcmp(c->routes.v[i].name, name))
			return &k[i];
	fail_msg("no route %s", name);
	return NULL;
}

static void test_plan(void **st)
{
	cfg_doc *d1, *d2;
	px_config *o = load(OLD, &d1), *n = load(NEW, &d2);
	px_route_carry k[8];
	const px_route_carry *r;
	size_t removed = 99;
	(void)st;
	assert_int_equal(n->routes.n, 6);
	px_reload_plan(o, n, k, &removed);
	/* gone and the changed web, files, box, idp2 */
	assert_int_equal(removed, 5);
	r = find(n, k, "fresh");
	assert_int_equal(r->old, -1);
	assert_false(r->same || r->keep_bridge || r->keep_auth);
	r = find(n, k, "web");
	assert_true(r->old >= 0 && !strcmp(o->routes.v[r->old].name, "web"));
	assert_false(r->same);
	assert_false(r->keep_bridge); /* an http route has none */
	r = find(n, k, "files");
	assert_false(r->same);
	assert_true(r->keep_bridge); /* a policy change alone keeps the sessions */
	r = find(n, k, "box");
	assert_false(r->same);
	assert_false(r->keep_bridge); /* another workspace_root is another bridge */
	r = find(n, k, "idp");
	assert_true(r->same); /* block and flow layouts, comments: the same YAML */
	assert_true(r->keep_auth);
	r = find(n, k, "idp2");
	assert_false(r->same);
	assert_false(r->keep_auth); /* a changed route gets a fresh auth and fetcher */
	/* against itself: everything is unchanged */
	px_reload_plan(n, n, k, &removed);
	assert_int_equal(removed, 0);
	for (size_t i = 0; i < n->routes.n; i++) {
		assert_int_equal(k[i].old, (long)i);
		assert_true(k[i].same);
	}
	px_config_free(o);
	px_config_free(n);
	cfg_free(d1);
	cfg_free(d2);
}

static void test_same_process(void **st)
{
	route a, b;
	char why[160];
	(void)st;
	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	assert_int_equal(route_parse_value("stdio:/bin/srv --x", &a, why, sizeof why), 0);
	assert_int_equal(route_parse_value("stdio:/bin/srv --x", &b, why, sizeof why), 0);
	assert_true(route_same_process(&a, &b));
	b.max_sessions = 3;
	assert_false(route_same_process(&a, &b));
	b.max_sessions = 0;
	b.idle_timeout_ms = 1000;
	assert_false(route_same_process(&a, &b));
	route_free_fields(&b);
	memset(&b, 0, sizeof b);
	assert_int_equal(route_parse_value("stdio:/bin/srv --x --y", &b, why, sizeof why), 0);
	assert_false(route_same_process(&a, &b)); /* one more argument */
	assert_false(route_same_process(&b, &a));
	route_free_fields(&b);
	memset(&b, 0, sizeof b);
	assert_int_equal(route_parse_value("http://h:80", &b, why, sizeof why), 0);
	assert_false(route_same_process(&a, &b));
	assert_false(route_same_process(&b, &b)); /* no bridge to keep */
	route_free_fields(&a);
	route_free_fields(&b);
}

static void test_node_text(void **st)
{
	cfg_doc *d1, *d2;
	char err[200], *a, *b;
	const char *y1 = "x:\n  k: 1   # one\n  l: [a, b]\ny: 2\nz:\n";
	const char *y2 = "{x: {k: 1, l: [a,\n b]}, y: 3}\n";
	(void)st;
	assert_non_null(d1 = cfg_load_string("1", y1, strlen(y1), err, sizeof err));
	assert_non_null(d2 = cfg_load_string("2", y2, strlen(y2), err, sizeof err));
	a = cfg_key_text(cfg_root(d1), "x");
	b = cfg_key_text(cfg_root(d2), "x");
	assert_non_null(a);
	assert_string_equal(a, b);
	free(a);
	free(b);
	a = cfg_key_text(cfg_root(d1), "y");
	b = cfg_key_text(cfg_root(d2), "y");
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	a = cfg_key_text(cfg_root(d1), "z"); /* present without a value */
	assert_string_equal(a, "null");
	free(a);
	assert_null(cfg_key_text(cfg_root(d2), "z"));
	cfg_free(d1);
	cfg_free(d2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan),
		cmocka_unit_test(test_same_process),
		cmocka_unit_test(test_node_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
