#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/mcpbridge.h"

static mbr_kind cls(const char *j, char *id, char *m, char *why)
{
	return mbr_classify(j, strlen(j), id, 64, m, 64, why, 128);
}

static void test_kinds(void **st)
{
	char id[64], m[64], why[128];
	(void)st;
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\"}", id, m, why), MBR_REQUEST);
	assert_string_equal(id, "n:7");
	assert_string_equal(m, "tools/list");
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{}}", id, m, why), MBR_RESPONSE);
	assert_string_equal(id, "s:a");
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"error\":{\"code\":1,\"message\":\"x\"}}", id, m, why), MBR_RESPONSE);
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", id, m, why), MBR_NOTIFICATION);
}

static void test_invalid(void **st)
{
	char id[64], m[64], why[128];
	(void)st;
	assert_int_equal(cls("{", id, m, why), MBR_INVALID);
	assert_non_null(strstr(why, "invalid JSON"));
	assert_int_equal(cls("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}]", id, m, why), MBR_INVALID);
	assert_non_null(strstr(why, "batches"));
	assert_int_equal(cls("{\"id\":1,\"method\":\"x\"}", id, m, why), MBR_INVALID);
	assert_non_null(strstr(why, "2.0"));
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"x\"}", id, m, why), MBR_INVALID);
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\"}", id, m, why), MBR_INVALID);
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":1}", id, m, why), MBR_INVALID);
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"x\"}", id, m, why), MBR_INVALID);
	/* an id too long for the key buffer is refused rather than truncated (two ids must never collide) */
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":\"0123456789012345678901234567890123456789012345678901234567890123456789\",\"method\":\"x\"}", id, m, why), MBR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kinds),
		cmocka_unit_test(test_invalid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
