/* A session's event handling: dedupe, permissions, pending tools, history reconcile, idle countdown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <string.h>

#include "worker/wevents.h"

static enum wev_res feed(wev *s, const char *json, uint64_t now)
{
	json_t *ev = json_loads(json, 0, NULL);
	const char *why;
	enum wev_res r = wev_event(s, ev, now, &why);
	json_decref(ev);
	return r;
}

static enum wev_res hist(wev *s, const char *json)
{
	json_t *ev = json_loads(json, 0, NULL);
	const char *why;
	enum wev_res r = wev_history_event(s, ev, &why);
	json_decref(ev);
	return r;
}

static void take_is(wev *s, const char *id)
{
	json_t *c = wev_take(s);
	if (!id) {
		assert_null(c);
		return;
	}
	assert_non_null(c);
	assert_string_equal(json_string_value(json_object_get(c, "id")), id);
	json_decref(c);
}

static void test_permissions(void **st)
{
	wev *s = wev_new(60000);
	(void)st;
	assert_int_equal(feed(s, "{\"type\":\"agent.tool_use\",\"id\":\"a\",\"name\":\"bash\",\"input\":{}}", 0), WEV_OK);
	assert_int_equal(feed(s, "{\"type\":\"agent.tool_use\",\"id\":\"a\",\"name\":\"bash\",\"input\":{}}", 0), WEV_OK);
	take_is(s, "a");
	take_is(s, NULL); /* the duplicate was not queued */
	assert_int_equal(feed(s, "{\"type\":\"agent.tool_use\",\"id\":\"b\",\"name\":\"read\",\"evaluated_permission\":\"ask\"}", 0),
			 WEV_HELD);
	take_is(s, NULL);
	assert_int_equal(wev_outstanding(s), 1);
	assert_int_equal(feed(s, "{\"type\":\"user.tool_confirmation\",\"tool_use_id\":\"b\",\"result\":\"allow\"}", 0), WEV_OK);
	take_is(s, "b");
	assert_int_equal(feed(s, "{\"type\":\"agent.tool_use\",\"id\":\"c\",\"name\":\"bash\",\"evaluated_permission\":\"ask\"}", 0),
			 WEV_HELD);
	assert_int_equal(feed(s, "{\"type\":\"user.tool_confirmation\",\"tool_use_id\":\"c\",\"result\":\"deny\"}", 0),
			 WEV_NOT_RUN);
	assert_int_equal(feed(s, "{\"type\":\"agent.tool_use\",\"id\":\"d\",\"name\":\"bash\",\"evaluated_permission\":\"deny\"}", 0),
			 WEV_NOT_RUN);
	assert_int_equal(feed(s, "{\"type\":\"agent.tool_use\",\"id\":\"e\",\"name\":\"bash\",\"evaluated_permission\":\"maybe\"}", 0),
			 WEV_NOT_RUN);
	/* a verdict that is not a string (an array, an object, a number, true) is unknown too, not "absent"; case counts */
	static const char *const odd[] = { "[\"deny\"]", "{\"v\":\"allow\"}", "0", "true", "\"DENY\"", "\"Allow\"" };
	for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
		char ev[160];
		snprintf(ev, sizeof ev, "{\"type\":\"agent.tool_use\",\"id\":\"e%zu\",\"name\":\"bash\",\"evaluated_permission\":%s}",
			 i + 1, odd[i]);
		assert_int_equal(feed(s, ev, 0), WEV_NOT_RUN);
	}
	take_is(s, NULL);
	assert_int_equal(feed(s, "{\"type\":\"agent.tool_use\",\"id\":\"f\",\"name\":\"web_fetch\"}", 0), WEV_NOT_OURS);
	assert_int_equal(feed(s, "{\"type\":\"agent.custom_tool_use\",\"id\":\"g\",\"name\":\"bash\"}", 0), WEV_NOT_OURS);
	take_is(s, NULL);
	assert_int_equal(wev_outstanding(s), 0);
	/* a confirmation before its call: the verdict waits for it */
	assert_int_equal(feed(s, "{\"type\":\"user.tool_confirmation\",\"tool_use_id\":\"h\",\"result\":\"allow\"}", 0), WEV_OK);
	assert_int_equal(feed(s, "{\"type\":\"agent.tool_use\",\"id\":\"h\",\"name\":\"grep\",\"evaluated_permission\":\"ask\"}", 0),
			 WEV_OK);
	take_is(s, "h");
	wev_free(s);
}

static void test_malformed_unknown_end(void **st)
{
	wev *s = wev_new(60000);
	(void)st;
	assert_int_equal(feed(s, "[1,2]", 0), WEV_MALFORMED);
	assert_int_equal(feed(s, "{\"id\":\"x\"}", 0), WEV_MALFORMED);
	assert_int_equal(feed(s, "{\"type\":\"agent.tool_use\",\"name\":\"bash\"}", 0), WEV_MALFORMED);
	assert_int_equal(feed(s, "{\"type\":\"agent.tool_use\",\"id\":7,\"name\":\"bash\"}", 0), WEV_MALFORMED);
	assert_int_equal(feed(s, "{\"type\":\"vendor.thing\"}", 0), WEV_UNKNOWN);
	assert_int_equal(feed(s, "{\"type\":\"agent.message\",\"content\":[]}", 0), WEV_OK);
	assert_int_equal(feed(s, "{\"type\":\"session.status_terminated\"}", 0), WEV_END);
	assert_int_equal(feed(s, "{\"type\":\"session.deleted\"}", 0), WEV_END);
	wev_free(s);
}

static void test_history(void **st)
{
	wev *s = wev_new(60000);
	(void)st;
	wev_history_begin(s);
	/* answered in the history: not run; unanswered: run; ask with its allow later in the history: run */
	hist(s, "{\"type\":\"agent.tool_use\",\"id\":\"1\",\"name\":\"bash\"}");
	hist(s, "{\"type\":\"user.tool_result\",\"tool_use_id\":\"1\",\"content\":[]}");
	hist(s, "{\"type\":\"agent.tool_use\",\"id\":\"2\",\"name\":\"bash\"}");
	hist(s, "{\"type\":\"agent.tool_use\",\"id\":\"3\",\"name\":\"bash\",\"evaluated_permission\":\"ask\"}");
	hist(s, "{\"type\":\"user.tool_confirmation\",\"tool_use_id\":\"3\",\"result\":\"allow\"}");
	wev_history_end(s, 0);
	take_is(s, "2");
	take_is(s, "3");
	take_is(s, NULL);
	/* the live stream replays them: nothing runs twice */
	feed(s, "{\"type\":\"agent.tool_use\",\"id\":\"2\",\"name\":\"bash\"}", 0);
	feed(s, "{\"type\":\"agent.tool_use\",\"id\":\"1\",\"name\":\"bash\"}", 0);
	take_is(s, NULL);
	/* a second reconcile (after a reconnect) does not queue what was taken */
	wev_history_begin(s);
	hist(s, "{\"type\":\"agent.tool_use\",\"id\":\"2\",\"name\":\"bash\"}");
	wev_history_end(s, 0);
	take_is(s, NULL);
	wev_free(s);
}

static void test_idle(void **st)
{
	wev *s = wev_new(1000);
	(void)st;
	feed(s, "{\"type\":\"session.status_idle\",\"stop_reason\":{\"type\":\"requires_action\"}}", 0);
	assert_false(wev_idle_due(s, false, 100000));
	feed(s, "{\"type\":\"session.status_idle\",\"stop_reason\":{\"type\":\"end_turn\"}}", 10);
	assert_false(wev_idle_due(s, false, 500));
	assert_false(wev_idle_due(s, true, 2000)); /* never while a call runs */
	assert_true(wev_idle_due(s, false, 1010));
	/* any other event disarms; a confirmation does not */
	feed(s, "{\"type\":\"user.tool_confirmation\",\"tool_use_id\":\"z\",\"result\":\"allow\"}", 20);
	assert_true(wev_idle_due(s, false, 1010));
	feed(s, "{\"type\":\"agent.message\"}", 30);
	assert_false(wev_idle_due(s, false, 5000));
	/* a held call keeps the countdown from starting */
	feed(s, "{\"type\":\"agent.tool_use\",\"id\":\"q\",\"name\":\"bash\",\"evaluated_permission\":\"ask\"}", 40);
	feed(s, "{\"type\":\"session.status_idle\",\"stop_reason\":{\"type\":\"end_turn\"}}", 50);
	assert_false(wev_idle_due(s, false, 5000));
	/* history ending in an end_turn idle arms it */
	wev_free(s);
	s = wev_new(1000);
	wev_history_begin(s);
	hist(s, "{\"type\":\"agent.message\"}");
	hist(s, "{\"type\":\"session.status_idle\",\"stop_reason\":{\"type\":\"end_turn\"}}");
	wev_history_end(s, 100);
	assert_true(wev_idle_due(s, false, 1100));
	wev_free(s);
}

static void test_caps(void **st)
{
	wev *s = wev_new(0);
	char buf[128];
	(void)st;
	for (int i = 0; i < WEV_MAX_QUEUE + 10; i++) {
		snprintf(buf, sizeof buf, "{\"type\":\"agent.tool_use\",\"id\":\"t%d\",\"name\":\"bash\"}", i);
		feed(s, buf, 0);
	}
	assert_int_equal(wev_outstanding(s), WEV_MAX_QUEUE);
	assert_int_equal(wev_idle_deadline(s), 0);
	wev_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_permissions),
		cmocka_unit_test(test_malformed_unknown_end),
		cmocka_unit_test(test_history),
		cmocka_unit_test(test_idle),
		cmocka_unit_test(test_caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
