/* One battery of store-level cases (ctl_store.h) run against every store this build has: SQLite in a temp
 * dir, and Redis on a redis-server this test starts on a free loopback port (appendonly, appendfsync always,
 * in a temp dir) and stops. The Redis store's own cases (a dead or hung server, restart, replicas, races)
 * are in test_ctl_redis.c. */
#include "ctl_store_fx.h"

static void test_enqueue_poll_ack(void **state)
{
	fx *f = *state;
	char a[40], b[40], c[40], got[40];
	enqueue(f, f->env, a, NULL);
	enqueue(f, f->env, b, NULL);
	enqueue(f, f->env, c, NULL);
	poll1(f, "w1", 60000, got);
	assert_string_equal(got, a); /* oldest first */
	poll1(f, "w1", 60000, got);
	assert_string_equal(got, b); /* a is delivered and not old enough to be re-offered */
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, a, f->err, sizeof f->err), 0);
	work_state(f, a, "starting");
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, a, f->err, sizeof f->err), -EINVAL);
	/* an undelivered item can be acknowledged too (the poll answer was lost on the way) */
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, c, f->err, sizeof f->err), 0);
	poll1(f, "w1", 60000, got);
	assert_string_equal(got, ""); /* a and c acknowledged, b delivered */
	json_t *w = NULL;
	assert_int_equal(OPS(f)->work_get(f->s, f->env, a, &w, f->err, sizeof f->err), 0);
	assert_non_null(jstr(w, "acknowledged_at"));
	assert_string_equal(jstr(w, "environment_id"), f->env);
	assert_string_equal(jstr(json_object_get(w, "data"), "type"), "session");
	json_decref(w);
	/* another environment's id, an unknown id */
	assert_int_equal(OPS(f)->work_get(f->s, "env_nosuch", a, &w, f->err, sizeof f->err), -ENOENT);
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, "work_nosuch", f->err, sizeof f->err), -ENOENT);
	assert_int_equal(OPS(f)->work_poll(f->s, "env_nosuch", "w1", 0, NULL, &w, f->err, sizeof f->err), 0);
	assert_null(w);
}

static void test_reoffer_after_reclaim(void **state)
{
	fx *f = *state;
	char a[40], got[40];
	enqueue(f, f->env, a, NULL);
	poll1(f, "w1", 5000, got);
	assert_string_equal(got, a);
	poll1(f, "w2", 5000, got);
	assert_string_equal(got, ""); /* delivered 0 s ago: not yet */
	msleep(300);
	poll1(f, "w2", 200, got);
	assert_string_equal(got, a); /* the ack never came: offered again */
	poll1(f, "w3", 5000, got);
	assert_string_equal(got, ""); /* and delivered to w2 now */
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, a, f->err, sizeof f->err), 0);
	msleep(300);
	poll1(f, "w3", 200, got);
	assert_string_equal(got, ""); /* acknowledged: never again */
}

static void test_no_double_delivery(void **state)
{
	fx *f = *state;
	enum { N = 24 };
	char ids[N][40], got[40];
	int seen[N] = {0}, polls = 0;
	for (int i = 0; i < N; i++)
		enqueue(f, f->env, ids[i], NULL);
	for (int i = 0; i < 4 * N; i++) {
		poll1(f, i % 2 ? "wa" : "wb", 60000, got);
		if (!got[0])
			break;
		polls++;
		int k = -1;
		for (int j = 0; j < N; j++)
			if (!strcmp(ids[j], got))
				k = j;
		assert_true(k >= 0);
		seen[k]++;
		assert_int_equal(OPS(f)->work_ack(f->s, f->env, got, f->err, sizeof f->err), 0);
	}
	assert_int_equal(polls, N);
	for (int j = 0; j < N; j++)
		assert_int_equal(seen[j], 1);
}


static void test_heartbeat(void **state)
{
	fx *f = *state;
	char a[40], q[40], got[40], first[40];
	ctl_lease l;
	enqueue(f, f->env, q, NULL);
	/* not acknowledged: no lease to take */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, q, "NO_HEARTBEAT", 30, &l, f->err, sizeof f->err), -ESTALE);
	assert_string_equal(l.state, "queued");
	poll1(f, "w1", 60000, got);
	assert_string_equal(got, q);
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, q, f->err, sizeof f->err), 0);
	snprintf(a, sizeof a, "%s", q);
	/* a heartbeat that was never given */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, "2026-01-01T00:00:00.000000Z", 30, &l, f->err,
						sizeof f->err),
			 -ESTALE);
	assert_string_equal(l.state, "starting");
	assert_string_equal(l.last_heartbeat, "");
	assert_false(l.lease_extended);
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, "NO_HEARTBEAT", 30, &l, f->err, sizeof f->err), 0);
	assert_string_equal(l.state, "active");
	assert_true(l.lease_extended);
	assert_int_equal(l.ttl_seconds, 30);
	assert_int_equal(strlen(l.last_heartbeat), 27); /* 2026-12-07T15:04:05.123456Z */
	snprintf(first, sizeof first, "%s", l.last_heartbeat);
	/* a second first beat: someone else holds it now; 412 with the lease as it is */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, "NO_HEARTBEAT", 60, &l, f->err, sizeof f->err), -ESTALE);
	assert_string_equal(l.state, "active");
	assert_string_equal(l.last_heartbeat, first);
	assert_int_equal(l.ttl_seconds, 30);
	assert_false(l.lease_extended);
	/* echo: extended, a new value; the old one is stale from now on */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, first, 45, &l, f->err, sizeof f->err), 0);
	assert_true(l.lease_extended);
	assert_int_equal(l.ttl_seconds, 45);
	assert_string_not_equal(l.last_heartbeat, first);
	char second[40];
	snprintf(second, sizeof second, "%s", l.last_heartbeat);
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, first, 45, &l, f->err, sizeof f->err), -ESTALE);
	assert_string_equal(l.last_heartbeat, second);
	json_t *w = NULL;
	assert_int_equal(OPS(f)->work_get(f->s, f->env, a, &w, f->err, sizeof f->err), 0);
	assert_string_equal(jstr(w, "state"), "active");
	assert_string_equal(jstr(w, "latest_heartbeat_at"), second);
	assert_non_null(jstr(w, "started_at"));
	json_decref(w);
	assert_int_equal(OPS(f)->work_heartbeat(f->s, "env_nosuch", a, second, 45, &l, f->err, sizeof f->err), -ENOENT);
}

static void test_stop(void **state)
{
	fx *f = *state;
	char a[40], b[40];
	ctl_lease l;
	claim(f, a);
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, "NO_HEARTBEAT", 30, &l, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, a, false, f->err, sizeof f->err), 0);
	work_state(f, a, "stopping");
	/* the worker learns it on its next beat: not extended */
	char hb[40];
	snprintf(hb, sizeof hb, "%s", l.last_heartbeat);
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, hb, 30, &l, f->err, sizeof f->err), 0);
	assert_string_equal(l.state, "stopping");
	assert_false(l.lease_extended);
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, a, true, f->err, sizeof f->err), 0);
	work_state(f, a, "stopped");
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, a, true, f->err, sizeof f->err), -EALREADY);
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, a, false, f->err, sizeof f->err), -EALREADY);
	json_t *w = NULL;
	assert_int_equal(OPS(f)->work_get(f->s, f->env, a, &w, f->err, sizeof f->err), 0);
	assert_non_null(jstr(w, "stop_requested_at"));
	assert_non_null(jstr(w, "stopped_at"));
	json_decref(w);
	/* a queued item has nobody to stop gracefully: stopped, and out of the queue */
	enqueue(f, f->env, b, NULL);
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, b, false, f->err, sizeof f->err), 0);
	work_state(f, b, "stopped");
	char got[40];
	poll1(f, "w1", 0, got);
	assert_string_equal(got, "");
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, "work_nosuch", true, f->err, sizeof f->err), -ENOENT);
}

static void test_expire(void **state)
{
	fx *f = *state;
	char a[40], b[40], c[40], d[40], got[40], hb[40];
	ctl_lease l;
	claim(f, a); /* beaten with a 1 s lease */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, "NO_HEARTBEAT", 1, &l, f->err, sizeof f->err), 0);
	snprintf(hb, sizeof hb, "%s", l.last_heartbeat);
	claim(f, b); /* acknowledged, never beaten */
	claim(f, c); /* beaten with a long lease */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, c, "NO_HEARTBEAT", 600, &l, f->err, sizeof f->err), 0);
	claim(f, d); /* asked to stop, then gone */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, d, "NO_HEARTBEAT", 1, &l, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, d, false, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->work_expire(f->s, 600, f->err, sizeof f->err), 0);
	msleep(2100);
	/* lease_ttl 2 s for the never-beaten one */
	assert_int_equal(OPS(f)->work_expire(f->s, 2, f->err, sizeof f->err), 3);
	assert_int_equal(OPS(f)->work_expire(f->s, 2, f->err, sizeof f->err), 0); /* a second replica's timer */
	work_state(f, a, "queued");
	work_state(f, b, "queued");
	work_state(f, c, "active");
	work_state(f, d, "stopped");
	json_t *w = NULL;
	assert_int_equal(OPS(f)->work_get(f->s, f->env, a, &w, f->err, sizeof f->err), 0);
	assert_true(json_is_null(json_object_get(w, "latest_heartbeat_at")));
	assert_true(json_is_null(json_object_get(w, "acknowledged_at")));
	json_decref(w);
	/* the old holder's next beat is stale; another worker takes both */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, hb, 1, &l, f->err, sizeof f->err), -ESTALE);
	assert_string_equal(l.state, "queued");
	poll1(f, "w2", 60000, got);
	assert_string_equal(got, a);
	poll1(f, "w2", 60000, got);
	assert_string_equal(got, b);
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, a, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, "NO_HEARTBEAT", 30, &l, f->err, sizeof f->err), 0);
}

static void test_metadata(void **state)
{
	fx *f = *state;
	char a[40];
	json_t *w = NULL;
	enqueue(f, f->env, a, json_pack("{s:s, s:s}", "team", "infra", "tier", "1"));
	json_t *patch = json_pack("{s:s, s:n, s:s}", "team", "core", "tier", "new", "x");
	assert_int_equal(OPS(f)->work_update_metadata(f->s, f->env, a, patch, &w, f->err, sizeof f->err), 0);
	json_t *want = json_pack("{s:s, s:s}", "team", "core", "new", "x");
	assert_true(json_equal(json_object_get(w, "metadata"), want));
	json_decref(w);
	assert_int_equal(OPS(f)->work_get(f->s, f->env, a, &w, f->err, sizeof f->err), 0);
	assert_true(json_equal(json_object_get(w, "metadata"), want));
	json_decref(w);
	json_decref(patch);
	/* every key deleted: an empty object, not an array */
	patch = json_pack("{s:n, s:n}", "team", "new");
	assert_int_equal(OPS(f)->work_update_metadata(f->s, f->env, a, patch, &w, f->err, sizeof f->err), 0);
	assert_true(json_is_object(json_object_get(w, "metadata")));
	assert_int_equal(json_object_size(json_object_get(w, "metadata")), 0);
	json_decref(w);
	assert_int_equal(OPS(f)->work_update_metadata(f->s, f->env, "work_nosuch", patch, &w, f->err, sizeof f->err),
			 -ENOENT);
	json_decref(patch);
	json_decref(want);
}

/* Walks a list in pages of 2 and checks every id comes once, in the order made. */
typedef int (*list_fn)(fx *f, const char *after, ctl_page *p);
static void walk(fx *f, list_fn fn, char ids[][40], int n)
{
	char after[64] = "";
	int got = 0;
	for (int page = 0; page < n + 2; page++) {
		ctl_page p = {0};
		assert_int_equal(fn(f, after[0] ? after : NULL, &p), 0);
		for (size_t i = 0; i < json_array_size(p.data); i++) {
			assert_true(got < n);
			assert_string_equal(jstr(json_array_get(p.data, i), "id"), ids[got]);
			got++;
		}
		bool last = !p.next_page;
		if (p.next_page)
			snprintf(after, sizeof after, "%s", p.next_page);
		assert_true(json_array_size(p.data) == 2 || last);
		ctl_page_free(&p);
		if (last)
			break;
	}
	assert_int_equal(got, n);
}
static int list_envs(fx *f, const char *after, ctl_page *p)
{
	return OPS(f)->env_list(f->s, after, 2, p, f->err, sizeof f->err);
}
static int list_sessions(fx *f, const char *after, ctl_page *p)
{
	return OPS(f)->session_list(f->s, after, 2, p, f->err, sizeof f->err);
}
static int list_work(fx *f, const char *after, ctl_page *p)
{
	return OPS(f)->work_list(f->s, f->env, after, 2, p, f->err, sizeof f->err);
}

static void test_lists_paged(void **state)
{
	fx *f = *state;
	char envs[5][40], sess[5][40], work[5][40];
	snprintf(envs[0], 40, "%s", f->env);
	for (int i = 0; i < 5; i++) {
		if (i) {
			ctl_new_id("env", envs[i], 40);
			json_t *e = json_pack("{s:s, s:s, s:i}", "id", envs[i], "type", "environment", "n", i);
			assert_int_equal(OPS(f)->env_put(f->s, envs[i], e, f->err, sizeof f->err), 0);
			json_decref(e);
		}
		ctl_new_id("sesn", sess[i], 40);
		json_t *s = json_pack("{s:s, s:s, s:s}", "id", sess[i], "type", "session", "status", "idle");
		assert_int_equal(OPS(f)->session_put(f->s, sess[i], s, f->err, sizeof f->err), 0);
		json_decref(s);
		enqueue(f, f->env, work[i], NULL);
	}
	/* a replace keeps its place */
	json_t *e = json_pack("{s:s, s:s, s:s}", "id", envs[0], "type", "environment", "name", "renamed");
	assert_int_equal(OPS(f)->env_put(f->s, envs[0], e, f->err, sizeof f->err), 0);
	json_decref(e);
	walk(f, list_envs, envs, 5);
	walk(f, list_sessions, sess, 5);
	walk(f, list_work, work, 5);
	assert_int_equal(OPS(f)->env_get(f->s, envs[0], &e, f->err, sizeof f->err), 0);
	assert_string_equal(jstr(e, "name"), "renamed");
	json_decref(e);
	ctl_page p = {0};
	assert_int_equal(OPS(f)->env_list(f->s, "env_notacursor", 2, &p, f->err, sizeof f->err), -EINVAL);
	assert_int_equal(OPS(f)->env_get(f->s, "env_nosuch", &e, f->err, sizeof f->err), -ENOENT);
	/* sessions: get, delete */
	json_t *s = NULL;
	assert_int_equal(OPS(f)->session_get(f->s, sess[2], &s, f->err, sizeof f->err), 0);
	assert_string_equal(jstr(s, "status"), "idle");
	json_decref(s);
	assert_int_equal(OPS(f)->session_delete(f->s, sess[2], f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->session_get(f->s, sess[2], &s, f->err, sizeof f->err), -ENOENT);
	assert_int_equal(OPS(f)->session_delete(f->s, sess[2], f->err, sizeof f->err), -ENOENT);
	memmove(sess[2], sess[3], 2 * 40);
	walk(f, list_sessions, sess, 4);
}

static void test_stats(void **state)
{
	fx *f = *state;
	char a[40], b[40], c[40], got[40];
	ctl_stats st;
	assert_int_equal(OPS(f)->work_stats(f->s, f->env, &st, f->err, sizeof f->err), 0);
	assert_int_equal(st.depth, 0);
	assert_int_equal(st.pending, 0);
	assert_string_equal(st.oldest_queued_at, "");
	enqueue(f, f->env, a, NULL);
	enqueue(f, f->env, b, NULL);
	enqueue(f, f->env, c, NULL);
	poll1(f, "w1", 60000, got);
	poll1(f, "w2", 60000, got);
	poll1(f, "w2", 60000, got);
	poll1(f, "", 60000, got); /* no worker id: counts for nobody */
	assert_int_equal(OPS(f)->work_stats(f->s, f->env, &st, f->err, sizeof f->err), 0);
	assert_int_equal(st.depth, 3);
	assert_int_equal(st.pending, 3);
	assert_int_equal(st.workers_polling, 2);
	json_t *w = NULL;
	assert_int_equal(OPS(f)->work_get(f->s, f->env, a, &w, f->err, sizeof f->err), 0);
	assert_string_equal(st.oldest_queued_at, jstr(w, "created_at"));
	json_decref(w);
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, a, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->work_stats(f->s, f->env, &st, f->err, sizeof f->err), 0);
	assert_int_equal(st.depth, 2);
	assert_int_equal(st.pending, 2);
	assert_int_equal(OPS(f)->work_get(f->s, f->env, b, &w, f->err, sizeof f->err), 0);
	assert_string_equal(st.oldest_queued_at, jstr(w, "created_at"));
	json_decref(w);
	assert_int_equal(OPS(f)->work_stats(f->s, "env_other", &st, f->err, sizeof f->err), 0);
	assert_int_equal(st.depth, 0);
	assert_int_equal(st.workers_polling, 0);
}

static void test_events(void **state)
{
	fx *f = *state;
	char sid[40];
	uint64_t seq = 0, last = 0;
	ctl_new_id("sesn", sid, sizeof sid);
	json_t *s = json_pack("{s:s, s:s}", "id", sid, "type", "session");
	assert_int_equal(OPS(f)->session_put(f->s, sid, s, f->err, sizeof f->err), 0);
	json_decref(s);
	json_t *b1 = json_pack("[{s:s, s:i}, {s:s, s:i}, {s:s, s:i}]", "type", "user.message", "n", 1, "type",
			       "agent.message", "n", 2, "type", "agent.tool_use", "n", 3);
	assert_int_equal(OPS(f)->event_append(f->s, sid, b1, &seq, f->err, sizeof f->err), 0);
	assert_int_equal(seq, 3);
	assert_non_null(jstr(json_array_get(b1, 0), "processed_at")); /* set in the caller's objects */
	assert_int_equal(strncmp(jstr(json_array_get(b1, 2), "id"), "sevt_", 5), 0);
	json_t *b2 = json_pack("[{s:s, s:i}, {s:s, s:i}]", "type", "user.tool_result", "n", 4, "type",
			       "session.status_idle", "n", 5);
	assert_int_equal(OPS(f)->event_append(f->s, sid, b2, &seq, f->err, sizeof f->err), 0);
	assert_int_equal(seq, 5);
	/* a batch with a bad member: none of it (the API validates events before; the store still refuses whole) */
	json_t *bad = json_pack("[{s:s}, i]", "type", "user.message", 7);
	assert_true(OPS(f)->event_append(f->s, sid, bad, &seq, f->err, sizeof f->err) < 0);
	json_decref(bad);
	json_t *ev = NULL;
	assert_int_equal(OPS(f)->event_read(f->s, sid, 0, 100, &ev, &last, f->err, sizeof f->err), 0);
	assert_int_equal(json_array_size(ev), 5);
	assert_int_equal(last, 5);
	for (size_t i = 0; i < 5; i++) {
		json_t *e = json_array_get(ev, i);
		assert_int_equal(json_integer_value(json_object_get(e, "n")), (json_int_t)i + 1);
		assert_int_equal(json_integer_value(json_object_get(e, "_seq")), (json_int_t)i + 1);
		assert_int_equal(strncmp(jstr(e, "id"), "sevt_", 5), 0);
	}
	assert_string_equal(jstr(json_array_get(ev, 3), "id"), jstr(json_array_get(b2, 0), "id"));
	json_decref(ev);
	/* resume after 3 (Last-Event-ID), with a limit */
	assert_int_equal(OPS(f)->event_read(f->s, sid, 3, 1, &ev, &last, f->err, sizeof f->err), 0);
	assert_int_equal(json_array_size(ev), 1);
	assert_int_equal(last, 4);
	assert_string_equal(jstr(json_array_get(ev, 0), "type"), "user.tool_result");
	json_decref(ev);
	assert_int_equal(OPS(f)->event_read(f->s, sid, 5, 100, &ev, &last, f->err, sizeof f->err), 0);
	assert_int_equal(json_array_size(ev), 0);
	assert_int_equal(last, 5);
	json_decref(ev);
	assert_int_equal(OPS(f)->event_append(f->s, "sesn_nosuch", b2, &seq, f->err, sizeof f->err), -ENOENT);
	json_decref(b1);
	json_decref(b2);
	/* the API's largest batch (1000) in one append, read back in one page */
	json_t *big = json_array();
	for (int i = 0; i < 1000; i++)
		json_array_append_new(big, json_pack("{s:s, s:i}", "type", "agent.message", "n", 6 + i));
	assert_int_equal(OPS(f)->event_append(f->s, sid, big, &seq, f->err, sizeof f->err), 0);
	assert_int_equal(seq, 1005);
	json_decref(big);
	assert_int_equal(OPS(f)->event_read(f->s, sid, 5, 1000, &ev, &last, f->err, sizeof f->err), 0);
	assert_int_equal(json_array_size(ev), 1000);
	assert_int_equal(last, 1005);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 999), "n")), 1005);
	json_decref(ev);
	/* a deleted session takes its log along */
	assert_int_equal(OPS(f)->session_delete(f->s, sid, f->err, sizeof f->err), 0);
	ev = NULL;
	int rc = OPS(f)->event_read(f->s, sid, 0, 100, &ev, &last, f->err, sizeof f->err);
	assert_true(rc == -ENOENT || (rc == 0 && json_array_size(ev) == 0));
	json_decref(ev);
}

static void test_keys(void **state)
{
	fx *f = *state;
	uint8_t h1[32], h2[32];
	char id[40], env[40];
	for (int i = 0; i < 32; i++)
		h1[i] = (uint8_t)i, h2[i] = (uint8_t)(200 - i);
	assert_int_equal(OPS(f)->key_add(f->s, "env", "key_one", "workers", f->env, h1, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->key_add(f->s, "api", "key_two", "platform", NULL, h2, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->key_add(f->s, "api", "key_one", "again", NULL, h2, f->err, sizeof f->err), -EEXIST);
	char name[40] = "";
	assert_int_equal(OPS(f)->key_check(f->s, "env", h1, id, sizeof id, env, sizeof env, name, sizeof name), 0);
	assert_string_equal(id, "key_one");
	assert_string_equal(env, f->env);
	assert_string_equal(name, "workers"); /* a sessions token's name is its work item */
	assert_int_equal(OPS(f)->key_check(f->s, "api", h2, id, sizeof id, env, sizeof env, NULL, 0), 0);
	assert_string_equal(id, "key_two");
	/* a key of the other kind, an unknown hash */
	assert_int_equal(OPS(f)->key_check(f->s, "api", h1, id, sizeof id, env, sizeof env, NULL, 0), -ENOENT);
	h2[31] ^= 1;
	assert_int_equal(OPS(f)->key_check(f->s, "api", h2, id, sizeof id, env, sizeof env, NULL, 0), -ENOENT);
	assert_int_equal(OPS(f)->key_revoke(f->s, "key_one", f->err, sizeof f->err), 0);
	id[0] = 0;
	assert_int_equal(OPS(f)->key_check(f->s, "env", h1, id, sizeof id, env, sizeof env, NULL, 0), -EKEYREVOKED);
	assert_string_equal(id, "key_one"); /* which key it was, for the log */
	assert_int_equal(OPS(f)->key_revoke(f->s, "key_nosuch", f->err, sizeof f->err), -ENOENT);
}

/* event_tool (a tool use and its first result by id, through the stores' indexes) and event_last. */
static void test_event_index(void **state)
{
	fx *f = *state;
	char sid[40];
	uint64_t seq = 0, last = 99;
	json_t *use = NULL, *res = NULL;
	ctl_new_id("sesn", sid, sizeof sid);
	json_t *s = json_pack("{s:s, s:s}", "id", sid, "type", "session");
	assert_int_equal(OPS(f)->session_put(f->s, sid, s, f->err, sizeof f->err), 0);
	json_decref(s);
	assert_int_equal(OPS(f)->event_last(f->s, sid, &last, f->err, sizeof f->err), 0);
	assert_int_equal(last, 0);
	json_t *b1 = json_pack("[{s:s}, {s:s}, {s:s}]", "type", "agent.tool_use", "type", "agent.custom_tool_use", "type",
			       "agent.message");
	assert_int_equal(OPS(f)->event_append(f->s, sid, b1, &seq, f->err, sizeof f->err), 0);
	const char *tu = jstr(json_array_get(b1, 0), "id"), *ctu = jstr(json_array_get(b1, 1), "id");
	assert_int_equal(OPS(f)->event_tool(f->s, sid, tu, false, &use, &res, f->err, sizeof f->err), 0);
	assert_non_null(use);
	assert_null(res);
	assert_string_equal(jstr(use, "type"), "agent.tool_use");
	assert_null(json_object_get(use, "_seq"));
	json_decref(use);
	assert_int_equal(OPS(f)->event_tool(f->s, sid, "sevt_nosuch", false, &use, &res, f->err, sizeof f->err), 0);
	assert_null(use);
	assert_null(res);
	/* two results for tu in one batch: one result per call, so the store takes none of it */
	json_t *b2 = json_pack("[{s:s, s:s, s:i}, {s:s, s:s, s:i}]", "type", "user.tool_result", "tool_use_id", tu, "n", 1,
			       "type", "user.tool_result", "tool_use_id", tu, "n", 2);
	assert_int_equal(OPS(f)->event_append(f->s, sid, b2, &seq, f->err, sizeof f->err), -EEXIST);
	assert_non_null(strstr(f->err, "events[1].tool_use_id"));
	assert_int_equal(OPS(f)->event_last(f->s, sid, &last, f->err, sizeof f->err), 0);
	assert_int_equal(last, 3);
	json_decref(b2);
	/* one result for tu and one for ctu */
	b2 = json_pack("[{s:s, s:s, s:i}, {s:s, s:s}, {s:s, s:s, s:s}]", "type", "user.tool_result", "tool_use_id", tu, "n",
		       1, "type", "user.custom_tool_result", "custom_tool_use_id", ctu, "type", "user.tool_confirmation",
		       "tool_use_id", tu, "result", "allow");
	assert_int_equal(OPS(f)->event_append(f->s, sid, b2, &seq, f->err, sizeof f->err), 0);
	/* a second result for either, alone or after other events in a batch: -EEXIST naming it, nothing stored */
	json_t *again = json_pack("[{s:s}, {s:s, s:s, s:i}]", "type", "agent.message", "type", "user.tool_result",
				  "tool_use_id", tu, "n", 2);
	assert_int_equal(OPS(f)->event_append(f->s, sid, again, &seq, f->err, sizeof f->err), -EEXIST);
	assert_non_null(strstr(f->err, "events[1].tool_use_id"));
	assert_non_null(strstr(f->err, tu));
	json_decref(again);
	again = json_pack("[{s:s, s:s}]", "type", "user.custom_tool_result", "custom_tool_use_id", ctu);
	assert_int_equal(OPS(f)->event_append(f->s, sid, again, &seq, f->err, sizeof f->err), -EEXIST);
	assert_non_null(strstr(f->err, "events[0].custom_tool_use_id"));
	json_decref(again);
	assert_int_equal(OPS(f)->event_last(f->s, sid, &last, f->err, sizeof f->err), 0);
	assert_int_equal(last, 6);
	assert_int_equal(OPS(f)->event_tool(f->s, sid, tu, false, &use, &res, f->err, sizeof f->err), 0);
	assert_non_null(use);
	assert_non_null(res);
	assert_int_equal(json_integer_value(json_object_get(res, "n")), 1);
	json_decref(use);
	json_decref(res);
	/* the custom kind looks at custom results only */
	assert_int_equal(OPS(f)->event_tool(f->s, sid, ctu, true, &use, &res, f->err, sizeof f->err), 0);
	assert_string_equal(jstr(res, "type"), "user.custom_tool_result");
	json_decref(use);
	json_decref(res);
	assert_int_equal(OPS(f)->event_tool(f->s, sid, ctu, false, &use, &res, f->err, sizeof f->err), 0);
	assert_null(res);
	json_decref(use);
	assert_int_equal(OPS(f)->event_last(f->s, sid, &last, f->err, sizeof f->err), 0);
	assert_int_equal(last, 6);
	/* a deleted session takes its index along */
	assert_int_equal(OPS(f)->session_delete(f->s, sid, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->event_tool(f->s, sid, tu, false, &use, &res, f->err, sizeof f->err), 0);
	assert_null(use);
	assert_null(res);
	assert_int_equal(OPS(f)->event_last(f->s, sid, &last, f->err, sizeof f->err), 0);
	assert_int_equal(last, 0);
	json_decref(b1); /* tu and ctu point into it */
	json_decref(b2);
}

/* Each delivery binds its poll's token and revokes the one before (a missed ack's re-offer); a lease that ran out
 * revokes the holder's; a poll without a token hands the item out with no secret, still ending the old one. */
static void test_token_per_delivery(void **state)
{
	fx *f = *state;
	char a[40], ka[40], kb[40], kc[40], name[64], env[64];
	ctl_token ta, tb, tc;
	json_t *w = NULL;
	ctl_lease l;
	enqueue(f, f->env, a, NULL);
	fx_token(&ta, ka);
	assert_int_equal(OPS(f)->work_poll(f->s, f->env, "w1", 60000, &ta, &w, f->err, sizeof f->err), 0);
	assert_non_null(w);
	assert_string_equal(jstr(w, "id"), a);
	const char *sid = jstr(json_object_get(w, "data"), "id");
	assert_int_equal(OPS(f)->key_check(f->s, "session", ta.hash, NULL, 0, env, sizeof env, name, sizeof name), 0);
	assert_string_equal(name, a);
	assert_string_equal(env, sid); /* bound to its session */
	json_decref(w);
	/* the re-offer: a new token, the first one revoked in the same step */
	fx_token(&tb, kb);
	tb.secret = "c2Vjb25k";
	assert_int_equal(OPS(f)->work_poll(f->s, f->env, "w2", 0, &tb, &w, f->err, sizeof f->err), 0);
	assert_non_null(w);
	assert_string_equal(jstr(w, "secret"), "c2Vjb25k");
	json_decref(w);
	assert_int_equal(OPS(f)->key_check(f->s, "session", ta.hash, NULL, 0, NULL, 0, NULL, 0), -EKEYREVOKED);
	assert_int_equal(OPS(f)->key_check(f->s, "session", tb.hash, NULL, 0, NULL, 0, NULL, 0), 0);
	work_state(f, a, "queued"); /* and work_get still shows no secret */
	/* the lease runs out: the holder's token is revoked when the item goes back to the queue */
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, a, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, "NO_HEARTBEAT", 1, &l, f->err, sizeof f->err), 0);
	msleep(1100);
	assert_int_equal(OPS(f)->work_expire(f->s, 90, f->err, sizeof f->err), 1);
	work_state(f, a, "queued");
	assert_int_equal(OPS(f)->key_check(f->s, "session", tb.hash, NULL, 0, NULL, 0, NULL, 0), -EKEYREVOKED);
	/* a poll with no token: no secret, nothing live */
	assert_int_equal(OPS(f)->work_poll(f->s, f->env, "w3", 0, NULL, &w, f->err, sizeof f->err), 0);
	assert_non_null(w);
	assert_true(json_is_null(json_object_get(w, "secret")));
	json_decref(w);
	fx_token(&tc, kc);
	assert_int_equal(OPS(f)->work_poll(f->s, f->env, "w4", 0, &tc, &w, f->err, sizeof f->err), 0);
	assert_non_null(w);
	json_decref(w);
	assert_int_equal(OPS(f)->key_check(f->s, "session", tc.hash, NULL, 0, NULL, 0, NULL, 0), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest battery[] = {
		T(test_enqueue_poll_ack), T(test_reoffer_after_reclaim), T(test_no_double_delivery), T(test_heartbeat),
		T(test_stop), T(test_expire), T(test_metadata), T(test_lists_paged), T(test_stats), T(test_events), T(test_event_index),
		T(test_keys), T(test_token_per_delivery),
	};
	int bad = 0;
	signal(SIGPIPE, SIG_IGN);
	kind = "sqlite";
	bad += cmocka_run_group_tests_name("ctl_store sqlite", battery, NULL, NULL);
	kind = "redis";
	bad += cmocka_run_group_tests_name("ctl_store redis", battery, redis_group_setup, redis_group_teardown);
	return bad;
}
