/* proxy/approvals: holds decided, denied, timed out, cancelled; the high-water mark; ids; the list JSON; no
 * callback after cancel or free; the callback deferred to the loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "uvtest.h"
#include "core/admin.h"
#include "proxy/approvals.h"

struct got {
	int calls;
	apv_outcome o;
	char by[APV_MAX_BY + 1];
	int ticks;
	uint64_t last_waited;
	apv *cancel_in_tick; /* the progress callback cancels this hold */
	const char *cancel_id;
};

static void on_done(void *ud, apv_outcome o, const char *by)
{
	struct got *g = ud;
	g->calls++;
	g->o = o;
	snprintf(g->by, sizeof g->by, "%s", by);
}

static void on_tick(void *ud, uint64_t waited, uint64_t timeout)
{
	struct got *g = ud;
	(void)timeout;
	g->ticks++;
	g->last_waited = waited;
	if (g->cancel_in_tick)
		apv_cancel(g->cancel_in_tick, g->cancel_id);
}

static bool called(void *ud) { return ((struct got *)ud)->calls > 0; }

static const apv_info info1 = {
	.route = "files", .client = "ops-alice", .client_addr = "10.0.0.7:5555", .session = "s-1",
	.method = "tools/call", .tool = "move_file", .rule = "ops-moves",
	.args_redacted_json = "{\"from\":\"/a\",\"to\":\"/b\",\"token\":\"[REDACTED]\"}", .trace_id = "0af7651916cd43dd8448eb211c80319c",
};

static int64_t metric(const char *name, const char *labels)
{
	return adm_value(strstr(name, "_total") ? adm_counter(name, NULL, labels) : adm_gauge(name, NULL, labels));
}

static void test_approve_deny(void **st)
{
	apv *a = apv_new(loop, 10);
	struct got g1 = { 0 }, g2 = { 0 };
	char id1[APV_ID_LEN + 1], id2[APV_ID_LEN + 1], err[200];
	(void)st;
	adm_metrics_reset();
	assert_non_null(a);
	assert_int_equal(apv_hold(a, &info1, 60000, on_done, &g1, id1), 0);
	assert_int_equal(apv_hold(a, &info1, 60000, on_done, &g2, id2), 0);
	assert_int_equal(strlen(id1), APV_ID_LEN);
	assert_string_not_equal(id1, id2);
	for (int i = 0; i < APV_ID_LEN; i++)
		assert_non_null(strchr("abcdefghijklmnopqrstuvwxyz234567", id1[i]));
	assert_int_equal(apv_pending(a), 2);
	assert_int_equal(metric("postern_approvals_pending", NULL), 2);

	/* Deferred: no callback inside apv_decide; the hold stops counting at once; a second decision fails. */
	assert_int_equal(apv_decide(a, id1, true, "uid 1000 (alice)", err, sizeof err), 0);
	assert_int_equal(g1.calls, 0);
	assert_int_equal(apv_pending(a), 1);
	assert_int_equal(apv_decide(a, id1, false, "uid 0 (root)", err, sizeof err), -ENOENT);
	assert_non_null(strstr(err, "already decided"));
	assert_true(run_until(called, &g1, 1000));
	assert_int_equal(g1.o, APV_APPROVED);
	assert_string_equal(g1.by, "uid 1000 (alice)");

	assert_int_equal(apv_decide(a, id2, false, "http 127.0.0.1:4000", err, sizeof err), 0);
	assert_true(run_until(called, &g2, 1000));
	assert_int_equal(g2.o, APV_DENIED);
	assert_string_equal(g2.by, "http 127.0.0.1:4000");
	run_for(20);
	assert_int_equal(g1.calls, 1);
	assert_int_equal(g2.calls, 1);

	assert_int_equal(apv_decide(a, "nope", true, "x", err, sizeof err), -ENOENT);
	assert_non_null(strstr(err, "no held call with id nope"));
	assert_int_equal(apv_pending(a), 0);
	assert_int_equal(metric("postern_approvals_pending", NULL), 0);
	assert_int_equal(metric("postern_approvals_total", "outcome=\"approved\""), 1);
	assert_int_equal(metric("postern_approvals_total", "outcome=\"denied\""), 1);
	apv_free(a);
	run_for(10);
}

static void test_timeout_progress(void **st)
{
	apv *a = apv_new(loop, 10);
	struct got g = { 0 }, g2 = { 0 };
	char id[APV_ID_LEN + 1], id2[APV_ID_LEN + 1], err[200];
	uint64_t t0 = uv_now(loop);
	(void)st;
	assert_int_equal(apv_hold(a, &info1, 150, on_done, &g, id), 0);
	assert_int_equal(apv_progress(a, id, 40, on_tick), 0);
	assert_int_equal(apv_progress(a, id, 0, on_tick), -EINVAL);
	assert_int_equal(apv_progress(a, "zzzzzzzzzzzz", 40, on_tick), -ENOENT);
	assert_true(run_until(called, &g, 2000));
	assert_int_equal(g.o, APV_TIMED_OUT);
	assert_string_equal(g.by, "timeout");
	assert_true(uv_now(loop) - t0 >= 150);
	assert_in_range(g.ticks, 1, 4); /* at 40, 80, 120 ms (fewer on a loaded machine: a late tick is not repeated) */
	assert_in_range(g.last_waited, 40, 149);
	assert_int_equal(apv_decide(a, id, true, "late", err, sizeof err), -ENOENT);
	assert_int_equal(metric("postern_approvals_total", "outcome=\"timed_out\""), 1);

	/* A progress callback that cancels its own hold: no further tick, no callback. */
	g2.cancel_in_tick = a;
	assert_int_equal(apv_hold(a, &info1, 1000, on_done, &g2, id2), 0);
	g2.cancel_id = id2;
	assert_int_equal(apv_progress(a, id2, 20, on_tick), 0);
	run_for(120);
	assert_int_equal(g2.ticks, 1);
	assert_int_equal(g2.calls, 0);
	assert_int_equal(apv_pending(a), 0);

	/* The default and the longest timeout */
	assert_int_equal(apv_hold(a, &info1, APV_MAX_TIMEOUT_MS + 1, on_done, &g, id), -EINVAL);
	assert_int_equal(apv_hold(a, &info1, 1000, NULL, &g, id), -EINVAL);
	assert_int_equal(apv_hold(a, &info1, 0, on_done, &g, id), 0);
	{
		char *js;
		json_t *v;
		assert_int_equal(apv_list_json(a, &js, NULL), 0);
		v = json_loads(js, 0, NULL);
		assert_int_equal(json_integer_value(json_object_get(json_array_get(v, 0), "timeout_ms")),
				 APV_DEFAULT_TIMEOUT_MS);
		json_decref(v);
		free(js);
	}
	apv_cancel(a, id);
	apv_free(a);
	run_for(10);
}

static void test_cancel_free_highwater(void **st)
{
	apv *a = apv_new(loop, 3);
	struct got g[4] = { 0 };
	char id[4][APV_ID_LEN + 1], err[200];
	int64_t cancelled0;
	(void)st;
	cancelled0 = metric("postern_approvals_total", "outcome=\"cancelled\"");
	for (int i = 0; i < 3; i++)
		assert_int_equal(apv_hold(a, &info1, 50, on_done, &g[i], id[i]), 0);
	assert_int_equal(apv_hold(a, &info1, 50, on_done, &g[3], id[3]), -EBUSY);
	assert_int_equal(apv_pending(a), 3);

	/* cancel while waiting, and cancel after a decision whose callback has not run yet */
	apv_cancel(a, id[0]);
	assert_int_equal(apv_decide(a, id[1], true, "uid 0 (root)", err, sizeof err), 0);
	apv_cancel(a, id[1]);
	apv_cancel(a, "unknown-id");
	assert_int_equal(apv_pending(a), 1);
	/* room again below the mark */
	assert_int_equal(apv_hold(a, &info1, 50, on_done, &g[3], id[3]), 0);
	run_for(150);
	assert_int_equal(g[0].calls, 0);
	assert_int_equal(g[1].calls, 0);
	assert_int_equal(g[2].calls, 1);
	assert_int_equal(g[2].o, APV_TIMED_OUT);
	assert_int_equal(g[3].calls, 1);
	memset(g, 0, sizeof g);

	/* free with holds waiting and one decided: no callback afterwards, memory released on the loop */
	assert_int_equal(apv_hold(a, &info1, 30, on_done, &g[0], id[0]), 0);
	assert_int_equal(apv_hold(a, &info1, 30, on_done, &g[1], id[1]), 0);
	assert_int_equal(apv_decide(a, id[1], false, "x", err, sizeof err), 0);
	apv_free(a);
	run_for(100);
	assert_int_equal(g[0].calls, 0);
	assert_int_equal(g[1].calls, 0);
	assert_int_equal(metric("postern_approvals_total", "outcome=\"cancelled\"") - cancelled0, 2);
	apv_free(NULL);
}

static void test_ids_unique(void **st)
{
	apv *a = apv_new(loop, 600);
	struct got g = { 0 };
	char (*ids)[APV_ID_LEN + 1] = calloc(600, sizeof *ids);
	(void)st;
	for (int i = 0; i < 600; i++)
		assert_int_equal(apv_hold(a, &info1, 60000, on_done, &g, ids[i]), 0);
	for (int i = 0; i < 600; i++)
		for (int j = i + 1; j < 600; j++)
			assert_string_not_equal(ids[i], ids[j]);
	assert_int_equal(apv_pending(a), 600);
	apv_free(a);
	run_for(10);
	free(ids);
	assert_int_equal(g.calls, 0);
}

static void test_list_json(void **st)
{
	apv *a = apv_new(loop, 10);
	struct got g = { 0 };
	char id1[APV_ID_LEN + 1], id2[APV_ID_LEN + 1], id3[APV_ID_LEN + 1], *js, *big;
	apv_info i2 = { .route = "r2", .tool = "t\xc3\xa9\xff", .args_redacted_json = "not json" };
	apv_info i3 = { .tool = "big" };
	json_t *v, *e;
	size_t len;
	(void)st;
	assert_int_equal(apv_list_json(a, &js, &len), 0);
	assert_string_equal(js, "[]");
	free(js);
	assert_int_equal(apv_hold(a, &info1, 60000, on_done, &g, id1), 0);
	run_for(15);
	assert_int_equal(apv_hold(a, &i2, 1000, on_done, &g, id2), 0);
	big = malloc(APV_MAX_ARGS + 100);
	memset(big, 'x', APV_MAX_ARGS + 99);
	big[APV_MAX_ARGS + 99] = 0;
	big[0] = '"';
	i3.args_redacted_json = big;
	assert_int_equal(apv_hold(a, &i3, 1000, on_done, &g, id3), 0);
	free(big);
	assert_int_equal(apv_list_json(a, &js, &len), 0);
	assert_int_equal(len, strlen(js));
	v = json_loads(js, 0, NULL);
	free(js);
	assert_non_null(v);
	assert_int_equal(json_array_size(v), 3);
	/* oldest first, every field */
	e = json_array_get(v, 0);
	assert_string_equal(json_string_value(json_object_get(e, "id")), id1);
	assert_string_equal(json_string_value(json_object_get(e, "route")), "files");
	assert_string_equal(json_string_value(json_object_get(e, "client")), "ops-alice");
	assert_string_equal(json_string_value(json_object_get(e, "client_addr")), "10.0.0.7:5555");
	assert_string_equal(json_string_value(json_object_get(e, "session")), "s-1");
	assert_string_equal(json_string_value(json_object_get(e, "method")), "tools/call");
	assert_string_equal(json_string_value(json_object_get(e, "tool")), "move_file");
	assert_string_equal(json_string_value(json_object_get(e, "rule")), "ops-moves");
	assert_string_equal(json_string_value(json_object_get(e, "trace_id")), "0af7651916cd43dd8448eb211c80319c");
	assert_string_equal(json_string_value(json_object_get(json_object_get(e, "args"), "token")), "[REDACTED]");
	assert_true(json_integer_value(json_object_get(e, "waited_ms")) >= 10);
	assert_in_range(json_integer_value(json_object_get(e, "expires_in_ms")), 59000, 59995);
	assert_int_equal(strlen(json_string_value(json_object_get(e, "since"))), 24); /* 2026-01-02T03:04:05.678Z */
	assert_int_equal(json_string_value(json_object_get(e, "since"))[23], 'Z');
	/* absent fields are null; an invalid UTF-8 byte ends the copy; text that is not JSON is a preview */
	e = json_array_get(v, 1);
	assert_true(json_is_null(json_object_get(e, "client")));
	assert_string_equal(json_string_value(json_object_get(e, "tool")), "t\xc3\xa9");
	assert_true(json_is_null(json_object_get(e, "args")));
	assert_string_equal(json_string_value(json_object_get(e, "args_preview")), "not json");
	assert_true(json_is_false(json_object_get(e, "args_truncated")));
	e = json_array_get(v, 2);
	assert_true(json_is_true(json_object_get(e, "args_truncated")));
	assert_int_equal(strlen(json_string_value(json_object_get(e, "args_preview"))), APV_MAX_ARGS);
	json_decref(v);

	/* a decided hold leaves the list at once */
	assert_int_equal(apv_decide(a, id1, true, "me", NULL, 0), 0);
	assert_int_equal(apv_list_json(a, &js, &len), 0);
	assert_null(strstr(js, id1));
	assert_non_null(strstr(js, id2));
	free(js);
	apv_free(a);
	run_for(10);
	assert_int_equal(g.calls, 0);
}

static int group_setup(void **st)
{
	(void)st;
	uvt_init(NULL);
	return 0;
}

static int group_teardown(void **st)
{
	adm_metrics_reset();
	return uvt_group_teardown(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		UVT_TEST(test_approve_deny),
		UVT_TEST(test_timeout_progress),
		UVT_TEST(test_cancel_free_highwater),
		UVT_TEST(test_ids_unique),
		UVT_TEST(test_list_json),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
