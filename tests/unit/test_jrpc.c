/* guard/jrpc: caps (size, batch, depth 10,000), classification, era, mirrored headers, errors, list filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "guard/jrpc.h"

static jrpc_body *parse_ok(const char *s)
{
	jrpc_body *b = NULL;
	char err[200] = "";
	int rc = jrpc_new(s, strlen(s), NULL, &b, err, sizeof err);
	if (rc)
		fail_msg("jrpc_new: %d %s", rc, err);
	return b;
}

static void test_classify_call(void **st)
{
	const char *s = "{\"jsonrpc\":\"2.0\",\"id\":\"a\\u00e9\",\"method\":\"tools/call\",\"params\":{\"name\":\"write_file\","
			"\"arguments\":{\"path\":\"/x\"},\"_meta\":{\"progressToken\":7,\"traceparent\":"
			"\"00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01\","
			"\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}}}";
	jrpc_body *b = parse_ok(s);
	const jrpc_msg *m = jrpc_at(b, 0);
	(void)st;
	assert_false(jrpc_is_batch(b));
	assert_int_equal(jrpc_count(b), 1);
	assert_int_equal(m->kind, JRPC_REQUEST);
	assert_string_equal(m->method, "tools/call");
	assert_string_equal(m->name, "write_file");
	assert_string_equal(m->id, "\"a\xc3\xa9\"");
	assert_string_equal(json_string_value(json_object_get(m->arguments, "path")), "/x");
	assert_int_equal(json_integer_value(m->progress_token), 7);
	assert_string_equal(m->traceparent, "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01");
	assert_string_equal(m->meta_version, "2026-07-28");
	assert_int_equal(jrpc_era_of(b, NULL), JRPC_ERA_MODERN);
	assert_null(jrpc_at(b, 1));
	jrpc_free(b);
}

static void test_classify_kinds(void **st)
{
	const char *s = "[{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":3}},"
			"{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}},"
			"{\"jsonrpc\":\"2.0\",\"id\":6,\"error\":{\"code\":-32601,\"message\":\"x\"}},"
			"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"a\"},"
			"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"a\"},"
			"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"a\"},"
			"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{}},"
			"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"resources/read\",\"params\":{\"uri\":\"file:///a\"}},"
			"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"prompts/get\",\"params\":{\"name\":\"p\",\"arguments\":[]}},"
			"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"x\",\"params\":[1]},"
			"{\"jsonrpc\":\"2.0\",\"id\":4},"
			"7]";
	jrpc_body *b = parse_ok(s);
	(void)st;
	assert_true(jrpc_is_batch(b));
	assert_int_equal(jrpc_count(b), 12);
	assert_int_equal(jrpc_at(b, 0)->kind, JRPC_NOTIFICATION);
	assert_null(jrpc_at(b, 0)->id);
	assert_int_equal(jrpc_at(b, 1)->kind, JRPC_RESULT);
	assert_string_equal(jrpc_at(b, 1)->id, "5");
	assert_int_equal(jrpc_at(b, 2)->kind, JRPC_ERROR);
	assert_int_equal(jrpc_at(b, 2)->error_code, -32601);
	for (size_t i = 3; i <= 6; i++)
		assert_int_equal(jrpc_at(b, i)->kind, JRPC_INVALID);
	assert_int_equal(jrpc_at(b, 6)->invalid_code, JRPC_E_INVALID_PARAMS);
	assert_int_equal(jrpc_at(b, 7)->kind, JRPC_REQUEST);
	assert_string_equal(jrpc_at(b, 7)->name, "file:///a");
	assert_int_equal(jrpc_at(b, 8)->kind, JRPC_INVALID); /* arguments not an object */
	assert_int_equal(jrpc_at(b, 9)->kind, JRPC_INVALID); /* params not an object */
	assert_int_equal(jrpc_at(b, 10)->kind, JRPC_INVALID);
	assert_int_equal(jrpc_at(b, 11)->kind, JRPC_INVALID);
	assert_int_equal(jrpc_era_of(b, "2026-07-28"), JRPC_ERA_LEGACY); /* a batch */
	jrpc_free(b);
}

/* A call without an id would escape the policy (only requests are decided): it is no notification. */
static void test_notification_calls(void **st)
{
	jrpc_body *b = parse_ok("[{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"w\"}},"
				"{\"jsonrpc\":\"2.0\",\"method\":\"prompts/get\",\"params\":{\"name\":\"p\"}},"
				"{\"jsonrpc\":\"2.0\",\"method\":\"resources/read\",\"params\":{\"uri\":\"v:x\"}},"
				"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}},"
				"{\"jsonrpc\":\"2.0\",\"method\":\"tools/list\"}]");
	(void)st;
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(jrpc_at(b, i)->kind, JRPC_INVALID);
		assert_int_equal(jrpc_at(b, i)->invalid_code, JRPC_E_INVALID_REQUEST);
		assert_non_null(strstr(jrpc_at(b, i)->why, "needs an id"));
	}
	assert_int_equal(jrpc_at(b, 3)->kind, JRPC_NOTIFICATION);
	assert_int_equal(jrpc_at(b, 4)->kind, JRPC_NOTIFICATION);
	jrpc_free(b);
}

static void test_era(void **st)
{
	jrpc_body *b = parse_ok("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}");
	(void)st;
	assert_int_equal(jrpc_era_of(b, "2026-07-28"), JRPC_ERA_LEGACY);
	jrpc_free(b);
	b = parse_ok("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
	assert_int_equal(jrpc_era_of(b, NULL), JRPC_ERA_LEGACY);
	assert_int_equal(jrpc_era_of(b, "2025-11-25"), JRPC_ERA_LEGACY);
	assert_int_equal(jrpc_era_of(b, "2026-07-28"), JRPC_ERA_MODERN);
	assert_int_equal(jrpc_era_of(b, "2027-01-01"), JRPC_ERA_MODERN);
	assert_int_equal(jrpc_era_of(b, "2026-7-28x"), JRPC_ERA_LEGACY);
	assert_false(jrpc_version_is_modern("2026-07-2a"));
	jrpc_free(b);
}

static void test_caps(void **st)
{
	jrpc_limits lim = { .max_body = 64, .max_batch = 3, .max_depth = 5 };
	jrpc_body *b = NULL;
	char err[200], *deep;
	size_t n = 10000;
	int rc;
	(void)st;
	/* JSON nested 10,000 deep: a clear error from the byte scan, jansson never recurses into it. */
	deep = malloc(2 * n + 1);
	memset(deep, '[', n);
	memset(deep + n, ']', n);
	deep[2 * n] = 0;
	rc = jrpc_new(deep, 2 * n, NULL, &b, err, sizeof err);
	assert_int_equal(rc, -ELOOP);
	assert_null(b);
	assert_string_equal(err, "JSON nested deeper than 64 levels");
	assert_int_equal(jrpc_refusal_code(rc), JRPC_E_PARSE);
	assert_int_equal(jrpc_refusal_status(rc), 400);
	/* jansson alone refuses it too (its built-in depth limit), without crashing. */
	{
		json_error_t je;
		json_t *j = json_loadb(deep, 2 * n, 0, &je);
		assert_null(j);
	}
	/* brackets inside strings do not count */
	memset(deep, 0, 2 * n + 1);
	strcpy(deep, "{\"jsonrpc\":\"2.0\",\"method\":\"[[[[[[[[[[\"}");
	assert_int_equal(jrpc_new(deep, strlen(deep), &lim, &b, err, sizeof err), 0);
	jrpc_free(b);
	free(deep);

	assert_int_equal(jrpc_new("[1,2,3,4]", 9, &lim, &b, err, sizeof err), -E2BIG);
	assert_string_equal(err, "batch of more than 3 messages");
	assert_int_equal(jrpc_new("[1,\"a,b\",{\"x\":[1,2,3]}]", 23, &lim, &b, err, sizeof err), 0);
	assert_int_equal(jrpc_count(b), 3);
	jrpc_free(b);
	assert_int_equal(jrpc_new("[[[[[[1]]]]]]", 13, &lim, &b, err, sizeof err), -ELOOP);
	rc = jrpc_new("[                                                                 ]", 67, &lim, &b, err,
		      sizeof err);
	assert_int_equal(rc, -EMSGSIZE);
	assert_int_equal(jrpc_refusal_status(rc), 413);
	assert_int_equal(jrpc_new("[]", 2, &lim, &b, err, sizeof err), -EPROTO);
	assert_int_equal(jrpc_new("7", 1, &lim, &b, err, sizeof err), -EPROTO);
	assert_int_equal(jrpc_new("{\"a\":", 5, &lim, &b, err, sizeof err), -EBADMSG);
	assert_non_null(strstr(err, "malformed JSON"));
	/* duplicate keys and NUL are refused: the upstream must read what the guard read */
	rc = jrpc_new("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\",\"method\":\"b\"}", 50, NULL, &b, err, sizeof err);
	assert_int_equal(rc, -EBADMSG);
	rc = jrpc_new("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\\u0000b\"}", 44, NULL, &b, err, sizeof err);
	assert_int_equal(rc, -EBADMSG);
	/* a batch of 10,000 with the default cap */
	{
		size_t cnt = 10000, len = 0;
		char *big = malloc(cnt * 4 + 3);
		big[len++] = '[';
		for (size_t i = 0; i < cnt; i++)
			len += (size_t)sprintf(big + len, "%s1", i ? "," : "");
		big[len++] = ']';
		assert_int_equal(jrpc_new(big, len, NULL, &b, err, sizeof err), -E2BIG);
		assert_int_equal(jrpc_refusal_code(-E2BIG), JRPC_E_INVALID_REQUEST);
		free(big);
	}
}

static void test_hdr_codec(void **st)
{
	char out[64], enc[64];
	(void)st;
	assert_int_equal(jrpc_hdr_decode("tools/call", out, sizeof out), 10);
	assert_string_equal(out, "tools/call");
	assert_int_equal(jrpc_hdr_decode("a b", out, sizeof out), 3);
	assert_int_equal(jrpc_hdr_decode(" a", out, sizeof out), -EINVAL);
	assert_int_equal(jrpc_hdr_decode("caf\xc3\xa9", out, sizeof out), -EINVAL);
	assert_int_equal(jrpc_hdr_decode("=?base64?Y2Fmw6k=?=", out, sizeof out), 5);
	assert_string_equal(out, "caf\xc3\xa9");
	assert_int_equal(jrpc_hdr_decode("=?base64?YQ==?=", out, sizeof out), 1);
	assert_string_equal(out, "a");
	assert_int_equal(jrpc_hdr_decode("=?base64?YQ=?=", out, sizeof out), -EINVAL);
	assert_int_equal(jrpc_hdr_decode("=?base64?Y=Q=?=", out, sizeof out), -EINVAL);
	assert_int_equal(jrpc_hdr_decode("=?base64?AA==?=", out, sizeof out), -EINVAL); /* NUL */
	assert_int_equal(jrpc_hdr_decode("=?base64?/w==?=", out, sizeof out), -EINVAL); /* not UTF-8 */
	assert_int_equal(jrpc_hdr_decode("=?base64?" "?=", out, sizeof out), 0);
	assert_int_equal(jrpc_hdr_decode("abcdef", out, 4), -ENOBUFS);
	assert_int_equal(jrpc_hdr_encode("caf\xc3\xa9", 5, enc, sizeof enc), 19);
	assert_string_equal(enc, "=?base64?Y2Fmw6k=?=");
	assert_int_equal(jrpc_hdr_decode(enc, out, sizeof out), 5);
	assert_string_equal(out, "caf\xc3\xa9");
	assert_int_equal(jrpc_hdr_encode("plain", 5, enc, sizeof enc), 5);
	assert_string_equal(enc, "plain");
	/* a literal that looks like the sentinel is encoded too */
	assert_true(jrpc_hdr_encode("=?base64?x?=", 12, enc, sizeof enc) > 12);
	assert_int_equal(jrpc_hdr_decode(enc, out, sizeof out), 12);
	assert_string_equal(out, "=?base64?x?=");
	assert_int_equal(jrpc_hdr_encode(" x ", 3, enc, sizeof enc), 15);
	assert_string_equal(enc, "=?base64?IHgg?=");
}

static const char *const modern_call =
	"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"caf\\u00e9\","
	"\"arguments\":{\"n\":42,\"b\":true,\"s\":\"eu-1\",\"f\":1.5},"
	"\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}}}";

static void test_check_headers(void **st)
{
	jrpc_body *b = parse_ok(modern_call);
	const jrpc_msg *m = jrpc_at(b, 0);
	jrpc_param_hdr ph[] = { { "n", "042" }, { "b", "true" }, { "s", "eu-1" }, { "f", "1.50" }, { "absent", NULL } };
	jrpc_headers h = { "2026-07-28", "tools/call", "=?base64?Y2Fmw6k=?=", ph, 5 };
	jrpc_mismatch mm;
	char *body;
	size_t n;
	(void)st;
	assert_int_equal(jrpc_check_headers(m, &h, &mm), 0);
	h.name = "cafe";
	assert_int_equal(jrpc_check_headers(m, &h, &mm), -EPROTO);
	assert_string_equal(mm.header, "Mcp-Name");
	h.name = "caf\xc3\xa9"; /* raw non-ASCII: must have been encoded */
	assert_int_equal(jrpc_check_headers(m, &h, &mm), -EPROTO);
	assert_non_null(strstr(mm.message, "malformed"));
	h.name = "=?base64?Y2Fmw6k=?=";
	h.method = "tools/list";
	assert_int_equal(jrpc_check_headers(m, &h, &mm), -EPROTO);
	assert_string_equal(mm.header, "Mcp-Method");
	h.method = NULL;
	assert_int_equal(jrpc_check_headers(m, &h, &mm), -EPROTO);
	assert_string_equal(mm.message, "Mcp-Method header missing");
	h.method = "tools/call";
	h.protocol_version = "2025-11-25";
	assert_int_equal(jrpc_check_headers(m, &h, &mm), -EPROTO);
	assert_string_equal(mm.header, "MCP-Protocol-Version");
	h.protocol_version = NULL;
	assert_int_equal(jrpc_check_headers(m, &h, &mm), -EPROTO);
	h.protocol_version = "2026-07-28";
	ph[0].value = "43";
	assert_int_equal(jrpc_check_headers(m, &h, &mm), -EPROTO);
	assert_string_equal(mm.message, "Mcp-Param header does not match argument n");
	ph[0].value = "42x";
	assert_int_equal(jrpc_check_headers(m, &h, &mm), -EPROTO);
	ph[0].value = "42";
	ph[1].value = "1";
	assert_int_equal(jrpc_check_headers(m, &h, &mm), -EPROTO);
	ph[1].value = "true";
	ph[4].value = "x";
	assert_int_equal(jrpc_check_headers(m, &h, &mm), -EPROTO);
	assert_non_null(strstr(mm.message, "absent argument"));
	ph[4].value = NULL;
	ph[2].value = NULL;
	assert_int_equal(jrpc_check_headers(m, &h, &mm), -EPROTO);
	ph[2].value = "eu-1";
	h.name = "nope";
	assert_int_equal(jrpc_check_headers(m, &h, &mm), -EPROTO);
	assert_int_equal(jrpc_mismatch_body(m, &mm, &body, &n), 0);
	assert_string_equal(body, "{\"jsonrpc\":\"2.0\",\"id\":9,\"error\":{\"code\":-32020,\"message\":"
				  "\"Mcp-Name header does not match params.name\",\"data\":{\"header\":\"Mcp-Name\"}}}");
	assert_int_equal(n, strlen(body));
	free(body);
	jrpc_free(b);
	/* a notification: Mcp-Method is checked only when present */
	b = parse_ok("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":1}}");
	h = (jrpc_headers){ .protocol_version = "2026-07-28" };
	assert_int_equal(jrpc_check_headers(jrpc_at(b, 0), &h, &mm), 0);
	h.method = "x";
	assert_int_equal(jrpc_check_headers(jrpc_at(b, 0), &h, &mm), -EPROTO);
	jrpc_free(b);
}

static void test_error_body(void **st)
{
	char *s;
	json_t *data = json_pack("{s:s}", "rule", "rules[0]");
	(void)st;
	assert_int_equal(jrpc_error_body("\"x\\u00e9\"", -32001, "denied \"q\"", data, &s, NULL), 0);
	assert_string_equal(s, "{\"jsonrpc\":\"2.0\",\"id\":\"x\\u00e9\",\"error\":{\"code\":-32001,\"message\":"
			       "\"denied \\\"q\\\"\",\"data\":{\"rule\":\"rules[0]\"}}}");
	free(s);
	assert_int_equal(jrpc_error_body(NULL, JRPC_E_PARSE, "bad", NULL, &s, NULL), 0);
	assert_string_equal(s, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32700,\"message\":\"bad\"}}");
	free(s);
	assert_int_equal(jrpc_error_body("1,2", -1, "x", NULL, &s, NULL), -EINVAL);
	assert_null(s);
	json_decref(data);
}

static bool keep_not_write(void *ctx, json_t *item)
{
	const char *n = json_string_value(json_object_get(item, "name"));
	(*(int *)ctx)++;
	return !n || strncmp(n, "write_", 6);
}

static void test_filter(void **st)
{
	const char *in = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"read_file\",\"inputSchema\":"
			 "{\"type\":\"object\"}},{\"name\":\"write_file\"},{\"name\":\"write_x\"}],\"nextCursor\":\"c\"}}";
	const char *sse = "{\"jsonrpc\":\"2.0\",\"id\":1,\n\"result\":{\"tools\":[{\"name\":\"write_file\"},\n"
			  "{\"name\":\"b\",\"description\":\"two\\nlines\"}]}}";
	char *out, err[100];
	size_t n, removed;
	int calls = 0;
	(void)st;
	assert_int_equal(jrpc_filter_list(in, strlen(in), NULL, "tools", keep_not_write, &calls, &out, &n, &removed,
					  err, sizeof err), 0);
	assert_int_equal(calls, 3);
	assert_int_equal(removed, 2);
	assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"read_file\","
				 "\"inputSchema\":{\"type\":\"object\"}}],\"nextCursor\":\"c\"}}");
	assert_int_equal(n, strlen(out));
	free(out);
	/* the SSE data payload (lines joined by \n) comes back as one line */
	assert_int_equal(jrpc_filter_list(sse, strlen(sse), NULL, "tools", keep_not_write, &calls, &out, &n, &removed,
					  err, sizeof err), 0);
	assert_null(strchr(out, '\n'));
	assert_non_null(strstr(out, "two\\nlines"));
	free(out);
	/* nothing removed: forwarded byte for byte (no output) */
	in = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"read_file\"}]}}";
	assert_int_equal(jrpc_filter_list(in, strlen(in), NULL, "tools", keep_not_write, &calls, &out, &n, &removed,
					  err, sizeof err), 0);
	assert_null(out);
	assert_int_equal(removed, 0);
	in = "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1,\"message\":\"m\"}}";
	assert_int_equal(jrpc_filter_list(in, strlen(in), NULL, "tools", keep_not_write, &calls, &out, &n, &removed,
					  err, sizeof err), 0);
	assert_null(out);
	assert_int_equal(jrpc_filter_list("{", 1, NULL, "tools", keep_not_write, &calls, &out, &n, &removed, err,
					  sizeof err), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify_call), cmocka_unit_test(test_classify_kinds), cmocka_unit_test(test_era),
		cmocka_unit_test(test_notification_calls),
		cmocka_unit_test(test_caps),          cmocka_unit_test(test_hdr_codec),      cmocka_unit_test(test_check_headers),
		cmocka_unit_test(test_error_body),    cmocka_unit_test(test_filter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
