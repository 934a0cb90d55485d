/* gateway/boundary: the model read from YAML, the findings, errors with file:line, and output that stays
 * well-formed for hostile names (Mermaid ids and labels). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/boundary.h"

static char path[64];

static bnd_model *load(const char *yaml, char *err, size_t errlen)
{
	FILE *f;
	snprintf(path, sizeof path, "/tmp/test_boundary_%d.yaml", (int)getpid());
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(yaml, f);
	fclose(f);
	bnd_model *m = bnd_load(path, err, errlen);
	unlink(path);
	return m;
}

static bool has_finding(const bnd_model *m, bnd_severity want, const char *key, const char *text)
{
	bnd_severity sev;
	const char *k, *t;
	for (size_t i = 0; bnd_finding(m, i, &sev, &k, &t) == 0; i++)
		if (sev == want && !strcmp(k, key) && strstr(t, text))
			return true;
	return false;
}

static char *render(const bnd_model *m, bool mermaid)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(mermaid ? bnd_write_mermaid(m, f) : bnd_write_text(m, f), 0);
	fclose(f);
	return buf;
}

static void test_findings(void **state)
{
	char err[512];
	bnd_model *m = load("edges: [\"e:1\"]\ntunnel_domain: t.x\n"
			    "routes:\n  a: http://10.0.0.1:80\n  b:\n    stdio: [\"/bin/cat\"]\n"
			    "    policy: {default: deny}\n"
			    "audit: {file: /tmp/a.jsonl, syslog: \"tcp://s:514\"}\n",
			    err, sizeof err);
	(void)state;
	assert_non_null(m);
	assert_true(has_finding(m, BND_MEDIUM, "routes.a", "auth passthrough and no policy"));
	assert_true(has_finding(m, BND_LOW, "routes.a", "plain http"));
	assert_false(has_finding(m, BND_HIGH, "routes.b", "no policy"));
	assert_true(has_finding(m, BND_HIGH, "audit.syslog", "plaintext over tcp"));
	assert_true(has_finding(m, BND_MEDIUM, "audit.log_arguments", "redact_keys is not set"));
	assert_int_equal(bnd_finding_count(m), 4);
	bnd_severity s;
	const char *k, *t;
	assert_int_equal(bnd_finding(m, 4, &s, &k, &t), -ENOENT);
	bnd_free(m);
}

static void test_errors(void **state)
{
	char err[512];
	(void)state;
	assert_null(load("routes:\n  a:\n    url: http://x:1\n    auth: {bearer: {}}\n", err, sizeof err));
	assert_non_null(strstr(err, ":4: bearer: needs tokens_file"));
	assert_null(load("routes:\n  a:\n    url: http://x:1\n    auth: {bearer: {tokens_file: f}, jwt: {}}\n", err, sizeof err));
	assert_non_null(strstr(err, "jwt: a route has one auth"));
	assert_null(load("routes:\n  a:\n    sandbox: [1]\n", err, sizeof err));
	assert_non_null(strstr(err, ":3: sandbox: expects a mapping"));
	assert_null(load("- a\n- b\n", err, sizeof err));
	assert_non_null(strstr(err, ":1: the file is not a mapping"));
	assert_null(load("routes: {}\n", err, sizeof err));
	assert_non_null(strstr(err, "routes: is empty"));
}

static void test_hostile_names(void **state)
{
	char err[512];
	bnd_model *m = load("listen_addr: 127.0.0.1:8443\n"
			    "routes:\n  \"x\\\"] --> evil[\\\"\": http://10.0.0.1:80\n  \"a-b.c\": http://10.0.0.2:80\n",
			    err, sizeof err);
	char *mm, *tx;
	(void)state;
	assert_non_null(m);
	mm = render(m, true);
	/* ids are sanitized and numbered; the quote in the label is an entity */
	assert_non_null(strstr(mm, "route0_x_______evil__["));
	assert_non_null(strstr(mm, "upstream x#quot;] --#gt; evil[#quot;: http://10.0.0.1:80"));
	assert_non_null(strstr(mm, "route1_a_b_c["));
	assert_null(strstr(mm, "--> evil"));
	assert_non_null(strstr(mm, "clients -- \"TLS, direct\" --> gateway"));
	tx = render(m, false);
	assert_non_null(strstr(tx, "0 edges, a local listener"));
	assert_non_null(strstr(tx, "== local listener 127.0.0.1:8443"));
	free(mm);
	free(tx);
	bnd_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_findings),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_hostile_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
