/* The worker's protocol decisions: fatal statuses, the per-item secret, error bodies, the lease machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "worker/wproto.h"

static void test_fatal(void **st)
{
	(void)st;
	assert_true(wpr_fatal_status(400));
	assert_true(wpr_fatal_status(401));
	assert_true(wpr_fatal_status(403));
	assert_true(wpr_fatal_status(404));
	assert_true(wpr_fatal_status(412));
	assert_false(wpr_fatal_status(408));
	assert_false(wpr_fatal_status(409));
	assert_false(wpr_fatal_status(429));
	assert_false(wpr_fatal_status(500));
	assert_false(wpr_fatal_status(503));
	assert_false(wpr_fatal_status(0));
	assert_false(wpr_fatal_status(200));
}

static void test_secret(void **st)
{
	char *t = NULL;
	(void)st;
	/* base64url of {"sessions_token":"sk-ant-req-abc"} with and without padding */
	assert_int_equal(wpr_secret_token("eyJzZXNzaW9uc190b2tlbiI6InNrLWFudC1yZXEtYWJjIn0", &t), 0);
	assert_string_equal(t, "sk-ant-req-abc");
	free(t);
	assert_int_equal(wpr_secret_token("eyJzZXNzaW9uc190b2tlbiI6InNrLWFudC1yZXEtYWJjIn0=", &t), 0);
	assert_string_equal(t, "sk-ant-req-abc");
	free(t);
	/* {"sessions_token":"a?b","api_base_url":"x"}: the url alphabet (- and _) */
	assert_int_equal(wpr_secret_token("eyJzZXNzaW9uc190b2tlbiI6ImE_YiIsImFwaV9iYXNlX3VybCI6IngifQ", &t), 0);
	assert_string_equal(t, "a?b");
	free(t);
	/* undecodable, not JSON, no token, NULL: the environment key is used */
	assert_int_equal(wpr_secret_token("!!!", &t), 0);
	assert_null(t);
	assert_int_equal(wpr_secret_token("bm90IGpzb24", &t), 0); /* "not json" */
	assert_null(t);
	assert_int_equal(wpr_secret_token("e30", &t), 0); /* {} */
	assert_null(t);
	assert_int_equal(wpr_secret_token(NULL, &t), 0);
	assert_null(t);
	assert_int_equal(wpr_secret_token("a", &t), 0);
	assert_null(t);
	/* a token that is not one header token (CR LF: a header injected into every session call; a space; a
	 * non-ASCII byte) is not used */
	assert_int_equal(wpr_secret_token("eyJzZXNzaW9uc190b2tlbiI6InRva1xyXG5Ib3N0OiBldmlsLmV4YW1wbGUifQ", &t), 0); /* "tok\r\nHost: evil.example" */
	assert_null(t);
	assert_int_equal(wpr_secret_token("eyJzZXNzaW9uc190b2tlbiI6InRvayBlbiJ9", &t), 0); /* "tok en" */
	assert_null(t);
	assert_int_equal(wpr_secret_token("eyJzZXNzaW9uc190b2tlbiI6InRva1x1MDBlOSJ9", &t), 0); /* "tok\u00e9" */
	assert_null(t);
}

static void test_error_text(void **st)
{
	char out[128];
	const char *b = "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"bad \\\"key\\\"\\n\"}}";
	(void)st;
	wpr_error_text(b, strlen(b), out, sizeof out);
	assert_string_equal(out, "authentication_error: bad ?key??");
	wpr_error_text("<html>", 6, out, sizeof out);
	assert_string_equal(out, "");
	wpr_error_text(NULL, 0, out, sizeof out);
	assert_string_equal(out, "");
}

static void test_lease_keep_and_interval(void **st)
{
	wpr_lease l;
	const char *ok = "{\"type\":\"work_heartbeat\",\"last_heartbeat\":\"2026-01-01T00:00:00Z\",\"lease_extended\":true,"
			 "\"state\":\"active\",\"ttl_seconds\":10}";
	(void)st;
	wpr_lease_init(&l, 1000);
	assert_string_equal(l.last, "NO_HEARTBEAT");
	assert_int_equal(l.interval_ms, 30000); /* default ttl 90 s */
	assert_int_equal(wpr_lease_answer(&l, 200, ok, strlen(ok), 2000), WPR_LEASE_KEEP);
	assert_string_equal(l.last, "2026-01-01T00:00:00Z");
	assert_int_equal(l.interval_ms, 5000); /* ttl/2 */
	assert_int_equal(l.last_ok_ms, 2000);
	ok = "{\"last_heartbeat\":\"t2\",\"lease_extended\":true,\"state\":\"active\",\"ttl_seconds\":1}";
	assert_int_equal(wpr_lease_answer(&l, 200, ok, strlen(ok), 3000), WPR_LEASE_KEEP);
	assert_int_equal(l.interval_ms, 1000); /* at least 1 s */
	ok = "{\"last_heartbeat\":\"t3\",\"lease_extended\":true,\"state\":\"active\",\"ttl_seconds\":600}";
	assert_int_equal(wpr_lease_answer(&l, 200, ok, strlen(ok), 4000), WPR_LEASE_KEEP);
	assert_int_equal(l.interval_ms, 30000); /* at most 30 s */
	assert_false(wpr_lease_lost(&l, 4000 + 600000));
	assert_true(wpr_lease_lost(&l, 4000 + 600001));
}

static void test_lease_ends(void **st)
{
	wpr_lease l;
	const char *b412 = "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"stale\","
			   "\"details\":{\"current_state\":{\"state\":\"active\",\"ttl_seconds\":20,\"last_heartbeat\":\"x\"}}}}";
	const char *stopping = "{\"last_heartbeat\":\"t\",\"lease_extended\":true,\"state\":\"stopping\",\"ttl_seconds\":9}";
	const char *notext = "{\"last_heartbeat\":\"t\",\"lease_extended\":false,\"state\":\"active\",\"ttl_seconds\":9}";
	const char *e401 = "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"revoked\"}}";
	(void)st;
	wpr_lease_init(&l, 0);
	assert_int_equal(wpr_lease_answer(&l, 412, b412, strlen(b412), 10), WPR_LEASE_RELEASE);
	assert_int_equal(l.ttl_ms, 20000);
	assert_string_equal(l.last, "x");
	wpr_lease_init(&l, 0);
	assert_int_equal(wpr_lease_answer(&l, 200, stopping, strlen(stopping), 10), WPR_LEASE_STOP);
	assert_non_null(strstr(l.reason, "stopping"));
	wpr_lease_init(&l, 0);
	assert_int_equal(wpr_lease_answer(&l, 200, notext, strlen(notext), 10), WPR_LEASE_STOP);
	wpr_lease_init(&l, 0);
	assert_int_equal(wpr_lease_answer(&l, 401, e401, strlen(e401), 10), WPR_LEASE_STOP);
	assert_non_null(strstr(l.reason, "revoked"));
	wpr_lease_init(&l, 0);
	assert_int_equal(wpr_lease_answer(&l, 500, "", 0, 10), WPR_LEASE_RETRY);
	assert_int_equal(wpr_lease_answer(&l, 429, "", 0, 10), WPR_LEASE_RETRY);
	assert_int_equal(wpr_lease_answer(&l, 0, NULL, 0, 10), WPR_LEASE_RETRY);
	assert_int_equal(wpr_lease_answer(&l, 200, "null", 4, 10), WPR_LEASE_RETRY);
	assert_int_equal(wpr_lease_answer(&l, 200, "{garbage", 8, 10), WPR_LEASE_RETRY);
	assert_int_equal(l.last_ok_ms, 0); /* none of these extended it */
	assert_true(wpr_lease_lost(&l, 90001));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fatal),
		cmocka_unit_test(test_secret),
		cmocka_unit_test(test_error_text),
		cmocka_unit_test(test_lease_keep_and_interval),
		cmocka_unit_test(test_lease_ends),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
