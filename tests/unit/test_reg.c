#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tunnel/reg.h"

static void test_request_roundtrip(void **st)
{
	reg_request r = { .v = 1, .slot = 3 }, p;
	char line[REG_MAX_LINE + 2], err[128];
	int n;
	(void)st;
	strcpy(r.token, "tok\"en\\with\nodd bytes");
	strcpy(r.connector_id, "6f1c2f9e-0000-4000-8000-000000000001");
	strcpy(r.version, "0.1.0");
	n = reg_request_encode(&r, line, sizeof line);
	assert_true(n > 0);
	assert_int_equal(line[n - 1], '\n');
	assert_null(memchr(line, '\n', (size_t)n - 1)); /* one line even with a newline in a field */
	line[n - 1] = 0;
	assert_int_equal(reg_request_parse(line, &p, err, sizeof err), 0);
	assert_string_equal(p.token, r.token);
	assert_string_equal(p.connector_id, r.connector_id);
	assert_int_equal(p.slot, 3);
	assert_string_equal(p.version, "0.1.0");
	reg_request_wipe(&p);
	assert_int_equal(p.token[0], 0);
}

static void test_request_rejects(void **st)
{
	reg_request p;
	char err[128];
	static const char *bad[] = {
		"", "[]", "{\"v\":2,\"token\":\"t\",\"connector_id\":\"c\",\"slot\":0}",
		"{\"token\":\"t\",\"connector_id\":\"c\",\"slot\":0}",
		"{\"v\":1,\"connector_id\":\"c\",\"slot\":0}",
		"{\"v\":1,\"token\":\"\",\"connector_id\":\"c\",\"slot\":0}",
		"{\"v\":1,\"token\":\"t\",\"connector_id\":\"c\",\"slot\":-1}",
		"{\"v\":1,\"token\":\"t\",\"connector_id\":\"c\",\"slot\":\"0\"}",
		"{\"v\":1,\"token\":5,\"connector_id\":\"c\",\"slot\":0}",
		"{\"v\":1,\"token\":\"a\\u0000b\",\"connector_id\":\"c\",\"slot\":0}",
		"{\"v\":1,\"token\":\"t\",\"token\":\"u\",\"connector_id\":\"c\",\"slot\":0}",
		/* log field injection: only [A-Za-z0-9._:-] in the fields logged before the token check */
		"{\"v\":1,\"token\":\"t\",\"connector_id\":\"x level=error msg=forged\",\"slot\":0}",
		"{\"v\":1,\"token\":\"t\",\"connector_id\":\"c\",\"slot\":0,\"version\":\"1 level=error\"}",
		"{\"v\":1,\"token\":\"t\",\"connector_id\":\"c\\\"q\",\"slot\":0}",
		NULL };
	(void)st;
	for (int i = 0; bad[i]; i++)
		assert_int_equal(reg_request_parse(bad[i], &p, err, sizeof err), -EINVAL);
	/* The reason never echoes the input (it may hold a token). */
	assert_int_equal(reg_request_parse("{\"v\":1,\"token\":\"SECRET", &p, err, sizeof err), -EINVAL);
	assert_null(strstr(err, "SECRET"));
}

static void test_response(void **st)
{
	reg_response r = { .ok = true }, p;
	char line[REG_MAX_LINE + 2], err[128];
	int n;
	(void)st;
	strcpy(r.tunnel_id, "tnl_1");
	strcpy(r.domain, "abc.tunnel.test");
	strcpy(r.edge_id, "edge-a");
	n = reg_response_encode(&r, line, sizeof line);
	assert_true(n > 0);
	line[n - 1] = 0;
	assert_int_equal(reg_response_parse(line, &p, err, sizeof err), 0);
	assert_true(p.ok);
	assert_string_equal(p.domain, "abc.tunnel.test");
	assert_int_equal(reg_response_parse("{\"ok\":false,\"error\":\"invalid token\"}", &p, err, sizeof err), 0);
	assert_false(p.ok);
	assert_string_equal(p.error, "invalid token");
	assert_int_equal(reg_response_parse("{\"ok\":false}", &p, err, sizeof err), 0);
	assert_string_equal(p.error, "no reason given");
	assert_int_equal(reg_response_parse("{\"ok\":1}", &p, err, sizeof err), -EINVAL);
	assert_int_equal(reg_response_parse("garbage", &p, err, sizeof err), -EINVAL);
}

static void test_linebuf(void **st)
{
	reg_linebuf lb = { .len = 0 };
	static uint8_t big[REG_MAX_LINE + 10];
	const char *in = "{\"ok\":true}\r\nPRI * HTTP/2.0";
	ssize_t n;
	(void)st;
	n = reg_line_feed(&lb, (const uint8_t *)in, 5);
	assert_int_equal(n, 5);
	assert_false(lb.done);
	n = reg_line_feed(&lb, (const uint8_t *)in + 5, strlen(in) - 5);
	assert_int_equal(n, 13 - 5); /* up to and including '\n' */
	assert_true(lb.done);
	assert_string_equal(lb.buf, "{\"ok\":true}");
	assert_int_equal(reg_line_feed(&lb, (const uint8_t *)"x", 1), 0);

	memset(&lb, 0, sizeof lb);
	memset(big, 'a', sizeof big);
	assert_int_equal(reg_line_feed(&lb, big, REG_MAX_LINE), REG_MAX_LINE);
	assert_int_equal(reg_line_feed(&lb, big, 1), -E2BIG);
	memset(&lb, 0, sizeof lb);
	big[REG_MAX_LINE] = '\n';
	assert_int_equal(reg_line_feed(&lb, big, sizeof big), REG_MAX_LINE + 1);
	assert_true(lb.done);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_roundtrip),
		cmocka_unit_test(test_request_rejects),
		cmocka_unit_test(test_response),
		cmocka_unit_test(test_linebuf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
