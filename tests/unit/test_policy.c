/* guard/policy: first match wins, kinds, client globs, default and unpoliced kinds, config errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "guard/policy.h"

static int load(const char *yaml, pol **p, char *err, size_t errlen)
{
	char e[400];
	cfg_doc *d = cfg_load_string("gw.yaml", yaml, strlen(yaml), e, sizeof e);
	cfg_node *n;
	int rc;
	if (!d) {
		snprintf(err, errlen, "%s", e);
		return -EINVAL;
	}
	n = cfg_get(cfg_root(d), "policy");
	rc = pol_from_cfg(d, n, p);
	snprintf(err, errlen, "%s", cfg_error(d));
	cfg_free(d);
	return rc;
}

static const char *const issue_yaml = "policy:\n"
				      "  default: allow\n"
				      "  rules:\n"
				      "    - {match: {tool: \"write_*\"}, action: deny}\n"
				      "    - {match: {tool: \"move_file\", client: \"ops-*\"}, action: approve}\n"
				      "    - name: no-etc\n"
				      "      match: {resource: \"file:///etc/*\"}\n"
				      "      action: deny\n"
				      "    - {match: {client: \"intruder\"}, action: deny}\n";

static void test_issue_config(void **st)
{
	pol *p = NULL;
	pol_verdict v;
	char err[400];
	(void)st;
	assert_int_equal(load(issue_yaml, &p, err, sizeof err), 0);
	assert_int_equal(pol_rule_count(p), 4);
	assert_int_equal(pol_approval_timeout_ms(p), 300000);
	assert_int_equal(pol_eval(p, POL_TOOL, "write_file", "alice", &v), 0);
	assert_int_equal(v.action, POL_DENY);
	assert_int_equal(v.rule, 0);
	assert_int_equal(v.line, 4);
	assert_string_equal(v.name, "rules[0]");
	pol_eval(p, POL_TOOL, "move_file", "ops-bob", &v);
	assert_int_equal(v.action, POL_APPROVE);
	assert_int_equal(v.rule, 1);
	pol_eval(p, POL_TOOL, "move_file", "dev-bob", &v);
	assert_int_equal(v.action, POL_ALLOW);
	assert_int_equal(v.rule, POL_RULE_DEFAULT);
	assert_string_equal(v.name, "default");
	pol_eval(p, POL_TOOL, "move_file", NULL, &v); /* no identity: not ops-* */
	assert_int_equal(v.rule, POL_RULE_DEFAULT);
	pol_eval(p, POL_RESOURCE, "file:///etc/ssh/sshd_config", "x", &v); /* '*' crosses '/' */
	assert_int_equal(v.action, POL_DENY);
	assert_string_equal(v.name, "no-etc");
	assert_int_equal(v.line, 8);
	pol_eval(p, POL_RESOURCE, "file:///srv/a", "x", &v); /* named kind: the default decides */
	assert_int_equal(v.rule, POL_RULE_DEFAULT);
	pol_eval(p, POL_PROMPT, "write_x", "x", &v); /* a tool glob does not match a prompt */
	assert_int_equal(v.rule, POL_RULE_UNPOLICED);
	assert_int_equal(v.action, POL_ALLOW);
	pol_eval(p, POL_PROMPT, "p", "intruder", &v); /* a client-only rule matches every kind */
	assert_int_equal(v.action, POL_DENY);
	assert_int_equal(v.rule, 3);
	assert_int_equal(pol_visible(p, POL_TOOL, "write_x", "a"), 0);
	assert_int_equal(pol_visible(p, POL_TOOL, "move_file", "ops-1"), 1); /* approve is listed */
	assert_int_equal(strlen(pol_revision(p)), 16);
	pol_free(p);
}

static void test_default_deny_and_globs(void **st)
{
	pol *p, *q;
	pol_verdict v;
	char err[200], rev[17];
	pol_rule_spec r = { .kind = POL_TOOL, .target = "read_[a-z]?le", .action = POL_ALLOW };
	(void)st;
	assert_int_equal(pol_new(POL_DENY, &p), 0);
	assert_int_equal(pol_add(p, &r, err, sizeof err), 0);
	r = (pol_rule_spec){ .kind = POL_TOOL, .target = "lit\\*", .action = POL_APPROVE };
	assert_int_equal(pol_add(p, &r, err, sizeof err), 0);
	pol_eval(p, POL_TOOL, "read_file", "c", &v);
	assert_int_equal(v.action, POL_ALLOW);
	pol_eval(p, POL_TOOL, "Read_file", "c", &v); /* case-sensitive */
	assert_int_equal(v.action, POL_DENY);
	pol_eval(p, POL_TOOL, "lit*", "c", &v);
	assert_int_equal(v.action, POL_APPROVE);
	pol_eval(p, POL_TOOL, "litx", "c", &v);
	assert_int_equal(v.action, POL_DENY);
	pol_eval(p, POL_PROMPT, "any", "c", &v);
	assert_int_equal(v.action, POL_ALLOW); /* default deny covers tools; prompts are not named */
	r = (pol_rule_spec){ .kind = POL_TOOL, .target = "", .action = POL_DENY };
	assert_int_equal(pol_add(p, &r, err, sizeof err), -EINVAL);
	assert_string_equal(err, "tool glob must be 1..512 bytes");
	/* the revision changes with the rules */
	snprintf(rev, sizeof rev, "%s", pol_revision(p));
	assert_int_equal(pol_new(POL_DENY, &q), 0);
	assert_string_not_equal(rev, pol_revision(q));
	pol_free(q);
	pol_free(p);
}

/* URIs a server could resolve to another resource than their text says (the glob '*' matches any bytes). */
static void test_uri_check(void **st)
{
	static const char *const ok[] = { "vault:x", "file:///srv/a/b.txt", "docs:/pub/readme.v2..txt?q=../x",
					  "https://h/a%20b", "x", "file:///srv/.hidden", "urn:isbn:0451450523" };
	static const char *const bad[] = { "VAULT:x", "File:///srv", "file:///srv/../etc/passwd", "file:///srv/./a",
					   "docs:..", "file:///srv/..", "file:///srv/%2e%2e/etc", "file:///srv/..%2Fetc",
					   "file:///srv/..%5cetc", "docs:a\\b", "docs:a%00", "../x" };
	const char *why;
	(void)st;
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		why = NULL;
		assert_int_equal(pol_uri_check(ok[i], &why), 0);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why = NULL;
		assert_int_equal(pol_uri_check(bad[i], &why), -EINVAL);
		assert_non_null(why);
	}
}

static void test_config_errors(void **st)
{
	static const struct {
		const char *yaml, *want;
	} cases[] = {
		{ "policy:\n  default: maybe\n", "gw.yaml:2: default: must be allow, deny or approve, not \"maybe\"" },
		{ "policy:\n  defualt: deny\n", "gw.yaml:2: unknown key 'defualt' in policy" },
		{ "policy:\n  rules: {a: 1}\n", "gw.yaml:2: rules: must be a list" },
		{ "policy:\n  rules:\n    - deny\n", "gw.yaml:3: policy: rules[0]: must be a mapping" },
		{ "policy:\n  rules:\n    - {match: {tool: a}}\n", "gw.yaml:3: policy: rules[0]: no action" },
		{ "policy:\n  rules:\n    - {match: {tool: a}, action: allow}\n    - {action: deny}\n",
		  "gw.yaml:4: policy: rules[1]: no match" },
		{ "policy:\n  rules:\n    - {match: {tool: a}, action: block}\n",
		  "gw.yaml:3: action: must be allow, deny or approve, not \"block\"" },
		{ "policy:\n  rules:\n    - {match: {tool: a, prompt: b}, action: deny}\n",
		  "gw.yaml:3: prompt: a rule matches one of tool, prompt, resource" },
		{ "policy:\n  rules:\n    - {match: {tols: a}, action: deny}\n", "gw.yaml:3: unknown key 'tols' in match" },
		{ "policy:\n  rules:\n    - {match: {}, action: deny}\n", "gw.yaml:3: match: must name tool" },
		{ "policy:\n  rules:\n    - {match: {tool: \"\"}, action: deny}\n",
		  "gw.yaml:3: policy: rules[0]: tool glob must be 1..512 bytes" },
		{ "policy:\n  approval_timeout: 10ms\n", "gw.yaml:2: approval_timeout: must be between 1s and 24h" },
	};
	char err[400];
	pol *p;
	(void)st;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		p = (pol *)1;
		assert_int_equal(load(cases[i].yaml, &p, err, sizeof err), -EINVAL);
		assert_null(p);
		if (strncmp(err, cases[i].want, strlen(cases[i].want)))
			fail_msg("case %zu: got \"%s\", want prefix \"%s\"", i, err, cases[i].want);
	}
	assert_int_equal(load("policy:\n  approval_timeout: 2m\n  default: approve\n", &p, err, sizeof err), 0);
	assert_int_equal(pol_approval_timeout_ms(p), 120000);
	pol_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_issue_config),
		cmocka_unit_test(test_default_deny_and_globs),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_uri_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
