#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "agent/aplan.h"

static void test_load_steps(void **st)
{
	(void)st;
	char err[512];
	aplan *p = NULL;
	const char *y = "steps:\n"
			"  - {name: a, mcp: records, tool: read_text_file, args: {path: /r/x.csv, n: 3}}\n"
			"  - tool: bash\n"
			"    args: {command: ls}\n"
			"  - {name: d, mcp: r, tool: write_file, expect: error}\n";
	assert_int_equal(aplan_load_string("plan.yaml", y, &p, err, sizeof err), 0);
	assert_int_equal(p->n, 3);
	assert_string_equal(p->steps[0].name, "a");
	assert_string_equal(p->steps[0].mcp, "records");
	assert_string_equal(json_string_value(json_object_get(p->steps[0].args, "path")), "/r/x.csv");
	assert_int_equal(json_integer_value(json_object_get(p->steps[0].args, "n")), 3);
	assert_string_equal(p->steps[1].name, "step2");
	assert_null(p->steps[1].mcp);
	assert_false(p->steps[1].expect_error);
	assert_true(p->steps[2].expect_error);
	assert_int_equal(json_object_size(p->steps[2].args), 0);
	aplan_free(p);
}

static void test_errors_name_line_and_key(void **st)
{
	(void)st;
	char err[512];
	aplan *p = NULL;
	static const struct { const char *y, *want; } cases[] = {
		{ "steps:\n  - {tool: bash, bogus: 1}\n", "plan.yaml:2" },
		{ "steps:\n  - {args: {a: 1}}\n", "tool: required" },
		{ "steps: []\n", "non-empty list" },
		{ "nope: 1\n", "nope" },
		{ "steps:\n  - {name: a, tool: x}\n  - {name: a, tool: y}\n", "a second step of that name" },
		{ "steps:\n  - {tool: x, expect: maybe}\n", "expect" },
		{ "steps:\n  - {tool: x, args: [1]}\n", "args" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		err[0] = 0;
		assert_true(aplan_load_string("plan.yaml", cases[i].y, &p, err, sizeof err) < 0);
		if (!strstr(err, cases[i].want))
			fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].want);
	}
}

static void test_resolve(void **st)
{
	(void)st;
	char err[256];
	json_t *out = json_pack("{s:s,s:s}", "read", "a,b\n1,2\n", "empty", "");
	json_t *args = json_pack("{s:s,s:[s,i],s:s,s:s}", "content", "${read.output}", "list", "x ${empty.output}y", 7, "lone",
				 "cost ${5", "two", "${read.output}${read.output}");
	json_t *r = aplan_resolve(args, out, err, sizeof err);
	assert_non_null(r);
	assert_string_equal(json_string_value(json_object_get(r, "content")), "a,b\n1,2\n");
	assert_string_equal(json_string_value(json_array_get(json_object_get(r, "list"), 0)), "x y");
	assert_int_equal(json_integer_value(json_array_get(json_object_get(r, "list"), 1)), 7);
	assert_string_equal(json_string_value(json_object_get(r, "lone")), "cost ${5");
	assert_string_equal(json_string_value(json_object_get(r, "two")), "a,b\n1,2\na,b\n1,2\n");
	json_decref(r);
	json_t *bad = json_pack("{s:s}", "x", "${nope.output}");
	assert_null(aplan_resolve(bad, out, err, sizeof err));
	assert_non_null(strstr(err, "no earlier step named nope"));
	json_decref(bad);
	json_decref(args);
	json_decref(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_steps),
		cmocka_unit_test(test_errors_name_line_and_key),
		cmocka_unit_test(test_resolve),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
