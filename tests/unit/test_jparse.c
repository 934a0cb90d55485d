/* guard/jparse: whatever it accepts, json_loadb (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) accepts as the
 * same tree; it declines what jansson refuses. Fixed cases, then generated texts and byte mutations of
 * them, compared with jansson's result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/jparse.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static unsigned rnd(unsigned n)
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return (unsigned)(rng % n);
}

/* Returns 1 when jp_parse took the text, 0 when it declined; fails when it took what jansson refused or
 * built another tree. */
static int same(const char *t, size_t n)
{
	json_t *a = NULL, *b = json_loadb(t, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
	int rc = jp_parse(t, n, 64, &a);
	if (rc == 0) {
		if (!b || !json_equal(a, b)) {
			fprintf(stderr, "jp_parse took %.*s (jansson: %s)\n", (int)n, t, b ? "another tree" : "refused");
			fail();
		}
		/* and in the same order (dumps compare byte for byte) */
		char *da = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY), *db = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
		assert_string_equal(da, db);
		free(da);
		free(db);
	} else {
		assert_int_equal(rc, -EAGAIN);
		assert_null(a);
	}
	json_decref(a);
	json_decref(b);
	return rc == 0;
}

static void test_fixed(void **st)
{
	static const char *const took[] = {
		"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"call 1\"},\"_meta\":{\"progressToken\":1}}}",
		" [1, -2, 0, -0, 123456789012345678, true, false, null, \"\", {}, []] ", "\"a\\\"\\\\\\/\\b\\f\\n\\r\\tz\"",
		"\"\xe2\x82\xac \xf0\x9f\x98\x80 \x7f\"", "{\"\":1}", "7", "{\"a\":{\"a\":{\"a\":[[]]}}}",
	};
	static const char *const declined[] = {
		"", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\":1,\"a\":2}", "\"\\u0041\"", "\"\\u0000\"", "1.5", "1e3",
		"-", "01", "-01", "1234567890123456789", "tru", "nul", "[1 2]", "{\"a\" 1}", "{1:2}", "\"a", "\"\x01\"",
		"\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"", "1 2", "[1]x", "\xef\xbb\xbf{}",
		"\"\\x\"", "{\"a\":1}}", "NaN", "+1",
	};
	(void)st;
	for (size_t i = 0; i < sizeof took / sizeof took[0]; i++)
		assert_int_equal(same(took[i], strlen(took[i])), 1);
	for (size_t i = 0; i < sizeof declined / sizeof declined[0]; i++)
		assert_int_equal(same(declined[i], strlen(declined[i])), 0);
	{
		/* NUL in the text, deeper than the cap, a long key: declined */
		json_t *v;
		assert_int_equal(jp_parse("[1]\0", 4, 64, &v), -EAGAIN);
		assert_int_equal(jp_parse("[[[1]]]", 7, 2, &v), -EAGAIN);
		assert_int_equal(jp_parse("[[1]]", 5, 2, &v), 0);
		json_decref(v);
	}
}

static void gen(char *o, size_t *n, size_t cap, unsigned depth)
{
	static const char *const atoms[] = { "0", "-7", "42", "123456789012345678", "true", "false", "null", "\"\"",
					     "\"abc\"", "\"\\n\\\"x\"", "\"\xc3\xa9\"", "1.5", "\"\\u00e9\"", "-0" };
	static const char *const keys[] = { "\"id\"", "\"name\"", "\"a\"", "\"\"", "\"\\t\"", "\"\xe2\x82\xac\"", "\"b\"" };
	unsigned k = depth > 4 ? rnd(2) + 2 : rnd(4);
	if (*n + 64 > cap)
		k = 3;
	if (k == 0 || k == 1) {
		unsigned m = rnd(4);
		o[(*n)++] = k ? '[' : '{';
		for (unsigned i = 0; i < m && *n + 64 < cap; i++) {
			if (i)
				o[(*n)++] = ',';
			if (rnd(5) == 0)
				o[(*n)++] = ' ';
			if (!k) {
				const char *key = keys[rnd(sizeof keys / sizeof keys[0])];
				memcpy(o + *n, key, strlen(key));
				*n += strlen(key);
				o[(*n)++] = ':';
			}
			gen(o, n, cap, depth + 1);
		}
		o[(*n)++] = k ? ']' : '}';
	} else {
		const char *a = atoms[rnd(sizeof atoms / sizeof atoms[0])];
		memcpy(o + *n, a, strlen(a));
		*n += strlen(a);
	}
}

static void test_generated(void **st)
{
	static const char bytes[] = "{}[]\":,\\ 01-.eE\x01\xc3\xa9\x80tfn\"";
	char t[4096];
	unsigned took = 0, declined = 0;
	(void)st;
	for (int i = 0; i < 20000; i++) {
		size_t n = 0;
		gen(t, &n, sizeof t, 0);
		if (same(t, n))
			took++;
		else
			declined++;
		for (int m = 0; m < 4 && n; m++) {
			size_t at = rnd((unsigned)n);
			switch (rnd(3)) {
			case 0: t[at] = bytes[rnd(sizeof bytes - 1)]; break;
			case 1: memmove(t + at, t + at + 1, n - at - 1), n--; break;
			default:
				if (n + 1 < sizeof t) {
					memmove(t + at + 1, t + at, n - at);
					t[at] = bytes[rnd(sizeof bytes - 1)];
					n++;
				}
			}
			if (same(t, n))
				took++;
			else
				declined++;
		}
	}
	/* both sides exercised */
	assert_true(took > 10000);
	assert_true(declined > 10000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed),
		cmocka_unit_test(test_generated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
