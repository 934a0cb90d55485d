#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sandbox/mcp/mcp_server.h"

static int calls;

static int echo_call(void *ud, const char *tool, json_t *args, json_t **result)
{
	(void)ud;
	calls++;
	if (strcmp(tool, "echo") != 0)
		return -ENOENT;
	json_t *t = json_object_get(args, "text");
	const char *s = json_is_string(t) ? json_string_value(t) : "";
	*result = mcps_text_result(s, strlen(s), !json_is_string(t));
	return 0;
}

static json_t *tools;

static mcps *mk(size_t max)
{
	struct mcps_config c = { .server_name = "t", .server_version = "1", .tools = tools, .call = echo_call,
				 .max_message = max };
	return mcps_new(&c);
}

/* Feeds one line and returns the single response parsed (NULL when there was none). */
static json_t *rt(mcps *m, const char *line)
{
	size_t len;
	const char *out;
	json_t *r;
	json_error_t e;

	assert_int_equal(mcps_feed(m, line, strlen(line)), 0);
	assert_int_equal(mcps_feed(m, "\n", 1), 0);
	out = mcps_output(m, &len);
	if (len == 0)
		return NULL;
	assert_int_equal(out[len - 1], '\n');
	assert_null(memchr(out, '\n', len - 1));
	r = json_loadb(out, len, 0, &e);
	assert_non_null(r);
	mcps_consume(m, len);
	return r;
}

static int err_code(json_t *r)
{
	return (int)json_integer_value(json_object_get(json_object_get(r, "error"), "code"));
}

static void init(mcps *m, const char *ver)
{
	char line[256];
	snprintf(line, sizeof line,
		 "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"%s\","
		 "\"capabilities\":{},\"clientInfo\":{\"name\":\"unit\",\"version\":\"1\"}}}",
		 ver);
	json_t *r = rt(m, line);
	assert_non_null(json_object_get(r, "result"));
	json_decref(r);
	assert_null(rt(m, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"));
}

static void test_initialize_negotiation(void **st)
{
	static const char *const ok[] = { "2025-03-26", "2025-06-18", "2025-11-25" };
	(void)st;
	for (size_t i = 0; i < 3; i++) {
		mcps *m = mk(0);
		char line[256];
		snprintf(line, sizeof line,
			 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"%s\","
			 "\"capabilities\":{},\"clientInfo\":{\"name\":\"c\",\"version\":\"1\"}}}",
			 ok[i]);
		json_t *r = rt(m, line);
		json_t *res = json_object_get(r, "result");
		assert_string_equal(json_string_value(json_object_get(res, "protocolVersion")), ok[i]);
		assert_non_null(json_object_get(json_object_get(res, "capabilities"), "tools"));
		assert_string_equal(json_string_value(json_object_get(json_object_get(res, "serverInfo"), "name")), "t");
		assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
		json_decref(r);
		assert_string_equal(mcps_client_name(m), "c");
		/* A second initialize is refused. */
		r = rt(m, line);
		assert_int_equal(err_code(r), -32600);
		json_decref(r);
		mcps_free(m);
	}
	/* An unknown version gets our latest. */
	mcps *m = mk(0);
	json_t *r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
			  "\"1999-01-01\",\"capabilities\":{}}}");
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "result"), "protocolVersion")),
			    MCPS_LATEST_VERSION);
	assert_string_equal(json_string_value(json_object_get(r, "id")), "a");
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"initialize\",\"params\":{}}");
	assert_int_equal(err_code(r), -32600);
	json_decref(r);
	mcps_free(m);
}

static void test_errors(void **st)
{
	mcps *m = mk(0);
	json_t *r;
	(void)st;
	r = rt(m, "{not json");
	assert_int_equal(err_code(r), -32700);
	assert_true(json_is_null(json_object_get(r, "id")));
	json_decref(r);
	r = rt(m, "[1,2");
	assert_int_equal(err_code(r), -32700);
	json_decref(r);
	r = rt(m, "42");
	assert_int_equal(err_code(r), -32600);
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"1.0\",\"id\":3,\"method\":\"ping\"}");
	assert_int_equal(err_code(r), -32600);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 3);
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}");
	assert_int_equal(err_code(r), -32600);
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":7}");
	assert_int_equal(err_code(r), -32600);
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/list\"}");
	assert_int_equal(err_code(r), -32600); /* not initialized */
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\"}");
	assert_non_null(json_object_get(r, "result"));
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"resources/list\"}");
	assert_int_equal(err_code(r), -32601);
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"ping\",\"id\":9}");
	assert_int_equal(err_code(r), -32700); /* duplicate keys */
	json_decref(r);
	assert_null(rt(m, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/whatever\"}"));
	assert_null(rt(m, "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}"));
	assert_null(rt(m, "   "));
	mcps_free(m);
}

static void test_tools(void **st)
{
	mcps *m = mk(0);
	json_t *r, *res;
	(void)st;
	init(m, "2025-06-18");
	assert_true(mcps_initialized(m));
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{}}");
	res = json_object_get(r, "result");
	assert_true(json_equal(json_object_get(res, "tools"), tools));
	json_decref(r);
	calls = 0;
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":"
		  "{\"text\":\"hi\\u0000there\"}}}");
	res = json_object_get(r, "result");
	assert_false(json_is_true(json_object_get(res, "isError")));
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(res, "content"), 0), "text")),
			    "hi");
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}");
	assert_true(json_is_true(json_object_get(json_object_get(r, "result"), "isError")));
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"nope\",\"arguments\":{}}}");
	assert_int_equal(err_code(r), -32602);
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(r, "error"), "message")), "nope"));
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":1}}");
	assert_int_equal(err_code(r), -32602);
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":[1]}}");
	assert_int_equal(err_code(r), -32602);
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":[1]}");
	assert_int_equal(err_code(r), -32602);
	json_decref(r);
	assert_int_equal(calls, 3);
	/* Batches are refused after 2025-03-26. */
	r = rt(m, "[{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"ping\"}]");
	assert_int_equal(err_code(r), -32600);
	json_decref(r);
	mcps_free(m);
}

static void test_batch_2025_03_26(void **st)
{
	mcps *m = mk(0);
	json_t *r;
	(void)st;
	init(m, "2025-03-26");
	r = rt(m, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\",\"method\":\"x\"},"
		  "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"nope\"}]");
	assert_true(json_is_array(r));
	assert_int_equal(json_array_size(r), 2);
	assert_int_equal(err_code(json_array_get(r, 1)), -32601);
	json_decref(r);
	r = rt(m, "[]");
	assert_int_equal(err_code(r), -32600);
	json_decref(r);
	mcps_free(m);
}

static void test_framing_and_cap(void **st)
{
	mcps *m = mk(64);
	const char *two = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\n{\"jsonrpc\":\"2.0\",\"id\":2,";
	size_t len;
	const char *out;
	char big[300];
	(void)st;
	/* Split messages across feeds, CRLF tolerated. */
	assert_int_equal(mcps_feed(m, two, strlen(two)), 0);
	out = mcps_output(m, &len);
	assert_non_null(strstr(out, "\"id\":1"));
	mcps_consume(m, len);
	assert_int_equal(mcps_feed(m, "\"method\":\"ping\"}\n", 17), 0);
	out = mcps_output(m, &len);
	assert_non_null(strstr(out, "\"id\":2"));
	mcps_consume(m, len);
	/* An over-long line gets one error, in pieces too, and the next message works. */
	memset(big, 'x', sizeof big);
	assert_int_equal(mcps_feed(m, big, sizeof big), 0);
	assert_int_equal(mcps_feed(m, big, sizeof big), 0);
	assert_int_equal(mcps_feed(m, "\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\n", 42), 0);
	out = mcps_output(m, &len);
	assert_non_null(strstr(out, "exceeds the size limit"));
	assert_non_null(strstr(out, "\"id\":3"));
	assert_null(strstr(strstr(out, "exceeds") + 1, "exceeds"));
	mcps_consume(m, len);
	/* A request over the cap is answered with its own id (at its end here, as the TypeScript SDK writes
	 * it), naming the limit and how to split the write, and the stream goes on at the next line. */
	const char *head = "{\"method\":\"tools/call\",\"params\":{\"content\":\"";
	const char *rest = "\"},\"jsonrpc\":\"2.0\",\"id\":42}\n{\"jsonrpc\":\"2.0\",\"id\":43,\"method\":\"ping\"}\n";
	assert_int_equal(mcps_feed(m, head, strlen(head)), 0);
	assert_int_equal(mcps_feed(m, big, sizeof big), 0);
	assert_int_equal(mcps_feed(m, rest, strlen(rest)), 0);
	out = mcps_output(m, &len);
	json_error_t je;
	json_t *e = json_loadb(out, strchr(out, '\n') - out, 0, &je);
	assert_non_null(e);
	assert_int_equal(json_integer_value(json_object_get(e, "id")), 42);
	const char *em = json_string_value(json_object_get(json_object_get(e, "error"), "message"));
	assert_non_null(strstr(em, "limit of 64 bytes"));
	assert_non_null(strstr(em, "append the rest"));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(e, "error"), "data"), "size")),
			 strlen(head) + sizeof big + (strchr(rest, '\n') - rest));
	json_decref(e);
	assert_non_null(strstr(out, "\"id\":43,\"result\""));
	mcps_consume(m, len);
	/* A final line without newline at EOF. */
	assert_int_equal(mcps_feed(m, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}", 40), 0);
	out = mcps_output(m, &len);
	assert_int_equal(len, 0);
	assert_int_equal(mcps_finish(m), 0);
	out = mcps_output(m, &len);
	assert_non_null(strstr(out, "\"id\":4"));
	mcps_free(m);
}

static json_t *pending_id, *pending_args, *cancelled;
static int starts;

static int a_start(void *ud, json_t *id, const char *tool, json_t *args)
{
	(void)ud;
	if (strcmp(tool, "echo") != 0)
		return -ENOENT;
	if (pending_id)
		return -EBUSY;
	starts++;
	pending_id = id;
	pending_args = args;
	return 0;
}

static void a_cancel(void *ud, json_t *rid)
{
	(void)ud;
	json_decref(cancelled);
	cancelled = json_incref(rid);
}

static void test_async_calls(void **st)
{
	struct mcps_config c = { .tools = tools, .start = a_start, .cancel = a_cancel };
	mcps *m = mcps_new(&c);
	json_t *r;
	size_t len;
	(void)st;
	init(m, "2025-11-25");
	/* Started, not answered yet; a ping meanwhile is answered at once. */
	assert_null(rt(m, "{\"jsonrpc\":\"2.0\",\"id\":\"c1\",\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"x\"}}}"));
	assert_int_equal(starts, 1);
	assert_string_equal(json_string_value(json_object_get(pending_args, "text")), "x");
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}");
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 5);
	json_decref(r);
	/* Busy: refused at once; unknown tool: -32602 at once. */
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}");
	assert_int_equal(err_code(r), -32603);
	json_decref(r);
	r = rt(m, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"zzz\"}}");
	assert_int_equal(err_code(r), -32602);
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(r, "error"), "message")), "zzz"));
	json_decref(r);
	assert_null(rt(m, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":\"c1\",\"reason\":\"t\"}}"));
	assert_string_equal(json_string_value(cancelled), "c1");
	/* The answer comes when the caller completes it. */
	assert_int_equal(mcps_complete(m, pending_id, 0, mcps_text_result("done", 4, false)), 0);
	mcps_output(m, &len);
	assert_true(len > 0);
	r = rt(m, "");
	assert_string_equal(json_string_value(json_object_get(r, "id")), "c1");
	assert_non_null(json_object_get(r, "result"));
	json_decref(r);
	assert_int_equal(mcps_complete(m, pending_id, -ENOENT, NULL), 0);
	r = rt(m, "");
	assert_int_equal(err_code(r), -32602);
	json_decref(r);
	json_decref(pending_id);
	json_decref(pending_args);
	json_decref(cancelled);
	pending_id = pending_args = cancelled = NULL;
	mcps_free(m);
}

int main(void)
{
	tools = json_pack("[{s:s,s:s,s:{s:s}}]", "name", "echo", "description", "echo", "inputSchema", "type", "object");
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_initialize_negotiation),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_tools),
		cmocka_unit_test(test_batch_2025_03_26),
		cmocka_unit_test(test_framing_and_cap),
		cmocka_unit_test(test_async_calls),
	};
	int rc = cmocka_run_group_tests(t, NULL, NULL);
	json_decref(tools);
	return rc;
}
